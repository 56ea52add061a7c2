"""benchmarks/: the scripts run end to end and print every column (no timing is asserted here)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_train_speed_benchmark_prints_tokens_per_second_and_mfu_for_both_attention_paths():
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "train_speed.py"), "--steps", "1", "--rounds", "2", "--warmup", "1"],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=True,
    ).stdout
    assert "MFU" in out and "tokens/s" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("sdpa", "manual"))]
    assert [r[0] for r in rows] == ["sdpa", "manual"]
    for row in rows:
        assert row[-2].endswith("%") and 0 < float(row[-2].rstrip("%")) < 200
        assert float(row[2].replace(",", "")) > 0  # tokens/s
