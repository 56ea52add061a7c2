"""Tests for shared/checks/sliding_window.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes. The bugs
that are textual edits of the solution live in the mutation catalogue (tests/catalogue/c09_sliding_window.py);
here remain the ones that need their own code: a banded or online attention that secretly builds T x T, and
a ring cache written into a copy.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.sliding_window import (
    check_banded_attention,
    check_online_softmax_attention,
    check_ring_kv_cache,
    check_sliding_window_mask,
    largest_allocation,
    reference_window_mask,
)
from shared.positions import attention_allowed

solution = solution_loader("09_sliding_window")


# ----------------------------------------------------------------------------------------------- helpers


def test_reference_window_mask_matches_the_shared_model_convention():
    for T, W in [(1, 1), (7, 3), (6, 6), (4, 10)]:
        shared = attention_allowed(torch.arange(T), torch.arange(T), "causal", sliding_window=W)[0, 0]
        assert torch.equal(reference_window_mask(T, W), shared)
    assert reference_window_mask(4, 2).tolist() == [
        [True, False, False, False], [True, True, False, False], [False, True, True,
                                                                  False], [False, False, True, True],
    ]


def test_largest_allocation_sees_a_square_matrix_but_not_a_view():
    x = torch.randn(64, 8)
    _, square = largest_allocation(lambda: x @ x.T)
    _, view = largest_allocation(lambda: x.T.unfold(1, 4, 1))
    assert square == 64 * 64 * 4
    assert view == 0


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_sliding_window_mask_passes_on_solution(capsys):
    assert check_sliding_window_mask(solution("sliding_window_mask")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 sliding_window_mask: matches a brute-force loop")


def test_check_sliding_window_mask_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(sliding_window_mask\\) is not done yet"):
        check_sliding_window_mask(stub(1))


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_banded_attention_passes_on_solution(capsys):
    check_banded_attention(solution("banded_attention"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 2 banded_attention: matches F.scaled_dot_product_attention")
    assert "no T x T matrix" in out


def test_check_banded_attention_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_banded_attention(stub(2))


def test_check_banded_attention_catches_a_dense_masked_implementation():
    def dense(q, k, v, window):
        T = q.size(-2)
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, T, T)
        return torch.softmax(scores.masked_fill(~((j <= i) & (j > i - window)), float("-inf")), -1) @ v

    fails(check_banded_attention, dense, "you built a T x T matrix", "unfold")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_ring_kv_cache_passes_on_solution(capsys):
    check_ring_kv_cache(solution("ring_kv_update"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 3 ring_kv_update: keys and values match")
    assert "token for token" in out


def test_check_ring_kv_cache_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(ring_kv_update\\) is not done yet"):
        check_ring_kv_cache(stub(3))


def test_check_ring_kv_cache_catches_a_copy_instead_of_an_in_place_write():
    def copying(cache_k, cache_v, k, v, pos):
        return solution("ring_kv_update")(cache_k.clone(), cache_v.clone(), k, v, pos)

    fails(check_ring_kv_cache, copying, "in place")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_online_softmax_attention_passes_on_solution(capsys):
    check_online_softmax_attention(solution("online_softmax_attention"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 4 online_softmax_attention: matches F.scaled_dot_product_attention")


def test_check_online_softmax_attention_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_online_softmax_attention(stub(4))


def test_check_online_softmax_attention_catches_the_full_score_matrix():
    def dense(q, k, v, block_size, window=None):
        T = q.size(-2)
        i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
        mask = (j <= i) & (j > i - (T if window is None else window))  # (T, T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    fails(check_online_softmax_attention, dense, "you built a T x T matrix")
