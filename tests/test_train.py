"""Tests for shared/train.py: schedule, config validation, the loop, evaluation, checkpoints."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared import train as train_mod
from shared.train import (
    CheckpointError,
    History,
    TrainConfig,
    TrainingDivergedError,
    evaluate,
    load_checkpoint,
    lr_at,
    make_optimizer,
    save_checkpoint,
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

    hist = train(model, batch, small_cfg(max_steps=10, grad_clip=clip, lr=1e-2), optimizer=opt, callback=record)
    pre_clip = hist.column("grad_norm")[:10]
    assert max(pre_clip) > 5 * clip  # clipping was active ...
    assert max(norms_after) <= clip * (1 + 1e-4)  # ... and bounded what the optimizer saw
    unclipped = train(fresh_model(), plus_one_batch, small_cfg(max_steps=10, grad_clip=None, lr=1e-2))
    assert unclipped.column("grad_norm")[0] == pytest.approx(pre_clip[0])  # the log is the pre-clip norm


def test_default_optimizer_decays_only_matrices_and_uses_configure_optimizer_when_present():
    model = fresh_model()
    opt = make_optimizer(model, TrainConfig(weight_decay=0.2, betas=(0.8, 0.9)))
    assert isinstance(opt, torch.optim.AdamW)
    by_decay = {g["weight_decay"]: g["params"] for g in opt.param_groups}
    assert {p.dim() for p in by_decay[0.2]} == {2}
    assert {p.dim() for p in by_decay[0.0]} == {1}
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)

    class WithOwn(Bigram):
        def configure_optimizer(self, weight_decay, lr, betas):
            self.called_with = (weight_decay, lr, betas)
            return torch.optim.SGD(self.parameters(), lr=lr)

    own = WithOwn()
    assert isinstance(make_optimizer(own, TrainConfig(lr=0.5)), torch.optim.SGD)
    assert own.called_with == (0.1, 0.5, (0.9, 0.95))


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
# Checkpoints


def trained(steps: int = 5):
    model = fresh_model()
    cfg = small_cfg(max_steps=steps)
    opt = make_optimizer(model, cfg)
    hist = train(model, plus_one_batch, cfg, optimizer=opt)
    return model, opt, cfg, hist


def test_checkpoint_round_trip_restores_weights_optimizer_state_step_and_config(tmp_path: Path):
    model, opt, cfg, hist = trained()
    path = save_checkpoint(tmp_path / "ckpt.pt", model, opt, step=5, config=cfg, extra={"history": hist})
    assert (tmp_path / "ckpt.pt.sha256").read_text().split()[1] == "ckpt.pt"

    model2 = fresh_model(seed=1)
    opt2 = make_optimizer(model2, cfg)
    assert not torch.equal(model2.emb.weight, model.emb.weight)
    ckpt = load_checkpoint(path, model2, opt2)
    for k, v in model.state_dict().items():
        assert torch.equal(model2.state_dict()[k], v)
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["param_groups"] == s2["param_groups"]
    for pid, state in s1["state"].items():
        for name, t in state.items():
            assert torch.equal(s2["state"][pid][name], t)
    assert ckpt["step"] == 5
    assert TrainConfig(**ckpt["config"]) == cfg
    assert History.from_dict(ckpt["extra"]["history"]) == hist


def test_checkpoint_loads_with_plain_torch_load_weights_only(tmp_path: Path):
    model, opt, cfg, _ = trained(2)
    save_checkpoint(tmp_path / "c.pt", model, opt, step=2, config=cfg, extra={"note": "ok", "xs": [1, 2.5]})
    payload = torch.load(tmp_path / "c.pt", weights_only=True)
    assert payload["config"]["lr"] == cfg.lr and payload["extra"]["xs"] == [1, 2.5]


def test_checkpoint_refuses_objects_that_weights_only_cannot_load(tmp_path: Path):
    with pytest.raises(TypeError, match=r"extra\['ids'\] is a set; .*weights_only=True"):
        save_checkpoint(tmp_path / "c.pt", fresh_model(), extra={"ids": {1, 2}})
    assert not (tmp_path / "c.pt").exists()


def test_failed_write_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    old = fresh_model(seed=0)
    save_checkpoint(path, old, step=1)
    before = sorted(os.listdir(tmp_path))

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(train_mod.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, fresh_model(seed=1), step=2)
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == before  # no temp file left behind
    restored = fresh_model(seed=2)
    assert load_checkpoint(path, restored)["step"] == 1
    assert torch.equal(restored.emb.weight, old.emb.weight)


def test_corrupted_or_truncated_checkpoint_is_detected(tmp_path: Path):
    path = save_checkpoint(tmp_path / "c.pt", fresh_model(), step=3)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted or truncated.*earlier checkpoint"):
        load_checkpoint(path)
    path.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        load_checkpoint(path)


def test_checkpoint_for_a_different_model_names_missing_unexpected_and_mismatched_keys(tmp_path: Path):
    path = save_checkpoint(tmp_path / "c.pt", fresh_model(), step=0)

    class Other(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(V + 1, V)
            self.head = nn.Linear(V, V)

    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path, Other())
    msg = str(exc.value)
    assert "missing in checkpoint (2): ['head.bias', 'head.weight']" in msg
    assert "unexpected in checkpoint (2): ['ln.bias', 'ln.weight']" in msg
    assert "emb.weight: checkpoint (16, 16) vs model (17, 16)" in msg


def test_missing_checkpoint_and_missing_optimizer_state_are_explained(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    path = save_checkpoint(tmp_path / "c.pt", fresh_model())
    with pytest.raises(CheckpointError, match="no optimizer state"):
        load_checkpoint(path, fresh_model(), torch.optim.AdamW(fresh_model().parameters()))


def test_checkpoint_without_sidecar_loads_with_a_warning(tmp_path: Path):
    path = save_checkpoint(tmp_path / "c.pt", fresh_model(), step=7)
    (tmp_path / "c.pt.sha256").unlink()
    with pytest.warns(UserWarning, match="unverified"):
        assert load_checkpoint(path)["step"] == 7


def test_compiled_style_state_dict_prefix_is_stripped_on_load(tmp_path: Path):
    model = fresh_model()

    class Wrapper(nn.Module):  # what torch.compile's OptimizedModule looks like from outside
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    path = save_checkpoint(tmp_path / "c.pt", Wrapper(model))
    payload = torch.load(path, weights_only=True)
    assert set(payload["model"]) == set(model.state_dict())  # saved unwrapped
    other = fresh_model(seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(path, Wrapper(other))
    assert torch.equal(other.emb.weight, model.emb.weight)
