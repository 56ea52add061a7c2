"""Tests for shared/checks/entropy_plotter.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: temperature multiplied instead of divided, entropy in bits or without the
0·log 0 guard, top-k keeping ties or dropping the k-th token, top-p dropping the crossing token or summing
mass in vocabulary order, a sampler that ignores its generator or filters in the wrong order, distinct-n
over the wrong denominator or across sequence boundaries, a repeated n-gram rate that counts first
occurrences.
"""

from __future__ import annotations

import math

import pytest
import torch
from check_helpers import fails, solution_loader, stub

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


def test_check_temperature_softmax_catches_multiplying_by_the_temperature():
    buggy = solution("temperature_softmax", replace=[("logits / temperature", "logits * temperature")])
    fails(check_temperature_softmax, buggy, "multiplied by T", "divide")


def test_check_temperature_softmax_catches_an_overflowing_exp():
    buggy = solution("temperature_softmax", replace=[
        ("return torch.softmax(logits / temperature, dim=-1)",
         "e = torch.exp(logits / temperature)\n    return e / e.sum(-1, keepdim=True)"),
    ])
    fails(check_temperature_softmax, buggy, "subtract each row's max")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_entropy_passes_on_solution(capsys):
    check_entropy(solution("entropy"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 entropy: matches torch.distributions.Categorical")


def test_check_entropy_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_entropy(stub(2))


def test_check_entropy_catches_bits_instead_of_nats():
    buggy = solution("entropy", replace=[("probs.clamp_min(1e-45).log()", "probs.clamp_min(1e-45).log2()")])
    fails(check_entropy, buggy, "bits (log2)", "nats")


def test_check_entropy_catches_a_missing_zero_guard():
    buggy = solution("entropy", replace=[
        ("torch.where(probs > 0, probs * probs.clamp_min(1e-45).log(), torch.zeros_like(probs))",
         "probs * probs.log()"),
    ])
    fails(check_entropy, buggy, "0 · log 0", "NaN")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_top_k_filter_passes_on_solution(capsys):
    check_top_k_filter(solution("top_k_filter"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 top_k_filter: keeps "
                                              "exactly the tokens torch.topk picks")


def test_check_top_k_filter_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3"):
        check_top_k_filter(stub(3))


def test_check_top_k_filter_catches_keeping_ties_at_the_kth_value():
    buggy = solution("top_k_filter", replace=[
        ("keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, indices, True)",
         "keep = logits >= torch.topk(logits, k, dim=-1).values[..., -1:]"),
    ])
    fails(check_top_k_filter, buggy, "ties at the k-th value must not add tokens")


def test_check_top_k_filter_catches_strictly_greater_than_the_kth_value():
    buggy = solution("top_k_filter", replace=[
        ("keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, indices, True)",
         "keep = logits > torch.topk(logits, k, dim=-1).values[..., -1:]"),
    ])
    fails(check_top_k_filter, buggy, "k-th largest logit itself was removed", ">=")


def test_check_top_k_filter_catches_an_off_by_one_k():
    buggy = solution("top_k_filter", replace=[("indices = torch.topk(logits, k, dim=-1)",
                                               "indices = torch.topk(logits, max(k - 1, 1), dim=-1)")])
    fails(check_top_k_filter, buggy, "tokens kept per row")


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_top_p_filter_passes_on_solution(capsys):
    check_top_p_filter(solution("top_p_filter"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 4 top_p_filter: keeps the same tokens as a sort/cumsum")


def test_check_top_p_filter_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_top_p_filter(stub(4))


def test_check_top_p_filter_catches_dropping_the_crossing_token():
    buggy = solution("top_p_filter", replace=[("drop_sorted = mass_before >= p",
                                               "drop_sorted = probs.cumsum(-1) > p")])
    fails(check_top_p_filter, buggy, "token that crosses p was dropped")


def test_check_top_p_filter_catches_mass_summed_in_vocabulary_order():
    buggy = solution("top_p_filter", replace=[
        ("    drop = drop_sorted.scatter(-1, order, drop_sorted)  # (..., V) back in vocabulary order\n",
         "    vocab_probs = torch.softmax(logits, dim=-1)\n"
         "    drop = vocab_probs.cumsum(-1) - vocab_probs >= p\n"),
    ])
    fails(check_top_p_filter, buggy, "vocabulary order", "torch.sort")


def test_check_top_p_filter_catches_a_decision_left_in_sorted_order():
    buggy = solution("top_p_filter", replace=[("drop = drop_sorted.scatter(-1, order, drop_sorted)",
                                               "drop = drop_sorted")])
    fails(check_top_p_filter, buggy, "keeps the wrong tokens")


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


def test_check_sample_next_catches_a_missing_greedy_branch():
    fns = solution(*SAMPLER, replace=[("    if temperature == 0:\n", "    if temperature < 0:\n")])
    fails(check_sample_next, fns["sample_next"], "temperature 0 means greedy")


def test_check_sample_next_catches_multiplying_by_the_temperature():
    fns = solution(*SAMPLER, replace=[("z = logits / temperature", "z = logits * temperature")])
    fails(check_sample_next, fns["sample_next"], "argmax")


def test_check_sample_next_catches_filters_before_the_temperature():
    fns = solution(*SAMPLER, replace=[
        ("    z = logits / temperature  # (B, V)\n", "    z = logits\n"),
        ("    probs = temperature_softmax(z, 1.0)", "    probs = temperature_softmax(z, temperature)"),
    ])
    fails(check_sample_next, fns["sample_next"], "filters ran before the temperature")


def test_check_sample_next_catches_sampling_from_the_unfiltered_distribution():
    fns = solution(*SAMPLER, replace=[
        ("ids = torch.multinomial(probs, 1, generator=generator)",
         "ids = torch.multinomial(temperature_softmax(logits, temperature), 1, generator=generator)"),
    ])
    fails(check_sample_next, fns["sample_next"], "only the argmax survives the filter")


def test_check_sample_next_catches_an_ignored_generator():
    fns = solution(*SAMPLER, replace=[("ids = torch.multinomial(probs, 1, generator=generator)",
                                       "ids = torch.multinomial(probs, 1)")])
    fails(check_sample_next, fns["sample_next"], "generator=generator")


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_distinct_n_passes_on_solution(capsys):
    check_distinct_n(solution("distinct_n"))
    assert capsys.readouterr().out.startswith("✅ TODO 6 distinct_n: unique n-grams / all n-grams")


def test_check_distinct_n_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6"):
        check_distinct_n(stub(6))


def test_check_distinct_n_catches_dividing_by_the_unique_count():
    buggy = solution("distinct_n", replace=[("len(set(grams)) / len(grams)",
                                             "len(set(grams)) / len(set(grams))")])
    fails(check_distinct_n, buggy, "not the number of unique ones")


def test_check_distinct_n_catches_n_grams_across_sequence_boundaries():
    buggy = solution("distinct_n", replace=[
        ("grams = [tuple(seq[i : i + n]) for seq in sequences for i in range(len(seq) - n + 1)]",
         "joined = [t for seq in sequences for t in seq]\n"
         "    grams = [tuple(joined[i : i + n]) for i in range(len(joined) - n + 1)]"),
    ])
    fails(check_distinct_n, buggy, "must not cross from one sequence into the next")


def test_check_distinct_n_catches_dividing_by_the_number_of_tokens():
    buggy = solution("distinct_n", replace=[
        ("len(set(grams)) / len(grams) if grams",
         "len(set(grams)) / sum(len(s) for s in sequences) if grams"),
    ])
    fails(check_distinct_n, buggy, "not the number of tokens")


# ----------------------------------------------------------------------------------------------- TODO 7


def test_check_repeated_ngram_rate_passes_on_solution(capsys):
    check_repeated_ngram_rate(solution("repeated_ngram_rate"))
    assert capsys.readouterr().out.startswith("✅ TODO 7 repeated_ngram_rate: ")


def test_check_repeated_ngram_rate_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 7"):
        check_repeated_ngram_rate(stub(7))


def test_check_repeated_ngram_rate_catches_counting_first_occurrences():
    buggy = solution("repeated_ngram_rate", replace=[
        ("return 1.0 - len(set(grams)) / len(grams) if grams else 0.0",
         "return sum(grams.count(g) > 1 for g in grams) / len(grams) if grams else 0.0"),
    ])
    fails(check_repeated_ngram_rate, buggy, "first occurrence of an n-gram is not a repeat")


def test_check_repeated_ngram_rate_catches_dividing_by_the_unique_count():
    buggy = solution("repeated_ngram_rate", replace=[
        ("return 1.0 - len(set(grams)) / len(grams) if grams else 0.0",
         "return (len(grams) - len(set(grams))) / len(set(grams)) if grams else 0.0"),
    ])
    fails(check_repeated_ngram_rate, buggy, "not by the number of unique ones")


def test_check_repeated_ngram_rate_catches_returning_distinct_n():
    buggy = solution("repeated_ngram_rate", replace=[("return 1.0 - len(set(grams))",
                                                      "return len(set(grams))")])
    fails(check_repeated_ngram_rate, buggy, "that is distinct-n")


def test_solution_entropy_of_uniform_is_log_v():
    assert float(solution("entropy")(torch.full((7,), 1 / 7))) == pytest.approx(math.log(7), abs=1e-6)
