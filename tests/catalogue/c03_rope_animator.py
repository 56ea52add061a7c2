"""Mutation catalogue of 03_rope_animator (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.rope_animator import (
    check_add_learned_positions,
    check_alibi_bias,
    check_apply_rope,
    check_sinusoidal_encoding,
)

P = "03_rope_animator"

# TODO 1: sinusoidal_encoding
POS = "pos = torch.arange(n_pos, dtype=torch.float32)[:, None]  # (n_pos, 1)"
INV_FREQ = "inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (d/2,)"
STACK = "return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)"

# TODO 2: add_learned_positions
ADD = "    return x + table[:T]"

# TODO 3: apply_rope
THETA = "theta = base ** (-torch.arange(0, half, dtype=torch.float64) * 2 / x.size(-1))  # (hs/2,)"
ANGLES = "angles = positions.to(torch.float64)[:, None] * theta[None, :]"
COS_SIN = "cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)  # (T, hs/2) each"
HALVES = "a, b = x[..., :half], x[..., half:]  # (..., T, hs/2) each"
ROTATE = "return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)"

# TODO 4: alibi_bias
SLOPES = "slopes = power_of_two_slopes(p) + power_of_two_slopes(2 * p)[0::2][: n_head - p]"
MASK = 'return bias.masked_fill(pos[None, :] > pos[:, None], float("-inf"))'

CATALOGUE = [
    Todo(
        P,
        1,
        check_sinusoidal_encoding,
        ("sinusoidal_encoding",),
        mutants=[
            Mutant(
                "sin and cos swapped",
                "logic",
                [("[angles.sin(), angles.cos()]", "[angles.cos(), angles.sin()]")],
                ("swap sin and cos",),
            ),
            Mutant(
                "positive exponent",
                "scale",
                [("10000.0 ** (-torch", "10000.0 ** (torch")],
                ("sign of the exponent",),
            ),
            Mutant(
                "positions from 1",
                "positions",
                [(POS, "pos = torch.arange(1, n_pos + 1, dtype=torch.float32)[:, None]")],
                ("start positions at 1",),
            ),
            Mutant(
                "sin and cos concatenated, not interleaved",
                "axis",
                [(STACK, "return torch.cat([angles.sin(), angles.cos()], dim=-1)")],
                ("interleave",),
            ),
            Mutant(
                "exponent i/d instead of 2i/d",
                "scale",
                [
                    (
                        INV_FREQ,
                        "inv_freq = 10000.0 ** (-torch.arange(0, d_model // 2, dtype=torch.float32) / "
                        "d_model)",
                    )
                ],
                ("2i/d",),
            ),
            Mutant(
                "frequency index from 1",
                "off-by-one",
                [("torch.arange(0, d_model, 2, dtype", "torch.arange(1, d_model, 2, dtype")],
                ("for i = 0 that is 1",),
            ),
            Mutant(
                "float64 table",
                "dtype",
                [
                    (POS, "pos = torch.arange(n_pos, dtype=torch.float64)[:, None]"),
                    (
                        "torch.arange(0, d_model, 2, dtype=torch.float32)",
                        "torch.arange(0, d_model, 2, dtype=torch.float64)",
                    ),
                ],
                ("float32",),
            ),
        ],
        correct=[
            Correct(
                "exp of a log",
                [
                    (
                        INV_FREQ,
                        "inv_freq = torch.exp(torch.arange(0, d_model, 2).float() * "
                        "(-math.log(10000.0) / d_model))",
                    )
                ],
            ),
            Correct(
                "fill even and odd columns",
                [
                    (
                        STACK,
                        "pe = torch.zeros(n_pos, d_model)\n    pe[:, 0::2] = "
                        "angles.sin()\n    pe[:, 1::2] = angles.cos()\n    "
                        "return pe",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_add_learned_positions,
        ("add_learned_positions",),
        mutants=[
            Mutant(
                "slices silently past the table",
                "validation",
                [("if T > block_size:", "if False:")],
                ("raise ValueError",),
            ),
            Mutant(
                "rows from 1",
                "positions",
                [("x + table[:T]", "x + table[1 : T + 1]")],
                ("starting at row 0",),
            ),
            Mutant(
                "the last rows of the table",
                "positions",
                [("x + table[:T]", "x + table[-T:]")],
                ("starting at row 0",),
            ),
            Mutant(
                "refuses T == block_size",
                "off-by-one",
                [("if T > block_size:", "if T >= block_size:")],
                ("block_size - 1",),
            ),
            Mutant(
                "batch size read as T",
                "axis",
                [("T, block_size = x.size(1), table.size(0)", "T, block_size = x.size(0), table.size(0)")],
                ("x.size(1)",),
            ),
            Mutant("adds in place", "in-place", [(ADD, "    x += table[:T]\n    return x")], ("in place",)),
            Mutant(
                "IndexError instead of ValueError",
                "validation",
                [("        raise ValueError(\n", "        raise IndexError(\n")],
                ("raise ValueError",),
            ),
            Mutant(
                "message without the trained length",
                "validation",
                [
                    (
                        'f"sequence length T={T} > block_size={block_size}: only {block_size} positions were '
                        'learned"',
                        '"sequence too long"',
                    )
                ],
                ("name the trained length",),
            ),
        ],
        correct=[
            Correct("index the table with arange", [(ADD, "    return x + table[torch.arange(T)]")]),
            Correct("F.embedding", [(ADD, "    return x + F.embedding(torch.arange(T), table)[None]")]),
        ],
    ),
    Todo(
        P,
        3,
        check_apply_rope,
        ("apply_rope",),
        mutants=[
            Mutant(
                "adjacent pairs",
                "axis",
                [
                    (HALVES, "a, b = x[..., 0::2], x[..., 1::2]"),
                    (
                        ROTATE,
                        "return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)",
                    ),
                ],
                ("adjacent pairs", "i + hs/2"),
            ),
            Mutant(
                "positions from 1",
                "positions",
                [("positions.to(torch.float64)", "(positions + 1).to(torch.float64)")],
                ("positions start at 0",),
            ),
            Mutant(
                "ignores positions",
                "positions",
                [("positions.to(torch.float64)", "torch.arange(x.size(-2), dtype=torch.float64)")],
                ("use the positions argument", "7..11"),
            ),
            Mutant(
                "positions rounded to integers",
                "dtype",
                [("positions.to(torch.float64)", "positions.long().to(torch.float64)")],
                ("positions need not be integers",),
            ),
            Mutant(
                "positive exponent",
                "scale",
                [("base ** (-torch.arange", "base ** (torch.arange")],
                ("sign of the exponent",),
            ),
            Mutant(
                "b * sin instead of b * cos",
                "logic",
                [("a * sin + b * cos", "a * sin + b * sin")],
                ("a cos",),
            ),
            Mutant(
                "exponent i/hs instead of 2i/hs",
                "scale",
                [(THETA, "theta = base ** (-torch.arange(0, half, dtype=torch.float64) / x.size(-1))")],
                ("base^(-2i/hs)",),
            ),
            Mutant(
                "rotates the wrong way",
                "scale",
                [(ROTATE, "return torch.cat([a * cos + b * sin, -a * sin + b * cos], dim=-1)")],
                ("wrong way",),
            ),
            Mutant(
                "returns float64", "dtype", [(COS_SIN, "cos, sin = angles.cos(), angles.sin()")], ("x.dtype",)
            ),
            Mutant(
                "ignores base",
                "argument",
                [("theta = base ** (", "theta = 10000.0 ** (")],
                ("`base` argument",),
            ),
            Mutant(
                "rotates x in place",
                "in-place",
                [
                    (
                        HALVES + "\n    " + ROTATE,
                        "a = x[..., :half].clone()\n    x[..., :half] = a * cos - x[..., half:] * sin\n"
                        "    x[..., half:] = a * sin + x[..., half:] * cos\n    return x",
                    )
                ],
                ("in place",),
            ),
        ],
        correct=[
            Correct(
                "float32 angles",
                [
                    (THETA, "theta = base ** (-torch.arange(0, half).float() * 2 / x.size(-1))"),
                    (ANGLES, "angles = positions.float()[:, None] * theta[None, :]"),
                ],
            ),
            Correct(
                "rotate_half form",
                [
                    (
                        ROTATE,
                        "cos2, sin2 = torch.cat([cos, cos], -1), torch.cat([sin, sin], "
                        "-1)\n"
                        "    return x * cos2 + torch.cat([-b, a], dim=-1) * sin2",
                    )
                ],
            ),
            Correct(
                "complex numbers",
                [
                    (
                        ROTATE,
                        "z = torch.complex(a.double(), b.double()) * torch.polar("
                        "torch.ones_like(angles), angles)\n"
                        "    return torch.cat([z.real, z.imag], dim=-1).to(x.dtype)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_alibi_bias,
        ("alibi_bias",),
        mutants=[
            Mutant("first slope 1", "off-by-one", [("first ** (h + 1)", "first ** h")], ("2^(-8/n), not 1",)),
            Mutant(
                "odd slopes of the doubled sequence",
                "off-by-one",
                [("power_of_two_slopes(2 * p)[0::2]", "power_of_two_slopes(2 * p)[1::2]")],
                ("not a power of two", "every other slope"),
            ),
            Mutant("no causal mask", "branch", [(MASK, "return bias")], ("-inf",)),
            Mutant(
                "positive bias",
                "scale",
                [("bias = -m[:, None, None] * dist", "bias = m[:, None, None] * dist")],
                ("wrong sign",),
            ),
            Mutant(
                "power-of-two rule for every head count",
                "branch",
                [(SLOPES, "slopes = power_of_two_slopes(n_head)")],
                ("not a power of two",),
            ),
            Mutant(
                "one slope too many",
                "off-by-one",
                [("[0::2][: n_head - p]", "[0::2][: n_head - p + 1]")],
                ("not a power of two",),
            ),
            Mutant(
                "diagonal masked",
                "off-by-one",
                [("pos[None, :] > pos[:, None]", "pos[None, :] >= pos[:, None]")],
                ("diagonal",),
            ),
            Mutant(
                "float64 bias",
                "dtype",
                [
                    (
                        "torch.tensor(slopes, dtype=torch.float32)",
                        "torch.tensor(slopes, dtype=torch.float64)",
                    ),
                    (
                        "dist = (pos[:, None] - pos[None, :]).float()",
                        "dist = (pos[:, None] - pos[None, :]).double()",
                    ),
                ],
                ("float32",),
            ),
        ],
        correct=[
            Correct(
                "absolute distance under the mask",
                [
                    (
                        "dist = (pos[:, None] - pos[None, :]).float()",
                        "dist = (pos[:, None] - pos[None, :]).abs().float()",
                    )
                ],
            ),
            Correct(
                "triu of -inf added", [(MASK, 'return bias + torch.full((T, T), float("-inf")).triu(1)')]
            ),
        ],
    ),
]
