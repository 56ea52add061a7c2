"""Tests for shared/checks/objective_arena.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes. The
mistakes that are textual edits of the solution, and the correct variants each check must accept, are in
tests/catalogue/c13_objective_arena.py (run by tests/test_mutation_catalogue.py); the tests here keep the
ones that need more than an edit: a float mask where a bool one is due.
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


def test_check_masked_lm_batch_passes_on_solution(capsys):
    check_masked_lm_batch(solution("masked_lm_batch"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 2 masked_lm_batch: 28672 maskable tokens")


def test_check_masked_lm_batch_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_masked_lm_batch(stub(2))


def test_check_prefix_lm_mask_passes_on_solution(capsys):
    check_prefix_lm_mask(solution("prefix_lm_mask"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 prefix_lm_mask: equals "
                                              "shared.model.attention_allowed")


def test_check_prefix_lm_mask_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(prefix_lm_mask\\) is not done yet"):
        check_prefix_lm_mask(stub(3))


def test_check_prefix_lm_mask_rejects_a_float_mask():
    fails(check_prefix_lm_mask, lambda T, p: torch.ones(T, T), "bool")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_prefix_lm_batch_passes_on_solution(capsys):
    check_prefix_lm_batch(solution("prefix_lm_batch"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 prefix_lm_batch: ")


def test_check_prefix_lm_batch_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_prefix_lm_batch(stub(4))


def test_check_lm_loss_passes_on_solution(capsys):
    check_lm_loss(solution("lm_loss"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 lm_loss: matches F.cross_entropy(ignore_index=-100)")


def test_check_lm_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_lm_loss(stub(5))


