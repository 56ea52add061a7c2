"""Training: a small, readable trainer for any model whose ``forward(x, y)`` returns ``(logits, loss)``.

What one call to :func:`train` does, step by step (the loop of nanoGPT's ``train.py``, made small)::

    for s in 0 .. max_steps-1:
        every eval_interval steps: val_loss = evaluate(model)           # model.eval() + no_grad
        lr = lr_at(s, cfg)                                               # warmup, then cosine decay
        x, y = get_batch("train", batch_size, generator)                 # (B, T), (B, T)
        logits, loss = model(x, y)
        loss.backward()
        grad_norm = clip_grad_norm_(params, grad_clip)                   # ||g||_2 before clipping
        optimizer.step(); optimizer.zero_grad()
    val_loss = evaluate(model)                                           # the final weights

Row ``s`` of the returned :class:`History` describes the weights θ_s *after s updates*: its
``train_loss`` is the loss of training batch ``s`` under θ_s (measured just before update ``s``), its
``val_loss`` is the mean validation loss of θ_s (NaN on steps without evaluation), ``lr`` and
``grad_norm`` belong to update ``s``. One extra, last row (``step == max_steps``) holds the validation
loss of the final weights θ_T and NaN elsewhere, so ``history.last("val_loss")`` is the final model's.

References
----------
- AdamW: Loshchilov & Hutter (2019), "Decoupled Weight Decay Regularization", ICLR, Alg. 2.
- Cosine schedule: Loshchilov & Hutter (2017), "SGDR: Stochastic Gradient Descent with Warm
  Restarts", ICLR, Eq. 5 (one cycle, no restarts).
- Linear warmup: Goyal et al. (2017), "Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", §2.2.
- Gradient-norm clipping: Pascanu, Mikolov & Bengio (2013), "On the difficulty of training recurrent
  neural networks", ICML, §3.2.
- The loop itself follows karpathy/nanoGPT ``train.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import math
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

__all__ = [
    "CheckpointError",
    "History",
    "TrainConfig",
    "TrainingDivergedError",
    "evaluate",
    "load_checkpoint",
    "lr_at",
    "make_optimizer",
    "resolve_device",
    "save_checkpoint",
    "train",
]

GetBatch = Callable[[str, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
Callback = Callable[[int, dict[str, float], nn.Module], "bool | None"]

_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


# ----------------------------------------------------------------------------------------------
# Config


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class TrainConfig:
    """Everything :func:`train` needs to know, validated on construction.

    ``min_lr`` defaults to ``lr / 10`` (the floor of the cosine decay, as in Chinchilla's setup).
    ``device="auto"`` picks CUDA, then Apple MPS, then CPU. ``progress`` shows a ``tqdm`` bar with
    the current loss; ``compile`` wraps the model in ``torch.compile`` and falls back to eager mode
    with a warning where compilation is unavailable or fails.
    """

    max_steps: int = 1000
    batch_size: int = 32
    lr: float = 3e-4
    min_lr: float | None = None
    warmup_steps: int = 100
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = 1.0
    eval_interval: int = 100
    eval_iters: int = 20
    seed: int = 1337
    device: str = "auto"
    progress: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"TrainConfig.{name}={getattr(self, name)!r} is invalid: {allowed}")

        for name in ("max_steps", "batch_size", "eval_interval", "eval_iters"):
            v = getattr(self, name)
            if not _is_int(v) or v < 1:
                raise bad(name, "must be an integer >= 1")
        if not _is_real(self.lr) or self.lr <= 0:
            raise bad("lr", "must be a finite number > 0")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if not _is_real(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            raise bad("min_lr", f"must be a number with 0 <= min_lr <= lr={self.lr!r} (or None for lr/10)")
        if not _is_int(self.warmup_steps) or not 0 <= self.warmup_steps <= self.max_steps:
            raise bad("warmup_steps", f"must be an integer with 0 <= warmup_steps <= max_steps={self.max_steps}")
        if not _is_real(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "must be a finite number >= 0")
        if (
            not isinstance(self.betas, Sequence)
            or len(self.betas) != 2
            or not all(_is_real(b) and 0 <= b < 1 for b in self.betas)
        ):
            raise bad("betas", "must be two numbers (beta1, beta2), each with 0 <= beta < 1")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.grad_clip is not None and (not _is_real(self.grad_clip) or self.grad_clip <= 0):
            raise bad("grad_clip", "must be None (no clipping) or a finite number > 0")
        if not _is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise bad("seed", "must be an integer with 0 <= seed < 2**63")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise bad("device", "must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
        for name in ("progress", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "must be True or False")


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` → ``cuda`` if available, else ``mps`` if available, else ``cpu``; otherwise as given."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule


def lr_at(step: int, cfg: TrainConfig) -> float:
    r"""Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine decay.

    With peak :math:`\eta_{max}` = ``cfg.lr``, floor :math:`\eta_{min}` = ``cfg.min_lr``,
    :math:`W` = ``warmup_steps`` and :math:`S` = ``max_steps``::

        s < W :  η(s) = η_max · (s + 1) / (W + 1)                     (Goyal et al., 2017, §2.2)
        s ≥ W :  p    = clip((s − W) / max(1, S − 1 − W), 0, 1)
                 η(s) = η_min + ½ (η_max − η_min) (1 + cos(π p))     (Loshchilov & Hutter, 2017, Eq. 5)

    So η rises linearly to exactly η_max at ``s = W``, falls monotonically along a half cosine, and
    reaches exactly η_min at the last step ``s = S − 1`` (and stays there for any later step). The
    ``+1`` in the warmup keeps step 0 from wasting an update at learning rate 0.
    """
    if not _is_int(step) or step < 0:
        raise ValueError(f"step={step!r} is invalid: must be an integer >= 0")
    assert cfg.min_lr is not None  # set by __post_init__
    w, s_max = cfg.warmup_steps, cfg.max_steps
    if step < w:
        return cfg.lr * (step + 1) / (w + 1)
    p = min(1.0, (step - w) / max(1, s_max - 1 - w))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * p))


# ----------------------------------------------------------------------------------------------
# History


class History:
    """Per-step training records: plain Python lists, no pandas.

    Each row has the columns in :attr:`COLUMNS`; a value that was not measured on that step is NaN
    (``val_loss`` between evaluations, everything but ``val_loss`` on the final evaluation row).
    """

    COLUMNS: tuple[str, ...] = ("step", "train_loss", "val_loss", "lr", "tokens_per_s", "grad_norm")

    def __init__(self, rows: list[dict[str, float]] | None = None) -> None:
        self.rows: list[dict[str, float]] = []
        for row in rows or []:
            self.append(**row)

    def append(self, **row: float) -> dict[str, float]:
        """Add one row; missing columns become NaN, unknown ones are an error."""
        unknown = set(row) - set(self.COLUMNS)
        if unknown:
            raise KeyError(f"unknown History column(s) {sorted(unknown)}; columns are {list(self.COLUMNS)}")
        if "step" not in row:
            raise KeyError("a History row needs a 'step'")
        full = {k: row.get(k, math.nan) for k in self.COLUMNS}
        full["step"] = int(full["step"])
        self.rows.append(full)
        return full

    def _check_key(self, key: str) -> None:
        if key not in self.COLUMNS:
            raise KeyError(f"unknown History column {key!r}; columns are {list(self.COLUMNS)}")

    def column(self, key: str) -> list[float]:
        """All values of one column, NaN included, one per row."""
        self._check_key(key)
        return [r[key] for r in self.rows]

    def last(self, key: str) -> float:
        """The most recent value of ``key`` that is not NaN (e.g. the final model's ``val_loss``)."""
        self._check_key(key)
        for r in reversed(self.rows):
            v = r[key]
            if not (isinstance(v, float) and math.isnan(v)):
                return v
        raise ValueError(f"History has no recorded {key!r} yet ({len(self)} rows)")

    def to_dict(self) -> dict[str, list[float]]:
        """Column lists: ``{"step": [...], "train_loss": [...], ...}`` (checkpoint- and JSON-friendly)."""
        return {k: self.column(k) for k in self.COLUMNS}

    @classmethod
    def from_dict(cls, columns: dict[str, list[float]]) -> History:
        """Inverse of :meth:`to_dict`."""
        n = len(columns["step"])
        bad = [k for k, v in columns.items() if len(v) != n]
        if bad:
            raise ValueError(f"History columns {bad} do not have {n} values like 'step'")
        return cls([{k: columns[k][i] for k in columns} for i in range(n)])

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.rows)

    def __eq__(self, other: object) -> bool:
        """Equal when every value matches, NaN matching NaN (rows not measured on both sides)."""
        if not isinstance(other, History):
            return NotImplemented

        def same(a: float, b: float) -> bool:
            return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))

        return len(self) == len(other) and all(
            same(r[k], q[k]) for r, q in zip(self.rows, other.rows, strict=True) for k in self.COLUMNS
        )

    def __repr__(self) -> str:
        if not self.rows:
            return "History(0 rows)"
        parts = [f"History({len(self)} rows, steps {self.rows[0]['step']}..{self.rows[-1]['step']}"]
        for key in ("train_loss", "val_loss"):
            try:
                parts.append(f"last {key}={self.last(key):.4f}")
            except ValueError:
                pass
        return ", ".join(parts) + ")"


# ----------------------------------------------------------------------------------------------
# Optimizer, batches, evaluation


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay only on parameters with ≥ 2 dims (matrices, embeddings).

    Biases and norm gains (1-D) are not decayed: shrinking them toward 0 regularises nothing useful
    (Loshchilov & Hutter, 2019; the split used by nanoGPT and most LLM codebases). If the model has
    its own ``configure_optimizer(weight_decay, lr, betas)`` that one is used instead.
    """
    if hasattr(model, "configure_optimizer"):
        return model.configure_optimizer(weight_decay=cfg.weight_decay, lr=cfg.lr, betas=cfg.betas)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=cfg.betas)


def _model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _fetch_batch(
    get_batch: GetBatch, split: str, batch_size: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Call ``get_batch`` and check what comes back before the model sees it."""
    out = get_batch(split, batch_size, generator)
    call = f"get_batch({split!r}, {batch_size}, generator)"
    if not isinstance(out, (tuple, list)) or len(out) != 2:
        raise TypeError(f"{call} returned {type(out).__name__}; it must return a pair (x, y) of tensors")
    x, y = out
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"{call} returned ({type(x).__name__}, {type(y).__name__}); both x and y must be torch.Tensor"
        )
    if x.dim() == 0 or y.dim() == 0 or x.shape[0] != batch_size or y.shape[0] != batch_size:
        raise ValueError(
            f"{call} returned x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}; "
            f"both must have batch_size={batch_size} rows first, e.g. x: (B, T), y: (B, T)"
        )
    return x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def _forward_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    out = model(x, y)
    if not isinstance(out, (tuple, list)) or len(out) != 2 or not isinstance(out[1], torch.Tensor):
        raise TypeError(
            "model(x, y) must return (logits, loss) with loss a scalar tensor; "
            f"got {type(out).__name__}" + (f" with loss={out[1]!r}" if isinstance(out, (tuple, list)) else "")
        )
    loss = out[1]
    if loss.numel() != 1:
        raise ValueError(f"model(x, y) returned a loss of shape {tuple(loss.shape)}; it must be a scalar (mean)")
    return loss


@torch.no_grad()
def evaluate(
    model: nn.Module, get_batch: GetBatch, iters: int, batch_size: int, generator: torch.Generator
) -> float:
    """Mean loss over ``iters`` batches of the ``"val"`` split, in eval mode and without gradients.

    The model's train/eval mode is restored afterwards, so dropout comes back on in training.
    Passing a generator seeded the same way each time evaluates on the same batches every time,
    which removes batch-sampling noise from the validation curve.
    """
    if not _is_int(iters) or iters < 1:
        raise ValueError(f"iters={iters!r} is invalid: must be an integer >= 1")
    was_training = model.training
    device = _model_device(model)
    model.eval()
    try:
        total = 0.0
        for _ in range(iters):
            x, y = _fetch_batch(get_batch, "val", batch_size, generator, device)
            total += _forward_loss(model, x, y).item()
    finally:
        model.train(was_training)
    return total / iters


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite. ``.history`` holds the rows recorded up to that step."""

    def __init__(self, message: str, history: History) -> None:
        super().__init__(message)
        self.history = history


def _maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return model
    if not hasattr(torch, "compile"):
        warnings.warn("cfg.compile=True but this torch has no torch.compile; running eager", stacklevel=3)
        return model
    try:
        return torch.compile(model)
    except Exception as e:  # e.g. unsupported Python version or platform
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); running eager", stacklevel=3)
        return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------------------------
# The training loop


def train(
    model: nn.Module,
    get_batch: GetBatch,
    cfg: TrainConfig,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    callback: Callback | None = None,
) -> History:
    """Train ``model`` for ``cfg.max_steps`` AdamW steps and return its :class:`History`.

    ``get_batch(split, batch_size, generator) -> (x, y)`` must draw its randomness from
    ``generator`` (a CPU ``torch.Generator``; the trainer moves x and y to the device): training batches come from one ``torch.Generator`` seeded with ``cfg.seed`` and
    every evaluation uses a fresh generator seeded with ``cfg.seed + 1`` (same val batches each time).
    ``torch.manual_seed(cfg.seed)`` is also called first (dropout and other global-RNG draws), so two
    runs with the same seed, model initialisation and data give identical histories (``tokens_per_s``
    is wall-clock and naturally differs).

    ``optimizer`` overrides the default (:func:`make_optimizer`); its learning rate is set to
    :func:`lr_at` on every step. ``callback(step, row, model)`` is called after each update with the
    row just recorded; returning ``True`` stops training early (a final evaluation still runs).

    Raises :class:`TrainingDivergedError` when the loss becomes NaN/inf, naming the step and lr.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model.to(device)
    if optimizer is None:
        optimizer = make_optimizer(model, cfg)
    runner = _maybe_compile(model, cfg.compile)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf

    train_gen = torch.Generator().manual_seed(cfg.seed)

    def with_fallback(fn: Callable[[nn.Module], Any]) -> Any:
        """Run ``fn(runner)``; if the compiled model fails (torch.compile compiles lazily, so a
        missing C++ compiler shows up only on first use), warn once and continue eager."""
        nonlocal runner
        try:
            return fn(runner)
        except Exception as e:
            if runner is model:
                raise
            warnings.warn(f"the torch.compile'd model failed ({type(e).__name__}: {e}); running eager",
                          stacklevel=4)
            runner = model
            return fn(runner)

    def val_loss() -> float:
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        return with_fallback(lambda m: evaluate(m, get_batch, cfg.eval_iters, cfg.batch_size, gen))

    from tqdm.auto import tqdm  # imported here: a notebook without ipywidgets still imports shared.train

    history = History()
    was_training = model.training
    model.train()
    bar = tqdm(total=cfg.max_steps, desc="train", unit="step", disable=not cfg.progress, leave=True)
    optimizer.zero_grad(set_to_none=True)  # no stale gradients from before the call
    step, last_val = 0, math.nan
    try:
        for step in range(cfg.max_steps):
            val = val_loss() if step % cfg.eval_interval == 0 else math.nan
            last_val = val if not math.isnan(val) else last_val
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr

            t0 = time.perf_counter()
            x, y = _fetch_batch(get_batch, "train", cfg.batch_size, train_gen, device)
            loss = with_fallback(lambda m: _forward_loss(m, x, y))  # noqa: B023 (called right here)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise TrainingDivergedError(
                    f"loss became {loss_value} at step {step} (lr={lr:.3g}); training diverged. "
                    f"Try a lower cfg.lr (now {cfg.lr:g}), more warmup_steps (now {cfg.warmup_steps}) "
                    f"or grad_clip (now {cfg.grad_clip}), and check the batch for NaN/inf inputs.",
                    history,
                )
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm).item()  # ||g||_2 before clipping
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            _sync(device)
            dt = time.perf_counter() - t0

            row = history.append(
                step=step, train_loss=loss_value, val_loss=val, lr=lr,
                tokens_per_s=x.numel() / dt if dt > 0 else math.nan, grad_norm=grad_norm,
            )
            bar.update(1)
            if cfg.progress:
                postfix = {"loss": f"{loss_value:.4f}", "lr": f"{lr:.2e}"}
                if not math.isnan(last_val):
                    postfix["val"] = f"{last_val:.4f}"
                bar.set_postfix(postfix, refresh=False)
            if callback is not None and callback(step, row, model) is True:
                break
        history.append(step=step + 1, val_loss=val_loss())
    finally:
        bar.close()
        model.train(was_training)
    return history


# ----------------------------------------------------------------------------------------------
# Checkpoints


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


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never half.

    The bytes go to a temporary file in the same directory (same filesystem), are flushed and
    fsync'ed to disk, and only then renamed over ``path`` with ``os.replace`` (atomic on POSIX and
    Windows). On any failure the temporary file is removed and ``path`` is untouched.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)


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
    if not _is_int(step) or step < 0:
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
    _atomic_write_bytes(path, data)
    _atomic_write_bytes(_sidecar(path), f"{digest}  {path.name}\n".encode())
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
        warnings.warn(f"no checksum file {side.name} next to {path.name}; loading it unverified", stacklevel=2)
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(
            f"could not read checkpoint {path} with torch.load(weights_only=True): {type(e).__name__}: {e}"
        ) from e
    if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint written by shared.train.save_checkpoint")

    if model is not None:
        _load_model_state(_unwrap(model), payload["model"], path)
    if optimizer is not None:
        if payload.get("optimizer") is None:
            raise CheckpointError(f"checkpoint {path} has no optimizer state (it was saved with optimizer=None)")
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
