"""Mutation catalogue of 09_sliding_window (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.sliding_window import (
    check_banded_attention,
    check_online_softmax_attention,
    check_ring_kv_cache,
    check_sliding_window_mask,
)

P = "09_sliding_window"
MASK_LINE = "return (j <= i) & (j > i - window)"
SCORES = 'scores = torch.einsum("bhtd,bhtdw->bhtw", q, k_win) / math.sqrt(hs)  # (B, H, T, W)'
MIX = 'return torch.einsum("bhtw,bhtdw->bhtd", weights, v_win)'
PAD_K = "k_pad = F.pad(k, (0, 0, W - 1, 0))"
PAD_V = "v_pad = F.pad(v, (0, 0, W - 1, 0))"
MASK_PAD = 'scores = scores.masked_fill(key_pos < 0, float("-inf"))  # padding rows are not keys'
WRITE_K = "cache_k[:, :, slot] = k[:, :, 0]  # (B, H, hs) written in place"
WRITE_V = "cache_v[:, :, slot] = v[:, :, 0]"
ORDER = "order = (torch.arange(1, W + 1) + slot) % W"
READ = "return cache_k[:, :, order], cache_v[:, :, order]"
M_INIT = 'm = torch.full((B, H, T, 1), float("-inf"), dtype=q.dtype)'
M_SAFE = 'm_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)'
L_UPD = "l = alpha * l + p.sum(dim=-1, keepdim=True)"
ACC_UPD = "acc = alpha * acc + p @ vb"
WINDOW_IF = "        if window is not None:\n            allowed = allowed & (k_pos > q_pos - window)\n"

CATALOGUE = [
    Todo(
        P,
        1,
        check_sliding_window_mask,
        ("sliding_window_mask",),
        mutants=[
            Mutant(
                "window of W + 1 keys (>= for >)",
                "off-by-one",
                [("(j > i - window)", "(j >= i - window)")],
                ("W + 1 keys",),
            ),
            Mutant(
                "window of W - 1 keys",
                "off-by-one",
                [("(j > i - window)", "(j > i - window + 1)")],
                ("only W - 1 keys",),
            ),
            Mutant(
                "symmetric window |i - j| < W",
                "logic",
                [(MASK_LINE, "return (i - j).abs() < window")],
                ("keys after the query",),
            ),
            Mutant(
                "strictly causal j < i",
                "off-by-one",
                [("return (j <= i) & ", "return (j < i) & ")],
                ("diagonal is missing",),
            ),
            Mutant(
                "True marks the masked pairs",
                "logic",
                [(MASK_LINE, "return ~((j <= i) & (j > i - window))")],
                ("inverted", "MAY attend"),
            ),
            Mutant(
                "0/1 integer mask",
                "dtype",
                [(MASK_LINE, "return ((j <= i) & (j > i - window)).long()")],
                ("bool tensor",),
            ),
            Mutant(
                "query and key axes swapped",
                "axis",
                [
                    ("i = torch.arange(T)[:, None]  #", "i = torch.arange(T)[None, :]  #"),
                    ("j = torch.arange(T)[None, :]  #", "j = torch.arange(T)[:, None]  #"),
                ],
                ("transposed", "rows are queries"),
            ),
            Mutant(
                "window ignored: plain causal tril",
                "argument",
                [(MASK_LINE, "return torch.tril(torch.ones(T, T, dtype=torch.bool))")],
                ("window is ignored",),
            ),
            Mutant(
                "tril/triu with the diagonal offset off by one",
                "off-by-one",
                [
                    (
                        MASK_LINE,
                        "ones = torch.ones(T, T, dtype=torch.bool)\n"
                        "    return ones.tril() & ones.triu(-window)",
                    )
                ],
                ("W + 1 keys",),
            ),
        ],
        correct=[
            Correct(
                "tril & triu",
                [
                    (
                        MASK_LINE,
                        "ones = torch.ones(T, T, dtype=torch.bool)\n"
                        "    return ones.tril() & ones.triu(1 - window)",
                    )
                ],
            ),
            Correct("difference in [0, W)", [(MASK_LINE, "d = i - j\n    return (d >= 0) & (d < window)")]),
            Correct(
                "double loop",
                [
                    (
                        MASK_LINE,
                        "mask = torch.zeros(T, T, dtype=torch.bool)\n"
                        "    for a in range(T):\n"
                        "        mask[a, max(0, a - window + 1) : a + 1] = True\n"
                        "    return mask",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_banded_attention,
        ("banded_attention",),
        mutants=[
            Mutant(
                "padding keys left unmasked",
                "branch",
                [(f"    {MASK_PAD}\n", "")],
                ("padded before position 0 got weight",),
            ),
            Mutant(
                "padding masked with 0 instead of -inf",
                "logic",
                [(MASK_PAD, "scores = scores.masked_fill(key_pos < 0, 0.0)")],
                ("padded before position 0 got weight", "-inf"),
            ),
            Mutant(
                "no 1/sqrt(hs) scale",
                "scale",
                [(" / math.sqrt(hs)  # (B, H, T, W)", "  # (B, H, T, W)")],
                ("sqrt(hs)",),
            ),
            Mutant(
                "window of W + 1",
                "off-by-one",
                [("W = min(window, T)", "W = min(window + 1, T)")],
                ("W + 1 keys",),
            ),
            Mutant(
                "key positions off by one in the padding mask",
                "off-by-one",
                [
                    (
                        "key_pos = torch.arange(T)[:, None] - (W - 1) + torch.arange(W)[None, :]",
                        "key_pos = torch.arange(T)[:, None] - W + torch.arange(W)[None, :]",
                    )
                ],
                ("NaN", "t - W + 1 + w"),
            ),
            Mutant(
                "softmax over the query axis",
                "axis",
                [("weights = torch.softmax(scores, dim=-1)", "weights = torch.softmax(scores, dim=-2)")],
                ("softmax over the", "dim=-1"),
            ),
            Mutant(
                "padded after the sequence",
                "positions",
                [
                    (PAD_K, "k_pad = F.pad(k, (0, 0, 0, W - 1))"),
                    (PAD_V, "v_pad = F.pad(v, (0, 0, 0, W - 1))"),
                ],
                ("padded AFTER",),
            ),
            Mutant(
                "q scaled in place",
                "in-place",
                [(SCORES, 'q /= math.sqrt(hs)\n    scores = torch.einsum("bhtd,bhtdw->bhtw", q, k_win)')],
                ("in place", "q"),
            ),
            Mutant(
                "values not windowed like the keys",
                "logic",
                [(MIX, 'return torch.einsum("bhtw,bhtdw->bhtd", weights, k_win)')],
                ("keys",),
            ),
        ],
        correct=[
            Correct("W = window without min (padding W - 1 rows)", [("W = min(window, T)", "W = window")]),
            Correct(
                "matmul instead of einsum",
                [
                    (SCORES, "scores = (q.unsqueeze(-2) @ k_win).squeeze(-2) / math.sqrt(hs)"),
                    (MIX, "return (v_win @ weights.unsqueeze(-1)).squeeze(-1)"),
                ],
            ),
            Correct(
                "masked with the float minimum",
                [(MASK_PAD, "scores = scores.masked_fill(key_pos < 0, torch.finfo(scores.dtype).min)")],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_ring_kv_cache,
        ("ring_kv_update",),
        mutants=[
            Mutant(
                "written at pos, not pos % W",
                "off-by-one",
                [("slot = pos % W\n", "slot = pos\n")],
                ("slot pos % W", "raised IndexError"),
            ),
            Mutant(
                "slots read in storage order",
                "logic",
                [(ORDER, "order = torch.arange(W)")],
                ("wrong order", "oldest first"),
            ),
            Mutant(
                "unwritten slots returned while pos < W",
                "branch",
                [("return cache_k[:, :, : pos + 1], cache_v[:, :, : pos + 1]", "return cache_k, cache_v")],
                ("only the pos + 1 slots written so far",),
            ),
            Mutant(
                "out-of-place index_copy (the cache never changes)",
                "in-place",
                [
                    (WRITE_K, "cache_k = cache_k.index_copy(2, torch.tensor([slot]), k)"),
                    (WRITE_V, "cache_v = cache_v.index_copy(2, torch.tensor([slot]), v)"),
                ],
                ("in place",),
            ),
            Mutant(
                "read order starts at the newest slot",
                "off-by-one",
                [(ORDER, "order = (torch.arange(W) + slot) % W")],
                ("wrong order", "oldest first"),
            ),
            Mutant(
                "newest first",
                "logic",
                [(ORDER, "order = (slot - torch.arange(W)) % W")],
                ("wrong order", "oldest first"),
            ),
            Mutant(
                "ring branch taken one step late",
                "off-by-one",
                [("if pos < W:", "if pos <= W:")],
                ("wrong order",),
            ),
            Mutant(
                "value written from the key",
                "logic",
                [(WRITE_V, "cache_v[:, :, slot] = k[:, :, 0]")],
                ("values exactly like keys",),
            ),
            Mutant(
                "W read from the head-size axis",
                "axis",
                [("W = cache_k.size(2)", "W = cache_k.size(-1)")],
                ("W = cache_k.size(2)",),
            ),
        ],
        correct=[
            Correct(
                "index_copy_ in place",
                [
                    (WRITE_K, "cache_k.index_copy_(2, torch.tensor([slot]), k)"),
                    (WRITE_V, "cache_v.index_copy_(2, torch.tensor([slot]), v)"),
                ],
            ),
            Correct(
                "torch.roll",
                [(READ, "return cache_k.roll(-(slot + 1), dims=2), cache_v.roll(-(slot + 1), dims=2)")],
            ),
            Correct(
                "torch.cat of the two halves",
                [
                    (
                        READ,
                        "return (torch.cat([cache_k[:, :, slot + 1 :], cache_k[:, :, : slot + 1]], 2),\n"
                        "            torch.cat([cache_v[:, :, slot + 1 :], cache_v[:, :, : slot + 1]], 2))",
                    ),
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_online_softmax_attention,
        ("online_softmax_attention",),
        mutants=[
            Mutant(
                "running sums not rescaled",
                "logic",
                [(L_UPD, "l = l + p.sum(dim=-1, keepdim=True)"), (ACC_UPD, "acc = acc + p @ vb")],
                ("rescale the running sum AND the accumulator",),
            ),
            Mutant("only l rescaled, not acc", "logic", [(ACC_UPD, "acc = acc + p @ vb")], ("accumulator",)),
            Mutant(
                "no -inf guard",
                "stability",
                [(M_SAFE, "m_safe = m_new")],
                ("returned NaN", "exp(-inf - (-inf)) = NaN"),
            ),
            Mutant(
                "exp without the running max",
                "stability",
                [
                    ("p = torch.exp(s - m_safe)", "p = torch.exp(s)"),
                    ("alpha = torch.exp(m - m_safe)", "alpha = torch.ones_like(m)"),
                ],
                ("subtract the running max",),
            ),
            Mutant(
                "no final division", "scale", [("return acc / l", "return acc")], ("divide the accumulator",)
            ),
            Mutant("running max never updated", "state", [("        m = m_new\n", "")], ("m = m_new",)),
            Mutant(
                "no 1/sqrt(hs) scale",
                "scale",
                [("s = (q @ kb.transpose(-2, -1)) * scale", "s = q @ kb.transpose(-2, -1)")],
                ("sqrt(hs)",),
            ),
            Mutant(
                "window of W + 1 keys",
                "off-by-one",
                [("(k_pos > q_pos - window)", "(k_pos >= q_pos - window)")],
                ("W + 1 keys",),
            ),
            Mutant("window argument ignored", "argument", [(WINDOW_IF, "")], ("window", "ignored")),
            Mutant(
                "key positions restart at 0 in every block",
                "positions",
                [
                    (
                        "k_pos = torch.arange(start, start + kb.size(2))[None, :]",
                        "k_pos = torch.arange(kb.size(2))[None, :]",
                    )
                ],
                ("start",),
            ),
            Mutant(
                "tail block dropped when block_size does not divide T",
                "shape",
                [
                    (
                        "for start in range(0, T, block_size):",
                        "for start in range(0, T - T % block_size, block_size):",
                    )
                ],
                ("T % block_size",),
            ),
            Mutant(
                "strictly causal (diagonal masked)",
                "off-by-one",
                [("allowed = k_pos <= q_pos  # (T, b) causal", "allowed = k_pos < q_pos  # (T, b) causal")],
                ("itself",),
            ),
            Mutant(
                "q scaled in place",
                "in-place",
                [
                    (
                        "s = (q @ kb.transpose(-2, -1)) * scale",
                        "q *= scale if start == 0 else 1.0\n        s = q @ kb.transpose(-2, -1)",
                    )
                ],
                ("in place", "q"),
            ),
        ],
        correct=[
            Correct(
                "finite -1e30 start instead of -inf and a guard",
                [(M_INIT, "m = torch.full((B, H, T, 1), -1e30, dtype=q.dtype)"), (M_SAFE, "m_safe = m_new")],
            ),
            Correct(
                "torch.where guard",
                [(M_SAFE, "m_safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)")],
            ),
            Correct(
                "einsum scores",
                [
                    (
                        "s = (q @ kb.transpose(-2, -1)) * scale",
                        's = torch.einsum("bhtd,bhsd->bhts", q, kb) * scale',
                    )
                ],
            ),
        ],
    ),
]
