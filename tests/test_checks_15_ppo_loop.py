"""Tests for shared/checks/ppo_loop.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes. The
mistakes that are textual edits of the solution, and the correct variants each check must accept, are in
tests/catalogue/c15_ppo_loop.py (run by tests/test_mutation_catalogue.py); the tests here keep the ones that
need more than an edit: a PPO iteration whose gae is still the starter stub.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from check_helpers import solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.ppo_loop import (
    TinyPolicy,
    check_bradley_terry_loss,
    check_dpo_loss,
    check_gae,
    check_kl_shaped_rewards,
    check_ppo_iteration,
    check_ppo_losses,
    check_response_logprobs,
    reference_dpo_loss,
    reference_gae,
    reference_kl_shaped_rewards,
    reference_ppo_losses,
    reference_response_logprobs,
)
from shared.model import GPT, GPTConfig

solution = solution_loader("15_ppo_loop")
LOOP_PARTS = ["response_logprobs", "kl_shaped_rewards", "gae", "ppo_losses", "ppo_iteration"]


# ----------------------------------------------------------------------------------------------- references


def test_reference_gae_with_one_step_is_reward_minus_value_and_returns_are_rewards():
    r, v = torch.randn(4, 1), torch.randn(4, 1)
    adv, ret = reference_gae(r, v, 0.9, 0.8, normalize=False)
    assert torch.allclose(adv, r - v) and torch.allclose(ret, r)


def test_reference_gae_with_lambda_one_and_zero_values_gives_discounted_reward_to_go():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    adv, _ = reference_gae(r, torch.zeros(1, 3), 0.5, 1.0, normalize=False)
    assert torch.allclose(adv, torch.tensor([[1 + 0.5 * 2 + 0.25 * 3, 2 + 0.5 * 3, 3.0]]))


def test_reference_gae_normalised_advantages_have_mean_zero_and_unit_std():
    adv, _ = reference_gae(torch.randn(6, 5), torch.randn(6, 5), 1.0, 0.95)
    assert abs(float(adv.mean())) < 1e-6 and abs(float(adv.std()) - 1) < 1e-5


def test_reference_kl_shaped_rewards_sum_to_score_minus_beta_times_log_ratio():
    score, lp, lr = torch.randn(3), torch.randn(3, 5), torch.randn(3, 5)
    r = reference_kl_shaped_rewards(score, lp, lr, 0.3)
    assert torch.allclose(r.sum(1), score - 0.3 * (lp - lr).sum(1), atol=1e-6)


def test_reference_ppo_losses_equal_minus_advantage_when_ratio_is_one():
    a = torch.randn(10)
    pl, vl = reference_ppo_losses(torch.zeros(10), torch.zeros(10), a, torch.ones(10), torch.zeros(10), 0.2)
    assert torch.allclose(pl, -a.mean()) and torch.allclose(vl, torch.tensor(0.5))


def test_reference_response_logprobs_agree_with_cross_entropy():
    logits, seq = torch.randn(2, 6, 5), torch.randint(0, 5, (2, 6))
    got = reference_response_logprobs(logits, seq, 2)
    want = -F.cross_entropy(logits[:, 1:-1].reshape(-1, 5), seq[:, 2:].reshape(-1),
                            reduction="none").view(2, 4)
    assert torch.allclose(got, want, atol=1e-6)


def test_reference_dpo_loss_is_log_two_when_policy_equals_reference():
    x, y = torch.randn(7), torch.randn(7)
    assert abs(float(reference_dpo_loss(x, y, x, y, 0.1)) - 0.693147) < 1e-5


def test_tiny_policy_returns_logits_and_one_value_per_position():
    policy = TinyPolicy(GPT(GPTConfig(vocab_size=6, block_size=8, n_layer=1, n_head=2, d_model=8)))
    logits, values = policy(torch.randint(0, 6, (3, 5)))
    assert logits.shape == (3, 5, 6) and values.shape == (3, 5) and bool((values == 0).all())


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_bradley_terry_loss_passes_on_solution(capsys):
    assert check_bradley_terry_loss(solution("bradley_terry_loss")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 bradley_terry_loss: equals mean softplus")


def test_check_bradley_terry_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(bradley_terry_loss\\) is not done yet"):
        check_bradley_terry_loss(stub(1))


def test_check_response_logprobs_passes_on_solution(capsys):
    check_response_logprobs(solution("response_logprobs"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 response_logprobs: matches an explicit loop")


def test_check_response_logprobs_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_response_logprobs(stub(2))


def test_check_kl_shaped_rewards_passes_on_solution(capsys):
    check_kl_shaped_rewards(solution("kl_shaped_rewards"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 kl_shaped_rewards: r_t = −β (logp_t − logp_ref_t)")


def test_check_kl_shaped_rewards_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3"):
        check_kl_shaped_rewards(stub(3))


def test_check_gae_passes_on_solution(capsys):
    check_gae(solution("gae"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 gae: matches the closed form")


def test_check_gae_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4 \\(gae\\) is not done yet"):
        check_gae(stub(4))


def test_check_ppo_losses_passes_on_solution(capsys):
    check_ppo_losses(solution("ppo_losses"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 ppo_losses: policy and value losses match")


def test_check_ppo_losses_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_ppo_losses(stub(5))


def test_check_ppo_iteration_passes_on_solution(capsys):
    check_ppo_iteration(solution(*LOOP_PARTS)["ppo_iteration"])
    assert capsys.readouterr().out.startswith("✅ TODO 6 ppo_iteration: on a tiny GPT")


def test_check_ppo_iteration_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6 \\(ppo_iteration\\) is not done yet"):
        check_ppo_iteration(stub(6))


def test_check_ppo_iteration_names_an_unfinished_gae():
    fns = solution(*LOOP_PARTS)
    fns["ppo_iteration"].__globals__["gae"] = stub(4)
    with pytest.raises(TodoNotDone, match="uses TODO 4"):
        check_ppo_iteration(fns["ppo_iteration"])


def test_check_dpo_loss_passes_on_solution(capsys):
    check_dpo_loss(solution("dpo_loss"))
    assert capsys.readouterr().out.startswith("✅ TODO 7 dpo_loss: equals −mean log σ")


def test_check_dpo_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 7"):
        check_dpo_loss(stub(7))


