"""Sampling dashboard for project 07: temperature, top-k and top-p over the shared Shakespeare corpus model.

Start it from the repository root (it works from any directory)::

    streamlit run 07_entropy_plotter/app.py

It shows, for the prompt you type, the model's next-character distribution after your settings
(temperature -> top-k -> top-p, the order of ``shared.model.GPT.generate``), its entropy, and sampled
continuations with their repetition statistics and their score under a count-based 5-gram model of the
training text (the notebook's quality yardstick).

The model is the shared *corpus model* of :func:`shared.pretrained.load_corpus_model` (4 layers, 4 heads,
d_model 128, a 64-character context, 0.81 M parameters, about 1.7 nats/char on validation), the one the
notebook samples from. It is pre-trained once per machine (about 4-5 minutes on two threads; the notebooks
of projects 04 and 07 and this dashboard share it) and cached with a sha256 checksum in
``shared.utils.default_cache_dir()`` (``$HARDWAY_CACHE`` or ``~/.cache/llm-hard-way``); later starts load
it verified. A corrupted cache file is reported on the page and the model is pre-trained again.
"""

from __future__ import annotations

import contextlib
import io
import math
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` from any directory, even without the editable install
    sys.path.insert(0, str(ROOT))

import altair as alt  # noqa: E402  (streamlit depends on altair)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import streamlit as st  # noqa: E402
import torch  # noqa: E402

from shared import pretrained  # noqa: E402
from shared.checkpoint import load_checkpoint  # noqa: E402
from shared.corpus import load_shakespeare  # noqa: E402
from shared.data import train_val_split  # noqa: E402
from shared.model import GPT  # noqa: E402
from shared.sampling import sampling_probs  # noqa: E402
from shared.tokenizers import CharTokenizer  # noqa: E402
from shared.yardstick import NgramModel, corpus_baselines, fit_ngram  # noqa: E402

DEFAULT_PROMPT = "ROMEO:\nBut soft, what light through yonder window"
TEMPERATURE_GRID = [0.05 * 1.12**i for i in range(42)]  # 0.05 .. ~5, for the entropy-vs-T curve
SCORER_ORDER = 5  # the count-based n-gram model that scores the samples, as in the notebook


# ----------------------------------------------------------------------------------------------- the model


@st.cache_resource(show_spinner=False)
def load_model(cache: str) -> tuple[GPT, CharTokenizer, float, list[str]]:
    """The corpus model, its tokenizer, its validation loss and any warning the loader gave.

    ``cache`` is the cache directory (part of the key, so a changed ``$HARDWAY_CACHE`` loads again).
    Cached for the server's lifetime.
    """
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        model, tok = pretrained.load_corpus_model(cache_dir=cache)
    payload = load_checkpoint(pretrained.corpus_checkpoint_path(cache))  # verified again; only to read
    val_loss = float((payload.get("extra") or {}).get("val_loss", float("nan")))
    return model, tok, val_loss, [str(w.message) for w in caught]


@st.cache_resource(show_spinner=False)
def load_scorer(chars: tuple[str, ...]) -> tuple[NgramModel, float]:
    """A count-based 5-gram model of the training text in the model's own vocabulary (add-k, with the k
    that ``corpus_baselines`` chose), and its score on the validation text (nats/char)."""
    tok = CharTokenizer(list(chars))
    train_text, val_text = train_val_split(load_shakespeare())
    k = corpus_baselines()[SCORER_ORDER].k
    scorer = fit_ngram(tok.encode(train_text), tok.vocab_size, SCORER_ORDER, k)
    return scorer, float(scorer.nats(tok.encode(val_text)).mean())


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


def ngram_score(scorer: NgramModel, ids: list[int], n_new: int) -> float:
    """Mean −log P under the n-gram scorer of the last n_new ids (the sample), with the prompt as context.

    NaN when the sample is too short to score (prompt and sample shorter than the scorer's order).
    """
    if len(ids) < scorer.order or n_new < 1:
        return float("nan")
    return float(scorer.nats(ids)[-n_new:].mean())


def shown(c: str) -> str:
    return {"\n": "↵", " ": "␣", "\t": "⇥"}.get(c, c)


# ----------------------------------------------------------------------------------------------- the page


def main() -> None:
    """The page, computed on one thread: fastest for this small model, and no oversubscription on a busy
    CPU. The caller's thread count is restored afterwards (AppTest runs the page inside pytest)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        page()
    finally:
        torch.set_num_threads(before)


def page() -> None:
    st.set_page_config(page_title="07 · Entropy Plotter", layout="wide")
    st.title("07 · Entropy Plotter: sampling from the Shakespeare corpus model")
    st.caption("Temperature controls the sharpness of the softmax distribution. "
               "Order of operations: logits / T → top-k → top-p → softmax → sample.")

    cache = pretrained.corpus_checkpoint_path().parent
    first_start = not pretrained.corpus_checkpoint_path().is_file()
    note = ("First start: pre-training the shared corpus model once (about 4–5 minutes on two cores; "
            "later starts, and the notebooks of projects 04 and 07, load it)…" if first_start
            else "Loading the corpus model…")
    with st.spinner(note):
        model, tok, val_loss, problems = load_model(str(cache))
        scorer, scorer_val = load_scorer(tuple(tok.chars))
    for problem in problems:
        st.warning(f"The cached corpus model could not be used and was pre-trained again: {problem[:300]}")
    baselines = corpus_baselines()
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
        c = model.config
        st.caption(
            f"Model: the shared corpus model ({c.n_layer} layers, {c.n_head} heads, d_model {c.d_model}, "
            f"{c.block_size}-character context), loaded from {pretrained.corpus_checkpoint_path(cache)} "
            f"(sha256 verified). Validation loss {val_loss:.2f} nats/char; count-based n-grams on the "
            f"same text: trigram {baselines[3].nats_per_char:.2f}, 4-gram {baselines[4].nats_per_char:.2f}, "
            f"5-gram {baselines[5].nats_per_char:.2f}.")

    prompt = st.text_area("Prompt (the model continues it)", DEFAULT_PROMPT, key="prompt", height=90)
    if not prompt:
        st.warning("The prompt is empty: type at least one character for the model to continue.")
        return
    unknown = sorted(set(prompt) - (set(tok.stoi) - set(pretrained.RESERVED)))
    if unknown:
        listed = ", ".join(repr(c) for c in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        st.error(f"The prompt has {len(unknown)} character(s) the model has never seen: {listed}. "
                 "It reads printable ASCII characters and newline (the Shakespeare text uses 69 of them); "
                 "remove or replace them.")
        return

    ids = torch.tensor([tok.encode(prompt[-model.config.block_size :])])  # (1, T ≤ block_size)
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
        st.caption(f"With your top-k/top-p; the red dot is your T. Uniform over the {V} symbols: "
                   f"ln {V} = {math.log(V):.2f} nats.")

    st.subheader("Sampled continuations")
    generator = torch.Generator().manual_seed(int(seed))
    out = model.generate(ids.repeat(n_samples, 1), int(length), temperature=temperature, top_k=k, top_p=p,
                         generator=generator)  # (n_samples, T + length)
    texts = [tok.decode(row[ids.size(1):].tolist()) for row in out]
    scores = [ngram_score(scorer, out[i].tolist(), len(t)) for i, t in enumerate(texts)]
    mean_repeated = sum(map(repeated_ngram_rate, texts)) / len(texts)
    st.write(f"distinct-4 across the {n_samples} samples: **{distinct_n(texts):.3f}** · mean repeated 4-gram "
             f"rate: **{mean_repeated:.3f}** (greedy loops push it towards 1) · mean {SCORER_ORDER}-gram "
             f"score: **{float(np.mean(scores)):.2f} nats/char**")
    st.caption(f"The {SCORER_ORDER}-gram score is the cross-entropy of a sample under a count-based "
               f"{SCORER_ORDER}-gram model of the training text: held-out Shakespeare scores "
               f"{scorer_val:.2f}. Higher means less like the training text (misspelt words score high); "
               "much lower, with many repeats, means the decoder is looping on common words.")
    for i, t in enumerate(texts):
        st.markdown(f"**Sample {i + 1}** · repeated 4-grams {repeated_ngram_rate(t):.2f} · "
                    f"{SCORER_ORDER}-gram score {scores[i]:.2f} nats/char")
        st.code(prompt[-60:] + "▶" + t, language=None, wrap_lines=True)


main()
