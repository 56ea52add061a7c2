"""Checks for project 04 (self-attention): one check per TODO of ``04_attention_lab/solution.ipynb``.

Every check compares the learner's function with :func:`torch.nn.functional.scaled_dot_product_attention`
(SDPA) to 1e-5, on shapes where the usual mistakes show (T != S, d_k != d_v, several heads). When the
answer is wrong, the check recomputes the answer of each well-known bug (no 1/sqrt(d_k), softmax over
the queries, the mask applied after the softmax, True read as "blocked", a head split without a
transpose, …) and names the one the learner's output matches.

Conventions, the same as SDPA's: a boolean mask holds True where a query MAY attend to a key; the
default scale is 1/sqrt(d_k) (Vaswani et al. 2017, "Attention Is All You Need", §3.2.1); the causal
mask is lower-triangular with the diagonal included (query i sees keys j <= i).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from shared.checks import CheckFailed, assert_close, call, expect, fmt, hint_on_crash, learner_check, within
from shared.checks.compare import diagnose, expect_tensors, gen, randn

__all__ = [
    "reference_attention",
    "reference_multi_head_attention",
    "check_attend_one",
    "check_scaled_dot_product_attention",
    "check_causal_mask",
    "check_split_heads",
    "check_merge_heads",
    "check_multi_head_attention",
]

def reference_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ · scale, masked) v and the weights; the output is SDPA's own, the weights written out."""
    scale = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)  # (..., T, d_v)
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T, S)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return out, torch.softmax(scores, dim=-1)


def reference_multi_head_attention(
    x: torch.Tensor,
    w_qkv: torch.Tensor,
    b_qkv: torch.Tensor | None,
    w_o: torch.Tensor,
    b_o: torch.Tensor | None,
    n_head: int,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Multi-head attention built on SDPA with the same projections: x (B, T, C) -> (B, T, C)."""
    B, T, C = x.shape
    hs = C // n_head
    q, k, v = F.linear(x, w_qkv, b_qkv).split(C, dim=-1)  # (B, T, C) each
    q, k, v = (t.view(B, T, n_head, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, T, hs)
    return F.linear(y.transpose(1, 2).reshape(B, T, C), w_o, b_o)  # (B, T, C)


def _pair(result: object, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    message = f"{what} must return a tuple (output, weights) of two tensors; got {fmt(result, 120)}"
    return expect_tensors(result, 2, message, "end with `return out, weights`")  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- TODO 1

NO_SCALE = "your scores were not scaled: divide q·k by sqrt(d_k) (d_k = q.shape[-1]) before the softmax"


@learner_check(1, "attend_one")
def check_attend_one(attend_one: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    d_k, d_v, S = 16, 5, 7
    q, k, v = randn(d_k, seed=1), randn(S, d_k, seed=2), randn(S, d_v, seed=3)
    before = q.clone(), k.clone(), v.clone()
    out, weights = _pair(call(attend_one, q, k, v), "attend_one")
    expect(all(torch.equal(a, b) for a, b in zip((q, k, v), before, strict=True)),
           "attend_one changed its inputs in place",
           hint="q /= math.sqrt(d_k) scales the caller's query: compute scores = k @ q / math.sqrt(d_k) "
                "into a new tensor")
    expect(not (out.shape == (S,) and weights.shape == (d_v,)),
           f"attend_one returned shapes {tuple(out.shape)} and {tuple(weights.shape)}: (weights, out)?",
           hint="return (out, weights) in that order: out (d_v,) first, then the weights (S,)")
    ref_out = F.scaled_dot_product_attention(q[None], k, v)[0]  # (d_v,)
    ref_w = torch.softmax(k @ q / math.sqrt(d_k), dim=-1)  # (S,)
    hint = diagnose(
        weights,
        [
            (torch.softmax(k @ q, dim=-1), NO_SCALE),
            (torch.softmax(k @ q / math.sqrt(d_v), dim=-1),
             "scale by sqrt(d_k), the size of q and k, not of v"),
            (torch.softmax(k @ q / d_k, dim=-1), "divide by sqrt(d_k), not by d_k"),
        ],
        "weights = softmax(k @ q / sqrt(d_k)): one weight per key, summing to 1",
    )
    assert_close(weights, ref_w, "attention weights (one per key)", hint=hint)
    err = assert_close(
        out, ref_out, "output", hint="the output is the weighted sum of the value rows: weights @ v",
    )
    big = q * 200  # scores in the hundreds, as in a saturated head
    _, big_w = _pair(call(attend_one, big, k, v), "attend_one")
    assert_close(big_w, torch.softmax(k @ big / math.sqrt(d_k), dim=-1),
                 "weights when the scores are in the hundreds",
                 hint="exp of a large score overflows to inf, and inf / inf is NaN: subtract the max score "
                      "before exp, or use torch.softmax, which does")
    return (
        f"one query against {S} keys (d_k={d_k}, d_v={d_v}) matches F.scaled_dot_product_attention, "
        f"{within(err, 1e-5)}; weights sum to 1"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


def _sdpa_bug_candidates(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None, scale: float | None
) -> list[tuple[torch.Tensor, str]]:
    s = 1.0 / math.sqrt(q.size(-1)) if scale is None else scale
    raw = q @ k.transpose(-2, -1)  # (..., T, S)
    blocked = None if mask is None else ~mask
    out: list[tuple[torch.Tensor, str]] = []
    if scale is None:
        for factor, hint in ((1.0, NO_SCALE),
                             (math.sqrt(q.size(-1)), "you multiplied by sqrt(d_k): the scale is 1/sqrt(d_k)"),
                             (1 / math.sqrt(v.size(-1)),
                              "scale by 1/sqrt(d_k), the size of q and k, not of v")):
            unscaled = raw * factor if blocked is None else (raw * factor).masked_fill(blocked, float("-inf"))
            out.append((torch.softmax(unscaled, -1) @ v, hint))
    elif scale != 1.0 / math.sqrt(q.size(-1)):
        default = raw / math.sqrt(q.size(-1))
        if blocked is not None:
            default = default.masked_fill(blocked, float("-inf"))
        out.append((torch.softmax(default, -1) @ v,
                    "use the `scale` argument when it is given (1/sqrt(d_k) only when it is None)"))
    scores = raw * s
    if blocked is not None:
        out.append((
            (torch.softmax(scores, -1) * mask) @ v,
            "the mask was applied AFTER the softmax, so rows no longer sum to 1 and the future still sets "
            "the normaliser: fill blocked scores with -inf BEFORE the softmax",
        ))
        out.append((
            torch.softmax(scores.masked_fill(mask, float("-inf")), -1) @ v,
            "the mask is inverted: True means MAY attend (as in F.scaled_dot_product_attention), so fill "
            "where the mask is False (~mask) with -inf",
        ))
        out.append((torch.softmax(scores, -1) @ v,
                    "the mask was ignored: fill the scores where mask is False with -inf"))
        out.append((torch.softmax(scores.masked_fill(blocked, 0.0), -1) @ v,
                    "blocked scores were set to 0, and exp(0) = 1 still gives them weight: fill them "
                    "with -inf"))
        scores = scores.masked_fill(blocked, float("-inf"))
    out.append((
        torch.nan_to_num(torch.softmax(scores, -2)) @ v,
        "softmax over the wrong dim: normalise over the keys, dim=-1 (each query's row sums to 1)",
    ))
    return out


@learner_check(2, "scaled_dot_product_attention")
def check_scaled_dot_product_attention(sdpa: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    B, H, T, S, d_k, d_v = 2, 3, 5, 7, 8, 4
    q, k, v = randn(B, H, T, d_k, seed=10), randn(B, H, S, d_k, seed=11), randn(B, H, S, d_v, seed=12)
    mask = torch.rand(T, S, generator=gen(13)) < 0.6  # (T, S), broadcast over B and H
    mask[:, 0] = True  # every query may attend to at least one key
    causal = torch.ones(T, T, dtype=torch.bool).tril()  # (T, T)
    cases = [
        ("no mask", q, k, v, None, None),
        ("bool mask (T, S) broadcast over batch and heads", q, k, v, mask, None),
        ("causal mask vs is_causal=True", q, k[:, :, :T], v[:, :, :T], causal, None),
        ("scale=0.3 given", q, k, v, mask[None, None], 0.3),
    ]
    worst = 0.0
    for name, qq, kk, vv, m, scale in cases:
        kwargs = {} if scale is None else {"scale": scale}
        before = qq.clone(), kk.clone(), vv.clone()
        with hint_on_crash("k.T reverses ALL the dims of a batched tensor: swap only the last two, "
                           "k.transpose(-2, -1)"):
            out, weights = _pair(call(sdpa, qq, kk, vv, m, **kwargs), "scaled_dot_product_attention")
        expect(all(torch.equal(a, b) for a, b in zip((qq, kk, vv), before, strict=True)),
               f"scaled_dot_product_attention changed q, k or v in place ({name})",
               hint="q *= scale rescales the caller's queries: compute scores = (q @ k.transpose(-2, -1)) * "
                    "scale into a new tensor")
        if name.startswith("causal"):
            ref_out = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
            ref_w = reference_attention(qq, kk, vv, m)[1]
        else:
            ref_out, ref_w = reference_attention(qq, kk, vv, m, scale)
        hint = diagnose(
            out, _sdpa_bug_candidates(qq, kk, vv, m, scale),
            "scores = q @ k.transpose(-2, -1) * scale; masked_fill(~mask, -inf); softmax(dim=-1); @ v",
        )
        worst = max(worst, assert_close(out, ref_out, f"output ({name})", hint=hint))
        assert_close(weights, ref_w, f"weights ({name})", hint=hint)
    return (
        "matches F.scaled_dot_product_attention with no mask, a bool mask, is_causal=True and scale=0.3 "
        f"(T=5 queries, S=7 keys, d_k=8, d_v=4), {within(worst, 1e-5)}"
    )


# ----------------------------------------------------------------------------------------------- TODO 3


@learner_check(3, "causal_mask")
def check_causal_mask(causal_mask: Callable[[int], torch.Tensor]) -> str:
    for T in (6, 2, 1):
        got = call(causal_mask, T)
        expected = torch.ones(T, T, dtype=torch.bool).tril()
        expect(isinstance(got, torch.Tensor),
               f"causal_mask({T}) must return a tensor, got {type(got).__name__}")
        expect(
            got.dtype == torch.bool,
            f"causal_mask({T}) has dtype {got.dtype}",
            hint="return a bool tensor, True = may attend (torch.ones(T, T, dtype=torch.bool).tril())",
        )
        expect(got.shape == expected.shape, f"causal_mask({T}) has shape {tuple(got.shape)}",
               hint="causal_mask(T) must be (T, T): build it from the argument T, not from a fixed size")
        if not torch.equal(got, expected):
            ones = torch.ones(T, T, dtype=torch.bool)
            hint = diagnose(
                got.float(),
                [
                    (ones.tril(-1).float(),
                     "the diagonal is excluded: a token must be allowed to attend to itself (j <= i)"),
                    (ones.tril(1).float(), "one future token is allowed: use tril() with diagonal=0, j <= i"),
                    (ones.triu().float(),
                     "the mask is transposed/inverted: row i (the query) may see keys j <= i, "
                     "the lower triangle"),
                    (ones.triu(1).float(),
                     "this marks the FUTURE as True; True must mean may attend (j <= i)"),
                ],
                "row i (query) is True at columns j <= i (lower triangle, diagonal included)",
            )
            raise CheckFailed(
                f"causal_mask({T}) is wrong\n   expected: {fmt(expected)}\n   got:      {fmt(got)}\n   "
                f"hint: {hint}"
            )
    T = 6
    q, k, v = randn(1, 2, T, 8, seed=20), randn(1, 2, T, 8, seed=21), randn(1, 2, T, 8, seed=22)
    err = assert_close(
        F.scaled_dot_product_attention(q, k, v, attn_mask=call(causal_mask, T)),
        F.scaled_dot_product_attention(q, k, v, is_causal=True),
        "SDPA with your mask vs is_causal=True",
    )
    return ("lower-triangular bool masks for T=6, 2, 1; as SDPA's attn_mask it equals is_causal=True "
            f"({within(err, 1e-5)})")


# ----------------------------------------------------------------------------------------------- TODO 4


@learner_check(4, "split_heads")
def check_split_heads(split_heads: Callable[[torch.Tensor, int], torch.Tensor]) -> str:
    B, T, nh, hs = 2, 5, 3, 4
    x = torch.arange(B * T * nh * hs, dtype=torch.float32).view(B, T, nh * hs)  # (B, T, C)
    with hint_on_crash("split the channels into heads (dim=-1, C = nh * hs), not the time axis"):
        got = call(split_heads, x, nh)
    expected = x.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        hint = ("the dims come out in the wrong order: view to (B, T, nh, hs), then swap only T and nh, "
                ".transpose(1, 2)")
        if tuple(got.shape) == (B, hs, T, nh):
            hint = ("n_head and the head size are swapped: view(B, T, n_head, C // n_head), then "
                    ".transpose(1, 2)")
        elif got.numel() != x.numel():
            hint = "split the channels (dim=-1) into n_head heads of C // n_head each"
        assert_close(got, expected, "split_heads(x, 3) for x (2, 5, 12)", hint=hint)
    hint = diagnose(
        got if isinstance(got, torch.Tensor) else torch.zeros(0),
        [
            (x.view(B, nh, T, hs),
             "a view/reshape to (B, nh, T, hs) without a transpose mixes tokens across heads: "
             "view to (B, T, nh, hs) first, then .transpose(1, 2)"),
            (x.view(B, T, hs, nh).permute(0, 3, 1, 2),
             "head h must own the contiguous channels h*hs:(h+1)*hs, "
             "not every nh-th channel: view(B, T, nh, hs)"),
        ],
        "(B, T, C) -> view (B, T, nh, hs) -> transpose(1, 2) -> (B, nh, T, hs)",
    )
    assert_close(got, expected, "split_heads(x, 3) for x (2, 5, 12)", hint=hint, atol=0, rtol=0)
    return ("(B, T, C) = (2, 5, 12) -> (B, nh, T, hs) = (2, 3, 5, 4); head h holds "
            "channels h*hs:(h+1)*hs of every token")


# ----------------------------------------------------------------------------------------------- TODO 5


@learner_check(5, "merge_heads")
def check_merge_heads(merge_heads: Callable[[torch.Tensor], torch.Tensor]) -> str:
    B, nh, T, hs = 2, 3, 5, 4
    y = torch.arange(B * nh * T * hs, dtype=torch.float32).view(B, nh, T, hs)  # (B, nh, T, hs)
    with hint_on_crash("transpose makes the tensor non-contiguous, so .view fails on it: use .reshape (or "
                       ".contiguous().view)"):
        got = call(merge_heads, y)
    expected = y.transpose(1, 2).reshape(B, T, nh * hs)  # (B, T, C)
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        hint = "the result is (B, T, nh * hs): heads side by side on the channels"
        if tuple(got.shape) == (B, nh * T, hs):
            hint = "the heads were joined along time: put them side by side on the channels, dim=-1"
        elif tuple(got.shape) == (B, nh, T * hs):
            hint = "y is (B, nh, T, hs): unpack B, nh, T, hs = y.shape in that order"
        assert_close(got, expected, "merge_heads(y) for y (2, 3, 5, 4)", hint=hint)
    hint = diagnose(
        got if isinstance(got, torch.Tensor) else torch.zeros(0),
        [
            (y.reshape(B, T, nh * hs), "a reshape without transposing back mixes tokens and heads: "
                                       ".transpose(1, 2) to (B, T, nh, hs) first, then reshape to (B, T, C)"),
            (y.permute(0, 2, 3, 1).reshape(B, T, nh * hs),
             "the heads come out interleaved: channel order must be [head 0 | head 1 | ...], i.e. (B, T, nh, "
             "hs) -> (B, T, C)"),
        ],
        "merge_heads must undo split_heads: (B, nh, T, hs) -> transpose(1, 2) -> reshape(B, T, nh*hs)",
    )
    assert_close(got, expected, "merge_heads(y) for y (2, 3, 5, 4)", hint=hint, atol=0, rtol=0)
    return "(B, nh, T, hs) = (2, 3, 5, 4) -> (B, T, C) = (2, 5, 12) with heads side by side [h0 | h1 | h2]"


# ----------------------------------------------------------------------------------------------- TODO 6


@learner_check(6, "multi_head_attention")
def check_multi_head_attention(mha: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    from shared.model import CausalSelfAttention, GPTConfig

    B, T, C, nh = 2, 6, 16, 4
    hs = C // nh
    x = randn(B, T, C, seed=30)
    w_qkv, b_qkv = randn(3 * C, C, seed=31) * 0.3, randn(3 * C, seed=32) * 0.1
    w_o, b_o = randn(C, C, seed=33) * 0.3, randn(C, seed=34) * 0.1
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    worst = 0.0
    for name, mask in (("no mask", None), ("causal mask", causal)):
        with hint_on_crash("F.linear(x, W, b) computes x @ W.T + b: w_qkv is (3C, C) with rows [q | k | v], "
                           "so x @ w_qkv does not fit"):
            y, weights = _pair(call(mha, x, w_qkv, b_qkv, w_o, b_o, nh, mask), "multi_head_attention")
        expected = reference_multi_head_attention(x, w_qkv, b_qkv, w_o, b_o, nh, mask)
        q, k, v = F.linear(x, w_qkv, b_qkv).split(C, dim=-1)
        heads = [t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v)]
        no_proj = F.scaled_dot_product_attention(*heads, attn_mask=mask).transpose(1, 2).reshape(B, T, C)
        wide = F.scaled_dot_product_attention(*heads, attn_mask=mask, scale=1 / math.sqrt(C))
        swapped = F.scaled_dot_product_attention(heads[1], heads[0], heads[2], attn_mask=mask)
        mixed = F.scaled_dot_product_attention(*(t.reshape(B, nh, T, hs) for t in (q, k, v)), attn_mask=mask)
        hint = diagnose(
            y,
            [
                (reference_multi_head_attention(x, w_qkv, None, w_o, b_o, nh, mask),
                 "the bias b_qkv was left out: F.linear(x, w_qkv, b_qkv)"),
                (reference_multi_head_attention(x, w_qkv, b_qkv, w_o, None, nh, mask),
                 "the output bias b_o was left out: F.linear(..., w_o, b_o)"),
                (reference_multi_head_attention(x, w_qkv, b_qkv, w_o, b_o, nh, None),
                 "the mask was not passed on: scaled_dot_product_attention(q, k, v, mask)"),
                (no_proj, "the output projection is missing: y = merge_heads(...) @ w_o.T + b_o"),
                (F.linear(wide.transpose(1, 2).reshape(B, T, C), w_o, b_o),
                 "each head scales by 1/sqrt(hs), its own head size C // n_head, not 1/sqrt(C)"),
                (F.linear(swapped.transpose(1, 2).reshape(B, T, C), w_o, b_o),
                 "q and k are swapped: the rows of w_qkv are [q | k | v], in that order"),
                (F.linear(mixed.transpose(1, 2).reshape(B, T, C), w_o, b_o),
                 "the heads were split by a reshape to (B, nh, T, hs) without a transpose, which mixes "
                 "tokens across heads: view to (B, T, nh, hs), then .transpose(1, 2)"),
            ],
            "q, k, v = F.linear(x, w_qkv, b_qkv).split(C, dim=-1); split heads; "
            "attend per head; merge; project",
        )
        worst = max(worst, assert_close(y, expected, f"output ({name})", hint=hint))
        expect(
            isinstance(weights, torch.Tensor) and weights.shape == (B, nh, T, T),
            f"weights must have shape (B, nh, T, T) = {(B, nh, T, T)}; got "
            f"{fmt(getattr(weights, 'shape', weights))}",
            hint="return the per-head attention weights from your scaled_dot_product_attention",
        )
    with hint_on_crash("b_qkv and b_o may be None (a layer without biases): pass them to F.linear(x, w, b), "
                       "which accepts None, instead of adding them by hand"):
        y, _ = _pair(call(mha, x, w_qkv, None, w_o, None, nh, causal), "multi_head_attention")
    assert_close(y, reference_multi_head_attention(x, w_qkv, None, w_o, None, nh, causal),
                 "output with b_qkv = b_o = None (causal mask)",
                 hint="without biases the projections are F.linear(x, w_qkv) and F.linear(..., w_o)")
    # the same numbers as the shared GPT's attention layer with these weights copied in
    layer = CausalSelfAttention(GPTConfig(d_model=C, n_head=nh, attn_impl="sdpa"))
    with torch.no_grad():
        layer.c_attn.weight.copy_(w_qkv)
        layer.c_attn.bias.copy_(b_qkv)
        layer.c_proj.weight.copy_(w_o)
        layer.c_proj.bias.copy_(b_o)
        model_y = layer(x, is_causal=True)
    err = assert_close(call(mha, x, w_qkv, b_qkv, w_o, b_o, nh, causal)[0], model_y,
                       "vs shared.model.CausalSelfAttention")
    return (
        "4 heads, C=16: matches a reference built on F.scaled_dot_product_attention with the same "
        f"projections (no mask and causal), {within(worst, 1e-5)}, and shared.model.CausalSelfAttention "
        f"({within(err, 1e-5)})"
    )
