"""Tests for shared/train.py: schedule, config, device, optimizer, the loop and its hooks, tracking."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.model import GPT, GPTConfig
from shared.tracking import JsonlTracker
from shared.train import (
    History,
    TrainConfig,
    TrainingDivergedError,
    evaluate,
    lr_at,
    make_optimizer,
    param_groups,
    train,
)

V, T = 16, 8  # vocabulary size and sequence length of the toy task


class Bigram(nn.Module):
    """Next-token logits from the current token only (a lookup table), plus a LayerNorm and dropout
    so that the model has 1-D parameters and train/eval behaviour to test."""

    def __init__(self, vocab: int = V, dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, vocab)
        self.ln = nn.LayerNorm(vocab)
        self.drop = nn.Dropout(dropout)
        self.modes_seen: list[bool] = []

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        self.modes_seen.append(self.training)
        logits = self.drop(self.ln(self.emb(x)))  # (B, T, V)
        loss = None if y is None else F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
        return logits, loss


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def plus_one_batch(split: str, batch_size: int, generator: torch.Generator):
    """A learnable task: the next token is the current one plus 1 (mod V)."""
    x = torch.randint(0, V, (batch_size, T), generator=generator)  # (B, T)
    return x, (x + 1) % V


def small_cfg(**kw) -> TrainConfig:
    base = dict(max_steps=60, batch_size=8, lr=3e-2, warmup_steps=5, eval_interval=20, eval_iters=2,
                device="cpu", seed=0)
    base.update(kw)
    base["warmup_steps"] = min(base["warmup_steps"], base["max_steps"])
    return TrainConfig(**base)


def fresh_model(seed: int = 0, **kw) -> Bigram:
    torch.manual_seed(seed)
    return Bigram(**kw)


# ----------------------------------------------------------------------------------------------
# lr schedule


def test_lr_schedule_warms_up_linearly_peaks_at_warmup_end_and_decays_to_min_lr():
    cfg = TrainConfig(max_steps=100, lr=1.0, min_lr=0.1, warmup_steps=10)
    assert lr_at(0, cfg) == pytest.approx(1.0 / 11)
    assert lr_at(4, cfg) == pytest.approx(5.0 / 11)
    assert lr_at(10, cfg) == pytest.approx(1.0)  # warmup end = peak
    assert lr_at(99, cfg) == pytest.approx(0.1)  # last step = floor
    assert lr_at(500, cfg) == pytest.approx(0.1)  # and it stays there
    # halfway through the cosine the rate is the midpoint of peak and floor
    mid = 10 + (99 - 10) / 2
    assert lr_at(int(mid), cfg) == pytest.approx(0.55, abs=0.02)
    warm = [lr_at(s, cfg) for s in range(0, 11)]
    decay = [lr_at(s, cfg) for s in range(10, 100)]
    assert all(a < b for a, b in zip(warm, warm[1:], strict=False))
    assert all(a > b for a, b in zip(decay, decay[1:], strict=False))


def test_lr_schedule_without_warmup_starts_at_peak_and_min_lr_defaults_to_a_tenth():
    cfg = TrainConfig(max_steps=50, lr=3e-3, warmup_steps=0)
    assert cfg.min_lr == pytest.approx(3e-4)
    assert lr_at(0, cfg) == pytest.approx(3e-3)
    assert lr_at(49, cfg) == pytest.approx(3e-4)


def test_lr_at_rejects_negative_step():
    with pytest.raises(ValueError, match="step=-1"):
        lr_at(-1, TrainConfig())


def test_constant_schedule_warms_up_the_same_way_then_holds_the_peak():
    cos = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10)
    const = TrainConfig(max_steps=100, lr=1.0, warmup_steps=10, schedule="constant")
    assert [lr_at(s, const) for s in range(10)] == [lr_at(s, cos) for s in range(10)]
    assert {lr_at(s, const) for s in range(10, 200)} == {1.0}


def test_training_follows_the_configured_schedule():
    cfg = small_cfg(max_steps=12, warmup_steps=3, schedule="constant")
    hist = train(fresh_model(), plus_one_batch, cfg)
    assert hist.column("lr")[:12] == [lr_at(s, cfg) for s in range(12)]
    assert hist.column("lr")[3:12] == [cfg.lr] * 9


# ----------------------------------------------------------------------------------------------
# Config validation


@pytest.mark.parametrize(
    "field, value, allowed",
    [
        ("max_steps", 0, ">= 1"),
        ("batch_size", 2.5, "integer"),
        ("lr", -1e-3, "> 0"),
        ("lr", float("nan"), "> 0"),
        ("min_lr", 1.0, "min_lr <= lr"),
        ("warmup_steps", 5000, "warmup_steps <= max_steps"),
        ("weight_decay", -0.1, ">= 0"),
        ("betas", (0.9, 1.0), "0 <= beta < 1"),
        ("betas", (0.9,), "two numbers"),
        ("grad_clip", 0.0, "None"),
        ("eval_interval", 0, ">= 1"),
        ("eval_iters", -3, ">= 1"),
        ("seed", -1, "seed"),
        ("device", "gpu", "'cuda'"),
        ("schedule", "linear", "('cosine', 'constant')"),
        ("progress", "yes", "True or False"),
        ("compile", 1, "True or False"),
    ],
)
def test_config_rejects_bad_values_naming_field_value_and_allowed(field, value, allowed):
    with pytest.raises(ValueError) as exc:
        TrainConfig(**{field: value})
    msg = str(exc.value)
    assert f"TrainConfig.{field}={value!r}" in msg
    assert allowed in msg


def test_config_accepts_list_betas_and_none_grad_clip_and_round_trips_through_its_dict():
    cfg = TrainConfig(betas=[0.8, 0.99], grad_clip=None, device="cuda:1")
    assert cfg.betas == (0.8, 0.99)
    from dataclasses import asdict

    assert TrainConfig(**asdict(cfg)) == cfg


# ----------------------------------------------------------------------------------------------
# The loop


def test_training_reduces_loss_on_a_learnable_task():
    model = fresh_model()
    hist = train(model, plus_one_batch, small_cfg(max_steps=150, eval_interval=50))
    first_val = hist.column("val_loss")[0]
    assert first_val > 2.0  # ≈ ln(16) = 2.77 at initialisation
    assert hist.last("val_loss") < 0.5 * first_val
    assert hist.last("train_loss") < 0.5 * hist.column("train_loss")[0]


def test_history_layout_one_row_per_step_plus_final_evaluation():
    cfg = small_cfg(max_steps=30, eval_interval=10)
    hist = train(fresh_model(), plus_one_batch, cfg)
    assert len(hist) == 31
    assert hist.column("step") == list(range(31))
    evaluated = [r["step"] for r in hist if not math.isnan(r["val_loss"])]
    assert evaluated == [0, 10, 20, 30]
    final = hist.rows[-1]
    assert math.isnan(final["train_loss"]) and math.isnan(final["lr"])
    assert hist.last("val_loss") == final["val_loss"]
    assert hist.last("train_loss") == hist.rows[-2]["train_loss"]
    assert hist.column("lr")[:30] == pytest.approx([lr_at(s, cfg) for s in range(30)])
    assert all(v > 0 for v in hist.column("tokens_per_s")[:30])
    d = hist.to_dict()
    assert list(d) == list(History.COLUMNS) and all(len(v) == 31 for v in d.values())


def test_same_seed_gives_identical_history_and_weights():
    cfg = small_cfg(max_steps=40, eval_interval=10)
    m1, m2 = fresh_model(dropout=0.1), fresh_model(dropout=0.1)
    h1, h2 = train(m1, plus_one_batch, cfg), train(m2, plus_one_batch, cfg)
    for key in ("step", "train_loss", "val_loss", "lr", "grad_norm"):
        assert h1.column(key) == pytest.approx(h2.column(key), nan_ok=True, rel=0, abs=0)
    assert torch.equal(m1.emb.weight, m2.emb.weight)


def test_different_seed_gives_different_history():
    h1 = train(fresh_model(), plus_one_batch, small_cfg(max_steps=20, seed=0))
    h2 = train(fresh_model(), plus_one_batch, small_cfg(max_steps=20, seed=1))
    assert h1.column("train_loss") != h2.column("train_loss")


def test_evaluate_runs_in_eval_mode_without_grad_and_restores_the_mode():
    model = fresh_model(dropout=0.5)
    model.train()
    model.modes_seen.clear()
    g = torch.Generator().manual_seed(0)
    loss = evaluate(model, plus_one_batch, 3, 4, g)
    assert model.modes_seen == [False, False, False]
    assert model.training is True
    assert model.emb.weight.grad is None
    assert loss == pytest.approx(
        evaluate(model, plus_one_batch, 3, 4, torch.Generator().manual_seed(0))
    )  # eval mode: dropout off, so the same batches give the same loss
    model.eval()
    evaluate(model, plus_one_batch, 1, 4, g)
    assert model.training is False


def test_training_uses_train_mode_and_evaluations_use_eval_mode():
    model = fresh_model(dropout=0.1)
    model.modes_seen.clear()
    train(model, plus_one_batch, small_cfg(max_steps=3, eval_interval=2, eval_iters=1))
    # step 0: eval (False), train (True); step 1: train; step 2: eval, train; final eval
    assert model.modes_seen == [False, True, True, False, True, False]
    assert model.training is True


def test_grad_clipping_bounds_the_norm_of_the_applied_gradient():
    clip = 0.05
    norms_after: list[float] = []

    def record(step, row, model):
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norms_after.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    # keep the gradients after the step so that the callback can inspect them
    class KeepGradAdamW(torch.optim.AdamW):
        def zero_grad(self, set_to_none: bool = True) -> None:  # zeroed lazily, before the next backward
            pass

    model = fresh_model()
    opt = KeepGradAdamW(model.parameters(), lr=1e-2)

    def batch(split, b, g):
        for p in model.parameters():
            p.grad = None
        return plus_one_batch(split, b, g)

    cfg = small_cfg(max_steps=10, grad_clip=clip, lr=1e-2)
    hist = train(model, batch, cfg, optimizer=opt, callback=record)
    pre_clip = hist.column("grad_norm")[:10]
    assert max(pre_clip) > 5 * clip  # clipping was active ...
    assert max(norms_after) <= clip * (1 + 1e-4)  # ... and bounded what the optimizer saw
    unclipped = train(fresh_model(), plus_one_batch, small_cfg(max_steps=10, grad_clip=None, lr=1e-2))
    assert unclipped.column("grad_norm")[0] == pytest.approx(pre_clip[0])  # the log is the pre-clip norm


def test_default_optimizer_decays_only_matrices_and_ignores_a_models_own_configure_optimizer():
    class WithOwn(Bigram):  # make_optimizer is the one grouping: a model's own recipe is not consulted
        def configure_optimizer(self, weight_decay, lr, betas):
            raise AssertionError("make_optimizer must not call the model's configure_optimizer")

    model = WithOwn()
    opt = make_optimizer(model, TrainConfig(weight_decay=0.2, betas=(0.8, 0.9)))
    assert isinstance(opt, torch.optim.AdamW)
    by_decay = {g["weight_decay"]: g["params"] for g in opt.param_groups}
    assert {p.dim() for p in by_decay[0.2]} == {2}
    assert {p.dim() for p in by_decay[0.0]} == {1}
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)
    own = torch.optim.SGD(model.parameters(), lr=0.5)  # another optimizer: pass it to train
    hist = train(model, plus_one_batch, small_cfg(max_steps=3), optimizer=own)
    assert own.param_groups[0]["lr"] == hist.column("lr")[2]


def test_param_groups_keep_model_order_skip_frozen_and_use_one_group_without_decay():
    model = fresh_model()
    ordered = list(model.parameters())
    (alone,) = param_groups(model, 0.0)
    assert alone["weight_decay"] == 0.0 and [id(p) for p in alone["params"]] == [id(p) for p in ordered]
    model.ln.bias.requires_grad_(False)
    decay, no_decay = param_groups(model, 0.1)
    assert decay["params"] == [model.emb.weight] and no_decay["params"] == [model.ln.weight]
    for p in model.parameters():
        p.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        param_groups(model, 0.1)


def test_make_optimizer_matches_the_gpt_recipe_fused_where_available():
    torch.manual_seed(0)
    gpt = GPT(GPTConfig(vocab_size=V, block_size=T, n_layer=1, n_head=2, d_model=8))
    opt = make_optimizer(gpt, TrainConfig())
    decay, no_decay = opt.param_groups
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(gpt.parameters()))
    if tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 4):
        assert decay["fused"] is True  # fused AdamW on the CPU since torch 2.4


def test_callback_returning_true_stops_early_and_still_evaluates_the_final_weights():
    hist = train(fresh_model(), plus_one_batch, small_cfg(max_steps=50), callback=lambda s, row, m: s == 4)
    assert hist.column("step") == [0, 1, 2, 3, 4, 5]
    assert not math.isnan(hist.rows[-1]["val_loss"])


def test_nan_loss_stops_with_step_and_lr_in_the_message():
    class Explodes(Bigram):
        calls = 0

        def forward(self, x, y=None):
            logits, loss = super().forward(x, y)
            if self.training:
                Explodes.calls += 1
                if Explodes.calls == 4:
                    loss = loss * float("nan")
            return logits, loss

    torch.manual_seed(0)
    with pytest.raises(TrainingDivergedError, match=r"at step 3 \(lr=") as exc:
        train(Explodes(), plus_one_batch, small_cfg(max_steps=10))
    assert "lower cfg.lr" in str(exc.value)
    assert len(exc.value.history) == 3


def test_get_batch_with_wrong_batch_size_or_type_is_explained():
    with pytest.raises(ValueError, match=r"get_batch\('val', 8, generator\) returned x of shape \(4, 8\)"):
        train(fresh_model(), lambda s, b, g: plus_one_batch(s, 4, g), small_cfg(max_steps=2))
    with pytest.raises(TypeError, match="pair"):
        train(fresh_model(), lambda s, b, g: plus_one_batch(s, b, g)[0], small_cfg(max_steps=2))
    with pytest.raises(TypeError, match="torch.Tensor"):
        train(fresh_model(), lambda s, b, g: ([1] * b, [2] * b), small_cfg(max_steps=2))


def test_model_without_loss_is_explained():
    class NoLoss(Bigram):
        def forward(self, x, y=None):
            return super().forward(x, None)

    with pytest.raises(TypeError, match=r"must return \(logits, loss\)"):
        train(NoLoss(), plus_one_batch, small_cfg(max_steps=2))


def test_progress_bar_shows_the_loss(capsys):
    train(fresh_model(), plus_one_batch, small_cfg(max_steps=5, progress=True))
    err = capsys.readouterr().err
    assert "loss=" in err and "5/5" in err


def test_compile_failure_falls_back_to_eager_with_a_warning(monkeypatch):
    class Broken(nn.Module):
        def forward(self, *args):
            raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch, "compile", lambda model: Broken())
    with pytest.warns(UserWarning, match="running eager"):
        hist = train(fresh_model(), plus_one_batch, small_cfg(max_steps=5, compile=True))
    assert len(hist) == 6 and not math.isnan(hist.last("val_loss"))


def test_history_last_skips_nan_and_rejects_unknown_columns():
    h = History([{"step": 0, "train_loss": 2.0, "val_loss": 3.0}, {"step": 1, "train_loss": 1.0}])
    assert h.last("val_loss") == 3.0 and h.last("train_loss") == 1.0
    with pytest.raises(KeyError, match="unknown History column"):
        h.last("accuracy")
    with pytest.raises(ValueError, match="no recorded 'grad_norm'"):
        h.last("grad_norm")
    assert History.from_dict(h.to_dict()) == h


# ----------------------------------------------------------------------------------------------
# Device: shared.device.get_device is the one resolver


@pytest.fixture
def cpu_only(monkeypatch: pytest.MonkeyPatch):
    """A machine with no accelerator, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_device_honours_hardway_device_and_an_explicit_device_wins(cpu_only, monkeypatch):
    monkeypatch.setenv("HARDWAY_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match=r"HARDWAY_DEVICE='cuda' is not available.*available: cpu"):
        train(fresh_model(), plus_one_batch, small_cfg(max_steps=1, device="auto"))
    assert len(train(fresh_model(), plus_one_batch, small_cfg(max_steps=1, device="cpu"))) == 2
    monkeypatch.setenv("HARDWAY_DEVICE", "cpu")
    assert len(train(fresh_model(), plus_one_batch, small_cfg(max_steps=1, device="auto"))) == 2


def test_an_unavailable_explicit_device_is_named(cpu_only, monkeypatch):
    monkeypatch.delenv("HARDWAY_DEVICE", raising=False)
    with pytest.raises(RuntimeError, match=r"prefer='cuda:1' is not available on this machine"):
        train(fresh_model(), plus_one_batch, small_cfg(max_steps=1, device="cuda:1"))


def test_the_model_trains_on_the_chosen_device_and_comes_back_where_it_was(monkeypatch):
    # "cpu:0" is the CPU under another name: a device that differs from "cpu" on any machine, so
    # the move there and back is observable without an accelerator.
    import shared.train

    monkeypatch.setattr(shared.train, "get_device", lambda spec: torch.device("cpu", 0))
    moves: list[torch.device] = []

    class Spy(Bigram):
        def to(self, *args, **kwargs):
            moves.append(torch.device(args[0]))
            return super().to(*args, **kwargs)

    torch.manual_seed(0)
    model = Spy()
    weights = list(model.parameters())
    train(model, plus_one_batch, small_cfg(max_steps=2, device="auto"))
    assert moves == [torch.device("cpu", 0), torch.device("cpu")]
    assert list(model.parameters()) == weights  # the same Parameter objects: an optimizer still holds them


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cpu_model_trained_on_cuda_is_back_on_the_cpu():
    model = fresh_model()
    train(model, plus_one_batch, small_cfg(max_steps=2, device="cuda"))
    assert all(p.device.type == "cpu" for p in model.parameters())


# ----------------------------------------------------------------------------------------------
# Hooks the sweep uses, and experiment tracking


def test_eval_fn_and_reduce_loss_replace_the_validation_loss_and_the_recorded_loss():
    seen: list[bool] = []

    def eval_fn(model):
        seen.append(model.training)
        return 42.0

    hist = train(fresh_model(), plus_one_batch, small_cfg(max_steps=4, eval_interval=2), eval_fn=eval_fn,
                 reduce_loss=lambda loss: 2 * loss.item())
    plain = train(fresh_model(), plus_one_batch, small_cfg(max_steps=4, eval_interval=2))
    assert [v for v in hist.column("val_loss") if not math.isnan(v)] == [42.0, 42.0, 42.0]
    assert hist.column("train_loss")[:4] == [2 * v for v in plain.column("train_loss")[:4]]
    assert seen == [True, True, True]  # called from the training loop; eval mode is eval_fn's business


def test_jsonl_tracker_receives_the_config_and_every_history_row(tmp_path: Path):
    path = tmp_path / "runs" / "run.jsonl"
    cfg = small_cfg(max_steps=6, eval_interval=3)
    hist = train(fresh_model(), plus_one_batch, cfg, tracker=JsonlTracker(path))
    config, rows = JsonlTracker.read(path)
    assert config["lr"] == cfg.lr and config["model"] == "Bigram" and config["device_resolved"] == "cpu"
    assert History(rows) == hist


def test_tracker_by_name_writes_under_runs_and_is_finished_when_training_fails(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(fresh_model(), plus_one_batch, small_cfg(max_steps=2), tracker="jsonl")
    (written,) = (tmp_path / "runs").glob("train-*.jsonl")
    assert len(JsonlTracker.read(written)[1]) == 3

    class Recorder:
        def __init__(self):
            self.calls: list[str] = []

        def start(self, config):
            self.calls.append("start")

        def log(self, row, step):
            self.calls.append(f"log {step}")

        def finish(self):
            self.calls.append("finish")

    rec = Recorder()

    def broken(split, b, g):
        if split == "train":
            raise OSError("disk gone")
        return plus_one_batch(split, b, g)

    with pytest.raises(OSError, match="disk gone"):
        train(fresh_model(), broken, small_cfg(max_steps=2), tracker=rec)
    assert rec.calls == ["start", "finish"]
    with pytest.raises(ValueError, match=r"tracker='tensorboard' is not one of \['jsonl', 'trackio'"):
        train(fresh_model(), plus_one_batch, small_cfg(max_steps=1), tracker="tensorboard")
