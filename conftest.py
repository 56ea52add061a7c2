"""Repository-wide pytest settings: notebook collection, thread budgets, per-notebook wall times."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    # Starters are executed by tests/test_notebooks.py, which allows their unfinished-TODO errors;
    # nbval would (rightly) fail them cell by cell.
    if collection_path.name == "starter.ipynb" or ".ipynb_checkpoints" in collection_path.parts:
        return True
    return None


def pytest_configure(config) -> None:
    # Parallel workers must not oversubscribe the cores: each worker (and every kernel it starts,
    # which inherits this environment) gets cores // workers threads.
    # Set in the workers only (the controller runs no tests), overriding what they inherited.
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        threads = str(max(1, (os.cpu_count() or 1) // int(workerinput.get("workercount", 1))))
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "HARDWAY_THREADS"):
            os.environ[var] = threads
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


# Some projects (and their starters, run by tests/test_notebooks.py) start from a shared pre-trained model,
# which the first caller trains and caches: the base model of 14, 15 and 17 (about a minute) and the corpus
# model of 04, 07, 10, 12, 14, 16, 17 and 18 (about five minutes). The controller does that once, before the
# workers start, so that two notebooks never pre-train a model side by side. Each notebook's own wall time
# then measures the project, as a learner's second run does.
_NEEDS_BASE_MODEL = ("14_instruct_tuner", "15_ppo_loop", "17_speculative_decoding", "tests/test_notebooks.py")
_NEEDS_CORPUS_MODEL = ("04_attention_lab", "07_entropy_plotter", "10_grouped_query", "12_int8_quant",
                       "14_instruct_tuner", "16_scaling_laws", "17_speculative_decoding",
                       "18_serving_engine", "tests/test_notebooks.py", "tests/test_serving_engine.py",
                       "tests/test_serving_server.py",
                       "tests/test_app_07_entropy_plotter.py", "tests/test_app_18_serving_engine.py")


def _asked_for(root: Path, targets: list[Path], parts: tuple[str, ...]) -> bool:
    needed = [root / part for part in parts]
    return any(path.is_relative_to(t) or t.is_relative_to(path) for t in targets for path in needed)


def pytest_sessionstart(session) -> None:
    config = session.config
    if getattr(config, "workerinput", None) is not None or config.getoption("collectonly"):
        return
    root = Path(str(config.rootpath)).resolve()
    targets = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    from shared.pretrained import (
        base_checkpoint_path,
        corpus_checkpoint_path,
        load_base_model,
        load_corpus_model,
    )

    if _asked_for(root, targets, _NEEDS_BASE_MODEL) and not base_checkpoint_path().is_file():
        load_base_model(verbose=True)
    if _asked_for(root, targets, _NEEDS_CORPUS_MODEL) and not corpus_checkpoint_path().is_file():
        load_corpus_model(verbose=True)


# Importing streamlit (tests/test_app_07_*) sets os.environ["MPLBACKEND"] = "Agg" for the whole process;
# every kernel started afterwards in that worker would then draw no inline figures. Each test starts from
# the matplotlib backend setting the session started with.
_MPLBACKEND_AT_START = os.environ.get("MPLBACKEND")


def pytest_runtest_setup(item) -> None:
    if _MPLBACKEND_AT_START is None:
        os.environ.pop("MPLBACKEND", None)
    else:
        os.environ["MPLBACKEND"] = _MPLBACKEND_AT_START


def _notebook_of(nodeid: str) -> str | None:
    path = nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        return path
    if "test_starter" in nodeid and "[" in nodeid and "NOTSET" not in nodeid:
        return nodeid[nodeid.index("[") + 1 : -1] + "/starter.ipynb"
    return None


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    seconds: dict[str, float] = defaultdict(float)
    for reports in terminalreporter.stats.values():
        for report in reports:
            nodeid = getattr(report, "nodeid", "")
            notebook = _notebook_of(nodeid) if nodeid else None
            if notebook is not None and hasattr(report, "duration"):
                seconds[notebook] += report.duration
    if not seconds:
        return
    terminalreporter.section("notebook wall time (slowest first)")
    for notebook, total in sorted(seconds.items(), key=lambda kv: -kv[1]):
        flag = "  <-- over the 150 s budget" if total > 150 and notebook.endswith("solution.ipynb") else ""
        terminalreporter.write_line(f"{total:8.1f} s  {notebook}{flag}")
