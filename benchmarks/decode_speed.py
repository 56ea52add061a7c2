"""Decode throughput: ``GPT.generate`` with the KV cache vs without, and vs Hugging Face ``generate``.

The nanoGPT CPU configuration (4 layers, 4 heads, d_model 128, character vocabulary of the corpus)
with a context long enough to hold the prompt and every new token, so the cached path never has to
re-prefill. Greedy decoding from the same 16-token prompt; the three paths must produce identical
tokens (asserted — a speed-up that changes the output does not count). The Hugging Face model is
``transformers.GPT2LMHeadModel`` holding the same weights (``shared.hf.to_hf``) and decodes with
``generate(use_cache=True, do_sample=False)``.

Variants are timed in alternating rounds and medians reported, because the CPU may be shared.

    python benchmarks/decode_speed.py                       # 128 / 512 / 1024 new tokens, 1 and 2 threads
    python benchmarks/decode_speed.py --lengths 64 --rounds 1
    python benchmarks/decode_speed.py --profile             # torch.profiler table of one cached decode
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import torch

from shared.model import GPT, GPTConfig

PROMPT_LEN = 16


def build(max_new: int, vocab_size: int = 65) -> tuple[GPT, object]:
    """Our model (weights moved off their init so the argmax is not degenerate) and HF's copy of it."""
    from shared.hf import to_hf

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=vocab_size, block_size=PROMPT_LEN + max_new, n_layer=4, n_head=4, d_model=128)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model, to_hf(model)


def timed(fn) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024], help="new tokens to generate")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (alternating)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch intra-op thread counts to measure (all variants use the same one)")
    ap.add_argument("--profile", action="store_true", help="print a torch.profiler table of one cached decode")
    args = ap.parse_args()
    if any(t < 1 for t in args.threads) or any(n < 1 for n in args.lengths) or args.rounds < 1:
        ap.error("--threads, --lengths and --rounds take integers >= 1")
    load_at_start = os.getloadavg()[0]
    warnings.filterwarnings("ignore", category=UserWarning)

    longest = max(args.lengths)
    model, hf = build(longest)
    prompt = torch.randint(0, model.config.vocab_size, (1, PROMPT_LEN), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(prompt)
    variants = {
        "cached": lambda n: model.generate(prompt, n, temperature=0.0, use_cache=True),
        "uncached": lambda n: model.generate(prompt, n, temperature=0.0, use_cache=False),
        "hf": lambda n: hf.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                    do_sample=False, use_cache=True, pad_token_id=0),
    }
    print(f"torch {torch.__version__}, os.cpu_count() = {os.cpu_count()}, "
          f"load average (1 min) at start = {load_at_start:.2f}")
    print(f"model: {model.num_params():,} non-embedding params, block_size {model.config.block_size}, "
          f"prompt {PROMPT_LEN} tokens, greedy, batch 1")
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)  # every variant runs with the same thread count
            for fn in variants.values():  # warm up every path once
                fn(8)
            header = (f"{'threads':>7}{'new tokens':>11}{'cached tok/s':>14}{'uncached tok/s':>16}{'HF tok/s':>10}"
                      f"{'cache speed-up':>16}{'vs HF':>8}{'same tokens':>13}")
            print(header)
            print("-" * len(header))
            for n in args.lengths:
                times: dict[str, list[float]] = {k: [] for k in variants}
                outs: dict[str, torch.Tensor] = {}
                for _ in range(args.rounds):
                    for name, fn in variants.items():
                        sec, outs[name] = timed(lambda fn=fn, n=n: fn(n))
                        times[name].append(sec)
                same = torch.equal(outs["cached"], outs["uncached"]) and torch.equal(outs["cached"], outs["hf"])
                assert outs["cached"].shape == (1, PROMPT_LEN + n), outs["cached"].shape
                assert same, f"the three decoders disagree at {n} new tokens"
                tok_s = {k: n / statistics.median(v) for k, v in times.items()}
                print(f"{threads:>7}{n:>11}{tok_s['cached']:>14,.0f}{tok_s['uncached']:>16,.0f}{tok_s['hf']:>10,.0f}"
                      f"{tok_s['cached'] / tok_s['uncached']:>15.1f}x{tok_s['cached'] / tok_s['hf']:>7.2f}x"
                      f"{'yes':>13}")
            print()
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                variants["cached"](128)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20))
    if load_at_start > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {load_at_start:.2f} on {os.cpu_count()} cores before the run: the ratios "
              "are still side by side, but absolute tokens/s are unreliable")


if __name__ == "__main__":
    main()
