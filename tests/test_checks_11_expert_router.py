"""Tests for shared/checks/expert_router.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: no renormalisation for k > 1, renormalising the Switch gate for k = 1, the
expert outputs combined without their weights, dropped assignments still served, the balancing loss computed
from the top-k weights instead of the router probabilities, the factor E missing, f_i not divided by the
number of assignments, the first tokens dropped instead of the overflow, a capacity without ceil, the
z-loss without its square.
"""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import fails, solution_loader, stub

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


def test_check_top_k_route_catches_missing_renormalisation():
    buggy = solution("top_k_route", replace=[
        ("weights = weights / weights.sum(dim=-1, keepdim=True)", "weights = weights"),
    ])
    fails(check_top_k_route, buggy, "renormalise the k chosen probabilities")


def test_check_top_k_route_catches_a_renormalised_switch_gate():
    buggy = solution("top_k_route", replace=[("    if k > 1:\n        weights =",
                                              "    if k > 0:\n        weights =")])
    fails(check_top_k_route, buggy, "Switch gate")


def test_check_top_k_route_catches_softmax_over_tokens():
    buggy = solution("top_k_route", replace=[("probs = torch.softmax(logits.float(), dim=-1)",
                                              "probs = torch.softmax(logits.float(), dim=0)")])
    fails(check_top_k_route, buggy, "wrong dim")


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


def test_check_moe_layer_catches_unweighted_expert_outputs():
    fns = solution(*MOE_PARTS, replace=[("expert(x[tok]) * weights[tok, slot, None])  # (N, C)",
                                         "expert(x[tok]))  # (N, C)")])
    fails(check_moe_layer, fns["moe_layer"], "multiplied by its routing weight")


def test_check_moe_layer_catches_a_keep_mask_that_is_ignored():
    fns = solution(*MOE_PARTS, replace=[("tok, slot = tok[served], slot[served]", "pass")])
    fails(check_moe_layer, fns["moe_layer"], "dropped assignment")


# ----------------------------------------------------------------------------------------------- TODO 3

F_LINE = "f = torch.bincount(top_idx.flatten(), minlength=n_experts).to(probs.dtype) / top_idx.numel()"


def test_check_load_balancing_loss_passes_on_solution(capsys):
    check_load_balancing_loss(solution("load_balancing_loss"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 load_balancing_loss: 1 for uniform routing")


def test_check_load_balancing_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3"):
        check_load_balancing_loss(stub(3))


def test_check_load_balancing_loss_catches_a_missing_factor_e():
    buggy = solution("load_balancing_loss", replace=[("return n_experts * torch.sum(f * P)",
                                                      "return torch.sum(f * P)")])
    fails(check_load_balancing_loss, buggy, "factor E is missing")


def test_check_load_balancing_loss_catches_counts_instead_of_fractions():
    buggy = solution("load_balancing_loss", replace=[(" / top_idx.numel()  # (E,)", "  # (E,)")])
    fails(check_load_balancing_loss, buggy, "f_i is a fraction")


def test_check_load_balancing_loss_catches_the_top_k_weights_used_as_p():
    # a learner who averages the weights of the chosen experts
    # (here: the probability of the chosen expert only)
    buggy = solution("load_balancing_loss", replace=[
        ("P = probs.mean(dim=0)  # (E,)",
         "P = torch.zeros(n_experts).index_add_(0, top_idx.flatten(), probs.gather(1, "
         "top_idx).flatten()) / len(probs)"),
    ])
    fails(check_load_balancing_loss, buggy, "not the top-k weights")


def test_check_load_balancing_loss_catches_division_by_tokens_not_assignments():
    buggy = solution("load_balancing_loss", replace=[(" / top_idx.numel()  # (E,)",
                                                      " / len(top_idx)  # (E,)")])
    fails(check_load_balancing_loss, buggy, "N·k")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_capacity_keep_passes_on_solution(capsys):
    check_capacity_keep(solution("capacity_keep"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 capacity_keep: drops exactly the overflow")


def test_check_capacity_keep_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_capacity_keep(stub(4))


def test_check_capacity_keep_catches_dropping_the_first_tokens():
    buggy = solution("capacity_keep", replace=[
        ("rank = (onehot.cumsum(dim=0) * onehot).sum(dim=-1)",
         "rank = (onehot.flip(0).cumsum(dim=0).flip(0) * onehot).sum(dim=-1)"),
    ])
    fails(check_capacity_keep, buggy, "LAST tokens")


@pytest.mark.parametrize("rounding", ["int", "math.floor", "round"])
def test_check_capacity_keep_catches_a_capacity_without_ceil(rounding):
    buggy = solution("capacity_keep", replace=[("math.ceil(capacity_factor", f"{rounding}(capacity_factor")])
    message = fails(check_capacity_keep, buggy)
    assert "ceil" in message


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_router_z_loss_passes_on_solution(capsys):
    check_router_z_loss(solution("router_z_loss"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 router_z_loss: matches torch.logsumexp") and "near 90" in out


def test_check_router_z_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_router_z_loss(stub(5))


def test_check_router_z_loss_catches_a_naive_logsumexp_that_overflows():
    buggy = solution("router_z_loss", replace=[("torch.logsumexp(logits.float(), dim=-1)",
                                                "torch.log(torch.exp(logits.float()).sum(dim=-1))")])
    fails(check_router_z_loss, buggy, "logits near 90", "torch.logsumexp")


def test_check_router_z_loss_catches_a_missing_square():
    buggy = solution("router_z_loss", replace=[(".square().mean()", ".mean()")])
    fails(check_router_z_loss, buggy, "square the logsumexp")


def test_check_router_z_loss_catches_the_square_of_the_mean():
    buggy = solution("router_z_loss", replace=[(".square().mean()", ".mean().square()")])
    fails(check_router_z_loss, buggy, "THEN take the mean")


def test_check_router_z_loss_catches_the_max_logit():
    fails(check_router_z_loss, lambda logits: logits.amax(-1).square().mean(), "not the max logit")
