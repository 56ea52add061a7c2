"""Checks for project 09 (context window): one check per TODO of ``09_sliding_window/solution.ipynb``.

Conventions, the same as ``shared.model.attention_allowed`` with ``sliding_window=W``: query i may attend to
key j iff ``i - W < j <= i``, so a query sees itself and the W - 1 keys before it (Beltagy et al. 2020,
Longformer §3.1; Jiang et al. 2023, Mistral 7B §2). A boolean mask holds True where attention is allowed, as
in ``F.scaled_dot_product_attention``.

Every attention check compares with ``F.scaled_dot_product_attention`` (SDPA) to 1e-5. The two
memory-efficient TODOs are also run under a dispatcher hook that records every tensor the call allocates, so a
solution that quietly builds the T x T score matrix fails even when its numbers are right. When an answer is
wrong, the check recomputes the answer of each well-known bug (window off by one, padding keys left unmasked,
the running sum not rescaled, a ring buffer read in the wrong order, ...) and names the one the learner's
output matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from shared.checks import CheckFailed, assert_close, call, expect, expect_equal, fmt, learner_check, within
from shared.checks.compare import diagnose, expect_tensors, randn
from shared.model import GPT, GPTConfig
from shared.positions import apply_rope, attention_allowed, rope_cos_sin

__all__ = [
    "reference_window_mask",
    "largest_allocation",
    "check_sliding_window_mask",
    "check_banded_attention",
    "check_ring_kv_cache",
    "check_online_softmax_attention",
]

def reference_window_mask(T: int, window: int) -> torch.Tensor:
    """The (T, T) sliding-window causal mask by its definition, one entry at a time (True = may attend)."""
    mask = torch.zeros(T, T, dtype=torch.bool)
    for i in range(T):
        for j in range(T):
            mask[i, j] = i - window < j <= i
    return mask


class _LargestAllocation(TorchDispatchMode):
    """Records the byte size of the largest new tensor storage any operator returns inside the block."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {
            t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in inputs:
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


def largest_allocation(fn: Callable[[], Any]) -> tuple[Any, int]:
    """Run ``fn()`` and return (its result, bytes of the largest tensor storage it allocated).

    Views (unfold, transpose, slicing) share their input's storage and do not count; every new tensor an
    operator returns does. SDPA's fused kernels allocate their workspace internally, out of this hook's sight.
    """
    with _LargestAllocation() as mode:
        result = fn()
    return result, mode.largest


def _window_mask(T: int, window: int, lo_offset: int = 0, hi_offset: int = 0,
                 causal: bool = True) -> torch.Tensor:
    i = torch.arange(T)[:, None]  # (T, 1)
    j = torch.arange(T)[None, :]  # (1, T)
    upper = (j <= i + hi_offset) if causal else (j < i + window)  # non-causal: |i - j| < W
    return upper & (j > i - window - lo_offset)  # (T, T)


# ----------------------------------------------------------------------------------------------- TODO 1

OFF_BY_ONE_WIDE = "each query sees W + 1 keys: the rule is i - W < j (strict), not i - W <= j"


@learner_check(1, "sliding_window_mask")
def check_sliding_window_mask(sliding_window_mask: Callable[[int, int], torch.Tensor]) -> str:
    cases = [(9, 4), (6, 3), (6, 1), (1, 1), (8, 8), (5, 12)]  # the first case tells the usual bugs apart
    for T, W in cases:
        got = call(sliding_window_mask, T, W)
        expect(
            isinstance(got, torch.Tensor) and got.dtype == torch.bool,
            f"sliding_window_mask({T}, {W}) must return a bool tensor; got {fmt(got, 120)}",
            hint="compare positions: (j <= i) & (j > i - W) is already a bool tensor",
        )
        expected = reference_window_mask(T, W)
        # (T, T)
        shared = attention_allowed(torch.arange(T), torch.arange(T), "causal", sliding_window=W)[0, 0]
        assert torch.equal(expected, shared)  # the definition and shared.model agree
        hint = diagnose(
            got,
            [
                (_window_mask(T, W, lo_offset=1), OFF_BY_ONE_WIDE),
                (_window_mask(T, W, lo_offset=-1),
                 "each query sees only W - 1 keys: keep j > i - W, which includes i - W + 1"),
                (_window_mask(T, W, causal=False),
                 "keys after the query are allowed: the window is causal, add j <= i"),
                (_window_mask(T, W) & ~torch.eye(T, dtype=torch.bool),
                 "the diagonal is missing: a query must see itself (j = i)"),
                (~_window_mask(T, W), "the mask is inverted: True means MAY attend"),
                (_window_mask(T, W).T,
                 "the mask is transposed: rows are queries i, columns are keys j (i = "
                 "torch.arange(T)[:, None], j = torch.arange(T)[None, :]), so that query i sees the keys "
                 "before it, not after"),
                (_window_mask(T, T),
                 "the window is ignored: this is the plain causal mask; also require j > i - W"),
            ],
            "query i sees key j iff i - W < j <= i (itself and the W - 1 keys before it)",
        )
        expect_equal(got, expected, f"sliding_window_mask(T={T}, W={W})", hint=hint)
    return (
        f"matches a brute-force loop and shared.model.attention_allowed(sliding_window=W) for {len(cases)} "
        "(T, W) pairs, W = 1 and W >= T included"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


def _sdpa_window(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                 scale: float | None = None) -> torch.Tensor:
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)


def _banded_unmasked_padding(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, W: int) -> torch.Tensor:
    """The answer when the W - 1 zero rows padded before position 0 are scored like real keys."""
    T, hs = q.size(-2), q.size(-1)
    W = min(W, T)
    k_pad = F.pad(k, (0, 0, W - 1, 0))  # (B, H, T + W - 1, hs)
    v_pad = F.pad(v, (0, 0, W - 1, 0))
    i = torch.arange(T)[:, None] + (W - 1)  # query positions in the padded frame
    j = torch.arange(T + W - 1)[None, :]
    mask = (j <= i) & (j > i - W)  # (T, T + W - 1)
    return F.scaled_dot_product_attention(q, k_pad, v_pad, attn_mask=mask, scale=1 / math.sqrt(hs))


def _banded_variant(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, W: int, softmax_dim: int = -1,
                    pad_after: bool = False, mix_keys: bool = False) -> torch.Tensor:
    """Banded attention with one known bug switched on (softmax over the query axis, padding after the
    sequence, the keys averaged instead of the values); all off it is the right answer."""
    T, hs = q.size(-2), q.size(-1)
    W = min(W, T)
    pad = (0, 0, 0, W - 1) if pad_after else (0, 0, W - 1, 0)
    k_win, v_win = F.pad(k, pad).unfold(2, W, 1), F.pad(v, pad).unfold(2, W, 1)  # (B, H, T, hs, W)
    scores = torch.einsum("bhtd,bhtdw->bhtw", q, k_win) / math.sqrt(hs)  # (B, H, T, W)
    key_pos = torch.arange(T)[:, None] - (W - 1) + torch.arange(W)[None, :]  # (T, W)
    weights = torch.softmax(scores.masked_fill(key_pos < 0, float("-inf")), dim=softmax_dim)
    return torch.einsum("bhtw,bhtdw->bhtd", weights, k_win if mix_keys else v_win)  # (B, H, T, hs)


def _expect_inputs_unchanged(name: str, given: tuple[torch.Tensor, ...],
                             copies: tuple[torch.Tensor, ...]) -> None:
    """Fail if the learner's function changed q, k or v (compared with copies taken before the call)."""
    for label, t, before in zip("qkv", given, copies, strict=True):
        expect(torch.equal(t, before), f"{name} changed its input {label} in place",
               hint=f"never modify {label} in place ({label} /= ..., {label}.mul_(...)): the caller uses it "
                    f"again; compute a new tensor instead ({label} = {label} / ...)")


@learner_check(2, "banded_attention")
def check_banded_attention(banded_attention: Callable[..., torch.Tensor]) -> str:
    B, H, T, hs = 2, 3, 13, 8
    q, k, v = randn(B, H, T, hs, seed=20), randn(B, H, T, hs, seed=21), randn(B, H, T, hs, seed=22)
    worst = 0.0
    copies = (q.clone(), k.clone(), v.clone())
    for W in (1, 4, 13, 20):
        got = call(banded_attention, q, k, v, W)
        _expect_inputs_unchanged("banded_attention", (q, k, v), copies)
        nan_rows = int(torch.isnan(got).any(-1).sum()) if isinstance(got, torch.Tensor) else 0
        expect(nan_rows == 0, f"banded_attention (T={T}, W={W}) returned NaN in {nan_rows} rows",
               hint="a row with every window slot masked gives NaN: slot w of row t holds key position "
                    "t - W + 1 + w; mask only the negative positions (slot W - 1, the query itself, never)")
        if W >= T:
            expected = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hs)
            what = f"banded_attention with W={W} >= T={T} vs SDPA is_causal=True"
        else:
            expected = _sdpa_window(q, k, v, reference_window_mask(T, W))
            what = f"banded_attention (T={T}, W={W}) vs SDPA with the sliding-window mask"
        hint = diagnose(
            got,
            [
                (_banded_unmasked_padding(q, k, v, W),
                 "the zero rows padded before position 0 got weight: mask "
                 "window slots whose key position t - W + 1 + w is negative with -inf before the softmax"),
                (_sdpa_window(q, k, v, _window_mask(T, W, lo_offset=1)), OFF_BY_ONE_WIDE),
                (_sdpa_window(q, k, v, reference_window_mask(T, W), scale=1.0),
                 "divide the scores by sqrt(hs)"),
                (_sdpa_window(q, k, v, _window_mask(T, W, lo_offset=-1)),
                 "each query sees only W - 1 keys: the "
                 "window holds keys t - W + 1 .. t, W of them"),
                (_banded_variant(q, k, v, W, softmax_dim=-2),
                 "softmax over the wrong axis: normalise each query's W window slots, "
                 "torch.softmax(scores, dim=-1)"),
                (_banded_variant(q, k, v, W, pad_after=True),
                 "you padded AFTER the sequence: pad the W - 1 zero rows BEFORE position 0, "
                 "F.pad(k, (0, 0, W - 1, 0)), so that row t holds keys t - W + 1 .. t"),
                (_banded_variant(q, k, v, W, mix_keys=True),
                 "the weights must average the values v, not the keys: unfold v like k and weight "
                 "v's window"),
            ],
            "row t of the window holds keys t - W + 1 .. t (pad W - 1 rows in front and unfold), mask the "
            "padding, softmax over the W slots, weight the values",
        )
        worst = max(worst, assert_close(got, expected, what, hint=hint))

    T_big, W_big, hs_big = 2048, 4, 8
    qb, kb, vb = (randn(1, 1, T_big, hs_big, seed=s) for s in (23, 24, 25))
    _, largest = largest_allocation(lambda: call(banded_attention, qb, kb, vb, W_big))
    limit = T_big * T_big // 4  # a bool T x T mask is T*T bytes, a float one 4*T*T
    expect(
        largest < limit,
        f"banded_attention(T={T_big}, W={W_big}) allocated a tensor of {largest / 2**20:.1f} MiB; "
        f"an O(T·W) method needs < {limit / 2**20:.1f} MiB (a T x T float matrix is "
        f"{4 * T_big**2 / 2**20:.0f} MiB)",
        hint="you built a T x T matrix (scores or a mask): gather each query's W keys with F.pad + unfold "
        "into (B, H, T, W) windows instead",
    )
    return (
        f"matches F.scaled_dot_product_attention with the sliding-window mask for W = 1, 4 and W >= T "
        f"(= is_causal=True), {within(worst, 1e-5)}; at T={T_big}, W={W_big} its largest tensor is "
        f"{largest / 2**10:.0f} KiB, no T x T matrix"
    )


# ----------------------------------------------------------------------------------------------- TODO 3

RING_SLOT = ("write the new key at slot pos % W, with W = cache_k.size(2) (the slot axis): the buffer has "
             "only W slots and position pos reuses the oldest one")


def _ring_unit_test(ring_kv_update: Callable[..., Any]) -> None:
    B, H, W, hs = 1, 2, 4, 3
    cache_k, cache_v = torch.zeros(B, H, W, hs), torch.zeros(B, H, W, hs)
    keys, values = [], []
    for pos in range(11):
        # (B, H, 1, hs)
        k = torch.full((B, H, 1, hs), float(pos + 1)) + torch.arange(H).view(1, H, 1, 1) * 100
        v = -k
        keys.append(k)
        values.append(v)
        try:
            out = ring_kv_update(cache_k, cache_v, k, v, pos)
        except (NotImplementedError, AssertionError):
            raise
        except Exception as err:  # noqa: BLE001 - turn a crash into a readable failure
            raise CheckFailed(
                f"ring_kv_update(cache of W={W} slots, pos={pos}) raised {type(err).__name__}: {err}\n"
                f"   hint: {RING_SLOT if pos >= W else 'slice the slots written so far: [:, :, :pos + 1]'}"
            ) from err
        expect_tensors(out, 2, f"ring_kv_update must return a tuple (keys, values); got {fmt(out, 120)}",
                       "end with `return keys, values`")
        lo = max(0, pos - W + 1)
        exp_k, exp_v = torch.cat(keys[lo:], dim=2), torch.cat(values[lo:], dim=2)  # (B, H, min(pos+1, W), hs)
        got_k, got_v = out
        what = f"keys returned at pos={pos} (W={W}; key value = position + 1 + 100·head)"
        if got_k.shape != exp_k.shape:
            hint = (
                "return only the pos + 1 slots written so far while pos < W: the others hold zeros, "
                "and zero keys would still get attention weight"
                if pos < W and got_k.size(2) == W
                else "return the last min(pos + 1, W) keys, shape (B, H, min(pos + 1, W), hs), with W = "
                     "cache_k.size(2), the number of slots (not the head size, dim -1)"
            )
            expect_equal(tuple(got_k.shape), tuple(exp_k.shape), f"{what}: shape", hint=hint)
        same_set = torch.equal(got_k.sort(dim=2).values, exp_k.sort(dim=2).values)
        hint = (
            "the right keys in the wrong order: return them oldest first, i.e. slots (pos + 1) % W, ..., W "
            "- 1, 0, ..., pos % W (positions pos - W + 1 .. pos), so positions and masks line up"
            if same_set
            else RING_SLOT
        )
        expect_equal(got_k, exp_k, what, hint=hint)
        expect_equal(got_v, exp_v, f"values returned at pos={pos}", hint="treat values exactly like keys")
        expect(
            bool((cache_k == keys[-1]).all(dim=-1).any()),
            f"after pos={pos} the new key is not in cache_k",
            hint="write into cache_k and cache_v in place (cache_k[:, :, slot] = "
                 "...), they persist between calls",
        )


def _ring_decode(model: GPT, prompt: torch.Tensor, n_new: int,
                 ring_kv_update: Callable[..., Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding one token at a time through W-slot ring caches; returns (tokens, logits per step)."""
    c = model.config
    W, nh, hs, C = c.sliding_window, c.n_head, c.head_dim, c.d_model
    B = prompt.size(0)
    caches = [(torch.zeros(B, nh, W, hs), torch.zeros(B, nh, W, hs)) for _ in range(c.n_layer)]
    idx, step_logits = prompt, []
    for pos in range(prompt.size(1) + n_new - 1):
        token = idx[:, pos : pos + 1]  # (B, 1)
        x = model.transformer.wte(token)  # (B, 1, C)
        cos, sin = rope_cos_sin(torch.tensor([pos]), hs, c.rope_base)  # (1, hs/2)
        for (cache_k, cache_v), block in zip(caches, model.transformer.h, strict=True):
            q, k, v = block.attn.c_attn(block.ln_1(x)).split(C, dim=2)  # (B, 1, C) each
            q, k, v = (t.view(B, 1, nh, hs).transpose(1, 2) for t in (q, k, v))  # (B, nh, 1, hs)
            # (B, nh, <=W, hs)
            k_win, v_win = ring_kv_update(cache_k, cache_v, apply_rope(k, cos, sin), v, pos)
            y = F.scaled_dot_product_attention(apply_rope(q, cos, sin), k_win, v_win)  # (B, nh, 1, hs)
            x = x + block.attn.c_proj(y.transpose(1, 2).reshape(B, 1, C))
            x = x + block.mlp(block.ln_2(x))
        logits = model.lm_head(model.transformer.ln_f(x))[:, -1]  # (B, V)
        if pos >= prompt.size(1) - 1:
            step_logits.append(logits)
            idx = torch.cat([idx, logits.argmax(-1, keepdim=True)], dim=1)  # (B, pos + 2)
    return idx, torch.stack(step_logits, dim=1)  # (B, L), (B, n_new, V)


@learner_check(3, "ring_kv_update")
def check_ring_kv_cache(ring_kv_update: Callable[..., Any]) -> str:
    _ring_unit_test(ring_kv_update)
    W, n_new = 5, 30
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=17, block_size=16, n_layer=2, n_head=2, d_model=16, pos_encoding="rope",
                    sliding_window=W)
    model = GPT(cfg).eval()
    prompt = torch.tensor([[3, 1, 4], [1, 5, 9]])
    with torch.no_grad():
        tokens, logits = _ring_decode(model, prompt, n_new, ring_kv_update)
        full, _ = model(tokens[:, :-1])  # (B, L - 1, V): every position at once, W-window mask, no cache
    ref = full[:, prompt.size(1) - 1 :]  # (B, n_new, V)
    err = assert_close(
        logits, ref,
        f"logits of {n_new} ring-cache decoding steps vs GPT(sliding_window={W}) on the whole sequence",
        hint="a ring cache must give the keys of exactly the last W positions", atol=1e-4, rtol=1e-4,
    )
    expect_equal(tokens[:, prompt.size(1):], ref.argmax(-1), "greedy tokens",
                 hint="same logits must give same tokens")
    return (
        f"keys and values match the last min(pos+1, W) positions oldest first for 11 steps of a W=4 ring; "
        f"greedy decoding of {n_new} tokens (past block_size, W={W}) through your ring caches equals "
        f"shared.model.GPT(sliding_window={W}) token for token, {within(err, 1e-4, 'logits max abs err')}"
    )


# ----------------------------------------------------------------------------------------------- TODO 4


def _online_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block_size: int, window: int | None,
    rescale: str = "both", guard: bool = True, divide: bool = True, update_m: bool = True,
    offset: bool = True, drop_tail: bool = False, diagonal: bool = True, subtract_max: bool = True,
) -> torch.Tensor:
    """Online softmax with switchable bugs: rescale "both", "l" (acc not rescaled) or "none"; no -inf guard;
    no final division; the running max never updated; key positions restarting at 0 in every block; the
    last T % block_size keys skipped; the diagonal masked (j < i)."""
    T, hs = q.size(-2), q.size(-1)
    m = torch.full((*q.shape[:-1], 1), float("-inf"), dtype=q.dtype)
    l = torch.zeros(*q.shape[:-1], 1, dtype=q.dtype)  # noqa: E741 - the paper's name
    acc = torch.zeros(*q.shape[:-1], v.size(-1), dtype=q.dtype)
    q_pos = torch.arange(T)[:, None]
    for start in range(0, T - T % block_size if drop_tail else T, block_size):
        kb, vb = k[:, :, start : start + block_size], v[:, :, start : start + block_size]
        k_pos = torch.arange(start if offset else 0, (start if offset else 0) + kb.size(2))[None, :]
        allowed = (k_pos <= q_pos) if diagonal else (k_pos < q_pos)
        if window is not None:
            allowed = allowed & (k_pos > q_pos - window)
        s = ((q @ kb.transpose(-2, -1)) / math.sqrt(hs)).masked_fill(~allowed, float("-inf"))
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        m_use = m_new.masked_fill(m_new == float("-inf"), 0.0) if guard else m_new
        if not subtract_max:
            m_use = m = torch.zeros_like(m_new)
        p = torch.exp(s - m_use)
        alpha = torch.exp(m - m_use) if rescale != "none" else torch.ones_like(m)
        l = alpha * l + p.sum(-1, keepdim=True)  # noqa: E741
        acc = (alpha if rescale == "both" else 1.0) * acc + p @ vb
        if update_m:
            m = m_new
    return acc / l if divide else acc


NAN_GUARD = ("a query whose every key in the blocks so far is masked has running max -inf, and "
             "exp(-inf - (-inf)) = NaN: subtract a safe max (0 where the max is still -inf)")


def _online_bugs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bs: int,
                 window: int | None) -> list[tuple[torch.Tensor, str]]:
    """(answer of a known bug, its hint) for one case of the online-softmax check, most specific first."""
    T = q.size(-2)
    bugs = [
        (_online_reference(q, k, v, bs, window, rescale="none"),
         "when the running max grows, rescale the "
         "running sum AND the accumulator by exp(m_old - m_new) before adding the new block"),
        (_online_reference(q, k, v, bs, window, rescale="l"),
         "the accumulator acc was not rescaled: when the max grows, acc = exp(m_old - m_new)·acc + p @ v, "
         "like l"),
        (_online_reference(q, k, v, bs, window, divide=False),
         "divide the accumulator by the running sum l at the end (the softmax normaliser)"),
        (_online_reference(q, k, v, bs, window, update_m=False),
         "the running max is never updated: set m = m_new at the end of every block"),
        (_online_reference(q, k, v, bs, window, offset=False),
         "the key positions of the block that begins at `start` are start .. start + b - 1: "
         "k_pos = torch.arange(start, start + kb.size(2)), not arange(b)"),
        (_online_reference(q, k, v, bs, window, drop_tail=True),
         "the last T % block_size keys were never visited: loop over range(0, T, block_size) and slice "
         "k[:, :, start : start + block_size] (the last block may be shorter)"),
        (_online_reference(q, k, v, bs, window, diagonal=False),
         "a query must see itself: the causal rule is key j <= query i (k_pos <= q_pos), not j < i"),
        (_sdpa_window(q, k, v, reference_window_mask(T, T if window is None else window), scale=1.0),
         "divide the scores by sqrt(hs)"),
    ]
    if window is not None:
        bugs += [
            (_sdpa_window(q, k, v, _window_mask(T, window, lo_offset=1)), OFF_BY_ONE_WIDE),
            (F.scaled_dot_product_attention(q, k, v, is_causal=True),
             "the window argument is ignored: with window=W also mask the keys j <= i - W"),
        ]
    return bugs


def _nan_hint(got: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bs: int,
              window: int | None) -> str:
    """Which bug puts NaN in exactly these rows (a query whose l stayed 0, or exp(-inf + inf))."""
    rows = torch.isnan(got).any(-1)
    no_guard = _online_reference(q, k, v, bs, window, guard=False)
    if torch.equal(rows, torch.isnan(no_guard).any(-1)):
        return NAN_GUARD
    no_max = _online_reference(q, k, v, bs, window, subtract_max=False)
    if torch.equal(rows, torch.isnan(no_max).any(-1)):
        return ("exp overflowed (inf / inf = NaN): subtract the running max before exp, p = exp(s - m_new), "
                "and rescale by exp(m_old - m_new)")
    for answer, hint in _online_bugs(q, k, v, bs, window):
        if bool(torch.isnan(answer).any()) and torch.equal(rows, torch.isnan(answer).any(-1)):
            return hint
    return ("NaN comes from 0/0 (a query that never got an allowed key, so l = 0) or from "
            "exp(-inf - (-inf)): could be the mask (key positions start .. start + b - 1, j <= i) or a "
            "missing -inf guard (subtract 0 where the running max is still -inf)")


@learner_check(4, "online_softmax_attention")
def check_online_softmax_attention(online_softmax_attention: Callable[..., torch.Tensor]) -> str:
    B, H, T, hs = 2, 2, 19, 8
    q, k, v = randn(B, H, T, hs, seed=40), randn(B, H, T, hs, seed=41), randn(B, H, T, hs, seed=42)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, H, T, hs)
    worst = 0.0
    cases: list[tuple[str, torch.Tensor, int, int | None, torch.Tensor]] = []
    for bs in (1, 4, 5, 19, 32):
        cases.append((f"causal, block_size={bs}", q, bs, None, causal))
    for bs in (3, 8):
        cases.append((f"window=6, block_size={bs}", q, bs, 6,
                      _sdpa_window(q, k, v, reference_window_mask(T, 6))))
    q_hot = q * 60.0  # scores in the hundreds: exp overflows float32 unless the max is subtracted
    cases.append(("scores ~ 100s (q * 60), block_size=4", q_hot, 4, None,
                  F.scaled_dot_product_attention(q_hot, k, v, is_causal=True)))
    for what, qq, bs, window, expected in cases:
        copies = (qq.clone(), k.clone(), v.clone())
        got = call(online_softmax_attention, qq, k, v, bs, window)
        _expect_inputs_unchanged("online_softmax_attention", (qq, k, v), copies)
        nan_rows = int(torch.isnan(got).any(-1).sum()) if isinstance(got, torch.Tensor) else 0
        if nan_rows:
            raise CheckFailed(
                f"online_softmax_attention ({what}) returned NaN in {nan_rows} of {B * H * T} rows\n"
                f"   hint: {_nan_hint(got, qq, k, v, bs, window)}")
        if isinstance(got, torch.Tensor) and bool(torch.isinf(got).any()):
            raise CheckFailed(f"online_softmax_attention ({what}) returned inf\n"
                              "   hint: exp overflowed: subtract the running max before exp, exp(s - m_new)")
        hint = diagnose(
            got, _online_bugs(qq, k, v, bs, window),
            "per key block: m_new = max(m, rowmax(s)); p = exp(s - m_new); l = exp(m - m_new)·l + rowsum(p); "
            "acc = exp(m - m_new)·acc + p @ v; m = m_new; return acc / l",
        )
        worst = max(worst, assert_close(got, expected, f"online_softmax_attention ({what})", hint=hint))

    # float64 inputs: the running statistics must follow the input's dtype (float32 ones lose 1e-7)
    q64, k64, v64 = (t[:1].double() for t in (q, k, v))
    got = call(online_softmax_attention, q64, k64, v64, 5, None)
    dtype_hint = "create m, l and acc with dtype=q.dtype, so that float64 inputs are not summed in float32"
    expect(isinstance(got, torch.Tensor) and got.dtype == torch.float64,
           f"float64 inputs gave {fmt(got, 60) if not isinstance(got, torch.Tensor) else got.dtype}, "
           "expected float64", hint=dtype_hint)
    assert_close(got, F.scaled_dot_product_attention(q64, k64, v64, is_causal=True),
                 "float64 inputs, block_size=5, vs SDPA in float64", hint=dtype_hint, atol=1e-12, rtol=1e-12)

    T_big = 1024
    qb, kb, vb = (randn(1, 1, T_big, 8, seed=s) for s in (43, 44, 45))
    _, largest = largest_allocation(lambda: call(online_softmax_attention, qb, kb, vb, 32, None))
    limit = T_big * T_big  # a float T x T matrix is 4·T² bytes
    expect(
        largest < limit,
        f"online_softmax_attention(T={T_big}, block_size=32) allocated a tensor of {largest / 2**20:.1f} "
        f"MiB; one key block of scores is {4 * T_big * 32 / 2**10:.0f} KiB",
        hint="you built a T x T matrix: score one block of keys at a time, (B, H, T, block_size), and build "
        "the mask per block from positions",
    )
    return (
        "matches F.scaled_dot_product_attention (causal, and with window=6) for block sizes 1, 3, 4, 5, 8, "
        f"19, 32 (most not dividing T={T}) and for scores in the hundreds, {within(worst, 1e-5)}; "
        f"largest tensor at T={T_big}, block 32: {largest / 2**10:.0f} KiB, no T x T matrix"
    )
