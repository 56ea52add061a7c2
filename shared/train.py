"""Training: a small, readable trainer for any model whose ``forward(x, y)`` returns ``(logits, loss)``.

What one call to :func:`train` does, step by step (the loop of nanoGPT's ``train.py``, made small)::

    for s in 0 .. max_steps-1:
        every eval_interval steps: val_loss = evaluate(model)           # model.eval() + no_grad
        lr = lr_at(s, cfg)                                               # warmup, then cosine (or flat)
        x, y = get_batch("train", batch_size, generator)                 # (B, T), (B, T)
        logits, loss = model(x, y)
        loss.backward()
        grad_norm = clip_grad_norm_(params, grad_clip)                   # ||g||_2 before clipping
        optimizer.step(); optimizer.zero_grad()
        tracker.log(row)                                                 # optional: jsonl, trackio, wandb
    val_loss = evaluate(model)                                           # the final weights

Row ``s`` of the returned :class:`History` describes the weights θ_s *after s updates*: its
``train_loss`` is the loss of training batch ``s`` under θ_s (measured just before update ``s``), its
``val_loss`` is the mean validation loss of θ_s (NaN on steps without evaluation), ``lr`` and
``grad_norm`` belong to update ``s``. One extra, last row (``step == max_steps``) holds the validation
loss of the final weights θ_T and NaN elsewhere, so ``history.last("val_loss")`` is the final model's.

One of each, used by every trainer in this package (the scaling-law sweep, ``shared.sweep``, runs this
same loop through the hooks of :func:`train`):

* **Device**: ``TrainConfig(device="auto")`` asks :func:`shared.device.get_device`, so
  ``HARDWAY_DEVICE=cpu`` (or ``cuda``, ``mps``) steers training; an explicit ``device="cpu"`` wins.
* **Schedule**: :func:`lr_at`, linear warmup then ``cfg.schedule``: ``"cosine"`` down to ``min_lr``
  or ``"constant"``.
* **Optimizer**: :func:`make_optimizer`, AdamW over the parameter groups of :func:`param_groups`
  (decay on matrices only). Pass ``optimizer=`` to :func:`train` to use another.

Experiment tracking (:mod:`shared.tracking`), off by default and contacting nothing unless asked:
``train(model, get_batch, cfg, tracker="jsonl")`` writes the config and every History row to
``runs/train-<time>.jsonl`` with no extra dependency; ``tracker="trackio"`` logs to the local-first
trackio (``pip install trackio``; ``trackio show`` opens the dashboard); ``tracker="wandb"`` logs to
Weights & Biases in offline mode (``pip install wandb``; ``wandb sync`` uploads later). A
``JsonlTracker(path)``, ``TrackioTracker(project=...)`` or ``WandbTracker(mode="online", ...)``
object sets the options.

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
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from shared.compat import fused_adamw_kwargs
from shared.device import get_device, is_device_spec
from shared.tracking import Tracker, make_tracker
from shared.utils import is_int, is_real

__all__ = [
    "History",
    "SCHEDULES",
    "TrainConfig",
    "TrainingDivergedError",
    "evaluate",
    "lr_at",
    "make_optimizer",
    "param_groups",
    "train",
]

GetBatch = Callable[[str, int, torch.Generator], tuple[torch.Tensor, torch.Tensor]]
Callback = Callable[[int, dict[str, float], nn.Module], "bool | None"]
EvalFn = Callable[[nn.Module], float]
ReduceLoss = Callable[[torch.Tensor], float]

#: What follows the warmup: a cosine down to ``min_lr`` at the last step, or the peak rate held flat.
SCHEDULES: tuple[str, ...] = ("cosine", "constant")


# ----------------------------------------------------------------------------------------------
# Config


def _invalid(cfg: Any, name: str, allowed: str) -> ValueError:
    return ValueError(f"{type(cfg).__name__}.{name}={getattr(cfg, name)!r} is invalid: {allowed}")


@dataclass
class TrainConfig:
    """Everything :func:`train` needs to know, validated on construction.

    ``min_lr`` defaults to ``lr / 10`` (the floor of the cosine decay, as in Chinchilla's setup).
    ``schedule`` is what follows the warmup: ``"cosine"`` (down to ``min_lr`` at the last step) or
    ``"constant"`` (``lr`` until the end; every prefix of the run is then a shorter run, which the
    scaling-law sweep uses). ``device="auto"`` asks :func:`shared.device.get_device`:
    ``$HARDWAY_DEVICE`` if set, else CUDA, then Apple MPS, then CPU. ``progress`` shows a ``tqdm``
    bar with the current loss; ``compile`` wraps the model in ``torch.compile`` and falls back to
    eager mode with a warning where compilation is unavailable or fails.
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
    schedule: str = "cosine"

    def __post_init__(self) -> None:
        for name in ("max_steps", "batch_size", "eval_interval", "eval_iters"):
            v = getattr(self, name)
            if not is_int(v) or v < 1:
                raise _invalid(self, name, "must be an integer >= 1")
        self._check_rates()
        self._check_optimizer()
        if not is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise _invalid(self, "seed", "must be an integer with 0 <= seed < 2**63")
        if not isinstance(self.device, str) or not is_device_spec(self.device):
            raise _invalid(self, "device", "must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'")
        for name in ("progress", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise _invalid(self, name, "must be True or False")

    def _check_rates(self) -> None:
        """lr, min_lr (None → lr/10), warmup_steps and schedule."""
        if not is_real(self.lr) or self.lr <= 0:
            raise _invalid(self, "lr", "must be a finite number > 0")
        if self.min_lr is None:
            self.min_lr = self.lr / 10
        if not is_real(self.min_lr) or not 0 <= self.min_lr <= self.lr:
            raise _invalid(self, "min_lr",
                           f"must be a number with 0 <= min_lr <= lr={self.lr!r} (or None for lr/10)")
        if not is_int(self.warmup_steps) or not 0 <= self.warmup_steps <= self.max_steps:
            raise _invalid(self, "warmup_steps",
                           f"must be an integer with 0 <= warmup_steps <= max_steps={self.max_steps}")
        if self.schedule not in SCHEDULES:
            raise _invalid(self, "schedule", f"must be one of {SCHEDULES}")

    def _check_optimizer(self) -> None:
        """weight_decay, betas (a list becomes a tuple) and grad_clip."""
        if not is_real(self.weight_decay) or self.weight_decay < 0:
            raise _invalid(self, "weight_decay", "must be a finite number >= 0")
        betas_ok = isinstance(self.betas, Sequence) and len(self.betas) == 2
        if not betas_ok or not all(is_real(b) and 0 <= b < 1 for b in self.betas):
            raise _invalid(self, "betas", "must be two numbers (beta1, beta2), each with 0 <= beta < 1")
        self.betas = (float(self.betas[0]), float(self.betas[1]))
        if self.grad_clip is not None and (not is_real(self.grad_clip) or self.grad_clip <= 0):
            raise _invalid(self, "grad_clip", "must be None (no clipping) or a finite number > 0")


# ----------------------------------------------------------------------------------------------
# Learning-rate schedule


def lr_at(step: int, cfg: TrainConfig) -> float:
    r"""Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine decay or flat.

    With peak :math:`\eta_{max}` = ``cfg.lr``, floor :math:`\eta_{min}` = ``cfg.min_lr``,
    :math:`W` = ``warmup_steps`` and :math:`S` = ``max_steps``::

        s < W :  η(s) = η_max · (s + 1) / (W + 1)                     (Goyal et al., 2017, §2.2)
        s ≥ W :  p    = clip((s − W) / max(1, S − 1 − W), 0, 1)
                 η(s) = η_min + ½ (η_max − η_min) (1 + cos(π p))     (Loshchilov & Hutter, 2017, Eq. 5)

    So η rises linearly to exactly η_max at ``s = W``, falls monotonically along a half cosine, and
    reaches exactly η_min at the last step ``s = S − 1`` (and stays there for any later step). The
    ``+1`` in the warmup keeps step 0 from wasting an update at learning rate 0. With
    ``cfg.schedule == "constant"`` η stays at η_max after the warmup (Kaplan et al., 2020, whose
    shorter runs are prefixes of the longer ones).
    """
    if not is_int(step) or step < 0:
        raise ValueError(f"step={step!r} is invalid: must be an integer >= 0")
    assert cfg.min_lr is not None  # set by __post_init__
    w, s_max = cfg.warmup_steps, cfg.max_steps
    if step < w:
        return cfg.lr * (step + 1) / (w + 1)
    if cfg.schedule == "constant":
        return cfg.lr
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
            both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
            return a == b or both_nan

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


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: weight decay only on trainable parameters with ≥ 2 dims.

    Matrices (linear weights, embeddings) decay; biases and norm gains (1-D) do not: shrinking them
    toward 0 regularises nothing useful (Loshchilov & Hutter, 2019; the split of GPT-2, nanoGPT and
    most LLM codebases). Within a group parameters keep the model's order; empty groups are left
    out. With ``weight_decay == 0`` there is nothing to split and all trainable parameters form one
    group in the model's order (the order in which :func:`train` sums the gradient norm).
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False)")
    if weight_decay == 0:
        return [{"params": params, "weight_decay": 0.0}]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (Loshchilov & Hutter, 2019) over :func:`param_groups`, with ``cfg``'s lr, betas and decay.

    The fused kernel is used where this PyTorch has it for the parameters' device (CUDA; the CPU
    since torch 2.4): one kernel per group instead of a loop over tensors. To train with another
    optimizer, build it yourself and pass ``train(..., optimizer=...)``.
    """
    groups = param_groups(model, cfg.weight_decay)
    fused = fused_adamw_kwargs(groups[0]["params"][0].device.type)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, **fused)


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
        raise ValueError(
            f"model(x, y) returned a loss of shape {tuple(loss.shape)}; it must be a scalar (mean)"
        )
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
    if not is_int(iters) or iters < 1:
        raise ValueError(f"iters={iters!r} is invalid: must be an integer >= 1")
    was_training = model.training
    device = _device_of(model) or torch.device("cpu")
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



class _Runner:
    """The model the loop calls: ``torch.compile``'d when ``cfg.compile``, else the model itself.

    torch.compile compiles lazily, so a missing C++ compiler shows up only on first use: a call that
    fails on the compiled model warns once and is repeated, and every later one runs, eagerly.
    """

    def __init__(self, model: nn.Module, compile: bool) -> None:
        self.model = model
        self.module = _maybe_compile(model, compile)

    def __call__(self, fn: Callable[[nn.Module], Any]) -> Any:
        try:
            return fn(self.module)
        except Exception as e:
            if self.module is self.model:
                raise
            warnings.warn(f"the torch.compile'd model failed ({type(e).__name__}: {e}); running eager",
                          stacklevel=4)
            self.module = self.model
            return fn(self.module)


def _maybe_compile(model: nn.Module, enabled: bool) -> nn.Module:
    if not enabled:
        return model
    if not hasattr(torch, "compile"):
        warnings.warn("cfg.compile=True but this torch has no torch.compile; running eager", stacklevel=4)
        return model
    try:
        return torch.compile(model)
    except Exception as e:  # e.g. unsupported Python version or platform
        warnings.warn(f"torch.compile failed ({type(e).__name__}: {e}); running eager", stacklevel=4)
        return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _diverged(loss_value: float, step: int, lr: float, cfg: TrainConfig, history: History
              ) -> TrainingDivergedError:
    return TrainingDivergedError(
        f"loss became {loss_value} at step {step} (lr={lr:.3g}); training diverged. "
        f"Try a lower cfg.lr (now {cfg.lr:g}), more warmup_steps (now {cfg.warmup_steps}) "
        f"or grad_clip (now {cfg.grad_clip}), and check the batch for NaN/inf inputs.",
        history,
    )


class _NoTracker:
    """The tracker of a run that asked for none."""

    def start(self, config: dict[str, Any]) -> None:
        pass

    def log(self, row: dict[str, float], step: int) -> None:
        pass

    def finish(self) -> None:
        pass


def _start_tracker(tracker: Tracker | str | None, model: nn.Module, cfg: TrainConfig, device: torch.device
                   ) -> Tracker:
    """The run's tracker, started with the config, the model's class and size and the device."""
    if tracker is None:
        return _NoTracker()
    track = make_tracker(tracker)
    n_params = sum(p.numel() for p in model.parameters())
    track.start({**dataclasses.asdict(cfg), "model": type(model).__name__, "n_params": n_params,
                 "device_resolved": str(device)})
    return track


# ----------------------------------------------------------------------------------------------
# The training loop


def train(
    model: nn.Module,
    get_batch: GetBatch,
    cfg: TrainConfig,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    callback: Callback | None = None,
    tracker: Tracker | str | None = None,
    eval_fn: EvalFn | None = None,
    reduce_loss: ReduceLoss | None = None,
) -> History:
    """Train ``model`` for ``cfg.max_steps`` AdamW steps and return its :class:`History`.

    ``get_batch(split, batch_size, generator) -> (x, y)`` must draw its randomness from
    ``generator`` (a CPU ``torch.Generator``; the trainer moves x and y to the device): training
    batches come from one ``torch.Generator`` seeded with ``cfg.seed`` and every evaluation uses a
    fresh generator seeded with ``cfg.seed + 1`` (same val batches each time).
    ``torch.manual_seed(cfg.seed)`` is also called first (dropout and other global-RNG draws), so two
    runs with the same seed, model initialisation and data give identical histories (``tokens_per_s``
    is wall-clock and naturally differs).

    Keyword arguments, all optional:

    * ``optimizer`` overrides the default (:func:`make_optimizer`); its learning rate is set to
      :func:`lr_at` on every step, and the gradient norm is clipped over its parameters.
    * ``callback(step, row, model)`` is called after each update with the row just recorded;
      returning ``True`` stops training early (a final evaluation still runs).
    * ``tracker``: ``"jsonl"``, ``"trackio"``, ``"wandb"`` or a :class:`shared.tracking.Tracker`;
      receives the config, then every row (see :mod:`shared.tracking`). Off by default.
    * ``eval_fn(model) -> float`` replaces the validation loss of :func:`evaluate` (e.g. the sweep's
      token-weighted mean over data-parallel ranks); it is responsible for eval mode and no_grad.
    * ``reduce_loss(loss) -> float`` turns each step's loss tensor into the recorded number (default
      ``loss.item()``; under data parallelism, the mean over ranks, so every rank sees the same one).

    The model trains on ``cfg.device`` (``"auto"``: ``$HARDWAY_DEVICE``, else CUDA > MPS > CPU) and
    comes back on the device it was on before the call, so the cells after training keep working
    with their CPU tensors when a notebook trains on a GPU. An optimizer's state stays on the
    training device. Raises :class:`TrainingDivergedError` when the loss becomes NaN/inf, naming the
    step and lr.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    device = get_device(cfg.device)
    torch.manual_seed(cfg.seed)
    home = _device_of(model)  # where the caller keeps the model; it goes back there at the end
    model.to(device)
    if optimizer is None:
        optimizer = make_optimizer(model, cfg)
    runner = _Runner(model, cfg.compile)
    params = [p for g in optimizer.param_groups for p in g["params"]]
    max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
    loss_to_float = reduce_loss if reduce_loss is not None else torch.Tensor.item
    train_gen = torch.Generator().manual_seed(cfg.seed)

    def val_loss() -> float:
        if eval_fn is not None:
            return eval_fn(model)
        gen = torch.Generator().manual_seed(cfg.seed + 1)
        return runner(lambda m: evaluate(m, get_batch, cfg.eval_iters, cfg.batch_size, gen))

    from tqdm.auto import tqdm  # imported here: a notebook without ipywidgets still imports shared.train

    history = History()
    was_training = model.training
    model.train()
    bar = tqdm(total=cfg.max_steps, desc="train", unit="step", disable=not cfg.progress, leave=True)
    optimizer.zero_grad(set_to_none=True)  # no stale gradients from before the call
    track = _start_tracker(tracker, model, cfg, device)
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
            loss = runner(lambda m: _forward_loss(m, x, y))  # noqa: B023 (called right here)
            loss_value = loss_to_float(loss)
            if not math.isfinite(loss_value):
                raise _diverged(loss_value, step, lr, cfg, history)
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
            _show_progress(bar, cfg, loss_value, lr, last_val)
            track.log(row, step)
            if callback is not None and callback(step, row, model) is True:
                break
        track.log(history.append(step=step + 1, val_loss=val_loss()), step + 1)
    finally:
        bar.close()
        model.train(was_training)
        track.finish()
        if home is not None and home != device:
            model.to(home)
    return history


def _device_of(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (None for a model without either)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def _show_progress(bar: Any, cfg: TrainConfig, loss_value: float, lr: float, last_val: float) -> None:
    bar.update(1)
    if cfg.progress:
        postfix = {"loss": f"{loss_value:.4f}", "lr": f"{lr:.2e}"}
        if not math.isnan(last_val):
            postfix["val"] = f"{last_val:.4f}"
        bar.set_postfix(postfix, refresh=False)
