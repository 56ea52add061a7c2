"""Checks for project 11 (mixture of experts): one check per TODO of ``11_expert_router/solution.ipynb``.

The references are PyTorch's own functions and the shared model's MoE layer, so that what the learner
builds is exactly what ``shared.model.GPT`` runs with ``n_experts``:

- top-k routing (Shazeer et al. 2017, eq. 3-5; Fedus et al. 2021, "Switch Transformers", §2.1, eq. 1-2):
  p = softmax(router logits) over the E experts, the k largest kept; for k > 1 their weights are
  renormalised to sum to 1, for k = 1 the weight is the router probability itself (the Switch gate) —
  compared with :func:`torch.softmax` and :func:`torch.topk`;
- the MoE layer, compared with :class:`shared.model.MoE` carrying the same weights (1e-5) and with a
  plain loop over tokens (:func:`reference_moe_per_token`), also when some assignments are dropped;
- the Switch load-balancing loss aux = E · Σ_i f_i · P_i (Fedus et al. 2021, §2.2, eq. 4-6): 1 for uniform
  routing, E when every token goes to one expert;
- expert capacity = ceil(capacity_factor · N · k / E) (Fedus et al. 2021, §2.2, eq. 3); assignments beyond it,
  in token order, are dropped (their token passes through the residual connection only);
- the router z-loss mean_over_tokens(logsumexp(logits)²) (Zoph et al. 2022, "ST-MoE", §3.1, eq. 5), compared
  with :func:`torch.logsumexp`.

When an answer is wrong, the checks recompute the answer of each well-known bug (no renormalisation for k > 1,
the balancing loss from the top-k weights, the factor E missing, counts instead of fractions, the first tokens
dropped instead of the overflow, a capacity without ceil, the z-loss without its square …) and name it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from shared.checks import (
    assert_close,
    call,
    expect,
    expect_equal,
    fmt,
    hint_on_crash,
    learner_check,
    within,
)
from shared.checks.compare import diagnose, gen, matches, randn
from shared.model import GPTConfig
from shared.moe import MoE

__all__ = [
    "reference_route",
    "reference_moe_per_token",
    "reference_balancing_loss",
    "reference_capacity_keep",
    "reference_z_loss",
    "check_top_k_route",
    "check_moe_layer",
    "check_load_balancing_loss",
    "check_capacity_keep",
    "check_router_z_loss",
]

# ----------------------------------------------------------------------------------------------- references


def reference_route(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (N, E) -> probs (N, E), top_idx (N, k), weights (N, k):
    renormalised for k > 1, Switch gate for k = 1."""
    probs = torch.softmax(logits.float(), dim=-1)  # (N, E)
    top_p, top_idx = torch.topk(probs, k, dim=-1)  # (N, k)
    if k > 1:
        top_p = top_p / top_p.sum(dim=-1, keepdim=True)
    return probs, top_idx, top_p


def reference_moe_per_token(
    x: torch.Tensor, w_router: torch.Tensor, experts: nn.ModuleList, top_k: int,
    keep: torch.Tensor | None = None
) -> torch.Tensor:
    """The MoE output one token at a time (slow and obviously right):
    y_n = Σ_slots w · Expert(x_n) over kept slots."""
    _, top_idx, weights = reference_route(x @ w_router.T, top_k)
    rows = []
    for n in range(x.size(0)):
        y = torch.zeros(x.size(1))
        for s in range(top_k):
            if keep is None or bool(keep[n, s]):
                y = y + weights[n, s] * experts[int(top_idx[n, s])](x[n])
        rows.append(y)
    return torch.stack(rows)  # (N, C)


def reference_balancing_loss(probs: torch.Tensor, top_idx: torch.Tensor, n_experts: int) -> torch.Tensor:
    """E · Σ_i f_i · P_i; f_i = share of the N·k assignments sent to expert i,
    P_i = mean router probability."""
    f = torch.bincount(top_idx.flatten(), minlength=n_experts).float() / top_idx.numel()  # (E,)
    return n_experts * torch.sum(f * probs.float().mean(dim=0))


def reference_capacity_keep(top_idx: torch.Tensor, n_experts: int, capacity_factor: float) -> torch.Tensor:
    """(N, k) bool: True for the first ceil(cf · N·k / E) assignments of each expert,
    in token (row-major) order."""
    N, k = top_idx.shape
    capacity = math.ceil(capacity_factor * N * k / n_experts)
    seen = [0] * n_experts
    keep = torch.zeros(N, k, dtype=torch.bool)
    for n in range(N):
        for s in range(k):
            e = int(top_idx[n, s])
            keep[n, s] = seen[e] < capacity
            seen[e] += 1
    return keep


def reference_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """Zoph et al. 2022, eq. 5: mean over tokens of logsumexp(logits)²."""
    return torch.logsumexp(logits.float(), dim=-1).square().mean()


# ----------------------------------------------------------------------------------------------- TODO 1


def _unpack(got: object, n: int, what: str) -> tuple:
    expect(isinstance(got, (tuple, list)) and len(got) == n, f"{what} must return a tuple of {n} tensors",
           hint="return probs, top_idx, weights" if n == 3 else "return y, logits, probs, top_idx")
    return tuple(got)  # type: ignore[arg-type]


@learner_check(1, "top_k_route")
def check_top_k_route(top_k_route: Callable[[torch.Tensor, int], tuple]) -> str:
    logits = randn(12, 6, seed=11, scale=2.0)
    logits_before = logits.clone()
    for k in (1, 2, 3):
        probs, top_idx, weights = _unpack(call(top_k_route, logits, k), 3, f"top_k_route(logits, {k})")
        expect(torch.equal(logits, logits_before), "top_k_route changed the logits it was given",
               hint="do not modify logits in place (logits -= ..., .sub_()): the router's caller still uses "
                    "them; torch.softmax is already stable")
        r_probs, r_idx, r_w = reference_route(logits, k)
        assert_close(probs, r_probs, f"k={k}: probs vs torch.softmax(logits, dim=-1)",
                     hint=diagnose(probs, [(torch.softmax(logits, 0),
                                            "softmax over the wrong dim: normalise over "
                                             "the experts, dim=-1")],
                                                 "probs = torch.softmax(logits, dim=-1)"))
        expect(isinstance(top_idx, torch.Tensor) and top_idx.shape == r_idx.shape
               and bool(torch.equal(top_idx.long(), r_idx)),
               f"k={k}: top_idx differs from torch.topk(probs, {k}).indices",
               hint="the k experts with the largest probability, largest first: probs.topk(k, dim=-1)")
        bugs = [(r_probs.topk(k, dim=-1).values,
                 "for k > 1 renormalise the k chosen probabilities so that they "
                 "sum to 1 (divide by their sum)")] if k > 1 else [
            (torch.ones(12, 1),
             "for k = 1 keep the router probability as the weight (the Switch gate, Fedus et al. "
             "2021 eq. 2): renormalising would make it always 1 and the router would get no gradient")]
        assert_close(weights, r_w, f"k={k}: weights",
                     hint=diagnose(weights, bugs,
                                   "weights = the top-k probabilities, renormalised to sum 1 when k > 1"))
    half = logits.half()  # a mixed-precision router: probs are float32 all the same
    probs = _unpack(call(top_k_route, half, 2), 3, "top_k_route(logits.half(), 2)")[0]
    expect(isinstance(probs, torch.Tensor) and probs.dtype == torch.float32,
           f"float16 logits gave probs of dtype {getattr(probs, 'dtype', type(probs).__name__)}, expected "
           "float32", hint="softmax in float32, torch.softmax(logits.float(), dim=-1), whatever the dtype")
    big = randn(12, 6, seed=12, scale=2.0) + 100.0  # exp(100) overflows float32
    probs = _unpack(call(top_k_route, big, 2), 3, "top_k_route(logits + 100, 2)")[0]
    expect(isinstance(probs, torch.Tensor) and bool(torch.isfinite(probs).all()),
           "logits near 100 gave non-finite probs",
           hint="exp(100) overflows float32 (inf / inf = NaN): use torch.softmax, which subtracts the row "
                "max first, not exp(logits) / exp(logits).sum()")
    assert_close(probs, reference_route(big, 2)[0], "logits near 100: probs vs torch.softmax",
                 hint="probs = torch.softmax(logits.float(), dim=-1)")
    return ("probs match torch.softmax, top_idx torch.topk, weights renormalised for k = 2, 3 and the "
            "Switch gate p for k = 1")


# ----------------------------------------------------------------------------------------------- TODO 2


def _shared_moe(C: int, E: int, k: int, seed: int) -> MoE:
    torch.manual_seed(seed)
    layer = MoE(GPTConfig(d_model=C, n_head=1, d_ff=2 * C, n_experts=E, moe_top_k=k))
    with torch.no_grad():
        layer.router.weight.mul_(20.0)  # a confident router, so that ties in top-k never happen
    return layer.eval()


@learner_check(2, "moe_layer")
def check_moe_layer(moe_layer: Callable[..., tuple]) -> str:
    C, E, N = 8, 4, 20
    x = randn(N, C, seed=21)
    worst_model = worst_loop = 0.0
    crash = ("logits = x @ w_router.T (w_router is (E, C)); then for each expert e the (token, slot) pairs "
             "torch.where(top_idx == e), expert(x[tok]) * weights[tok, slot, None]")
    for k in (1, 2):
        layer = _shared_moe(C, E, k, seed=22 + k)
        with torch.no_grad(), hint_on_crash(crash):
            got = _unpack(call(moe_layer, x, layer.router.weight, layer.experts, k), 4,
                          f"moe_layer(x, ..., top_k={k})")
        y, logits, probs, top_idx = got
        r_probs, r_idx, r_w = reference_route(x @ layer.router.weight.T, k)
        expect(isinstance(top_idx, torch.Tensor) and top_idx.shape == r_idx.shape,
               f"top_k={k}: top_idx has shape {tuple(getattr(top_idx, 'shape', ()))}, "
               f"expected {tuple(r_idx.shape)}",
               hint="pass top_k on to your top_k_route: each token chooses top_k experts")
        assert_close(probs, r_probs, f"top_k={k}: probs (the 3rd output) vs softmax of the router logits",
                     hint="return the full (N, E) router probabilities that top_k_route gives, not the "
                          "(N, k) weights: y, logits, probs, top_idx")
        with torch.no_grad():
            expected = layer(x)
            unweighted = sum(
                layer.experts[e](x) * (reference_route(x @ layer.router.weight.T,
                                                       k)[1] == e).any(-1, keepdim=True)
                for e in range(E))
            slot0 = sum(layer.experts[e](x) * ((r_idx == e).any(-1, keepdim=True) * r_w[:, :1])
                        for e in range(E))
            hint = diagnose(y, [(unweighted,
                                 "each expert's output must be multiplied by its routing weight before "
                                  "the combine (y = Σ w · Expert(x))"),
                                (expected + x, "y starts from zeros: the residual x is added by the block "
                                               "around the MoE, not inside it"),
                                (slot0, "each assignment uses the weight of its own slot: "
                                        "weights[tok, slot], not weights[tok, 0]")],
                             "route with your top_k_route, then for each expert e: tokens where top_idx == "
                             "e, expert(x[those]) * weight, index_add_ into y")
            worst_model = max(worst_model, assert_close(
                y, expected, f"top_k={k}: y vs shared.model.MoE with the same weights", hint=hint))
            assert_close(logits, x @ layer.router.weight.T, f"top_k={k}: logits = x @ w_router.T",
                         hint="logits are the router scores before the softmax: x @ w_router.T")
            keep = torch.rand(N, k, generator=gen(25 + k)) > 0.3
            y_keep = call(moe_layer, x, layer.router.weight, layer.experts, k, keep)[0]
            worst_loop = max(worst_loop, assert_close(
                y_keep, reference_moe_per_token(x, layer.router.weight, layer.experts, k, keep),
                f"top_k={k} with a keep mask: y vs a loop over tokens",
                hint="a dropped assignment (keep[n, s] False) adds nothing to "
                     "token n: skip it, do not renormalise"))
        # the router learns through the routing weights: its gradient must flow through y
        g = randn(N, C, seed=27 + k)
        layer.zero_grad()
        (layer(x) * g).sum().backward()
        ref_grad = layer.router.weight.grad.clone()
        layer.zero_grad()
        y = call(moe_layer, x, layer.router.weight, layer.experts, k)[0]
        grad_hint = ("the router gets no gradient: multiply the expert outputs by the routing weights "
                     "computed from probs, with no .detach() and no torch.no_grad() around them")
        expect(isinstance(y, torch.Tensor) and y.requires_grad, f"top_k={k}: y does not depend on the router "
               "weights (no gradient)", hint=grad_hint)
        (y * g).sum().backward()
        got_grad = layer.router.weight.grad
        expect(got_grad is not None and bool(got_grad.abs().sum() > 0),
               f"top_k={k}: d(y)/d(w_router) is zero", hint=grad_hint)
        assert_close(got_grad, ref_grad, f"top_k={k}: gradient of y wrt w_router vs shared.model.MoE",
                     hint="y = Σ_j weights[n, j] · Expert(x_n), the weights from your top_k_route", atol=1e-4,
                     rtol=1e-4)
    return (f"N=20 tokens, E=4 experts, k = 1 and 2: matches shared.model.MoE with the same weights ("
            f"{within(worst_model, 1e-5)}) and a per-token loop with dropped assignments "
            f"({within(worst_loop, 1e-5)})")


# ----------------------------------------------------------------------------------------------- TODO 3


def _balancing_bugs(probs: torch.Tensor, top_idx: torch.Tensor, E: int) -> list[tuple[torch.Tensor, str]]:
    """The values that well-known mistakes give for this routing, each with its hint."""
    N, k = top_idx.shape
    counts = torch.bincount(top_idx.flatten(), minlength=E).float()  # (E,)
    P = probs.float().mean(dim=0)  # (E,)
    chosen = probs.float().gather(1, top_idx)  # (N, k)
    weights = chosen / chosen.sum(-1, keepdim=True) if k > 1 else chosen
    w_share = torch.zeros(E).index_add_(0, top_idx.flatten(), weights.flatten()) / N  # (E,)
    p_share = torch.zeros(E).index_add_(0, top_idx.flatten(), chosen.flatten()) / N  # (E,)
    not_chosen = ("P_i is the mean router PROBABILITY of expert i over all N tokens (probs.mean(0)), not the "
                  "top-k weights: the weights see only the chosen experts")
    return [
        (E * (counts / (N * k) * w_share).sum(), not_chosen),
        (E * (counts / (N * k) * p_share).sum(), not_chosen),
        ((counts / (N * k) * P).sum(), "the factor E is missing: multiply by the number of experts E so that "
         "uniform routing gives 1"),
        (E * (counts * P).sum(), "f_i is a fraction: divide the counts by N·k (top_idx.numel())"),
        (E * (counts / N * P).sum(),
         "f_i is a fraction of the N·k assignments: divide the counts by N·k, not by N"),
        (E * (counts / (N * k) * probs.float().mean()).sum(),
         "P_i is one number per expert: probs.mean(dim=0), the mean over the tokens, not the mean of all "
         "of probs"),
        (torch.tensor(0.0), "the loss came out 0: f_i is 0 after an integer division (counts // N·k); "
                            "convert the counts to float before dividing"),
        (E * (torch.bincount(top_idx[:, 0], minlength=E).float() / N * P).sum(),
         "count all k assignments of every token (top_idx.flatten()), not only its first choice"),
    ]


@learner_check(3, "load_balancing_loss")
def check_load_balancing_loss(load_balancing_loss: Callable[..., torch.Tensor]) -> str:
    E, N = 4, 16
    default = "aux = E · Σ_i f_i · P_i with f_i = counts / (N·k) and P_i = probs.mean(0)"
    crash = ("f and P are both (E,), one entry per expert: f from torch.bincount(top_idx.flatten(), "
             "minlength=n_experts) (an expert nobody chose still counts, as 0), P = probs.mean(dim=0)")
    uniform_probs = torch.full((N, E), 1.0 / E)
    balanced_idx = torch.arange(N).remainder(E)[:, None]  # (N, 1): every expert gets N/E tokens
    onehot = torch.zeros(N, E)
    onehot[:, 2] = 1.0
    logits = randn(N, E, seed=31, scale=1.5)
    cases = [("uniform probabilities, every expert N/E tokens: loss must be 1", uniform_probs, balanced_idx),
             ("every token to expert 2 with probability 1: loss must be E", onehot, torch.full((N, 1), 2))]
    for k in (1, 2):
        probs, top_idx, _ = reference_route(logits, k)
        cases.append((f"random router, k={k}", probs, top_idx))
    gots = []
    for _, probs, top_idx in cases:
        with hint_on_crash(crash):
            gots.append(call(load_balancing_loss, probs, top_idx, E))
    # a bug is named when it explains EVERY case (uniform routing alone fits several bugs)
    table = [_balancing_bugs(probs, top_idx, E) for _, probs, top_idx in cases]
    explained = [i for i in range(len(table[0]))
                 if all(matches(got, bugs[i][0], atol=1e-4, rtol=1e-4)
                        for got, bugs in zip(gots, table, strict=True))]
    for got, bugs, (what, probs, top_idx) in zip(gots, table, cases, strict=True):
        hint = bugs[explained[0]][1] if explained else diagnose(got, bugs, default, every=True)
        assert_close(got, reference_balancing_loss(probs, top_idx, E), what, hint=hint)
    grad_probs = torch.softmax(logits, -1).requires_grad_(True)
    _, idx, _ = reference_route(logits, 1)
    out = call(load_balancing_loss, grad_probs, idx, E)
    expect(isinstance(out, torch.Tensor) and out.requires_grad,
           "the loss must be differentiable with respect to probs (its gradient is what balances the router)",
           hint="compute P_i from probs with torch ops, f_i from counts (no gradient needed there)")
    return (f"1 for uniform routing, E={E} when all tokens go to one expert, and E·Σ f_i·P_i on a random "
            f"router for k = 1, 2 (against a reference), differentiable in probs")


# ----------------------------------------------------------------------------------------------- TODO 4


def _keep_with_capacity(top_idx: torch.Tensor, n_experts: int, capacity: int,
                        slot_major: bool = False) -> torch.Tensor:
    """(N, k) bool: the first `capacity` assignments of each expert, counted row-major (token order) or, with
    slot_major, all first choices before all second choices."""
    N, k = top_idx.shape
    order = [(n, s) for s in range(k) for n in range(N)] if slot_major else [(n, s) for n in range(N)
                                                                              for s in range(k)]
    seen = [0] * n_experts
    keep = torch.zeros(N, k, dtype=torch.bool)
    for n, s in order:
        e = int(top_idx[n, s])
        keep[n, s] = seen[e] < capacity
        seen[e] += 1
    return keep


def _capacity_hint(got: torch.Tensor, top_idx: torch.Tensor, E: int, cf: float) -> str:
    """Name the bug behind a wrong keep mask: the capacity it implies, the order it counts in, or neither."""
    N, k = top_idx.shape
    capacity = math.ceil(cf * N * k / E)
    default = ("capacity = ceil(capacity_factor · N · k / E); each expert keeps its first `capacity` "
               "assignments in token order (row-major over (N, k)) and drops the rest")
    if not (isinstance(got, torch.Tensor) and got.shape == top_idx.shape and got.dtype == torch.bool):
        return default
    most = int(torch.bincount(top_idx.flatten(), minlength=E).max())
    implied = next((c for c in range(most + 1) if torch.equal(got, _keep_with_capacity(top_idx, E, c))), None)
    if implied is None:
        if torch.equal(got, _keep_with_capacity(top_idx, E, capacity, slot_major=True)):
            return ("assignments are counted in token order, row-major over (N, k): token 0's k choices, "
                    "then token 1's, ... (top_idx.flatten()), not all first choices before the second ones")
        return default
    exact = cf * N * k / E
    if implied == most and most <= capacity:
        return default
    if implied == most:
        return ("nothing was dropped: number each assignment within its expert's queue with a cumulative "
                "count over the N·k assignments (cumsum over dim 0), and keep those within the capacity")
    rounders = [name for name, value in (("int()", int(exact)), ("math.floor", math.floor(exact)),
                                         ("round()", round(exact))) if value == implied]
    if rounders:
        verb = "gives" if len(rounders) == 1 else "give"
        return (f"capacity = ceil(capacity_factor · N · k / E) = ceil({exact:g}) = {capacity}, not "
                f"{implied}: round UP with math.ceil ({', '.join(rounders)} {verb} {implied} here)")
    named = [
        (capacity - 1, f"each expert kept one assignment too few ({capacity - 1}, capacity {capacity}): "
                       "with a 1-based place in the queue keep place <= capacity"),
        (capacity + 1, f"each expert kept one assignment too many ({capacity + 1}, capacity {capacity}): "
                       "with a 0-based place in the queue keep place < capacity"),
        (math.ceil(cf * N / E), f"the capacity counts all N·k = {N * k} assignments: ceil(capacity_factor "
                                f"· N · k / E) = {capacity}, not ceil(capacity_factor · N / E)"),
        (math.ceil(N * k / E), f"the capacity_factor ({cf:g}) is ignored: capacity = ceil(capacity_factor "
                               f"· N · k / E) = {capacity}"),
    ]
    return next((h for c, h in named if c == implied),
                f"each expert kept {implied} assignments; capacity = ceil(capacity_factor · N · k / E) = "
                f"ceil({exact:g}) = {capacity}")


@learner_check(4, "capacity_keep")
def check_capacity_keep(capacity_keep: Callable[..., torch.Tensor]) -> str:
    top_idx = torch.tensor([[0], [0], [1], [0], [0], [2], [0], [1]])  # N=8, k=1, E=4
    got = call(capacity_keep, top_idx, 4, 1.0)  # capacity = ceil(8/4) = 2
    expected = reference_capacity_keep(top_idx, 4, 1.0)
    last_kept = torch.tensor([[False], [False], [True], [False], [True], [True], [True], [True]])
    hint = diagnose(got, [(last_kept.float(),
                           "you kept the LAST tokens of each expert and dropped the first: "
                            "tokens are served in order, the overflow (later tokens) is dropped")],
                     _capacity_hint(got, top_idx, 4, 1.0))
    expect(isinstance(got, torch.Tensor) and got.dtype == torch.bool,
           f"capacity_keep must return a bool tensor, got {fmt(got, 80)}",
           hint="return (position_in_expert_queue <= capacity), a bool (N, k) tensor, not 0/1 integers")
    expect_equal(got, expected, "8 tokens, expert 0 chosen by tokens 0,1,3,4,6, capacity ceil(1.0·8/4) = 2",
                 hint=hint)
    cases = [(5, 1, 1.0), (7, 2, 1.25), (10, 1, 1.5)]  # N=10, E=4, k, cf: capacities 3, 7, 4 (ceil matters)
    for seed, k, cf in cases:
        logits = randn(10, 4, seed=40 + seed, scale=3.0)
        idx = reference_route(logits, k)[1]
        got = call(capacity_keep, idx, 4, cf)
        expected = reference_capacity_keep(idx, 4, cf)
        counts = torch.bincount(idx.flatten(), minlength=4)
        expect_equal(got, expected, f"N=10, E=4, k={k}, capacity_factor={cf}, tokens per expert "
                     f"{counts.tolist()}", hint=_capacity_hint(got, idx, 4, cf))
    # k = 2 with an overflowing expert: token order (row-major) and "first choices first" keep different ones
    idx = torch.tensor([[0, 1], [1, 0], [0, 2], [0, 1], [3, 0]])  # expert 0: 5 assignments, capacity 3
    got = call(capacity_keep, idx, 4, 1.0)
    expect_equal(got, reference_capacity_keep(idx, 4, 1.0), "N=5, E=4, k=2, capacity_factor=1.0 (capacity "
                 "3), expert 0 chosen at (token, slot) (0, 0), (1, 1), (2, 0), (3, 0), (4, 1)",
                 hint=_capacity_hint(got, idx, 4, 1.0))
    return ("drops exactly the overflow in token order with capacity = ceil(cf·N·k/E), for k = 1, 2 and "
            "capacity factors 1.0, 1.25, 1.5")


# ----------------------------------------------------------------------------------------------- TODO 5


@learner_check(5, "router_z_loss")
def check_router_z_loss(router_z_loss: Callable[[torch.Tensor], torch.Tensor]) -> str:
    logits = randn(24, 8, seed=51, scale=3.0) + 2.0
    got = call(router_z_loss, logits)
    expected = reference_z_loss(logits)
    lse = torch.logsumexp(logits, dim=-1)
    bugs = [
        (lse.mean(), "square the logsumexp before averaging (Zoph et al. 2022, eq. 5)"),
        (lse.mean().square(), "square each token's logsumexp, THEN take the mean over tokens"),
        (lse.square().sum(), "take the mean over tokens, not the sum"),
        (logits.amax(-1).square().mean(), "use logsumexp over the experts, not the max logit"),
        (torch.logsumexp(logits, dim=0).square().mean(),
         "logsumexp over the experts of each token, dim=-1 (logits are (N, E)), not over the tokens"),
    ]
    err = assert_close(got, expected, "vs torch.logsumexp(logits, dim=-1).square().mean()",
                       hint=diagnose(got, bugs, "z = mean_n (log Σ_i exp(logits[n, i]))²", every=True))
    small = call(router_z_loss, torch.zeros(5, 4))
    assert_close(small, torch.tensor(math.log(4) ** 2), "all-zero logits over 4 experts: (log 4)²",
                 hint="logsumexp of 4 zeros is log 4")
    big = randn(6, 8, seed=52, scale=3.0) + 90.0  # logits a router without the z-loss can reach
    got_big = call(router_z_loss, big)
    expect(isinstance(got_big, torch.Tensor) and bool(torch.isfinite(got_big).all()),
           f"logits near 90 gave {fmt(got_big, 60)}, expected about {float(reference_z_loss(big)):.0f}",
           hint="exp(90) overflows float32 (above about 88): use torch.logsumexp, which subtracts the "
                "largest logit first, not torch.log(torch.exp(logits).sum(-1))")
    assert_close(got_big, reference_z_loss(big),
                 "logits near 90 vs torch.logsumexp(logits, -1).square().mean()",
                 hint="z = mean_n (log Σ_i exp(logits[n, i]))², computed stably", atol=1e-2)
    low = logits.bfloat16()  # a mixed-precision router: the loss is still computed in float32
    got_low = call(router_z_loss, low)
    low_hint = ("compute in float32, torch.logsumexp(logits.float(), dim=-1): in bfloat16 the squared "
                "logsumexp loses about 3 significant digits")
    expect(isinstance(got_low, torch.Tensor) and got_low.dtype == torch.float32,
           f"bfloat16 logits gave a loss of dtype {getattr(got_low, 'dtype', type(got_low).__name__)}, "
           "expected float32", hint=low_hint)
    assert_close(got_low, reference_z_loss(low.float()), "bfloat16 logits vs the float32 z-loss",
                 hint=low_hint)
    return (f"matches torch.logsumexp(logits, -1).square().mean() ({within(err, 1e-5, 'abs err')}), (log "
            "4)² for zero logits, and stays finite for logits near 90")

