"""Sampling dashboard for project 07: temperature, top-k and top-p over a tiny Shakespeare GPT.

Start it from the repository root (it works from any directory)::

    streamlit run 07_entropy_plotter/app.py

It shows, for the prompt you type, the model's next-character distribution after your settings
(temperature -> top-k -> top-p, the order of ``shared.model.GPT.generate``), its entropy, and sampled
continuations with their repetition statistics.

The model is the shared tiny GPT (2 layers, d_model 64, one character per token). On the first start it
is trained on Shakespeare for 300 steps (the slow part of the first start) and saved with
``shared.checkpoint.save_checkpoint``; later starts load that checkpoint with the sha256-verified
``shared.checkpoint.load_checkpoint``. Environment variables:

* ``ENTROPY_PLOTTER_CACHE``: the checkpoint directory (default:
  ``<shared.utils.default_cache_dir()>/07_entropy_plotter``, i.e. ``$HARDWAY_CACHE`` or
  ``~/.cache/llm-hard-way``);
* ``ENTROPY_PLOTTER_TEST_TRAIN_STEPS``: FOR TESTS ONLY, a smaller training budget (the tests set it so
  that they train in seconds; the dashboard's own default is ``TRAIN_STEPS``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` from any directory, even without the editable install
    sys.path.insert(0, str(ROOT))

import altair as alt  # noqa: E402  (streamlit depends on altair)
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402

from shared.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from shared.corpus import load_shakespeare  # noqa: E402
from shared.data import make_get_batch, train_val_split  # noqa: E402
from shared.model import GPT, GPTConfig  # noqa: E402
from shared.sampling import sampling_probs  # noqa: E402
from shared.tokenizers import CharTokenizer  # noqa: E402
from shared.train import TrainConfig, train  # noqa: E402
from shared.utils import default_cache_dir  # noqa: E402

CACHE_ENV = "ENTROPY_PLOTTER_CACHE"
TEST_STEPS_ENV = "ENTROPY_PLOTTER_TEST_TRAIN_STEPS"
TRAIN_STEPS = 300  # about 20-30 s on a 2-core CPU
TRAIN_CHARS = 1_000_000
BLOCK_SIZE = 128
SEED = 0
DEFAULT_PROMPT = "ROMEO:\nBut soft, what light through yonder window"
TEMPERATURE_GRID = [0.05 * 1.12**i for i in range(42)]  # 0.05 .. ~5, for the entropy-vs-T curve


def cache_dir() -> Path:
    """The checkpoint directory: $ENTROPY_PLOTTER_CACHE, else <default_cache_dir()>/07_entropy_plotter."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else default_cache_dir() / "07_entropy_plotter"


def train_steps() -> int:
    """TRAIN_STEPS, or the smaller test budget from $ENTROPY_PLOTTER_TEST_TRAIN_STEPS."""
    raw = os.environ.get(TEST_STEPS_ENV)
    if raw is None:
        return TRAIN_STEPS
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{TEST_STEPS_ENV}={raw!r} must be an integer >= 1")
    return int(raw)


# ----------------------------------------------------------------------------------------------- the model


def checkpoint_path(steps: int) -> Path:
    return cache_dir() / f"gpt_{steps}steps.pt"


@st.cache_resource(show_spinner=False)
def load_model(path: str) -> tuple[GPT, CharTokenizer]:
    """Model and tokenizer from a checkpoint, verified by ``load_checkpoint``.

    Cached for the server's lifetime.
    """
    payload = load_checkpoint(path)
    try:
        tok = CharTokenizer.from_dict(payload["extra"]["tokenizer"])
        model = GPT(GPTConfig(**payload["config"]))
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path} does not hold this dashboard's model: {err}") from err
    load_checkpoint(path, model=model)  # strict: every parameter name and shape must match
    model.eval()
    return model, tok


def train_and_save(path: Path, steps: int, report: Any = None) -> str:
    """Train the tiny GPT for ``steps`` steps and save it to ``path``.

    ``report(fraction, text)``, if given, gets progress.
    """
    text = load_shakespeare()
    train_text, val_text = train_val_split(text)
    tok = CharTokenizer.from_text(text)
    train_ids = torch.tensor(tok.encode(train_text[:TRAIN_CHARS]))
    val_ids = torch.tensor(tok.encode(val_text[:100_000]))
    get_batch = make_get_batch(train_ids, val_ids, BLOCK_SIZE)
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=BLOCK_SIZE, n_layer=2, n_head=4, d_model=64)
    cfg = TrainConfig(max_steps=steps, batch_size=12, lr=6e-3, warmup_steps=min(30, steps),
                      eval_interval=steps, eval_iters=5, seed=SEED, device="cpu")
    torch.manual_seed(SEED)
    model = GPT(config)
    start = time.perf_counter()

    def callback(step: int, row: dict[str, float], _model: Any) -> None:
        done = step + 1
        if report is not None and (done % 10 == 0 or done == steps):
            report(done / steps, f"training step {done}/{steps}, loss {row['train_loss']:.2f}")

    history = train(model, get_batch, cfg, callback=callback)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, step=steps, config=config,
                    extra={"tokenizer": tok.to_dict(), "val_loss": history.last("val_loss")})
    return (f"trained on first start: {steps} steps in {time.perf_counter() - start:.0f} s, validation loss "
            f"{history.last('val_loss'):.2f} nats/char; saved to {path}")


# --------------------------------------------------------------------------------------------- sampling maths


def entropy_nats(probs: torch.Tensor) -> float:
    """H = -Σ p ln p, with 0 ln 0 = 0."""
    return float(-torch.special.xlogy(probs, probs).sum()) + 0.0  # + 0.0: a one-hot gives 0.0, not -0.0


def repeated_ngram_rate(s: str, n: int = 4) -> float:
    """Fraction of the n-grams of s that already occurred earlier in s."""
    grams = [s[i : i + n] for i in range(len(s) - n + 1)]
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(texts: list[str], n: int = 4) -> float:
    """Unique n-grams / all n-grams over several texts."""
    grams = [t[i : i + n] for t in texts for i in range(len(t) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def shown(c: str) -> str:
    return {"\n": "↵", " ": "␣", "\t": "⇥"}.get(c, c)


# ----------------------------------------------------------------------------------------------- the page


def main() -> None:
    """The page, computed on one thread: fastest for a 100 k-parameter model, and no oversubscription on a
    busy CPU. The caller's thread count is restored afterwards (AppTest runs the page inside pytest)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        page()
    finally:
        torch.set_num_threads(before)


def page() -> None:
    st.set_page_config(page_title="07 · Entropy Plotter", layout="wide")
    st.title("07 · Entropy Plotter: sampling from a tiny Shakespeare GPT")
    st.caption("Temperature controls the sharpness of the softmax distribution. "
               "Order of operations: logits / T → top-k → top-p → softmax → sample.")

    try:
        steps = train_steps()
    except ValueError as err:
        st.error(str(err))
        return
    path = checkpoint_path(steps)
    origin = f"loaded from {path} (sha256 verified)"
    if not path.is_file():
        bar = st.progress(0.0, text="First start: training the model once (later starts load it)…")
        origin = train_and_save(path, steps, lambda f, text: bar.progress(f, text=f"First start: {text}"))
        bar.empty()
    try:
        with st.spinner("Loading the model…"):
            model, tok = load_model(str(path))
    except CheckpointError as err:
        reason = str(err).splitlines()[0][:160]
        st.warning(f"The saved model could not be used ({reason}); training a new one.")
        bar = st.progress(0.0, text="Training the model again…")
        origin = train_and_save(path, steps, lambda f, text: bar.progress(f, text=text))
        bar.empty()
        load_model.clear()
        model, tok = load_model(str(path))
    V = tok.vocab_size

    with st.sidebar:
        st.header("Sampling settings")
        temperature = st.slider("temperature T (0 = greedy)", 0.0, 3.0, 1.0, 0.05, key="temperature")
        top_k = st.slider("top-k (0 = off)", 0, V, 0, 1, key="top_k")
        top_p = st.slider("top-p (1.0 = off)", 0.05, 1.0, 1.0, 0.05, key="top_p")
        st.header("Continuations")
        n_samples = st.slider("samples", 1, 6, 3, key="n_samples")
        length = st.slider("characters per sample", 10, 300, 80, 10, key="length")
        seed = st.number_input("seed", 0, 10_000, 0, key="seed")
        st.caption(f"Model: {origin}")

    prompt = st.text_area("Prompt (the model continues it)", DEFAULT_PROMPT, key="prompt", height=90)
    if not prompt:
        st.warning("The prompt is empty: type at least one character for the model to continue.")
        return
    unknown = sorted(set(prompt) - set(tok.stoi))
    if unknown:
        listed = ", ".join(repr(c) for c in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        st.error(f"The prompt has {len(unknown)} character(s) the model has never seen: {listed}. "
                 f"Its vocabulary is the {V} characters of the Shakespeare corpus (letters, digits, basic "
                 "punctuation, space and newline); remove or replace them.")
        return

    ids = torch.tensor([tok.encode(prompt[-BLOCK_SIZE:])])  # (1, T)
    with torch.no_grad():
        logits = model(ids)[0][0, -1]  # (V,)
    k = top_k or None
    p = top_p if top_p < 1.0 else None
    base = torch.softmax(logits, dim=-1)  # (V,) the model at T = 1
    probs = sampling_probs(logits, temperature, k, p)  # (V,)
    h = entropy_nats(probs)
    h_base = entropy_nats(base)

    c1, c2, c3, c4 = st.columns(4)
    c1.metric("entropy (nats)", f"{h:.3f}", delta=f"{h - h_base:+.3f} vs T = 1, no filter", delta_color="off")
    c2.metric("entropy (bits)", f"{h / math.log(2):.3f}")
    c3.metric("tokens with p > 0", f"{int((probs > 0).sum())} of {V}")
    c4.metric("most likely next", f"{shown(tok.decode([int(probs.argmax())]))!r} ({float(probs.max()):.2f})")

    left, right = st.columns([3, 2])
    with left:
        st.subheader("Next-character distribution")
        top = base.argsort(descending=True)[:20]
        frame = pd.DataFrame({
            "character": [shown(tok.decode([int(i)])) for i in top] * 2,
            "probability": [float(probs[i]) for i in top] + [float(base[i]) for i in top],
            "distribution": ["after your settings"] * len(top) + ["model at T = 1"] * len(top),
        })
        order = list(frame["character"][: len(top)])
        chart = alt.Chart(frame).mark_bar().encode(
            x=alt.X("character:N", sort=order, title="next character (the 20 most likely at T = 1)",
                    axis=alt.Axis(labelAngle=0, labelFontSize=14)),
            xOffset=alt.XOffset("distribution:N", sort=["after your settings", "model at T = 1"]),
            y=alt.Y("probability:Q", title="probability", scale=alt.Scale(domain=[0, 1])),
            color=alt.Color("distribution:N", sort=["after your settings", "model at T = 1"],
                            scale=alt.Scale(range=["#d62728", "#9ecae1"]),
                            legend=alt.Legend(orient="top", title=None, labelFontSize=13)),
            tooltip=["character", "distribution", alt.Tooltip("probability:Q", format=".3f")],
        ).properties(height=320)
        st.altair_chart(chart, width="stretch")
    with right:
        st.subheader("Entropy vs temperature")
        curve = pd.DataFrame({
            "temperature": TEMPERATURE_GRID,
            "entropy (nats)": [entropy_nats(sampling_probs(logits, t, k, p)) for t in TEMPERATURE_GRID],
        })
        line = alt.Chart(curve).mark_line().encode(
            x=alt.X("temperature:Q", scale=alt.Scale(type="log"), title="temperature T (log scale)",
                    axis=alt.Axis(values=[0.05, 0.1, 0.2, 0.5, 1, 2, 5], grid=False)),
            y=alt.Y("entropy (nats):Q", title="entropy (nats)"),
        )
        your_t = pd.DataFrame({"temperature": [max(temperature, 0.05)], "entropy (nats)": [h]})
        here = alt.Chart(your_t).mark_point(size=120, color="red", filled=True).encode(
            x="temperature:Q", y="entropy (nats):Q")
        st.altair_chart((line + here).properties(height=320), width="stretch")
        st.caption(f"With your top-k/top-p; the red dot is your T. Uniform over {V} characters: "
                   f"ln {V} = {math.log(V):.2f} nats.")

    st.subheader("Sampled continuations")
    generator = torch.Generator().manual_seed(int(seed))
    out = model.generate(ids.repeat(n_samples, 1), int(length), temperature=temperature, top_k=k, top_p=p,
                         generator=generator)  # (n_samples, T + length)
    texts = [tok.decode(row[ids.size(1):].tolist()) for row in out]
    mean_repeated = sum(map(repeated_ngram_rate, texts)) / len(texts)
    st.write(f"distinct-4 across the {n_samples} samples: **{distinct_n(texts):.3f}** · mean repeated 4-gram "
             f"rate: **{mean_repeated:.3f}** (greedy loops push it towards 1)")
    for i, t in enumerate(texts):
        st.markdown(f"**Sample {i + 1}** · repeated 4-grams {repeated_ngram_rate(t):.2f}")
        st.code(prompt[-60:] + "▶" + t, language=None, wrap_lines=True)


main()
