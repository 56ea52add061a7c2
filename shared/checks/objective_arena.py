"""Checks for project 13 (pretraining objectives): one check per TODO of
``13_objective_arena/solution.ipynb``.

The three objectives, on the same token windows:

* causal LM (CLM): x = w[:, :-1], y = w[:, 1:]; every position predicts the next token (Radford et al.
  2018/2019);
* masked LM (MLM): select 15 % of the positions; of those 80 % become [MASK], 10 % a random token, 10 %
  stay; the target is the original token at selected positions and ``IGNORE_INDEX`` (-100) everywhere
  else (Devlin et al. 2019, BERT, §3.1 "Task #1: Masked LM");
* prefix LM: attention is bidirectional inside the first ``prefix_len`` tokens and causal after them;
  the loss covers only the target part (Raffel et al. 2020, T5, §3.2.1, Figure 3).

Every check compares with a reference: the shifted windows, :func:`shared.model.attention_allowed` with
``attn_mask="prefix"``, :func:`torch.nn.functional.cross_entropy` with ``ignore_index=-100``. The MLM
check is statistical: on 28 672 maskable tokens drawn with a fixed generator the selection rate must be
within 0.01 of 15 % (about 4.7 standard deviations) and the 80/10/10 split within 0.03 / 0.025 / 0.025
(about 5 standard deviations each), so a correct implementation fails with probability below 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable

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
from shared.checks.compare import diagnose, expect_tensors, gen, matches
from shared.data import IGNORE_INDEX
from shared.positions import attention_allowed

__all__ = [
    "reference_prefix_mask",
    "check_causal_lm_batch",
    "check_masked_lm_batch",
    "check_prefix_lm_mask",
    "check_prefix_lm_batch",
    "check_lm_loss",
]


def reference_prefix_mask(T: int, prefix_len: int | torch.Tensor) -> torch.Tensor:
    """The prefix-LM mask from :func:`shared.model.attention_allowed`:
    (T, T) for an int, (B, T, T) for a (B,) tensor."""
    pos = torch.arange(T)
    p = torch.as_tensor(prefix_len).long().reshape(-1)  # (B,) or (1,)
    allowed = attention_allowed(pos, pos, "prefix", p)[:, 0]  # (B, T, T)
    return allowed[0] if not isinstance(prefix_len, torch.Tensor) else allowed


def _pair(out: object, fn_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    message = f"{fn_name} must return a pair of tensors (x, y), got {type(out).__name__}"
    return expect_tensors(out, 2, message, "return x, y")  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------- TODO 1


@learner_check(1, "causal_lm_batch")
def check_causal_lm_batch(fn: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]) -> str:
    w = torch.randint(0, 50, (3, 9), generator=gen(0))  # (B, T+1)
    x, y = _pair(call(fn, w.clone()), "causal_lm_batch")
    if x.shape == (2, 9) and y.shape == (2, 9):
        raise CheckFailed(
            "shapes: windows (3, 9) gave x and y of shape (2, 9): the slices cut the batch axis\n"
            "   hint: slice the time axis (dim 1), keep every window: x = w[:, :-1], y = w[:, 1:]"
        )
    if x.shape != (3, 8) or y.shape != (3, 8):
        raise CheckFailed(
            f"shapes: windows {tuple(w.shape)} must give x and y of shape (3, 8), "
            f"got {tuple(x.shape)} and {tuple(y.shape)}\n   hint: drop one token: x = w[:, :-1], y = w[:, 1:]"
        )
    if torch.equal(y, x):
        raise CheckFailed(
            "y equals x: the model would be trained to copy its input\n"
            "   hint: shift by one: y[:, t] is the token AFTER x[:, t], so y = w[:, 1:]"
        )
    if torch.equal(x, w[:, 1:]) and torch.equal(y, w[:, :-1]):
        raise CheckFailed(
            "x and y are swapped: the model would predict the PREVIOUS token\n"
            "   hint: x = w[:, :-1] (all but the last), y = w[:, 1:] (all but the first)"
        )
    expect_equal(x, w[:, :-1], "x must be the window without its last token", hint="x = w[:, :-1]")
    expect_equal(y, w[:, 1:], "y must be the window without its first token",
                 hint="y is x shifted left by one: w[:, 1:]")
    expect(x.dtype == torch.long and y.dtype == torch.long, f"x and y must stay token ids (torch.long), got "
           f"{x.dtype} and {y.dtype}", hint="slice the windows; do not convert them (.float())")
    one = torch.randint(0, 50, (1, 5), generator=gen(7))  # a batch of 1, windows of another length
    x1, y1 = _pair(call(fn, one.clone()), "causal_lm_batch")
    if not (torch.equal(x1, one[:, :-1]) and torch.equal(y1, one[:, 1:])):
        raise CheckFailed(
            f"causal_lm_batch on a batch of 1 window of 5 tokens\n   expected: x {one[:, :-1].tolist()}, y "
            f"{one[:, 1:].tolist()}\n   got:      x {fmt(x1, 80)}, y {fmt(y1, 80)}\n   hint: x = w[:, :-1], "
            "y = w[:, 1:] for any batch size and length (no hard-coded length, no squeeze of a batch of 1)")
    return "x = w[:, :-1] and y = w[:, 1:] on 3 windows of 9 tokens: every position predicts the next token"


# ----------------------------------------------------------------------------------------------- TODO 2

_MLM_B, _MLM_T, _MLM_PAD_TAIL = 64, 512, 64  # the last 64 tokens of every row are padding
_MLM_VOCAB, _MLM_MASK_ID, _MLM_PAD_ID = 50, 50, 0


@learner_check(2, "masked_lm_batch")
def check_masked_lm_batch(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> str:
    tokens = torch.randint(1, _MLM_VOCAB, (_MLM_B, _MLM_T), generator=gen(1))  # (B, T), no pad inside
    tokens[:, -_MLM_PAD_TAIL:] = _MLM_PAD_ID
    original = tokens.clone()
    kwargs = dict(mask_id=_MLM_MASK_ID, vocab_size=_MLM_VOCAB, pad_id=_MLM_PAD_ID)
    x, y = _pair(call(fn, tokens, generator=gen(2), **kwargs), "masked_lm_batch")
    expect(torch.equal(tokens, original), "masked_lm_batch changed its input tensor in place",
           hint="work on x = tokens.clone()")
    for name, t in (("x", x), ("y", y)):
        expect(t.shape == tokens.shape and t.dtype == torch.long,
               f"{name} must be a long tensor of shape {tuple(tokens.shape)}, got {t.dtype} {tuple(t.shape)}",
               hint="same shape as tokens, dtype torch.long")
    x2, y2 = _pair(call(fn, original.clone(), generator=gen(2), **kwargs), "masked_lm_batch")
    expect(torch.equal(x, x2) and torch.equal(y, y2),
           "two calls with equal generators gave different batches",
           hint="draw every random number with generator=generator (torch.rand, torch.randint)")

    small = torch.randint(1, _MLM_VOCAB, (8, 64), generator=gen(8)).int()  # int32 ids, no padding
    with hint_on_crash("on int32 tokens: make x a long tensor first, x = tokens.clone().long(), so that the "
                       "random long ids and mask_id fit into it"):
        xi, yi = _pair(call(fn, small, generator=gen(9), mask_id=_MLM_MASK_ID, vocab_size=_MLM_VOCAB),
                       "masked_lm_batch")
    expect(xi.dtype == torch.long and yi.dtype == torch.long,
           f"on int32 tokens x and y came back as {xi.dtype} and {yi.dtype}; both must be torch.long",
           hint="x = tokens.clone().long(): the loss and the embedding want long ids whatever came in")
    selected = y != IGNORE_INDEX  # (B, T)
    if bool(((y != IGNORE_INDEX) & (y != original)).any()):
        raise CheckFailed(
            "y holds something other than the original token or -100\n"
            "   hint: the target of a selected position is the ORIGINAL token (before [MASK]/random)"
        )
    pad = original == _MLM_PAD_ID
    n = int((~pad).sum())
    rate = int(selected.sum()) / n
    if rate > 0.5:
        raise CheckFailed(
            f"targets are set at {rate:.0%} of the positions, not ~15 %\n"
            "   hint: y is IGNORE_INDEX (-100) everywhere except the selected "
            "positions, so the loss only counts those"
        )
    expect(not bool((selected & pad).any()), f"{int((selected & pad).sum())} padding positions were selected",
           hint="never select padding: selected = (rand < mask_prob) & (tokens != pad_id)")
    changed_unselected = int(((x != original) & ~selected).sum())
    if changed_unselected:
        raise CheckFailed(
            f"{changed_unselected} positions that are NOT selected (y = -100) were changed in x "
            f"({changed_unselected / int((~selected).sum()):.1%} of them)\n"
            "   hint: apply 80/10/10 only to the selected 15 %; every other position keeps its token"
        )
    expect(abs(rate - 0.15) <= 0.01,
           f"selection rate {rate:.4f} of {n} maskable tokens, expected 0.15 ± 0.01",
           hint="select each non-pad position independently with probability mask_prob")
    k = int(selected.sum())
    xs, os_ = x[selected], original[selected]
    f_mask = float((xs == _MLM_MASK_ID).float().mean())
    f_same = float((xs == os_).float().mean())
    f_rand = 1.0 - f_mask - f_same
    expect(bool(((xs == _MLM_MASK_ID) | ((xs >= 0) & (xs < _MLM_VOCAB))).all()),
           "some selected positions hold ids outside [0, vocab_size) that are not [MASK]",
           hint="random replacements come from torch.randint(vocab_size, ...)")
    # a random token equals the original with probability 1/vocab_size, so "unchanged" is 0.1 + 0.1/V
    exp_same, exp_rand = 0.1 + 0.1 / _MLM_VOCAB, 0.1 - 0.1 / _MLM_VOCAB
    split = f"[MASK] {f_mask:.3f}, random {f_rand:.3f}, unchanged {f_same:.3f} of {k} selected"
    if f_mask > 0.99:
        raise CheckFailed(f"{split}: every selected token became [MASK]\n   hint: the selection and the "
                          "80/10/10 split reuse the same draw (r < mask_prob < 0.8 always); draw a second, "
                          "independent r for the split")
    expect(abs(f_mask - 0.8) <= 0.03, f"{split}: expected [MASK] 0.80 ± 0.03",
           hint="of the SELECTED positions, 80 % become mask_id (one uniform draw r: r < 0.8)")
    expect(abs(f_rand - exp_rand) <= 0.025 and abs(f_same - exp_same) <= 0.025,
           f"{split}: expected random {exp_rand:.3f} ± 0.025, unchanged {exp_same:.3f} ± 0.025",
           hint="0.8 <= r < 0.9: a random token from torch.randint(vocab_size); r >= 0.9: keep the token")
    x3, y3 = _pair(call(fn, original.clone(), generator=gen(2), mask_prob=0.3, **kwargs), "masked_lm_batch")
    rate3 = int((y3 != IGNORE_INDEX).sum()) / n
    expect(abs(rate3 - 0.3) <= 0.015, f"with mask_prob=0.3 the selection rate is {rate3:.4f}, expected 0.30 "
                                      "± 0.015",
           hint="select with the mask_prob argument, not a hard-coded 0.15")
    return (
        f"{n} maskable tokens, 64 × 64 padding never selected; selection rate 0.15 ± 0.01, "
        "80/10/10 of the selected ones within ± 0.03/0.025/0.025, unselected "
        "tokens unchanged with target -100"
    )


# ----------------------------------------------------------------------------------------------- TODO 3


def _describe_mask_bug(got: torch.Tensor, T: int, p: int) -> str:
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    if p > 0 and torch.equal(got, reference_prefix_mask(T, p - 1)):
        return "off by one at the boundary: the prefix is tokens 0 .. prefix_len - 1 (i, j < prefix_len)"
    if p < T and torch.equal(got, reference_prefix_mask(T, p + 1)):
        return ("off by one at the boundary: the prefix is tokens 0 .. prefix_len - 1, so use i < "
                "prefix_len, not <=")
    if torch.equal(got, reference_prefix_mask(T, p).T) and p < T:
        return "the mask is transposed: rows are queries i, columns keys j, and causal means j <= i"
    if torch.equal(got, reference_prefix_mask(T, p) & ~torch.eye(T, dtype=torch.bool) | ((i < p) & (j < p))):
        return "the diagonal is missing: a token attends to itself, so the causal part is j <= i, not j < i"
    if bool((got & (i < p) & (j >= p)).any()):
        return "a prefix position attends to the target part; the prefix must not see the target"
    if bool((got & (j > i) & (i >= p)).any()):
        return "a target position sees a future token; after the prefix attention is causal (j <= i)"
    if torch.equal(got, torch.ones(T, T, dtype=torch.bool).tril()):
        return ("this is the plain causal mask: inside the prefix attention is "
                "bidirectional (i, j < prefix_len)")
    return "allowed = (j <= i) | ((i < prefix_len) & (j < prefix_len)), True = may attend"


@learner_check(3, "prefix_lm_mask")
def check_prefix_lm_mask(fn: Callable[[int, int | torch.Tensor], torch.Tensor]) -> str:
    T = 8
    for p in (3, 0, 1, 7, 8):
        got = call(fn, T, p)
        want = reference_prefix_mask(T, p)
        expect(isinstance(got, torch.Tensor) and got.dtype == torch.bool,
               f"prefix_lm_mask({T}, {p}) must return a bool tensor, got {fmt(got, 80)}",
               hint="comparisons (j <= i) already give bool tensors")
        if got.shape != want.shape:
            raise CheckFailed(
                f"prefix_lm_mask({T}, {p}): wrong shape\n   expected: {tuple(want.shape)}\n"
                f"   got:      {tuple(got.shape)}\n   hint: an int prefix_len gives a (T, T) mask"
            )
        if not torch.equal(got, want):
            raise CheckFailed(
                f"prefix_lm_mask({T}, {p}) differs from shared.model.attention_allowed(attn_mask='prefix')\n"
                f"   expected: {want.int().tolist()}\n   got:      {got.int().tolist()}\n"
                f"   hint: {_describe_mask_bug(got, T, p)}"
            )
    plens = torch.tensor([0, 2, 5, 8])
    with hint_on_crash("a (B,) tensor prefix_len must broadcast against i (T, 1) and j (1, T): "
                       "p = prefix_len[:, None, None] gives (B, T, T)"):
        got = call(fn, T, plens)
    want = reference_prefix_mask(T, plens)
    expect(isinstance(got, torch.Tensor) and got.shape == want.shape and got.dtype == torch.bool,
           f"prefix_lm_mask({T}, tensor {plens.tolist()}) must be a bool tensor of shape "
           f"{tuple(want.shape)}, "
           f"got {fmt(got, 80)}",
           hint="broadcast: p = prefix_len[:, None, None] against i (T, 1) and j (1, T) gives (B, T, T)")
    for b, p in enumerate(plens.tolist()):
        if not torch.equal(got[b], want[b]):
            raise CheckFailed(
                f"row {b} (prefix_len {p}) of the batched mask is wrong\n"
                f"   expected: {want[b].int().tolist()}\n   got:      {got[b].int().tolist()}\n"
                f"   hint: {_describe_mask_bug(got[b], T, p)}"
            )
    return (
        "equals shared.model.attention_allowed(attn_mask='prefix') for T = 8, prefix_len 0, 1, 3, 7, 8 "
        "and a (4,) tensor of prefix lengths: bidirectional in the prefix, causal after"
    )


# ----------------------------------------------------------------------------------------------- TODO 4


@learner_check(4, "prefix_lm_batch")
def check_prefix_lm_batch(fn: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]) -> str:
    w = torch.randint(0, 50, (2, 11), generator=gen(3))  # (B, T+1), T = 10
    for p in (4, 1, 10):
        windows = w.clone()
        x, y = _pair(call(fn, windows, p), "prefix_lm_batch")
        want_y = w[:, 1:].clone()
        want_y[:, : p - 1] = IGNORE_INDEX
        expect(torch.equal(windows, w) and not bool((x == IGNORE_INDEX).any()),
               f"prefix_len={p}: the input windows (or x) now hold -100: the function wrote into its input",
               hint="w[:, 1:] is a VIEW of windows, so y[:, :prefix_len - 1] = -100 also writes -100 into "
                    "windows and into x (another view); take y = windows[:, 1:].clone()")
        expect_equal(x, w[:, :-1], f"prefix_len={p}: x must be the window without its last token",
                     hint="x = w[:, :-1]")
        if torch.equal(y, want_y):
            continue
        counted = (y != IGNORE_INDEX)[0].tolist()
        hint = "y = w[:, 1:] with y[:, :prefix_len - 1] = -100"
        if torch.equal(y, w[:, 1:]):
            hint = ("the loss also counts prefix tokens; inside the bidirectional prefix position t SEES "
                    "token t+1, so those targets leak. Set y[:, :prefix_len - 1] = -100")
        elif p > 1 and (y[:, p - 1] == IGNORE_INDEX).all() and torch.equal(y[:, p:], want_y[:, p:]):
            hint = ("the first target token w[:, prefix_len] is predicted at position prefix_len - 1 (the "
                    "last prefix token); only y[:, :prefix_len - 1] is ignored")
        elif p > 2 and torch.equal(y[:, p - 2:], w[:, p - 1:]) and (y[:, : p - 2] == IGNORE_INDEX).all():
            hint = ("the target at position prefix_len - 2 is the last PREFIX token, which the bidirectional "
                    "prefix can see; ignore y[:, :prefix_len - 1] (one more)")
        elif (y[:, p - 1:] == IGNORE_INDEX).all():
            hint = "you ignored the target part; the loss must count the target part and ignore the prefix"
        raise CheckFailed(
            f"prefix_len={p}: wrong targets y (counted positions of row 0: {counted})\n"
            f"   expected: {fmt(want_y)}\n   got:      {fmt(y)}\n   hint: {hint}"
        )
    return "x = w[:, :-1]; y = w[:, 1:] with the prefix targets set to -100, for prefix_len 1, 4, 10 of 10"


# ----------------------------------------------------------------------------------------------- TODO 5


@learner_check(5, "lm_loss")
def check_lm_loss(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> str:
    B, T, V = 3, 16, 11
    logits = torch.randn(B, T, V, generator=gen(4)) * 2  # (B, T, V)
    full = torch.randint(0, V, (B, T), generator=gen(5))  # (B, T)
    sparse = torch.full((B, T), IGNORE_INDEX)
    pick = torch.rand(B, T, generator=gen(6)) < 0.2
    pick[0, 0] = True
    sparse[pick] = full[pick]
    prefix = full.clone()
    prefix[:, :9] = IGNORE_INDEX
    worst = 0.0
    for name, y in (("every position (CLM)", full), ("20 % of positions (MLM)", sparse),
                    ("target part (prefix LM)", prefix)):
        want = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1), ignore_index=IGNORE_INDEX)
        with hint_on_crash("gather needs valid indices: clamp the -100 targets to 0 first, then drop those "
                           "positions with the mask"):
            got = call(fn, logits.clone(), y.clone())
        if isinstance(got, torch.Tensor) and got.dim() > 0:
            raise CheckFailed(f"lm_loss must return a scalar (0-dim) tensor, got shape {tuple(got.shape)}\n"
                              "   hint: average over the counted positions: .mean() of the selected losses")
        hint = "loss = mean over positions with target != -100 of -log_softmax(logits)[target]"
        if not matches(got, want):  # name the bug (in float64: a float64 loss is right too)
            kept = y != IGNORE_INDEX
            bugs = []
            for dim, text in ((-1, None), (1, "normalise over the vocabulary: log_softmax(logits, dim=-1)")):
                nll = -torch.log_softmax(logits, dim).gather(-1, y.clamp(min=0)[..., None])[..., 0]  # (B, T)
                bugs += [(-nll[kept].mean(), "wrong sign: the loss is the NEGATIVE log-likelihood"),
                         (nll[kept].sum(), "take the mean over the counted positions, not the sum")]
                bugs += [(nll[kept].mean(), text)] if text else []
                if y is not full and dim == -1:
                    bugs += [((nll * kept).sum() / y.numel(),
                              "you divided by ALL positions; divide by the number of counted positions "
                              "(target != -100), as F.cross_entropy(ignore_index=-100) does"),
                             (nll.mean(), "positions with target -100 must not count at all (mask "
                                          "them out, do not clamp them to 0)"),
                             (((nll * kept).sum(1) / kept.sum(1)).mean(),
                              "average over all counted positions together, not per row then over rows "
                              "(rows hold different numbers of targets)")]
            hint = diagnose(got, bugs, hint)
        err = assert_close(got, want, f"lm_loss on targets at {name}", hint=hint)
        worst = max(worst, err)
        expect(bool(torch.isfinite(got)), f"lm_loss on targets at {name} is not finite: {fmt(got)}")
    big = logits * 100  # gaps of hundreds of nats: softmax probabilities underflow to 0 in float32
    want = F.cross_entropy(big.reshape(-1, V), sparse.reshape(-1), ignore_index=IGNORE_INDEX)
    got = call(fn, big.clone(), sparse.clone())
    expect(isinstance(got, torch.Tensor) and bool(torch.isfinite(got)),
           f"lm_loss on logits × 100 is not finite: {fmt(got)}",
           hint="log(softmax(x)) underflows to log(0) = -inf; use torch.log_softmax, which is stable")
    assert_close(got, want, "lm_loss on logits × 100", rtol=1e-5, hint="use torch.log_softmax(logits, "
                                                                       "dim=-1)")
    return (
        "matches F.cross_entropy(ignore_index=-100) with targets at every position, at 20 % of them and "
        f"on a target part ({within(worst, 1e-5)}), and on logits × 100"
    )
