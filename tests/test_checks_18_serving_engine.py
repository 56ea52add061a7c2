"""Tests for shared/checks/serving_engine.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes. The
mistakes that are textual edits of the solution, and the correct variants each check must accept, are in
tests/catalogue/c18_serving_engine.py (run by tests/test_mutation_catalogue.py); the tests here cover the
references the checks rely on, and bugs that need more than an edit.
"""

from __future__ import annotations

import subprocess
import sys
from collections import deque

import pytest
import torch
from check_helpers import ROOT, fails, solution_loader, stub

from shared.checks import CheckFailed, TodoNotDone
from shared.checks.serving_engine import (
    _CONTINUOUS_CASES,
    _STATIC_CASES,
    CASE_CONTEXT,
    CASE_LIMIT,
    _contiguous_attention,
    _count_steps,
    _seqs,
    check_allocator,
    check_continuous_step,
    check_copy_on_write,
    check_paged_attention,
    check_parse_completion_request,
    check_static_step,
    completion_cases,
    reference_continuous_step,
    reference_static_step,
)
from shared.pretrained import base_tokenizer
from shared.serving.engine import BlockAllocator, OutOfBlocks, paged_attention
from shared.serving.requests import RequestError, parse_completion_request

solution = solution_loader("18_serving_engine")


def test_the_contiguous_reference_equals_the_engines_paged_attention():
    g = torch.Generator().manual_seed(0)
    k_pool, v_pool = torch.randn(10, 2, 4, 8, generator=g), torch.randn(10, 2, 4, 8, generator=g)
    q = torch.randn(2, 4, 8, generator=g)
    tables, lens = [[3, 7], [1, 0, 5]], [6, 9]
    padded = torch.tensor([[3, 7, 0], [1, 0, 5]])
    want = _contiguous_attention(q, k_pool, v_pool, tables, lens)
    torch.testing.assert_close(paged_attention(q, k_pool, v_pool, padded, torch.tensor(lens)), want)


def test_the_engines_allocator_passes_the_allocator_check(capsys):
    def allocate(free, refs):
        a = BlockAllocator(len(refs))
        a.free_list, a.ref_counts = free, refs
        return a.allocate()

    def release(block, free, refs):
        a = BlockAllocator(len(refs))
        a.free_list, a.ref_counts = free, refs
        a.free(block)

    check_allocator(allocate, release)
    assert capsys.readouterr().out.startswith("✅ TODO 1 ")


def test_reference_schedulers_serve_every_case_to_the_end():
    for _, specs, free, max_batch, bs in _CONTINUOUS_CASES:
        assert _count_steps(reference_continuous_step, specs, (free, max_batch, bs)) < 400
    for _, specs, free, max_batch, bs, ctx in _STATIC_CASES:
        assert _count_steps(reference_static_step, specs, (free, max_batch, bs, ctx)) < 400


def test_the_continuous_cases_exercise_preemption_admission_limits_and_arrivals():
    preempted = 0
    for _, specs, free, max_batch, bs in _CONTINUOUS_CASES:
        w, r, f = _seqs(specs), [], free
        for t in range(400):
            if t > 0:
                w.extend(_seqs(specs, t))
            if not (w or r) and t > 5:
                break
            f, _, p = reference_continuous_step(w, r, f, max_batch, bs)
            preempted += len(p)
            assert len(r) <= max_batch and f >= 0
    assert preempted > 0


def test_reference_continuous_step_by_hand():
    waiting = deque([{"id": "a", "tokens": 8, "left": 2, "blocks": 0}, {"id": "b", "tokens": 8, "left": 5,
                                                                       "blocks": 0}])
    running: list = []
    free, fin, pre = reference_continuous_step(waiting, running, 4, 8, 4)  # both admitted with 2 blocks
    assert (free, fin, pre, [s["id"] for s in running]) == (0, [], [], ["a", "b"])
    free, fin, pre = reference_continuous_step(waiting, running, free, 8, 4)  # a needs a block: b preempted
    assert [s["id"] for s in pre] == ["b"] and [s["id"] for s in waiting] == ["b"]
    assert [s["id"] for s in fin] == ["a"] and free == 4  # a finished at once; all its blocks came back
    assert waiting[0]["tokens"] == 9 and waiting[0]["blocks"] == 0  # b keeps its tokens for recomputation


def test_reference_static_step_pads_and_holds_the_batch():
    waiting = deque([{"id": "a", "tokens": 2, "left": 1, "blocks": 0}, {"id": "b", "tokens": 2, "left": 3,
                                                                       "blocks": 0}])
    running: list = []
    free, fin, pad = reference_static_step(waiting, running, 40, 4, 4, 32)
    assert free == 40 - 16 and [s["id"] for s in fin] == ["a"] and pad == 0
    free, fin, pad = reference_static_step(waiting, running, free, 4, 4, 32)
    assert pad == 1 and len(running) == 2
    free, fin, pad = reference_static_step(waiting, running, free, 4, 4, 32)
    assert [s["id"] for s in fin] == ["b"] and running == [] and free == 40


def test_completion_cases_agree_with_the_servers_handler():
    tok = base_tokenizer()
    for what, body, expect in completion_cases():
        if expect == "ok":
            req, stream = parse_completion_request(body, tok, CASE_CONTEXT, CASE_LIMIT)
            assert req.max_tokens >= 1, what
        else:
            with pytest.raises(RequestError) as info:
                parse_completion_request(body, tok, CASE_CONTEXT, CASE_LIMIT)
            assert (info.value.status, info.value.param) == (400, expect), what


def test_checks_pass_on_the_solution_and_say_not_done_on_stubs(capsys):
    fns = solution("allocate", "release", "paged_attention", "fork", "prepare_write", "continuous_step",
                   "static_step", "parse_completion_request")
    check_allocator(fns["allocate"], fns["release"])
    check_paged_attention(fns["paged_attention"])
    check_copy_on_write(fns["fork"], fns["prepare_write"])
    check_continuous_step(fns["continuous_step"])
    check_static_step(fns["static_step"])
    check_parse_completion_request(fns["parse_completion_request"])
    out = capsys.readouterr().out
    assert [line[:8] for line in out.splitlines()] == [f"✅ TODO {i}" for i in range(1, 7)]
    with pytest.raises(TodoNotDone, match="TODO 1"):
        check_allocator(stub(1), fns["release"])
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_continuous_step(stub(4))
    with pytest.raises(TodoNotDone, match="TODO 6"):
        check_parse_completion_request(stub(6))


def test_a_scheduler_that_never_finishes_is_reported_not_hung():
    def stalls(waiting, running, free, max_batch, block_size):
        return free, [], []  # admits nothing, forever

    fails(check_continuous_step, stalls, "step 0 differs")


def test_paged_attention_that_writes_into_the_pool_is_caught():
    def writes(q, k_pool, v_pool, block_tables, context_lens):
        k_pool.zero_()
        return paged_attention(q, k_pool, v_pool, block_tables, context_lens)

    fails(check_paged_attention, writes, "never write into them")


def test_allocate_that_returns_none_on_empty_is_caught():
    def allocate(free, refs):
        if not free:
            return None
        b = free.pop()
        refs[b] = 1
        return b

    release = solution("release")
    with pytest.raises(CheckFailed, match="returned instead of raising OutOfBlocks"):
        check_allocator(allocate, release)
    assert issubclass(OutOfBlocks, RuntimeError)


def test_the_check_module_imports_without_fastapi():
    code = "import shared.checks.serving_engine, sys; print('fastapi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                         timeout=120).stdout  # python -c puts cwd first on sys.path: this checkout's shared/
    assert out.strip() == "False"
