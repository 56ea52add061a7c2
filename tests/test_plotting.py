"""Tests for shared/plotting.py (Agg backend: no display needed)."""

from __future__ import annotations

import math
import warnings

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from shared import plotting  # noqa: E402
from shared.plotting import (  # noqa: E402
    PowerLawFit,
    fit_power_law,
    heatmap,
    loglog_fit,
    plot_loss_curves,
    plot_tokens,
    savefig,
    token_color,
    token_html,
    use_style,
)
from shared.train import History  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def fake_history(scale: float = 1.0) -> History:
    h = History()
    for s in range(50):
        val_loss = scale * (3.1 - s / 25) if s % 10 == 0 else math.nan
        h.append(step=s, train_loss=scale * (3 - s / 25), val_loss=val_loss)
    h.append(step=50, val_loss=scale * 1.1)
    return h


def assert_labelled(ax, title: str | None = None):
    assert ax.get_title() or ax.get_title(loc="left"), "axes has no title"
    if title is not None:
        assert title in (ax.get_title(), ax.get_title(loc="left"))
    assert ax.get_xlabel()
    if ax.yaxis.get_visible() and ax.get_yticks().size:
        assert ax.get_ylabel()


# ----------------------------------------------------------------------------------------------
# Style and loss curves


def test_use_style_sets_modest_dpi_and_is_idempotent():
    use_style()
    first = dict(matplotlib.rcParams)
    use_style()
    assert dict(matplotlib.rcParams) == first
    assert matplotlib.rcParams["figure.dpi"] == 100 and matplotlib.rcParams["savefig.dpi"] == 100
    assert matplotlib.rcParams["axes.spines.top"] is False


def test_loss_curves_draw_train_lines_and_val_markers_per_run_with_units():
    runs = {"small": fake_history(), "big": fake_history(0.8).to_dict()}
    ax = plot_loss_curves(runs, title="Two runs")
    assert_labelled(ax, "Two runs")
    assert ax.get_xlabel() == "step (optimizer updates)"
    assert ax.get_ylabel() == "loss (nats/token)"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["small · train", "small · val", "big · train", "big · val"]
    train_line, val_line = ax.get_lines()[:2]
    assert len(train_line.get_xdata()) == 50  # the NaN final row is not drawn
    assert list(val_line.get_xdata()) == [0, 10, 20, 30, 40, 50]
    assert val_line.get_marker() == "o" and train_line.get_marker() in ("None", None, "")
    assert train_line.get_color() != ax.get_lines()[2].get_color()


def test_loss_curves_logy_smoothing_and_single_history():
    rng = np.random.default_rng(0)
    noisy = History([{"step": s, "train_loss": 3 - s / 25 + rng.normal(0, 0.2)} for s in range(50)])
    ax = plot_loss_curves(noisy, logy=True, smooth=0.9)
    assert ax.get_yscale() == "log"
    raw, smoothed = ax.get_lines()[:2]
    assert "EMA 0.9" in smoothed.get_label()
    assert np.std(np.diff(smoothed.get_ydata())) <= np.std(np.diff(raw.get_ydata())) + 1e-12
    assert smoothed.get_ydata()[0] == pytest.approx(raw.get_ydata()[0])  # debiased: no pull toward 0


def test_loss_curves_reject_bad_input():
    with pytest.raises(ValueError, match="smooth=1"):
        plot_loss_curves({"a": fake_history()}, smooth=1)
    with pytest.raises(ValueError, match="non-empty"):
        plot_loss_curves({})
    with pytest.raises(ValueError, match="needs a 'step' column"):
        plot_loss_curves({"a": {"loss": [1, 2]}})
    with pytest.raises(TypeError, match="run 'a'"):
        plot_loss_curves({"a": [1, 2, 3]})


# ----------------------------------------------------------------------------------------------
# Heatmap


def test_heatmap_labels_ticks_colorbar_and_annotations():
    m = torch.tensor([[0.9, 0.1], [0.3, float("-inf")]])
    ax = heatmap(m, ["a", " "], ["q0", "q1"], title="Attention", annotate=True, cbar_label="weight",
                 xlabel="key", ylabel="query")
    assert_labelled(ax, "Attention")
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("key", "query")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "·"]  # a space label is made visible
    assert [t.get_text() for t in ax.get_yticklabels()] == ["q0", "q1"]
    assert sorted(t.get_text() for t in ax.texts) == ["0.10", "0.30", "0.90"]  # no text on the -inf cell
    cbar_axes = [a for a in ax.figure.axes if a is not ax]
    assert cbar_axes and cbar_axes[0].get_ylabel() == "weight"


def test_heatmap_rejects_non_2d_and_mismatched_labels():
    with pytest.raises(ValueError, match="2-D"):
        heatmap(np.zeros(3))
    with pytest.raises(ValueError, match="xlabels has 3 entries"):
        heatmap(np.zeros((2, 2)), xlabels=["a", "b", "c"])


# ----------------------------------------------------------------------------------------------
# Power laws


def test_power_law_fit_recovers_exact_exponent_with_r2_one():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    fit = fit_power_law(x, 7.0 * x**-0.35)
    assert fit.b == pytest.approx(-0.35, abs=1e-12)
    assert fit.a == pytest.approx(7.0, rel=1e-10)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)
    assert fit.predict(1e7) == pytest.approx(7.0 * 1e7**-0.35)
    assert "x^-0.350" in str(fit)


def test_power_law_fit_is_done_in_log_space_not_linear_space():
    rng = np.random.default_rng(0)
    x = np.geomspace(1, 1e4, 30)
    y = 2.0 * x**0.5 * np.exp(rng.normal(0, 0.3, x.size))  # multiplicative noise
    fit = fit_power_law(x, y)
    # the answer of ordinary least squares on (log x, log y) ...
    b_log, log_a = np.polyfit(np.log(x), np.log(y), 1)
    assert fit.b == pytest.approx(b_log, rel=1e-10) and fit.a == pytest.approx(math.exp(log_a), rel=1e-10)
    # ... which is not the least-squares fit of a·x^b in linear space (dominated by the largest y)
    from scipy.optimize import curve_fit

    (a_lin, b_lin), _ = curve_fit(lambda t, a, b: a * t**b, x, y, p0=(fit.a, fit.b))
    assert abs(b_lin - fit.b) > 0.01
    lin_sse = ((a_lin * x**b_lin - y) ** 2).sum()
    assert lin_sse < ((fit.predict(x) - y) ** 2).sum()  # linear-space loss prefers the other fit


@pytest.mark.parametrize("x, y, where", [
    ([1, 2, 0], [1, 2, 3], r"x\[2\]=0"),
    ([1, 2, 3], [1, -2, 3], r"y\[1\]=-2"),
    ([1, 2, float("nan")], [1, 2, 3], r"x\[2\]=nan"),
])
def test_power_law_fit_rejects_non_positive_or_non_finite_data(x, y, where):
    with pytest.raises(ValueError, match=where + ".*must be > 0"):
        fit_power_law(x, y)


def test_power_law_fit_rejects_mismatched_or_degenerate_input():
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="2 distinct x"):
        fit_power_law([5, 5], [1, 2])


def test_loglog_fit_draws_points_line_and_fit_in_legend_on_log_axes():
    x = np.array([1e5, 1e6, 1e7])
    fit = loglog_fit(x, 3 * x**-0.1, label="GPT sizes", title="Scaling", xlabel="parameters N",
                     ylabel="loss (nats/token)")
    assert isinstance(fit, PowerLawFit) and fit.b == pytest.approx(-0.1)
    ax = fit.ax
    assert_labelled(ax, "Scaling")
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert len(ax.collections) == 1 and len(ax.get_lines()) == 1
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[0] == "GPT sizes" and "x^{-0.100}" in legend[1] and "R^2" in legend[1]
    second = loglog_fit(
        x, 2 * x**-0.2, ax=ax, label="other", xlabel="parameters N", ylabel="loss (nats/token)"
    )
    assert second.ax is ax and len(ax.collections) == 2
    assert ax.collections[0].get_facecolor().tolist() != ax.collections[1].get_facecolor().tolist()


# ----------------------------------------------------------------------------------------------
# Token visualiser

PIECES = [("def", 1), (" f", 2), ("():", 3), ("\n", 4), ("    ", 5), ("<script>", 6), ("नमस्ते", 7),
          (" 世界", 8), (" 😀", 9), ("\t", 10)]


def test_token_html_escapes_markup_and_makes_whitespace_visible():
    out = token_html(PIECES, title="<b>demo</b>")
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "&lt;b&gt;demo&lt;/b&gt;" in out
    assert "·f" in out and "····" in out  # spaces as ·
    assert "↵</span>" in out and "<br>" in out  # newline shown, then a real line break
    assert "→" in out  # tab
    assert out.count('class="tok"') == len(PIECES)
    assert ">7</span>" in out and 'title="id 7"' in out  # ids shown


def test_token_html_keeps_emoji_and_hindi_and_colours_ids_stably():
    out = token_html([("नमस्ते", 7), ("😀", 9), ("नमस्ते", 7)])
    assert "नमस्ते" in out and "😀" in out
    assert token_color(7) == token_color(7) and token_color(7).startswith("#")
    assert out.count(f"background:{token_color(7)}") == 2
    assert len({token_color(i) for i in range(50)}) == len(plotting.TOKEN_PALETTE)


def test_token_html_rejects_malformed_pieces():
    with pytest.raises(TypeError, match=r"pieces\[1\]"):
        token_html([("a", 1), ("b", "2")])
    with pytest.raises(TypeError, match="list of"):
        token_html("abc")


def test_plot_tokens_draws_one_box_per_piece_and_handles_missing_glyphs(monkeypatch):
    monkeypatch.setattr(plotting, "_warned_missing_glyphs", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ax = plot_tokens(PIECES, title="Mixed scripts")
        ax.figure.canvas.draw()  # rendering must not crash either
    assert len(ax.patches) == len(PIECES)
    assert_labelled(ax, "Mixed scripts")
    shown = [t.get_text() for t in ax.texts]
    assert "<script>" in shown and "····" in shown and "↵" in shown
    assert all(not str(w.message).startswith("Glyph") for w in caught)  # no per-glyph matplotlib spam
    missing = [w for w in caught if "no glyph" in str(w.message)]
    if plotting._has_glyph("世"):
        assert "·世界" in shown
    else:  # this machine lacks a CJK font: boxes instead, and exactly one warning
        assert "·□□" in shown and len(missing) == 1
        with warnings.catch_warnings(record=True) as again:
            warnings.simplefilter("always")
            plot_tokens(PIECES)
        assert not [w for w in again if "no glyph" in str(w.message)]  # warned once per session


def test_plot_tokens_wraps_lines_at_max_width_and_breaks_after_newlines():
    pieces = [(f"word{i} ", i) for i in range(40)]
    ax = plot_tokens(pieces, max_width=4)
    ys = sorted({round(p.get_y(), 3) for p in ax.patches})
    assert len(ys) > 3  # wrapped onto several lines
    assert max(p.get_x() + p.get_width() for p in ax.patches) <= 4 * 72 + 1e-6
    ax2 = plot_tokens([("a", 1), ("\n", 2), ("b", 3)])
    rows = [round(p.get_y(), 3) for p in ax2.patches]
    assert rows[0] == rows[1] < rows[2]


def test_plot_tokens_into_given_axes_fits_inside_it():
    fig, (left, _) = plt.subplots(1, 2, figsize=(8, 2))
    ax = plot_tokens([(f"tok{i}", i) for i in range(200)], ax=left, title="Into a subplot")
    assert ax is left and len(ax.patches) == 200
    bottom = max(p.get_y() + p.get_height() for p in ax.patches)
    assert bottom <= ax.get_ylim()[0] + 1e-6


def test_savefig_writes_atomically_and_leaves_no_temp_files(tmp_path):
    ax = plot_loss_curves({"a": fake_history()})
    out = savefig(ax.figure, tmp_path / "loss.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]
    with pytest.raises(ValueError):
        savefig(ax.figure, tmp_path / "loss.notaformat")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loss.png"]


def test_token_views_count_characters_only_when_told():
    import matplotlib.pyplot as plt

    from shared.plotting import plot_tokens, token_html

    pieces = [("\\xd0", 208), ("\\x97", 151)]  # one Cyrillic letter split into two byte tokens
    assert "2 tokens for 1 characters" in token_html(pieces, n_chars=1)
    assert "2 tokens</div>" in token_html(pieces)
    ax = plot_tokens(pieces, n_chars=1)
    assert ax.get_xlabel().startswith("2 tokens for 1 characters")
    assert plot_tokens(pieces).get_xlabel().startswith("2 tokens (")
    plt.close("all")
