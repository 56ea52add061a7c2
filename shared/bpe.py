"""Byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level variant, Radford et al. 2019 §2.2).

The library version of what project 01's learner builds, for the benchmarks and later projects:

    tok = BPETokenizer.train(text, vocab_size=1000)      # GPT-2 pre-tokenizer by default
    ids = tok.encode("To be, or not to be")
    assert tok.decode(ids) == "To be, or not to be"

Training counts each distinct pre-tokenized chunk once (with its frequency) and, after each merge,
updates pair counts only in the chunks that held the merged pair, picking the next pair from a
lazy max-heap — instead of recounting every pair before every merge (``train_bpe_naive``, kept as
the baseline). Ties go to the smallest pair, so both trainers learn identical merges.
"""

from __future__ import annotations

import collections
import heapq
from collections.abc import Iterable

import regex

__all__ = [
    "GPT2_PATTERN", "GPT4_PATTERN", "pair_counts", "merge_pair", "train_bpe", "train_bpe_naive", "BPETokenizer",
]

Pair = tuple[int, int]

# GPT-2's pre-tokenizer (Radford et al. 2019; the regex of its released encoder)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (cl100k_base): case-insensitive contractions, digits in groups of at most three
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
)


def pair_counts(ids: list[int]) -> collections.Counter[Pair]:
    """{(a, b): occurrences of a followed by b}; overlapping pairs all count."""
    return collections.Counter(zip(ids, ids[1:], strict=False))


def merge_pair(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace non-overlapping occurrences of ``pair``, left to right, by ``new_id`` (a new list)."""
    a, b = pair
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def _check_vocab_size(vocab_size: int) -> None:
    if not isinstance(vocab_size, int) or isinstance(vocab_size, bool) or vocab_size < 256:
        raise ValueError(f"vocab_size={vocab_size!r} must be an int >= 256 (the 256 byte values come first)")


def _words(text: str, pattern: str | None) -> tuple[list[list[int]], list[int]]:
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    chunks = collections.Counter([text] if pattern is None else regex.findall(pattern, text))
    return [list(c.encode("utf-8")) for c in chunks], list(chunks.values())


def train_bpe(text: str, vocab_size: int, pattern: str | None = GPT2_PATTERN) -> dict[Pair, int]:
    """Merges {(a, b): new_id} (ids 256, 257, ... in learning order) for a ``vocab_size`` vocabulary.

    pattern: the pre-tokenizer regex whose chunks merges never cross (None: the text is one chunk).
    Stops early when no pair is left.
    """
    _check_vocab_size(vocab_size)
    words, freqs = _words(text, pattern)
    counts: dict[Pair, int] = collections.defaultdict(int)  # pair -> occurrences in the whole text
    holders: dict[Pair, set[int]] = collections.defaultdict(set)  # pair -> chunks that (may) hold it
    for w, ids in enumerate(words):
        for pair, n in pair_counts(ids).items():
            counts[pair] += n * freqs[w]
            holders[pair].add(w)
    heap = [(-n, pair) for pair, n in counts.items()]  # min-heap: highest count, then smallest pair
    heapq.heapify(heap)

    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        while heap and counts.get(heap[0][1], 0) != -heap[0][0]:
            heapq.heappop(heap)  # stale: the pair's count changed after this entry was pushed
        if not heap:
            break
        pair = heapq.heappop(heap)[1]
        merges[pair] = new_id
        touched: set[Pair] = set()
        for w in holders.pop(pair):
            old = words[w]
            new = merge_pair(old, pair, new_id)
            if len(new) == len(old):
                continue  # an earlier merge already consumed the pair in this chunk
            f = freqs[w]
            for p, n in pair_counts(old).items():
                counts[p] -= n * f
                touched.add(p)
            for p, n in pair_counts(new).items():
                counts[p] += n * f
                holders[p].add(w)
                touched.add(p)
            words[w] = new
        for p in touched:
            if counts[p] > 0:
                heapq.heappush(heap, (-counts[p], p))
            else:
                del counts[p]
    return merges


def train_bpe_naive(text: str, vocab_size: int, pattern: str | None = GPT2_PATTERN) -> dict[Pair, int]:
    """The baseline: recount every pair of every chunk before each merge. Same merges as ``train_bpe``."""
    _check_vocab_size(vocab_size)
    words, freqs = _words(text, pattern)
    merges: dict[Pair, int] = {}
    for new_id in range(256, vocab_size):
        counts: collections.Counter[Pair] = collections.Counter()
        for ids, f in zip(words, freqs, strict=True):
            for pair, n in pair_counts(ids).items():
                counts[pair] += n * f
        if not counts:
            break
        pair = min(counts, key=lambda p: (-counts[p], p))
        merges[pair] = new_id
        words = [merge_pair(ids, pair, new_id) for ids in words]
    return merges


class BPETokenizer:
    """Pre-tokenize with ``pattern``, apply merges by rank per chunk (cached), decode bytes once as UTF-8."""

    def __init__(self, merges: dict[Pair, int], pattern: str | None = GPT2_PATTERN,
                 special_tokens: Iterable[str] = ()) -> None:
        self.merges = dict(merges)
        expected = list(range(256, 256 + len(self.merges)))
        if sorted(self.merges.values()) != expected:
            raise ValueError("merges must map pairs to the ids 256, 257, ... with no gaps")
        self.pattern = pattern
        self.vocab = {i: bytes([i]) for i in range(256)}
        for (a, b), new_id in sorted(self.merges.items(), key=lambda item: item[1]):
            if a not in self.vocab or b not in self.vocab:
                raise ValueError(f"merge {(a, b)} -> {new_id} uses an id not defined before it")
            self.vocab[new_id] = self.vocab[a] + self.vocab[b]
        first = 256 + len(self.merges)
        self.special_tokens = {s: first + i for i, s in enumerate(special_tokens)}
        for s, i in self.special_tokens.items():
            self.vocab[i] = s.encode("utf-8")
        self._special_re = (
            regex.compile("(" + "|".join(regex.escape(s) for s in sorted(self.special_tokens, key=len, reverse=True))
                          + ")") if self.special_tokens else None
        )
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str | None = GPT2_PATTERN,
              special_tokens: Iterable[str] = ()) -> BPETokenizer:
        return cls(train_bpe(text, vocab_size, pattern), pattern, special_tokens)

    def __len__(self) -> int:
        return len(self.vocab)

    def _encode_chunk(self, chunk: str) -> list[int]:
        ids = list(chunk.encode("utf-8"))
        while len(ids) >= 2:
            ranked = [(self.merges.get(p), p) for p in zip(ids, ids[1:], strict=False)]
            best = min((r for r in ranked if r[0] is not None), default=None)
            if best is None:
                break
            ids = merge_pair(ids, best[1], best[0])
        return ids

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"encode needs a str, got {type(text).__name__}")
        pieces = self._special_re.split(text) if self._special_re else [text]
        ids: list[int] = []
        for k, piece in enumerate(pieces):
            if k % 2 == 1:  # a special token, kept whole by the capture group
                ids.append(self.special_tokens[piece])
                continue
            for chunk in ([piece] if self.pattern is None else regex.findall(self.pattern, piece)):
                if chunk not in self._cache:
                    self._cache[chunk] = self._encode_chunk(chunk)
                ids.extend(self._cache[chunk])
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        try:
            data = b"".join(self.vocab[int(i)] for i in ids)
        except KeyError as err:
            raise ValueError(f"token id {err.args[0]} is not in the vocabulary (0..{len(self.vocab) - 1})") from None
        return data.decode("utf-8", errors="replace")
