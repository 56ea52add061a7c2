"""Plotting: one consistent style for every notebook figure.

- :func:`use_style` — a clean, seaborn-like look at a modest DPI (small notebook files).
- :func:`plot_loss_curves` — train (thin line) and val (markers) loss per run.
- :func:`heatmap` — a labelled matrix with a colour bar (attention maps, cosine similarities).
- :func:`fit_power_law` / :func:`loglog_fit` — ``y = a·x^b`` fitted by least squares in log space,
  drawn on log-log axes (scaling laws; Kaplan et al., 2020, §3).
- :func:`token_html` / :func:`plot_tokens` — a tokenizer visualiser: coloured spans with ids, as HTML
  for Jupyter and as a static matplotlib picture for code hosts that strip HTML.
- :func:`savefig` — write a figure atomically.

Every plotting function returns its Axes (or, for :func:`loglog_fit`, a fit that carries its Axes)
and gives it a title and labelled axes with units.
"""

from __future__ import annotations

import functools
import html
import math
import os
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont, fontManager
from matplotlib.patches import FancyBboxPatch
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from shared.utils import atomic_path

__all__ = [
    "PowerLawFit",
    "fit_power_law",
    "font_fallbacks",
    "heatmap",
    "loglog_fit",
    "plot_loss_curves",
    "plot_tokens",
    "savefig",
    "token_color",
    "token_html",
    "use_style",
]

# Okabe & Ito (2008) colour-blind-safe palette, then a few extras for many runs.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#7F7F7F", "#F0E442",
           "#000000", "#8C564B"]

# Pastel backgrounds for token spans: dark text stays readable on every one of them.
# Ten pastel hues spaced around the colour wheel.
TOKEN_PALETTE = ["#ffb3b3", "#ffd59e", "#fff3a0", "#d4f5a3", "#a8e6b8", "#9fe3e0", "#b3d9ff", "#c5c8ff",
                 "#e2c2ff", "#ffc2e5"]

# Families tried in order for glyphs; only those installed are used (DejaVu Sans ships with matplotlib).
_FONT_PREFERENCE = [
    "DejaVu Sans", "Noto Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans Devanagari",
    "Noto Sans Arabic", "Noto Sans Symbols 2", "Noto Emoji", "Symbola", "Lohit Devanagari",
    "WenQuanYi Zen Hei", "Droid Sans Fallback", "Arial Unicode MS",
]


# ----------------------------------------------------------------------------------------------
# Style


@functools.lru_cache(maxsize=1)
def font_fallbacks() -> tuple[str, ...]:
    """Installed font families from a preference list (Latin, CJK, Devanagari, emoji), in order."""
    installed = {f.name for f in fontManager.ttflist}
    found = tuple(name for name in _FONT_PREFERENCE if name in installed)
    return found or ("DejaVu Sans",)


def use_style() -> None:
    """Apply the house plotting style (idempotent; every helper here calls it).

    White background with a light grid, no top/right spines, a colour-blind-safe colour cycle,
    readable font sizes and 100 DPI so figures stored in notebooks stay small.
    """
    mpl.rcParams.update({
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "figure.figsize": (7.0, 4.2),
        "figure.facecolor": "white",
        "figure.constrained_layout.use": True,
        "savefig.bbox": "tight",
        "savefig.facecolor": "white",
        "font.family": "sans-serif",
        "font.sans-serif": [*font_fallbacks(), "DejaVu Sans"],
        "font.size": 10.5,
        "axes.titlesize": 12.5,
        "axes.titleweight": "normal",
        "axes.labelsize": 11,
        "axes.edgecolor": "#555555",
        "axes.linewidth": 0.8,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.grid": True,
        "axes.axisbelow": True,
        "axes.prop_cycle": mpl.cycler(color=PALETTE),
        "grid.color": "#e6e6e6",
        "grid.linewidth": 0.8,
        "xtick.labelsize": 9.5,
        "ytick.labelsize": 9.5,
        "xtick.color": "#333333",
        "ytick.color": "#333333",
        "legend.fontsize": 9.5,
        "legend.frameon": False,
        "lines.linewidth": 1.6,
        "image.cmap": "viridis",
    })


def _get_ax(ax: Axes | None, figsize: tuple[float, float] | None = None) -> Axes:
    use_style()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _readable_log_ticks(axis: Any) -> None:
    """On a log axis spanning less than two decades, label a few mantissas × 10^k as plain numbers."""
    lo, hi = axis.get_view_interval()
    if lo > 0 and hi / lo < 100:
        subs = (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0) if hi / lo < 4 else (1.0, 2.0, 3.0, 5.0)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def savefig(fig: Figure, path: str | os.PathLike[str], **kwargs: Any) -> Path:
    """Save ``fig`` to ``path`` atomically (temp file in the same directory, then ``os.replace``).

    The format comes from the file extension; extra keyword arguments go to ``Figure.savefig``.
    """
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)
    return path


# ----------------------------------------------------------------------------------------------
# Loss curves


def _columns(run: Any, name: str) -> dict[str, np.ndarray]:
    """``History`` (anything with ``to_dict()``) or a dict of column lists → float arrays."""
    cols = run.to_dict() if hasattr(run, "to_dict") else run
    if not isinstance(cols, Mapping):
        raise TypeError(f"run {name!r} is a {type(run).__name__}; pass a History or a dict of column lists")
    if "step" not in cols or not ({"train_loss", "val_loss"} & set(cols)):
        raise ValueError(
            f"run {name!r} needs a 'step' column and 'train_loss' and/or 'val_loss'; got {sorted(cols)}"
        )
    n = len(cols["step"])
    out = {"step": np.asarray(cols["step"], dtype=float)}
    for key in ("train_loss", "val_loss"):
        vals = np.asarray(cols.get(key, [math.nan] * n), dtype=float)
        if vals.shape != (n,):
            raise ValueError(f"run {name!r}: column {key!r} has {vals.size} values but 'step' has {n}")
        out[key] = vals
    return out


def _ema(values: np.ndarray, beta: float) -> np.ndarray:
    """Debiased exponential moving average: m_t = β m_{t-1} + (1-β) v_t, shown as m_t / (1 - β^t)."""
    out = np.empty_like(values)
    m, w = 0.0, 0.0
    for i, v in enumerate(values):
        m = beta * m + (1 - beta) * v
        w = beta * w + (1 - beta)
        out[i] = m / w
    return out


def plot_loss_curves(
    runs: Mapping[str, Any] | Any,
    ax: Axes | None = None,
    title: str = "Training and validation loss",
    logy: bool = False,
    smooth: float = 0.0,
) -> Axes:
    """Train loss (thin line) and val loss (markers) for each run, one colour per run.

    ``runs`` maps a name to a ``History`` or to a dict of columns (``History.to_dict()``); a single
    ``History`` is also accepted. ``smooth`` ∈ [0, 1) is the β of a debiased exponential moving
    average of the train loss (TensorBoard-style); the raw curve stays faintly behind it.
    """
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth={smooth!r} is invalid: must be in [0, 1) (EMA coefficient; 0 = off)")
    if hasattr(runs, "to_dict") and not isinstance(runs, Mapping):
        runs = {"run": runs}
    if not isinstance(runs, Mapping) or not runs:
        raise ValueError("runs must be a non-empty dict {name: History or dict of columns}")
    ax = _get_ax(ax)
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, run) in enumerate(runs.items()):
        cols = _columns(run, name)
        color = colors[i % len(colors)]
        step, tr, va = cols["step"], cols["train_loss"], cols["val_loss"]
        ok = ~np.isnan(tr)
        if ok.any():
            if smooth > 0:
                ax.plot(step[ok], tr[ok], color=color, lw=0.8, alpha=0.25)
                ax.plot(step[ok], _ema(tr[ok], smooth), color=color, lw=1.3,
                        label=f"{name} · train (EMA {smooth:g})")
            else:
                ax.plot(step[ok], tr[ok], color=color, lw=1.0, alpha=0.85, label=f"{name} · train")
        ok = ~np.isnan(va)
        if ok.any():
            ax.plot(step[ok], va[ok], color=color, lw=1.0, ls="--", marker="o", ms=5,
                    mfc="white", mew=1.5, label=f"{name} · val", zorder=3)
    if logy:
        ax.set_yscale("log")
        _readable_log_ticks(ax.yaxis)
    ax.set_xlabel("step (optimizer updates)")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(title)
    ax.legend(loc="upper right")
    return ax


# ----------------------------------------------------------------------------------------------
# Heatmap


def _tick_label(v: Any) -> str:
    """A tick label; one made only of whitespace (a space token) is made visible (· ↵ →)."""
    s = str(v)
    return _visible(s) if s and not s.strip() else s


def heatmap(
    matrix: Any,
    xlabels: Sequence[Any] | None = None,
    ylabels: Sequence[Any] | None = None,
    ax: Axes | None = None,
    title: str = "Heatmap",
    cmap: str = "viridis",
    annotate: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    cbar_label: str = "value",
    xlabel: str = "column",
    ylabel: str = "row",
    fmt: str = ".2f",
) -> Axes:
    """Draw a 2-D matrix (tensor, array or nested lists) with a colour bar.

    Non-finite cells (NaN, ±inf — e.g. masked attention scores) are drawn light grey. With
    ``annotate=True`` each cell shows its value in ``fmt``, in white on dark cells, black on light.
    """
    if hasattr(matrix, "detach"):
        matrix = matrix.detach().float().cpu().numpy()
    m = np.array(matrix, dtype=float)
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"heatmap needs a non-empty 2-D matrix; got shape {m.shape}")
    rows, cols = m.shape
    for name, labels, n in (("xlabels", xlabels, cols), ("ylabels", ylabels, rows)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries but the matrix has {n} {name[0]}-positions")
    ax = _get_ax(ax, figsize=(min(2.5 + 0.45 * cols, 10), min(1.5 + 0.4 * rows, 9)) if annotate else None)
    cm = plt.get_cmap(cmap).with_extremes(bad="#eeeeee")
    shown = np.ma.masked_invalid(m)
    im = ax.imshow(shown, cmap=cm, vmin=vmin, vmax=vmax, aspect="equal" if rows == cols else "auto",
                   interpolation="nearest")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if xlabels is not None:
        xt = [_tick_label(v) for v in xlabels]
        long = max(len(t) for t in xt) > 2
        ax.set_xticks(range(cols), xt, rotation=45 if long else 0, ha="right" if long else "center",
                      rotation_mode="anchor")
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ylabels is not None:
        ax.set_yticks(range(rows), [_tick_label(v) for v in ylabels])
    else:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    if annotate:
        for i in range(rows):
            for j in range(cols):
                if np.isfinite(m[i, j]):
                    r, g, b, _ = cm(im.norm(m[i, j]))
                    dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5
                    ax.text(j, i, format(m[i, j], fmt), ha="center", va="center", fontsize=8.5,
                            color="white" if dark else "black")
    ax.figure.colorbar(im, ax=ax, label=cbar_label, shrink=0.9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return ax


# ----------------------------------------------------------------------------------------------
# Power-law fits


@dataclass(frozen=True)
class PowerLawFit:
    """``y = a · x^b`` fitted in log space; ``r2`` is the coefficient of determination of log y."""

    a: float
    b: float
    r2: float
    n: int
    ax: Axes | None = field(default=None, repr=False, compare=False)

    def predict(self, x: Any) -> np.ndarray:
        """``a · x^b`` elementwise."""
        return self.a * np.power(np.asarray(x, dtype=float), self.b)

    def __str__(self) -> str:
        return f"y = {self.a:.3g}·x^{self.b:.3f}  (R² = {self.r2:.3f})"


def _positive_1d(name: str, values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D; got shape {arr.shape}")
    bad = np.flatnonzero(~np.isfinite(arr) | (arr <= 0))
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{name}[{i}]={float(arr[i])!r} is not a finite positive number: a power law y = a·x^b is fitted "
            "on log x and log y, so every x and y must be > 0"
        )
    return arr


def fit_power_law(x: Any, y: Any) -> PowerLawFit:
    r"""Fit ``y = a·x^b`` by ordinary least squares on ``log y = log a + b log x``.

    Fitting in log space weighs every point by its *relative* error, which is what a straight line
    on a log-log plot shows; a linear-space fit would be dominated by the largest y values.
    With u = log x, v = log y::

        b = Σ(u − ū)(v − v̄) / Σ(u − ū)²,   log a = v̄ − b ū,   R² = 1 − Σ(v − v̂)² / Σ(v − v̄)²
    """
    xa, ya = _positive_1d("x", x), _positive_1d("y", y)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length; got {xa.size} and {ya.size}")
    if xa.size < 2 or np.unique(xa).size < 2:
        raise ValueError(f"a power-law fit needs at least 2 distinct x values; got {np.unique(xa).size}")
    u, v = np.log(xa), np.log(ya)
    du, dv = u - u.mean(), v - v.mean()
    b = float((du * dv).sum() / (du * du).sum())
    log_a = float(v.mean() - b * u.mean())
    ss_res = float(((v - (log_a + b * u)) ** 2).sum())
    ss_tot = float((dv * dv).sum())
    r2 = 1.0 if ss_tot == 0.0 else 1.0 - ss_res / ss_tot
    return PowerLawFit(a=math.exp(log_a), b=b, r2=r2, n=int(xa.size))


def _tex_number(v: float) -> str:
    """``v`` for mathtext: plain with 3 significant digits, or m × 10^e when very large or small."""
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:.3g}"
    e = math.floor(math.log10(abs(v)))
    return f"{v / 10**e:.2f}\\times 10^{{{e}}}"


def loglog_fit(
    x: Any,
    y: Any,
    ax: Axes | None = None,
    label: str | None = None,
    color: str | None = None,
    title: str = "Power-law fit",
    xlabel: str = "x",
    ylabel: str = "y",
) -> PowerLawFit:
    """Fit ``y = a·x^b`` (:func:`fit_power_law`) and draw points + fitted line on log-log axes.

    Returns the fit; its ``.ax`` is the Axes drawn on. The legend shows the fitted law and R².
    Call it several times on one ``ax`` to compare series (name axes with units via xlabel/ylabel).
    """
    fit = fit_power_law(x, y)
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ax = _get_ax(ax)
    if color is None:  # one colour per series drawn on this Axes
        color = PALETTE[len(ax.collections) % len(PALETTE)]
    name = label or "data"
    ax.scatter(xa, ya, color=color, s=30, zorder=3, label=name, edgecolor="white", linewidth=0.6)
    lo, hi = xa.min(), xa.max()
    xs = np.geomspace(lo / 1.15, hi * 1.15, 200)
    ax.plot(xs, fit.predict(xs), color=color, ls="--", lw=1.3,
            label=f"{name} fit: $y = {_tex_number(fit.a)}\\,x^{{{fit.b:.3f}}}$, $R^2$ = {fit.r2:.3f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _readable_log_ticks(ax.xaxis)
    _readable_log_ticks(ax.yaxis)
    ax.grid(True, which="both", alpha=0.6)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    return replace(fit, ax=ax)


# ----------------------------------------------------------------------------------------------
# Token visualiser

_VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}


def _visible(text: str) -> str:
    """Make whitespace and control characters visible: space ·, newline ↵, tab →, others as ``\\x00``."""
    out = []
    for ch in text:
        if ch in _VISIBLE:
            out.append(_VISIBLE[ch])
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"\\x{ord(ch):02x}")  # other control characters as escapes: \x00
        else:
            out.append(ch)
    return "".join(out)


def token_color(token_id: int) -> str:
    """A stable background colour for a token id (Knuth multiplicative hash into TOKEN_PALETTE)."""
    h = (int(token_id) * 2654435761) & 0xFFFFFFFF
    return TOKEN_PALETTE[(h >> 16) % len(TOKEN_PALETTE)]


def _check_pieces(pieces: Any) -> list[tuple[str, int]]:
    if isinstance(pieces, (str, bytes)) or not isinstance(pieces, Sequence):
        raise TypeError("pieces must be a list of (text, token_id) pairs")
    out = []
    for i, p in enumerate(pieces):
        if (not isinstance(p, (tuple, list)) or len(p) != 2 or not isinstance(p[0], str)
                or isinstance(p[1], bool) or not isinstance(p[1], (int, np.integer))):
            raise TypeError(f"pieces[{i}]={p!r} must be a (str, int) pair: (token text, token id)")
        out.append((p[0], int(p[1])))
    return out


def _count_line(n_tokens: int, n_chars: int | None) -> str:
    return f"{n_tokens} tokens" + (f" for {n_chars} characters" if n_chars is not None else "")


def token_html(
    pieces: Sequence[tuple[str, int]], title: str | None = None, n_chars: int | None = None
) -> str:
    """HTML for a tokenised text: one coloured span per token with its id in small print below.

    The footer counts tokens, and characters when ``n_chars`` (the length of the original text) is
    given: the token texts cannot tell it, since a token may be a fragment of a character (``\\xNN``).

    Spaces show as ·, newlines as ↵ (followed by a real line break), tabs as →; everything is
    HTML-escaped. Display it in Jupyter with ``IPython.display.HTML(token_html(...))``.
    """
    pieces = _check_pieces(pieces)
    box = ("display:inline-flex;flex-direction:column;align-items:center;margin:2px 1px;"
           "padding:1px 3px;border-radius:4px;color:#111;vertical-align:top;")
    parts = ['<div class="token-viz" style="font-family:\'DejaVu Sans Mono\',Menlo,Consolas,monospace;'
             'font-size:14px;line-height:1.25;background:#fff;padding:6px;">']
    if title is not None:
        parts.append(f'<div style="font-weight:600;margin-bottom:4px;color:#111;">{html.escape(title)}</div>')
    for text, tid in pieces:
        shown = html.escape(_visible(text)) or "&#8203;"
        parts.append(
            f'<span class="tok" title="id {tid}" style="{box}background:{token_color(tid)};">'
            f'<span style="white-space:pre;">{shown}</span>'
            f'<span style="font-size:9px;color:#555;">{tid}</span></span>'
        )
        if "\n" in text:
            parts.append("<br>")
    parts.append(f'<div style="font-size:11px;color:#666;margin-top:4px;">'
                 f'{_count_line(len(pieces), n_chars)}</div></div>')
    return "".join(parts)


@functools.lru_cache(maxsize=1)
def _charmaps() -> tuple[frozenset[int], ...]:
    from matplotlib.ft2font import FT2Font

    maps = []
    for name in font_fallbacks():
        try:
            path = findfont(FontProperties(family=name), fallback_to_default=False)
            maps.append(frozenset(FT2Font(path).get_charmap()))
        except Exception:  # a font we cannot open is simply skipped
            continue
    return tuple(maps)


def _has_glyph(ch: str) -> bool:
    return any(ord(ch) in cmap for cmap in _charmaps())


_warned_missing_glyphs = False


def _drawable(text: str, missing: set[str]) -> str:
    """Replace characters no installed font can draw by □ (marks and format characters are dropped)."""
    out = []
    for ch in text:
        if _has_glyph(ch):
            out.append(ch)
        elif unicodedata.category(ch) in ("Mn", "Mc", "Me", "Cf"):
            continue  # combining marks, joiners, variation selectors: nothing to box on their own
        else:
            missing.add(ch)
            out.append("□")
    return "".join(out)


_Box = tuple[float, float, float]  # (x, y, width) of one token box, in points from the top left


def _warn_missing_glyphs(missing: set[str]) -> None:
    """Warn once per session that ``missing`` characters are drawn as □ (called from plot_tokens)."""
    global _warned_missing_glyphs
    if not missing or _warned_missing_glyphs:
        return
    _warned_missing_glyphs = True
    names = ", ".join(f"{c!r} ({unicodedata.name(c, f'U+{ord(c):04X}')})" for c in sorted(missing)[:4])
    warnings.warn(
        f"plot_tokens: {len(missing)} character(s) have no glyph in the installed fonts "
        f"{list(font_fallbacks())} and are drawn as □, e.g. {names}. Install fonts that cover them "
        "(Debian/Ubuntu: apt-get install fonts-noto-core fonts-noto-cjk fonts-symbola) and delete "
        "matplotlib's font cache; token_html shows them regardless.",
        stacklevel=3,  # the caller of plot_tokens
    )


def _layout_tokens(
    pieces: Sequence[tuple[str, int]], texts: Sequence[str], measure: Any, fs: float, width_pt: float
) -> tuple[list[_Box], float, float]:
    """Box (x, y, w) per piece in points, the total height and the widest line.

    ``texts`` are the pieces as drawn, ``measure`` a renderer that measures text at 72 dpi. Lines
    wrap at ``width_pt``; a newline in a token ends the line after it.
    """
    prop, small = (FontProperties(family=list(font_fallbacks()), size=s) for s in (fs, fs * 0.62))
    pad, gap, box_h = 0.3 * fs, 0.2 * fs, 1.55 * fs
    row_h = box_h + 1.05 * fs
    boxes, x, y, widest = [], 0.0, 0.0, 0.0
    for (text, tid), shown in zip(pieces, texts, strict=True):
        w_text = measure.get_text_width_height_descent(shown or " ", prop, ismath=False)[0]
        w_id = measure.get_text_width_height_descent(str(tid), small, ismath=False)[0]
        w = max(w_text, w_id, 0.4 * fs) + 2 * pad
        if x > 0 and x + w > width_pt:
            x, y = 0.0, y + row_h
        boxes.append((x, y, w))
        x += w + gap
        widest = max(widest, x - gap)
        if "\n" in text:
            x, y = 0.0, y + row_h
    n_rows_h = (boxes[-1][1] + row_h) if boxes else row_h
    return boxes, n_rows_h, widest


def _draw_token_boxes(
    ax: Axes, pieces: Sequence[tuple[str, int]], texts: Sequence[str], boxes: list[_Box], fontsize: float
) -> None:
    """One rounded box per token, coloured by its id, with its text inside and its id below."""
    prop = FontProperties(family=list(font_fallbacks()), size=fontsize)
    box_h = 1.55 * fontsize
    for (x, y, w), shown, (_, tid) in zip(boxes, texts, pieces, strict=True):
        ax.add_patch(FancyBboxPatch((x, y), w, box_h, boxstyle=f"round,pad=0,rounding_size={0.25 * fontsize}",
                                    facecolor=token_color(tid), edgecolor="#00000030", linewidth=0.6))
        ax.text(x + w / 2, y + box_h / 2, shown, ha="center", va="center_baseline", fontproperties=prop,
                color="#111111")
        ax.text(x + w / 2, y + box_h + 0.1 * fontsize, str(tid), ha="center", va="top",
                fontsize=fontsize * 0.62, color="#555555")


def plot_tokens(
    pieces: Sequence[tuple[str, int]],
    ax: Axes | None = None,
    title: str | None = None,
    max_width: float = 10.0,
    fontsize: float = 12.0,
    n_chars: int | None = None,
) -> Axes:
    """A static picture of :func:`token_html`: one coloured box per token, id below, lines wrapped.

    ``n_chars`` (the original text's length), when given, is stated beside the token count.

    ``max_width`` is the line width in inches (the figure width when ``ax`` is None; with an ``ax``
    the narrower of the two). Newlines in a token end the line after it. Characters that no
    installed font can draw (often CJK, Devanagari or emoji on a bare Linux box) are drawn as □
    and reported once per session with a warning; the HTML view still shows them.
    """
    pieces = _check_pieces(pieces)
    if not max_width > 0:
        raise ValueError(f"max_width={max_width!r} is invalid: must be > 0 (inches)")
    use_style()
    from matplotlib.backends.backend_agg import RendererAgg

    missing: set[str] = set()
    texts = [_drawable(_visible(t), missing) for t, _ in pieces]
    _warn_missing_glyphs(missing)
    measure = RendererAgg(10, 10, 72)  # at 72 dpi one pixel is one point: we lay out in points
    layout = functools.partial(_layout_tokens, pieces, texts, measure)

    if ax is None:  # a figure as tall as the layout needs
        width_pt = max_width * 72
        boxes, height_pt, _ = layout(fontsize, width_pt)
        top, bottom = 0.5 * 72, 0.4 * 72  # room for the title and the caption, in points
        fig = plt.figure(figsize=(max_width + 0.3, (height_pt + top + bottom) / 72), layout="none")
        fw, fh = fig.get_size_inches() * 72
        ax = fig.add_axes((0.15 * 72 / fw, bottom / fh, width_pt / fw, height_pt / fh))
        axes_h = height_pt
    else:  # the given Axes: shrink the font until everything fits it
        bbox = ax.get_position()
        fw, fh = ax.figure.get_size_inches() * 72
        width_pt, axes_h = min(bbox.width * fw, max_width * 72), bbox.height * fh
        boxes, height_pt, _ = layout(fontsize, width_pt)
        for _ in range(6):
            if height_pt <= axes_h:
                break
            fontsize *= max(0.5, math.sqrt(axes_h / height_pt))
            boxes, height_pt, _ = layout(fontsize, width_pt)
        width_pt = bbox.width * fw

    _draw_token_boxes(ax, pieces, texts, boxes, fontsize)
    ax.set_xlim(0, width_pt)
    ax.set_ylim(max(axes_h, height_pt), 0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_xlabel(f"{_count_line(len(pieces), n_chars)} (number below = token id)", fontsize=9,
                  color="#555555")
    ax.set_title(title if title is not None else "Tokens", loc="left")
    return ax
