"""Tests for shared/checks/objective_arena.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: a CLM batch without the shift, MLM targets at every position, 80/10/10 applied
to all tokens, padding selected, a prefix mask that lets the prefix see the target or the target see the
future, an off-by-one prefix boundary, prefix-LM targets that count the prefix, an MLM loss averaged over
unmasked positions.
"""

from __future__ import annotations

import pytest
import torch
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.objective_arena import (
    check_causal_lm_batch,
    check_lm_loss,
    check_masked_lm_batch,
    check_prefix_lm_batch,
    check_prefix_lm_mask,
    reference_prefix_mask,
)

solution = solution_loader("13_objective_arena")


# ----------------------------------------------------------------------------------------------- reference


def test_reference_prefix_mask_is_causal_at_zero_and_bidirectional_at_full_length():
    assert torch.equal(reference_prefix_mask(5, 0), torch.ones(5, 5, dtype=torch.bool).tril())
    assert reference_prefix_mask(5, 5).all()
    batched = reference_prefix_mask(5, torch.tensor([0, 5]))
    assert batched.shape == (2, 5, 5)
    assert torch.equal(batched[1], reference_prefix_mask(5, 5))


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_causal_lm_batch_passes_on_solution(capsys):
    assert check_causal_lm_batch(solution("causal_lm_batch")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 causal_lm_batch: x = w[:, :-1] and y = w[:, 1:]")


def test_check_causal_lm_batch_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(causal_lm_batch\\) is not done yet"):
        check_causal_lm_batch(stub(1))


def test_check_causal_lm_batch_catches_a_missing_shift():
    buggy = solution("causal_lm_batch", replace=[("y = windows[:, 1:]  #", "y = windows[:, :-1]  #")])
    fails(check_causal_lm_batch, buggy, "copy its input", "shift by one")


def test_check_causal_lm_batch_catches_swapped_inputs_and_targets():
    buggy = solution("causal_lm_batch", replace=[
        ("x = windows[:, :-1]  #", "x = windows[:, 1:]  #"), ("y = windows[:, 1:]  #",
                                                              "y = windows[:, :-1]  #"),
    ])
    fails(check_causal_lm_batch, buggy, "PREVIOUS token")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_masked_lm_batch_passes_on_solution(capsys):
    check_masked_lm_batch(solution("masked_lm_batch"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 2 masked_lm_batch: 28672 maskable tokens")


def test_check_masked_lm_batch_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_masked_lm_batch(stub(2))


def test_check_masked_lm_batch_catches_80_10_10_applied_to_all_tokens():
    buggy = solution("masked_lm_batch", replace=[
        ("x[selected & (r < 0.8)] = mask_id", "x[r < 0.8] = mask_id"),
        ("to_random = selected & (r >= 0.8) & (r < 0.9)", "to_random = (r >= 0.8) & (r < 0.9)"),
    ])
    fails(check_masked_lm_batch, buggy, "NOT selected", "only to the selected 15 %")


def test_check_masked_lm_batch_catches_targets_at_every_position():
    buggy = solution("masked_lm_batch", replace=[
        ("y = torch.where(selected, x, torch.full_like(x, IGNORE_INDEX))", "y = x.clone()"),
    ])
    fails(check_masked_lm_batch, buggy, "IGNORE_INDEX (-100) everywhere except the selected")


def test_check_masked_lm_batch_catches_selected_padding():
    buggy = solution("masked_lm_batch", replace=[("selected &= tokens != pad_id", "pass")])
    fails(check_masked_lm_batch, buggy, "never select padding")


def test_check_masked_lm_batch_catches_a_wrong_split():
    buggy = solution("masked_lm_batch", replace=[("(r < 0.8)", "(r < 0.9)"),
                                                 ("(r >= 0.8) & (r < 0.9)", "(r >= 0.9)")])
    fails(check_masked_lm_batch, buggy, "80 % become mask_id")


def test_check_masked_lm_batch_catches_a_wrong_selection_rate():
    buggy = solution("masked_lm_batch", replace=[("generator=generator) < mask_prob",
                                                  "generator=generator) < 2 * mask_prob")])
    fails(check_masked_lm_batch, buggy, "selection rate")


def test_check_masked_lm_batch_catches_the_masked_token_as_target():
    buggy = solution("masked_lm_batch", replace=[("    return x, y\n",
                                                  "    y[selected] = x[selected]\n    return x, y\n")])
    fails(check_masked_lm_batch, buggy, "ORIGINAL token")


def test_check_masked_lm_batch_catches_an_ignored_generator():
    buggy = solution("masked_lm_batch", replace=[("torch.rand(tokens.shape, generator=generator) < mask_prob",
                                                  "torch.rand(tokens.shape) < mask_prob")])
    fails(check_masked_lm_batch, buggy, "generator=generator")


# ----------------------------------------------------------------------------------------------- TODO 3

MASK_LINE = "return (j <= i) | ((i < p) & (j < p))"


def test_check_prefix_lm_mask_passes_on_solution(capsys):
    check_prefix_lm_mask(solution("prefix_lm_mask"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 prefix_lm_mask: equals "
                                              "shared.model.attention_allowed")


def test_check_prefix_lm_mask_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(prefix_lm_mask\\) is not done yet"):
        check_prefix_lm_mask(stub(3))


@pytest.mark.parametrize(
    ("bug", "hint"),
    [
        ("return (j <= i) | (i < p)", "the prefix must not see the target"),
        ("return (j <= i) | (j < p) | ((i >= p) & (j > i))", "sees a future token"),
        ("return (j <= i) | ((i <= p) & (j <= p))", "off by one"),
        ("return (j <= i) | ((i < p - 1) & (j < p - 1))", "off by one"),
        ("return (j <= i) | (i < 0)", "plain causal mask"),
    ],
)
def test_check_prefix_lm_mask_catches_leaky_and_off_by_one_masks(bug, hint):
    buggy = solution("prefix_lm_mask", replace=[(MASK_LINE, bug)])
    fails(check_prefix_lm_mask, buggy, hint)


def test_check_prefix_lm_mask_accepts_the_equivalent_key_only_rule(capsys):
    # j < p and i >= p imply j < i, so (j <= i) | (j < p) is the same mask
    check_prefix_lm_mask(solution("prefix_lm_mask", replace=[(MASK_LINE, "return (j <= i) | (j < p)")]))
    assert capsys.readouterr().out.startswith("✅ TODO 3")


def test_check_prefix_lm_mask_rejects_a_float_mask():
    fails(check_prefix_lm_mask, lambda T, p: torch.ones(T, T), "bool")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_prefix_lm_batch_catches_a_missing_clone():
    buggy = solution("prefix_lm_batch", replace=[("windows[:, 1:].clone()", "windows[:, 1:]")])
    fails(check_prefix_lm_batch, buggy, "wrote into its input", ".clone()")


def test_check_prefix_lm_batch_passes_on_solution(capsys):
    check_prefix_lm_batch(solution("prefix_lm_batch"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 prefix_lm_batch: ")


def test_check_prefix_lm_batch_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_prefix_lm_batch(stub(4))


def test_check_prefix_lm_batch_catches_a_loss_over_the_prefix():
    buggy = solution("prefix_lm_batch", replace=[("y[:, : prefix_len - 1] = IGNORE_INDEX", "pass")])
    fails(check_prefix_lm_batch, buggy, "targets leak")


def test_check_prefix_lm_batch_catches_an_off_by_one_boundary():
    buggy = solution("prefix_lm_batch", replace=[("y[:, : prefix_len - 1]", "y[:, :prefix_len]")])
    fails(check_prefix_lm_batch, buggy, "predicted at position prefix_len - 1")


def test_check_prefix_lm_batch_catches_the_target_part_ignored():
    buggy = solution("prefix_lm_batch", replace=[("y[:, : prefix_len - 1]", "y[:, prefix_len - 1:]")])
    fails(check_prefix_lm_batch, buggy, "ignored the target part")


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_lm_loss_passes_on_solution(capsys):
    check_lm_loss(solution("lm_loss"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 lm_loss: matches F.cross_entropy(ignore_index=-100)")


def test_check_lm_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_lm_loss(stub(5))


def test_check_lm_loss_catches_a_mean_over_all_positions():
    buggy = solution("lm_loss", replace=[("return nll[keep].mean()",
                                          "return (nll * keep).sum() / nll.numel()")])
    fails(check_lm_loss, buggy, "divided by ALL positions")


def test_check_lm_loss_catches_ignored_positions_counted():
    buggy = solution("lm_loss", replace=[("return nll[keep].mean()", "return nll.mean()")])
    fails(check_lm_loss, buggy, "must not count at all")


def test_check_lm_loss_catches_an_unreduced_loss():
    buggy = solution("lm_loss", replace=[("return nll[keep].mean()", "return nll")])
    fails(check_lm_loss, buggy, "scalar")
