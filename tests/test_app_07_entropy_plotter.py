"""Tests for 07_entropy_plotter/app.py, the Streamlit sampling dashboard, with Streamlit's own AppTest.

The checkpoint cache is pointed at a temporary directory ($ENTROPY_PLOTTER_CACHE) so that the tests never
touch the user's cache, and $ENTROPY_PLOTTER_TEST_TRAIN_STEPS shrinks the first-start training to a few
steps (a test-only budget: the dashboard's own default trains for TRAIN_STEPS).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parent.parent / "07_entropy_plotter" / "app.py"
TEST_STEPS = 5
DEFAULT_PROMPT = "ROMEO:\nBut soft, what light through yonder window"
TIMEOUT = 240  # seconds per script run: generous for a loaded 2-core machine (a run takes ~1-3 s unloaded)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh checkpoint directory and a tiny training budget, for every test of this module."""
    directory = tmp_path_factory.mktemp("entropy_plotter_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENTROPY_PLOTTER_CACHE", str(directory))
        mp.setenv("ENTROPY_PLOTTER_TEST_TRAIN_STEPS", str(TEST_STEPS))
        st.cache_resource.clear()
        yield directory
        st.cache_resource.clear()


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def _entropy(at: AppTest) -> float:
    return float(next(m for m in at.metric if m.label == "entropy (nats)").value)


@pytest.fixture(scope="module")
def session(cache):
    """One dashboard session shared by the slider and prompt tests.

    Its continuations are short, so reruns are quick.
    """
    at = _app().run()
    assert not at.exception, at.exception
    at.slider(key="length").set_value(10)
    at.slider(key="n_samples").set_value(1)
    return at


@pytest.fixture
def app(session):
    """The shared session reset to the defaults: T = 1, no filters, the default prompt."""
    session.slider(key="temperature").set_value(1.0)
    session.slider(key="top_k").set_value(0)
    session.slider(key="top_p").set_value(1.0)
    session.text_area(key="prompt").input(DEFAULT_PROMPT)
    session.run()
    assert not session.exception, session.exception
    return session


def test_app_trains_saves_a_checkpoint_and_renders_without_exceptions(cache):
    at = _app().run()
    assert not at.exception, at.exception
    checkpoint = cache / f"gpt_{TEST_STEPS}steps.pt"
    assert checkpoint.is_file() and Path(str(checkpoint) + ".sha256").is_file()
    assert not at.error and not at.warning
    assert at.title[0].value.startswith("07 · Entropy Plotter")
    assert {m.label for m in at.metric} == {
        "entropy (nats)", "entropy (bits)", "tokens with p > 0", "most likely next"
    }
    assert 0 < _entropy(at) < 4.25  # below ln 69, the uniform distribution's entropy
    assert len(at.code) == 3  # three sampled continuations by default
    assert "▶" in at.code[0].value


def test_app_loads_the_saved_checkpoint_with_the_verified_loader(cache):
    _app().run()  # make sure the checkpoint exists
    st.cache_resource.clear()
    at = _app().run()
    assert not at.exception, at.exception
    assert any("loaded from" in c.value and "sha256 verified" in c.value for c in at.sidebar.caption)


def test_higher_temperature_shows_higher_entropy_and_greedy_shows_zero(app):
    shown = {}
    for t in (0.3, 1.0, 2.5):
        app.slider(key="temperature").set_value(t).run()
        assert not app.exception, app.exception
        shown[t] = _entropy(app)
    assert shown[0.3] < shown[1.0] < shown[2.5], shown
    app.slider(key="temperature").set_value(0.0).run()
    assert _entropy(app) == 0.0
    assert next(m for m in app.metric if m.label == "tokens with p > 0").value.startswith("1 of")


def test_top_k_and_top_p_sliders_lower_the_entropy(app):
    full = _entropy(app)
    app.slider(key="top_k").set_value(1).run()
    assert _entropy(app) == 0.0
    app.slider(key="top_k").set_value(0)
    app.slider(key="top_p").set_value(0.5).run()
    assert not app.exception, app.exception
    assert 0 <= _entropy(app) < full


def test_empty_prompt_shows_a_warning_not_a_traceback(app):
    app.text_area(key="prompt").input("").run()
    assert not app.exception, app.exception
    assert any("prompt is empty" in w.value for w in app.warning)
    assert not app.metric


def test_out_of_vocabulary_characters_show_an_error_naming_them(app):
    app.text_area(key="prompt").input("ROMEO: café ☕").run()
    assert not app.exception, app.exception
    assert len(app.error) == 1
    message = app.error[0].value
    assert "'é'" in message and "'☕'" in message and "never seen" in message
    assert not app.metric


def test_a_corrupted_checkpoint_is_retrained_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("ENTROPY_PLOTTER_CACHE", str(tmp_path))
    monkeypatch.setenv("ENTROPY_PLOTTER_TEST_TRAIN_STEPS", "3")
    checkpoint = tmp_path / "gpt_3steps.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    Path(str(checkpoint) + ".sha256").write_text("0" * 64 + "  gpt_3steps.pt\n")
    at = _app().run()
    assert not at.exception, at.exception
    assert any("could not be used" in w.value and "corrupted" in w.value for w in at.warning)
    assert at.metric  # the dashboard still works with the retrained model


def test_a_bad_test_budget_is_reported_on_the_page(monkeypatch, cache):
    monkeypatch.setenv("ENTROPY_PLOTTER_TEST_TRAIN_STEPS", "many")
    at = _app().run()
    assert not at.exception, at.exception
    assert "must be an integer >= 1" in at.error[0].value
