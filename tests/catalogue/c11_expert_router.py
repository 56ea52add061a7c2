"""Mutation catalogue of 11_expert_router (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.expert_router import (
    check_capacity_keep,
    check_load_balancing_loss,
    check_moe_layer,
    check_router_z_loss,
    check_top_k_route,
)

P = "11_expert_router"
SOFTMAX = "probs = torch.softmax(logits.float(), dim=-1)"
TOPK = "weights, top_idx = probs.topk(k, dim=-1)"
RENORM = "weights = weights / weights.sum(dim=-1, keepdim=True)"
MOE = ("top_k_route", "moe_layer")
ADD = "y.index_add_(0, tok, expert(x[tok]) * weights[tok, slot, None])  #"
F_LINE = "f = torch.bincount(top_idx.flatten(), minlength=n_experts).to(probs.dtype) / top_idx.numel()"
P_LINE = "P = probs.mean(dim=0)"
CAP = "capacity = math.ceil(capacity_factor * N * k / n_experts)"
ONEHOT = "onehot = torch.nn.functional.one_hot(top_idx.flatten(), n_experts)"
RANK = "rank = (onehot.cumsum(dim=0) * onehot).sum(dim=-1)"
KEEP = "return (rank <= capacity).view(N, k)"
Z = "return torch.logsumexp(logits.float(), dim=-1).square().mean()"

CATALOGUE = [
    Todo(
        P,
        1,
        check_top_k_route,
        ("top_k_route",),
        mutants=[
            Mutant(
                "no renormalisation for k > 1",
                "branch",
                [(RENORM, "weights = weights")],
                ("renormalise the k chosen probabilities",),
            ),
            Mutant(
                "Switch gate renormalised too (k > 0)",
                "branch",
                [("    if k > 1:\n        weights =", "    if k > 0:\n        weights =")],
                ("Switch gate",),
            ),
            Mutant(
                "softmax over the tokens",
                "axis",
                [(SOFTMAX, "probs = torch.softmax(logits.float(), dim=0)")],
                ("wrong dim",),
            ),
            Mutant(
                "weights = softmax of the top-k logits, also for k = 1",
                "branch",
                [
                    (
                        TOPK,
                        "top_logits, top_idx = logits.topk(k, dim=-1)\n"
                        "    weights = torch.softmax(top_logits.float(), dim=-1)",
                    )
                ],
                ("Switch gate",),
            ),
            Mutant(
                "probs in the logits' dtype",
                "dtype",
                [(SOFTMAX, "probs = torch.softmax(logits, dim=-1)")],
                ("float32",),
            ),
            Mutant(
                "softmax by hand without the max",
                "stability",
                [(SOFTMAX, "probs = logits.float().exp() / logits.float().exp().sum(dim=-1, keepdim=True)")],
                ("overflows",),
            ),
            Mutant(
                "ascending argsort",
                "logic",
                [(TOPK, "top_idx = probs.argsort(dim=-1)[:, :k]\n    weights = probs.gather(1, top_idx)")],
                ("largest first",),
            ),
            Mutant(
                "logits stabilised in place",
                "in-place",
                [(SOFTMAX, "logits -= logits.amax(dim=-1, keepdim=True)\n    " + SOFTMAX)],
                ("in place",),
            ),
            Mutant(
                "top-k over the tokens",
                "axis",
                [(TOPK, "weights, top_idx = probs.topk(k, dim=0)")],
                ("probs.topk(k, dim=-1)",),
            ),
        ],
        correct=[
            Correct(
                "sort descending",
                [
                    (
                        TOPK,
                        "weights, top_idx = probs.sort(dim=-1, descending=True)\n"
                        "    weights, top_idx = weights[:, :k], top_idx[:, :k]",
                    )
                ],
            ),
            Correct(
                "softmax by hand, max subtracted",
                [
                    (
                        SOFTMAX,
                        "z = logits.float() - logits.float().amax(dim=-1, keepdim=True)\n"
                        "    probs = z.exp() / z.exp().sum(dim=-1, keepdim=True)",
                    )
                ],
            ),
            Correct(
                "L1 normalise", [(RENORM, "weights = torch.nn.functional.normalize(weights, p=1, dim=-1)")]
            ),
        ],
    ),
    Todo(
        P,
        2,
        check_moe_layer,
        MOE,
        mutants=[
            Mutant(
                "expert outputs not weighted",
                "scale",
                [(ADD, "y.index_add_(0, tok, expert(x[tok]))  #")],
                ("multiplied by its routing weight",),
            ),
            Mutant(
                "keep mask ignored",
                "argument",
                [("tok, slot = tok[served], slot[served]", "pass")],
                ("dropped assignment",),
            ),
            Mutant(
                "weight of slot 0 for every slot",
                "branch",
                [(ADD, "y.index_add_(0, tok, expert(x[tok]) * weights[tok, 0, None])  #")],
                ("own slot",),
            ),
            Mutant(
                "router weight not transposed",
                "axis",
                [("logits = x @ w_router.T", "logits = x @ w_router")],
                ("x @ w_router.T",),
            ),
            Mutant(
                "keep read at slot 0",
                "branch",
                [("served = keep[tok, slot]", "served = keep[tok, 0]")],
                ("keep[n, s]",),
            ),
            Mutant(
                "residual added inside the layer",
                "logic",
                [("y = torch.zeros_like(x)", "y = x.clone()")],
                ("starts from zeros",),
            ),
            Mutant(
                "routing weights detached",
                "grad",
                [("weights = weights.to(x.dtype)", "weights = weights.detach().to(x.dtype)")],
                ("no gradient",),
            ),
            Mutant(
                "top_k not passed on",
                "argument",
                [("top_k_route(logits, top_k)", "top_k_route(logits, 1)")],
                ("pass top_k",),
            ),
            Mutant(
                "weights returned as probs",
                "logic",
                [("return y, logits, probs, top_idx", "return y, logits, weights, top_idx")],
                ("(N, E)",),
            ),
        ],
        correct=[
            Correct(
                "indexed += instead of index_add_",
                [(ADD, "y[tok] += expert(x[tok]) * weights[tok, slot, None]  #")],
            ),
            Correct(
                "dense: every expert on every token, masked weights",
                [
                    (
                        "        tok, slot = torch.where(top_idx == e)",
                        "        chosen = top_idx == e\n"
                        "        if keep is not None:\n            chosen = chosen & keep\n"
                        "        y = y + expert(x) * (weights * chosen).sum(dim=-1, keepdim=True)\n"
                        "        continue\n        tok, slot = torch.where(top_idx == e)",
                    )
                ],
            ),
        ],
    ),
    Todo(
        P,
        3,
        check_load_balancing_loss,
        ("load_balancing_loss",),
        mutants=[
            Mutant(
                "factor E missing",
                "scale",
                [("return n_experts * torch.sum(f * P)", "return torch.sum(f * P)")],
                ("factor E is missing",),
            ),
            Mutant(
                "counts instead of fractions",
                "scale",
                [(" / top_idx.numel()  # (E,)", "  # (E,)")],
                ("f_i is a fraction",),
            ),
            Mutant(
                "P from the chosen probabilities only",
                "logic",
                [
                    (
                        P_LINE,
                        "P = torch.zeros(n_experts).index_add_(0, top_idx.flatten(), probs.gather(1, "
                        "top_idx).flatten()) / len(probs)",
                    )
                ],
                ("not the top-k weights",),
            ),
            Mutant(
                "fractions of N, not N·k",
                "scale",
                [(" / top_idx.numel()  # (E,)", " / len(top_idx)  # (E,)")],
                ("N·k",),
            ),
            Mutant("P detached", "grad", [(P_LINE, "P = probs.detach().mean(dim=0)")], ("differentiable",)),
            Mutant(
                "P averaged over the experts",
                "axis",
                [(P_LINE, "P = probs.mean(dim=1)")],
                ("probs.mean(dim=0)",),
            ),
            Mutant(
                "P the mean of all probs", "axis", [(P_LINE, "P = probs.mean()")], ("one number per expert",)
            ),
            Mutant(
                "bincount without minlength",
                "shape",
                [(F_LINE, "f = torch.bincount(top_idx.flatten()).to(probs.dtype) / top_idx.numel()")],
                ("minlength=n_experts",),
            ),
            Mutant(
                "integer division of the counts",
                "dtype",
                [(F_LINE, "f = torch.bincount(top_idx.flatten(), minlength=n_experts) // top_idx.numel()")],
                ("integer division",),
            ),
            Mutant(
                "only the first choice counted",
                "branch",
                [
                    (
                        F_LINE,
                        "f = torch.bincount(top_idx[:, 0], minlength=n_experts).to(probs.dtype) "
                        "/ len(top_idx)",
                    )
                ],
                ("all k assignments",),
            ),
        ],
        correct=[
            Correct(
                "one_hot mean",
                [
                    (
                        F_LINE,
                        "f = torch.nn.functional.one_hot(top_idx, n_experts).to(probs.dtype)"
                        ".mean(dim=(0, 1))",
                    )
                ],
            ),
            Correct(
                "explicit sum over experts",
                [("return n_experts * torch.sum(f * P)", "return n_experts * (f * P).sum(dim=-1)")],
            ),
        ],
    ),
    Todo(
        P,
        4,
        check_capacity_keep,
        ("capacity_keep",),
        mutants=[
            Mutant(
                "first tokens dropped",
                "logic",
                [(RANK, "rank = (onehot.flip(0).cumsum(dim=0).flip(0) * onehot).sum(dim=-1)")],
                ("LAST tokens",),
            ),
            Mutant(
                "capacity with int()",
                "dtype",
                [("math.ceil(capacity_factor", "int(capacity_factor")],
                ("ceil",),
            ),
            Mutant(
                "capacity with math.floor",
                "dtype",
                [("math.ceil(capacity_factor", "math.floor(capacity_factor")],
                ("ceil",),
            ),
            Mutant(
                "capacity with round()",
                "dtype",
                [("math.ceil(capacity_factor", "round(capacity_factor")],
                ("ceil",),
            ),
            Mutant(
                "rank < capacity with a 1-based rank",
                "off-by-one",
                [(KEEP, "return (rank < capacity).view(N, k)")],
                ("one assignment too few",),
            ),
            Mutant(
                "all first choices served first",
                "axis",
                [
                    (ONEHOT, "onehot = torch.nn.functional.one_hot(top_idx.t().flatten(), n_experts)"),
                    (KEEP, "return (rank <= capacity).view(k, N).t()"),
                ],
                ("row-major",),
            ),
            Mutant(
                "capacity without k",
                "logic",
                [(CAP, "capacity = math.ceil(capacity_factor * N / n_experts)")],
                ("all N·k",),
            ),
            Mutant(
                "cumsum over the experts",
                "axis",
                [(RANK, "rank = (onehot.cumsum(dim=1) * onehot).sum(dim=-1)")],
                ("nothing was dropped",),
            ),
            Mutant(
                "0/1 integers returned",
                "dtype",
                [(KEEP, "return (rank <= capacity).view(N, k).int()")],
                ("bool",),
            ),
            Mutant(
                "capacity_factor ignored",
                "argument",
                [(CAP, "capacity = math.ceil(N * k / n_experts)")],
                ("capacity_factor (1.25) is ignored",),
            ),
        ],
        correct=[
            Correct(
                "python loop over the assignments",
                [
                    (
                        ONEHOT,
                        "seen = [0] * n_experts\n    keep = torch.zeros(N * k, dtype=torch.bool)\n"
                        "    for a, e in enumerate(top_idx.flatten().tolist()):\n"
                        "        seen[e] += 1\n        keep[a] = seen[e] <= capacity\n"
                        "    return keep.view(N, k)\n"
                        "    onehot = torch.nn.functional.one_hot(top_idx.flatten(), n_experts)",
                    )
                ],
            ),
            Correct(
                "0-based rank",
                [
                    (RANK, "rank = (onehot.cumsum(dim=0) * onehot).sum(dim=-1) - 1"),
                    (KEEP, "return (rank < capacity).view(N, k)"),
                ],
            ),
        ],
    ),
    Todo(
        P,
        5,
        check_router_z_loss,
        ("router_z_loss",),
        mutants=[
            Mutant(
                "naive log-sum-exp",
                "stability",
                [
                    (
                        "torch.logsumexp(logits.float(), dim=-1)",
                        "torch.log(torch.exp(logits.float()).sum(dim=-1))",
                    )
                ],
                ("logits near 90", "torch.logsumexp"),
            ),
            Mutant("no square", "logic", [(".square().mean()", ".mean()")], ("square the logsumexp",)),
            Mutant(
                "square of the mean",
                "logic",
                [(".square().mean()", ".mean().square()")],
                ("THEN take the mean",),
            ),
            Mutant(
                "max logit for logsumexp",
                "logic",
                [(Z, "return logits.float().amax(dim=-1).square().mean()")],
                ("not the max logit",),
            ),
            Mutant("sum over tokens", "scale", [(".square().mean()", ".square().sum()")], ("not the sum",)),
            Mutant(
                "logsumexp over the tokens",
                "axis",
                [(Z, "return torch.logsumexp(logits.float(), dim=0).square().mean()")],
                ("dim=-1",),
            ),
            Mutant("computed in the logits' dtype", "dtype", [("logits.float()", "logits")], ("float32",)),
        ],
        correct=[
            Correct("** 2", [(Z, "return (torch.logsumexp(logits.float(), dim=-1) ** 2).mean()")]),
            Correct(
                "stable by hand",
                [
                    (
                        Z,
                        "z = logits.float()\n    m = z.amax(dim=-1, keepdim=True)\n"
                        "    lse = m.squeeze(-1) + torch.log(torch.exp(z - m).sum(dim=-1))\n"
                        "    return (lse * lse).mean()",
                    )
                ],
            ),
        ],
    ),
]
