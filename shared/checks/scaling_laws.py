"""Checks for project 16 (scaling laws): one check per TODO of ``16_scaling_laws/solution.ipynb``.

References the checks compare against:

* parameters: ``shared.model.GPT(cfg).num_params(non_embedding=True)``, the N of Kaplan et al. 2020
  (§1.1: "excluding all vocabulary and positional embeddings");
* FLOPs: C ≈ 6·N·D (Kaplan et al. 2020, §2.1), plus the attention term 12·n_layer·T·d_model per token
  that ``GPT.flops_per_token`` counts (Hoffmann et al. 2022, Appendix F);
* the power-law fit: ``numpy.polyfit`` of log y on log x, R² of log y (as ``shared.plotting.fit_power_law``);
* the IsoFLOP optimum: ``numpy.polyfit`` of a parabola in log N (Hoffmann et al. 2022, §3.2, Approach 2);
* Chinchilla's parametric law L(N, D) = E + A/N^α + B/D^β with the published fit E=1.69, A=406.4,
  B=410.7, α=0.34, β=0.28 (Hoffmann et al. 2022, §3.3 and their Eq. 10), and its compute-optimal
  frontier under C = 6ND, checked against a numerical minimisation (``scipy.optimize``), not the formula.

When an answer is wrong, each check recomputes the answers of the well-known bugs (embeddings counted,
the factor 6 missing, a fit in linear space, the IsoFLOP vertex on the wrong axis, the exponents swapped…)
and names the one the learner's output matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from shared.checks import CheckFailed, call, expect, fmt, learner_check
from shared.model import GPT, GPTConfig

__all__ = [
    "CHINCHILLA",
    "reference_non_embedding_params",
    "reference_training_flops",
    "reference_power_law",
    "reference_isoflop_optimum",
    "reference_chinchilla_loss",
    "numeric_chinchilla_optimal",
    "check_non_embedding_params",
    "check_training_flops",
    "check_fit_power_law",
    "check_isoflop_optimum",
    "check_chinchilla_loss",
    "check_chinchilla_optimal",
]

# Hoffmann et al. 2022, "Training Compute-Optimal Large Language Models", §3.3 (Approach 3), Eq. 10.
CHINCHILLA = {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}


def _fail(what: str, expected: Any, got: Any, hint: str) -> CheckFailed:
    return CheckFailed(f"{what}\n   expected: {fmt(expected)}\n   got:      {fmt(got)}\n   hint: {hint}")


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


def _number(value: Any, what: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise CheckFailed(f"{what} must be a number, got {fmt(value)}\n   hint: return a float") from None
    if not math.isfinite(out):
        raise CheckFailed(f"{what} is {out}\n   hint: the result must be a finite number")
    return out


def _tuple(result: Any, n: int, what: str, names: str) -> tuple:
    if not isinstance(result, (tuple, list)) or len(result) != n:
        raise CheckFailed(f"{what} must return a tuple ({names}), got {fmt(result)}\n   hint: return {names}")
    return tuple(result)


# ----------------------------------------------------------------------------------------------- TODO 1


def reference_non_embedding_params(cfg: GPTConfig) -> int:
    """N of Kaplan et al. 2020: every parameter of the model but the token/position embeddings and the
    head."""
    return GPT(cfg).num_params(non_embedding=True)


_PARAM_CONFIGS = [
    dict(vocab_size=69, block_size=32, n_layer=2, n_head=2, d_model=32),
    dict(vocab_size=50, block_size=16, n_layer=3, n_head=4, d_model=48, d_ff=100),
    dict(vocab_size=69, block_size=32, n_layer=1, n_head=1, d_model=8, bias=False),
    dict(vocab_size=100, block_size=64, n_layer=4, n_head=4, d_model=64, tie_embeddings=False),
]


def _count(d: int, L: int, f: int, b: int, norms: int = 2, attn_biases: int = 4) -> int:
    """N with one piece changed, to name a bug: the MLP width f, biases b, LayerNorms per block, attention
    biases (in units of d)."""
    ln = d * (1 + b)
    return L * (norms * ln + 4 * d * d + attn_biases * d * b + 2 * d * f + (f + d) * b) + ln


@learner_check(1, "non_embedding_params")
def check_non_embedding_params(non_embedding_params: Callable[[GPTConfig], int]) -> str:
    for kw in _PARAM_CONFIGS:
        cfg = GPTConfig(**kw)
        got = call(non_embedding_params, cfg)
        expected = reference_non_embedding_params(cfg)
        if isinstance(got, float) and got.is_integer():
            got = int(got)
        if not isinstance(got, (int, np.integer)) or isinstance(got, bool):
            raise _fail(f"non_embedding_params({kw}) must be an int", expected, got,
                        "count parameters: an integer")
        if got == expected:
            continue
        d, L, V, T, f = cfg.d_model, cfg.n_layer, cfg.vocab_size, cfg.block_size, cfg.ff_dim
        b = int(cfg.bias)
        head = not cfg.tie_embeddings
        diagnoses = [
            (expected + V * d + T * d,
             "you counted the token and position embeddings (V·d + T·d); Kaplan's N "
             "excludes all vocabulary and positional embeddings"),
            (expected + V * d, "you counted V·d: the token embedding or the untied lm_head (it cannot tell "
                               "which); Kaplan's N excludes both" if head else
             "you counted the token embedding (V·d); Kaplan's N excludes it"),
            (expected + T * d, "you counted the position embedding (T·d); Kaplan's N excludes it"),
            (12 * L * d * d, "12·n_layer·d_model² is Kaplan's approximation; count the biases and the "
             "LayerNorm gains/biases too, and use cfg.ff_dim for the MLP width"),
            (expected - d * (1 + int(cfg.bias)), "the final LayerNorm ln_f is missing"),
            (_count(d, L, f, b, norms=1),
             "each block has two LayerNorms (ln_1 before attention, ln_2 before the MLP)"),
            (_count(d, L, f, b, attn_biases=2),
             "c_attn's bias has 3·d entries (q, k and v) and c_proj's d: 4·d attention biases"),
        ]
        if f != 4 * d:
            diagnoses.append((_count(d, L, 4 * d, b),
                              f"the MLP width is cfg.ff_dim (here {f}), not 4·d_model"))
        if not cfg.bias:
            diagnoses.append((_count(d, L, f, 1),
                              "biases only when cfg.bias (here False): no Linear or LayerNorm biases"))
        found = [h for value, h in diagnoses if got == value]  # two bugs can give the same count: name both
        hint = (" OR ".join(found) + (" (both give this count: it cannot tell "
                                      "which)" if len(found) > 1 else "")
                if found else
                "per block: 2 LayerNorms, attention 4·d² (+4·d biases), MLP 2·d·d_ff (+d_ff + d "
                f"biases); plus ln_f. Biases only when cfg.bias (here {cfg.bias}); d_ff = cfg.ff_dim = "
                f"{f}")
        raise _fail(f"non_embedding_params wrong for GPTConfig({kw})", expected, got, hint)
    return (f"matches GPT(cfg).num_params(non_embedding=True) on {len(_PARAM_CONFIGS)} configs "
            "(with/without biases, custom d_ff, untied head)")


# ----------------------------------------------------------------------------------------------- TODO 2


def reference_training_flops(n_params: float, n_tokens: float, n_layer: int = 0, context: int = 0,
                             d_model: int = 0) -> float:
    """C = 6·N·D + 12·n_layer·context·d_model·D (the second term: attention scores and weighted values)."""
    return 6.0 * n_params * n_tokens + 12.0 * n_layer * context * d_model * n_tokens


@learner_check(2, "training_flops")
def check_training_flops(training_flops: Callable[..., float]) -> str:
    N, D = 25_472, 614_400
    got = _number(call(training_flops, N, D), "training_flops(N, D)")
    expected = reference_training_flops(N, D)
    if _rel(got, expected) > 1e-9:
        hint = {
            2.0: "2·N·D is the forward pass only; the backward pass costs twice the forward: 6·N·D in all",
            4.0: "the backward pass costs 2× the forward (gradients w.r.t. activations AND weights): 6·N·D",
            3.0: "a multiply-add is 2 FLOPs: forward 2·N·D, backward 4·N·D, total 6·N·D",
            1.0: "count FLOPs, not multiply-adds of the forward pass: 6·N·D",
        }.get(round(got / (N * D), 6), "multiply the per-token cost by n_tokens: C = "
                                       "6·N·D" if _rel(got, 6.0 * N) < 1e-9
              else "C = 6·N·D (Kaplan et al. 2020, §2.1)")
        raise _fail(f"training_flops(n_params={N}, n_tokens={D})", expected, got, hint)
    cfg = GPTConfig(vocab_size=69, block_size=32, n_layer=2, n_head=2, d_model=32)
    model = GPT(cfg)
    n = model.num_params()
    head = 6 * cfg.vocab_size * cfg.d_model  # flops_per_token also counts the output projection
    want = (model.flops_per_token() - head) * D
    got = _number(call(training_flops, n, D, n_layer=2, context=32, d_model=32),
                  "training_flops(N, D, n_layer, context, d_model)")
    if _rel(got, want) > 1e-9:
        attn = got - 6.0 * n * D
        ratio = attn / (12.0 * 2 * 32 * 32 * D)
        hint = ("the attention term is 12·n_layer·context·d_model per token: q·kᵀ and the weighted sum of v "
                "are 2·T·d FLOPs each per layer forward, ×3 for forward + backward"
                + (" (you have half of it: only one of the two products)" if abs(ratio - 0.5) < 1e-6 else "")
                + (" (you left it out)" if abs(ratio) < 1e-12 else "")
                + (" (yours is not multiplied by the n_tokens D: it is a cost per token)"
                   if _rel(attn, 12.0 * 2 * 32 * 32) < 1e-6 else ""))
        raise _fail("training_flops(N, D, n_layer=2, context=32, d_model=32) vs "
                    "(GPT.flops_per_token() − 6·V·d)·D", want, got, hint)
    # context ≠ d_model, so that each argument counts where it should
    got = _number(call(training_flops, n, D, n_layer=3, context=16, d_model=48),
                  "training_flops(N, D, n_layer=3, context=16, d_model=48)")
    want3 = reference_training_flops(n, D, 3, 16, 48)
    if _rel(got, want3) > 1e-9:
        swaps = {reference_training_flops(n, D, 3, 48, 48): "d_model is used where the context T belongs",
                 reference_training_flops(n, D, 3, 16, 16): "the context T is used where d_model belongs",
                 reference_training_flops(n, D, 1, 16, 48): "n_layer is ignored"}
        hint = next((h for v, h in swaps.items() if _rel(got, v) < 1e-9), "12·n_layer·context·d_model per "
                                                                          "token")
        raise _fail("training_flops(N, D, n_layer=3, context=16, d_model=48)", want3, got,
                    f"{hint}: the attention term is 12·n_layer·context·d_model·D")
    return ("6·N·D matches, and with the attention term it equals (GPT.flops_per_token() − 6·V·d_model)·D "
            f"= {want:.4g} for a 2-layer d_model=32 model, and 6·N·D + 12·n_layer·T·d_model·D for n_layer = "
            "3, T = 16, d_model = 48")


# ----------------------------------------------------------------------------------------------- TODO 3


def reference_power_law(x: Any, y: Any, offset: float = 0.0) -> tuple[float, float, float]:
    """(a, alpha, r2) of y − offset ≈ a·x^(−alpha): numpy.polyfit of log(y − offset) on log x;
    R² of that log."""
    u, v = np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float) - offset)
    slope, intercept = np.polyfit(u, v, 1)
    resid = v - (intercept + slope * u)
    r2 = 1.0 - float((resid**2).sum()) / float(((v - v.mean()) ** 2).sum())
    return float(math.exp(intercept)), float(-slope), r2


def _power_law_cases() -> list[tuple[str, np.ndarray, np.ndarray, float]]:
    rng = np.random.default_rng(16)
    n = np.geomspace(1e3, 1e6, 6)
    noisy = 4.0 * n**-0.07 * np.exp(rng.normal(0, 0.01, n.size))
    return [
        ("an exact law y = 5·x^-0.3 on x = 1e3..1e6", n, 5.0 * n**-0.3, 0.0),
        ("a noisy law y ≈ 4·x^-0.07 (1% multiplicative noise)", n, noisy, 0.0),
        ("measured-looking losses", np.array([1760, 3792, 6592, 14496, 25472, 56640.0]),
         np.array([2.53, 2.48, 2.43, 2.33, 2.23, 2.19]), 0.0),
        ("y = 1.5 + 3·x^-0.2 with offset=1.5", n, 1.5 + 3.0 * n**-0.2 * np.exp(rng.normal(0, 0.01, n.size)),
         1.5),
        ("a rising law y ≈ 0.02·x^0.7 (alpha = −0.7), like N*(C) across budgets",
         np.array([2e9, 4e9, 8e9, 1.6e10]), 0.02 * np.array([2e9, 4e9, 8e9, 1.6e10]) ** 0.7
         * np.exp(rng.normal(0, 0.05, 4)), 0.0),
    ]


@learner_check(3, "fit_power_law")
def check_fit_power_law(fit_power_law: Callable[[Any, Any], tuple[float, float, float]]) -> str:
    for what, x, y, offset in _power_law_cases():
        result = call(fit_power_law, x, y, offset=offset) if offset else call(fit_power_law, x, y)
        a, alpha, r2 = (_number(v, f"fit_power_law({what})[{i}]") for i, v in
                        enumerate(_tuple(result, 3, "fit_power_law", "a, alpha, r2")))
        ea, ealpha, er2 = reference_power_law(x, y, offset)
        if offset and abs(alpha - reference_power_law(x, y)[1]) < 1e-9:
            raise _fail(f"fit_power_law on {what}: alpha", ealpha, alpha,
                        "subtract the offset (the irreducible loss E) from y before taking the log")
        if abs(alpha - ealpha) > 1e-6 * max(1.0, abs(ealpha)):
            if abs(alpha + ealpha) < 1e-6 * max(1.0, abs(ealpha)) and ealpha < 0:
                hint = ("alpha = −slope keeps its sign: this law rises, so its alpha is negative; do not "
                        "take abs() or force alpha > 0")
            elif abs(alpha + ealpha) < 1e-6 * max(1.0, abs(ealpha)):
                hint = "alpha is MINUS the slope of log y on log x: y = a·x^(−alpha) falls when alpha > 0"
            else:
                slope_lin = np.polyfit(x, y, 1)[0]
                u, v = np.log(x), np.log(y - offset)
                du, dv = u - u.mean(), v - v.mean()
                semilog = np.polyfit(x, v, 1)[0]
                if offset and abs(alpha - reference_power_law(x, y + 2 * offset, offset)[1]) < 1e-9:
                    hint = ("subtract the offset (the irreducible loss E) from y: log(y − offset), not "
                            "log(y + offset)")
                elif abs(alpha + float((du * dv).sum() / (dv * dv).sum())) < 1e-6 * max(1.0, abs(ealpha)):
                    hint = ("regress log y on log x: slope = Σ(u−ū)(v−v̄) / Σ(u−ū)², not over Σ(v−v̄)² "
                            "(that is log x on log y)")
                elif abs(alpha + slope_lin) < 1e-6 or abs(alpha + semilog) < 1e-6:
                    hint = ("fit a straight line to (log x, log y), not to (x, y) or (x, log y): a power "
                            "law is a line only on log-log axes, and a linear-space fit is dominated by the "
                            "largest values"
                            + (" (your alpha matches a linear-space slope)" if abs(alpha + slope_lin) < 1e-6
                               else ""))
                else:
                    hint = ("alpha = −slope of the least-squares line of v = log(y − offset) on u = log x: "
                            "slope = Σ(u−ū)(v−v̄) / Σ(u−ū)²")
            raise _fail(f"fit_power_law on {what}: alpha", ealpha, alpha, hint)
        if _rel(a, ea) > 1e-6:
            hint = ("a = exp(intercept) of the line log y = log a − alpha·log x"
                    if abs(a - math.log(ea)) < 1e-6 * max(1.0, abs(math.log(ea))) else
                    "the prefactor a = exp(mean(log y) + alpha·mean(log x))")
            if _rel(a, math.exp(math.log10(ea))) < 1e-6:
                hint = ("you took log10, whose intercept is log10 a: use np.log (natural logs) throughout, "
                        "so that a = exp(intercept)")
            raise _fail(f"fit_power_law on {what}: a", ea, a, hint)
        if abs(r2 - er2) > 1e-6:
            raise _fail(f"fit_power_law on {what}: r2", er2, r2,
                        "R² = 1 − Σ(v − v̂)² / Σ(v − v̄)² with v = log y: measure the fit where it was "
                        "made, in log space")
    return ("(a, alpha, R²) match numpy.polyfit of log y on log x on an exact law, a noisy law, "
            "measured-looking losses, a law with an offset E and a rising law")


# ----------------------------------------------------------------------------------------------- TODO 4


def reference_isoflop_optimum(compute: float, n_params: Any, losses: Any) -> tuple[float, float, float]:
    """Parabola L = a·u² + b·u + c in u = ln N (numpy.polyfit); vertex u* = −b/2a; D* = C / (6·N*)."""
    u = np.log(np.asarray(n_params, dtype=float))
    a, b, c = np.polyfit(u, np.asarray(losses, dtype=float), 2)
    u_star = -b / (2 * a)
    n_opt = float(math.exp(u_star))
    return n_opt, float(compute / (6 * n_opt)), float(c - b * b / (4 * a))


def _isoflop_cases() -> list[tuple[str, float, np.ndarray, np.ndarray]]:
    n = np.geomspace(1e4, 1e6, 7)
    exact = 2.0 + 0.05 * (np.log(n) - math.log(8e4)) ** 2
    rng = np.random.default_rng(4)
    lop = np.array([1760, 3792, 6592, 14496, 25472.0])
    noisy = (2.6 + 0.08 * (np.log(lop) - math.log(5000)) ** 2 + rng.normal(0, 0.004, lop.size)
             + 0.01 * np.log(lop / 5000))
    return [
        ("an exact parabola in ln N with its minimum at N = 80 000", 1e15, n, exact),
        ("a noisy, lopsided IsoFLOP curve", 3e10, lop, noisy),
    ]


@learner_check(4, "isoflop_optimum")
def check_isoflop_optimum(isoflop_optimum: Callable[..., tuple[float, float, float]]) -> str:
    for what, C, n, loss in _isoflop_cases():
        got = _tuple(call(isoflop_optimum, C, n, loss), 3, "isoflop_optimum", "n_opt, d_opt, loss_opt")
        n_opt, d_opt, l_opt = (_number(v, f"isoflop_optimum({what})[{i}]") for i, v in enumerate(got))
        en, ed, el = reference_isoflop_optimum(C, n, loss)
        if _rel(n_opt, en) > 1e-6:
            d = C / (6 * n)
            dp = np.polyfit(np.log(d), loss, 2)
            d_vertex = math.exp(-dp[1] / (2 * dp[0]))
            lin = np.polyfit(n, loss, 2)
            if _rel(n_opt, d_vertex) < 1e-6 or _rel(n_opt, ed) < 1e-6:
                hint = ("that is D_opt, the optimum on the TOKENS axis; the IsoFLOP minimum is read on the "
                        "N axis: fit the parabola in ln N, N* = exp(−b/2a), then D* = C / (6·N*)")
            elif _rel(n_opt, -lin[1] / (2 * lin[0])) < 1e-6:
                hint = "fit the parabola in ln N, not in N: IsoFLOP curves are parabolas on a log-N axis"
            elif any(_rel(n_opt, float(v)) < 1e-9 for v in n):
                hint = "the vertex of the fitted parabola, not the best measured point: N* = exp(−b / (2a))"
            elif _rel(n_opt, math.exp(math.log10(en))) < 1e-6:
                hint = ("the parabola was fitted in log10 N but the vertex taken with exp: fit in u = "
                        "np.log(N) (natural log), N* = exp(−b / (2a))")
            elif _rel(n_opt, math.exp(-math.log(en))) < 1e-6:
                hint = "mind the sign: the vertex of a·u² + b·u + c is at u = −b / (2a)"
            else:
                hint = "np.polyfit(np.log(n_params), losses, 2) gives (a, b, c); N* = exp(−b / (2a))"
            raise _fail(f"isoflop_optimum on {what}: n_opt", en, n_opt, hint)
        if _rel(d_opt, ed) > 1e-6:
            raise _fail(f"isoflop_optimum on {what}: d_opt", ed, d_opt,
                        "D* follows from the budget: C = 6·N*·D*, so D* = C / (6·N*)")
        if abs(l_opt - el) > 1e-6:
            raise _fail(f"isoflop_optimum on {what}: loss_opt", el, l_opt,
                        "the loss at the vertex is c − b² / (4a), the fitted parabola's value at u*")
    concave = 3.0 - 0.05 * (np.log(np.geomspace(1e4, 1e6, 5)) - 11.0) ** 2
    try:
        got = call(isoflop_optimum, 1e15, np.geomspace(1e4, 1e6, 5), concave)
    except CheckFailed as err:
        expect("ValueError" in str(err), f"a concave curve raised something else: {err}",
               hint="raise ValueError when the fitted a <= 0 (no minimum)")
    else:
        raise _fail("isoflop_optimum on a concave curve (a maximum, no minimum)", "ValueError", got,
                    "when the fitted a <= 0 the parabola has no minimum: raise ValueError naming a")
    return ("N*, D* = C/(6N*) and the vertex loss match numpy.polyfit of a parabola in ln N on an exact and "
            "a noisy curve; a concave curve raises ValueError")


# ----------------------------------------------------------------------------------------------- TODO 5


def reference_chinchilla_loss(n_params: Any, n_tokens: Any, E: float = 1.69, A: float = 406.4,
                              B: float = 410.7, alpha: float = 0.34, beta: float = 0.28) -> Any:
    """L(N, D) = E + A / N^α + B / D^β (Hoffmann et al. 2022, §3.3, Eq. 2), elementwise."""
    n = np.asarray(n_params, dtype=float)
    d = np.asarray(n_tokens, dtype=float)
    return E + A / n**alpha + B / d**beta


@learner_check(5, "chinchilla_loss")
def check_chinchilla_loss(chinchilla_loss: Callable[..., Any]) -> str:
    points = [(70e9, 1.4e12), (280e9, 300e9), (1e6, 1e12), (1e12, 1e6)]
    for n, d in points:
        got = _number(call(chinchilla_loss, n, d), f"chinchilla_loss({n:g}, {d:g})")
        want = float(reference_chinchilla_loss(n, d))
        if abs(got - want) > 1e-9 * max(1.0, abs(want)):
            c = CHINCHILLA
            bugs = [
                (c["E"] + c["A"] / n ** c["beta"] + c["B"] / d ** c["alpha"],
                 "the exponents are swapped: α = 0.34 goes with N (the A "
                 "term), β = 0.28 with D (the B term)"),
                (c["E"] + c["B"] / n ** c["alpha"] + c["A"] / d ** c["beta"],
                 "A = 406.4 goes with N, B = 410.7 with D"),
                (c["A"] / n ** c["alpha"] + c["B"] / d ** c["beta"], "add the irreducible loss E = 1.69"),
                (c["E"] + c["A"] * n ** c["alpha"] + c["B"] * d ** c["beta"],
                 "the loss FALLS with N and D: divide by N^α and D^β"),
                (c["E"] + (c["A"] / n) ** c["alpha"] + (c["B"] / d) ** c["beta"],
                 "the exponent applies to N alone: A / N**alpha, not (A / N)**alpha"),
            ]
            hint = next((h for v, h in bugs if abs(got - v) < 1e-9 * max(1.0, abs(v))),
                        "L = E + A / N**alpha + B / D**beta with the defaults of the signature")
            raise _fail(f"chinchilla_loss(n_params={n:g}, n_tokens={d:g})", want, got, hint)
    n = np.geomspace(1e7, 1e11, 5)[:, None]
    d = np.geomspace(1e9, 1e13, 4)[None, :]
    want = reference_chinchilla_loss(n, d)
    try:
        got = call(chinchilla_loss, n, d)
    except CheckFailed as err:
        raise _fail("chinchilla_loss on a (5, 1) × (1, 4) grid of numpy arrays",
                    f"array of shape {want.shape}",
                    str(err).splitlines()[0],
                    "use elementwise numpy operations (**, /) so that arrays broadcast; "
                    "no math.pow or float()") from None
    if not isinstance(got, np.ndarray) or got.shape != want.shape or not np.allclose(got, want, rtol=1e-9):
        raise _fail("chinchilla_loss on a (5, 1) × (1, 4) grid of numpy arrays",
                    f"array of shape {want.shape}",
                    got, "use elementwise numpy operations (**, /) so that arrays "
                         "broadcast; no math.pow or float()")
    custom = dict(E=2.0, A=100.0, B=300.0, alpha=0.5, beta=0.3)  # another law: every argument counts
    got = _number(call(chinchilla_loss, 1e6, 1e9, **custom), "chinchilla_loss(1e6, 1e9, E=2, A=100, B=300, "
                                                             "alpha=0.5, beta=0.3)")
    want = float(reference_chinchilla_loss(1e6, 1e9, **custom))
    if abs(got - want) > 1e-9 * max(1.0, abs(want)):
        ignored = [k for k in custom if abs(got - float(reference_chinchilla_loss(
            1e6, 1e9, **{**custom, k: CHINCHILLA[k]}))) < 1e-9 * max(1.0, abs(want))]
        raise _fail("chinchilla_loss(1e6, 1e9, E=2, A=100, B=300, alpha=0.5, beta=0.3)", want, got,
                    (f"the argument {ignored[0]} is ignored (the published value is "
                     "hard-coded)" if ignored else
                     "use the arguments E, A, B, alpha, beta") + ": L = E + A / N**alpha + B / D**beta")
    e = float(reference_chinchilla_loss(70e9, 1.4e12))
    return (f"matches E + A/N^α + B/D^β at 4 points (Chinchilla 70B on 1.4T tokens: L = {e:.4f}) and on a "
            "broadcast grid")


# ----------------------------------------------------------------------------------------------- TODO 6


def numeric_chinchilla_optimal(compute: float, E: float = 1.69, A: float = 406.4, B: float = 410.7,
                               alpha: float = 0.34, beta: float = 0.28) -> tuple[float, float]:
    """Minimise L(N, C/(6N)) over ln N numerically (scipy's bounded Brent); returns (N*, D*)."""
    from scipy.optimize import minimize_scalar

    def loss(u: float) -> float:
        n = math.exp(u)
        return float(reference_chinchilla_loss(n, compute / (6 * n), E, A, B, alpha, beta))

    res = minimize_scalar(loss, bounds=(math.log(1.0), math.log(compute / 6)), method="bounded",
                          options={"xatol": 1e-10})
    n = math.exp(res.x)
    return n, compute / (6 * n)


@learner_check(6, "chinchilla_optimal")
def check_chinchilla_optimal(chinchilla_optimal: Callable[..., tuple[float, float]]) -> str:
    c = CHINCHILLA
    G = (c["alpha"] * c["A"] / (c["beta"] * c["B"])) ** (1 / (c["alpha"] + c["beta"]))
    a_exp, b_exp = c["beta"] / (c["alpha"] + c["beta"]), c["alpha"] / (c["alpha"] + c["beta"])
    for C in (1e18, 5.76e23, 1e26):
        n, d = (_number(v, f"chinchilla_optimal({C:g})[{i}]") for i, v in
                enumerate(_tuple(call(chinchilla_optimal, C), 2, "chinchilla_optimal", "n_opt, d_opt")))
        en, ed = numeric_chinchilla_optimal(C)
        if _rel(n, en) > 1e-4 or _rel(d, ed) > 1e-4:
            G_swapped = (c["beta"] * c["A"] / (c["alpha"] * c["B"])) ** (1 / (c["alpha"] + c["beta"]))
            if _rel(n, en) <= 1e-4:
                raise _fail(f"chinchilla_optimal({C:g}): d_opt", ed, d,
                            "N* is right; D* must spend the rest of the budget: D* = C / (6·N*)")
            bugs = [
                (G * C**a_exp, "use C/6, not C: the budget is C = 6·N·D, so N·D = C/6"),
                ((c["alpha"] * c["A"] / (c["beta"] * c["B"])) * (C / 6) ** a_exp,
                 "G = (αA / (βB))^(1/(α+β)): the exponent 1/(α+β) is missing"),
                (G_swapped * (C / 6) ** a_exp, "α and β are swapped inside G: G = (αA / (βB))^(1/(α+β))"),
                (G * (C / 6) ** b_exp,
                 "the exponents are swapped: N* ∝ (C/6)^(β/(α+β)), D* ∝ (C/6)^(α/(α+β))"),
                ((C / 6) ** a_exp / G, "G multiplies N* and divides D*: G = (αA / (βB))^(1/(α+β))"),
            ]
            hint = next((h for v, h in bugs if _rel(n, v) < 1e-6),
                        "set dL/dN = 0 along N·D = C/6: N* = G·(C/6)^(β/(α+β)), G = (αA/(βB))^(1/(α+β))")
            raise _fail(f"chinchilla_optimal({C:g}) vs a numerical minimisation of L(N, C/(6N))",
                        (en, ed), (n, d), hint)
        expect(_rel(6 * n * d, C) < 1e-6, f"chinchilla_optimal({C:g}): 6·N*·D* = {6 * n * d:.4g} ≠ C",
               hint="D* must spend the rest of the budget: D* = C / (6·N*)")
    custom = dict(E=2.0, A=100.0, B=300.0, alpha=0.5, beta=0.3)
    n, d = (_number(v, f"chinchilla_optimal(1e20, custom law)[{i}]") for i, v in
            enumerate(_tuple(call(chinchilla_optimal, 1e20, **custom), 2, "chinchilla_optimal",
                             "n_opt, d_opt")))
    en, ed = numeric_chinchilla_optimal(1e20, **custom)
    if _rel(n, en) > 1e-4 or _rel(d, ed) > 1e-4:
        raise _fail("chinchilla_optimal(1e20, E=2, A=100, B=300, alpha=0.5, beta=0.3) vs a numerical "
                    "minimisation",
                    (en, ed), (n, d), "use the arguments A, B, alpha, beta, not the published constants")
    n, d = _tuple(call(chinchilla_optimal, 5.76e23), 2, "chinchilla_optimal", "n_opt, d_opt")
    return (f"matches scipy's minimisation of L(N, C/6N) at C = 1e18, 5.76e23, 1e26 (Gopher's budget: "
            f"N* = {n / 1e9:.1f} B, D* = {d / 1e12:.2f} T, {d / n:.0f} tokens/parameter)")
