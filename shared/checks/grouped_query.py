"""Checks for project 10 (grouped-query attention): one check per TODO of ``10_grouped_query/solution.ipynb``.

The references are PyTorch's and the shared model's own code, so that what the learner builds is exactly
what ``shared.model.GPT`` runs with ``n_kv_head``:

- grouped-query attention (Ainslie et al. 2023, "GQA: Training Generalized Multi-Query Transformer Models
  from Multi-Head Checkpoints", §2.2): ``n_head`` query heads share ``n_kv_head`` key/value heads, query
  head h reads KV head ``h // (n_head / n_kv_head)`` — the order of ``torch.repeat_interleave`` — compared
  with :func:`torch.nn.functional.scaled_dot_product_attention` on explicitly repeated heads and with
  :class:`shared.model.CausalSelfAttention` carrying the same weights (fused ``c_attn`` rows
  ``[q (nh·hs) | k (nkv·hs) | v (nkv·hs)]``);
- checkpoint conversion (Ainslie et al. 2023, §2.1): the key and value projection heads of each group are
  mean-pooled, the query projection is kept;
- the KV-cache size 2 · n_layer · n_kv_head · head_dim · T · B · bytes-per-element, compared with the bytes
  of real :class:`shared.model.KVCache` tensors and with published model shapes (Llama 2, Touvron et al.
  2023: 7B has 32 layers, 32 KV heads of size 128; 70B has 80 layers and 8 KV heads of size 128).

When an answer is wrong, the checks recompute the answer of each well-known bug (heads repeated in the
wrong order, groups pooled across instead of within, the factor 2 for K and V forgotten, ``n_head`` used
instead of the KV heads …) and name the one the learner's output matches.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

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
from shared.checks.compare import diagnose, gen, randn
from shared.kv_cache import KVCache
from shared.model import GPT, CausalSelfAttention, GPTConfig

__all__ = [
    "BYTES_PER_ELEMENT",
    "TORCH_DTYPES",
    "reference_repeat_kv",
    "reference_gqa",
    "reference_mean_pool_kv",
    "reference_kv_cache_bytes",
    "check_repeat_kv",
    "check_grouped_query_attention",
    "check_mean_pool_kv",
    "check_convert_to_gqa",
    "check_kv_cache_bytes",
]

BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
TORCH_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.int8}
GIB = 2**30


# ----------------------------------------------------------------------------------------------- references


def reference_repeat_kv(kv: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, nkv, S, hs) -> (B, nkv·n_rep, S, hs); head j is KV head j // n_rep (``repeat_interleave``)."""
    return kv.repeat_interleave(n_rep, dim=1)


def reference_gqa(
    x: torch.Tensor,
    w_qkv: torch.Tensor,
    b_qkv: torch.Tensor | None,
    w_o: torch.Tensor,
    b_o: torch.Tensor | None,
    n_head: int,
    n_kv_head: int,
) -> torch.Tensor:
    """Causal GQA built on SDPA with the KV heads explicitly repeated: x (B, T, C) -> (B, T, C)."""
    B, T, C = x.shape
    hs = C // n_head
    q, k, v = F.linear(x, w_qkv, b_qkv).split([n_head * hs, n_kv_head * hs, n_kv_head * hs], dim=-1)
    q = q.view(B, T, n_head, hs).transpose(1, 2)  # (B, nh, T, hs)
    # (B, nh, T, hs)
    k = k.view(B, T, n_kv_head, hs).transpose(1, 2).repeat_interleave(n_head // n_kv_head, dim=1)
    # (B, nh, T, hs)
    v = v.view(B, T, n_kv_head, hs).transpose(1, 2).repeat_interleave(n_head // n_kv_head, dim=1)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
    return F.linear(y.transpose(1, 2).reshape(B, T, C), w_o, b_o)  # (B, T, C)


def _pool(rows: torch.Tensor, n_kv_head: int, hs: int, how: str = "mean") -> torch.Tensor:
    """Pool nh·hs projection rows (nh·hs, ...) into nkv·hs rows, group g = heads g·r … g·r + r − 1."""
    r = rows.shape[0] // (hs * n_kv_head)
    rest = rows.shape[1:]
    if how == "strided":  # the bug: group g = heads g, g + nkv, g + 2·nkv, …
        return rows.reshape(r, n_kv_head, hs, *rest).mean(dim=0).reshape(n_kv_head * hs, *rest)
    grouped = rows.reshape(n_kv_head, r, hs, *rest)  # (nkv, r, hs, ...)
    if how == "first":
        pooled = grouped[:, 0]
    elif how == "sum":
        pooled = grouped.sum(dim=1)
    elif how == "head_dim":  # the bug: averaged over the rows of each head instead of across heads
        pooled = grouped.mean(dim=2, keepdim=True).expand_as(grouped)[:, 0]
    else:
        pooled = grouped.mean(dim=1)  # (nkv, hs, ...)
    return pooled.reshape(n_kv_head * hs, *rest)


def reference_mean_pool_kv(
    w_qkv: torch.Tensor, b_qkv: torch.Tensor | None, n_head: int, n_kv_head: int, how: str = "mean"
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """MHA ``c_attn`` (3·nh·hs, C) -> GQA ``c_attn`` ((nh + 2·nkv)·hs, C):
    q kept, k and v mean-pooled per group."""
    hs = w_qkv.shape[0] // (3 * n_head)

    def convert(t: torch.Tensor) -> torch.Tensor:
        q, k, v = t.split(n_head * hs, dim=0)
        return torch.cat([q, _pool(k, n_kv_head, hs, how), _pool(v, n_kv_head, hs, how)], dim=0)

    return convert(w_qkv), None if b_qkv is None else convert(b_qkv)


def reference_kv_cache_bytes(config: GPTConfig, seq_len: int, batch_size: int = 1,
                             dtype: str = "bf16") -> int:
    """2 (K and V) · n_layer · kv_heads · head_dim · seq_len · batch_size · bytes per element."""
    return (
        2 * config.n_layer * config.kv_heads * config.head_dim * seq_len * batch_size
        * BYTES_PER_ELEMENT[dtype]
    )


# ----------------------------------------------------------------------------------------------- TODO 1

WRONG_ORDER = (
    "the heads are repeated in the wrong order: this is .repeat (tiling: kv0, kv1, kv0, kv1, ...). Query "
    "head h must read KV head h // n_rep, i.e. each KV head repeated n_rep times in a row (kv0, kv0, kv1, "
    "kv1, ...), which is torch.repeat_interleave(n_rep, dim=1) and what shared.model does"
)


@learner_check(1, "repeat_kv")
def check_repeat_kv(repeat_kv: Callable[[torch.Tensor, int], torch.Tensor]) -> str:
    B, nkv, S, hs = 2, 3, 4, 5
    kv = torch.arange(B * nkv * S * hs, dtype=torch.float32).view(B, nkv, S, hs)  # (B, nkv, S, hs)
    for n_rep in (2, 4, 1):
        with hint_on_crash("after .expand the tensor is not contiguous: flatten it with .reshape, not .view; "
                           "or use kv.repeat_interleave(n_rep, dim=1)"):
            got = call(repeat_kv, kv, n_rep)
        expected = reference_repeat_kv(kv, n_rep)
        if isinstance(got, torch.Tensor) and got.shape != expected.shape:
            axis_names = {0: "batch axis (dim 0)", 2: "time axis (dim 2)", 3: "head-size axis (dim 3)"}
            wrong = [name for d, name in axis_names.items()
                     if got.shape == kv.repeat_interleave(n_rep, d).shape]
            shape_hint = (f"you repeated along the {wrong[0]}; repeat the heads, dim 1" if wrong and n_rep > 1
                          else f"the output has nkv · n_rep = {nkv} · {n_rep} = {nkv * n_rep} heads: use the "
                               "n_rep argument (the check passes n_rep = 2, 4 and 1)")
            expect_equal(tuple(got.shape), tuple(expected.shape),
                         f"repeat_kv(kv, {n_rep}) for kv (2, 3, 4, 5): shape", hint=shape_hint)
        hint = diagnose(
            got,
            [
                (kv.repeat(1, n_rep, 1, 1), WRONG_ORDER),
                (kv.repeat_interleave(n_rep, dim=2),
                 "you repeated along the time axis (dim 2); repeat the heads, dim 1"),
            ],
            "out[:, j] must equal kv[:, j // n_rep]: kv.repeat_interleave(n_rep, dim=1), or "
            "kv[:, :, None].expand(B, nkv, n_rep, S, hs).reshape(B, nkv * n_rep, S, hs)",
        )
        same_shape = isinstance(got, torch.Tensor) and got.shape == expected.shape
        if n_rep > 1 and same_shape and not torch.equal(got, expected):
            raise CheckFailed(
                f"repeat_kv(kv, {n_rep}) for kv (2, 3, 4, 5): wrong head order\n"
                "   expected head order (KV head of each query head): "
                f"{[j // n_rep for j in range(nkv * n_rep)]}\n"
                f"   hint: {hint}"
            )
        assert_close(got, expected, f"repeat_kv(kv, {n_rep}) for kv (2, 3, 4, 5)", hint=hint, atol=0, rtol=0)
    return (
        "(B, nkv, S, hs) = (2, 3, 4, 5) -> (2, 3·n_rep, 4, 5) for n_rep = 2, 4, 1; query head j reads KV "
        "head j // n_rep, exactly torch.repeat_interleave(n_rep, dim=1)"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


def _gqa_weights(C: int, n_head: int, n_kv_head: int, seed: int) -> tuple[torch.Tensor, ...]:
    hs = C // n_head
    rows = (n_head + 2 * n_kv_head) * hs
    return (
        randn(rows, C, seed=seed, scale=0.3),
        randn(rows, seed=seed + 1, scale=0.1),
        randn(C, C, seed=seed + 2, scale=0.3),
        randn(C, seed=seed + 3, scale=0.1),
    )


def _gqa_bug_candidates(
    x: torch.Tensor, w_qkv: torch.Tensor, b_qkv: torch.Tensor, w_o: torch.Tensor, b_o: torch.Tensor, nh: int,
    nkv: int
) -> list[tuple[torch.Tensor, str]]:
    B, T, C = x.shape
    hs = C // nh
    r = nh // nkv
    q, k, v = F.linear(x, w_qkv, b_qkv).split([nh * hs, nkv * hs, nkv * hs], dim=-1)
    q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
    v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)

    def finish(y: torch.Tensor) -> torch.Tensor:
        return F.linear(y.transpose(1, 2).reshape(B, T, C), w_o, b_o)

    k_rep, v_rep = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)
    out = [
        (finish(F.scaled_dot_product_attention(q, k.repeat(1, r, 1, 1), v.repeat(1, r, 1, 1),
                                               is_causal=True)),
         WRONG_ORDER),
        (finish(F.scaled_dot_product_attention(q, k_rep, v_rep)),
         "no causal mask: query i must not see keys j > i (is_causal=True, or a lower-triangular mask)"),
        (finish(F.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=True, scale=1 / math.sqrt(C))),
         "each head scales by 1/sqrt(hs), its own head size C // n_head, not 1/sqrt(C)"),
        (finish(F.scaled_dot_product_attention(q, v_rep, k_rep, is_causal=True)),
         "k and v are swapped: the rows of w_qkv are [q (nh·hs) | k (nkv·hs) | v (nkv·hs)]"),
        (F.linear(F.scaled_dot_product_attention(q, k_rep, v_rep, is_causal=True).reshape(B, T, C), w_o, b_o),
         "merge the heads back with y.transpose(1, 2).reshape(B, T, C): y is (B, nh, T, hs), and a plain "
         "reshape mixes time steps and heads"),
        (_gqa_split_without_transpose(x, w_qkv, b_qkv, w_o, b_o, nh, nkv),
         "split the heads with .view(B, T, heads, hs).transpose(1, 2): a plain .view or .reshape to "
         "(B, heads, T, hs) mixes time steps and heads"),
        (reference_gqa(x, w_qkv, None, w_o, b_o, nh, nkv),
         "the bias b_qkv is ignored: F.linear(x, w_qkv, b_qkv)"),
        (reference_gqa(x, w_qkv, b_qkv, w_o, None, nh, nkv),
         "the output bias b_o is ignored: F.linear(..., w_o, b_o)"),
    ]
    return out


def _gqa_split_without_transpose(x: torch.Tensor, w_qkv: torch.Tensor, b_qkv: torch.Tensor | None,
                                 w_o: torch.Tensor, b_o: torch.Tensor | None, nh: int,
                                 nkv: int) -> torch.Tensor:
    """The answer when q, k and v are split into heads with .view(B, heads, T, hs), without the transpose."""
    B, T, C = x.shape
    hs = C // nh
    q, k, v = F.linear(x, w_qkv, b_qkv).split([nh * hs, nkv * hs, nkv * hs], dim=-1)
    q = q.reshape(B, nh, T, hs)
    k = k.reshape(B, nkv, T, hs).repeat_interleave(nh // nkv, dim=1)
    v = v.reshape(B, nkv, T, hs).repeat_interleave(nh // nkv, dim=1)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
    return F.linear(y.transpose(1, 2).reshape(B, T, C), w_o, b_o)


@learner_check(2, "grouped_query_attention")
def check_grouped_query_attention(gqa: Callable[..., torch.Tensor]) -> str:
    B, T, C, nh = 2, 5, 24, 6
    x = randn(B, T, C, seed=40)
    worst_ref = worst_model = 0.0
    for nkv in (3, 2, 1, 6):
        w_qkv, b_qkv, w_o, b_o = _gqa_weights(C, nh, nkv, seed=41 + nkv)
        with hint_on_crash(
            "could be the split, the head size, the head layout or the repeat: split F.linear(x, w_qkv, "
            "b_qkv) into [n_head·hs, n_kv_head·hs, n_kv_head·hs] (not C each), with hs = C // n_head; make "
            "heads with .view(B, T, heads, hs).transpose(1, 2); repeat BOTH k and v to n_head heads with "
            "repeat_kv(·, n_head // n_kv_head)"
        ):
            got = call(gqa, x, w_qkv, b_qkv, w_o, b_o, nh, nkv)
        expected = reference_gqa(x, w_qkv, b_qkv, w_o, b_o, nh, nkv)
        hint = diagnose(
            got, _gqa_bug_candidates(x, w_qkv, b_qkv, w_o, b_o, nh, nkv),
            "split F.linear(x, w_qkv, b_qkv) into [nh·hs, nkv·hs, nkv·hs]; heads; repeat_kv(k and v, nh // "
            "nkv); causal attention scaled by 1/sqrt(hs); merge heads; F.linear(..., w_o, b_o)",
        )
        what = "n_kv_head = n_head (plain MHA)" if nkv == nh else f"n_kv_head={nkv}"
        worst_ref = max(worst_ref, assert_close(
            got, expected, f"vs SDPA on explicitly repeated heads, n_head={nh}, {what}", hint=hint))
        layer = CausalSelfAttention(GPTConfig(d_model=C, n_head=nh, n_kv_head=nkv, block_size=T))
        with torch.no_grad():
            layer.c_attn.weight.copy_(w_qkv)
            layer.c_attn.bias.copy_(b_qkv)
            layer.c_proj.weight.copy_(w_o)
            layer.c_proj.bias.copy_(b_o)
            model_y = layer(x, is_causal=True)  # (B, T, C)
        against = f"vs shared.model.CausalSelfAttention with n_kv_head={nkv} and the same weights"
        worst_model = max(worst_model, assert_close(got, model_y, against, hint=hint))
    return (
        "n_head=6, n_kv_head = 3, 2, 1 and 6 (= MHA): matches F.scaled_dot_product_attention on explicitly "
        f"repeated heads ({within(worst_ref, 1e-5)}) and shared.model.CausalSelfAttention with n_kv_head "
        f"and the same weights ({within(worst_model, 1e-5)})"
    )


# ----------------------------------------------------------------------------------------------- TODO 3

POOL_HINTS = {
    "strided": "you pooled ACROSS groups: heads g, g + nkv, g + 2·nkv, ... (a view of (r, nkv, hs, C)). "
               "Group g is the r CONSECUTIVE heads g·r ... g·r + r − 1, the ones that repeat_interleave "
               "gives back to its query heads: view the k rows as (nkv, r, hs, C) and average over dim 1",
    "first": "you kept the first head of each group; the conversion mean-pools all r heads of the group "
             "(Ainslie et al. 2023, §2.1)",
    "sum": "you summed the heads of each group; take the mean (divide by r = n_head // n_kv_head)",
    "head_dim": "you averaged over head_dim (the rows inside one head), the wrong axis: average across the r "
                "heads of a group, keeping each of the hs rows",
}


@learner_check(3, "mean_pool_kv")
def check_mean_pool_kv(mean_pool_kv: Callable[..., tuple[torch.Tensor, torch.Tensor | None]]) -> str:
    nh, hs = 6, 3
    C = nh * hs  # a real c_attn: d_model = n_head · head_size, so hs = C // n_head holds too
    w = randn(3 * nh * hs, C, seed=50)  # (3·nh·hs, C) rows [q | k | v]
    b = randn(3 * nh * hs, seed=51)  # (3·nh·hs,)
    w_before, b_before = w.clone(), b.clone()
    for nkv in (6, 3, 2, 1):
        with hint_on_crash("r = n_head // n_kv_head heads per group and hs = w_qkv.shape[0] // (3 · n_head) "
                           "rows per head: the k rows view as (n_kv_head, r, hs, C)"):
            result = call(mean_pool_kv, w, b, nh, nkv)
        expect(
            isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], torch.Tensor),
            f"mean_pool_kv must return a tuple (w_new, b_new); got {fmt(result, 120)}",
            hint="end with `return w_new, b_new` (b_new is None when b_qkv is None)",
        )
        w_new, b_new = result
        w_ref, b_ref = reference_mean_pool_kv(w, b, nh, nkv)
        expect(torch.equal(w, w_before) and torch.equal(b, b_before),
               "mean_pool_kv changed the weights it was given",
               hint="build new tensors (torch.cat of q and the pooled k, v); never write into w_qkv or b_qkv")
        q_rows = w[: nh * hs]
        pooled_q = torch.cat([_pool(q_rows, nkv, hs), reference_mean_pool_kv(w, b, nh, nkv)[0][nh * hs:]])
        hint = diagnose(
            w_new,
            [(reference_mean_pool_kv(w, b, nh, nkv, how)[0], POOL_HINTS[how]) for how in POOL_HINTS]
            + [(pooled_q, "you pooled the q rows too: keep all n_head query heads as they are; only the k "
                          "and v rows are pooled, so the result has (nh + 2·nkv)·hs rows")],
            "keep the q rows; view the k rows (and the v rows) as (nkv, r, hs, C) and "
            "average over the r heads (dim 1)",
        )
        if nkv == nh:
            expect(
                isinstance(w_new, torch.Tensor) and w_new.shape == w.shape and torch.equal(w_new, w),
                "n_kv_head = n_head must give back exactly the same weights (every group holds one head)",
                hint=hint,
            )
        assert_close(w_new, w_ref, f"weights, n_head={nh} -> n_kv_head={nkv} (shape ((nh + 2·nkv)·hs, C))",
                     hint=hint, atol=1e-6, rtol=1e-6)
        assert_close(b_new, b_ref, f"bias, n_head={nh} -> n_kv_head={nkv}",
                     hint="pool the bias exactly like the weight rows (q part kept, k "
                          "and v parts averaged per group)",
                     atol=1e-6, rtol=1e-6)
    with hint_on_crash("b_qkv may be None (a model built with bias=False): return (w_new, None) then"):
        result = call(mean_pool_kv, w, None, nh, 2)
    expect(
        isinstance(result, tuple) and len(result) == 2 and result[1] is None,
        "with b_qkv=None (a model built with bias=False) the returned bias must be None",
        hint="return (w_new, None) when b_qkv is None",
    )
    return (
        "n_head=6 -> n_kv_head = 6 (identity, bit for bit), 3, 2, 1: q rows kept, each group's k and v rows "
        "equal the mean of its consecutive heads, bias pooled the same way, None bias stays None"
    )


# ----------------------------------------------------------------------------------------------- TODO 4


def _perturbed_gpt(config: GPTConfig, seed: int) -> GPT:
    """A GPT with every parameter random (biases too, so that a forgotten bias shows)."""
    torch.manual_seed(seed)
    model = GPT(config)
    g = gen(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model.eval()


@learner_check(4, "convert_to_gqa")
def check_convert_to_gqa(convert_to_gqa: Callable[[GPT, int], GPT]) -> str:
    config = GPTConfig(vocab_size=17, block_size=8, n_layer=2, n_head=4, d_model=16)
    model = _perturbed_gpt(config, seed=60)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    idx = torch.randint(17, (2, 8), generator=gen(61))
    with torch.no_grad():
        logits_mha = model(idx)[0]
    config_before = dataclasses.replace(config)  # a copy: the original's config must not change either
    crash_hint = ("load_state_dict needs every tensor in the new model's shape: pool EVERY layer's c_attn "
                  "weight AND bias with mean_pool_kv(w, b, config.n_head, n_kv_head), into a GPT built with "
                  "dataclasses.replace(model.config, n_kv_head=n_kv_head)")
    for nkv in (2, 1, 4):
        with hint_on_crash(crash_hint):
            new = call(convert_to_gqa, model, nkv)
        expect(model.config == config_before,
               f"converting to n_kv_head={nkv} changed the original model's config to {model.config}",
               hint="do not assign to model.config: dataclasses.replace(model.config, n_kv_head=n_kv_head) "
                    "builds a new config and leaves the original's alone")
        expect(isinstance(new, GPT),
               f"convert_to_gqa must return a new shared.model.GPT, got {type(new).__name__}",
               hint="build GPT(dataclasses.replace(model.config, n_kv_head=n_kv_head)) and load the "
                    "converted weights")
        expect(new is not model, "convert_to_gqa returned the model it was given; build a new GPT",
               hint="GPT(dataclasses.replace(model.config, n_kv_head=n_kv_head))")
        expect_equal(new.config, dataclasses.replace(config_before, n_kv_head=nkv),
                     f"config of the converted model (n_kv_head={nkv})",
                     hint="only n_kv_head changes: dataclasses.replace(model.config, n_kv_head=n_kv_head)")
        for key, value in model.state_dict().items():
            expect(torch.equal(value, before[key]), f"the original model changed: {key}",
                   hint="do not modify the model you convert; pool copies of its "
                        "weights (state_dict values .clone())")
        state = new.state_dict()
        for key, value in before.items():
            if ".attn.c_attn." in key:
                continue
            expect(torch.equal(state[key], value), f"{key} differs from the original model's",
                   hint="only the attention's c_attn weight and bias change; "
                        "copy every other tensor as it is")
        for layer in range(config.n_layer):
            prefix = f"transformer.h.{layer}.attn.c_attn"
            w_ref, b_ref = reference_mean_pool_kv(
                before[prefix + ".weight"], before[prefix + ".bias"], 4, nkv
            )
            skipped = state[prefix + ".weight"].shape == w_ref.shape and layer > 0
            hint = (f"layer {layer} was not converted: loop over every block, model.transformer.h[i], and "
                    "pool its c_attn with your mean_pool_kv" if skipped
                    else "pool c_attn's weight and bias with your mean_pool_kv (TODO 3)")
            assert_close(state[prefix + ".weight"], w_ref, f"{prefix}.weight (n_kv_head={nkv})", hint=hint,
                         atol=1e-6, rtol=1e-6)
            assert_close(state[prefix + ".bias"], b_ref, f"{prefix}.bias (n_kv_head={nkv})",
                         hint="convert the bias too (mean_pool_kv returns both)", atol=1e-6, rtol=1e-6)
        with torch.no_grad():
            logits = new.eval()(idx)[0]  # (B, T, V)
        expect(bool(torch.isfinite(logits).all()),
               f"the converted model (n_kv_head={nkv}) gives non-finite logits")
    expect(torch.equal(logits, logits_mha), "converting to n_kv_head = n_head must not change a single logit",
           hint="with one head per group the pooled weights are the original ones")
    no_bias = _perturbed_gpt(dataclasses.replace(config, n_layer=1, bias=False), seed=62)
    with hint_on_crash("a model built with bias=False has no c_attn.bias in its state_dict: take "
                       "state.get(prefix + 'bias'), None there, and store a pooled bias only when there is "
                       "one"):
        new = call(convert_to_gqa, no_bias, 2)
    w_ref, _ = reference_mean_pool_kv(no_bias.transformer.h[0].attn.c_attn.weight.detach(), None, 4, 2)
    assert_close(new.state_dict()["transformer.h.0.attn.c_attn.weight"], w_ref,
                 "bias=False model, n_kv_head=2: transformer.h.0.attn.c_attn.weight",
                 hint="pool c_attn's weight with your mean_pool_kv also when the model has no biases",
                 atol=1e-6, rtol=1e-6)
    return (
        "2-layer, 4-head GPT -> n_kv_head = 2, 1, 4: a new GPT with only n_kv_head changed, every c_attn "
        "pooled as the reference, every other tensor copied, the original untouched; the n_kv_head = 4 "
        "conversion gives identical logits"
    )


# ----------------------------------------------------------------------------------------------- TODO 5


def _expect_value_error(fn: Callable[..., int], args: tuple, kwargs: dict, name: str) -> None:
    config = "config" if isinstance(args[0], GPTConfig) else repr(args[0])
    shown = ", ".join([config] + [repr(a) for a in args[1:]] + [f"{k}={v!r}" for k, v in kwargs.items()])
    try:
        fn(*args, **kwargs)
    except NotImplementedError:
        raise
    except ValueError as err:
        expect(name in str(err),
               f"kv_cache_bytes({shown}) raised ValueError({str(err)!r}) that does not name "
               f"the bad argument {name!r}", hint=f"say which argument is wrong and what is allowed: "
               f"ValueError(f\"{name}={{{name}!r}} must be ...\")")
        return
    except Exception as err:
        raise CheckFailed(
            f"kv_cache_bytes({shown}) raised {type(err).__name__}: {err}\n"
            f"   hint: raise ValueError naming {name!r} and what is allowed"
        ) from None
    raise CheckFailed(
        f"kv_cache_bytes({shown}) returned instead of raising ValueError\n"
        f"   hint: validate {name} first and raise ValueError(f\"{name}=... must be ...\")"
    )


def _kv_bytes_bugs(config: GPTConfig, T: int, B: int, dtype: str) -> list[tuple[str, int]]:
    """(hint, the answer that bug gives) for the well-known mistakes in the KV-cache size."""
    measured = reference_kv_cache_bytes(config, T, B, dtype)
    n_bytes = BYTES_PER_ELEMENT[dtype]
    return [
        ("you forgot the factor 2: the cache holds keys AND values", measured // 2),
        ("you used n_head; the cache stores only the KV heads: config.kv_heads (n_kv_head, or n_head when it "
         "is None)", measured // config.kv_heads * config.n_head),
        (f"that is the number of elements; multiply by the bytes per element ({dtype}: {n_bytes})",
         measured // n_bytes),
        ("the batch size is missing: every sequence in the batch has its own cache", measured // B),
        ("n_layer is missing: every layer keeps its own K and V", measured // config.n_layer),
        ("you used d_model per KV head: each KV head stores head_dim = d_model // n_head numbers per "
         "token, so kv_heads · head_dim", measured * config.n_head),
        (f"the dtype argument is ignored: {dtype} takes {n_bytes} bytes per element, "
         "BYTES_PER_ELEMENT[dtype]", measured // n_bytes * 2),
    ]


@learner_check(5, "kv_cache_bytes")
def check_kv_cache_bytes(kv_cache_bytes: Callable[..., int]) -> str:
    cases = [
        (GPTConfig(n_layer=2, n_head=4, d_model=32), 10, 3, "fp32"),  # MHA: n_kv_head is None
        (GPTConfig(n_layer=3, n_head=8, n_kv_head=2, d_model=64), 17, 2, "bf16"),
        (GPTConfig(n_layer=1, n_head=6, n_kv_head=1, d_model=48), 9, 5, "fp16"),
        (GPTConfig(n_layer=2, n_head=4, n_kv_head=2, d_model=32), 12, 1, "int8"),
    ]
    gots = []
    for config, T, B, dtype in cases:
        with hint_on_crash("config.n_kv_head is None for plain multi-head attention: use config.kv_heads "
                           "(n_kv_head, or n_head when it is None)"):
            gots.append(call(kv_cache_bytes, config, T, B, dtype))
    # a bug is named when it explains the answers of EVERY case (one case alone often fits two bugs)
    table = [_kv_bytes_bugs(*case) for case in cases]
    explained = [i for i in range(len(table[0]))
                 if all(got == bugs[i][1] for got, bugs in zip(gots, table, strict=True))]
    for got, bugs, (config, T, B, dtype) in zip(gots, table, cases, strict=True):
        measured = KVCache(config.n_layer, B, config.kv_heads, T, config.head_dim,
                           dtype=TORCH_DTYPES[dtype]).nbytes()
        here = [h for h, value in bugs if got == value and value != measured]
        hint = (bugs[explained[0]][0] if explained else " OR ".join(here) if here else
                "2 · n_layer · kv_heads · head_dim · seq_len · batch_size · BYTES_PER_ELEMENT[dtype]")
        what = (f"config (n_layer={config.n_layer}, n_head={config.n_head}, n_kv_head={config.n_kv_head}, "
                f"head_dim={config.head_dim}), seq_len={T}, batch_size={B}, {dtype}: bytes of a real KVCache")
        expect_equal(got, measured, what, hint=hint)
        expect(isinstance(got, int) and not isinstance(got, bool),
               f"kv_cache_bytes must return an int number of bytes, got {type(got).__name__}",
               hint="the product of ints is an int; do not divide (/) or wrap it in a tensor")
    llama2_7b = GPTConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, d_model=4096)
    got = call(kv_cache_bytes, llama2_7b, 4096, 1, "fp16")
    expect_equal(got, 2 * GIB, "Llama-2-7B (32 layers, 32 KV heads of size 128), 4096 tokens, fp16",
                 hint="2 GiB")
    llama2_70b = GPTConfig(vocab_size=32000, block_size=4096, n_layer=80, n_head=64, n_kv_head=8,
                           d_model=8192)
    got = call(kv_cache_bytes, llama2_70b, 4096, 1, "fp16")
    expect_equal(got, 5 * GIB // 4, "Llama-2-70B (80 layers, 8 KV heads of size 128), 4096 tokens, fp16",
                 hint="1.25 GiB: the 64 query heads share 8 KV heads, so only 8 are stored")
    small = cases[0][0]
    for args, kwargs, name in [
        ((small, 0), {}, "seq_len"),
        ((small, 2.5), {}, "seq_len"),
        ((small, 8, -1), {}, "batch_size"),
        ((small, 8, 1, "fp64"), {}, "dtype"),
        ((small, 8), {"dtype": "float"}, "dtype"),
        (("llama", 8), {}, "config"),
    ]:
        _expect_value_error(kv_cache_bytes, args, kwargs, name)
    return (
        "equals the bytes of real KVCache tensors for MHA, GQA and MQA configs in fp32, bf16, fp16 and int8; "
        "Llama-2-7B at 4096 tokens in fp16 = 2 GiB, Llama-2-70B = 1.25 GiB; bad seq_len, batch_size, dtype "
        "and config raise ValueError naming the argument"
    )
