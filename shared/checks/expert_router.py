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

from shared.checks import assert_close, call, expect, expect_equal, fmt, learner_check, within
from shared.checks.compare import diagnose, gen, randn
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
    for k in (1, 2, 3):
        probs, top_idx, weights = _unpack(call(top_k_route, logits, k), 3, f"top_k_route(logits, {k})")
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
    for k in (1, 2):
        layer = _shared_moe(C, E, k, seed=22 + k)
        with torch.no_grad():
            got = _unpack(call(moe_layer, x, layer.router.weight, layer.experts, k), 4,
                          f"moe_layer(x, ..., top_k={k})")
            y, logits, probs, top_idx = got
            expected = layer(x)
            unweighted = sum(
                layer.experts[e](x) * (reference_route(x @ layer.router.weight.T,
                                                       k)[1] == e).any(-1, keepdim=True)
                for e in range(E))
            hint = diagnose(y, [(unweighted,
                                 "each expert's output must be multiplied by its routing weight before "
                                  "the combine (y = Σ w · Expert(x))")],
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
    return [
        (E * (counts / (N * k) * w_share).sum(), "P_i is the mean router PROBABILITY of expert i over all N "
         "tokens (probs.mean(0)), not the top-k weights: the weights see only the chosen experts"),
        ((counts / (N * k) * P).sum(), "the factor E is missing: multiply by the number of experts E so that "
         "uniform routing gives 1"),
        (E * (counts * P).sum(), "f_i is a fraction: divide the counts by N·k (top_idx.numel())"),
        (E * (counts / N * P).sum(),
         "f_i is a fraction of the N·k assignments: divide the counts by N·k, not by N"),
    ]


@learner_check(3, "load_balancing_loss")
def check_load_balancing_loss(load_balancing_loss: Callable[..., torch.Tensor]) -> str:
    E, N = 4, 16
    default = "aux = E · Σ_i f_i · P_i with f_i = counts / (N·k) and P_i = probs.mean(0)"
    uniform_probs = torch.full((N, E), 1.0 / E)
    balanced_idx = torch.arange(N).remainder(E)[:, None]  # (N, 1): every expert gets N/E tokens
    got = call(load_balancing_loss, uniform_probs, balanced_idx, E)
    assert_close(got, torch.tensor(1.0), "uniform probabilities, every expert N/E tokens: loss must be 1",
                 hint=diagnose(got, _balancing_bugs(uniform_probs, balanced_idx, E), default, every=True))
    onehot = torch.zeros(N, E)
    onehot[:, 2] = 1.0
    got = call(load_balancing_loss, onehot, torch.full((N, 1), 2), E)
    assert_close(got, torch.tensor(float(E)), "every token to expert 2 with probability 1: loss must be E",
                 hint=diagnose(got, _balancing_bugs(onehot, torch.full((N, 1), 2), E), default, every=True))
    logits = randn(N, E, seed=31, scale=1.5)
    for k in (1, 2):
        probs, top_idx, _ = reference_route(logits, k)
        got = call(load_balancing_loss, probs, top_idx, E)
        expected = reference_balancing_loss(probs, top_idx, E)
        assert_close(got, expected, f"random router, k={k}",
                     hint=diagnose(got, _balancing_bugs(probs, top_idx, E), default, every=True))
    grad_probs = torch.softmax(logits, -1).requires_grad_(True)
    _, idx, _ = reference_route(logits, 1)
    out = call(load_balancing_loss, grad_probs, idx, E)
    expect(isinstance(out, torch.Tensor) and out.requires_grad,
           "the loss must be differentiable with respect to probs (its gradient is what balances the router)",
           hint="compute P_i from probs with torch ops, f_i from counts (no gradient needed there)")
    return (f"1 for uniform routing, E={E} when all tokens go to one expert, and E·Σ f_i·P_i on a random "
            f"router for k = 1, 2 (against a reference), differentiable in probs")


# ----------------------------------------------------------------------------------------------- TODO 4


@learner_check(4, "capacity_keep")
def check_capacity_keep(capacity_keep: Callable[..., torch.Tensor]) -> str:
    top_idx = torch.tensor([[0], [0], [1], [0], [0], [2], [0], [1]])  # N=8, k=1, E=4
    got = call(capacity_keep, top_idx, 4, 1.0)  # capacity = ceil(8/4) = 2
    expected = reference_capacity_keep(top_idx, 4, 1.0)
    last_kept = torch.tensor([[False], [False], [True], [False], [True], [True], [True], [True]])
    hint = diagnose(got, [(last_kept.float(),
                           "you kept the LAST tokens of each expert and dropped the first: "
                            "tokens are served in order, the overflow (later tokens) is dropped")],
                     "each expert serves its first `capacity` assignments in "
                     "token order, the rest are dropped")
    expect(isinstance(got, torch.Tensor) and got.dtype == torch.bool,
           "capacity_keep must return a bool tensor",
           hint="return (position_in_expert_queue < capacity), a bool (N, k) tensor")
    expect_equal(got, expected, "8 tokens, expert 0 chosen by tokens 0,1,3,4,6, capacity ceil(1.0·8/4) = 2",
                 hint=hint)
    cases = [(5, 1, 1.0), (7, 2, 1.25), (10, 1, 1.5)]  # N=10, E=4, k, cf: capacities 3, 5, 4 (ceil matters)
    for seed, k, cf in cases:
        logits = randn(10, 4, seed=40 + seed, scale=3.0)
        idx = reference_route(logits, k)[1]
        got = call(capacity_keep, idx, 4, cf)
        expected = reference_capacity_keep(idx, 4, cf)
        floor_cap = int(cf * 10 * k / 4)
        counts = torch.bincount(idx.flatten(), minlength=4)
        floor_hint = (f"capacity = ceil(capacity_factor · N · k / E) = ceil({cf * 10 * k / 4:g}) = "
                      f"{math.ceil(cf * 10 * k / 4)}, not {floor_cap}: round UP (math.ceil)")
        hint = ("capacity = ceil(capacity_factor · N · k / E); assignments counted in token order "
                "(row-major over (N, k))")
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and got.dtype == torch.bool:
            per_expert = torch.bincount(idx.flatten()[got.flatten()], minlength=4)
            if torch.equal(per_expert, counts.clamp(max=floor_cap)):
                hint = floor_hint
        expect_equal(got, expected, f"N=10, E=4, k={k}, capacity_factor={cf}, tokens per expert "
                     f"{counts.tolist()}", hint=hint)
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
    return (f"matches torch.logsumexp(logits, -1).square().mean() ({within(err, 1e-5, 'abs err')}), (log "
            "4)² for zero logits, and stays finite for logits near 90")

