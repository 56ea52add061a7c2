"""Mutation catalogue of 08_kv_speedrun (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.kv_speedrun import (
    check_cached_attention,
    check_forward_cached,
    check_generate,
    check_kv_cache_update,
    check_new_kv_cache,
    check_position_inputs,
)

P = "08_kv_speedrun"
FORWARD_PARTS = ("position_inputs", "project_qkv", "kv_cache_update", "cached_attention", "forward_cached")
GENERATE_PARTS = ("new_kv_cache", *FORWARD_PARTS, "generate")

# new_kv_cache
SHAPE = "shape = (batch_size, n_kv_head, max_len, head_dim)"
K_BUFS = '"k": [torch.zeros(shape, dtype=dtype) for _ in range(n_layer)]'
V_BUFS = '"v": [torch.zeros(shape, dtype=dtype) for _ in range(n_layer)]'
# kv_cache_update
END = "end = pos + k_new.size(2)"
WRITE_K = 'cache["k"][layer][:, :, pos:end] = k_new'
WRITE_V = 'cache["v"][layer][:, :, pos:end] = v_new'
READ = 'return cache["k"][layer][:, :, :end], cache["v"][layer][:, :, :end]'
# cached_attention
SCORES = "scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)"
MASK = 'scores = scores.masked_fill(k_pos > q_pos, float("-inf"))'
WEIGHTS = "weights = torch.softmax(scores, dim=-1)"
# position_inputs
POSITIONS = "positions = torch.arange(pos, pos + t)  # (t,)"
SINUSOID = "x = x + model.sinusoid[pos:pos + t]"
ROPE = "rope = rope_cos_sin(positions, c.head_dim, c.rope_base)"
# forward_cached
UPDATE = "k, v = update(cache, layer, k, v, pos)  # (B, nkv, pos + t, hs) each"
ADVANCE = '    cache["length"] = pos + t  # once'
HEAD = "return model.lm_head(model.transformer.ln_f(x))"
# generate
NEW_CACHE = "new_kv_cache(c.n_layer, B, c.kv_heads, T + max_new_tokens, c.head_dim)"
UNCACHED = "logits = model(idx)[0][:, -1]  # (B, V)"
PREFILL = "logits = forward_cached(model, idx, cache)[:, -1]  # prefill the prompt"
DECODE = "logits = forward_cached(model, idx[:, -1:], cache)[:, -1]  # the newest token only"
APPEND = "idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)"

CATALOGUE = [
    Todo(
        P,
        1,
        check_new_kv_cache,
        ("new_kv_cache",),
        mutants=[
            Mutant(
                "one buffer shared by every layer",
                "in-place",
                [(K_BUFS, '"k": [torch.zeros(shape, dtype=dtype)] * n_layer')],
                ("repeats ONE tensor",),
            ),
            Mutant(
                "dtype ignored",
                "argument",
                [('"k": [torch.zeros(shape, dtype=dtype) for _', '"k": [torch.zeros(shape) for _')],
                ("dtype=dtype",),
            ),
            Mutant(
                "positions on dim 1",
                "axis",
                [(SHAPE, "shape = (batch_size, max_len, n_kv_head, head_dim)")],
                ("positions on dim 2",),
            ),
            Mutant(
                "batch size hard-coded to 1",
                "argument",
                [(SHAPE, "shape = (1, n_kv_head, max_len, head_dim)")],
                ("(batch_size, n_kv_head, max_len, head_dim)",),
            ),
            Mutant(
                "dtype ignored for the values",
                "argument",
                [('"v": [torch.zeros(shape, dtype=dtype) for _', '"v": [torch.zeros(shape) for _')],
                ("dtype=dtype", "values"),
            ),
            Mutant(
                "keys and values share their buffers",
                "in-place",
                [
                    (
                        "    return {\n        " + K_BUFS + ",\n        " + V_BUFS + ",",
                        "    bufs = [torch.zeros(shape, dtype=dtype) for _ in range(n_layer)]\n"
                        '    return {\n        "k": bufs,\n        "v": bufs,',
                    )
                ],
                ("separate",),
            ),
            Mutant(
                "kv heads and head_dim swapped",
                "axis",
                [(SHAPE, "shape = (batch_size, head_dim, max_len, n_kv_head)")],
                ("(batch_size, n_kv_head, max_len, head_dim)",),
            ),
        ],
        correct=[
            Correct(
                "sizes as arguments, one comprehension for both",
                [
                    (
                        "    return {\n        " + K_BUFS + ",\n        " + V_BUFS + ",",
                        "    k, v = ([torch.zeros(*shape, dtype=dtype) for _ in range(n_layer)]\n"
                        "            for _ in range(2))\n"
                        '    return {\n        "k": k,\n        "v": v,',
                    )
                ],
            ),
            Correct(
                "new_zeros of a template",
                [(K_BUFS, '"k": [torch.empty(0, dtype=dtype).new_zeros(shape) for _ in range(n_layer)]')],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_kv_cache_update,
        ("kv_cache_update",),
        mutants=[
            Mutant(
                "write one position too far",
                "off-by-one",
                [
                    (WRITE_K, 'cache["k"][layer][:, :, pos + 1:end + 1] = k_new'),
                    (WRITE_V, 'cache["v"][layer][:, :, pos + 1:end + 1] = v_new'),
                ],
                ("off by one",),
            ),
            Mutant(
                "whole buffer returned",
                "shape",
                [(READ, 'return cache["k"][layer], cache["v"][layer]')],
                ("whole max_len=12 buffer", "zero rows"),
            ),
            Mutant(
                "only the new rows returned", "logic", [(READ, "return k_new, v_new")], ("only the new rows",)
            ),
            Mutant(
                "length advanced in every layer",
                "state",
                [(WRITE_V, WRITE_V + '\n    cache["length"] = end')],
                ("advances cache['length'] once",),
            ),
            Mutant(
                "every layer writes into layer 0",
                "logic",
                [
                    (WRITE_K, 'cache["k"][0][:, :, pos:end] = k_new'),
                    (WRITE_V, 'cache["v"][0][:, :, pos:end] = v_new'),
                ],
                ("every layer has its own buffers",),
            ),
            Mutant(
                "t read from the head dim",
                "axis",
                [(END, "end = pos + k_new.size(1)")],
                ("pos:pos + t", "dim 2"),
            ),
            Mutant(
                "written along the head dim",
                "axis",
                [
                    (WRITE_K, 'cache["k"][layer][:, pos:end] = k_new'),
                    (WRITE_V, 'cache["v"][layer][:, pos:end] = v_new'),
                ],
                ("pos:pos + t", "dim 2"),
            ),
            Mutant(
                "buffer replaced with torch.cat",
                "in-place",
                [
                    (WRITE_K, 'cache["k"][layer] = torch.cat([cache["k"][layer][:, :, :pos], k_new], dim=2)'),
                    (WRITE_V, 'cache["v"][layer] = torch.cat([cache["v"][layer][:, :, :pos], v_new], dim=2)'),
                ],
                ("in place",),
            ),
            Mutant(
                "keys written into the value buffer",
                "logic",
                [(WRITE_V, 'cache["v"][layer][:, :, pos:end] = k_new')],
                ("values go into cache['v']",),
            ),
            Mutant(
                "rows written from position 0",
                "positions",
                [
                    (WRITE_K, 'cache["k"][layer][:, :, :k_new.size(2)] = k_new'),
                    (WRITE_V, 'cache["v"][layer][:, :, :v_new.size(2)] = v_new'),
                ],
                ("position 0",),
            ),
        ],
        correct=[
            Correct(
                "narrow and copy_",
                [
                    (WRITE_K, 'cache["k"][layer].narrow(2, pos, end - pos).copy_(k_new)'),
                    (WRITE_V, 'cache["v"][layer].narrow(2, pos, end - pos).copy_(v_new)'),
                    (READ, 'return cache["k"][layer].narrow(2, 0, end), cache["v"][layer].narrow(2, 0, end)'),
                ],
            ),
            Correct(
                "index_copy_ by positions",
                [
                    (WRITE_K, 'cache["k"][layer].index_copy_(2, torch.arange(pos, end), k_new)'),
                    (WRITE_V, 'cache["v"][layer].index_copy_(2, torch.arange(pos, end), v_new)'),
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_cached_attention,
        ("cached_attention",),
        mutants=[
            Mutant(
                "top-left causal mask",
                "positions",
                [("q_pos = torch.arange(S - t, S)[:, None]", "q_pos = torch.arange(t)[:, None]")],
                ("aligned top-left", "S - t + i"),
            ),
            Mutant(
                "SDPA is_causal with fewer queries than keys",
                "positions",
                [
                    (
                        "    return weights @ v",
                        "    return F.scaled_dot_product_attention(q, k, v, is_causal=True)",
                    )
                ],
                ("aligned top-left",),
            ),
            Mutant(
                "no mask",
                "branch",
                [("    if t > 1:  # a single", "    if False:  # a single")],
                ("no causal mask",),
            ),
            Mutant(
                "KV heads tiled with repeat",
                "axis",
                [
                    ("k = k.repeat_interleave(group, dim=1)", "k = k.repeat(1, group, 1, 1)"),
                    ("v = v.repeat_interleave(group, dim=1)", "v = v.repeat(1, group, 1, 1)"),
                ],
                ("repeat_interleave",),
            ),
            Mutant("no scale", "scale", [(SCORES, "scores = q @ k.transpose(-2, -1)")], ("not scaled",)),
            Mutant(
                "own key masked",
                "off-by-one",
                [(MASK, MASK.replace("k_pos > q_pos", "k_pos >= q_pos"))],
                ("its own key",),
            ),
            Mutant(
                "softmax over the queries",
                "axis",
                [(WEIGHTS, "weights = torch.softmax(scores, dim=-2)")],
                ("not over the queries",),
            ),
            Mutant(
                "scaled by head_dim",
                "scale",
                [(SCORES, "scores = (q @ k.transpose(-2, -1)) / hs")],
                ("1 / sqrt(head_dim)",),
            ),
            Mutant(
                "group the wrong way round",
                "shape",
                [("group = nh // k.size(1)", "group = k.size(1) // nh")],
                ("n_head // n_kv_head",),
            ),
            Mutant(
                "masked with 0",
                "logic",
                [(MASK, "scores = scores.masked_fill(k_pos > q_pos, 0.0)")],
                ("-inf, not 0",),
            ),
        ],
        correct=[
            Correct(
                "SDPA with a bottom-right boolean mask",
                [
                    (
                        "    return weights @ v",
                        "    allowed = torch.arange(S)[None, :] <= torch.arange(S - t, S)[:, None]\n"
                        "    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)",
                    )
                ],
            ),
            Correct(
                "einsum, mask always applied, -1e9",
                [
                    (SCORES, 'scores = torch.einsum("bhqd,bhkd->bhqk", q, k) * hs**-0.5'),
                    ("    if t > 1:  # a single", "    if True:  # a single"),
                    (MASK, "scores = scores.masked_fill(k_pos > q_pos, -1e9)"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_position_inputs,
        ("position_inputs",),
        mutants=[
            Mutant(
                "positions restart at 0",
                "positions",
                [(POSITIONS, "positions = torch.arange(t)  # (t,)")],
                ("restarted at 0", "torch.arange(pos, pos + t)"),
            ),
            Mutant(
                "positions off by one",
                "off-by-one",
                [(POSITIONS, "positions = torch.arange(pos + 1, pos + t + 1)  # (t,)")],
                ("off by one",),
            ),
            Mutant(
                "RoPE angles from position 0",
                "positions",
                [
                    (
                        "rope = rope_cos_sin(positions, c.head_dim",
                        "rope = rope_cos_sin(torch.arange(t), c.head_dim",
                    )
                ],
                ("RoPE angles restarted",),
            ),
            Mutant(
                "sinusoid rows from 0",
                "positions",
                [(SINUSOID, "x = x + model.sinusoid[:t]")],
                ("restarted at 0",),
            ),
            Mutant(
                "rope tables for every model",
                "branch",
                [("    rope = None\n", "    rope = rope_cos_sin(positions, c.head_dim, c.rope_base)\n")],
                ("only RoPE models",),
            ),
            Mutant(
                "sinusoidal branch missing",
                "branch",
                [('    elif c.pos_encoding == "sinusoidal":\n        ' + SINUSOID + "  # (B, t, C)\n", "")],
                ("position embedding is missing",),
            ),
            Mutant(
                "rope_base ignored",
                "argument",
                [(ROPE, "rope = rope_cos_sin(positions, c.head_dim)")],
                ("config.rope_base",),
            ),
            Mutant(
                "float positions",
                "dtype",
                [(POSITIONS, "positions = torch.arange(pos, pos + t, dtype=torch.float32)  # (t,)")],
                ("integer indices",),
            ),
        ],
        correct=[
            Correct(
                "rows of the embedding tables",
                [
                    (
                        "x = x + model.transformer.wpe(positions)",
                        "x = x + model.transformer.wpe.weight[pos:pos + t]",
                    )
                ],
            ),
            Correct("arange(t) + pos", [(POSITIONS, "positions = torch.arange(t) + pos  # (t,)")]),
        ],
    ),
    Todo(
        P,
        5,
        check_forward_cached,
        FORWARD_PARTS,
        mutants=[
            Mutant(
                "length never advanced",
                "state",
                [(ADVANCE, "    # forgot  # once")],
                ("advance cache['length']",),
            ),
            Mutant(
                "keys cached without RoPE",
                "positions",
                [("q, k = apply_rope(q, *rope), apply_rope(k, *rope)", "q = apply_rope(q, *rope)")],
                ("logits (rope positions",),
            ),
            Mutant(
                "Post-LN feed-forward",
                "logic",
                [("x = x + block.mlp(block.ln_2(x))", "x = block.ln_2(x + block.mlp(x))")],
                ("prefill (no cache yet) must equal model(idx)",),
            ),
            Mutant(
                "length advanced in every layer",
                "state",
                [
                    (
                        UPDATE,
                        'k, v = update(cache, layer, k, v, cache["length"])\n        cache["length"] += t',
                    ),
                    (ADVANCE, "    # advanced in the loop  # once"),
                ],
                ("advance cache['length'] by t once",),
            ),
            Mutant("no final norm", "logic", [(HEAD, "return model.lm_head(x)")], ("ln_f",)),
            Mutant(
                "attends to the new keys only",
                "state",
                [(UPDATE, "update(cache, layer, k, v, pos)  # result unused")],
                ("whole prefix",),
            ),
            Mutant(
                "heads merged without the transpose",
                "axis",
                [
                    (
                        "block.attn.c_proj(y.transpose(1, 2).reshape(B, t, C))",
                        "block.attn.c_proj(y.reshape(B, t, C))",
                    )
                ],
                ("transpose(1, 2)",),
            ),
            Mutant(
                "positions from 0 every call",
                "positions",
                [
                    (
                        "x, rope = embed(model, idx, pos)  # (B, t, C)",
                        "x, rope = embed(model, idx, 0)  # (B, t, C)",
                    )
                ],
                ("positions pos",),
            ),
        ],
        correct=[
            Correct("length advanced with +=", [(ADVANCE, '    cache["length"] += t  # once')]),
            Correct(
                "blocks by index",
                [
                    (
                        "for layer, block in enumerate(model.transformer.h):",
                        "for layer in range(len(model.transformer.h)):\n"
                        "        block = model.transformer.h[layer]",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        6,
        check_generate,
        GENERATE_PARTS,
        mutants=[
            Mutant(
                "greedy on the first position",
                "positions",
                [(UNCACHED, "logits = model(idx)[0][:, 0]  # (B, V)")],
                ("uncached greedy tokens", "LAST position"),
            ),
            Mutant(
                "use_cache ignored",
                "argument",
                [(" if use_cache else None", "")],
                ("use_cache=False fed 16", "ignore use_cache"),
            ),
            Mutant(
                "cache kept across calls",
                "state",
                [
                    (
                        "cache = " + NEW_CACHE + " if use_cache else None",
                        "global _KEPT\n    if use_cache and '_KEPT' not in globals():\n"
                        "        _KEPT = " + NEW_CACHE + "\n"
                        "    cache = _KEPT if use_cache else None",
                    )
                ],
                ("second cached call", "new, empty cache"),
            ),
            Mutant(
                "cached path recomputes everything",
                "logic",
                [
                    (
                        DECODE,
                        'cache["length"] = 0\n            logits = forward_cached(model, idx, cache)[:, -1]',
                    )
                ],
                ("recomputes the whole sequence",),
            ),
            Mutant(
                "logits stacked on dim 0",
                "axis",
                [("torch.stack(steps, dim=1)", "torch.stack(steps, dim=0)")],
                ("stack the last-position logits",),
            ),
            Mutant(
                "prefill picks the first position",
                "positions",
                [(PREFILL, PREFILL.replace("[:, -1]", "[:, 0]"))],
                ("LAST position",),
            ),
            Mutant(
                "whole sequence fed into the cache every step",
                "state",
                [(DECODE, "logits = forward_cached(model, idx, cache)[:, -1]")],
                ("idx[:, -1:]",),
            ),
            Mutant(
                "one token too few",
                "off-by-one",
                [("for _ in range(max_new_tokens):", "for _ in range(max_new_tokens - 1):")],
                ("one token per step",),
            ),
            Mutant(
                "cache sized for the prompt only",
                "off-by-one",
                [(NEW_CACHE, "new_kv_cache(c.n_layer, B, c.kv_heads, T, c.head_dim)")],
                ("T + max_new_tokens",),
            ),
            Mutant(
                "sampling instead of greedy",
                "logic",
                [("logits.argmax(dim=-1, keepdim=True)", "torch.multinomial(torch.softmax(logits, -1), 1)")],
                ("argmax",),
            ),
        ],
        correct=[
            Correct(
                "argmax unsqueezed, cache one position shorter",
                [
                    (APPEND, "idx = torch.cat([idx, logits.argmax(-1)[:, None]], dim=1)"),
                    (NEW_CACHE, "new_kv_cache(c.n_layer, B, c.kv_heads, T + max_new_tokens - 1, c.head_dim)"),
                ],
            ),
            Correct(
                "last position by index, logits in a preallocated tensor",
                [
                    (UNCACHED, "logits = model(idx)[0][..., idx.size(1) - 1, :]  # (B, V)"),
                    (
                        "    return idx, torch.stack(steps, dim=1)",
                        "    out = torch.empty(B, max_new_tokens, c.vocab_size)\n"
                        "    for s, step in enumerate(steps):\n        out[:, s] = step\n    return idx, out",
                    ),
                ],
            ),
        ],
    ),
]
