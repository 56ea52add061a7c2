"""Tests for shared/checks/expert_router.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, and (2) say "not
done yet" on an untouched starter stub, also when a TODO it builds on is unfinished. The realistic bugs,
textual edits of the solution, and the correct variants every check must accept are in the mutation catalogue
(tests/catalogue/c11_expert_router.py).
"""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.expert_router import (
    check_capacity_keep,
    check_load_balancing_loss,
    check_moe_layer,
    check_router_z_loss,
    check_top_k_route,
    reference_balancing_loss,
    reference_capacity_keep,
    reference_moe_per_token,
    reference_route,
    reference_z_loss,
)
from shared.model import GPTConfig
from shared.moe import MoE

solution = solution_loader("11_expert_router")
MOE_PARTS = ["top_k_route", "moe_layer"]


# ----------------------------------------------------------------------------------------------- references


def test_reference_route_renormalises_only_for_k_above_one():
    logits = torch.randn(5, 4)
    probs, idx, w1 = reference_route(logits, 1)
    assert torch.allclose(w1[:, 0], probs.max(-1).values)
    _, _, w2 = reference_route(logits, 2)
    assert torch.allclose(w2.sum(-1), torch.ones(5))


def test_reference_moe_per_token_matches_the_shared_moe_layer():
    torch.manual_seed(0)
    layer = MoE(GPTConfig(d_model=8, n_head=1, d_ff=16, n_experts=3, moe_top_k=2)).eval()
    x = torch.randn(7, 8)
    with torch.no_grad():
        assert torch.allclose(reference_moe_per_token(x, layer.router.weight, layer.experts, 2), layer(x),
                              atol=1e-6)


def test_reference_balancing_loss_is_one_for_uniform_and_e_for_collapse():
    E = 5
    assert math.isclose(float(reference_balancing_loss(torch.full((10, E), 1 / E),
                                                       torch.arange(10)[:, None] % E, E)),
                        1.0, rel_tol=1e-6)
    probs = torch.zeros(10, E)
    probs[:, 1] = 1
    assert math.isclose(float(reference_balancing_loss(probs, torch.ones(10, 1, dtype=torch.long), E)), E)


def test_reference_capacity_keep_drops_the_overflow_in_token_order():
    idx = torch.tensor([[0], [0], [0], [1], [0]])
    keep = reference_capacity_keep(idx, 2, 1.0)  # capacity ceil(5/2) = 3
    assert keep.flatten().tolist() == [True, True, True, True, False]


def test_reference_z_loss_of_zero_logits_is_log_e_squared():
    assert math.isclose(float(reference_z_loss(torch.zeros(3, 8))), math.log(8) ** 2, rel_tol=1e-6)


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_top_k_route_passes_on_solution(capsys):
    check_top_k_route(solution("top_k_route"))
    assert capsys.readouterr().out.startswith("✅ TODO 1 top_k_route: probs match torch.softmax")


def test_check_top_k_route_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(top_k_route\\) is not done yet"):
        check_top_k_route(stub(1))


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_moe_layer_passes_on_solution(capsys):
    check_moe_layer(solution(*MOE_PARTS)["moe_layer"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 2 moe_layer: ")
    assert "shared.model.MoE" in out


def test_check_moe_layer_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_moe_layer(stub(2))


def test_check_moe_layer_names_an_unfinished_router():
    fns = solution(*MOE_PARTS)
    fns["moe_layer"].__globals__["top_k_route"] = stub(1)
    with pytest.raises(TodoNotDone, match="uses TODO 1"):
        check_moe_layer(fns["moe_layer"])


# ----------------------------------------------------------------------------------------------- TODO 3

def test_check_load_balancing_loss_passes_on_solution(capsys):
    check_load_balancing_loss(solution("load_balancing_loss"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 load_balancing_loss: 1 for uniform routing")


def test_check_load_balancing_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3"):
        check_load_balancing_loss(stub(3))


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_capacity_keep_passes_on_solution(capsys):
    check_capacity_keep(solution("capacity_keep"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 capacity_keep: drops exactly the overflow")


def test_check_capacity_keep_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_capacity_keep(stub(4))


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_router_z_loss_passes_on_solution(capsys):
    check_router_z_loss(solution("router_z_loss"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 router_z_loss: matches torch.logsumexp") and "near 90" in out


def test_check_router_z_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_router_z_loss(stub(5))


