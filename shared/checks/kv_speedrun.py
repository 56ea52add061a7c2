"""Checks for project 08 (KV cache): one check per TODO of ``08_kv_speedrun/solution.ipynb``.

The learner's cache is a plain dict ``{"k": [per-layer tensors], "v": [...], "length": int}`` whose
buffers have shape (B, n_kv_head, max_len, head_dim), preallocated once (Pope et al. 2022, "Efficiently
Scaling Transformer Inference", §2). Each check compares against an independent reference:

* the cache against a ``torch.cat``-based cache that simply grows;
* cached attention against :func:`torch.nn.functional.scaled_dot_product_attention` with ``is_causal=True``
  run on the whole sequence (the last t rows of its output);
* positions, the cached forward pass and greedy generation against ``shared.model.GPT`` itself
  (its forward on the whole sequence, and its own ``generate``).

When an answer is wrong, the check recomputes the answers of the usual bugs (a write off by one, the whole
buffer returned zeros included, a top-left causal mask, positions that restart at 0, a length never
advanced, a cached path that recomputes the whole sequence) and names the one the learner's output matches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from shared.checks import (
    CheckFailed,
    assert_close,
    call,
    expect,
    expect_equal,
    fmt,
    hint_on_crash,
    learner_check,
    within,
)
from shared.checks.compare import CHECK_ATOL, diagnose, gen, randn

__all__ = [
    "empty_cache",
    "reference_cached_attention",
    "check_new_kv_cache",
    "check_kv_cache_update",
    "check_cached_attention",
    "check_position_inputs",
    "check_forward_cached",
    "check_generate",
]

def empty_cache(n_layer: int, batch_size: int, n_kv_head: int, max_len: int, head_dim: int) -> dict[str, Any]:
    """A correct empty cache in the notebook's format (the checks use it so one TODO never blames another)."""
    shape = (batch_size, n_kv_head, max_len, head_dim)
    return {
        "k": [torch.zeros(shape) for _ in range(n_layer)],
        "v": [torch.zeros(shape) for _ in range(n_layer)],
        "length": 0,
    }


def reference_cached_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA for t queries that are the LAST t of S positions: q (B, nh, t, hs), k, v (B, nkv, S, hs).

    Query i sits at position S − t + i and may attend to keys j <= S − t + i (the bottom-right aligned
    causal mask). KV head g serves query heads g·(nh/nkv) … (g+1)·(nh/nkv) − 1 (Ainslie et al. 2023).
    """
    t, S = q.size(2), k.size(2)
    group = q.size(1) // k.size(1)
    k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, nh, S, hs)
    allowed = torch.arange(S)[None, :] <= torch.arange(S - t, S)[:, None]  # (t, S)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)  # (B, nh, t, hs)


def _tiny_gpt(pos_encoding: str, n_kv_head: int | None = None, seed: int = 0, block_size: int = 32,
              rope_base: float = 10000.0):
    from shared.model import GPT, GPTConfig

    torch.manual_seed(seed)
    config = GPTConfig(vocab_size=17, block_size=block_size, n_layer=2, n_head=4, n_kv_head=n_kv_head,
                       d_model=32, pos_encoding=pos_encoding, rope_base=rope_base)
    model = GPT(config).eval()
    with torch.no_grad():  # a larger init than GPT-2's, so a wrong answer moves the logits visibly
        for p in model.parameters():
            if p.dim() == 2:
                p.mul_(10.0)
    return model


# ----------------------------------------------------------------------------------------------- TODO 1


@learner_check(1, "new_kv_cache")
def check_new_kv_cache(new_kv_cache: Callable[..., dict[str, Any]]) -> str:
    n_layer, B, nkv, max_len, hs = 3, 2, 2, 16, 8
    cache = call(new_kv_cache, n_layer, B, nkv, max_len, hs)
    expect(
        isinstance(cache, dict) and {"k", "v", "length"} <= set(cache),
        f"new_kv_cache must return a dict with keys 'k', 'v', 'length'; got {fmt(cache, 120)}",
        hint='return {"k": [...one tensor per layer...], "v": [...], "length": 0}',
    )
    for name in ("k", "v"):
        buffers = cache[name]
        expect(
            isinstance(buffers, list) and len(buffers) == n_layer,
            f"cache[{name!r}] must be a list with one tensor per layer ({n_layer}); got {fmt(buffers, 120)}",
            hint="one preallocated buffer per layer: [torch.zeros(shape) for _ in range(n_layer)]",
        )
        for layer, buf in enumerate(buffers):
            expect(isinstance(buf, torch.Tensor), f"cache[{name!r}][{layer}] is not a tensor")
            expect_equal(
                tuple(buf.shape), (B, nkv, max_len, hs), f"shape of cache[{name!r}][{layer}]",
                hint="buffers are (batch_size, n_kv_head, max_len, head_dim): positions on dim 2",
            )
            expect_equal(buf.dtype, torch.float32, f"dtype of cache[{name!r}][{layer}]",
                         hint="use the dtype argument (default torch.float32)")
            expect(bool((buf == 0).all()), f"cache[{name!r}][{layer}] is not all zeros",
                   hint="torch.zeros, not torch.empty: an empty buffer holds whatever was in memory")
    expect_equal(cache["length"], 0, "cache['length'] of a new cache",
                 hint="nothing is written yet: length 0")
    pointers = [t.data_ptr() for t in cache["k"] + cache["v"]]
    expect(
        len(set(pointers)) == len(pointers),
        f"the {2 * n_layer} buffers are not {2 * n_layer} separate tensors (shared memory)",
        hint="[torch.zeros(shape)] * n_layer repeats ONE tensor, so every layer (or k and v) would overwrite "
             "the same memory: build a new tensor per layer, e.g. "
             "[torch.zeros(shape) for _ in range(n_layer)]",
    )
    half = call(new_kv_cache, 1, 1, 1, 4, 2, dtype=torch.bfloat16)
    for name in ("k", "v"):
        expect_equal(half[name][0].dtype, torch.bfloat16,
                     f"dtype of cache[{name!r}][0] in a cache made with dtype=torch.bfloat16",
                     hint="pass dtype=dtype to torch.zeros, for the keys and for the values")
    nbytes = sum(t.numel() * t.element_size() for t in cache["k"] + cache["v"])
    formula = 2 * n_layer * B * nkv * max_len * hs * 4
    expect_equal(nbytes, formula, "bytes held by the cache vs 2·layers·B·kv_heads·max_len·head_dim·4")
    return (
        f"{n_layer} layers × (k, v) separate zero buffers of shape {(B, nkv, max_len, hs)}, length 0, "
        f"dtype honoured; {nbytes} bytes = 2·layers·B·kv_heads·max_len·head_dim·4"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


@learner_check(2, "kv_cache_update")
def check_kv_cache_update(kv_cache_update: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    n_layer, B, nkv, max_len, hs = 2, 2, 2, 12, 4
    cache = empty_cache(n_layer, B, nkv, max_len, hs)
    ref_k: list[torch.Tensor | None] = [None] * n_layer  # the torch.cat cache that grows
    ref_v: list[torch.Tensor | None] = [None] * n_layer
    chunks = [4, 1, 1, 3, 1]  # a prefill of 4, single decode steps, a chunk of 3
    pos, seed = 0, 100
    for t in chunks:
        for layer in range(n_layer):
            k_new, v_new = randn(B, nkv, t, hs, seed=seed), randn(B, nkv, t, hs, seed=seed + 1)
            seed += 2
            ref_k[layer] = k_new if ref_k[layer] is None else torch.cat([ref_k[layer], k_new], dim=2)
            ref_v[layer] = v_new if ref_v[layer] is None else torch.cat([ref_v[layer], v_new], dim=2)
            with hint_on_crash("if this is a shape mismatch: the t = k_new.size(2) new rows go into "
                               "positions pos .. pos + t - 1 of dim 2, buf[:, :, pos:pos + t] = k_new (dims: "
                               "batch, kv head, position, head_dim)"):
                result = call(kv_cache_update, cache, layer, k_new, v_new, pos)
            expect(
                isinstance(result, tuple) and len(result) == 2
                and all(isinstance(r, torch.Tensor) for r in result),
                f"kv_cache_update must return (k, v), two tensors; got {fmt(result, 120)}",
                hint="return the filled prefix of the layer's buffers: k_buf[:, :, "
                     ":pos + t], v_buf[:, :, :pos + t]",
            )
            k, v = result
            where = f"layer {layer}, writing {t} row(s) at pos={pos}"
            if k.shape != ref_k[layer].shape:
                hint = "return every key written so far, positions 0 .. pos + t - 1: k_buf[:, :, :pos + t]"
                if k.size(2) == max_len:
                    hint = (f"you returned the whole max_len={max_len} buffer, unwritten zero rows included: "
                            "attention would score those zero keys too; return only "
                            "the filled prefix [:, :, :pos + t]")
                elif k.size(2) == t:
                    hint = ("you returned only the new rows: attention needs every cached key too, the "
                            "prefix [:, :, :pos + t] of the buffer")
                raise CheckFailed(
                    f"shape of the returned keys ({where})\n   expected: {tuple(ref_k[layer].shape)}\n"
                    f"   got:      {tuple(k.shape)}\n   hint: {hint}"
                )
            buf = cache["k"][layer]
            hint = "write the t new rows at positions pos .. pos + t - 1: buf[:, :, pos:pos + t] = k_new"
            if pos + t < max_len and torch.equal(buf[:, :, pos + 1:pos + t + 1], k_new):
                hint = ("you wrote one position too far (off by one): the first new row belongs at index "
                        "pos, the current length, not pos + 1")
            elif pos > 0 and torch.equal(buf[:, :, :t], k_new):
                hint = ("you wrote the new rows at position 0: they go at positions pos .. pos + t - 1, "
                        "after the rows already cached (buf[:, :, pos:pos + t] = k_new)")
            elif layer > 0 and torch.equal(cache["k"][0][:, :, pos:pos + t], k_new):
                hint = "every layer has its own buffers: write into cache['k'][layer], not cache['k'][0]"
            assert_close(k, ref_k[layer], f"keys after {where} vs a torch.cat cache", hint=hint, atol=0,
                         rtol=0)
            assert_close(v, ref_v[layer], f"values after {where} vs a torch.cat cache",
                         hint="values go into cache['v'][layer] exactly as keys go into cache['k'][layer]",
                         atol=0, rtol=0)
            expect_equal(
                cache["length"], pos, f"cache['length'] after {where}",
                hint="kv_cache_update only writes and reads; the forward pass advances cache['length'] once, "
                     "after the last layer (every layer writes the same positions)",
            )
        pos += t
        cache["length"] = pos  # what the forward pass does after its last layer
    for layer in range(n_layer):
        expect(
            bool((cache["k"][layer][:, :, pos:] == 0).all())
            and bool((cache["v"][layer][:, :, pos:] == 0).all()),
            f"layer {layer}: rows at positions >= {pos} were written, but only {pos} positions exist",
            hint="write exactly positions pos .. pos + t - 1 and nothing else",
        )
        expect(
            cache["k"][layer].shape == (B, nkv, max_len, hs)
            and torch.equal(cache["k"][layer][:, :, :pos], ref_k[layer]),
            f"layer {layer}: the buffer itself does not hold the keys",
            hint="write in place into the preallocated buffer (slice assignment), do not replace it",
        )
    return (
        f"{len(chunks)} writes (a prefill of 4, single steps, a chunk of 3) into {n_layer} layers give "
        f"exactly the keys/values of a torch.cat cache, prefix-only reads of shape (B, nkv, pos + t, hs), "
        f"rows past the length untouched"
    )


# ----------------------------------------------------------------------------------------------- TODO 3


def _attention_hint(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    t, S, hs = q.size(2), k.size(2), q.size(3)
    group = q.size(1) // k.size(1)
    kr, vr = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    allowed = torch.arange(S)[None] <= torch.arange(S - t, S)[:, None]  # (t, S), bottom-right aligned
    scores = q @ kr.transpose(-2, -1) / hs**0.5  # (B, nh, t, S)
    top_left = torch.ones(t, S, dtype=torch.bool).tril()
    candidates = [
        (F.scaled_dot_product_attention(q, kr, vr, attn_mask=top_left),
         "your causal mask is aligned top-left (tril of a (t, S) matrix, or SDPA's is_causal with t != S): "
         "the t queries are the LAST t positions, so query i sits at position S - t "
         "+ i and sees keys j <= S - t + i"),
        (F.scaled_dot_product_attention(q, kr, vr),
         "no causal mask: with t > 1 new tokens, query i must not see the later new keys j > S - t + i"),
        (F.scaled_dot_product_attention(q, kr, vr, attn_mask=allowed, scale=1.0),
         "the scores are not scaled: divide q·k by sqrt(head_dim)"),
        (F.scaled_dot_product_attention(q, kr, vr, attn_mask=allowed, scale=1.0 / hs),
         "scale the scores by 1 / sqrt(head_dim), not 1 / head_dim"),
        (torch.softmax(scores.masked_fill(torch.arange(S)[None] >= torch.arange(S - t, S)[:, None],
                                          float("-inf")), dim=-1) @ vr,
         "each query must see its own key too: mask the keys j > S - t + i (k_pos > q_pos), not j >= ..."),
        (torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-2) @ vr,
         "softmax over the keys, dim=-1 (each query's weights sum to 1), not over the queries"),
        (torch.softmax(scores.masked_fill(~allowed, 0.0), dim=-1) @ vr,
         "mask with -inf, not 0: a masked score of 0 still gets exp(0) of the weight"),
    ]
    if group > 1:
        tiled_k, tiled_v = k.repeat(1, group, 1, 1), v.repeat(1, group, 1, 1)
        candidates.append((
            F.scaled_dot_product_attention(
                q, tiled_k, tiled_v, attn_mask=torch.arange(S)[None] <= torch.arange(S - t, S)[:, None]
            ),
            "query head h reads KV head h // (n_head / n_kv_head): use repeat_interleave(group, dim=1), "
            "not repeat (which tiles the KV heads in the wrong order)",
        ))
    return diagnose(got, candidates, f"softmax(q kᵀ / sqrt({hs}) + mask) v with the mask j <= S - t + i, "
                    "after repeating the KV heads for grouped-query attention")


@learner_check(3, "cached_attention")
def check_cached_attention(cached_attention: Callable[..., torch.Tensor]) -> str:
    B, nh, S, hs = 2, 4, 7, 8
    worst = 0.0
    for nkv in (2, 4):  # grouped-query (two query heads per KV head) and plain multi-head
        group = nh // nkv
        q_full = randn(B, nh, S, hs, seed=10 + nkv)
        k_full, v_full = randn(B, nkv, S, hs, seed=20 + nkv), randn(B, nkv, S, hs, seed=30 + nkv)
        full = F.scaled_dot_product_attention(
            q_full, k_full.repeat_interleave(group, 1), v_full.repeat_interleave(group, 1), is_causal=True
        )  # (B, nh, S, hs): ordinary causal attention over the whole sequence
        for t in (S, 1, 3):
            name = {S: "prefill t=S", 1: "decode t=1", 3: "chunk t=3 after 4 cached"}[t]
            q = q_full[:, :, S - t:]  # (B, nh, t, hs): the newest t queries
            with hint_on_crash("if this is a shape mismatch: repeat each KV head group = n_head // n_kv_head "
                               "times along dim 1 (k.repeat_interleave(group, dim=1)) before q @ kᵀ"):
                got = call(cached_attention, q, k_full, v_full)
            expect(isinstance(got, torch.Tensor),
                   f"cached_attention must return a tensor; got {fmt(got, 80)}")
            hint = _attention_hint(got, q, k_full, v_full) if got.shape == (B, nh, t, hs) else (
                "the output has one row per query and per query head: (B, n_head, t, head_dim)")
            err = assert_close(
                got, full[:, :, S - t:], f"{name}, n_kv_head={nkv}: vs full causal SDPA on all {S} positions",
                hint=hint,
            )
            worst = max(worst, err)
    return (
        f"t = {S}, 1 and 3 new queries over {S} keys, 4 and 2 KV heads: equal to the last t rows of "
        f"F.scaled_dot_product_attention(is_causal=True) on the whole sequence, {within(worst, CHECK_ATOL)}"
    )


# ----------------------------------------------------------------------------------------------- TODO 4


@learner_check(4, "position_inputs")
def check_position_inputs(position_inputs: Callable[..., tuple[torch.Tensor, Any]]) -> str:
    from shared.positions import rope_cos_sin

    B, t = 2, 3
    idx = torch.randint(17, (B, t), generator=gen(40))
    tried = []
    for pos_encoding in ("learned", "rope", "sinusoidal", "none"):
        model = _tiny_gpt(pos_encoding, rope_base=500.0)  # not the default base: the config's must be used
        c = model.config
        for pos in (0, 5):
            with torch.no_grad(), hint_on_crash(
                "if wpe complains about the index type: positions are integer indices, "
                "torch.arange(pos, pos + t) (int64), not floats"
            ):
                result = call(position_inputs, model, idx, pos)
            expect(
                isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor),
                f"position_inputs must return (x, rope); got {fmt(result, 120)}",
                hint="return x, rope  (rope is None unless pos_encoding == 'rope')",
            )
            x, rope = result
            positions = torch.arange(pos, pos + t)
            with torch.no_grad():
                tok = model.transformer.wte(idx)  # (B, t, C)
                if pos_encoding == "learned":
                    expected = tok + model.transformer.wpe(positions)
                    restart = tok + model.transformer.wpe(torch.arange(t))
                    shifted = tok + model.transformer.wpe(positions + 1)
                elif pos_encoding == "sinusoidal":
                    expected = tok + model.sinusoid[pos:pos + t]
                    restart = tok + model.sinusoid[:t]
                    shifted = tok + model.sinusoid[pos + 1:pos + t + 1]
                else:
                    expected = restart = shifted = tok
            where = f"pos_encoding={pos_encoding!r}, pos={pos}, t={t}"
            hint = "x = wte(idx) plus the position embedding of positions pos .. pos + t - 1"
            if pos > 0 and torch.allclose(x, restart):
                hint = ("the positions restarted at 0: the new tokens come after the cached ones, so they "
                        "sit at positions pos, pos + 1, ..., pos + t - 1 (torch.arange(pos, pos + t))")
            elif torch.allclose(x, shifted):
                hint = "positions are off by one: the first new token is at position pos, not pos + 1"
            elif pos_encoding in ("learned", "sinusoidal") and torch.allclose(x, tok):
                hint = (f"the position embedding is missing for pos_encoding={pos_encoding!r}: add "
                        + ("wpe(positions)" if pos_encoding == "learned" else "model.sinusoid[pos:pos + t]"))
            assert_close(x, expected, f"x ({where})", hint=hint)
            if pos_encoding != "rope":
                expect(rope is None,
                       f"rope must be None for pos_encoding={pos_encoding!r}; got {fmt(rope, 80)}",
                       hint="only RoPE models rotate q and k; return None otherwise")
                continue
            expect(
                isinstance(rope, tuple) and len(rope) == 2,
                f"rope must be a (cos, sin) tuple for a RoPE model ({where}); got {fmt(rope, 80)}",
                hint="rope = rope_cos_sin(positions, head_dim, rope_base)",
            )
            cos, sin = rope_cos_sin(positions, c.head_dim, c.rope_base)
            hint = "cos, sin = rope_cos_sin(torch.arange(pos, pos + t), config.head_dim, config.rope_base)"
            same_shape = isinstance(rope[0], torch.Tensor) and rope[0].shape == cos.shape
            if pos > 0 and same_shape and torch.allclose(
                rope[0], rope_cos_sin(torch.arange(t), c.head_dim, c.rope_base)[0]
            ):
                hint = ("the RoPE angles restarted at position 0: a new token at position pos must be "
                        "rotated by pos·θ, so use torch.arange(pos, pos + t)")
            elif same_shape and torch.allclose(rope[0], rope_cos_sin(positions, c.head_dim)[0]):
                hint = ("use the model's RoPE base, config.rope_base (500 here), not the default 10000: "
                        "rope_cos_sin(positions, config.head_dim, config.rope_base)")
            assert_close(rope[0], cos, f"RoPE cos ({where})", hint=hint)
            assert_close(rope[1], sin, f"RoPE sin ({where})", hint=hint)
        tried.append(pos_encoding)
    return (f"token + position inputs at positions pos..pos+t-1 (pos = 0 and 5) for {', '.join(tried)} "
            "positions")


# ----------------------------------------------------------------------------------------------- TODO 5


@learner_check(5, "forward_cached")
def check_forward_cached(forward_cached: Callable[..., torch.Tensor]) -> str:
    B, T = 2, 12
    chunks = [5, 1, 1, 3, 2]
    idx = torch.randint(17, (B, T), generator=gen(50))
    worst = 0.0
    for pos_encoding, nkv in (("learned", None), ("rope", 2)):
        model = _tiny_gpt(pos_encoding, n_kv_head=nkv)
        c = model.config
        cache = empty_cache(c.n_layer, B, c.kv_heads, 16, c.head_dim)
        with torch.no_grad():
            expected = model(idx)[0]  # (B, T, V): the whole sequence, no cache
        pos = 0
        for t in chunks:
            with torch.no_grad():
                logits = call(forward_cached, model, idx[:, pos:pos + t], cache)
            expect(
                isinstance(logits, torch.Tensor) and logits.shape == (B, t, c.vocab_size),
                f"forward_cached on {t} token(s) must return logits of shape {(B, t, c.vocab_size)}; "
                f"got {fmt(getattr(logits, 'shape', logits), 80)}",
                hint="return the logits of every new position: lm_head(ln_f(x)), shape (B, t, vocab_size)",
            )
            expect_equal(
                cache["length"], pos + t, f"cache['length'] after feeding {t} token(s) at pos={pos}",
                hint="advance cache['length'] by t once, after the last layer has written its keys/values "
                     "(forgetting it makes the next token overwrite this one's cache rows)",
            )
            where = f"{pos_encoding} positions, n_kv_head={c.kv_heads}, chunk of {t} at pos={pos}"
            hint = ("compare with the model's own forward: positions pos..pos+t-1, write k/v of every layer "
                    "into the cache before attending, attend with cached_attention to the whole prefix")
            if pos == 0:
                hint = ("the prefill (no cache yet) must equal model(idx): check the block order (pre-LN), "
                        "RoPE on both q and k, the head merge y.transpose(1, 2).reshape(B, t, C), the final "
                        "norm ln_f and lm_head")
            err = assert_close(logits, expected[:, pos:pos + t], f"logits ({where}) vs model(whole sequence)",
                               hint=hint)
            worst = max(worst, err)
            pos += t
    return (
        f"prefill 5, two single tokens, chunks of 3 and 2: the logits equal model(whole sequence) for a "
        f"learned-position MHA model and a RoPE GQA model, {within(worst, 1e-5)}; length advanced each call"
    )


# ----------------------------------------------------------------------------------------------- TODO 6


CACHE_CRASH_HINT = ("if this is a shape mismatch in the cache: make the cache hold T + max_new_tokens "
                    "positions (new_kv_cache(..., max_len=T + max_new_tokens, ...)), prefill the prompt once "
                    "and then feed only the newest token each step, "
                    "forward_cached(model, idx[:, -1:], cache)")


@learner_check(6, "generate")
def check_generate(generate: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    B, P, n = 2, 5, 12
    model = _tiny_gpt("learned", block_size=40, seed=3)
    prompt = torch.randint(17, (B, P), generator=gen(60))
    with torch.no_grad():
        expected_tokens = model.generate(prompt, n, temperature=0.0)  # shared.model's own greedy decoding
        expected_logits = model(expected_tokens[:, :-1])[0][:, P - 1:]  # (B, n, V)
    fed: list[int] = []
    hook = model.transformer.wte.register_forward_hook(lambda m, inp, out: fed.append(inp[0].size(1)))
    results = {}
    try:
        for use_cache in (True, False):
            fed.clear()
            with torch.no_grad(), hint_on_crash(CACHE_CRASH_HINT if use_cache else
                                                "use_cache=False: logits = model(idx)[0][:, -1] every step"):
                out = call(generate, model, prompt, n, use_cache=use_cache)
            expect(
                isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out),
                f"generate must return (tokens, logits); got {fmt(out, 120)}",
                hint="tokens (B, T + max_new_tokens) and the logits of each step stacked: (B, "
                     "max_new_tokens, V)",
            )
            results[use_cache] = (out, sum(fed))
    finally:
        hook.remove()
    worst = 0.0
    for use_cache in (True, False):
        (tokens, logits), n_fed = results[use_cache]
        mode = "cached" if use_cache else "uncached"
        expect_equal(tuple(tokens.shape), (B, P + n), f"{mode}: shape of tokens",
                     hint="append one token per step to the prompt: (B, T + max_new_tokens)")
        expect_equal(tuple(logits.shape), (B, n, model.config.vocab_size), f"{mode}: shape of logits",
                     hint="stack the last-position logits of each step: (B, max_new_tokens, vocab_size)")
        first_bad = (tokens != expected_tokens).any(0).nonzero()
        hint = ("greedy picks argmax of the LAST position's logits each step (logits[:, -1]); compare with "
                "shared.model.GPT.generate(temperature=0)")
        if len(first_bad):
            hint = f"first differing token at position {int(first_bad[0])}; " + hint
            if use_cache and int(first_bad[0]) > P and torch.equal(results[False][0][0], expected_tokens):
                hint = (f"the cached tokens first differ at position {int(first_bad[0])}, after the "
                        "prefill's token was right and while use_cache=False is right: the decode steps go "
                        "wrong. Feed only the newest token each step, forward_cached(model, idx[:, -1:], "
                        "cache), into a cache of T + max_new_tokens positions (writing past the end of a "
                        "smaller cache silently drops the newest keys)")
        expect_equal(tokens, expected_tokens, f"{mode} greedy tokens vs shared.model.GPT.generate", hint=hint)
        worst = max(worst, assert_close(logits, expected_logits,
                                        f"{mode} logits of every step vs model(tokens)",
                                        hint="return the logits the token was chosen from, one row per step"))
        if use_cache:
            expect(
                n_fed <= P + n,
                f"the cached path fed {n_fed} token positions through the model for a {P}-token prompt and "
                f"{n} "
                f"new tokens; an incremental cache needs at most {P + n}",
                hint="your cached path recomputes the whole sequence: prefill the prompt once, then feed "
                     "only the newest token each step (forward_cached(model, idx[:, -1:], cache))",
            )
            cached_fed = n_fed
        else:
            uncached_fed = n_fed
    every_step = sum(P + s for s in range(n))  # the whole sequence at every step
    expect(
        uncached_fed == every_step,
        f"use_cache=False fed {uncached_fed} token positions through the model; re-running the whole "
        f"sequence at each of the {n} steps feeds {every_step}",
        hint="use_cache=False is the baseline the speed-up is measured against: run model(idx) on the whole "
             "sequence every step and make no cache (your function seems to ignore use_cache)"
             if uncached_fed == cached_fed else
             "use_cache=False: logits = model(idx)[0][:, -1] on the whole sequence, every step",
    )
    # a second cached call with another prompt (one sequence, 3 tokens) must start from an empty cache
    prompt2 = torch.randint(17, (1, 3), generator=gen(61))
    with torch.no_grad():
        expected2 = model.generate(prompt2, 6, temperature=0.0)
        with hint_on_crash("this was the second cached call; make a new, empty cache inside generate for "
                           "every call (a cache kept from the first call still holds its 17 positions)"):
            second = call(generate, model, prompt2, 6, use_cache=True)
    got2 = second[0] if isinstance(second, tuple) and len(second) == 2 else second
    expect_equal(got2, expected2, "a second cached call, new prompt (1 × 3 tokens, 6 new): greedy tokens",
                 hint="make a new, empty cache inside generate for every call; a cache kept from the first "
                      "call still holds that call's keys and values")
    return (
        f"{n} greedy tokens identical with and without the cache and to shared.model's generate, "
        f"{within(worst, 1e-5, 'logits max abs err')}; tokens fed through the model: {cached_fed} cached vs "
        f"{uncached_fed} uncached; a second call starts from an empty cache"
    )
