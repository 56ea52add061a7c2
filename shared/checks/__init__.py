"""The learner-feedback API behind every check cell.

The package holds this API, one module per project named after it (``shared.checks.<project name>``,
e.g. ``shared.checks.byte_pair_smith`` for ``01_byte_pair_smith``), and :mod:`shared.checks.compare`, the
matching and diagnosis helpers that every project's checks share under one tolerance policy. A check is
written with the :func:`learner_check` decorator. Each check is bound to one numbered TODO and has three
outcomes, and only three:

* pass    — one line ``✅ TODO n <name>: <what was compared>`` is printed;
* wrong   — :class:`CheckFailed` (an ``AssertionError``) showing the input, expected vs got, and a hint
            aimed at the likely bug;
* not yet — :class:`TodoNotDone` (a ``NotImplementedError``) saying that TODO n is not done yet, when the
            learner's code still raises the starter's ``NotImplementedError("TODO n: ...")`` stub.

Numerical comparisons go through :func:`torch.testing.assert_close` (see :func:`assert_close`), whose
default tolerance is the verdict tolerance of :mod:`shared.checks.compare`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch

from shared.utils import TODO_NUMBER

__all__ = [
    "CheckFailed",
    "TodoNotDone",
    "learner_check",
    "call",
    "expect",
    "expect_equal",
    "assert_close",
    "fmt",
    "within",
    "hint_on_crash",
]



class _ShortInNotebooks:
    """IPython shows an exception with a ``_render_traceback_`` method as the lines it returns: the learner
    sees the check's message alone, not the traceback through ``shared.checks``. (A terminal or pytest
    still shows the full traceback.)"""

    def _render_traceback_(self) -> list[str]:
        return str(self).splitlines()


class CheckFailed(_ShortInNotebooks, AssertionError):
    """A learner's implementation gave a wrong answer. The message says what, and hints at why."""


class TodoNotDone(_ShortInNotebooks, NotImplementedError):
    """The learner's TODO still raises the starter's ``NotImplementedError`` stub."""


def _rounded(values: Any) -> Any:
    """Nested lists of floats with 4 significant digits (a check message needs no 17-digit floats)."""
    if isinstance(values, list):
        return [_rounded(v) for v in values]
    return float(f"{values:.4g}") if isinstance(values, float) else values


def fmt(value: Any, limit: int = 300) -> str:
    """A short, readable rendering of a value for check messages (long values are cut)."""
    if isinstance(value, torch.Tensor):
        shown = _rounded(value.detach().cpu().tolist())
        text = f"tensor(shape={tuple(value.shape)}, dtype={value.dtype}) {shown!r}"
    elif isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, torch.nn.Module):  # a model's repr is many lines of layers: name it instead
        text = f"<{type(value).__name__} with {sum(p.numel() for p in value.parameters()):,} parameters>"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def within(err: float, tol: float, what: str = "max abs err") -> str:
    """A measured error as the tolerance it met: ``"max abs err ≤ 1e-05"``.

    A check's ✅ line is compared verbatim in CI (cell tag ``nbval-check-output``), so it states only what is
    the same on every CPU, thread count and torch version: the bound met, not the measured value, whose last
    digits move with the order of floating-point sums. (An error above ``tol`` that a relative tolerance
    still allowed is printed as measured.)
    """
    return f"{what} ≤ {tol:.0e}" if err <= tol else f"{what} {err:.1e}"


def _failure(what: str, expected: Any = None, got: Any = None, hint: str | None = None,
             show: bool = True) -> CheckFailed:
    lines = [what]
    if show:
        lines += [f"   expected: {fmt(expected)}", f"   got:      {fmt(got)}"]
    if hint:
        lines.append(f"   hint: {hint}")
    return CheckFailed("\n".join(lines))


def expect(condition: bool, what: str, hint: str | None = None) -> None:
    """Fail with ``what`` (and a hint) unless ``condition`` holds."""
    if not condition:
        raise _failure(what, hint=hint, show=False)


def expect_equal(got: Any, expected: Any, what: str, hint: str | None = None) -> None:
    """Fail showing expected vs got unless ``got == expected`` (exact equality)."""
    if isinstance(got, torch.Tensor) or isinstance(expected, torch.Tensor):
        same = (
            isinstance(got, torch.Tensor)
            and isinstance(expected, torch.Tensor)
            and got.shape == expected.shape
            and bool(torch.equal(got.cpu(), expected.cpu()))
        )
    else:
        same = got == expected
    if not same:
        raise _failure(what, expected, got, hint)


def assert_close(
    got: Any,
    expected: torch.Tensor,
    what: str,
    hint: str | None = None,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> float:
    """Compare tensors with :func:`torch.testing.assert_close`; return the max absolute error.

    Shape and dtype mismatches are reported as such (they are the most common bug), then values.
    """
    if not isinstance(got, torch.Tensor):
        raise _failure(f"{what}: expected a torch.Tensor, got {type(got).__name__}", hint=hint, show=False)
    if got.shape != expected.shape:
        raise _failure(
            f"{what}: wrong shape", tuple(expected.shape), tuple(got.shape),
            hint or "check which dimension you reduced over"
        )
    try:
        torch.testing.assert_close(got.detach().cpu(), expected.detach().cpu(), atol=atol, rtol=rtol,
                                   check_dtype=False)
    except AssertionError as err:
        detail = str(err).strip().splitlines()
        summary = "; ".join(line.strip() for line in detail if line.strip())
        summary = re.sub(r"\d+\.\d{5,}(e[-+]?\d+)?", lambda m: f"{float(m.group()):.4g}", summary)
        raise _failure(f"{what}: values differ ({summary})", expected, got, hint) from None
    if got.numel() == 0:
        return 0.0
    return float((got.detach().cpu().double() - expected.detach().cpu().double()).abs().max())


def call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call the learner's function, turning an unexpected exception into a readable :class:`CheckFailed`.

    ``NotImplementedError`` passes through untouched: :func:`learner_check` turns it into "not done yet".
    """
    try:
        return fn(*args, **kwargs)
    except (NotImplementedError, AssertionError):
        raise
    except Exception as err:  # the learner's code crashed: show on what input
        shown = ", ".join([fmt(a, 80) for a in args] + [f"{k}={fmt(v, 80)}" for k, v in kwargs.items()])
        name = getattr(fn, "__name__", "your function")
        raise CheckFailed(f"{name}({shown}) raised {type(err).__name__}: {err}") from err


@contextlib.contextmanager
def hint_on_crash(hint: str) -> Iterator[None]:
    """Inside this block, a :func:`call` whose learner code crashed also gets ``hint`` (the likely cause
    of a crash on that particular input)."""
    try:
        yield
    except CheckFailed as err:
        raise CheckFailed(f"{err}\n   hint: {hint}") from None


def learner_check(todo: int, name: str) -> Callable[[Callable[..., str]], Callable[..., None]]:
    """Decorate a check bound to TODO ``todo``; the check returns a sentence saying what it compared.

    The wrapped check prints ``✅ TODO n name: <sentence>`` on success and returns None (so that a
    check cell shows the ✅ line once, not again as the cell's value).
    A ``NotImplementedError`` raised while checking becomes :class:`TodoNotDone` naming the TODO that is
    unfinished — this one, or an earlier one that this TODO builds on.
    """

    def decorate(check: Callable[..., str]) -> Callable[..., None]:
        @functools.wraps(check)
        def wrapper(*args: Any, **kwargs: Any) -> None:
            try:
                sentence = check(*args, **kwargs)
            except TodoNotDone:
                raise
            except NotImplementedError as err:
                m = TODO_NUMBER.search(str(err))
                other = int(m.group(1)) if m else todo
                if other == todo:
                    msg = (
                        f"TODO {todo} ({name}) is not done yet: replace the `raise NotImplementedError` "
                        f"in its cell with your code, run that cell, then run this check again."
                    )
                else:
                    msg = (
                        f"TODO {todo} ({name}) cannot be checked yet: it uses TODO {other}, "
                        f"which is not done yet. Finish TODO {other} first."
                    )
                raise TodoNotDone(msg) from None
            except CheckFailed as err:
                note = _failing_dependencies(check, todo, args, kwargs)
                err.args = (f"❌ TODO {todo} {name}: {err}{note}",)
                raise
            print(f"✅ TODO {todo} {name}: {sentence}")

        wrapper.todo = todo  # type: ignore[attr-defined]
        wrapper.todo_name = name  # type: ignore[attr-defined]
        _CHECKS.setdefault(check.__module__, {})[name] = wrapper
        return wrapper

    return decorate


# ------------------------------------------------------------------- a failure that an earlier TODO causes

#: checks module -> {function name of a TODO: its check}, filled by :func:`learner_check`
_CHECKS: dict[str, dict[str, Callable[..., None]]] = {}


def _names_called(fn: Callable, depth: int = 2) -> dict[str, Callable]:
    """The functions of the learner's notebook that ``fn`` refers to by name (and those that they refer to,
    ``depth`` levels deep): name -> function, read from ``fn``'s globals."""
    found: dict[str, Callable] = {}
    todo = [(fn, depth)]
    while todo:
        f, left = todo.pop()
        code, namespace = getattr(f, "__code__", None), getattr(f, "__globals__", None)
        if code is None or namespace is None:
            continue
        codes, names = [code], set()
        while codes:  # nested functions and comprehensions have code objects of their own
            c = codes.pop()
            names.update(c.co_names)
            codes.extend(k for k in c.co_consts if hasattr(k, "co_names"))
        for n in names:
            g = namespace.get(n)
            if callable(g) and hasattr(g, "__code__") and getattr(g, "__module__", None) == f.__module__:
                if n not in found:
                    found[n] = g
                    if left > 1:
                        todo.append((g, left - 1))
    return found


def _failing_dependencies(check: Callable, todo: int, args: tuple, kwargs: dict) -> str:
    """Lines naming each earlier TODO of this project that the learner's function calls and that fails its
    own check, or ``""``. A wrong TODO 2 can make a correct TODO 6 fail: the learner should fix TODO 2."""
    registry = _CHECKS.get(check.__module__, {})
    lines = []
    for arg in [*args, *kwargs.values()]:
        if not callable(arg):
            continue
        for fn_name, dep in sorted(_names_called(arg).items()):
            dep_check = registry.get(fn_name)
            dep_todo = getattr(dep_check, "todo", None)
            if dep_check is None or dep_todo is None or dep_todo >= todo:
                continue
            try:
                with contextlib.redirect_stdout(io.StringIO()):
                    dep_check(dep)
            except (CheckFailed, TodoNotDone):
                lines.append(
                    f"   note: this TODO calls your {fn_name} (TODO {dep_todo}), which fails its own check: "
                    f"fix TODO {dep_todo} first and run its check cell; this failure may come from it."
                )
            except Exception:  # noqa: BLE001 - the note is a courtesy; the failure above stands on its own
                continue
    return "".join("\n" + line for line in dict.fromkeys(lines))
