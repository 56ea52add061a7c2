"""Positions and attention masks: the small pure functions behind ``GPTConfig.pos_encoding``,
``attn_mask`` and ``sliding_window``.

Sinusoidal positions (Vaswani et al. 2017, §3.5), rotary embeddings (Su et al. 2021, RoFormer),
ALiBi slopes (Press et al. 2022) and the boolean "may query i attend to key j" mask.
"""

from __future__ import annotations

import math

import torch

from shared.model_checks import ATTN_MASKS


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
