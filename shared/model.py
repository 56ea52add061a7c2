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

Inference helpers: a preallocated KV cache (Pope et al. 2022, "Efficiently Scaling Transformer
Inference", §2) and ``generate`` with temperature, top-k (Fan et al. 2018) and nucleus / top-p
(Holtzman et al. 2020) sampling. Accounting: ``num_params`` and ``flops_per_token`` (Kaplan et al.
2020, §2.1; Hoffmann et al. 2022, Appendix F).

Shape names used in the comments: B batch, T sequence length (queries), S key length (cache
length), C = d_model, nh query heads, nkv key/value heads, hs head size, V vocabulary,
E experts, N = B*T tokens.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

_TORCH_VERSION = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])


def _is_compiling() -> bool:
    """True inside ``torch.compile`` tracing (``torch.compiler.is_compiling`` exists from torch 2.3)."""
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and hasattr(compiler, "is_compiling") and compiler.is_compiling())

POS_ENCODINGS = ("none", "learned", "sinusoidal", "rope", "alibi")
NORMS = ("layernorm", "rmsnorm", "none")
NORM_PLACEMENTS = ("pre", "post")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu")
ATTN_MASKS = ("causal", "prefix", "bidirectional")
ATTN_IMPLS = ("sdpa", "manual")
IGNORE_INDEX = -100  # the targets value that F.cross_entropy skips (masked positions)


# ----------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class GPTConfig:
    """Every switch of the tiny GPT. Invalid values raise ``ValueError`` naming field, value and rule.

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
    pos_encoding: str = "learned"
    rope_base: float = 10000.0
    norm: str = "layernorm"
    norm_placement: str = "pre"
    norm_eps: float = 1e-5
    activation: str = "gelu"
    attn_mask: str = "causal"
    sliding_window: int | None = None  # None -> full attention; W -> keys with |i - j| < W
    n_experts: int = 0  # 0 -> dense FFN; >= 1 -> mixture-of-experts FFN in every block
    moe_top_k: int = 1  # experts per token (1 = Switch routing)
    moe_aux_loss_coef: float = 0.01  # Switch Transformer uses alpha = 1e-2
    tie_embeddings: bool = True
    attn_impl: str = "sdpa"

    def __post_init__(self) -> None:
        def fail(field: str, rule: str) -> None:
            raise ValueError(f"GPTConfig.{field}={getattr(self, field)!r} {rule}")

        for field in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            if not _is_int(getattr(self, field)) or getattr(self, field) < 1:
                fail(field, "must be a positive int")
        if self.n_kv_head is not None:
            if not _is_int(self.n_kv_head) or self.n_kv_head < 1:
                fail("n_kv_head", "must be None or a positive int")
            if self.n_head % self.n_kv_head != 0:
                fail("n_kv_head", f"must divide n_head={self.n_head}")
        if self.d_model % self.n_head != 0:
            fail("n_head", f"must divide d_model={self.d_model}")
        if self.d_ff is not None and (not _is_int(self.d_ff) or self.d_ff < 1):
            fail("d_ff", "must be None or a positive int")
        if not _is_real(self.dropout) or not 0.0 <= self.dropout < 1.0:
            fail("dropout", "must be a float with 0 <= dropout < 1")
        for field in ("bias", "tie_embeddings"):
            if not isinstance(getattr(self, field), bool):
                fail(field, "must be True or False")
        options = {
            "pos_encoding": POS_ENCODINGS,
            "norm": NORMS,
            "norm_placement": NORM_PLACEMENTS,
            "activation": ACTIVATIONS,
            "attn_mask": ATTN_MASKS,
            "attn_impl": ATTN_IMPLS,
        }
        for field, allowed in options.items():
            if getattr(self, field) not in allowed:
                fail(field, f"is not one of {allowed}")
        if not _is_real(self.rope_base) or self.rope_base <= 0:
            fail("rope_base", "must be a positive number")
        if self.pos_encoding == "rope" and self.head_dim % 2 != 0:
            fail("pos_encoding", f"needs an even head size, got d_model/n_head={self.head_dim}")
        if self.pos_encoding == "sinusoidal" and self.d_model % 2 != 0:
            fail("pos_encoding", f"needs an even d_model, got {self.d_model}")
        if not _is_real(self.norm_eps) or self.norm_eps <= 0:
            fail("norm_eps", "must be a positive number")
        if self.sliding_window is not None and (
            not _is_int(self.sliding_window) or self.sliding_window < 1
        ):
            fail("sliding_window", "must be None or an int >= 1")
        if not _is_int(self.n_experts) or self.n_experts < 0:
            fail("n_experts", "must be an int >= 0 (0 = dense FFN)")
        if not _is_int(self.moe_top_k) or self.moe_top_k < 1:
            fail("moe_top_k", "must be an int >= 1")
        if self.n_experts > 0 and self.moe_top_k > self.n_experts:
            fail("moe_top_k", f"must be <= n_experts={self.n_experts}")
        if not _is_real(self.moe_aux_loss_coef) or self.moe_aux_loss_coef < 0:
            fail("moe_aux_loss_coef", "must be a number >= 0")

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
# Positions and masks: small pure functions
# ----------------------------------------------------------------------------------------------


def sinusoidal_positions(n_pos: int, d_model: int) -> torch.Tensor:
    """The fixed table of Vaswani et al. 2017, §3.5, shape (n_pos, d_model).

    PE[p, 2i] = sin(p / 10000^(2i/d)),  PE[p, 2i+1] = cos(p / 10000^(2i/d)).
    """
    pos = torch.arange(n_pos, dtype=torch.float32)[:, None]  # (n_pos, 1)
    inv_freq = 10000.0 ** (-torch.arange(0, d_model, 2, dtype=torch.float32) / d_model)  # (d/2,)
    angles = pos * inv_freq  # (n_pos, d/2)
    pe = torch.stack([angles.sin(), angles.cos()], dim=-1)  # (n_pos, d/2, 2)
    return pe.flatten(1)  # (n_pos, d) with sin in even and cos in odd columns


def rope_cos_sin(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the RoPE angles m·θ_i, θ_i = base^(-2i/hs) (Su et al. 2021, eq. 15).

    positions: (T,) absolute positions m. Returns two (T, hs/2) float32 tensors.
    """
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim
    )  # (hs/2,)
    angles = positions.to(torch.float32)[:, None] * inv_freq  # (T, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate feature pairs of x by the position angle (Su et al. 2021, §3.4.2).

    x: (B, h, T, hs); cos, sin: (T, hs/2). Dimension i is paired with i + hs/2 (the "rotate half"
    layout of GPT-NeoX and LLaMA), which is the paper's interleaved layout up to a fixed
    permutation of the features. Each pair (a, b) becomes (a cos − b sin, a sin + b cos), so
    ⟨rope(q, m), rope(k, n)⟩ depends only on m − n and norms are preserved.
    """
    half = x.size(-1) // 2
    a, b = x[..., :half], x[..., half:]  # (B, h, T, hs/2) each
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)  # (B, h, T, hs)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Per-head ALiBi slopes (Press et al. 2022, §3), shape (n_head,).

    For n a power of two the slopes are the geometric sequence 2^(-8/n), 2^(-16/n), …, 2^(-8).
    Otherwise, as in the paper's reference code: the slopes for the closest power of two
    m = 2^floor(log2 n), followed by every other slope of the 2m sequence, n − m of them.
    """

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if n_head & (n_head - 1) == 0:
        slopes = power_of_two(n_head)
    else:
        m = 2 ** math.floor(math.log2(n_head))
        slopes = power_of_two(m) + power_of_two(2 * m)[0::2][: n_head - m]
    return torch.tensor(slopes, dtype=torch.float32)


def attention_allowed(
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    attn_mask: str = "causal",
    prefix_len: torch.Tensor | None = None,
    sliding_window: int | None = None,
) -> torch.Tensor:
    """Boolean (B or 1, 1, T, S) tensor: True where query i may attend to key j.

    q_pos: (T,) and k_pos: (S,) absolute positions. The mask kinds:

    - causal: j <= i.
    - prefix: j <= i, or both i and j inside the row's prefix (i, j < prefix_len[b]) — bidirectional
      within the prefix, causal after it (Raffel et al. 2020, §3.2.1). prefix_len: (B,).
    - bidirectional: every j.

    A sliding window W then keeps only |i − j| < W, so a causal query sees itself and the W − 1
    keys before it.
    """
    i = q_pos[:, None]  # (T, 1)
    j = k_pos[None, :]  # (1, S)
    if attn_mask == "causal":
        allowed = (j <= i)[None, None]  # (1, 1, T, S)
    elif attn_mask == "prefix":
        if prefix_len is None:
            raise ValueError("attn_mask='prefix' needs prefix_len")
        p = prefix_len.to(q_pos.device)[:, None, None, None]  # (B, 1, 1, 1)
        allowed = (j <= i)[None, None] | ((i < p) & (j < p))  # (B, 1, T, S)
    elif attn_mask == "bidirectional":
        allowed = torch.ones(1, 1, i.size(0), j.size(1), dtype=torch.bool, device=q_pos.device)
    else:
        raise ValueError(f"attn_mask={attn_mask!r} is not one of {ATTN_MASKS}")
    if sliding_window is not None:
        allowed = allowed & ((i - j).abs() < sliding_window)[None, None]
    return allowed


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
    ) -> torch.Tensor:
        """x: (B, T, C) -> (B, T, C).

        rope: (cos, sin) for the T query positions, or None. attn_bias: additive float
        (B or 1, nh or 1, T, S) or None. is_causal: use SDPA's built-in causal mask instead (only
        with attn_bias None and T == S). kv_cache: write the new keys/values at
        [start_pos, start_pos + T) of layer ``layer_idx`` and attend to all S = start_pos + T keys.
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

        if self.attn_impl == "sdpa":
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
            att = self.attn_dropout(att)
            y = att @ v  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))  # (B, T, C)


class MLP(nn.Module):
    """Position-wise feed-forward network: W₂ · act(W₁ x) (Vaswani et al. 2017, §3.3).

    activation "relu" | "gelu" (exact, erf) | "gelu_tanh" (GPT-2's tanh approximation, "gelu_new") |
    "swiglu": W₂ · (SiLU(W_g x) ⊙ W_u x) (Shazeer 2020, eq. 6). For SwiGLU the gate and up
    projections are fused into ``c_fc`` (output rows [gate | up]), one matmul instead of two.
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


class MoE(nn.Module):
    """Mixture-of-experts feed-forward layer with top-k routing (Shazeer et al. 2017; Fedus et al. 2021).

    For each token x: router probabilities p = softmax(W_r x) over E experts; the top-k experts
    are chosen and their outputs combined with the top-k probabilities renormalised to sum to 1:
    y = Σ_{e ∈ topk} (p_e / Σ_{topk} p) · Expert_e(x)   (k > 1; Shazeer et al. 2017, eq. 3-5).
    For k = 1 the renormalised weight would always be 1 and the router would get no gradient from
    the language-model loss, so k = 1 uses the Switch gate y = p_e · Expert_e(x) (Fedus et al.
    2021, §2.1, eq. 2).

    Switch load-balancing loss (Fedus et al. 2021, eq. 4), stored in ``self.aux_loss`` after each
    forward:  aux = E · Σ_i f_i · P_i, where f_i is the fraction of the N·k (token, slot)
    assignments sent to expert i and P_i the mean router probability of expert i over the N tokens.
    It equals 1 for perfectly uniform routing and E when every token goes to one expert.
    (For k = 1 this is the paper's definition; dividing by N·k keeps "uniform = 1" for k > 1.)

    Dispatch gathers each expert's tokens with one index per expert (a loop over E experts, never
    over tokens), runs the expert on them as one batch and scatter-adds the weighted result.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_experts = config.n_experts
        self.top_k = config.moe_top_k
        self.router = nn.Linear(config.d_model, config.n_experts, bias=False)
        self.experts = nn.ModuleList(MLP(config) for _ in range(config.n_experts))
        self.aux_loss: torch.Tensor | None = None
        self.last_load: torch.Tensor | None = None  # (E,) fraction of assignments per expert

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])  # (N, C)
        N, E, k = x.size(0), self.n_experts, self.top_k
        probs = F.softmax(self.router(x), dim=-1, dtype=torch.float32)  # (N, E)
        top_p, top_i = probs.topk(k, dim=-1)  # (N, k) each
        if k > 1:
            top_p = top_p / top_p.sum(dim=-1, keepdim=True)  # (N, k), rows sum to 1
        weights = top_p.to(x.dtype)  # (N, k)

        out = torch.zeros_like(x)  # (N, C)
        for e, expert in enumerate(self.experts):
            token_idx, slot = torch.where(top_i == e)  # (n_e,) each: which tokens chose e
            if token_idx.numel() == 0:
                continue
            y = expert(x[token_idx]) * weights[token_idx, slot, None]  # (n_e, C)
            out.index_add_(0, token_idx, y)  # (N, C)

        load = torch.bincount(top_i.flatten(), minlength=E).to(probs.dtype) / (N * k)  # (E,) f_i
        importance = probs.mean(dim=0)  # (E,) P_i
        self.aux_loss = E * torch.sum(load * importance)  # scalar; f_i carries no gradient
        self.last_load = load.detach()
        return out.reshape(shape)  # (..., C)


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

    def forward(self, x: torch.Tensor, **attn_kwargs) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.ln_1(x), **attn_kwargs)  # (B, T, C)
            x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        else:
            x = self.ln_1(x + self.attn(x, **attn_kwargs))  # (B, T, C)
            x = self.ln_2(x + self.mlp(x))  # (B, T, C)
        return x


# ----------------------------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------------------------


class KVCache:
    """Preallocated per-layer key/value buffers for incremental decoding (Pope et al. 2022, §2).

    ``k[layer]`` and ``v[layer]`` have shape (B, nkv, max_len, hs). Keys are stored after RoPE, so
    they never need rotating again. ``length`` is the number of positions written so far;
    ``GPT.forward`` advances it. ``reset()`` rewinds to 0 without freeing memory.
    Size: 2 · n_layer · B · nkv · max_len · hs · bytes-per-element (see ``nbytes``).
    A sliding window is enforced by the attention mask; the cache still keeps every position
    (a rolling buffer that stores only the last W is project 09's exercise).
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        n_kv_head: int,
        max_len: int,
        head_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        for name, value in (
            ("n_layer", n_layer), ("batch_size", batch_size), ("n_kv_head", n_kv_head),
            ("max_len", max_len), ("head_dim", head_dim),
        ):
            if not _is_int(value) or value < 1:
                raise ValueError(f"KVCache.{name}={value!r} must be a positive int")
        shape = (batch_size, n_kv_head, max_len, head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.length = 0

    @property
    def n_layer(self) -> int:
        return len(self.k)

    @property
    def batch_size(self) -> int:
        return self.k[0].size(0)

    @property
    def n_kv_head(self) -> int:
        return self.k[0].size(1)

    @property
    def max_len(self) -> int:
        return self.k[0].size(2)

    @property
    def head_dim(self) -> int:
        return self.k[0].size(3)

    def reset(self) -> None:
        """Forget everything written (the buffers are reused)."""
        self.length = 0

    def nbytes(self) -> int:
        """Bytes held by all the buffers."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, start_pos: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, nkv, T, hs) at positions [start_pos, start_pos + T) of ``layer``.

        Returns views of all keys and values up to start_pos + T: (B, nkv, start_pos + T, hs).
        """
        end = start_pos + k.size(2)
        self.k[layer][:, :, start_pos:end] = k
        self.v[layer][:, :, start_pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]


# ----------------------------------------------------------------------------------------------
# Sampling filters
# ----------------------------------------------------------------------------------------------


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row, set the rest to −inf (Fan et al. 2018).

    logits: (…, V) -> (…, V). Ties with the k-th largest value are kept too.
    """
    k = min(k, logits.size(-1))
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (…, 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al. 2020, §3.1): keep the smallest set of most likely tokens
    whose probability mass reaches p — the token that crosses p included — set the rest to −inf.

    A token is kept when the mass of the tokens strictly more likely than it is still < p.
    logits: (…, V) -> (…, V).
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (…, V)
    probs = F.softmax(sorted_logits, dim=-1)  # (…, V)
    mass_before = probs.cumsum(dim=-1) - probs  # (…, V) mass of the more likely tokens
    drop_sorted = mass_before >= p  # (…, V); the first token always has mass_before 0 < p
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def sampling_probs(
    logits: torch.Tensor, temperature: float, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """The distribution ``generate`` samples the next token from: softmax(logits / temperature) after
    the top-k filter, then the top-p filter. temperature = 0 is greedy decoding: a one-hot at the argmax.

    logits: (…, V) -> probabilities (…, V), each row summing to 1.
    """
    if temperature == 0:
        return F.one_hot(logits.argmax(dim=-1), logits.size(-1)).to(logits.dtype)  # (…, V)
    z = logits / temperature
    if top_k is not None:
        z = top_k_filter(z, top_k)
    if top_p is not None:
        z = top_p_filter(z, top_p)
    return F.softmax(z, dim=-1)  # (…, V)


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


class GPT(nn.Module):
    """Decoder-only transformer language model (Radford et al. 2019) with the switches of ``GPTConfig``.

    ``forward`` returns (logits, loss); ``generate`` samples; ``new_kv_cache`` builds a cache.
    Initialisation as GPT-2 (Radford et al. 2019, §2.3): weights N(0, 0.02²), biases 0, and the
    projections that write into the residual stream (``c_proj``) N(0, (0.02/sqrt(2·n_layer))²).
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise ValueError(f"GPT needs a GPTConfig, got {type(config).__name__}")
        self.config = config
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
        # True only inside generate(), which checks the prompt's ids once: every later id is the
        # model's own argmax/sample, so re-checking min/max on every step would only cost time.
        self._ids_checked = False

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

    def configure_optimizer(
        self, weight_decay: float, lr: float, betas: tuple[float, float] = (0.9, 0.95)
    ) -> torch.optim.AdamW:
        """AdamW (Loshchilov & Hutter 2019) with decay on 2-D weights only.

        Matrices (linear weights, embeddings) decay; biases and norm gains (1-D) do not, as in
        GPT-2/nanoGPT. Uses the fused kernel where this PyTorch build has it for the device.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ]
        extra = {}
        if "fused" in inspect.signature(torch.optim.AdamW).parameters:
            device = next(self.parameters()).device.type
            # fused AdamW runs on CUDA since torch 2.0 and on CPU since torch 2.4
            if device == "cuda" or (device == "cpu" and _TORCH_VERSION >= (2, 4)):
                extra["fused"] = True
        return torch.optim.AdamW(groups, lr=lr, betas=betas, **extra)

    # -- KV cache -----------------------------------------------------------------------------

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

    # -- forward ------------------------------------------------------------------------------

    def _check_inputs(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None,
        prefix_len: int | torch.Tensor | None,
        kv_cache: KVCache | None,
        start_pos: int,
    ) -> torch.Tensor | None:
        """Validate forward's arguments; returns prefix_len as a (B,) long tensor or None."""
        c = self.config
        if not isinstance(idx, torch.Tensor):
            raise ValueError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
        if idx.dtype not in (torch.long, torch.int32):
            raise ValueError(f"idx must hold integer token ids (torch.long), got dtype {idx.dtype}")
        if idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError(f"idx must have shape (B, T) with T >= 1, got {tuple(idx.shape)}")
        B, T = idx.shape
        if not _is_compiling() and not self._ids_checked:  # data-dependent: would break a compiled graph
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= c.vocab_size:
                raise ValueError(
                    f"token ids must lie in [0, vocab_size={c.vocab_size}), got min {lo}, max {hi}"
                )
        if targets is not None:
            if not isinstance(targets, torch.Tensor) or targets.shape != idx.shape:
                got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
                raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {got}")
            if targets.dtype not in (torch.long, torch.int32):
                raise ValueError(f"targets must hold integer ids (torch.long), got dtype {targets.dtype}")
        if not _is_int(start_pos) or start_pos < 0:
            raise ValueError(f"start_pos={start_pos!r} must be an int >= 0")
        if start_pos > 0 and kv_cache is None:
            raise ValueError(f"start_pos={start_pos} needs a kv_cache holding the earlier positions")
        if c.pos_encoding in ("learned", "sinusoidal") and start_pos + T > c.block_size:
            raise ValueError(
                f"input needs positions {start_pos}..{start_pos + T - 1} but {c.pos_encoding} positions "
                f"exist only for 0..{c.block_size - 1} (block_size={c.block_size}, T={T}); "
                f"crop the input to its last {c.block_size - start_pos} tokens"
            )
        if kv_cache is not None:
            if c.attn_mask == "bidirectional":
                raise ValueError(
                    "a KV cache needs attention that never looks ahead; attn_mask='bidirectional' "
                    "lets earlier tokens see later ones, so cached keys would go stale"
                )
            expected = (c.n_layer, B, c.kv_heads, c.head_dim)
            got = (kv_cache.n_layer, kv_cache.batch_size, kv_cache.n_kv_head, kv_cache.head_dim)
            if got != expected:
                raise ValueError(
                    f"kv_cache (n_layer, batch, n_kv_head, head_dim)={got} does not match the model "
                    f"and input {expected}; build it with model.new_kv_cache({B})"
                )
            if start_pos > kv_cache.length:
                raise ValueError(
                    f"start_pos={start_pos} is past the cache length {kv_cache.length}: positions "
                    f"{kv_cache.length}..{start_pos - 1} were never written"
                )
            if start_pos + T > kv_cache.max_len:
                raise ValueError(
                    f"start_pos + T = {start_pos + T} exceeds the cache max_len={kv_cache.max_len}"
                )
        if prefix_len is None:
            if c.attn_mask == "prefix":
                raise ValueError("attn_mask='prefix' needs prefix_len (an int or a (B,) tensor)")
            return None
        if c.attn_mask != "prefix":
            raise ValueError(f"prefix_len is only used with attn_mask='prefix', not {c.attn_mask!r}")
        if isinstance(prefix_len, torch.Tensor):
            if prefix_len.dim() != 1 or prefix_len.size(0) != B or prefix_len.is_floating_point():
                raise ValueError(f"prefix_len tensor must be integer with shape ({B},), got {prefix_len}")
            p = prefix_len.to(device=idx.device, dtype=torch.long)
        elif _is_int(prefix_len):
            p = torch.full((B,), prefix_len, dtype=torch.long, device=idx.device)
        else:
            raise ValueError(f"prefix_len must be an int or a (B,) tensor, got {prefix_len!r}")
        if bool((p < 0).any()):
            raise ValueError(f"prefix_len must be >= 0, got {prefix_len}")
        if start_pos > 0 and bool((p > start_pos).any()):
            raise ValueError(
                f"prefix_len={prefix_len} reaches past start_pos={start_pos}: the whole prefix must be "
                "in the first (prefill) call, or the cached prefix keys would not have seen all of it"
            )
        return p

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
        c = self.config
        if start_pos is None:
            start_pos = kv_cache.length if kv_cache is not None else 0
        prefix = self._check_inputs(idx, targets, prefix_len, kv_cache, start_pos)
        B, T = idx.shape
        S = start_pos + T  # number of keys each query may look at (before masking)
        device = idx.device
        q_pos = torch.arange(start_pos, S, device=device)  # (T,) absolute positions

        x = self.transformer.wte(idx)  # (B, T, C)
        if c.pos_encoding == "learned":
            x = x + self.transformer.wpe(q_pos)  # (B, T, C)
        elif c.pos_encoding == "sinusoidal":
            x = x + self.sinusoid[start_pos:S].to(x.dtype)  # (B, T, C)
        x = self.transformer.drop(x)

        rope = rope_cos_sin(q_pos, c.head_dim, c.rope_base) if c.pos_encoding == "rope" else None
        attn_bias, is_causal = self._attention_bias(q_pos, start_pos, prefix, x.dtype)
        for layer_idx, block in enumerate(self.transformer.h):
            x = block(
                x, rope=rope, attn_bias=attn_bias, is_causal=is_causal,
                kv_cache=kv_cache, layer_idx=layer_idx, start_pos=start_pos,
            )  # (B, T, C)
        if kv_cache is not None:
            kv_cache.length = S
        x = self.transformer.ln_f(x)  # (B, T, C)
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
        self, q_pos: torch.Tensor, start_pos: int, prefix: torch.Tensor | None, dtype: torch.dtype
    ) -> tuple[torch.Tensor | None, bool]:
        """The additive attention bias shared by all layers, and whether SDPA's is_causal can replace it.

        Fast path (SDPA, causal, no window, no ALiBi): no bias tensor at all — ``is_causal=True``
        when the queries start at position 0, nothing when a single query comes after the cache.
        Otherwise: bias (B or 1, nh or 1, T, S) = 0 where allowed, −inf where masked, minus
        slope_h · |i − j| under ALiBi (Press et al. 2022, §3; the distance is symmetric so the bias
        also serves prefix and bidirectional attention).
        """
        c = self.config
        T = q_pos.numel()
        simple = c.attn_mask == "causal" and c.sliding_window is None and c.pos_encoding != "alibi"
        if simple and c.attn_impl == "sdpa":
            if start_pos == 0:
                return None, True
            if T == 1:
                return None, False
        k_pos = torch.arange(start_pos + T, device=q_pos.device)  # (S,)
        allowed = attention_allowed(q_pos, k_pos, c.attn_mask, prefix, c.sliding_window)  # (B|1,1,T,S)
        bias = torch.zeros(allowed.shape, device=q_pos.device).masked_fill(~allowed, float("-inf"))
        if c.pos_encoding == "alibi":
            distance = (q_pos[:, None] - k_pos[None, :]).abs().float()  # (T, S)
            bias = bias - self.alibi[None, :, None, None] * distance  # (B|1, nh, T, S)
        return bias.to(dtype), False

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
        if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.size(1) == 0:
            raise ValueError("idx must be a (B, T) tensor of token ids with T >= 1")
        if not _is_int(max_new_tokens) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int >= 0")
        if not _is_real(temperature) or temperature < 0:
            raise ValueError(f"temperature={temperature!r} must be a number >= 0 (0 = greedy)")
        if top_k is not None and (not _is_int(top_k) or top_k < 1):
            raise ValueError(f"top_k={top_k!r} must be None or an int >= 1")
        if top_p is not None and (not _is_real(top_p) or not 0 < top_p <= 1):
            raise ValueError(f"top_p={top_p!r} must be None or a number with 0 < top_p <= 1")
        if use_cache and c.attn_mask == "bidirectional":
            raise ValueError(
                "attn_mask='bidirectional' cannot use a KV cache (earlier tokens see later ones); "
                "pass use_cache=False"
            )
        if prefix_len is not None and (not _is_int(prefix_len) or not 0 <= prefix_len <= idx.size(1)):
            raise ValueError(f"prefix_len={prefix_len!r} must be an int in [0, prompt length {idx.size(1)}]")
        if c.attn_mask == "prefix" and prefix_len is None:
            prefix_len = idx.size(1)  # prefix LM: the prompt is the bidirectional prefix
        if c.attn_mask != "prefix" and prefix_len is not None:
            raise ValueError(f"prefix_len is only used with attn_mask='prefix', not {c.attn_mask!r}")

        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= c.vocab_size:
            raise ValueError(f"token ids must lie in [0, vocab_size={c.vocab_size}), got min {lo}, max {hi}")

        was_training = self.training
        self.eval()
        self._ids_checked = True
        try:
            cache = self.new_kv_cache(idx.size(0)) if use_cache else None
            for _ in range(max_new_tokens):
                L = idx.size(1)
                off = max(0, L - c.block_size)  # tokens cropped from the left
                window = idx[:, off:]  # (B, ≤ block_size)
                p = None if prefix_len is None else max(0, prefix_len - off)
                if cache is None:
                    logits, _ = self(window, prefix_len=p)
                elif off > 0 or cache.length == 0:  # (re-)prefill the whole window
                    cache.reset()
                    logits, _ = self(window, prefix_len=p, kv_cache=cache, start_pos=0)
                else:  # the cache holds positions 0..L-2: feed the newest token only
                    logits, _ = self(window[:, -1:], prefix_len=p, kv_cache=cache, start_pos=L - 1)
                logits = logits[:, -1, :]  # (B, V)
                if temperature == 0:
                    next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
                else:
                    probs = sampling_probs(logits, temperature, top_k, top_p)  # (B, V)
                    next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
                idx = torch.cat([idx, next_id.to(idx.dtype)], dim=1)  # (B, L + 1)
        finally:
            self._ids_checked = False
            self.train(was_training)
        return idx
