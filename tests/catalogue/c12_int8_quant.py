"""Mutation catalogue of 12_int8_quant (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.int8_quant import (
    check_absmax_quantize,
    check_fake_quant,
    check_int8_matmul,
    check_llm_int8_matmul,
    check_quant_linear,
    check_zeropoint_quantize,
)

P = "12_int8_quant"
AMAX = "amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)"
ROUND_Q = "q = torch.round(x / scale).clamp(-q_max, q_max).to(torch.int8)"
QRANGE = "q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1"
ZP = "zero_point = (q_min - torch.round(lo / scale)).clamp(q_min, q_max)"
ZSCALE = "scale = ((hi - lo).clamp(min=1e-12) / (q_max - q_min)).to(torch.float32)"
ZDIM = "        lo, hi = x.amin(dim=dim, keepdim=True), x.amax(dim=dim, keepdim=True)\n"
MM = "    return a.to(torch.int32) @ b.to(torch.int32)"
LLM = ("absmax_quantize", "int8_matmul", "llm_int8_matmul")
OUTLIER = "outlier = (x.abs() >= threshold).any(dim=0)"
XQ = "x_q, s_x = absmax_quantize(x[:, ~outlier], dim=1)"
WQ = "w_q, s_w = absmax_quantize(w[~outlier], dim=0)"
DEQ = "w = weight_q.to(torch.float32) * weight_scale"
LIN = "return F.linear(x, w, bias)"
FQ_MAX = "    q_max = 2 ** (bits - 1) - 1"
FQ_OUT = "    return xc + (torch.round(xc / scale) * scale - xc).detach()"

CATALOGUE = [
    Todo(
        P,
        1,
        check_absmax_quantize,
        ("absmax_quantize",),
        mutants=[
            Mutant(
                "max instead of max-abs",
                "logic",
                [(AMAX, "amax = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)")],
                ("max(|x|)",),
            ),
            Mutant(
                "floor rounding",
                "dtype",
                [("torch.round(x / scale)", "torch.floor(x / scale)")],
                ("floor", "torch.round"),
            ),
            Mutant(
                "truncated by the int8 cast",
                "dtype",
                [("torch.round(x / scale).clamp", "(x / scale).clamp")],
                ("truncation toward zero",),
            ),
            Mutant(
                "max over the other dimension",
                "axis",
                [
                    (
                        "else x.abs().amax(dim=dim, keepdim=True)",
                        "else x.abs().amax(dim=1 - dim, keepdim=True)",
                    )
                ],
                ("size 1 at `dim`", "over dim"),
            ),
            Mutant(
                "no guard for all-zero slices",
                "stability",
                [("amax.clamp(min=1e-12) / q_max", "amax / q_max")],
                ("clamp(min=1e-12)",),
            ),
            Mutant(
                "keepdim forgotten",
                "shape",
                [("else x.abs().amax(dim=dim, keepdim=True)", "else x.abs().amax(dim=dim)")],
                ("keepdim=True",),
            ),
            Mutant(
                "bits ignored (q_max = 127)",
                "argument",
                [("q_max = 2 ** (bits - 1) - 1", "q_max = 127")],
                ("bits argument is ignored",),
            ),
            Mutant(
                "q_max = 2**(bits-1)",
                "off-by-one",
                [("q_max = 2 ** (bits - 1) - 1", "q_max = 2 ** (bits - 1)")],
                ("not 128",),
            ),
            Mutant(
                "q left as float",
                "dtype",
                [(ROUND_Q, "q = torch.round(x / scale).clamp(-q_max, q_max)")],
                ("int8",),
            ),
            Mutant(
                "x divided in place",
                "in-place",
                [(ROUND_Q, "x /= scale\n    q = torch.round(x).clamp(-q_max, q_max).to(torch.int8)")],
                ("in place",),
            ),
        ],
        correct=[
            Correct(
                "max(dim).values",
                [
                    (
                        AMAX,
                        "amax = x.abs().max() if dim is None else x.abs().max(dim=dim, keepdim=True).values",
                    )
                ],
            ),
            Correct(
                "torch.clamp and torch.where guard",
                [
                    (
                        "scale = (amax.clamp(min=1e-12) / q_max).to(torch.float32)",
                        "scale = torch.where(amax > 0, amax, torch.full_like(amax, 1e-12)).float() / q_max",
                    ),
                    (ROUND_Q, "q = torch.clamp(torch.round(x / scale), -q_max, q_max).to(torch.int8)"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_zeropoint_quantize,
        ("zeropoint_quantize",),
        mutants=[
            Mutant(
                "zero-point not rounded",
                "dtype",
                [("(q_min - torch.round(lo / scale))", "(q_min - lo / scale)")],
                ("round(lo / scale)",),
            ),
            Mutant(
                "fractional zero-point returned as float",
                "dtype",
                [
                    ("(q_min - torch.round(lo / scale))", "(q_min - lo / scale)"),
                    ("return q, scale, zero_point.to(torch.int32)", "return q, scale, zero_point"),
                ],
                ("not an integer",),
            ),
            Mutant(
                "range without 0",
                "logic",
                [("lo, hi = lo.clamp(max=0), hi.clamp(min=0)", "pass")],
                ("min(x.amin(), 0)",),
            ),
            Mutant(
                "zero-point sign flipped",
                "scale",
                [(ZP, ZP.replace("q_min - torch", "q_min + torch"))],
                ("q_min - round(lo / scale)",),
            ),
            Mutant(
                "bits ignored (int8 range hard-coded)",
                "argument",
                [(QRANGE, "q_min, q_max = -128, 127")],
                ("bits argument is ignored",),
            ),
            Mutant(
                "divided by the number of levels",
                "off-by-one",
                [(ZSCALE, ZSCALE.replace("(q_max - q_min)", "(q_max - q_min + 1)"))],
                ("not 256",),
            ),
            Mutant(
                "dim ignored",
                "argument",
                [(ZDIM, "        lo, hi = x.amin(), x.amax()\n")],
                ("dim argument is ignored",),
            ),
            Mutant(
                "keepdim forgotten",
                "shape",
                [(ZDIM, "        lo, hi = x.amin(dim=dim), x.amax(dim=dim)\n")],
                ("keepdim=True",),
            ),
            Mutant(
                "zero-point returned as float",
                "dtype",
                [("return q, scale, zero_point.to(torch.int32)", "return q, scale, zero_point")],
                ("zero_point.to(torch.int32)",),
            ),
            Mutant(
                "no guard for an all-zero slice",
                "stability",
                [(ZSCALE, ZSCALE.replace(".clamp(min=1e-12)", ""))],
                ("clamp(min=1e-12)",),
            ),
        ],
        correct=[
            Correct("aminmax", [(ZDIM, "        lo, hi = torch.aminmax(x, dim=dim, keepdim=True)\n")]),
            Correct(
                "torch.minimum / torch.maximum with 0",
                [
                    (
                        "lo, hi = lo.clamp(max=0), hi.clamp(min=0)",
                        "lo, hi = torch.minimum(lo, torch.zeros_like(lo)), "
                        "torch.maximum(hi, torch.zeros_like(hi))",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_int8_matmul,
        ("int8_matmul",),
        mutants=[
            Mutant(
                "int8 accumulator",
                "dtype",
                [(MM, "    return (a @ b).to(torch.int32)")],
                ("wrapped around in int8",),
            ),
            Mutant(
                "int16 accumulator",
                "dtype",
                [(MM, "    return (a.to(torch.int16) @ b.to(torch.int16)).to(torch.int32)")],
                ("wrapped around in int16",),
            ),
            Mutant("float result", "dtype", [(MM, "    return a.float() @ b.float()")], ("int32 tensor",)),
            Mutant("int64 result", "dtype", [(MM, "    return a.long() @ b.long()")], ("int32 tensor",)),
            Mutant(
                "b transposed as for a linear layer",
                "axis",
                [(MM, "    return a.to(torch.int32) @ b.to(torch.int32).T")],
                ("no transpose",),
            ),
            Mutant(
                "float16 matmul",
                "dtype",
                [(MM, "    return (a.half() @ b.half()).to(torch.int32)")],
                ("float16",),
            ),
        ],
        correct=[
            Correct(
                "exact float32 product (K small enough)",
                [(MM, "    return (a.float() @ b.float()).to(torch.int32)")],
            ),
            Correct(
                "broadcast and sum in int32",
                [
                    (
                        MM,
                        "    return (a.to(torch.int32)[:, :, None] * b.to(torch.int32)[None])"
                        ".sum(1, dtype=torch.int32)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_llm_int8_matmul,
        LLM,
        mutants=[
            Mutant(
                "no decomposition",
                "branch",
                [(OUTLIER, "outlier = (x.abs() > 1e30).any(dim=0)")],
                ("no column was kept in fp32",),
            ),
            Mutant(
                "strict threshold",
                "off-by-one",
                [("(x.abs() >= threshold)", "(x.abs() > threshold)")],
                (">= threshold",),
            ),
            Mutant(
                "per-tensor scales",
                "axis",
                [
                    (XQ, "x_q, s_x = absmax_quantize(x[:, ~outlier])"),
                    (WQ, "w_q, s_w = absmax_quantize(w[~outlier])"),
                ],
                ("one per ROW of x", "outer product"),
            ),
            Mutant(
                "outlier term missing",
                "logic",
                [("return y + x[:, outlier] @ w[outlier]", "return y")],
                ("outlier part is missing",),
            ),
            Mutant(
                "outlier rows instead of columns",
                "axis",
                [(OUTLIER, "outlier = (x.abs() >= threshold).any(dim=1)")],
                ("one flag per feature COLUMN",),
            ),
            Mutant(
                "threshold hard-coded to 6",
                "argument",
                [(OUTLIER, "outlier = (x.abs() >= 6.0).any(dim=0)")],
                ("threshold argument is ignored",),
            ),
            Mutant(
                "threshold=None not handled",
                "branch",
                [
                    (
                        "    if threshold is None:\n"
                        "        outlier = torch.zeros(x.shape[1], dtype=torch.bool)  # (K,)\n"
                        "    else:\n        ",
                        "    ",
                    )
                ],
                ("threshold is None",),
            ),
            Mutant(
                "outlier columns quantized too",
                "logic",
                [(XQ, "x_q, s_x = absmax_quantize(x, dim=1)"), (WQ, "w_q, s_w = absmax_quantize(w, dim=0)")],
                ("counted twice",),
            ),
            Mutant(
                "only the activation scale applied", "scale", [("* (s_x * s_w)", "* s_x")], ("BOTH scales",)
            ),
        ],
        correct=[
            Correct(
                "outlier part via masked full matmul",
                [("return y + x[:, outlier] @ w[outlier]", "return y + (x * outlier) @ w")],
            ),
            Correct(
                "scales applied to the int32 product separately",
                [
                    (
                        "y = int8_matmul(x_q, w_q).to(torch.float32) * (s_x * s_w)",
                        "y = int8_matmul(x_q, w_q).to(torch.float32) * s_x * s_w",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_quant_linear,
        ("quant_linear",),
        mutants=[
            Mutant("bias dropped", "argument", [(LIN, "return F.linear(x, w)")], ("bias is missing",)),
            Mutant("row scales applied to columns", "axis", [(DEQ, DEQ + ".T")], ("wrong axis",)),
            Mutant("x @ w without the transpose", "axis", [(LIN, "return x @ w + bias")], ("x @ w.T",)),
            Mutant(
                "divided by the scale",
                "scale",
                [(DEQ, "w = weight_q.to(torch.float32) / weight_scale")],
                ("multiplying",),
            ),
            Mutant(
                "bias added unconditionally",
                "branch",
                [(LIN, "return x @ w.T + bias")],
                ("bias may be None",),
            ),
            Mutant(
                "torch.mm on a 2-D view only",
                "shape",
                [(LIN, "return torch.mm(x, w.T) + bias")],
                ("leading dims",),
            ),
        ],
        correct=[
            Correct(
                "int8 times float scale, then matmul",
                [
                    (DEQ, "w = weight_q * weight_scale"),
                    (LIN, "y = x @ w.T\n    return y if bias is None else y + bias"),
                ],
            ),
            Correct(
                "scale the output columns",
                [
                    (DEQ, "w = weight_q.to(torch.float32)"),
                    (
                        LIN,
                        "y = F.linear(x, w) * weight_scale.squeeze(-1)\n"
                        "    return y if bias is None else y + bias",
                    ),
                ],
            ),
        ],
    ),
    Todo(
        P,
        6,
        check_fake_quant,
        ("fake_quant",),
        mutants=[
            Mutant(
                "scale turned into a Python float",
                "dtype",
                [(FQ_MAX, FQ_MAX + "\n    scale = float(scale)")],
                ("per-row scales", "no float(scale)"),
            ),
            Mutant(
                "gradient leaks outside the clip range",
                "grad",
                [(FQ_OUT, "    return x + (torch.round(xc / scale) * scale - x).detach()")],
                ("passes outside the clip range",),
            ),
            Mutant(
                "gradient blocked by round",
                "grad",
                [(FQ_OUT, "    return torch.round(xc / scale) * scale")],
                ("zero everywhere",),
            ),
            Mutant(
                "output fully detached",
                "grad",
                [(FQ_OUT, "    return (torch.round(xc / scale) * scale).detach()")],
                ("only the rounding residual is detached",),
            ),
            Mutant(
                "no clip",
                "branch",
                [("xc = torch.clamp(x, -q_max * scale, q_max * scale)  #", "xc = x  #")],
                ("not clipped",),
            ),
            Mutant(
                "bits ignored (q_max = 127)",
                "argument",
                [(FQ_MAX, "    q_max = 127")],
                ("bits argument is ignored",),
            ),
            Mutant(
                "q_max = 2**(bits-1)", "off-by-one", [(FQ_MAX, "    q_max = 2 ** (bits - 1)")], ("not 128",)
            ),
            Mutant(
                "levels truncated by an int cast",
                "dtype",
                [(FQ_OUT, "    return xc + ((xc / scale).int() * scale - xc).detach()")],
                ("truncation",),
            ),
        ],
        correct=[
            Correct(
                "clamp after rounding",
                [
                    (
                        FQ_OUT,
                        "    x_q = torch.round(x / scale).clamp(-q_max, q_max) * scale\n"
                        "    return xc + (x_q - xc).detach()",
                    )
                ],
            ),
            Correct(
                "torch.where STE",
                [
                    (
                        FQ_OUT,
                        "    x_q = torch.round(xc / scale) * scale\n"
                        "    return x_q.detach() + xc - xc.detach()",
                    )
                ],
            ),
        ],
    ),
]
