"""Tests for shared/checks/speculative_decoding.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes. The
mistakes that are textual edits of the solution, and the correct variants each check must accept, are in
tests/catalogue/c17_speculative_decoding.py (run by tests/test_mutation_catalogue.py); the tests here cover
the references and fixtures the checks rely on, and bugs that need more than an edit.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from check_helpers import fails, solution_loader

from shared.checks.speculative_decoding import (
    SIGNIFICANCE,
    _PrefixTarget,
    _target_greedy,
    check_accept_reject,
    check_speculative_generate,
    check_verify,
    chi_square_pvalue,
    reference_expected_tokens,
    reference_speedup,
)

solution = solution_loader("17_speculative_decoding")
LOOP = ("probs_at", "prefill", "draft", "verify", "accept_reject", "speculative_generate")


def test_reference_formulas_match_the_closed_forms():
    for alpha, gamma in ((0.68, 4), (0.5, 1), (0.9, 8)):
        closed = (1 - alpha ** (gamma + 1)) / (1 - alpha)
        assert reference_expected_tokens(alpha, gamma) == pytest.approx(closed)
        assert reference_speedup(alpha, gamma, 0.05) == pytest.approx(closed / (gamma * 0.05 + 1))
    assert reference_expected_tokens(1.0, 5) == 6.0 and reference_expected_tokens(0.0, 3) == 1.0


def test_chi_square_accepts_its_own_samples_and_rejects_a_shifted_law():
    g = torch.Generator().manual_seed(0)
    probs = np.array([0.5, 0.3, 0.15, 0.05])
    draws = torch.multinomial(torch.tensor(probs), 4000, replacement=True, generator=g).numpy()
    counts = np.bincount(draws, minlength=4)
    assert chi_square_pvalue(counts, probs) >= SIGNIFICANCE
    assert chi_square_pvalue(counts, np.array([0.4, 0.3, 0.2, 0.1])) < SIGNIFICANCE
    assert chi_square_pvalue(np.array([5, 0, 1]), np.array([0.5, 0.5, 0.0])) == 0.0  # mass where p = 0


def test_prefix_target_has_gpt_cache_semantics_and_a_varied_greedy_text():
    model = _PrefixTarget(2)
    x = torch.tensor([[1, 4, 2, 6, 3, 0]])
    full, _ = model(x)
    cache = model.new_kv_cache(1)
    a, _ = model(x[:, :4], kv_cache=cache)
    b, _ = model(x[:, 4:], kv_cache=cache)
    assert cache.length == 6 and torch.allclose(full, torch.cat([a, b], 1))
    with pytest.raises(ValueError, match="never written"):
        model(x[:, :1], kv_cache=cache, start_pos=8)
    greedy = _target_greedy(model, torch.tensor([1, 4, 2, 6]), 18)[4:].tolist()
    assert len(set(greedy)) >= 4  # not stuck on one token: an off-by-one cache shows in the tokens


def test_accept_reject_check_reports_the_significance_level_and_rate():
    fns = solution("accept_reject")
    check_accept_reject(fns)


def test_verify_that_recomputes_without_the_cache_is_named(capsys):
    def verify(target, tokens, drafts, cache, temperature):
        seq = torch.cat([tokens, drafts])[None]
        logits, _ = target(seq)
        cache.length = len(seq[0]) - 1
        return torch.softmax(logits[0, len(tokens) - 1:] / max(temperature, 1e-9), -1) if temperature else \
            torch.nn.functional.one_hot(logits[0, len(tokens) - 1:].argmax(-1), logits.size(-1)).float()

    fails(check_verify, verify, "one pass over the gamma + 1 new positions")


def test_loop_that_never_finishes_is_stopped_with_a_hint():
    fns = solution(*LOOP, replace=[("tokens = torch.cat([tokens, drafts[:k], torch.tensor([token])])",
                                    "tokens = torch.cat([tokens, drafts[:k]])")])
    msg = fails(check_speculative_generate, fns["speculative_generate"], "then the new token")
    assert "cache" in msg or "loop does not end" in msg


def test_speedup_table_of_the_solution_has_the_best_gamma_shrinking_with_c():
    speedup = solution("expected_tokens", "speedup")["speedup"]
    best = [max(range(1, 31), key=lambda g, c=c: speedup(0.68, g, c)) for c in (0.01, 0.1, 0.5)]
    assert best[0] > best[1] > best[2] >= 1
    assert math.isclose(speedup(0.8, 3, 0.0), reference_expected_tokens(0.8, 3))
