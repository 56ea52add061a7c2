"""Comparing a learner's answer with the right one and with known bugs, and the seeded inputs checks use.

Every project's checks (``shared.checks.<project>``) import these helpers; none keeps its own copy.

Tolerance policy, one for every check:

* **Verdict** (is the answer right?): ``atol = rtol = 1e-5`` (:data:`CHECK_ATOL`, :data:`CHECK_RTOL`), the
  defaults of :func:`shared.checks.assert_close` and :func:`matches`. A learner's float32 code and our
  reference add in another order and differ by about 1e-7 relative; a real bug differs by far more.
* **Diagnosis** (which known bug is it?): ``atol = rtol = 1e-4`` (:data:`DIAGNOSE_ATOL`,
  :data:`DIAGNOSE_RTOL`), the default of :func:`diagnose`. Our recomputation of a bug rounds differently
  from the learner's version of it, and distinct bugs are much further apart than 1e-4. A diagnosis only
  picks the hint; it never turns a wrong answer into a pass.
* Both sides are compared in float64 on the CPU, so a float64 reference is not rounded to float32 first,
  and integer or bool answers compare by value (``atol = rtol = 0`` then means "exactly equal").
  The dtype is not part of a match unless asked for (``check_dtype=True``): a float32 answer to a float64
  reference is right.
* NaN matches NaN and an infinity the same infinity: masked logits (``-inf``) and fully masked rows (NaN)
  are the same answer when both sides have them.
* A non-tensor, a wrong shape or (when asked) a wrong dtype is a reason, never a torch error:
  :func:`mismatch` returns a sentence saying so, :func:`matches` returns False.
* A check that needs another tolerance passes ``atol``/``rtol`` at the call site, with a comment saying why.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from shared.checks import expect

__all__ = [
    "CHECK_ATOL",
    "CHECK_RTOL",
    "DIAGNOSE_ATOL",
    "DIAGNOSE_RTOL",
    "mismatch",
    "matches",
    "diagnose",
    "expect_tensors",
    "gen",
    "randn",
]

CHECK_ATOL = 1e-5  # the verdict: equal to the defaults of shared.checks.assert_close
CHECK_RTOL = 1e-5
DIAGNOSE_ATOL = 1e-4  # naming a known bug: our recomputation of it rounds differently from the learner's
DIAGNOSE_RTOL = 1e-4


def mismatch(
    got: Any,
    expected: torch.Tensor,
    *,
    atol: float = CHECK_ATOL,
    rtol: float = CHECK_RTOL,
    check_dtype: bool = False,
) -> str | None:
    """Why ``got`` does not match ``expected`` (a sentence), or None when it does.

    Checked in order: is ``got`` a tensor, the shape, the dtype (only with ``check_dtype``), then the
    values, in float64 on the CPU with ``|got - expected| <= atol + rtol * |expected|``, NaN equal to NaN.
    """
    if not isinstance(got, torch.Tensor):
        return f"expected a torch.Tensor, got {type(got).__name__}"
    if got.shape != expected.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(expected.shape)}"
    if check_dtype and got.dtype != expected.dtype:
        return f"dtype {got.dtype}, expected {expected.dtype}"
    a = got.detach().cpu().double()  # same shape as expected
    b = expected.detach().cpu().double()
    if torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=True):
        return None
    finite = torch.isfinite(a) & torch.isfinite(b)
    worst = float((a - b)[finite].abs().max()) if bool(finite.any()) else float("nan")
    return f"values differ: max abs err {worst:.1e} over atol={atol:.0e}, rtol={rtol:.0e}"


def matches(got: Any, expected: torch.Tensor, *, atol: float = CHECK_ATOL, rtol: float = CHECK_RTOL,
            check_dtype: bool = False) -> bool:
    """True when ``got`` is a tensor of ``expected``'s shape and values (see :func:`mismatch`)."""
    return mismatch(got, expected, atol=atol, rtol=rtol, check_dtype=check_dtype) is None


def diagnose(
    got: Any,
    variants: Iterable[tuple[torch.Tensor, str]],
    default: str,
    *,
    atol: float = DIAGNOSE_ATOL,
    rtol: float = DIAGNOSE_RTOL,
    every: bool = False,
) -> str:
    """Name the bug: the hint of the first known-buggy variant that ``got`` matches, else ``default``.

    ``variants`` holds ``(answer the bug gives, hint for that bug)`` pairs, most specific first; a pair list
    rather than a dict, because the order decides and two bugs may share one hint. With ``every=True`` the
    hints of all the variants matched are joined by " OR " (for bugs that give the same answer on the check's
    input). Tolerance: the diagnosis policy of this module, unless ``atol``/``rtol`` are passed.
    """
    hints = []
    for answer, hint in variants:
        if matches(got, answer, atol=atol, rtol=rtol):
            if not every:
                return hint
            hints.append(hint)
    return " OR ".join(hints) if hints else default


def expect_tensors(result: Any, n: int, what: str, hint: str) -> tuple[torch.Tensor, ...]:
    """``result`` when it is a tuple of ``n`` tensors;
    else fail with ``what`` (the rule, and what came) and ``hint``."""
    expect(
        isinstance(result, tuple) and len(result) == n and all(isinstance(t, torch.Tensor) for t in result),
        what,
        hint=hint,
    )
    return result


def gen(seed: int) -> torch.Generator:
    """A fresh CPU generator seeded with ``seed``: a check's inputs are the same on every run and machine."""
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    """Standard normal values of ``shape`` drawn from :func:`gen` ``(seed)``, times ``scale``."""
    return torch.randn(*shape, generator=gen(seed)) * scale
