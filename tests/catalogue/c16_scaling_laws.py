"""Mutation catalogue of 16_scaling_laws (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.scaling_laws import (
    check_chinchilla_loss,
    check_chinchilla_optimal,
    check_fit_power_law,
    check_isoflop_optimum,
    check_non_embedding_params,
    check_training_flops,
)

P = "16_scaling_laws"

DFB = "d, f, b = cfg.d_model, cfg.ff_dim, int(cfg.bias)"
LN = "layernorm = d + d * b  # gain (+ bias)"
ATT = "attention = 4 * d * d + 4 * d * b  # c_attn (d -> 3d) and c_proj (d -> d)"
MLP = "mlp = 2 * d * f + (f + d) * b  # c_fc (d -> f) and c_proj (f -> d)"
TOTAL = "return cfg.n_layer * (2 * layernorm + attention + mlp) + layernorm"
PER_TOKEN = "per_token = 6.0 * n_params + 12.0 * n_layer * context * d_model"
U = "u = np.log(np.asarray(x, dtype=float))"
V = "v = np.log(np.asarray(y, dtype=float) - offset)"
SLOPE = "slope = float((du * dv).sum() / (du * du).sum())"
LOG_A = "log_a = float(v.mean() - slope * u.mean())"
R2 = "r2 = 1.0 - float(((v - (log_a + slope * u)) ** 2).sum()) / float((dv * dv).sum())"
RET3 = "return math.exp(log_a), -slope, r2"
UN = "u = np.log(np.asarray(n_params, dtype=float))"
FIT = "a, b, c = np.polyfit(u, np.asarray(losses, dtype=float), 2)"
N_OPT = "n_opt = math.exp(-b / (2 * a))"
RET4 = "return n_opt, compute / (6 * n_opt), float(c - b * b / (4 * a))"
LAW = "return E + A / n**alpha + B / d**beta"
G = "G = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))"
NO = "n_opt = G * (compute / 6) ** (beta / (alpha + beta))"
DO = "d_opt = (compute / 6) ** (alpha / (alpha + beta)) / G"

CATALOGUE = [
    Todo(P, 1, check_non_embedding_params, ("non_embedding_params",), mutants=[
        Mutant("embeddings counted", "logic",
               [("+ mlp) + layernorm", "+ mlp) + layernorm + (cfg.vocab_size + cfg.block_size) * d")],
               ("token and position embeddings", "excludes")),
        Mutant("Kaplan's approximation", "logic", [(TOTAL, "return 12 * cfg.n_layer * d * d")],
               ("12·n_layer·d_model²", "biases")),
        Mutant("final LayerNorm missing", "off-by-one", [("+ mlp) + layernorm", "+ mlp)")],
               ("ln_f is missing",)),
        Mutant("MLP width hard-coded to 4·d", "argument",
               [(DFB, "d, f, b = cfg.d_model, 4 * cfg.d_model, int(cfg.bias)")],
               ("cfg.ff_dim",)),
        Mutant("biases always counted", "branch", [(DFB, "d, f, b = cfg.d_model, cfg.ff_dim, 1")],
               ("cfg.bias",)),
        Mutant("one LayerNorm per block", "off-by-one",
               [(TOTAL, "return cfg.n_layer * (layernorm + attention + mlp) + layernorm")],
               ("two LayerNorms",)),
        Mutant("attention biases of two d-vectors", "logic",
               [(ATT, "attention = 4 * d * d + 2 * d * b")], ("3·d",)),
        Mutant("untied head counted", "branch",
               [(TOTAL, "return cfg.n_layer * (2 * layernorm + attention + mlp) + layernorm + (0 if "
                        "cfg.tie_embeddings else cfg.vocab_size * d)")],
               ("untied lm_head",)),
    ], correct=[
        Correct("one closed form",
                [(TOTAL, "return cfg.n_layer * (4 * d * d + 2 * d * f + 2 * d + b * (7 * d + f)) + d * (1 + "
                         "b)")]),
        Correct("counted per Linear and LayerNorm", [
            (TOTAL, "linears = [(d, 3 * d), (d, d), (d, f), (f, d)]\n"
                    "    per_block = sum(i * o + o * b for i, o in linears) + 2 * layernorm\n"
                    "    return cfg.n_layer * per_block + layernorm")]),
    ]),
    Todo(P, 2, check_training_flops, ("training_flops",), mutants=[
        Mutant("forward pass only", "scale", [("per_token = 6.0 * n_params", "per_token = 2.0 * n_params")],
               ("forward pass only", "6·N·D")),
        Mutant("half the attention term", "scale", [("12.0 * n_layer", "6.0 * n_layer")],
               ("12·n_layer·context·d_model", "only one of the two products")),
        Mutant("attention term missing", "branch", [(" + 12.0 * n_layer * context * d_model", "")],
               ("you left it out",)),
        Mutant("multiply-adds counted as one FLOP", "scale",
               [("per_token = 6.0 * n_params", "per_token = 3.0 * n_params")], ("2 FLOPs",)),
        Mutant("attention term not per token", "logic",
               [(PER_TOKEN, "per_token = 6.0 * n_params"),
                ("return per_token * n_tokens",
                 "return per_token * n_tokens + 12.0 * n_layer * context * d_model")],
               ("per token",)),
        Mutant("d_model used for the context", "argument",
               [(PER_TOKEN, "per_token = 6.0 * n_params + 12.0 * n_layer * d_model * d_model")],
               ("context",)),
        Mutant("tokens ignored", "argument", [("return per_token * n_tokens", "return per_token")],
               ("n_tokens",)),
    ], correct=[
        Correct("two terms", [(PER_TOKEN, "per_token = None"),
                              ("return per_token * n_tokens",
                               "return 6 * n_params * n_tokens + 12 * n_layer * context * d_model * "
                               "n_tokens")]),
        Correct("forward times three",
                [(PER_TOKEN, "forward = 2.0 * n_params + 4.0 * n_layer * context * d_model\n"
                                                    "    per_token = 3 * forward")]),
    ]),
    Todo(P, 3, check_fit_power_law, ("fit_power_law",), mutants=[
        Mutant("fit in linear space", "logic",
               [(U, "u = np.asarray(x, dtype=float)"), (V, "v = np.asarray(y, dtype=float) - offset")],
               ("(log x, log y)", "linear-space slope")),
        Mutant("semilog fit", "logic", [(U, "u = np.asarray(x, dtype=float)")],
               ("a power law is a line only on log-log axes",)),
        Mutant("alpha with the slope's sign", "scale", [(RET3, "return math.exp(log_a), slope, r2")],
               ("MINUS the slope",)),
        Mutant("alpha forced positive", "scale", [(RET3, "return math.exp(log_a), abs(slope), r2")],
               ("this law rises", "abs()")),
        Mutant("offset ignored", "argument", [(V, "v = np.log(np.asarray(y, dtype=float))")],
               ("subtract the offset",)),
        Mutant("log of the prefactor returned", "scale", [(RET3, "return log_a, -slope, r2")],
               ("a = exp(intercept)",)),
        Mutant("offset added", "scale", [(V, "v = np.log(np.asarray(y, dtype=float) + offset)")],
               ("subtract the offset",)),
        Mutant("x regressed on y", "axis", [(SLOPE, "slope = float((du * dv).sum() / (dv * dv).sum())")],
               ("Σ(u−ū)²",)),
        Mutant("base-10 logs", "scale",
               [(U, "u = np.log10(np.asarray(x, dtype=float))"),
                (V, "v = np.log10(np.asarray(y, dtype=float) - offset)")],
               ("log10",)),
        Mutant("intercept with the wrong sign", "scale",
               [(LOG_A, "log_a = float(v.mean() + slope * u.mean())")],
               ("prefactor",)),
        Mutant("R² over the spread of x", "axis",
               [(R2, "r2 = 1.0 - float(((v - (log_a + slope * u)) ** 2).sum()) / float((du * du).sum())")],
               ("R²",)),
    ], correct=[
        Correct("np.polyfit", [(SLOPE, "slope, _ = np.polyfit(u, v, 1)\n    slope = float(slope)")]),
        Correct("R² as the squared correlation", [(R2, "r2 = float(np.corrcoef(u, v)[0, 1] ** 2)")]),
        Correct("scipy linregress", [(SLOPE, "from scipy.stats import linregress\n"
                                             "    slope = float(linregress(u, v).slope)")]),
    ]),
    Todo(P, 4, check_isoflop_optimum, ("isoflop_optimum",), mutants=[
        Mutant("minimum read on the tokens axis", "axis",
               [(UN, "u = np.log(compute / (6 * np.asarray(n_params, dtype=float)))")],
               ("that is D_opt", "N axis")),
        Mutant("parabola in N", "logic", [(UN, "u = np.asarray(n_params, dtype=float)"),
                                          (N_OPT, "n_opt = -b / (2 * a)")], ("not in N",)),
        Mutant("vertex sign", "scale", [(N_OPT, "n_opt = math.exp(b / (2 * a))")], ("mind the sign",)),
        Mutant("D without the six", "scale", [("compute / (6 * n_opt)", "compute / n_opt")],
               ("D* = C / (6·N*)",)),
        Mutant("concave curve accepted", "validation", [("    if a <= 0:\n", "    if a <= -math.inf:\n")],
               ("no minimum", "ValueError")),
        Mutant("best measured point", "logic",
               [(N_OPT, "n_opt = float(np.asarray(n_params, dtype=float)[np.argmin(losses)])")],
               ("not the best measured point",)),
        Mutant("smallest measured loss", "logic",
               [(RET4, "return n_opt, compute / (6 * n_opt), float(np.min(losses))")],
               ("c − b² / (4a)",)),
        Mutant("vertex loss sign", "scale",
               [(RET4, "return n_opt, compute / (6 * n_opt), float(c + b * b / (4 * a))")],
               ("c − b² / (4a)",)),
        Mutant("coefficients read in the wrong order", "axis",
               [(FIT, "c, b, a = np.polyfit(u, np.asarray(losses, dtype=float), 2)")], ("(a, b, c)",)),
        Mutant("base-10 log", "scale", [(UN, "u = np.log10(np.asarray(n_params, dtype=float))")], ("log10",)),
    ], correct=[
        Correct("vertex by polyval", [(RET4, "u_star = -b / (2 * a)\n"
                                             "    return n_opt, compute / 6 / n_opt, float(np.polyval([a, "
                                             "b, c], u_star))")]),
        Correct("vertex as the derivative's root",
                [(N_OPT, "n_opt = math.exp(float(np.roots(np.polyder([a, b, c]))[0]))")]),
    ]),
    Todo(P, 5, check_chinchilla_loss, ("chinchilla_loss",), mutants=[
        Mutant("exponents swapped", "logic", [("A / n**alpha + B / d**beta", "A / n**beta + B / d**alpha")],
               ("exponents are swapped",)),
        Mutant("irreducible loss missing", "logic", [("return E + A / n**alpha", "return A / n**alpha")],
               ("irreducible loss E",)),
        Mutant("A and B swapped", "logic", [(LAW, "return E + B / n**alpha + A / d**beta")], ("A = 406.4",)),
        Mutant("multiplied by the powers", "scale", [(LAW, "return E + A * n**alpha + B * d**beta")],
               ("FALLS",)),
        Mutant("E hard-coded", "argument", [(LAW, "return 1.69 + A / n**alpha + B / d**beta")], ("E",)),
        Mutant("exponents hard-coded", "argument", [(LAW, "return E + A / n**0.34 + B / d**0.28")],
               ("alpha", "beta")),
        Mutant("exponent on the ratio", "scale", [(LAW, "return E + (A / n) ** alpha + (B / d) ** beta")],
               ("N**alpha",)),
        Mutant("scalar-only math", "shape", [
            ("n = np.asarray(n_params, dtype=float)", "n = float(n_params)"),
            ("d = np.asarray(n_tokens, dtype=float)", "d = float(n_tokens)"),
        ], ("elementwise numpy",)),
    ], correct=[
        Correct("exp of logs",
                [(LAW, "return E + A * np.exp(-alpha * np.log(n)) + B * np.exp(-beta * np.log(d))")]),
        Correct("np.power", [(LAW, "return E + A * np.power(n, -alpha) + B * np.power(d, -beta)")]),
    ]),
    Todo(P, 6, check_chinchilla_optimal, ("chinchilla_optimal",), mutants=[
        Mutant("C instead of C/6", "scale", [("n_opt = G * (compute / 6) **", "n_opt = G * compute **"),
                                             ("d_opt = (compute / 6) **", "d_opt = compute **")],
                                             ("use C/6, not C",)),
        Mutant("exponents swapped", "logic", [(NO, "n_opt = G * (compute / 6) ** (alpha / (alpha + beta))"),
                                              (DO, "d_opt = (compute / 6) ** (beta / (alpha + beta)) / G")],
               ("exponents are swapped",)),
        Mutant("G inverted", "logic", [("n_opt = G * (compute / 6)", "n_opt = (1 / G) * (compute / 6)"),
                                       ("** (alpha / (alpha + beta)) / G",
                                        "** (alpha / (alpha + beta)) * G")],
               ("G multiplies N*",)),
        Mutant("G without its exponent", "scale", [(G, "G = alpha * A / (beta * B)")], ("1/(α+β)",)),
        Mutant("constants hard-coded", "argument",
               [(G, "G = (0.34 * 406.4 / (0.28 * 410.7)) ** (1.0 / (0.34 + 0.28))")], ("arguments",)),
        Mutant("D from the budget without the six", "scale", [(DO, "d_opt = compute / n_opt")],
               ("C / (6·N*)",)),
        Mutant("alpha and beta swapped in G", "logic",
               [(G, "G = (beta * A / (alpha * B)) ** (1.0 / (alpha + beta))")],
               ("G = (αA / (βB))",)),
    ], correct=[
        Correct("D from the budget", [(DO, "d_opt = compute / (6 * n_opt)")]),
        Correct("logs",
                [(NO, "n_opt = math.exp(math.log(G) + beta / (alpha + beta) * math.log(compute / 6))")]),
    ]),
]
