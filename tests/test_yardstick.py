"""Tests for shared/yardstick.py: n-gram baselines, their cache, the context curve and the report line."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from shared import yardstick
from shared.yardstick import (
    ContextCurve,
    NgramScore,
    context_curve,
    corpus_baselines,
    ngram_baselines,
    report,
    text_baselines,
)

# ---------------------------------------------------------------------------------------------
# n-gram baselines
# ---------------------------------------------------------------------------------------------


def test_add_k_probabilities_match_a_hand_worked_example(monkeypatch):
    monkeypatch.setattr(yardstick, "K_GRID", (0.5,))  # one k, so the choice cannot hide an error
    train = [0, 1] * 10  # "abab…": 20 ids, vocabulary {a, b, c} with c never seen
    val = [0, 1, 0]
    scores = ngram_baselines(train, val, vocab_size=3, orders=(1, 2))
    k = 0.5
    # unigram: C(a) = C(b) = 10 of N = 20; P = (10 + k) / (20 + 3k) for each of the 3 validation ids
    assert scores[1].nats_per_char == pytest.approx(-math.log((10 + k) / (20 + 3 * k)))
    assert scores[1].n_scored == 3
    # bigram: C(ab) = 10, C(a·) = 10; C(ba) = 9, C(b·) = 9; validation scores "ab" then "ba"
    p_ab = (10 + k) / (10 + 3 * k)
    p_ba = (9 + k) / (9 + 3 * k)
    assert scores[2].nats_per_char == pytest.approx(-(math.log(p_ab) + math.log(p_ba)) / 2)
    assert scores[2].n_scored == 2 and scores[2].k == k


def test_the_right_order_predicts_a_deterministic_text_and_lower_orders_do_not():
    period = [0, 0, 1, 1]  # "aabb…": the next id is fixed by the two before it, not by the last one
    train, val = period * 200, period * 20
    scores = ngram_baselines(train, val, vocab_size=2, orders=(1, 2, 3, 4))
    assert scores[1].nats_per_char == pytest.approx(math.log(2), abs=0.01)
    assert scores[2].nats_per_char == pytest.approx(math.log(2), abs=0.01)
    assert scores[3].nats_per_char < 0.01 and scores[4].nats_per_char < 0.01
    assert scores[3].k == yardstick.K_GRID[0]  # a perfect predictor wants the least smoothing


def _markov_text(n: int, seed: int, vocab: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ids = [0]
    for _ in range(n - 1):  # mostly "next id", sometimes a random one: k matters
        ids.append((ids[-1] + 1) % vocab if rng.random() < 0.7 else int(rng.integers(vocab)))
    return np.array(ids)


def test_k_is_chosen_on_the_training_text_never_on_validation():
    train = _markov_text(3000, seed=0)
    a = ngram_baselines(train, _markov_text(500, seed=1), vocab_size=5, orders=(1, 2, 3))
    b = ngram_baselines(train, np.arange(500) % 5, vocab_size=5, orders=(1, 2, 3))
    assert {n: s.k for n, s in a.items()} == {n: s.k for n, s in b.items()}
    assert a[2].nats_per_char != b[2].nats_per_char  # the validation text did change the score


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 0}, "vocab_size=0 must be an int >= 1"),
        ({"orders": ()}, "must be a non-empty sequence"),
        ({"orders": "12"}, "must be a non-empty sequence"),
        ({"orders": (0, 1)}, "each order must be an int in 1..8"),
        ({"orders": (2, 2)}, "must not repeat an order"),
        ({"orders": (3,), "vocab_size": 10**7}, "must stay below 2\\*\\*62"),
        ({"train_ids": [0, 5, 1] * 10}, "every id must be in \\[0, vocab_size=3\\)"),
        ({"train_ids": [[0, 1]] * 10}, "train_ids must be a 1-D sequence"),
        ({"val_ids": [0.5, 1.0]}, "val_ids must hold integer token ids"),
        ({"train_ids": [0, 1] * 5}, "too short for order 2"),
        ({"val_ids": [1]}, "len\\(val_ids\\)=1 must be >= the highest order 2"),
    ],
)
def test_bad_inputs_are_named_with_what_is_allowed(kwargs, message):
    args = {"train_ids": [0, 1, 2] * 10, "val_ids": [0, 1, 2], "vocab_size": 3, "orders": (1, 2)} | kwargs
    with pytest.raises(ValueError, match=message):
        ngram_baselines(**args)


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------

TEXT = "to be or not to be, that is the question\n" * 30


def _forbid_recompute(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the baselines were recomputed instead of read from the cache")

    monkeypatch.setattr(yardstick, "ngram_baselines", fail)


def test_the_cache_is_written_then_reused(tmp_path, monkeypatch):
    first = text_baselines(TEXT, orders=(1, 2, 3), cache_dir=tmp_path)
    (path,) = tmp_path.glob("ngram_baselines_*.json")
    assert json.loads(path.read_text())["key"]["orders"] == [1, 2, 3]
    _forbid_recompute(monkeypatch)
    assert text_baselines(TEXT, orders=(1, 2, 3), cache_dir=tmp_path) == first


def test_another_text_or_split_gets_its_own_cache_entry(tmp_path):
    text_baselines(TEXT, orders=(1, 2), cache_dir=tmp_path)
    text_baselines(TEXT, val_fraction=0.2, orders=(1, 2), cache_dir=tmp_path)
    text_baselines(TEXT.upper(), orders=(1, 2), cache_dir=tmp_path)
    assert len(list(tmp_path.glob("ngram_baselines_*.json"))) == 3


@pytest.mark.parametrize("damage", ["garbage", "tampered value", "other key"])
def test_a_corrupted_or_mismatched_cache_is_recomputed(tmp_path, damage):
    good = text_baselines(TEXT, orders=(1, 2, 3), cache_dir=tmp_path)
    (path,) = tmp_path.glob("ngram_baselines_*.json")
    stored = json.loads(path.read_text())
    if damage == "garbage":
        path.write_text("{not json")
    elif damage == "tampered value":
        stored["scores"][2]["nats_per_char"] = 0.01
        path.write_text(json.dumps(stored))
    else:
        stored["key"]["text_sha256"] = "0" * 64
        path.write_text(json.dumps(stored))
    with pytest.warns(UserWarning, match="is unusable"):
        again = text_baselines(TEXT, orders=(1, 2, 3), cache_dir=tmp_path)
    assert again == good
    assert json.loads(path.read_text())["scores"] == [vars(s) for s in good.values()]  # rewritten


# ---------------------------------------------------------------------------------------------
# The context curve
# ---------------------------------------------------------------------------------------------


class SeesTwo(nn.Module):
    """On ids that count up mod V: uniform until it has seen 2 ids, then (all but) certain of the next."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.scale = nn.Parameter(torch.tensor(100.0))
        self.modes: list[bool] = []

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, None]:
        self.modes.append(self.training)
        B, T = idx.shape
        logits = torch.zeros(B, T, self.vocab)  # (B, T, V)
        sure = self.scale * nn.functional.one_hot((idx + 1) % self.vocab, self.vocab).float()  # (B, T, V)
        logits[:, 1:] = sure[:, 1:]  # position t has seen t + 1 ids
        return logits, None


def test_the_context_curve_of_a_model_with_a_known_loss():
    model = SeesTwo(vocab=4).train()
    val = torch.arange(500) % 4
    curve = context_curve(model, val, block_size=10, n_windows=50, batch_size=16, seed=3)
    assert curve.per_window.shape == (50, 10)
    assert curve.loss[0] == pytest.approx(math.log(4))
    assert np.all(curve.loss[1:] < 1e-6)
    assert curve.at(1) == pytest.approx(math.log(4)) and curve.at(2) < 1e-6
    assert curve.gain(1, 2) == pytest.approx((math.log(4), 0.0), abs=1e-6)
    assert curve.mean == pytest.approx(math.log(4) / 10)
    assert model.modes == [False] * 4 and model.training  # evaluated in eval mode, then put back


def test_the_context_curve_is_seeded():
    model = SeesTwo(vocab=4)
    val = torch.tensor(_markov_text(400, seed=0) % 4)
    a = context_curve(model, val, block_size=8, n_windows=20, seed=1).per_window
    b = context_curve(model, val, block_size=8, n_windows=20, seed=1).per_window
    c = context_curve(model, val, block_size=8, n_windows=20, seed=2).per_window
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_size": 0}, "block_size=0 must be an int >= 1"),
        ({"n_windows": 1.5}, "n_windows=1.5 must be an int >= 1"),
        ({"seed": "0"}, "seed='0' must be an int"),
        ({"val_ids": torch.arange(8)}, "len\\(val_ids\\)=8 must be > block_size=8"),
    ],
)
def test_context_curve_rejects_bad_arguments(kwargs, message):
    args = {"model": SeesTwo(4), "val_ids": torch.arange(100) % 4, "block_size": 8} | kwargs
    with pytest.raises(ValueError, match=message):
        context_curve(**args)


def test_the_gain_needs_a_longer_context_than_the_short_one():
    curve = ContextCurve(np.ones((4, 10)))
    with pytest.raises(ValueError, match="long=3 must be greater than short=3"):
        curve.gain(3, 3)
    with pytest.raises(ValueError, match="long=11 must be an int in 1..block_size=10"):
        curve.gain(3, 11)


# ---------------------------------------------------------------------------------------------
# The report line
# ---------------------------------------------------------------------------------------------

BASELINES = {
    n: NgramScore(n, v, 0.1, 100)
    for n, v in zip(range(1, 6), (3.3, 2.49, 2.05, 1.76, 1.65), strict=True)
}


def test_the_report_line_states_baselines_trigram_and_gain():
    per_window = np.full((4, 16), 2.0)
    per_window[:, 2] = [2.3, 2.1, 2.2, 2.2]  # 3 characters of context: mean 2.2, paired gains 0.3 0.1 0.2 0.2
    line = report("tiny", 2.0712, ContextCurve(per_window), BASELINES)
    assert line == (
        "tiny: val 2.07 nats/char | n-gram 1:3.30 2:2.49 3:2.05 4:1.76 5:1.65 | beats 3-gram: no | "
        "context gain beyond 3 chars: 0.20 ± 0.04 nats (loss with 3 chars 2.20 → 2.00 with ≥ 8)"
    )
    assert "beats 3-gram: yes" in report("better", 1.9, ContextCurve(per_window), BASELINES)


def test_the_report_needs_a_trigram_a_finite_loss_and_eight_positions():
    curve = ContextCurve(np.ones((4, 16)))
    with pytest.raises(ValueError, match="needs order 3"):
        report("m", 2.0, curve, {1: BASELINES[1]})
    with pytest.raises(ValueError, match="val_loss=nan must be a finite number"):
        report("m", float("nan"), curve, BASELINES)
    with pytest.raises(ValueError, match="block_size=4 must be >= 8"):
        report("m", 2.0, ContextCurve(np.ones((4, 4))), BASELINES)


@pytest.mark.slow
def test_the_corpus_baselines_land_where_measured(tmp_path):
    scores = corpus_baselines(cache_dir=tmp_path)  # computed here, not read from the user's cache
    nats = [scores[n].nats_per_char for n in (1, 2, 3, 4, 5)]
    assert nats == sorted(nats, reverse=True)
    assert 3.2 < nats[0] < 3.4 and 2.4 < nats[1] < 2.6 and 1.9 < nats[2] < 2.2 and 1.5 < nats[4] < 1.8
    assert scores[3].n_scored == 478_277


def test_fit_ngram_scores_like_the_baselines_and_checks_its_input():
    from shared.yardstick import fit_ngram, ngram_baselines

    rng = np.random.default_rng(0)
    train, val = rng.integers(0, 5, 3000), rng.integers(0, 5, 500)
    scores = ngram_baselines(train, val, 5, orders=(1, 2, 3))
    for n in (1, 2, 3):
        model = fit_ngram(train, 5, n, scores[n].k)
        per_position = model.nats(val)
        assert per_position.shape == (len(val) - n + 1,)
        assert per_position.mean() == pytest.approx(scores[n].nats_per_char, rel=1e-12)
    assert fit_ngram([0, 1, 0, 1, 0, 1], 2, 2, 0.01).nats([0, 1])[0] < 0.05  # a seen bigram is likely
    with pytest.raises(ValueError, match="k=0 must be a finite number > 0"):
        fit_ngram(train, 5, 2, 0)
    with pytest.raises(ValueError, match=r"every id must be in \[0, vocab_size=5\)"):
        fit_ngram(train, 5, 2, 0.1).nats([7, 1])
