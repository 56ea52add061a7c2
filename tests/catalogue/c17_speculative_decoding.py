"""Mutation catalogue of 17_speculative_decoding (see tests/catalogue/__init__.py)."""

from __future__ import annotations

from catalogue import Correct, Mutant, Todo
from shared.checks.speculative_decoding import (
    check_accept_reject,
    check_draft,
    check_expected_tokens,
    check_speculative_generate,
    check_speedup,
    check_verify,
)

P = "17_speculative_decoding"

SAMPLE = "x = torch.multinomial(q, 1, generator=generator)  # (1,)"
FED = "fed = torch.cat([tokens[-1:], drafts])[None]  # (1, gamma + 1)"
PASS = "logits, _ = target(fed, kv_cache=cache)"
RET_P = "return probs_at(logits[0], temperature)"
RATIO = "if r < torch.clamp(p[i, x] / q[i, x], max=1.0):"
RESID = "residual = torch.clamp(p[i] - q[i], min=0.0)  # (V,) the mass of p that q under-proposes"
BONUS = "return gamma, int(torch.multinomial(p[gamma], 1, generator=generator))"
APPEND = "tokens = torch.cat([tokens, drafts[:k], torch.tensor([token])])"
ROLLBACK = ("cache.length = n + k  # keep [last token, kept drafts]; the rejected drafts' keys will be "
            "overwritten")
ALPHA_OK = "if not 0.0 <= alpha <= 1.0:"
GAMMA_OK = "if isinstance(gamma, bool) or not isinstance(gamma, int) or gamma < 0:"
CLOSED = "return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha)"
FRESH_R = "r = torch.rand((), generator=generator)\n"
SPEED = "return expected_tokens(alpha, gamma) / (gamma * c + 1.0)"

LOOP = ("probs_at", "prefill", "draft", "verify", "accept_reject", "speculative_generate")

CATALOGUE = [
    Todo(P, 1, check_draft, ("draft",), mutants=[
        Mutant("context not extended with the drafts", "state",
               [("q = next_probs(context)  # (V,)", "q = next_probs(tokens)  # (V,)")], ("not extended",)),
        Mutant("argmax instead of sampling", "logic", [(SAMPLE, "x = q.argmax()[None]")],
               ("argmax", "torch.multinomial")),
        Mutant("global RNG instead of the generator", "argument",
               [(SAMPLE, "x = torch.multinomial(q, 1)")], ("generator=generator",)),
        Mutant("one draft too few", "off-by-one", [("for _ in range(gamma):", "for _ in range(gamma - 1):")],
               ("exactly gamma",)),
        Mutant("q kept as a one-hot of the draft", "logic",
               [("qs.append(q)", "qs.append(F.one_hot(x[0], q.size(0)).to(q.dtype))")],
               ("whole distribution",)),
        Mutant("q of the next context recorded", "off-by-one",
               [("qs.append(q)", "qs.append(next_probs(torch.cat([context, x])))")], ("off by one",)),
        Mutant("draft prepended to the context", "positions",
               [("\n        context = torch.cat([context, x])",
                 "\n        context = torch.cat([x, context])")],
               ("tokens + drafts[:i]",)),
        Mutant("drafts stacked to (gamma, 1)", "shape",
               [("return torch.cat(drafts), torch.stack(qs)",
                 "return torch.stack(drafts), torch.stack(qs)")], ("shapes of drafts",)),
    ], correct=[
        Correct("python list context", [
            ("context = tokens\n", "context = tokens.tolist()\n"),
            ("q = next_probs(context)  # (V,)", "q = next_probs(torch.tensor(context))  # (V,)"),
            ("\n        context = torch.cat([context, x])", "\n        context = context + [int(x)]")]),
        Correct("preallocated outputs", [
            ("return torch.cat(drafts), torch.stack(qs)",
             "out = torch.zeros(gamma, dtype=torch.long)\n    out[:] = torch.cat(drafts)\n"
             "    return out, torch.stack(qs)")]),
    ]),
    Todo(P, 2, check_verify, ("probs_at", "verify"), mutants=[
        Mutant("drafts fed without the last token", "off-by-one",
               [(FED, "fed = drafts[None]  # (1, gamma)"),
                (PASS, "logits, _ = target(fed, kv_cache=cache, start_pos=tokens.size(0))")],
               ("LAST committed token",)),
        Mutant("written one position late", "positions",
               [(PASS, "logits, _ = target(fed, kv_cache=cache, start_pos=tokens.size(0))")],
               ("wrong positions",)),
        Mutant("temperature ignored", "argument", [(RET_P, "return probs_at(logits[0], 1.0)")],
               ("temperature",)),
        Mutant("logits returned", "logic", [(RET_P, "return logits[0]")], ("probs_at",)),
        Mutant("softmax over positions", "axis",
               [(RET_P, "return torch.softmax(logits[0] / max(temperature, 1e-9), dim=0)")], ("dim=-1",)),
        Mutant("only the last position kept", "shape",
               [(RET_P, "return probs_at(logits[0, -1:], temperature)")],
               ("all gamma + 1 positions",)),
        Mutant("whole sequence re-run through the cache", "logic",
               [(FED, "fed = torch.cat([tokens, drafts])[None]"),
                (PASS, "logits, _ = target(fed, kv_cache=cache, start_pos=0)"),
                (RET_P, "return probs_at(logits[0, tokens.size(0) - 1:], temperature)")],
               ("one pass over the gamma + 1 new positions",)),
        Mutant("no cache", "state",
               [(FED, "fed = torch.cat([tokens, drafts])[None]"), (PASS, "logits, _ = target(fed)"),
                (RET_P, "return probs_at(logits[0, tokens.size(0) - 1:], temperature)")],
               ("gamma + 1 new positions",)),
        Mutant("batch dimension kept", "shape", [(RET_P, "return probs_at(logits, temperature)")],
               ("batch dimension",)),
    ], correct=[
        Correct("explicit start_pos",
                [(PASS, "logits, _ = target(fed, kv_cache=cache, start_pos=cache.length)")]),
        Correct("softmax written out",
                [(RET_P, "return probs_at(logits[0], temperature) if temperature == 0 else "
                         "torch.softmax(logits[0] / temperature, dim=-1)")]),
    ]),
    Todo(P, 3, check_accept_reject, ("accept_reject",), mutants=[
        Mutant("every draft accepted", "logic", [(RATIO, "if True:")], ("min(1, p(x)/q(x))",)),
        Mutant("resample from p instead of the residual", "logic",
               [(RESID, "residual = p[i].clone()")], ("norm(max(0, p - q))",)),
        Mutant("ratio upside down", "logic", [(RATIO, "if r < torch.clamp(q[i, x] / p[i, x], max=1.0):")],
               ("upside down",)),
        Mutant("residual q - p", "scale", [(RESID, "residual = torch.clamp(q[i] - p[i], min=0.0)")],
               ("max(0, p - q)",)),
        Mutant("comparison inverted", "branch", [(RATIO, "if r > torch.clamp(p[i, x] / q[i, x], max=1.0):")],
               ("r < min(1, p(x)/q(x))",)),
        Mutant("bonus from the last draft's row", "off-by-one",
               [(BONUS, "return gamma, int(torch.multinomial(p[gamma - 1], 1, generator=generator))")],
               ("p[gamma]", "off by one")),
        Mutant("no bonus token", "branch", [(BONUS, "return gamma, None")], ("bonus",)),
        Mutant("rejected draft counted as accepted", "off-by-one",
               [("return i, int(torch.multinomial(residual, 1, generator=generator))",
                 "return i + 1, int(torch.multinomial(residual, 1, generator=generator))")],
               ("BEFORE the first rejection",)),
        Mutant("global RNG for r", "argument",
               [("r = torch.rand((), generator=generator)", "r = torch.rand(())")], ("generator=generator",)),
        Mutant("resample from q on rejection", "logic", [(RESID, "residual = q[i].clone()")],
               ("norm(max(0, p - q))",)),
        Mutant("one r for the whole pass", "state",
               [("    for i in range(gamma):\n        x = int(drafts[i])\n        " + FRESH_R,
                 "    " + FRESH_R + "    for i in range(gamma):\n        x = int(drafts[i])\n")],
               ("fresh r", "EACH draft")),
    ], correct=[
        Correct("residual left unnormalised (multinomial normalises)",
                [("        residual = residual / residual.sum()\n", "")]),
        Correct("comparison without division", [(RATIO, "if r * q[i, x] < p[i, x]:")]),
        Correct("python float ratio", [(RATIO, "if float(r) < min(1.0, float(p[i, x]) / float(q[i, x])):")]),
    ]),
    Todo(P, 4, check_speculative_generate, LOOP, mutants=[
        Mutant("no cache rollback", "state", [(ROLLBACK, "pass")], ("roll the cache back",)),
        Mutant("rollback one position too far", "off-by-one", [(ROLLBACK, "cache.length = n + k - 1")],
               ("cache.length = n + n_accepted",)),
        Mutant("rollback keeps the rejected draft", "off-by-one", [(ROLLBACK, "cache.length = n + k + 1")],
               ("cache.length = n + n_accepted",)),
        Mutant("kept drafts not appended", "logic",
               [(APPEND, "tokens = torch.cat([tokens, torch.tensor([token])])")], ("append the kept",)),
        Mutant("all drafts appended", "logic",
               [(APPEND, "tokens = torch.cat([tokens, drafts, torch.tensor([token])])")],
               ("roll the cache back",)),
        Mutant("new token not appended", "logic", [(APPEND, "tokens = torch.cat([tokens, drafts[:k]])")],
               ("then the new token",)),
        Mutant("not cut to n_new", "off-by-one",
               [("return tokens[:end], accepted", "return tokens, accepted")],
               ("exactly n_new",)),
        Mutant("n_accepted recorded with the new token", "scale",
               [("accepted.append(k)", "accepted.append(k + 1)")], ("n_accepted",)),
        Mutant("gamma ignored", "argument",
               [("drafts, q = draft(next_probs, tokens, gamma, generator)",
                 "drafts, q = draft(next_probs, tokens, 1, generator)")], ("n_accepted = gamma",)),
    ], correct=[
        Correct("rollback written as the tokens' length", [
            (ROLLBACK, "cache.length = len(tokens) - 1")]),
        Correct("tokens kept in a python list", [
            ("    tokens = prompt.clone()\n", "    tokens = prompt.clone()\n    out = prompt.tolist()\n"),
            (APPEND, "out += drafts[:k].tolist() + [token]\n        tokens = torch.tensor(out)"),
        ]),
    ]),
    Todo(P, 5, check_expected_tokens, ("expected_tokens",), mutants=[
        Mutant("exponent gamma", "off-by-one", [(CLOSED, "return (1.0 - alpha ** gamma) / (1.0 - alpha)")],
               ("gamma + 1",)),
        Mutant("infinite drafts", "logic", [(CLOSED, "return 1.0 / (1.0 - alpha)")], ("infinitely many",)),
        Mutant("the target's own token not counted", "off-by-one",
               [(CLOSED, "return (1.0 - alpha ** (gamma + 1)) / (1.0 - alpha) - 1.0")], ("+1",)),
        Mutant("alpha = 1 gives gamma", "branch", [("return float(gamma + 1)", "return float(gamma)")],
               ("limit of the formula",)),
        Mutant("alpha = 1 not handled", "stability",
               [("    if alpha == 1.0:\n        return float(gamma + 1)\n", "")],
               ("ZeroDivisionError",)),
        Mutant("alpha not validated", "validation", [(ALPHA_OK, "if False:")], ("alpha",)),
        Mutant("gamma not validated", "validation", [(GAMMA_OK, "if False:")], ("gamma",)),
        Mutant("gamma's type not validated", "validation",
               [(GAMMA_OK, "if gamma < 0:")], ("ValueError", "gamma an int")),
    ], correct=[
        Correct("the sum written out", [(CLOSED, "return float(sum(alpha**i for i in range(gamma + 1)))"),
                                        ("    if alpha == 1.0:\n        return float(gamma + 1)\n", "")]),
    ]),
    Todo(P, 6, check_speedup, ("expected_tokens", "speedup"), mutants=[
        Mutant("c not multiplied by gamma", "scale",
               [(SPEED, "return expected_tokens(alpha, gamma) / (c + 1.0)")],
               ("gamma·c + 1, not c + 1",)),
        Mutant("target pass not counted", "off-by-one",
               [(SPEED, "return expected_tokens(alpha, gamma) / (gamma * c) if gamma * c else float('inf')")],
               ("+ 1",)),
        Mutant("gamma + 1 tokens per pass", "logic", [(SPEED, "return (gamma + 1) / (gamma * c + 1.0)")],
               ("expected tokens per pass",)),
        Mutant("gamma + 1 drafter calls", "off-by-one",
               [(SPEED, "return expected_tokens(alpha, gamma) / ((gamma + 1) * c + 1.0)")],
               ("(gamma + 1)·c",)),
        Mutant("cost multiplied", "logic",
               [(SPEED, "return expected_tokens(alpha, gamma) * (gamma * c + 1.0)")],
               ("denominator",)),
        Mutant("c not validated", "validation", [("if not c >= 0:", "if False:")], ("'c'",)),
    ], correct=[
        Correct("cost per token inverted",
                [(SPEED, "return 1.0 / ((gamma * c + 1.0) / expected_tokens(alpha, gamma))")]),
    ]),
]
