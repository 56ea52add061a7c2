"""Device choice, seeding, threads, timing and memory: the first cell of every notebook.

* :func:`get_device` picks CUDA, then Apple MPS, then the CPU; ``HARDWAY_DEVICE=cpu`` forces a choice.
  It is the one device resolver: ``shared.train.train`` (``TrainConfig(device="auto")``) and
  ``shared.sweep`` call it, so ``HARDWAY_DEVICE`` steers training too.
* :func:`seed_everything` seeds Python, NumPy and torch (CPU and CUDA) and hands back a generator.
* :func:`set_threads` sets torch's intra-op thread count from ``HARDWAY_THREADS``/``OMP_NUM_THREADS``.
* :func:`time_median` and :func:`compare_timings` time code the way benchmarks should be timed on a
  noisy shared machine: warm-up runs first, the median of several runs (robust to a stray slow
  run), candidates interleaved run by run so that a burst of background load hits all of them,
  and ratios to a baseline rather than absolute times. GPU work is asynchronous, so the clock is
  read only after ``torch.cuda.synchronize()`` (PyTorch docs, "CUDA semantics: asynchronous
  execution").
* :func:`peak_memory` and :class:`MemoryTracker` report CPU resident memory and CUDA allocator peaks.
* :func:`needs_cuda` is the convention for CUDA-only notebook cells::

      if needs_cuda("bf16 timings"):
          ...  # on a CPU-only machine this prints "skipped: needs CUDA (bf16 timings)"

* :func:`describe_device` gives one line to paste into a bug report.
"""

from __future__ import annotations

import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import numpy as np
import torch

__all__ = [
    "MemoryTracker",
    "TimingComparison",
    "TimingResult",
    "available_devices",
    "compare_timings",
    "describe_device",
    "get_device",
    "is_device_spec",
    "needs_cuda",
    "peak_memory",
    "current_rss_mib",
    "seed_everything",
    "set_threads",
    "time_median",
]

_MIB = 2**20
_DEVICE_SPEC = re.compile(r"(?P<type>cuda|mps|cpu)(?::(?P<index>\d+))?")


# ---------------------------------------------------------------------------------------------
# Device choice
# ---------------------------------------------------------------------------------------------


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The devices this process can use, best first: e.g. ``["cuda:0", "cpu"]``."""
    found: list[str] = []
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cuda:0"]
    if _mps_available():
        found.append("mps")
    found.append("cpu")
    return found


def is_device_spec(spec: object) -> bool:
    """Whether ``spec`` is a device spelling :func:`get_device` accepts (availability aside).

    ``"auto"``, ``"cpu"``, ``"mps"``, ``"cuda"`` or ``"cuda:<index>"``, any case, surrounding spaces
    ignored; a ``torch.device`` always is one. For validating a config before the machine is known.
    """
    if isinstance(spec, torch.device):
        return True
    if not isinstance(spec, str):
        return False
    text = spec.strip().lower()
    return text == "auto" or _DEVICE_SPEC.fullmatch(text) is not None


def get_device(prefer: str | torch.device | None = None) -> torch.device:
    """The device to compute on: ``prefer`` if given, else ``$HARDWAY_DEVICE``, else the best available.

    "Best available" is CUDA, then MPS (Apple silicon), then CPU. ``prefer`` and the environment
    variable accept ``"cuda"``, ``"cuda:1"``, ``"mps"``, ``"cpu"`` or ``"auto"``; set
    ``HARDWAY_DEVICE=cpu`` to run a CUDA machine's notebooks on the CPU. ``prefer="auto"`` means
    the same as no preference (``$HARDWAY_DEVICE`` if set, else the best available), so that
    ``TrainConfig(device="auto")`` honours the environment; an explicit device wins over it.

    Raises:
        ValueError: the request is not one of the accepted spellings.
        RuntimeError: the requested device is not available here (the message lists what is).
    """
    source = "prefer"
    if prefer is None or (isinstance(prefer, str) and prefer.strip().lower() == "auto"):
        env = os.environ.get("HARDWAY_DEVICE", "").strip()
        prefer, source = (env, "HARDWAY_DEVICE") if env else ("auto", "auto")
    spec = str(prefer).strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    m = _DEVICE_SPEC.fullmatch(spec)
    if m is None:
        raise ValueError(
            f"get_device: {source}={prefer!r} is not a device; "
            "use 'auto', 'cuda', 'cuda:<index>', 'mps' or 'cpu'"
        )
    kind, index = m["type"], m["index"]
    available = {
        "cuda": torch.cuda.is_available() and (index is None or int(index) < torch.cuda.device_count()),
        "mps": _mps_available() and index in (None, "0"),
        "cpu": index in (None, "0"),
    }[kind]
    if not available:
        raise RuntimeError(
            f"get_device: {source}={prefer!r} is not available on this machine; "
            f"available: {', '.join(available_devices())}"
        )
    return torch.device(spec)


# ---------------------------------------------------------------------------------------------
# Seeds and threads
# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every CUDA device).

    Returns a fresh CPU ``torch.Generator`` seeded with ``seed``: pass it to data samplers so their
    stream does not depend on how many random numbers the model initialisation consumed. Seeding
    makes runs repeatable on one machine and software stack; GPU kernels may still be
    non-deterministic (see ``torch.use_deterministic_algorithms``).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed_everything: seed={seed!r} must be an int in [0, 2**32)")
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def _positive_int_from(value: Any, name: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ValueError(f"set_threads: {name}={value!r} must be a positive integer") from None
    if n < 1:
        raise ValueError(f"set_threads: {name}={value!r} must be a positive integer")
    return n


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op CPU threads and return the number used.

    ``n`` if given, else ``$HARDWAY_THREADS``, else ``$OMP_NUM_THREADS``, else the number of CPUs
    this process may run on (``os.sched_getaffinity`` where it exists, which respects container
    and ``taskset`` limits, else ``os.cpu_count()``).
    """
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"set_threads: n={n!r} must be a positive int or None")
        n = int(n)
    else:
        for var in ("HARDWAY_THREADS", "OMP_NUM_THREADS"):
            value = os.environ.get(var, "").strip()
            if value:
                n = _positive_int_from(value, var)
                break
        else:
            n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def _synchronize() -> None:
    """Wait for queued GPU work so that a clock reading includes it."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()
    if _mps_available():
        torch.mps.synchronize()


def _format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


@dataclass(frozen=True)
class TimingResult:
    """Wall-clock seconds of ``repeats`` timed calls (after ``warmup`` untimed ones)."""

    samples: tuple[float, ...]
    warmup: int

    @property
    def median(self) -> float:
        """Median seconds per call: robust to the odd run slowed by background load."""
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def repeats(self) -> int:
        return len(self.samples)

    def __str__(self) -> str:
        median, fastest = _format_seconds(self.median), _format_seconds(self.min)
        return f"median {median} over {self.repeats} runs (min {fastest})"


def _check_counts(owner: str, repeats: int, warmup: int) -> None:
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"{owner}: repeats={repeats!r} must be an int >= 1")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"{owner}: warmup={warmup!r} must be an int >= 0")


def _timed_call(fn: Callable[[], Any], sync: bool) -> float:
    if sync:
        _synchronize()
    start = time.perf_counter()
    fn()
    if sync:
        _synchronize()
    return time.perf_counter() - start


def time_median(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, sync: bool = True) -> TimingResult:
    """Call ``fn()`` ``warmup`` times untimed, then ``repeats`` times timed; return all samples.

    Warm-up absorbs one-off costs (allocator growth, kernel selection, lazy CUDA init). With
    ``sync=True`` queued GPU work is waited for before starting and before stopping the clock.
    """
    if not callable(fn):
        raise ValueError(f"time_median: fn={fn!r} must be callable with no arguments")
    _check_counts("time_median", repeats, warmup)
    for _ in range(warmup):
        fn()
    return TimingResult(samples=tuple(_timed_call(fn, sync) for _ in range(repeats)), warmup=warmup)


@dataclass(frozen=True)
class TimingComparison:
    """Side-by-side timings; ``ratios[name] = median(name) / median(baseline)``."""

    results: dict[str, TimingResult]
    baseline: str
    ratios: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        base = self.results[self.baseline].median
        ratios = {name: (r.median / base if base > 0 else float("inf")) for name, r in self.results.items()}
        object.__setattr__(self, "ratios", ratios)

    @property
    def medians(self) -> dict[str, float]:
        return {name: r.median for name, r in self.results.items()}

    def __str__(self) -> str:
        width = max(len(name) for name in self.results)
        return "\n".join(
            f"{name:<{width}}  {_format_seconds(r.median):>10}  {self.ratios[name]:6.2f}x {self.baseline}"
            for name, r in self.results.items()
        )


def compare_timings(
    fns: Mapping[str, Callable[[], Any]], repeats: int = 5, warmup: int = 1, sync: bool = True
) -> TimingComparison:
    """Time several candidates interleaved: repetition r runs every candidate once, then r + 1.

    The starting candidate rotates each repetition so none always runs first (right after another
    candidate has warmed or dirtied the caches). Ratios are to the first entry of ``fns``: on a
    shared 2-core machine absolute times drift by tens of percent, ratios measured side by side
    much less, so benchmarks should report ratios.
    """
    if not isinstance(fns, Mapping) or not fns:
        raise ValueError("compare_timings: fns must be a non-empty dict {name: callable}")
    for name, fn in fns.items():
        if not callable(fn):
            raise ValueError(f"compare_timings: fns[{name!r}]={fn!r} is not callable")
    _check_counts("compare_timings", repeats, warmup)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for k in range(len(names)):
            name = names[(r + k) % len(names)]
            samples[name].append(_timed_call(fns[name], sync))
    results = {name: TimingResult(samples=tuple(samples[name]), warmup=warmup) for name in names}
    return TimingComparison(results=results, baseline=names[0])


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def _vm_hwm_mib(status: str = "/proc/self/status") -> float | None:
    """``VmHWM`` from ``/proc/self/status`` (Linux), in MiB; ``None`` where there is no such file or line."""
    try:
        with open(status) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    value, unit = line.split()[1:3]
                    if unit == "kB":
                        return int(value) / 1024
    except (OSError, ValueError):
        pass
    return None


def _max_rss_mib() -> float | None:
    """Peak resident set size of this process so far, in MiB (``None`` where unsupported).

    Linux: the high-water mark of this process's own memory (``VmHWM``). ``getrusage``'s
    ``ru_maxrss`` is not used there, because Linux carries it across ``execve``: a program started by
    ``subprocess`` from a process holding 1 GB reports at least 1 GB, whatever it uses itself.
    Elsewhere (macOS) ``ru_maxrss``.
    """
    hwm = _vm_hwm_mib()
    if hwm is not None:
        return hwm
    try:
        import resource
    except ImportError:  # Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # getrusage(2): Linux reports ru_maxrss in KiB, macOS (darwin) in bytes.
    return rss / _MIB if sys.platform == "darwin" else rss / 1024


def current_rss_mib() -> float | None:
    """Resident set size now, in MiB: ``/proc/self/statm`` on Linux, else the peak as a fallback."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / _MIB
    except (OSError, ValueError, IndexError, AttributeError):
        return _max_rss_mib()


def peak_memory() -> dict[str, float | None]:
    """Peak memory so far in MiB: ``{"cpu_max_rss_mib": ..., "cuda_max_allocated_mib": ...}``.

    ``cpu_max_rss_mib`` is the process's high-water resident memory (everything: Python, torch,
    tensors). ``cuda_max_allocated_mib`` is the peak of memory held by tensors through PyTorch's
    CUDA caching allocator on the current device since start or the last
    ``torch.cuda.reset_peak_memory_stats()``; ``None`` without CUDA.
    """
    cuda = None
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        cuda = torch.cuda.max_memory_allocated() / _MIB
    return {"cpu_max_rss_mib": _max_rss_mib(), "cuda_max_allocated_mib": cuda}


class MemoryTracker:
    """Context manager measuring the memory one block of code needs.

    On a CUDA device: ``cuda_peak_mib`` is the allocator's peak during the block and
    ``cuda_delta_mib`` that peak minus what was allocated on entry (the block's own extra
    memory: activations, temporaries). Peak statistics are reset on entry.
    On every device: ``cpu_rss_delta_mib`` is resident memory after minus before (Linux reads the
    current RSS; elsewhere only the high-water mark is available, so the delta is 0 unless the
    block set a new peak).

    >>> with MemoryTracker() as mem:
    ...     x = torch.ones(1024, 1024)
    >>> mem.cpu_rss_delta_mib  # doctest: +SKIP
    4.0
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.cuda_peak_mib: float | None = None
        self.cuda_delta_mib: float | None = None
        self.cpu_rss_delta_mib: float | None = None
        self._cuda_start = 0
        self._rss_start: float | None = None

    def __enter__(self) -> MemoryTracker:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._cuda_start = torch.cuda.memory_allocated(self.device)
        self._rss_start = current_rss_mib()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
            self.cuda_peak_mib = peak / _MIB
            self.cuda_delta_mib = (peak - self._cuda_start) / _MIB
        end = current_rss_mib()
        if end is not None and self._rss_start is not None:
            self.cpu_rss_delta_mib = end - self._rss_start

    def __str__(self) -> str:
        parts = []
        if self.cuda_peak_mib is not None:
            parts.append(f"CUDA peak {self.cuda_peak_mib:.1f} MiB (+{self.cuda_delta_mib:.1f} MiB in block)")
        if self.cpu_rss_delta_mib is not None:
            parts.append(f"CPU RSS {self.cpu_rss_delta_mib:+.1f} MiB")
        return ", ".join(parts) or "no memory statistics available"


# ---------------------------------------------------------------------------------------------
# Notebook conventions
# ---------------------------------------------------------------------------------------------


def needs_cuda(what: str) -> bool:
    """Guard for CUDA-only notebook cells: True on CUDA, else print why the cell is skipped.

    Prints exactly ``skipped: needs CUDA (<what>)`` and returns False when CUDA is not available,
    or when ``HARDWAY_DEVICE`` forces a non-CUDA device, so a CPU run of a notebook never errors
    on a GPU-only cell::

        if needs_cuda("bf16 timings"):
            ...
    """
    if not isinstance(what, str) or not what.strip():
        raise ValueError(f"needs_cuda: what={what!r} must say what the cell needs CUDA for")
    forced = os.environ.get("HARDWAY_DEVICE", "").strip().lower()
    if torch.cuda.is_available() and (forced in ("", "auto") or forced.startswith("cuda")):
        return True
    print(f"skipped: needs CUDA ({what})")
    return False


def describe_device(device: torch.device | str | None = None) -> str:
    """One line describing the software and hardware, for notebook headers and bug reports.

    E.g. ``torch 2.13.0+cpu (CPU-only build) | device cpu: x86_64 | 2 threads | Python 3.11.9``.
    """
    device = get_device() if device is None else torch.device(device)
    if torch.version.cuda is not None:
        build = f"CUDA {torch.version.cuda} build"
    elif getattr(torch.version, "hip", None):
        build = f"ROCm {torch.version.hip} build"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_built():
        build = "MPS build"
    else:
        build = "CPU-only build"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = f"Apple MPS ({platform.machine()})"
    else:
        name = platform.processor() or platform.machine() or "unknown CPU"
    return (
        f"torch {torch.__version__} ({build}) | device {device}: {name} | "
        f"{torch.get_num_threads()} threads | Python {platform.python_version()}"
    )
