"""Tests for shared/checks/kv_speedrun.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: buffers aliased across layers, a write off by one, the whole buffer read
back zeros included, the length advanced per layer or never, a top-left causal mask, KV heads tiled in the
wrong order, positions that restart at 0, keys cached without RoPE, a cached path that recomputes the
whole sequence.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import fails, solution_loader, stub

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


def test_check_new_kv_cache_catches_one_buffer_shared_by_every_layer():
    buggy = solution("new_kv_cache", replace=[
        ('"k": [torch.zeros(shape, dtype=dtype) for _ in range(n_layer)]',
         '"k": [torch.zeros(shape, dtype=dtype)] * n_layer'),
    ])
    fails(check_new_kv_cache, buggy, "repeats ONE tensor")


def test_check_new_kv_cache_catches_an_ignored_dtype():
    buggy = solution("new_kv_cache", replace=[
        ('"k": [torch.zeros(shape, dtype=dtype) for _', '"k": [torch.zeros(shape) for _'),
    ])
    fails(check_new_kv_cache, buggy, "dtype=dtype")


def test_check_new_kv_cache_catches_positions_on_the_wrong_dimension():
    buggy = solution("new_kv_cache", replace=[
        ("shape = (batch_size, n_kv_head, max_len, head_dim)",
         "shape = (batch_size, max_len, n_kv_head, head_dim)"),
    ])
    fails(check_new_kv_cache, buggy, "positions on dim 2")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_kv_cache_update_passes_on_solution(capsys):
    check_kv_cache_update(solution("kv_cache_update"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 kv_cache_update: 5 writes")


def test_check_kv_cache_update_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_kv_cache_update(stub(2))


def test_check_kv_cache_update_catches_a_write_off_by_one():
    buggy = solution("kv_cache_update", replace=[
        (UPDATE_K, 'cache["k"][layer][:, :, pos + 1:end + 1] = k_new'),
        (UPDATE_V, 'cache["v"][layer][:, :, pos + 1:end + 1] = v_new'),
    ])
    fails(check_kv_cache_update, buggy, "off by one")


def test_check_kv_cache_update_catches_reading_the_whole_buffer():
    buggy = solution("kv_cache_update", replace=[
        ('return cache["k"][layer][:, :, :end], cache["v"][layer][:, :, :end]',
         'return cache["k"][layer], cache["v"][layer]'),
    ])
    fails(check_kv_cache_update, buggy, "whole max_len=12 buffer", "zero rows")


def test_check_kv_cache_update_catches_returning_only_the_new_rows():
    buggy = solution("kv_cache_update", replace=[
        ('return cache["k"][layer][:, :, :end], cache["v"][layer][:, :, :end]', "return k_new, v_new"),
    ])
    fails(check_kv_cache_update, buggy, "only the new rows")


def test_check_kv_cache_update_catches_advancing_the_length_in_every_layer():
    buggy = solution("kv_cache_update", replace=[(UPDATE_V, UPDATE_V + '\n    cache["length"] = end')])
    fails(check_kv_cache_update, buggy, "advances cache['length'] once")


def test_check_kv_cache_update_catches_every_layer_writing_into_layer_0():
    buggy = solution("kv_cache_update", replace=[
        (UPDATE_K, 'cache["k"][0][:, :, pos:end] = k_new'),
        (UPDATE_V, 'cache["v"][0][:, :, pos:end] = v_new'),
    ])
    fails(check_kv_cache_update, buggy, "every layer has its own buffers")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_cached_attention_passes_on_solution(capsys):
    check_cached_attention(solution("cached_attention"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 cached_attention: t = 7, 1 and 3 new queries")


def test_check_cached_attention_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(cached_attention\\) is not done yet"):
        check_cached_attention(stub(3))


def test_check_cached_attention_catches_a_top_left_causal_mask():
    buggy = solution("cached_attention", replace=[
        ("q_pos = torch.arange(S - t, S)[:, None]", "q_pos = torch.arange(t)[:, None]"),
    ])
    fails(check_cached_attention, buggy, "aligned top-left", "S - t + i")


def test_check_cached_attention_catches_sdpa_is_causal_with_fewer_queries_than_keys():
    def buggy(q, k, v):
        g = q.size(1) // k.size(1)
        return F.scaled_dot_product_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1),
                                              is_causal=True)

    fails(check_cached_attention, buggy, "aligned top-left")


def test_check_cached_attention_catches_a_missing_mask():
    buggy = solution("cached_attention", replace=[("    if t > 1:  # a single", "    if False:  # a single")])
    fails(check_cached_attention, buggy, "no causal mask")


def test_check_cached_attention_catches_kv_heads_tiled_in_the_wrong_order():
    buggy = solution("cached_attention", replace=[
        ("k = k.repeat_interleave(group, dim=1)", "k = k.repeat(1, group, 1, 1)"),
        ("v = v.repeat_interleave(group, dim=1)", "v = v.repeat(1, group, 1, 1)"),
    ])
    fails(check_cached_attention, buggy, "repeat_interleave")


def test_check_cached_attention_catches_a_missing_scale():
    buggy = solution("cached_attention", replace=[(" / math.sqrt(hs)", "")])
    fails(check_cached_attention, buggy, "not scaled")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_position_inputs_passes_on_solution(capsys):
    check_position_inputs(solution("position_inputs"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 4 position_inputs: ")
    assert "learned, rope, sinusoidal, none" in out


def test_check_position_inputs_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_position_inputs(stub(4))


def test_check_position_inputs_catches_positions_that_restart_at_zero():
    buggy = solution("position_inputs", replace=[
        ("positions = torch.arange(pos, pos + t)  # (t,)", "positions = torch.arange(t)  # (t,)"),
    ])
    fails(check_position_inputs, buggy, "restarted at 0", "torch.arange(pos, pos + t)")


def test_check_position_inputs_catches_positions_off_by_one():
    buggy = solution("position_inputs", replace=[
        ("positions = torch.arange(pos, pos + t)  # (t,)",
         "positions = torch.arange(pos + 1, pos + t + 1)  # (t,)"),
    ])
    fails(check_position_inputs, buggy, "off by one")


def test_check_position_inputs_catches_rope_angles_from_position_zero():
    buggy = solution("position_inputs", replace=[
        ("rope = rope_cos_sin(positions, c.head_dim", "rope = rope_cos_sin(torch.arange(t), c.head_dim"),
    ])
    fails(check_position_inputs, buggy, "RoPE angles restarted")


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


def test_check_forward_cached_catches_a_length_never_advanced():
    fns = solution(*FORWARD_PARTS, replace=[('    cache["length"] = pos + t  # once',
                                             "    # forgot  # once")])
    fails(check_forward_cached, fns["forward_cached"], "advance cache['length']")


def test_check_forward_cached_catches_keys_cached_without_rope():
    fns = solution(*FORWARD_PARTS, replace=[
        ("q, k = apply_rope(q, *rope), apply_rope(k, *rope)", "q = apply_rope(q, *rope)"),
    ])
    fails(check_forward_cached, fns["forward_cached"], "logits (rope positions")


def test_check_forward_cached_catches_a_post_ln_block_order():
    fns = solution(*FORWARD_PARTS, replace=[
        ("x = x + block.mlp(block.ln_2(x))", "x = block.ln_2(x + block.mlp(x))"),
    ])
    fails(check_forward_cached, fns["forward_cached"], "prefill (no cache yet) must equal model(idx)")


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_generate_passes_on_solution(capsys):
    check_generate(solution(*GENERATE_PARTS)["generate"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 6 generate: 12 greedy tokens identical")
    assert "16 cached vs 126 uncached; a second call starts from an empty cache" in out


def test_check_generate_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6 \\(generate\\) is not done yet"):
        check_generate(stub(6))


def test_check_generate_catches_greedy_on_the_first_position():
    fns = solution(*GENERATE_PARTS, replace=[
        ("logits = model(idx)[0][:, -1]  # (B, V)", "logits = model(idx)[0][:, 0]  # (B, V)"),
    ])
    fails(check_generate, fns["generate"], "uncached greedy tokens", "LAST position")


def test_check_generate_catches_a_function_that_ignores_use_cache():
    fns = solution(*GENERATE_PARTS, replace=[(" if use_cache else None", "")])
    fails(check_generate, fns["generate"], "use_cache=False fed 16", "ignore use_cache")


def test_check_generate_catches_a_cache_kept_across_calls():
    fns = solution(*GENERATE_PARTS, replace=[
        ("cache = new_kv_cache(c.n_layer, B, c.kv_heads, T + max_new_tokens, c.head_dim) if use_cache "
         "else None",
         "global _KEPT\n    if use_cache and '_KEPT' not in globals():\n"
         "        _KEPT = new_kv_cache(c.n_layer, B, c.kv_heads, T + max_new_tokens, c.head_dim)\n"
         "    cache = _KEPT if use_cache else None"),
    ])
    fails(check_generate, fns["generate"], "second cached call", "new, empty cache")


def test_check_generate_catches_a_cached_path_that_recomputes_everything():
    fns = solution(*GENERATE_PARTS, replace=[
        ("logits = forward_cached(model, idx[:, -1:], cache)[:, -1]  # the newest token only",
         'cache["length"] = 0\n            logits = forward_cached(model, idx, cache)[:, -1]'),
    ])
    fails(check_generate, fns["generate"], "recomputes the whole sequence")
