"""The yardstick: how much a character-level model really uses its context.

A validation loss alone does not say whether a model has learned anything about context. Count-based
n-gram models do: an order-n model predicts each character from the n − 1 characters before it and
nothing else, so a char-level transformer that does not beat a count-based **trigram** has learned almost
nothing about context beyond two characters, whatever its attention looks like. This module gives every
notebook the same three numbers to say where a model stands.

* **n-gram baselines.** :func:`ngram_baselines` fits add-k (Lidstone) smoothed n-gram models of orders
  1 … 5 on training ids and scores them on validation ids, in nats per character:

      P(c | h) = (C(h c) + k) / (C(h) + k·V)

  where ``h`` is the n − 1 characters before ``c``, ``C`` counts occurrences in the training ids, ``C(h)``
  is the number of training n-grams that start with ``h`` (so the V probabilities sum to 1 for every
  context, seen or not) and ``V`` is the vocabulary size. The unigram has the empty context:
  P(c) = (C(c) + k) / (N + k·V). ``k`` is chosen per order from :data:`K_GRID` on a held-out slice of the
  **training** ids (the last :data:`HOLDOUT_FRACTION` of them, with the model refitted on the rest for the
  choice), never on validation, so the validation number is honest; the model is then refitted on all the
  training ids with that ``k``. *Scored positions:* an order-n model scores every position of the
  validation ids that has n − 1 characters before it inside the validation ids (all but the first n − 1;
  no back-off), and the held-out slice is scored the same way. :func:`corpus_baselines` does this for the
  project's standard split (``train_val_split(load_shakespeare())``, ``CharTokenizer.from_text``, 69
  symbols) and caches the result as a small verified JSON file.
* **A context curve.** :func:`context_curve` evaluates a model with ``forward(idx) -> (logits, loss)`` on
  seeded random validation windows of ``block_size`` characters and keeps the cross-entropy at every
  position: position ``t`` predicts character ``t + 1`` of the window from the ``t + 1`` characters before
  it. A model that uses context has a curve that keeps falling with ``t``; one that does not is flat after
  a few characters.
* **One report line.** :func:`report` puts a model's validation loss beside the baselines and states its
  *gain from context beyond 3 characters*, defined (:meth:`ContextCurve.gain`) as the mean loss at the
  position with exactly 3 characters of context minus the mean loss over the positions with ≥ 8
  characters of context, both on the same windows, with the standard error of that paired difference
  over windows.

Measured on this corpus (one core, see :func:`corpus_baselines`): unigram 3.30, bigram 2.49, trigram 2.05,
4-gram 1.76, 5-gram 1.65 nats/char.

References: D. Jurafsky and J. H. Martin, *Speech and Language Processing* (3rd ed. draft), ch. 3
"N-gram Language Models" (§3.6, smoothing: Laplace and add-k); S. F. Chen and J. Goodman, "An empirical
study of smoothing techniques for language modeling", Computer Speech & Language 13(4), 1999 (add-k and
its stronger alternatives compared).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.corpus import load_shakespeare
from shared.data import get_batch, train_val_split
from shared.tokenizers import CharTokenizer
from shared.utils import atomic_write_text, default_cache_dir, is_int

__all__ = [
    "DEFAULT_ORDERS",
    "K_GRID",
    "HOLDOUT_FRACTION",
    "NgramScore",
    "NgramModel",
    "fit_ngram",
    "ngram_baselines",
    "text_baselines",
    "corpus_baselines",
    "ContextCurve",
    "context_curve",
    "report",
]

#: Unigram to 5-gram.
DEFAULT_ORDERS: tuple[int, ...] = (1, 2, 3, 4, 5)
#: The add-k values tried for each order (the best on the held-out training slice is kept).
K_GRID: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0)
#: The last fraction of the training ids held out to choose k.
HOLDOUT_FRACTION = 0.1
#: Highest order accepted (codes are base-V integers in int64, so V**order must also stay below 2**62).
MAX_ORDER = 8

_CODE_VERSION = 1  # bump when the baselines would come out differently for the same text


@dataclass(frozen=True)
class NgramScore:
    """One n-gram baseline: its ``order``, validation ``nats_per_char``, the chosen ``k`` and how many
    validation characters were scored (``n_scored``: all but the first ``order - 1``)."""

    order: int
    nats_per_char: float
    k: float
    n_scored: int


# ---------------------------------------------------------------------------------------------
# n-gram baselines
# ---------------------------------------------------------------------------------------------


def _as_ids(owner: str, name: str, ids: Any, vocab_size: int) -> np.ndarray:
    """1-D int64 array of ids in [0, vocab_size), or a ValueError that names what is wrong."""
    if isinstance(ids, torch.Tensor):
        ids = ids.detach().cpu().numpy()
    array = np.asarray(ids)
    if array.ndim != 1:
        raise ValueError(f"{owner}: {name} must be a 1-D sequence of token ids, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{owner}: {name} must hold integer token ids, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if array.size and (array.min() < 0 or array.max() >= vocab_size):
        raise ValueError(
            f"{owner}: {name} holds ids from {array.min()} to {array.max()}; "
            f"every id must be in [0, vocab_size={vocab_size})"
        )
    return array


def _check_orders(owner: str, orders: Any, vocab_size: int) -> tuple[int, ...]:
    if isinstance(orders, (str, bytes)) or not isinstance(orders, Sequence) or len(orders) == 0:
        raise ValueError(f"{owner}: orders={orders!r} must be a non-empty sequence of ints")
    for n in orders:
        if not is_int(n) or not 1 <= n <= MAX_ORDER:
            raise ValueError(
                f"{owner}: orders={orders!r} holds {n!r}; each order must be an int in 1..{MAX_ORDER}"
            )
        if vocab_size**n >= 2**62:
            raise ValueError(
                f"{owner}: order {n} with vocab_size={vocab_size} gives n-gram codes up to "
                f"{vocab_size}**{n}, which must stay below 2**62 (int64)"
            )
    if len(set(orders)) != len(orders):
        raise ValueError(f"{owner}: orders={orders!r} must not repeat an order")
    return tuple(sorted(orders))


def _ngram_codes(ids: np.ndarray, order: int, vocab_size: int) -> np.ndarray:
    """(N - order + 1,) int64: the n-gram ending at each position ``t >= order - 1`` as a base-V integer,
    ``ids[t - order + 1] · V^(order-1) + … + ids[t]`` (Horner's rule)."""
    m = len(ids) - order + 1
    codes = ids[:m].copy()
    for j in range(1, order):
        codes = codes * vocab_size + ids[j : j + m]
    return codes


@dataclass(frozen=True)
class _Counts:
    """Sorted unique n-gram codes with their counts, and the same for their contexts (code // V)."""

    grams: np.ndarray  # (U,) sorted
    gram_counts: np.ndarray  # (U,)
    contexts: np.ndarray  # (H,) sorted
    context_counts: np.ndarray  # (H,) number of n-grams that start with each context


def _count(ids: np.ndarray, order: int, vocab_size: int) -> _Counts:
    grams, gram_counts = np.unique(_ngram_codes(ids, order, vocab_size), return_counts=True)
    context_of = grams // vocab_size  # (U,) sorted, since grams are
    starts = np.flatnonzero(np.r_[True, context_of[1:] != context_of[:-1]])  # (H,) first gram of each context
    return _Counts(grams, gram_counts, context_of[starts], np.add.reduceat(gram_counts, starts))


def _lookup(keys: np.ndarray, counts: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """counts[keys == q] for each query, 0 where the key is absent (keys sorted)."""
    at = np.minimum(np.searchsorted(keys, queries), len(keys) - 1)  # (M,)
    return np.where(keys[at] == queries, counts[at], 0)


def _nats(counts: _Counts, ids: np.ndarray, order: int, vocab_size: int, ks: Sequence[float]) -> np.ndarray:
    """(len(ks),) mean −log P over the positions of ``ids`` with a full context, for each k."""
    queries = _ngram_codes(ids, order, vocab_size)  # (M,)
    c_gram = _lookup(counts.grams, counts.gram_counts, queries).astype(np.float64)  # (M,) C(h c)
    c_context = _lookup(counts.contexts, counts.context_counts, queries // vocab_size).astype(np.float64)
    return np.array([-np.mean(np.log(c_gram + k) - np.log(c_context + k * vocab_size)) for k in ks])


@dataclass(frozen=True, eq=False)
class NgramModel:
    """An add-k n-gram model fitted by :func:`fit_ngram`; :meth:`nats` scores any ids with it.

    Use it to score text a model *wrote* (e.g. samples) under a count-based model of the training text,
    with the ``k`` that :func:`ngram_baselines` chose (``NgramScore.k``).
    """

    order: int
    k: float
    vocab_size: int
    _counts: _Counts

    def nats(self, ids: Any) -> np.ndarray:
        """(len(ids) − order + 1,) −log P of each position of ``ids`` that has a full context."""
        array = _as_ids("NgramModel.nats", "ids", ids, self.vocab_size)
        if len(array) < self.order:
            raise ValueError(f"NgramModel.nats: len(ids)={len(array)} must be >= order={self.order}")
        queries = _ngram_codes(array, self.order, self.vocab_size)  # (M,)
        counts = self._counts
        c_gram = _lookup(counts.grams, counts.gram_counts, queries).astype(np.float64)  # (M,)
        c_context = _lookup(counts.contexts, counts.context_counts, queries // self.vocab_size)
        return -(np.log(c_gram + self.k) - np.log(c_context.astype(np.float64) + self.k * self.vocab_size))


def fit_ngram(train_ids: Any, vocab_size: int, order: int, k: float) -> NgramModel:
    """The add-k n-gram model of ``order`` with smoothing ``k`` (> 0) counted on ``train_ids``."""
    if not is_int(vocab_size) or vocab_size < 1:
        raise ValueError(f"fit_ngram: vocab_size={vocab_size!r} must be an int >= 1")
    (order,) = _check_orders("fit_ngram", [order], vocab_size)
    if not isinstance(k, (int, float)) or isinstance(k, bool) or not (math.isfinite(k) and k > 0):
        raise ValueError(f"fit_ngram: k={k!r} must be a finite number > 0")
    train = _as_ids("fit_ngram", "train_ids", train_ids, vocab_size)
    if len(train) < order:
        raise ValueError(f"fit_ngram: len(train_ids)={len(train)} must be >= order={order}")
    return NgramModel(order, float(k), vocab_size, _count(train, order, vocab_size))


def ngram_baselines(
    train_ids: Any,
    val_ids: Any,
    vocab_size: int,
    orders: Sequence[int] = DEFAULT_ORDERS,
) -> dict[int, NgramScore]:
    """Add-k n-gram models fitted on ``train_ids``, scored on ``val_ids``: ``{order: NgramScore}``.

    ``train_ids`` / ``val_ids``: 1-D ids (list, numpy array or tensor) in ``[0, vocab_size)``. For each
    order, k is the best of :data:`K_GRID` on the last :data:`HOLDOUT_FRACTION` of ``train_ids`` (counts
    from the rest), then the counts are refitted on all of ``train_ids``; ``val_ids`` never influence k.
    See the module docstring for the formula and the scored positions. Not cached (see
    :func:`text_baselines`).
    """
    if not is_int(vocab_size) or vocab_size < 1:
        raise ValueError(f"ngram_baselines: vocab_size={vocab_size!r} must be an int >= 1")
    orders = _check_orders("ngram_baselines", orders, vocab_size)
    train = _as_ids("ngram_baselines", "train_ids", train_ids, vocab_size)
    val = _as_ids("ngram_baselines", "val_ids", val_ids, vocab_size)
    n_holdout = int(len(train) * HOLDOUT_FRACTION)
    top = orders[-1]
    if len(train) - n_holdout < top or n_holdout < top:
        raise ValueError(
            f"ngram_baselines: len(train_ids)={len(train)} is too short for order {top}: both the fitting "
            f"part and the held-out last {HOLDOUT_FRACTION:.0%} (used to choose k) need >= {top} ids"
        )
    if len(val) < top:
        raise ValueError(f"ngram_baselines: len(val_ids)={len(val)} must be >= the highest order {top}")
    fit, held_out = train[: len(train) - n_holdout], train[len(train) - n_holdout :]
    scores = {}
    for n in orders:
        held_out_nats = _nats(_count(fit, n, vocab_size), held_out, n, vocab_size, K_GRID)
        k = K_GRID[int(np.argmin(held_out_nats))]
        (val_nats,) = _nats(_count(train, n, vocab_size), val, n, vocab_size, [k])
        scores[n] = NgramScore(order=n, nats_per_char=float(val_nats), k=k, n_scored=len(val) - n + 1)
    return scores


# ---------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path, key: dict[str, Any], orders: tuple[int, ...]) -> dict[int, NgramScore] | None:
    """The cached scores if ``path`` holds them for exactly ``key`` and passes its checksum, else None."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        if stored["key"] != key or stored["sha256"] != _digest(stored["scores"]):
            raise ValueError("its key or checksum does not match")
        scores = {int(s["order"]): NgramScore(**s) for s in stored["scores"]}
        finite = all(math.isfinite(s.nats_per_char) for s in scores.values())
        if tuple(sorted(scores)) != orders or not finite:
            raise ValueError("its orders or values are not the expected ones")
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as err:
        warnings.warn(f"n-gram baseline cache {path} is unusable ({err}); recomputing", stacklevel=3)
        return None
    return scores


def text_baselines(
    text: str,
    val_fraction: float = 0.1,
    orders: Sequence[int] = DEFAULT_ORDERS,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
) -> dict[int, NgramScore]:
    """:func:`ngram_baselines` for ``text`` split by ``train_val_split(text, val_fraction)`` and encoded with
    ``CharTokenizer.from_text(text)``, cached in ``cache_dir`` (default :func:`default_cache_dir`).

    The cache file ``ngram_baselines_<hash>.json`` is keyed by a hash of the text, the split, the
    tokenizer's characters, the orders, :data:`K_GRID`, :data:`HOLDOUT_FRACTION` and the code version;
    it is written atomically and verified on read (key and sha256 of the scores): a corrupted or
    mismatched file is recomputed and overwritten. ``refresh=True`` recomputes regardless.
    """
    if not isinstance(text, str):
        raise ValueError(f"text_baselines: text must be a str, got {type(text).__name__}")
    if not isinstance(refresh, bool):
        raise ValueError(f"text_baselines: refresh={refresh!r} must be True or False")
    tok = CharTokenizer.from_text(text)
    orders = _check_orders("text_baselines", orders, tok.vocab_size)
    key = {
        "code_version": _CODE_VERSION,
        "text_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
        "val_fraction": val_fraction,
        "chars": "".join(tok.chars),
        "orders": list(orders),
        "k_grid": list(K_GRID),
        "holdout_fraction": HOLDOUT_FRACTION,
    }
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / f"ngram_baselines_{_digest(key)[:16]}.json"
    if not refresh and (cached := _read_cache(path, key, orders)) is not None:
        return cached
    train_text, val_text = train_val_split(text, val_fraction)
    scores = ngram_baselines(tok.encode(train_text), tok.encode(val_text), tok.vocab_size, orders)
    rows = [asdict(s) for s in scores.values()]
    atomic_write_text(path, json.dumps({"key": key, "scores": rows, "sha256": _digest(rows)}, indent=1))
    return scores


def corpus_baselines(
    orders: Sequence[int] = DEFAULT_ORDERS,
    cache_dir: str | os.PathLike[str] | None = None,
    refresh: bool = False,
) -> dict[int, NgramScore]:
    """The n-gram baselines for the project's standard split: ``text_baselines(load_shakespeare())``.

    69 symbols, 4.30 M training / 0.48 M validation characters. About 2.5 s on one core the first time
    (measured on the 2-core test machine, plus 0.4 s to render the corpus if no cell has yet), then read
    from the cache in under 0.1 s. Add-k depends on V: with the 104-symbol vocabulary of
    :func:`shared.pretrained.base_tokenizer` (35 symbols never seen) the same split gives 4-gram 1.77 and
    5-gram 1.68 instead of 1.76 and 1.65 (measured); the 69-symbol numbers are the ones to quote.
    """
    return text_baselines(load_shakespeare(), 0.1, orders, cache_dir, refresh)


# ---------------------------------------------------------------------------------------------
# The context curve
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ContextCurve:
    """Per-window, per-position validation cross-entropy of a model, from :func:`context_curve`.

    ``per_window[w, t]`` (nats) is the loss of predicting character ``t + 1`` of window ``w`` from the
    ``t + 1`` characters before it, so position ``t`` has ``t + 1`` characters of context.
    """

    per_window: np.ndarray  # (W, T)

    @property
    def block_size(self) -> int:
        return int(self.per_window.shape[1])

    @property
    def loss(self) -> np.ndarray:
        """(T,) mean loss at each position over the windows."""
        return self.per_window.mean(axis=0)

    @property
    def mean(self) -> float:
        """Mean loss over every position of every window: the usual validation loss."""
        return float(self.per_window.mean())

    def _check_context(self, name: str, chars: int) -> None:
        if not is_int(chars) or not 1 <= chars <= self.block_size:
            raise ValueError(
                f"ContextCurve: {name}={chars!r} must be an int in 1..block_size={self.block_size}"
            )

    def at(self, context_chars: int) -> float:
        """Mean loss at the position with exactly ``context_chars`` characters of context."""
        self._check_context("context_chars", context_chars)
        return float(self.loss[context_chars - 1])

    def beyond(self, context_chars: int) -> float:
        """Mean loss over the positions with ``>= context_chars`` characters of context."""
        self._check_context("context_chars", context_chars)
        return float(self.per_window[:, context_chars - 1 :].mean())

    def gain(self, short: int = 3, long: int = 8) -> tuple[float, float]:
        """(gain, standard error): loss with exactly ``short`` characters of context minus the mean loss
        with ``>= long`` characters, per window then averaged; the error is std / sqrt(W) of that paired
        difference over windows."""
        self._check_context("short", short)
        self._check_context("long", long)
        if long <= short:
            raise ValueError(f"ContextCurve.gain: long={long} must be greater than short={short}")
        diff = self.per_window[:, short - 1] - self.per_window[:, long - 1 :].mean(axis=1)  # (W,)
        stderr = float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")
        return float(diff.mean()), stderr


def _check_positive(name: str, value: Any) -> None:
    if not is_int(value) or value < 1:
        raise ValueError(f"context_curve: {name}={value!r} must be an int >= 1")


@torch.no_grad()
def context_curve(
    model: nn.Module,
    val_ids: Any,
    block_size: int,
    n_windows: int = 2048,
    batch_size: int = 64,
    seed: int = 0,
) -> ContextCurve:
    """A model's validation loss by position in the window (see :class:`ContextCurve`).

    ``model(idx)`` must return ``(logits (B, T, V), anything)``. ``n_windows`` windows of ``block_size``
    ids are drawn from ``val_ids`` (1-D ids) at random offsets by a ``torch.Generator`` seeded with
    ``seed`` (the same windows for every model given the same seed and length), in batches of
    ``batch_size``, on the model's device, in eval mode and without gradients; the model's train/eval
    mode is put back afterwards.

    The default 2048 windows put the standard error of :meth:`ContextCurve.gain` near 0.03 nats for the
    base model of :mod:`shared.pretrained` (measured: 0.04 at 1024 windows, 0.02 at 4096); the curve takes
    about 1.5 s for that model on the 2-core test machine.
    """
    _check_positive("block_size", block_size)
    _check_positive("n_windows", n_windows)
    _check_positive("batch_size", batch_size)
    if not is_int(seed):
        raise ValueError(f"context_curve: seed={seed!r} must be an int")
    data = torch.as_tensor(_as_ids("context_curve", "val_ids", val_ids, np.iinfo(np.int64).max))  # (N,)
    if len(data) <= block_size:
        raise ValueError(
            f"context_curve: len(val_ids)={len(data)} must be > block_size={block_size} "
            "(each window needs one more id for its last target)"
        )
    device = next(model.parameters(), torch.empty(0)).device
    generator = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for done in range(0, n_windows, batch_size):
            b = min(batch_size, n_windows - done)
            x, y = get_batch(data, block_size, b, generator=generator, device=device)  # (b, T) each
            logits = model(x)[0]  # (b, T, V)
            loss = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="none")  # (b·T,)
            rows.append(loss.view(b, block_size).cpu().double().numpy())
    finally:
        model.train(was_training)
    return ContextCurve(np.concatenate(rows))  # (W, T)


# ---------------------------------------------------------------------------------------------
# The report line
# ---------------------------------------------------------------------------------------------


def report(
    model_name: str,
    val_loss: float,
    curve: ContextCurve,
    baselines: dict[int, NgramScore],
) -> str:
    """One line: the model's validation loss beside the n-gram baselines, whether it beats the trigram,
    and its gain from context beyond 3 characters (:meth:`ContextCurve.gain` with short=3, long=8).

    e.g. ``base: val 2.07 nats/char | n-gram 1:3.30 2:2.49 3:2.05 4:1.76 5:1.65 | beats 3-gram: no |
    context gain beyond 3 chars: 0.12 ± 0.02 nats (loss with 3 chars 2.20 → 2.08 with ≥ 8)``.
    """
    if not isinstance(val_loss, (int, float)) or isinstance(val_loss, bool) or not math.isfinite(val_loss):
        raise ValueError(f"report: val_loss={val_loss!r} must be a finite number (nats/char)")
    if 3 not in baselines:
        raise ValueError(f"report: baselines has orders {sorted(baselines)}; it needs order 3 (the trigram)")
    if curve.block_size < 8:
        raise ValueError(
            f"report: the curve's block_size={curve.block_size} must be >= 8 to measure the gain"
        )
    ngrams = " ".join(f"{n}:{baselines[n].nats_per_char:.2f}" for n in sorted(baselines))
    beats = "yes" if val_loss < baselines[3].nats_per_char else "no"
    gain, stderr = curve.gain(3, 8)
    return (
        f"{model_name}: val {val_loss:.2f} nats/char | n-gram {ngrams} | beats 3-gram: {beats} | "
        f"context gain beyond 3 chars: {gain:.2f} ± {stderr:.2f} nats "
        f"(loss with 3 chars {curve.at(3):.2f} → {curve.beyond(8):.2f} with ≥ 8)"
    )
