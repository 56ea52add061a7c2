"""Tokenizers: characters, bytes and byte-level BPE.

* :class:`CharTokenizer` — one id per character, as in nanoGPT's ``shakespeare_char``.
* :class:`ByteTokenizer` — the 256 UTF-8 byte values, as at the bottom of GPT-2's byte-level BPE
  (Radford et al. 2019, §2.2).
* :class:`BPETokenizer` — byte-level BPE (Sennrich et al. 2016; GPT-2's byte-level variant), the
  library version of what project 01's learner builds, for the benchmarks and later projects::

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
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import regex
import torch
from torch import Tensor

__all__ = [
    "CharTokenizer", "ByteTokenizer", "BPETokenizer",
    "GPT2_PATTERN", "GPT4_PATTERN", "pair_counts", "merge_pair", "train_bpe", "train_bpe_naive",
]

# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------


def _ids_to_list(ids: Sequence[int] | Tensor, owner: str) -> list[int]:
    if isinstance(ids, Tensor):
        if ids.dim() > 1:
            raise ValueError(f"{owner}.decode: expected a 1-D tensor of ids, got shape {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex():
            raise ValueError(f"{owner}.decode: expected an integer tensor, got dtype {ids.dtype}")
        return ids.reshape(-1).tolist()
    out = list(ids)
    for i in out:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise ValueError(f"{owner}.decode: ids must be ints, got {type(i).__name__} {i!r}")
    return [int(i) for i in out]


def _describe_unknown(chars: Iterable[str], limit: int = 10) -> str:
    unique = sorted(set(chars))
    shown = ", ".join(repr(c) for c in unique[:limit])
    more = f" and {len(unique) - limit} more" if len(unique) > limit else ""
    return f"{len(unique)} character(s) not in the vocabulary: {shown}{more}"


class CharTokenizer:
    """One token per character: ``encode("hi") == [stoi["h"], stoi["i"]]``.

    The vocabulary is an ordered list of distinct single characters; :meth:`from_text` sorts the
    characters of a text (so the same text always gives the same ids, as in nanoGPT's
    ``shakespeare_char/prepare.py``). By default a character outside the vocabulary is an error
    (a ``ValueError`` naming it), because silently mapping it somewhere hides bugs. Pass
    ``unk="?"`` (any single character) to map unknown characters to that character's id instead;
    it is added to the vocabulary if missing.
    """

    def __init__(self, chars: Iterable[str], unk: str | None = None) -> None:
        chars = list(chars)
        for c in chars:
            if not isinstance(c, str) or len(c) != 1:
                raise ValueError(f"CharTokenizer: chars must be single characters, got {c!r}")
        if len(set(chars)) != len(chars):
            duplicates = sorted({c for c in chars if chars.count(c) > 1})
            raise ValueError(f"CharTokenizer: chars must be distinct; repeated: {duplicates!r}")
        if unk is not None:
            if not isinstance(unk, str) or len(unk) != 1:
                raise ValueError(f"CharTokenizer: unk={unk!r} must be a single character or None")
            if unk not in chars:
                chars.append(unk)
        if not chars:
            raise ValueError("CharTokenizer: the vocabulary is empty; build it from a non-empty text")
        self.chars: list[str] = chars
        self.unk: str | None = unk
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}
        self.itos: list[str] = chars
        self._unk_id: int | None = None if unk is None else self.stoi[unk]
        codes = np.array([ord(c) for c in chars], dtype=np.int64)
        self._table = np.full(int(codes.max()) + 1, -1, dtype=np.int64)  # code point -> id, -1 unknown
        self._table[codes] = np.arange(len(chars), dtype=np.int64)

    @classmethod
    def from_text(cls, text: str, unk: str | None = None) -> CharTokenizer:
        """Vocabulary = the sorted distinct characters of ``text`` (plus ``unk`` if given)."""
        if not isinstance(text, str):
            raise ValueError(f"CharTokenizer.from_text: expected a str, got {type(text).__name__}")
        return cls(sorted(set(text) | ({unk} if isinstance(unk, str) else set())), unk=unk)

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size}, unk={self.unk!r})"

    def encode(self, text: str) -> list[int]:
        """``text`` -> list of ids, one per character."""
        if not isinstance(text, str):
            raise ValueError(f"CharTokenizer.encode: expected a str, got {type(text).__name__}")
        stoi = self.stoi
        try:
            return [stoi[c] for c in text]
        except KeyError:
            if self._unk_id is None:
                raise ValueError(
                    f"CharTokenizer.encode: {_describe_unknown(c for c in text if c not in stoi)} "
                    f"(vocab_size={self.vocab_size}); build the tokenizer from text that contains them, "
                    "or pass unk='?' to map unknown characters to one id"
                ) from None
            return [stoi.get(c, self._unk_id) for c in text]

    def encode_tensor(self, text: str, device: torch.device | str = "cpu") -> Tensor:
        """``text`` -> 1-D ``torch.long`` tensor, same ids as :meth:`encode`.

        Vectorised through a code-point lookup table, so the 4.8 M-character corpus encodes in a
        few tens of milliseconds instead of seconds.
        """
        if not isinstance(text, str):
            raise ValueError(f"CharTokenizer.encode_tensor: expected a str, got {type(text).__name__}")
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (n,) code points
        table = self._table  # code point -> id, -1 where unknown
        top = int(codes.max()) if len(codes) else 0
        if top >= len(table):  # a character beyond the vocabulary's highest code point: widen locally
            table = np.concatenate([table, np.full(top + 1 - len(table), -1, dtype=np.int64)])
        ids = table[codes]  # (n,) int64
        if len(ids) and ids.min() < 0:
            if self._unk_id is None:
                self.encode(text)  # raises the ValueError naming the unknown characters
            ids[ids < 0] = self._unk_id
        return torch.from_numpy(ids).to(device)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """List (or 1-D integer tensor) of ids -> text. Ids outside ``[0, vocab_size)`` are a ValueError."""
        ids = _ids_to_list(ids, "CharTokenizer")
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(
                f"CharTokenizer.decode: ids {sorted(set(bad))[:10]} are outside [0, {self.vocab_size})"
            )
        itos = self.itos
        return "".join(itos[i] for i in ids)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description; :meth:`from_dict` rebuilds an identical tokenizer."""
        return {"type": "CharTokenizer", "chars": list(self.chars), "unk": self.unk}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CharTokenizer:
        if d.get("type") != "CharTokenizer" or "chars" not in d:
            raise ValueError(
                f"CharTokenizer.from_dict: expected type='CharTokenizer' with 'chars', got keys {sorted(d)}"
            )
        return cls(d["chars"], unk=d.get("unk"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharTokenizer) and self.chars == other.chars and self.unk == other.unk

    __hash__ = None  # type: ignore[assignment]  # mutable lists inside; equality only


class ByteTokenizer:
    """UTF-8 bytes as tokens: 256 ids, no training, no unknown characters.

    ``encode`` is ``list(text.encode("utf-8"))``, so a non-ASCII character costs 2-4 tokens
    ("é" -> ``[195, 169]``). Not every id sequence is valid UTF-8 (a model can emit half a
    character), so ``decode`` uses ``errors="replace"``: each invalid byte sequence becomes
    U+FFFD "�" instead of raising. ``decode(encode(s)) == s`` for every Python string without
    lone surrogates.
    """

    vocab_size = 256

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return "ByteTokenizer(vocab_size=256)"

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise ValueError(f"ByteTokenizer.encode: expected a str, got {type(text).__name__}")
        return list(text.encode("utf-8"))

    def encode_tensor(self, text: str, device: torch.device | str = "cpu") -> Tensor:
        """``text`` -> 1-D ``torch.long`` tensor of byte values."""
        if not isinstance(text, str):
            raise ValueError(f"ByteTokenizer.encode_tensor: expected a str, got {type(text).__name__}")
        data = np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)  # (n_bytes,)
        return torch.from_numpy(data).to(device)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        ids = _ids_to_list(ids, "ByteTokenizer")
        bad = [i for i in ids if not 0 <= i < 256]
        if bad:
            raise ValueError(f"ByteTokenizer.decode: ids {sorted(set(bad))[:10]} are outside [0, 256)")
        return bytes(ids).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "ByteTokenizer"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ByteTokenizer:
        if d.get("type") != "ByteTokenizer":
            raise ValueError(f"ByteTokenizer.from_dict: expected type='ByteTokenizer', got {d.get('type')!r}")
        return cls()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteTokenizer)

    def __hash__(self) -> int:
        return hash("ByteTokenizer")


# ---------------------------------------------------------------------------------------------
# Byte-level BPE
# ---------------------------------------------------------------------------------------------

Pair = tuple[int, int]

# GPT-2's pre-tokenizer (Radford et al. 2019; the regex of its released encoder)
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (cl100k_base): case-insensitive contractions, digits in groups of at most three
GPT4_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""
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
        longest_first = sorted(self.special_tokens, key=len, reverse=True)
        self._special_re = (
            regex.compile("(" + "|".join(regex.escape(s) for s in longest_first) + ")")
            if self.special_tokens else None
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
            raise ValueError(
                f"token id {err.args[0]} is not in the vocabulary (0..{len(self.vocab) - 1})"
            ) from None
        return data.decode("utf-8", errors="replace")
