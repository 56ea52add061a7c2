"""Small utilities every module shares: type guards, the cache folder, atomic file writes, TODO markers.

Each lives here once. A file that a reader may find half-written (a checkpoint, a starter notebook, a
figure, a sweep's results, a download) is written through :func:`atomic_path`.
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "is_int", "is_real", "default_cache_dir", "atomic_path", "atomic_write_bytes", "atomic_write_text",
    "TODO_LABEL", "TODO_NUMBER", "CHECK_PASSED",
]

# The TODO conventions, in one place: a "# TODO n: task" line above each solution region, "TODO n" in the
# starter's NotImplementedError and in every check message, and a check's "✅ TODO n name: ..." pass line.
TODO_LABEL = re.compile(r"^\s*# TODO (\d+): (.+?)\s*$", re.M)
TODO_NUMBER = re.compile(r"TODO (\d+)")
CHECK_PASSED = re.compile(r"^✅ TODO (\d+) (.*)$", re.M)


def is_int(x: object) -> bool:
    """True for an ``int`` that is not a ``bool`` (``True`` is an int in Python, but never a size)."""
    return isinstance(x, int) and not isinstance(x, bool)


def is_real(x: object) -> bool:
    """True for a finite int or float that is not a ``bool``."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def default_cache_dir() -> Path:
    """Where downloads and trained models are cached.

    ``$HARDWAY_CACHE`` if set, else ``~/.cache/llm-hard-way``.
    """
    env = os.environ.get("HARDWAY_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "llm-hard-way"


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = ".tmp", mode: int = 0o644) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; write the file there. On a clean exit it is fsync'ed,
    given permissions ``mode`` and renamed over ``path`` (``os.replace``, atomic on POSIX and Windows),
    so a reader sees the old file or the new one, never half of either. On an exception — raise one to
    reject what was written, e.g. a download whose hash is wrong — the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600; these are ordinary, shareable files
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
