"""Tests for shared/sweep.py: the scaling-law sweep runner, in one process and under torch.distributed.run.

The distributed test launches ``python -m torch.distributed.run --nproc_per_node=2 -m shared.sweep`` with
two CPU processes (gloo) and shows that the loss curve equals the single-process run at the same global
batch: each rank takes a disjoint half of every global batch and DDP averages the gradients, so the update
is the single-process mean-loss gradient up to float round-off.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from shared.model import GPT
from shared.sweep import (
    CSV_COLUMNS,
    SweepData,
    SweepPoint,
    SweepResult,
    lr_schedule,
    main,
    parse_args,
    read_results,
    run_point,
    run_sweep,
    train_point,
    write_results,
)
from shared.train import TrainConfig, TrainingDivergedError, lr_at

ROOT = Path(__file__).resolve().parent.parent
TINY = dict(n_layer=1, d_model=8, n_head=2, block_size=8, batch_size=4, steps=12, lr=1e-2, warmup_steps=2,
            eval_interval=4, eval_batches=2)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models: one thread is fastest, and two threads on a loaded 2-core machine can be 10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data() -> SweepData:
    ids = torch.arange(4800) * 7 % 11  # a periodic sequence: learnable in a few steps
    return SweepData(train=ids[:4000], val=ids[4000:], vocab_size=11)


# ----------------------------------------------------------------------------------------------- SweepPoint


def test_sweep_point_builds_a_gpt2_style_config_of_its_shape():
    cfg = SweepPoint(n_layer=3, d_model=24, n_head=4, block_size=16).config(vocab_size=50)
    assert (cfg.n_layer, cfg.d_model, cfg.n_head, cfg.block_size, cfg.vocab_size) == (3, 24, 4, 16, 50)
    shape = (cfg.pos_encoding, cfg.norm, cfg.norm_placement, cfg.activation)
    assert shape == ("learned", "layernorm", "pre", "gelu")


def test_sweep_point_tokens_is_steps_times_batch_times_block():
    assert SweepPoint(steps=10, warmup_steps=0, batch_size=4, block_size=8).tokens == 320


@pytest.mark.parametrize(("field", "value", "message"), [
    ("d_model", 0, "SweepPoint.d_model=0 must be an int >= 1"),
    ("n_head", 3, "SweepPoint.n_head=3 must divide d_model=32"),
    ("lr", -1.0, "SweepPoint.lr=-1.0 must be a finite number > 0"),
    ("warmup_steps", 500, "SweepPoint.warmup_steps=500 must be an int with 0 <= warmup_steps <= steps=200"),
    ("schedule", "linear", "SweepPoint.schedule='linear' is not one of ('constant', 'cosine')"),
    ("grad_clip", 0.0, "SweepPoint.grad_clip=0.0 must be None"),
    ("steps", 2.5, "SweepPoint.steps=2.5 must be an int >= 1"),
])
def test_sweep_point_rejects_bad_values_naming_field_value_and_rule(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("+", r"\+")):
        SweepPoint(**{field: value})


def test_lr_schedule_warms_up_then_stays_constant_or_decays_to_a_tenth():
    const = SweepPoint(steps=100, lr=1e-2, warmup_steps=9)
    assert lr_schedule(0, const) == pytest.approx(1e-3)
    assert lr_schedule(9, const) == lr_schedule(99, const) == 1e-2
    cos = SweepPoint(steps=100, lr=1e-2, warmup_steps=9, schedule="cosine")
    assert lr_schedule(9, cos) == pytest.approx(1e-2)
    assert lr_schedule(99, cos) == pytest.approx(1e-3)
    assert lr_schedule(50, cos) < lr_schedule(30, cos)


def test_the_sweep_schedule_is_shared_train_lr_at_of_the_points_train_config():
    point = SweepPoint(steps=40, lr=2e-3, warmup_steps=7, schedule="cosine", grad_clip=None, seed=5)
    cfg = point.train_config(batch_size=4, device="cpu")
    assert isinstance(cfg, TrainConfig)
    rates = (cfg.max_steps, cfg.batch_size, cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.schedule)
    assert rates == (40, 4, 2e-3, 2e-4, 7, "cosine")
    rest = (cfg.weight_decay, cfg.grad_clip, cfg.eval_interval, cfg.eval_iters, cfg.seed)
    assert rest == (0.0, None, 50, 8, 5)
    assert [lr_schedule(s, point) for s in range(40)] == [lr_at(s, cfg) for s in range(40)]


# ----------------------------------------------------------------------------------------------- run_point


def test_run_point_records_curve_counts_flops_and_profile(data):
    point = SweepPoint(**TINY)
    r = run_point(point, data)
    assert len(r.train_loss) == point.steps
    assert r.eval_steps == [0, 4, 8, 12] and len(r.val_loss) == 4
    model = GPT(point.config(data.vocab_size))
    assert r.n_params == model.num_params(non_embedding=True)
    assert r.n_params_total == model.num_params(non_embedding=False)
    assert r.tokens == 12 * 4 * 8
    assert r.flops == 6 * r.n_params * r.tokens
    assert r.flops_with_attention == model.flops_per_token() * r.tokens > r.flops
    assert r.wall_s >= r.train_s > 0 and r.tokens_per_s == pytest.approx(r.tokens / r.train_s)
    assert r.cpu_rss_peak_mib > 0 and r.cuda_peak_mib is None and r.world_size == 1 and r.device == "cpu"
    assert r.val_loss[0] == pytest.approx(math.log(11), abs=0.1)  # an untrained model is near uniform
    assert r.final_val_loss < r.val_loss[0]  # it learned something


def test_run_point_is_deterministic_for_a_seed_and_differs_across_seeds(data):
    a = run_point(SweepPoint(**TINY), data)
    b = run_point(SweepPoint(**TINY), data)
    c = run_point(SweepPoint(**TINY, seed=1), data)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    assert a.train_loss != c.train_loss


def test_constant_schedule_makes_a_longer_run_extend_the_shorter_one(data):
    short = run_point(SweepPoint(**TINY), data)
    long = run_point(SweepPoint(**{**TINY, "steps": 20}), data)
    assert long.train_loss[:12] == short.train_loss
    assert long.val_loss[:4] == short.val_loss


def test_val_loss_at_interpolates_in_log_tokens_and_refuses_outside_the_range(data):
    r = run_point(SweepPoint(**TINY), data)
    per_step = 4 * 8
    assert r.val_loss_at(4 * per_step) == pytest.approx(r.val_loss[1])
    mid = math.sqrt(4 * 8) * per_step  # halfway between steps 4 and 8 in log tokens
    assert r.val_loss_at(mid) == pytest.approx((r.val_loss[1] + r.val_loss[2]) / 2)
    with pytest.raises(ValueError, match="outside the evaluated range"):
        r.val_loss_at(13 * per_step)


def test_train_point_returns_the_trained_model(data):
    r, model = train_point(SweepPoint(**TINY), data)
    assert isinstance(model, GPT) and model.num_params() == r.n_params


def test_train_point_rejects_a_non_point_and_missing_cuda(data, monkeypatch):
    with pytest.raises(ValueError, match="needs a SweepPoint"):
        train_point({"d_model": 8}, data)  # type: ignore[arg-type]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="prefer='cuda' is not available on this machine"):
        run_point(SweepPoint(**TINY), data, device="cuda")


def test_auto_device_is_shared_device_get_device_honouring_hardway_device(data, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("HARDWAY_DEVICE", "cuda")
    with pytest.raises(RuntimeError, match="HARDWAY_DEVICE='cuda' is not available"):
        run_point(SweepPoint(**TINY), data, device="auto")
    monkeypatch.setenv("HARDWAY_DEVICE", "cpu")
    assert run_point(SweepPoint(**TINY), data, device=None).device == "cpu"


def test_a_diverging_point_names_the_point(data):
    with pytest.raises(TrainingDivergedError, match=r"sweep point d_model=8, n_layer=1, lr=1e\+30: loss"):
        run_point(SweepPoint(**{**TINY, "lr": 1e30, "warmup_steps": 0, "grad_clip": None}), data)


def test_run_sweep_runs_points_in_order_and_rejects_an_empty_list(data, capsys):
    results = run_sweep([SweepPoint(**TINY), SweepPoint(**{**TINY, "d_model": 16})], data, verbose=True)
    assert [r.point["d_model"] for r in results] == [8, 16]
    assert results[1].n_params > results[0].n_params
    assert capsys.readouterr().out.count("d_model=") == 2
    with pytest.raises(ValueError, match="points is empty"):
        run_sweep([], data)


# ----------------------------------------------------------------------------------------------- output


def test_results_round_trip_through_json_and_csv_has_one_row_per_point(data, tmp_path):
    results = run_sweep([SweepPoint(**TINY), SweepPoint(**{**TINY, "steps": 8})], data)
    path = write_results(results, tmp_path / "out" / "sweep.json", meta={"note": "x"})
    back = read_results(path)
    assert [r.to_dict() for r in back] == [r.to_dict() for r in results]
    assert json.loads(path.read_text())["meta"] == {"note": "x"}
    rows = list(csv.DictReader(write_results(results, tmp_path / "sweep.csv").open()))
    assert len(rows) == 2 and tuple(rows[0]) == CSV_COLUMNS
    assert float(rows[1]["final_val_loss"]) == pytest.approx(results[1].final_val_loss)
    assert [p.name for p in tmp_path.rglob(".*tmp")] == []  # no temporary file left behind


def test_write_results_refuses_other_suffixes(tmp_path):
    with pytest.raises(ValueError, match="must end in .json or .csv"):
        write_results([], tmp_path / "sweep.txt")


def test_sweep_result_from_dict_inverts_to_dict(data):
    r = run_point(SweepPoint(**TINY), data)
    assert SweepResult.from_dict(r.to_dict()) == r


# ----------------------------------------------------------------------------------------------- command line


def test_parse_args_makes_the_grid_of_sizes_layers_and_steps():
    argv = ["--d-model", "8", "16", "--n-layer", "1", "2", "--steps", "10", "--out", "x.json"]
    _, points = parse_args(argv)
    assert [(p.d_model, p.n_layer) for p in points] == [(8, 1), (8, 2), (16, 1), (16, 2)]
    assert all(p.steps == 10 and p.warmup_steps == 10 for p in points)  # warmup clipped to the run


@pytest.mark.parametrize(("argv", "message"), [
    (["--d-model", "0", "--out", "x.json"], "argument --d-model: 0 is not allowed; expected an integer >= 1"),
    (["--d-model", "abc", "--out", "x.json"], "'abc' is not an integer"),
    (["--lr", "-3", "--out", "x.json"], "argument --lr: -3 is not allowed; expected a finite number > 0"),
    (["--out", "x.txt"], "'x.txt' must end in .json or .csv"),
    (["--d-model", "12", "--n-head", "5", "--out", "x.json"], "SweepPoint.n_head=5 must divide d_model=12"),
    (["--schedule", "linear", "--out", "x.json"], "invalid choice: 'linear'"),
    (["--d-model", "8"], "the following arguments are required: --out"),
])
def test_bad_command_lines_exit_with_a_message_naming_the_value(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_describes_torchrun_and_the_global_batch(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    out = capsys.readouterr().out
    assert "torchrun" in out and "GLOBAL batch" in out


def _cli(tmp_path: Path, name: str) -> list[str]:
    return ["--d-model", "8", "--n-layer", "1", "--steps", "12", "--batch-size", "4", "--block-size", "8",
            "--warmup-steps", "2", "--eval-interval", "4", "--eval-batches", "2", "--train-chars", "20000",
            "--val-chars", "5000", "--device", "cpu", "--quiet", "--out", str(tmp_path / name)]


def test_main_writes_the_results_file(tmp_path):
    assert main(_cli(tmp_path, "one.json")) == 0
    (r,) = read_results(tmp_path / "one.json")
    assert r.world_size == 1 and len(r.train_loss) == 12


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(tmp_path: Path, args: list[str]) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1",
           "GLOO_SOCKET_IFNAME": "lo", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
           f"--master_port={_free_port()}", "-m", "shared.sweep", *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_two_cpu_processes_give_the_single_process_loss_curve(tmp_path):
    """DDP with gloo on 2 CPU ranks, each on half of every global batch of 4 windows: the same loss curve
    as one process with the whole batch, to 1e-5 relative (float32 round-off in the mean of two halves)."""
    assert main(_cli(tmp_path, "one.json")) == 0
    proc = _launch(tmp_path, _cli(tmp_path, "two.json"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (one,) = read_results(tmp_path / "one.json")
    (two,) = read_results(tmp_path / "two.json")
    assert two.world_size == 2 and one.world_size == 1
    meta = json.loads((tmp_path / "two.json").read_text())["meta"]
    assert meta["backend"] == "gloo"
    torch.testing.assert_close(torch.tensor(two.train_loss), torch.tensor(one.train_loss), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.tensor(two.val_loss), torch.tensor(one.val_loss), rtol=1e-5, atol=0)
    assert one.train_loss[-1] < one.train_loss[0]  # a real curve, not a constant


@pytest.mark.slow
def test_a_global_batch_not_divisible_by_the_world_size_is_refused(tmp_path):
    args = _cli(tmp_path, "bad.json")
    args[args.index("--batch-size") + 1] = "5"
    proc = _launch(tmp_path, args)
    assert proc.returncode != 0
    assert "--batch-size 5 is not divisible by world_size=2" in proc.stderr
    assert not (tmp_path / "bad.json").exists()
