"""Tests for the completions server of project 18 (shared/serving/server.py, requests.py, loadgen.py).

Most tests serve a small deterministic fake engine (the ``Engine`` protocol of shared/serving/engine.py:
add_request / abort / has_unfinished / step / num_waiting / num_running), so that they are fast and their
expected texts are known exactly; the tests marked slow serve the real ``Engine`` on the shared corpus model.
Every server binds to 127.0.0.1 on a free port and is stopped by its fixture; every load run is bounded in
request count and in time.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
import torch

from shared import pretrained
from shared.serving.engine import Request, TokenEvent
from shared.serving.loadgen import check_stream, run_load_sync, summarize
from shared.serving.requests import RequestError, parse_completion_request
from shared.serving.server import create_app, serve

TOK = pretrained.base_tokenizer()  # the corpus model's vocabulary: printable ASCII, newline, 8 reserved
CONTEXT = 64
PROMPTS = ["ROMEO:", "JULIET:\nO Romeo", "First Citizen:\nBefore we proceed"]


# ------------------------------------------------------------------------------------------ the fake engine


class FakeEngine:
    """Deterministic stand-in for ``Engine``: token k of a request is ``(sum(prompt_ids) + k) % V``.

    max_batch requests run at once, the rest wait; ``step_s`` sleeps in every step (a slow model);
    while ``gate`` is cleared, steps produce nothing (nothing is admitted). ``cap`` makes add_request
    refuse a request with more max_tokens (as the real engine refuses one that needs more blocks than it
    has); ``fail_on`` makes step raise once a request with that prompt has ``fail_after`` tokens.
    """

    def __init__(self, *, max_batch=8, step_s=0.0, cap=None, fail_on=None, fail_after=0):
        self.max_context = CONTEXT
        self.max_batch = max_batch
        self.step_s = step_s
        self.cap = cap
        self.fail_on = fail_on
        self.fail_after = fail_after
        self.gate = threading.Event()
        self.gate.set()
        self.waiting: list[Request] = []
        self.running: dict[str, list] = {}  # id -> [request, tokens generated]
        self.events: list[TokenEvent] = []
        self.added: list[str] = []
        self.aborted: list[str] = []

    @property
    def num_waiting(self):
        return len(self.waiting)

    @property
    def num_running(self):
        return len(self.running)

    def add_request(self, req):
        if len(req.prompt_ids) + req.max_tokens > self.max_context:
            raise ValueError(f"max_tokens={req.max_tokens}: prompt + max_tokens > max_context")
        if self.cap is not None and req.max_tokens > self.cap:
            raise ValueError(f"max_tokens={req.max_tokens} needs more blocks than this engine has")
        self.waiting.append(req)
        self.added.append(req.request_id)

    def abort(self, request_id):
        before = len(self.waiting) + len(self.running)
        self.waiting = [r for r in self.waiting if r.request_id != request_id]
        self.running.pop(request_id, None)
        if len(self.waiting) + len(self.running) < before:
            self.aborted.append(request_id)
            self.events.append(TokenEvent(request_id, None, True, "abort"))

    def has_unfinished(self):
        return bool(self.waiting or self.running or self.events)

    def step(self):
        events, self.events = self.events, []
        if not self.gate.is_set():
            time.sleep(0.002)
            return events
        if self.step_s:
            time.sleep(self.step_s)
        while self.waiting and len(self.running) < self.max_batch:
            req = self.waiting.pop(0)
            self.running[req.request_id] = [req, 0]
        for rid, entry in list(self.running.items()):
            req, k = entry
            if TOK.decode(req.prompt_ids) == self.fail_on and k >= self.fail_after:
                raise RuntimeError("the fake engine broke")
            done = k + 1 == req.max_tokens
            token = expected_ids(req.prompt_ids, k + 1)[-1]
            events.append(TokenEvent(rid, token, done, "length" if done else None))
            entry[1] = k + 1
            if done:
                del self.running[rid]
        return events


def expected_ids(prompt_ids, n):
    return [(sum(prompt_ids) + k) % TOK.vocab_size for k in range(n)]


def expected_text(prompt, n):
    return TOK.decode(expected_ids(TOK.encode(prompt), n))


@pytest.fixture
def running():
    """``running(engine, **create_app_kwargs)`` -> (base_url, app); every server is stopped at teardown."""
    with contextlib.ExitStack() as stack:
        def start(engine, **kwargs):
            kwargs.setdefault("model_name", "fake")
            kwargs.setdefault("max_queue", 64)
            app = create_app(engine, TOK, **kwargs)
            return stack.enter_context(serve(app)), app

        yield start


@pytest.fixture(scope="module")
def fake_server():
    engine = FakeEngine(max_batch=8, step_s=0.001, cap=50)
    app = create_app(engine, TOK, model_name="fake", max_queue=64)
    with serve(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield url, client, engine, app


def complete(client, **body):
    return client.post("/v1/completions", json=body)


def stream_lines(client, **body):
    with client.stream("POST", "/v1/completions", json={**body, "stream": True}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        return [line for line in r.iter_lines() if line]


def unfinished(app):
    return app.state.worker.call(lambda e: e.has_unfinished())


# ------------------------------------------------------------------------------------ the request handler


def parse(body, max_tokens_limit=48):
    return parse_completion_request(body, TOK, CONTEXT, max_tokens_limit)


def test_parse_a_good_request_and_its_defaults():
    req, stream = parse({"prompt": "ROMEO:", "max_tokens": 20, "temperature": 0, "stream": True, "seed": 7,
                         "model": "anything", "user": "ignored"})
    assert isinstance(req, Request) and stream is True
    assert req.prompt_ids == TOK.encode("ROMEO:") and req.max_tokens == 20
    assert req.temperature == 0.0 and req.seed == 7 and req.request_id.startswith("cmpl-")
    req, stream = parse({"prompt": "ROMEO:"})
    assert (req.max_tokens, req.temperature, req.seed, stream) == (16, 1.0, None, False)
    req, _ = parse({"prompt": "x" * 60})  # the default max_tokens shrinks to the room left in the context
    assert req.max_tokens == 4
    req, _ = parse({"prompt": "x" * 63, "max_tokens": 1, "n": 1, "top_p": 1, "echo": False})
    assert len(req.prompt_ids) + req.max_tokens == CONTEXT


BAD_BODIES = [
    # body, the field the error must name, words the message must contain
    (["ROMEO:"], None, ["JSON object", "list"]),
    ({}, "prompt", ["required"]),
    ({"prompt": ""}, "prompt", ["empty"]),
    ({"prompt": 42}, "prompt", ["string", "int"]),
    ({"prompt": ["a", "b"]}, "prompt", ["single string"]),
    ({"prompt": "café ☕"}, "prompt", ["'é'", "'☕'", "vocabulary"]),
    ({"prompt": "x" * 64}, "prompt", ["64 tokens", "at most 63"]),
    ({"prompt": "x" * 500}, "prompt", ["500 tokens", "at most 63"]),
    ({"prompt": "ROMEO:", "max_tokens": 0}, "max_tokens", ["max_tokens=0", "at least one"]),
    ({"prompt": "ROMEO:", "max_tokens": -5}, "max_tokens", ["max_tokens=-5"]),
    ({"prompt": "ROMEO:", "max_tokens": 2.5}, "max_tokens", ["integer", "2.5"]),
    ({"prompt": "ROMEO:", "max_tokens": "10"}, "max_tokens", ["integer", "'10'"]),
    ({"prompt": "ROMEO:", "max_tokens": True}, "max_tokens", ["integer"]),
    ({"prompt": "ROMEO:", "max_tokens": 49}, "max_tokens", ["max_tokens=49", "limit of 48"]),
    ({"prompt": "x" * 30, "max_tokens": 40}, "max_tokens", ["max_tokens=40", "at most 34"]),
    ({"prompt": "ROMEO:", "temperature": -0.5}, "temperature", ["temperature=-0.5", "between 0"]),
    ({"prompt": "ROMEO:", "temperature": 2.5}, "temperature", ["temperature=2.5", "2"]),
    ({"prompt": "ROMEO:", "temperature": "hot"}, "temperature", ["number", "'hot'"]),
    ({"prompt": "ROMEO:", "temperature": float("nan")}, "temperature", ["number"]),
    ({"prompt": "ROMEO:", "stream": "yes"}, "stream", ["true or false", "'yes'"]),
    ({"prompt": "ROMEO:", "n": 3}, "n", ["n=3", "one completion"]),
    ({"prompt": "ROMEO:", "seed": -1}, "seed", ["seed", "-1"]),
    ({"prompt": "ROMEO:", "top_p": 0.5}, "top_p", ["top_p=0.5", "not supported"]),
    ({"prompt": "ROMEO:", "stop": ["\n"]}, "stop", ["stop", "not supported"]),
    ({"prompt": "ROMEO:", "model": 3}, "model", ["model", "string"]),
]


@pytest.mark.parametrize(("body", "param", "words"), BAD_BODIES, ids=lambda x: repr(x)[:40])
def test_parse_refuses_bad_bodies_naming_the_field(body, param, words):
    with pytest.raises(RequestError) as info:
        parse(body)
    err = info.value
    assert err.status == 400 and err.param == param
    for word in words:
        assert word in err.message, (word, err.message)


def test_request_error_and_parse_import_without_fastapi():
    code = ("import sys; import shared.serving.requests, shared.serving; "
            "assert 'fastapi' not in sys.modules and 'starlette' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ------------------------------------------------------------------------------------------ the endpoints


def test_non_streaming_completion(fake_server):
    _, client, _, _ = fake_server
    r = complete(client, prompt="ROMEO:", max_tokens=12, temperature=0)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "text_completion" and body["model"] == "fake"
    assert body["choices"][0]["text"] == expected_text("ROMEO:", 12)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"] == {"prompt_tokens": 6, "completion_tokens": 12, "total_tokens": 18}


def test_streaming_completion(fake_server):
    _, client, _, _ = fake_server
    lines = stream_lines(client, prompt="JULIET:", max_tokens=9)
    ok, pieces, finish, problem = check_stream(lines)
    assert ok, problem
    assert len(pieces) == 9 and "".join(pieces) == expected_text("JULIET:", 9) and finish == "length"
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert {c["object"] for c in chunks} == {"text_completion"} and len({c["id"] for c in chunks}) == 1
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 8 + ["length"]


def test_models_health_and_unknown_routes(fake_server):
    _, client, _, _ = fake_server
    assert client.get("/v1/models").json()["data"][0]["id"] == "fake"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["max_queue"] == 64
    for r, status in ((client.get("/nope"), 404), (client.get("/v1/completions"), 405)):
        assert r.status_code == status and r.json()["error"]["message"]


def test_curl_streams_a_completion(fake_server):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    url, _, _, _ = fake_server
    body = json.dumps({"prompt": "ROMEO:", "max_tokens": 5, "stream": True})
    out = subprocess.run(["curl", "-sN", "--max-time", "20", f"{url}/v1/completions", "-H",
                          "Content-Type: application/json", "-d", body],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    ok, pieces, _, problem = check_stream([line for line in out.splitlines() if line])
    assert ok, problem
    assert "".join(pieces) == expected_text("ROMEO:", 5)
    bad = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", f"{url}/v1/completions", "-d", "{oops"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    body, status = bad.rsplit("\n", 1)
    assert status == "400" and "not valid JSON" in json.loads(body)["error"]["message"]


def test_the_openai_client_works(fake_server):
    openai = pytest.importorskip("openai")
    url, _, _, _ = fake_server
    client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=30)
    done = client.completions.create(model="fake", prompt="ROMEO:", max_tokens=7, temperature=0)
    assert done.choices[0].text == expected_text("ROMEO:", 7) and done.usage.completion_tokens == 7
    chunks = list(client.completions.create(model="fake", prompt="ROMEO:", max_tokens=7, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == expected_text("ROMEO:", 7)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "length"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="fake", prompt="ROMEO:", max_tokens=7, temperature=-1)
    assert "temperature" in str(info.value)


SERVER_BAD_INPUTS = [
    # (raw body or JSON body, expected status, the field named, a word of the message)
    ("too-long prompt", {"prompt": "x" * 100, "max_tokens": 4}, 400, "prompt", "at most 63"),
    ("negative temperature", {"prompt": "ROMEO:", "temperature": -1}, 400, "temperature", "between 0"),
    ("max_tokens beyond the limit", {"prompt": "ROMEO:", "max_tokens": 1000}, 400, "max_tokens", "=1000"),
    ("malformed JSON", b'{"prompt": "ROMEO:", ', 400, None, "not valid JSON"),
    ("NaN", b'{"prompt": "ROMEO:", "temperature": NaN}', 400, None, "NaN"),
    ("empty body", b"", 400, None, "empty"),
    ("not UTF-8", b'{"prompt": "\xff"}', 400, None, "not valid JSON"),
    ("unknown characters", {"prompt": "naïve ✓"}, 400, "prompt", "'ï'"),
    ("a JSON list", ["ROMEO:"], 400, None, "JSON object"),
    ("nested 100 000 deep", b"[" * 100_000, 400, None, "nested too deeply"),
    ("the engine cannot serve it", {"prompt": "ROMEO:", "max_tokens": 55}, 400, None, "cannot serve"),
]


@pytest.mark.parametrize(("case", "body", "status", "param", "word"), SERVER_BAD_INPUTS,
                         ids=[c[0] for c in SERVER_BAD_INPUTS])
def test_bad_input_gets_a_json_error_and_the_server_keeps_serving(fake_server, case, body, status, param,
                                                                   word):
    _, client, _, _ = fake_server
    if isinstance(body, bytes):
        r = client.post("/v1/completions", content=body, headers={"Content-Type": "application/json"})
    else:
        r = client.post("/v1/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and word in error["message"], error
    assert error["type"] == "invalid_request_error"
    good = complete(client, prompt="ROMEO:", max_tokens=3)
    assert good.status_code == 200 and good.json()["choices"][0]["text"] == expected_text("ROMEO:", 3)


def test_a_body_over_the_size_limit_gets_413(running):
    url, _ = running(FakeEngine(), max_body_bytes=1000)
    r = httpx.post(f"{url}/v1/completions", content=b'{"prompt": "' + b"x" * 2000 + b'"}', timeout=30)
    assert r.status_code == 413 and "larger than 1000 bytes" in r.json()["error"]["message"]


def _wait_until(predicate, timeout_s=10.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_a_client_that_disconnects_mid_stream_is_aborted(running):
    engine = FakeEngine(step_s=0.02)  # 50 tokens take about a second
    url, app = running(engine)
    with httpx.Client(base_url=url, timeout=30) as client:
        with client.stream("POST", "/v1/completions",
                           json={"prompt": "ROMEO:", "max_tokens": 50, "stream": True}) as r:
            lines = r.iter_lines()
            got = [next(lines) for _ in range(6)]  # three chunks and their blank separators
        assert sum(line.startswith("data: {") for line in got) == 3
    _wait_until(lambda: not unfinished(app), what="the engine to drop the request")
    assert len(engine.aborted) == 1 and engine.aborted == engine.added
    assert app.state.worker.call(lambda e: e.num_running + e.num_waiting) == 0
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 4}, timeout=30)
    assert r.json()["choices"][0]["text"] == expected_text("ROMEO:", 4)


def test_a_client_that_disconnects_while_waiting_for_a_plain_answer_is_aborted(running):
    engine = FakeEngine(step_s=0.02)
    url, app = running(engine, poll_disconnect_s=0.05)
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"prompt": "ROMEO:", "max_tokens": 50}).encode()
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        _wait_until(lambda: engine.added, what="the request to reach the engine")
    _wait_until(lambda: not unfinished(app), what="the engine to drop the request")
    assert engine.aborted == engine.added


def test_a_full_queue_answers_503_and_recovers(running):
    engine = FakeEngine()
    engine.gate.clear()  # the engine admits nothing: requests pile up waiting for their first token
    url, _ = running(engine, max_queue=3)
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(httpx.post, f"{url}/v1/completions", json={"prompt": p, "max_tokens": 5},
                               timeout=30) for p in PROMPTS]
        _wait_until(lambda: httpx.get(f"{url}/health").json()["queued"] == 3, what="three queued requests")
        r = httpx.post(f"{url}/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 5}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full" and "3 requests" in r.json()["error"]["message"]
        assert len(engine.added) == 3  # the refused request never reached the engine
        engine.gate.set()
        texts = [f.result().json()["choices"][0]["text"] for f in waiting]
    assert texts == [expected_text(p, 5) for p in PROMPTS]
    assert httpx.get(f"{url}/health").json()["queued"] == 0
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 5}, timeout=30)
    assert r.status_code == 200


def test_an_engine_failure_is_a_500_not_a_hang(running):
    url, app = running(FakeEngine(fail_on="BOOM"))
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "BOOM", "max_tokens": 5}, timeout=30)
    assert r.status_code == 500 and "the fake engine broke" in r.json()["error"]["message"]
    assert httpx.get(f"{url}/health").json()["status"] == "broken"
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 5}, timeout=30)
    assert r.status_code == 500 and "failed earlier" in r.json()["error"]["message"]


def test_an_engine_failure_mid_stream_ends_the_stream_with_the_error(running):
    url, _ = running(FakeEngine(fail_on="BOOM", fail_after=3))
    with httpx.Client(base_url=url, timeout=30) as client:
        lines = stream_lines(client, prompt="BOOM", max_tokens=10)
    chunks = [json.loads(line[6:]) for line in lines[:-1]]
    assert [c["choices"][0]["finish_reason"] for c in chunks[:4]] == [None, None, None, "error"]
    assert "the fake engine broke" in chunks[4]["error"]["message"] and lines[-1] == "data: [DONE]"
    assert check_stream(lines)[0] is False  # the load generator counts it as a failed stream


def test_a_custom_request_parser_is_used(running):
    def only_romeo(body, tokenizer, max_context, max_tokens_limit):
        if body.get("prompt") != "ROMEO:":
            raise RequestError(400, "this server only completes ROMEO:", "prompt")
        return parse_completion_request(body, tokenizer, max_context, max_tokens_limit)

    url, _ = running(FakeEngine(), parse_request=only_romeo, max_tokens_limit=8)
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "JULIET:"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["message"] == "this server only completes ROMEO:"
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 9}, timeout=30)
    assert r.status_code == 400 and "limit of 8" in r.json()["error"]["message"]
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "ROMEO:"}, timeout=30)
    assert r.json()["usage"]["completion_tokens"] == 8  # the default shrinks to the limit


def test_an_engine_factory_runs_on_the_worker_thread(running):
    made_on = []

    def factory():
        made_on.append(threading.current_thread().name)
        return FakeEngine()

    url, _ = running(factory)
    r = httpx.post(f"{url}/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 3}, timeout=30)
    assert r.json()["choices"][0]["text"] == expected_text("ROMEO:", 3) and made_on == ["engine-worker"]


@pytest.mark.parametrize(("kwargs", "word"),
                         [({"max_queue": 0}, "max_queue"), ({"model_name": ""}, "model_name")])
def test_create_app_refuses_bad_settings(kwargs, word):
    with pytest.raises(ValueError, match=word):
        create_app(FakeEngine(), TOK, **{"model_name": "fake", "max_queue": 4, **kwargs})


def test_serve_binds_loopback_only_and_stops():
    before = set(threading.enumerate())
    app = create_app(FakeEngine(), TOK, model_name="fake", max_queue=4)
    with pytest.raises(ValueError, match="loopback"):
        with serve(app, host="0.0.0.0"):
            pass
    with serve(app) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{url}/health").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/health", timeout=2)
    assert set(threading.enumerate()) <= before  # the server's thread and the engine's worker have ended


# ------------------------------------------------------------------------------------------ load


def test_check_stream_flags_malformed_streams():
    good = ['data: {"object": "text_completion", "choices": [{"text": "a", "finish_reason": null}]}',
            'data: {"object": "text_completion", "choices": [{"text": "b", "finish_reason": "length"}]}',
            "data: [DONE]"]
    assert check_stream(good) == (True, ["a", "b"], "length", None)
    assert not check_stream(good[:-1])[0]  # no [DONE]
    assert not check_stream([good[0], "data: [DONE]"])[0]  # no finish_reason
    assert not check_stream([good[1], good[1], "data: [DONE]"])[0]  # two of them
    assert not check_stream([good[0], "data: {oops", good[1], "data: [DONE]"])[0]
    assert not check_stream([good[0].replace("text_completion", "chat"), good[1], "data: [DONE]"])[0]


@pytest.mark.slow
def test_load_of_300_requests_loses_none_and_every_stream_is_well_formed(running):
    url, app = running(FakeEngine(max_batch=32, step_s=0.001), max_queue=400)
    results = run_load_sync(url, PROMPTS, rate=400.0, n_requests=300, max_tokens=6, temperature=1.0,
                            seed=0, timeout_s=60)
    summary = summarize(results)
    assert summary["lost"] == 0 and summary["ok"] == 300 and summary["malformed"] == 0, summary
    assert all(r.text == expected_text(r.prompt, 6) and r.finish_reason == "length" for r in results)
    assert summary["tokens"] == 300 * 6
    assert 0 < summary["ttft_p50_s"] <= summary["ttft_p99_s"] <= summary["latency_p99_s"]
    assert not unfinished(app)


def test_load_is_bounded_in_time_and_counts_what_it_lost(running):
    engine = FakeEngine()
    engine.gate.clear()  # nothing ever finishes
    url, _ = running(engine, max_queue=5)
    t0 = time.perf_counter()
    results = run_load_sync(url, PROMPTS, rate=50.0, n_requests=40, max_tokens=4, seed=1, timeout_s=1.0)
    assert time.perf_counter() - t0 < 10
    summary = summarize(results)
    assert summary["ok"] == 0 and summary["lost"] == 40 and summary["rejected"] >= 1, summary
    assert {r.error for r in results if r.status is None} <= {"timeout", "not sent: the run's time ran out"}
    engine.gate.set()


def test_poisson_arrivals_are_seeded(running):
    url, _ = running(FakeEngine(max_batch=16))
    a = run_load_sync(url, PROMPTS, rate=200.0, n_requests=20, max_tokens=2, seed=5, timeout_s=30)
    b = run_load_sync(url, PROMPTS, rate=200.0, n_requests=20, max_tokens=2, seed=5, timeout_s=30)
    gaps = [y.sent_at - x.sent_at for x, y in zip(a, a[1:], strict=False)]
    assert min(gaps) >= 0 and 0.001 < sum(gaps) / len(gaps) < 0.05  # mean gap 1/200 s, loosely
    assert [r.text for r in a] == [r.text for r in b]


def test_load_with_a_length_distribution_and_bad_settings(running):
    url, _ = running(FakeEngine(max_batch=16))
    results = run_load_sync(url, PROMPTS, rate=200.0, n_requests=12, max_tokens=[2, 5, 9], seed=2,
                            timeout_s=30)
    assert [r.n_tokens for r in results] == [2, 5, 9] * 4
    assert all(r.text == expected_text(r.prompt, n) for r, n in zip(results, [2, 5, 9] * 4, strict=True))
    bad = (({"max_tokens": 0}, "max_tokens"), ({"rate": 0}, "rate"), ({"n_requests": 0}, "n_requests"),
           ({"timeout_s": -1}, "timeout_s"))
    for kwargs, word in bad:
        settings = {"rate": 10.0, "n_requests": 2, "max_tokens": 2, "timeout_s": 5, **kwargs}
        with pytest.raises(ValueError, match=word):
            run_load_sync(url, PROMPTS, **settings)


# ------------------------------------------------------------------------------------------ the real engine


@pytest.fixture(scope="module")
def real_server():
    from shared.serving.engine import Engine

    model, tok = pretrained.load_corpus_model(verbose=False)
    engine = Engine(model, num_blocks=96, block_size=8, max_batch=16)
    app = create_app(engine, tok, model_name="corpus-gpt", max_queue=128)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with serve(app) as url, httpx.Client(base_url=url, timeout=60) as client:
            yield model, tok, engine, app, url, client
    finally:
        torch.set_num_threads(before)


@pytest.mark.slow
def test_real_engine_greedy_completion_equals_the_models_own_greedy_tokens(real_server):
    model, tok, _, _, _, client = real_server
    for prompt in PROMPTS:
        r = complete(client, prompt=prompt, max_tokens=24, temperature=0)
        ids = torch.tensor([tok.encode(prompt)])
        with torch.no_grad():
            want = model.generate(ids, 24, temperature=0)[0, ids.shape[1]:].tolist()
        assert r.json()["choices"][0]["text"] == tok.decode(want)


@pytest.mark.slow
def test_real_engine_streams_and_a_seed_reproduces_a_sample(real_server):
    _, _, _, _, _, client = real_server
    texts = []
    for _ in range(2):
        lines = stream_lines(client, prompt="ROMEO:", max_tokens=20, seed=11, temperature=1.0)
        ok, pieces, finish, problem = check_stream(lines)
        assert ok and finish == "length" and len(pieces) == 20, problem
        texts.append("".join(pieces))
    assert texts[0] == texts[1]
    other = complete(client, prompt="ROMEO:", max_tokens=20, seed=12, temperature=1.0).json()
    assert other["choices"][0]["text"] != texts[0]  # another seed, another sample


@pytest.mark.slow
def test_real_engine_disconnect_frees_its_blocks(real_server):
    _, _, engine, app, url, _ = real_server
    step = engine.step

    events = []

    def slow_step():  # a slower model: 50 tokens take a second, so the client leaves mid-request
        time.sleep(0.02)
        out = step()
        events.extend(out)
        return out

    app.state.worker.call(lambda e: setattr(e, "step", slow_step))
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            with client.stream("POST", "/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 50,
                                                                "stream": True}) as r:
                lines = r.iter_lines()  # held: a dropped iterator would close the connection itself
                assert next(lines).startswith("data: {")
                assert app.state.worker.call(lambda e: e.blocks_in_use) > 0
        _wait_until(lambda: not unfinished(app), what="the engine to drop the request")
        assert app.state.worker.call(lambda e: (e.blocks_in_use, e.num_running, e.num_waiting)) == (0, 0, 0)
        assert events[-1].finish_reason == "abort" and len(events) < 50  # aborted, not run to the end
    finally:
        app.state.worker.call(lambda e: delattr(e, "step"))


@pytest.mark.slow
def test_real_engine_load_of_300_requests_loses_nothing(real_server):
    _, _, _, app, url, _ = real_server
    results = run_load_sync(url, PROMPTS, rate=60.0, n_requests=300, max_tokens=8, temperature=1.0, seed=3,
                            timeout_s=240)
    summary = summarize(results)
    assert summary["lost"] == 0 and summary["malformed"] == 0 and summary["tokens"] == 300 * 8, summary
    assert not unfinished(app)
    assert app.state.worker.call(lambda e: e.blocks_in_use) == 0
