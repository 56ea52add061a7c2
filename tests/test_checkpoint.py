"""Tests for shared/checkpoint.py: atomic, checksummed, weights-only checkpoints of a model and optimizer."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from shared import utils
from shared.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from shared.train import History, TrainConfig, make_optimizer, train

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

V, T = 16, 8  # vocabulary size and sequence length


class Tiny(nn.Module):
    """A lookup-table language model with a LayerNorm: 2-D and 1-D parameters, named emb.* and ln.*."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(V, V)
        self.ln = nn.LayerNorm(V)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None):
        logits = self.ln(self.emb(x))  # (B, T, V)
        return logits, None if y is None else F.cross_entropy(logits.view(-1, V), y.view(-1))


def fresh_model(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny()


def next_token_batch(split: str, batch_size: int, generator: torch.Generator):
    x = torch.randint(0, V, (batch_size, T), generator=generator)  # (B, T)
    return x, (x + 1) % V


# ----------------------------------------------------------------------------------------------
# Checkpoints


def trained(steps: int = 5):
    model = fresh_model()
    cfg = TrainConfig(max_steps=steps, batch_size=8, lr=3e-2, warmup_steps=1, eval_interval=2, eval_iters=1,
                      device="cpu", seed=0)
    opt = make_optimizer(model, cfg)
    hist = train(model, next_token_batch, cfg, optimizer=opt)
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

    monkeypatch.setattr(utils.os, "fsync", disk_full)
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
