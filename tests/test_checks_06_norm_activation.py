"""Tests for shared/checks/norm_activation.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: the N - 1 variance, eps outside the square root, the wrong dimension, detached
statistics, an RMSNorm that centres, a tanh-GELU without its cubic term, SwiGLU gating the wrong branch, and
BatchNorm running statistics updated with the biased variance, with momentum reversed, or not at all.
"""

from __future__ import annotations

import pytest
import torch
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.norm_activation import (
    check_batch_norm_bt,
    check_gelu,
    check_layer_norm,
    check_rms_norm,
    check_swiglu_ffn,
)

solution = solution_loader("06_norm_activation")


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_layer_norm_passes_on_solution(capsys):
    assert check_layer_norm(solution("layer_norm")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 layer_norm: (3, 5, 8) tokens, with and without "
                                              "bias: matches nn.LayerNorm")


def test_check_layer_norm_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(layer_norm\\) is not done yet"):
        check_layer_norm(stub(1))


def test_check_layer_norm_catches_the_unbiased_variance():
    buggy = solution("layer_norm", replace=[("keepdim=True, correction=0)  #",
                                             "keepdim=True, correction=1)  #")])
    fails(check_layer_norm, buggy, "biased variance", "C - 1")


def test_check_layer_norm_catches_eps_outside_the_sqrt():
    buggy = solution("layer_norm", replace=[("torch.sqrt(var + eps)", "(torch.sqrt(var) + eps)")])
    fails(check_layer_norm, buggy, "eps goes INSIDE the square root")


def test_check_layer_norm_catches_the_wrong_dimension():
    buggy = solution("layer_norm", replace=[
        ("mean = x.mean(dim=-1, keepdim=True)", "mean = x.mean(dim=1, keepdim=True)"),
        ("var = x.var(dim=-1, keepdim=True", "var = x.var(dim=1, keepdim=True"),
    ])
    fails(check_layer_norm, buggy, "last dimension only")


def test_check_layer_norm_catches_a_forgotten_bias():
    buggy = solution("layer_norm", replace=[("return y if bias is None else y + bias", "return y")])
    fails(check_layer_norm, buggy, "add the bias")


def test_check_layer_norm_catches_detached_statistics():
    buggy = solution("layer_norm", replace=[
        ("mean = x.mean(dim=-1, keepdim=True)", "mean = x.mean(dim=-1, keepdim=True).detach()"),
    ])
    fails(check_layer_norm, buggy, "gradient w.r.t. x", "do not detach")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_rms_norm_passes_on_solution(capsys):
    check_rms_norm(solution("rms_norm"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 rms_norm: (3, 5, 8) tokens with non-zero means: "
                                              "matches nn.RMSNorm")


def test_check_rms_norm_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2 \\(rms_norm\\) is not done yet"):
        check_rms_norm(stub(2))


def test_check_rms_norm_catches_subtracting_the_mean():
    buggy = solution("rms_norm", replace=[
        ("    rms = torch.sqrt(", "    x = x - x.mean(dim=-1, keepdim=True)\n    rms = torch.sqrt("),
    ])
    fails(check_rms_norm, buggy, "does NOT subtract the mean")


def test_check_rms_norm_catches_eps_outside_the_sqrt():
    buggy = solution("rms_norm", replace=[
        ("torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)",
         "(torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True)) + eps)"),
    ])
    fails(check_rms_norm, buggy, "eps goes INSIDE the square root")


def test_check_rms_norm_catches_a_sum_instead_of_a_mean():
    buggy = solution("rms_norm", replace=[("x.pow(2).mean(dim=-1", "x.pow(2).sum(dim=-1")])
    fails(check_rms_norm, buggy, "MEAN of the squares")


def test_check_rms_norm_catches_the_wrong_dimension():
    buggy = solution("rms_norm", replace=[("x.pow(2).mean(dim=-1", "x.pow(2).mean(dim=1")])
    fails(check_rms_norm, buggy, "last dimension only")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_gelu_passes_on_solution(capsys):
    check_gelu(solution("gelu"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 3 gelu: ")
    assert "approximate='tanh'" in out


def test_check_gelu_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(gelu\\) is not done yet"):
        check_gelu(stub(3))


def test_check_gelu_catches_a_tanh_form_without_the_cubic_term():
    buggy = solution("gelu", replace=[("(x + 0.044715 * x.pow(3))", "x")])
    fails(check_gelu, buggy, "missing the cubic term", "0.044715")


def test_check_gelu_catches_the_approximate_flag_read_as_a_bool():
    buggy = solution("gelu", replace=[('if approximate == "tanh":', "if approximate:")])  # "none" is truthy
    fails(check_gelu, buggy, "approximate='none' is the exact form")


def test_check_gelu_catches_erf_without_the_sqrt2():
    buggy = solution("gelu", replace=[("torch.erf(x / math.sqrt(2))", "torch.erf(x)")])
    fails(check_gelu, buggy, "divide by sqrt(2) inside erf")


def test_check_gelu_names_silu():
    fails(check_gelu, lambda x, approximate="none": x * torch.sigmoid(x), "SiLU")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_swiglu_ffn_passes_on_solution(capsys):
    check_swiglu_ffn(solution("swiglu_ffn"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 4 swiglu_ffn: ")
    assert "shared.model.MLP" in out


def test_check_swiglu_ffn_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4 \\(swiglu_ffn\\) is not done yet"):
        check_swiglu_ffn(stub(4))


def test_check_swiglu_ffn_catches_gating_the_wrong_branch():
    buggy = solution("swiglu_ffn", replace=[("(F.silu(gate) * up)", "(gate * F.silu(up))")])
    fails(check_swiglu_ffn, buggy, "gated the wrong branch")


def test_check_swiglu_ffn_catches_a_sigmoid_gate():
    buggy = solution("swiglu_ffn", replace=[("F.silu(gate)", "torch.sigmoid(gate)")])
    fails(check_swiglu_ffn, buggy, "that is GLU")


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_batch_norm_bt_passes_on_solution(capsys):
    check_batch_norm_bt(solution("batch_norm_bt"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 batch_norm_bt: (4, 3, 5) batches: matches nn.BatchNorm1d")
    assert "eval mode" in out


def test_check_batch_norm_bt_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5 \\(batch_norm_bt\\) is not done yet"):
        check_batch_norm_bt(stub(5))


def test_check_batch_norm_bt_catches_running_var_updated_with_the_biased_variance():
    buggy = solution("batch_norm_bt", replace=[("momentum * var * n / (n - 1))", "momentum * var)")])
    fails(check_batch_norm_bt, buggy, "running_var after batch 1", "UNBIASED batch variance")


def test_check_batch_norm_bt_catches_running_stats_never_updated():
    buggy = solution("batch_norm_bt", replace=[
        ("            running_mean.mul_(1 - momentum).add_(momentum * mean)\n"
         "            running_var.mul_(1 - momentum).add_(momentum * var * n / (n - 1))  # unbiased, as "
         "PyTorch\n",
         "            pass\n"),
    ])
    fails(check_batch_norm_bt, buggy, "running_mean after batch 1", "IN PLACE")


def test_check_batch_norm_bt_catches_momentum_used_the_wrong_way_round():
    buggy = solution("batch_norm_bt", replace=[
        ("running_mean.mul_(1 - momentum).add_(momentum * mean)",
         "running_mean.mul_(momentum).add_((1 - momentum) * mean)"),
    ])
    fails(check_batch_norm_bt, buggy, "weight of the NEW batch")


def test_check_batch_norm_bt_catches_the_batch_normalised_with_the_unbiased_variance():
    buggy = solution("batch_norm_bt", replace=[("var = x.var(dim=(0, 1), correction=0)",
                                                "var = x.var(dim=(0, 1), correction=1)")])
    fails(check_batch_norm_bt, buggy, "BIASED variance")


def test_check_batch_norm_bt_catches_batch_statistics_in_eval_mode():
    buggy = solution("batch_norm_bt", replace=[("    if training:\n", "    if True:\n")])
    fails(check_batch_norm_bt, buggy, "eval mode (training=False)")


def test_check_batch_norm_bt_catches_detached_batch_statistics():
    buggy = solution("batch_norm_bt", replace=[("mean = x.mean(dim=(0, 1))",
                                                "mean = x.mean(dim=(0, 1)).detach()")])
    fails(check_batch_norm_bt, buggy, "gradient w.r.t. x", "do not detach")
