"""Checks for project 02 (word embeddings): one check per TODO of ``02_meaning_space/solution.ipynb``.

Each check compares the learner's function with a PyTorch reference where one exists
(``F.one_hot``, ``F.cosine_similarity``, ``F.logsigmoid``), with hand-worked examples (the skip-gram
pairs of a four-word sentence), with the formulas of the paper (the unigram^0.75 noise distribution
and the subsampling keep-probability, counted over many draws), and with constructed embeddings whose
nearest neighbours and analogy answer are known in advance.

References: Mikolov, Chen, Corrado & Dean (2013), "Efficient Estimation of Word Representations in
Vector Space" (skip-gram, §3.2; the analogy test, §4.1); Mikolov, Sutskever, Chen, Corrado & Dean
(2013), "Distributed Representations of Words and Phrases and their Compositionality", NeurIPS
(negative sampling, §2.2, eq. 4 and the unigram^3/4 noise; subsampling of frequent words, §2.3, eq. 5).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from shared.checks import (
    CheckFailed,
    assert_close,
    call,
    expect,
    expect_equal,
    fmt,
    hint_on_crash,
    learner_check,
    within,
)
from shared.checks.compare import diagnose, gen, matches

__all__ = [
    "HAND_IDS",
    "HAND_PAIRS_WINDOW_1",
    "HAND_PAIRS_WINDOW_2",
    "reference_cosine_matrix",
    "reference_skipgram_pairs",
    "reference_keep_probability",
    "reference_noise_distribution",
    "reference_sgns_loss",
    "reference_nearest_neighbours",
    "reference_analogy",
    "two_topic_corpus",
    "filler_corpus",
    "check_one_hot",
    "check_cosine_matrix",
    "check_skipgram_pairs",
    "check_keep_probability",
    "check_sample_negatives",
    "check_sgns_loss",
    "check_train_skipgram",
    "check_nearest_neighbours",
    "check_analogy",
]

# A four-word sentence "to be or not" as ids 10, 11, 12, 13, worked by hand.
HAND_IDS = [10, 11, 12, 13]
HAND_PAIRS_WINDOW_1 = [(10, 11), (11, 10), (11, 12), (12, 11), (12, 13), (13, 12)]
HAND_PAIRS_WINDOW_2 = HAND_PAIRS_WINDOW_1 + [(10, 12), (12, 10), (11, 13), (13, 11)]


# ----------------------------------------------------------------------------------------------
# Plain references


def reference_cosine_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a_i, b_j) for every pair of rows, by PyTorch's own F.cosine_similarity with broadcasting."""
    return F.cosine_similarity(a[:, None, :], b[None, :, :], dim=-1)  # (N, M)


def reference_skipgram_pairs(ids: list[int], window: int) -> list[tuple[int, int]]:
    """Every (centre, context) with 1 <= |i - j| <= window, by two plain loops, sorted."""
    out = []
    for i, centre in enumerate(ids):
        for j in range(max(0, i - window), min(len(ids), i + window + 1)):
            if j != i:
                out.append((centre, ids[j]))
    return sorted(out)


def reference_keep_probability(counts: torch.Tensor, t: float) -> torch.Tensor:
    """Mikolov et al. (2013b) eq. 5: discard w with P = 1 - sqrt(t / f(w)); keep = min(1, sqrt(t / f))."""
    f = counts.double() / counts.double().sum()
    return torch.sqrt(t / f).clamp(max=1.0)


def reference_noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """P_n(w) = count(w)^power / sum_v count(v)^power (Mikolov et al. 2013b, §2.2)."""
    p = counts.double() ** power
    return p / p.sum()


def reference_sgns_loss(v: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor) -> torch.Tensor:
    """Batch mean of -log σ(u_o·v) - Σ_k log σ(-u_k·v) (Mikolov et al. 2013b, eq. 4), computed stably."""
    pos = (v * u_pos).sum(-1)  # (B,)
    neg = torch.einsum("bkd,bd->bk", u_neg, v)  # (B, K)
    return -(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean()


def reference_nearest_neighbours(emb: torch.Tensor, query: list[int], k: int) -> list[list[int]]:
    """Ids of the k rows with the highest cosine to each query row, the query itself excluded."""
    sims = reference_cosine_matrix(emb[query], emb)  # (Q, V)
    sims[torch.arange(len(query)), torch.tensor(query)] = -math.inf
    return sims.topk(k, dim=1).indices.tolist()


def reference_analogy(emb: torch.Tensor, a: int, b: int, c: int, k: int = 1) -> list[int]:
    """3CosAdd: the k words closest in cosine to unit(a) - unit(b) + unit(c), excluding a, b and c."""
    e = F.normalize(emb, dim=1)
    target = e[a] - e[b] + e[c]  # (D,)
    sims = reference_cosine_matrix(target[None], emb)[0]  # (V,)
    sims[[a, b, c]] = -math.inf
    return sims.topk(k).indices.tolist()


def two_topic_corpus(n_tokens: int = 6000, seed: int = 0) -> torch.Tensor:
    """Token ids from two 'topics' of 6 words each (ids 0-5 and 6-11), in runs of 12 tokens per topic.

    Words of one topic share their contexts, so a working skip-gram puts them closer together (in
    cosine) than words of different topics.
    """
    g = gen(seed)
    runs = n_tokens // 12
    topic = torch.randint(0, 2, (runs, 1), generator=g)  # (R, 1)
    words = torch.randint(0, 6, (runs, 12), generator=g) + 6 * topic  # (R, 12)
    return words.reshape(-1)


# ----------------------------------------------------------------------------------------------
# TODO 1: one_hot


@learner_check(todo=1, name="one_hot")
def check_one_hot(one_hot: Callable) -> str:
    """``one_hot(ids, vocab_size)`` -> float (N, V) with a single 1 per row, like
    ``F.one_hot(...).float()``."""
    ids = torch.tensor([3, 0, 3, 6, 1])
    got = call(one_hot, ids, 7)
    expected = F.one_hot(ids, 7).float()
    expect(isinstance(got, torch.Tensor), f"one_hot returned {type(got).__name__}, not a tensor",
           hint="return a torch.Tensor of shape (len(ids), vocab_size)")
    expect(got.dtype.is_floating_point, f"one_hot returned dtype {got.dtype}",
           hint="return floats (torch.float32): cosine similarity and matrix products need a floating-point "
                "tensor, and F.one_hot alone gives int64 — call .float()")
    expect(got.dtype == torch.float32, f"one_hot returned dtype {got.dtype}",
           hint="return float32 (torch.zeros' default): a matrix product refuses to mix a float64 one-hot "
                "with the float32 embedding table")
    hint = "row i is all zeros except a 1 in column ids[i]; the width is vocab_size, not ids.max() + 1"
    if tuple(got.shape) == (7, len(ids)):
        hint = ("the result is transposed: one ROW per id (N rows), one column per word (V = vocab_size "
                "columns)")
    elif matches(got, F.one_hot(ids, 7).float().amax(0).expand(len(ids), 7)):
        hint = ("out[:, ids] = 1 sets those columns in EVERY row: pair each row with its own id, "
                "out[torch.arange(N), ids] = 1.0")
    assert_close(got, expected, f"one_hot({fmt(ids)}, vocab_size=7) vs F.one_hot(ids, 7).float()", hint=hint)
    got = call(one_hot, torch.tensor([2]), 5)
    assert_close(got, F.one_hot(torch.tensor([2]), 5).float(), "one_hot([2], vocab_size=5)",
                 hint="the width is vocab_size even when the largest id is smaller")
    return ("matches F.one_hot(ids, V).float() on 5 ids (repeats included) and "
            "keeps width V when ids are small")


# ----------------------------------------------------------------------------------------------
# TODO 2: cosine_matrix


@learner_check(todo=2, name="cosine_matrix")
def check_cosine_matrix(cosine_matrix: Callable) -> str:
    """``cosine_matrix(a, b)`` -> (N, M) cosines of every row of a with every row of b."""
    g = gen(0)
    # rows of mixed norms
    a = torch.randn(5, 8, generator=g) * torch.tensor([[0.1], [1.0], [3.0], [10.0], [0.5]])
    b = torch.randn(4, 8, generator=g) * torch.tensor([[2.0], [0.2], [1.0], [7.0]])
    a_before, b_before = a.clone(), b.clone()
    with hint_on_crash("norms of shape (N,) do not broadcast against (N, D): keep the reduced dim, "
                       "a.norm(dim=1, keepdim=True)"):
        got = call(cosine_matrix, a, b)
    expect(torch.equal(a, a_before) and torch.equal(b, b_before),
           "cosine_matrix changed its input a or b in place",
           hint="a /= a.norm(...) divides the caller's tensor in place: divide into a new tensor, "
                "a_unit = a / a.norm(dim=1, keepdim=True)")
    expected = reference_cosine_matrix(a, b)
    one_side = ("only one side is normalised: a cosine divides by BOTH norms, ‖a_i‖ and ‖b_j‖ "
                "(values outside [-1, 1] give it away)")
    hint = diagnose(got, [
        (F.normalize(a, dim=1) @ b.T, one_side),
        (a @ F.normalize(b, dim=1).T, one_side),
        (a @ b.T, "that is the raw dot product: divide by the norms of both rows"),
        (F.normalize(a, dim=0) @ F.normalize(b, dim=0).T,
         "normalise each ROW (dim=1, one vector per word), not each column"),
        ((a / (a * a).sum(1, keepdim=True)) @ (b / (b * b).sum(1, keepdim=True)).T,
         "that divides by the squared norm: divide by the norm itself, the square root of the sum of "
         "squares (.norm(dim=1, keepdim=True))"),
        (expected.T, "the result is (M, N): a's rows must be the rows, a_unit @ b_unit.T"),
    ], "divide each row of BOTH a and b by its L2 norm, then take a @ b.T")
    err = assert_close(got, expected, "cosine_matrix(a (5, 8), b (4, 8)) vs F.cosine_similarity", hint=hint,
                       atol=1e-5, rtol=1e-4)
    self_sim = call(cosine_matrix, a, a)
    assert_close(torch.diagonal(self_sim), torch.ones(5), "diagonal of cosine_matrix(a, a)",
                 hint="every vector has cosine 1 with itself", atol=1e-5, rtol=1e-5)
    zero = torch.cat([torch.zeros(1, 8), b[:2]])  # (3, 8): a zero row, as an untrained word's vector
    assert_close(call(cosine_matrix, zero, b), reference_cosine_matrix(zero, b), "cosine_matrix with a zero "
                                                                                 "row in a",
                 hint="a zero row has norm 0, and 0 / 0 is NaN: clamp the norms at eps (.clamp_min(eps)) so "
                      "that its cosines are 0", atol=1e-5, rtol=1e-4)
    return (f"matches F.cosine_similarity(a[:, None], b[None], dim=-1) on rows of norms 0.1-10 "
            f"({within(err, 1e-5)}); cos(x, x) = 1")


# ----------------------------------------------------------------------------------------------
# TODO 3: skipgram_pairs


def _as_pairs(got: object, what: str) -> list[tuple[int, int]]:
    expect(isinstance(got, torch.Tensor), f"{what} returned {type(got).__name__}, not a tensor",
           hint="return a LongTensor of shape (P, 2): column 0 the centre id, column 1 the context id")
    assert isinstance(got, torch.Tensor)
    expect(got.ndim == 2 and got.shape[1] == 2, f"{what} returned shape {tuple(got.shape)}, not (P, 2)",
           hint="stack (centre, context) as two columns: torch.stack([centres, contexts], dim=1)")
    expect(got.dtype == torch.long, f"{what} returned dtype {got.dtype}",
           hint="return int64 ids (torch.long), also when there are no pairs: torch.zeros(0, 2, "
                "dtype=torch.long)")
    return sorted(tuple(int(x) for x in row) for row in got.tolist())


@learner_check(todo=3, name="skipgram_pairs")
def check_skipgram_pairs(skipgram_pairs: Callable) -> str:
    """``skipgram_pairs(ids, window)`` -> (P, 2) every (centre, context) with 1 <= |offset| <= window."""
    ids = torch.tensor(HAND_IDS)
    for window, expected in ((1, HAND_PAIRS_WINDOW_1), (2, HAND_PAIRS_WINDOW_2)):
        with hint_on_crash("offset 0 is not a context: start the offsets at 1 (ids[:-0] is empty, not the "
                           "whole list)"):
            got = _as_pairs(call(skipgram_pairs, ids, window), f"skipgram_pairs({HAND_IDS}, window={window})")
        expected = sorted(expected)
        if got != expected:
            hint = "each word pairs with every word at distance 1..window on both sides, never with itself"
            other = [w for w in range(window + 2, 10) if got == reference_skipgram_pairs(HAND_IDS, w)]
            if other:
                hint = (f"use the `window` argument: these are the pairs of a window of {other[0]} or more, "
                        f"not {window}")
            elif {(HAND_IDS[0], HAND_IDS[-1]), (HAND_IDS[-1], HAND_IDS[0])} & (set(got) - set(expected)):
                hint = ("the pairs wrap around the ends (as torch.roll does): the first and last words are "
                        "not neighbours; pair ids[:-o] with ids[o:] instead")
            elif any(c == x for c, x in got) or len(got) == len(expected) + len(HAND_IDS):
                hint = ("the centre word is paired with itself: offset 0 is not a "
                        "context (use offsets 1..window)")
            elif len(got) < len(expected):
                hint = ("pairs are missing: is the window off by one (range(1, window) stops at window - 1), "
                        "or is only one side (left or right) included?")
            elif len(got) > len(expected):
                hint = ("too many pairs: offsets must stop at window (range(1, window "
                        "+ 1)), and stay inside the list")
            expect_equal(got, expected, f"skipgram_pairs({HAND_IDS}, window={window}) as a sorted list", hint)
    g = gen(1)
    for window in (1, 3, 5):
        rand = torch.randint(0, 50, (40,), generator=g)
        got = _as_pairs(call(skipgram_pairs, rand, window), f"skipgram_pairs(40 random ids, window={window})")
        expect_equal(got, reference_skipgram_pairs(rand.tolist(), window),
                     f"skipgram_pairs(40 random ids, window={window}) vs a two-loop reference (sorted)",
                     "near the ends of the list fewer contexts exist; never wrap around")
    got = _as_pairs(call(skipgram_pairs, torch.tensor([7]), 2), "skipgram_pairs([7], window=2)")
    expect_equal(got, [], "skipgram_pairs([7], window=2): one word has no context",
                 "a one-word text gives no pairs: an empty (0, 2) tensor")
    got = _as_pairs(call(skipgram_pairs, torch.tensor([4, 5]), 5), "skipgram_pairs([4, 5], window=5)")
    expect_equal(got, [(4, 5), (5, 4)], "skipgram_pairs([4, 5], window=5): window longer than the text",
                 "a window longer than the text just means fewer pairs")
    return ("'to be or not' gives the 6 hand-worked pairs at window 1 and 10 at window 2; matches a two-loop "
            "reference for windows 1, 3, 5 (order free)")


# ----------------------------------------------------------------------------------------------
# TODO 4: keep_probability


@learner_check(todo=4, name="keep_probability")
def check_keep_probability(keep_probability: Callable) -> str:
    """``keep_probability(counts, t)`` = min(1, sqrt(t / f(w))) with f the relative frequency."""
    counts = torch.tensor([5000.0, 3000.0, 1500.0, 400.0, 90.0, 9.0, 1.0])
    t = 1e-3
    before = counts.clone()
    got = call(keep_probability, counts, t)
    expect(torch.equal(counts, before), "keep_probability changed `counts` in place",
           hint="counts /= counts.sum() overwrites the caller's counts (the noise distribution needs them "
                "later): compute f = counts / counts.sum() into a new tensor")
    expected = reference_keep_probability(counts, t).float()
    hint = "f = counts / counts.sum(); keep = sqrt(t / f), clamped to at most 1"
    if isinstance(got, torch.Tensor) and got.shape == expected.shape:
        f = counts / counts.sum()
        other = call(keep_probability, counts.clone(), 4 * t)
        if isinstance(other, torch.Tensor) and torch.equal(other, got):
            hint = ("use the `t` argument: t = 1e-3 and t = 4e-3 gave the same keep probabilities (a fixed "
                    "threshold such as SUBSAMPLE_T?)")
        elif torch.allclose(got.float(), (t / f).clamp(max=1), atol=1e-6):
            hint = ("missing square root: Mikolov et al. (2013b) eq. 5 discards with 1 - sqrt(t / f), so "
                    "keep = sqrt(t / f)")
        elif got.max() > 1:
            hint = "rare words give sqrt(t / f) > 1: a probability must be clamped to 1 (.clamp(max=1))"
        elif torch.allclose(got.float(), 1 - torch.sqrt(t / f).clamp(max=1), atol=1e-6):
            hint = "that is the DISCARD probability 1 - sqrt(t / f); return the keep probability"
        elif torch.allclose(got.float(), torch.sqrt(t / counts).clamp(max=1), atol=1e-6):
            hint = "use the relative frequency f = count / total count, not the raw count"
    err = assert_close(got, expected, f"keep_probability({fmt(counts)}, t={t})", hint=hint, atol=1e-6,
                       rtol=1e-5)
    return (f"matches min(1, sqrt(t / f)) (Mikolov et al. 2013b, eq. 5) on 7 counts, t = {t:g} "
            f"({within(err, 1e-6)}); the 3 rarest words are always kept")


# ----------------------------------------------------------------------------------------------
# TODO 5: sample_negatives


_ANY_SHAPE = ("`shape` may have any number of dims (here a 1-D shape): draw math.prod(shape) ids, then "
              ".view(shape)")


@learner_check(todo=5, name="sample_negatives")
def check_sample_negatives(sample_negatives: Callable) -> str:
    """``sample_negatives(counts, shape, generator, power=0.75)`` draws ids from P_n(w) ∝ count^power."""
    counts = torch.tensor([1000.0, 300.0, 100.0, 30.0, 10.0, 1.0])
    n = 200_000
    g = gen(0)
    with hint_on_crash("draw with replacement=True: a batch needs far more negatives than there are words"):
        got = call(sample_negatives, counts, (n // 4, 4), g)
    expect(isinstance(got, torch.Tensor), f"sample_negatives returned {type(got).__name__}, not a tensor",
           hint="return a LongTensor of word ids with the requested shape")
    expect_equal(tuple(got.shape), (n // 4, 4), "shape of sample_negatives(counts, shape=(50000, 4), g)",
                 "draw shape.numel() ids, then .view(shape)")
    expect(not got.dtype.is_floating_point, f"sample_negatives returned dtype {got.dtype}",
           hint="ids index an embedding table: return torch.long (torch.multinomial already does)")
    expect(int(got.min()) >= 0 and int(got.max()) < len(counts),
           f"sample_negatives drew ids outside 0..{len(counts) - 1}: min {int(got.min())}, max "
           f"{int(got.max())}",
           hint="draw indices into `counts`")
    freq = torch.bincount(got.reshape(-1), minlength=len(counts)).double() / n
    expected = reference_noise_distribution(counts)
    tol = 4 * math.sqrt(0.25 / n)  # 4 standard errors of a frequency, at worst
    worst = float((freq - expected).abs().max())
    if worst > tol:
        hint = ("P_n(w) = count^0.75 / sum(count^0.75); torch.multinomial(probs, "
                "n, replacement=True, generator=g)")
        if float((freq - reference_noise_distribution(counts, 1.0)).abs().max()) <= tol:
            hint = "that is the raw unigram distribution: raise the counts to the power 0.75 first"
        elif float((freq - torch.full_like(freq, 1 / len(counts))).abs().max()) <= tol:
            hint = ("the draws are uniform: sample in proportion to count^0.75 "
                    "(torch.multinomial), not torch.randint")
        raise CheckFailed(
            f"frequencies of {n} draws vs count^0.75 normalised (tolerance {tol:.4f}, worst {worst:.4f})\n"
            f"   expected: {fmt([round(x, 4) for x in expected.tolist()])}\n"
            f"   got:      {fmt([round(x, 4) for x in freq.tolist()])}\n"
            f"   hint: {hint}"
        )
    power = 0.5
    with hint_on_crash(_ANY_SHAPE):
        half = call(sample_negatives, counts, (n // 2,), gen(1), power=power)
    freq = torch.bincount(half.reshape(-1), minlength=len(counts)).double() / (n // 2)
    tol_half = 4 * math.sqrt(0.25 / (n // 2))
    if float((freq - reference_noise_distribution(counts, power)).abs().max()) > tol_half:
        hint = "P_n(w) ∝ count^power for the `power` argument"
        if float((freq - expected).abs().max()) <= tol_half:
            hint = "use the `power` argument: power=0.5 gave the count^0.75 frequencies"
        raise CheckFailed(
            f"frequencies of {n // 2} draws with power={power} vs count^{power} normalised\n"
            f"   expected: {fmt([round(x, 4) for x in reference_noise_distribution(counts, power).tolist()])}"
            "\n"
            f"   got:      {fmt([round(x, 4) for x in freq.tolist()])}\n"
            f"   hint: {hint}"
        )
    with hint_on_crash(_ANY_SHAPE):
        again = call(sample_negatives, counts, (1000,), gen(5))
        twice = call(sample_negatives, counts, (1000,), gen(5))
        other = call(sample_negatives, counts, (1000,), gen(6))
    expect(torch.equal(again, twice), "two calls with generators seeded alike gave different draws",
           hint="pass the `generator` argument on to torch.multinomial so that runs are reproducible")
    expect(not torch.equal(again, other), "generators seeded 5 and 6 gave the same 1000 draws",
           hint="the draws must come from the `generator` passed in: hand it to torch.multinomial instead of "
                "making (and seeding) a new one inside")
    return (f"{n} draws match count^0.75 / Σ count^0.75 within {tol:.4f}; "
            "shape, dtype and seeding respected")


# ----------------------------------------------------------------------------------------------
# TODO 6: sgns_loss


_SGNS_SHAPES = ("shapes: v (B, D), u_pos (B, D), u_neg (B, K, D); positive scores (v * u_pos).sum(-1) are "
                "(B,), negative scores (u_neg @ v.unsqueeze(-1)).squeeze(-1) are (B, K)")


@learner_check(todo=6, name="sgns_loss")
def check_sgns_loss(sgns_loss: Callable) -> str:
    """``sgns_loss(v, u_pos, u_neg)``: mean over the batch of -log σ(u_o·v) - Σ_k log σ(-u_k·v)."""
    g = gen(0)
    v, u_pos = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    u_neg = torch.randn(6, 3, 4, generator=g)
    with hint_on_crash(_SGNS_SHAPES):
        got = call(sgns_loss, v, u_pos, u_neg)
    expected = reference_sgns_loss(v, u_pos, u_neg)
    pos = (v * u_pos).sum(-1)  # (6,)
    neg = torch.einsum("bkd,bd->bk", u_neg, v)  # (6, 3)
    hint = diagnose(got, [  # shown only for a 0-d answer: see the expect below
        (-(F.logsigmoid(pos) + F.logsigmoid(neg).sum(-1)).mean(),
         "negatives must be pushed APART: use logsigmoid(-score) for them, "
         "logsigmoid(+score) for the positive"),
        (-(F.logsigmoid(pos) + F.logsigmoid(-neg).mean(-1)).mean(),
         "sum the K negative terms (eq. 4 has Σ_k), then average over the batch"),
        (-(F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).sum(),
         "average over the batch (.mean()), so that the learning rate does not depend on the batch size"),
        ((F.logsigmoid(pos) + F.logsigmoid(-neg).sum(-1)).mean(),
         "the loss is the NEGATIVE log-likelihood: put a minus in front (it is positive, (1 + K) log 2 at "
         "zero scores)"),
        (-torch.cat([F.logsigmoid(pos)[:, None], F.logsigmoid(-neg)], 1).mean(),
         "that averages over the 1 + K terms too: add the positive term and the SUM of the K negative terms, "
         "then average over the batch only"),
        (-(F.logsigmoid(v @ u_pos.T) + F.logsigmoid(-neg).sum(-1)).mean(),
         "v @ u_pos.T is a (B, B) matrix of every centre with every context: the positive score of pair b "
         "is one dot product, (v * u_pos).sum(-1), shape (B,)"),
    ], "loss = -(logsigmoid(positive scores) + logsigmoid(-negative scores).sum(-1)).mean()")
    expect(isinstance(got, torch.Tensor) and got.ndim == 0,
           f"sgns_loss returned {fmt(got, 80)}, not a 0-d tensor",
           hint="reduce to a scalar tensor with .mean()")
    err = assert_close(got, expected, "sgns_loss on a batch of 6 with K = 3 negatives", hint=hint, atol=1e-5,
                       rtol=1e-5)
    u_one = torch.randn(6, 1, 4, generator=g)  # K = 1 negative per pair
    with hint_on_crash(_SGNS_SHAPES):
        got = call(sgns_loss, v, u_pos, u_one)
    assert_close(got, reference_sgns_loss(v, u_pos, u_one), "sgns_loss with K = 1 negative per pair",
                 hint="with K = 1 the negative scores are (B, 1): .squeeze() drops that dim as well and the "
                      "sum then runs over the batch; use .squeeze(-1)")
    big = torch.tensor([[30.0, 0.0]])
    got = call(sgns_loss, big, -big, big[:, None, :].repeat(1, 2, 1))  # scores: positive -900, negatives +900
    expect(isinstance(got, torch.Tensor) and bool(torch.isfinite(got)),
           f"sgns_loss is {fmt(got, 60)} when the scores are ±900 (expected "
           f"{float(reference_sgns_loss(big, -big, big[:, None, :].repeat(1, 2, 1))):.0f})",
           hint="log(sigmoid(x)) underflows to log(0) = -inf for large |x|: "
                "use F.logsigmoid, which is stable")
    return (f"matches -(logsigmoid(u_o·v) + Σ_k logsigmoid(-u_k·v)).mean() (eq. 4, {within(err, 1e-5)}); "
            "finite at scores of ±900")


# ----------------------------------------------------------------------------------------------
# TODO 7: train_skipgram


def filler_corpus(n_tokens: int = 6000, seed: int = 0) -> torch.Tensor:
    """:func:`two_topic_corpus` with half of its tokens replaced by a filler word (id 12) at random places.

    The filler is frequent and carries no information, so skip-gram's score u_filler · v_w for a topic word
    w tends to log(P(filler) / P_n(filler)) - log K (Levy & Goldberg 2014, "Neural Word Embedding as
    Implicit Matrix Factorization", §3.1): it tells which noise distribution P_n the negatives came from.
    """
    words = two_topic_corpus(n_tokens, seed)
    filler = torch.rand(len(words), generator=gen(seed + 1)) < 0.5
    return torch.where(filler, torch.full_like(words, 12), words)


def _filler_score(train: Callable, ids: torch.Tensor, counts: torch.Tensor, subsample_t: float) -> float:
    """Mean score w_out[filler] · w_in[w] over the 12 topic words after a short run."""
    out = call(train, ids, counts, window=2, n_pairs=40_000, dim=8, batch_size=256, lr=0.05,
               subsample_t=subsample_t, n_negatives=3, seed=0)
    w_in, w_out = out[0], out[1]
    return float((w_in[:12] @ w_out[12]).mean())


def _predicted_filler_score(counts: torch.Tensor, power: float, subsample_t: float = 0.0,
                            k: int = 3) -> float:
    """log(P(filler) / P_n(filler)) - log k, with P(filler) its share of the (subsampled) text."""
    kept = counts.double()
    if subsample_t > 0:
        kept = kept * reference_keep_probability(counts, subsample_t)
    share = float(kept[12] / kept.sum())
    return math.log(share / float(reference_noise_distribution(counts, power)[12])) - math.log(k)


class _WindowSpy:
    """Records the `window` of every call the learner's train_skipgram makes to its skipgram_pairs."""

    def __init__(self, train: Callable) -> None:
        self.space = getattr(train, "__globals__", {})
        self.original = self.space.get("skipgram_pairs")
        self.windows: list[object] = []

    def __enter__(self) -> _WindowSpy:
        original = self.original
        if callable(original):
            def spy(ids: torch.Tensor, window: int, *args: object, **kwargs: object) -> torch.Tensor:
                self.windows.append(window)
                return original(ids, window, *args, **kwargs)

            self.space["skipgram_pairs"] = spy
        return self

    def __exit__(self, *exc: object) -> None:
        if callable(self.original):
            self.space["skipgram_pairs"] = self.original


@learner_check(todo=7, name="train_skipgram")
def check_train_skipgram(train_skipgram: Callable) -> str:
    """A short run on a two-topic corpus: the loss falls and same-topic words end up closer in cosine; runs on
    a corpus with a frequent filler word show the noise distribution and the subsampling at work."""
    ids = two_topic_corpus()
    counts = torch.bincount(ids, minlength=12).float()
    with _WindowSpy(train_skipgram) as spy:
        out = call(train_skipgram, ids, counts, window=2, n_pairs=20_000, dim=8, batch_size=256, lr=0.05,
                   subsample_t=0.0, n_negatives=3, seed=0)
    expect(isinstance(out, tuple) and len(out) == 3, f"train_skipgram returned {fmt(out, 80)}",
           hint="return (w_in, w_out, losses): both embedding tables (V, D), "
                "detached, and the per-step losses")
    expect(all(w == 2 for w in spy.windows), f"train_skipgram(window=2) called skipgram_pairs with window "
           f"{next(w for w in spy.windows if w != 2)!r}" if any(w != 2 for w in spy.windows) else "",
           hint="pass the `window` argument on to skipgram_pairs (not the notebook's WINDOW)")
    emb, w_out, losses = out
    expect(isinstance(emb, torch.Tensor) and tuple(emb.shape) == (12, 8),
           f"emb has shape {tuple(getattr(emb, 'shape', ()))}, expected (12, 8)",
           hint="return the input table's weights (vocab_size, dim), detached")
    expect(isinstance(w_out, torch.Tensor) and tuple(w_out.shape) == (12, 8),
           f"w_out has shape {tuple(getattr(w_out, 'shape', ()))}, expected (12, 8)",
           hint="return the output (context) table's weights (vocab_size, dim), detached")
    n_steps = math.ceil(20_000 / 256)
    expect(len(losses) == n_steps, f"{len(losses)} losses recorded, expected {n_steps} (one per batch)",
           hint="append loss.item() once per optimizer step; train on exactly n_pairs pairs")
    expect(all(isinstance(x, float) for x in losses),
           f"losses holds {type(next(x for x in losses if not isinstance(x, float))).__name__} items, "
           "not floats" if not all(isinstance(x, float) for x in losses) else "",
           hint="append loss.item(), a float: a loss tensor keeps its whole autograd graph alive")
    first, last = sum(losses[:5]) / 5, sum(losses[-10:]) / 10
    start = 4 * math.log(2)  # 1 positive + 3 negatives, all scores 0
    hint = "initialise the INPUT table small and random (uniform ±0.5/dim) and the OUTPUT table at zero"
    k_seen = round(first / math.log(2)) - 1
    if k_seen != 3 and abs(first - (1 + k_seen) * math.log(2)) < 0.1:
        hint = (f"the loss starts at (1 + K) log 2 with K = {k_seen}: draw n_negatives (= 3 here) negatives "
                f"per "
                "pair, the argument, not a fixed number such as N_NEGATIVES")
    expect(abs(first - start) < 0.3,
           f"first losses average {first:.3f}; with the output table at zero every score is 0 and the loss "
           f"is (1 + K) log 2 = {start:.3f}", hint=hint)
    hint = ("each step: zero_grad, sgns_loss on the batch, backward, step. If both tables start at zero "
            "their gradients are zero too and nothing moves")
    if isinstance(w_out, torch.Tensor) and not bool(w_out.any()) and bool(emb.any()):
        hint = ("the output table never changed from zero: could be a missing opt.step() after backward, or "
                "an optimizer without that table: torch.optim.Adam([emb_in.weight, emb_out.weight], lr=lr)")
    expect(last < first - 0.8,
           f"the loss did not fall: first 5 steps {first:.3f}, last 10 steps {last:.3f}", hint=hint)
    sims = reference_cosine_matrix(emb, emb)
    same = torch.zeros(12, 12, dtype=torch.bool)
    same[:6, :6] = same[6:, 6:] = True
    off = ~torch.eye(12, dtype=torch.bool)
    same_topic, across = float(sims[same & off].mean()), float(sims[~same].mean())
    expect(same_topic > across + 0.5,
           f"same-topic words have mean cosine {same_topic:.2f}, different-topic {across:.2f} (expected a "
           "gap > 0.5)",
           hint="pairs come from skipgram_pairs on the subsampled ids; negatives from sample_negatives; "
                "centre vectors from the input table, context and negatives from the output table")
    still = call(train_skipgram, ids, counts, window=2, n_pairs=2_560, dim=8, batch_size=256, lr=0.0,
                 subsample_t=0.0, n_negatives=3, seed=0)[2]
    expect(all(abs(x - start) < 1e-6 for x in still),
           f"with lr=0 the loss still moved: {[round(x, 3) for x in still]}",
           hint="use the `lr` argument for the optimizer (not the notebook's LR): with lr=0 nothing may "
                "change")
    # the noise distribution: with a frequent filler word, the score it gets depends on how often the
    # negatives are the filler (uniform negatives: rarely). The spread over seeds is about ±0.15, so only
    # noise as far from count^0.75 as uniform noise is told apart (count^1 noise is not: 0.36 away).
    fids = filler_corpus()
    fcounts = torch.bincount(fids, minlength=13).float()
    score = _filler_score(train_skipgram, fids, fcounts, 0.0)
    predicted = {power: _predicted_filler_score(fcounts, power) for power in (0.75, 1.0, 0.0)}
    if abs(score - predicted[0.0]) < abs(score - predicted[0.75]) or abs(score - predicted[0.75]) > 0.6:
        hint = ("draw the negatives with sample_negatives(counts, ...), i.e. from count^0.75 / Σ count^0.75, "
                "and score them against the output table")
        if abs(score - predicted[0.0]) < abs(score - predicted[0.75]):
            hint = ("the negatives look uniform (torch.randint?): draw them from count^0.75 / Σ count^0.75 "
                    "with sample_negatives(counts, ...), so frequent words are drawn more often")
        raise CheckFailed(
            "on a two-topic corpus where half the tokens are one filler word, the mean score of the topic "
            f"words with the filler is {score:.2f}; skip-gram with negatives from count^0.75 tends to "
            f"log(P(filler) / P_n(filler)) - log K = {predicted[0.75]:.2f} (count^1 noise: "
            f"{predicted[1.0]:.2f}, uniform noise: {predicted[0.0]:.2f})\n   hint: {hint}")
    t = 0.045  # keeps about 30 % of the filler, every topic word
    sub = _filler_score(train_skipgram, fids, fcounts, t)
    with_sub = _predicted_filler_score(fcounts, 0.75, t)
    if abs(sub - with_sub) > abs(sub - predicted[0.75]) or abs(sub - with_sub) > 0.4:
        raise CheckFailed(
            f"with subsample_t={t} (which keeps about 30 % of the filler) the mean score of the topic words "
            f"with the filler is {sub:.2f}: expected about {with_sub:.2f} after subsampling, "
            f"{predicted[0.75]:.2f} without it\n"
            "   hint: subsample the text when subsample_t > 0: keep each token with probability "
            "keep_probability(counts, subsample_t)[id], drawn again every pass")
    return (f"in {n_steps} steps on a two-topic corpus the loss starts at (1 + K) log 2 and falls by more "
            f"than 0.8; mean cosine within topics beats across topics by more than 0.5")


# ----------------------------------------------------------------------------------------------
# TODO 8: nearest_neighbours


def _constructed_circle() -> torch.Tensor:
    """Six 2-D vectors at angles 0°, 20°, 50°, 100°, 180°, 250° with very different lengths."""
    angles = torch.tensor([0.0, 20.0, 50.0, 100.0, 180.0, 250.0]) * math.pi / 180
    norms = torch.tensor([1.0, 0.5, 5.0, 10.0, 2.0, 3.0])
    return torch.stack([angles.cos(), angles.sin()], dim=1) * norms[:, None]  # (6, 2)


@learner_check(todo=8, name="nearest_neighbours")
def check_nearest_neighbours(nearest_neighbours: Callable) -> str:
    """``nearest_neighbours(emb, query_ids, k)`` -> (scores, ids), both (Q, k), by cosine,
    the query excluded."""
    emb = _constructed_circle()
    for query, k in (([0, 4], 3), ([1, 0, 2], 2)):
        out = call(nearest_neighbours, emb, torch.tensor(query), k)
        expect(isinstance(out, tuple) and len(out) == 2, f"nearest_neighbours returned {type(out).__name__}",
               hint="return (scores, ids), each of shape (Q, k)")
        scores, ids = out
        expected = reference_nearest_neighbours(emb, query, k)  # [[1, 2, 3], [5, 3, 2]], then [[0, 2], ...]
        if isinstance(ids, torch.Tensor) and ids.dtype.is_floating_point:
            raise CheckFailed("nearest_neighbours returned float ids\n"
                              "   hint: return (scores, ids) in that order: the cosines first, then the ids")
        got_ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
        if got_ids == expected:
            continue
        hint = "rank by cosine (cosine_matrix), highest first, after setting each query's own score to -inf"
        rows = got_ids if isinstance(got_ids, list) and all(isinstance(r, list) for r in got_ids) else []
        sims = reference_cosine_matrix(emb[query], emb)
        sims[torch.arange(len(query)), torch.tensor(query)] = -math.inf  # as the learner's code excludes it
        if rows and any(len(r) != k for r in rows):
            hint = f"return exactly k neighbours per query (the `k` argument, {k} here): shape (Q, k)"
        elif rows == sims.topk(k, dim=1, largest=False).indices.tolist():
            hint = "these are the LEAST similar words: take the top k by cosine, highest first (largest=True)"
        elif rows and any(r and r[0] == q for r, q in zip(rows, query, strict=False)):
            hint = ("the query word itself came first (cosine 1 with itself): "
                    "exclude it before taking the top k")
        elif rows and any(set(query) - {q} & set(e) - set(r) for r, e, q in zip(rows, expected, query,
                                                                                  strict=False)):
            hint = ("each row must exclude only its own query: sims[torch.arange(Q), query_ids] = -inf; "
                    "sims[:, query_ids] = -inf removes every query word from every row")
        elif got_ids == [[2, 3, 1], [3, 5, 2]] or (got_ids and got_ids[0][:1] == [2]):
            hint = "that ranks by the dot product, which favours long vectors: rank by cosine"
        expect_equal(got_ids, expected,
                     f"neighbours of words {query} (k={k}) among 2-D vectors at 0°, 20°, 50°, 100°, 180°, "
                     f"250° "
                     "(lengths 1, 0.5, 5, 10, 2, 3)", hint)
    scores, ids = call(nearest_neighbours, emb, torch.tensor([0, 4]), 3)
    exp_scores = torch.tensor([[math.cos(math.radians(d)) for d in (20, 50, 100)],
                               [math.cos(math.radians(d)) for d in (70, 80, 130)]])
    err = assert_close(scores, exp_scores, "scores of the 3 nearest neighbours of words 0 and 4",
                       hint="the scores are the cosines of the neighbours, sorted from high to low",
                       atol=1e-5, rtol=1e-4)
    return (f"on 2-D vectors at known angles (lengths 0.5-10) the neighbours rank by angle, the query is "
            f"excluded, scores = cos(angle) ({within(err, 1e-5)})")


# ----------------------------------------------------------------------------------------------
# TODO 9: analogy


def _constructed_analogy() -> tuple[torch.Tensor, list[str]]:
    """Axes: person, royal, female, then two unrelated ones. 'queen' carries a large unrelated part, so the
    raw nearest word to king - man + woman is the input 'king'; excluding a, b, c leaves 'queen'."""
    words = ["man", "woman", "king", "queen", "apple", "river"]
    emb = torch.tensor([
        [1.0, 0.0, 0.0, 0.0, 0.0],  # man: person
        [1.0, 0.0, 1.0, 0.0, 0.0],  # woman: person + female
        [1.0, 1.2, 0.0, 0.0, 0.0],  # king: person + royal
        [1.0, 1.2, 1.0, 2.0, 0.0],  # queen: person + royal + female, plus noise
        [0.0, 0.0, 0.2, 0.0, 1.0],  # apple
        [0.0, 0.3, 0.0, 0.0, 1.0],  # river
    ])
    return emb, words


def diagnose_ranking(got: object, emb: torch.Tensor, a: int, b: int, c: int,
                     variants: list[tuple[torch.Tensor, bool, str]], default: str) -> str:
    """The hint of the first (target, rank by dot product?, hint) whose top 5, a, b, c excluded, is ``got``;
    else ``default``."""
    for target, by_dot, hint in variants:
        sims = emb @ target if by_dot else reference_cosine_matrix(target[None], emb)[0]
        sims[[a, b, c]] = -math.inf
        if sims.topk(5).indices.tolist() == got:
            return hint
    return default


@learner_check(todo=9, name="analogy")
def check_analogy(analogy: Callable) -> str:
    """``analogy(emb, a, b, c, k)`` -> the k ids closest to unit(a) - unit(b) + unit(c), excluding a, b, c."""
    emb, words = _constructed_analogy()
    before = emb.clone()
    king, man, woman, queen = 2, 0, 1, 3
    got = call(analogy, emb, king, man, woman, 1)
    expect(torch.equal(emb, before), "analogy changed the embedding table in place",
           hint="normalise into a new tensor (F.normalize(emb, dim=1)); emb.div_(...) or emb /= ... rescales "
                "the caller's table")
    got = got.tolist() if isinstance(got, torch.Tensor) else got
    expect(isinstance(got, list) and len(got) == 1,
           f"analogy(..., k=1) returned {fmt(got, 80)}",
           hint="exclude a, b and c BEFORE taking the top k (set their scores to -inf): filtering them out "
                "afterwards leaves fewer than k words" if isinstance(got, list) and not got
           else "return a list of k word ids, best first")
    if got != [queen]:
        named = [words[i] for i in got if isinstance(i, int) and 0 <= i < len(words)]
        hint = "target = unit(a) - unit(b) + unit(c); rank every word by cosine to it; exclude a, b and c"
        if got[0] in (king, man, woman):
            hint = (f"it returned the input word {named[0]!r}: the target usually stays closest to a or c, "
                    "so a, b and c must be excluded from the answers (Mikolov et al. 2013a, §4.1)")
        expect_equal(named, ["queen"], "analogy: king - man + woman on a constructed embedding", hint)
    top = call(analogy, emb, king, man, woman, 3)
    top = top.tolist() if isinstance(top, torch.Tensor) else top
    expect_equal(top, reference_analogy(emb, king, man, woman, 3),
                 "analogy(king, man, woman, k=3) on the constructed embedding",
                 "return k ids (the `k` argument), best first" if isinstance(top, list) and len(top) != 3
                 else "normalise every vector before adding (3CosAdd), then rank by cosine; best first")
    # random vectors whose lengths differ 50-fold: normalising, the sign and the ranking all matter
    g = gen(9)
    rand = torch.randn(30, 6, generator=g) * torch.exp(torch.randn(30, 1, generator=g) * 1.3)
    for a, b, c in ((0, 1, 2), (5, 9, 3), (7, 4, 11), (20, 21, 22)):
        got = call(analogy, rand, a, b, c, 5)
        got = got.tolist() if isinstance(got, torch.Tensor) else got
        expected = reference_analogy(rand, a, b, c, 5)
        if got != expected:
            e = F.normalize(rand, dim=1)
            hint = diagnose_ranking(got, rand, a, b, c, [
                (e[a] - e[b] + e[c], True,
                 "rank by cosine with the target, not by the dot product, which favours long vectors"),
                (rand[a] - rand[b] + rand[c], False,
                 "normalise the three vectors first, unit(a) - unit(b) + unit(c) (3CosAdd): with raw vectors "
                 "the longest one decides"),
                (e[a] + e[b] - e[c], False,
                 "the target is a - b + c ('b is to a as c is to d'): subtract b and add c"),
            ], "target = unit(a) - unit(b) + unit(c); rank every word by cosine to it; exclude a, b and c")
            expect_equal(got, expected, f"analogy(a={a}, b={b}, c={c}, k=5) on 30 random vectors of lengths "
                         "0.02-50", hint)
    return ("king - man + woman = queen on a constructed embedding where the raw nearest vector is the input "
            "'king'; the top 3 match the 3CosAdd reference")
