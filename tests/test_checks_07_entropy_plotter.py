"""Tests for shared/checks/entropy_plotter.py.

Every check must pass on the solution notebook's own functions, printing its ✅ line, and say "not done
yet" on an untouched starter stub. The realistic bugs each check must catch with a hint aimed at them, and
the correct variants it must accept, are edits of the solution's source listed in the mutation catalogue,
tests/catalogue/c07_entropy_plotter.py
(run by tests/test_mutation_catalogue.py); this file keeps the references and the cases that need more
than an edit.
"""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.entropy_plotter import (
    check_distinct_n,
    check_entropy,
    check_repeated_ngram_rate,
    check_sample_next,
    check_temperature_softmax,
    check_top_k_filter,
    check_top_p_filter,
    reference_distinct_n,
    reference_repeated_ngram_rate,
    reference_sampling_probs,
    reference_top_k_filter,
    reference_top_p_filter,
)
from shared.sampling import top_p_filter as model_top_p_filter

solution = solution_loader("07_entropy_plotter")
SAMPLER = ["temperature_softmax", "top_k_filter", "top_p_filter", "sample_next"]
NEG_INF = float("-inf")


# ----------------------------------------------------------------------------------------------- references


def test_reference_top_p_keeps_the_crossing_token_and_matches_the_shared_model():
    logits = torch.log(torch.tensor([[0.05, 0.6, 0.1, 0.25]]))
    assert (reference_top_p_filter(logits, 0.3) != NEG_INF).tolist() == [[False, True, False, False]]
    assert (reference_top_p_filter(logits, 0.7) != NEG_INF).tolist() == [[False, True, False, True]]
    x = torch.randn(16, 30)
    assert torch.equal(reference_top_p_filter(x, 0.8), model_top_p_filter(x, 0.8))


def test_reference_top_k_keeps_exactly_k_even_with_ties():
    tied = torch.tensor([[5.0, 5.0, 5.0, 4.0]])
    assert int((reference_top_k_filter(tied, 2) != NEG_INF).sum()) == 2
    assert torch.equal(reference_top_k_filter(tied, 10), tied)


def test_reference_sampling_probs_is_one_hot_at_zero_temperature_and_sums_to_one():
    logits = torch.randn(3, 9)
    assert torch.equal(reference_sampling_probs(logits, 0.0).argmax(-1), logits.argmax(-1))
    probs = reference_sampling_probs(logits, 0.7, top_k=4, top_p=0.8)
    assert torch.allclose(probs.sum(-1), torch.ones(3))
    assert ((probs > 0).sum(-1) <= 4).all()


def test_reference_repetition_metrics_on_hand_examples():
    assert reference_repeated_ngram_rate("abcabcabc", 3) == pytest.approx(4 / 7)
    assert reference_repeated_ngram_rate("ab", 3) == 0.0
    assert reference_distinct_n([[1, 2, 1, 2, 1]], 2) == 0.5
    assert reference_distinct_n([[1, 2, 3], [3, 1, 2]], 2) == pytest.approx(3 / 4)


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_temperature_softmax_passes_on_solution(capsys):
    assert check_temperature_softmax(solution("temperature_softmax")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 temperature_softmax: "
                                              "matches torch.softmax(logits / T")


def test_check_temperature_softmax_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(temperature_softmax\\) is not done yet"):
        check_temperature_softmax(stub(1))


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_entropy_passes_on_solution(capsys):
    check_entropy(solution("entropy"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 entropy: matches torch.distributions.Categorical")


def test_check_entropy_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_entropy(stub(2))


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_top_k_filter_passes_on_solution(capsys):
    check_top_k_filter(solution("top_k_filter"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 top_k_filter: keeps "
                                              "exactly the tokens torch.topk picks")


def test_check_top_k_filter_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3"):
        check_top_k_filter(stub(3))


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_top_p_filter_passes_on_solution(capsys):
    check_top_p_filter(solution("top_p_filter"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 4 top_p_filter: keeps the same tokens as a sort/cumsum")


def test_check_top_p_filter_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_top_p_filter(stub(4))


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_sample_next_passes_on_solution(capsys):
    check_sample_next(solution(*SAMPLER)["sample_next"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 5 sample_next: T=0, top_k=1 and T=1e-3 all give the argmax")
    assert "chi-square" in out


def test_check_sample_next_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5 \\(sample_next\\) is not done yet"):
        check_sample_next(stub(5))


def test_check_sample_next_names_an_unfinished_top_p_filter():
    fns = solution(*SAMPLER)
    fns["sample_next"].__globals__["top_p_filter"] = stub(4)
    with pytest.raises(TodoNotDone, match="uses TODO 4"):
        check_sample_next(fns["sample_next"])


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_distinct_n_passes_on_solution(capsys):
    check_distinct_n(solution("distinct_n"))
    assert capsys.readouterr().out.startswith("✅ TODO 6 distinct_n: unique n-grams / all n-grams")


def test_check_distinct_n_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6"):
        check_distinct_n(stub(6))


# ----------------------------------------------------------------------------------------------- TODO 7


def test_check_repeated_ngram_rate_passes_on_solution(capsys):
    check_repeated_ngram_rate(solution("repeated_ngram_rate"))
    assert capsys.readouterr().out.startswith("✅ TODO 7 repeated_ngram_rate: ")


def test_check_repeated_ngram_rate_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 7"):
        check_repeated_ngram_rate(stub(7))


def test_solution_entropy_of_uniform_is_log_v():
    assert float(solution("entropy")(torch.full((7,), 1 / 7))) == pytest.approx(math.log(7), abs=1e-6)
