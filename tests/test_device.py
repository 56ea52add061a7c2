"""Tests for shared/device.py: device choice, seeding, threads, timing, memory, notebook guards."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from shared import device as dev
from shared.device import (
    MemoryTracker,
    compare_timings,
    describe_device,
    get_device,
    is_device_spec,
    needs_cuda,
    peak_memory,
    seed_everything,
    set_threads,
    time_median,
)


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch):
    """Pretend the machine has exactly the accelerators a test asks for."""
    monkeypatch.delenv("HARDWAY_DEVICE", raising=False)

    def fake(cuda: int = 0, mps: bool = False) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return fake


# ---------------------------------------------------------------------------------------------
# get_device
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cuda", "mps", "expected"),
    [(1, True, "cuda"), (0, True, "mps"), (0, False, "cpu")],
)
def test_get_device_prefers_cuda_then_mps_then_cpu(machine, cuda: int, mps: bool, expected: str) -> None:
    machine(cuda=cuda, mps=mps)
    assert get_device() == torch.device(expected)
    assert get_device("auto") == torch.device(expected)


def test_hardway_device_env_overrides_the_automatic_choice(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(cuda=1, mps=True)
    monkeypatch.setenv("HARDWAY_DEVICE", " CPU ")
    assert get_device() == torch.device("cpu")
    monkeypatch.setenv("HARDWAY_DEVICE", "mps")
    assert get_device() == torch.device("mps")
    monkeypatch.setenv("HARDWAY_DEVICE", "auto")
    assert get_device() == torch.device("cuda")


def test_auto_means_no_preference_so_the_environment_steers_it(machine, monkeypatch) -> None:
    machine(cuda=1, mps=True)
    monkeypatch.setenv("HARDWAY_DEVICE", "cpu")
    assert get_device("auto") == torch.device("cpu")  # what TrainConfig(device="auto") asks for
    assert get_device(" AUTO ") == torch.device("cpu")
    monkeypatch.setenv("HARDWAY_DEVICE", "tpu")
    with pytest.raises(ValueError, match="HARDWAY_DEVICE='tpu' is not a device"):
        get_device("auto")


@pytest.mark.parametrize(("spec", "ok"), [
    ("auto", True), (" CPU ", True), ("cuda:3", True), ("mps", True), (torch.device("cpu"), True),
    ("gpu", False), ("cuda:x", False), ("", False), (0, False), (None, False),
])
def test_is_device_spec_accepts_the_spellings_get_device_accepts(spec: object, ok: bool) -> None:
    assert is_device_spec(spec) is ok


def test_explicit_prefer_wins_over_the_environment(machine, monkeypatch: pytest.MonkeyPatch) -> None:
    machine(cuda=0)
    monkeypatch.setenv("HARDWAY_DEVICE", "cuda")
    assert get_device("cpu") == torch.device("cpu")
    assert get_device(torch.device("cpu")) == torch.device("cpu")


def test_requesting_an_unavailable_device_names_what_is_available(
    machine, monkeypatch: pytest.MonkeyPatch
) -> None:
    machine(cuda=0, mps=False)
    with pytest.raises(RuntimeError, match=r"prefer='cuda' is not available.*available: cpu"):
        get_device("cuda")
    monkeypatch.setenv("HARDWAY_DEVICE", "mps")
    with pytest.raises(RuntimeError, match=r"HARDWAY_DEVICE='mps' is not available.*available: cpu"):
        get_device()


def test_cuda_index_beyond_the_device_count_is_unavailable(machine) -> None:
    machine(cuda=2)
    assert get_device("cuda:1") == torch.device("cuda:1")
    assert dev.available_devices() == ["cuda:0", "cuda:1", "cpu"]
    with pytest.raises(RuntimeError, match="available: cuda:0, cuda:1, cpu"):
        get_device("cuda:2")


@pytest.mark.parametrize("spec", ["tpu", "gpu", "cuda:x", ""])
def test_get_device_rejects_unknown_spellings(machine, spec: str) -> None:
    machine(cuda=0)
    with pytest.raises(ValueError, match="is not a device"):
        get_device(spec)


# ---------------------------------------------------------------------------------------------
# seed_everything and set_threads
# ---------------------------------------------------------------------------------------------


def _draws(gen: torch.Generator) -> tuple:
    return random.random(), np.random.rand(), torch.rand(3).tolist(), torch.rand(2, generator=gen).tolist()


def test_seed_everything_makes_python_numpy_and_torch_repeatable() -> None:
    first = _draws(seed_everything(123))
    second = _draws(seed_everything(123))
    other = _draws(seed_everything(124))
    assert first == second
    assert all(a != b for a, b in zip(first, other, strict=True))


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "1"])
def test_seed_everything_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(ValueError, match="seed"):
        seed_everything(seed)  # type: ignore[arg-type]


@pytest.fixture
def restore_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    before = torch.get_num_threads()
    monkeypatch.delenv("HARDWAY_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    yield
    torch.set_num_threads(before)


def test_set_threads_uses_the_argument_then_env_vars_then_cpu_count(
    restore_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert set_threads(1) == 1 and torch.get_num_threads() == 1
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert set_threads() == cpus and torch.get_num_threads() == cpus
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert set_threads() == 1
    monkeypatch.setenv("HARDWAY_THREADS", "2")
    assert set_threads() == 2 and torch.get_num_threads() == 2


def test_set_threads_rejects_bad_values(restore_threads: None, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="n=0"):
        set_threads(0)
    monkeypatch.setenv("HARDWAY_THREADS", "two")
    with pytest.raises(ValueError, match="HARDWAY_THREADS='two'"):
        set_threads()
    monkeypatch.setenv("HARDWAY_THREADS", "-3")
    with pytest.raises(ValueError, match="positive"):
        set_threads()


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


def test_time_median_runs_warmup_then_timed_repeats() -> None:
    calls = []
    result = time_median(lambda: calls.append(1) or time.sleep(0.002), repeats=4, warmup=2)
    assert len(calls) == 6 and result.repeats == 4 and result.warmup == 2
    assert 0.002 <= result.min <= result.median < 0.2
    ordered = sorted(result.samples)
    assert ordered[1] <= result.median <= ordered[2]  # between the middle two of four samples
    assert "median" in str(result) and "ms" in str(result)


def test_compare_timings_interleaves_candidates_and_rotates_the_first() -> None:
    order: list[str] = []
    fns = {name: (lambda name=name: order.append(name)) for name in "abc"}
    compare_timings(fns, repeats=3, warmup=0)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


def test_compare_timings_reports_ratios_to_the_first_candidate() -> None:
    result = compare_timings(
        {"fast": lambda: time.sleep(0.002), "slow": lambda: time.sleep(0.008)}, repeats=5, warmup=1
    )
    assert result.baseline == "fast" and result.ratios["fast"] == 1.0
    assert 2.0 < result.ratios["slow"] < 10.0  # ~4x, generous for a loaded machine
    assert result.medians["slow"] > result.medians["fast"]
    assert "slow" in str(result) and "x fast" in str(result)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: time_median(lambda: None, repeats=0), "repeats=0"),
        (lambda: time_median(lambda: None, warmup=-1), "warmup=-1"),
        (lambda: time_median(42), "callable"),
        (lambda: compare_timings({}), "non-empty"),
        (lambda: compare_timings({"a": 1}), "not callable"),
    ],
)
def test_timing_helpers_reject_bad_input(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------


def test_peak_memory_reports_cpu_rss_in_mib() -> None:
    mem = peak_memory()
    assert set(mem) == {"cpu_max_rss_mib", "cuda_max_allocated_mib"}
    if sys.platform != "win32":
        assert 20 < mem["cpu_max_rss_mib"] < 1_000_000  # python + torch, in MiB not KiB or bytes
    if not torch.cuda.is_available():
        assert mem["cuda_max_allocated_mib"] is None


@pytest.mark.parametrize(("platform", "expected_mib"), [("linux", 1024.0), ("darwin", 1.0)])
def test_max_rss_units_are_kib_on_linux_and_bytes_on_macos(
    monkeypatch: pytest.MonkeyPatch, platform: str, expected_mib: float
) -> None:
    resource = pytest.importorskip("resource")
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=1_048_576))
    monkeypatch.setattr(dev, "_vm_hwm_mib", lambda: None)  # no /proc: the getrusage fallback
    monkeypatch.setattr(sys, "platform", platform)
    assert dev._max_rss_mib() == expected_mib


def test_vm_hwm_is_read_in_kib_and_missing_lines_or_files_give_none(tmp_path) -> None:
    status = tmp_path / "status"
    status.write_text("Name:\tpython\nVmPeak:\t 9000 kB\nVmHWM:\t  524288 kB\nVmRSS:\t 1000 kB\n")
    assert dev._vm_hwm_mib(str(status)) == 512.0
    status.write_text("Name:\tpython\n")
    assert dev._vm_hwm_mib(str(status)) is None
    assert dev._vm_hwm_mib(str(tmp_path / "absent")) is None


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is read from /proc on Linux")
def test_a_child_process_peak_does_not_include_its_parents_memory() -> None:
    """Linux keeps ru_maxrss across execve, so a benchmark started from a big pytest worker used to report
    the worker's memory as its own (1 008 MB for a 417 MB run). The child's peak must be its own."""
    held = bytearray(768 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # touch every page so it is resident
    code = "from shared.device import peak_memory; print(peak_memory()['cpu_max_rss_mib'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120).stdout
    assert len(held) and 20 < float(out) < 700  # python + torch (~250 MiB), not the parent's 768 MiB


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="current RSS is read from /proc on Linux")
def test_memory_tracker_sees_a_64_mib_cpu_allocation() -> None:
    with MemoryTracker("cpu") as mem:
        block = torch.ones(16 * 2**20)  # 16 Mi float32 = 64 MiB, written so it is resident
    assert block.numel() == 16 * 2**20
    assert 48 < mem.cpu_rss_delta_mib < 200
    assert mem.cuda_peak_mib is None and "CPU RSS" in str(mem)


def test_memory_tracker_does_not_swallow_exceptions() -> None:
    with pytest.raises(KeyError), MemoryTracker("cpu"):
        raise KeyError("boom")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_memory_tracker_measures_the_cuda_peak_of_a_block() -> None:
    with MemoryTracker("cuda") as mem:
        x = torch.empty(64 * 2**20, dtype=torch.uint8, device="cuda")
        del x
    assert mem.cuda_delta_mib >= 64 and mem.cuda_peak_mib >= mem.cuda_delta_mib


# ---------------------------------------------------------------------------------------------
# Notebook conventions
# ---------------------------------------------------------------------------------------------


def test_needs_cuda_prints_the_skip_line_on_cpu(machine, capsys: pytest.CaptureFixture[str]) -> None:
    machine(cuda=0)
    assert needs_cuda("bf16 timings") is False
    assert capsys.readouterr().out == "skipped: needs CUDA (bf16 timings)\n"


def test_needs_cuda_is_silent_and_true_on_cuda(machine, capsys: pytest.CaptureFixture[str]) -> None:
    machine(cuda=1)
    assert needs_cuda("bf16 timings") is True
    assert capsys.readouterr().out == ""


def test_needs_cuda_skips_when_the_env_forces_the_cpu(
    machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    machine(cuda=1)
    monkeypatch.setenv("HARDWAY_DEVICE", "cpu")
    assert needs_cuda("flash attention") is False
    assert capsys.readouterr().out == "skipped: needs CUDA (flash attention)\n"


def test_needs_cuda_requires_a_reason() -> None:
    with pytest.raises(ValueError, match="what"):
        needs_cuda("  ")


def test_describe_device_is_one_informative_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARDWAY_DEVICE", "cpu")
    line = describe_device()
    assert "\n" not in line
    assert f"torch {torch.__version__}" in line and "device cpu" in line
    assert f"{torch.get_num_threads()} threads" in line and "build" in line
