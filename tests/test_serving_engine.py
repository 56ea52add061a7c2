"""Tests for shared/serving/engine.py: the paged KV cache, copy-on-write forks and the two schedulers.

The engine must compute exactly what the model computes: paged decode logits equal the model's own forward
(and the keys and values in the blocks equal the contiguous KVCache of project 08), greedy tokens equal
``GPT.generate``, whatever the batch, the block size, preemptions or forks. Small random models keep this
fast; the properties do not depend on the weights.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from shared.model import GPT, GPTConfig
from shared.serving.engine import (
    BlockAllocator,
    Engine,
    OutOfBlocks,
    Request,
    TokenEvent,
    blocks_needed,
    paged_attention,
)

CONFIGS = {
    "learned": dict(pos_encoding="learned"),
    "rope_gqa": dict(pos_encoding="rope", n_kv_head=2),
    "sinusoidal_post_ln_rms": dict(pos_encoding="sinusoidal", norm_placement="post", norm="rmsnorm"),
    "mqa_swiglu": dict(pos_encoding="rope", n_kv_head=1, activation="swiglu"),
}


def make_model(kind: str = "learned", seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(
        vocab_size=23, block_size=32, n_layer=2, n_head=4, d_model=32, dropout=0.0, **CONFIGS[kind]
    )
    model = GPT(cfg).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so greedy text is not one repeated token
        for p in model.parameters():
            p.mul_(4.0) if p.dim() == 2 else None
    return model


def prompts(n: int, seed: int = 0, lo: int = 1, hi: int = 12) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi, (n,), generator=g).tolist()
    return [torch.randint(0, 23, (L,), generator=g).tolist() for L in lengths]


def run(engine: Engine) -> tuple[dict[str, list[int]], list[TokenEvent]]:
    out: dict[str, list[int]] = {}
    events: list[TokenEvent] = []
    for _ in range(10_000):
        if not engine.has_unfinished():
            break
        for e in engine.step():
            events.append(e)
            if e.token_id is not None:
                out.setdefault(e.request_id, []).append(e.token_id)
    assert not engine.has_unfinished()
    return out, events


def greedy(model: GPT, ids: list[int], n: int) -> list[int]:
    return model.generate(torch.tensor([ids]), n, temperature=0)[0, len(ids) :].tolist()


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def test_allocator_free_list_and_reference_counts():
    a = BlockAllocator(3)
    b0, b1 = a.allocate(), a.allocate()
    assert (b0, b1, a.num_free) == (0, 1, 1)
    a.share(b0)
    a.free(b0)
    assert a.num_free == 1 and a.ref_counts[b0] == 1  # still held by its second owner
    a.free(b0)
    assert a.num_free == 2 and a.ref_counts[b0] == 0
    a.allocate(), a.allocate()
    with pytest.raises(OutOfBlocks, match="all 3 blocks are in use"):
        a.allocate()
    with pytest.raises(ValueError, match="double free"):
        b = BlockAllocator(2)
        b.free(b.allocate()) or b.free(0)
    with pytest.raises(ValueError, match="num_blocks"):
        BlockAllocator(0)
    assert blocks_needed(0, 8) == 0 and blocks_needed(8, 8) == 1 and blocks_needed(9, 8) == 2


@pytest.mark.parametrize("nkv", [4, 2, 1])
def test_paged_attention_equals_contiguous_attention(nkv):
    g = torch.Generator().manual_seed(nkv)
    B, nh, hs, bs, num_blocks = 3, 4, 8, 4, 12
    lengths = [5, 1, 11]
    k_pool = torch.randn(num_blocks, nkv, bs, hs, generator=g)
    v_pool = torch.randn(num_blocks, nkv, bs, hs, generator=g)
    tables = [[7, 2], [4], [0, 9, 3]]  # scattered, not in order
    nb = max(map(len, tables))
    padded = torch.tensor([t + [0] * (nb - len(t)) for t in tables])
    q = torch.randn(B, nh, hs, generator=g)
    got = paged_attention(q, k_pool, v_pool, padded, torch.tensor(lengths))
    for b, (L, table) in enumerate(zip(lengths, tables, strict=True)):
        k = torch.cat([k_pool[i] for i in table], dim=1)[:, :L]  # (nkv, L, hs) contiguous
        v = torch.cat([v_pool[i] for i in table], dim=1)[:, :L]
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)
        want = F.scaled_dot_product_attention(q[b][:, None], k, v)[:, 0]  # (nh, hs)
        torch.testing.assert_close(got[b], want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", sorted(CONFIGS))
def test_paged_decode_equals_model_forward_and_contiguous_cache(kind):
    model = make_model(kind)
    engine = Engine(model, num_blocks=40, block_size=4, max_batch=8)
    ps = prompts(5, seed=1)
    for i, p in enumerate(ps):
        engine.add_request(Request(str(i), p, max_tokens=5, temperature=0))
    engine._schedule_continuous()  # admits and prefills every request
    assert engine.num_running == 5
    for _ in range(3):  # three decode steps at five different positions
        seqs = list(engine.running)
        logits = engine.decode_logits(seqs)
        for s, row in zip(seqs, logits, strict=True):
            full, _ = model(torch.tensor([s.tokens]))
            torch.testing.assert_close(row, full[0, -1], atol=1e-5, rtol=1e-5)
            cache = model.new_kv_cache(1)
            model(torch.tensor([s.tokens]), kv_cache=cache)
            L = len(s.tokens)
            for layer in range(model.config.n_layer):
                paged = torch.cat([engine.k_pools[layer][b] for b in s.block_table], dim=1)[:, :L]
                torch.testing.assert_close(paged, cache.k[layer][0, :, :L], atol=1e-5, rtol=1e-5)
                paged = torch.cat([engine.v_pools[layer][b] for b in s.block_table], dim=1)[:, :L]
                torch.testing.assert_close(paged, cache.v[layer][0, :, :L], atol=1e-5, rtol=1e-5)
        for s, row in zip(seqs, logits, strict=True):
            s.tokens.append(int(row.argmax()))
            engine._reserve_slot(s, len(s.tokens) - 1)


@pytest.mark.parametrize("kind,block_size", [("learned", 8), ("rope_gqa", 3), ("sinusoidal_post_ln_rms", 1)])
def test_greedy_tokens_equal_the_models_own_generation(kind, block_size):
    model = make_model(kind)
    engine = Engine(model, num_blocks=200, block_size=block_size, max_batch=4)
    ps = prompts(7, seed=2)
    lengths = [3, 17, 9, 1, 12, 20, 6]
    for i, (p, n) in enumerate(zip(ps, lengths, strict=True)):
        engine.add_request(Request(f"r{i}", p, max_tokens=n, temperature=0))
    out, events = run(engine)
    for i, (p, n) in enumerate(zip(ps, lengths, strict=True)):
        assert out[f"r{i}"] == greedy(model, p, n)
    ends = [e for e in events if e.finished]
    assert len(ends) == 7 and all(e.finish_reason == "length" for e in ends)
    assert engine.blocks_in_use == 0 and engine.allocator.num_free == 200


def test_preemption_and_resume_give_identical_output():
    model = make_model("rope_gqa")
    ps = prompts(6, seed=3, lo=4, hi=10)
    reqs = [
        Request(f"r{i}", p, max_tokens=20, temperature=0 if i % 2 else 0.8, seed=i) for i, p in enumerate(ps)
    ]
    roomy = Engine(model, num_blocks=100, block_size=4, max_batch=6)
    tight = Engine(model, num_blocks=12, block_size=4, max_batch=6)
    for r in reqs:
        roomy.add_request(Request(**vars(r)))
        tight.add_request(Request(**vars(r)))
    want, _ = run(roomy)
    got, _ = run(tight)
    assert roomy.num_preemptions == 0 and tight.num_preemptions >= 3
    assert got == want
    assert tight.blocks_in_use == 0
    for i, p in enumerate(ps):
        if i % 2:
            assert got[f"r{i}"] == greedy(model, p, 20)


def test_seeded_sampling_does_not_depend_on_the_batch():
    model = make_model("learned")
    p = prompts(1, seed=4)[0]
    alone = Engine(model, num_blocks=50, block_size=4)
    alone.add_request(Request("x", p, max_tokens=15, temperature=1.0, seed=7))
    crowd = Engine(model, num_blocks=50, block_size=4)
    for i, q in enumerate(prompts(5, seed=5)):
        crowd.add_request(Request(f"o{i}", q, max_tokens=10, temperature=1.0, seed=100 + i))
    crowd.add_request(Request("x", p, max_tokens=15, temperature=1.0, seed=7))
    a, _ = run(alone)
    b, _ = run(crowd)
    assert a["x"] == b["x"]
    g = torch.Generator().manual_seed(7)
    want = model.generate(torch.tensor([p]), 15, temperature=1.0, generator=g)[0, len(p) :].tolist()
    assert a["x"] == want


def test_fork_shares_blocks_then_copies_on_first_write():
    model = make_model("learned")
    bs = 4
    engine = Engine(model, num_blocks=30, block_size=bs, max_batch=8)
    prompt = prompts(1, seed=6, lo=10, hi=11)[0]  # 10 tokens
    engine.add_request(Request("p", prompt, max_tokens=12, temperature=0))
    engine.step()  # prefill 9 positions + decode position 9: 10 cached, 11 tokens
    parent = engine.running[0]
    assert parent.num_cached == 10 and len(parent.block_table) == 3
    used = engine.blocks_in_use
    engine.fork("p", Request("c", [0], max_tokens=5, temperature=0))
    child = engine.running[1]
    assert child.block_table == parent.block_table and engine.blocks_in_use == used
    assert [engine.allocator.ref_counts[b] for b in parent.block_table] == [2, 2, 2]
    engine.step()  # both write position 10 into the shared third block: the first writer copies it
    assert engine.blocks_in_use == used + 1
    assert parent.block_table[:2] == child.block_table[:2] and parent.block_table[2] != child.block_table[2]
    assert [engine.allocator.ref_counts[b] for b in parent.block_table] == [2, 2, 1]
    out, _ = run(engine)
    full = greedy(model, prompt, 12)
    assert out["p"] == full[2:]  # the first two tokens came from the two steps above
    assert out["c"] == greedy(model, prompt + full[:2], 4)  # c's first token (step 2) equals p's second
    assert engine.blocks_in_use == 0


def test_fork_output_equals_an_independent_request():
    model = make_model("rope_gqa")
    prompt = prompts(1, seed=8, lo=6, hi=7)[0]
    engine = Engine(model, num_blocks=30, block_size=4)
    engine.add_request(Request("p", prompt, max_tokens=10, temperature=0))
    first = engine.step()
    engine.fork("p", Request("c", [0], max_tokens=9, temperature=0.9, seed=3))
    out, _ = run(engine)
    tokens = prompt + [first[0].token_id]
    alone = Engine(model, num_blocks=30, block_size=4)
    alone.add_request(Request("c", tokens, max_tokens=9, temperature=0.9, seed=3))
    want, _ = run(alone)
    assert out["c"] == want["c"]
    assert [first[0].token_id] + out["p"] == greedy(model, prompt, 10)


def test_fork_errors():
    engine = Engine(make_model(), num_blocks=10, block_size=4)
    with pytest.raises(ValueError, match="parent_id='nope' is not a running request"):
        engine.fork("nope", Request("c", [1], 2))


def test_abort_frees_blocks_at_once_and_reports_the_end():
    engine = Engine(make_model(), num_blocks=40, block_size=4, max_batch=2)
    for i, p in enumerate(prompts(3, seed=9, lo=8, hi=9)):
        engine.add_request(Request(str(i), p, max_tokens=20, temperature=0))
    engine.step()
    assert engine.num_running == 2 and engine.num_waiting == 1
    used = engine.blocks_in_use
    engine.abort("0")
    assert engine.blocks_in_use < used and engine.num_running == 1
    engine.abort("2")  # a waiting request
    engine.abort("unknown")  # no-op
    assert engine.num_waiting == 0
    events = engine.step()
    assert TokenEvent("0", None, True, "abort") in events and TokenEvent("2", None, True, "abort") in events
    assert [e.request_id for e in events if e.token_id is not None] == ["1"]
    engine.abort("1")
    assert engine.blocks_in_use == 0
    assert engine.step() == [TokenEvent("1", None, True, "abort")]
    assert not engine.has_unfinished()


def test_continuous_admits_while_blocks_are_free_and_retires_at_once():
    engine = Engine(make_model(), num_blocks=8, block_size=4, max_batch=3)
    for i, p in enumerate(prompts(4, seed=10, lo=7, hi=8)):  # 7 tokens: 2 blocks each at admission
        engine.add_request(Request(str(i), p, max_tokens=2 if i == 0 else 6, temperature=0))
    engine.step()
    assert (engine.num_running, engine.num_waiting, engine.blocks_in_use) == (3, 1, 6)  # the batch is full
    engine.step()  # request 0 finishes and its blocks return at once
    assert (engine.num_running, engine.blocks_in_use) == (2, 4)
    engine.step()  # two new blocks for positions 8, then request 3 is admitted with the last two
    assert (engine.num_running, engine.num_waiting, engine.blocks_in_use) == (3, 0, 8)
    assert engine.num_preemptions == 0


def test_static_batching_pads_to_the_longest_and_admits_nothing_meanwhile():
    model = make_model()
    engine = Engine(model, num_blocks=64, block_size=8, max_batch=2, policy="static")
    ps = prompts(3, seed=11)
    lengths = [2, 10, 3]
    for i, (p, n) in enumerate(zip(ps, lengths, strict=True)):
        engine.add_request(Request(str(i), p, max_tokens=n, temperature=0))
    engine.step()
    per_seq = blocks_needed(model.config.block_size, 8)
    assert engine.blocks_in_use == 2 * per_seq  # reserved for the maximum length
    steps = 1
    while engine.num_waiting == 1:
        engine.step()
        steps += 1
    assert steps == 11  # request 2 waited for the longest member of the first batch
    assert engine.padded_rows == 10 - 2
    out, _ = run(engine)
    assert out["2"] == greedy(model, ps[2], 3)[1:]  # its first token came in step 11


def test_static_output_equals_greedy():
    model = make_model("rope_gqa")
    engine = Engine(model, num_blocks=64, block_size=4, max_batch=3, policy="static")
    ps = prompts(5, seed=12)
    for i, p in enumerate(ps):
        engine.add_request(Request(str(i), p, max_tokens=3 + 2 * i, temperature=0))
    out, _ = run(engine)
    for i, p in enumerate(ps):
        assert out[str(i)] == greedy(model, p, 3 + 2 * i)
    assert engine.blocks_in_use == 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(request_id="", prompt_ids=[1], max_tokens=1), "request_id"),
        (dict(request_id="a", prompt_ids=[], max_tokens=1), "prompt_ids"),
        (dict(request_id="a", prompt_ids=[1, 99], max_tokens=1), r"prompt_ids must hold ints in \[0, 23\)"),
        (dict(request_id="a", prompt_ids=[1], max_tokens=0), "max_tokens=0"),
        (dict(request_id="a", prompt_ids=[1] * 30, max_tokens=3), "max_context=32"),
        (dict(request_id="a", prompt_ids=[1], max_tokens=2, temperature=-1.0), "temperature=-1.0"),
        (dict(request_id="a", prompt_ids=[1], max_tokens=2, seed=1.5), "seed=1.5"),
    ],
)
def test_bad_requests_name_the_field(kwargs, match):
    engine = Engine(make_model(), num_blocks=10, block_size=4)
    with pytest.raises(ValueError, match=match):
        engine.add_request(Request(**kwargs))


def test_engine_errors():
    model = make_model()
    small = Engine(model, num_blocks=2, block_size=4)
    with pytest.raises(ValueError, match="needs 3 blocks of 4 positions but the engine has num_blocks=2"):
        small.add_request(Request("a", [1] * 5, max_tokens=6))
    small.add_request(Request("a", [1], max_tokens=2))
    with pytest.raises(ValueError, match="request_id='a' is already in the engine"):
        small.add_request(Request("a", [1], max_tokens=2))
    with pytest.raises(ValueError, match="policy='greedy' must be one of"):
        Engine(model, num_blocks=4, policy="greedy")
    with pytest.raises(ValueError, match="block_size=0"):
        Engine(model, num_blocks=4, block_size=0)
    with pytest.raises(ValueError, match="sliding_window"):
        Engine(
            GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, d_model=8, sliding_window=4)),
            num_blocks=4,
        )
    with pytest.raises(ValueError, match="needs a shared.model.GPT"):
        Engine(torch.nn.Linear(2, 2), num_blocks=4)


def test_importing_the_package_is_light():
    code = "import shared.serving.engine, sys; print('fastapi' in sys.modules, 'uvicorn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent, timeout=120).stdout  # cwd: this shared/
    assert out.split() == ["False", "False"]
