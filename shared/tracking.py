"""Experiment tracking for :func:`shared.train.train`: log every History row (and the config) somewhere.

Practitioners do not read loss curves out of ``print`` calls: they log each run to a tracker and
compare runs in its UI. :func:`shared.train.train` takes an optional ``tracker``; off by default, and
nothing is contacted unless the learner asks::

    train(model, get_batch, cfg, tracker="jsonl")        # built in: runs/train-<time>.jsonl, no dependency
    train(model, get_batch, cfg, tracker="trackio")      # local-first dashboard: `trackio show`
    train(model, get_batch, cfg, tracker="wandb")        # Weights & Biases, offline: `wandb sync` later
    train(model, get_batch, cfg, tracker=WandbTracker(project="gqa", mode="online"))   # any option

A tracker is anything with the three methods of :class:`Tracker`: ``start(config)`` once before the
first step, ``log(row, step)`` once per :class:`~shared.train.History` row (``train_loss``,
``val_loss``, ``lr``, ``grad_norm``, ``tokens_per_s``; NaN columns, i.e. not measured on that step,
are left out) and ``finish()`` once at the end, also when training fails.

* :class:`JsonlTracker` writes one JSON object per line (``{"config": ...}`` first, then one per
  row) with the standard library only; :meth:`JsonlTracker.read` reads a file back. Always tested.
* :class:`TrackioTracker` and :class:`WandbTracker` are thin adapters; the packages are optional
  (``pip install trackio`` or ``pip install wandb``, or the ``tracking`` extra of this project) and
  imported only when a run starts. Trackio stores runs in a local SQLite database and serves its
  dashboard on this machine (``trackio show``); W&B in ``mode="offline"`` writes the run under
  ``dir`` (``wandb/offline-run-*``) without an account, for ``wandb sync`` if you ever want it online.

Why a built-in JSONL tracker: neither optional package is small (each pulls in about 30 packages,
trackio a web server and wandb a compiled service binary), so the test suite, which must run on a
2-core machine without the network, tests the adapters against fake modules and the JSONL tracker
for real.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "JsonlTracker",
    "TRACKERS",
    "Tracker",
    "TrackioTracker",
    "WandbTracker",
    "make_tracker",
]


@runtime_checkable
class Tracker(Protocol):
    """What :func:`shared.train.train` calls: ``start`` once, ``log`` per History row, ``finish`` last."""

    def start(self, config: Mapping[str, Any]) -> None: ...

    def log(self, row: Mapping[str, float], step: int) -> None: ...

    def finish(self) -> None: ...


def _measured(row: Mapping[str, float]) -> dict[str, float]:
    """The row's metrics without ``step`` and without the NaN columns (not measured on this step)."""
    return {k: float(v) for k, v in row.items() if k != "step" and not math.isnan(v)}


def _import_optional(module: str, what: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{what} needs the optional package {module!r}: pip install {module} "
            f"(or use tracker='jsonl', which needs nothing)"
        ) from None


# ----------------------------------------------------------------------------------------------
# Built in: JSON lines


class JsonlTracker:
    """Append the config and every row to a JSON-lines file (one object per line, NaN written as null).

    ``path`` defaults to ``runs/train-<YYYYmmdd-HHMMSS>.jsonl`` under the current directory. The file
    is flushed after each line, so another process (or notebook cell) can follow a run as it trains.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            path = Path("runs") / f"train-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        self.path = Path(path)
        if self.path.suffix != ".jsonl":
            raise ValueError(f"JsonlTracker: path={str(self.path)!r} must end in .jsonl")
        self._file: Any = None

    def _write(self, obj: dict[str, Any]) -> None:
        if self._file is None:
            raise RuntimeError("JsonlTracker: call start(config) before log() (train() does)")
        self._file.write(json.dumps(obj, default=str, allow_nan=False) + "\n")
        self._file.flush()

    def start(self, config: Mapping[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 (closed in finish)
        self._write({"config": dict(config)})

    def log(self, row: Mapping[str, float], step: int) -> None:
        self._write({"step": int(step), **{k: None if math.isnan(v) else float(v)
                                          for k, v in row.items() if k != "step"}})

    def finish(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    @staticmethod
    def read(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, float]]]:
        """``(config, rows)`` of a file this tracker wrote; null comes back as NaN.

        ``shared.train.History(rows)`` turns the rows into a History again.
        """
        config: dict[str, Any] = {}
        rows: list[dict[str, float]] = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                obj = json.loads(line)
                if "config" in obj:
                    config = obj["config"]
                else:
                    rows.append({k: math.nan if v is None else v for k, v in obj.items()})
        return config, rows


# ----------------------------------------------------------------------------------------------
# Adapters: trackio and Weights & Biases


class TrackioTracker:
    """Log to trackio (github.com/gradio-app/trackio): local-first, free, a dashboard on this machine.

    Calls ``trackio.init(project=..., name=..., config=...)``, ``trackio.log(metrics, step=...)`` and
    ``trackio.finish()``. Without ``space_id`` (in ``init_kwargs`` or ``$TRACKIO_SPACE_ID``) nothing
    leaves the machine; ``trackio show`` opens the dashboard. Extra keyword arguments go to
    ``trackio.init`` unchanged (e.g. ``embed=False`` to keep it out of the notebook).
    """

    def __init__(self, project: str = "llm-hard-way", name: str | None = None, **init_kwargs: Any) -> None:
        self.project, self.name, self.init_kwargs = project, name, init_kwargs
        self._trackio: Any = None

    def start(self, config: Mapping[str, Any]) -> None:
        self._trackio = _import_optional("trackio", "TrackioTracker")
        self._trackio.init(project=self.project, name=self.name, config=dict(config), **self.init_kwargs)

    def log(self, row: Mapping[str, float], step: int) -> None:
        self._trackio.log(_measured(row), step=int(step))

    def finish(self) -> None:
        if self._trackio is not None:
            self._trackio.finish()
            self._trackio = None


class WandbTracker:
    """Log to Weights & Biases, offline by default: no account, no network; ``wandb sync`` uploads later.

    Calls ``wandb.init(project=..., name=..., dir=..., mode=..., config=...)``, then ``run.log(metrics,
    step=...)`` and ``run.finish()`` on the run it returns. ``mode`` is W&B's: ``"offline"``,
    ``"online"`` or ``"disabled"``. Extra keyword arguments go to ``wandb.init`` unchanged.
    """

    def __init__(
        self,
        project: str = "llm-hard-way",
        name: str | None = None,
        dir: str | os.PathLike[str] | None = None,
        mode: str = "offline",
        **init_kwargs: Any,
    ) -> None:
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"WandbTracker: mode={mode!r} must be 'offline', 'online' or 'disabled'")
        self.project, self.name, self.dir, self.mode = project, name, dir, mode
        self.init_kwargs = init_kwargs
        self._run: Any = None

    def start(self, config: Mapping[str, Any]) -> None:
        wandb = _import_optional("wandb", "WandbTracker")
        self._run = wandb.init(project=self.project, name=self.name, dir=self.dir, mode=self.mode,
                               config=dict(config), **self.init_kwargs)

    def log(self, row: Mapping[str, float], step: int) -> None:
        self._run.log(_measured(row), step=int(step))

    def finish(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


#: The names ``train(..., tracker=NAME)`` accepts, each with its default settings.
TRACKERS: dict[str, type] = {"jsonl": JsonlTracker, "trackio": TrackioTracker, "wandb": WandbTracker}


def make_tracker(spec: str | Tracker) -> Tracker:
    """A tracker from a name in :data:`TRACKERS` (default settings) or a ready :class:`Tracker`, unchanged."""
    if isinstance(spec, str):
        if spec not in TRACKERS:
            raise ValueError(f"tracker={spec!r} is not one of {sorted(TRACKERS)} (or pass a Tracker object)")
        return TRACKERS[spec]()
    if not isinstance(spec, Tracker):
        raise TypeError(
            f"tracker={spec!r} is neither a name in {sorted(TRACKERS)} nor an object with "
            "start(config), log(row, step) and finish() methods"
        )
    return spec
