"""A configurable tiny GPT in raw PyTorch — the one model every project trains.

The layout follows nanoGPT (Karpathy, github.com/karpathy/nanoGPT): a ``GPTConfig`` dataclass, then
``CausalSelfAttention``, ``MLP``, ``Block`` and ``GPT``, each named for what it is. Parameter names
follow GPT-2 (``transformer.wte``, ``transformer.h.0.attn.c_attn`` …) so Hugging Face weights map
onto it one to one. Every architectural choice the curriculum studies is a config switch:

=========================  ==================================================================
switch                     papers
=========================  ==================================================================
``pos_encoding``           learned (Radford et al. 2019, GPT-2); sinusoidal (Vaswani et al.
                           2017, §3.5); RoPE (Su et al. 2021, RoFormer, §3.4); ALiBi (Press
                           et al. 2022, §3); "none" (Haviv et al. 2022, NoPE)
``norm``                   LayerNorm (Ba et al. 2016); RMSNorm (Zhang & Sennrich 2019)
``norm_placement``         post-LN (Vaswani et al. 2017) vs pre-LN (Xiong et al. 2020)
``activation``             ReLU; GELU (Hendrycks & Gimpel 2016) exact or tanh ("gelu_new" in
                           GPT-2); SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer")
``n_kv_head``              multi-query (Shazeer 2019) / grouped-query attention (Ainslie et
                           al. 2023)
``attn_mask``              causal LM; prefix LM and bidirectional (Raffel et al. 2020, T5,
                           §3.2.1 and Fig. 3)
``sliding_window``         local attention (Child et al. 2019; Beltagy et al. 2020,
                           Longformer §3.1; Jiang et al. 2023, Mistral 7B §2)
``n_experts``              mixture of experts (Shazeer et al. 2017) with the Switch
                           load-balancing loss (Fedus et al. 2021, §2.2, eq. 4)
``attn_impl``              the written-out softmax vs ``F.scaled_dot_product_attention``
=========================  ==================================================================

Extension points: ``GPT(config, mask_fn=...)`` replaces the attention mask with your own function
of the query and key positions, and ``with model.record(attention=True, hidden=True) as rec``
returns the attention weights and the hidden states of a forward pass.

Beside the core, in modules of their own: config and argument checks (``shared.model_checks``),
torch-version shims (``shared.compat``), positions and masks (``shared.positions``: sinusoidal,
RoPE, ALiBi, ``attention_allowed``), the mixture of experts (``shared.moe``), the preallocated KV
cache (Pope et al. 2022, "Efficiently Scaling Transformer Inference", §2; ``shared.kv_cache``) and
the sampling filters ``generate`` uses: temperature, top-k (Fan et al. 2018) and nucleus / top-p
(Holtzman et al. 2020) (``shared.sampling``). Accounting: ``num_params`` and ``flops_per_token``
(Kaplan et al. 2020, §2.1; Hoffmann et al. 2022, Appendix F).

Shape names used in the comments: B batch, T sequence length (queries), S key length (cache
length), C = d_model, nh query heads, nkv key/value heads, hs head size, V vocabulary,
E experts, N = B*T tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from shared.data import IGNORE_INDEX
from shared.kv_cache import KVCache
from shared.model_checks import check_config, check_forward_inputs, check_generate_args, check_mask
from shared.moe import MoE
from shared.positions import alibi_slopes, apply_rope, attention_allowed, rope_cos_sin, sinusoidal_positions
from shared.sampling import sampling_probs

# mask_fn(q_pos (T,), k_pos (S,)) -> bool (T, S) or (B or 1, 1, T, S); True = may attend
MaskFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class GPTConfig:
    """Every switch of the tiny GPT. Invalid values raise ``ValueError`` naming field, value and rule
    (the checks are in ``shared.model_checks``, which also lists the values each switch accepts).

    ``n_kv_head=None`` means ``n_head`` (plain multi-head attention) and ``d_ff=None`` means the
    default width below. Both ``None`` values are kept as ``None`` on the config and resolved by the
    properties ``kv_heads`` and ``ff_dim``, so ``dataclasses.replace(cfg, d_model=256)`` gives a
    wider FFN too instead of silently keeping the old width.

    Default FFN width (``ff_dim``): ``4 * d_model`` (GPT-2); for ``activation="swiglu"`` it is
    ``8 * ceil(floor(8 * d_model / 3) / 8)`` — two thirds of 4·d_model rounded up to a multiple of 8,
    so the three SwiGLU matrices hold about as many parameters as the two GELU ones (Shazeer 2020,
    §2; the same rule as LLaMA with ``multiple_of=8``). d_model=128 gives 344.
    """

    vocab_size: int = 65
    block_size: int = 64  # the training context length
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int | None = None  # None -> n_head (MHA); 1 -> MQA; between -> GQA
    d_model: int = 128
    d_ff: int | None = None  # None -> 4*d_model (swiglu: see class docstring)
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorm
    pos_encoding: str = "learned"  # "none" | "learned" | "sinusoidal" | "rope" | "alibi"
    rope_base: float = 10000.0
    norm: str = "layernorm"  # "layernorm" | "rmsnorm" | "none"
    norm_placement: str = "pre"  # "pre" | "post"
    norm_eps: float = 1e-5
    activation: str = "gelu"  # "relu" | "gelu" | "gelu_tanh" | "swiglu"
    attn_mask: str = "causal"  # "causal" | "prefix" | "bidirectional"
    sliding_window: int | None = None  # None -> full attention; W -> keys with |i - j| < W
    n_experts: int = 0  # 0 -> dense FFN; >= 1 -> mixture-of-experts FFN in every block
    moe_top_k: int = 1  # experts per token (1 = Switch routing)
    moe_aux_loss_coef: float = 0.01  # Switch Transformer uses alpha = 1e-2
    tie_embeddings: bool = True
    attn_impl: str = "sdpa"  # "sdpa" | "manual" (the written-out softmax)

    def __post_init__(self) -> None:
        check_config(self)

    @property
    def head_dim(self) -> int:
        """hs = d_model / n_head."""
        return self.d_model // self.n_head

    @property
    def kv_heads(self) -> int:
        """Number of key/value heads (``n_kv_head``, or ``n_head`` when it is None)."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def ff_dim(self) -> int:
        """Hidden width of the feed-forward network (``d_ff`` or its default, see the class docstring)."""
        if self.d_ff is not None:
            return self.d_ff
        if self.activation == "swiglu":
            return 8 * math.ceil((8 * self.d_model // 3) / 8)
        return 4 * self.d_model


# ----------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------


def _dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)``, or ``nn.Identity()`` when p == 0: the same output, one call less per use
    (it adds up in token-by-token decoding, where every layer runs once per token)."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class LayerNorm(nn.Module):
    """y = (x − mean(x)) / sqrt(var(x) + eps) · γ + β over the last dim (Ba et al. 2016).

    Like ``nn.LayerNorm`` but the bias β is optional (``bias=False`` drops it, as in nanoGPT).
    """

    def __init__(self, ndim: int, bias: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, self.eps)


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x²) + eps) · γ over the last dim (Zhang & Sennrich 2019, eq. 4).

    No centring and no bias; uses the fused ``F.rms_norm`` kernel (torch >= 2.4), which computes
    exactly this, and the written-out formula on older torch.
    """

    def __init__(self, ndim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(F, "rms_norm"):
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight  # torch < 2.4


def make_norm(config: GPTConfig) -> nn.Module:
    """The normalisation layer chosen by ``config.norm`` (``nn.Identity`` for "none")."""
    if config.norm == "layernorm":
        return LayerNorm(config.d_model, bias=config.bias, eps=config.norm_eps)
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, eps=config.norm_eps)
    return nn.Identity()


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention with grouped KV heads, RoPE, a KV cache and two implementations.

    softmax(q kᵀ / sqrt(hs) + bias) v per head (Vaswani et al. 2017, §3.2), where ``bias`` is 0
    where attention is allowed, −inf where it is masked, plus −slope·|i − j| under ALiBi.

    Projections are fused in ``c_attn``: its output rows are [q (nh·hs) | k (nkv·hs) | v (nkv·hs)].
    With nkv < nh (GQA, Ainslie et al. 2023) query head h reads KV head h // (nh / nkv); the KV
    heads are repeated to match before the attention product.

    The name is nanoGPT's; the mask it applies is whatever ``GPT`` passes (causal by default).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_dim = config.head_dim
        self.attn_impl = config.attn_impl
        self.dropout = config.dropout
        qkv_dim = (self.n_head + 2 * self.n_kv_head) * self.head_dim
        self.c_attn = nn.Linear(config.d_model, qkv_dim, bias=config.bias)
        self.c_proj = nn.Linear(config.d_model, config.d_model, bias=config.bias)
        self.attn_dropout = _dropout(config.dropout)
        self.resid_dropout = _dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_bias: torch.Tensor | None = None,
        is_causal: bool = False,
        kv_cache: KVCache | None = None,
        layer_idx: int = 0,
        start_pos: int = 0,
        keep_weights: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C).

        rope: (cos, sin) for the T query positions, or None. attn_bias: additive float
        (B or 1, nh or 1, T, S) or None. is_causal: use SDPA's built-in causal mask instead (only
        with attn_bias None and T == S). kv_cache: write the new keys/values at
        [start_pos, start_pos + T) of layer ``layer_idx`` and attend to all S = start_pos + T keys.
        keep_weights: a list to append the softmax weights (B, nh, T, S) to; they are computed with
        the written-out softmax then, whatever ``attn_impl`` says (``GPT.record`` passes it).
        """
        B, T, C = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.c_attn(x).split([nh * hs, nkv * hs, nkv * hs], dim=2)  # (B, T, ·)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            q = apply_rope(q, *rope)  # (B, nh, T, hs)
            k = apply_rope(k, *rope)  # (B, nkv, T, hs)
        if kv_cache is not None:
            k, v = kv_cache.update(layer_idx, k, v, start_pos)  # (B, nkv, S, hs) each
        if nkv != nh:
            k = k.repeat_interleave(nh // nkv, dim=1)  # (B, nh, S, hs)
            v = v.repeat_interleave(nh // nkv, dim=1)  # (B, nh, S, hs)

        if self.attn_impl == "sdpa" and keep_weights is None:
            y = F.scaled_dot_product_attention(
                q, k, v,
                attn_mask=attn_bias,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=is_causal,
            )  # (B, nh, T, hs)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S)
            if is_causal:  # same rule as SDPA's is_causal: query i sees keys j <= i
                keep = torch.ones(T, k.size(2), dtype=torch.bool, device=x.device).tril()  # (T, S)
                att = att.masked_fill(~keep, float("-inf"))
            if attn_bias is not None:
                att = att + attn_bias  # (B, nh, T, S)
            att = F.softmax(att, dim=-1)  # (B, nh, T, S), rows sum to 1
            if keep_weights is not None:
                keep_weights.append(att)
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    """Position-wise feed-forward network: W₂ · act(W₁ x) (Vaswani et al. 2017, §3.3).

    activation "relu" | "gelu" (exact, erf) | "gelu_tanh" (GPT-2's tanh approximation, "gelu_new") |
    "swiglu": W₂ · (SiLU(W_g x) ⊙ W_u x) (Shazeer 2020, eq. 6). For SwiGLU the gate and up
    projections are fused into ``c_fc`` (output rows [gate | up]), one matmul instead of two.
    With ``n_experts > 0`` each block holds a ``shared.moe.MoE`` of these instead.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.activation = config.activation
        d_ff = config.ff_dim
        fc_out = 2 * d_ff if config.activation == "swiglu" else d_ff
        self.c_fc = nn.Linear(config.d_model, fc_out, bias=config.bias)
        self.c_proj = nn.Linear(d_ff, config.d_model, bias=config.bias)
        self.dropout = _dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (..., d_ff) or (..., 2·d_ff) for swiglu
        if self.activation == "relu":
            h = F.relu(h)
        elif self.activation == "gelu":
            h = F.gelu(h)
        elif self.activation == "gelu_tanh":
            h = F.gelu(h, approximate="tanh")
        else:
            gate, up = h.chunk(2, dim=-1)  # (..., d_ff) each
            h = F.silu(gate) * up  # (..., d_ff)
        return self.dropout(self.c_proj(h))  # (..., C)


class Block(nn.Module):
    """One transformer block: attention then feed-forward, each wrapped in a residual connection.

    pre-LN  (Xiong et al. 2020):   x = x + Attn(LN₁(x));   x = x + FFN(LN₂(x))
    post-LN (Vaswani et al. 2017): x = LN₁(x + Attn(x));   x = LN₂(x + FFN(x))
    (``ln_1``/``ln_2`` keep GPT-2's names whichever norm they hold.)
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MoE(config) if config.n_experts > 0 else MLP(config)

    def forward(
        self, x: torch.Tensor, keep_sublayers: list[dict[str, torch.Tensor]] | None = None, **attn_kwargs
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C). keep_sublayers: a list to append this block's
        {"attn_in", "attn_out", "mlp_in", "mlp_out"} to, each (B, T, C) (``GPT.record`` passes it)."""
        if self.pre_norm:
            attn_in = self.ln_1(x)  # (B, T, C)
            attn_out = self.attn(attn_in, **attn_kwargs)  # (B, T, C)
            x = x + attn_out
            mlp_in = self.ln_2(x)  # (B, T, C)
            mlp_out = self.mlp(mlp_in)  # (B, T, C)
            x = x + mlp_out
        else:
            attn_in = x
            attn_out = self.attn(x, **attn_kwargs)  # (B, T, C)
            x = self.ln_1(x + attn_out)
            mlp_in = x
            mlp_out = self.mlp(x)  # (B, T, C)
            x = self.ln_2(x + mlp_out)
        if keep_sublayers is not None:
            keep_sublayers.append(
                {"attn_in": attn_in, "attn_out": attn_out, "mlp_in": mlp_in, "mlp_out": mlp_out}
            )
        return x


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


class GPT(nn.Module):
    """Decoder-only transformer language model (Radford et al. 2019) with the switches of ``GPTConfig``.

    ``forward`` returns (logits, loss); ``generate`` samples; ``new_kv_cache`` builds a cache.
    Initialisation as GPT-2 (Radford et al. 2019, §2.3): weights N(0, 0.02²), biases 0, and the
    projections that write into the residual stream (``c_proj``) N(0, (0.02/sqrt(2·n_layer))²).

    mask_fn (also settable later as ``model.mask_fn``): ``mask_fn(q_pos, k_pos) -> bool`` with
    q_pos (T,) and k_pos (S,) the absolute positions of the queries and the keys, returning
    (T, S) or (B or 1, 1, T, S), True = may attend. It replaces the mask that ``attn_mask`` and
    ``sliding_window`` would build (ALiBi's distance bias is still added). It works in training and
    with the KV cache (positions are absolute); a mask that lets a query see later keys makes the
    cached keys stale, so use ``generate(use_cache=False)`` with one. To read attention weights and
    hidden states, see ``record``.
    """

    def __init__(self, config: GPTConfig, mask_fn: MaskFn | None = None) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.mask_fn = mask_fn
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.vocab_size, config.d_model),
                drop=_dropout(config.dropout),
                h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
                # post-LN blocks already end in a norm, so only pre-LN needs a final one
                ln_f=make_norm(config) if config.norm_placement == "pre" else nn.Identity(),
            )
        )
        if config.pos_encoding == "learned":
            self.transformer["wpe"] = nn.Embedding(config.block_size, config.d_model)
        if config.pos_encoding == "sinusoidal":  # fixed, not saved: a longer model loads it too
            self.register_buffer(
                "sinusoid", sinusoidal_positions(config.block_size, config.d_model), persistent=False
            )
        if config.pos_encoding == "alibi":
            self.register_buffer("alibi", alibi_slopes(config.n_head), persistent=False)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        if config.tie_embeddings:  # Press & Wolf 2017: one matrix to embed and to unembed
            self.lm_head.weight = self.transformer.wte.weight
        self.last_aux_loss: torch.Tensor | None = None
        self._recording: Recording | None = None  # set by ``record`` while its with-block runs

        self.apply(self._init_weights)
        residual_std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=residual_std)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # -- forward ------------------------------------------------------------------------------

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        prefix_len: int | torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        start_pos: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """idx: (B, T) token ids -> (logits (B, T, V), loss or None).

        targets: (B, T) next-token ids; positions holding -100 are ignored. loss = mean
        cross-entropy over the other positions, plus ``moe_aux_loss_coef`` · aux loss with MoE.
        prefix_len: int or (B,) tensor, only with attn_mask="prefix". kv_cache: positions
        [start_pos, start_pos + T) are computed and written; queries attend to every cached key
        before them. start_pos defaults to ``kv_cache.length`` (0 without a cache).
        """
        if start_pos is None:
            start_pos = kv_cache.length if kv_cache is not None else 0
        prefix = check_forward_inputs(self.config, idx, targets, prefix_len, kv_cache, start_pos)
        return self._forward(idx, targets, prefix, kv_cache, start_pos)

    def _forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None,
        prefix: torch.Tensor | None,
        kv_cache: KVCache | None,
        start_pos: int,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``forward`` on checked arguments (prefix: (B,) long or None); ``generate`` calls it too."""
        c = self.config
        B, T = idx.shape
        S = start_pos + T  # number of keys each query may look at (before masking)
        q_pos = torch.arange(start_pos, S, device=idx.device)  # (T,) absolute positions

        x = self.transformer.wte(idx)  # (B, T, C)
        if c.pos_encoding == "learned":
            x = x + self.transformer.wpe(q_pos)  # (B, T, C)
        elif c.pos_encoding == "sinusoidal":
            x = x + self.sinusoid[start_pos:S].to(x.dtype)  # (B, T, C)
        x = self.transformer.drop(x)

        rope = rope_cos_sin(q_pos, c.head_dim, c.rope_base) if c.pos_encoding == "rope" else None
        attn_bias, is_causal = self._attention_bias(q_pos, start_pos, prefix, B, x.dtype)
        rec = self._recording
        weights = [] if rec is not None and rec.want_attention else None  # per layer (B, nh, T, S)
        residual = [x] if rec is not None and rec.want_residual else None  # per layer (B, T, C)
        sublayers = [] if rec is not None and rec.want_sublayers else None  # per layer, 4 x (B, T, C)
        for layer_idx, block in enumerate(self.transformer.h):
            x = block(
                x, keep_sublayers=sublayers, rope=rope, attn_bias=attn_bias, is_causal=is_causal,
                kv_cache=kv_cache, layer_idx=layer_idx, start_pos=start_pos, keep_weights=weights,
            )  # (B, T, C)
            if residual is not None:
                residual.append(x)
        if kv_cache is not None:
            kv_cache.length = S
        x = self.transformer.ln_f(x)  # (B, T, C)
        if rec is not None:
            rec.keep(weights, residual, x, sublayers)
        logits = self.lm_head(x)  # (B, T, V)

        if c.n_experts > 0:
            self.last_aux_loss = torch.stack([b.mlp.aux_loss for b in self.transformer.h]).mean()
        loss = None
        if targets is not None:
            loss = F.cross_entropy(
                logits.reshape(B * T, -1), targets.reshape(B * T).long(), ignore_index=IGNORE_INDEX
            )
            if c.n_experts > 0 and c.moe_aux_loss_coef > 0:
                loss = loss + c.moe_aux_loss_coef * self.last_aux_loss
        return logits, loss

    def _attention_bias(
        self, q_pos: torch.Tensor, start_pos: int, prefix: torch.Tensor | None, batch_size: int,
        dtype: torch.dtype,
    ) -> tuple[torch.Tensor | None, bool]:
        """The additive attention bias shared by all layers, and whether SDPA's is_causal can replace it.

        Fast path (SDPA, causal, no window, no ALiBi, no mask_fn): no bias tensor at all —
        ``is_causal=True`` when the queries start at position 0, nothing when a single query comes
        after the cache. Otherwise: bias (B or 1, nh or 1, T, S) = 0 where allowed (by ``mask_fn``
        or else by ``attention_allowed``), −inf where masked, minus slope_h · |i − j| under ALiBi
        (Press et al. 2022, §3; the distance is symmetric so the bias also serves prefix and
        bidirectional attention).
        """
        c = self.config
        T = q_pos.numel()
        simple = c.attn_mask == "causal" and c.sliding_window is None and c.pos_encoding != "alibi"
        if simple and self.mask_fn is None and c.attn_impl == "sdpa":
            if start_pos == 0:
                return None, True
            if T == 1:
                return None, False
        k_pos = torch.arange(start_pos + T, device=q_pos.device)  # (S,)
        if self.mask_fn is not None:
            allowed = check_mask(self.mask_fn(q_pos, k_pos), batch_size, T, start_pos + T)
            allowed = allowed.to(q_pos.device)  # (T, S) or (B|1, 1, T, S)
        else:
            allowed = attention_allowed(q_pos, k_pos, c.attn_mask, prefix, c.sliding_window)  # (B|1,1,T,S)
        bias = torch.zeros(allowed.shape, device=q_pos.device).masked_fill(~allowed, float("-inf"))
        if c.pos_encoding == "alibi":
            distance = (q_pos[:, None] - k_pos[None, :]).abs().float()  # (T, S)
            bias = bias - self.alibi[None, :, None, None] * distance  # (B|1, nh, T, S)
        return bias.to(dtype), False

    # -- reading the inside of a forward pass -------------------------------------------------

    @contextmanager
    def record(
        self, attention: bool = False, hidden: bool = False, residual: bool = False, sublayers: bool = False
    ) -> Iterator[Recording]:
        """Record what the forward passes inside the with-block compute; yields a ``Recording``.

            with model.record(attention=True, hidden=True) as rec:
                logits, loss = model(x)
            rec.attention  # per layer: (B, nh, T, S) softmax weights, each row summing to 1
            rec.hidden     # (B, T, C): the final normalised hidden state, the input of lm_head
            rec.residual   # n_layer + 1 tensors (B, T, C): the residual stream entering each block,
                           # then the last block's output (before ln_f)
            rec.sublayers  # per layer {"attn_in", "attn_out", "mlp_in", "mlp_out"}: what the block's
                           # attention and feed-forward layers receive and return, (B, T, C) each

        Each forward call replaces what the previous one recorded. Nothing is detached, so
        gradients flow through ``rec.hidden`` (e.g. into a value head) as through the logits.
        Recording attention computes the weights with the written-out softmax (as
        ``attn_impl="manual"``), so under "sdpa" the outputs can differ from an unrecorded pass in
        the last float bits; hidden and residual states are read without changing anything.
        """
        rec = Recording(
            want_attention=attention, want_hidden=hidden, want_residual=residual, want_sublayers=sublayers
        )
        outer, self._recording = self._recording, rec
        try:
            yield rec
        finally:
            self._recording = outer

    # -- generation ---------------------------------------------------------------------------

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
        prefix_len: int | None = None,
    ) -> torch.Tensor:
        """Extend idx (B, T) by max_new_tokens sampled tokens -> (B, T + max_new_tokens).

        Each step: logits of the last position / temperature, then top-k, then top-p, then a
        sample from the softmax (``torch.multinomial`` with ``generator``). temperature=0 is greedy
        argmax. The model sees at most the last block_size tokens, as in nanoGPT.

        use_cache=True prefills a KV cache with the prompt and then feeds one token per step. Once
        the sequence outgrows block_size, the window of the last block_size tokens shifts by one
        each step and every position in it changes (learned/sinusoidal positions restart at 0), so
        the cached path re-prefills the cropped window — exactly the computation of the uncached
        path, so both give identical tokens. prefix_len (prefix LM only, default: the whole
        prompt): the first prefix_len prompt tokens are the bidirectional prefix; it shrinks as the
        window slides past it.
        The model is put in eval mode and its train/eval mode is restored afterwards.
        """
        c = self.config
        prefix_len = check_generate_args(
            c, idx, max_new_tokens, temperature, top_k, top_p, use_cache, prefix_len
        )

        def last_logits(
            tokens: torch.Tensor, p: int | None, cache: KVCache | None, start: int
        ) -> torch.Tensor:
            # the prompt's ids were checked above; every later id is the model's own choice
            prefix = check_forward_inputs(c, tokens, None, p, cache, start, check_ids=False)
            return self._forward(tokens, None, prefix, cache, start)[0][:, -1, :]  # (B, V)

        was_training = self.training
        self.eval()
        try:
            cache = self.new_kv_cache(idx.size(0)) if use_cache else None
            for _ in range(max_new_tokens):
                L = idx.size(1)
                off = max(0, L - c.block_size)  # tokens cropped from the left
                window = idx[:, off:]  # (B, ≤ block_size)
                p = None if prefix_len is None else max(0, prefix_len - off)
                if cache is None:
                    logits = last_logits(window, p, None, 0)
                elif off > 0 or cache.length == 0:  # (re-)prefill the whole window
                    cache.reset()
                    logits = last_logits(window, p, cache, 0)
                else:  # the cache holds positions 0..L-2: feed the newest token only
                    logits = last_logits(window[:, -1:], p, cache, L - 1)
                if temperature == 0:
                    next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
                else:
                    probs = sampling_probs(logits, temperature, top_k, top_p)  # (B, V)
                    next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
                idx = torch.cat([idx, next_id.to(idx.dtype)], dim=1)  # (B, L + 1)
        finally:
            self.train(was_training)
        return idx

    def new_kv_cache(
        self,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> KVCache:
        """An empty KV cache for this model (max_len defaults to block_size; device/dtype to the model's)."""
        p = next(self.parameters())
        c = self.config
        return KVCache(
            n_layer=c.n_layer,
            batch_size=batch_size,
            n_kv_head=c.kv_heads,
            max_len=c.block_size if max_len is None else max_len,
            head_dim=c.head_dim,
            device=p.device if device is None else device,
            dtype=p.dtype if dtype is None else dtype,
        )

    # -- accounting ---------------------------------------------------------------------------

    def num_params(self, non_embedding: bool = True) -> int:
        """Number of parameters (a tied embedding counts once).

        non_embedding=True excludes the token embedding, the learned position embedding and an
        untied output matrix — the N of Kaplan et al. 2020 (§1.1, "excluding all vocabulary and
        positional embeddings").
        """
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wte.weight.numel()
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.lm_head.weight.numel()
        return n

    def flops_per_token(self, seq_len: int | None = None) -> int:
        """Training FLOPs per token (forward + backward) at context ``seq_len`` (default block_size).

            flops = 6·(N_active + V·C) + 12 · n_layer · T · C

        6N: each parameter does one multiply-add (2 FLOPs) per token forward and twice that backward
        (Kaplan et al. 2020, §2.1, C ≈ 6N). N_active is ``num_params()`` with only top_k of the
        n_experts experts per layer; V·C adds the output projection, a real matmul even when tied.
        12·n_layer·T·C: attention scores q·kᵀ and the weighted sum of v, 2·T·C FLOPs each per token
        and layer forward (Hoffmann et al. 2022, Appendix F), times 3 for forward + backward — the
        6N + 12·L·H·Q·T of Chowdhery et al. 2022 (PaLM), Appendix B. (Kaplan's Table 1 counts only
        the first of the two attention products.) Full T×T attention is counted: the causal mask
        and the sliding window are not discounted, and norms, softmax and activations are ignored.
        """
        c = self.config
        T = c.block_size if seq_len is None else seq_len
        n_active = self.num_params(non_embedding=True)
        if c.n_experts > 0:
            per_expert = sum(p.numel() for p in self.transformer.h[0].mlp.experts[0].parameters())
            n_active -= c.n_layer * (c.n_experts - c.moe_top_k) * per_expert
        return 6 * (n_active + c.vocab_size * c.d_model) + 12 * c.n_layer * T * c.d_model


@dataclass
class Recording:
    """What ``GPT.record`` captured from the latest forward pass inside its with-block.

    attention: per layer (B, nh, T, S) softmax weights; hidden: (B, T, C) the input of ``lm_head``;
    residual: n_layer + 1 tensors (B, T, C), the residual stream entering each block and the last
    block's output; sublayers: per layer the inputs and outputs of the attention and feed-forward
    layers. A field that was not asked for (or before any forward) stays empty / None.
    """

    want_attention: bool = False
    want_hidden: bool = False
    want_residual: bool = False
    want_sublayers: bool = False
    attention: list[torch.Tensor] = field(default_factory=list)
    hidden: torch.Tensor | None = None
    residual: list[torch.Tensor] = field(default_factory=list)
    sublayers: list[dict[str, torch.Tensor]] = field(default_factory=list)

    def keep(
        self,
        attention: list[torch.Tensor] | None,
        residual: list[torch.Tensor] | None,
        hidden: torch.Tensor,
        sublayers: list[dict[str, torch.Tensor]] | None = None,
    ) -> None:
        """Store one forward pass's tensors (called by ``GPT.forward``)."""
        if self.want_attention and attention is not None:
            self.attention = attention
        if self.want_residual and residual is not None:
            self.residual = residual
        if self.want_hidden:
            self.hidden = hidden
        if self.want_sublayers and sublayers is not None:
            self.sublayers = sublayers
