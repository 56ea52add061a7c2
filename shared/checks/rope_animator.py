"""Checks for project 03 (positional encodings): one check per TODO of ``03_rope_animator/solution.ipynb``.

The references are the shared model's own functions, so that what the learner builds is exactly what
``shared.model.GPT`` runs: :func:`shared.model.sinusoidal_positions` (Vaswani et al. 2017, §3.5),
:func:`shared.model.rope_cos_sin` + :func:`shared.model.apply_rope` (Su et al. 2021, §3.4; the
"rotate half" layout: dimension i is paired with i + hs/2) and :func:`shared.model.alibi_slopes`
(Press et al. 2022, §3). On top of the references the checks test properties: RoPE's score
⟨rope(q, m), rope(k, n)⟩ depends only on m − n, RoPE preserves norms, ALiBi slopes form the geometric
sequence 2^(-8/n), 2^(-16/n), … (with the paper's rule for a head count that is not a power of two).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from shared.checks import assert_close, call, expect, hint_on_crash, learner_check, within
from shared.checks.compare import gen
from shared.positions import alibi_slopes, apply_rope, rope_cos_sin, sinusoidal_positions

__all__ = [
    "reference_rope",
    "interleaved_rope",
    "reference_alibi_bias",
    "check_sinusoidal_encoding",
    "check_add_learned_positions",
    "check_apply_rope",
    "check_alibi_bias",
]


def reference_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE exactly as ``shared.model`` applies it: x (..., T, hs), positions (T,) -> (..., T, hs)."""
    cos, sin = rope_cos_sin(positions, x.size(-1), base)  # (T, hs/2) each
    return apply_rope(x, cos, sin)


def interleaved_rope(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """The paper's interleaved layout (pairs 2i, 2i+1; Su et al. 2021, eq. 34), used to spot that bug."""
    cos, sin = rope_cos_sin(positions, x.size(-1), base)  # (T, hs/2)
    a, b = x[..., 0::2], x[..., 1::2]  # (..., T, hs/2)
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)  # (..., T, hs)


def reference_alibi_bias(n_head: int, T: int) -> torch.Tensor:
    """(n_head, T, T): −slope_h · (i − j) where key j ≤ query i, −inf above the diagonal."""
    i = torch.arange(T)[:, None]  # (T, 1) query positions
    j = torch.arange(T)[None, :]  # (1, T) key positions
    dist = (i - j).float()  # (T, T)
    bias = -alibi_slopes(n_head)[:, None, None] * dist  # (nh, T, T)
    return bias.masked_fill(j > i, float("-inf"))


# ----------------------------------------------------------------------------------------------
# TODO 1: sinusoidal encoding


@learner_check(1, "sinusoidal_encoding")
def check_sinusoidal_encoding(sinusoidal_encoding: Callable[[int, int], torch.Tensor]) -> str:
    """Compare with shared.model.sinusoidal_positions and with the formula at hand-picked entries."""
    small = call(sinusoidal_encoding, 4, 6)
    expect(isinstance(small, torch.Tensor), "sinusoidal_encoding must return a torch.Tensor",
           hint="build it with torch.arange, .sin() and .cos()")
    expect(tuple(small.shape) == (4, 6),
           f"sinusoidal_encoding(4, 6) has shape {tuple(small.shape)}, expected (4, 6)",
           hint="one row per position, one column per model dimension")
    expect(small.dtype == torch.float32, f"sinusoidal_encoding returned dtype {small.dtype}",
           hint="return float32, the dtype of the token embeddings it is added to: build the positions and "
                "frequencies as float32")
    hint = ("position 0 must give sin(0)=0 in even columns and cos(0)=1 in odd columns; "
            "did you swap sin and cos, or start positions at 1?")
    if torch.equal(small[0], torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0, 1.0])):
        hint = ("sin fills the first half and cos the second: interleave them, sin in the even columns and "
                "cos in the odd ones, torch.stack([sin, cos], dim=-1).flatten(1)")
    assert_close(small[0], torch.tensor([0.0, 1.0, 0.0, 1.0, 0.0, 1.0]), "row of position 0", hint=hint)
    expect(abs(float(small[1, 0]) - math.sin(1.0)) < 1e-5,
           f"PE[1, 0] = {float(small[1, 0]):.6f}, expected sin(1) = {math.sin(1.0):.6f}",
           hint="column 2i uses frequency 1 / 10000^(2i/d); for i = 0 that is 1")
    err = 0.0
    for n_pos, d in [(50, 16), (128, 64), (7, 2)]:
        got = call(sinusoidal_encoding, n_pos, d)
        hint = ("PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d)): check the "
                "sign of the exponent (low columns must oscillate fastest) and that sin/cos interleave")
        half = torch.arange(n_pos, dtype=torch.float32)[:, None] * 10000.0 ** (-torch.arange(d // 2) / d)
        if isinstance(got, torch.Tensor) and torch.allclose(
                got, torch.stack([half.sin(), half.cos()], -1).flatten(1), atol=1e-5):
            hint = "the exponent is 2i/d (i = 0 .. d/2 - 1, the pair's index), not i/d: 10000^(-2i/d)"
        err = max(err, assert_close(got, sinusoidal_positions(n_pos, d), f"sinusoidal_encoding({n_pos}, {d})",
                                    hint=hint))
    return ("matches shared.model.sinusoidal_positions (Vaswani et al. 2017, §3.5) for 3 sizes, "
            f"{within(err, 1e-5)}")


# ----------------------------------------------------------------------------------------------
# TODO 2: learned positional embedding


@learner_check(2, "add_learned_positions")
def check_add_learned_positions(add_learned_positions: Callable[[torch.Tensor, torch.Tensor],
                                                                torch.Tensor]) -> str:
    """x + table[0..T-1]; ValueError (naming the trained length) when T exceeds the table."""
    g = gen(3)
    table = torch.randn(16, 8, generator=g)  # (block_size, C)
    x = torch.randn(2, 10, 8, generator=g)  # (B, T, C)
    before = x.clone()
    with hint_on_crash("T is x.size(1), the sequence length (x is (B, T, C)); table[:T] is (T, C) and "
                       "broadcasts over the batch"):
        got = call(add_learned_positions, x, table)
    expect(torch.equal(x, before), "add_learned_positions changed its input x in place",
           hint="x += table[:T] overwrites the caller's embeddings: return x + table[:T], a new tensor")
    err = assert_close(got, x + table[:10], "add_learned_positions(x of T=10, table of 16 rows)",
                       hint="position t uses row t of the table, starting at row 0, the same rows for every "
                            "sequence in the batch: x + table[:T]")
    with hint_on_crash("T == block_size is allowed: positions 0 .. block_size - 1 all have a row; raise only "
                       "when T > block_size"):
        full = call(add_learned_positions, x[:, :1].expand(2, 16, 8).clone(), table)
    assert_close(full, x[:, :1] + table, "T equal to the table length (16)",
                 hint="the last trained position (block_size - 1) is still allowed")
    raised: Exception | None = None
    try:
        add_learned_positions(torch.zeros(1, 17, 8), table)
    except ValueError as e:
        raised = e
    except Exception as e:  # an IndexError from indexing is not the clear error we ask for
        raised = e
    expect(isinstance(raised, ValueError),
           "add_learned_positions with T=17 > 16 table rows must raise ValueError, "
           + ("it returned a tensor" if raised is None else f"it raised {type(raised).__name__}"),
           hint="a learned table has no row for a position it never saw; check T against table.shape[0] "
                "first and raise ValueError saying so (slicing would silently give fewer rows)")
    expect("16" in str(raised), f"the ValueError should name the trained length 16, got: {raised}",
           hint="say how many positions the table holds, e.g. f'only {table.shape[0]} "
                "positions were learned'")
    return f"equals x + table[:T] ({within(err, 1e-5)}) and raises ValueError past the table's 16 positions"


# ----------------------------------------------------------------------------------------------
# TODO 3: RoPE


@learner_check(3, "apply_rope")
def check_apply_rope(rope: Callable[..., torch.Tensor]) -> str:
    """Same output as shared.model.apply_rope; relative scores; norms preserved."""
    g = gen(0)
    x = torch.randn(2, 3, 5, 8, generator=g)  # (B, h, T, hs)
    pos = torch.arange(5)
    before = x.clone()
    got = call(rope, x, pos)
    expect(isinstance(got, torch.Tensor) and got.shape == x.shape,
           f"apply_rope must return a tensor of the input's shape {tuple(x.shape)}",
           hint="concatenate the two rotated halves back to hs features")
    expect(torch.equal(x, before), "apply_rope changed its input x in place",
           hint="writing the rotated halves into x[..., :half] changes the caller's queries and keys: build "
                "and return a new tensor, torch.cat([a', b'], dim=-1)")
    expect(got.dtype == x.dtype, f"apply_rope returned dtype {got.dtype} for a {x.dtype} input",
           hint="return x.dtype: compute the angles in float64 if you like, then cast cos and sin to x.dtype")
    expected = reference_rope(x, pos)
    if not torch.allclose(got, expected, atol=1e-5):
        if torch.allclose(got, interleaved_rope(x, pos), atol=1e-5):
            hint = ("you rotated adjacent pairs (2i, 2i+1), the paper's layout; the shared model pairs "
                    "dimension i with i + hs/2 ('rotate half', GPT-NeoX/LLaMA). Both are valid, but q and k "
                    "(and every model that loads these weights) must use the same one")
        elif torch.allclose(got, reference_rope(x, pos + 1), atol=1e-5):
            hint = "positions start at 0: the first token must not be rotated at all"
        elif torch.allclose(got, apply_rope(x, *(t[:, : x.size(-1) // 2]  # θ_i = base^(-i/hs)
                                                 for t in rope_cos_sin(pos, 2 * x.size(-1)))), atol=1e-5):
            hint = ("the exponent is 2i/hs (i = 0 .. hs/2 - 1, the pair's index), not i/hs: "
                    "θ_i = base^(-2i/hs)")
        elif torch.allclose(got, reference_rope(x, -pos), atol=1e-5):
            hint = ("it rotates the wrong way (by -mθ_i): a' = a cos − b sin, b' = a sin + b cos, a turn by "
                    "+mθ_i")
        elif torch.allclose(x[..., 0, :], got[..., 0, :], atol=1e-6):
            hint = ("frequencies: θ_i = base^(-2i/hs) (i = 0 .. hs/2-1), so the first pair turns fastest "
                    "(1 radian per position) and the last slowest; check the sign of the exponent")
        else:
            hint = ("each pair (a, b) = (x[i], x[i + hs/2]) becomes (a cos(mθ_i) − b "
                    "sin(mθ_i), a sin(mθ_i) + b cos(mθ_i))")
        assert_close(got, expected, "apply_rope(x, positions 0..4) vs shared.model.apply_rope", hint=hint)
    # a KV-cache step (and the shift test of Part 2) passes positions that do not start at 0
    later = torch.arange(7, 12)  # (T,)
    got = call(rope, x, later)
    if not torch.allclose(got, reference_rope(x, later), atol=1e-5):
        if torch.allclose(got, reference_rope(x, pos), atol=1e-5):
            hint = ("use the positions argument: these 5 tokens sit at positions 7..11 (as after a KV cache "
                    "holds 7 tokens), but you rotated them as 0..4; do not build torch.arange(T) yourself")
        else:
            hint = "the token at position m turns by m·θ_i, for whatever m the positions argument holds"
        assert_close(got, reference_rope(x, later),
                     "apply_rope(x, positions 7..11) vs shared.model.apply_rope", hint=hint)
    # position interpolation (Chen et al. 2023; Part 2 of the notebook) runs RoPE at fractional positions
    frac = torch.arange(5) * 0.25  # (T,) 0, 0.25, ..., 1
    assert_close(call(rope, x, frac), reference_rope(x, frac),
                 "apply_rope(x, positions 0, 0.25, 0.5, 0.75, 1) vs shared.model.apply_rope",
                 hint="positions need not be integers: position interpolation passes m·L_train/L. Turn them "
                      "into floats before multiplying by θ_i; do not round, index a table or cast to long")
    # another base (long-context models raise it, e.g. 500 000 in LLaMA 3)
    got = call(rope, x, later, 500.0)
    if not torch.allclose(got, reference_rope(x, later, 500.0), atol=1e-5):
        hint = "θ_i = base^(-2i/hs) with the base passed in"
        if torch.allclose(got, reference_rope(x, later), atol=1e-5):
            hint = "use the `base` argument: base=500 gave the rotation of base 10000"
        assert_close(got, reference_rope(x, later, 500.0),
                     "apply_rope(x, positions 7..11, base=500) vs shared.model.apply_rope", hint=hint)
    # properties at realistic sizes
    q = torch.randn(64, generator=g)
    k = torch.randn(64, generator=g)
    far = torch.tensor([0, 3, 100, 103, 1000, 1003])  # three (m, n) pairs with m - n = 3
    rq = call(rope, q.expand(6, 64)[None], far)[0]  # (6, 64)
    rk = call(rope, k.expand(6, 64)[None], far)[0]  # (6, 64)
    scores = torch.stack([rq[1] @ rk[0], rq[3] @ rk[2], rq[5] @ rk[4]])  # m - n = 3 each
    rel_err = float((scores - scores[0]).abs().max())
    expect(rel_err < 1e-3 * max(1.0, float(scores.abs().max())),
           f"q·k at (m, n) = (3, 0), (103, 100), (1003, 1000) should be equal, got {scores.tolist()}",
           hint="rotate q and k with the same pairs and the same θ_i; only then does "
                "the score depend on m − n alone")
    norms_err = float((rq.norm(dim=-1) - q.norm()).abs().max())
    expect(norms_err < 1e-4, f"RoPE changed the norm of a vector by {norms_err:.2e}",
           hint="a rotation keeps lengths: use cos and sin of the same angle for each pair, no scaling")
    return ("matches shared.model.apply_rope (pairs i, i+hs/2) at integer and fractional positions, q·k "
            "depends only on m − n (spread < 1e-3 relative, over m up to 1003) and norms are preserved "
            "(to < 1e-4)")


# ----------------------------------------------------------------------------------------------
# TODO 4: ALiBi


@learner_check(4, "alibi_bias")
def check_alibi_bias(alibi_bias: Callable[[int, int], torch.Tensor]) -> str:
    """Compare with −alibi_slopes(n)·(i − j) under a causal mask, for power-of-two and other head counts."""
    for n_head in (8, 4, 1, 2):
        got = call(alibi_bias, n_head, 6)
        hint = "one (T, T) matrix per head: rows are queries i, columns keys j"
        if isinstance(got, torch.Tensor) and got.ndim == 3 and got.shape[0] != n_head:
            hint = (f"{got.shape[0]} heads instead of {n_head}: take the p = 2^floor(log2 n) slopes, then "
                    "exactly n_head - p more (none when n is a power of two; every other slope of the "
                    "2p-head sequence when it is not a power of two)")
        expect(isinstance(got, torch.Tensor) and tuple(got.shape) == (n_head, 6, 6),
               f"alibi_bias({n_head}, 6) must have shape ({n_head}, 6, 6), got "
               f"{tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__}", hint=hint)
        expect(got.dtype == torch.float32, f"alibi_bias returned dtype {got.dtype}",
               hint="return float32: the bias is added to float32 attention scores")
        expect(bool(torch.isneginf(got[:, 0, 1:]).all()) and bool(torch.isfinite(got.tril()).all()),
               "keys after the query (j > i) must be -inf and every j <= i finite",
               hint="mask with j > i -> float('-inf'); the diagonal (distance 0) is 0")
        slopes = -got[:, 1, 0]  # (nh,) bias at distance 1
        hint = ("the slopes are 2^(-8/n), 2^(-16/n), …, 2^(-8): the first is 2^(-8/n), not 1, "
                "and the last 2^(-8) (Press et al. 2022, §3)")
        if torch.allclose(-slopes, alibi_slopes(n_head)):
            hint = ("the bias has the wrong sign: bias = -slope·(i − j), at most 0 for the keys j <= i, so "
                    "that farther keys get a larger penalty")
        assert_close(slopes, alibi_slopes(n_head), f"slopes for n_head={n_head} (minus the bias at distance "
                                                   f"1)",
                     hint=hint)
        assert_close(got, reference_alibi_bias(n_head, 6), f"alibi_bias({n_head}, 6)",
                     hint="bias[h, i, j] = -slope_h · (i - j): it grows linearly with the distance")
    for n_head in (6, 12):
        got = call(alibi_bias, n_head, 5)
        assert_close(-got[:, 1, 0], alibi_slopes(n_head), f"slopes for n_head={n_head} (not a power of two)",
                     hint="for n not a power of two take the 2^floor(log2 n) slopes, then every other slope "
                          "of the sequence for twice that many heads (Press et al. 2022, reference code)")
    return ("matches -shared.model.alibi_slopes(n)·(i − j) with a causal mask for n_head = 1, 2, 4, 8, "
            "and the paper's rule for 6 and 12 heads")
