"""The scaling-law sweep runner: train GPTs of several sizes and token budgets, measure everything.

One :class:`SweepPoint` is one training run (a model shape, a token budget, an optimiser setting).
:func:`run_point` trains it with the one training loop of the package, :func:`shared.train.train`
(the point's :meth:`SweepPoint.train_config`, its schedule from :func:`shared.train.lr_at`, its
AdamW from :func:`shared.train.make_optimizer`), and returns a :class:`SweepResult`: the loss
curve (every step), the validation loss at fixed intervals, wall time, throughput (tokens/s),
memory (CPU resident set; CUDA allocator peak on CUDA), the parameter count and the training
FLOPs. Project 16 builds its scaling laws from these results.

What is counted (Kaplan et al. 2020, §2.1; Hoffmann et al. 2022, Appendix F):

* ``n_params``: non-embedding parameters N (Kaplan's convention, ``GPT.num_params()``): every
  weight and bias of the blocks and the final norm; the token and position embeddings are out.
* ``tokens``: D = steps × batch_size × block_size training tokens (every position is a target).
* ``flops``: C = 6·N·D. The 6 is 2 FLOPs per multiply-add, times 3 for forward + backward.
  It omits the attention scores (12·n_layer·T·d_model per token) and the output projection
  onto the vocabulary (6·V·d_model per token); ``flops_with_attention`` adds both
  (``GPT.flops_per_token``), which matters for the tiny models here, where T is not ≪ d_model.

Distributed data parallel (Li et al. 2020, "PyTorch Distributed", VLDB, §3): started by ``torchrun``
the same module trains one model on several processes. Every rank draws the same *global* batch of
``batch_size`` windows from the same seeded generator and keeps its own disjoint slice of
``batch_size / world_size`` windows; its loss is the mean over its slice; DDP averages the gradients
over ranks in backward. With equal slices the average of the slice means is the global mean, so the
update, and the loss curve, equal the single-process run at the same global batch up to float
round-off. Backend gloo on CPU, nccl on CUDA; rank 0 writes the output.

Command line (``--help`` lists everything)::

    python -m shared.sweep --d-model 16 32 64 --n-layer 2 --steps 300 --out sweep.json
    torchrun --nproc_per_node=2 -m shared.sweep --d-model 32 --steps 100 --out sweep.csv
    python -m torch.distributed.run --nproc_per_node=2 -m shared.sweep ...   # the same, no torchrun script

Every combination of ``--d-model`` × ``--n-layer`` × ``--steps`` is one point. The output is JSON
(everything, loss curves included) or CSV (one row per point, scalars only), by the file suffix,
written atomically (a temporary file, then ``os.replace``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from shared.corpus import load_shakespeare
from shared.data import train_val_split
from shared.device import MemoryTracker, get_device, peak_memory
from shared.model import GPT, GPTConfig
from shared.tokenizers import CharTokenizer
from shared.train import SCHEDULES as TRAIN_SCHEDULES
from shared.train import GetBatch, History, TrainConfig, TrainingDivergedError, lr_at, train
from shared.utils import atomic_write_text, is_int, is_real

__all__ = [
    "SweepData",
    "SweepPoint",
    "SweepResult",
    "load_data",
    "lr_schedule",
    "main",
    "parse_args",
    "run_point",
    "run_sweep",
    "train_point",
    "write_results",
]

SCHEDULES = tuple(sorted(TRAIN_SCHEDULES))  # ("constant", "cosine"): those of shared.train.lr_at
CSV_COLUMNS = (
    "n_layer", "d_model", "n_head", "steps", "batch_size", "block_size", "lr", "schedule", "seed",
    "n_params", "n_params_total", "tokens", "flops", "flops_with_attention", "final_train_loss",
    "final_val_loss", "wall_s", "train_s", "tokens_per_s", "cpu_rss_peak_mib", "cpu_rss_delta_mib",
    "cuda_peak_mib", "world_size", "device",
)


# ----------------------------------------------------------------------------------------------
# One point of the sweep


@dataclass(frozen=True)
class SweepPoint:
    """One training run. Invalid values raise ``ValueError`` naming the field, the value and the rule.

    The model is GPT-2 style (learned positions, LayerNorm, pre-LN, GELU, tied embeddings).
    ``batch_size`` is the *global* batch in windows of ``block_size`` tokens; under DDP each of the
    ``world_size`` ranks gets ``batch_size / world_size``.
    ``schedule``: ``"constant"`` (linear warmup, then flat; intermediate losses are then
    usable as shorter runs, as in Kaplan et al. 2020) or ``"cosine"`` (warmup, then a cosine down to
    lr/10 at the last step, the schedule Hoffmann et al. 2022 match to each run's length, §3.1).
    """

    n_layer: int = 2
    d_model: int = 32
    n_head: int = 2
    block_size: int = 32
    batch_size: int = 16
    steps: int = 200
    lr: float = 3e-3
    warmup_steps: int = 20
    schedule: str = "constant"
    weight_decay: float = 0.0
    grad_clip: float | None = 1.0
    eval_interval: int = 50
    eval_batches: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        def fail(name: str, rule: str) -> None:
            raise ValueError(f"SweepPoint.{name}={getattr(self, name)!r} {rule}")

        for name in ("n_layer", "d_model", "n_head", "block_size", "batch_size", "steps",
                     "eval_interval", "eval_batches"):
            if not is_int(getattr(self, name)) or getattr(self, name) < 1:
                fail(name, "must be an int >= 1")
        if self.d_model % self.n_head != 0:
            fail("n_head", f"must divide d_model={self.d_model}")
        if not is_real(self.lr) or self.lr <= 0:
            fail("lr", "must be a finite number > 0")
        if not is_int(self.warmup_steps) or not 0 <= self.warmup_steps <= self.steps:
            fail("warmup_steps", f"must be an int with 0 <= warmup_steps <= steps={self.steps}")
        if self.schedule not in SCHEDULES:
            fail("schedule", f"is not one of {SCHEDULES}")
        if not is_real(self.weight_decay) or self.weight_decay < 0:
            fail("weight_decay", "must be a finite number >= 0")
        if self.grad_clip is not None and (not is_real(self.grad_clip) or self.grad_clip <= 0):
            fail("grad_clip", "must be None (no clipping) or a finite number > 0")
        if not is_int(self.seed) or not 0 <= self.seed < 2**31:
            fail("seed", "must be an int with 0 <= seed < 2**31")

    @property
    def tokens(self) -> int:
        """D: training tokens = steps × batch_size × block_size."""
        return self.steps * self.batch_size * self.block_size

    def train_config(self, batch_size: int | None = None, device: str = "cpu") -> TrainConfig:
        """The :class:`~shared.train.TrainConfig` this point trains with (``batch_size``: per rank).

        Learning rate, warmup, schedule (its floor lr/10, TrainConfig's default ``min_lr``), weight
        decay (0 by default), gradient clipping, evaluation interval and seed are the point's; the
        betas are TrainConfig's (0.9, 0.95). ``batch_size`` defaults to the global batch.
        """
        return TrainConfig(
            max_steps=self.steps, batch_size=self.batch_size if batch_size is None else batch_size,
            lr=self.lr, warmup_steps=self.warmup_steps, schedule=self.schedule,
            weight_decay=self.weight_decay, grad_clip=self.grad_clip, eval_interval=self.eval_interval,
            eval_iters=self.eval_batches, seed=self.seed, device=device,
        )

    def config(self, vocab_size: int) -> GPTConfig:
        """The GPT-2 style ``GPTConfig`` of this point."""
        return GPTConfig(
            vocab_size=vocab_size, block_size=self.block_size, n_layer=self.n_layer, n_head=self.n_head,
            d_model=self.d_model, dropout=0.0, pos_encoding="learned", norm="layernorm",
            norm_placement="pre", activation="gelu", tie_embeddings=True,
        )


def lr_schedule(step: int, point: SweepPoint) -> float:
    """Learning rate of update ``step``: :func:`shared.train.lr_at` of the point's training config.

    Warmup η·(s+1)/(W+1), then flat (``"constant"``) or a cosine down to η/10 at the last step.
    """
    return lr_at(step, point.train_config())


@dataclass
class SweepResult:
    """Everything measured for one point. ``train_loss[s]`` is the global-batch mean loss before update s;
    ``val_loss[i]`` is the validation loss after ``eval_steps[i]`` updates (the last one: all of them)."""

    point: dict[str, Any]
    n_params: int  # non-embedding N (Kaplan et al. 2020)
    n_params_total: int  # every parameter, embeddings once (tied)
    tokens: int  # D
    flops: float  # 6·N·D
    flops_with_attention: float  # GPT.flops_per_token() · D (adds attention scores and the output head)
    train_loss: list[float]
    eval_steps: list[int]
    val_loss: list[float]
    wall_s: float  # the whole run: training and evaluation
    train_s: float  # training steps only
    tokens_per_s: float  # global training tokens per second of train_s
    cpu_rss_peak_mib: float | None  # this process's high-water resident memory
    cpu_rss_delta_mib: float | None  # resident memory after the run minus before
    cuda_peak_mib: float | None  # CUDA allocator peak during the run (None on CPU)
    world_size: int
    device: str

    @property
    def final_val_loss(self) -> float:
        return self.val_loss[-1]

    @property
    def final_train_loss(self) -> float:
        return self.train_loss[-1]

    def val_loss_at(self, tokens: float) -> float:
        """Validation loss after ``tokens`` training tokens, interpolated linearly in log tokens.

        Meaningful for the constant schedule (each prefix of the run is a shorter run, up to the
        learning-rate decay it lacks); ``tokens`` must lie within the evaluated range.
        """
        per_step = self.tokens / self.point["steps"]
        d = [s * per_step for s in self.eval_steps]
        if not d[1] <= tokens <= d[-1] * (1 + 1e-9):
            raise ValueError(
                f"val_loss_at: tokens={tokens:.4g} is outside the evaluated range [{d[1]:.4g}, {d[-1]:.4g}]"
            )
        x = math.log(tokens)
        for i in range(1, len(d) - 1):
            if math.log(d[i + 1]) >= x:
                t = (x - math.log(d[i])) / (math.log(d[i + 1]) - math.log(d[i]))
                return self.val_loss[i] + t * (self.val_loss[i + 1] - self.val_loss[i])
        return self.val_loss[-1]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SweepResult:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})

    def row(self) -> dict[str, Any]:
        """The scalars of this result, one CSV row (keys: ``CSV_COLUMNS``)."""
        p = self.point
        out = {k: p[k] for k in ("n_layer", "d_model", "n_head", "steps", "batch_size", "block_size", "lr",
                                 "schedule", "seed")}
        out.update(
            n_params=self.n_params, n_params_total=self.n_params_total, tokens=self.tokens, flops=self.flops,
            flops_with_attention=self.flops_with_attention, final_train_loss=self.final_train_loss,
            final_val_loss=self.final_val_loss, wall_s=self.wall_s, train_s=self.train_s,
            tokens_per_s=self.tokens_per_s, cpu_rss_peak_mib=self.cpu_rss_peak_mib,
            cpu_rss_delta_mib=self.cpu_rss_delta_mib, cuda_peak_mib=self.cuda_peak_mib,
            world_size=self.world_size, device=self.device,
        )
        return {k: out[k] for k in CSV_COLUMNS}


# ----------------------------------------------------------------------------------------------
# Data


@dataclass
class SweepData:
    """Token ids of the training and validation text (1-D long tensors) and the vocabulary size."""

    train: torch.Tensor
    val: torch.Tensor
    vocab_size: int
    tokenizer: CharTokenizer | None = field(default=None, repr=False)


def load_data(train_chars: int = 1_000_000, val_chars: int = 100_000) -> SweepData:
    """Character-level Shakespeare (``shared.data``): the first ``train_chars`` characters of the
    training split and the first ``val_chars`` of the validation split; the vocabulary is every
    character of the corpus."""
    for name, v in (("train_chars", train_chars), ("val_chars", val_chars)):
        if not is_int(v) or v < 1000:
            raise ValueError(f"load_data: {name}={v!r} must be an int >= 1000")
    text = load_shakespeare()
    tok = CharTokenizer.from_text(text)
    train_text, val_text = train_val_split(text, 0.1)
    return SweepData(
        train=tok.encode_tensor(train_text[:train_chars]), val=tok.encode_tensor(val_text[:val_chars]),
        vocab_size=tok.vocab_size, tokenizer=tok,
    )


def _windows(data: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    index = starts[:, None] + torch.arange(block_size)  # (b, T)
    return data[index], data[index + 1]  # (b, T), (b, T)


def _rank_batches(data: SweepData, block_size: int) -> GetBatch:
    """``get_batch(split, b, generator)`` for :func:`shared.train.train`: this rank's slice of a global batch.

    Every rank draws the same ``b · world_size`` window starts from the same generator and keeps
    its own ``b`` of them, so the ranks' slices are disjoint and together form the global batch.
    """
    rank, world = _world()

    def get_batch(split: str, batch_size: int, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = {"train": data.train, "val": data.val}[split]
        starts = torch.randint(len(ids) - block_size, (batch_size * world,), generator=generator)  # (B,)
        return _windows(ids, starts[rank * batch_size:(rank + 1) * batch_size], block_size)  # (b, T) each

    return get_batch


# ----------------------------------------------------------------------------------------------
# Distributed helpers


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _global_mean(value: torch.Tensor) -> float:
    """Mean over ranks of a scalar (identity in one process)."""
    rank, world = _world()
    if world == 1:
        return float(value.detach())
    t = value.detach().clone().reshape(1).to(torch.float64 if value.device.type == "cpu" else value.dtype)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / world


# ----------------------------------------------------------------------------------------------
# Training one point


@torch.no_grad()
def _evaluate(model: GPT, get_batch: GetBatch, point: SweepPoint, device: torch.device) -> float:
    """Mean next-token loss over fixed validation windows (seed + 1), sharded over ranks like training.

    The mean is over every token of every rank (a float64 sum of token losses over the token count),
    so it does not depend on how the windows are split between ranks.
    """
    _, world = _world()
    gen = torch.Generator().manual_seed(point.seed + 1)
    total = torch.zeros(2, dtype=torch.float64)  # (sum of token losses, number of tokens)
    was_training = model.training
    model.eval()
    for _ in range(point.eval_batches):
        x, y = get_batch("val", point.batch_size // world, gen)  # (b, T) each
        logits, _ = model(x.to(device))  # (b, T, V)
        y = y.to(device)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        total += torch.tensor([float(loss), y.numel()], dtype=torch.float64)
    model.train(was_training)
    if world > 1:
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return float(total[0] / total[1])


def _point_device(point: SweepPoint, device: str | torch.device | None) -> torch.device:
    """:func:`shared.device.get_device`; under torchrun with CUDA, rank r's ``cuda:LOCAL_RANK``."""
    _, world = _world()
    if point.batch_size % world != 0:
        raise ValueError(
            f"SweepPoint.batch_size={point.batch_size} is not divisible by world_size={world}: each rank "
            f"takes batch_size / world_size windows of the global batch; use a multiple of {world}"
        )
    dev = get_device(device)
    if dev.type == "cuda" and world > 1 and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


def train_point(
    point: SweepPoint, data: SweepData | None = None, device: str | torch.device | None = "cpu"
) -> tuple[SweepResult, GPT]:
    """Train one point; return its :class:`SweepResult` and the trained model (unwrapped from DDP).

    The loop is :func:`shared.train.train` with the point's :meth:`SweepPoint.train_config`, fed this
    rank's slice of every global batch, evaluated by the token-weighted validation loss over all
    ranks, and recording the loss averaged over ranks. In a process group (``torchrun``) the model
    is wrapped in ``DistributedDataParallel``. ``device`` goes to :func:`shared.device.get_device`
    (``None`` or ``"auto"``: ``$HARDWAY_DEVICE``, else the best available); under torchrun with CUDA
    each rank uses ``cuda:LOCAL_RANK``.
    """
    if not isinstance(point, SweepPoint):
        raise ValueError(f"train_point needs a SweepPoint, got {type(point).__name__}")
    dev = _point_device(point, device)
    data = load_data() if data is None else data
    if len(data.train) <= point.block_size + 1 or len(data.val) <= point.block_size + 1:
        raise ValueError(f"the data must be longer than block_size={point.block_size} + 1 tokens")
    _, world = _world()

    torch.manual_seed(point.seed)  # the same initial weights on every rank (DDP also broadcasts rank 0's)
    model = GPT(point.config(data.vocab_size)).to(dev)
    runner: torch.nn.Module = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        runner = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    get_batch = _rank_batches(data, point.block_size)
    eval_s = 0.0

    def val_loss(_: torch.nn.Module) -> float:
        nonlocal eval_s
        t0 = time.perf_counter()
        value = _evaluate(model, get_batch, point, dev)
        eval_s += time.perf_counter() - t0
        return value

    t_start = time.perf_counter()
    with MemoryTracker(dev) as mem:
        try:
            history = train(runner, get_batch, point.train_config(point.batch_size // world, str(dev)),
                            eval_fn=val_loss, reduce_loss=_global_mean)
        except TrainingDivergedError as err:
            where = f"sweep point d_model={point.d_model}, n_layer={point.n_layer}, lr={point.lr}"
            raise TrainingDivergedError(f"{where}: {err}", err.history) from err
    wall_s = time.perf_counter() - t_start
    return _result(point, model, history, wall_s, wall_s - eval_s, mem, world, dev), model


def _result(point: SweepPoint, model: GPT, history: History, wall_s: float, train_s: float,
            mem: MemoryTracker, world: int, dev: torch.device) -> SweepResult:
    """The :class:`SweepResult` of a finished run: curves from its History, counts from the model."""
    steps, final = history.rows[:-1], history.rows[-1]
    evaluated = [r for r in steps if r["step"] % point.eval_interval == 0] + [final]
    n = model.num_params(non_embedding=True)
    tokens = point.tokens
    return SweepResult(
        point=dataclasses.asdict(point), n_params=n, n_params_total=model.num_params(non_embedding=False),
        tokens=tokens, flops=6.0 * n * tokens, flops_with_attention=float(model.flops_per_token()) * tokens,
        train_loss=[r["train_loss"] for r in steps], eval_steps=[int(r["step"]) for r in evaluated],
        val_loss=[r["val_loss"] for r in evaluated], wall_s=wall_s, train_s=train_s,
        tokens_per_s=tokens / train_s if train_s > 0 else math.nan,
        cpu_rss_peak_mib=peak_memory()["cpu_max_rss_mib"], cpu_rss_delta_mib=mem.cpu_rss_delta_mib,
        cuda_peak_mib=mem.cuda_peak_mib, world_size=world, device=str(dev),
    )


def run_point(point: SweepPoint, data: SweepData | None = None, device: str | torch.device | None = "cpu"
              ) -> SweepResult:
    """Train one point and return its :class:`SweepResult` (the model is dropped)."""
    return train_point(point, data, device)[0]


def run_sweep(points: Sequence[SweepPoint], data: SweepData | None = None,
              device: str | torch.device | None = "cpu", verbose: bool = False) -> list[SweepResult]:
    """Run every point in order (the same data for all); with ``verbose`` rank 0 prints one line per point."""
    if not points:
        raise ValueError("run_sweep: points is empty; give at least one SweepPoint")
    data = load_data() if data is None else data
    results = []
    for p in points:
        r = run_point(p, data, device)
        results.append(r)
        if verbose and _world()[0] == 0:
            print(
                f"d_model={p.d_model:4d} n_layer={p.n_layer} steps={p.steps:5d}  N={r.n_params:>9,}  "
                f"D={r.tokens:>11,}  C=6ND={r.flops:.3g}  val loss {r.final_val_loss:.4f}  "
                f"{r.tokens_per_s:,.0f} tok/s  {r.wall_s:.1f} s",
                flush=True,
            )
    return results


# ----------------------------------------------------------------------------------------------
# Output


def write_results(results: Sequence[SweepResult], path: str | os.PathLike[str],
                  meta: dict[str, Any] | None = None) -> Path:
    """Write results atomically: ``.json`` (everything, curves included) or ``.csv`` (scalars per point)."""
    path = Path(path)
    if path.suffix not in (".json", ".csv"):
        raise ValueError(f"output path {str(path)!r} must end in .json or .csv")
    if path.suffix == ".json":
        text = json.dumps({"meta": meta or {}, "results": [r.to_dict() for r in results]}, indent=1)
    else:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for r in results:
            writer.writerow(r.row())
        text = buf.getvalue()
    atomic_write_text(path, text)
    return path


def read_results(path: str | os.PathLike[str]) -> list[SweepResult]:
    """The results of a ``.json`` file written by :func:`write_results`."""
    with open(path, encoding="utf-8") as f:
        return [SweepResult.from_dict(d) for d in json.load(f)["results"]]


# ----------------------------------------------------------------------------------------------
# Command line


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected an integer >= 1") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} is not allowed; expected an integer >= 1")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected a finite number > 0") from None
    if not math.isfinite(v) or v <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; expected a finite number > 0")
    return v


def _output_path(text: str) -> Path:
    p = Path(text)
    if p.suffix not in (".json", ".csv"):
        raise argparse.ArgumentTypeError(f"{text!r} must end in .json or .csv (the suffix picks the format)")
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.sweep",
        description="Train GPT-2-style char-level Shakespeare models over a grid of sizes and token budgets; "
        "record loss curves, wall time, tokens/s, memory, N and FLOPs. Runs under torchrun "
        "(DistributedDataParallel: gloo on CPU, nccl on CUDA). Every --d-model x --n-layer x --steps "
        "combination is one point.",
    )
    add = parser.add_argument
    add("--d-model", type=_positive_int, nargs="+", default=[16, 32], help="model widths")
    add("--n-layer", type=_positive_int, nargs="+", default=[2], help="numbers of blocks")
    add("--steps", type=_positive_int, nargs="+", default=[200], help="training steps (token budgets)")
    add("--n-head", type=_positive_int, default=2, help="attention heads (must divide every d_model)")
    add("--batch-size", type=_positive_int, default=16,
        help="GLOBAL batch in windows; each of the world_size ranks gets batch_size / world_size")
    add("--block-size", type=_positive_int, default=32, help="tokens per window (T)")
    add("--lr", type=_positive_float, default=3e-3, help="peak learning rate (AdamW)")
    add("--warmup-steps", type=int, default=20, help="linear warmup steps (>= 0, <= steps)")
    add("--schedule", choices=SCHEDULES, default="constant", help="after warmup: flat or cosine to lr/10")
    add("--eval-interval", type=_positive_int, default=50, help="validate every this many steps")
    add("--eval-batches", type=_positive_int, default=8, help="validation batches per evaluation")
    add("--seed", type=int, default=0, help="seed of the weights and of the batch order")
    add("--train-chars", type=_positive_int, default=1_000_000, help="training characters used")
    add("--val-chars", type=_positive_int, default=100_000, help="validation characters used")
    add("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
        help="auto: $HARDWAY_DEVICE if set, else CUDA, MPS or CPU (shared.device.get_device)")
    add("--out", type=_output_path, required=True, help="results file: .json (with curves) or .csv")
    add("--quiet", action="store_true", help="no per-point lines")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, list[SweepPoint]]:
    """Parse the command line into the namespace and the grid of points (bad values exit with a message)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    points = []
    try:
        for d, n_layer, steps in itertools.product(args.d_model, args.n_layer, args.steps):
            points.append(SweepPoint(
                n_layer=n_layer, d_model=d, n_head=args.n_head, block_size=args.block_size,
                batch_size=args.batch_size, steps=steps, lr=args.lr,
                warmup_steps=min(args.warmup_steps, steps), schedule=args.schedule,
                eval_interval=args.eval_interval, eval_batches=args.eval_batches, seed=args.seed,
            ))
    except ValueError as err:
        parser.error(str(err))
    return args, points


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sweep the command line describes (in a process group when started by torchrun)."""
    args, points = parse_args(argv)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = get_device(args.device)
    if world > 1:
        if device.type == "mps":
            print("error: DistributedDataParallel needs CPU (gloo) or CUDA (nccl), not MPS; "
                  "use --device cpu", file=sys.stderr)
            return 2
        if args.batch_size % world != 0:
            print(f"error: --batch-size {args.batch_size} is not divisible by world_size={world} "
                  f"(each rank takes batch_size / world_size windows)", file=sys.stderr)
            return 2
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    try:
        data = load_data(args.train_chars, args.val_chars)
        results = run_sweep(points, data, device, verbose=not args.quiet)
        rank, world = _world()
        if rank == 0:
            meta = {"argv": list(sys.argv[1:] if argv is None else argv), "world_size": world,
                    "backend": dist.get_backend() if world > 1 else None, "torch": torch.__version__}
            path = write_results(results, args.out, meta)
            if not args.quiet:
                print(f"wrote {len(results)} point(s) to {path}", flush=True)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
