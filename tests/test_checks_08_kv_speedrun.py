"""Tests for shared/checks/kv_speedrun.py.

Every check must pass on the solution notebook's own functions, printing its ✅ line, and say "not done
yet" on an untouched starter stub. The realistic bugs each check must catch with a hint aimed at them, and
the correct variants it must accept, are edits of the solution's source listed in the mutation catalogue,
tests/catalogue/c08_kv_speedrun.py
(run by tests/test_mutation_catalogue.py); this file keeps the references and the cases that need more
than an edit.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.kv_speedrun import (
    check_cached_attention,
    check_forward_cached,
    check_generate,
    check_kv_cache_update,
    check_new_kv_cache,
    check_position_inputs,
    empty_cache,
    reference_cached_attention,
)

solution = solution_loader("08_kv_speedrun")
FORWARD_PARTS = ["position_inputs", "project_qkv", "kv_cache_update", "cached_attention", "forward_cached"]
GENERATE_PARTS = ["new_kv_cache", *FORWARD_PARTS, "generate"]
UPDATE_K = 'cache["k"][layer][:, :, pos:end] = k_new'
UPDATE_V = 'cache["v"][layer][:, :, pos:end] = v_new'


# ----------------------------------------------------------------------------------------------- references


def test_empty_cache_has_separate_zero_buffers_per_layer():
    cache = empty_cache(3, 2, 4, 10, 8)
    assert cache["length"] == 0 and len(cache["k"]) == len(cache["v"]) == 3
    assert all(t.shape == (2, 4, 10, 8) and (t == 0).all() for t in cache["k"] + cache["v"])
    assert len({t.data_ptr() for t in cache["k"] + cache["v"]}) == 6


def test_reference_cached_attention_is_ordinary_causal_attention_on_the_last_rows():
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    full = F.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                          is_causal=True)
    assert torch.allclose(reference_cached_attention(q, k, v), full, atol=1e-6)
    assert torch.allclose(reference_cached_attention(q[:, :, -2:], k, v), full[:, :, -2:], atol=1e-6)


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_new_kv_cache_passes_on_solution(capsys):
    assert check_new_kv_cache(solution("new_kv_cache")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 new_kv_cache: 3 layers")


def test_check_new_kv_cache_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(new_kv_cache\\) is not done yet"):
        check_new_kv_cache(stub(1))


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_kv_cache_update_passes_on_solution(capsys):
    check_kv_cache_update(solution("kv_cache_update"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 kv_cache_update: 5 writes")


def test_check_kv_cache_update_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_kv_cache_update(stub(2))


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_cached_attention_passes_on_solution(capsys):
    check_cached_attention(solution("cached_attention"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 cached_attention: t = 7, 1 and 3 new queries")


def test_check_cached_attention_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(cached_attention\\) is not done yet"):
        check_cached_attention(stub(3))


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_position_inputs_passes_on_solution(capsys):
    check_position_inputs(solution("position_inputs"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 4 position_inputs: ")
    assert "learned, rope, sinusoidal, none" in out


def test_check_position_inputs_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_position_inputs(stub(4))


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_forward_cached_passes_on_solution(capsys):
    check_forward_cached(solution(*FORWARD_PARTS)["forward_cached"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 forward_cached: ")
    assert "RoPE GQA model" in out


def test_check_forward_cached_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5 \\(forward_cached\\) is not done yet"):
        check_forward_cached(stub(5))


def test_check_forward_cached_names_an_unfinished_position_inputs():
    fns = solution(*FORWARD_PARTS)
    fns["forward_cached"].__globals__["position_inputs"] = stub(4)
    with pytest.raises(TodoNotDone, match="uses TODO 4"):
        check_forward_cached(fns["forward_cached"])


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_generate_passes_on_solution(capsys):
    check_generate(solution(*GENERATE_PARTS)["generate"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 6 generate: 12 greedy tokens identical")
    assert "16 cached vs 126 uncached; a second call starts from an empty cache" in out


def test_check_generate_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6 \\(generate\\) is not done yet"):
        check_generate(stub(6))


