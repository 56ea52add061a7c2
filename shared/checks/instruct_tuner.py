"""Checks for project 14 (instruction tuning and LoRA): one check per TODO of
``14_instruct_tuner/solution.ipynb``.

* TODO 1 ``build_example``: the chat template ``<|user|> prompt <|assistant|> response <|end|>`` with the
  three special tokens taken from :data:`shared.pretrained.RESERVED`, and the index where the response starts;
* TODO 2 ``sft_batch``: right-padded inputs and shifted targets with ``IGNORE_INDEX`` (-100) on every position
  whose target is a prompt token or padding (Ouyang et al. 2022, §3.5: the loss is on the response);
* TODO 3 ``sft_train``: the supervised fine-tuning loop, compared step by step with a reference AdamW loop;
* TODO 4 ``init_lora``: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, scale = alpha / r (Hu et al. 2021, §4.1);
* TODO 5 ``lora_forward``: y = x Wᵀ + b + scale · (x Aᵀ) Bᵀ against the explicit W + scale · B A;
* TODO 6 ``merge_lora``: W' = W + scale · B A, so one plain linear layer replaces base + adapter.

None of the checks needs the pre-trained base model: they use tiny tensors and a tiny GPT.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from shared.checks import (
    CheckFailed,
    assert_close,
    call,
    expect,
    expect_equal,
    fmt,
    hint_on_crash,
    learner_check,
    within,
)
from shared.checks.compare import expect_tensors, gen
from shared.data import IGNORE_INDEX
from shared.model import GPT, GPTConfig
from shared.pretrained import RESERVED, base_tokenizer
from shared.tokenizers import CharTokenizer

__all__ = [
    "USER",
    "ASSISTANT",
    "END",
    "reference_example",
    "reference_sft_batch",
    "reference_sft_train",
    "check_build_example",
    "check_sft_batch",
    "check_sft_train",
    "check_init_lora",
    "check_lora_forward",
    "check_merge_lora",
]

#: The template's special tokens: reserved characters that pre-training never saw.
USER, ASSISTANT, END = RESERVED[0], RESERVED[1], RESERVED[2]


def reference_example(prompt: str, response: str, tok: CharTokenizer) -> tuple[list[int], int]:
    """``USER + prompt + ASSISTANT + response + END`` as ids, and the index of the first response token."""
    return tok.encode(USER + prompt + ASSISTANT + response + END), len(prompt) + 2


def reference_sft_batch(examples: list[tuple[list[int], int]],
                        pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T) right-padded with ``pad_id``; y (B, T) = next token on response positions, -100 elsewhere.

    T = longest example - 1. Position t predicts token t + 1, so the targets that count are
    y[b, t] = ids[t + 1] for start - 1 <= t < len(ids) - 1.
    """
    T = max(len(ids) for ids, _ in examples) - 1
    x = torch.full((len(examples), T), pad_id, dtype=torch.long)
    y = torch.full((len(examples), T), IGNORE_INDEX, dtype=torch.long)
    for b, (ids, start) in enumerate(examples):
        n = len(ids) - 1
        x[b, :n] = torch.tensor(ids[:-1])
        y[b, start - 1 : n] = torch.tensor(ids[start:])
    return x, y


def reference_sft_train(
    model: torch.nn.Module,
    get_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
    weight_decay: float = 0.0,
) -> list[float]:
    """AdamW on the trainable parameters, one batch ``get_batch(step)`` per step;
    the loss before each update."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                            weight_decay=weight_decay)
    model.train()
    losses = []
    for step in range(steps):
        x, y = get_batch(step)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


# ----------------------------------------------------------------------------------------------- TODO 1


@learner_check(1, "build_example")
def check_build_example(fn: Callable[[str, str, CharTokenizer], tuple[list[int], int]]) -> str:
    tok = base_tokenizer()
    cases = [("reverse: stone", "enots"), ("add: 3+4", "7"), ("x", "")]
    for prompt, response in cases:
        out = call(fn, prompt, response, tok)
        expect(
            isinstance(out, tuple) and len(out) == 2,
            f"build_example must return (ids, response_start), got {fmt(out, 80)}",
            hint="return ids, start",
        )
        ids, start = out
        ids = list(ids.tolist()) if isinstance(ids, torch.Tensor) else list(ids)
        want_ids, want_start = reference_example(prompt, response, tok)
        shown = f"build_example({prompt!r}, {response!r})"
        text = tok.decode(ids) if all(isinstance(i, int) and 0 <= i < tok.vocab_size for i in ids) else ""
        if ids == want_ids[:-1] or (text and not text.endswith(END)):
            raise CheckFailed(
                f"{shown}: the sequence does not end with the END token\n"
                f"   expected: {want_ids}\n   got:      {ids}\n"
                "   hint: append END after the response: without the end token the model never learns to "
                "stop, and generation rambles on"
            )
        if text and (USER not in text or ASSISTANT not in text):
            raise CheckFailed(
                f"{shown}: the USER or ASSISTANT token is missing\n   expected: {want_ids}\n   got:      "
                f"{ids}\n   hint: USER + prompt + ASSISTANT + response + END, five pieces in this order"
            )
        if ids != want_ids and sorted(ids) == sorted(want_ids):
            raise CheckFailed(f"{shown}: the right tokens in the wrong order\n   expected: {want_ids}\n   "
                              "got:      "
                              f"{ids}\n   hint: USER + prompt + ASSISTANT + response + END, in this order")
        expect_equal(ids, want_ids, f"{shown}: wrong token ids",
                     hint="tok.encode(USER + prompt + ASSISTANT + response + "
                          "END), no spaces or newlines added")
        if start == want_start - 1:
            raise CheckFailed(
                f"{shown}: response_start points at the ASSISTANT token, one too early\n"
                f"   expected: {want_start}\n   got:      {start}\n"
                "   hint: the response starts AFTER USER, the prompt and ASSISTANT: len(prompt) + 2"
            )
        if start == want_start + 1:
            raise CheckFailed(
                f"{shown}: response_start is one too late (it points past the first response token)\n"
                f"   expected: {want_start}\n   got:      {start}\n"
                "   hint: USER, the prompt and ASSISTANT come before it: len(prompt) + 2 (END is not counted)"
            )
        first = tok.encode((response or END)[0])[0]
        if start != want_start and start == want_ids.index(first):
            raise CheckFailed(
                f"{shown}: response_start {start} is where the first response character first occurs, inside "
                f"the prompt\n   expected: {want_start}\n   got:      {start}\n"
                "   hint: searching ids for a response token can find it in the prompt; count instead: "
                "response_start = len(prompt) + 2"
            )
        expect_equal(start, want_start, f"{shown}: wrong response_start (index of the first response token)",
                     hint="ids[start] must be the first response character (or END for an empty response)")
    return (f"{len(cases)} examples: ids of USER + prompt + ASSISTANT + response + END (tokens "
            f"{tok.encode(USER)[0]}, {tok.encode(ASSISTANT)[0]}, {tok.encode(END)[0]}) and the response "
            "start")


# ----------------------------------------------------------------------------------------------- TODO 2


def _sft_examples() -> tuple[list[tuple[list[int], int]], int]:
    tok = base_tokenizer()
    pairs = [("reverse: abc", "cba"), ("add: 12+30", "42"), ("upper: hello", "HELLO"), ("count: ab", "2")]
    return [reference_example(p, r, tok) for p, r in pairs], tok.encode(RESERVED[3])[0]


@learner_check(2, "sft_batch")
def check_sft_batch(fn: Callable[[list[tuple[list[int], int]], int],
                                 tuple[torch.Tensor, torch.Tensor]]) -> str:
    examples, pad_id = _sft_examples()
    given = [(list(ids), s) for ids, s in examples]
    with hint_on_crash("T = max(len(ids)) - 1 over ALL the examples (the longest one is not the first here); "
                       "x[b, :n] = ids[:-1] and y[b, start - 1 : n] = ids[start:] with n = len(ids) - 1"):
        out = call(fn, given, pad_id)
    expect([ids for ids, _ in given] == [ids for ids, _ in examples],
           "sft_batch changed the examples' id lists in place (padded or cut them)",
           hint="copy the ids into the new tensors x and y; never append to or cut the caller's lists")
    x, y = expect_tensors(out, 2, f"sft_batch must return a pair of tensors (x, y), got {fmt(out, 80)}",
                          "return x, y")
    want_x, want_y = reference_sft_batch(examples, pad_id)
    for name, got, want in (("x", x, want_x), ("y", y, want_y)):
        expect(got.shape == want.shape and got.dtype == torch.long,
               f"{name} must be a long tensor of shape {tuple(want.shape)} (B, longest - 1), got {got.dtype} "
               f"{tuple(got.shape)}",
               hint="T = max(len(ids)) - 1: inputs drop the last token, targets the first")
    expect_equal(x, want_x, "x (inputs) differ",
                 hint="x[b, :n] = ids[:-1] with n = len(ids) - 1, then pad_id")
    counted, want_counted = y != IGNORE_INDEX, want_y != IGNORE_INDEX  # (B, T) bool
    prompt_pos = torch.zeros_like(want_counted)  # targets that are prompt tokens
    for b, (_ids, start) in enumerate(examples):
        prompt_pos[b, : start - 1] = True
    pad_pos = ~want_counted & ~prompt_pos
    if bool(((y == pad_id) & ~want_counted).any()):
        raise CheckFailed(
            "targets hold pad_id where they should be -100: the model would learn to predict padding\n"
            f"   expected y[1]: {want_y[1].tolist()}\n   got y[1]:      {y[1].tolist()}\n"
            "   hint: fill y with IGNORE_INDEX (-100), not pad_id; only response targets are real tokens")
    if not counted.any():
        raise CheckFailed("every target is -100: nothing would be learned\n"
                          "   hint: keep the targets of the response (and "
                          "END); ignore only prompt and padding")
    if not (counted & want_counted).any() and (counted & prompt_pos).any():
        raise CheckFailed(
            "the mask is inverted: the prompt is trained and the response is masked\n"
            f"   expected y[0]: {want_y[0].tolist()}\n   got y[0]:      {y[0].tolist()}\n"
            "   hint: -100 goes on the prompt positions; the response targets are what SFT learns")
    if prompt_pos.any() and (counted[prompt_pos]).all():
        raise CheckFailed(
            "the prompt's targets are not masked: the loss would also train the model to write prompts\n"
            f"   expected y[0]: {want_y[0].tolist()}\n   got y[0]:      {y[0].tolist()}\n"
            "   hint: set y[b, t] = -100 for t < start - 1 (every target that is a prompt token)")
    first = torch.tensor([s - 1 for _, s in examples])
    rows = torch.arange(len(examples))
    if (~counted[rows, first]).all() and counted[rows, first + 1].all():
        raise CheckFailed(
            "off by one: the target at the ASSISTANT position (the FIRST response token) is masked\n"
            f"   expected y[0]: {want_y[0].tolist()}\n   got y[0]:      {y[0].tolist()}\n"
            "   hint: y is shifted: position start - 1 (the ASSISTANT token) predicts "
            "ids[start], so keep y[b, start - 1]")
    if counted[rows, first - 1].all():
        raise CheckFailed(
            "off by one: the target at position start - 2 (predicting the ASSISTANT token) is counted\n"
            f"   expected y[0]: {want_y[0].tolist()}\n   got y[0]:      {y[0].tolist()}\n"
            "   hint: the ASSISTANT token belongs to the prompt; count targets from position start - 1 on")
    if (counted & pad_pos).any():
        raise CheckFailed(
            "padding positions have targets: the model would learn to predict the pad token\n"
            f"   expected y[1]: {want_y[1].tolist()}\n   got y[1]:      {y[1].tolist()}\n"
            "   hint: positions at and after len(ids) - 1 are padding: their targets are -100")
    if (counted & prompt_pos).any():
        raise CheckFailed(
            "some prompt targets are not masked\n"
            f"   expected y: {want_y.tolist()}\n   got y:      {y.tolist()}\n"
            "   hint: set y[b, t] = -100 for every t < start - 1")
    unshifted = want_y.clone()
    for b, (ids, start) in enumerate(examples):
        unshifted[b, start - 1 : len(ids) - 1] = torch.tensor(ids[start - 1 : -1])
    if torch.equal(y, unshifted):
        raise CheckFailed("y holds the INPUT token at each counted position, not the next one\n"
                          f"   expected y[0]: {want_y[0].tolist()}\n   got y[0]:      {y[0].tolist()}\n"
                          "   hint: the targets are shifted by one: y[b, t] = ids[t + 1] (position t "
                          "predicts the next token)")
    expect_equal(y, want_y, "y (targets) differ",
                 hint="y[b, t] = ids[t + 1] for start - 1 <= t < len(ids) - 1")
    n = int(want_counted.sum())
    return (f"4 examples padded to T = {x.shape[1]}: x as the ids without their last token; y counts "
            f"exactly the {n} response targets (from the ASSISTANT position on, END included), -100 on "
            "prompt and padding")


# ----------------------------------------------------------------------------------------------- TODO 3


def _tiny_sft_setup() -> tuple[GPT, Callable[[int], tuple[torch.Tensor, torch.Tensor]]]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=13, block_size=12, n_layer=1, n_head=2, d_model=16, dropout=0.0))
    model.transformer.wpe.weight.requires_grad_(False)  # a frozen part: it must not move
    batches = []
    g = gen(3)
    for _ in range(6):
        x = torch.randint(0, 13, (4, 10), generator=g)  # (B, T)
        y = torch.randint(0, 13, (4, 10), generator=g)
        y[:, :4] = IGNORE_INDEX
        batches.append((x, y))
    return model, lambda step: batches[step]


def _sft_variant(model: torch.nn.Module, get_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
                 bug: str) -> list[float]:
    """The losses of :func:`reference_sft_train` (6 steps, lr 1e-2, weight_decay 0.5) with one known bug."""
    params = [p for p in model.parameters() if p.requires_grad]

    def new_opt() -> torch.optim.Optimizer:
        if bug == "adam_l2":
            return torch.optim.Adam(params, lr=1e-2, weight_decay=0.5)
        return torch.optim.AdamW(params, lr=1e-3 if bug == "fixed_lr" else 1e-2,
                                 weight_decay=0.01 if bug == "default_wd" else 0.0 if bug == "no_wd" else 0.5)

    opt = new_opt()
    losses = []
    for step in range(6):
        x, y = get_batch(step)
        _, loss = model(x, y)
        if bug == "opt_per_step":
            opt = new_opt()
        if bug != "no_zero_grad":
            opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(model(x, y)[1].item() if bug == "after_step" else loss.item())
    return losses


# What each bug of _sft_variant means, for the hint
_SFT_BUGS = {
    "no_zero_grad": "gradients pile up across steps: call opt.zero_grad() every step before loss.backward()",
    "default_wd": "weight_decay is ignored (AdamW's default 0.01 was used): pass weight_decay=weight_decay",
    "no_wd": "weight_decay is ignored (0 was used): pass weight_decay=weight_decay to AdamW",
    "adam_l2": "Adam's weight_decay is an L2 term in the gradient, not AdamW's decoupled decay: use "
               "torch.optim.AdamW",
    "fixed_lr": "the learning rate is hard-coded (1e-3): pass lr=lr",
    "opt_per_step": "the optimiser is created every step, so its moment estimates restart: create it once, "
                    "before the loop",
    "after_step": "the losses were measured after the update; record loss.item() of the forward pass before "
                  "opt.step()",
}


@learner_check(3, "sft_train")
def check_sft_train(fn: Callable[..., list[float]]) -> str:
    model, get_batch = _tiny_sft_setup()
    ref_model = copy.deepcopy(model)
    initial = copy.deepcopy(model)
    frozen = model.transformer.wpe.weight.detach().clone()
    want = reference_sft_train(ref_model, get_batch, 6, 1e-2, weight_decay=0.5)
    calls: list[int] = []
    modes: list[bool] = []
    model.eval()  # sft_train must switch to training mode itself

    def counting(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(step)
        modes.append(model.training)
        return get_batch(step)

    got = call(fn, model, counting, 6, 1e-2, weight_decay=0.5)
    expect(isinstance(got, (list, tuple)) and len(got) == 6,
           f"sft_train must return a list of 6 losses (one per step), got {fmt(got, 80)}",
           hint="append loss.item() every step and return the list")
    expect(calls == list(range(6)), f"get_batch was called with {calls}, expected [0, 1, 2, 3, 4, 5]",
           hint="one batch per step: x, y = get_batch(step)")
    expect(all(isinstance(v, float) for v in got), "the losses must be Python floats",
           hint="loss.item(), not the tensor (a tensor keeps the whole graph alive)")
    expect(torch.equal(model.transformer.wpe.weight, frozen),
           "a frozen parameter (requires_grad=False) changed",
           hint="give AdamW only [p for p in model.parameters() if "
                "p.requires_grad] and use weight_decay as given")
    expect(all(modes), "the model was in eval mode during training",
           hint="call model.train() before the loop (dropout and other train-time layers)")
    expect(not model.training, "the model is still in training mode after sft_train",
           hint="call model.eval() after the loop, as the docstring says")
    got_t, want_t = torch.tensor(got), torch.tensor(want)
    same_losses = torch.allclose(got_t, want_t, atol=1e-4, rtol=1e-4)
    params_off = [name for (name, p), q in zip(model.named_parameters(), ref_model.parameters(), strict=True)
                  if not torch.allclose(p.detach(), q.detach(), atol=1e-4, rtol=1e-4)]
    if not same_losses or params_off:
        got_params = [p.detach() for p in model.parameters()]
        hint = ("compare with the reference loop: loss = model(x, y)[1]; opt.zero_grad(); loss.backward(); "
                "opt.step(); AdamW(trainable, lr=lr, weight_decay=weight_decay) created once; record "
                "loss.item() before the update (the result matches no single usual bug, so it cannot tell "
                "which)")
        if not any(not torch.equal(p, q) for p, q in zip(got_params, initial.parameters(), strict=True)):
            hint = "the weights never moved: call opt.step() after loss.backward()"
        else:
            for bug, text in _SFT_BUGS.items():
                variant = copy.deepcopy(initial)
                losses = torch.tensor(_sft_variant(variant, get_batch, bug))
                if torch.allclose(got_t, losses, atol=1e-4, rtol=1e-4) and all(
                        torch.allclose(p, q.detach(), atol=1e-4, rtol=1e-4)
                        for p, q in zip(got_params, variant.parameters(), strict=True)):
                    hint = text
                    break
        if not same_losses:
            first = ("the first loss matches but later ones do not" if abs(got[0] - want[0]) < 1e-5 else
                     "the per-step losses differ from a reference AdamW loop")
            raise CheckFailed(f"{first}\n   expected: {want}\n   got:      {got}\n   hint: {hint}")
        raise CheckFailed(f"the losses match the reference AdamW loop, but after 6 steps the parameters "
                          f"{params_off} differ (by more than 1e-4)\n   hint: {hint}")
    return ("6 AdamW steps on a tiny GPT give the reference's losses "
            "and weights (within 1e-4); the frozen parameter did not move")


# ----------------------------------------------------------------------------------------------- TODO 4


@learner_check(4, "init_lora")
def check_init_lora(fn: Callable[..., tuple[torch.Tensor, torch.Tensor, float]]) -> str:
    in_f, out_f, r, alpha = 256, 48, 8, 16
    out = call(fn, in_f, out_f, r, alpha, generator=gen(0))
    expect(isinstance(out, tuple) and len(out) == 3,
           f"init_lora must return (A, B, scale), got {fmt(out, 80)}",
           hint="return A, B, scale")
    A, B, scale = out
    expect(isinstance(A, torch.Tensor) and tuple(A.shape) == (r, in_f),
           f"A must have shape (r, in_features) = {(r, in_f)}, got {fmt(getattr(A, 'shape', A), 80)}",
           hint="A maps the input down to rank r: (r, in_features)")
    expect(isinstance(B, torch.Tensor) and tuple(B.shape) == (out_f, r),
           f"B must have shape (out_features, r) = {(out_f, r)}, got {fmt(getattr(B, 'shape', B), 80)}",
           hint="B maps rank r up to the output: (out_features, r)")
    if bool((B != 0).any()):
        raise CheckFailed(
            f"B is not zero at initialisation (max |B| = {float(B.abs().max()):.3g})\n"
            "   hint: B starts at zero (Hu et al. 2021, §4.1) so that B @ A = 0 and the adapted model starts "
            "EXACTLY equal to the base model")
    expect(not isinstance(scale, torch.Tensor), "scale must be a Python float, not a tensor",
           hint="alpha / r")
    if math.isclose(float(scale), r / alpha):
        raise CheckFailed(f"scale is inverted\n   expected: {alpha / r}\n   got:      {scale}\n"
                          "   hint: scale = alpha / r (alpha=16, r=8 gives 2.0)")
    if math.isclose(float(scale), 1.0) or math.isclose(float(scale), alpha):
        raise CheckFailed(f"scale is not alpha / r\n   expected: {alpha / r}\n   got:      {scale}\n"
                          "   hint: scale = alpha / r, so that changing r does not change the update's size")
    expect(math.isclose(float(scale), alpha / r), f"scale must be alpha / r = {alpha / r}, got {scale}",
           hint="scale = alpha / r")
    bound = 1 / math.sqrt(in_f)
    expect(float(A.std()) > 0, "A is constant: with B = 0 and A = 0 the gradients of both are zero forever",
           hint="A ~ U(-1/sqrt(in_features), 1/sqrt(in_features)), drawn with the generator")
    expect(float(A.abs().max()) <= bound + 1e-6,
           f"A has values up to {float(A.abs().max()):.4f}, beyond the bound 1/sqrt(in_features) = "
           f"{bound:.4f}",
           hint="A.uniform_(-bound, bound, generator=generator) with bound = 1 / math.sqrt(in_features)")
    std, want_std = float(A.std()), bound / math.sqrt(3)
    expect(abs(std - want_std) < 0.1 * want_std,
           f"A's standard deviation is {std:.4f}; U(-b, b) with b = {bound:.4f} has {want_std:.4f}",
           hint="draw A uniformly in [-1/sqrt(in_features), 1/sqrt(in_features)]")
    A2, _, _ = call(fn, in_f, out_f, r, alpha, generator=gen(0))
    expect(torch.equal(A, A2), "two calls with equal generators gave different A",
           hint="draw A with generator=generator")
    scale6 = call(fn, in_f, out_f, 6, alpha, generator=gen(0))[2]
    expect(not isinstance(scale6, torch.Tensor) and math.isclose(float(scale6), alpha / 6),
           f"init_lora(r=6, alpha=16) gave scale {fmt(scale6)}, expected alpha / r = {alpha / 6:.6g}",
           hint="alpha / r with true division (/), not integer division (//)"
           if isinstance(scale6, (int, float)) and scale6 == alpha // 6 else "scale = alpha / r for any r")
    return (f"A {tuple(A.shape)} ~ U(±{bound:.4f}) (std within 10 % of b/√3), B {tuple(B.shape)} all zero, "
            f"scale = alpha / r = {scale}")


# ----------------------------------------------------------------------------------------------- TODO 5


def _lora_tensors(bias: bool, seed: int = 1) -> dict[str, Any]:
    g = gen(seed)
    in_f, out_f, r = 12, 10, 3
    return dict(
        x=torch.randn(2, 5, in_f, generator=g),  # (B, T, in)
        weight=torch.randn(out_f, in_f, generator=g) * 0.3,  # (out, in)
        bias=torch.randn(out_f, generator=g) if bias else None,  # (out,)
        A=torch.randn(r, in_f, generator=g) * 0.3,  # (r, in)
        B=torch.randn(out_f, r, generator=g) * 0.3,  # (out, r), non-zero: as after training
        scale=2.5,
    )


@learner_check(5, "lora_forward")
def check_lora_forward(fn: Callable[..., torch.Tensor]) -> str:
    worst = 0.0
    for bias in (True, False):
        t = _lora_tensors(bias)
        w0 = t["weight"].clone()
        merged_w = t["weight"] + t["scale"] * t["B"] @ t["A"]  # (out, in): the explicit adapted weight
        want = F.linear(t["x"], merged_w, t["bias"])  # (B, T, out)
        with hint_on_crash("x (..., in) @ A.T (in, r) gives (..., r), then @ B.T (r, out) gives (..., out): "
                           "x @ A.T first, then B.T"):
            got = call(fn, t["x"], t["weight"], t["bias"], t["A"], t["B"], t["scale"])
        expect(torch.equal(t["weight"], w0), "lora_forward changed the frozen weight in place",
               hint="never write into weight (no +=, add_): F.linear(x, weight, bias) + scale * (x @ A.T) @ "
                    "B.T")
        if isinstance(got, torch.Tensor) and got.shape == want.shape:
            expect(got.dtype == want.dtype, f"lora_forward returned {got.dtype} for {want.dtype} inputs",
                   hint="keep the layer's dtype: no .double() or numpy round trip")
            for wrong, text in (
                    (t["scale"] * (F.linear(t["x"], t["weight"] + t["B"] @ t["A"], t["bias"])),
                     "scale multiplies only the low-rank path, not the frozen layer"),
                    (F.linear(t["x"], t["weight"] + t["B"] @ t["A"] / t["scale"], t["bias"]),
                     "multiply the low-rank path by scale (= alpha / r); do not divide")):
                if torch.allclose(got, wrong, atol=1e-5):
                    raise CheckFailed(f"lora_forward (bias={bias}): {text}\n   hint: y = F.linear(x, W, b) + "
                                      "scale * (x @ A.T) @ B.T")
            no_scale = F.linear(t["x"], t["weight"] + t["B"] @ t["A"], t["bias"])
            if torch.allclose(got, no_scale, atol=1e-5):
                raise CheckFailed("the output matches W + B @ A without the scale\n"
                                  "   hint: multiply the low-rank path by scale (= alpha / r)")
            if torch.allclose(got, F.linear(t["x"], t["weight"], t["bias"]), atol=1e-5):
                raise CheckFailed("the output ignores the adapter: it is the frozen layer alone\n"
                                  "   hint: add scale * (x @ A.T) @ B.T")
        worst = max(worst, assert_close(got, want,
                                        f"lora_forward (bias={bias}) vs F.linear(x, W + scale·B@A, b)",
                                        hint="y = x @ W.T + b + scale * (x @ A.T) @ B.T"))
    flat = t["x"].reshape(-1, t["x"].shape[-1])  # (N, in): a 2-D input, as from a flattened batch
    with hint_on_crash("x may have any number of leading dimensions (..., in): use x @ A.T, F.linear or an "
                       "einsum with '...'"):
        got2 = call(fn, flat, t["weight"], t["bias"], t["A"], t["B"], t["scale"])
    worst = max(worst, assert_close(got2, F.linear(flat, merged_w, t["bias"]), "lora_forward on a 2-D x (N, "
                                                                               "in)",
                                    hint="x may have any number of leading dimensions (..., in)"))
    t = _lora_tensors(True)
    zero_b = torch.zeros_like(t["B"])
    got0 = call(fn, t["x"], t["weight"], t["bias"], t["A"], zero_b, t["scale"])
    base = F.linear(t["x"], t["weight"], t["bias"])
    if not torch.equal(got0, base):
        raise CheckFailed(
            f"with B = 0 the output differs from the base layer by {float((got0 - base).abs().max()):.2e}\n"
            "   hint: compute the frozen path exactly as nn.Linear does, F.linear(x, weight, bias), and ADD "
            "the low-rank path: then a fresh adapter changes nothing, bit for bit")
    return (f"matches F.linear(x, W + scale·B@A, b) with and without bias ({within(worst, 1e-5)}); "
            "with B = 0 it equals the frozen layer exactly")


# ----------------------------------------------------------------------------------------------- TODO 6


@learner_check(6, "merge_lora")
def check_merge_lora(fn: Callable[..., torch.Tensor]) -> str:
    t = _lora_tensors(True, seed=2)
    w0 = t["weight"].clone()
    want = t["weight"] + t["scale"] * t["B"] @ t["A"]  # (out, in)
    with hint_on_crash("B @ A is (out_features, r) @ (r, in_features) = (out_features, in_features), the "
                       "shape of the weight"):
        got = call(fn, t["weight"], t["A"], t["B"], t["scale"])
    expect(torch.equal(t["weight"], w0), "merge_lora changed the frozen weight in place",
           hint="return a new tensor: weight + scale * (B @ A)")
    if isinstance(got, torch.Tensor) and got.shape == want.shape:
        expect(got.dtype == t["weight"].dtype, f"the merged weight has dtype {got.dtype}, the layer's is "
               f"{t['weight'].dtype}", hint="keep the weight's dtype (no .double()): the merged weight "
                                            "replaces it")
        if torch.allclose(got, t["weight"] + t["B"] @ t["A"], atol=1e-5):
            raise CheckFailed("the merged weight is W + B @ A: the scale is missing\n"
                              "   hint: W' = W + scale * (B @ A); without the scale the merged model is a "
                              "different model from base + adapter")
        for wrong, text in ((t["weight"] + t["B"] @ t["A"] / t["scale"], "multiply B @ A by scale; do not "
                                                                         "divide"),
                            (t["scale"] * (t["weight"] + t["B"] @ t["A"]),
                             "scale multiplies only the adapter B @ A, not the frozen weight")):
            if torch.allclose(got, wrong, atol=1e-5):
                raise CheckFailed(f"the merged weight is wrong: {text}\n   hint: W' = W + scale * (B @ A)")
    err = assert_close(got, want, "merged weight vs W + scale · B @ A",
                       hint="W' = W + scale * (B @ A), shape (out_features, in_features)")
    y = F.linear(t["x"], got, t["bias"])  # (B, T, out)
    y_ref = F.linear(t["x"], t["weight"], t["bias"]) + t["scale"] * (t["x"] @ t["A"].T) @ t["B"].T
    err_y = assert_close(y, y_ref, "a linear layer with the merged weight vs base + adapter")
    return (f"W + scale·B@A ({within(err, 1e-5)}); the merged layer reproduces base + adapter "
            f"({within(err_y, 1e-5)})")
