"""Checkpoints: save and load a model (and its optimizer) safely.

:func:`save_checkpoint` writes atomically with a sha256 sidecar (``<path>.sha256``, ``sha256sum``
format) and stores only tensors, numbers, strings, lists and dicts, so :func:`load_checkpoint` reads it
with ``torch.load(..., weights_only=True)`` — no pickled code runs — after verifying the checksum.
A checkpoint that is corrupted, truncated or does not fit the model raises :class:`CheckpointError`
naming what is wrong.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from shared.train import History
from shared.utils import atomic_write_bytes, is_int

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: corrupted, truncated, or not matching the model."""


_FORMAT = "llm-hard-way/checkpoint"


def _plain(obj: Any, where: str) -> Any:
    """Return ``obj`` made of tensors, numbers, strings, lists and dicts only (for weights_only).

    Dataclasses become dicts (``dataclasses.asdict``), numpy scalars become Python numbers; anything
    else is refused with its location so the caller knows what to convert.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj), where)
    if obj is None or isinstance(obj, (torch.dtype, torch.Size)):
        return obj
    for t in (bool, int, float, str):  # exact types: a str/int subclass would need an unpickling allowlist
        if isinstance(obj, t):
            return t(obj)
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return obj.item()
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key {k!r} of type {type(k).__name__}; use str or int keys")
            out[k] = _plain(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        items = [_plain(v, f"{where}[{i}]") for i, v in enumerate(obj)]
        return tuple(items) if isinstance(obj, tuple) else items
    if isinstance(obj, History):
        return obj.to_dict()
    hint = " (convert with torch.from_numpy or .tolist())" if type(obj).__module__ == "numpy" else ""
    raise TypeError(
        f"{where} is a {type(obj).__name__}; a checkpoint stores only tensors, numbers, strings, lists "
        f"and dicts so that torch.load(..., weights_only=True) can read it{hint}"
    )


def _unwrap(model: nn.Module) -> nn.Module:
    """The module under a ``torch.compile`` wrapper (whose state-dict keys gain ``_orig_mod.``)."""
    return getattr(model, "_orig_mod", model)


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    step: int = 0,
    config: Any = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save model (and optimizer) state atomically, with a sha256 sidecar ``<path>.sha256``.

    The file holds only tensors, numbers, strings, lists and dicts (a dataclass ``config`` is stored
    as ``dataclasses.asdict(config)``), so ``torch.load(path, weights_only=True)`` reads it without
    running any pickled code. The sidecar is in ``sha256sum`` format (``sha256sum -c`` checks it).
    Returns the path written.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save checkpoint {path}: directory {path.parent} does not exist")
    if not is_int(step) or step < 0:
        raise ValueError(f"step={step!r} is invalid: must be an integer >= 0")
    payload = {
        "format": _FORMAT,
        "version": 1,
        "torch_version": str(torch.__version__),
        "step": step,
        "model": dict(_unwrap(model).state_dict()),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "config": _plain(config, "config"),
        "extra": _plain(extra, "extra"),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    data = buf.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    atomic_write_bytes(path, data)
    atomic_write_bytes(_sidecar(path), f"{digest}  {path.name}\n".encode())
    return path


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``), verifying its sha256.

    If ``model`` / ``optimizer`` are given their state is restored (the model strictly: every
    missing or unexpected parameter name and every shape mismatch is listed in the error).
    Returns the whole payload: ``{"step", "model", "optimizer", "config", "extra", ...}``.
    """
    path = Path(path)
    if not path.is_file():
        siblings = sorted(p.name for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        hint = f"; checkpoints in {path.parent}: {siblings}" if siblings else ""
        raise FileNotFoundError(f"checkpoint not found: {path}{hint}")
    data = path.read_bytes()
    side = _sidecar(path)
    if side.is_file():
        recorded = side.read_text().split()
        expected = recorded[0] if recorded else "<empty>"
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise CheckpointError(
                f"checkpoint {path} is corrupted or truncated: its sha256 is {actual[:16]}… but "
                f"{side.name} records {expected[:16]}… ({len(data)} bytes on disk). Do not use it: "
                "re-run the training that saves it, or load an earlier checkpoint."
            )
    else:
        warnings.warn(f"no checksum file {side.name} next to {path.name}; loading it unverified",
                      stacklevel=2)
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"could not read checkpoint {path} with torch.load(weights_only=True): {type(e).__name__}: {e}"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by shared.checkpoint.save_checkpoint")

    if model is not None:
        _load_model_state(_unwrap(model), payload["model"], path)
    if optimizer is not None:
        if payload.get("optimizer") is None:
            raise CheckpointError(
                f"checkpoint {path} has no optimizer state (it was saved with optimizer=None)"
            )
        try:
            optimizer.load_state_dict(payload["optimizer"])
        except ValueError as e:
            raise CheckpointError(f"optimizer state in {path} does not fit this optimizer: {e}") from e
    return payload


def _load_model_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    state = {k.removeprefix("_orig_mod."): v for k, v in state.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if state[k].shape != own[k].shape
    ]
    if missing or unexpected or shapes:
        lines = [f"checkpoint {path} does not fit {type(model).__name__}:"]
        if missing:
            lines.append(f"  missing in checkpoint ({len(missing)}): {missing}")
        if unexpected:
            lines.append(f"  unexpected in checkpoint ({len(unexpected)}): {unexpected}")
        if shapes:
            lines.append(f"  shape mismatch ({len(shapes)}): " + "; ".join(shapes))
        lines.append("  Was it saved from a model with a different config?")
        raise CheckpointError("\n".join(lines))
    model.load_state_dict(state, strict=True)
