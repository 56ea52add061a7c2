"""Tests for shared/checks/attention_lab.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: no 1/sqrt(d_k), softmax over the wrong dim, the mask inverted or applied
after the softmax, an off-by-one causal mask, heads split without a transpose, heads merged in the wrong
order, a missing output projection.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.attention_lab import (
    check_attend_one,
    check_causal_mask,
    check_merge_heads,
    check_multi_head_attention,
    check_scaled_dot_product_attention,
    check_split_heads,
    reference_attention,
    reference_multi_head_attention,
)

solution = solution_loader("04_attention_lab")
MHA_PARTS = ["split_heads", "merge_heads", "scaled_dot_product_attention", "multi_head_attention"]


# ----------------------------------------------------------------------------------------------- references


def test_reference_attention_weights_are_masked_rows_that_sum_to_one():
    q, k, v = torch.randn(2, 4, 8), torch.randn(2, 6, 8), torch.randn(2, 6, 3)
    mask = torch.ones(4, 6, dtype=torch.bool).tril()
    out, w = reference_attention(q, k, v, mask)
    assert torch.allclose(w.sum(-1), torch.ones(2, 4))
    assert (w[..., ~mask] == 0).all()
    assert torch.allclose(out, w @ v, atol=1e-6)


def test_reference_multi_head_attention_with_one_head_and_identity_weights_is_plain_attention():
    C = 8
    x = torch.randn(1, 5, C)
    w_qkv = torch.cat([torch.eye(C)] * 3)  # q = k = v = x
    y = reference_multi_head_attention(x, w_qkv, None, torch.eye(C), None, 1)
    assert torch.allclose(y, F.scaled_dot_product_attention(x, x, x), atol=1e-6)


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_attend_one_passes_on_solution(capsys):
    assert check_attend_one(solution("attend_one")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 attend_one: one query against 7 keys")


def test_check_attend_one_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(attend_one\\) is not done yet"):
        check_attend_one(stub(1))


def test_check_attend_one_rejects_a_single_tensor_result():
    fails(check_attend_one, lambda q, k, v: torch.softmax(k @ q, -1) @ v, "(output, weights)")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_sdpa_passes_on_solution(capsys):
    check_scaled_dot_product_attention(solution("scaled_dot_product_attention"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 2 scaled_dot_product_attention: matches F.scaled_dot_product_attention")


def test_check_sdpa_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_scaled_dot_product_attention(stub(2))


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_causal_mask_passes_on_solution(capsys):
    check_causal_mask(solution("causal_mask"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 causal_mask: lower-triangular bool masks")


def test_check_causal_mask_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(causal_mask\\) is not done yet"):
        check_causal_mask(stub(3))


# ----------------------------------------------------------------------------------------------- TODO 4, 5


def test_check_split_heads_passes_on_solution(capsys):
    check_split_heads(solution("split_heads"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 split_heads: ")


def test_check_split_heads_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_split_heads(stub(4))


def test_check_merge_heads_passes_on_solution(capsys):
    check_merge_heads(solution("merge_heads"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 merge_heads: ")


def test_check_merge_heads_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_merge_heads(stub(5))


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_multi_head_attention_passes_on_solution(capsys):
    check_multi_head_attention(solution(*MHA_PARTS)["multi_head_attention"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 6 multi_head_attention: ")
    assert "shared.model.CausalSelfAttention" in out


def test_check_multi_head_attention_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6 \\(multi_head_attention\\) is not done yet"):
        check_multi_head_attention(stub(6))


def test_check_multi_head_attention_names_an_unfinished_split_heads():
    fns = solution(*MHA_PARTS)
    fns["multi_head_attention"].__globals__["split_heads"] = stub(4)
    with pytest.raises(TodoNotDone, match="uses TODO 4"):
        check_multi_head_attention(fns["multi_head_attention"])


