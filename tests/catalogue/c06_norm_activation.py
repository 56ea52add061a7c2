"""Mutation catalogue of 06_norm_activation (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.norm_activation import (
    check_batch_norm_bt,
    check_gelu,
    check_layer_norm,
    check_rms_norm,
    check_swiglu_ffn,
)

P = "06_norm_activation"

# layer_norm
LN_MEAN = "mean = x.mean(dim=-1, keepdim=True)"
LN_VAR = "var = x.var(dim=-1, keepdim=True, correction=0)"
LN_HAT = "x_hat = (x - mean) / torch.sqrt(var + eps)"
LN_RET = "return y if bias is None else y + bias"
# rms_norm
RMS = "rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)"
RMS_RET = "return x / rms * weight"
# gelu
TANH_IF = '    if approximate == "tanh":\n'
INNER = "inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x.pow(3))"
TANH_RET = "return 0.5 * x * (1 + torch.tanh(inner))"
ERF_RET = "return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))"
# swiglu_ffn
GATE = "gate = x @ w_gate.T"
UP = "up = x @ w_up.T"
SW_RET = "return (F.silu(gate) * up) @ w_down.T"
# batch_norm_bt
BN_MEAN = "mean = x.mean(dim=(0, 1))"
BN_VAR = "var = x.var(dim=(0, 1), correction=0)"
RUN_MEAN = "running_mean.mul_(1 - momentum).add_(momentum * mean)"
RUN_VAR = "running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))"
BN_RET = "return (x - mean) / torch.sqrt(var + eps) * weight + bias"

CATALOGUE = [
    Todo(
        P,
        1,
        check_layer_norm,
        ("layer_norm",),
        mutants=[
            Mutant(
                "unbiased variance",
                "scale",
                [("keepdim=True, correction=0)  #", "keepdim=True, correction=1)  #")],
                ("biased variance", "C - 1"),
            ),
            Mutant(
                "eps outside the sqrt",
                "stability",
                [("torch.sqrt(var + eps)", "(torch.sqrt(var) + eps)")],
                ("eps goes INSIDE the square root",),
            ),
            Mutant(
                "statistics over dim 1",
                "axis",
                [
                    (LN_MEAN, "mean = x.mean(dim=1, keepdim=True)"),
                    ("var = x.var(dim=-1, keepdim=True", "var = x.var(dim=1, keepdim=True"),
                ],
                ("last dimension only",),
            ),
            Mutant("bias forgotten", "argument", [(LN_RET, "return y")], ("add the bias",)),
            Mutant(
                "detached mean",
                "grad",
                [(LN_MEAN, LN_MEAN + ".detach()")],
                ("gradient w.r.t. x", "do not detach"),
            ),
            Mutant(
                "eps hard-coded",
                "argument",
                [("torch.sqrt(var + eps)", "torch.sqrt(var + 1e-5)")],
                ("eps argument",),
            ),
            Mutant("weight ignored", "argument", [("y = x_hat * weight", "y = x_hat")], ("scale by weight",)),
            Mutant(
                "x centred in place",
                "in-place",
                [(LN_HAT, "x -= mean\n    x_hat = x / torch.sqrt(var + eps)")],
                ("in place",),
            ),
            Mutant(
                "variance as E[x^2] - E[x]^2",
                "stability",
                [(LN_VAR, "var = (x * x).mean(dim=-1, keepdim=True) - mean**2")],
                ("cancels",),
            ),
            Mutant("bias=None not handled", "branch", [(LN_RET, "return y + bias")], ("bias=None",)),
            Mutant(
                "statistics without keepdim",
                "shape",
                [(LN_MEAN, "mean = x.mean(dim=-1)"), (LN_VAR, "var = x.var(dim=-1, correction=0)")],
                ("cannot broadcast back",),
            ),
        ],
        correct=[
            Correct(
                "rsqrt and var_mean",
                [
                    (
                        LN_MEAN + "  # (..., 1)\n    " + LN_VAR,
                        "var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)",
                    ),
                    (LN_HAT, "x_hat = (x - mean) * torch.rsqrt(var + eps)"),
                ],
            ),
            Correct(
                "variance from the centred x",
                [(LN_VAR, "var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)")],
            ),
            Correct(
                "F.layer_norm",
                [(LN_MEAN, "return F.layer_norm(x, x.shape[-1:], weight, bias, eps)\n    " + LN_MEAN)],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_rms_norm,
        ("rms_norm",),
        mutants=[
            Mutant(
                "mean subtracted",
                "logic",
                [
                    (
                        "    rms = torch.sqrt(",
                        "    x = x - x.mean(dim=-1, keepdim=True)\n    rms = torch.sqrt(",
                    )
                ],
                ("does NOT subtract the mean",),
            ),
            Mutant(
                "eps outside the sqrt",
                "stability",
                [
                    (
                        "torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)",
                        "(torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True)) + eps)",
                    )
                ],
                ("eps goes INSIDE the square root",),
            ),
            Mutant(
                "sum of squares",
                "scale",
                [("x.pow(2).mean(dim=-1", "x.pow(2).sum(dim=-1")],
                ("MEAN of the squares",),
            ),
            Mutant(
                "mean over dim 1",
                "axis",
                [("x.pow(2).mean(dim=-1", "x.pow(2).mean(dim=1")],
                ("last dimension only",),
            ),
            Mutant("weight ignored", "argument", [(RMS_RET, "return x / rms")], ("scale by weight",)),
            Mutant(
                "eps hard-coded to LLaMA's 1e-6",
                "argument",
                [("keepdim=True) + eps)", "keepdim=True) + 1e-6)")],
                ("eps argument",),
            ),
            Mutant(
                "x.norm instead of the RMS",
                "scale",
                [(RMS, "rms = x.norm(dim=-1, keepdim=True) + eps")],
                ("x.norm()", "MEAN"),
            ),
            Mutant(
                "x divided in place",
                "in-place",
                [(RMS_RET, "return x.div_(rms).mul_(weight)")],
                ("in place",),
            ),
            Mutant(
                "mean without keepdim",
                "shape",
                [("mean(dim=-1, keepdim=True)", "mean(dim=-1)")],
                ("cannot broadcast back",),
            ),
            Mutant(
                "detached RMS", "grad", [(RMS, RMS + ".detach()")], ("gradient w.r.t. x", "do not detach")
            ),
        ],
        correct=[
            Correct(
                "rsqrt of the mean square",
                [
                    (
                        RMS + "  # (..., 1)\n    " + RMS_RET,
                        "return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + eps) * weight",
                    )
                ],
            ),
            Correct("F.rms_norm", [(RMS_RET, "return F.rms_norm(x, x.shape[-1:], weight, eps)")]),
        ],
    ),
    Todo(
        P,
        3,
        check_gelu,
        ("gelu",),
        mutants=[
            Mutant(
                "tanh form without the cubic term",
                "logic",
                [("(x + 0.044715 * x.pow(3))", "x")],
                ("missing the cubic term", "0.044715"),
            ),
            Mutant(
                "approximate read as a bool",
                "branch",
                [('if approximate == "tanh":', "if approximate:")],
                ("approximate='none' is the exact form",),
            ),
            Mutant(
                "erf without the sqrt(2)",
                "scale",
                [("torch.erf(x / math.sqrt(2))", "torch.erf(x)")],
                ("divide by sqrt(2) inside erf",),
            ),
            Mutant("SiLU", "logic", [(ERF_RET, "return x * torch.sigmoid(x)")], ("SiLU",)),
            Mutant(
                "sqrt(2 pi) constant",
                "scale",
                [("inner = math.sqrt(2 / math.pi)", "inner = math.sqrt(2 * math.pi)")],
                ("sqrt(2 / pi)",),
            ),
            Mutant(
                "no factor 0.5",
                "scale",
                [("return 0.5 * x * (1 + torch.erf", "return x * (1 + torch.erf")],
                ("factor 0.5",),
            ),
            Mutant(
                "approximate ignored",
                "argument",
                [(TANH_IF + "        " + INNER + "\n        " + TANH_RET + "\n", "")],
                ("approximate='tanh' must use the tanh formula",),
            ),
            Mutant("square instead of cube", "logic", [("x.pow(3)", "x.pow(2)")], ("cubic",)),
        ],
        correct=[
            Correct("F.gelu", [(TANH_IF, "    return F.gelu(x, approximate=approximate)\n" + TANH_IF)]),
            Correct(
                "Normal CDF and tanh as a sigmoid",
                [
                    (ERF_RET, "return x * torch.distributions.Normal(0.0, 1.0).cdf(x)"),
                    (TANH_RET, "return x * torch.sigmoid(2 * inner)"),
                ],
            ),
            Correct("erfc", [(ERF_RET, "return 0.5 * x * torch.erfc(-x / math.sqrt(2))")]),
        ],
    ),
    Todo(
        P,
        4,
        check_swiglu_ffn,
        ("swiglu_ffn",),
        mutants=[
            Mutant(
                "SiLU on the up branch",
                "logic",
                [("(F.silu(gate) * up)", "(gate * F.silu(up))")],
                ("gated the wrong branch",),
            ),
            Mutant("sigmoid gate", "logic", [("F.silu(gate)", "torch.sigmoid(gate)")], ("that is GLU",)),
            Mutant("GELU gate", "logic", [("F.silu(gate)", "F.gelu(gate)")], ("GEGLU",)),
            Mutant(
                "branches added", "logic", [("(F.silu(gate) * up)", "F.silu(gate + up)")], ("do not add",)
            ),
            Mutant(
                "w_down not transposed",
                "axis",
                [("up) @ w_down.T", "up) @ w_down")],
                ("(out_features, in_features)",),
            ),
            Mutant(
                "SiLU after the down projection too",
                "logic",
                [(SW_RET, "return F.silu((F.silu(gate) * up) @ w_down.T)")],
                ("after the down projection",),
            ),
            Mutant("ReLU gate", "logic", [("F.silu(gate)", "F.relu(gate)")], ("ReGLU",)),
            Mutant(
                "einsum for 3-D input only",
                "shape",
                [
                    (GATE, 'gate = torch.einsum("btc,hc->bth", x, w_gate)'),
                    (UP, 'up = torch.einsum("btc,hc->bth", x, w_up)'),
                ],
                ("(..., C)",),
            ),
        ],
        correct=[
            Correct(
                "F.linear",
                [
                    (GATE, "gate = F.linear(x, w_gate)"),
                    (UP, "up = F.linear(x, w_up)"),
                    (SW_RET, "return F.linear(F.silu(gate) * up, w_down)"),
                ],
            ),
            Correct(
                "einsum over leading dims and an explicit SiLU",
                [
                    (GATE, 'gate = torch.einsum("...c,hc->...h", x, w_gate)'),
                    (SW_RET, "return (gate * torch.sigmoid(gate) * up) @ w_down.T"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_batch_norm_bt,
        ("batch_norm_bt",),
        mutants=[
            Mutant(
                "running_var from the biased variance",
                "scale",
                [("momentum * var * n / (n - 1))", "momentum * var)")],
                ("running_var after batch 1", "UNBIASED batch variance"),
            ),
            Mutant(
                "running statistics never updated",
                "state",
                [
                    (
                        "            " + RUN_MEAN + "\n            " + RUN_VAR + "  # unbiased, as PyTorch\n",
                        "            pass\n",
                    )
                ],
                ("running_mean after batch 1", "IN PLACE"),
            ),
            Mutant(
                "momentum the wrong way round",
                "scale",
                [(RUN_MEAN, "running_mean.mul_(momentum).add_((1 - momentum) * mean)")],
                ("weight of the NEW batch",),
            ),
            Mutant(
                "batch normalised with the unbiased variance",
                "scale",
                [(BN_VAR, "var = x.var(dim=(0, 1), correction=1)")],
                ("BIASED variance",),
            ),
            Mutant(
                "batch statistics in eval mode",
                "branch",
                [("    if training:\n", "    if True:\n")],
                ("eval mode (training=False)",),
            ),
            Mutant(
                "detached batch mean",
                "grad",
                [(BN_MEAN, BN_MEAN + ".detach()")],
                ("gradient w.r.t. x", "do not detach"),
            ),
            Mutant(
                "running statistics rebound, not updated in place",
                "in-place",
                [
                    (RUN_MEAN, "running_mean = (1 - momentum) * running_mean + momentum * mean"),
                    (RUN_VAR, "running_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)"),
                ],
                ("IN PLACE",),
            ),
            Mutant(
                "running statistics updated inside the graph",
                "grad",
                [("        with torch.no_grad():\n", "        if True:\n")],
                ("autograd", "no_grad"),
            ),
            Mutant(
                "momentum hard-coded",
                "argument",
                [
                    (RUN_MEAN, "running_mean.mul_(0.9).add_(0.1 * mean)"),
                    (
                        "running_var.mul_(1 - momentum).add_(momentum * var",
                        "running_var.mul_(0.9).add_(0.1 * var",
                    ),
                ],
                ("momentum argument",),
            ),
            Mutant(
                "unbiased factor from B only",
                "off-by-one",
                [("n = x.shape[0] * x.shape[1]", "n = x.shape[0]")],
                ("N = B*T",),
            ),
            Mutant(
                "statistics over the batch dim only",
                "axis",
                [(BN_MEAN, "mean = x.mean(dim=0)"), (BN_VAR, "var = x.var(dim=0, correction=0)")],
                ("dims (0, 1)",),
            ),
            Mutant(
                "eps hard-coded",
                "argument",
                [("torch.sqrt(var + eps)", "torch.sqrt(var + 1e-5)")],
                ("eps argument",),
            ),
            Mutant(
                "affine parameters ignored",
                "argument",
                [(BN_RET, "return (x - mean) / torch.sqrt(var + eps)")],
                ("weight and add bias",),
            ),
        ],
        correct=[
            Correct(
                "F.batch_norm on the (B*T, C) view",
                [
                    (
                        "    if training:\n",
                        "    B, T, C = x.shape\n"
                        "    y = F.batch_norm(x.reshape(B * T, C), running_mean, running_var, weight, bias,\n"
                        "                     training, momentum, eps)\n"
                        "    return y.reshape(B, T, C)\n"
                        "    if training:\n",
                    )
                ],
            ),
            Correct(
                "var_mean and detached statistics for the update",
                [
                    (
                        BN_MEAN + "  # (C,)\n        " + BN_VAR,
                        "var, mean = torch.var_mean(x, dim=(0, 1), correction=0)",
                    ),
                    (
                        "        with torch.no_grad():\n            " + RUN_MEAN,
                        "        if True:\n"
                        "            running_mean.mul_(1 - momentum).add_(momentum * mean.detach())",
                    ),
                    ("momentum * var * n / (n - 1))", "momentum * var.detach() * n / (n - 1))"),
                ],
            ),
        ],
    ),
]
