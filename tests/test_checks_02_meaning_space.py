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
from check_helpers import fails, solution_loader, stub

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


def test_one_hot_left_as_int64_is_caught():
    fn = solution("one_hot", replace=[("out = torch.zeros(len(ids), vocab_size)  # (N, V)",
                                       "out = torch.zeros(len(ids), vocab_size, dtype=torch.long)  # (N, V)"),
                                      ("out[torch.arange(len(ids)), ids] = 1.0",
                                       "out[torch.arange(len(ids)), ids] = 1")])
    fails(check_one_hot, fn, "float")


def test_one_hot_sized_by_the_largest_id_is_caught():
    fn = solution("one_hot", replace=[("torch.zeros(len(ids), vocab_size)",
                                       "torch.zeros(len(ids), int(ids.max()) + 1)")])
    fails(check_one_hot, fn, "wrong shape")


def test_cosine_normalising_only_one_side_is_caught():
    fn = solution("cosine_matrix", replace=[("    return a_unit @ b_unit.T", "    return a_unit @ b.T")])
    fails(check_cosine_matrix, fn, "only one side is normalised")


def test_cosine_normalising_columns_is_caught():
    fn = solution("cosine_matrix", replace=[
        ("a_unit = a / a.norm(dim=1, keepdim=True).clamp_min(eps)",
         "a_unit = a / a.norm(dim=0, keepdim=True).clamp_min(eps)"),
        ("b_unit = b / b.norm(dim=1, keepdim=True).clamp_min(eps)",
         "b_unit = b / b.norm(dim=0, keepdim=True).clamp_min(eps)")])
    fails(check_cosine_matrix, fn, "ROW")


def test_window_including_the_centre_word_is_caught():
    fn = solution("skipgram_pairs", replace=[
        ("    chunks = []\n", "    chunks = [torch.stack([ids, ids], dim=1)]\n")])
    fails(check_skipgram_pairs, fn, "paired with itself")


def test_window_off_by_one_is_caught():
    fn = solution("skipgram_pairs", replace=[("    for o in range(1, window + 1):\n        if",
                                              "    for o in range(1, window):\n        if")])
    fails(check_skipgram_pairs, fn, "off by one")


def test_one_sided_window_is_caught():
    fn = solution("skipgram_pairs", replace=[
        ("        chunks.append(torch.stack([ids[o:], ids[:-o]], dim=1))  # (T - o, 2) context to the left\n",
         "")])
    fails(check_skipgram_pairs, fn, "only one side")


def test_keep_probability_without_sqrt_is_caught():
    fn = solution("keep_probability", replace=[("    return torch.sqrt(t / f).clamp(max=1.0)",
                                                "    return (t / f).clamp(max=1.0)")])
    fails(check_keep_probability, fn, "missing square root")


def test_keep_probability_without_clamp_is_caught():
    fn = solution("keep_probability", replace=[("    return torch.sqrt(t / f).clamp(max=1.0)",
                                                "    return torch.sqrt(t / f)")])
    fails(check_keep_probability, fn, "clamped to 1")


def test_negatives_from_unigram_power_one_are_caught():
    fn = solution("sample_negatives", replace=[("counts.float() ** power", "counts.float()")])
    fails(check_sample_negatives, fn, "raw unigram distribution", "0.75")


def test_uniform_negatives_are_caught():
    fn = solution("sample_negatives", replace=[(
        "draws = torch.multinomial(weights, math.prod(shape), replacement=True, generator=generator)  # (n,)",
        "draws = torch.randint(0, len(counts), (math.prod(shape),), generator=generator)  # (n,)")])
    fails(check_sample_negatives, fn, "uniform")


def test_negatives_ignoring_the_generator_are_caught():
    fn = solution("sample_negatives", replace=[("replacement=True, generator=generator)  # (n,)",
                                                "replacement=True)  # (n,)")])
    fails(check_sample_negatives, fn, "generator")


def test_sgns_loss_with_wrong_negative_sign_is_caught():
    fn = solution("sgns_loss", replace=[("F.logsigmoid(-neg)", "F.logsigmoid(neg)")])
    fails(check_sgns_loss, fn, "pushed APART")


def test_sgns_loss_via_log_of_sigmoid_is_caught():
    fn = solution("sgns_loss", replace=[
        ("return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()",
         "return -(torch.log(torch.sigmoid(pos)) + torch.log(torch.sigmoid(-neg)).sum(-1)).mean()")])
    fails(check_sgns_loss, fn, "F.logsigmoid")


def test_sgns_loss_averaging_the_negatives_is_caught():
    fn = solution("sgns_loss", replace=[("F.logsigmoid(-neg).sum(-1)", "F.logsigmoid(-neg).mean(-1)")])
    fails(check_sgns_loss, fn, "sum the K negative terms")


def test_training_with_both_tables_at_zero_is_caught():
    fn = trainer(replace=[("emb_in.weight.uniform_(-0.5 / dim, 0.5 / dim, generator=g)",
                           "emb_in.weight.zero_()")])
    fails(check_train_skipgram, fn, "did not fall", "both tables start at zero")


def test_training_that_never_steps_the_optimizer_is_caught():
    fn = trainer(replace=[("            opt.step()\n", "")])
    fails(check_train_skipgram, fn, "did not fall")


def test_training_on_the_wrong_number_of_pairs_is_caught():
    fn = trainer(replace=[("pairs[torch.randperm(len(pairs), generator=g)][: n_pairs - seen]",
                                 "pairs[torch.randperm(len(pairs), generator=g)]")])
    fails(check_train_skipgram, fn, "one per batch")


def test_neighbours_including_the_query_are_caught():
    fn = solution("nearest_neighbours", "cosine_matrix", replace=[
        ("    sims[torch.arange(len(query_ids)), query_ids] = -math.inf\n", "")])["nearest_neighbours"]
    fails(check_nearest_neighbours, fn, "query word itself came first")


def test_neighbours_by_dot_product_are_caught():
    fn = solution("nearest_neighbours", "cosine_matrix", replace=[
        ("sims = cosine_matrix(emb[query_ids], emb)  # (Q, V)",
         "sims = emb[query_ids] @ emb.T  # (Q, V)")])["nearest_neighbours"]
    fails(check_nearest_neighbours, fn, "dot product")


def test_analogy_returning_an_input_word_is_caught():
    fn = solution("analogy", "cosine_matrix", replace=[("    sims[[a, b, c]] = -math.inf\n", "")])["analogy"]
    fails(check_analogy, fn, "input word", "'king'")


def test_solution_one_hot_cosines_are_exactly_zero_off_diagonal():
    fns = solution("one_hot", "cosine_matrix")
    oh = fns["one_hot"](torch.arange(5), 5)
    assert torch.equal(fns["cosine_matrix"](oh, oh), torch.eye(5))
    assert torch.equal(oh, F.one_hot(torch.arange(5), 5).float())
