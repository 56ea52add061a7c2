"""Tests for shared/tracking.py: the built-in JSONL tracker for real, trackio and W&B adapters on fakes.

Neither trackio nor wandb is a dependency (each pulls in about 30 packages), so their adapters are
tested against stand-in modules placed in ``sys.modules``: what matters here is that the adapter calls
the documented API (``init``/``log``/``finish``) with the right arguments, offline by default.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from shared.tracking import JsonlTracker, Tracker, TrackioTracker, WandbTracker, make_tracker

ROW = {"step": 3, "train_loss": 2.5, "val_loss": math.nan, "lr": 1e-3, "tokens_per_s": 100.0,
       "grad_norm": 0.5}


def test_jsonl_tracker_writes_config_then_rows_with_nan_as_null_and_reads_them_back(tmp_path: Path):
    path = tmp_path / "deep" / "run.jsonl"
    tracker = JsonlTracker(path)
    tracker.start({"lr": 1e-3, "betas": (0.9, 0.95)})
    tracker.log(ROW, 3)
    tracker.finish()
    tracker.finish()  # idempotent
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"config": {"lr": 1e-3, "betas": [0.9, 0.95]}}
    assert lines[1]["step"] == 3 and lines[1]["val_loss"] is None
    config, rows = JsonlTracker.read(path)
    assert config["lr"] == 1e-3 and rows[0]["train_loss"] == 2.5 and math.isnan(rows[0]["val_loss"])


def test_jsonl_tracker_explains_misuse(tmp_path: Path):
    with pytest.raises(ValueError, match=r"path='.*run.txt' must end in .jsonl"):
        JsonlTracker(tmp_path / "run.txt")
    with pytest.raises(RuntimeError, match="call start"):
        JsonlTracker(tmp_path / "run.jsonl").log(ROW, 0)


def fake_trackio(calls: list) -> SimpleNamespace:
    return SimpleNamespace(
        init=lambda **kw: calls.append(("init", kw)),
        log=lambda metrics, step=None: calls.append(("log", metrics, step)),
        finish=lambda: calls.append(("finish",)),
    )


def test_trackio_adapter_calls_init_log_finish_leaving_out_nan_and_step(monkeypatch):
    calls: list = []
    monkeypatch.setitem(sys.modules, "trackio", fake_trackio(calls))
    tracker = TrackioTracker(project="p", name="run-1", embed=False)
    tracker.start({"lr": 1e-3})
    tracker.log(ROW, 3)
    tracker.finish()
    assert calls[0] == ("init", {"project": "p", "name": "run-1", "config": {"lr": 1e-3}, "embed": False})
    assert calls[1] == ("log", {"train_loss": 2.5, "lr": 1e-3, "tokens_per_s": 100.0, "grad_norm": 0.5}, 3)
    assert calls[2] == ("finish",)


def test_wandb_adapter_is_offline_by_default_and_logs_on_its_run(monkeypatch, tmp_path: Path):
    calls: list = []

    class Run:
        def log(self, data, step=None):
            calls.append(("log", data, step))

        def finish(self):
            calls.append(("finish",))

    def init(**kw):
        calls.append(("init", kw))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", SimpleNamespace(init=init))
    tracker = make_tracker(WandbTracker(dir=tmp_path))
    tracker.start({"lr": 1e-3})
    tracker.log({**ROW, "val_loss": 2.0}, 3)
    tracker.finish()
    (_, kw), log, finish = calls
    assert kw == {"project": "llm-hard-way", "name": None, "dir": tmp_path, "mode": "offline",
                  "config": {"lr": 1e-3}}
    assert log[1]["val_loss"] == 2.0 and log[2] == 3 and finish == ("finish",)
    with pytest.raises(ValueError, match="mode='cloud' must be 'offline', 'online' or 'disabled'"):
        WandbTracker(mode="cloud")


def test_a_missing_optional_package_is_named_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(ImportError, match=r"needs the optional package 'wandb': pip install wandb"):
        WandbTracker().start({})


def test_make_tracker_takes_names_and_tracker_objects_only(tmp_path: Path):
    assert isinstance(make_tracker("jsonl"), JsonlTracker)
    assert isinstance(make_tracker("trackio"), TrackioTracker)  # nothing imported until start()
    ready = JsonlTracker(tmp_path / "r.jsonl")
    assert make_tracker(ready) is ready and isinstance(ready, Tracker)
    with pytest.raises(TypeError, match="start\\(config\\), log\\(row, step\\) and finish\\(\\)"):
        make_tracker(object())  # type: ignore[arg-type]
