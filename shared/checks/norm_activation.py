"""Checks for project 06 (normalisation and activations): one check per TODO of
``06_norm_activation/solution.ipynb``.

Each check compares the learner's function with PyTorch's own layer to 1e-5: ``nn.LayerNorm``,
``nn.RMSNorm``, ``F.gelu`` (``approximate="none"`` and ``"tanh"``), ``shared.model.MLP`` with SwiGLU,
and ``nn.BatchNorm1d`` on the (B·T, C) view of a (B, T, C) tensor (outputs, gradients and running
statistics, in training and in eval mode). The inputs are chosen so the usual mistakes show: tokens
with a non-zero mean (RMSNorm must not centre them), one token with a tiny variance (eps must sit
inside the square root), few features (the N − 1 denominator is 14 % off at C = 8), T ≠ C (the wrong
dimension). When the answer is wrong, the check recomputes the output of each well-known bug and
names the one the learner's output matches.

Papers: Ba, Kiros & Hinton 2016 (LayerNorm, §3); Zhang & Sennrich 2019 (RMSNorm, eq. 4); Hendrycks &
Gimpel 2016 (GELU, §2 and its tanh approximation); Shazeer 2020 (SwiGLU, eq. 6); Ioffe & Szegedy 2015
(BatchNorm, Alg. 1 and §3.1 for the running statistics used at inference).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.checks import CheckFailed, assert_close, call, expect, fmt, learner_check, within
from shared.checks.compare import diagnose, gen
from shared.model import MLP, GPTConfig

__all__ = [
    "check_layer_norm",
    "check_rms_norm",
    "check_gelu",
    "check_swiglu_ffn",
    "check_batch_norm_bt",
]

EPS = 1e-5


def _tokens(B: int, T: int, C: int, seed: int) -> torch.Tensor:
    """(B, T, C) activations with per-token offsets and scales, and one token of tiny variance."""
    g = gen(seed)
    x = torch.randn(B, T, C, generator=g) * (0.5 + 2 * torch.rand(B, T, 1, generator=g))  # (B, T, C)
    x = x + 3 * torch.randn(B, T, 1, generator=g)  # a per-token mean far from 0
    x[0, 1] = 1e-3 * torch.randn(C, generator=g)  # var ~ 1e-6, below eps: eps must sit inside the sqrt
    return x


def _tensor(result: object, what: str) -> torch.Tensor:
    expect(isinstance(result, torch.Tensor), f"{what} must return a torch.Tensor; got {fmt(result, 120)}",
           hint="return the normalised tensor, the same shape as x")
    return result  # type: ignore[return-value]


def _normalise(x: torch.Tensor, dim: int | tuple[int, ...], *, centre: bool = True, unbiased: bool = False,
               eps_inside: bool = True, eps: float = EPS) -> torch.Tensor:
    """(x − mean) / sqrt(var + eps) over ``dim`` with the usual bugs as switches (used to name them)."""
    if centre:
        mean = x.mean(dim, keepdim=True)
        var = x.var(dim, keepdim=True, correction=1 if unbiased else 0)
    else:
        mean = torch.zeros_like(x)
        var = x.pow(2).mean(dim, keepdim=True)
    if eps_inside:
        return (x - mean) / torch.sqrt(var + eps)
    return (x - mean) / (torch.sqrt(var) + eps)


def _call(fn: Callable[..., object], *args: object, crashes: tuple[tuple[str, str], ...] = (),
          default: str = "") -> object:
    """``call(fn, *args)``; a crash gets the hint of the first ``(text in the error, hint)`` pair that matches
    (else ``default``, when given)."""
    try:
        return call(fn, *args)
    except CheckFailed as err:
        text = str(err)
        hint = next((h for key, h in crashes if key in text), default)
        if not hint:
            raise
        raise CheckFailed(f"{text}\n   hint: {hint}") from None


KEEPDIM_HINT = ("a statistic reduced without keepdim=True has shape (...,) and cannot broadcast back "
                "against x (..., C): reduce with keepdim=True")
IN_PLACE_HINT = ("do not change x in place (x -= mean, x.div_(...)): it is the caller's tensor; compute a "
                 "new tensor, x_hat = (x - mean) / ...")
NORM_CRASHES = (
    ("in-place operation", IN_PLACE_HINT),
    ("must match the size", KEEPDIM_HINT),
    ("NoneType", "bias may be None (bias=None): then return x_hat * weight without adding it"),
)
EPS_ARG_HINT = "use the eps argument; yours used a fixed eps"


EPS_HINT = ("eps goes INSIDE the square root: sqrt(var + eps), not sqrt(var) + eps (see "
            "the token with a tiny variance)")
DIM_HINT = "normalise over the last dimension only (the C features of each token): dim=-1, keepdim=True"

# ----------------------------------------------------------------------------------------------- TODO 1


@learner_check(1, "layer_norm")
def check_layer_norm(layer_norm: Callable[..., torch.Tensor]) -> str:
    B, T, C = 3, 5, 8
    x = _tokens(B, T, C, seed=1)
    weight = 1 + 0.3 * torch.randn(C, generator=gen(2))
    bias = 0.2 * torch.randn(C, generator=gen(3))
    ref = nn.LayerNorm(C, eps=EPS)
    with torch.no_grad():
        ref.weight.copy_(weight)
        ref.bias.copy_(bias)
    worst = 0.0
    for name, w, b in (("with weight and bias", weight, bias), ("bias=None", weight, None)):
        xin = x.clone().requires_grad_(True)
        got = _tensor(_call(layer_norm, xin, w, b, EPS, crashes=NORM_CRASHES), "layer_norm")
        expect(torch.equal(xin.detach(), x), "layer_norm changed its input x in place", hint=IN_PLACE_HINT)
        with torch.no_grad():
            expected = ref(x) if b is not None else F.layer_norm(x, (C,), w, None, EPS)
        affine = (lambda z, w=w, b=b: z * w + (0 if b is None else b))
        hint = diagnose(got, [
            (affine(_normalise(x, -1, unbiased=True)),
             "use the biased variance, dividing by C (correction=0 / unbiased=False), as nn.LayerNorm does; "
             "yours divides by C - 1"),
            (affine(_normalise(x, -1, eps_inside=False)), EPS_HINT),
            (affine(_normalise(x, 1)), DIM_HINT),
            (affine(_normalise(x, 0)), DIM_HINT),
            (affine(_normalise(x, -1, centre=False)),
             "LayerNorm subtracts the mean before dividing by the standard "
             "deviation (dividing by the root mean square is RMSNorm)"),
            (_normalise(x, -1), "scale by weight and add bias after normalising: y = x_hat * weight + bias"),
            (_normalise(x, -1) + (0 if b is None else b),
             "scale by weight after normalising: y = x_hat * weight + bias"),
            (_normalise(x, -1) * w, "add the bias after scaling (when bias is not None)"),
        ], "y = (x - mean) / sqrt(var + eps) * weight + bias, mean and biased var over dim=-1")
        worst = max(worst, assert_close(got, expected, f"output vs nn.LayerNorm ({name})", hint=hint))
        # the gradient w.r.t. x must be the same as nn.LayerNorm's (no detached statistics)
        upstream = torch.randn(B, T, C, generator=gen(4))
        expect(got.requires_grad, "your output carries no gradient back to x",
               hint="compute everything with differentiable torch ops; no "
                    ".detach(), .item() or torch.no_grad()")
        (grad,) = torch.autograd.grad((got * upstream).sum(), xin)
        xr = x.clone().requires_grad_(True)
        (grad_ref,) = torch.autograd.grad((F.layer_norm(xr, (C,), w, b, EPS) * upstream).sum(), xr)
        assert_close(grad, grad_ref, f"gradient w.r.t. x ({name})", atol=1e-4, rtol=1e-4,
                     hint="the mean and variance must stay in the autograd graph: do not detach them")
    x2 = torch.randn(7, 16, generator=gen(5))  # a 2-D input (N, C) works the same way
    got2 = _tensor(_call(layer_norm, x2, torch.ones(16), torch.zeros(16), EPS, crashes=NORM_CRASHES),
                   "layer_norm")
    assert_close(got2, F.layer_norm(x2, (16,), eps=EPS), "2-D input (N, C)", hint=DIM_HINT)
    # another eps: the argument must be used
    got3 = _tensor(_call(layer_norm, x, weight, bias, 1e-2, crashes=NORM_CRASHES), "layer_norm")
    assert_close(got3, F.layer_norm(x, (C,), weight, bias, 1e-2), "output with eps=1e-2",
                 hint=diagnose(got3, [(F.layer_norm(x, (C,), weight, bias, EPS), EPS_ARG_HINT)], DIM_HINT))
    # tokens whose mean (100) is large next to their spread: float32 E[x²] - E[x]² cancels
    x4 = 100 + torch.randn(6, 16, generator=gen(6)) * (0.5 + torch.rand(6, 1, generator=gen(7)))
    got4 = _tensor(_call(layer_norm, x4, torch.ones(16), None, EPS, crashes=NORM_CRASHES), "layer_norm")
    mean4 = x4.mean(-1, keepdim=True)
    cancelled = (x4 - mean4) / torch.sqrt((x4 * x4).mean(-1, keepdim=True) - mean4**2 + EPS)
    assert_close(  # vs float64: a float32 two-pass variance is within 1e-5, E[x²] - E[x]² is 1e-3 off
        got4, F.layer_norm(x4.double(), (16,), eps=EPS), "tokens with mean 100 and std about 1, vs float64",
        atol=1e-4, rtol=1e-4,
        hint=diagnose(got4, [(cancelled,
                              "var = E[x²] - E[x]² cancels catastrophically in float32 when the mean is "
                              "large next to the spread: compute the variance from x - mean, "
                              "x.var(dim=-1, correction=0)")],
                      "mean and biased var over dim=-1, computed from x - mean"),
    )
    return (
        f"(3, 5, 8) tokens, with and without bias: matches nn.LayerNorm, {within(worst, 1e-5)}, "
        "gradient w.r.t. x too; 2-D input too"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


@learner_check(2, "rms_norm")
def check_rms_norm(rms_norm: Callable[..., torch.Tensor]) -> str:
    B, T, C = 3, 5, 8
    x = _tokens(B, T, C, seed=11)
    weight = 1 + 0.3 * torch.randn(C, generator=gen(12))
    ref = nn.RMSNorm(C, eps=EPS)
    with torch.no_grad():
        ref.weight.copy_(weight)
        expected = ref(x)
    xin = x.clone()
    got = _tensor(_call(rms_norm, xin, weight, EPS, crashes=NORM_CRASHES), "rms_norm")
    expect(torch.equal(xin, x), "rms_norm changed its input x in place", hint=IN_PLACE_HINT)
    rms = x.pow(2).mean(-1, keepdim=True)  # (B, T, 1)
    hint = diagnose(got, [
        (_normalise(x, -1) * weight,
         "RMSNorm does NOT subtract the mean: y = x / sqrt(mean(x**2) + eps) * weight "
         "(Zhang & Sennrich 2019 drop LayerNorm's centring)"),
        (_normalise(x, -1, centre=False, eps_inside=False) * weight, EPS_HINT),
        (x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + EPS) * weight,
         "take the MEAN of the squares over the features, not their sum"),
        (x / torch.sqrt(x.var(-1, keepdim=True) + EPS) * weight,
         "divide by the root mean square sqrt(mean(x**2) + eps), not by the standard deviation"),
        (_normalise(x, 1, centre=False) * weight, DIM_HINT),
        (_normalise(x, -1, centre=False), "scale by weight after normalising"),
        (x / (x.norm(dim=-1, keepdim=True) + EPS) * weight,
         "x.norm() is the root of the SUM of squares; the RMS is the root of their MEAN: "
         "sqrt(mean(x**2) + eps)"),
        (x / torch.sqrt(rms + 1e-6) * weight, EPS_ARG_HINT),
    ], "y = x / sqrt(mean(x**2, dim=-1, keepdim=True) + eps) * weight")
    err = assert_close(got, expected, "output vs nn.RMSNorm", hint=hint)
    x2 = torch.randn(4, 6, generator=gen(13))
    got2 = _tensor(_call(rms_norm, x2, torch.ones(6), EPS, crashes=NORM_CRASHES), "rms_norm")
    assert_close(got2, F.rms_norm(x2, (6,), eps=EPS), "2-D input (N, C)", hint=DIM_HINT)
    got3 = _tensor(_call(rms_norm, x, weight, 1e-2, crashes=NORM_CRASHES), "rms_norm")
    assert_close(got3, F.rms_norm(x, (C,), weight, 1e-2), "output with eps=1e-2",
                 hint=diagnose(got3, [(expected, EPS_ARG_HINT)], DIM_HINT))
    # the gradient w.r.t. x must be nn.RMSNorm's (the notebook trains a GPT through rms_norm)
    xg = x.clone().requires_grad_(True)
    gotg = _tensor(_call(rms_norm, xg, weight, EPS, crashes=NORM_CRASHES), "rms_norm")
    expect(gotg.requires_grad, "your output carries no gradient back to x",
           hint="compute everything with differentiable torch ops; no .detach(), .item() or torch.no_grad()")
    upstream = torch.randn(B, T, C, generator=gen(14))
    (grad,) = torch.autograd.grad((gotg * upstream).sum(), xg)
    xr = x.clone().requires_grad_(True)
    (grad_ref,) = torch.autograd.grad((F.rms_norm(xr, (C,), weight, EPS) * upstream).sum(), xr)
    assert_close(grad, grad_ref, "gradient w.r.t. x", atol=1e-4, rtol=1e-4,
                 hint="the root mean square must stay in the autograd graph: do not detach it")
    return f"(3, 5, 8) tokens with non-zero means: matches nn.RMSNorm, {within(err, 1e-5)}; 2-D input too"


# ----------------------------------------------------------------------------------------------- TODO 3


def _gelu_inputs() -> torch.Tensor:
    grid = torch.linspace(-8, 8, 320)  # covers both tails and the bend near 0
    return torch.cat([grid, 3 * torch.randn(200, generator=gen(21))]).reshape(2, -1)  # (2, 260)


@learner_check(3, "gelu")
def check_gelu(gelu: Callable[..., torch.Tensor]) -> str:
    x = _gelu_inputs()
    c = math.sqrt(2 / math.pi)
    exact = F.gelu(x)
    tanh_form = F.gelu(x, approximate="tanh")
    errors = {}
    for approximate, expected in (("none", exact), ("tanh", tanh_form)):
        got = _tensor(call(gelu, x, approximate), f"gelu(x, approximate={approximate!r})")
        hint = diagnose(got, [
            (0.5 * x * (1 + torch.tanh(c * x)), "the tanh approximation is missing the cubic term: "
             "tanh(sqrt(2/pi) * (x + 0.044715 * x**3))"),
            (tanh_form,
             "approximate='none' is the exact form 0.5 * x * (1 + erf(x / sqrt(2))), not the tanh one"),
            (exact, "approximate='tanh' must use the tanh formula; yours returned the exact erf form"),
            (0.5 * x * (1 + torch.erf(x)),
             "divide by sqrt(2) inside erf: Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))"),
            (x * torch.sigmoid(1.702 * x), "x * sigmoid(1.702 x) is a third, cruder approximation; use the "
             "erf form (exact) or the tanh form"),
            (x * torch.sigmoid(x), "that is SiLU / Swish (x * sigmoid(x)), not GELU"),
            (0.5 * (1 + torch.erf(x / math.sqrt(2))), "GELU is x * Phi(x): multiply the Gaussian CDF by x"),
            (x * (1 + torch.erf(x / math.sqrt(2))),
             "the factor 0.5 is missing: Phi(x) = 0.5 * (1 + erf(x / sqrt(2)))"),
            (0.5 * x * (1 + torch.tanh(math.sqrt(2 * math.pi) * (x + 0.044715 * x**3))),
             "the constant is sqrt(2 / pi) ≈ 0.798, not sqrt(2 * pi)"),
            (0.5 * x * (1 + torch.tanh(c * (x + 0.044715 * x**2))),
             "the correction term is cubic: 0.044715 * x**3"),
        ], "exact: 0.5 x (1 + erf(x / sqrt 2)); tanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))")
        errors[approximate] = assert_close(
            got, expected, f"gelu(x, approximate={approximate!r}) vs F.gelu", hint=hint
        )
    return (
        "320 inputs on [-8, 8] and 200 random ones: matches F.gelu, exact erf form "
        f"({within(errors['none'], 1e-5)}) and with approximate='tanh' ({within(errors['tanh'], 1e-5)})"
    )


# ----------------------------------------------------------------------------------------------- TODO 4

TRANSPOSE_HINT = ("if this is a shape mismatch: the weights are stored (out_features, in_features), as in "
                  "nn.Linear: x @ w_gate.T, x @ w_up.T and h @ w_down.T (or F.linear(x, w))")


@learner_check(4, "swiglu_ffn")
def check_swiglu_ffn(swiglu_ffn: Callable[..., torch.Tensor]) -> str:
    B, T, C, H = 2, 5, 12, 32
    g = gen(31)
    x = torch.randn(B, T, C, generator=g)
    w_gate = torch.randn(H, C, generator=g) / math.sqrt(C)
    w_up = torch.randn(H, C, generator=g) / math.sqrt(C)
    w_down = torch.randn(C, H, generator=g) / math.sqrt(H)
    gate, up = F.linear(x, w_gate), F.linear(x, w_up)  # (B, T, H) each
    expected = F.linear(F.silu(gate) * up, w_down)  # (B, T, C), Shazeer 2020, eq. 6
    got = _tensor(_call(swiglu_ffn, x, w_gate, w_up, w_down, default=TRANSPOSE_HINT), "swiglu_ffn")
    hint = diagnose(got, [
        (F.linear(F.silu(up) * gate, w_down),
         "you gated the wrong branch: SiLU goes on x @ w_gate.T, and the "
         "up branch x @ w_up.T stays linear"),
        (F.linear(torch.sigmoid(gate) * up, w_down), "that is GLU (sigmoid gate); SwiGLU gates with "
         "SiLU(z) = z * sigmoid(z)"),
        (F.linear(F.gelu(gate) * up, w_down),
         "that is GEGLU (GELU gate); SwiGLU gates with SiLU(z) = z * sigmoid(z)"),
        (F.linear(F.silu(gate + up), w_down), "multiply the two branches element-wise; do not add them"),
        (F.linear(F.relu(gate) * up, w_down), "that is ReGLU (ReLU gate); SwiGLU gates with "
         "SiLU(z) = z * sigmoid(z)"),
        (F.silu(expected), "no activation after the down projection: y = (silu(gate) * up) @ w_down.T"),
    ], "y = (silu(x @ w_gate.T) * (x @ w_up.T)) @ w_down.T")
    err = assert_close(got, expected, "output vs (SiLU(x W_gate^T) * x W_up^T) W_down^T", hint=hint)
    # the same numbers as the shared GPT's SwiGLU MLP carrying these weights (c_fc rows are [gate | up])
    mlp = MLP(GPTConfig(d_model=C, n_head=1, d_ff=H, activation="swiglu", bias=False))
    with torch.no_grad():
        mlp.c_fc.weight.copy_(torch.cat([w_gate, w_up]))
        mlp.c_proj.weight.copy_(w_down)
        model_y = mlp(x)
    err_mlp = assert_close(got, model_y, "vs shared.model.MLP(activation='swiglu')", hint=hint)
    x2 = torch.randn(3, C, generator=g)  # (N, C): any number of leading dimensions
    got2 = _tensor(_call(swiglu_ffn, x2, w_gate, w_up, w_down,
                         default="this was a 2-D input (N, C): x is (..., C), any number of leading "
                                 "dimensions, and x @ w.T (or F.linear, or einsum '...c,hc->...h') works for "
                                 "all of them"), "swiglu_ffn")
    assert_close(got2, F.linear(F.silu(F.linear(x2, w_gate)) * F.linear(x2, w_up), w_down),
                 "2-D input (N, C)",
                 hint="x is (..., C): the same formula on any number of leading dimensions")
    return (
        f"(2, 5, 12) -> hidden 32 -> 12: matches the SwiGLU formula ({within(err, 1e-5)}) and "
        f"shared.model.MLP with activation='swiglu' ({within(err_mlp, 1e-5)})"
    )


# ----------------------------------------------------------------------------------------------- TODO 5


def _bn_reference(x: torch.Tensor, rm: torch.Tensor, rv: torch.Tensor, momentum: float, *,
                  dims: tuple[int, ...] = (0, 1), unbiased_norm: bool = False, running: str = "unbiased",
                  swap_momentum: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training-mode BatchNorm step with the usual bugs as switches:
    (x_hat, new running mean, new running var)."""
    mean = x.mean(dims, keepdim=True)
    var = x.var(dims, keepdim=True, correction=1 if unbiased_norm else 0)
    x_hat = (x - mean) / torch.sqrt(var + EPS)
    if dims != (0, 1):
        return x_hat, rm, rv
    n = x.shape[0] * x.shape[1]
    m, v = mean.flatten(), x.var((0, 1), correction=0).flatten()
    if running == "unbiased":
        v = v * n / (n - 1)
    if running == "none":
        return x_hat, rm.clone(), rv.clone()
    a = 1 - momentum if not swap_momentum else momentum
    return x_hat, a * rm + (1 - a) * m, a * rv + (1 - a) * v


BN_CRASH_HINT = ("if this is a shape mismatch: BatchNorm keeps one statistic per feature, mean and var over "
                 "dims (0, 1) (all B*T tokens), each of shape (C,), and running_mean / running_var (C,) are "
                 "updated in place with mul_ / add_")
MOMENTUM_ARG_HINT = "use the momentum argument; yours used a fixed momentum of 0.1"
RUNNING_VAR_HINT = (
    "running_var is updated with the UNBIASED batch variance (times N / (N - 1), N = B*T), as "
    "nn.BatchNorm1d does, while the batch itself is normalised with the biased one"
)


@learner_check(5, "batch_norm_bt")
def check_batch_norm_bt(batch_norm_bt: Callable[..., torch.Tensor]) -> str:
    B, T, C = 4, 3, 5
    momentum = 0.1
    g = gen(41)
    weight, bias = 1 + 0.3 * torch.randn(C, generator=g), 0.2 * torch.randn(C, generator=g)
    batches = [2 + 3 * torch.randn(B, T, C, generator=g) for _ in range(2)]  # far from the initial stats 0, 1
    ref = nn.BatchNorm1d(C, eps=EPS, momentum=momentum)
    with torch.no_grad():
        ref.weight.copy_(weight)
        ref.bias.copy_(bias)
    ref.train()
    running_mean, running_var = torch.zeros(C), torch.ones(C)
    worst = 0.0
    for step, x in enumerate(batches):
        rm_before, rv_before = running_mean.clone(), running_var.clone()
        xin = x.clone().requires_grad_(True)
        got = _tensor(_call(batch_norm_bt, xin, weight, bias, running_mean, running_var, True, momentum, EPS,
                            default=BN_CRASH_HINT), "batch_norm_bt")
        expect(not running_mean.requires_grad and not running_var.requires_grad,
               "after a training step running_mean / running_var carry autograd history",
               hint="update the running statistics under torch.no_grad() (or from detached batch "
                    "statistics): they are buffers, not part of the graph")
        xr = x.clone().requires_grad_(True)
        expected = ref(xr.reshape(B * T, C)).reshape(B, T, C)  # (B, T, C): statistics over B*T rows
        candidates = [
            (_bn_reference(x, rm_before, rv_before, momentum, dims=(0,))[0] * weight + bias,
             "statistics over batch AND positions: mean and var over dims (0, 1), one value per feature; "
             "yours used the batch dim only"),
            (_bn_reference(x, rm_before, rv_before, momentum, dims=(2,))[0] * weight + bias,
             "BatchNorm takes statistics over dims (0, 1) (all B*T tokens), one per feature; over the "
             "features (dim=-1) is LayerNorm"),
            (_bn_reference(x, rm_before, rv_before, momentum, unbiased_norm=True)[0] * weight + bias,
             "normalise the batch with the BIASED variance (correction=0); only "
             "running_var gets the unbiased one"),
            ((x - rm_before) / torch.sqrt(rv_before + EPS) * weight + bias,
             "in training mode (training=True) normalise with the batch's own "
             "mean and var, not the running ones"),
            (_normalise(x, (0, 1)),
             "scale by weight and add bias after normalising: y = x_hat * weight + bias"),
        ]
        hint = diagnose(got, candidates,
                        "x_hat = (x - mean) / sqrt(var + eps) over dims (0, 1); y = x_hat * weight + bias")
        worst = max(worst, assert_close(got, expected,
                                        f"training-mode output vs nn.BatchNorm1d on the (B*T, C) view "
                                        f"(batch {step + 1})", hint=hint))
        expect(got.requires_grad, "your output carries no gradient back to x",
               hint="compute the batch statistics with differentiable torch ops (update only the running "
                    "stats under torch.no_grad())")
        upstream = torch.randn(B, T, C, generator=gen(42 + step))
        (grad,) = torch.autograd.grad((got * upstream).sum(), xin)
        (grad_ref,) = torch.autograd.grad((expected * upstream).sum(), xr)
        assert_close(grad, grad_ref, f"gradient w.r.t. x (batch {step + 1})", atol=1e-4, rtol=1e-4,
                     hint="the batch mean and variance must stay in the autograd graph: do not detach them")
        # the running statistics, updated in place
        not_updated = ("update running_mean and running_var IN PLACE in training mode: "
                       "running.mul_(1 - momentum).add_(momentum * batch_stat) under torch.no_grad()")
        swapped = ("momentum is the weight of the NEW batch: running = (1 - momentum) * "
                   "running + momentum * batch_stat")
        mean_hint = diagnose(running_mean, [
            (rm_before, not_updated),
            (_bn_reference(x, rm_before, rv_before, momentum, swap_momentum=True)[1], swapped),
        ], "running_mean = (1 - momentum) * running_mean + momentum * batch_mean")
        assert_close(running_mean, ref.running_mean, f"running_mean after batch {step + 1}", hint=mean_hint)
        var_hint = diagnose(running_var, [
            (rv_before, not_updated),
            (_bn_reference(x, rm_before, rv_before, momentum, running="biased")[2], RUNNING_VAR_HINT),
            (_bn_reference(x, rm_before, rv_before, momentum, swap_momentum=True)[2], swapped),
            ((1 - momentum) * rv_before + momentum * x.var((0, 1), correction=0) * B / (B - 1),
             "the unbiased factor is N / (N - 1) with N = B*T, the number of tokens each statistic averages "
             "over, not the batch size B"),
        ], "running_var = (1 - momentum) * running_var + momentum * unbiased batch var")
        assert_close(running_var, ref.running_var, f"running_var after batch {step + 1}", hint=var_hint)
    # eval mode: the running statistics, and they stay untouched
    ref.eval()
    x = torch.randn(1, 6, C, generator=g)  # a batch of ONE sequence
    rm_before, rv_before = running_mean.clone(), running_var.clone()
    with torch.no_grad():
        got = _tensor(call(batch_norm_bt, x, weight, bias, running_mean, running_var, False, momentum, EPS),
                      "batch_norm_bt")
        expected = ref(x.reshape(6, C)).reshape(1, 6, C)
    hint = diagnose(got, [
        (_normalise(x, (0, 1)) * weight + bias,
         "in eval mode (training=False) normalise with running_mean and "
         "running_var, not the batch's statistics"),
    ], "eval mode: y = (x - running_mean) / sqrt(running_var + eps) * weight + bias")
    err = assert_close(got, expected, "eval-mode output vs nn.BatchNorm1d.eval()", hint=hint)
    expect(torch.equal(running_mean, rm_before) and torch.equal(running_var, rv_before),
           "eval mode changed running_mean / running_var",
           hint="update the running statistics only when training=True")
    # other momentum and eps: both arguments must be used
    ref2 = nn.BatchNorm1d(C, eps=1e-3, momentum=0.3)
    with torch.no_grad():
        ref2.weight.copy_(weight)
        ref2.bias.copy_(bias)
    rm2, rv2 = torch.zeros(C), torch.ones(C)
    x = batches[0]
    with torch.no_grad():
        got = _tensor(_call(batch_norm_bt, x, weight, bias, rm2, rv2, True, 0.3, 1e-3, default=BN_CRASH_HINT),
                      "batch_norm_bt")
        expected = ref2(x.reshape(B * T, C)).reshape(B, T, C)
    assert_close(got, expected, "training-mode output with eps=1e-3",
                 hint=diagnose(got, [(_normalise(x, (0, 1)) * weight + bias, EPS_ARG_HINT)],
                               "x_hat = (x - mean) / sqrt(var + eps) over dims (0, 1)"))
    fixed = _bn_reference(x, torch.zeros(C), torch.ones(C), 0.1)
    assert_close(rm2, ref2.running_mean, "running_mean after a step with momentum=0.3",
                 hint=diagnose(rm2, [(fixed[1], MOMENTUM_ARG_HINT)],
                               "running_mean = (1 - momentum) * running_mean + momentum * batch_mean"))
    assert_close(rv2, ref2.running_var, "running_var after a step with momentum=0.3",
                 hint=diagnose(rv2, [(fixed[2], MOMENTUM_ARG_HINT)],
                               "running_var = (1 - momentum) * running_var + momentum * unbiased batch var"))
    return (
        f"(4, 3, 5) batches: matches nn.BatchNorm1d on the (B*T, C) view in training mode (output, gradient, "
        f"running stats after 2 steps; {within(worst, 1e-5)}) and in eval mode ({within(err, 1e-5)})"
    )
