"""Mutation catalogue of 04_attention_lab (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.attention_lab import (
    check_attend_one,
    check_causal_mask,
    check_merge_heads,
    check_multi_head_attention,
    check_scaled_dot_product_attention,
    check_split_heads,
)

P = "04_attention_lab"

# TODO 1: attend_one
SCORES_1 = "scores = k @ q / math.sqrt(q.shape[-1])  # (S,)"
WEIGHTS_1 = "weights = torch.softmax(scores, dim=-1)  # (S,), sums to 1"
OUT_1 = "out = weights @ v  # (d_v,)"

# TODO 2: scaled_dot_product_attention
SCALE = "scale = 1.0 / math.sqrt(q.shape[-1])"
SCORES = "scores = (q @ k.transpose(-2, -1)) * scale  # (..., T, S)"
FILL = 'scores = scores.masked_fill(~mask, float("-inf"))  # blocked keys get exp(-inf) = 0'
SOFTMAX = "weights = torch.softmax(scores, dim=-1)  # (..., T, S), each row sums to 1"

# TODO 3: causal_mask
CAUSAL = "return torch.ones(T, T, dtype=torch.bool).tril()"

# TODO 4 and 5: split_heads, merge_heads
SPLIT = "return x.view(B, T, n_head, C // n_head).transpose(1, 2)"
MERGE = "return y.transpose(1, 2).reshape(B, T, nh * hs)"

# TODO 6: multi_head_attention
MHA_FUNCTIONS = ("split_heads", "merge_heads", "scaled_dot_product_attention", "multi_head_attention")
QKV = "q, k, v = F.linear(x, w_qkv, b_qkv).split(C, dim=-1)"
ATTEND = "heads, weights = scaled_dot_product_attention(q, k, v, mask)"
PROJECT = "y = F.linear(merge_heads(heads), w_o, b_o)"

CATALOGUE = [
    Todo(
        P,
        1,
        check_attend_one,
        ("attend_one",),
        mutants=[
            Mutant("no scale", "scale", [(SCORES_1, "scores = k @ q")], ("divide q·k by sqrt(d_k)",)),
            Mutant(
                "scaled by the value size",
                "scale",
                [("math.sqrt(q.shape[-1])", "math.sqrt(v.shape[-1])")],
                ("not of v",),
            ),
            Mutant("divided by d_k", "scale", [("math.sqrt(q.shape[-1])", "q.shape[-1]")], ("not by d_k",)),
            Mutant("averages the keys", "logic", [(OUT_1, "out = weights @ k")], ("weights @ v",)),
            Mutant(
                "returns (weights, out)",
                "logic",
                [("    return out, weights", "    return weights, out")],
                ("(out, weights)",),
            ),
            Mutant(
                "softmax by hand without the max",
                "stability",
                [(WEIGHTS_1, "weights = torch.exp(scores) / torch.exp(scores).sum()")],
                ("overflow", "max"),
            ),
            Mutant(
                "scales q in place",
                "in-place",
                [(SCORES_1, "q /= math.sqrt(q.shape[-1])\n    scores = k @ q")],
                ("in place",),
            ),
        ],
        correct=[
            Correct("v transposed times weights", [(OUT_1, "out = v.T @ weights")]),
            Correct(
                "einsum and a stable softmax by hand",
                [
                    (SCORES_1, 'scores = torch.einsum("sd,d->s", k, q) / q.shape[-1] ** 0.5'),
                    (WEIGHTS_1, "e = torch.exp(scores - scores.max())\n    weights = e / e.sum()"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_scaled_dot_product_attention,
        ("scaled_dot_product_attention",),
        mutants=[
            Mutant("no scale", "scale", [(SCALE, "scale = 1.0")], ("divide q·k by sqrt(d_k)",)),
            Mutant(
                "softmax over the queries",
                "axis",
                [(SOFTMAX, "weights = torch.softmax(scores, dim=-2)")],
                ("softmax over the wrong dim", "dim=-1"),
            ),
            Mutant(
                "mask after the softmax",
                "logic",
                [
                    (
                        "        " + FILL + "\n    " + SOFTMAX + "\n",
                        "        pass\n    weights = torch.softmax(scores, dim=-1)\n"
                        "    if mask is not None:\n        weights = weights * mask\n",
                    )
                ],
                ("AFTER the softmax", "rows no longer sum to 1"),
            ),
            Mutant(
                "mask inverted", "logic", [(FILL, FILL.replace("~mask", "mask"))], ("True means MAY attend",)
            ),
            Mutant(
                "ignores the scale argument",
                "argument",
                [("    if scale is None:\n        " + SCALE, "    " + SCALE)],
                ("use the `scale` argument",),
            ),
            Mutant(
                "ignores the mask",
                "branch",
                [("    if mask is not None:\n        " + FILL + "\n", "")],
                ("mask was ignored",),
            ),
            Mutant(
                "blocked scores set to 0",
                "logic",
                [(FILL, "scores = scores.masked_fill(~mask, 0.0)")],
                ("exp(0)", "-inf"),
            ),
            Mutant(
                "k.T on a batched tensor",
                "axis",
                [("q @ k.transpose(-2, -1)", "q @ k.T")],
                ("transpose(-2, -1)",),
            ),
            Mutant(
                "multiplies by sqrt(d_k)",
                "scale",
                [(SCALE, "scale = math.sqrt(q.shape[-1])")],
                ("multiplied by sqrt(d_k)",),
            ),
            Mutant(
                "sqrt of the value size",
                "scale",
                [(SCALE, "scale = 1.0 / math.sqrt(v.shape[-1])")],
                ("not of v",),
            ),
            Mutant(
                "scales q in place",
                "in-place",
                [(SCORES, "q *= scale\n    scores = q @ k.transpose(-2, -1)")],
                ("in place",),
            ),
        ],
        correct=[
            Correct("torch.where", [(FILL, 'scores = torch.where(mask, scores, float("-inf"))')]),
            Correct(
                "divide by sqrt after the product",
                [(SCORES, "scores = q @ k.transpose(-2, -1)\n    scores = scores * scale")],
            ),
            Correct(
                "einsum and the dtype's lowest value",
                [
                    (SCORES, 'scores = torch.einsum("...td,...sd->...ts", q, k) * scale'),
                    (FILL, "scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_causal_mask,
        ("causal_mask",),
        mutants=[
            Mutant(
                "diagonal excluded",
                "off-by-one",
                [(CAUSAL, CAUSAL.replace("tril()", "tril(diagonal=-1)"))],
                ("diagonal is excluded",),
            ),
            Mutant(
                "one future token",
                "off-by-one",
                [(CAUSAL, CAUSAL.replace("tril()", "tril(diagonal=1)"))],
                ("one future token is allowed",),
            ),
            Mutant(
                "the future marked True",
                "logic",
                [(CAUSAL, CAUSAL.replace("tril()", "triu(diagonal=1)"))],
                ("marks the FUTURE as True",),
            ),
            Mutant(
                "upper triangle", "axis", [(CAUSAL, CAUSAL.replace("tril()", "triu()"))], ("lower triangle",)
            ),
            Mutant("float mask", "dtype", [(CAUSAL, "return torch.ones(T, T).tril()")], ("bool tensor",)),
            Mutant(
                "the notebook's BLOCK_SIZE",
                "argument",
                [(CAUSAL, "return torch.ones(BLOCK_SIZE, BLOCK_SIZE, dtype=torch.bool).tril()")],
                ("(T, T)",),
            ),
        ],
        correct=[
            Correct("tril of ones, then bool", [(CAUSAL, "return torch.tril(torch.ones(T, T)).bool()")]),
            Correct(
                "compare positions", [(CAUSAL, "i = torch.arange(T)\n    return i[:, None] >= i[None, :]")]
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_split_heads,
        ("split_heads",),
        mutants=[
            Mutant(
                "view without transpose",
                "axis",
                [(SPLIT, "return x.view(B, n_head, T, C // n_head)")],
                ("without a transpose mixes tokens across heads",),
            ),
            Mutant(
                "interleaved channels",
                "axis",
                [(SPLIT, "return x.view(B, T, C // n_head, n_head).permute(0, 3, 1, 2)")],
                ("contiguous channels",),
            ),
            Mutant(
                "head size and head count swapped",
                "axis",
                [(SPLIT, "return x.view(B, T, C // n_head, n_head).transpose(1, 2)")],
                ("view(B, T, n_head",),
            ),
            Mutant(
                "transposes the last two dims",
                "axis",
                [(SPLIT, "return x.view(B, T, n_head, C // n_head).transpose(2, 3)")],
                ("transpose(1, 2)",),
            ),
            Mutant(
                "transposes dims 1 and 3",
                "axis",
                [(SPLIT, "return x.view(B, T, n_head, C // n_head).transpose(1, 3)")],
                ("transpose(1, 2)",),
            ),
            Mutant(
                "a copy of the chunks along time",
                "axis",
                [(SPLIT, "return torch.stack(x.chunk(n_head, dim=1), dim=1)")],
                ("dim=-1",),
            ),
        ],
        correct=[
            Correct(
                "reshape and permute", [(SPLIT, "return x.reshape(B, T, n_head, -1).permute(0, 2, 1, 3)")]
            ),
            Correct(
                "stack of channel chunks", [(SPLIT, "return torch.stack(x.chunk(n_head, dim=-1), dim=1)")]
            ),
            Correct("unflatten", [(SPLIT, "return x.unflatten(-1, (n_head, C // n_head)).transpose(1, 2)")]),
        ],
    ),
    Todo(
        P,
        5,
        check_merge_heads,
        ("merge_heads",),
        mutants=[
            Mutant(
                "reshape without transpose",
                "axis",
                [(MERGE, "return y.reshape(B, T, nh * hs)")],
                ("without transposing back",),
            ),
            Mutant(
                "interleaved heads",
                "axis",
                [(MERGE, "return y.permute(0, 2, 3, 1).reshape(B, T, nh * hs)")],
                ("interleaved",),
            ),
            Mutant(
                "view after transpose",
                "shape",
                [(MERGE, "return y.transpose(1, 2).view(B, T, nh * hs)")],
                (".reshape",),
            ),
            Mutant(
                "transposes dims 1 and 3",
                "axis",
                [(MERGE, "return y.transpose(1, 3).reshape(B, T, nh * hs)")],
                ("transpose(1, 2)",),
            ),
            Mutant(
                "heads concatenated along time",
                "axis",
                [(MERGE, "return torch.cat([y[:, h] for h in range(nh)], dim=1)")],
                ("dim=-1",),
            ),
            Mutant(
                "shape unpacked in the wrong order",
                "axis",
                [("B, nh, T, hs = y.shape", "B, T, nh, hs = y.shape")],
                ("(B, nh, T, hs)",),
            ),
        ],
        correct=[
            Correct("permute and flatten", [(MERGE, "return y.permute(0, 2, 1, 3).flatten(2)")]),
            Correct(
                "contiguous then view", [(MERGE, "return y.transpose(1, 2).contiguous().view(B, T, -1)")]
            ),
            Correct(
                "concatenate the heads on the channels",
                [(MERGE, "return torch.cat([y[:, h] for h in range(nh)], dim=-1)")],
            ),
        ],
    ),
    Todo(
        P,
        6,
        check_multi_head_attention,
        MHA_FUNCTIONS,
        mutants=[
            Mutant(
                "no output projection",
                "logic",
                [(PROJECT, "y = merge_heads(heads)")],
                ("output projection is missing",),
            ),
            Mutant(
                "q and k swapped",
                "logic",
                [("q, k, v = F.linear(x, w_qkv, b_qkv)", "k, q, v = F.linear(x, w_qkv, b_qkv)")],
                ("[q | k | v]",),
            ),
            Mutant(
                "heads split without transpose",
                "axis",
                [(SPLIT, "return x.reshape(B, n_head, T, C // n_head)")],
                ("mixes tokens across heads",),
            ),
            Mutant(
                "model width as the scale",
                "scale",
                [
                    (
                        ATTEND,
                        "heads, weights = scaled_dot_product_attention(q, k, v, mask, scale=1 / "
                        "math.sqrt(C))",
                    )
                ],
                ("1/sqrt(hs)",),
            ),
            Mutant(
                "ignores b_qkv",
                "argument",
                [(QKV, "q, k, v = F.linear(x, w_qkv).split(C, dim=-1)")],
                ("bias b_qkv was left out",),
            ),
            Mutant(
                "ignores b_o",
                "argument",
                [(PROJECT, "y = F.linear(merge_heads(heads), w_o)")],
                ("output bias b_o",),
            ),
            Mutant(
                "mask not passed on",
                "argument",
                [(ATTEND, "heads, weights = scaled_dot_product_attention(q, k, v)")],
                ("mask was not passed on",),
            ),
            Mutant(
                "x @ w_qkv without the transpose",
                "axis",
                [(QKV, "q, k, v = (x @ w_qkv).split(C, dim=-1)")],
                ("F.linear",),
            ),
            Mutant(
                "adds b_qkv by hand",
                "argument",
                [(QKV, "q, k, v = (F.linear(x, w_qkv) + b_qkv).split(C, dim=-1)")],
                ("None",),
            ),
            Mutant(
                "returns the head outputs as weights",
                "logic",
                [("    return y, weights", "    return y, heads")],
                ("per-head attention weights",),
            ),
        ],
        correct=[
            Correct(
                "chunk and explicit matmuls",
                [
                    (QKV, "q, k, v = (x @ w_qkv.T + (0 if b_qkv is None else b_qkv)).chunk(3, dim=-1)"),
                    (PROJECT, "y = merge_heads(heads) @ w_o.T\n    if b_o is not None:\n        y = y + b_o"),
                ],
            ),
            Correct(
                "three separate projections",
                [
                    (
                        QKV,
                        "q, k, v = (F.linear(x, w, b) for w, b in zip(\n        "
                        "w_qkv.split(C), (b_qkv.split(C) if b_qkv is not None "
                        "else [None] * 3), strict=True))",
                    )
                ],
            ),
        ],
    ),
]
