"""Byte-level BPE training speed: ``shared.tokenizers`` vs a naive trainer vs ``tokenizers`` (Rust).

All three train on the same first 1 MB of the corpus with the GPT-2 pre-tokenizer regex, to vocabulary
sizes 1 000 and 4 000 (256 bytes + merges). ``shared.tokenizers.train_bpe`` updates pair counts only in the
chunks that held the merged pair; ``train_bpe_naive`` recounts every pair before every merge (it
learns identical merges — asserted); the Rust trainer is Hugging Face's
``tokenizers.trainers.BpeTrainer`` with the
``ByteLevel`` pre-tokenizer (the same GPT-2 regex) and all 256 bytes as the initial alphabet.
Held-out compression (UTF-8 bytes per token on the last 500 k characters) compares the vocabularies.

Timings alternate between trainers over rounds; medians are reported. The naive trainer is slow
(about a minute at 1 000), so by default it runs once and only at vocab sizes <= --naive-max.

    python benchmarks/bpe_speed.py
    python benchmarks/bpe_speed.py --vocab 1000 --rounds 1 --naive-max 300   # quick
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from shared.corpus import load_shakespeare
from shared.tokenizers import GPT2_PATTERN, BPETokenizer, train_bpe, train_bpe_naive

TRAIN_CHARS = 1_000_000
HELDOUT_CHARS = 500_000


def hf_train(text: str, vocab_size: int):
    """A tokenizers byte-level BPE trained on ``text``: same regex, 256-byte initial alphabet, no specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=0, show_progress=False, special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([text], trainer=trainer, length=1)
    return tok


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", type=int, nargs="+", default=[1000, 4000], help="vocabulary sizes")
    ap.add_argument("--rounds", type=int, default=3,
                    help="timed rounds of shared.tokenizers and tokenizers")
    ap.add_argument("--naive-max", type=int, default=1000,
                    help="largest vocab size the naive trainer runs at")
    args = ap.parse_args()
    load_at_start = os.getloadavg()[0]

    corpus = load_shakespeare()
    text, held_out = corpus[:TRAIN_CHARS], corpus[-HELDOUT_CHARS:]
    held_bytes = len(held_out.encode("utf-8"))
    print(f"train {len(text.encode('utf-8')):,} bytes, held-out {held_bytes:,} bytes; GPT-2 pre-tokenizer; "
          f"load average (1 min) at start = {load_at_start:.2f} on {os.cpu_count()} cores; "
          f"RAYON_NUM_THREADS={os.environ.get('RAYON_NUM_THREADS', 'unset (all cores)')}")
    header = (f"{'vocab':>6}{'shared.tokenizers s':>14}{'naive s':>10}{'tokenizers s':>14}{'vs naive':>10}"
              f"{'vs Rust':>9}{'bytes/tok ours':>16}{'Rust':>7}{'diff':>7}")
    print(header)
    print("-" * len(header))
    for v in args.vocab:
        ours_t, rust_t = [], []
        for _ in range(args.rounds):
            sec, merges = timed(lambda v=v: train_bpe(text, v, GPT2_PATTERN))
            ours_t.append(sec)
            sec, rust = timed(lambda v=v: hf_train(text, v))
            rust_t.append(sec)
        ours = BPETokenizer(merges, GPT2_PATTERN)
        assert len(ours) == v and rust.get_vocab_size() == v, (len(ours), rust.get_vocab_size())
        assert ours.decode(ours.encode(held_out)) == held_out
        bpt_ours = held_bytes / len(ours.encode(held_out))
        bpt_rust = held_bytes / len(rust.encode(held_out).ids)
        t_ours, t_rust = statistics.median(ours_t), statistics.median(rust_t)
        if v <= args.naive_max:
            t_naive, naive = timed(lambda v=v: train_bpe_naive(text, v, GPT2_PATTERN))
            assert naive == merges, "the naive trainer learned different merges"
            naive_s, vs_naive = f"{t_naive:>10.1f}", f"{t_naive / t_ours:>9.1f}x"
        else:
            naive_s, vs_naive = f"{'not run':>10}", f"{'-':>10}"
        print(f"{v:>6}{t_ours:>14.2f}{naive_s}{t_rust:>14.2f}{vs_naive}{t_ours / t_rust:>8.1f}x"
              f"{bpt_ours:>16.3f}{bpt_rust:>7.3f}{bpt_ours / bpt_rust - 1:>+7.1%}")
    print("vs naive = naive time / ours (higher is better); "
          "vs Rust = our time / tokenizers' (lower is better)")


if __name__ == "__main__":
    main()
