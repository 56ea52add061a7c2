"""A small chat UI for project 18: type the start of a line and watch the served model continue it.

Start it from the repository root (it works from any directory)::

    python 18_serving_engine/app.py                                   # its own server, in this process
    python 18_serving_engine/app.py --server http://127.0.0.1:8000    # a server that already runs

Then open http://127.0.0.1:7860 (``--port`` to change it). Everything binds to 127.0.0.1 only.

The UI (Gradio) does not run the model itself: every message is a streaming ``POST /v1/completions`` to the
completions server of ``shared.serving.server`` (the OpenAI completions API), and the reply grows as the
server's ``data:`` chunks arrive. The server URL comes from ``--server``, else the environment variable
``HARDWAY_SERVER_URL``; with neither, the app starts its own server in a background thread: the shared
corpus model (:func:`shared.pretrained.load_corpus_model`, cached per machine; pre-trained first, about 4-5
minutes, if no run has cached it yet) behind the paged, continuously batching ``Engine``.

The corpus model is a character-level Shakespeare model with a 64-character context, not an instruction
follower: your message is the prompt (it is not a conversation; earlier turns are not sent), and the reply
is its continuation. Temperature 0 is greedy decoding; "max tokens" is capped by the room the prompt leaves
in the context (the server's ``GET /health`` reports the context). A bad request (a prompt longer than the
context, characters the model has never seen) comes back as the server's own 400 error message, shown in
the chat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python 18_serving_engine/app.py` from any directory, without the install
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline: no telemetry calls

import gradio as gr  # noqa: E402
import httpx  # noqa: E402

ENV_URL = "HARDWAY_SERVER_URL"
DEFAULT_UI_PORT = 7860
TITLE = "18 · Serving Engine — chat with the served model"
EXAMPLES = ["ROMEO:\nBut soft, what light", "JULIET:\nO Romeo, Romeo", "First Citizen:\n"]


class ServerError(RuntimeError):
    """The server answered with an error (its OpenAI-style message), or could not be reached."""


def stream_completion(base_url: str, prompt: str, *, temperature: float, max_tokens: int,
                      timeout_s: float = 60.0) -> Iterator[str]:
    """Yield the completion of ``prompt`` so far, growing by one streamed chunk at a time."""
    body = {"prompt": prompt, "max_tokens": int(max_tokens), "temperature": float(temperature),
            "stream": True}
    url = f"{base_url.rstrip('/')}/v1/completions"
    text = ""
    try:
        with httpx.stream("POST", url, json=body, timeout=timeout_s) as r:
            if r.status_code != 200:
                r.read()
                try:
                    message = r.json()["error"]["message"]
                except (ValueError, KeyError, TypeError):
                    message = r.text[:200]
                raise ServerError(f"the server refused the request (HTTP {r.status_code}): {message}")
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[len("data: "):])
                if "error" in chunk:
                    raise ServerError(f"the server failed mid-stream: {chunk['error'].get('message')}")
                text += chunk["choices"][0]["text"]
                yield text
    except httpx.HTTPError as exc:
        raise ServerError(f"cannot reach the server at {base_url}: {type(exc).__name__}: {exc}") from exc


def context_size(base_url: str, timeout_s: float = 10.0) -> int:
    """The served model's context (prompt + completion), from the server's ``GET /health``."""
    try:
        return int(httpx.get(f"{base_url.rstrip('/')}/health", timeout=timeout_s).json()["max_context"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
        raise ServerError(f"cannot reach the server at {base_url}: {type(exc).__name__}: {exc}") from exc


def build_ui(base_url: str) -> gr.Blocks:
    """The chat page; each message is completed by the server at ``base_url``."""

    def respond(message: str, history: list, temperature: float, max_tokens: float) -> Iterator[str]:
        if not message:
            yield "⚠ Type the start of a line for the model to continue."
            return
        try:
            room = context_size(base_url) - len(message)  # one token per character for this model
            n = min(int(max_tokens), room) if room >= 1 else int(max_tokens)  # too long: the server says so
            yield from stream_completion(base_url, message, temperature=temperature, max_tokens=n)
        except ServerError as exc:
            yield f"⚠ {exc}"

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}\nEach message is the prompt of a streaming `POST /v1/completions` to "
                    f"`{base_url}`; the reply is the model's continuation (a 64-character Shakespeare model, "
                    "not an assistant).")
        gr.ChatInterface(
            respond,
            additional_inputs=[
                gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="temperature (0 = greedy)"),
                gr.Slider(1, 63, value=40, step=1, label="max tokens"),
            ],
            examples=[[e, 0.8, 40] for e in EXAMPLES],
            cache_examples=False,
            api_name="chat",
        )
    return demo


@contextlib.contextmanager
def local_server(num_blocks: int = 128, max_batch: int = 16) -> Iterator[str]:
    """The corpus model behind the paged Engine and the completions server, on 127.0.0.1; yields its URL."""
    from shared.pretrained import load_corpus_model
    from shared.serving.engine import Engine
    from shared.serving.server import create_app, serve

    model, tok = load_corpus_model()
    engine = Engine(model, num_blocks=num_blocks, block_size=8, max_batch=max_batch)
    app = create_app(engine, tok, model_name="corpus-gpt", max_queue=64)
    with serve(app) as url:
        yield url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get(ENV_URL),
                        help=f"the completions server's base URL (default: ${ENV_URL}, else start one here)")
    parser.add_argument("--port", type=int, default=DEFAULT_UI_PORT, help="the UI's port on 127.0.0.1")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        url = args.server or stack.enter_context(local_server())
        print(f"completions server: {url}")
        build_ui(url).launch(server_name="127.0.0.1", server_port=args.port, share=False)


if __name__ == "__main__":
    main()
