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


def test_check_attend_one_catches_a_missing_scale():
    buggy = solution("attend_one", replace=[("scores = k @ q / math.sqrt(q.shape[-1])", "scores = k @ q")])
    fails(check_attend_one, buggy, "divide q·k by sqrt(d_k)")


def test_check_attend_one_catches_scaling_by_the_value_size():
    buggy = solution("attend_one", replace=[("math.sqrt(q.shape[-1])", "math.sqrt(v.shape[-1])")])
    fails(check_attend_one, buggy, "not of v")


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


def test_check_sdpa_catches_a_missing_scale():
    buggy = solution("scaled_dot_product_attention", replace=[
        ("scale = 1.0 / math.sqrt(q.shape[-1])", "scale = 1.0"),
    ])
    fails(check_scaled_dot_product_attention, buggy, "divide q·k by sqrt(d_k)")


def test_check_sdpa_catches_softmax_over_the_queries():
    buggy = solution("scaled_dot_product_attention", replace=[
        ("weights = torch.softmax(scores, dim=-1)", "weights = torch.softmax(scores, dim=-2)"),
    ])
    fails(check_scaled_dot_product_attention, buggy, "softmax over the wrong dim", "dim=-1")


def test_check_sdpa_catches_the_mask_applied_after_the_softmax():
    buggy = solution("scaled_dot_product_attention", replace=[
        ("        scores = scores.masked_fill(~mask, float(\"-inf\"))  # blocked keys get exp(-inf) = 0\n"
         "    weights = torch.softmax(scores, dim=-1)  # (..., T, S), each row sums to 1\n",
         "        pass\n    weights = torch.softmax(scores, dim=-1)\n    if mask is not None:\n"
         "        weights = weights * mask\n"),
    ])
    fails(check_scaled_dot_product_attention, buggy, "AFTER the softmax", "rows no longer sum to 1")


def test_check_sdpa_catches_an_inverted_mask():
    buggy = solution("scaled_dot_product_attention", replace=[
        ("scores = scores.masked_fill(~mask, ", "scores = scores.masked_fill(mask, "),
    ])
    fails(check_scaled_dot_product_attention, buggy, "True means MAY attend")


def test_check_sdpa_catches_an_ignored_scale_argument():
    buggy = solution("scaled_dot_product_attention", replace=[
        ("    if scale is None:\n        scale = 1.0 / math.sqrt(q.shape[-1])",
         "    scale = 1.0 / math.sqrt(q.shape[-1])"),
    ])
    fails(check_scaled_dot_product_attention, buggy, "use the `scale` argument")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_causal_mask_passes_on_solution(capsys):
    check_causal_mask(solution("causal_mask"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 causal_mask: lower-triangular bool masks")


def test_check_causal_mask_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(causal_mask\\) is not done yet"):
        check_causal_mask(stub(3))


@pytest.mark.parametrize(
    ("edit", "hint"),
    [
        ("tril()", "tril(diagonal=-1)"),
        ("tril()", "tril(diagonal=1)"),
        ("tril()", "triu(diagonal=1)"),
        ("tril()", "triu()"),
    ],
)
def test_check_causal_mask_catches_off_by_one_and_inverted_masks(edit, hint):
    line = "return torch.ones(T, T, dtype=torch.bool)."
    buggy = solution("causal_mask", replace=[(line + edit, line + hint)])
    expected_hint = {
        "tril(diagonal=-1)": "diagonal is excluded",
        "tril(diagonal=1)": "one future token is allowed",
        "triu(diagonal=1)": "marks the FUTURE as True",
        "triu()": "lower triangle",
    }[hint]
    fails(check_causal_mask, buggy, expected_hint)


def test_check_causal_mask_rejects_a_float_mask():
    fails(check_causal_mask, lambda T: torch.ones(T, T).tril(), "bool tensor")


# ----------------------------------------------------------------------------------------------- TODO 4, 5


def test_check_split_heads_passes_on_solution(capsys):
    check_split_heads(solution("split_heads"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 split_heads: ")


def test_check_split_heads_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_split_heads(stub(4))


def test_check_split_heads_catches_a_view_without_transpose():
    buggy = solution("split_heads", replace=[
        ("x.view(B, T, n_head, C // n_head).transpose(1, 2)", "x.view(B, n_head, T, C // n_head)"),
    ])
    fails(check_split_heads, buggy, "without a transpose mixes tokens across heads")


def test_check_merge_heads_passes_on_solution(capsys):
    check_merge_heads(solution("merge_heads"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 merge_heads: ")


def test_check_merge_heads_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_merge_heads(stub(5))


def test_check_merge_heads_catches_a_reshape_without_transpose():
    buggy = solution("merge_heads", replace=[("y.transpose(1, 2).reshape(B, T, nh * hs)",
                                              "y.reshape(B, T, nh * hs)")])
    fails(check_merge_heads, buggy, "without transposing back")


def test_check_merge_heads_catches_interleaved_heads():
    buggy = solution("merge_heads", replace=[
        ("y.transpose(1, 2).reshape(B, T, nh * hs)", "y.permute(0, 2, 3, 1).reshape(B, T, nh * hs)"),
    ])
    fails(check_merge_heads, buggy, "interleaved")


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


def test_check_multi_head_attention_catches_a_missing_output_projection():
    fns = solution(*MHA_PARTS, replace=[("y = F.linear(merge_heads(heads), w_o, b_o)",
                                         "y = merge_heads(heads)")])
    fails(check_multi_head_attention, fns["multi_head_attention"], "output projection is missing")


def test_check_multi_head_attention_catches_q_and_k_swapped():
    fns = solution(*MHA_PARTS, replace=[("q, k, v = F.linear(x, w_qkv, b_qkv)",
                                         "k, q, v = F.linear(x, w_qkv, b_qkv)")])
    fails(check_multi_head_attention, fns["multi_head_attention"], "[q | k | v]")


def test_check_multi_head_attention_catches_a_head_split_without_transpose():
    # .split() gives non-contiguous q, k, v, so the buggy learner reaches for reshape instead of view
    fns = solution(*MHA_PARTS, replace=[
        ("x.view(B, T, n_head, C // n_head).transpose(1, 2)", "x.reshape(B, n_head, T, C // n_head)"),
    ])
    fails(check_multi_head_attention, fns["multi_head_attention"], "mixes tokens across heads")


def test_check_multi_head_attention_catches_the_model_width_used_as_the_scale():
    fns = solution(*MHA_PARTS, replace=[
        ("heads, weights = scaled_dot_product_attention(q, k, v, mask)",
         "heads, weights = scaled_dot_product_attention(q, k, v, mask, scale=1 / math.sqrt(C))"),
    ])
    fails(check_multi_head_attention, fns["multi_head_attention"], "1/sqrt(hs)")
