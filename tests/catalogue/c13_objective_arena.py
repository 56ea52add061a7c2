"""Mutation catalogue of 13_objective_arena (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.objective_arena import (
    check_causal_lm_batch,
    check_lm_loss,
    check_masked_lm_batch,
    check_prefix_lm_batch,
    check_prefix_lm_mask,
)

P = "13_objective_arena"

X = "x = windows[:, :-1]  # (B, T)"
Y = "y = windows[:, 1:]  # (B, T), shifted left by one"
CLONE = "x = tokens.clone().long()  # (B, T)"
SELECT = "selected = torch.rand(tokens.shape, generator=generator) < mask_prob  # (B, T)"
R = "r = torch.rand(tokens.shape, generator=generator)  # (B, T), one draw decides the 80/10/10\n"
RANDOM = "to_random = selected & (r >= 0.8) & (r < 0.9)"
MASK_LINE = "return (j <= i) | ((i < p) & (j < p))"
P_LINE = "p = prefix_len[:, None, None] if isinstance(prefix_len, torch.Tensor) else prefix_len"
BATCH = "x, y = windows[:, :-1], windows[:, 1:].clone()  # (B, T), (B, T)"
IGNORE = "y[:, : prefix_len - 1] = IGNORE_INDEX"
LOGP = "logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)"
NLL = "nll = -logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)"
MEAN = "return nll[keep].mean()"

CATALOGUE = [
    Todo(P, 1, check_causal_lm_batch, ("causal_lm_batch",), mutants=[
        Mutant("targets not shifted", "off-by-one", [(Y, "y = windows[:, :-1]  #")],
               ("copy its input", "shift by one")),
        Mutant("inputs and targets swapped", "logic",
               [(X, "x = windows[:, 1:]  #"), (Y, "y = windows[:, :-1]  #")], ("PREVIOUS token",)),
        Mutant("sliced along the batch axis", "axis",
               [(X, "x = windows[:-1]  # (B, T)"), (Y, "y = windows[1:]  #")], ("time axis",)),
        Mutant("targets shifted by two", "off-by-one", [(Y, "y = windows[:, 2:]  #")], ("w[:, 1:]",)),
        Mutant("length hard-coded", "shape", [(X, "x = windows[:, :8]  # (B, T)"),
               (Y, "y = windows[:, 1:9]  #")],
               ("w[:, :-1]",)),
        Mutant("inputs cast to float", "dtype", [(X, "x = windows[:, :-1].float()  # (B, T)")], ("long",)),
        Mutant("rows squeezed", "shape",
               [(X, "x = windows[:, :-1].squeeze()  # (B, T)"), (Y, "y = windows[:, 1:].squeeze()  #")],
               ("batch of 1",)),
    ], correct=[
        Correct("ellipsis slices", [(X, "x = windows[..., :-1]"), (Y, "y = windows[..., 1:]")]),
        Correct("narrow", [(X, "x = windows.narrow(1, 0, windows.shape[1] - 1)"),
                           (Y, "y = windows.narrow(1, 1, windows.shape[1] - 1)")]),
    ]),
    Todo(P, 2, check_masked_lm_batch, ("masked_lm_batch",), mutants=[
        Mutant("80/10/10 applied to every token", "branch", [
            ("x[selected & (r < 0.8)] = mask_id", "x[r < 0.8] = mask_id"),
            (RANDOM, "to_random = (r >= 0.8) & (r < 0.9)"),
        ], ("NOT selected", "only to the selected 15 %")),
        Mutant("targets at every position", "logic",
               [("y = torch.where(selected, x, torch.full_like(x, IGNORE_INDEX))", "y = x.clone()")],
               ("IGNORE_INDEX (-100) everywhere except the selected",)),
        Mutant("padding selected", "branch", [("selected &= tokens != pad_id", "pass")],
               ("never select padding",)),
        Mutant("split 90/0/10", "scale", [("(r < 0.8)", "(r < 0.9)"),
               ("(r >= 0.8) & (r < 0.9)", "(r >= 0.9)")],
               ("80 % become mask_id",)),
        Mutant("selection rate doubled", "scale",
               [("generator=generator) < mask_prob", "generator=generator) < 2 * mask_prob")],
               ("selection rate",)),
        Mutant("masked token as target", "logic",
               [("    return x, y\n", "    y[selected] = x[selected]\n    return x, y\n")],
               ("ORIGINAL token",)),
        Mutant("generator ignored", "argument",
               [("torch.rand(tokens.shape, generator=generator) < mask_prob",
                 "torch.rand(tokens.shape) < mask_prob")],
               ("generator=generator",)),
        Mutant("input corrupted in place", "in-place", [(CLONE, "x = tokens  # (B, T)")],
               ("in place", "clone")),
        Mutant("dtype of the input kept", "dtype", [(CLONE, "x = tokens.clone()  # (B, T)")], ("long",)),
        Mutant("mask_prob hard-coded", "argument",
               [(SELECT, "selected = torch.rand(tokens.shape, generator=generator) < 0.15  # (B, T)")],
               ("mask_prob",)),
        Mutant("one draw for the selection and the split", "logic",
               [(SELECT, "r = torch.rand(tokens.shape, generator=generator)\n    selected = r < mask_prob"),
                ("    " + R, "")], ("same draw",)),
        Mutant("random tokens also in the keep band", "off-by-one",
               [(RANDOM, "to_random = selected & (r >= 0.8)")], ("r >= 0.9",)),
    ], correct=[
        Correct("Bernoulli selection, masked_fill", [
            (SELECT, "selected = torch.bernoulli(torch.full(tokens.shape, mask_prob), "
                     "generator=generator).bool()"),
            ("x[selected & (r < 0.8)] = mask_id", "x = x.masked_fill(selected & (r < 0.8), mask_id)"),
        ]),
        Correct("targets filled first", [
            ("y = torch.where(selected, x, torch.full_like(x, IGNORE_INDEX))  # (B, T)",
             "y = torch.full_like(x, IGNORE_INDEX)\n    y[selected] = x[selected]"),
        ]),
    ]),
    Todo(P, 3, check_prefix_lm_mask, ("prefix_lm_mask",), mutants=[
        Mutant("prefix attends to the target part", "logic", [(MASK_LINE, "return (j <= i) | (i < p)")],
               ("the prefix must not see the target",)),
        Mutant("target part sees the future", "logic",
               [(MASK_LINE, "return (j <= i) | (j < p) | ((i >= p) & (j > i))")], ("sees a future token",)),
        Mutant("prefix one token too long", "off-by-one",
               [(MASK_LINE, "return (j <= i) | ((i <= p) & (j <= p))")],
               ("off by one",)),
        Mutant("prefix one token too short", "off-by-one",
               [(MASK_LINE, "return (j <= i) | ((i < p - 1) & (j < p - 1))")], ("off by one",)),
        Mutant("plain causal mask", "branch", [(MASK_LINE, "return (j <= i) | (i < 0)")],
               ("plain causal mask",)),
        Mutant("query and key swapped", "axis", [(MASK_LINE, "return (i <= j) | ((i < p) & (j < p))")],
               ("transposed",)),
        Mutant("no self-attention on the diagonal", "off-by-one",
               [(MASK_LINE, "return (j < i) | ((i < p) & (j < p))")],
               ("diagonal",)),
        Mutant("tensor prefix not broadcast", "shape",
               [(P_LINE, "p = prefix_len")], ("prefix_len[:, None, None]",)),
        Mutant("tensor prefix broadcast on one axis", "shape",
               [(P_LINE, "p = prefix_len[:, None] if isinstance(prefix_len, torch.Tensor) else prefix_len")],
               ("prefix_len[:, None, None]",)),
        Mutant("float mask", "dtype", [(MASK_LINE, "return ((j <= i) | ((i < p) & (j < p))).float()")],
               ("bool",)),
    ], correct=[
        Correct("key-only prefix rule", [(MASK_LINE, "return (j <= i) | (j < p)")]),
        Correct("tril of ones",
                [(MASK_LINE, "return torch.ones(T, T, dtype=torch.bool).tril() | ((i < p) & (j < p))")]),
    ]),
    Todo(P, 4, check_prefix_lm_batch, ("prefix_lm_batch",), mutants=[
        Mutant("targets not cloned", "in-place", [("windows[:, 1:].clone()", "windows[:, 1:]")],
               ("wrote into its input", ".clone()")),
        Mutant("prefix targets counted", "branch", [(IGNORE, "pass")], ("targets leak",)),
        Mutant("first target ignored too", "off-by-one", [("y[:, : prefix_len - 1]", "y[:, :prefix_len]")],
               ("predicted at position prefix_len - 1",)),
        Mutant("target part ignored", "logic", [("y[:, : prefix_len - 1]", "y[:, prefix_len - 1:]")],
               ("ignored the target part",)),
        Mutant("last prefix target counted", "off-by-one",
               [("y[:, : prefix_len - 1]", "y[:, : prefix_len - 2]")],
               ("prefix_len - 2",)),
        Mutant("prefix targets set to 0", "logic", [(IGNORE, "y[:, : prefix_len - 1] = 0")], ("-100",)),
        Mutant("one clone shared by x and y", "in-place",
               [(BATCH, "w = windows.clone()\n    x, y = w[:, :-1], w[:, 1:]")], ("another view",)),
        Mutant("inputs shifted too", "off-by-one",
               [(BATCH, "x, y = windows[:, 1:], windows[:, 1:].clone()")], ("x = w[:, :-1]",)),
    ], correct=[
        Correct("masked_fill on positions",
                [(BATCH, "x = windows[:, :-1]\n    y = windows[:, 1:]"),
                 (IGNORE, "y = y.masked_fill(torch.arange(y.shape[1]) < prefix_len - 1, IGNORE_INDEX)")]),
        Correct("both halves cloned", [(BATCH, "x, y = windows[:, :-1].clone(), windows[:, 1:].clone()")]),
    ]),
    Todo(P, 5, check_lm_loss, ("lm_loss",), mutants=[
        Mutant("mean over all positions", "scale", [(MEAN, "return (nll * keep).sum() / nll.numel()")],
               ("divided by ALL positions",)),
        Mutant("ignored positions counted", "branch", [(MEAN, "return nll.mean()")],
               ("must not count at all",)),
        Mutant("not reduced", "shape", [(MEAN, "return nll")], ("scalar",)),
        Mutant("summed", "scale", [(MEAN, "return nll[keep].sum()")], ("mean",)),
        Mutant("mean of per-row means", "axis", [(MEAN, "return ((nll * keep).sum(1) / keep.sum(1)).mean()")],
               ("per row",)),
        Mutant("log_softmax over time", "axis", [(LOGP, "logp = torch.log_softmax(logits.float(), dim=1)")],
               ("vocabulary",)),
        Mutant("log of softmax", "stability",
               [(LOGP, "logp = torch.log(torch.softmax(logits.float(), dim=-1))")],
               ("log_softmax",)),
        Mutant("ignore index not clamped", "validation",
               [(NLL, "nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)")], ("clamp",)),
        Mutant("log-probability not negated", "scale",
               [(NLL, "nll = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)")], ("sign",)),
    ], correct=[
        Correct("F.cross_entropy with ignore_index",
                [(MEAN, "return torch.nn.functional.cross_entropy(logits.reshape(-1, "
                        "logits.shape[-1]).float(), targets.reshape(-1), ignore_index=IGNORE_INDEX)")]),
        Correct("masked sum over the count", [(MEAN, "return (nll * keep).sum() / keep.sum()")]),
        Correct("computed in float64", [(LOGP, "logp = torch.log_softmax(logits.double(), dim=-1)")]),
    ]),
]
