"""Decode throughput: ``GPT.generate`` with the KV cache vs without, and vs Hugging Face ``generate``.

Two parts, on two models:

1. **Token identity, on a trained model.** The project's pre-trained Shakespeare base model
   (``shared.pretrained.load_base_model``: trained once per machine in about 70 s, then cached) decodes
   from four held-out 16-character prompts up to its full 64-token context, three ways: with the KV
   cache, without it, and as ``transformers.GPT2LMHeadModel`` (``shared.hf.to_hf``); greedily, then
   sampling at temperature 1 from the same seed (each decoder draws one ``torch.multinomial`` per
   step from the global generator). The tokens must be identical (asserted); the script prints how
   many distinct tokens the compared continuations hold and their longest run of one token, so a
   reader can see that the agreement is not that of a degenerate, repetitive output (a character
   model's greedy text loops over common words; the sampled text does not).
2. **Speed.** The base model's 64-token context is too short to show what a KV cache is for, so the
   timing uses the nanoGPT CPU configuration (4 layers, 4 heads, d_model 128, 65-token vocabulary)
   with random weights and a context that holds the prompt and every new token (the cached path
   never re-prefills). Greedy decoding from one 16-token prompt; the three paths are still asserted
   to agree, but a random model's greedy output is repetitive, so that is a consistency check, not
   the evidence (its distinct tokens and longest run are printed too). HF decodes with
   ``generate(use_cache=True, do_sample=False)``. Variants are timed in alternating rounds and
   medians reported, because the CPU may be shared.

Memory: the uncached baseline allocates tensors that grow by one row per step; glibc's heap cannot
reuse the slightly-too-small holes they leave and keeps them resident (2.75 GB peak RSS for the
default run without help). On glibc the script therefore calls ``malloc_trim(0)``, which hands the
free pages back to the OS, between timed variants (untimed) and, from a watcher thread, during one
whenever the resident set has grown by 256 MiB since the last call; the peak stays under 1 GB. The
rule is the same for all three variants. In practice the uncached baseline triggers it, and so,
less often, does HF's cache, which also grows by concatenation; our preallocated cache never does.
The script prints how often each variant was trimmed and what share of its timed time that took
(1-2 %). (Fixing glibc's mmap threshold instead, ``MALLOC_MMAP_THRESHOLD_=131072``, also bounds the
memory but turns every allocation of HF's growing cache into a fresh ``mmap``: HF decoded 20-40 %
slower in our runs, which would tilt the comparison.) ``--no-trim`` turns all of it off.

    python benchmarks/decode_speed.py                       # 128 / 512 / 1024 new tokens, 1 and 2 threads
    python benchmarks/decode_speed.py --lengths 64 --rounds 1
    python benchmarks/decode_speed.py --profile             # torch.profiler table of one cached decode
    python benchmarks/decode_speed.py --skip-trained-check  # timing only (no base model needed)
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import statistics
import sys
import threading
import time
import warnings
from collections.abc import Callable

import torch

from shared.device import current_rss_mib, peak_memory
from shared.model import GPT, GPTConfig

PROMPT_LEN = 16
TRIM_GROWTH = 256 << 20  # bytes of RSS growth that trigger a malloc_trim(0)


def build(max_new: int, vocab_size: int = 65) -> tuple[GPT, object]:
    """Our model (weights moved off their init so the argmax is not degenerate) and HF's copy of it."""
    from shared.hf import to_hf

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=vocab_size, block_size=PROMPT_LEN + max_new, n_layer=4, n_head=4,
                       d_model=128)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    hf = to_hf(model)
    # time plain transformers (the guard costs ~3 us a step; we stay in context)
    hf.hardway_context_guard.remove()
    return model, hf


def timed(fn) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ----------------------------------------------------------------------------------------------
# token identity
# ----------------------------------------------------------------------------------------------


def longest_run(ids: list[int]) -> int:
    """Length of the longest stretch of one repeated token: ``longest_run([5, 5, 7, 7, 7, 5]) == 3``."""
    best = run = 0
    for i, t in enumerate(ids):
        run = run + 1 if i and t == ids[i - 1] else 1
        best = max(best, run)
    return best


def three_ways(model: GPT, hf, prompts: torch.Tensor, new: int, seed: int | None = None) -> torch.Tensor:
    """Continuations (B, T + new) from the cached, the uncached and HF's decoder; asserts they are identical.

    ``seed=None`` decodes greedily. With a seed each decoder samples at temperature 1 (no top-k or
    top-p) after ``torch.manual_seed(seed)``: all three draw one ``torch.multinomial`` per step from the
    global generator, so equal probabilities give equal tokens.
    """
    sample = seed is not None
    kw = dict(do_sample=True, temperature=1.0, top_k=None, top_p=None) if sample else dict(do_sample=False)
    decoders = {
        "cached": lambda: model.generate(prompts, new, temperature=float(sample), use_cache=True),
        "uncached": lambda: model.generate(prompts, new, temperature=float(sample), use_cache=False),
        "HF generate": lambda: hf.generate(prompts, attention_mask=torch.ones_like(prompts),
                                           max_new_tokens=new, min_new_tokens=new, use_cache=True,
                                           pad_token_id=0, **kw),
    }
    outs = {}
    for name, fn in decoders.items():
        if sample:
            torch.manual_seed(seed)
        outs[name] = fn()
    for name, out in outs.items():
        if not torch.equal(outs["cached"], out):
            row, col = (outs["cached"] != out).nonzero()[0].tolist()
            how = f"sampling (seed {seed})" if sample else "greedy"
            raise AssertionError(
                f"{how}: the cached decoder and {name} disagree: prompt {row}, position {col}"
            )
    return outs["cached"]


def continuation_stats(out: torch.Tensor, prompt_len: int) -> tuple[int, int, int]:
    """(tokens compared, distinct tokens among them, longest run of one token in any row)."""
    new = out[:, prompt_len:]
    return new.numel(), len(set(new.flatten().tolist())), max(longest_run(row) for row in new.tolist())


def held_out_prompts(n: int = 4, length: int = PROMPT_LEN) -> list[str]:
    """``n`` prompts of ``length`` characters, each starting a line of the held-out 10 % of the corpus."""
    from shared.corpus import load_shakespeare
    from shared.data import train_val_split

    val = train_val_split(load_shakespeare(), 0.1)[1]
    starts = []
    for k in range(n):
        i = val.index("\n", k * len(val) // n)
        while val[i] == "\n":  # past the blank line between speeches
            i += 1
        starts.append(i)
    return [val[i : i + length] for i in starts]


def trained_identity_check(seed: int = 1234) -> None:
    """Part 1: the base model, cached vs uncached vs HF, greedy and sampled, its full context; prints the
    evidence."""
    from shared.hf import to_hf
    from shared.pretrained import load_base_model

    model, tok = load_base_model()
    hf = to_hf(model)
    texts = held_out_prompts()
    prompts = torch.tensor([tok.encode(t) for t in texts])  # (4, 16)
    P = prompts.size(1)
    new = model.config.block_size - P  # fill the context exactly: the GPT-2 export has no position beyond it
    print(f"token identity on a trained model: the pre-trained Shakespeare base model "
          f"({model.num_params():,} non-embedding params), {len(texts)} held-out prompts of {P} characters, "
          f"{new} new tokens each (its whole {model.config.block_size}-token context)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: a second thread only adds synchronisation
    try:
        with torch.inference_mode():
            for how, s in (("greedy", None), (f"sampled, temperature 1, seed {seed}", seed)):
                out = three_ways(model, hf, prompts, new, seed=s)
                n, distinct, run = continuation_stats(out, P)
                different = len({tuple(row) for row in out[:, P:].tolist()})
                print(f"{how}: cached = uncached = HF generate on all {n} new tokens: {distinct} distinct "
                      f"tokens, longest run of one token {run}, {different} different continuations of "
                      f"{len(texts)}")
                for text, row in zip(texts, out.tolist(), strict=True):
                    print(f"  {text!r} -> {tok.decode(row[P:])!r}")
    finally:
        torch.set_num_threads(threads)
    print()


# ----------------------------------------------------------------------------------------------
# memory
# ----------------------------------------------------------------------------------------------


def _glibc() -> ctypes.CDLL | None:
    """The process's C library if it is glibc on Linux (which has ``malloc_trim``), else None."""
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    return libc if hasattr(libc, "malloc_trim") else None


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    return int(current_rss_mib() * 2**20)


class HeapTrimmer:
    """A daemon thread that calls ``trim()`` whenever ``rss()`` has grown by ``growth`` bytes since the last
    call.

    ``label`` names what is running now (set it before each timed variant); calls and seconds are
    kept per label. :meth:`between` trims at once (call it between timed variants, so that none
    starts with, and pays for, what the previous one left). The defaults are glibc's
    ``malloc_trim(0)``, which hands every free page of the heap back to the OS, and
    ``/proc/self/statm``; :meth:`available` says whether they exist here. Use as a context manager.
    """

    def __init__(self, growth: int = TRIM_GROWTH, poll: float = 0.1, rss: Callable[[], int] = current_rss,
                 trim: Callable[[], object] | None = None) -> None:
        if trim is None:
            libc = _glibc()
            trim = (lambda: libc.malloc_trim(0)) if libc is not None else None
        self.growth, self.poll, self.rss, self.trim = growth, poll, rss, trim
        self.label = ""
        self.calls: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        self._floor = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def available(self) -> bool:
        return self.trim is not None

    def _trim(self, label: str) -> None:
        with self._lock:
            t0 = time.perf_counter()
            self.trim()
            seconds = time.perf_counter() - t0
            self._floor = self.rss()
            self.seconds[label] = self.seconds.get(label, 0.0) + seconds
            self.calls[label] = self.calls.get(label, 0) + 1

    def between(self) -> None:
        """Trim now, booked as "between" (outside any timed variant)."""
        if self.available():
            self._trim("between")

    def _watch(self) -> None:
        while not self._stop.wait(self.poll):
            if self.rss() - self._floor >= self.growth:
                self._trim(self.label)

    def __enter__(self) -> HeapTrimmer:
        if self.available():
            self._floor = self.rss()
            self._thread = threading.Thread(target=self._watch, name="heap-trimmer", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# ----------------------------------------------------------------------------------------------
# main
# ----------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 1024], help="new tokens to generate")
    ap.add_argument("--rounds", type=int, default=3, help="timed rounds per variant (alternating)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="torch intra-op thread counts to measure (all variants use the same one)")
    ap.add_argument("--profile", action="store_true",
                    help="print a torch.profiler table of one cached decode")
    ap.add_argument("--skip-trained-check", action="store_true",
                    help="skip part 1 (token identity on the pre-trained base model, which trains it if "
                         "not cached)")
    ap.add_argument("--no-trim", action="store_true",
                    help="never call malloc_trim: glibc keeps the uncached baseline's freed heap resident "
                         "(GBs)")
    args = ap.parse_args()
    if any(t < 1 for t in args.threads) or any(n < 1 for n in args.lengths) or args.rounds < 1:
        ap.error("--threads, --lengths and --rounds take integers >= 1")
    load_at_start = os.getloadavg()[0]
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"torch {torch.__version__}, os.cpu_count() = {os.cpu_count()}, "
          f"load average (1 min) at start = {load_at_start:.2f}\n")

    if not args.skip_trained_check:
        trained_identity_check()

    longest = max(args.lengths)
    model, hf = build(longest)
    g = torch.Generator().manual_seed(1)
    prompt = torch.randint(0, model.config.vocab_size, (1, PROMPT_LEN), generator=g)
    mask = torch.ones_like(prompt)
    variants = {
        "cached": lambda n: model.generate(prompt, n, temperature=0.0, use_cache=True),
        "uncached": lambda n: model.generate(prompt, n, temperature=0.0, use_cache=False),
        "hf": lambda n: hf.generate(prompt, attention_mask=mask, max_new_tokens=n, min_new_tokens=n,
                                    do_sample=False, use_cache=True, pad_token_id=0),
    }
    print(f"speed: nanoGPT CPU config with random weights (the base model's 64-token context is too short "
          f"for a KV cache to matter): {model.num_params():,} non-embedding params, block_size "
          f"{model.config.block_size}, prompt {PROMPT_LEN} tokens, greedy, batch 1")
    timed_seconds: dict[str, float] = {k: 0.0 for k in variants}
    degenerate = None
    trimmer = HeapTrimmer()
    if args.no_trim:
        trimmer.trim = None  # no watcher thread at all
    with torch.inference_mode(), trimmer:
        for threads in args.threads:
            torch.set_num_threads(threads)  # every variant runs with the same thread count
            trimmer.label = "warm-up"
            for fn in variants.values():  # warm up every path once
                fn(8)
            header = (f"{'threads':>7}{'new tokens':>11}{'cached tok/s':>14}{'uncached tok/s':>16}"
                      f"{'HF tok/s':>10}{'cache speed-up':>16}{'vs HF':>8}{'same tokens':>13}")
            print(header)
            print("-" * len(header))
            for n in args.lengths:
                times: dict[str, list[float]] = {k: [] for k in variants}
                outs: dict[str, torch.Tensor] = {}
                for _ in range(args.rounds):
                    for name, fn in variants.items():
                        trimmer.label = name
                        sec, outs[name] = timed(lambda fn=fn, n=n: fn(n))
                        trimmer.label = "between"
                        trimmer.between()  # untimed: the next variant starts from a trimmed heap
                        times[name].append(sec)
                        timed_seconds[name] += sec
                same = (torch.equal(outs["cached"], outs["uncached"])
                        and torch.equal(outs["cached"], outs["hf"]))
                assert outs["cached"].shape == (1, PROMPT_LEN + n), outs["cached"].shape
                assert same, f"the three decoders disagree at {n} new tokens"
                if n == longest:
                    degenerate = continuation_stats(outs["cached"], PROMPT_LEN)
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
    count, distinct, run = degenerate
    print(f"the random timing model's greedy {count} tokens hold {distinct} distinct tokens, longest run "
          f"{run}: 'same tokens' above is a consistency check; the evidence is "
          + ("part 1 (trained model)" if not args.skip_trained_check else "part 1, skipped here"))
    if args.no_trim:
        trim_note = "malloc_trim off (--no-trim)"
    elif not trimmer.available():
        trim_note = "no malloc_trim here (not glibc Linux)"
    else:
        during = ", ".join(f"{k}: {v} calls, {trimmer.seconds[k]:.2f} s = "
                           f"{100 * trimmer.seconds[k] / timed_seconds[k]:.1f} % of its timed time"
                           for k, v in trimmer.calls.items() if k in timed_seconds)
        trim_note = (f"malloc_trim(0) between variants (untimed, {trimmer.calls.get('between', 0)} calls) "
                     f"and during one whenever RSS grew {TRIM_GROWTH >> 20} MiB: " + (during or "never"))
    print(f"memory: peak RSS {peak_memory()['cpu_max_rss_mib'] * 2**20 / 1e6:,.0f} MB; {trim_note}")
    if load_at_start > 0.5 * (os.cpu_count() or 1):
        print(f"WARNING: load average {load_at_start:.2f} on {os.cpu_count()} cores before the run: the "
              "ratios are still side by side, but absolute tokens/s are unreliable")


if __name__ == "__main__":
    main()
