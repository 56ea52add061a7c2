"""Tests for shared/checks/norm_activation.py.

Every check must pass on the solution notebook's own functions, printing its ✅ line, and say "not done
yet" on an untouched starter stub. The realistic bugs each check must catch with a hint aimed at them, and
the correct variants it must accept, are edits of the solution's source listed in the mutation catalogue,
tests/catalogue/c06_norm_activation.py
(run by tests/test_mutation_catalogue.py); this file keeps the references and the cases that need more
than an edit.
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


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_rms_norm_passes_on_solution(capsys):
    check_rms_norm(solution("rms_norm"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 rms_norm: (3, 5, 8) tokens with non-zero means: "
                                              "matches nn.RMSNorm")


def test_check_rms_norm_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2 \\(rms_norm\\) is not done yet"):
        check_rms_norm(stub(2))


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_gelu_passes_on_solution(capsys):
    check_gelu(solution("gelu"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 3 gelu: ")
    assert "approximate='tanh'" in out


def test_check_gelu_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(gelu\\) is not done yet"):
        check_gelu(stub(3))


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


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_batch_norm_bt_passes_on_solution(capsys):
    check_batch_norm_bt(solution("batch_norm_bt"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 batch_norm_bt: (4, 3, 5) batches: matches nn.BatchNorm1d")
    assert "eval mode" in out


def test_check_batch_norm_bt_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5 \\(batch_norm_bt\\) is not done yet"):
        check_batch_norm_bt(stub(5))


