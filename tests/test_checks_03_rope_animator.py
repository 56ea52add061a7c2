"""Tests for shared/checks/rope_animator.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source. Plus the references themselves (RoPE's relative property, ALiBi's slopes).
"""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.rope_animator import (
    check_add_learned_positions,
    check_alibi_bias,
    check_apply_rope,
    check_sinusoidal_encoding,
    interleaved_rope,
    reference_alibi_bias,
    reference_rope,
)

solution = solution_loader("03_rope_animator")


# ----------------------------------------------------------------------------------------------- references


def test_reference_rope_scores_depend_only_on_relative_distance_and_keep_norms():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(16, dtype=torch.float64, generator=g)
    k = torch.randn(16, dtype=torch.float64, generator=g)
    pos = torch.arange(50)
    rq = reference_rope(q.expand(50, 16), pos)
    rk = reference_rope(k.expand(50, 16), pos)
    s = rq @ rk.T
    assert torch.allclose(s.diagonal(-5), s.diagonal(-5)[0].expand(45), atol=1e-4)
    assert torch.allclose(rq.norm(dim=-1), q.norm().expand(50), atol=1e-4)


def test_interleaved_layout_is_a_permutation_of_rotate_half():
    x = torch.randn(1, 4, 8)
    pos = torch.arange(4)
    perm = torch.tensor([0, 2, 4, 6, 1, 3, 5, 7])  # interleaved features -> (evens | odds)
    back = torch.argsort(perm)
    assert torch.allclose(interleaved_rope(x, pos), reference_rope(x[..., perm], pos)[..., back], atol=1e-6)


def test_reference_alibi_bias_has_geometric_slopes_and_causal_mask():
    b = reference_alibi_bias(8, 4)
    assert torch.allclose(-b[:, 1, 0], 2.0 ** -torch.arange(1, 9, dtype=torch.float32))
    assert torch.isneginf(b[:, 0, 1]).all() and (b[:, 2, 2] == 0).all()
    assert math.isclose(float(b[0, 3, 0]), -1.5)


# ----------------------------------------------------------------------------------------------- stubs


@pytest.mark.parametrize(
    "check, todo",
    [(check_sinusoidal_encoding, 1), (check_add_learned_positions, 2), (check_apply_rope, 3),
     (check_alibi_bias, 4)],
)
def test_untouched_stub_says_todo_not_done(check, todo):
    with pytest.raises(TodoNotDone, match=f"TODO {todo} .* is not done yet"):
        check(stub(todo))


# ----------------------------------------------------------------------------------------------- TODO 1


def test_sinusoidal_check_passes_on_the_solution(capsys):
    check_sinusoidal_encoding(solution("sinusoidal_encoding"))
    out = capsys.readouterr().out
    assert "✅ TODO 1 sinusoidal_encoding: matches shared.model.sinusoidal_positions" in out


# ----------------------------------------------------------------------------------------------- TODO 2


def test_learned_check_passes_on_the_solution(capsys):
    check_add_learned_positions(solution("add_learned_positions"))
    assert "✅ TODO 2 add_learned_positions: equals x + table[:T]" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------- TODO 3


def test_rope_check_passes_on_the_solution(capsys):
    check_apply_rope(solution("apply_rope"))
    out = capsys.readouterr().out
    assert "✅ TODO 3 apply_rope: matches shared.model.apply_rope (pairs i, i+hs/2)" in out


def test_rope_property_checks_catch_q_and_k_rotated_with_different_pairs():
    """A function whose layout depends on the call
    (as when q and k take different code paths) breaks m − n."""
    right = solution("apply_rope")
    calls = {"n": 0}

    def mixed(x, positions, base=10000.0):
        calls["n"] += 1
        if calls["n"] <= 3:  # the first three calls are compared with the reference: answer them correctly
            return right(x, positions, base)
        if calls["n"] % 2 == 0:  # "q": rotate half
            return right(x, positions, base)
        return interleaved_rope(x, positions, base)  # "k": adjacent pairs

    fails(check_apply_rope, mixed, "same pairs")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_alibi_check_passes_on_the_solution(capsys):
    check_alibi_bias(solution("alibi_bias"))
    assert "✅ TODO 4 alibi_bias: matches -shared.model.alibi_slopes(n)" in capsys.readouterr().out


