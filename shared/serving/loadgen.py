"""A load generator for the completions server: Poisson arrivals, streaming clients, latency percentiles.

``run_load`` sends ``n_requests`` streaming ``POST /v1/completions`` requests whose start times are a
Poisson process of ``rate`` requests per second (exponential gaps drawn from a seeded numpy Generator, so a
seed gives the same schedule every run) and records, for each request, whether it succeeded, its time to
first token (TTFT), its total latency, the tokens it received and whether its stream was well-formed. The
run is bounded twice: by ``n_requests`` and by ``timeout_s`` of wall-clock time, after which requests still
in flight are cancelled and requests not yet sent are not sent (both count as lost).

    results = run_load_sync(base_url, ["ROMEO:", "JULIET:"], rate=20, n_requests=100, max_tokens=16)
    print(summarize(results))

``run_load`` is a coroutine (``asyncio.run(run_load(...))``); ``run_load_sync`` runs it on a fresh event loop
in a worker thread, so it works inside a Jupyter notebook, whose own loop is already running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import httpx
import numpy as np

__all__ = ["RequestResult", "check_stream", "run_load", "run_load_sync", "summarize"]


@dataclasses.dataclass
class RequestResult:
    """One request of a load run. Times are seconds; ``sent_at`` is measured from the start of the run."""

    index: int
    prompt: str
    sent_at: float | None = None  # None: never sent (the run's time ran out first)
    status: int | None = None  # HTTP status; None if no answer came
    ok: bool = False  # status 200 and a well-formed stream
    well_formed: bool = False
    ttft_s: float | None = None  # send -> first chunk carrying text
    latency_s: float | None = None  # send -> [DONE]
    n_tokens: int = 0  # chunks carrying text (one per token for the char-level model)
    text: str = ""
    finish_reason: str | None = None
    error: str | None = None


def check_stream(lines: Sequence[str]) -> tuple[bool, list[str], str | None, str | None]:
    """Validate the ``data:`` payloads of one SSE stream (blank lines already dropped).

    Well-formed: every payload but the last is a JSON object with ``object == "text_completion"`` and one
    choice whose ``text`` is a string; exactly one chunk has a non-null ``finish_reason`` and it is the last
    JSON chunk; the stream ends with ``[DONE]`` and nothing follows it. Returns (well_formed, text pieces,
    finish_reason, the first problem found or None).
    """
    pieces: list[str] = []
    finish: str | None = None
    n_finish = 0
    if not lines or lines[-1] != "data: [DONE]":
        return False, pieces, finish, "the stream does not end with data: [DONE]"
    for i, line in enumerate(lines[:-1]):
        if not line.startswith("data: "):
            return False, pieces, finish, f"line {i} is not an SSE data line: {line[:80]!r}"
        try:
            chunk = json.loads(line[len("data: "):])
        except json.JSONDecodeError:
            return False, pieces, finish, f"chunk {i} is not valid JSON: {line[:80]!r}"
        if not isinstance(chunk, dict) or chunk.get("object") != "text_completion":
            return False, pieces, finish, f"chunk {i} is not a text_completion object: {line[:80]!r}"
        choices = chunk.get("choices")
        if not isinstance(choices, list) or len(choices) != 1 or not isinstance(choices[0].get("text"), str):
            return False, pieces, finish, f"chunk {i} does not hold one choice with a text: {line[:80]!r}"
        if n_finish:
            return False, pieces, finish, f"chunk {i} comes after the chunk with the finish_reason"
        pieces.append(choices[0]["text"])
        if choices[0].get("finish_reason") is not None:
            finish = choices[0]["finish_reason"]
            n_finish += 1
    if n_finish != 1:
        return False, pieces, finish, "no chunk carries a finish_reason"
    return True, pieces, finish, None


def _carries_text(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    try:
        return bool(json.loads(line[len("data: "):])["choices"][0]["text"])
    except (ValueError, KeyError, IndexError, TypeError):
        return False


async def _one(client: httpx.AsyncClient, url: str, body: dict, result: RequestResult, t_run: float) -> None:
    t0 = time.perf_counter()
    result.sent_at = t0 - t_run
    lines: list[str] = []
    try:
        async with client.stream("POST", url, json=body) as response:
            result.status = response.status_code
            if response.status_code != 200:
                await response.aread()
                result.error = f"HTTP {response.status_code}: {response.text[:200]}"
                return
            async for line in response.aiter_lines():
                if not line:
                    continue
                if result.ttft_s is None and _carries_text(line):
                    result.ttft_s = time.perf_counter() - t0
                lines.append(line)
        result.latency_s = time.perf_counter() - t0
    except (httpx.HTTPError, OSError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return
    well_formed, pieces, finish, problem = check_stream(lines)
    result.well_formed = well_formed
    result.text = "".join(pieces)
    result.n_tokens = sum(1 for p in pieces if p)
    result.finish_reason = finish
    result.error = problem
    result.ok = well_formed


async def run_load(
    base_url: str,
    prompts: Sequence[str],
    *,
    rate: float,
    n_requests: int,
    max_tokens: int | Sequence[int],
    temperature: float = 1.0,
    seed: int = 0,
    timeout_s: float = 60.0,
    max_connections: int = 512,
) -> list[RequestResult]:
    """Send ``n_requests`` streaming completions at Poisson rate ``rate`` (requests/s); one result each.

    Request i uses ``prompts[i % len(prompts)]``, ``max_tokens`` (or ``max_tokens[i % len(max_tokens)]`` for
    a list: a length distribution) and sampling seed ``seed + i``. The whole run stops after
    ``timeout_s`` seconds: unfinished requests are cancelled (error "timeout"), unsent ones stay unsent.
    """
    if not prompts or not all(isinstance(p, str) and p for p in prompts):
        raise ValueError("run_load: prompts must be a non-empty list of non-empty strings")
    if not isinstance(n_requests, int) or n_requests < 1:
        raise ValueError(f"run_load: n_requests={n_requests!r} must be a positive int")
    if not (isinstance(rate, int | float) and math.isfinite(rate) and rate > 0):
        raise ValueError(f"run_load: rate={rate!r} must be a positive number of requests per second")
    if not (isinstance(timeout_s, int | float) and timeout_s > 0):
        raise ValueError(f"run_load: timeout_s={timeout_s!r} must be positive")
    lengths = [max_tokens] if isinstance(max_tokens, int) else list(max_tokens)
    if not lengths or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in lengths):
        raise ValueError(f"run_load: max_tokens={max_tokens!r} must be a positive int or a list of them")
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / rate, size=n_requests))
    arrivals -= arrivals[0]  # the first request goes at once
    url = base_url.rstrip("/") + "/v1/completions"
    results = [RequestResult(i, prompts[i % len(prompts)]) for i in range(n_requests)]
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    timeout = httpx.Timeout(timeout_s, pool=None)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        t_run = time.perf_counter()

        async def launch(i: int) -> None:
            await asyncio.sleep(max(0.0, t_run + float(arrivals[i]) - time.perf_counter()))
            body = {"prompt": results[i].prompt, "max_tokens": lengths[i % len(lengths)],
                    "temperature": temperature, "seed": seed + i, "stream": True}
            await _one(client, url, body, results[i], t_run)

        tasks = [asyncio.create_task(launch(i)) for i in range(n_requests)]
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    for r in results:
        if not r.ok and r.error is None:
            r.error = "timeout" if r.sent_at is not None else "not sent: the run's time ran out"
    return results


def run_load_sync(base_url: str, prompts: Sequence[str], **kwargs: Any) -> list[RequestResult]:
    """:func:`run_load` on its own event loop in a worker thread (works where a loop already runs)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run_load(base_url, prompts, **kwargs)).result()


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def summarize(results: Sequence[RequestResult]) -> dict[str, float]:
    """Throughput and latency of a load run.

    tokens_per_s and requests_per_s divide what the successful requests received by the span from the first
    send to the last completion; TTFT and latency percentiles are over the successful requests. ``lost``
    counts every request that did not end in a well-formed 200 stream (``rejected`` of them answered 503).
    """
    ok = [r for r in results if r.ok]
    sent = [r for r in results if r.sent_at is not None]
    if ok:
        start = min(r.sent_at for r in sent)
        end = max(r.sent_at + r.latency_s for r in ok)
        span = max(end - start, 1e-9)
    else:
        span = float("nan")
    tokens = sum(r.n_tokens for r in ok)
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    latency = [r.latency_s for r in ok]
    return {
        "requests": len(results),
        "sent": len(sent),
        "ok": len(ok),
        "lost": len(results) - len(ok),
        "rejected": sum(r.status == 503 for r in results),
        "malformed": sum(r.status == 200 and not r.well_formed for r in results),
        "tokens": tokens,
        "span_s": span,
        "tokens_per_s": tokens / span if ok else 0.0,
        "requests_per_s": len(ok) / span if ok else 0.0,
        "ttft_p50_s": _percentile(ttft, 50),
        "ttft_p99_s": _percentile(ttft, 99),
        "latency_p50_s": _percentile(latency, 50),
        "latency_p99_s": _percentile(latency, 99),
    }
