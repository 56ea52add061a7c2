"""Checks for project 12 (quantization): one check per TODO of ``12_int8_quant/solution.ipynb``.

References: ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel`` (PyTorch's own affine int8
quantizers, round-half-to-even like ``torch.round``) for the quantizers; ``torch._int_mm`` (int8 × int8 →
int32) for the integer matmul; a plain re-implementation of LLM.int8() (Dettmers et al. 2022, §3) for the
decomposition; ``nn.Linear`` for the quantized layer; and autograd on ``torch.clamp`` for the
straight-through estimator (Bengio et al. 2013; Jacob et al. 2018, §3). When an answer is wrong, the
check recomputes the answer of each well-known bug (max instead of max-abs, floor or truncation instead
of round, scales along the wrong axis, an int8 or int16 accumulator, a fractional zero-point, an STE that
ignores the clip range or blocks the gradient) and names the one that matches.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn as nn

from shared.checks import (
    assert_close,
    call,
    expect,
    expect_equal,
    fmt,
    hint_on_crash,
    learner_check,
    within,
)
from shared.checks.compare import diagnose, expect_tensors, gen, randn

__all__ = [
    "reference_absmax",
    "reference_zeropoint",
    "reference_llm_int8_matmul",
    "check_absmax_quantize",
    "check_zeropoint_quantize",
    "check_int8_matmul",
    "check_llm_int8_matmul",
    "check_quant_linear",
    "check_fake_quant",
]


def _quiet(fn: Callable, *args: object) -> torch.Tensor:
    """Call a torch.quantize_per_* function without its deprecation warning (it is only our reference)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args).int_repr()


def reference_absmax(x: torch.Tensor, dim: int | None = None,
                     bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax quantization via torch.quantize_per_tensor / quantize_per_channel (zero-point 0)."""
    q_max = 2 ** (bits - 1) - 1
    if dim is None:
        scale = (x.abs().amax().clamp(min=1e-12) / q_max).float()
        q = _quiet(torch.quantize_per_tensor, x.float(), float(scale), 0, torch.qint8)
        return q.clamp(-q_max, q_max), scale
    scale = (x.abs().amax(dim=dim, keepdim=True).clamp(min=1e-12) / q_max).float()
    axis = (1 - dim) % 2 if x.dim() == 2 else None
    if axis is None:  # not a matrix: plain formula
        return torch.round(x / scale).clamp(-q_max, q_max).to(torch.int8), scale
    flat = scale.flatten().double()
    q = _quiet(torch.quantize_per_channel, x.float(), flat, torch.zeros_like(flat, dtype=torch.long), axis,
               torch.qint8)
    return q.clamp(-q_max, q_max), scale


def reference_zeropoint(
    x: torch.Tensor, dim: int | None = None, bits: int = 8
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine quantization of [min(x, 0), max(x, 0)] (Jacob et al. 2018, §2.1), q via torch.quantize_per_*."""
    q_min, q_max = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = x.amin() if dim is None else x.amin(dim=dim, keepdim=True)
    hi = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
    lo, hi = lo.clamp(max=0), hi.clamp(min=0)
    scale = ((hi - lo).clamp(min=1e-12) / (q_max - q_min)).float()
    zp = (q_min - torch.round(lo / scale)).clamp(q_min, q_max)
    if dim is None:
        q = _quiet(torch.quantize_per_tensor, x.float(), float(scale), int(zp), torch.qint8)
    else:
        axis = (1 - dim) % 2
        q = _quiet(torch.quantize_per_channel, x.float(), scale.flatten().double(), zp.flatten().long(), axis,
                   torch.qint8)
    return q.clamp(q_min, q_max), scale, zp.to(torch.int32)


def reference_llm_int8_matmul(x: torch.Tensor, w: torch.Tensor,
                              threshold: float | None = 6.0) -> torch.Tensor:
    """LLM.int8() (Dettmers et al. 2022, §3.1-3.2):
    outlier feature columns in fp32, the rest vector-wise int8."""
    K = x.shape[1]
    outlier = torch.zeros(K, dtype=torch.bool) if threshold is None else (x.abs() >= threshold).any(dim=0)
    xq, sx = reference_absmax(x[:, ~outlier], dim=1)  # (T, K'), (T, 1)
    wq, sw = reference_absmax(w[~outlier], dim=0)  # (K', N), (1, N)
    y = (xq.long() @ wq.long()).float() * (sx * sw)  # (T, N)
    return y + x[:, outlier] @ w[outlier]


def _as_tuple(result: object, n: int, what: str, names: str) -> tuple:
    message = f"{what} must return a tuple {names} of {n} tensors; got {fmt(result, 120)}"
    return expect_tensors(result, n, message, f"end with `return {names.strip('()')}`")


# ----------------------------------------------------------------------------------------------- TODO 1

CASES_1 = [  # (name, x, dim, bits)
    ("per tensor", None, 8),
    ("per row (dim=1)", 1, 8),
    ("per column (dim=0)", 0, 8),
    ("per row, int4", 1, 4),
]


def _absmax_bugs(x: torch.Tensor, dim: int | None, bits: int) -> list[tuple[torch.Tensor, str]]:
    q_max = 2 ** (bits - 1) - 1
    def amax_of(t: torch.Tensor, d: int | None) -> torch.Tensor:
        return t.amax() if d is None else t.amax(dim=d, keepdim=True)
    s = amax_of(x.abs(), dim).clamp(min=1e-12) / q_max
    out = [
        (torch.floor(x / s).clamp(-q_max, q_max),
         "rounding with floor: use torch.round (nearest), not floor"),
        (torch.trunc(x / s).clamp(-q_max, q_max),
         "truncation toward zero (.to(int8) or int() without rounding): call torch.round(x / scale) first"),
        (torch.round(x / (amax_of(x, dim) / q_max)).clamp(-q_max, q_max),
         "the scale uses max(x), not max(|x|): a large negative value is then clipped; use "
         "x.abs().amax(...)"),
    ]
    if dim is not None:
        other = 1 - dim
        s_wrong = x.abs().amax(dim=other, keepdim=True).clamp(min=1e-12) / q_max
        if s_wrong.shape[0] == x.shape[0] or s_wrong.shape[-1] == x.shape[-1]:
            try:
                out.append((torch.round(x / s_wrong.reshape(s.shape)).clamp(-q_max, q_max),
                            f"the max was taken over the wrong dimension: dim={dim} means reduce over dim "
                            f"{dim} "
                            "(keepdim=True)"))
            except RuntimeError:
                pass
    return out


@learner_check(1, "absmax_quantize")
def check_absmax_quantize(absmax_quantize: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    x = randn(6, 10, seed=1) * torch.linspace(0.1, 3.0, 10)  # columns of different sizes
    x[2, 3] = -9.0  # the largest magnitude is negative: max and max-abs differ
    x_before = x.clone()
    for name, dim, bits in CASES_1:
        with hint_on_crash("the scale must broadcast against x: amax(dim=dim, keepdim=True) keeps size 1 at "
                           "`dim`"):
            result = call(absmax_quantize, x, dim=dim, bits=bits)
        expect(torch.equal(x, x_before), "absmax_quantize changed its input x in place",
               hint="never modify x (x /= scale, x.div_(...)): compute q from x / scale, a new tensor")
        q, scale = _as_tuple(result, 2, "absmax_quantize", "(q, scale)")
        ref_q, ref_s = reference_absmax(x, dim, bits)
        expect_equal(q.dtype, torch.int8, f"{name}: q must be an int8 tensor",
                     hint="finish with .to(torch.int8)")
        q_max = 2 ** (bits - 1) - 1
        amax = x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)
        if scale.shape != ref_s.shape:
            other = None if dim is None else 1 - dim
            scale_hint = ("one scale for the whole tensor: x.abs().amax()" if dim is None else
                          f"you took the max over dim {other}: dim={dim} means one scale per slice along dim "
                          f"{other}, the max over dim {dim} with keepdim=True (size 1 at `dim`)"
                          if scale.shape == x.abs().amax(dim=other, keepdim=True).shape else
                          "keepdim=True so that the scale has size 1 at `dim`")
        else:
            signed_max = x.amax() if dim is None else x.amax(dim=dim, keepdim=True)
            scale_hint = diagnose(scale, [
                (signed_max / q_max, "the scale uses max(x), not max(|x|): a large negative value is then "
                                     "clipped; use x.abs().amax(...)"),
                (amax / 127, f"the bits argument is ignored: q_max = 2**(bits-1) - 1 = {q_max} for {bits} "
                             "bits"),
                (amax / (q_max + 1), f"q_max = 2**(bits-1) - 1 = {q_max}, not {q_max + 1}: the symmetric "
                                     f"grid is -{q_max} .. {q_max}"),
            ], "scale = max(|x|) / q_max with q_max = 2**(bits-1) - 1 (127 for int8, 7 for int4)")
        assert_close(scale, ref_s, f"{name}: scale = max|x| / {q_max}", atol=1e-7, rtol=1e-6, hint=scale_hint)
        # quantised integers are exact: a bug is named only by the very same integers (atol = rtol = 0)
        hint = diagnose(q, _absmax_bugs(x, dim, bits), "q = clamp(round(x / scale), -q_max, q_max)", atol=0,
                        rtol=0)
        expect_equal(q, ref_q, f"{name}: q (compared with torch.quantize_per_tensor/channel)", hint=hint)
        err = (q.float() * scale - x).abs()
        expect(bool((err <= scale / 2 + 1e-6).all()), f"{name}: round-trip error exceeds scale/2",
               hint="round to the nearest integer")
    zq, zs = call(absmax_quantize, torch.zeros(3, 4), dim=1)
    expect(bool(torch.isfinite(zs).all() and (zs > 0).all()) and not bool(zq.any()),
           "an all-zero input gave zero, NaN or inf scales (0/0 = NaN in x / scale) or nonzero q",
           hint="clamp max|x| away from zero before dividing: .clamp(min=1e-12)")
    return (
        "per tensor, per row, per column and int4 match torch.quantize_per_tensor/channel exactly; "
        "scales = max|x|/q_max; round-trip error <= scale/2; zeros stay finite"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


@learner_check(2, "zeropoint_quantize")
def check_zeropoint_quantize(zeropoint_quantize: Callable[..., tuple]) -> str:
    x = randn(5, 12, seed=2) * 2 + 1.0
    relu = torch.relu(randn(4, 16, seed=3)) * 3  # one-sided data: min is 0
    x_neg = -torch.rand(3, 8, generator=gen(4)) - 0.5  # all negative: 0 must be added to the range
    cases = [("per tensor", x, None, 8), ("per row (dim=1)", x, 1, 8), ("per column (dim=0)", x, 0, 8),
             ("ReLU output, per tensor", relu, None, 8), ("all-negative rows", x_neg, 1, 8),
             ("per row, int4 (bits=4)", x, 1, 4), ("all zeros, per row", torch.zeros(3, 4), 1, 8)]
    for name, data, dim, bits in cases:
        with hint_on_crash("scale and zero_point must broadcast against x: amin/amax(dim=dim, keepdim=True)"):
            result = call(zeropoint_quantize, data, dim=dim, bits=bits)
        q, scale, zp = _as_tuple(result, 3, "zeropoint_quantize", "(q, scale, zero_point)")
        ref_q, ref_s, ref_zp = reference_zeropoint(data, dim, bits)
        expect_equal(q.dtype, torch.int8, f"{name}: q must be int8", hint="finish with .to(torch.int8)")
        expect(bool(torch.isfinite(scale).all() and (scale > 0).all()),
               f"{name}: the scale is {fmt(scale, 80)}; it must be finite and > 0",
               hint="an all-zero slice has hi - lo = 0: clamp it away from zero, (hi - lo).clamp(min=1e-12)")
        lo = (data.amin() if dim is None else data.amin(dim=dim, keepdim=True)).clamp(max=0)
        hi = (data.amax() if dim is None else data.amax(dim=dim, keepdim=True)).clamp(min=0)
        steps = 2 ** bits - 1
        if scale.shape != ref_s.shape:
            scale_hint = ("the dim argument is ignored: dim=1 means one scale (and zero-point) per row, "
                          "amin/amax over dim with keepdim=True" if scale.numel() == 1 else
                          "keepdim=True so that scale and zero_point have size 1 at `dim`")
        else:
            scale_hint = diagnose(scale, [
                ((hi - lo) / 255, "the bits argument is ignored: q_min, q_max = -2**(bits-1), "
                                  "2**(bits-1) - 1"),
                ((hi - lo) / (steps + 1), f"divide by q_max - q_min = {steps} (the steps between the "
                                          f"{steps + 1} levels), not {steps + 1}"),
            ], "lo = min(x.amin(), 0), hi = max(x.amax(), 0); scale = (hi - lo) / (q_max - q_min)")
        assert_close(scale, ref_s, f"{name}: scale = (max - min) / {steps} with the range widened to "
                     "include 0", atol=1e-7, rtol=1e-5, hint=scale_hint)
        zp_f = zp.to(torch.float64)
        expect(bool((zp_f == torch.round(zp_f)).all()),
               f"{name}: zero_point is not an integer: {fmt(zp, 120)}",
               hint="round the zero-point: zero_point = q_min - torch.round(lo / scale)")
        q_lo, q_hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        expect(bool(((zp_f >= q_lo) & (zp_f <= q_hi)).all()),
               f"{name}: zero_point outside [{q_lo}, {q_hi}]: {fmt(zp, 120)}",
               hint="include 0 in the range (lo <= 0 <= hi) and clamp the zero-point to [q_min, q_max]")
        expect_equal(zp.to(torch.int32), ref_zp, f"{name}: zero_point",
                     hint="zero_point = q_min - round(lo / scale)")
        expect_equal(zp.dtype, torch.int32, f"{name}: zero_point dtype",
                     hint="return the zero-point as an integer tensor: zero_point.to(torch.int32)")
        expect_equal(q, ref_q, f"{name}: q (compared with torch.quantize_per_tensor/channel)",
                     hint="q = clamp(round(x / scale) + zero_point, q_min, q_max)")
        x_hat = (q.float() - zp.float()) * scale
        expect(bool(((x_hat - data).abs() <= scale / 2 + 1e-6).all()),
               f"{name}: some value in [min, max] does not round-trip within scale/2",
               hint="the scale and zero-point must cover the whole range [min, max]")
        zero_code = (torch.round(torch.zeros(()) / scale) + zp)
        expect(bool(((zero_code.float() - zp.float()) * scale == 0).all()),
               f"{name}: 0 is not exactly representable")
    return (
        "per tensor, per row, per column, ReLU and all-negative inputs match "
        "torch.quantize_per_tensor/channel; integer zero-points in [-128, 127]; every value in [min, max] "
        "round-trips within scale/2"
    )


# ----------------------------------------------------------------------------------------------- TODO 3


def _wrap(t: torch.Tensor, bits: int) -> torch.Tensor:
    """Two's-complement wrap of int64 values into `bits` bits."""
    half = 2 ** (bits - 1)
    return (t + half) % (2 * half) - half


@learner_check(3, "int8_matmul")
def check_int8_matmul(int8_matmul: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    g = gen(5)
    shapes = [(1, 2, 1), (17, 64, 9), (32, 512, 24)]
    for M, K, N in shapes:
        a = torch.randint(-128, 128, (M, K), generator=g, dtype=torch.int8)
        b = torch.randint(-128, 128, (K, N), generator=g, dtype=torch.int8)
        if K == 2:
            a.fill_(127)
            b.fill_(127)
        with hint_on_crash("a is (M, K) and b is (K, N): the product is a @ b, no transpose"):
            got = call(int8_matmul, a, b)
        expect(isinstance(got, torch.Tensor), f"int8_matmul must return a tensor, got {type(got).__name__}")
        exact = a.long() @ b.long()  # (M, N) int64: no overflow possible
        if M >= 17:
            # the reference
            expect_equal(torch._int_mm(a, b).long(), exact, "torch._int_mm agrees with int64")
        hint = "accumulate in int32: a.to(torch.int32) @ b.to(torch.int32)"
        if got.shape == exact.shape and not got.is_floating_point():
            if torch.equal(got.long(), _wrap(exact, 8)) and not torch.equal(exact, _wrap(exact, 8)):
                hint = "the sum wrapped around in int8: accumulating in int8 overflows; widen to int32 first"
            elif torch.equal(got.long(), _wrap(exact, 16)) and not torch.equal(exact, _wrap(exact, 16)):
                hint = "the sum wrapped around in int16 (32 767 max): accumulate in int32"
        if got.shape == exact.shape and not torch.equal(got.long(), exact):
            rel = float((got.double() - exact.double()).abs().max() / exact.double().abs().max().clamp(min=1))
            if rel < 1e-2:
                hint = ("close but not exact: a float matmul (float16 or bfloat16) rounds these sums; the "
                        "exact product needs integers: a.to(torch.int32) @ b.to(torch.int32)")
        expect_equal(got.dtype, torch.int32, f"({M}x{K}) @ ({K}x{N}): result dtype",
                     hint="return an int32 tensor" + (" (int32 is the accumulator width of int8 hardware, "
                                                      "and half the memory of int64)"
                                                      if got.dtype == torch.int64 else ""))
        expect_equal(got.long(), exact, f"({M}x{K}) @ ({K}x{N}): product of full-range int8 matrices",
                     hint=hint)
        # float product of the dequantized operands (scale 1): exact in float64
        deq = (a.double() @ b.double())
        expect_equal(got.double(), deq, "equals the float64 product of the operands", hint=hint)
    return (
        "exact int32 result on 3 shapes up to K=512, equal to torch._int_mm and to the float64 product of "
        "the operands; 127·127 + 127·127 = 32258 does not wrap"
    )


# ----------------------------------------------------------------------------------------------- TODO 4


def _outlier_data(seed: int, T: int = 24, K: int = 64, N: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x = randn(T, K, seed=seed)
    x[:, 5] = torch.linspace(-40, 40, T)  # an outlier feature (crosses the threshold in most rows)
    x[7, 30] = 6.0  # exactly at the threshold: |x| >= 6 counts
    w = randn(K, N, seed=seed + 1) / 8
    return x, w


@learner_check(4, "llm_int8_matmul")
def check_llm_int8_matmul(llm_int8_matmul: Callable[..., torch.Tensor]) -> str:
    x, w = _outlier_data(6)
    y = x @ w  # (T, N) fp32
    crash = ("could be the outlier mask or the scales: outlier = (x.abs() >= threshold).any(dim=0), one flag "
             "per feature COLUMN (K,), all False when threshold is None; absmax_quantize(x_reg, dim=1) gives "
             "(T, 1) scales and absmax_quantize(w_reg, dim=0) gives (1, N)")
    with hint_on_crash(crash):
        got = call(llm_int8_matmul, x, w, threshold=6.0)
    expect(isinstance(got, torch.Tensor), f"llm_int8_matmul must return a tensor, got {type(got).__name__}")
    ref = reference_llm_int8_matmul(x, w, 6.0)
    K = x.shape[1]
    outlier = (x.abs() >= 6.0).any(dim=0)  # (K,)
    xr, wr = x[:, ~outlier], w[~outlier]
    (xq_t, sx_t), (wq_t, sw_t) = reference_absmax(xr), reference_absmax(wr)
    per_tensor = (xq_t.long() @ wq_t.long()).float() * (sx_t * sw_t) + x[:, outlier] @ w[outlier]
    (xq_r, sx_r), (wq_r, _) = reference_absmax(xr, dim=1), reference_absmax(wr, dim=0)
    candidates = [
        (reference_llm_int8_matmul(x, w, None),
         "no column was kept in fp32: outlier = (x.abs() >= "
         "threshold).any(dim=0), one flag per feature column"),
        (reference_llm_int8_matmul(x, w, 6.0 + 1e-4), "use >= threshold, not > threshold"),
        (ref - x[:, outlier] @ w[outlier],
         "the outlier part is missing: add x[:, outlier] @ w[outlier] (fp32)"),
        (per_tensor,
         "vector-wise scales: one per ROW of x (dim=1, per token) and one per COLUMN of w (dim=0, per "
         "output), combined as an outer product (T, 1) * (1, N); not one scale per tensor"),
        (reference_llm_int8_matmul(x, w, None) + x[:, outlier] @ w[outlier],
         "the outlier columns were counted twice: quantize only the regular part, x[:, ~outlier] and "
         "w[~outlier], and add the outlier part x[:, outlier] @ w[outlier] once"),
        ((xq_r.long() @ wq_r.long()).float() * sx_r + x[:, outlier] @ w[outlier],
         "multiply the int32 product by BOTH scales, s_x (T, 1) * s_w (1, N)"),
    ]
    hint = "outlier columns: x[:, outlier] @ w[outlier] in fp32; the rest per-row (x) / per-column (w) int8"
    for cand, h in candidates:
        if got.shape == cand.shape and torch.allclose(got, cand, atol=1e-5):
            hint = h
            break
    err = assert_close(got, ref, "output vs reference LLM.int8() (same quantization)", hint=hint, atol=1e-4,
                       rtol=1e-4)
    rel = float((got - y).norm() / y.norm())
    rel_plain = float((reference_llm_int8_matmul(x, w, None) - y).norm() / y.norm())
    expect(rel < 0.02, f"relative error vs fp32 x @ w is {rel:.3f}, expected < 0.02", hint=hint)
    expect(rel < rel_plain,
           f"relative error vs fp32 x @ w is {rel:.4f}, no better than plain vector-wise int8's "
           f"{rel_plain:.4f}", hint=hint)
    with hint_on_crash(crash):
        got3 = call(llm_int8_matmul, x, w, threshold=2.5)
    assert_close(got3, reference_llm_int8_matmul(x, w, 2.5), "threshold=2.5 (more outlier columns)",
                 hint=diagnose(got3, [(ref, "the threshold argument is ignored: outlier = (x.abs() >= "
                                            "threshold).any(dim=0) with the threshold passed in")],
                               "outlier = (x.abs() >= threshold).any(dim=0) with the threshold passed in"),
                 atol=1e-4, rtol=1e-4)
    x2, w2 = randn(10, 32, seed=8), randn(32, 12, seed=9) / 6  # no outliers: threshold=None path
    with hint_on_crash(crash):
        got_none = call(llm_int8_matmul, x2, w2, threshold=None)
    assert_close(got_none, reference_llm_int8_matmul(x2, w2, None),
                 "threshold=None (plain vector-wise int8)", hint="threshold=None: no column is an outlier",
                 atol=1e-4, rtol=1e-4)
    return (
        f"matches a reference LLM.int8() ({within(err, 1e-4)}); vs fp32 x @ w relative error < 0.02 with an "
        f"outlier feature of ±40, below plain vector-wise int8's; threshold=None works ({K} features)"
    )


# ----------------------------------------------------------------------------------------------- TODO 5


@learner_check(5, "quant_linear")
def check_quant_linear(quant_linear: Callable[..., torch.Tensor]) -> str:
    torch_gen = gen(10)
    for d_in, d_out, bias in ((32, 32, True), (48, 20, True), (16, 24, False)):  # square first: see the axis
        lin = nn.Linear(d_in, d_out, bias=bias)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(d_out, d_in,
                                         generator=torch_gen) * torch.linspace(0.05, 2.0, d_out)[:, None])
            if bias:
                lin.bias.copy_(torch.randn(d_out, generator=torch_gen))
        wq, ws = reference_absmax(lin.weight.detach(), dim=1)  # (out, in) int8, (out, 1)
        x = torch.randn(3, 5, d_in, generator=torch_gen)
        with hint_on_crash("x may have any number of leading dims (..., in) and bias may be None: "
                           "F.linear(x, weight_q.float() * weight_scale, bias) handles both"):
            got = call(quant_linear, x, wq, ws, lin.bias.detach() if bias else None)
        expect(isinstance(got, torch.Tensor), f"quant_linear must return a tensor, got {type(got).__name__}")
        want = torch.nn.functional.linear(x, wq.float() * ws, None if not bias else lin.bias.detach())
        bugs = [(torch.nn.functional.linear(x, wq.float() / ws, None if not bias else lin.bias.detach()),
                 "dequantize by multiplying: w = weight_q · weight_scale (the scale is max|w| / q_max)")]
        if bias:
            bugs.append((want - lin.bias.detach(),
                         "the bias is missing: add it after the matmul (F.linear(x, w, bias))"))
        if d_in == d_out:  # a square weight: scales on the wrong axis still give the right shape
            bugs.append((torch.nn.functional.linear(x, wq.float() * ws.T, lin.bias.detach()),
                         "the scales were applied along the wrong axis: weight_scale "
                         "(out, 1) scales ROWS of weight_q"))
            bugs.append((x @ (wq.float() * ws) + lin.bias.detach(),
                         "F.linear(x, w) computes x @ w.T: the weight is (out, in), so transpose it (or use "
                         "F.linear)"))
        hint = diagnose(got, bugs,
                        "y = x @ (weight_q.float() * weight_scale).T + bias; "
                        "weight_scale has one entry per output ROW")
        assert_close(got, want, f"({d_in} -> {d_out}, bias={bias}) vs dequantized weights", hint=hint,
                           atol=1e-4, rtol=1e-4)
        ref = lin(x).detach()
        bound = (x.abs() @ (ws / 2).T.expand(d_in, d_out)) + 1e-4  # sum_k |x_k| * scale_o / 2
        expect(bool(((got - ref).abs() <= bound).all()),
               "output differs from nn.Linear by more than sum|x|·scale/2",
               hint=hint)
    return (
        "matches F.linear with dequantized weights (3 layers, with and without bias); vs the fp32 nn.Linear "
        "every output is within sum|x|·scale/2"
    )


# ----------------------------------------------------------------------------------------------- TODO 6


@learner_check(6, "fake_quant")
def check_fake_quant(fake_quant: Callable[..., torch.Tensor]) -> str:
    scale = torch.tensor(0.1)
    base = torch.tensor([-20.0, -12.74, -3.14159, -0.26, 0.0, 0.04, 0.26, 5.5501, 12.66, 12.76, 20.0])
    for bits, s in ((8, scale), (4, torch.tensor(0.25))):
        q_max = 2 ** (bits - 1) - 1
        x = base.clone().requires_grad_(True)
        y = call(fake_quant, x, s, bits=bits)
        expect(isinstance(y, torch.Tensor), f"fake_quant must return a tensor, got {type(y).__name__}")
        want = torch.round(base / s).clamp(-q_max, q_max) * s
        hint = diagnose(y, [
            (torch.round(base / s).clamp(-127, 127) * s,
             f"the bits argument is ignored: q_max = 2**(bits-1) - 1 = {q_max} for {bits} bits"),
            (torch.round(base / s) * s, "values outside the range were not clipped to ±q_max·scale"),
            (torch.round(base / s).clamp(-q_max - 1, q_max + 1) * s,
             f"q_max = 2**(bits-1) - 1 = {q_max}, not {q_max + 1}: clip to ±{q_max}·scale"),
            (torch.trunc(torch.clamp(base, -q_max * s, q_max * s) / s) * s,
             "truncation toward zero (.to(int) or .int()): round to the nearest level with torch.round"),
        ], "forward: scale * clamp(round(x / scale), -q_max, q_max)")
        assert_close(y, want, f"forward values (bits={bits}, scale={float(s)})", hint=hint, atol=1e-6,
                     rtol=1e-6)
        expect(y.requires_grad, f"bits={bits}: the output has no gradient (did you .detach() everything?)",
               hint="return xc + (rounded - xc).detach(): only the rounding residual is detached")
        y.backward(torch.ones_like(y))
        grad = x.grad
        inside = (base.abs() <= q_max * s).float()
        g_hint = ("STE: dx̂/dx = 1 where -q_max·scale <= x <= q_max·scale, 0 "
                  "outside (the gradient of torch.clamp)")
        if grad is None or not bool(grad.any()):
            g_hint = ("the gradient is zero everywhere: torch.round has derivative 0, so the rounding must "
                      "be inside .detach() (straight-through estimator)")
        elif torch.equal(grad, torch.ones_like(grad)):
            g_hint = ("the gradient passes outside the clip range too: clamp x first, then add the detached "
                      "rounding residual, so values beyond ±q_max·scale get gradient 0")
        expect_equal(None if grad is None else grad.detach(), inside,
                     f"gradient (bits={bits}) of sum(x̂) wrt x",
                     hint=g_hint)
    # the notebook fake-quantizes weights with one scale per output row: scale (rows, 1) broadcasts
    w = torch.stack([base, 0.5 * base, 3.0 * base])  # (3, 11)
    row_scale = torch.tensor([[0.1], [0.05], [0.3]])  # (3, 1)
    row_hint = ("scale may be a tensor of per-row scales that broadcasts against x: keep it a tensor "
                "(no float(scale) or .item()) and let x / scale and q_max * scale broadcast")
    with hint_on_crash(row_hint):
        y = call(fake_quant, w.clone().requires_grad_(True), row_scale, bits=8)
    assert_close(y, torch.round(w / row_scale).clamp(-127, 127) * row_scale,
                 "forward values with per-row scales (3, 1) on a (3, 11) weight, bits=8",
                 hint=row_hint, atol=1e-6, rtol=1e-6)
    return (
        "forward equals scale·clamp(round(x/scale)) for int8 and int4, with one scale or per-row scales; "
        "the STE gradient is 1 inside [-q_max·scale, q_max·scale] and 0 outside"
    )

