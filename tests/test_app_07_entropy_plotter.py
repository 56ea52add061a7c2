"""Tests for 07_entropy_plotter/app.py, the Streamlit sampling dashboard, with Streamlit's own AppTest.

The dashboard samples from the shared corpus model (:func:`shared.pretrained.load_corpus_model`). The
tests that look at its numbers use the real cached model: the ``corpus_model`` fixture loads it first
(it is pre-trained once per machine, about 4-5 minutes, if no run has cached it yet; a pre-warm before
the test session makes that instant). The tests of the first start and of a corrupted cache point
``$HARDWAY_CACHE`` at a temporary directory and swap the corpus recipe for a three-step one, so that
they pre-train in seconds and never touch the user's cache.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from shared import pretrained

APP = Path(__file__).resolve().parent.parent / "07_entropy_plotter" / "app.py"
DEFAULT_PROMPT = "ROMEO:\nBut soft, what light through yonder window"
TIMEOUT = 240  # seconds per script run: generous for a loaded 2-core machine (a run takes ~1-3 s unloaded)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def corpus_model():
    """The real corpus model in the default cache (pre-trained here only if no one has cached it yet)."""
    pretrained.load_corpus_model(verbose=False)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


@pytest.fixture
def tiny_recipe(tmp_path, monkeypatch):
    """A temporary cache and a three-step corpus recipe: the dashboard's first start takes seconds."""
    monkeypatch.setenv("HARDWAY_CACHE", str(tmp_path))
    monkeypatch.setattr(pretrained, "CORPUS_TRAIN", dataclasses.replace(
        pretrained.CORPUS_TRAIN, max_steps=3, warmup_steps=1, eval_interval=3, eval_iters=1, batch_size=4))
    st.cache_resource.clear()
    yield pretrained.corpus_checkpoint_path()
    st.cache_resource.clear()


def _app() -> AppTest:
    return AppTest.from_file(str(APP), default_timeout=TIMEOUT)


def _entropy(at: AppTest) -> float:
    return float(next(m for m in at.metric if m.label == "entropy (nats)").value)


@pytest.fixture(scope="module")
def session(corpus_model):
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


def test_app_renders_the_corpus_model_without_exceptions(corpus_model):
    at = _app().run()
    assert not at.exception, at.exception
    assert not at.error and not at.warning
    assert at.title[0].value.startswith("07 · Entropy Plotter")
    assert {m.label for m in at.metric} == {
        "entropy (nats)", "entropy (bits)", "tokens with p > 0", "most likely next"
    }
    vocab = pretrained.CORPUS_CONFIG.vocab_size
    assert 0 < _entropy(at) < math.log(vocab)  # below the uniform distribution's entropy
    assert next(m for m in at.metric if m.label == "tokens with p > 0").value == f"{vocab} of {vocab}"
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert "corpus model" in caption and "sha256 verified" in caption and "5-gram" in caption
    assert str(pretrained.corpus_checkpoint_path()) in caption
    assert len(at.code) == 3  # three sampled continuations by default
    assert "▶" in at.code[0].value
    assert any("5-gram score" in m.value for m in at.markdown)


def test_first_start_pretrains_and_caches_the_corpus_model(tiny_recipe):
    at = _app().run()
    assert not at.exception, at.exception
    assert tiny_recipe.is_file() and Path(str(tiny_recipe) + ".sha256").is_file()
    assert not at.error and not at.warning
    assert at.metric and len(at.code) == 3
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert str(tiny_recipe) in caption and "sha256 verified" in caption


def test_a_corrupted_cached_model_is_reported_and_pretrained_again(tiny_recipe):
    tiny_recipe.parent.mkdir(parents=True, exist_ok=True)
    tiny_recipe.write_bytes(b"not a checkpoint")
    Path(str(tiny_recipe) + ".sha256").write_text("0" * 64 + f"  {tiny_recipe.name}\n")
    at = _app().run()
    assert not at.exception, at.exception
    assert any("could not be used" in w.value and "corrupted" in w.value for w in at.warning)
    assert at.metric  # the dashboard still works with the model pre-trained again
    assert Path(str(tiny_recipe) + ".corrupt").is_file()  # the bad file is kept aside, never loaded


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


def test_a_reserved_id_of_the_vocabulary_is_refused_too(app):
    # the corpus model's vocabulary ends with private-use characters that pre-training never shows
    app.text_area(key="prompt").input("ROMEO:" + pretrained.RESERVED[0]).run()
    assert not app.exception, app.exception
    assert len(app.error) == 1 and repr(pretrained.RESERVED[0]) in app.error[0].value
