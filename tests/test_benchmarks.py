"""benchmarks/: the scripts run end to end at small sizes and print every column.

No timing is asserted here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shared.model import GPT, GPTConfig
from shared.pretrained import base_checkpoint_path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
try:
    import decode_speed
finally:
    sys.path.pop(0)


def run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), "RAYON_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=ROOT, check=True,
    ).stdout


def test_train_speed_prints_tokens_per_second_mfu_and_the_ratio_to_hugging_face():
    pytest.importorskip("transformers")
    out = run("train_speed.py", "--steps", "1", "--rounds", "2", "--warmup", "1")
    assert "MFU" in out and "tokens/s" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("sdpa", "manual", "hf-gpt2"))]
    assert [r[0] for r in rows] == ["sdpa", "manual", "hf-gpt2"]
    for row in rows:
        assert row[4].endswith("%") and 0 < float(row[4].rstrip("%")) < 200  # MFU
        assert float(row[2].replace(",", "")) > 0  # tokens/s
        assert row[-1].endswith("x") and float(row[-1].rstrip("x")) > 0  # vs hf-gpt2
    assert rows[-1][-1] == "1.00x"  # HF against itself


def test_decode_speed_asserts_identical_tokens_and_prints_the_ratios_and_its_memory():
    pytest.importorskip("transformers")
    out = run("decode_speed.py", "--lengths", "16", "24", "--rounds", "1", "--threads", "1", "2",
              "--skip-trained-check")
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("1", "16"), ("1", "24"), ("2", "16"), ("2", "24")]
    for row in rows:
        assert row[-1] == "yes" and row[5].endswith("x") and row[6].endswith("x")
    assert "random timing model's greedy 24 tokens hold" in out and "consistency check" in out
    memory = re.search(r"memory: peak RSS ([\d,]+) MB; (.*)", out)
    assert memory and 0 < int(memory[1].replace(",", "")) < 1000
    if decode_speed._glibc() is not None:
        # 2 x 2 x 3 variants
        assert memory[2].startswith("malloc_trim(0) between variants (untimed, 12 calls)")


def test_longest_run_and_continuation_stats():
    assert decode_speed.longest_run([]) == 0
    assert decode_speed.longest_run([5, 5, 7, 7, 7, 5]) == 3
    out = torch.tensor([[1, 2, 3, 3, 3, 4], [1, 2, 9, 9, 8, 8]])
    assert decode_speed.continuation_stats(out, 2) == (8, 4, 3)  # 3 3 3 4 | 9 9 8 8


def tiny_gpt2() -> GPT:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=23, block_size=16, n_layer=1, n_head=2, d_model=16)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("seed", [None, 7])
def test_three_ways_returns_the_common_tokens_and_catches_a_decoder_that_differs(
    seed, monkeypatch, one_thread
):
    pytest.importorskip("transformers")
    from shared.hf import to_hf

    model = tiny_gpt2()
    hf = to_hf(model)
    prompts = torch.randint(0, 23, (2, 4), generator=torch.Generator().manual_seed(0))
    out = decode_speed.three_ways(model, hf, prompts, 12, seed=seed)  # fills the 16-token context
    assert out.shape == (2, 16) and torch.equal(out[:, :4], prompts)
    if seed is not None:  # sampling: reproducible from the seed, and not the greedy tokens
        torch.manual_seed(seed)
        assert torch.equal(model.generate(prompts, 12, temperature=1.0), out)
        assert not torch.equal(model.generate(prompts, 12, temperature=0.0), out)
    real = hf.generate

    def off_by_one(*args, **kwargs):
        tokens = real(*args, **kwargs)
        tokens[1, -1] = (tokens[1, -1] + 1) % 23
        return tokens

    monkeypatch.setattr(hf, "generate", off_by_one)
    with pytest.raises(AssertionError, match="HF generate disagree: prompt 1, position 15"):
        decode_speed.three_ways(model, hf, prompts, 12, seed=seed)


@pytest.mark.skipif(not base_checkpoint_path().is_file(),
                    reason="the pre-trained base model is not cached "
                           "(python -c 'import shared.pretrained as p; "
                           "p.load_base_model()' trains it in about a minute)")
def test_the_trained_base_model_decodes_identically_three_ways_and_not_degenerately(capsys, one_thread):
    pytest.importorskip("transformers")
    decode_speed.trained_identity_check()
    out = capsys.readouterr().out
    found = re.findall(
        r"(greedy|sampled[^:]*): cached = uncached = HF generate on all (\d+) new tokens: (\d+) "
        r"distinct tokens, longest run of one token (\d+), (\d+) different continuations of 4",
        out,
    )
    assert [f[0].split(",")[0] for f in found] == ["greedy", "sampled"]
    for how, n, distinct, run, different in found:
        assert int(n) == 4 * 48 and int(different) == 4
        assert int(distinct) >= (8 if how == "greedy" else 30) and int(run) <= 4


def test_heap_trimmer_trims_after_each_growth_and_books_the_call_to_the_running_variant():
    state = {"rss": 1000}

    def trim():
        state["rss"] -= 40  # the free pages go back

    trimmer = decode_speed.HeapTrimmer(growth=50, poll=0.001, rss=lambda: state["rss"], trim=trim)
    with trimmer:
        trimmer.label = "uncached"
        state["rss"] = 1049  # under the growth step: no call
        time.sleep(0.05)
        assert trimmer.calls == {}
        state["rss"] = 1060
        wait_for(lambda: trimmer.calls == {"uncached": 1})
        assert state["rss"] == 1020  # the new floor: the next call needs 50 more
        trimmer.label = "hf"
        state["rss"] = 1069
        time.sleep(0.05)
        state["rss"] = 1070
        wait_for(lambda: trimmer.calls.get("hf") == 1)
        state["rss"] = 1079  # 49 over the floor of 1030
        trimmer.between()  # at once, whatever the growth, booked apart from the variants
        assert trimmer.calls == {"uncached": 1, "hf": 1, "between": 1} and state["rss"] == 1039
    assert set(trimmer.seconds) == {"uncached", "hf", "between"}
    assert not trimmer._thread.is_alive()
    off = decode_speed.HeapTrimmer(rss=lambda: 0)
    off.trim = None  # what --no-trim (or a libc without malloc_trim) leaves
    with off:
        off.between()
    assert not off.available() and off.calls == {} and off._thread is None


_FRAGMENT_THEN_TRIM = """
import sys
sys.path.insert(0, sys.argv[1])
import decode_speed
start = decode_speed.current_rss()
blocks = [bytearray(100_000) for _ in range(600)]  # 60 MB of heap (below the mmap threshold), touched
kept = blocks[::10]  # every tenth survives: the freed 90 % are holes glibc keeps resident
del blocks
held = decode_speed.current_rss() - start
decode_speed.HeapTrimmer().trim()
print(held, decode_speed.current_rss() - start, len(kept))
"""


@pytest.mark.skipif(decode_speed._glibc() is None, reason="malloc_trim is glibc's")
def test_malloc_trim_gives_fragmented_free_heap_pages_back_to_the_os():
    # in a fresh process: a long-lived test worker's heap already has free holes that the blocks would reuse
    out = subprocess.run([sys.executable, "-c", _FRAGMENT_THEN_TRIM, str(ROOT / "benchmarks")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    held, after, kept = (int(v) for v in out.split())
    assert held > 40e6 and after < held - 30e6, (held, after)
    assert kept == 60


def wait_for(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_bpe_speed_matches_the_naive_merges_and_the_rust_vocabulary_size():
    pytest.importorskip("tokenizers")
    out = run("bpe_speed.py", "--vocab", "300", "--rounds", "1", "--naive-max", "300")
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("300"))
    assert row[4].endswith("x") and row[5].endswith("x")  # vs naive, vs Rust
    assert 1.0 < float(row[6]) < 3.0 and 1.0 < float(row[7]) < 3.0  # held-out bytes/token, ours and Rust


def test_run_all_runs_every_benchmark_script_in_the_folder():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import run_all
    finally:
        sys.path.pop(0)
    scripts = {p.name for p in (ROOT / "benchmarks").glob("*.py")} - {"run_all.py"}
    assert set(run_all.FULL) == set(run_all.QUICK) == scripts
