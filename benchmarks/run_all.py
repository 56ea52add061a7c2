"""Run every benchmark in turn and print its table: ``python benchmarks/run_all.py`` (or ``make bench``).

Each script measures its variants side by side in one process (alternating rounds, medians) and prints
ratios; absolute numbers depend on the machine and its load, which every script prints first.
``--quick`` runs each at a small size to check that they work, not to measure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

FULL = {
    "train_speed.py": ["--compile"],  # the table includes the torch.compile row
    "decode_speed.py": [],
    "bpe_speed.py": [],
}
QUICK = {
    "train_speed.py": ["--steps", "1", "--rounds", "2", "--warmup", "1"],
    "decode_speed.py": ["--lengths", "16", "--rounds", "1", "--threads", "1"],
    "bpe_speed.py": ["--vocab", "300", "--rounds", "1", "--naive-max", "300"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: check the scripts run, measure nothing")
    args = ap.parse_args()
    failed = []
    for script, extra in (QUICK if args.quick else FULL).items():
        print(f"\n=== {script} {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / script), *extra], cwd=HERE.parent)
        print(f"=== {script}: exit {rc} after {time.perf_counter() - t0:.0f} s", flush=True)
        if rc:
            failed.append(script)
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
