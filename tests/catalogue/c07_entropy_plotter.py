"""Mutation catalogue of 07_entropy_plotter (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.entropy_plotter import (
    check_distinct_n,
    check_entropy,
    check_repeated_ngram_rate,
    check_sample_next,
    check_temperature_softmax,
    check_top_k_filter,
    check_top_p_filter,
)

P = "07_entropy_plotter"
SAMPLER = ("temperature_softmax", "top_k_filter", "top_p_filter", "sample_next")

# temperature_softmax
SOFTMAX = "return torch.softmax(logits / temperature, dim=-1)"
# entropy
PLOGP = "torch.where(probs > 0, probs * probs.clamp_min(1e-45).log(), torch.zeros_like(probs))"
H_RET = "return -plogp.sum(dim=-1)"
# top_k_filter
CLAMP = "    k = min(k, logits.size(-1))\n"
TOPK = "indices = torch.topk(logits, k, dim=-1).indices"
KEEP = "keep = torch.zeros_like(logits, dtype=torch.bool).scatter(-1, indices, True)"
K_RET = 'return logits.masked_fill(~keep, float("-inf"))'
# top_p_filter
SORT = "sorted_logits, order = torch.sort(logits, dim=-1, descending=True)"
P_PROBS = "probs = torch.softmax(sorted_logits, dim=-1)"
MASS = "mass_before = probs.cumsum(dim=-1) - probs"
DROP = "drop_sorted = mass_before >= p"
UNSORT = "drop = drop_sorted.scatter(-1, order, drop_sorted)"
P_RET = 'return logits.masked_fill(drop, float("-inf"))'
# sample_next
SCALE = "z = logits / temperature  # (B, V)"
FILTERS = (
    "    if top_k is not None:\n        z = top_k_filter(z, top_k)\n"
    "    if top_p is not None:\n        z = top_p_filter(z, top_p)\n"
)
FINAL = "probs = temperature_softmax(z, 1.0)"
DRAW = "ids = torch.multinomial(probs, 1, generator=generator).squeeze(-1)"
# distinct_n
GRAMS = "grams = [tuple(seq[i : i + n]) for seq in sequences for i in range(len(seq) - n + 1)]"
D_RET = "return len(set(grams)) / len(grams) if grams else 0.0"
# repeated_ngram_rate
R_GRAMS = "grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]"
R_RET = "return 1.0 - len(set(grams)) / len(grams) if grams else 0.0"

CATALOGUE = [
    Todo(
        P,
        1,
        check_temperature_softmax,
        ("temperature_softmax",),
        mutants=[
            Mutant(
                "multiplied by the temperature",
                "scale",
                [("logits / temperature", "logits * temperature")],
                ("multiplied by T", "divide"),
            ),
            Mutant(
                "exp without the max subtracted",
                "stability",
                [(SOFTMAX, "e = torch.exp(logits / temperature)\n    return e / e.sum(-1, keepdim=True)")],
                ("subtract each row's max",),
            ),
            Mutant(
                "softmax over dim 0", "axis", [(SOFTMAX, SOFTMAX.replace("dim=-1", "dim=0"))], ("wrong dim",)
            ),
            Mutant(
                "temperature ignored",
                "argument",
                [("torch.softmax(logits / temperature", "torch.softmax(logits")],
                ("temperature was ignored",),
            ),
            Mutant(
                "logits divided in place",
                "in-place",
                [(SOFTMAX, "logits /= temperature\n    return torch.softmax(logits, dim=-1)")],
                ("in-place",),
            ),
            Mutant(
                "log_softmax",
                "logic",
                [(SOFTMAX, SOFTMAX.replace("torch.softmax", "torch.log_softmax"))],
                ("log-probabilities",),
            ),
            Mutant(
                "softmax over dim 1", "shape", [(SOFTMAX, SOFTMAX.replace("dim=-1", "dim=1"))], ("LAST dim",)
            ),
            Mutant(
                "probabilities to the power 1/T, not renormalised",
                "scale",
                [(SOFTMAX, "return torch.softmax(logits, dim=-1) ** (1 / temperature)")],
                ("renormalised",),
            ),
        ],
        correct=[
            Correct(
                "exp of the shifted logits",
                [
                    (
                        SOFTMAX,
                        "z = logits / temperature\n"
                        "    e = torch.exp(z - z.max(dim=-1, keepdim=True).values)\n"
                        "    return e / e.sum(dim=-1, keepdim=True)",
                    )
                ],
            ),
            Correct("exp of log_softmax", [(SOFTMAX, "return (logits / temperature).log_softmax(-1).exp()")]),
            Correct(
                "probabilities to the power 1/T, renormalised",
                [
                    (
                        SOFTMAX,
                        "q = torch.softmax(logits, dim=-1) ** (1 / temperature)\n"
                        "    return q / q.sum(dim=-1, keepdim=True)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_entropy,
        ("entropy",),
        mutants=[
            Mutant(
                "bits",
                "scale",
                [("probs.clamp_min(1e-45).log()", "probs.clamp_min(1e-45).log2()")],
                ("bits (log2)", "nats"),
            ),
            Mutant("no 0 log 0 guard", "stability", [(PLOGP, "probs * probs.log()")], ("0 · log 0", "NaN")),
            Mutant("sign flipped", "scale", [(H_RET, "return plogp.sum(dim=-1)")], ("sign is flipped",)),
            Mutant(
                "log10",
                "scale",
                [("probs.clamp_min(1e-45).log()", "probs.clamp_min(1e-45).log10()")],
                ("log10",),
            ),
            Mutant(
                "mean over the vocabulary",
                "scale",
                [(H_RET, "return -plogp.mean(dim=-1)")],
                ("took their mean",),
            ),
            Mutant("keepdim", "shape", [(H_RET, "return -plogp.sum(dim=-1, keepdim=True)")], ("no keepdim",)),
            Mutant("sum over everything", "axis", [(H_RET, "return -plogp.sum()")], ("last dimension only",)),
            Mutant(
                "zeros patched in place",
                "in-place",
                [("plogp = " + PLOGP, "probs[probs == 0] = 1.0\n    plogp = probs * probs.log()")],
                ("caller's probs", "in place"),
            ),
        ],
        correct=[
            Correct("xlogy", [(PLOGP, "torch.special.xlogy(probs, probs)")]),
            Correct("eps inside the log", [(PLOGP, "probs * (probs + 1e-12).log()")]),
            Correct("nan_to_num", [(PLOGP, "torch.nan_to_num(probs * probs.log())")]),
            Correct(
                "where around an unguarded log", [(PLOGP, "torch.where(probs > 0, probs * probs.log(), 0.0)")]
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_top_k_filter,
        ("top_k_filter",),
        mutants=[
            Mutant(
                "ties at the k-th value kept",
                "branch",
                [(KEEP, "keep = logits >= torch.topk(logits, k, dim=-1).values[..., -1:]")],
                ("ties at the k-th value must not add tokens",),
            ),
            Mutant(
                "strictly greater than the k-th value",
                "off-by-one",
                [(KEEP, "keep = logits > torch.topk(logits, k, dim=-1).values[..., -1:]")],
                ("k-th largest logit itself was removed", ">="),
            ),
            Mutant(
                "k - 1 tokens",
                "off-by-one",
                [
                    (
                        "indices = torch.topk(logits, k, dim=-1)",
                        "indices = torch.topk(logits, max(k - 1, 1), dim=-1)",
                    )
                ],
                ("tokens kept per row",),
            ),
            Mutant("k not clamped to V", "validation", [(CLAMP, "")], ("k = min(k, logits.size(-1))",)),
            Mutant(
                "masked_fill_ in place",
                "in-place",
                [(K_RET, K_RET.replace("masked_fill(", "masked_fill_("))],
                ("in-place",),
            ),
            Mutant(
                "top k over dim 0",
                "axis",
                [(TOPK, "indices = torch.topk(logits, k, dim=0).indices")],
                ("wrong dim",),
            ),
            Mutant(
                "removed tokens set to 0",
                "logic",
                [(K_RET, "return logits.masked_fill(~keep, 0.0)")],
                ("-inf",),
            ),
            Mutant(
                "V from logits.size(1)",
                "shape",
                [(CLAMP, "    k = min(k, logits.size(1))\n")],
                ("logits.size(-1)",),
            ),
        ],
        correct=[
            Correct(
                "sort and scatter the first k",
                [(TOPK, "indices = torch.sort(logits, dim=-1, descending=True).indices[..., :k]")],
            ),
            Correct(
                "scatter the top-k values into -inf",
                [
                    (
                        KEEP + "  # (..., V)\n    " + K_RET,
                        "top = torch.topk(logits, k, dim=-1)\n"
                        '    return torch.full_like(logits, float("-inf"))'
                        ".scatter(-1, top.indices, top.values)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_top_p_filter,
        ("top_p_filter",),
        mutants=[
            Mutant(
                "crossing token dropped",
                "off-by-one",
                [(DROP, "drop_sorted = probs.cumsum(-1) > p")],
                ("token that crosses p was dropped",),
            ),
            Mutant(
                "mass summed in vocabulary order",
                "logic",
                [
                    (
                        "    " + UNSORT + "  # (..., V) back in vocabulary order\n",
                        "    vocab_probs = torch.softmax(logits, dim=-1)\n"
                        "    drop = vocab_probs.cumsum(-1) - vocab_probs >= p\n",
                    )
                ],
                ("vocabulary order", "torch.sort"),
            ),
            Mutant(
                "decision left in sorted order",
                "logic",
                [(UNSORT, "drop = drop_sorted")],
                ("keeps the wrong tokens",),
            ),
            Mutant(
                "boundary mass_before > p",
                "off-by-one",
                [(DROP, "drop_sorted = mass_before > p")],
                ("exactly p", ">= p"),
            ),
            Mutant("p hard-coded", "argument", [(DROP, "drop_sorted = mass_before >= 0.9")], ("p argument",)),
            Mutant(
                "ascending sort",
                "logic",
                [(SORT, SORT.replace("descending=True", "descending=False"))],
                ("DESCENDING",),
            ),
            Mutant(
                "unsorted with gather",
                "logic",
                [(UNSORT, "drop = drop_sorted.gather(-1, order)")],
                ("gather", "scatter"),
            ),
            Mutant(
                "masked_fill_ in place",
                "in-place",
                [(P_RET, P_RET.replace("masked_fill(", "masked_fill_("))],
                ("in-place",),
            ),
            Mutant(
                "softmax over dim 0",
                "axis",
                [(P_PROBS, "probs = torch.softmax(sorted_logits, dim=0)")],
                ("not over the rows",),
            ),
        ],
        correct=[
            Correct(
                "softmax first, then sort the probabilities",
                [
                    (
                        SORT + "  # (..., V)\n    " + P_PROBS,
                        "probs, order = torch.sort(torch.softmax(logits, dim=-1), dim=-1, descending=True)",
                    )
                ],
            ),
            Correct(
                "shifted cumsum mask",
                [
                    (
                        MASS + "  # (..., V) mass of the more likely tokens\n    " + DROP,
                        "drop_sorted = probs.cumsum(dim=-1) >= p\n"
                        "    drop_sorted[..., 1:] = drop_sorted[..., :-1].clone()\n"
                        "    drop_sorted[..., 0] = False",
                    )
                ],
            ),
            Correct(
                "unsort with argsort and gather",
                [(UNSORT, "drop = drop_sorted.gather(-1, order.argsort(dim=-1))")],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_sample_next,
        SAMPLER,
        mutants=[
            Mutant(
                "no greedy branch",
                "branch",
                [("    if temperature == 0:\n", "    if temperature < 0:\n")],
                ("temperature 0 means greedy",),
            ),
            Mutant(
                "multiplied by the temperature",
                "scale",
                [("z = logits / temperature", "z = logits * temperature")],
                ("argmax",),
            ),
            Mutant(
                "filters before the temperature",
                "logic",
                [
                    ("    " + SCALE + "\n", "    z = logits\n"),
                    ("    " + FINAL, "    probs = temperature_softmax(z, temperature)"),
                ],
                ("filters ran before the temperature",),
            ),
            Mutant(
                "sampled from the unfiltered distribution",
                "logic",
                [
                    (
                        "ids = torch.multinomial(probs, 1, generator=generator)",
                        "ids = torch.multinomial(temperature_softmax(logits, temperature), 1, "
                        "generator=generator)",
                    )
                ],
                ("only the argmax survives the filter",),
            ),
            Mutant(
                "generator ignored",
                "argument",
                [
                    (
                        "ids = torch.multinomial(probs, 1, generator=generator)",
                        "ids = torch.multinomial(probs, 1)",
                    )
                ],
                ("generator=generator",),
            ),
            Mutant(
                "a generator of its own",
                "argument",
                [("generator=generator).squeeze", "generator=torch.Generator().manual_seed(0)).squeeze")],
                ("ignore the generator",),
            ),
            Mutant(
                "top-p before top-k",
                "logic",
                [
                    (
                        FILTERS,
                        "    if top_p is not None:\n        z = top_p_filter(z, top_p)\n"
                        "    if top_k is not None:\n        z = top_k_filter(z, top_k)\n",
                    )
                ],
                ("top-k first",),
            ),
            Mutant(
                "ids not squeezed",
                "shape",
                [(DRAW, "ids = torch.multinomial(probs, 1, generator=generator)")],
                ("squeeze(-1)",),
            ),
            Mutant(
                "temperature applied twice",
                "scale",
                [(FINAL, "probs = temperature_softmax(z, temperature)")],
                ("applied twice",),
            ),
            Mutant(
                "logits divided in place",
                "in-place",
                [(SCALE, "logits /= temperature\n    z = logits")],
                ("in-place",),
            ),
            Mutant(
                "argmax instead of sampling",
                "logic",
                [(DRAW, "ids = probs.argmax(dim=-1)")],
                ("torch.multinomial",),
            ),
            Mutant(
                "greedy distribution not one-hot",
                "branch",
                [
                    (
                        "return ids, torch.nn.functional.one_hot(ids, logits.size(-1)).to(logits.dtype)",
                        "return ids, torch.softmax(logits, dim=-1)",
                    )
                ],
                ("one-hot at the argmax",),
            ),
        ],
        correct=[
            Correct(
                "multinomial with num_samples and [:, 0]",
                [(DRAW, "ids = torch.multinomial(probs, num_samples=1, generator=generator)[:, 0]")],
            ),
            Correct(
                "inverse-CDF sampling with torch.rand",
                [
                    (
                        DRAW,
                        "u = torch.rand(probs.size(0), 1, generator=generator)\n"
                        "    ids = (probs.cumsum(-1) < u).sum(-1).clamp(max=probs.size(-1) - 1)",
                    )
                ],
            ),
            Correct(
                "greedy one-hot with scatter",
                [
                    (
                        "torch.nn.functional.one_hot(ids, logits.size(-1)).to(logits.dtype)",
                        "torch.zeros_like(logits).scatter(-1, ids[:, None], 1.0)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        6,
        check_distinct_n,
        ("distinct_n",),
        mutants=[
            Mutant(
                "divided by the unique count",
                "scale",
                [("len(set(grams)) / len(grams)", "len(set(grams)) / len(set(grams))")],
                ("not the number of unique ones",),
            ),
            Mutant(
                "n-grams across sequence boundaries",
                "logic",
                [
                    (
                        GRAMS,
                        "joined = [t for seq in sequences for t in seq]\n"
                        "    grams = [tuple(joined[i : i + n]) for i in range(len(joined) - n + 1)]",
                    )
                ],
                ("must not cross from one sequence into the next",),
            ),
            Mutant(
                "divided by the number of tokens",
                "scale",
                [
                    (
                        "len(set(grams)) / len(grams) if grams",
                        "len(set(grams)) / sum(len(s) for s in sequences) if grams",
                    )
                ],
                ("not the number of tokens",),
            ),
            Mutant(
                "last n-gram missed",
                "off-by-one",
                [("range(len(seq) - n + 1)", "range(len(seq) - n)")],
                ("off by one",),
            ),
            Mutant(
                "n-grams as lists",
                "dtype",
                [("grams = [tuple(seq[i : i + n])", "grams = [seq[i : i + n]")],
                ("tuple",),
            ),
            Mutant(
                "no guard for zero n-grams",
                "branch",
                [(D_RET, "return len(set(grams)) / len(grams)")],
                ("return 0.0",),
            ),
            Mutant(
                "mean of per-sequence ratios",
                "logic",
                [
                    (
                        GRAMS + "\n    " + D_RET,
                        "ratios = []\n    for seq in sequences:\n"
                        "        grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]\n"
                        "        if grams:\n            ratios.append(len(set(grams)) / len(grams))\n"
                        "    return sum(ratios) / len(ratios) if ratios else 0.0",
                    )
                ],
                ("pool",),
            ),
            Mutant(
                "integer division",
                "dtype",
                [("len(set(grams)) / len(grams)", "len(set(grams)) // len(grams)")],
                ("integer division",),
            ),
            Mutant(
                "bigrams whatever n",
                "argument",
                [
                    (
                        GRAMS,
                        "grams = [tuple(seq[i : i + 2]) for seq in sequences for i in range(len(seq) - 1)]",
                    )
                ],
                ("argument n",),
            ),
        ],
        correct=[
            Correct(
                "Counter of zip n-grams",
                [(GRAMS, "grams = [g for seq in sequences for g in zip(*(seq[i:] for i in range(n)))]")],
            ),
            Correct(
                "a set and a count in a loop",
                [
                    (
                        GRAMS + "\n    " + D_RET,
                        "seen, total = set(), 0\n    for seq in sequences:\n"
                        "        for i in range(len(seq) - n + 1):\n"
                        "            seen.add(tuple(seq[i : i + n]))\n            total += 1\n"
                        "    return len(seen) / total if total else 0.0",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        7,
        check_repeated_ngram_rate,
        ("repeated_ngram_rate",),
        mutants=[
            Mutant(
                "first occurrences counted",
                "logic",
                [(R_RET, "return sum(grams.count(g) > 1 for g in grams) / len(grams) if grams else 0.0")],
                ("first occurrence of an n-gram is not a repeat",),
            ),
            Mutant(
                "divided by the unique count",
                "scale",
                [(R_RET, "return (len(grams) - len(set(grams))) / len(set(grams)) if grams else 0.0")],
                ("not by the number of unique ones",),
            ),
            Mutant(
                "distinct-n returned",
                "logic",
                [("return 1.0 - len(set(grams))", "return len(set(grams))")],
                ("that is distinct-n",),
            ),
            Mutant(
                "last n-gram missed",
                "off-by-one",
                [("range(len(tokens) - n + 1)", "range(len(tokens) - n)")],
                ("off by one",),
            ),
            Mutant(
                "no guard for zero n-grams",
                "branch",
                [(R_RET, "return 1.0 - len(set(grams)) / len(grams)")],
                ("return 0.0",),
            ),
            Mutant(
                "n-grams as lists",
                "dtype",
                [("grams = [tuple(tokens[i : i + n])", "grams = [tokens[i : i + n]")],
                ("tuple",),
            ),
            Mutant(
                "integer division",
                "dtype",
                [("len(set(grams)) / len(grams)", "len(set(grams)) // len(grams)")],
                ("integer division",),
            ),
        ],
        correct=[
            Correct(
                "a seen-set in a loop",
                [
                    (
                        R_RET,
                        "seen, repeats = set(), 0\n    for g in grams:\n        repeats += g in seen\n"
                        "        seen.add(g)\n    return repeats / len(grams) if grams else 0.0",
                    )
                ],
            ),
        ],
    ),
]
