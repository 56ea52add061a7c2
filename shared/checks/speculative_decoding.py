"""Checks for project 17 (speculative decoding): one check per TODO of
``17_speculative_decoding/solution.ipynb``.

References the checks compare against:

* drafting and the verify pass: the same steps written here, on a tiny random GPT target (``shared.model``)
  and a random bigram table as the drafter; the verify pass against one full forward pass without a cache;
* the accept/reject rule of Leviathan et al. 2023 (Algorithm 1, Theorem 3.5) and Chen et al. 2023
  (Algorithm 2): its output distribution is exactly the target's p. The check samples the rule many
  times with a fixed generator and compares frequencies with p by a chi-square test at significance
  :data:`SIGNIFICANCE`; when it fails, it names the known bug whose predicted distribution lies closest to
  the frequencies;
* the loop: greedy speculative decoding gives exactly the target's greedy tokens (whatever the drafter);
* the expected tokens per target pass, sum_{i=0}^{gamma} alpha^i = (1 - alpha^(gamma+1)) / (1 - alpha)
  (Leviathan et al. 2023, Eq. 1), and the walltime improvement (1 - alpha^(gamma+1)) /
  ((1 - alpha)(gamma c + 1)) (their Theorem 3.8).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from scipy import stats

from shared.checks import CheckFailed, call, fmt, hint_on_crash, learner_check
from shared.kv_cache import KVCache
from shared.model import GPT, GPTConfig

__all__ = [
    "SIGNIFICANCE",
    "chi_square_pvalue",
    "reference_expected_tokens",
    "reference_speedup",
    "check_draft",
    "check_verify",
    "check_accept_reject",
    "check_speculative_generate",
    "check_expected_tokens",
    "check_speedup",
]

#: significance level of every distribution test here: p-values below it reject "the same distribution"
SIGNIFICANCE = 1e-3


def _fail(what: str, expected: Any, got: Any, hint: str) -> CheckFailed:
    return CheckFailed(f"{what}\n   expected: {fmt(expected)}\n   got:      {fmt(got)}\n   hint: {hint}")


def _hint(what: str, hint: str) -> CheckFailed:
    return CheckFailed(f"{what}\n   hint: {hint}")


def chi_square_pvalue(counts: np.ndarray, probs: np.ndarray, min_expected: float = 5.0) -> float:
    """p-value of Pearson's chi-square goodness-of-fit test of ``counts`` against ``probs``.

    Categories with expected count below ``min_expected`` are pooled into one (the test's usual validity
    condition); observed counts in categories of probability 0 make the p-value 0."""
    counts = np.asarray(counts, dtype=float).ravel()
    probs = np.asarray(probs, dtype=float).ravel()
    n = counts.sum()
    if np.any(counts[probs <= 0] > 0):
        return 0.0
    expected = probs * n
    big = expected >= min_expected
    obs = list(counts[big])
    exp = list(expected[big])
    if (~big).any() and expected[~big].sum() > 0:
        obs.append(counts[~big].sum())
        exp.append(expected[~big].sum())
    if len(obs) < 2:
        return 1.0
    exp_arr = np.array(exp)
    exp_arr *= n / exp_arr.sum()
    return float(stats.chisquare(np.array(obs), exp_arr).pvalue)


# ------------------------------------------------------------------------------------- shared fixtures

_V = 7


def _tiny_target(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    cfg = GPTConfig(vocab_size=_V, block_size=32, n_layer=2, n_head=2, d_model=16, dropout=0.0)
    model = GPT(cfg).eval()
    with torch.no_grad():  # larger weights: sharper, more varied distributions than the default init
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(6.0)
    return model


def _bigram_table(seed: int, sharp: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = sharp * torch.randn(_V, _V, generator=g) - 1e4 * torch.eye(_V)  # never repeat the last token
    return torch.softmax(logits, dim=-1)  # (V, V): row = last token, so consecutive q rows always differ


def _table_drafter(table: torch.Tensor, greedy: bool = False) -> Callable[[torch.Tensor], torch.Tensor]:
    def next_probs(tokens: torch.Tensor) -> torch.Tensor:
        row = table[int(tokens[-1])]
        if greedy:
            return torch.nn.functional.one_hot(row.argmax(), row.numel()).float()
        return row.clone()

    return next_probs


def _probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).to(logits.dtype)
    return torch.softmax(logits / temperature, dim=-1)


# ----------------------------------------------------------------------------------------------- TODO 1


def _reference_draft(next_probs: Callable, tokens: torch.Tensor, gamma: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    context, drafts, qs = tokens, [], []
    for _ in range(gamma):
        q = next_probs(context)
        x = torch.multinomial(q, 1, generator=g)
        drafts.append(x)
        qs.append(q)
        context = torch.cat([context, x])
    return torch.cat(drafts), torch.stack(qs)


def _as_pair(result: Any, what: str, names: str) -> tuple:
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise _fail(f"{what} must return a pair ({names})", f"({names})", result, f"return {names}")
    return tuple(result)


@learner_check(1, "draft")
def check_draft(draft: Callable[..., Any]) -> str:
    table = _bigram_table(1)
    next_probs = _table_drafter(table)
    for tokens, gamma, seed in ((torch.tensor([3, 1, 4]), 5, 0), (torch.tensor([2]), 1, 7),
                                (torch.tensor([0, 6]), 3, 11)):
        before = tokens.clone()
        got = _as_pair(call(draft, next_probs, tokens, gamma, torch.Generator().manual_seed(seed)),
                       f"draft(next_probs, {tokens.tolist()}, gamma={gamma}, generator)", "drafts, q")
        drafts, q = got
        if not torch.equal(tokens, before):
            raise _hint("draft changed the tokens passed in", "build a new context (torch.cat), do not write "
                                                               "into `tokens` in place")
        want_d, want_q = _reference_draft(next_probs, tokens, gamma, seed)
        if not isinstance(drafts, torch.Tensor) or not isinstance(q, torch.Tensor):
            raise _fail("drafts and q must be tensors", "((gamma,) LongTensor, (gamma, V) tensor)", got,
                        "torch.cat the sampled (1,) tensors; torch.stack the distributions")
        if tuple(drafts.shape) != (gamma,) or tuple(q.shape) != (gamma, _V):
            raise _fail(f"shapes of drafts, q for gamma={gamma}", ((gamma,), (gamma, _V)),
                        (tuple(drafts.shape), tuple(q.shape)),
                        "one draft and one distribution per step: exactly gamma of each (range(gamma))")
        if torch.equal(drafts, want_d) and torch.allclose(q, want_q, atol=1e-6):
            continue
        # diagnose: were the q the distributions the drafts came from, given everything before them?
        ctx = [tokens]
        consistent = True
        for i in range(gamma):
            context = torch.cat([tokens, drafts[:i].long()])
            if not torch.allclose(q[i], next_probs(context), atol=1e-6):
                consistent = False
            ctx.append(context)
        hot = torch.nn.functional.one_hot(drafts.long(), _V).float()
        if torch.allclose(q.float(), hot):
            hint = ("q must keep the drafter's whole distribution q[i] (V probabilities), not a one-hot of "
                    "the sampled token: the accept/reject rule needs q(x) < 1")
        elif gamma > 1 and all(torch.allclose(q[i], next_probs(tokens)) for i in range(gamma)):
            hint = ("every q[i] is the distribution after `tokens` alone: the context was not extended; "
                    "draft i must condition on tokens + drafts[:i]")
        elif all(torch.allclose(q[i], next_probs(torch.cat([tokens, drafts[: i + 1].long()])))
                               for i in range(gamma)):
            hint = ("q[i] is the distribution AFTER draft i (off by one): keep the distribution that "
                    "drafts[i] "
                    "was sampled from")
        elif not consistent:
            hint = "q[i] must be next_probs(tokens + drafts[:i]), the distribution drafts[i] was sampled from"
        elif torch.equal(drafts, q.argmax(-1)) and not torch.equal(drafts, want_d):
            hint = ("the drafts are the argmax of q: sample them, torch.multinomial(q, 1, generator="
                    "generator), so that they follow the drafter's distribution")
        else:
            g1 = call(draft, next_probs, tokens, gamma, torch.Generator().manual_seed(seed))[0]
            if not torch.equal(torch.as_tensor(g1), drafts):
                hint = ("two calls with the same seed gave different drafts: pass generator=generator to "
                        "torch.multinomial")
            else:
                hint = ("sample each draft with torch.multinomial(q, 1, generator=generator), one call per "
                        "draft, in order (the check replays the same generator)")
        raise _fail(f"draft(next_probs, tokens={tokens.tolist()}, gamma={gamma}, generator seed {seed})",
                    (want_d, want_q), (drafts, q), hint)
    return ("drafts and q match a replay with the same generator (gamma = 5, 1, 3); q[i] is the distribution "
            "given tokens + drafts[:i]")


# ----------------------------------------------------------------------------------------------- TODO 2


class _CountingTarget:
    """The tiny target, counting the tokens fed to it (to tell one pass over gamma + 1 from a re-run)."""

    def __init__(self, model: GPT) -> None:
        self.model = model
        self.config = model.config
        self.fed: list[int] = []

    def __call__(self, idx: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        self.fed.append(int(idx.size(1)))
        return self.model(idx, *args, **kwargs)

    def new_kv_cache(self, batch_size: int) -> Any:
        return self.model.new_kv_cache(batch_size)


@learner_check(2, "verify")
def check_verify(verify: Callable[..., Any]) -> str:
    model = _tiny_target(0)
    g = torch.Generator().manual_seed(3)
    for n, gamma, temperature in ((6, 3, 0.7), (1, 2, 1.0), (9, 4, 0.0), (4, 1, 1.3)):
        tokens = torch.randint(0, _V, (n,), generator=g)
        drafts = torch.randint(0, _V, (gamma,), generator=g)
        with torch.no_grad():
            full, _ = model(torch.cat([tokens, drafts])[None])  # (1, n + gamma, V)
        want = _probs(full[0, n - 1:], temperature)  # (gamma + 1, V)
        target = _CountingTarget(model)
        cache = model.new_kv_cache(1)
        if n > 1:
            with torch.no_grad():
                model(tokens[None, :-1], kv_cache=cache, start_pos=0)
        what = f"verify(target, tokens (n={n}), drafts (gamma={gamma}), cache, temperature={temperature})"
        crash = ("the new tokens were written at the wrong positions: feed the LAST committed token followed "
                 "by the drafts, starting at cache.length (= n - 1)")
        with torch.no_grad(), hint_on_crash(crash):
            p = call(verify, target, tokens, drafts, cache, temperature)
        if not isinstance(p, torch.Tensor):
            raise _fail(what, "a (gamma + 1, V) tensor", p, "return the target's distributions p")
        if p.dim() == 3 and p.size(0) == 1:
            raise _fail(what + ": shape", tuple(want.shape), tuple(p.shape), "drop the batch dimension: p[0]")
        if tuple(p.shape) != tuple(want.shape):
            hint = ("gamma + 1 distributions: feed the LAST committed token followed by the gamma drafts "
                    "(the last token's distribution scores draft 1; the last draft's gives the bonus)")
            if p.dim() == 2 and p.size(0) == 1:
                hint = "keep all gamma + 1 positions of the logits, not only the last one"
            raise _fail(what + ": shape", tuple(want.shape), tuple(p.shape), hint)
        if sum(target.fed) > gamma + 1:
            raise _hint(f"{what}: the target was fed {sum(target.fed)} tokens for gamma + 1 = {gamma + 1} "
                        "new positions",
                        "one pass over the gamma + 1 new positions through the KV cache (start at "
                        "cache.length = n - 1); do not re-run the whole sequence")
        if p.detach().lt(-1e-6).any() or not torch.allclose(p.sum(-1), torch.ones(gamma + 1), atol=1e-4):
            hint = "return probabilities, probs_at(logits, temperature), not logits"
            if not p.detach().lt(-1e-6).any() and torch.allclose(p.sum(0), torch.ones(_V), atol=1e-4):
                hint = "softmax over the vocabulary (dim=-1), not over positions"
            raise _fail(what + ": rows must be probability distributions", want, p, hint)
        if not torch.allclose(p, want, atol=1e-5):
            with torch.no_grad():
                wrong_axis = torch.softmax(full[0, n - 1:] / max(temperature, 1e-9), dim=0)
            hint = "feed [tokens[-1], drafts] at start_pos = cache.length (= n - 1) and return probs_at(...)"
            if temperature not in (0.0, 1.0) and torch.allclose(p, _probs(full[0, n - 1:], 1.0), atol=1e-5):
                hint = f"the temperature ({temperature}) was ignored: probs_at(logits, temperature)"
            elif temperature != 0 and torch.allclose(p, wrong_axis, atol=1e-5):
                hint = "softmax over the vocabulary (dim=-1), not over positions"
            elif cache.length == n + gamma + 1 or cache.length == n + gamma - 1:
                hint = ("the new tokens were written at the wrong positions: start at cache.length = n - 1 "
                        "(the cache holds every committed token but the last)")
            raise _fail(what + " vs a full forward pass without cache", want, p, hint)
        if cache.length != n + gamma:
            raise _fail(f"{what}: cache.length afterwards", n + gamma, cache.length,
                        "feed the new positions through the cache (kv_cache=cache) so it holds n + gamma "
                        "positions afterwards")
    return ("gamma + 1 distributions equal a full forward pass without cache (T = 0.7, 1.0, 0 (greedy), "
            "1.3); "
            "one pass over gamma + 1 tokens; cache.length = n + gamma afterwards")


# ----------------------------------------------------------------------------------------------- TODO 3


def _accept_cases() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    q = torch.softmax(1.5 * torch.randn(3, 5, generator=g), -1)
    p = torch.softmax(1.5 * torch.randn(3, 5, generator=g), -1)
    return q[:2], p  # gamma = 2: q (2, 5), p (3, 5)


def _first_token_law(q: torch.Tensor, p: torch.Tensor, accept: torch.Tensor,
                     resample: torch.Tensor) -> np.ndarray:
    """Distribution of the first output token when draft x ~ q is accepted with prob. accept(x), else a
    token is drawn from `resample`."""
    kept = q * accept
    return (kept + (1 - kept.sum()) * resample / resample.sum()).double().numpy()


def _norm(x: torch.Tensor) -> torch.Tensor:
    return x / x.sum()


def _run_rule(accept_reject: Callable, q: torch.Tensor, p: torch.Tensor, trials: int, seed: int,
              what: str) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    gamma, V = q.shape
    draft_gen = torch.Generator().manual_seed(seed)
    rule_gen = torch.Generator().manual_seed(seed + 1)
    first = np.zeros(V)
    n_acc = np.zeros(gamma + 1)
    outs = []
    for _ in range(trials):
        drafts = torch.multinomial(q, 1, generator=draft_gen)[:, 0]  # (gamma,) one draft per row of q
        out = call(accept_reject, drafts, q, p, rule_gen)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise _fail(what + " must return (n_accepted, token)", "(int, int)", out,
                        "return the number of drafts kept and the one new token")
        k, tok = out
        try:
            k, tok = int(k), int(tok)
        except (TypeError, ValueError):
            raise _fail(what + ": n_accepted and token must be ints", "(int, int)", out,
                        "return int(...) of both; when every draft is accepted, also sample the bonus "
                        "token from p[gamma]") from None
        if not 0 <= k <= gamma or not 0 <= tok < V:
            raise _fail(what, f"0 <= n_accepted <= {gamma}, 0 <= token < {V}", (k, tok),
                        "n_accepted counts the drafts kept before the first rejection")
        n_acc[k] += 1
        first[int(drafts[0]) if k >= 1 else tok] += 1
        outs.append((k, tok))
    return first, n_acc, outs


@learner_check(3, "accept_reject")
def check_accept_reject(accept_reject: Callable[..., Any]) -> str:
    what = "accept_reject(drafts, q, p, generator)"
    # 1. disjoint supports: the target gives every draft probability 0, so the first draft is always rejected
    q0 = torch.tensor([[0.6, 0.4, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0, 0.0]])
    p0 = torch.tensor([[0.0, 0.0, 0.2, 0.3, 0.5], [0.0, 0.0, 0.3, 0.3, 0.4], [0.2, 0.2, 0.2, 0.2, 0.2]])
    first, n_acc, _ = _run_rule(accept_reject, q0, p0, 400, 0, what)
    if n_acc[0] != 400:
        hint = ("n_accepted counts the drafts kept BEFORE the first rejection (0 here)"
                if n_acc[1] == 400 else
                "a draft that the target gives probability 0 was accepted: accept x only when "
                "r < min(1, p(x)/q(x)) (0 here)")
        if n_acc[0] == 0 and n_acc[1] != 400:
            hint += ("; every draft accepted, the ratio upside down (q/p) or the comparison inverted (r >) "
                     "give this")
        raise _fail(what + " where p(x) = 0 for every draft x: n_accepted over 400 trials",
                    {0: 400}, {i: int(c) for i, c in enumerate(n_acc) if c}, hint)
    if first[:2].sum() > 0:
        raise _fail(what + " where p(x) = 0 for every draft x: tokens 0, 1 have p = 0 but were returned",
                    0, int(first[:2].sum()),
                    "on a rejection sample from norm(max(0, p - q)), which is 0 wherever p is 0 (not from q)")
    # 2. p == q: every draft accepted, and the bonus token from p[gamma]
    pe = torch.softmax(torch.tensor([[0.3, 1.0, -0.5, 0.2, 0.0], [1.2, -1.0, 0.0, 0.5, 0.1],
                                     [-1.0, 0.0, 2.0, 0.0, 1.0]]), -1)
    _, n_acc, outs = _run_rule(accept_reject, pe[:2].clone(), pe, 1500, 1, what)
    if n_acc[2] != 1500:
        hint = ("with p = q every draft must be accepted: accept when r < min(1, p(x)/q(x)) = 1 (r uniform "
                "in [0, 1))" if n_acc[2] > 0 else
                "with p = q every draft must be accepted (min(1, p/q) = 1); compare the uniform r with the "
                "ratio: accept if r < min(1, p(x)/q(x))")
        raise _fail(what + " with p = q: n_accepted over 1500 trials", {2: 1500},
                    {i: int(c) for i, c in enumerate(n_acc) if c}, hint)
    bonus = np.bincount([t for _, t in outs], minlength=5)
    pv = chi_square_pvalue(bonus, pe[2].double().numpy())
    if pv < SIGNIFICANCE:
        hint = ("when all gamma drafts are accepted, sample the bonus token from p[gamma] (the target's "
                "distribution after the last draft)")
        if chi_square_pvalue(bonus, pe[1].double().numpy()) >= SIGNIFICANCE:
            hint += "; yours follows p[gamma - 1] (off by one)"
        raise _fail(what + f" with p = q, all accepted: bonus token counts vs p[gamma] (chi-square p = "
                    f"{pv:.1e} < {SIGNIFICANCE:g})", (pe[2] * 1500).round().tolist(), bonus.tolist(), hint)
    # 3. general p, q: the first output token must follow p[0] exactly (Leviathan et al. 2023, Theorem 3.5)
    q, p = _accept_cases()
    trials = 8_000
    first, n_acc, outs = _run_rule(accept_reject, q, p, trials, 2, what)
    pv = chi_square_pvalue(first, p[0].double().numpy())
    if pv < SIGNIFICANCE:
        q_, p_ = q[0], p[0]
        one = torch.ones_like(q_)
        ratio = torch.clamp(p_ / q_, max=1.0)
        candidates = {
            "every draft was accepted: accept x only with probability min(1, p(x)/q(x))": q_.double().numpy(),
            "on a rejection you sampled from p: sample from the residual norm(max(0, p - q)) (sampling p "
            "again counts the overlap min(p, q) twice)": _first_token_law(q_, p_, ratio, p_),
            "on a rejection you sampled from q: sample from the residual norm(max(0, p - q))":
                _first_token_law(q_, p_, ratio, q_),
            "the residual is max(0, q - p): it is max(0, p - q), the part of p that q under-proposes":
                _first_token_law(q_, p_, ratio, torch.clamp(q_ - p_, min=0)),
            "the ratio is upside down: accept with min(1, p(x)/q(x)), not q/p":
                _first_token_law(q_, p_, torch.clamp(q_ / p_, max=1.0), torch.clamp(p_ - q_, min=0)),
            "the comparison is inverted: accept when r < min(1, p/q), with r uniform in [0, 1)":
                _first_token_law(q_, p_, one - ratio, one * 0 + torch.clamp(p_ - q_, min=0)),
        }
        freq = first / first.sum()
        name, law = min(candidates.items(), key=lambda kv: 0.5 * np.abs(kv[1] - freq).sum())
        tv = 0.5 * np.abs(law - freq).sum()
        hint = name if tv < 0.02 else ("accept x with probability min(1, p(x)/q(x)); on the first rejection "
                                       "sample from norm(max(0, p - q))")
        raise _fail(what + f": the first output token over {trials} trials must follow the target's p[0] "
                    f"(chi-square p = {pv:.1e} < {SIGNIFICANCE:g})", (p[0] * trials).round().tolist(),
                    first.astype(int).tolist(), hint)
    alpha = float(torch.minimum(p[0], q[0]).sum())
    rate = 1 - n_acc[0] / trials
    if abs(rate - alpha) > 4 * math.sqrt(alpha * (1 - alpha) / trials):
        raise _fail(what + f": acceptance rate of draft 1 over {trials} trials", round(alpha, 3),
                    round(rate, 3),
                    "accept x with probability min(1, p(x)/q(x)); the rate must be sum_x min(p(x), q(x))")
    # the number kept: draft 2 is reached with prob. alpha_1, then accepted with its own alpha_2
    alpha2 = float(torch.minimum(p[1], q[1]).sum())
    law = np.array([1 - alpha, alpha * (1 - alpha2), alpha * alpha2])
    pv = chi_square_pvalue(n_acc, law)
    if pv < SIGNIFICANCE:
        hint = ("draw a fresh r = torch.rand((), generator=generator) for EACH draft: reusing one r for the "
                "whole pass accepts later drafts too often" if n_acc[2] > law[2] * trials else
                "each draft i is accepted with probability min(1, p[i, x]/q[i, x]) using its own row i of p "
                "and q, and the loop stops at the first rejection")
        raise _fail(what + f": n_accepted over {trials} trials vs [1 - a1, a1 (1 - a2), a1 a2] (chi-square "
                    f"p = {pv:.1e} < {SIGNIFICANCE:g})", (law * trials).round().tolist(),
                    n_acc.astype(int).tolist(), hint)
    again = _run_rule(accept_reject, q, p, 200, 2, what)[2]
    if again != outs[:200]:
        raise _hint(what + ": the same generator seed gave different results",
                    "pass generator=generator to torch.rand and torch.multinomial (not the global RNG)")
    return (f"n_accepted = 0 when p(x) = 0, all accepted with a bonus from p[gamma] when p = q; the first "
            f"token follows p[0] (chi-square over {trials} trials, p ≥ {SIGNIFICANCE:g}) and draft 1 is "
            "accepted at rate sum min(p, q), and n_accepted follows [1 - a1, a1 (1 - a2), a1 a2]")


# ----------------------------------------------------------------------------------------------- TODO 4


class _PrefixTarget:
    """A stand-in target with GPT's calling convention and KV-cache semantics (it writes positions [start_pos,
    start_pos + T) of the cache, attends to everything before, and sets cache.length), whose next-token logits
    depend on the whole prefix: A[x_t] + B[x_(t-1)] + C[(x_0 + ... + x_t) mod V] + D[t mod V]. A random GPT
    this small falls into repeating one token, which would hide a cache off by one position; this one does
    not. The cache stores the token ids (as the "keys")."""

    def __init__(self, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.tables = [2.0 * torch.randn(_V, _V, generator=g) for _ in range(4)]
        self.config = GPTConfig(vocab_size=_V, block_size=32, n_layer=1, n_head=1, d_model=4)

    def new_kv_cache(self, batch_size: int) -> KVCache:
        return KVCache(1, batch_size, 1, self.config.block_size, 1)

    def _logits(self, seq: list[int], positions: range) -> torch.Tensor:
        A, B, C, D = self.tables
        rows = [A[seq[t]] + (B[seq[t - 1]] if t > 0 else 0) + C[sum(seq[: t + 1]) % _V] + D[t % _V]
                for t in positions]
        return torch.stack(rows)

    def __call__(self, idx: torch.Tensor, targets: Any = None, kv_cache: KVCache | None = None,
                 start_pos: int | None = None) -> tuple[torch.Tensor, None]:
        T = idx.size(1)
        if kv_cache is None:
            if start_pos:
                raise ValueError(f"start_pos={start_pos} needs a kv_cache holding the earlier positions")
            return self._logits(idx[0].tolist(), range(T))[None], None
        start = kv_cache.length if start_pos is None else int(start_pos)
        if start > kv_cache.length:
            raise ValueError(f"start_pos={start} is past the cache length {kv_cache.length}: positions "
                             f"{kv_cache.length}..{start - 1} were never written")
        if start + T > self.config.block_size:
            raise ValueError(f"input needs positions {start}..{start + T - 1} but positions exist only for "
                             f"0..{self.config.block_size - 1}")
        kv_cache.k[0][0, 0, start: start + T, 0] = idx[0].float()
        kv_cache.length = start + T
        seq = [int(v) for v in kv_cache.k[0][0, 0, : start + T, 0]]
        return self._logits(seq, range(start, start + T))[None], None


def _target_greedy(model: Any, prompt: torch.Tensor, n_new: int) -> torch.Tensor:
    out = prompt.clone()
    with torch.no_grad():
        for _ in range(n_new):
            logits, _ = model(out[None])
            out = torch.cat([out, logits[0, -1].argmax()[None]])
    return out


class _SpyTarget:
    """The tiny target, checking at every call that the cache holds the true prefix: positions [0, L) hold the
    target's greedy tokens and the first token fed (at position L) is the next one of them."""

    def __init__(self, model: Any, want: torch.Tensor, what: str) -> None:
        self.model, self.config, self.want, self.what = model, model.config, want.tolist(), what
        self.written: list[int] = []

    def new_kv_cache(self, batch_size: int) -> Any:
        self.written = []
        return self.model.new_kv_cache(batch_size)

    def __call__(self, idx: torch.Tensor, *args: Any, kv_cache: Any = None, start_pos: Any = None,
                 **kwargs: Any) -> Any:
        if kv_cache is not None:
            L = kv_cache.length if start_pos is None else int(start_pos)
            fed = idx[0].tolist()
            if self.written[:L] != self.want[:L] or len(self.written) < L or fed[0] != self.want[L]:
                raise CheckFailed(f"{self.what}: a target pass starts at position {L}, but the cache and the "
                                  f"token fed there are not the text so far (cache {self.written[:L]}, fed "
                                  f"{fed}, the target's greedy text {self.want[: L + len(fed)]})"
                                  f"\n   hint: {_LOOP_HINT}")
            self.written = self.written[:L] + fed
        return self.model(idx, *args, kv_cache=kv_cache, start_pos=start_pos, **kwargs)


_LOOP_HINT = ("after each pass roll the cache back: cache.length = n + n_accepted (it holds the last token "
              "and the kept drafts; the rejected drafts must go); append the kept drafts, then the new token")


@learner_check(4, "speculative_generate")
def check_speculative_generate(speculative_generate: Callable[..., Any]) -> str:
    model = _PrefixTarget(2)
    prompt = torch.tensor([1, 4, 2, 6])
    n_new = 18
    want = _target_greedy(model, prompt, n_new)
    # a perfect drafter: the target's own greedy choice (every draft accepted)
    def perfect(tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            logits, _ = model(tokens[None])
        return torch.nn.functional.one_hot(logits[0, -1].argmax(), _V).float()

    for name, drafter in (("a random bigram drafter", _table_drafter(_bigram_table(4), greedy=True)),
                          ("the target's own greedy choice as drafter", perfect)):
        for gamma in (1, 3, 5):
            what = f"speculative_generate(temperature=0, gamma={gamma}, n_new={n_new}) with {name}"
            calls = [0]

            def budgeted(tokens: torch.Tensor, drafter: Callable = drafter, gamma: int = gamma,
                         calls: list = calls, what: str = what) -> torch.Tensor:
                calls[0] += 1
                if calls[0] > 4 * n_new * gamma:
                    raise CheckFailed(f"{what}: the loop does not end ({calls[0]} drafter calls)\n   hint: "
                                      "each pass must add tokens: append the kept drafts, then the new token")
                return drafter(tokens)

            with hint_on_crash(_LOOP_HINT):
                spy = _SpyTarget(model, want, what)
                out = call(speculative_generate, spy, budgeted, prompt, n_new, gamma, 0.0,
                           torch.Generator().manual_seed(0))
            if not isinstance(out, (tuple, list)) or len(out) != 2:
                raise _fail(what, "(tokens, accepted)", out, "return the tokens and the list of n_accepted")
            tokens, accepted = out
            tokens = torch.as_tensor(tokens)
            if tokens.shape != want.shape:
                raise _fail(what + ": number of tokens", tuple(want.shape), tuple(tokens.shape),
                            "return the prompt and exactly n_new new tokens (cut the last pass's extra "
                            "tokens)")
            if not torch.equal(tokens, want):
                j = int((tokens != want).nonzero()[0])
                raise _fail(what + f": greedy tokens differ from the target's greedy tokens from "
                            f"position {j}",
                            want.tolist(), tokens.tolist(),
                            _LOOP_HINT)
            accepted = [int(a) for a in accepted]
            passes = len(accepted)
            if sum(a + 1 for a in accepted) < n_new or sum(a + 1 for a in accepted[:-1]) >= n_new:
                raise _fail(what + ": sum of (n_accepted + 1) over the passes", f">= {n_new} with one pass "
                            "fewer short of it", accepted,
                            "record n_accepted (the kept drafts, without the new token) once per target pass")
            if name.startswith("the target") and accepted[:-1] != [gamma] * (passes - 1):
                raise _fail(what + ": n_accepted per pass with a perfect drafter", [gamma] * (passes - 1),
                            accepted[:-1], "every draft of a perfect drafter is accepted; n_accepted = gamma")
    return ("greedy speculative tokens equal the target's greedy tokens (gamma = 1, 3, 5; a random and a "
            "perfect drafter); n_accepted = gamma for the perfect drafter")


def _as_float(got: Any, what: str, want: float) -> float:
    """The learner's number as a float, or a failure that asks for one."""
    try:
        return float(got)
    except (TypeError, ValueError):
        raise _fail(what, want, got, "return a float") from None


# ----------------------------------------------------------------------------------------------- TODO 5


def reference_expected_tokens(alpha: float, gamma: int) -> float:
    """sum_{i=0}^{gamma} alpha^i: the target's own token plus each draft reached and accepted."""
    return float(sum(alpha**i for i in range(gamma + 1)))


def _validation(fn: Callable, args: tuple, arg: str, hint: str) -> None:
    try:
        fn(*args)
    except ValueError as err:
        if arg not in str(err):
            raise _hint(f"{fn.__name__}{args} raised ValueError({str(err)!r}) without naming {arg!r}",
                        hint) from None
        return
    except Exception as err:  # noqa: BLE001 - any other crash is the wrong error
        raise _hint(f"{fn.__name__}{args} raised {type(err).__name__}: {err}", hint) from None
    raise _hint(f"{fn.__name__}{args} returned without raising ValueError", hint)


@learner_check(5, "expected_tokens")
def check_expected_tokens(expected_tokens: Callable[[float, int], float]) -> str:
    for alpha, gamma in ((0.68, 4), (0.5, 1), (0.9, 8), (0.0, 3), (0.3, 0), (1.0, 5), (0.999, 2)):
        with hint_on_crash("alpha = 1 (every draft accepted) gives gamma + 1 tokens, the limit of the "
                           "formula: handle it before dividing by 1 - alpha (ZeroDivisionError otherwise)"):
            got = call(expected_tokens, alpha, gamma)
        want = reference_expected_tokens(alpha, gamma)
        got_f = _as_float(got, f"expected_tokens({alpha}, {gamma})", want)
        if abs(got_f - want) <= 1e-9 * max(1.0, want):
            continue
        a = alpha
        wrong = {
            "alpha = 1: every draft is accepted, so gamma + 1 tokens (the limit of the formula)":
                float(gamma) if a == 1.0 else math.nan,
            "the exponent is gamma + 1: (1 - alpha^(gamma+1)) / (1 - alpha), i.e. 1 + alpha + ... + "
            "alpha^gamma":
                reference_expected_tokens(a, gamma - 1) if gamma >= 1 else 0.0,
            "1 / (1 - alpha) is the limit of infinitely many drafts: the sum stops at alpha^gamma":
                1 / (1 - a) if a < 1 else math.inf,
            "you counted only the accepted drafts: each pass also yields the target's own token (+1)":
                want - 1,
        }
        hint = next((h for h, v in wrong.items() if abs(got_f - v) <= 1e-9 * max(1.0, abs(v))),
                    "(1 - alpha^(gamma+1)) / (1 - alpha) (Leviathan et al. 2023, Eq. 1)")
        raise _fail(f"expected_tokens(alpha={alpha}, gamma={gamma})", want, got_f, hint)
    for args, arg in (((1.2, 3), "alpha"), ((-0.1, 3), "alpha"), ((0.5, -1), "gamma"), ((0.5, 2.5), "gamma")):
        _validation(expected_tokens, args, arg,
                    f"raise ValueError naming {arg!r} and what is allowed (alpha in [0, 1], gamma an "
                    "int >= 0)")
    return ("(1 - alpha^(gamma+1)) / (1 - alpha) on 7 cases (alpha = 0, 1 and near 1, gamma = 0); "
            "ValueError for alpha outside [0, 1] and a negative or non-integer gamma")


# ----------------------------------------------------------------------------------------------- TODO 6


def reference_speedup(alpha: float, gamma: int, c: float) -> float:
    """Leviathan et al. 2023, Theorem 3.8: (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1))."""
    return reference_expected_tokens(alpha, gamma) / (gamma * c + 1.0)


@learner_check(6, "speedup")
def check_speedup(speedup: Callable[[float, int, float], float]) -> str:
    for alpha, gamma, c in ((0.68, 4, 0.05), (0.8, 3, 0.0), (0.6, 2, 0.7), (1.0, 6, 0.1), (0.5, 0, 0.3),
                            (0.9, 7, 0.02)):
        got = call(speedup, alpha, gamma, c)
        want = reference_speedup(alpha, gamma, c)
        got_f = _as_float(got, f"speedup({alpha}, {gamma}, {c})", want)
        if abs(got_f - want) <= 1e-9 * max(1.0, want):
            continue
        e = reference_expected_tokens(alpha, gamma)
        wrong = {
            "one pass costs one target step plus gamma drafter steps of c each: divide by gamma·c + 1, "
            "not c + 1": e / (c + 1),
            "divide by gamma·c + 1: the target pass itself costs 1 (you left out the + 1)":
                e / (gamma * c) if gamma * c > 0 else math.inf,
            "use the expected tokens per pass (1 - alpha^(gamma+1)) / (1 - alpha), not gamma + 1 (drafts are "
            "rejected)": (gamma + 1) / (gamma * c + 1),
            "the gamma drafter calls cost gamma·c, not (gamma + 1)·c": e / ((gamma + 1) * c + 1),
            "the cost is in the denominator: expected tokens / (gamma·c + 1)": e * (gamma * c + 1),
        }
        hint = next((h for h, v in wrong.items() if abs(got_f - v) <= 1e-9 * max(1.0, abs(v))),
                    "expected_tokens(alpha, gamma) / (gamma·c + 1) (Leviathan et al. 2023, Theorem 3.8)")
        raise _fail(f"speedup(alpha={alpha}, gamma={gamma}, c={c})", want, got_f, hint)
    _validation(speedup, (0.5, 2, -0.1), "c", "raise ValueError naming 'c' (a cost ratio is >= 0)")
    return "expected_tokens / (gamma·c + 1) on 6 cases (c = 0, alpha = 1, gamma = 0); ValueError for c < 0"
