"""Checks for project 18 (the serving engine): one check per TODO of ``18_serving_engine/solution.ipynb``.

References the checks compare against:

* the block allocator and copy-on-write forks: the rules of Kwon et al. 2023 (vLLM, §4.2–4.4), replayed on
  small scripted scenarios (:class:`shared.serving.engine.BlockAllocator` is the engine's version);
* paged attention: contiguous attention (``F.scaled_dot_product_attention``) over the same keys and values
  laid out in order, on scattered block tables with padding, grouped KV heads and lengths that end inside a
  block, on a block boundary and after one key;
* the two schedulers: :func:`reference_continuous_step` and :func:`reference_static_step` below (Yu et al.
  2022, Orca, §3.1; Kwon et al. 2023, §4.5), replayed side by side with the learner's on scripted queues and
  on random workloads, step by step;
* the request handler: :func:`shared.serving.requests.parse_completion_request` (the server's own), on a table
  of good and bad bodies: the same status and field named for every bad one, the same request for good ones.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from shared.checks import CheckFailed, call, fmt, learner_check, within
from shared.checks.compare import diagnose, gen, mismatch
from shared.serving.engine import OutOfBlocks, blocks_needed

__all__ = [
    "reference_continuous_step",
    "reference_static_step",
    "completion_cases",
    "check_allocator",
    "check_paged_attention",
    "check_copy_on_write",
    "check_continuous_step",
    "check_static_step",
    "check_parse_completion_request",
]


def _fail(what: str, expected: Any, got: Any, hint: str) -> CheckFailed:
    return CheckFailed(f"{what}\n   expected: {fmt(expected)}\n   got:      {fmt(got)}\n   hint: {hint}")


def _hint(what: str, hint: str) -> CheckFailed:
    return CheckFailed(f"{what}\n   hint: {hint}")


# --------------------------------------------------------------------------------------------- TODO 1


def _expect_double_free(release: Callable, b1: int, free: list, refs: list) -> None:
    try:
        release(b1, free, refs)
    except ValueError:
        pass
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001 - any other exception is the wrong answer
        raise _hint(
            f"a double free raised {type(err).__name__}, not ValueError",
            "check refs[block] < 1 first and raise ValueError('... double free')",
        ) from None
    else:
        raise _fail(
            "releasing a block that is already free was accepted",
            "ValueError",
            f"free list {free}, refs {refs}",
            "a double free would hand one block to two sequences: raise ValueError when refs[block] "
            "is already 0",
        )


def _expect_out_of_blocks(allocate: Callable, free: list, refs: list) -> None:
    try:
        allocate(free, refs)
    except OutOfBlocks:
        pass
    except (NotImplementedError, CheckFailed):
        raise
    except Exception as err:  # noqa: BLE001
        raise _hint(
            f"allocate on an empty free list raised {type(err).__name__}: {err}",
            "test `if not free:` first and raise OutOfBlocks(...), a clear error the scheduler "
            "can catch (it preempts a sequence then)",
        ) from None
    else:
        raise _hint(
            "allocate on an empty free list returned instead of raising OutOfBlocks",
            "raise OutOfBlocks when the free list is empty",
        )


@learner_check(1, "allocate / release")
def check_allocator(allocate: Callable, release: Callable) -> str:
    """Scripted: hand out blocks, share one, release it twice, exhaust the list, double-free."""
    free, refs = [3, 2, 1, 0], [0, 0, 0, 0]
    b = call(allocate, free, refs)
    if b != 0:
        raise _fail(
            "allocate([3, 2, 1, 0], refs) returned the wrong block",
            0,
            b,
            "pop from the END of the free list (free.pop()): the last id is handed out first",
        )
    if free != [3, 2, 1]:
        raise _fail(
            "after allocate the free list is wrong",
            [3, 2, 1],
            free,
            "allocate must remove the block from the free list (pop it)",
        )
    if refs[0] != 1:
        raise _fail(
            "after allocate, the block's reference count is wrong",
            1,
            refs[0],
            "a freshly allocated block has exactly one owner: set its ref count 1",
        )
    b1 = call(allocate, free, refs)
    refs[b1] += 1  # a fork shares block 1
    call(release, b1, free, refs)
    if b1 in free or refs[b1] != 1:
        raise _fail(
            "release of a shared block (ref count 2) gave it back too early",
            "refs 1, not in the free list",
            f"refs {refs[b1]}, in free list: {b1 in free}",
            "a block still shared by another sequence must not return to the free list: decrement "
            "its count and append it only when the count reaches 0",
        )
    call(release, b1, free, refs)
    if sorted(free) == [1, 2, 3] and free != [3, 2, 1] and refs[b1] == 0:
        raise _fail(
            "release put the block in the wrong place of the free list",
            [3, 2, 1],
            free,
            "append the freed block to the END of the free list: the block freed last is reused first",
        )
    if free != [3, 2, 1] or refs[b1] != 0:
        raise _fail(
            "release of the last reference did not return the block",
            ([3, 2, 1], 0),
            (free, refs[b1]),
            "the block never returns to the free list: decrement the count and append the block to "
            "the free list when it reaches 0",
        )
    _expect_double_free(release, b1, free, refs)
    got = [call(allocate, free, refs) for _ in range(3)]
    if got != [1, 2, 3]:
        raise _fail(
            "allocating the three free blocks",
            [1, 2, 3],
            got,
            "pop from the END of the free list: the block freed last is reused first",
        )
    _expect_out_of_blocks(allocate, free, refs)
    return "LIFO free list, ref counts, shared blocks kept, double free and exhaustion refused"


# --------------------------------------------------------------------------------------------- TODO 2


def _contiguous_attention(
    q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, tables: list[list[int]], lens: list[int]
) -> torch.Tensor:
    """The same attention with each sequence's keys laid out contiguously: (B, nh, hs)."""
    nh, nkv = q.size(1), k_pool.size(1)
    out = []
    for b, (table, L) in enumerate(zip(tables, lens, strict=True)):
        k = torch.cat([k_pool[i] for i in table], dim=1)[:, :L]  # (nkv, L, hs)
        v = torch.cat([v_pool[i] for i in table], dim=1)[:, :L]
        k, v = k.repeat_interleave(nh // nkv, 0), v.repeat_interleave(nh // nkv, 0)  # (nh, L, hs)
        out.append(F.scaled_dot_product_attention(q[b][:, None], k, v)[:, 0])  # (nh, hs)
    return torch.stack(out)


def _attention_variants(q, k_pool, v_pool, tables, lens, padded) -> list[tuple[torch.Tensor, str]]:
    """Known bugs: what each gives on the check's input, with its hint."""
    nh, hs, nkv = q.size(1), q.size(2), k_pool.size(1)
    lens_t = torch.tensor(lens)
    S = padded.size(1) * k_pool.size(2)
    variants = []
    padded_lens = [S] * len(lens)
    variants.append(
        (
            _manual(q, k_pool, v_pool, padded, torch.tensor(padded_lens)),
            "the padding slots are attended to: mask key slots j >= context_lens[b] with -inf "
            "before the softmax",
        )
    )
    variants.append(
        (
            _manual(q, k_pool, v_pool, padded, lens_t + 1),
            "off by one in the mask: keep slots j < context_lens[b] (the keys 0 … len - 1)",
        )
    )
    variants.append(
        (
            _manual(q, k_pool, v_pool, padded, lens_t - 1),
            "off by one in the mask: keep slots j < context_lens[b] (the keys 0 … len - 1)",
        )
    )
    variants.append(
        (
            _manual(q, k_pool, v_pool, padded, lens_t, scale=1.0),
            "missing scale: divide the scores by sqrt(hs)",
        )
    )
    variants.append(
        (
            _manual(q, k_pool, v_pool, padded, lens_t, scale=1.0 / hs),
            "wrong scale: divide by sqrt(hs), not hs",
        )
    )
    variants.append(
        (
            _manual(q, k_pool, v_pool, padded, lens_t, layout="no_permute"),
            "the blocks were merged in the wrong order: k_pool[block_tables] is (B, nb, nkv, bs, "
            "hs); permute to (B, nkv, nb, bs, hs) before reshaping to (B, nkv, nb·bs, hs)",
        )
    )
    if nkv != nh:
        variants.append(
            (
                _manual(q, k_pool, v_pool, padded, lens_t, repeat="tile"),
                "KV heads repeated in the wrong order: query head h reads KV head h // (nh / nkv); "
                "use repeat_interleave, not repeat",
            )
        )
    ordered = torch.arange(padded.size(1)).expand_as(padded)  # every sequence reads blocks 0, 1, ...
    variants.append(
        (
            _manual(q, k_pool, v_pool, ordered, lens_t),
            "the block table was ignored: gather k_pool[block_tables], the blocks the sequence "
            "owns, not the first blocks of the pool",
        )
    )
    return variants


def _manual(q, k_pool, v_pool, tables, lens, scale=None, layout="permute", repeat="interleave"):
    B, nh, hs = q.shape
    nkv, bs = k_pool.size(1), k_pool.size(2)
    nb = tables.size(1)
    if layout == "permute":
        k = k_pool[tables].permute(0, 2, 1, 3, 4).reshape(B, nkv, nb * bs, hs)
        v = v_pool[tables].permute(0, 2, 1, 3, 4).reshape(B, nkv, nb * bs, hs)
    else:
        k = k_pool[tables].reshape(B, nkv, nb * bs, hs)
        v = v_pool[tables].reshape(B, nkv, nb * bs, hs)
    if repeat == "interleave":
        k, v = k.repeat_interleave(nh // nkv, 1), v.repeat_interleave(nh // nkv, 1)
    else:
        k, v = k.repeat(1, nh // nkv, 1, 1), v.repeat(1, nh // nkv, 1, 1)
    s = (q[:, :, None] @ k.transpose(-2, -1))[:, :, 0] * (1 / math.sqrt(hs) if scale is None else scale)
    valid = torch.arange(nb * bs)[None] < lens[:, None]
    s = s.masked_fill(~valid[:, None], float("-inf"))
    return (torch.softmax(s, -1)[:, :, None] @ v)[:, :, 0]


@learner_check(2, "paged_attention")
def check_paged_attention(paged_attention: Callable) -> str:
    """Against contiguous attention on scattered block tables, with GQA, MQA and multi-head attention."""
    cases = [  # (nh, nkv, bs, tables, lengths)
        (4, 2, 4, [[7, 2], [4], [0, 9, 3]], [5, 1, 11]),
        (4, 4, 3, [[5, 1, 8], [2, 6]], [9, 4]),
        (2, 1, 8, [[3]], [8]),
    ]
    worst = 0.0
    for i, (nh, nkv, bs, tables, lens) in enumerate(cases):
        g = gen(20 + i)
        hs, num_blocks = 8, 10
        k_pool = torch.randn(num_blocks, nkv, bs, hs, generator=g)
        v_pool = torch.randn(num_blocks, nkv, bs, hs, generator=g)
        q = torch.randn(len(tables), nh, hs, generator=g)
        nb = max(map(len, tables))
        padded = torch.tensor([t + [0] * (nb - len(t)) for t in tables])
        want = _contiguous_attention(q, k_pool, v_pool, tables, lens)
        k_before, v_before = k_pool.clone(), v_pool.clone()
        got = call(paged_attention, q, k_pool, v_pool, padded, torch.tensor(lens))
        if not (torch.equal(k_pool, k_before) and torch.equal(v_pool, v_before)):
            raise _hint("paged_attention changed the K/V pools", "read the pools; never write into them")
        why = mismatch(got, want)
        if why is not None:
            hint = "compare with the Rule in the docstring"
            if isinstance(got, torch.Tensor) and got.shape == want.shape:
                hint = diagnose(
                    got,
                    _attention_variants(q, k_pool, v_pool, tables, lens, padded),
                    "gather k_pool[block_tables] -> (B, nkv, nb·bs, hs), repeat_interleave the KV "
                    "heads, scores / sqrt(hs), -inf at slots >= context_lens, softmax over the "
                    "keys (dim=-1)",
                )
            raise _fail(
                f"paged attention differs from contiguous attention ({why}); case: nh={nh}, nkv={nkv}, "
                f"block_size={bs}, tables={tables}, lengths={lens}",
                want,
                got,
                hint,
            )
        worst = max(worst, float((got - want).abs().max()))
    return (
        f"equals contiguous attention on 3 layouts (GQA, MHA, MQA; lengths inside and at the end of a "
        f"block), {within(worst, 1e-5)}"
    )


# --------------------------------------------------------------------------------------------- TODO 3


def _pools(num_blocks: int, seed: int) -> list[torch.Tensor]:
    g = gen(seed)
    return [torch.randn(num_blocks, 2, 4, 3, generator=g) for _ in range(4)]  # 2 layers x (K, V)


@learner_check(3, "fork / prepare_write")
def check_copy_on_write(fork: Callable, prepare_write: Callable) -> str:
    """Scripted: fork a sequence of 10 positions (block size 4), then write position 10 in both."""
    bs = 4
    free = [7, 6, 5, 4, 3]
    refs = [2, 1, 1, 0, 0, 0, 0, 0]  # block 0 is already shared with another sequence (an earlier fork)
    parent = [0, 1, 2]  # positions 0..9: two full blocks and a half-full one
    pools = _pools(8, seed=30)
    before = [p.clone() for p in pools]
    child = call(fork, parent, refs)
    if child is parent:
        raise _hint(
            "fork returned the parent's own list",
            "return a copy of the table (list(table)): the child's later appends must not change "
            "the parent's table",
        )
    if child != [0, 1, 2] or parent != [0, 1, 2]:
        raise _fail(
            "fork must give the child the parent's block ids",
            [0, 1, 2],
            child,
            "the child shares the parent's blocks: the same ids, in the same order",
        )
    if refs[:3] != [3, 2, 2]:
        hint = "share every block: refs[block] += 1 for each block of the table"
        if refs[:3] == [2, 2, 2]:
            hint = ("block 0 was already shared (count 2) and must go to 3: add one reference "
                    "(refs[block] += 1), do not set the count to 2")
        raise _fail(
            "after fork the shared blocks' reference counts are wrong (block 0 started at 2)",
            [3, 2, 2],
            refs[:3],
            hint,
        )
    if free != [7, 6, 5, 4, 3]:
        raise _fail(
            "fork allocated blocks",
            [7, 6, 5, 4, 3],
            free,
            "fork copies nothing: it only shares (the copy happens on the first write)",
        )
    # the child writes position 10 first: block 2 is shared -> copy-on-write
    call(prepare_write, child, 10, bs, free, refs, pools)
    if child[2] == 2:
        raise _fail(
            "writing position 10 of the child into the shared block 2 did not copy it",
            "a new block in child[2]",
            child,
            "copy-on-write: when refs[table[i]] > 1, allocate a new block, copy, and put it in the "
            "table (only when shared)",
        )
    new = child[2]
    if child[:2] != [0, 1] or parent != [0, 1, 2]:
        raise _fail(
            "copy-on-write must replace only the block being written, in the child only",
            ([0, 1, new], [0, 1, 2]),
            (child, parent),
            "i = pos // block_size is the block written; the full blocks stay shared; the parent's "
            "table is not touched",
        )
    if refs[2] != 1 or refs[new] != 1:
        raise _fail(
            "after copy-on-write the reference counts are wrong",
            (1, 1),
            (refs[2], refs[new]),
            "release the old block (its count drops to 1: the parent alone holds it) and the new "
            "one has one owner",
        )
    for i, (p, b) in enumerate(zip(pools, before, strict=True)):
        if not torch.equal(p[2], b[2]):
            raise _hint(
                f"the old block's contents changed in pool {i}",
                "copy from the old block into the new one (pool[new] = pool[old]); never write into "
                "the old block, the parent still reads it",
            )
        if not torch.equal(p[new], b[2]):
            which = "every pool" if torch.equal(pools[0][new], before[0][2]) else "each pool"
            raise _fail(
                f"the new block does not hold a copy of block 2 in pool {i}",
                "block 2's values",
                "something else",
                f"copy the contents of the old block into the new one in {which}: "
                "pool[new] = pool[old] for every K and V pool of every layer",
            )
    # the parent writes position 10 now: block 2 is its own -> no copy
    free_before = list(free)
    call(prepare_write, parent, 10, bs, free, refs, pools)
    if parent != [0, 1, 2] or free != free_before:
        raise _fail(
            "writing into a block the sequence owns alone copied it",
            [0, 1, 2],
            parent,
            "copy only when shared (refs > 1); a block with one owner is written in place",
        )
    # position 12 starts a new block
    call(prepare_write, parent, 12, bs, free, refs, pools)
    if len(parent) != 4 or refs[parent[3]] != 1 or parent[3] in free:
        raise _fail(
            "writing position 12 (a block boundary) must append a fresh block",
            "4 blocks",
            parent,
            "i = pos // block_size == len(table): append allocate(free, refs)",
        )
    call(prepare_write, parent, 13, bs, free, refs, pools)
    if len(parent) != 4:
        raise _fail(
            "writing position 13 (inside the last block) must not add a block",
            4,
            len(parent),
            "i = pos // block_size: position 13 is in block 3, which the table already has",
        )
    return "fork shares every block (counts 2), first write copies only the shared block, in every pool"


# --------------------------------------------------------------------------------------------- TODO 4, 5


def reference_continuous_step(waiting: deque, running: list, free: int, max_batch: int, block_size: int):
    """The rule of the notebook's ``continuous_step`` (grow with preemption, admit, decode, retire)."""
    preempted = []
    for seq in list(running):
        while seq in running and seq["blocks"] < blocks_needed(seq["tokens"], block_size):
            if free > 0:
                seq["blocks"] += 1
                free -= 1
            else:
                victim = running.pop()
                free += victim["blocks"]
                victim["blocks"] = 0
                waiting.appendleft(victim)
                preempted.append(victim)
    while not preempted and waiting and len(running) < max_batch:
        need = blocks_needed(waiting[0]["tokens"], block_size)
        if need > free:
            break
        seq = waiting.popleft()
        seq["blocks"] = need
        free -= need
        running.append(seq)
    for seq in running:
        seq["tokens"] += 1
        seq["left"] -= 1
    finished = [seq for seq in running if seq["left"] == 0]
    for seq in finished:
        running.remove(seq)
        free += seq["blocks"]
        seq["blocks"] = 0
    return free, finished, preempted


def reference_static_step(
    waiting: deque, running: list, free: int, max_batch: int, block_size: int, max_context: int
):
    """The rule of the notebook's ``static_step`` (whole batches, max-length reservation, padding)."""
    if not running:
        reserve = blocks_needed(max_context, block_size)
        while waiting and len(running) < max_batch and free >= reserve:
            seq = waiting.popleft()
            seq["blocks"] = reserve
            free -= reserve
            running.append(seq)
    padded, finished = 0, []
    for seq in running:
        if seq["left"] == 0:
            padded += 1
            continue
        seq["tokens"] += 1
        seq["left"] -= 1
        if seq["left"] == 0:
            finished.append(seq)
    if running and all(seq["left"] == 0 for seq in running):
        for seq in running:
            free += seq["blocks"]
            seq["blocks"] = 0
        running.clear()
    return free, finished, padded


def _seqs(specs: list[tuple], step: int | None = 0) -> deque:
    """The sequences of specs (tokens, left[, arrival step]) that arrive at ``step`` (all when None)."""
    return deque(
        {"id": f"r{i}", "tokens": sp[0], "left": sp[1], "blocks": 0}
        for i, sp in enumerate(specs)
        if step is None or (sp[2] if len(sp) > 2 else 0) == step
    )


def _snapshot(waiting, running, result) -> tuple:
    ids = lambda seqs: [s["id"] for s in seqs]  # noqa: E731
    state = lambda seqs: [(s["id"], s["tokens"], s["left"], s["blocks"]) for s in seqs]  # noqa: E731
    if not (isinstance(result, tuple) and len(result) == 3):
        return ("bad result", fmt(result, 80))
    free, a, b = result
    b = ids(b) if isinstance(b, list) else b
    return (free, ids(a) if isinstance(a, list) else a, b, state(waiting), state(running))


def _replay(step: Callable, ref: Callable, specs, args: tuple, max_steps: int = 400):
    """Run the learner's step and the reference side by side; the first differing step, or None."""
    w1, w2 = _seqs(specs), _seqs(specs)
    r1: list = []
    r2: list = []
    f1 = f2 = args[0]
    last_arrival = max((sp[2] if len(sp) > 2 else 0) for sp in specs)
    for t in range(max_steps):
        if t > 0:
            w1.extend(_seqs(specs, t))
            w2.extend(_seqs(specs, t))
        if not (w2 or r2) and t >= last_arrival:
            return None
        before = (copy.deepcopy(list(w2)), copy.deepcopy(r2), f2)
        got = call(step, w1, r1, f1, *args[1:])
        want = ref(w2, r2, f2, *args[1:])
        g, e = _snapshot(w1, r1, got), _snapshot(w2, r2, want)
        if g != e:
            return t, before, e, g
        f1, f2 = got[0], want[0]
    return None


def _count_steps(ref: Callable, specs, args: tuple) -> int:
    """Steps the reference takes to serve specs (with their arrivals)."""
    w, r, f = _seqs(specs), [], args[0]
    last_arrival = max((sp[2] if len(sp) > 2 else 0) for sp in specs)
    for t in range(400):
        if t > 0:
            w.extend(_seqs(specs, t))
        if not (w or r) and t >= last_arrival:
            return t
        f = ref(w, r, f, *args[1:])[0]
    return 400


_FIELDS = "(free, finished ids, {} , waiting [(id, tokens, left, blocks)], running [...])"


def _step_hint(before, want, got, kind: str) -> str:
    """Name the likely bug from the first step where the learner's scheduler differs."""
    w_before, r_before, free_before = before
    if not isinstance(got, tuple) or len(got) != 5:
        return f"return a tuple (free, finished, {'preempted' if kind == 'continuous' else 'padded'})"
    free_g, fin_g, third_g, wait_g, run_g = got
    free_e, fin_e, third_e, wait_e, run_e = want
    run_ids_g, run_ids_e = [s[0] for s in run_g], [s[0] for s in run_e]
    wait_ids_g, wait_ids_e = [s[0] for s in wait_g], [s[0] for s in wait_e]
    before_wait = [s["id"] for s in w_before]
    admitted = [i for i in run_ids_g if i in before_wait]
    if admitted:
        last = max(before_wait.index(i) for i in admitted)
        if any(i not in run_ids_g for i in before_wait[:last]):
            return (
                "first come, first served: stop admitting at the first waiting sequence that does not "
                "fit (break), do not skip ahead to a smaller one"
            )
    if kind == "continuous":
        if third_e and third_g != third_e:
            if third_g and set(third_g) != set(third_e):
                return "preempt the LATEST admitted sequence (running[-1]), not the oldest"
            if not third_g:
                return "when a running sequence needs a block and none is free, preempt running[-1]"
        if third_e and set(wait_ids_g) == set(wait_ids_e) and wait_ids_g != wait_ids_e:
            return "a preempted sequence goes to the FRONT of the queue (waiting.appendleft), to resume first"
    if len(run_ids_g) > len(run_ids_e) and len(run_ids_g) > _MAX_BATCH_SEEN[0]:
        return "the batch grew beyond max_batch: admit only while len(running) < max_batch"
    if fin_g != fin_e:
        return (
            "a sequence whose left reaches 0 finishes in this very step (retire at once); decode every "
            "running sequence: tokens + 1, left - 1"
        )
    if free_g != free_e:
        if free_g < free_e:
            return (
                "blocks are not given back: a finished (or preempted) sequence returns all its blocks "
                "(free += blocks, blocks = 0)"
            )
        return "a sequence needs blocks_needed(tokens, block_size) = ceil(tokens / block_size) blocks"
    if run_g != run_e or wait_g != wait_e:
        return "compare the queues step by step with the Rule in the docstring"
    return "compare with the Rule in the docstring"


_MAX_BATCH_SEEN = [0]


def _random_specs(seed: int, n: int, max_context: int) -> list[tuple[int, int]]:
    """n (prompt tokens, max new tokens) with prompt + max new <= max_context."""
    g = gen(seed)
    specs = []
    for _ in range(n):
        p = int(torch.randint(1, 20, (1,), generator=g))
        m = int(torch.randint(1, max_context - p, (1,), generator=g))
        specs.append((p, m))
    return specs


_CONTINUOUS_CASES = [  # (name, specs (prompt tokens, max new), free, max_batch, block_size)
    ("a batch bound of 2", [(3, 4), (5, 2), (2, 6)], 40, 2, 4),
    ("admission limited by blocks, first come first served", [(9, 3), (9, 3), (1, 2), (4, 3)], 5, 8, 4),
    ("preemption when blocks run out", [(7, 12), (7, 12), (7, 12)], 8, 8, 4),
    ("a retire at once frees blocks for the queue", [(4, 1), (4, 9), (8, 3)], 3, 8, 4),
    ("requests arriving while others run", [(5, 6), (3, 2, 1), (9, 4, 2), (2, 3, 2)], 9, 3, 4),
    ("random workload (block size 3)", _random_specs(41, 14, 64), 24, 6, 3),
    ("random workload, tight memory", _random_specs(42, 12, 14 * 4), 14, 8, 4),
]


def _queues_before(before) -> str:
    """The scheduler's state before a step, as a failed check shows it."""
    waiting, running, free = before
    def rows(queue):
        return [(s["id"], s["tokens"], s["left"], s["blocks"]) for s in queue]
    return f"queues before it: waiting {rows(waiting)}, running {rows(running)}, free {free}"


@learner_check(4, "continuous_step")
def check_continuous_step(continuous_step: Callable) -> str:
    """Replay scripted and random workloads side by side with the reference, step by step."""
    steps = 0
    for name, specs, free, max_batch, bs in _CONTINUOUS_CASES:
        _MAX_BATCH_SEEN[0] = max_batch
        diff = _replay(continuous_step, reference_continuous_step, specs, (free, max_batch, bs))
        if diff is not None:
            t, before, want, got = diff
            raise _fail(
                f"{name}: step {t} differs ({_queues_before(before)}); shown: "
                + _FIELDS.format("preempted ids"),
                want,
                got,
                _step_hint(before, want, got, "continuous"),
            )
        steps += _count_steps(reference_continuous_step, specs, (free, max_batch, bs))
    return (f"same queues, blocks and events as the reference in all {steps} steps of "
            f"{len(_CONTINUOUS_CASES)} workloads")


_STATIC_CASES = [  # (name, specs, free, max_batch, block_size, max_context)
    ("a batch padded to its longest member", [(3, 2), (5, 10), (2, 3)], 64, 2, 4, 32),
    ("batch size bounded by max-length memory", [(2, 3), (2, 5), (2, 2), (2, 4)], 20, 8, 4, 32),
    ("free blocks exactly three reservations", [(2, 3), (2, 5), (2, 2), (2, 4)], 24, 8, 4, 32),
    ("a request arriving while a batch runs", [(3, 6), (2, 2, 2), (4, 3, 3)], 64, 4, 4, 32),
    ("random workload", _random_specs(51, 10, 64), 64, 4, 8, 64),
]


def _static_hint(before, want, got) -> str:
    w_before, r_before, free_before = before
    if not isinstance(got, tuple) or len(got) != 5:
        return "return a tuple (free, finished, padded)"
    free_g, fin_g, pad_g, wait_g, run_g = got
    free_e, fin_e, pad_e, wait_e, run_e = want
    if r_before and len(run_g) > len(run_e) and len(wait_g) < len(wait_e):
        return "nothing joins a batch that is running: form a new batch only when running is empty"
    if len(run_g) > len(run_e) and len(wait_g) < len(wait_e):
        return (
            "reserve blocks_needed(max_context, block_size) for every member (memory for the maximum "
            "length) and admit only while that many blocks are free and len(running) < max_batch"
        )
    if len(run_g) < len(run_e) and not r_before and not run_e == []:
        return ("form the batch from the front of the queue while len(running) < max_batch and free >= "
                "blocks_needed(max_context, block_size) (a reservation that fits exactly still fits)")
    if pad_g != pad_e:
        return (
            "padded = the members with left == 0 before decoding: they are computed anyway "
            "(pad to the longest)"
        )
    if fin_g != fin_e:
        return "report a member in finished in the step its left reaches 0; a done member gains no tokens"
    if len(run_g) != len(run_e):
        return (
            "keep finished members in the batch until every member is done (pad to the longest), then "
            "release the whole batch"
        )
    if free_g != free_e or [s[3] for s in run_g] != [s[3] for s in run_e]:
        return (
            "reserve blocks_needed(max_context, block_size) for every member (memory for the maximum "
            "length) and give all blocks back when the whole batch is done"
        )
    return "compare with the Rule in the docstring"


@learner_check(5, "static_step")
def check_static_step(static_step: Callable) -> str:
    """Replay scripted and random workloads side by side with the reference, step by step."""
    steps = 0
    for name, specs, free, max_batch, bs, ctx in _STATIC_CASES:
        diff = _replay(static_step, reference_static_step, specs, (free, max_batch, bs, ctx))
        if diff is not None:
            t, before, want, got = diff
            raise _fail(
                f"{name}: step {t} differs ({_queues_before(before)}); shown: "
                + _FIELDS.format("padded rows"),
                want,
                got,
                _static_hint(before, want, got),
            )
        steps += _count_steps(reference_static_step, specs, (free, max_batch, bs, ctx))
    return (f"same batches, padding and blocks as the reference in all {steps} steps of "
            f"{len(_STATIC_CASES)} workloads")


# --------------------------------------------------------------------------------------------- TODO 6

_NAN = float("nan")


def completion_cases() -> list[tuple[str, object, str | None]]:
    """(what, body, the field a 400 must name — or "ok"; None for an error about the whole body)."""
    long = "a" * 64
    return [
        ("a plain request", {"prompt": "ROMEO:", "max_tokens": 8, "temperature": 0}, "ok"),
        ("defaults", {"prompt": "To be"}, "ok"),
        ("defaults near the end of the context", {"prompt": "b" * 56}, "ok"),
        ("stream and seed", {"prompt": "KING:", "max_tokens": 3, "stream": True, "seed": 7}, "ok"),
        ("integer temperature 2", {"prompt": "x", "temperature": 2}, "ok"),
        ("n = 1 and a model name", {"prompt": "x", "n": 1, "model": "tiny"}, "ok"),
        ("the longest prompt", {"prompt": "c" * 63, "max_tokens": 1}, "ok"),
        ("null fields take their defaults", {"prompt": "x", "max_tokens": None, "temperature": None,
                                             "stream": None, "seed": None, "n": None}, "ok"),
        ("a list, not an object", ["prompt"], None),
        ("a string body", "prompt", None),
        ("no prompt", {"max_tokens": 4}, "prompt"),
        ("a prompt that is a number", {"prompt": 5}, "prompt"),
        ("an empty prompt", {"prompt": ""}, "prompt"),
        ("characters outside the vocabulary", {"prompt": "naïve ☃"}, "prompt"),
        ("a prompt as long as the context", {"prompt": long}, "prompt"),
        ("max_tokens a string", {"prompt": "x", "max_tokens": "8"}, "max_tokens"),
        ("max_tokens a float", {"prompt": "x", "max_tokens": 8.0}, "max_tokens"),
        ("max_tokens true", {"prompt": "x", "max_tokens": True}, "max_tokens"),
        ("max_tokens 0", {"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ("max_tokens negative", {"prompt": "x", "max_tokens": -3}, "max_tokens"),
        ("max_tokens beyond the limit", {"prompt": "x", "max_tokens": 49}, "max_tokens"),
        ("prompt + max_tokens beyond the context", {"prompt": "d" * 40, "max_tokens": 25}, "max_tokens"),
        ("temperature negative", {"prompt": "x", "temperature": -0.5}, "temperature"),
        ("temperature above 2", {"prompt": "x", "temperature": 2.5}, "temperature"),
        ("temperature a string", {"prompt": "x", "temperature": "hot"}, "temperature"),
        ("temperature NaN", {"prompt": "x", "temperature": _NAN}, "temperature"),
        ("temperature true", {"prompt": "x", "temperature": True}, "temperature"),
        ("stream a string", {"prompt": "x", "stream": "yes"}, "stream"),
        ("stream 1", {"prompt": "x", "stream": 1}, "stream"),
        ("seed negative", {"prompt": "x", "seed": -1}, "seed"),
        ("seed a float", {"prompt": "x", "seed": 1.5}, "seed"),
        ("seed 2**63", {"prompt": "x", "seed": 2**63}, "seed"),
        ("n = 2", {"prompt": "x", "n": 2}, "n"),
    ]


#: the server's limits in the check's table: the corpus model's context, and a cap on max_tokens
CASE_CONTEXT, CASE_LIMIT = 64, 48


def _case_hint(what: str, param: str | None) -> str:
    hints = {
        None: "the body must be a JSON object (a dict): anything else is RequestError(400, ..., None)",
        "prompt": "prompt must be a non-empty str of known characters, shorter than max_context",
        "max_tokens": (
            "max_tokens must be an int (not a bool or a float) with 1 <= max_tokens <= "
            "max_tokens_limit and len(prompt) + max_tokens <= max_context"
        ),
        "temperature": "temperature must be a real number (not a bool), finite, in [0, 2]",
        "stream": "stream must be a bool (True / False), not a string or a number",
        "seed": "seed must be an int in [0, 2**63), or absent",
        "n": "only n = 1 is supported: refuse any other value with param 'n'",
    }
    return hints.get(param, "compare with the Rule in the docstring")


@learner_check(6, "parse_completion_request")
def check_parse_completion_request(parse_completion_request: Callable, tokenizer: Any = None) -> str:
    """Every case of :func:`completion_cases` against the server's own handler."""
    from shared.pretrained import base_tokenizer
    from shared.serving.requests import RequestError
    from shared.serving.requests import parse_completion_request as reference

    tok = tokenizer if tokenizer is not None else base_tokenizer()
    n_ok = n_bad = 0
    for what, body, expect in completion_cases():
        want_req, want_stream = (
            reference(body, tok, CASE_CONTEXT, CASE_LIMIT) if expect == "ok" else (None, None)
        )
        try:
            got = parse_completion_request(copy.deepcopy(body), tok, CASE_CONTEXT, CASE_LIMIT)
        except RequestError as err:
            if expect == "ok":
                raise _fail(
                    f"{what}: {fmt(body, 120)} is a valid request but was refused",
                    "a Request",
                    f"RequestError({err.status}, {err.message!r}, param={err.param!r})",
                    _case_hint(what, err.param) + " — this body meets every rule",
                ) from None
            if err.status != 400 or err.param != expect:
                raise _fail(
                    f"{what}: {fmt(body, 120)} was refused with the wrong status or field",
                    f"status 400, param {expect!r}",
                    f"status {err.status}, param {err.param!r}",
                    "name the field that is wrong in param: " + _case_hint(what, expect),
                ) from None
            if not str(err.message).strip():
                raise _hint(
                    f"{what}: the error message is empty", "say what was wrong and what is allowed"
                ) from None
            n_bad += 1
            continue
        except (NotImplementedError, CheckFailed):
            raise
        except Exception as err:  # noqa: BLE001 - a crash is a wrong answer on this body
            raise _fail(
                f"{what}: {fmt(body, 120)} crashed the handler",
                f"RequestError(400, param={expect!r})" if expect != "ok" else "a Request",
                f"{type(err).__name__}: {err}",
                "every bad input must become a RequestError, never a crash (a 500): "
                + _case_hint(what, expect if expect != "ok" else "prompt"),
            ) from None
        if expect != "ok":
            raise _fail(
                f"{what}: {fmt(body, 120)} must be refused",
                f"RequestError(400, param={expect!r})",
                fmt(got, 120),
                _case_hint(what, expect),
            )
        ok = isinstance(got, tuple) and len(got) == 2
        req, stream = got if ok else (None, None)
        fields = lambda r: (r.prompt_ids, r.max_tokens, float(r.temperature), r.seed)  # noqa: E731
        if (
            not ok
            or not hasattr(req, "prompt_ids")
            or fields(req) != fields(want_req)
            or stream is not want_stream
        ):
            shown = (fields(req), stream) if ok and hasattr(req, "prompt_ids") else got
            raise _fail(
                f"{what}: {fmt(body, 120)} gave the wrong request",
                "(prompt_ids, max_tokens, temperature, seed), stream = "
                f"{fmt((fields(want_req), want_stream), 150)}",
                shown,
                "defaults: max_tokens = min(16, max_tokens_limit, max_context - len(prompt)), "
                "temperature 1.0, stream False, seed None; prompt_ids = tokenizer.encode(prompt)",
            )
        n_ok += 1
    return (
        f"{n_ok} valid bodies parsed as the server does, {n_bad} bad ones refused with 400 naming the field"
    )
