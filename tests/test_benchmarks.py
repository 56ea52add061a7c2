"""benchmarks/: the scripts run end to end at small sizes and print every column (no timing is asserted here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "RAYON_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=True,
    ).stdout


def test_train_speed_prints_tokens_per_second_mfu_and_the_ratio_to_hugging_face():
    pytest.importorskip("transformers")
    out = run("train_speed.py", "--steps", "1", "--rounds", "2", "--warmup", "1")
    assert "MFU" in out and "tokens/s" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("sdpa", "manual", "hf-gpt2"))]
    assert [r[0] for r in rows] == ["sdpa", "manual", "hf-gpt2"]
    for row in rows:
        assert row[4].endswith("%") and 0 < float(row[4].rstrip("%")) < 200  # MFU
        assert float(row[2].replace(",", "")) > 0  # tokens/s
        assert row[-1].endswith("x") and float(row[-1].rstrip("x")) > 0  # vs hf-gpt2
    assert rows[-1][-1] == "1.00x"  # HF against itself


def test_decode_speed_asserts_identical_tokens_and_prints_the_ratios():
    pytest.importorskip("transformers")
    out = run("decode_speed.py", "--lengths", "16", "24", "--rounds", "1", "--threads", "1", "2")
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("1", "16"), ("1", "24"), ("2", "16"), ("2", "24")]
    for row in rows:
        assert row[-1] == "yes" and row[5].endswith("x") and row[6].endswith("x")


def test_bpe_speed_matches_the_naive_merges_and_the_rust_vocabulary_size():
    pytest.importorskip("tokenizers")
    out = run("bpe_speed.py", "--vocab", "300", "--rounds", "1", "--naive-max", "300")
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("300"))
    assert row[4].endswith("x") and row[5].endswith("x")  # vs naive, vs Rust
    assert 1.0 < float(row[6]) < 3.0 and 1.0 < float(row[7]) < 3.0  # held-out bytes/token, ours and Rust


def test_run_all_runs_every_benchmark_script_in_the_folder():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"run_all.py"}
    assert set(run_all.FULL) == set(run_all.QUICK) == scripts
