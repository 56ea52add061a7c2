"""Mutation catalogue of 15_ppo_loop (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.ppo_loop import (
    check_bradley_terry_loss,
    check_dpo_loss,
    check_gae,
    check_kl_shaped_rewards,
    check_ppo_iteration,
    check_ppo_losses,
    check_response_logprobs,
)

P = "15_ppo_loop"
LOOP_PARTS = ("response_logprobs", "kl_shaped_rewards", "gae", "ppo_losses", "ppo_iteration")

BT = "-F.logsigmoid(r_chosen - r_rejected).mean()"
LOGP = "logp = F.log_softmax(logits[:, prompt_len - 1 : -1], dim=-1)"
GATHER = "return logp.gather(-1, seq[:, prompt_len:].unsqueeze(-1)).squeeze(-1)"
KL = "rewards = -beta * (logp - logp_ref)  # (B, T), a new tensor"
SCORE = "rewards[:, -1] = rewards[:, -1] + score"
NEXT_V = "if t + 1 < T else torch.zeros(B, dtype=values.dtype)"
RECUR = "next_adv = delta + gamma * lam * next_adv"
DELTA = "delta = rewards[:, t] + gamma * next_value - values[:, t]"
WHITEN = "advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)"
RATIO = "ratio = torch.exp(logp_new - logp_old)"
CLIPPED = "clipped = torch.clamp(ratio, 1 - clip_eps, 1 + clip_eps) * advantages"
PL = "policy_loss = -torch.min(unclipped, clipped).mean()"
VL = "value_loss = 0.5 * ((values_new - returns) ** 2).mean()"
SHAPED = "rewards = kl_shaped_rewards(score, logp_old, logp_ref, cfg.beta)"
LOSSES = "logp_new, logp_old[i], advantages[i], values_new[:, P - 1 : -1], returns[i], cfg.clip_eps"
MARGIN = "(pol_chosen - ref_chosen) - (pol_rejected - ref_rejected)"
DPO = "return -F.logsigmoid(beta * margin).mean()"


CATALOGUE = [
    Todo(P, 1, check_bradley_terry_loss, ("bradley_terry_loss",), mutants=[
        Mutant("chosen and rejected swapped", "logic",
               [("F.logsigmoid(r_chosen - r_rejected)", "F.logsigmoid(r_rejected - r_chosen)")],
               ("swapped", "REJECTED reward up")),
        Mutant("log of sigmoid", "stability",
               [("F.logsigmoid(r_chosen - r_rejected)", "torch.log(torch.sigmoid(r_chosen - r_rejected))")],
               ("F.logsigmoid",)),
        Mutant("softplus written as log(1 + exp)", "stability",
               [(BT, "torch.log(1 + torch.exp(r_rejected - r_chosen)).mean()")], ("overflows",)),
        Mutant("sum over pairs", "scale", [("r_rejected).mean()", "r_rejected).sum()")], ("take the mean",)),
        Mutant("missing minus sign", "scale", [(BT, "F.logsigmoid(r_chosen - r_rejected).mean()")],
               ("sign", "NEGATIVE log-likelihood")),
        Mutant("sigmoid without the log", "logic", [(BT, "-torch.sigmoid(r_chosen - r_rejected).mean()")],
               ("take the log",)),
        Mutant("means taken before the sigmoid", "axis",
               [(BT, "-F.logsigmoid(r_chosen.mean() - r_rejected.mean())")], ("per pair",)),
        Mutant("margin detached", "grad",
               [(BT, "-F.logsigmoid((r_chosen - r_rejected).detach()).mean()")], ("no .detach()",)),
    ], correct=[
        Correct("softplus of the reversed margin", [(BT, "F.softplus(r_rejected - r_chosen).mean()")]),
        Correct("sum divided by the count",
                [(BT, "-F.logsigmoid(r_chosen - r_rejected).sum() / r_chosen.numel()")]),
        Correct("binary cross-entropy with logits",
                [(BT, "F.binary_cross_entropy_with_logits(r_chosen - r_rejected, "
                      "torch.ones_like(r_chosen))")]),
    ]),
    Todo(P, 2, check_response_logprobs, ("response_logprobs",), mutants=[
        Mutant("logits not shifted", "off-by-one",
               [("logits[:, prompt_len - 1 : -1]", "logits[:, prompt_len:]")],
               ("off by one", "NEXT token")),
        Mutant("tokens shifted with the logits", "off-by-one",
               [(GATHER, "return logp.gather(-1, seq[:, prompt_len - 1 : -1].unsqueeze(-1)).squeeze(-1)")],
               ("seq[:, prompt_len:]", "token it predicts")),
        Mutant("raw logits", "logic", [(LOGP, "logp = logits[:, prompt_len - 1 : -1]")], ("log_softmax",)),
        Mutant("log_softmax over the time axis", "axis",
               [(LOGP, "logp = F.log_softmax(logits[:, prompt_len - 1 : -1], dim=1)")],
               ("vocabulary", "dim=-1")),
        Mutant("log of softmax", "stability",
               [(LOGP, "logp = torch.log(F.softmax(logits[:, prompt_len - 1 : -1], dim=-1))")],
               ("log_softmax", "underflows")),
        Mutant("prompt_len ignored", "argument",
               [(LOGP, "logp = F.log_softmax(logits[:, :-1], dim=-1)"),
                (GATHER, "return logp.gather(-1, seq[:, 1:].unsqueeze(-1)).squeeze(-1)")],
               ("RESPONSE token",)),
        Mutant("squeeze of every size-1 dim", "shape",
               [(GATHER, "return logp.gather(-1, seq[:, prompt_len:].unsqueeze(-1)).squeeze()")],
               ("squeeze(-1)",)),
    ], correct=[
        Correct("cross_entropy per token",
                [(LOGP, "logp = None"),
                 (GATHER, "return -F.cross_entropy(logits[:, prompt_len - 1 : -1].transpose(1, 2), seq[:, "
                          "prompt_len:], reduction='none')")]),
        Correct("logits minus logsumexp, torch.take_along_dim",
                [(LOGP, "z = logits[:, prompt_len - 1 : -1]\n    logp = z - z.logsumexp(-1, keepdim=True)"),
                 (GATHER, "return torch.take_along_dim(logp, seq[:, prompt_len:, None], dim=-1)[..., 0]")]),
    ]),
    Todo(P, 3, check_kl_shaped_rewards, ("kl_shaped_rewards",), mutants=[
        Mutant("log-ratio reversed", "scale", [("-beta * (logp - logp_ref)", "-beta * (logp_ref - logp)")],
               ("KL sign is flipped",)),
        Mutant("minus sign dropped", "scale", [("-beta * (logp - logp_ref)", "beta * (logp - logp_ref)")],
               ("KL sign is flipped",)),
        Mutant("score on every token", "logic", [(SCORE, "rewards = rewards + score[:, None]")],
               ("LAST token only",)),
        Mutant("score on the first token", "off-by-one", [(SCORE, "rewards[:, 0] = rewards[:, 0] + score")],
               ("FIRST token",)),
        Mutant("score replaces the last KL term", "logic", [(SCORE, "rewards[:, -1] = score")],
               ("REPLACES", "add")),
        Mutant("beta left out", "argument", [(KL, "rewards = -(logp - logp_ref)")], ("β is missing",)),
        Mutant("in-place edit of logp", "in-place", [(KL, "rewards = logp.sub_(logp_ref).mul_(-beta)")],
               ("in place",)),
        Mutant("score added into the caller's logp", "in-place",
               [(KL, "rewards = logp\n    rewards -= logp_ref\n    rewards *= -beta")], ("in place",)),
    ], correct=[
        Correct("score scattered with cat", [(KL, "kl = -beta * (logp - logp_ref)"),
                                             (SCORE, "rewards = torch.cat([kl[:, :-1], kl[:, -1:] + "
                                                     "score[:, None]], dim=1)")]),
        Correct("in-place add on the new tensor", [(SCORE, "rewards[:, -1] += score")]),
        Correct("one-hot of the last position",
                [(SCORE, "rewards = rewards + score[:, None] * F.one_hot(torch.tensor(logp.shape[1] - 1), "
                         "logp.shape[1])")]),
    ]),
    Todo(P, 4, check_gae, ("gae",), mutants=[
        Mutant("bootstrap from the last value", "off-by-one", [(NEXT_V, "if t + 1 < T else values[:, t]")],
               ("wrong bootstrap", "V_T = 0")),
        Mutant("advantages not normalised", "branch",
               [("    if normalize:\n        advantages = (", "    if False:\n        advantages = (")],
               ("not normalised",)),
        Mutant("normalize ignored", "argument",
               [("    if normalize:\n        advantages = (", "    if True:\n        advantages = (")],
               ("normalize=True",)),
        Mutant("returns from the normalised advantages", "logic", [
            ("    returns = advantages + values  # the value targets, from the RAW advantages\n", ""),
            ("    return advantages, returns",
             "    returns = advantages + values\n    return advantages, returns"),
        ], ("wrong targets", "NORMALISED")),
        Mutant("decay by lambda only", "scale", [(RECUR, "next_adv = delta + lam * next_adv")],
               ("decays by λ only",)),
        Mutant("decay by gamma only", "scale", [(RECUR, "next_adv = delta + gamma * next_adv")],
               ("decays by γ only",)),
        Mutant("gamma missing in delta", "scale",
               [(DELTA, "delta = rewards[:, t] + next_value - values[:, t]")], ("δ", "γ V_(t+1)")),
        Mutant("whitened per row", "axis",
               [(WHITEN, "advantages = (advantages - advantages.mean(1, keepdim=True)) / (advantages.std(1, "
                         "keepdim=True) + 1e-8)")],
               ("whole batch",)),
        Mutant("forward recursion", "logic", [("for t in reversed(range(T)):", "for t in range(T):")],
               ("backward", "reversed")),
        Mutant("advantages written into the rewards", "in-place",
               [("advantages = torch.zeros_like(rewards)  # (B, T)", "advantages = rewards  # (B, T)")],
               ("in place",)),
    ], correct=[
        Correct("vectorised deltas, then the recursion",
                [(DELTA, "delta = (rewards + gamma * torch.cat([values[:, 1:], torch.zeros(B, 1)], 1) - "
                         "values)[:, t]")]),
        Correct("whitening with torch.std_mean",
                [(WHITEN, "std, mean = torch.std_mean(advantages)\n"
                          "        advantages = (advantages - mean) / (std + 1e-8)")]),
        Correct("lists stacked at the end",
                [("advantages = torch.zeros_like(rewards)  # (B, T)", "cols = []"),
                 ("advantages[:, t] = next_adv", "cols.insert(0, next_adv)"),
                 ("    returns = advantages + values  # the value targets",
                  "    advantages = torch.stack(cols, dim=1)\n    returns = advantages + values  #")]),
    ]),
    Todo(P, 5, check_ppo_losses, ("ppo_losses",), mutants=[
        Mutant("max instead of min", "logic", [(PL, "policy_loss = -torch.max(unclipped, clipped).mean()")],
               ("min vs max",)),
        Mutant("clipped above only", "branch",
               [(CLIPPED, "clipped = torch.clamp(ratio, max=1 + clip_eps) * advantages")],
               ("one side only",)),
        Mutant("clipped below only", "branch",
               [(CLIPPED, "clipped = torch.clamp(ratio, min=1 - clip_eps) * advantages")],
               ("one side only",)),
        Mutant("ratio the wrong way round", "logic", [(RATIO, "ratio = torch.exp(logp_old - logp_new)")],
               ("wrong way round",)),
        Mutant("ratio of log-probs", "logic", [(RATIO, "ratio = logp_new / logp_old")],
               ("exp(logp_new − logp_old)",)),
        Mutant("value loss on the advantages", "logic",
               [("(values_new - returns) ** 2", "(values_new - advantages) ** 2")], ("RETURNS",)),
        Mutant("value loss without the half", "scale",
               [(VL, "value_loss = ((values_new - returns) ** 2).mean()")],
               ("missing the ½",)),
        Mutant("surrogate not negated", "scale", [(PL, "policy_loss = torch.min(unclipped, clipped).mean()")],
               ("wrong sign",)),
        Mutant("clip_eps hard-coded", "argument",
               [(CLIPPED, "clipped = torch.clamp(ratio, 0.8, 1.2) * advantages")], ("clip_eps",)),
        Mutant("ratio detached", "grad", [(RATIO, "ratio = torch.exp(logp_new.detach() - logp_old)")],
               ("no gradient", "no .detach()")),
    ], correct=[
        Correct("max of the negated terms, mse_loss",
                [(PL, "policy_loss = torch.max(-unclipped, -clipped).mean()"),
                 (VL, "value_loss = 0.5 * F.mse_loss(values_new, returns)")]),
        Correct("torch.where on the sign of the advantage",
                [(PL, "policy_loss = -torch.where(advantages >= 0, torch.minimum(ratio, "
                      "torch.full_like(ratio, 1 + clip_eps)), torch.maximum(ratio, torch.full_like(ratio, 1 "
                      "- clip_eps))).mul(advantages).mean()")]),
    ]),
    Todo(P, 6, check_ppo_iteration, LOOP_PARTS, mutants=[
        Mutant("rollout sampled from the reference", "logic",
               [("seq = policy.gpt.generate(prompt,", "seq = ref.generate(prompt,")], ("POLICY",)),
        Mutant("value loss left out", "logic",
               [("loss = policy_loss + cfg.vf_coef * value_loss", "loss = policy_loss")],
               ("value head never changed",)),
        Mutant("optimiser step missing", "logic", [("            opt.step()\n", "")], ("opt.step()",)),
        Mutant("kl averaged over the batch", "axis",
               [("kl=(logp_old - logp_ref).sum(1)", "kl=(logp_old - logp_ref).sum()")],
               ("one number per sequence",)),
        Mutant("KL arguments swapped", "logic",
               [(SHAPED, "rewards = kl_shaped_rewards(score, logp_ref, logp_old, cfg.beta)")],
               ("KL arguments are swapped",)),
        Mutant("beta ignored", "argument",
               [(SHAPED, "rewards = kl_shaped_rewards(score, logp_old, logp_ref, 0.0)")], ("cfg.beta",)),
        Mutant("logp_old recomputed inside the epoch loop", "grad",
               [("        order = torch.randperm(B, generator=generator)\n",
                 "        order = torch.randperm(B, generator=generator)\n"
                 "        with torch.no_grad():\n"
                 "            logp_old = response_logprobs(policy(seq)[0], seq, P)\n")],
               ("ROLLOUT", "ratio 1")),
        Mutant("value head trained on the advantages", "logic",
               [(LOSSES, "logp_new, logp_old[i], advantages[i], values_new[:, P - 1 : -1], advantages[i], "
                         "cfg.clip_eps")],
               ("RETURNS",)),
        Mutant("rollout values off by one", "off-by-one",
               [("values = values[:, P - 1 : -1]", "values = values[:, P:]")], ("off by one", "P − 1")),
        Mutant("update values off by one", "off-by-one",
               [(LOSSES, "logp_new, logp_old[i], advantages[i], values_new[:, P:], returns[i], "
                         "cfg.clip_eps")],
               ("off by one", "values_new[:, P − 1 : −1]")),
        Mutant("gamma and lambda left at gae's defaults", "argument",
               [("gae(rewards, values, cfg.gamma, cfg.lam)", "gae(rewards, values)")],
               ("cfg.gamma", "cfg.lam")),
        Mutant("clip_eps left at its default", "argument",
               [(LOSSES, "logp_new, logp_old[i], advantages[i], values_new[:, P - 1 : -1], returns[i]")],
               ("cfg.clip_eps",)),
        Mutant("vf_coef ignored", "argument",
               [("loss = policy_loss + cfg.vf_coef * value_loss", "loss = policy_loss + value_loss")],
               ("cfg.vf_coef",)),
        Mutant("zero_grad missing", "grad", [("            opt.zero_grad(set_to_none=True)\n", "")],
               ("zero_grad",)),
        Mutant("gradient not clipped", "argument",
               [("            nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)\n", "")],
               ("cfg.max_grad_norm",)),
        Mutant("rollout with gradients", "grad",
               [("    with torch.no_grad():\n        logits, values = policy(seq)",
                 "    if True:\n        logits, values = policy(seq)")], ("torch.no_grad()",)),
        Mutant("one epoch", "argument", [("for _ in range(cfg.epochs):", "for _ in range(1):")],
               ("cfg.epochs",)),
        Mutant("full batch instead of minibatches", "argument",
               [("for start in range(0, B, cfg.minibatch):", "for start in range(0, B, B):"),
                ("i = order[start : start + cfg.minibatch]", "i = order")], ("MINIBATCH",)),
    ], correct=[
        Correct("rollout values taken from a second forward pass",
                [("        ref_logits, _ = ref(seq)",
                  "        values = policy(seq)[1][:, P - 1 : -1]\n        ref_logits, _ = ref(seq)")]),
        Correct("zero_grad after the step", [("            opt.zero_grad(set_to_none=True)\n", ""),
                                             ("            opt.step()\n",
                                              "            opt.step()\n            opt.zero_grad()\n")]),
        Correct("minibatches as chunks of the permutation",
                [("for start in range(0, B, cfg.minibatch):\n            i = order[start : start + "
                  "cfg.minibatch]",
                  "for i in order.split(cfg.minibatch):")]),
    ]),
    Todo(P, 7, check_dpo_loss, ("dpo_loss",), mutants=[
        Mutant("chosen and rejected swapped", "logic",
               [(MARGIN, "(pol_rejected - ref_rejected) - (pol_chosen - ref_chosen)")], ("swapped",)),
        Mutant("log-ratios taken as reference minus policy", "scale",
               [(MARGIN, "(ref_chosen - pol_chosen) - (ref_rejected - pol_rejected)")],
               ("wrong sign", "log π_ref − log π")),
        Mutant("reference left out", "logic", [(MARGIN, "pol_chosen - pol_rejected")],
               ("reference is missing",)),
        Mutant("beta left out", "argument", [("F.logsigmoid(beta * margin)", "F.logsigmoid(margin)")],
               ("β is missing",)),
        Mutant("beta divides", "scale", [("F.logsigmoid(beta * margin)", "F.logsigmoid(margin / beta)")],
               ("multiply",)),
        Mutant("log of sigmoid", "stability",
               [(DPO, "return -torch.log(torch.sigmoid(beta * margin)).mean()")],
               ("F.logsigmoid",)),
        Mutant("sum over pairs", "scale", [(DPO, "return -F.logsigmoid(beta * margin).sum()")], ("mean",)),
        Mutant("loss not negated", "scale", [(DPO, "return F.logsigmoid(beta * margin).mean()")], ("sign",)),
    ], correct=[
        Correct("softplus of the negated margin", [(DPO, "return F.softplus(-beta * margin).mean()")]),
        Correct("log-ratios of policy and reference regrouped",
                [(MARGIN, "(pol_chosen - pol_rejected) - (ref_chosen - ref_rejected)")]),
    ]),
]
