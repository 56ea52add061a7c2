"""An HTTP front end for the serving engine: a small OpenAI-compatible completions server (FastAPI + uvicorn).

Endpoints::

    POST /v1/completions   the OpenAI completions API (the subset in shared.serving.requests): a JSON answer
                           with ``choices`` and ``usage``, or with ``"stream": true`` server-sent events, one
                           ``data: {...}`` chunk (object "text_completion") per token, the last carrying
                           ``finish_reason``, then ``data: [DONE]``
    GET  /v1/models        the one model served
    GET  /health           {"status": "ok", "max_context": ..., ...} and the queue counters

Errors are OpenAI-style JSON, ``{"error": {"message", "type", "param", "code"}}``: 400 for a bad body
(malformed JSON included; FastAPI's 422 never appears), 413 for a body over ``max_body_bytes``, 404/405 for
a wrong path or method, 503 (with ``Retry-After``) when ``max_queue`` requests are already waiting for their
first token, 500 if the engine itself fails.

Threads. The engine is not thread-safe, so one background thread owns it (:class:`EngineWorker`): the
request handlers, on the asyncio event loop, send it ``add`` / ``abort`` commands through an inbox; it runs
``engine.step()`` while there is work and sleeps on a condition variable otherwise, and hands every
``TokenEvent`` to the request's own ``asyncio.Queue`` with ``loop.call_soon_threadsafe``. A streaming
client that disconnects has its request aborted in the engine (its KV blocks are freed at once); the server
keeps serving everyone else.

    app = create_app(engine, tokenizer, model_name="corpus-gpt", max_queue=64)
    with serve(app) as base_url:            # uvicorn in a thread on 127.0.0.1, a free port
        httpx.post(f"{base_url}/v1/completions", json={"prompt": "ROMEO:", "max_tokens": 20})
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import FastAPI
from fastapi import Request as HTTPRequest
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.serving.requests import RequestError, parse_completion_request

__all__ = [
    "AsyncSink",
    "EngineWorker",
    "RequestError",
    "create_app",
    "parse_completion_request",
    "serve",
]

LOOPBACK = ("127.0.0.1", "::1", "localhost")
_ERROR_TYPES = {400: "invalid_request_error", 404: "not_found_error", 405: "invalid_request_error",
                413: "invalid_request_error", 503: "overloaded_error", 500: "server_error"}


# ------------------------------------------------------------------------------------------------ the worker


@dataclasses.dataclass
class _Failure:
    """Put on a request's queue instead of a TokenEvent when the engine refused or failed it."""

    status: int
    message: str
    param: str | None = None


class AsyncSink:
    """Where the worker delivers one request's events: ``queue`` on the event loop ``loop``."""

    __slots__ = ("loop", "queue")

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        self.loop = loop
        self.queue = queue

    def __call__(self, item: object) -> None:  # one item, from the worker thread
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)


def _put_all(pairs: list[tuple[asyncio.Queue, object]]) -> None:
    for queue, item in pairs:
        queue.put_nowait(item)


class EngineWorker:
    """The one thread that owns the engine.

    ``submit(request, sink)`` queues an add; ``abort(request_id)`` queues an abort; ``call(fn)`` runs
    ``fn(engine)`` on the worker thread and returns its result (for tests and counters). A sink receives the
    request's ``TokenEvent``s (or a :class:`_Failure`): an :class:`AsyncSink` (an asyncio queue on an event
    loop; the events of one step reach each loop in one ``loop.call_soon_threadsafe``), or any callable,
    called on the worker thread. The worker holds no sink after its request finished
    or was aborted. If ``engine.step()`` raises, every live request fails with status 500 and the engine is
    not used again.
    """

    def __init__(self, engine_or_factory: Any) -> None:
        self._engine_or_factory = engine_or_factory
        self.engine: Any = None
        self._inbox: deque[tuple] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._sinks: dict[str, Callable[[object], None]] = {}
        self._thread: threading.Thread | None = None
        self.broken: str | None = None
        self.num_steps = 0
        self.stats = {"waiting": 0, "running": 0}
        self._ready = threading.Event()
        self._start_error: BaseException | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self, timeout_s: float = 120.0) -> None:
        self._thread = threading.Thread(target=self._run, name="engine-worker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"the engine worker did not start within {timeout_s} s")
        if self._start_error is not None:
            error = self._start_error
            raise RuntimeError(f"the engine could not be created: {error!r}") from error

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)

    # -- commands (any thread) ----------------------------------------------------------------------

    def submit(self, request: Any, sink: Callable[[object], None]) -> None:
        self._command(("add", request, sink))

    def abort(self, request_id: str) -> None:
        self._command(("abort", request_id))

    def call(self, fn: Callable[[Any], Any], timeout_s: float = 30.0) -> Any:
        """``fn(engine)`` evaluated on the worker thread, between two steps."""
        done = threading.Event()
        box: dict[str, Any] = {}
        self._command(("call", fn, box, done))
        if not done.wait(timeout_s):
            raise TimeoutError(f"the engine worker did not answer within {timeout_s} s")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def _command(self, cmd: tuple) -> None:
        with self._cond:
            if self._stop:
                raise RuntimeError("the engine worker is stopped")
            self._inbox.append(cmd)
            self._cond.notify()

    # -- the loop (worker thread) -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            e = self._engine_or_factory
            self.engine = e if hasattr(e, "step") else e()
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._start_error = exc
            self._ready.set()
            return
        self._ready.set()
        while True:
            busy = self.broken is None and self.engine.has_unfinished()
            with self._cond:
                while not self._inbox and not busy and not self._stop:
                    self._cond.wait()
                if self._stop:
                    commands = list(self._inbox)
                    self._inbox.clear()
                    self._fail_all(503, "the server is shutting down", commands)
                    return
                commands = list(self._inbox)
                self._inbox.clear()
            for cmd in commands:
                self._handle(cmd)
            if self.broken is None and self.engine.has_unfinished():
                self._step()
            self.stats = {"waiting": self.engine.num_waiting, "running": self.engine.num_running}

    def _handle(self, cmd: tuple) -> None:
        kind = cmd[0]
        if kind == "add":
            _, request, sink = cmd
            if self.broken is not None:
                sink(_Failure(500, f"the engine failed earlier and serves no more requests: {self.broken}"))
                return
            try:
                self.engine.add_request(request)
            except ValueError as exc:
                sink(_Failure(400, f"the engine cannot serve this request: {exc}"))
                return
            self._sinks[request.request_id] = sink
        elif kind == "abort":
            _, request_id = cmd
            if self._sinks.pop(request_id, None) is not None and self.broken is None:
                self.engine.abort(request_id)
        elif kind == "call":
            _, fn, box, done = cmd
            try:
                box["value"] = fn(self.engine)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                box["error"] = exc
            done.set()

    def _step(self) -> None:
        try:
            events = self.engine.step()
        except Exception as exc:  # the engine's state is unknown now: fail everything, stop using it
            self.broken = f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            for sink in self._sinks.values():
                sink(_Failure(500, f"the engine failed: {self.broken}"))
            self._sinks.clear()
            return
        self.num_steps += 1
        batches: dict[Any, list] = {}  # loop -> [(queue, event), ...]
        for event in events:
            sink = self._sinks.get(event.request_id)
            if sink is None:  # aborted by its client, or a request the server did not add
                continue
            if event.finished:
                del self._sinks[event.request_id]
            if isinstance(sink, AsyncSink):
                batches.setdefault(sink.loop, []).append((sink.queue, event))
            else:
                sink(event)
        for loop, pairs in batches.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens any more
                loop.call_soon_threadsafe(_put_all, pairs)

    def _fail_all(self, status: int, message: str, commands: list[tuple]) -> None:
        for cmd in commands:
            if cmd[0] == "add":
                cmd[2](_Failure(status, message))
            elif cmd[0] == "call":
                cmd[2]["error"] = RuntimeError(message)
                cmd[3].set()
        for sink in self._sinks.values():
            sink(_Failure(status, message))
        self._sinks.clear()


# ------------------------------------------------------------------------------------------------ the app


def error_response(status: int, message: str, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """An OpenAI-style error body."""
    body = {"error": {"message": message, "type": _ERROR_TYPES.get(status, "invalid_request_error"),
                      "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


async def _read_json(request: HTTPRequest, max_body_bytes: int) -> object:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_body_bytes:
            raise RequestError(413, f"the request body is larger than {max_body_bytes} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise RequestError(400, "the request body is empty: send a JSON object such as "
                           '{"prompt": "ROMEO:", "max_tokens": 16}')
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise RequestError(400, f"the request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}") from None
    except ValueError as exc:  # not UTF-8, or NaN / Infinity
        raise RequestError(400, f"the request body is not valid JSON: {exc}") from None
    except RecursionError:  # e.g. 100 000 nested brackets
        raise RequestError(400, "the request body is nested too deeply to be a completion request") from None


def create_app(
    engine: Any,
    tokenizer: Any,
    *,
    model_name: str,
    max_queue: int,
    parse_request: Callable[..., tuple[Any, bool]] = parse_completion_request,
    max_tokens_limit: int | None = None,
    max_body_bytes: int = 1_000_000,
    poll_disconnect_s: float = 0.5,
) -> FastAPI:
    """A FastAPI app serving ``engine`` (an engine, or a zero-argument factory called on the worker thread).

    tokenizer: encodes prompts and decodes tokens (one ``decode([id])`` per streamed token).
    max_queue: at most this many requests may wait for their first token; more get 503.
    parse_request: ``(body, tokenizer, max_context, max_tokens_limit) -> (Request, stream)`` raising
    ``RequestError`` (the notebook passes its own). max_tokens_limit: default the engine's ``max_context``.
    The worker thread starts and stops with the app (its lifespan): serve the app with :func:`serve`, or
    any ASGI server that runs lifespans.
    """
    if not isinstance(max_queue, int) or isinstance(max_queue, bool) or max_queue < 1:
        raise ValueError(f"create_app: max_queue={max_queue!r} must be a positive int")
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"create_app: model_name={model_name!r} must be a non-empty string")
    created = int(time.time())
    ids = itertools.count()
    state: dict[str, Any] = {"queued": 0}  # requests admitted that have not had their first event yet

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        worker = EngineWorker(engine)
        await asyncio.to_thread(worker.start)
        app.state.worker = worker
        try:
            yield
        finally:
            await asyncio.to_thread(worker.stop)

    app = FastAPI(title="llm-hard-way serving engine", lifespan=lifespan, docs_url=None, redoc_url=None)

    @app.exception_handler(RequestError)
    async def _request_error(_request: HTTPRequest, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.param, exc.code)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: HTTPRequest, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, f"invalid request: {exc.errors()}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: HTTPRequest, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: f"no route {request.url.path}; try POST /v1/completions, GET /v1/models, GET /health",
                   405: f"method {request.method} is not allowed on {request.url.path}"}.get(exc.status_code)
        return error_response(exc.status_code, message or str(exc.detail))

    @app.exception_handler(Exception)
    async def _server_error(_request: HTTPRequest, exc: Exception) -> JSONResponse:
        return error_response(500, f"internal error: {type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health(request: HTTPRequest) -> dict:
        worker: EngineWorker = request.app.state.worker
        return {"status": "ok" if worker.broken is None else "broken", "model": model_name,
                "max_context": worker.engine.max_context, "queued": state["queued"], "max_queue": max_queue,
                **worker.stats, "steps": worker.num_steps}

    @app.get("/v1/models")
    async def models() -> dict:
        card = {"id": model_name, "object": "model", "created": created, "owned_by": "llm-hard-way"}
        return {"object": "list", "data": [card]}

    @app.post("/v1/completions")
    async def completions(request: HTTPRequest):
        worker: EngineWorker = request.app.state.worker
        body = await _read_json(request, max_body_bytes)
        max_context = worker.engine.max_context
        limit = max_context if max_tokens_limit is None else max_tokens_limit
        req, stream = parse_request(body, tokenizer, max_context, limit)
        if state["queued"] >= max_queue:
            return error_response(503, f"the server is busy: {max_queue} requests are already waiting; "
                                  "retry later", code="queue_full", headers={"Retry-After": "1"})
        req = dataclasses.replace(req, request_id=f"cmpl-{next(ids)}-{time.monotonic_ns():x}")
        queue: asyncio.Queue = asyncio.Queue()
        state["queued"] += 1
        try:
            item = await _first_event(worker, request, req, queue, poll_disconnect_s)
        finally:
            state["queued"] -= 1
        if isinstance(item, _Failure):
            return error_response(item.status, item.message, item.param)
        meta = {"id": req.request_id, "created": int(time.time()), "model": model_name,
                "prompt_tokens": len(req.prompt_ids)}
        if stream:
            return StreamingResponse(
                _stream(worker, req.request_id, queue, item, tokenizer, meta), media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _complete(worker, request, req.request_id, queue, item, tokenizer, meta,
                               poll_disconnect_s)

    return app


async def _first_event(worker: EngineWorker, request: HTTPRequest, req: Any, queue: asyncio.Queue,
                       poll_s: float) -> object:
    """Hand ``req`` to the worker; its first TokenEvent (or a _Failure). Aborts it if the client disconnects
    (or the handler is cancelled) while it waits."""
    try:
        worker.submit(req, AsyncSink(asyncio.get_running_loop(), queue))
    except RuntimeError as exc:  # the worker is stopping
        return _Failure(503, f"the server is shutting down: {exc}")
    try:
        item = await _next_or_disconnect(queue, request, poll_s)
    except BaseException:
        with contextlib.suppress(RuntimeError):
            worker.abort(req.request_id)
        raise
    if item is None:
        with contextlib.suppress(RuntimeError):
            worker.abort(req.request_id)
        return _Failure(400, "the client disconnected")  # nobody reads it
    return item


def _chunk(meta: dict, text: str, finish_reason: str | None) -> str:
    """One SSE event: ``data: {"id": ..., "object": "text_completion", ..., "choices": [{"text": ...}]}``."""
    if "head" not in meta:  # the fields every chunk of this request shares, encoded once
        head = json.dumps({"id": meta["id"], "object": "text_completion", "created": meta["created"],
                           "model": meta["model"]})
        meta["head"] = f'data: {head[:-1]}, "choices": [{{"text": '
    return (f'{meta["head"]}{json.dumps(text)}, "index": 0, "logprobs": null, '
            f'"finish_reason": {json.dumps(finish_reason)}}}]}}\n\n')


def _text(tokenizer: Any, token_id: int | None) -> str:
    return "" if token_id is None else tokenizer.decode([token_id])


async def _stream(worker: EngineWorker, request_id: str, queue: asyncio.Queue, item: object, tokenizer: Any,
                  meta: dict):
    """SSE chunks until the request finishes; aborts it in the engine if the client goes away first."""
    finished = False
    try:
        while True:
            if isinstance(item, _Failure):  # the engine failed mid-stream: end the stream cleanly, say why
                finished = True
                yield _chunk(meta, "", "error")
                yield f"data: {json.dumps({'error': {'message': item.message, 'type': 'server_error'}})}\n\n"
                break
            finished = item.finished
            yield _chunk(meta, _text(tokenizer, item.token_id), item.finish_reason if item.finished else None)
            if finished:
                break
            item = await queue.get()
        yield "data: [DONE]\n\n"
    finally:
        if not finished:  # the client disconnected (the generator was cancelled or closed)
            with contextlib.suppress(RuntimeError):
                worker.abort(request_id)


async def _next_or_disconnect(queue: asyncio.Queue, request: HTTPRequest, poll_s: float) -> object | None:
    """The next item of ``queue``; None if the client has disconnected.

    The connection is looked at whenever ``poll_s`` has passed since the last look (a busy request gets
    events faster than that, so a timeout alone would never fire) and while the queue stays empty.
    """
    now = time.monotonic()
    last = getattr(request.state, "last_disconnect_check", None)
    if last is None:
        request.state.last_disconnect_check = last = now
    if now - last >= poll_s:
        request.state.last_disconnect_check = now
        if await request.is_disconnected():
            return None
    while True:
        try:
            return await asyncio.wait_for(queue.get(), timeout=poll_s)
        except TimeoutError:
            request.state.last_disconnect_check = time.monotonic()
            if await request.is_disconnected():
                return None


async def _complete(worker: EngineWorker, request: HTTPRequest, request_id: str, queue: asyncio.Queue,
                    item: object, tokenizer: Any, meta: dict, poll_s: float) -> JSONResponse:
    """Collect the whole completion; abort it if the client disconnects while waiting."""
    pieces: list[str] = []
    try:
        while True:
            if isinstance(item, _Failure):
                return error_response(item.status, item.message, item.param)
            if item.token_id is not None:
                pieces.append(tokenizer.decode([item.token_id]))
            if item.finished:
                break
            item = await _next_or_disconnect(queue, request, poll_s)
            if item is None:  # nobody will read an answer: free the engine's work at once
                worker.abort(request_id)
                return error_response(400, "the client disconnected")
    except asyncio.CancelledError:
        with contextlib.suppress(RuntimeError):
            worker.abort(request_id)
        raise
    n = len(pieces)
    body = {"id": meta["id"], "object": "text_completion", "created": meta["created"], "model": meta["model"],
            "choices": [{"text": "".join(pieces), "index": 0, "logprobs": None,
                         "finish_reason": item.finish_reason}],
            "usage": {"prompt_tokens": meta["prompt_tokens"], "completion_tokens": n,
                      "total_tokens": meta["prompt_tokens"] + n}}
    return JSONResponse(body)


# ------------------------------------------------------------------------------------------------ serving


@contextlib.contextmanager
def serve(app: Any, *, host: str = "127.0.0.1", port: int = 0, timeout_s: float = 60.0,
          log_level: str = "warning") -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread; yields its base URL (``http://127.0.0.1:PORT``).

    Loopback only. ``port=0`` takes a free port (the socket is bound here, so no other process can take it
    between choosing and listening). On exit the server is told to stop, open streams get up to 3 s, and the
    thread is joined; the context manager never leaves a server running.
    """
    import uvicorn

    if host not in LOOPBACK:
        raise ValueError(f"serve: host={host!r}; this helper binds to loopback only ({', '.join(LOOPBACK)})")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=3,
                            access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn-{port}",
                              daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout_s} s")
            time.sleep(0.02)
        url_host = f"[{host}]" if family == socket.AF_INET6 else host
        yield f"http://{url_host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        sock.close()
