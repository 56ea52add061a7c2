"""Tests for shared/checks/grouped_query.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: KV heads tiled with .repeat instead of repeat_interleave, no causal mask,
heads pooled across groups or over head_dim, the first head kept instead of the mean, only the converted
tensors loaded into the new model, the factor 2 for K and V forgotten, n_head used instead of the KV heads,
no input validation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.grouped_query import (
    check_convert_to_gqa,
    check_grouped_query_attention,
    check_kv_cache_bytes,
    check_mean_pool_kv,
    check_repeat_kv,
    reference_gqa,
    reference_kv_cache_bytes,
    reference_mean_pool_kv,
)
from shared.model import GPT, GPTConfig

solution = solution_loader("10_grouped_query")
GQA_PARTS = ["repeat_kv", "grouped_query_attention"]
CONVERT_PARTS = ["mean_pool_kv", "convert_to_gqa"]
REPEAT_LINE = "return kv[:, :, None].expand(B, nkv, n_rep, S, hs).reshape(B, nkv * n_rep, S, hs)"


# ----------------------------------------------------------------------------------------------- references


def test_reference_gqa_with_one_kv_head_per_query_head_is_plain_causal_mha():
    C, nh = 12, 3
    x = torch.randn(2, 5, C)
    w, w_o = torch.randn(3 * C, C), torch.randn(C, C)
    q, k, v = (t.view(2, 5, nh, C // nh).transpose(1, 2) for t in F.linear(x, w).split(C, dim=-1))
    mha = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(2, 5, C)
    assert torch.allclose(reference_gqa(x, w, None, w_o, None, nh, nh), F.linear(mha, w_o), atol=1e-6)


def test_reference_mean_pool_kv_averages_consecutive_heads():
    nh, hs, C = 4, 2, 3
    w = torch.arange(3 * nh * hs * C, dtype=torch.float32).view(3 * nh * hs, C)
    pooled, bias = reference_mean_pool_kv(w, None, nh, 2)
    k = w[nh * hs: 2 * nh * hs].view(nh, hs, C)
    assert bias is None
    assert pooled.shape == ((nh + 2 * 2) * hs, C)
    assert torch.equal(pooled[: nh * hs], w[: nh * hs])  # q rows untouched
    assert torch.equal(pooled[nh * hs: nh * hs + hs], (k[0] + k[1]) / 2)  # KV head 0 = mean of heads 0, 1
    assert torch.equal(pooled[nh * hs + hs: nh * hs + 2 * hs], (k[2] + k[3]) / 2)


def test_reference_kv_cache_bytes_of_llama_2_7b_is_2_gib():
    cfg = GPTConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, d_model=4096)
    assert reference_kv_cache_bytes(cfg, 4096, 1, "fp16") == 2 * 2**30


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_repeat_kv_passes_on_solution(capsys):
    assert check_repeat_kv(solution("repeat_kv")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 repeat_kv: ")


def test_check_repeat_kv_passes_on_repeat_interleave():
    check_repeat_kv(lambda kv, n_rep: kv.repeat_interleave(n_rep, dim=1))


def test_check_repeat_kv_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(repeat_kv\\) is not done yet"):
        check_repeat_kv(stub(1))


def test_check_repeat_kv_catches_tiling_with_repeat():
    buggy = solution("repeat_kv", replace=[(REPEAT_LINE, "return kv.repeat(1, n_rep, 1, 1)")])
    fails(check_repeat_kv, buggy, "wrong order", "repeat_interleave")


def test_check_repeat_kv_catches_repeating_the_time_axis():
    buggy = solution("repeat_kv", replace=[(REPEAT_LINE, "return kv.repeat_interleave(n_rep, dim=2)")])
    fails(check_repeat_kv, buggy, "time axis")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_grouped_query_attention_passes_on_solution(capsys):
    check_grouped_query_attention(solution(*GQA_PARTS)["grouped_query_attention"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 2 grouped_query_attention: ")
    assert "shared.model.CausalSelfAttention" in out


def test_check_grouped_query_attention_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2 \\(grouped_query_attention\\) is not done yet"):
        check_grouped_query_attention(stub(2))


def test_check_grouped_query_attention_names_an_unfinished_repeat_kv():
    fns = solution(*GQA_PARTS)
    fns["grouped_query_attention"].__globals__["repeat_kv"] = stub(1)
    with pytest.raises(TodoNotDone, match="uses TODO 1"):
        check_grouped_query_attention(fns["grouped_query_attention"])


def test_check_grouped_query_attention_catches_heads_repeated_in_the_wrong_order():
    fns = solution(*GQA_PARTS, replace=[(REPEAT_LINE, "return kv.repeat(1, n_rep, 1, 1)")])
    fails(check_grouped_query_attention, fns["grouped_query_attention"], "wrong order", "repeat_interleave")


def test_check_grouped_query_attention_catches_a_missing_causal_mask():
    fns = solution(*GQA_PARTS, replace=[
        ("y = F.scaled_dot_product_attention(q, k, v, is_causal=True)",
         "y = F.scaled_dot_product_attention(q, k, v)"),
    ])
    fails(check_grouped_query_attention, fns["grouped_query_attention"], "no causal mask")


def test_check_grouped_query_attention_catches_k_and_v_swapped():
    fns = solution(*GQA_PARTS, replace=[
        ("q, k, v = F.linear(x, w_qkv, b_qkv)", "q, v, k = F.linear(x, w_qkv, b_qkv)"),
    ])
    fails(check_grouped_query_attention, fns["grouped_query_attention"], "k and v are swapped")


# ----------------------------------------------------------------------------------------------- TODO 3

POOL_LINE = "grouped = rows.reshape(n_kv_head, r, hs, *rows.shape[1:])  # (nkv, r, hs, ...)"


def test_check_mean_pool_kv_passes_on_solution(capsys):
    check_mean_pool_kv(solution("mean_pool_kv"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 mean_pool_kv: ")


def test_check_mean_pool_kv_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(mean_pool_kv\\) is not done yet"):
        check_mean_pool_kv(stub(3))


def test_check_mean_pool_kv_catches_pooling_across_groups():
    buggy = solution("mean_pool_kv", replace=[
        (POOL_LINE, "grouped = rows.reshape(r, n_kv_head, hs, *rows.shape[1:]).transpose(0, 1)"),
    ])
    fails(check_mean_pool_kv, buggy, "ACROSS groups", "CONSECUTIVE")


def test_check_mean_pool_kv_catches_keeping_the_first_head():
    buggy = solution("mean_pool_kv", replace=[("grouped.mean(dim=1)", "grouped[:, 0]")])
    fails(check_mean_pool_kv, buggy, "first head")


def test_check_mean_pool_kv_catches_pooling_over_head_dim():
    buggy = solution("mean_pool_kv", replace=[
        ("grouped.mean(dim=1)", "grouped.mean(dim=2, keepdim=True).expand_as(grouped)[:, 0]"),
    ])
    fails(check_mean_pool_kv, buggy, "head_dim")


def test_check_mean_pool_kv_catches_a_bias_left_unpooled():
    buggy = solution("mean_pool_kv", replace=[
        ("None if b_qkv is None else convert(b_qkv)",
         "None if b_qkv is None else b_qkv[: len(convert(b_qkv))]"),
    ])
    fails(check_mean_pool_kv, buggy, "pool the bias")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_convert_to_gqa_passes_on_solution(capsys):
    check_convert_to_gqa(solution(*CONVERT_PARTS)["convert_to_gqa"])
    assert capsys.readouterr().out.startswith("✅ TODO 4 convert_to_gqa: ")


def test_check_convert_to_gqa_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4 \\(convert_to_gqa\\) is not done yet"):
        check_convert_to_gqa(stub(4))


def test_check_convert_to_gqa_names_an_unfinished_mean_pool_kv():
    fns = solution(*CONVERT_PARTS)
    fns["convert_to_gqa"].__globals__["mean_pool_kv"] = stub(3)
    with pytest.raises(TodoNotDone, match="uses TODO 3"):
        check_convert_to_gqa(fns["convert_to_gqa"])


def test_check_convert_to_gqa_catches_loading_only_the_converted_tensors():
    fns = solution(*CONVERT_PARTS, replace=[
        ("    new.load_state_dict(state)\n",
         "    new.load_state_dict({k: v for k, v in state.items() if 'c_attn' in k}, strict=False)\n"),
    ])
    fails(check_convert_to_gqa, fns["convert_to_gqa"], "differs from the original", "copy every other tensor")


def test_check_convert_to_gqa_catches_a_model_that_is_modified_in_place():
    fns = solution(*CONVERT_PARTS, replace=[
        ("state = {key: value.clone() for key, value in model.state_dict().items()}",
         "state = model.state_dict()\n    model.transformer.wte.weight.data.mul_(1.0001)"),
    ])
    fails(check_convert_to_gqa, fns["convert_to_gqa"], "original model changed")


def test_convert_to_gqa_refuses_a_model_that_already_shares_kv_heads():
    convert = solution(*CONVERT_PARTS)["convert_to_gqa"]
    with pytest.raises(ValueError, match="needs an MHA model"):
        convert(GPT(GPTConfig(n_head=4, n_kv_head=2, d_model=16, n_layer=1)), 1)


# ----------------------------------------------------------------------------------------------- TODO 5

FORMULA = "per_token = 2 * config.n_layer * config.kv_heads * config.head_dim"


def test_check_kv_cache_bytes_passes_on_solution(capsys):
    check_kv_cache_bytes(solution("kv_cache_bytes"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 kv_cache_bytes: ")
    assert "2 GiB" in out


def test_check_kv_cache_bytes_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5 \\(kv_cache_bytes\\) is not done yet"):
        check_kv_cache_bytes(stub(5))


def test_check_kv_cache_bytes_catches_a_forgotten_factor_two():
    buggy = solution("kv_cache_bytes",
                     replace=[(FORMULA, "per_token = config.n_layer * config.kv_heads * config.head_dim")])
    fails(check_kv_cache_bytes, buggy, "factor 2", "keys AND values")


def test_check_kv_cache_bytes_catches_n_head_used_for_the_kv_heads():
    buggy = solution("kv_cache_bytes",
                     replace=[(FORMULA, FORMULA.replace("config.kv_heads", "config.n_head"))])
    fails(check_kv_cache_bytes, buggy, "you used n_head")


def test_check_kv_cache_bytes_catches_n_kv_head_that_is_none_for_mha():
    buggy = solution("kv_cache_bytes",
                     replace=[(FORMULA, FORMULA.replace("config.kv_heads", "config.n_kv_head"))])
    with pytest.raises(AssertionError, match="TypeError"):
        check_kv_cache_bytes(buggy)


def test_check_kv_cache_bytes_catches_elements_instead_of_bytes():
    buggy = solution("kv_cache_bytes", replace=[(" * BYTES_PER_ELEMENT[dtype]", "")])
    fails(check_kv_cache_bytes, buggy, "bytes per element")


def test_check_kv_cache_bytes_catches_missing_validation():
    buggy = solution("kv_cache_bytes", replace=[("if dtype not in BYTES_PER_ELEMENT:", "if False:")])
    with pytest.raises(AssertionError, match="dtype") as info:
        check_kv_cache_bytes(buggy)
    assert "hint:" in str(info.value)


def test_check_kv_cache_bytes_catches_a_validation_error_that_does_not_name_the_argument():
    buggy = solution("kv_cache_bytes",
                     replace=[('raise ValueError(f"{name}={value!r} must be a positive int")',
                                                 'raise ValueError("bad input")')])
    fails(check_kv_cache_bytes, buggy, "does not name the bad argument")
