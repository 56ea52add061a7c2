"""Checks for project 07 (sampling): one check per TODO of ``07_entropy_plotter/solution.ipynb``.

Each check compares the learner's function with a PyTorch reference: ``torch.softmax(logits / T)``,
``torch.distributions.Categorical(probs).entropy()``, ``torch.topk`` and a sort/cumsum nucleus filter.
When the answer is wrong, the check recomputes the answer of each well-known bug (temperature multiplied
instead of divided, entropy in bits, top-p that drops the crossing token or accumulates mass in vocabulary
order, top-k that keeps ties, …) and names the one that matches.

Conventions:

* logits are (..., V); filters return logits of the same shape with removed tokens set to -inf;
* top-k keeps exactly k tokens, the ones ``torch.topk`` returns (Fan et al. 2018, §5.4);
* top-p keeps the smallest set of most likely tokens whose probability mass reaches p, the token that
  crosses p included (Holtzman et al. 2020, "The Curious Case of Neural Text Degeneration", §3.1);
  a token is kept when the mass of the tokens more likely than it is still < p;
* the sampler applies temperature, then top-k, then top-p, then samples with a ``torch.Generator``;
  temperature 0 means greedy (argmax);
* distinct-n (Li et al. 2016, §4.3) pools the n-grams of several sequences: unique / total;
  the repeated n-gram rate of one sequence is the seq-rep-n of Welleck et al. 2019 (§5):
  the fraction of its n-grams that already occurred earlier in it, 1 − unique / total.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from shared.checks import CheckFailed, assert_close, call, expect, expect_equal, fmt, learner_check, within
from shared.checks.compare import diagnose, expect_tensors, gen

__all__ = [
    "reference_top_k_filter",
    "reference_top_p_filter",
    "reference_sampling_probs",
    "reference_distinct_n",
    "reference_repeated_ngram_rate",
    "check_temperature_softmax",
    "check_entropy",
    "check_top_k_filter",
    "check_top_p_filter",
    "check_sample_next",
    "check_distinct_n",
    "check_repeated_ngram_rate",
]

NEG_INF = float("-inf")


def _logits(*shape: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(*shape, generator=gen(seed)) * scale


# ----------------------------------------------------------------------------------------------- references


def reference_top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k entries ``torch.topk`` picks in each row; the rest become -inf. (..., V) -> (..., V)."""
    k = min(k, logits.size(-1))
    idx = torch.topk(logits, k, dim=-1).indices  # (..., k)
    keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, idx, True)  # (..., V)
    return logits.masked_fill(~keep, NEG_INF)


def reference_top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter by sort + cumsum; a token is kept while the mass before it is < p
    (crossing token kept)."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (..., V)
    probs = torch.softmax(sorted_logits, dim=-1)  # (..., V)
    mass_before = probs.cumsum(-1) - probs  # (..., V)
    drop_sorted = mass_before >= p  # (..., V)
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # (..., V) back in vocabulary order
    return logits.masked_fill(drop, NEG_INF)


def reference_sampling_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The distribution the sampler draws from: temperature, then top-k, then top-p, then softmax (T=0:
    one-hot argmax)."""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).to(logits.dtype)
    z = logits / temperature
    if top_k is not None:
        z = reference_top_k_filter(z, top_k)
    if top_p is not None:
        z = reference_top_p_filter(z, top_p)
    return torch.softmax(z, dim=-1)


def _ngrams(tokens: Sequence[Any], n: int) -> list[tuple[Any, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def reference_distinct_n(sequences: Sequence[Sequence[Any]], n: int) -> float:
    """Unique n-grams over all sequences / all n-grams (none crossing a sequence boundary);
    0.0 if there are none."""
    grams = [g for seq in sequences for g in _ngrams(seq, n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def reference_repeated_ngram_rate(tokens: Sequence[Any], n: int) -> float:
    """Fraction of the n-grams of one sequence that occurred earlier in it; 0.0 if it has none."""
    grams = _ngrams(tokens, n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def _call(fn: Callable[..., Any], *args: Any, crashes: tuple[tuple[str, str], ...] = (),
          **kwargs: Any) -> Any:
    """``call(fn, *args, **kwargs)``; a crash gets the hint of the first ``(text in the error, hint)`` pair
    that matches."""
    try:
        return call(fn, *args, **kwargs)
    except CheckFailed as err:
        text = str(err)
        hint = next((h for key, h in crashes if key in text), None)
        if hint is None:
            raise
        raise CheckFailed(f"{text}\n   hint: {hint}") from None


def _unchanged(before: torch.Tensor, after: Any, what: str) -> None:
    """Fail if the learner's function changed its input tensor in place."""
    expect(torch.equal(before, after), f"{what} changed the caller's logits in place",
           hint="an in-place op (logits /= T, masked_fill_, ...) writes into the caller's tensor: use the "
                "out-of-place form (logits / T, masked_fill) and return a new tensor")


def _kept(filtered: Any, what: str) -> torch.Tensor:
    expect(isinstance(filtered, torch.Tensor),
           f"{what} must return a tensor of logits, got {type(filtered).__name__}",
           hint="return logits.masked_fill(~keep, float('-inf'))")
    return filtered != NEG_INF


# ----------------------------------------------------------------------------------------------- TODO 1

MULTIPLIED = ("the logits were multiplied by T: divide them, softmax(logits / T), so T "
              "> 1 flattens and T < 1 sharpens")


@learner_check(1, "temperature_softmax")
def check_temperature_softmax(temperature_softmax: Callable[[torch.Tensor, float], torch.Tensor]) -> str:
    logits = _logits(4, 11, seed=1)  # (B, V)
    worst = 0.0
    for T in (1.0, 0.5, 2.5, 0.1):
        given = logits.clone()
        got = call(temperature_softmax, given, T)
        _unchanged(logits, given, f"temperature_softmax(logits, T={T})")
        expected = torch.softmax(logits / T, dim=-1)
        hint = diagnose(
            got,
            [
                (torch.softmax(logits * T, dim=-1), MULTIPLIED),
                (torch.log_softmax(logits / T, dim=-1),
                 "these are log-probabilities (log_softmax): return the probabilities, torch.softmax"),
                (torch.softmax(logits, dim=-1) ** (1 / T),
                 "p ** (1 / T) must be renormalised so that each row sums to 1; simpler: "
                 "softmax(logits / T)"),
                (torch.softmax(logits / T, dim=0),
                 "softmax over the wrong dim: normalise over the vocabulary, dim=-1"),
                (torch.softmax(logits, dim=-1), "the temperature was ignored: divide the logits by T first"),
            ],
            "probs = softmax(logits / T) over the last dimension; each row sums to 1",
        )
        worst = max(worst, assert_close(got, expected, f"temperature_softmax(logits, T={T})", hint=hint))
    logits3 = _logits(2, 3, 11, seed=11)  # (B, T, V): probabilities over the last dim, whatever the rank
    got = call(temperature_softmax, logits3, 0.7)
    assert_close(got, torch.softmax(logits3 / 0.7, dim=-1), "temperature_softmax on (2, 3, 11) logits, T=0.7",
                 hint=diagnose(got, [(torch.softmax(logits3 / 0.7, dim=1),
                                      "softmax over the LAST dim (dim=-1): logits are (..., V), and dim=1 is "
                                      "the vocabulary only for 2-D logits")],
                               "probs = softmax(logits / T) over the last dimension"))
    big = torch.tensor([[1000.0, 999.0, 990.0], [-1000.0, -1001.0, -1010.0]])  # (2, 3)
    got = call(temperature_softmax, big, 0.5)
    assert_close(got, torch.softmax(big / 0.5, dim=-1), "temperature_softmax on logits near ±1000, T=0.5",
                 hint="exp(1000) overflows to inf: subtract each row's max "
                      "before exp (torch.softmax does this)")
    return (
        f"matches torch.softmax(logits / T, dim=-1) for T = 1, 0.5, 2.5, 0.1 (4 rows × 11 tokens), "
        f"{within(worst, 1e-5)}; stable for logits near ±1000"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


@learner_check(2, "entropy")
def check_entropy(entropy: Callable[[torch.Tensor], torch.Tensor]) -> str:
    probs = torch.softmax(_logits(5, 9, seed=2), dim=-1)  # (B, V)
    probs[1, 3:] = 0.0  # a filtered distribution: six exact zeros
    probs[1] /= probs[1].sum()
    probs[2] = torch.nn.functional.one_hot(torch.tensor(4), 9).float()  # one-hot: entropy 0
    probs[3] = 1.0 / 9  # uniform: entropy log 9
    expected = torch.distributions.Categorical(probs=probs).entropy()  # (B,), nats
    given = probs.clone()
    got = call(entropy, given)
    expect(torch.equal(given, probs), "entropy changed the caller's probs in place",
           hint="do not write into probs (e.g. probs[probs == 0] = ...): it is the caller's tensor; use "
                "torch.where(probs > 0, probs * probs.log(), 0) or torch.special.xlogy(probs, probs)")
    plogp = probs * probs.log()  # NaN where p = 0 (0 · -inf)
    hint = diagnose(
        got,
        [
            (expected / math.log(2),
             "this is the entropy in bits (log2): the expected unit is nats (natural log); "
             "bits = nats / ln 2"),
            (-plogp.sum(-1), "0 · log 0 gave NaN: the limit p·log p -> 0 as p -> 0, so treat zero "
                             "probabilities as contributing 0 (e.g. torch.where(p > 0, p * p.log(), 0))"),
            (-expected, "the sign is flipped: H = -Σ p log p is >= 0"),
            (expected / math.log(10),
             "this is the entropy in log10 units: the expected unit is nats (natural log, torch.log)"),
            (expected / probs.size(-1), "sum the terms over the vocabulary; yours took their mean"),
        ],
        "H(p) = -Σ_i p_i ln p_i over the last dimension, with 0 · ln 0 = 0",
    )
    if isinstance(got, torch.Tensor) and bool(torch.isnan(got).any()):
        hint = ("NaN in the result: 0 · log 0 is NaN in floating point. The limit p·log p -> 0 as p -> 0, so "
                "treat zero probabilities as contributing 0 (e.g. torch.where(p > 0, p * p.log(), 0))")
    if isinstance(got, torch.Tensor) and got.shape != expected.shape:
        hint = (f"one entropy per distribution: sum over the last dimension only (dim=-1, no keepdim), shape "
                f"{tuple(expected.shape)}")
    err = assert_close(got, expected, "entropy of 5 distributions over 9 tokens (one "
                       "with zeros, a one-hot, a uniform)", hint=hint)
    return (
        "matches torch.distributions.Categorical(probs).entropy() in nats, including exact zeros (0·log 0 = "
        f"0), a one-hot (0) and a uniform (log 9 = {math.log(9):.3f}); {within(err, 1e-5)}"
    )


# ----------------------------------------------------------------------------------------------- TODO 3

TOP_K_CRASHES = (
    ("selected index k out of range",
     "k may exceed the vocabulary size V: clamp it first, k = min(k, logits.size(-1)), and keep every token"),
    ("Dimension out of range", "logits are (..., V), 1-D rows included: use dim=-1 and logits.size(-1)"),
)


@learner_check(3, "top_k_filter")
def check_top_k_filter(top_k_filter: Callable[[torch.Tensor, int], torch.Tensor]) -> str:
    logits = _logits(3, 12, seed=3)  # (B, V), no ties
    for k in (1, 4, 11, 12, 20):
        given = logits.clone()
        got = _call(top_k_filter, given, k, crashes=TOP_K_CRASHES)
        _unchanged(logits, given, f"top_k_filter(logits, k={k})")
        expected = reference_top_k_filter(logits, k)
        kept = _kept(got, f"top_k_filter(logits, k={k})")
        if bool(((got == 0) & (expected == NEG_INF)).any()):
            hint = ("the removed tokens must become -inf, not 0: a logit of 0 still has probability "
                    "exp(0) / Σ exp after the softmax")
        elif bool((kept.sum(-1) < min(k, 12)).all()):
            hint = ("every row kept fewer than k tokens: the k-th largest logit itself was removed (keep "
                    "logits >= the k-th largest, not >), or torch.topk was asked for fewer than k")
        elif k <= logits.size(0) and any(
            torch.equal(kept, torch.zeros_like(kept).scatter(d, torch.topk(logits, k, dim=0).indices, True))
            for d in (0, -1)
        ):
            hint = "you picked the top k along the wrong dim: torch.topk(logits, k, dim=-1), per row"
        else:
            hint = "keep exactly k tokens per row (all of them when k >= V)"
        expect_equal(
            kept.sum(-1).tolist(), [min(k, 12)] * 3, f"tokens kept per row by top_k_filter(logits, k={k})",
            hint=hint,
        )
        expect_equal(kept, expected != NEG_INF,
                     f"which tokens top_k_filter(logits, k={k}) keeps, vs torch.topk",
                     hint="keep the k largest logits of each row (dim=-1), as "
                          "torch.topk(logits, k, dim=-1) picks them")
        assert_close(got[kept], logits[kept], f"kept logits for k={k}",
                     hint="kept logits must be returned unchanged; only the removed ones become -inf")
    row = _logits(12, seed=12)  # (V,): one row, no batch dimension
    got = _call(top_k_filter, row, 3, crashes=TOP_K_CRASHES)
    expect_equal(_kept(got, "top_k_filter(row, k=3)"), reference_top_k_filter(row, 3) != NEG_INF,
                 "which tokens top_k_filter keeps on a 1-D row of 12 logits, k=3",
                 hint="logits are (..., V): work on the last dim (dim=-1, logits.size(-1)) whatever the rank")
    # (2, 5) ties at the k-th value
    tied = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0], [5.0, 5.0, 5.0, 4.0, 0.0]])
    got = call(top_k_filter, tied, 2)
    kept = _kept(got, "top_k_filter(tied, k=2)")
    counts = kept.sum(-1).tolist()
    expect_equal(counts, [2, 2], "tokens kept per row when several logits tie with the 2nd largest",
                 hint="ties at the k-th value must not add tokens: keep exactly k, e.g. scatter the indices "
                      "of torch.topk into a boolean mask instead of comparing logits >= the k-th value")
    expect(bool(kept[0, 0]) and not bool(kept[0, 4]) and not bool(kept[1, 3:].any()),
           "with tied logits and k=2 the largest must be kept and the smallest removed",
           hint="keep the k largest logits of each row")
    return ("keeps exactly the tokens torch.topk picks for k = 1, 4, 11, 12 and 20 > V (3 rows × 12 tokens), "
            "kept logits unchanged, the rest -inf; exactly k kept when logits tie at the k-th value")


# ----------------------------------------------------------------------------------------------- TODO 4


def _top_p_cases() -> list[tuple[str, torch.Tensor, float]]:
    peaked = torch.log(torch.tensor([[0.05, 0.6, 0.1, 0.25], [0.3, 0.3001, 0.2, 0.1999]]))  # (2, 4)
    return [
        ("random logits, p=0.9", _logits(4, 16, seed=4), 0.9),
        ("random logits, p=0.5", _logits(4, 16, seed=5), 0.5),
        ("one token holds 0.6 of the mass, p=0.3", peaked, 0.3),
        ("p=1.0 keeps everything", _logits(2, 10, seed=6), 1.0),
        ("the two top tokens reach p=0.75 exactly",
         torch.log(torch.tensor([[0.5, 0.25, 0.125, 0.0625, 0.0625], [0.25, 0.5, 0.0625, 0.125, 0.0625]])),
         0.75),
    ]


def _top_p_hint(kept: torch.Tensor, logits: torch.Tensor, p: float) -> str:
    """The hint for a top-p filter that keeps ``kept`` instead of the reference's tokens."""
    probs = torch.softmax(logits, dim=-1)
    s, order = torch.sort(probs, dim=-1, descending=True)
    before = s.cumsum(-1) - s

    def back(drop_sorted: torch.Tensor) -> torch.Tensor:
        return drop_sorted.scatter(-1, order, drop_sorted)

    asc, order_asc = torch.sort(probs, dim=-1)
    drop_asc = asc.cumsum(-1) - asc >= p
    sorted_logits = torch.sort(logits, dim=-1, descending=True)[0]
    s0 = torch.softmax(sorted_logits, dim=0)
    unsorted = probs.cumsum(-1) - probs >= p
    candidates = [
        (~back(s.cumsum(-1) > p),
         "the token that crosses p was dropped: keep a token while the mass BEFORE it is < p "
         "(cumsum - probs < p), so the kept set's mass reaches p; with p=0.3 and a top token "
         "of 0.6 your filter keeps nothing"),
        (~unsorted, "the mass was accumulated in vocabulary order: sort the probabilities in descending "
                    "order first (torch.sort), cumsum there, then scatter the decision back with the sort "
                    "indices"),
        (~(probs.cumsum(-1) > p), "the mass was accumulated in vocabulary order: sort the probabilities in "
                                  "descending order first (torch.sort), cumsum there, then scatter the "
                                  "decision back with the sort indices"),
        (~back(before > p),
         "a token whose mass before it is exactly p is not needed (the kept set already reaches p): drop "
         "it when mass_before >= p, not > p"),
        (~(before >= p).gather(-1, order),
         "gather with the sort indices permutes the decision a second time; scatter undoes the sort: "
         "drop_sorted.scatter(-1, order, drop_sorted)"),
        (~(before >= p),
         "the decision is still in sorted order: scatter it back to vocabulary order with the sort indices"),
        (~drop_asc.scatter(-1, order_asc, drop_asc),
         "sort in DESCENDING order (descending=True): the nucleus is made of the MOST likely tokens"),
        (~back(s0.cumsum(-1) - s0 >= p),
         "softmax over the vocabulary, dim=-1, not over the rows"),
    ]
    if p != 0.9:
        candidates.append((reference_top_p_filter(logits, 0.9) != NEG_INF,
                           "use the p argument; your filter keeps the tokens of p=0.9"))
    for candidate, hint in candidates:
        if torch.equal(kept, candidate):
            return hint
    if bool((kept.sum(-1) == 0).any()):
        return "a row kept no token at all: the most likely token must always survive"
    return "sort descending, cumsum, keep while the mass before a token is < p, scatter back"


@learner_check(4, "top_p_filter")
def check_top_p_filter(top_p_filter: Callable[[torch.Tensor, float], torch.Tensor]) -> str:
    for name, logits, p in _top_p_cases():
        given = logits.clone()
        got = call(top_p_filter, given, p)
        _unchanged(logits, given, f"top_p_filter(logits, p={p})")
        kept = _kept(got, f"top_p_filter(logits, p={p})")
        expected = reference_top_p_filter(logits, p) != NEG_INF  # (B, V)
        if p == 1.0:  # float cumsum may round the tail; every token with mass before it < 1 is kept
            expected = torch.ones_like(expected)
        if not torch.equal(kept, expected):
            hint = _top_p_hint(kept, logits, p)
            raise CheckFailed(
                f"top_p_filter keeps the wrong tokens ({name})\n   expected: {fmt(expected)}\n"
                f"   got:      {fmt(kept)}\n   hint: {hint}"
            )
        assert_close(got[kept], logits[kept], f"kept logits ({name})",
                     hint="kept logits must be returned unchanged; only the removed ones become -inf")
    logits = _logits(64, 30, seed=7)
    probs = torch.softmax(logits, dim=-1)
    kept = call(top_p_filter, logits, 0.8) != NEG_INF
    mass = (probs * kept).sum(-1)  # (B,)
    smallest_kept = probs.masked_fill(~kept, 2.0).amin(-1)  # (B,)
    expect(bool((mass >= 0.8).all()) and bool((mass - smallest_kept < 0.8).all()),
           "on 64 random rows with p=0.8 the kept set must reach 0.8 and lose "
           "it without its least likely token",
           hint="keep the smallest set of most likely tokens whose mass reaches p")
    return ("keeps the same tokens as a sort/cumsum reference for p = 0.9, 0.5, 0.3 (a 0.6 token alone) and "
            "1.0; on 64 rows at p=0.8 the kept mass reaches p and is the "
            "smallest such set (crossing token kept)")


# ----------------------------------------------------------------------------------------------- TODO 5


def _pair(result: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    message = f"{what} must return a tuple (ids, probs) of two tensors; got {fmt(result, 120)}"
    hint = "end with `return ids, probs`: the sampled ids (B,) and the distribution (B, V) they came from"
    return expect_tensors(result, 2, message, hint)  # type: ignore[return-value]


def _chi_square(counts: torch.Tensor, probs: torch.Tensor) -> tuple[float, int]:
    """Pearson's chi-square statistic over the tokens with probability > 0, and its degrees of freedom."""
    n = counts.sum()
    support = probs > 0
    expected = probs[support] * n
    stat = float(((counts[support] - expected) ** 2 / expected).sum())
    return stat, int(support.sum()) - 1


def _sampling_hint(probs: torch.Tensor, logits: torch.Tensor, T: float, k: int | None,
                   p: float | None) -> str:
    """The hint for a sampler whose distribution ``probs`` is not the reference's."""
    expected = reference_sampling_probs(logits, T, k, p)
    V = logits.size(-1)
    return diagnose(
        probs,
        [
            (reference_sampling_probs(logits * T * T, T, k, p), MULTIPLIED),
            (reference_sampling_probs(logits / T, T, k, p) if T != 1.0 else expected,
             "the temperature was applied twice: z = logits / T, then softmax(z) (temperature_softmax(z, "
             "1.0)), not temperature_softmax(z, T)"),
            (torch.softmax(reference_top_k_filter(reference_top_p_filter(logits / T, p or 1.0), k or V), -1),
             "top-p ran before top-k: apply top-k first, then top-p on what is left"),
            (torch.softmax(reference_top_p_filter(reference_top_k_filter(logits, k or V), p or 1.0) / T, -1),
             "the filters ran before the temperature: apply temperature first, then top-k, then top-p "
             "(top-p depends on T, so the order matters)"),
            (reference_sampling_probs(logits, T),
             "the filters were not applied: temperature, then top-k, then top-p"),
        ],
        "logits / T -> top_k_filter -> top_p_filter -> softmax",
    )


@learner_check(5, "sample_next")
def check_sample_next(sample_next: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    logits = _logits(6, 20, seed=8)  # (B, V), no ties
    greedy = logits.argmax(-1)
    greedy_hint = "temperature 0 means greedy: return logits.argmax(-1) (do not divide by 0)"
    try:
        ids, probs = _pair(call(sample_next, logits, 0.0, generator=gen(0)), "sample_next")
    except CheckFailed as err:
        if "hint:" in str(err):
            raise
        raise CheckFailed(f"with temperature=0: {err}\n   hint: {greedy_hint}") from None
    expect_equal(ids.tolist(), greedy.tolist(), "sample_next with temperature=0 (greedy)",
                 hint=greedy_hint)
    assert_close(probs, reference_sampling_probs(logits, 0.0), "probs at temperature=0",
                 hint="at temperature 0 the distribution is one-hot at the argmax")
    for seed in range(5):
        ids, _ = _pair(call(sample_next, logits, 1.0, top_k=1, generator=gen(seed)), "sample_next")
        expect_equal(tuple(ids.shape), tuple(greedy.shape), "shape of the sampled ids (6 rows, top_k=1)",
                     hint="one id per row, shape (B,): torch.multinomial returns (B, 1), so squeeze(-1) it")
        expect_equal(ids.tolist(), greedy.tolist(), f"sample_next with top_k=1 (generator seed {seed})",
                     hint="with top_k=1 only the argmax survives the filter, so "
                          "every sample must be the argmax")
        given = logits.clone()
        ids, _ = _pair(call(sample_next, given, 1e-3, generator=gen(seed)), "sample_next")
        _unchanged(logits, given, "sample_next(logits, temperature=1e-3)")
        expect_equal(ids.tolist(), greedy.tolist(),
                     f"sample_next with temperature=1e-3 (generator seed {seed})",
                     hint="a tiny temperature sharpens softmax(logits / T) towards one-hot at the argmax")
    worst = 0.0
    for T, k, p in ((1.0, None, None), (0.7, 5, None), (1.5, None, 0.8), (0.8, 8, 0.7)):
        _, probs = _pair(call(sample_next, logits, T, top_k=k, top_p=p, generator=gen(1)), "sample_next")
        expected = reference_sampling_probs(logits, T, k, p)
        hint = _sampling_hint(probs, logits, T, k, p)
        worst = max(worst, assert_close(probs, expected, f"probs for temperature={T}, top_k={k}, top_p={p}",
                                        hint=hint))
    # empirical frequencies: one row repeated N times, fixed generator seed
    N, T, k, p = 40_000, 1.2, 6, 0.9
    row = logits[:1].expand(N, -1)  # (N, V)
    ids, probs = _pair(call(sample_next, row, T, top_k=k, top_p=p, generator=gen(123)), "sample_next")
    expect(ids.shape == (N,), f"sample_next must return ids of shape (B,) = ({N},), got {tuple(ids.shape)}",
           hint="one sampled id per row: torch.multinomial(probs, 1, generator=generator).squeeze(-1)")
    target = reference_sampling_probs(logits[:1], T, k, p)[0]  # (V,)
    assert_close(probs[:1], target[None], f"probs for temperature={T}, top_k={k}, top_p={p}",
                 hint=_sampling_hint(probs[:1], logits[:1], T, k, p))
    counts = torch.bincount(ids.long(), minlength=logits.size(-1)).float()  # (V,)
    outside = int(counts[target == 0].sum())
    expect(outside == 0, f"{outside} of {N} samples are tokens the filters removed",
           hint="sample from the FILTERED distribution (after top-k and top-p), not from the raw softmax")
    stat, dof = _chi_square(counts, target)
    bound = dof + 6 * math.sqrt(2 * dof)  # mean + 6 standard deviations of a chi-square with dof degrees
    expect(stat < bound, f"sample frequencies do not follow the filtered distribution: chi-square {stat:.1f} "
                         f"with {dof} degrees of freedom (bound {bound:.1f})",
           hint="draw with torch.multinomial(probs, 1, generator=generator) from the filtered probs")
    again, _ = _pair(call(sample_next, logits, 1.0, generator=gen(7)), "sample_next")
    again2, _ = _pair(call(sample_next, logits, 1.0, generator=gen(7)), "sample_next")
    many = [call(sample_next, logits, 1.0, generator=gen(7))[0] for _ in range(3)]
    torch.manual_seed(0)
    a, _ = _pair(call(sample_next, row[:200], 1.0, generator=gen(9)), "sample_next")
    torch.manual_seed(1)
    b, _ = _pair(call(sample_next, row[:200], 1.0, generator=gen(9)), "sample_next")
    expect(torch.equal(again, again2) and all(torch.equal(again, m) for m in many) and torch.equal(a, b),
           "two calls with generators seeded alike gave different samples",
           hint="pass generator=generator to torch.multinomial so that a seeded "
                "generator makes samples reproducible")
    other, _ = _pair(call(sample_next, row[:200], 1.0, generator=gen(10)), "sample_next")
    expect(not torch.equal(a, other),
           "generators seeded 9 and 10 gave the same 200 samples: the samples ignore the generator you pass",
           hint="sample with the generator argument, torch.multinomial(probs, 1, generator=generator); do "
                "not make a generator of your own")
    return (
        "T=0, top_k=1 and T=1e-3 all give the argmax; the sampling distribution matches temperature -> "
        f"top-k -> top-p -> softmax for 4 settings ({within(worst, 1e-5)}); {N:,} samples at T={T}, "
        f"k={k}, p={p}: none "
        f"outside the filtered set, chi-square with {dof} dof < {bound:.1f}; seeded generators "
        "reproduce"
    )


# ----------------------------------------------------------------------------------------------- TODO 6

NGRAM_CRASHES = (
    ("unhashable type", "a list slice cannot go into a set: make each n-gram a tuple, tuple(seq[i : i + n])"),
    ("division by zero",
     "with no n-gram at all (every sequence shorter than n) return 0.0 instead of dividing by zero"),
)
OFF_BY_ONE_HINT = ("off by one: a sequence of length L has L - n + 1 n-grams, "
                   "range(len(seq) - n + 1); yours misses the last one")


def _ratio(top: int, bottom: int) -> float:
    return top / bottom if bottom else 0.0


def _pooled(sequences: Sequence[Sequence[Any]], n: int, short: int = 0) -> list[tuple[Any, ...]]:
    """The n-grams of every sequence (``short=1``: without the last one of each)."""
    return [g for seq in sequences for g in _ngrams(seq, n)[: len(_ngrams(seq, n)) - short]]


# (what a known bug returns, its hint): the bugs of distinct_n, then of repeated_ngram_rate
DISTINCT_BUGS: list[tuple[Callable[..., float], str]] = [
    (lambda seqs, n: _ratio(len(set(_pooled(seqs, n))), len(set(_pooled(seqs, n)))),
     "the denominator is the total number of n-grams, not the number of unique ones"),
    (lambda seqs, n: reference_distinct_n([[t for seq in seqs for t in seq]], n),
     "n-grams must not cross from one sequence into the next: count each sequence's n-grams separately, "
     "then pool them"),
    (lambda seqs, n: _ratio(len(set(_pooled(seqs, n))),
                            sum(len(seq) for seq in seqs) * bool(_pooled(seqs, n))),
     "divide by the number of n-grams (sum of len(seq) - n + 1), not the number of tokens"),
    (lambda seqs, n: _ratio(len(set(_pooled(seqs, n, short=1))), len(_pooled(seqs, n, short=1))),
     OFF_BY_ONE_HINT),
    (lambda seqs, n: (sum(reference_distinct_n([seq], n) for seq in seqs if len(seq) >= n)
                      / max(1, sum(len(seq) >= n for seq in seqs))),
     "pool the n-grams of all sequences, then divide once: yours averaged the per-sequence ratios"),
    (lambda seqs, n: len(set(_pooled(seqs, n))) // len(_pooled(seqs, n)) if _pooled(seqs, n) else 0.0,
     "integer division: use /, not //, so that the ratio is a float"),
    (lambda seqs, n: reference_distinct_n(seqs, 2),
     "use the argument n; yours counted bigrams whatever n is"),
]
REPEAT_BUGS: list[tuple[Callable[..., float], str]] = [
    (lambda t, n: 1 - len(set(_ngrams(t, n))) // len(_ngrams(t, n)) if _ngrams(t, n) else 0.0,
     "integer division: use /, not //, so that unique / total is a float"),
    (lambda t, n: reference_repeated_ngram_rate(t[:-1], n), OFF_BY_ONE_HINT),
    (lambda t, n: _ratio(sum(_ngrams(t, n).count(g) > 1 for g in _ngrams(t, n)), len(_ngrams(t, n))),
     "the first occurrence of an n-gram is not a repeat: count only the n-grams seen EARLIER in the "
     "sequence (1 - unique / total)"),
    (lambda t, n: _ratio(len(_ngrams(t, n)) - len(set(_ngrams(t, n))), len(set(_ngrams(t, n)))),
     "divide by the total number of n-grams, not by the number of unique ones"),
    (lambda t, n: reference_distinct_n([t], n),
     "that is distinct-n (unique / total); the repeated rate is its complement, 1 - unique / total"),
]


def _ngram_diagnosis(fn: Callable[..., Any], cases: list[tuple[Any, int]],
                     bugs: list[tuple[Callable[..., float], str]], default: str) -> str:
    """The hints of the known bugs whose answers equal the learner's on EVERY case (several: joined by OR)."""
    answers = []
    for args in cases:
        try:
            answers.append(fn(*args))
        except Exception:  # noqa: BLE001 - a crash on another case only means "no match"
            answers.append(None)
    hints = [
        hint for bug, hint in bugs
        if all(isinstance(a, (int, float)) and abs(float(a) - bug(*args)) < 1e-9
               for a, args in zip(answers, cases, strict=True))
    ]
    return " OR ".join(hints) if hints else default


@learner_check(6, "distinct_n")
def check_distinct_n(distinct_n: Callable[[Sequence[Sequence[Any]], int], float]) -> str:
    cases = [
        ([[1, 2, 1, 2, 1]], 1, "one sequence, unigrams"),
        ([[1, 2, 1, 2, 1]], 2, "one sequence, bigrams"),
        ([[1, 2, 3], [3, 1, 2]], 2, "two sequences: the bigram (3, 3) across the boundary must not count"),
        ([[1, 2, 3], [1, 2, 3]], 3, "the same sequence twice"),
        (["to be or not to be"], 3, "a string of characters"),
        ([[1, 2], [5]], 3, "no sequence is long enough: 0.0"),
    ]
    for seqs, n, name in cases:
        got = _call(distinct_n, seqs, n, crashes=NGRAM_CRASHES)
        expected = reference_distinct_n(seqs, n)
        if not isinstance(got, (int, float)) or abs(float(got) - expected) > 1e-9:
            hint = _ngram_diagnosis(distinct_n, [(c[0], c[1]) for c in cases], DISTINCT_BUGS,
                                    "unique n-grams over all sequences / all n-grams")
            raise CheckFailed(
                f"distinct_n({fmt(seqs, 80)}, n={n}) ({name})\n   expected: {expected!r}\n   got:      "
                f"{got!r}\n   hint: {hint}"
            )
    return ("unique n-grams / all n-grams, pooled over sequences without crossing their boundaries, on 6 "
            "cases (ints and a string; too-short sequences give 0.0)")


# ----------------------------------------------------------------------------------------------- TODO 7


@learner_check(7, "repeated_ngram_rate")
def check_repeated_ngram_rate(repeated_ngram_rate: Callable[[Sequence[Any], int], float]) -> str:
    cases = [
        ("abcabcabc", 3, "a loop of period 3"),
        ("abcdefg", 2, "no repeats"),
        ("aaaaa", 1, "one token repeated"),
        ([7, 8, 7, 8, 9, 7, 8], 2, "ints"),
        ("ab", 3, "shorter than n: 0.0"),
    ]
    for tokens, n, name in cases:
        got = _call(repeated_ngram_rate, tokens, n, crashes=NGRAM_CRASHES)
        expected = reference_repeated_ngram_rate(tokens, n)
        if not isinstance(got, (int, float)) or abs(float(got) - expected) > 1e-9:
            hint = _ngram_diagnosis(repeated_ngram_rate, [(c[0], c[1]) for c in cases], REPEAT_BUGS,
                                    "fraction of the len(tokens) - n + 1 n-grams that already occurred "
                                    "earlier in the sequence")
            raise CheckFailed(
                f"repeated_ngram_rate({tokens!r}, n={n}) ({name})\n   expected: {expected!r}\n   got:      "
                f"{got!r}\n   hint: {hint}"
            )
    return ("fraction of n-grams that already occurred earlier (Welleck et al. 2019's seq-rep-n) on 5 cases: "
            "'abcabcabc' n=3 gives 4/7, no repeats 0, too short 0.0")
