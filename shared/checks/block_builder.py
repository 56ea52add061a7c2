"""Checks for project 05 (the transformer block): one check per TODO of ``05_block_builder/solution.ipynb``.

The learner's functions wire the weights of the shared GPT (``shared.model.GPT``: ``transformer.wte``,
``transformer.wpe``, ``transformer.h[i].ln_1 / attn / ln_2 / mlp``, ``transformer.ln_f``, ``lm_head``) into
a forward pass. Every check compares with a real reference carrying the same weights:

* TODO 1 ``feed_forward``: the explicit formula W₂·GELU(W₁x + b₁) + b₂ with GELU(z) = z·Φ(z) written
  with ``torch.erf`` (Hendrycks & Gimpel 2016), and ``shared.model.MLP``;
* TODO 2 ``transformer_block``: ``nn.TransformerEncoderLayer`` with ``norm_first=True`` (Pre-LN, Xiong et
  al. 2020) and ``norm_first=False`` (Post-LN, Vaswani et al. 2017) and a causal mask, plus a reference
  written with ``F.layer_norm`` and ``F.scaled_dot_product_attention`` for the no-residual variants;
* TODO 3 ``mini_former``: ``shared.model.GPT.forward`` with ``norm_placement="pre"`` and ``"post"``;
* TODO 4 ``train_model``: a probe whose loss is linear in its weights, so the recorded gradients show
  whether they were zeroed and the weight updates show the learning-rate warmup; and a tiny GPT whose
  loss must fall.

When an answer is wrong, the check recomputes the answer of each well-known bug (LayerNorm after the
residual add in Pre-LN, a missing residual, Post-LN normalising the sublayer input instead of the sum,
no position embedding, unchained blocks, forgotten ``zero_grad``, no warmup, …) and names the match.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.optimizer import register_optimizer_step_pre_hook

from shared.checks import CheckFailed, assert_close, call, expect, fmt, hint_on_crash, learner_check, within
from shared.checks.compare import diagnose, gen

__all__ = [
    "reference_feed_forward",
    "reference_attention",
    "reference_block",
    "reference_mini_former",
    "torch_encoder_layer",
    "check_feed_forward",
    "check_transformer_block",
    "check_mini_former",
    "check_train_model",
]

def _randomise(module: nn.Module, seed: int) -> nn.Module:
    """Give every parameter distinctive values: norm gains near 1, biases and weights clearly non-zero."""
    g = gen(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.dim() == 1:  # LayerNorm gain
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[-1]))
    return module


# ----------------------------------------------------------------------------------------------- references


def reference_feed_forward(x: torch.Tensor, mlp: nn.Module) -> torch.Tensor:
    """W₂·GELU(W₁x + b₁) + b₂ with the exact GELU z·Φ(z) = ½z(1 + erf(z/√2)) (Hendrycks & Gimpel 2016)."""
    h = x @ mlp.c_fc.weight.T + mlp.c_fc.bias  # (..., d_ff)
    h = 0.5 * h * (1.0 + torch.erf(h / math.sqrt(2.0)))  # (..., d_ff)
    return h @ mlp.c_proj.weight.T + mlp.c_proj.bias  # (..., C)


def reference_attention(x: torch.Tensor, attn: nn.Module) -> torch.Tensor:
    """Causal multi-head self-attention with the weights of ``shared.model.CausalSelfAttention``, on SDPA."""
    B, T, C = x.shape
    nh = attn.n_head
    q, k, v = F.linear(x, attn.c_attn.weight, attn.c_attn.bias).split(C, dim=-1)  # (B, T, C) each
    q, k, v = (t.view(B, T, nh, C // nh).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
    return F.linear(y.transpose(1, 2).reshape(B, T, C), attn.c_proj.weight, attn.c_proj.bias)  # (B, T, C)


def _ln(x: torch.Tensor, norm: nn.Module) -> torch.Tensor:
    return F.layer_norm(x, norm.weight.shape, norm.weight, norm.bias, 1e-5)


def reference_block(x: torch.Tensor, block: nn.Module, norm_placement: str = "pre",
                    residual: bool = True) -> torch.Tensor:
    """One block from F.layer_norm, SDPA and the FFN formula.

    pre:  x = x + Attn(LN₁(x)); x = x + FFN(LN₂(x))      (Xiong et al. 2020)
    post: x = LN₁(x + Attn(x)); x = LN₂(x + FFN(x))      (Vaswani et al. 2017)
    residual=False drops the "x +" of both sublayers and keeps the norms where they are.
    """
    keep = 1.0 if residual else 0.0
    if norm_placement == "pre":
        x = keep * x + reference_attention(_ln(x, block.ln_1), block.attn)
        return keep * x + reference_feed_forward(_ln(x, block.ln_2), block.mlp)
    x = _ln(keep * x + reference_attention(x, block.attn), block.ln_1)
    return _ln(keep * x + reference_feed_forward(x, block.mlp), block.ln_2)


def reference_mini_former(
    idx: torch.Tensor, model: nn.Module, norm_placement: str = "pre", residual: bool = True
) -> torch.Tensor:
    """Token + position embeddings, the blocks in order, the final norm, the head: (B, T) -> (B, T, V)."""
    T = idx.shape[1]
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(T))  # (B, T, C)
    for block in model.transformer.h:
        x = reference_block(x, block, norm_placement, residual)
    return model.lm_head(model.transformer.ln_f(x))  # (B, T, V)


def torch_encoder_layer(block: nn.Module, norm_first: bool) -> nn.TransformerEncoderLayer:
    """``nn.TransformerEncoderLayer`` carrying the weights of a shared GPT block (GELU, no dropout)."""
    C = block.ln_1.weight.numel()
    layer = nn.TransformerEncoderLayer(
        C, block.attn.n_head, dim_feedforward=block.mlp.c_fc.out_features, dropout=0.0,
        activation="gelu", batch_first=True, norm_first=norm_first,
    )
    pairs = [
        (layer.self_attn.in_proj_weight, block.attn.c_attn.weight), (layer.self_attn.in_proj_bias,
                                                                     block.attn.c_attn.bias),
        (layer.self_attn.out_proj.weight, block.attn.c_proj.weight), (layer.self_attn.out_proj.bias,
                                                                      block.attn.c_proj.bias),
        (layer.linear1.weight, block.mlp.c_fc.weight), (layer.linear1.bias, block.mlp.c_fc.bias),
        (layer.linear2.weight, block.mlp.c_proj.weight), (layer.linear2.bias, block.mlp.c_proj.bias),
        (layer.norm1.weight, block.ln_1.weight), (layer.norm1.bias, block.ln_1.bias),
        (layer.norm2.weight, block.ln_2.weight), (layer.norm2.bias, block.ln_2.bias),
    ]
    with torch.no_grad():
        for dst, src in pairs:
            dst.copy_(src)
    return layer.eval()


def _tiny_config(**kwargs: object):  # noqa: ANN202 - GPTConfig, imported lazily
    from shared.model import GPTConfig

    base = dict(vocab_size=11, block_size=8, n_layer=1, n_head=4, d_model=16, attn_impl="sdpa")
    base.update(kwargs)
    return GPTConfig(**base)


def _expect_gradients(run: Callable[[], Any], module: nn.Module, what: str) -> None:
    """Run ``run()`` with autograd on, back-propagate a random projection of its output and fail if a
    parameter of ``module`` got no gradient: the notebook trains models through the learner's function."""
    module.zero_grad(set_to_none=True)
    out = run()
    if isinstance(out, torch.Tensor) and out.requires_grad:
        (out * torch.randn(out.shape, generator=gen(99))).sum().backward()
    missing = [name for name, p in module.named_parameters() if p.grad is None or not bool(p.grad.any())]
    module.zero_grad(set_to_none=True)
    expect(not missing,
           f"no gradient reached {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''} through {what}",
           hint="the notebook trains models through this function: keep it in the autograd graph, with no "
                ".detach(), .data, .item() or torch.no_grad() inside")


# ----------------------------------------------------------------------------------------------- TODO 1


@learner_check(1, "feed_forward")
def check_feed_forward(feed_forward: Callable[[torch.Tensor, nn.Module], torch.Tensor]) -> str:
    from shared.model import MLP

    mlp = _randomise(MLP(_tiny_config()), seed=1)
    x = 2.0 * torch.randn(2, 5, 16, generator=gen(2))  # (B, T, C), wide enough to tell GELU variants apart
    with torch.no_grad(), hint_on_crash(
        "if this is a shape mismatch: nn.Linear stores its weight as (out_features, in_features), so the "
        "layer is x @ W.T + b (F.linear(x, W, b)), or simply mlp.c_fc(x)"
    ):
        got = call(feed_forward, x, mlp)
        again = call(feed_forward, x, mlp)
    varies = (isinstance(got, torch.Tensor) and isinstance(again, torch.Tensor)
              and got.shape == again.shape and not torch.equal(got, again))
    expect(not varies,
           "feed_forward gave two different outputs for the same x: your function is random",
           hint="remove the dropout: F.dropout(h, p) drops units unless training=False, and this exercise "
                "has no dropout")
    with torch.no_grad():
        expected = reference_feed_forward(x, mlp)
        w1, b1, w2, b2 = mlp.c_fc.weight, mlp.c_fc.bias, mlp.c_proj.weight, mlp.c_proj.bias
        z = F.linear(x, w1, b1)  # (B, T, d_ff)
        hint = diagnose(
            got,
            [
                (F.linear(z * torch.sigmoid(1.702 * z), w2, b2),
                 "z * sigmoid(1.702 z) is a cruder approximation of GELU; use the exact one, F.gelu(h)"),
                (F.linear(0.5 * z * (1 + torch.erf(z)), w2, b2),
                 "divide by sqrt(2) inside erf: GELU(z) = 0.5 * z * (1 + erf(z / sqrt(2)))"),
                (F.linear(F.gelu(F.linear(x, w1, b1), approximate="tanh"), w2, b2),
                 "this is the tanh approximation of GELU; use the exact one, F.gelu(h) (approximate='none')"),
                (F.linear(F.relu(F.linear(x, w1, b1)), w2, b2),
                 "that is ReLU; the activation here is GELU: F.gelu"),
                (F.linear(F.linear(x, w1, b1), w2, b2),
                 "the activation is missing: without it two Linear layers collapse into one linear map"),
                (F.gelu(F.linear(F.linear(x, w1, b1), w2, b2)),
                 "the activation goes BETWEEN the two Linear layers, not after the second"),
                (F.linear(F.gelu(F.linear(x, w1)), w2),
                 "the biases are missing: use mlp.c_fc(x) or F.linear(x, W, b)"),
            ],
            "y = mlp.c_proj(F.gelu(mlp.c_fc(x)))",
        )
    err = assert_close(got, expected, "feed_forward(x, mlp) for x (2, 5, 16), d_ff 64", hint=hint)
    err2 = assert_close(got, mlp(x).detach(), "vs shared.model.MLP with the same weights")
    _expect_gradients(lambda: call(feed_forward, x, mlp), mlp, "feed_forward")
    return (
        f"matches W₂·GELU(W₁x + b₁) + b₂ written with erf ({within(err, 1e-5)}) and shared.model.MLP "
        f"({within(err2, 1e-5)}) "
        "on x (2, 5, 16), d_ff 64"
    )


# ----------------------------------------------------------------------------------------------- TODO 2


def _block_bug_candidates(x: torch.Tensor, block: nn.Module, placement: str,
                          residual: bool) -> list[tuple[torch.Tensor, str]]:
    attn = lambda h: reference_attention(h, block.attn)  # noqa: E731
    ffn = lambda h: reference_feed_forward(h, block.mlp)  # noqa: E731
    ln1 = lambda h: _ln(h, block.ln_1)  # noqa: E731
    ln2 = lambda h: _ln(h, block.ln_2)  # noqa: E731
    out: list[tuple[torch.Tensor, str]] = []
    if placement == "pre":
        out.append((reference_block(x, block, "post", residual),
                    "this is Post-LN: in Pre-LN the norm goes on the sublayer INPUT, x = x + attn(ln_1(x)), "
                    "and the residual add is left un-normalised"))
        h = ln1(x)
        h = h + attn(h)
        h2 = ln2(h)
        out.append((h2 + ffn(h2),
                    "the residual stream itself was replaced by its normalised copy (x = ln_1(x); x = x + "
                    "attn(x)); keep x and add attn(ln_1(x)) to it"))
        out.append((ln1(x + attn(ln1(x))) if residual else ln1(attn(ln1(x))),
                    "a LayerNorm was applied after the residual add in Pre-LN; only "
                    "the sublayer input is normalised"))
    else:
        out.append((reference_block(x, block, "pre", residual),
                    "this is Pre-LN: Post-LN normalises the SUM, x = ln_1(x + "
                    "attn(x)), not the sublayer input"))
        h = ln1(x) + attn(x)
        out.append((ln2(h) + ffn(h) if residual else ffn(h),
                    "Post-LN must normalise the sum x + attn(x), not x alone: x = ln_1(x + attn(x))"))
    if residual:
        out.append((reference_block(x, block, placement, residual=False),
                    "the residual connections are missing: each sublayer's "
                    "output is ADDED to x (x = x + ...)"))
        out.append((x + attn(ln1(x)) if placement == "pre" else ln1(x + attn(x)),
                    "the feed-forward sublayer is missing (or its result was not kept): a block is "
                    "attention, then FFN"))
    else:
        out.append((reference_block(x, block, placement, residual=True),
                    "residual=False must drop the 'x +' of both sublayers (the no-residual experiment)"))
    out.append((reference_block(x, _swapped_norms(block), placement, residual),
                "ln_1 goes with attention and ln_2 with the feed-forward network; they are swapped"))
    out.append((reference_block(x, _swapped_norms(block, both="ln_1"), placement, residual),
                "ln_2 goes with the feed-forward network; you used ln_1 for both sublayers"))
    keep = 1.0 if residual else 0.0
    if placement == "pre":
        out.append((keep * x + attn(ln1(x)) + ffn(ln2(x)),
                    "the feed-forward must read the output of the attention sublayer (sequential block), not "
                    "the block input: x + attn(ln_1(x)) + ffn(ln_2(x)) is the parallel block of GPT-J"))
    if not residual:
        both = "residual=False must drop the 'x +' of BOTH sublayers; yours kept one of them"
        if placement == "pre":
            h = attn(ln1(x))
            out.append((h + ffn(ln2(h)), both))
            h = x + attn(ln1(x))
            out.append((ffn(ln2(h)), both))
        else:
            h = ln1(attn(x))
            out.append((ln2(h + ffn(h)), both))
            h = ln1(x + attn(x))
            out.append((ln2(ffn(h)), both))
    return out


def _swapped_norms(block: nn.Module, both: str | None = None) -> nn.Module:
    """A view of ``block`` with ln_1 and ln_2 swapped, or (``both="ln_1"``) ln_1 in both places."""
    class View(nn.Module):
        pass

    view = View()
    view.attn, view.mlp, view.ln_1, view.ln_2 = block.attn, block.mlp, block.ln_2, block.ln_1
    if both is not None:
        view.ln_1 = view.ln_2 = getattr(block, both)
    return view


@learner_check(2, "transformer_block")
def check_transformer_block(transformer_block: Callable[..., torch.Tensor]) -> str:
    from shared.model import Block

    block = _randomise(Block(_tiny_config()), seed=3)
    x = torch.randn(2, 6, 16, generator=gen(4))  # (B, T, C)
    T = x.shape[1]
    causal = nn.Transformer.generate_square_subsequent_mask(T)  # (T, T) float, -inf above the diagonal
    worst, worst_torch = 0.0, 0.0
    for placement in ("pre", "post"):
        for residual in (True, False):
            name = f"{placement}-LN, residual={residual}"
            xin = x.clone()
            with torch.no_grad():
                got = call(transformer_block, xin, block, placement, residual)
            expect(torch.equal(xin, x), f"transformer_block changed its input x in place ({name})",
                   hint="x += ... (or add_) writes into the caller's tensor, in place: write x = x + ..., "
                        "which makes a new tensor and leaves the input alone")
            with torch.no_grad():
                expected = reference_block(x, block, placement, residual)
                hint = diagnose(
                    got, _block_bug_candidates(x, block, placement, residual),
                    "pre: x = x + attn(ln_1(x)); x = x + ffn(ln_2(x)).  post: x = ln_1(x + attn(x)); "
                    "x = ln_2(x + ffn(x)).  residual=False drops the 'x +'",
                )
            worst = max(worst, assert_close(got, expected, f"block output ({name})", hint=hint))
            if residual:
                layer = torch_encoder_layer(block, norm_first=placement == "pre")
                with torch.no_grad():
                    ref = layer(x, src_mask=causal, is_causal=True)
                against = f"vs nn.TransformerEncoderLayer(norm_first={placement == 'pre'}) ({name})"
                worst_torch = max(worst_torch, assert_close(got, ref, against, hint=hint))
    return (
        "Pre-LN and Post-LN match nn.TransformerEncoderLayer(norm_first=True/False) with the same weights "
        f"and a causal mask ({within(worst_torch, 1e-5)}); with and without residuals they match a "
        f"reference on F.layer_norm + F.scaled_dot_product_attention ({within(worst, 1e-5)})"
    )


# ----------------------------------------------------------------------------------------------- TODO 3


@learner_check(3, "mini_former")
def check_mini_former(mini_former: Callable[..., torch.Tensor]) -> str:
    from shared.model import GPT

    idx = torch.randint(11, (2, 7), generator=gen(5))  # (B, T), T < block_size
    worst = 0.0
    for placement in ("pre", "post"):
        model = GPT(_tiny_config(n_layer=3, norm_placement=placement)).eval()
        _randomise(model, seed=6)
        for residual in (True, False):
            name = f"{placement}-LN, residual={residual}"
            with torch.no_grad(), hint_on_crash(
                "if this is a size mismatch at the embeddings: idx is (B, T), T = idx.shape[1] is the "
                "sequence length and the positions are torch.arange(T)"
            ):
                got = call(mini_former, idx, model, placement, residual)
                if residual:
                    expected = model(idx)[0]
                else:
                    expected = reference_mini_former(idx, model, placement, residual)
                tr = model.transformer
                emb = tr.wte(idx) + tr.wpe(torch.arange(idx.shape[1]))  # (B, T, C)
                x_nopos, x_unchained_out, x_first = tr.wte(idx), emb, emb
                for block in tr.h:
                    x_nopos = reference_block(x_nopos, block, placement, residual)
                    x_unchained_out = reference_block(emb, block, placement, residual)
                    x_first = reference_block(x_first, tr.h[0], placement, residual)
                x_all = emb
                for block in tr.h:
                    x_all = reference_block(x_all, block, placement, residual)
                candidates = [
                    (model.lm_head(tr.ln_f(x_nopos)),
                     "the position embeddings are missing: x = wte(idx) + wpe(arange(T)); without them the "
                     "model cannot tell positions apart"),
                    (model.lm_head(tr.ln_f(x_unchained_out)),
                     "each block must take the PREVIOUS block's output; here "
                     "every block read the embeddings"),
                    (model.lm_head(tr.ln_f(x_first)),
                     "loop over all blocks, model.transformer.h, not block 0 each time"),
                ]
                if placement == "pre":
                    candidates.append((model.lm_head(x_all),
                                       "the final norm is missing: apply model.transformer.ln_f before the "
                                       "head (Pre-LN's residual stream is never normalised otherwise)"))
                C = emb.shape[-1]
                variants = [
                    (tr.wte(idx) + tr.wpe(torch.arange(1, idx.shape[1] + 1)), placement, residual,
                     "positions start at 0: add wpe(torch.arange(T)), positions 0 .. T - 1"),
                    (tr.wte(idx) * C ** 0.5 + tr.wpe(torch.arange(idx.shape[1])), placement, residual,
                     "do not scale the token embeddings by sqrt(d_model): the original Transformer did, GPT "
                     "does not (x = wte(idx) + wpe(arange(T)))"),
                ]
                if (placement, residual) != ("pre", True):
                    variants.append((emb, "pre", True,
                                     "pass norm_placement and residual on to transformer_block: these are "
                                     "the logits of its defaults (pre, residual=True)"))
                if not residual:
                    variants.append((emb, placement, True,
                                     "pass norm_placement and residual on to transformer_block: these logits "
                                     "kept the residuals (residual=True, its default)"))
                for x_var, pl, res, text in variants:
                    for block in tr.h:
                        x_var = reference_block(x_var, block, pl, res)
                    candidates.append((model.lm_head(tr.ln_f(x_var)), text))
                hint = diagnose(got, candidates,
                                "wte(idx) + wpe(arange(T)) -> each block in order -> ln_f -> lm_head")
            ref_name = "shared GPT.forward" if residual else "reference"
            worst = max(worst, assert_close(got, expected, f"logits ({name}) vs {ref_name}", hint=hint))
    _expect_gradients(lambda: call(mini_former, idx, model, "post", True), model, "mini_former")
    return (
        "3 blocks, V=11, T=7: logits match shared.model.GPT.forward with the same weights for Pre-LN and "
        f"Post-LN, and a reference without residuals, {within(worst, 1e-5)}"
    )


# ----------------------------------------------------------------------------------------------- TODO 4


class _LinearProbe(nn.Module):
    """loss = Σ c ⊙ w: the gradient is always c,
    so stale gradients and the size of each update are visible."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4))
        self.register_buffer("c", torch.tensor([1.0, -2.0, 3.0, -4.0]))
        self.seen_grads: list[torch.Tensor] = []
        self.w.register_post_accumulate_grad_hook(lambda p: self.seen_grads.append(p.grad.detach().clone()))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss = (self.c * self.w).sum() + 0.0 * x.float().mean()
        return loss.detach(), loss


def _probe_batches(split: str, batch_size: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(5, (batch_size, 3), generator=generator)
    return x, x


@learner_check(4, "train_model")
def check_train_model(train_model: Callable[..., list[float]]) -> str:
    from shared.data import copy_task
    from shared.model import GPT

    # 1. the probe: gradients must be fresh at every step and the updates must follow the warmup
    steps, lr, warmup = 8, 0.05, 3
    torch.manual_seed(0)
    probe = _LinearProbe()
    batches: list[torch.Tensor] = []  # the x of every batch drawn
    at_step: list[torch.Tensor | None] = []  # the gradient optimizer.step() reads

    asked: list[tuple[str, int]] = []  # (split, batch_size) of every get_batch call
    optimizers: list[Any] = []  # the optimizer of every step (kept alive, so that ids are not reused)

    def probe_batches(split: str, batch_size: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        asked.append((split, batch_size))
        x, y = _probe_batches(split, batch_size, generator)
        batches.append(x.clone())
        return x, y

    def before_step(optimizer: Any, args: Any, kwargs: Any) -> None:
        at_step.append(None if probe.w.grad is None else probe.w.grad.detach().clone())
        optimizers.append(optimizer)

    handle = register_optimizer_step_pre_hook(before_step)  # every optimizer, for this call only
    try:
        losses = call(train_model, probe, probe_batches, steps, lr, warmup, 4, 0)
    finally:
        handle.remove()
    expect(
        isinstance(losses, list) and len(losses) == steps and all(isinstance(v, float) for v in losses),
        f"train_model must return a list of {steps} Python floats (one loss per step); got "
        f"{fmt(losses, 120)}",
        hint="append loss.item() once per step",
    )
    expect(len(probe.seen_grads) == steps, f"expected {steps} backward passes, saw {len(probe.seen_grads)}",
           hint="call loss.backward() exactly once per step")
    c = probe.c
    for step, grad in enumerate(probe.seen_grads):
        if not torch.allclose(grad, c):
            multiple = float(grad[0] / c[0])
            raise CheckFailed(
                f"at step {step} the gradient after backward() was {multiple:g}× the gradient of that "
                "step's loss\n"
                f"   expected: {fmt(c)}\n   got:      {fmt(grad)}\n"
                "   hint: gradients ACCUMULATE in .grad: call optimizer.zero_grad() "
                "every step, before loss.backward()"
            )
    expect(len(batches) == steps,
           f"expected one batch per step ({steps}), get_batch was called {len(batches)} times",
           hint="x, y = get_batch('train', batch_size, gen) once per step")
    expect(all(split == "train" for split, _ in asked),
           f"get_batch was asked for the splits {sorted({split for split, _ in asked})}",
           hint="train on the training split: get_batch('train', batch_size, gen)")
    expect(all(size == 4 for _, size in asked),
           f"train_model was called with batch_size=4 but asked get_batch for batches of "
           f"{sorted({size for _, size in asked})}",
           hint="pass the batch_size argument on: get_batch('train', batch_size, gen)")
    first = _probe_batches("train", 4, torch.Generator().manual_seed(0))[0]
    expect(any(not torch.equal(b, batches[0]) for b in batches[1:]),
           f"all {steps} steps trained on the same batch",
           hint="create the generator ONCE, before the loop: torch.Generator().manual_seed(seed) inside the "
                "loop restarts it, so every step draws the same batch")
    expect(torch.equal(batches[0], first),
           "the first batch is not the one torch.Generator().manual_seed(seed) draws",
           hint="pass gen = torch.Generator().manual_seed(seed) to get_batch, so that a run is repeatable")
    norm_c = float(probe.c.norm())
    expect(len(at_step) == steps, f"optimizer.step() ran {len(at_step)} times, expected {steps}",
           hint="one optimizer.step() per step, after loss.backward()")
    expect(all(g is not None and bool(g.any()) for g in at_step),
           "the weights never moved: at some step optimizer.step() found no gradient (None or all zeros)",
           hint="zero the gradients before loss.backward(), not between backward and optimizer.step()")
    expect(all(o is optimizers[0] for o in optimizers),
           f"{len({id(o) for o in optimizers})} different optimizers stepped in {steps} steps",
           hint="create the optimizer ONCE, before the loop: a new AdamW every step restarts its moment "
                "estimates (and its step count) from zero")
    worst = max(float(g.norm()) for g in at_step)
    expect(worst <= 1.0 + 1e-5,
           f"optimizer.step() saw a gradient of norm {worst:.2f}; this probe's gradient has norm "
           f"{norm_c:.2f} and must be clipped to 1",
           hint="torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0) after loss.backward() and BEFORE "
                "optimizer.step()")
    # with a constant gradient, AdamW moves every weight by lr_t per step (m̂ / sqrt(v̂) = sign(c))
    drops = [(losses[t] - losses[t + 1]) / float(c.abs().sum()) for t in range(steps - 1)]
    expected = [lr * min(1.0, (t + 1) / (warmup + 1)) for t in range(steps - 1)]
    got_t, exp_t = torch.tensor(drops), torch.tensor(expected)
    if not torch.allclose(got_t, exp_t, rtol=0.05, atol=1e-4):
        hint = diagnose(
            got_t,
            [
                (torch.full_like(exp_t, lr),
                 "the learning rate never warmed up: lr_t = lr * min(1, (t + 1) / (warmup_steps + 1))"),
                (torch.zeros_like(exp_t),
                 "the weights never moved: call optimizer.step() after loss.backward() "
                 "(and zero the gradients before backward, not between backward and step)"),
                (torch.tensor([lr * min(1.0, t / warmup) for t in range(steps - 1)]),
                 "off by one: step 0 must already use lr / (warmup_steps + 1), not 0"),
                (torch.tensor([lr * min(1.0, (t + 1) / warmup) for t in range(steps - 1)]),
                 "off by one: the warmup reaches lr one step early; use lr * min(1, (t + 1) / "
                 "(warmup_steps + 1)), which also never divides by zero when warmup_steps=0"),
                (exp_t * norm_c / float(c.abs().sum()),
                 "these are the updates of plain SGD (a step along the clipped gradient); use "
                 "torch.optim.AdamW"),
            ],
            "use torch.optim.AdamW and set every param_group's 'lr' to lr * min(1, (t + 1) / (warmup_steps "
            "+ 1)) before step t",
        )
        raise CheckFailed(
            "the size of the weight updates does not follow the warmup schedule (probe with a constant "
            "gradient)\n"
            f"   expected per-step lr: {fmt([round(v, 4) for v in expected])}\n"
            f"   got (from the updates): {fmt([round(v, 4) for v in drops])}\n   hint: {hint}"
        )
    # warmup_steps=0 (the notebook's default): full lr from the first step, and no division by zero
    probe0 = _LinearProbe()
    with hint_on_crash("this was warmup_steps=0 (no warmup): lr * min(1, (t + 1) / (warmup_steps + 1)) "
                       "never divides by zero"):
        losses0 = call(train_model, probe0, _probe_batches, 3, lr, 0, 4, 0)
    drops0 = [(losses0[t] - losses0[t + 1]) / float(c.abs().sum()) for t in range(2)]
    expect(all(abs(d - lr) <= 0.05 * lr for d in drops0),
           f"with warmup_steps=0 the per-step lr should be {lr} from the first step; got {fmt(drops0)}",
           hint="warmup_steps=0 means no warmup: lr * min(1, (t + 1) / (warmup_steps + 1)) is lr at every "
                "step")
    # 2. a tiny GPT on the copy task: the loss must fall
    task = copy_task(512, length=4, n_symbols=6, generator=gen(7))

    def get_batch(split: str, batch_size: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        i = torch.randint(len(task), (batch_size,), generator=generator)
        return task.x[i], task.y[i]

    torch.manual_seed(0)
    model = GPT(_tiny_config(vocab_size=task.vocab_size, n_layer=1))
    curve = call(train_model, model, get_batch, 60, 1e-2, 5, 32, 0)
    first_loss, last = sum(curve[:5]) / 5, sum(curve[-5:]) / 5
    expect(last < 0.8 * first_loss,
           f"the loss did not fall on the copy task: first 5 steps {first_loss:.3f}, last 5 {last:.3f}",
           hint="forward, loss.backward(), optimizer.step() every step, with batches from "
                "get_batch('train', ...)")
    return (
        f"gradients are fresh and clipped to norm 1 at every step, batches come from one seeded "
        f"generator, updates follow the warmup (lr/{warmup + 1} … lr), and a tiny GPT's loss on the copy "
        "task falls by over 20 % in 60 steps (mean of the last 5 steps < 0.8 × the first 5)"
    )
