"""Training throughput and model-FLOPs utilisation (MFU) of the tiny GPT on this machine's CPU.

The nanoGPT CPU recipe (Karpathy, nanoGPT README, "I only have a macbook"): 4 layers, 4 heads,
d_model 128, context 64, batch 12, character-level Shakespeare. One training step is forward,
backward and an AdamW step. The same run measures the machine's fp32 matmul FLOP/s with
``torch.mm`` and reports

    MFU = achieved model FLOP/s / measured matmul FLOP/s,
    achieved model FLOP/s = tokens/s × GPT.flops_per_token()   (6N + 12·n_layer·T·d_model)

(Chowdhery et al. 2022, PaLM, Appendix B). The "peak" is what this PyTorch build reaches on large
square matmuls here, not a datasheet number, so MFU says how close the model gets to the matmul
speed the machine really has. Variants are timed in alternating rounds and medians are reported,
because the CPU may be shared.

    python benchmarks/train_speed.py                 # the table
    python benchmarks/train_speed.py --profile       # plus a torch.profiler table of the hot ops
    python benchmarks/train_speed.py --compile       # plus torch.compile(model)

The ``hf-gpt2`` row trains Hugging Face ``transformers``' GPT2LMHeadModel holding the same initial
weights with the same optimizer; "vs hf-gpt2" is its median step time over each row's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from shared.corpus import load_shakespeare
from shared.model import GPT, GPTConfig
from shared.train import TrainConfig, make_optimizer


def char_dataset(text: str) -> tuple[torch.Tensor, int]:
    """Encode text with a character vocabulary built from it: (ids (len(text),), vocab size)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # one code point per char
    vocab = np.unique(codes)  # sorted code points
    ids = np.searchsorted(vocab, codes)  # index of each char in the vocabulary
    return torch.from_numpy(ids.astype(np.int64)), len(vocab)


def make_batches(
    data: torch.Tensor, n: int, batch_size: int, block_size: int, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n random (x, y) batches, each (batch_size, block_size), y = x shifted by one."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        starts = torch.randint(len(data) - block_size - 1, (batch_size,), generator=g)
        x = torch.stack([data[s : s + block_size] for s in starts.tolist()])  # (B, T)
        y = torch.stack([data[s + 1 : s + 1 + block_size] for s in starts.tolist()])  # (B, T)
        batches.append((x, y))
    return batches


def matmul_flops(n: int, m: int | None = None, k: int | None = None, reps: int = 20) -> list[float]:
    """fp32 FLOP/s of ``reps`` timed torch.mm calls for an (n, k) @ (k, m) product (2·n·m·k FLOPs each)."""
    m = n if m is None else m
    k = n if k is None else k
    a, b = torch.randn(n, k), torch.randn(k, m)
    out = torch.empty(n, m)
    for _ in range(3):
        torch.mm(a, b, out=out)
    flops = []
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        flops.append(2 * n * m * k / (time.perf_counter() - t0))
    return flops


class HFLoss(torch.nn.Module):
    """A transformers causal LM as ``(x, y) -> (logits, loss)``, the loss computed as GPT.forward does."""

    def __init__(self, hf: torch.nn.Module) -> None:
        super().__init__()
        self.hf = hf

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.hf(x).logits  # (B, T, V)
        return logits, F.cross_entropy(logits.flatten(0, 1), y.flatten())


class Trainer:
    """One model + optimizer + a fixed set of batches; ``run(steps)`` returns the seconds of each step.

    ``hf=True`` trains transformers' GPT2LMHeadModel holding the same initial weights instead (same
    optimizer: ``shared.train.make_optimizer`` applied to its parameters, fused AdamW, decay on matrices).
    """

    def __init__(self, config: GPTConfig, batches, compile_model: bool = False, hf: bool = False) -> None:
        torch.manual_seed(0)
        self.model = GPT(config)
        if hf:
            from shared.hf import to_hf

            self.model = HFLoss(to_hf(self.model))
        self.model.train()
        self.opt = make_optimizer(self.model, TrainConfig(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.99)))
        self.fwd = torch.compile(self.model) if compile_model else self.model
        self.batches = batches
        self.i = 0
        self.last_loss = float("nan")

    def step(self) -> None:
        x, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        _, loss = self.fwd(x, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.last_loss = loss.item()

    def run(self, steps: int) -> list[float]:
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            self.step()
            times.append(time.perf_counter() - t0)
        return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="training steps per variant and round")
    ap.add_argument("--rounds", type=int, default=20, help="rounds; variants alternate within each")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps per variant first")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile(model)")
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers GPT2LMHeadModel baseline")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table (sdpa)")
    args = ap.parse_args()
    load_at_start = os.getloadavg()[0]  # before this script keeps the cores busy itself

    text = load_shakespeare()
    data, vocab_size = char_dataset(text)
    base = dict(vocab_size=vocab_size, block_size=64, n_layer=4, n_head=4, d_model=128, dropout=0.0)
    B, T = 12, base["block_size"]
    batches = make_batches(data, 64, B, T)

    variants = {"sdpa": GPTConfig(**base, attn_impl="sdpa"), "manual": GPTConfig(**base, attn_impl="manual")}
    trainers = {name: Trainer(cfg, batches) for name, cfg in variants.items()}
    if not args.no_hf:
        trainers["hf-gpt2"] = Trainer(variants["sdpa"], batches, hf=True)
    if args.compile:
        trainers["sdpa+compile"] = Trainer(variants["sdpa"], batches, compile_model=True)

    print(f"torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
          f"os.cpu_count() = {os.cpu_count()}, load average (1 min) at start = {load_at_start:.2f}")
    print(f"corpus {len(text):,} chars, vocab {vocab_size}, batch {B} x context {T} = {B * T} tokens/step")

    for tr in trainers.values():
        tr.run(args.warmup)
    per_step = {name: [] for name in trainers}
    sizes = (256, 512, 1024)
    mm = {n: [] for n in sizes}
    for _ in range(args.rounds):  # alternate so that load from other processes hits all alike
        for n in sizes:
            mm[n] += matmul_flops(n, reps=5)
        for name, tr in trainers.items():
            per_step[name] += tr.run(args.steps)
    mm_median = {n: statistics.median(v) for n, v in mm.items()}
    peak = statistics.median(mm_median.values())  # median over sizes of the per-size medians

    model = trainers["sdpa"].model
    fpt = model.flops_per_token()
    # the model's own matmul shapes (N = B·T rows): what fraction of the peak can they reach at all?
    N, C = B * T, base["d_model"]
    shape_flops = {
        "qkv (768x128 @ 128x384)": statistics.median(matmul_flops(N, 3 * C, C)),
        "fc (768x128 @ 128x512)": statistics.median(matmul_flops(N, 4 * C, C)),
        "proj (768x512 @ 512x128)": statistics.median(matmul_flops(N, C, 4 * C)),
    }

    print(f"model: {model.num_params():,} non-embedding params, {fpt / 1e6:.3f} MFLOP/token "
          f"(6N + 12·n_layer·T·d_model, N incl. the output matrix)")
    print("peak: torch.mm fp32, n x n @ n x n, median over calls: "
          + ", ".join(f"n={n}: {f / 1e9:.1f}" for n, f in mm_median.items()) + " GFLOP/s")
    print(f"      peak = median over sizes = {peak / 1e9:.1f} GFLOP/s")
    for name, f in shape_flops.items():
        print(f"      torch.mm {name}: {f / 1e9:.1f} GFLOP/s ({f / peak:.0%} of peak)")
    if load_at_start > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {load_at_start:.2f} on {os.cpu_count()} cores before the run: other "
              "processes compete for the CPU, so every number here (the peak too) is unreliable")
    print()
    print(f"training: median of {args.rounds * args.steps} timed steps per variant "
          f"(after {args.warmup} warmup steps), variants interleaved every {args.steps} steps")
    header = (f"{'variant':<14}{'ms/step':>10}{'tokens/s':>12}{'GFLOP/s':>10}{'MFU':>8}{'loss':>8}"
              f"{'vs hf-gpt2':>12}")
    print(header)
    print("-" * len(header))
    for name, tr in trainers.items():
        sec = statistics.median(per_step[name])
        tok_s = B * T / sec
        achieved = tok_s * fpt
        vs_hf = f"{statistics.median(per_step['hf-gpt2']) / sec:.2f}x" if "hf-gpt2" in per_step else "—"
        print(f"{name:<14}{sec * 1e3:>10.1f}{tok_s:>12,.0f}{achieved / 1e9:>10.1f}"
              f"{achieved / peak:>8.1%}{tr.last_loss:>8.3f}{vs_hf:>12}")

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        tr = trainers["sdpa"]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            tr.run(10)
        print()
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
