"""Tests for shared/checks/grouped_query.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, and (2) say "not
done yet" on an untouched starter stub, also when a TODO it builds on is unfinished. The realistic bugs,
textual edits of the solution, and the correct variants every check must accept are in the mutation catalogue
(tests/catalogue/c10_grouped_query.py).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import solution_loader, stub

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


def test_check_repeat_kv_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(repeat_kv\\) is not done yet"):
        check_repeat_kv(stub(1))


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


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_mean_pool_kv_passes_on_solution(capsys):
    check_mean_pool_kv(solution("mean_pool_kv"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 mean_pool_kv: ")


def test_check_mean_pool_kv_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(mean_pool_kv\\) is not done yet"):
        check_mean_pool_kv(stub(3))


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


def test_convert_to_gqa_refuses_a_model_that_already_shares_kv_heads():
    convert = solution(*CONVERT_PARTS)["convert_to_gqa"]
    with pytest.raises(ValueError, match="needs an MHA model"):
        convert(GPT(GPTConfig(n_head=4, n_kv_head=2, d_model=16, n_layer=1)), 1)


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_kv_cache_bytes_passes_on_solution(capsys):
    check_kv_cache_bytes(solution("kv_cache_bytes"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 kv_cache_bytes: ")
    assert "2 GiB" in out


def test_check_kv_cache_bytes_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5 \\(kv_cache_bytes\\) is not done yet"):
        check_kv_cache_bytes(stub(5))


