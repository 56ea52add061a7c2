"""Tests for 18_serving_engine/app.py, the Gradio chat UI in front of the completions server.

The module fixture starts the real stack on 127.0.0.1: the shared corpus model behind the paged ``Engine``
and ``shared.serving.server`` (the app's own ``local_server``), and the Gradio app on a free port; the tests
drive the UI with Gradio's own client (``gradio_client.Client``), as a browser would, and compare its replies
with what the server answers directly. Both servers are stopped at teardown. The corpus model is cached per
machine (pre-trained once, about 4-5 minutes, if no run has cached it yet).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("gradio")
from gradio_client import Client  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "18_serving_engine" / "app.py"

pytestmark = [
    pytest.mark.slow,
    # gradio's queue calls pandas APIs that pandas 3 deprecates; not ours to fix
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated:Warning"),
    pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting' is deprecated:Warning"),
]


def _load_app():
    spec = importlib.util.spec_from_file_location("app_18_serving_engine", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


app18 = _load_app()


@pytest.fixture(scope="module")
def stack():
    """(server URL, UI URL, gradio client): the model server and the UI, both on 127.0.0.1."""
    with app18.local_server(num_blocks=64, max_batch=8) as server_url:
        demo = app18.build_ui(server_url)
        _, ui_url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
        try:
            assert ui_url.startswith("http://127.0.0.1:")
            yield server_url, ui_url, Client(ui_url, verbose=False)
        finally:
            demo.close()


def _direct(server_url, prompt, max_tokens):
    r = httpx.post(f"{server_url}/v1/completions",
                   json={"prompt": prompt, "max_tokens": max_tokens, "temperature": 0}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def test_the_ui_streams_the_servers_greedy_completion(stack):
    server_url, _, client = stack
    job = client.submit("ROMEO:\nBut soft", 0.0, 24, api_name="/chat")
    reply = job.result(timeout=120)
    assert reply == _direct(server_url, "ROMEO:\nBut soft", 24) and len(reply) == 24
    partial = [p for p in job.outputs() if p]
    assert len(partial) >= 2 and partial[-1] == reply  # it arrived in pieces, not all at once
    assert all(reply.startswith(p) for p in partial)


def test_the_sliders_reach_the_server(stack):
    server_url, _, client = stack
    short = client.predict("JULIET:", 0.0, 5, api_name="/chat")
    assert short == _direct(server_url, "JULIET:", 5) and len(short) == 5
    prompt = "ROMEO:\n" + "Is the day so young? " * 2  # 49 characters: room for 15 more in the context
    capped = client.predict(prompt, 0.0, 40, api_name="/chat")
    assert capped == _direct(server_url, prompt, 64 - len(prompt)) and len(capped) == 15
    samples = {client.predict("JULIET:", 2.0, 30, api_name="/chat") for _ in range(3)}
    assert len(samples) > 1  # temperature 2 samples: three replies are not all the same


def test_a_bad_prompt_shows_the_servers_error_in_the_chat(stack):
    _, _, client = stack
    too_long = client.predict("x" * 80, 0.0, 10, api_name="/chat")
    assert too_long.startswith("⚠") and "HTTP 400" in too_long and "at most 63" in too_long
    unknown = client.predict("café", 0.0, 10, api_name="/chat")
    assert "'é'" in unknown and "vocabulary" in unknown
    assert client.predict("", 0.0, 10, api_name="/chat").startswith("⚠ Type")


def test_an_unreachable_server_is_reported_not_raised():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(app18.ServerError, match="cannot reach the server"):
        list(app18.stream_completion(f"http://127.0.0.1:{port}", "ROMEO:", temperature=0, max_tokens=3,
                                     timeout_s=5))


def test_the_app_runs_as_a_script_against_a_given_server(stack):
    server_url, _, _ = stack
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HARDWAY_SERVER_URL": server_url}
    proc = subprocess.Popen([sys.executable, str(APP), "--port", str(port)], env=env,
                            cwd=ROOT / "18_serving_engine", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the app did not start within 120 s"
            time.sleep(0.2)
        reply = Client(f"http://127.0.0.1:{port}/", verbose=False).predict("ROMEO:", 0.0, 8, api_name="/chat")
        assert reply == _direct(server_url, "ROMEO:", 8)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    assert f"completions server: {server_url}" in proc.stdout.read()
