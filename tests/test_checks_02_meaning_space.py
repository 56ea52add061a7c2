"""Tests for shared/checks/meaning_space.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source. Plus the reference implementations themselves.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from check_helpers import solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.meaning_space import (
    HAND_IDS,
    HAND_PAIRS_WINDOW_1,
    HAND_PAIRS_WINDOW_2,
    check_analogy,
    check_cosine_matrix,
    check_keep_probability,
    check_nearest_neighbours,
    check_one_hot,
    check_sample_negatives,
    check_sgns_loss,
    check_skipgram_pairs,
    check_train_skipgram,
    reference_analogy,
    reference_keep_probability,
    reference_noise_distribution,
    reference_sgns_loss,
    reference_skipgram_pairs,
    two_topic_corpus,
)

solution = solution_loader("02_meaning_space")
TRAIN_FUNCTIONS = ["train_skipgram", "keep_probability", "skipgram_pairs", "sample_negatives", "sgns_loss"]


def trainer(replace: list[tuple[str, str]] | None = None):
    """The solution's train_skipgram with the functions it calls (optionally with a planted bug)."""
    return solution(*TRAIN_FUNCTIONS, replace=replace)["train_skipgram"]


# ----------------------------------------------------------------------------------------------- references


def test_reference_pairs_reproduce_the_hand_worked_example():
    assert reference_skipgram_pairs(HAND_IDS, 1) == sorted(HAND_PAIRS_WINDOW_1)
    assert reference_skipgram_pairs(HAND_IDS, 2) == sorted(HAND_PAIRS_WINDOW_2)
    assert reference_skipgram_pairs(HAND_IDS, 9) == sorted(
        (a, b) for i, a in enumerate(HAND_IDS) for j, b in enumerate(HAND_IDS) if i != j)


def test_reference_keep_probability_and_noise_follow_the_paper_formulas():
    keep = reference_keep_probability(torch.tensor([9.0, 1.0]), 0.01)
    assert torch.allclose(keep, torch.tensor([math.sqrt(0.01 / 0.9), math.sqrt(0.01 / 0.1)],
                                             dtype=torch.double))
    assert torch.allclose(reference_keep_probability(torch.tensor([1.0, 1e6]), 0.5)[0],
                          torch.tensor(1.0, dtype=torch.double))
    assert torch.allclose(reference_noise_distribution(torch.tensor([16.0, 1.0])),
                          torch.tensor([8 / 9, 1 / 9], dtype=torch.double))


def test_reference_sgns_loss_is_1_plus_k_log2_at_zero_and_finite_at_huge_scores():
    v = torch.zeros(3, 4)
    assert math.isclose(float(reference_sgns_loss(v, v, torch.zeros(3, 5, 4))), 6 * math.log(2), rel_tol=1e-6)
    big = torch.tensor([[100.0]])
    assert math.isfinite(float(reference_sgns_loss(big, -big, big[:, None, :])))


def test_reference_analogy_excludes_inputs():
    emb = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.9, 0.2]])
    assert set(reference_analogy(emb, 0, 1, 2, k=1)).isdisjoint({0, 1, 2})


def test_two_topic_corpus_keeps_each_run_inside_one_topic():
    ids = two_topic_corpus(1200).view(-1, 12)
    assert ((ids < 6).all(1) | (ids >= 6).all(1)).all()


# -------------------------------------------------------------------------------------------- pass + not done


@pytest.mark.parametrize(
    ("check", "names", "prefix"),
    [
        (check_one_hot, ["one_hot"], "✅ TODO 1 one_hot: "),
        (check_cosine_matrix, ["cosine_matrix"], "✅ TODO 2 cosine_matrix: "),
        (check_skipgram_pairs, ["skipgram_pairs"], "✅ TODO 3 skipgram_pairs: "),
        (check_keep_probability, ["keep_probability"], "✅ TODO 4 keep_probability: "),
        (check_sample_negatives, ["sample_negatives"], "✅ TODO 5 sample_negatives: "),
        (check_sgns_loss, ["sgns_loss"], "✅ TODO 6 sgns_loss: "),
        (check_nearest_neighbours, ["nearest_neighbours", "cosine_matrix"], "✅ TODO 8 nearest_neighbours: "),
        (check_analogy, ["analogy", "cosine_matrix"], "✅ TODO 9 analogy: "),
    ],
)
def test_each_check_passes_on_the_solution_and_prints_one_line(check, names, prefix, capsys):
    fn = solution(*names) if len(names) == 1 else solution(*names)[names[0]]
    assert check(fn) is None
    out = capsys.readouterr().out
    assert out.startswith(prefix) and out.count("\n") == 1, out


def test_check_train_skipgram_passes_on_the_solution(capsys):
    assert check_train_skipgram(trainer()) is None
    assert capsys.readouterr().out.startswith("✅ TODO 7 train_skipgram: in 79 steps")


@pytest.mark.parametrize(
    ("check", "todo"),
    [(check_one_hot, 1), (check_cosine_matrix, 2), (check_skipgram_pairs, 3), (check_keep_probability, 4),
     (check_sample_negatives, 5), (check_sgns_loss, 6), (check_train_skipgram,
                                                         7), (check_nearest_neighbours, 8),
     (check_analogy, 9)],
)
def test_each_check_says_not_done_on_the_stub(check, todo):
    with pytest.raises(TodoNotDone, match=f"TODO {todo} .* is not done yet"):
        check(stub(todo))


def test_a_check_names_the_earlier_todo_a_stub_depends_on():
    nn = solution("nearest_neighbours", "cosine_matrix", replace=[
        ("    a_unit = a / a.norm(dim=1, keepdim=True).clamp_min(eps)  # (N, D)",
         "    raise NotImplementedError('TODO 2: stub')")])["nearest_neighbours"]
    with pytest.raises(TodoNotDone, match="uses TODO 2"):
        check_nearest_neighbours(nn)


# --------------------------------------------------------------------------------------------- realistic bugs


def test_solution_one_hot_cosines_are_exactly_zero_off_diagonal():
    fns = solution("one_hot", "cosine_matrix")
    oh = fns["one_hot"](torch.arange(5), 5)
    assert torch.equal(fns["cosine_matrix"](oh, oh), torch.eye(5))
    assert torch.equal(oh, F.one_hot(torch.arange(5), 5).float())
