"""Checks for project 15 (RLHF with PPO): one check per TODO of ``15_ppo_loop/solution.ipynb``.

The pieces of the RLHF loop of Ouyang et al. (2022, §3.5), each compared with a reference written here
independently of the notebook:

* Bradley–Terry reward-model loss (Christiano et al. 2017, §2.2.3; Ouyang et al. 2022, eq. 1):
  ``-log σ(r_chosen − r_rejected)``, against ``F.softplus(r_rejected − r_chosen)``;
* per-token log-probabilities of the response tokens, against an explicit loop over positions;
* KL-shaped rewards (Ziegler et al. 2019; Ouyang et al. 2022, eq. 2): ``−β (log π − log π_ref)`` at every
  response token, plus the reward-model score at the last one;
* GAE (Schulman et al. 2015, eq. 16): the closed form ``A_t = Σ_l (γλ)^l δ_{t+l}`` as a matrix product
  (the notebook writes the backward recursion), with ``V = 0`` after the last token;
* the PPO clipped surrogate and value loss (Schulman et al. 2017, eq. 7 and 9) on crafted ratios where
  the clip is active on each side, and its gradient;
* one rollout → score → update iteration, run on a tiny GPT with a reward the policy can learn;
* the DPO loss (Rafailov et al. 2023, eq. 7).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.checks import CheckFailed, assert_close, call, expect, fmt, learner_check
from shared.checks.compare import diagnose, expect_tensors, gen, matches
from shared.model import GPT, GPTConfig

__all__ = [
    "reference_bradley_terry_loss",
    "reference_response_logprobs",
    "reference_kl_shaped_rewards",
    "reference_gae",
    "reference_ppo_losses",
    "reference_dpo_loss",
    "TinyPolicy",
    "check_bradley_terry_loss",
    "check_response_logprobs",
    "check_kl_shaped_rewards",
    "check_gae",
    "check_ppo_losses",
    "check_ppo_iteration",
    "check_dpo_loss",
]


def _wrong_tensor(
    what: str, want: torch.Tensor, got: Any, bugs: list[tuple[torch.Tensor, str]], default: str,
    shape_hint: str
) -> CheckFailed:
    """The failure for an answer that differs from ``want``: a tensor of another shape gets ``shape_hint``,
    otherwise the bug it matches is named (:func:`diagnose`)."""
    if isinstance(got, torch.Tensor) and got.shape != want.shape:
        hint = shape_hint
    else:
        hint = diagnose(got, bugs, default)
    return CheckFailed(f"{what}\n   expected: {fmt(want)}\n   got:      {fmt(got)}\n   hint: {hint}")


def _scalar(got: Any, fn_name: str) -> torch.Tensor:
    expect(isinstance(got, torch.Tensor) and got.dim() == 0,
           f"{fn_name} must return a scalar (0-dim) tensor, got {fmt(got, 80)}",
           hint="average over the batch with .mean()")
    return got


# ----------------------------------------------------------------------------------------------- references


def reference_bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """mean softplus(r_rejected − r_chosen) = mean −log σ(r_chosen − r_rejected)."""
    return F.softplus(r_rejected - r_chosen).mean()


def reference_response_logprobs(logits: torch.Tensor, seq: torch.Tensor, prompt_len: int) -> torch.Tensor:
    """(B, L, V), (B, L) -> (B, L − prompt_len):
    log p(seq[:, t] | seq[:, :t]) for t ≥ prompt_len, by a loop."""
    cols = []
    for t in range(prompt_len, seq.shape[1]):
        logp_t = torch.log_softmax(logits[:, t - 1].double(), dim=-1)  # (B, V): the prediction made at t − 1
        cols.append(logp_t[torch.arange(seq.shape[0]), seq[:, t]])  # (B,)
    return torch.stack(cols, dim=1).to(logits.dtype)  # (B, T)


def reference_kl_shaped_rewards(
    score: torch.Tensor, logp: torch.Tensor, logp_ref: torch.Tensor, beta: float
) -> torch.Tensor:
    """r_t = −β (logp_t − logp_ref_t), plus score on the last token: (B,), (B, T), (B, T) -> (B, T)."""
    last = F.one_hot(torch.tensor(logp.shape[1] - 1), logp.shape[1]).to(logp.dtype)  # (T,)
    return -beta * (logp - logp_ref) + score[:, None] * last[None, :]


def reference_gae(
    rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE in closed form: δ_t = r_t + γ V_{t+1} − V_t (V_T = 0), A = δ · M with M[s, t] = (γλ)^(s−t) for s ≥
    t.

    returns = A + V (the raw advantages, before any normalisation); advantages are whitened over the
    whole batch when ``normalize`` (mean 0, std 1, unbiased std).
    """
    B, T = rewards.shape
    r, v = rewards.double(), values.double()
    # (B, T), zero after the last token
    next_v = torch.cat([v[:, 1:], torch.zeros(B, 1, dtype=v.dtype)], dim=1)
    delta = r + gamma * next_v - v  # (B, T)
    s = torch.arange(T)
    power = (s[:, None] - s[None, :]).clamp(min=0).double()  # (T, T): s − t
    M = (gamma * lam) ** power * (s[:, None] >= s[None, :])  # (T, T), M[s, t]
    adv = delta @ M  # (B, T)
    returns = adv + v
    if normalize:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return adv.to(rewards.dtype), returns.to(rewards.dtype)


def reference_ppo_losses(
    logp_new: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    values_new: torch.Tensor,
    returns: torch.Tensor,
    clip_eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """L_clip = −mean min(ρ A, clip(ρ, 1 − ε, 1 + ε) A) with ρ = exp(logp_new − logp_old);
    L_V = ½ mean (V − R)²."""
    ratio = torch.exp(logp_new - logp_old)
    surrogate = torch.minimum(ratio * advantages, ratio.clamp(1 - clip_eps, 1 + clip_eps) * advantages)
    return -surrogate.mean(), 0.5 * ((values_new - returns) ** 2).mean()


def reference_dpo_loss(
    pol_chosen: torch.Tensor, pol_rejected: torch.Tensor, ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """−mean log σ(β [(log π(y_w) − log π_ref(y_w)) − (log π(y_l) − log π_ref(y_l))])."""
    margin = (pol_chosen - ref_chosen) - (pol_rejected - ref_rejected)
    return F.softplus(-beta * margin).mean()


class TinyPolicy(nn.Module):
    """A tiny GPT plus a zero-initialised value head on the final hidden state: ``policy(seq) -> (logits,
    values)``.

    The interface of the notebook's ``PolicyWithValue``: ``.gpt`` is the language model (``.gpt.generate``
    samples), and ``values[:, t]`` is V of the state that ends at token t.
    """

    def __init__(self, gpt: GPT) -> None:
        super().__init__()
        self.gpt = gpt
        self.v_head = nn.Linear(gpt.config.d_model, 1)
        nn.init.zeros_(self.v_head.weight)
        nn.init.zeros_(self.v_head.bias)

    def forward(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with self.gpt.record(hidden=True) as rec:
            logits, _ = self.gpt(seq)  # (B, L, V); rec.hidden (B, L, C) is the input of lm_head
        return logits, self.v_head(rec.hidden).squeeze(-1)  # (B, L, V), (B, L)


# ----------------------------------------------------------------------------------------------- TODO 1


@learner_check(1, "bradley_terry_loss")
def check_bradley_terry_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    rc = torch.randn(64, generator=gen(0)) * 2
    rr = torch.randn(64, generator=gen(1)) * 2
    got = _scalar(call(fn, rc.clone(), rr.clone()), "bradley_terry_loss")
    want = reference_bradley_terry_loss(rc, rr)
    if not matches(got, want):
        hint = diagnose(got, [
            (reference_bradley_terry_loss(rr, rc),
             "chosen and rejected are swapped: this loss pushes the REJECTED "
             "reward up. The chosen reward comes first: −log σ(r_chosen − r_rejected)"),
            (F.softplus(rr - rc).sum(), "you summed over pairs; take the mean"),
            (-torch.sigmoid(rc - rr).mean(), "take the log: −log σ(r_chosen − r_rejected), not −σ(...)"),
            (F.logsigmoid(rc - rr).mean(), "wrong sign: the loss is the NEGATIVE log-likelihood, "
                                            "−log σ(r_chosen − r_rejected)"),
            (-F.logsigmoid(rc.mean() - rr.mean()),
             "take −log σ(r_chosen − r_rejected) per pair, then the mean (not σ of the mean margin)"),
        ], "loss = −log σ(r_chosen − r_rejected), averaged over pairs")
        raise CheckFailed(f"bradley_terry_loss on 64 random pairs\n   expected: {float(want):.6f}\n"
                          f"   got:      {float(got):.6f}\n   hint: {hint}")
    big = torch.tensor([50.0, -200.0])
    got = _scalar(call(fn, big, torch.zeros(2)), "bradley_terry_loss")
    want = reference_bradley_terry_loss(big, torch.zeros(2))
    expect(bool(torch.isfinite(got)) and abs(float(got) - float(want)) < 1e-3,
           f"bradley_terry_loss with reward gaps +50 and −200 gave {float(got)}, expected {float(want):.3f} "
           "(a badly ranked pair costs about its gap)",
           hint="log(sigmoid(x)) underflows to log(0) = −inf for x ≪ 0, and log(1 + exp(−x)) overflows; "
                "use F.logsigmoid(x) (or F.softplus(−x))")
    x = torch.zeros(3, requires_grad=True)
    tied = _scalar(call(fn, x, torch.zeros(3)), "bradley_terry_loss")
    expect(tied.requires_grad, "the loss has no gradient with respect to r_chosen",
           hint="build the loss from r_chosen with torch operations (no .item(), no .detach())")
    tied.backward()
    expect(x.grad is not None and torch.allclose(x.grad, torch.full((3,), -0.5 / 3)),
           f"the gradient with respect to r_chosen at a tie should be −0.5/3 each, got {fmt(x.grad, 80)}",
           hint="build the loss from r_chosen with torch operations (no .item(), no .detach())")
    return ("equals mean softplus(r_rejected − r_chosen) on 64 pairs, stays finite at a gap of −200, "
            "and its gradient raises r_chosen")


# ----------------------------------------------------------------------------------------------- TODO 2


@learner_check(2, "response_logprobs")
def check_response_logprobs(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> str:
    B, L, V, P = 3, 11, 7, 4
    logits = torch.randn(B, L, V, generator=gen(2)) * 2  # (B, L, V)
    seq = torch.randint(0, V, (B, L), generator=gen(3))  # (B, L)
    want = reference_response_logprobs(logits, seq, P)  # (B, L − P)
    got = call(fn, logits.clone(), seq.clone(), P)
    if not matches(got, want):
        no_shift = torch.log_softmax(logits[:, P:], -1).gather(-1, seq[:, P:, None]).squeeze(-1)
        shifted_logp = torch.log_softmax(logits[:, P - 1:-1], -1)
        bugs = [
            (no_shift, "off by one: the logits at position t predict the NEXT token t + 1, so the log-prob "
             "of seq[:, t] comes from logits[:, t − 1]"),
            (shifted_logp.gather(-1, seq[:, P - 1:-1, None]).squeeze(-1),
             "the tokens are shifted too: logits[:, t − 1] give the log-prob of seq[:, t], so pick "
             "seq[:, prompt_len:], the token it predicts"),
            (torch.log_softmax(logits[:, P - 1:-1], 1).gather(-1, seq[:, P:, None]).squeeze(-1),
             "normalise over the vocabulary: log_softmax(..., dim=-1), not over the time axis"),
            (logits[:, P - 1:-1].gather(-1, seq[:, P:, None]).squeeze(-1),
             "these are raw logits; take log_softmax over the vocabulary first"),
        ]
        raise _wrong_tensor(
            "response_logprobs(logits (3, 11, 7), seq, prompt_len=4) differs from a loop over positions",
            want, got,
            bugs, "logits[:, t − 1] predict seq[:, t]: use logits[:, prompt_len − "
                  "1 : −1] and seq[:, prompt_len:]",
            f"one log-prob per RESPONSE token: shape (B, L − prompt_len) = {tuple(want.shape)}",
        )
    assert_close(got, want, "response_logprobs")
    big = logits * 100  # gaps of hundreds of nats: a softmax probability underflows to 0 in float32
    want = reference_response_logprobs(big, seq, P)
    got = call(fn, big.clone(), seq.clone(), P)
    if isinstance(got, torch.Tensor) and got.shape == want.shape and not bool(torch.isfinite(got).all()):
        raise CheckFailed("response_logprobs on logits × 100 gave -inf or nan\n   hint: log(softmax(x)) "
                          "underflows to log(0) = -inf for unlikely tokens; F.log_softmax is stable")
    assert_close(got, want, "response_logprobs on logits × 100", hint="use F.log_softmax(..., dim=-1)")
    for b, p in ((1, L - 1), (1, 1)):  # one sequence; one response token, then a one-token prompt
        want = reference_response_logprobs(logits[:b], seq[:b], p)
        got = call(fn, logits[:b].clone(), seq[:b].clone(), p)
        if isinstance(got, torch.Tensor) and got.shape != want.shape and got.numel() == want.numel():
            raise CheckFailed(f"response_logprobs on B = {b}, L = {L}, prompt_len = {p}: shape "
                              f"{tuple(got.shape)}, expected {tuple(want.shape)}\n   hint: a size-1 batch or "
                              "response lost its axis: squeeze only the gathered axis, .squeeze(-1)")
        assert_close(got, want, f"response_logprobs on B = {b}, L = {L}, prompt_len = {p}",
                     hint="logits[:, prompt_len − 1 : −1] and seq[:, prompt_len:] for any B and prompt_len")
    return ("matches an explicit loop over response positions (log_softmax of logits[:, "
            "t − 1] at seq[:, t]) within 1e-5, also on logits × 100, one sequence and one response token")


# ----------------------------------------------------------------------------------------------- TODO 3


@learner_check(3, "kl_shaped_rewards")
def check_kl_shaped_rewards(fn: Callable[..., torch.Tensor]) -> str:
    B, T = 4, 6
    score = torch.randn(B, generator=gen(4))
    logp = -torch.rand(B, T, generator=gen(5)) * 3
    logp_ref = -torch.rand(B, T, generator=gen(6)) * 3
    inputs = (score.clone(), logp.clone(), logp_ref.clone())
    for beta in (0.1, 0.0):
        got = call(fn, *inputs, beta)
        expect(torch.equal(inputs[1], logp) and torch.equal(inputs[0], score),
               "kl_shaped_rewards changed its input tensors in place",
               hint="start from a new tensor: rewards = -beta * (logp - "
                    "logp_ref), then add to rewards[:, -1]")
        want = reference_kl_shaped_rewards(score, logp, logp_ref, beta)
        if matches(got, want):
            continue
        bugs = [
            (reference_kl_shaped_rewards(score, logp_ref, logp, beta),
             "the KL sign is flipped: the penalty is −β (log π − log π_ref), so tokens the policy likes "
             "MORE than the reference cost reward (your version pays the policy to drift)"),
            (-beta * (logp - logp_ref) + score[:, None],
             "the score is added to every token; it belongs to the LAST token only (r[:, -1] += score)"),
            (-beta * (logp - logp_ref) + score[:, None] * F.one_hot(torch.tensor(0), T),
             "the score is added to the FIRST token; it is earned at the end of the response: r[:, -1]"),
            (torch.cat([-beta * (logp - logp_ref)[:, :-1], score[:, None]], 1),
             "the score REPLACES the KL term of the last token; add it: r[:, -1] = r[:, -1] + score"),
            (reference_kl_shaped_rewards(score, logp, logp_ref, 1.0),
             "β is missing: multiply the log-ratio by beta, r_t = −β (logp_t − logp_ref_t)"),
        ]
        raise _wrong_tensor(
            f"kl_shaped_rewards(score (4,), logp (4, 6), logp_ref (4, 6), beta={beta})", want, got, bugs,
            "r_t = −β (logp_t − logp_ref_t) for every t, and r_{T−1} += score",
            f"one reward per response token: shape (B, T) = {(B, T)}",
        )
    return ("r_t = −β (logp_t − logp_ref_t), plus the score at the last token, "
            "for β = 0.1 and 0 on (4, 6) inputs")


# ----------------------------------------------------------------------------------------------- TODO 4


def _gae_hint(got: tuple[Any, Any], rewards: torch.Tensor, values: torch.Tensor, gamma: float,
              lam: float) -> str:
    adv, ret = got
    ref_adv, ref_ret = reference_gae(rewards, values, gamma, lam)
    raw_adv, _ = reference_gae(rewards, values, gamma, lam, normalize=False)
    boot = torch.cat([values[:, 1:], values[:, -1:]], dim=1)  # V_T = V_{T−1}: the bootstrap bug
    if matches(adv, raw_adv):
        return ("the advantages are not normalised: whiten them over the whole batch, "
                "(A − A.mean()) / (A.std() + 1e-8), AFTER computing returns = A + V from the raw ones")
    if matches(ret, ref_adv + values):
        return ("returns were built from the NORMALISED advantages, so the value head would chase the wrong "
                "targets; returns = raw advantages + values, then normalise the advantages")
    row = (raw_adv - raw_adv.mean(1, keepdim=True)) / (raw_adv.std(1, keepdim=True) + 1e-8)
    if matches(adv, row):
        return "whiten the advantages over the whole batch (one mean and std), not per row"
    if matches(adv, (raw_adv - raw_adv.mean()) / (raw_adv.std(unbiased=False) + 1e-8)):
        return "torch's A.std() (unbiased, n − 1) is the normaliser here; you used the biased std"
    if matches(ret, raw_adv) or matches(ret, ref_adv):
        return ("returns are the VALUE TARGETS: returns = advantages + values "
                "(before normalising the advantages)")
    for name, variant in (("γλ", (gamma, gamma * lam)), ("λ", (gamma, lam)), ("γ", (gamma, gamma))):
        g_, decay = variant
        delta = rewards + g_ * torch.cat([values[:, 1:], torch.zeros(values.shape[0], 1)], 1) - values
        a = torch.zeros_like(delta)
        run = torch.zeros(values.shape[0])
        for t in reversed(range(values.shape[1])):
            run = delta[:, t] + decay * run
            a[:, t] = run
        if name != "γλ" and matches(adv, (a - a.mean()) / (a.std() + 1e-8)):
            return f"the running sum decays by {name} only; it must decay by γ·λ: A_t = δ_t + γλ A_(t+1)"
    next_v = torch.cat([values[:, 1:], torch.zeros(values.shape[0], 1)], 1)
    delta = rewards + gamma * next_v - values
    fwd = torch.zeros_like(delta)
    run = torch.zeros(values.shape[0])
    for t in range(values.shape[1]):
        run = delta[:, t] + gamma * lam * run
        fwd[:, t] = run
    if matches(adv, (fwd - fwd.mean()) / (fwd.std() + 1e-8)):
        return ("the recursion runs forward in time; A_t needs A_(t+1), so it runs backward: "
                "for t in reversed(range(T))")
    no_gamma = rewards + next_v - values
    a = torch.zeros_like(no_gamma)
    run = torch.zeros(values.shape[0])
    for t in reversed(range(values.shape[1])):
        run = no_gamma[:, t] + gamma * lam * run
        a[:, t] = run
    if matches(adv, (a - a.mean()) / (a.std() + 1e-8)):
        return "γ is missing in δ: δ_t = r_t + γ V_(t+1) − V_t"
    delta_b = rewards + gamma * boot - values
    a = torch.zeros_like(delta_b)
    run = torch.zeros(values.shape[0])
    for t in reversed(range(values.shape[1])):
        run = delta_b[:, t] + gamma * lam * run
        a[:, t] = run
    if matches(adv, (a - a.mean()) / (a.std() + 1e-8)):
        return ("wrong bootstrap at the end: after the last token the episode is DONE, so V_T = 0 "
                "(δ_(T−1) = r_(T−1) − V_(T−1)); you reused the last value")
    return ("δ_t = r_t + γ V_(t+1) − V_t with V_T = 0; A_t = δ_t + γλ A_(t+1); "
            "returns = A + V; then normalise A")


@learner_check(4, "gae")
def check_gae(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    B, T = 5, 7
    rewards = torch.randn(B, T, generator=gen(7))
    values = torch.randn(B, T, generator=gen(8)) + 2.0  # a large last value makes the bootstrap bug visible
    for gamma, lam in ((0.9, 0.8), (1.0, 0.95)):
        r_in, v_in = rewards.clone(), values.clone()
        got = call(fn, r_in, v_in, gamma, lam)
        expect(torch.equal(r_in, rewards) and torch.equal(v_in, values), "gae changed its input tensors in "
                                                                         "place",
               hint="write the advantages into a new tensor (torch.zeros_like(rewards)), not into rewards")
        expect_tensors(got, 2, f"gae must return (advantages, returns), got {fmt(got, 80)}",
                       "return adv, returns")
        want_adv, want_ret = reference_gae(rewards, values, gamma, lam)
        # atol 1e-4, not 1e-5: the reference is a float64 closed form, a learner's GAE a float32 backward
        # loop that accumulates the T discounted terms one by one (this check's tolerance all along)
        if not (matches(got[0], want_adv, atol=1e-4) and matches(got[1], want_ret, atol=1e-4)):
            raise CheckFailed(
                f"gae(rewards (5, 7), values (5, 7), gamma={gamma}, lam={lam}) differs from the closed form "
                f"A_t = Σ_l (γλ)^l δ_(t+l)\n   expected advantages: {fmt(want_adv, 160)}\n"
                f"   got advantages:      {fmt(got[0], 160)}\n   expected returns: {fmt(want_ret, 160)}\n"
                f"   got returns:      {fmt(got[1], 160)}\n   hint: "
                f"{_gae_hint(got, rewards, values, gamma, lam)}"
            )
    raw = call(fn, rewards.clone(), values.clone(), 0.9, 0.8, normalize=False)
    want_adv, _ = reference_gae(rewards, values, 0.9, 0.8, normalize=False)
    expect(matches(raw[0], want_adv, atol=1e-4), "gae(..., normalize=False) must return the raw advantages",
           hint="only whiten the advantages when normalize=True")
    return ("matches the closed form A_t = Σ_l (γλ)^l δ_t+l with V = 0 after the last token, for (γ, λ) = "
            "(0.9, 0.8) and (1, 0.95); returns = raw A + V; A whitened over the batch")


# ----------------------------------------------------------------------------------------------- TODO 5


@learner_check(5, "ppo_losses")
def check_ppo_losses(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    eps = 0.2
    # four crafted tokens: (ratio, advantage) = (1.5, +1) clipped above, (0.5, −1) clipped below,
    # (0.5, +1) and (1.5, −1) where the unclipped term is the pessimistic one, then random tokens
    ratio = torch.cat([torch.tensor([1.5, 0.5, 0.5, 1.5, 1.1, 0.9]), 0.5 + torch.rand(10, generator=gen(9))])
    adv = torch.cat([torch.tensor([1.0, -1.0, 1.0, -1.0, 2.0, -2.0]), torch.randn(10, generator=gen(10))])
    logp_old = -torch.rand(16, generator=gen(11)) * 3
    values = torch.randn(16, generator=gen(12))
    returns = torch.randn(16, generator=gen(13))
    logp_new = (logp_old + ratio.log()).requires_grad_(True)
    got = call(fn, logp_new, logp_old.clone(), adv.clone(), values.clone(), returns.clone(), eps)
    expect(isinstance(got, tuple) and len(got) == 2, f"ppo_losses must return (policy_loss, value_loss), got "
           f"{fmt(got, 80)}", hint="return policy_loss, value_loss")
    pl, vl = _scalar(got[0], "policy_loss"), _scalar(got[1], "value_loss")
    want_pl, want_vl = reference_ppo_losses(logp_new.detach(), logp_old, adv, values, returns, eps)
    if not matches(pl, want_pl):
        r_, a_ = ratio, adv
        inv = torch.exp(logp_old - logp_new.detach())  # π_old / π_new: the ratio the wrong way round
        one_side = "the ratio is clipped on one side only; clip to [1 − ε, 1 + ε]"
        hint = diagnose(pl, [
            (-torch.maximum(r_ * a_, r_.clamp(1 - eps, 1 + eps) * a_).mean(),
             "min vs max confusion: the surrogate takes the MIN (pessimistic) of the clipped and unclipped "
             "terms, and the loss is its negative, −mean min(...) = mean max(−ρA, −clip(ρ)A)"),
            (-torch.minimum(r_ * a_, r_.clamp(max=1 + eps) * a_).mean(), one_side),
            (-torch.minimum(r_ * a_, r_.clamp(min=1 - eps) * a_).mean(), one_side),
            (-(r_ * a_).mean(), "no clipping at all: take min(ρ A, clip(ρ, 1 − ε, 1 + ε) A)"),
            (-torch.minimum((logp_new.detach() / logp_old) * a_,
                            (logp_new.detach() / logp_old).clamp(1 - eps, 1 + eps) * a_).mean(),
             "ρ = exp(logp_new − logp_old): a ratio of probabilities is the exp of a difference of "
             "log-probs, not a ratio of log-probs"),
            (torch.minimum(r_ * a_, r_.clamp(1 - eps, 1 + eps) * a_).mean(),
             "wrong sign: we MAXIMISE the surrogate, so the loss is its negative"),
            (-torch.minimum(inv * a_, inv.clamp(1 - eps, 1 + eps) * a_).mean(),
             "the log-ratio is the wrong way round: ρ = exp(logp_new − logp_old) = π_new / π_old"),
        ], "policy_loss = −mean min(ρ A, clip(ρ, 1 − ε, 1 + ε) A) with ρ = exp(logp_new − logp_old)")
        raise CheckFailed(f"policy_loss on 16 tokens (clipping active above and below)\n"
                          f"   expected: {float(want_pl):.6f}\n   got:      {float(pl.detach()):.6f}\n   "
                          f"hint: {hint}")
    if not matches(vl, want_vl):
        hint = diagnose(vl, [
            (0.5 * ((values - adv) ** 2).mean(),
             "the value head must regress onto the RETURNS (A + V), not the advantages"),
            (((values - returns) ** 2).mean(), "missing the ½: value_loss = ½ mean (values_new − returns)²"),
        ], "value_loss = ½ mean (values_new − returns)²")
        raise CheckFailed(f"value_loss on 16 tokens\n   expected: {float(want_vl):.6f}\n   got:      "
                          f"{float(vl.detach()):.6f}\n   hint: {hint}")
    pl3, _ = call(fn, logp_new.detach(), logp_old.clone(), adv.clone(), values.clone(), returns.clone(), 0.3)
    want3, _ = reference_ppo_losses(logp_new.detach(), logp_old, adv, values, returns, 0.3)
    if not matches(pl3, want3):
        hint = ("clip_eps is ignored: clip to [1 − clip_eps, 1 + clip_eps] with the argument, not 0.8 and 1.2"
                if matches(pl3, want_pl) else "clip(ρ, 1 − clip_eps, 1 + clip_eps) with the clip_eps given")
        raise CheckFailed(f"policy_loss with clip_eps = 0.3\n   expected: {float(want3):.6f}\n   got:      "
                          f"{fmt(pl3)}\n   hint: {hint}")
    expect(pl.requires_grad, "policy_loss has no gradient with respect to logp_new (it is detached from it)",
           hint="compute the ratio from logp_new with torch operations: no .detach(), .item() or "
                "torch.no_grad() on the path from logp_new to the loss")
    pl.backward()
    grad = logp_new.grad
    expect(grad is not None, "policy_loss has no gradient with respect to logp_new",
           hint="compute the ratio from logp_new with torch operations (no .detach())")
    expect(abs(float(grad[0])) < 1e-9 and abs(float(grad[1])) < 1e-9,
           f"where the clip is active (ρ = 1.5, A > 0 and ρ = 0.5, A < 0) the gradient must be 0, got "
           f"{float(grad[0]):.4f} and {float(grad[1]):.4f}",
           hint="the clipped term is constant in logp_new there; min(...) must pick it")
    expect(abs(float(grad[2]) + 0.5 * 1.0 / 16) < 1e-6,
           f"at ρ = 0.5, A = +1 the gradient must be −ρA/16 = {-0.5 / 16:.5f}, got {float(grad[2]):.5f}",
           hint="below 1 − ε with A > 0 the UNCLIPPED term is the smaller one, so it carries the gradient")
    return ("policy and value losses match −mean min(ρA, clip(ρ)A) and ½ mean (V − R)² on 16 tokens, ε = 0.2 "
            "and 0.3; gradient 0 where the clip is active on each side, −ρA/N where it is not")


# ----------------------------------------------------------------------------------------------- TODO 6

_TINY = GPTConfig(vocab_size=6, block_size=16, n_layer=1, n_head=2, d_model=16, dropout=0.0)
_GOAL = 3  # the token the toy reward wants


def _toy_reward(resp: torch.Tensor) -> torch.Tensor:
    """Fraction of the response that is token 3, centred: (B, T) -> (B,)."""
    return (resp == _GOAL).float().mean(1) * 4 - 1


def _toy_config(**overrides: Any) -> SimpleNamespace:
    cfg = dict(beta=0.0, response_len=6, clip_eps=0.2, gamma=1.0, lam=0.95, epochs=2, minibatch=16,
               vf_coef=0.5,
               max_grad_norm=1.0)
    cfg.update(overrides)
    return SimpleNamespace(**cfg)


def _goal_fraction(policy: TinyPolicy, prompt: torch.Tensor, seed: int) -> float:
    out = policy.gpt.generate(prompt.repeat(256, 1), 6, generator=gen(seed))
    return float((out[:, prompt.shape[1]:] == _GOAL).float().mean())


def reference_ppo_iteration(policy: TinyPolicy, ref: GPT, prompt: torch.Tensor, reward_fn: Callable,
                            opt: torch.optim.Optimizer, cfg: SimpleNamespace, generator: torch.Generator,
                            bug: str | None = None) -> dict:
    """One rollout → score → update iteration built from the references above; ``bug`` (one of
    :data:`_ITERATION_BUGS`) makes it the known-buggy variant of that name, to name a learner's bug."""
    P = prompt.shape[1]
    sampler = ref if bug == "sample_ref" else policy.gpt
    seq = sampler.generate(prompt, cfg.response_len, generator=generator)  # (B, P + T)
    with torch.no_grad():
        logits, values = policy(seq)
        logp_old = reference_response_logprobs(logits, seq, P)  # (B, T)
        values = values[:, P:] if bug == "values_shift" else values[:, P - 1 : -1]  # (B, T)
        logp_ref = reference_response_logprobs(ref(seq)[0], seq, P)
        score = reward_fn(seq[:, P:])  # (B,)
        a, b = (logp_ref, logp_old) if bug == "kl_swapped" else (logp_old, logp_ref)
        rewards = reference_kl_shaped_rewards(score, a, b, 0.0 if bug == "no_beta" else cfg.beta)
        gamma, lam = (1.0, 0.95) if bug == "default_gae" else (cfg.gamma, cfg.lam)
        adv, returns = reference_gae(rewards, values, gamma, lam)
    B = seq.shape[0]
    for _ in range(cfg.epochs):
        order = torch.randperm(B, generator=generator)
        for start in range(0, B, cfg.minibatch):
            i = order[start : start + cfg.minibatch]
            logits_new, values_new = policy(seq[i])
            logp_new = reference_response_logprobs(logits_new, seq[i], P)
            old = logp_new.detach() if bug == "old_from_current" else logp_old[i]
            v_new = values_new[:, P:] if bug == "values_new_shift" else values_new[:, P - 1 : -1]
            target = adv[i] if bug == "value_on_adv" else returns[i]
            pl, vl = reference_ppo_losses(logp_new, old, adv[i], v_new, target,
                                          0.2 if bug == "default_clip" else cfg.clip_eps)
            loss = pl + (1.0 if bug == "no_vf_coef" else 0.0 if bug == "no_value_loss" else cfg.vf_coef) * vl
            if bug != "no_zero_grad":
                opt.zero_grad(set_to_none=True)
            loss.backward()
            if bug != "no_clip_grad":
                nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
            opt.step()
    return dict(seq=seq, score=score, kl=(logp_old - logp_ref).sum(1))


# The bugs the exact stage of check_ppo_iteration can name: reference_ppo_iteration(..., bug=name) is what
# each gives, and the hint says what to write instead.
_ITERATION_BUGS = {
    "sample_ref": "the rollout was sampled from the reference model; sample from the POLICY: "
                  "policy.gpt.generate(prompt, cfg.response_len, generator=generator)",
    "kl_swapped": "the KL arguments are swapped: kl_shaped_rewards(score, logp_old, logp_ref, cfg.beta), the "
                  "policy's log-probs first and the reference's second (swapped, β pays the policy to drift)",
    "no_beta": "the KL penalty is missing: pass cfg.beta to kl_shaped_rewards (β = 0.2 here, not 0)",
    "default_gae": "gae ran with its default γ and λ: pass cfg.gamma and cfg.lam (0.9 and 0.8 here)",
    "old_from_current": "logp_old must come from the ROLLOUT, computed once before the updates without "
                        "gradients; recomputed from the current policy inside the epoch loop it makes the "
                        "ratio 1, so the clip never acts",
    "values_shift": "the rollout values are off by one: V of the state before response token t is at "
                    "position P − 1 + t, so take values[:, P − 1 : −1], the same slice as the log-probs",
    "values_new_shift": "the values of the update are off by one: take values_new[:, P − 1 : −1], the same "
                        "slice as the log-probs",
    "value_on_adv": "the value head is trained on the advantages; its targets are the RETURNS (A + V): "
                    "ppo_losses(..., values_new, returns[i], ...)",
    "default_clip": "clip_eps is ignored: pass cfg.clip_eps to ppo_losses (0.1 here, not the default 0.2)",
    "no_vf_coef": "the value loss is not weighted: loss = policy_loss + cfg.vf_coef * value_loss",
    "no_value_loss": "the value head never changed: the value loss is missing; "
                     "loss = policy_loss + cfg.vf_coef * value_loss",
    "no_zero_grad": "gradients pile up across minibatches: call opt.zero_grad() before every loss.backward()",
    "no_clip_grad": "the gradient is not clipped: nn.utils.clip_grad_norm_(policy.parameters(), "
                    "cfg.max_grad_norm) between loss.backward() and opt.step()",
}


def _exact_setup() -> tuple[TinyPolicy, GPT, torch.optim.Optimizer]:
    """A policy that differs from its reference (so that the KL, the ratio and the clip all act), with a
    random value head, and plain SGD (whose update shows every term of the loss, unlike Adam's first step)."""
    torch.manual_seed(0)
    ref = GPT(_TINY).eval()
    g = gen(30)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.3)
        policy = TinyPolicy(copy.deepcopy(ref))
        for p in policy.gpt.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.2)
        policy.v_head.weight.copy_(torch.randn(policy.v_head.weight.shape, generator=g) * 0.5)
    return policy, ref, torch.optim.SGD(policy.parameters(), lr=1.0)


def _flat(policy: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in policy.parameters()]).clone()


def _run_iteration(fn: Callable[..., dict], *args: Any) -> Any:
    """The learner's ppo_iteration; a crash from backpropagating twice through the rollout gets its cause."""
    try:
        return call(fn, *args)
    except CheckFailed as err:
        if "second time" in str(err) or "backward through the graph" in str(err):
            raise CheckFailed(f"{err}\n   hint: the rollout (logp_old, values, logp_ref, rewards, "
                              "advantages, "
                              "returns) must be computed under torch.no_grad(): they are constants of the "
                              "update") from None
        raise


def _check_exact_iteration(fn: Callable[..., dict]) -> None:
    """One iteration at β = 0.2 with every knob away from its default, 2 epochs of one full-batch minibatch
    (the minibatch order then does not matter), compared with :func:`reference_ppo_iteration`."""
    cfg = _toy_config(beta=0.2, gamma=0.9, lam=0.8, clip_eps=0.1, epochs=2, minibatch=32, vf_coef=0.7,
                      max_grad_norm=0.5)
    prompt = torch.tensor([[0, 1]]).repeat(32, 1)

    def reference(bug: str | None) -> tuple[dict, torch.Tensor]:
        policy, ref, opt = _exact_setup()
        before = _flat(policy)
        out = reference_ppo_iteration(policy, ref, prompt, _toy_reward, opt, cfg, gen(40), bug)
        return out, _flat(policy) - before

    want, want_delta = reference(None)
    policy, ref, opt = _exact_setup()
    before = _flat(policy)
    stats = _run_iteration(fn, policy, ref, prompt, _toy_reward, opt, cfg, gen(40))
    shown = ("ppo_iteration at β = 0.2, γ = 0.9, λ = 0.8, clip_eps = 0.1, vf_coef = 0.7, max_grad_norm = "
             "0.5, 2 epochs of one minibatch, on a policy that differs from its reference")
    seq = stats.get("seq") if isinstance(stats, dict) else None
    if not (isinstance(seq, torch.Tensor) and torch.equal(seq, want["seq"])):
        hint = ("sample first, from the policy, with the generator: seq = policy.gpt.generate(prompt, "
                "cfg.response_len, generator=generator)")
        if isinstance(seq, torch.Tensor) and torch.equal(seq, reference("sample_ref")[0]["seq"]):
            hint = _ITERATION_BUGS["sample_ref"]
        raise CheckFailed(f"{shown}: stats['seq'] is not the rollout sampled from the policy\n   hint: "
                          f"{hint}")
    kl = stats.get("kl")
    if not matches(kl, want["kl"], atol=1e-4, rtol=1e-4):
        hint = diagnose(kl, [(-want["kl"], "the KL's sign is flipped: kl = (logp_old − logp_ref).sum(1), the "
                                            "policy's log-probs minus the reference's")],
                        "kl = (logp_old − logp_ref).sum(1): the rollout's log-probs under the policy minus "
                        "those under the reference, summed over the response")
        raise _wrong_tensor(f"{shown}: stats['kl']", want["kl"], kl, [], hint, "kl has one number per "
                                                                               "sequence")
    delta = _flat(policy) - before
    scale = float(want_delta.abs().max())
    if float((delta - want_delta).abs().max()) <= 1e-3 * scale:
        return
    if float(delta.abs().max()) == 0.0:
        hint = "no parameter moved: call opt.step() after loss.backward()"
    else:
        hint = next((h for bug, h in _ITERATION_BUGS.items()
                     if float((delta - reference(bug)[1]).abs().max()) <= 1e-3 * scale),
                    "the update differs from the reference and matches none of the usual bugs: check the "
                    "rollout (logp_old, values[:, P − 1 : −1], logp_ref under torch.no_grad()), "
                    "kl_shaped_rewards(score, "
                    "logp_old, logp_ref, cfg.beta), gae(rewards, values, cfg.gamma, cfg.lam), "
                    "ppo_losses(..., "
                    "cfg.clip_eps), loss = policy_loss + cfg.vf_coef * value_loss, zero_grad, backward, "
                    "clip_grad_norm_(cfg.max_grad_norm), step")
    raise CheckFailed(f"{shown}: the parameters after the update differ from the reference's (max abs diff "
                      f"{float((delta - want_delta).abs().max()):.2e}, update size {scale:.2e})\n   hint: "
                      f"{hint}")


@learner_check(6, "ppo_iteration")
def check_ppo_iteration(fn: Callable[..., dict]) -> str:
    torch.manual_seed(0)
    ref = GPT(_TINY).eval()
    policy = TinyPolicy(copy.deepcopy(ref))
    ref_state = {k: v.clone() for k, v in ref.state_dict().items()}
    v_head = policy.v_head.weight.detach().clone()
    opt = torch.optim.Adam(policy.parameters(), lr=1e-2)
    prompt = torch.tensor([[0, 1]]).repeat(32, 1)  # (32, 2)
    cfg = _toy_config()
    before = _goal_fraction(policy, prompt[:1], 100)
    steps = []
    adam_step = opt.step
    opt.step = lambda *a, **k: (steps.append(1), adam_step(*a, **k))[1]  # type: ignore[method-assign]
    stats = _run_iteration(fn, policy, ref, prompt, _toy_reward, opt, cfg, gen(14))
    expect(isinstance(stats, dict) and {"seq", "score", "kl"} <= set(stats),
           f"ppo_iteration must return a dict with at least 'seq', 'score', 'kl', got {fmt(stats, 120)}",
           hint="return dict(seq=seq, score=score, kl=kl, ...) from the rollout")
    seq = stats["seq"]
    expect(isinstance(seq, torch.Tensor) and seq.shape == (32, 8),
           f"stats['seq'] must be the (B, prompt_len + response_len) = (32, 8) rollout, got {fmt(seq, 80)}",
           hint="seq = policy.gpt.generate(prompt, cfg.response_len, generator=generator)")
    expect(torch.equal(seq[:, :2], prompt), "stats['seq'] does not start with the prompt",
           hint="generate continues the prompt")
    kl = stats["kl"]
    expect(isinstance(kl, torch.Tensor) and kl.shape == (32,),
           f"stats['kl'] must have shape (32,), got {fmt(kl, 120)}",
           hint="kl = (logp_old − logp_ref).sum(1): one number per sequence, "
                "from the rollout before the update")
    expect(float(kl.abs().max()) < 1e-4,
           "on the first iteration the policy IS the reference, so each sequence's KL must be 0; got "
           f"{fmt(kl, 120)}",
           hint="logp_old must come from the ROLLOUT, computed once before the updates without gradients; "
                "recomputed from the updated policy (e.g. inside the epoch loop) it makes the ratio 1 in the "
                "update and the KL non-zero here")
    expect(torch.allclose(stats["score"], _toy_reward(seq[:, 2:])),
           "stats['score'] is not reward_fn of the sampled responses",
           hint="score = reward_fn(seq[:, prompt_len:])")
    if len(steps) != 4:  # cfg.epochs = 2 passes over 32 sequences in minibatches of 16
        hint = {0: "call opt.step() after loss.backward()",
                2: "one opt.step() per MINIBATCH: cfg.epochs passes, each over minibatches of cfg.minibatch "
                   "sequences (either the epochs or the minibatches are missing)",
                1: "cfg.epochs passes, each over minibatches of cfg.minibatch sequences, one opt.step() each"}
        raise CheckFailed("with cfg.epochs = 2 and cfg.minibatch = 16, 32 sequences need 4 optimiser steps "
                          f"per iteration; ppo_iteration made {len(steps)}\n   hint: "
                          f"{hint.get(len(steps), hint[1])}")
    _check_exact_iteration(fn)
    for i in range(7):
        stats = _run_iteration(fn, policy, ref, prompt, _toy_reward, opt, cfg, gen(15 + i))
    for k, v in ref.state_dict().items():
        expect(torch.equal(v, ref_state[k]), f"the reference model changed ({k})",
               hint="the reference is frozen: compute logp_ref under torch.no_grad() and never step it")
    expect(not torch.equal(policy.v_head.weight.detach(), v_head),
           "the value head never changed: the value loss is not being optimised",
           hint="loss = policy_loss + cfg.vf_coef * value_loss, with values "
                "from policy(seq) inside the update")
    after = _goal_fraction(policy, prompt[:1], 100)
    expect(after > before + 0.25,
           f"8 PPO iterations with β = 0 on a reward for token 3 moved its frequency from {before:.2f} to "
           f"{after:.2f}; expected a rise of more than 0.25",
           hint="sample from the POLICY, score, shape rewards, GAE, then cfg.epochs passes of the clipped "
                "loss with opt.step(); logp_old and the advantages come from the rollout, without gradients")
    rollout = float((stats["seq"][:, 2:] == _GOAL).float().mean())
    expect(rollout > before + 0.2,
           f"the policy now writes token 3 at rate {after:.2f}, but the last rollout holds it at rate "
           f"{rollout:.2f}",
           hint="the rollout must be sampled from the POLICY (policy.gpt.generate), not from the reference")
    return ("on a tiny GPT with a reward for token 3: first-iteration KL 0, score = reward_fn(response), 4 "
            "optimiser steps per iteration; at β = 0.2 (γ, λ, ε, vf_coef, grad clip all set) the update "
            "equals "
            "the reference's; reference frozen, value head trained; 8 iterations raise token 3's frequency "
            "by more than 0.25")


# ----------------------------------------------------------------------------------------------- TODO 7


@learner_check(7, "dpo_loss")
def check_dpo_loss(fn: Callable[..., torch.Tensor]) -> str:
    n = 32
    pc, pr, rc, rr = (-20 - 10 * torch.rand(n, generator=gen(20 + i)) for i in range(4))
    beta = 0.1
    got = _scalar(call(fn, pc.clone(), pr.clone(), rc.clone(), rr.clone(), beta), "dpo_loss")
    want = reference_dpo_loss(pc, pr, rc, rr, beta)
    if not matches(got, want):
        hint = diagnose(got, [
            # swapping chosen and rejected and writing each log-ratio as ref − policy give the same
            # number (the margin's sign flips either way), so one hint names both
            (reference_dpo_loss(pr, pc, rr, rc, beta),
             "the margin has the wrong sign: either chosen and rejected are swapped, or each log-ratio is "
             "taken as log π_ref − log π; it is (log π_c − log ref_c) − (log π_r − log ref_r)"),
            (F.softplus(-beta * (pc - pr)).mean(),
             "the reference is missing: use the log-RATIOS log π − log π_ref of each response"),
            (F.softplus(-((pc - rc) - (pr - rr))).mean(),
             "β is missing: multiply the margin by beta inside the sigmoid"),
            (F.softplus(-((pc - rc) - (pr - rr)) / beta).mean(),
             "β divides the margin; multiply: log σ(β · margin)"),
            (-want, "wrong sign: the loss is −mean log σ(β · margin), the NEGATIVE log-likelihood"),
            (F.softplus(-beta * ((pc - rc) - (pr - rr))).sum(), "you summed over pairs; take the mean"),
        ], "loss = −mean log σ(β [(π_c − ref_c) − (π_r − ref_r)]) with sequence log-probs")
        raise CheckFailed(f"dpo_loss on 32 pairs, beta={beta}\n   expected: {float(want):.6f}\n"
                          f"   got:      {float(got):.6f}\n   hint: {hint}")
    same = _scalar(call(fn, rc.clone(), rr.clone(), rc.clone(), rr.clone(), beta), "dpo_loss")
    expect(abs(float(same) - 0.693147) < 1e-4,
           f"when the policy equals the reference the loss must be log 2 = 0.6931, got {float(same):.4f}",
           hint="the margin is zero when π = π_ref")
    far = torch.tensor([-3000.0, 3000.0])  # β · margin = ∓300: σ underflows to 0 in float32 on the first pair
    zero = torch.zeros(2)
    got = _scalar(call(fn, far, zero, zero, zero, beta), "dpo_loss")
    want = reference_dpo_loss(far, zero, zero, zero, beta)
    expect(bool(torch.isfinite(got)) and abs(float(got) - float(want)) < 1e-3,
           f"dpo_loss with β · margin = −300 and +300 gave {float(got)}, expected {float(want):.3f}",
           hint="log(sigmoid(x)) underflows to log(0) = −inf for x ≪ 0; use F.logsigmoid(x)")
    return ("equals −mean log σ(β [(π_c − ref_c) − (π_r − ref_r)]) on 32 pairs, log 2 when π = π_ref, and "
            "stays finite at β · margin = −300")
