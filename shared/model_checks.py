"""Argument validation for ``shared.model``: the config, forward's inputs, generate's arguments and
a custom attention mask.

Every check raises ``ValueError`` naming the field, the value and the rule, so a wrong setting
fails where it is made instead of as a shape error deep inside a layer. The model calls these
functions; reading the model does not require reading them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from shared.compat import is_compiling
from shared.utils import is_int, is_real

if TYPE_CHECKING:
    from shared.kv_cache import KVCache
    from shared.model import GPTConfig

# The values each switch of GPTConfig accepts.
POS_ENCODINGS = ("none", "learned", "sinusoidal", "rope", "alibi")
NORMS = ("layernorm", "rmsnorm", "none")
NORM_PLACEMENTS = ("pre", "post")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "swiglu")
ATTN_MASKS = ("causal", "prefix", "bidirectional")
ATTN_IMPLS = ("sdpa", "manual")


# ----------------------------------------------------------------------------------------------
# GPTConfig
# ----------------------------------------------------------------------------------------------


def check_config(c: GPTConfig) -> None:
    """Raise ``ValueError("GPTConfig.<field>=<value> <rule>")`` for the first invalid field of c."""

    def fail(field: str, rule: str) -> None:
        raise ValueError(f"GPTConfig.{field}={getattr(c, field)!r} {rule}")

    for field in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
        if not is_int(getattr(c, field)) or getattr(c, field) < 1:
            fail(field, "must be a positive int")
    if c.n_kv_head is not None:
        if not is_int(c.n_kv_head) or c.n_kv_head < 1:
            fail("n_kv_head", "must be None or a positive int")
        if c.n_head % c.n_kv_head != 0:
            fail("n_kv_head", f"must divide n_head={c.n_head}")
    if c.d_model % c.n_head != 0:
        fail("n_head", f"must divide d_model={c.d_model}")
    if c.d_ff is not None and (not is_int(c.d_ff) or c.d_ff < 1):
        fail("d_ff", "must be None or a positive int")
    if not is_real(c.dropout) or not 0.0 <= c.dropout < 1.0:
        fail("dropout", "must be a float with 0 <= dropout < 1")
    for field in ("bias", "tie_embeddings"):
        if not isinstance(getattr(c, field), bool):
            fail(field, "must be True or False")
    _check_switches(c, fail)
    _check_moe(c, fail)


def _check_switches(c: GPTConfig, fail) -> None:
    """The string switches and the settings that depend on them."""
    options = {
        "pos_encoding": POS_ENCODINGS,
        "norm": NORMS,
        "norm_placement": NORM_PLACEMENTS,
        "activation": ACTIVATIONS,
        "attn_mask": ATTN_MASKS,
        "attn_impl": ATTN_IMPLS,
    }
    for field, allowed in options.items():
        if getattr(c, field) not in allowed:
            fail(field, f"is not one of {allowed}")
    if not is_real(c.rope_base) or c.rope_base <= 0:
        fail("rope_base", "must be a positive number")
    if c.pos_encoding == "rope" and c.head_dim % 2 != 0:
        fail("pos_encoding", f"needs an even head size, got d_model/n_head={c.head_dim}")
    if c.pos_encoding == "sinusoidal" and c.d_model % 2 != 0:
        fail("pos_encoding", f"needs an even d_model, got {c.d_model}")
    if not is_real(c.norm_eps) or c.norm_eps <= 0:
        fail("norm_eps", "must be a positive number")
    if c.sliding_window is not None and (not is_int(c.sliding_window) or c.sliding_window < 1):
        fail("sliding_window", "must be None or an int >= 1")


def _check_moe(c: GPTConfig, fail) -> None:
    if not is_int(c.n_experts) or c.n_experts < 0:
        fail("n_experts", "must be an int >= 0 (0 = dense FFN)")
    if not is_int(c.moe_top_k) or c.moe_top_k < 1:
        fail("moe_top_k", "must be an int >= 1")
    if c.n_experts > 0 and c.moe_top_k > c.n_experts:
        fail("moe_top_k", f"must be <= n_experts={c.n_experts}")
    if not is_real(c.moe_aux_loss_coef) or c.moe_aux_loss_coef < 0:
        fail("moe_aux_loss_coef", "must be a number >= 0")


# ----------------------------------------------------------------------------------------------
# GPT.forward
# ----------------------------------------------------------------------------------------------


def check_token_ids(c: GPTConfig, idx: torch.Tensor) -> None:
    """Every id in idx lies in [0, vocab_size) (skipped inside torch.compile: it is data-dependent)."""
    if is_compiling():
        return
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= c.vocab_size:
        raise ValueError(f"token ids must lie in [0, vocab_size={c.vocab_size}), got min {lo}, max {hi}")


def check_forward_inputs(
    c: GPTConfig,
    idx: torch.Tensor,
    targets: torch.Tensor | None,
    prefix_len: int | torch.Tensor | None,
    kv_cache: KVCache | None,
    start_pos: int,
    *,
    check_ids: bool = True,
) -> torch.Tensor | None:
    """Validate ``GPT.forward``'s arguments; returns prefix_len as a (B,) long tensor or None.

    check_ids=False skips the min/max scan of the token ids: ``generate`` checks the prompt once,
    and every later id is the model's own argmax or sample.
    """
    if not isinstance(idx, torch.Tensor):
        raise ValueError(f"idx must be a torch.Tensor of token ids, got {type(idx).__name__}")
    if idx.dtype not in (torch.long, torch.int32):
        raise ValueError(f"idx must hold integer token ids (torch.long), got dtype {idx.dtype}")
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must have shape (B, T) with T >= 1, got {tuple(idx.shape)}")
    if check_ids:
        check_token_ids(c, idx)
    if targets is not None:
        if not isinstance(targets, torch.Tensor) or targets.shape != idx.shape:
            got = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets).__name__
            raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {got}")
        if targets.dtype not in (torch.long, torch.int32):
            raise ValueError(f"targets must hold integer ids (torch.long), got dtype {targets.dtype}")
    _check_positions(c, idx.size(0), idx.size(1), kv_cache, start_pos)
    return _prefix_tensor(c, prefix_len, idx, start_pos)


def _check_positions(c: GPTConfig, B: int, T: int, kv_cache: KVCache | None, start_pos: int) -> None:
    """start_pos, the position table's length and the KV cache fit the T new positions."""
    if not is_int(start_pos) or start_pos < 0:
        raise ValueError(f"start_pos={start_pos!r} must be an int >= 0")
    if start_pos > 0 and kv_cache is None:
        raise ValueError(f"start_pos={start_pos} needs a kv_cache holding the earlier positions")
    if c.pos_encoding in ("learned", "sinusoidal") and start_pos + T > c.block_size:
        raise ValueError(
            f"input needs positions {start_pos}..{start_pos + T - 1} but {c.pos_encoding} positions "
            f"exist only for 0..{c.block_size - 1} (block_size={c.block_size}, T={T}); "
            f"crop the input to its last {c.block_size - start_pos} tokens"
        )
    if kv_cache is None:
        return
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
        raise ValueError(f"start_pos + T = {start_pos + T} exceeds the cache max_len={kv_cache.max_len}")


def _prefix_tensor(
    c: GPTConfig, prefix_len: int | torch.Tensor | None, idx: torch.Tensor, start_pos: int
) -> torch.Tensor | None:
    """prefix_len (int or (B,) tensor, attn_mask="prefix" only) as a (B,) long tensor, or None."""
    B = idx.size(0)
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
    elif is_int(prefix_len):
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


def check_mask(allowed: object, B: int, T: int, S: int) -> torch.Tensor:
    """Validate what a ``mask_fn`` returned: a bool tensor of shape (T, S) or (B or 1, 1, T, S)."""
    shape = tuple(allowed.shape) if isinstance(allowed, torch.Tensor) else None
    ok_shape = shape == (T, S) or (shape is not None and len(shape) == 4 and shape[0] in (1, B)
                                   and shape[1] == 1 and shape[2:] == (T, S))
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool or not ok_shape:
        got = f"{allowed.dtype} {shape}" if isinstance(allowed, torch.Tensor) else type(allowed).__name__
        raise ValueError(
            f"mask_fn(q_pos, k_pos) must return a torch.bool tensor of shape (T, S)=({T}, {S}) or "
            f"(B or 1, 1, T, S) with B={B}, True = may attend; got {got}"
        )
    return allowed


# ----------------------------------------------------------------------------------------------
# GPT.generate
# ----------------------------------------------------------------------------------------------


def check_generate_args(
    c: GPTConfig,
    idx: torch.Tensor,
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    use_cache: bool,
    prefix_len: int | None,
) -> int | None:
    """Validate ``GPT.generate``'s arguments, the prompt's ids included; returns the prefix length
    to use (prefix LM: the whole prompt by default; None for the other masks)."""
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError("idx must be a (B, T) tensor of token ids with T >= 1")
    if not is_int(max_new_tokens) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens!r} must be an int >= 0")
    if not is_real(temperature) or temperature < 0:
        raise ValueError(f"temperature={temperature!r} must be a number >= 0 (0 = greedy)")
    if top_k is not None and (not is_int(top_k) or top_k < 1):
        raise ValueError(f"top_k={top_k!r} must be None or an int >= 1")
    if top_p is not None and (not is_real(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"top_p={top_p!r} must be None or a number with 0 < top_p <= 1")
    if use_cache and c.attn_mask == "bidirectional":
        raise ValueError(
            "attn_mask='bidirectional' cannot use a KV cache (earlier tokens see later ones); "
            "pass use_cache=False"
        )
    if prefix_len is not None and (not is_int(prefix_len) or not 0 <= prefix_len <= idx.size(1)):
        raise ValueError(f"prefix_len={prefix_len!r} must be an int in [0, prompt length {idx.size(1)}]")
    if c.attn_mask == "prefix" and prefix_len is None:
        prefix_len = idx.size(1)  # prefix LM: the prompt is the bidirectional prefix
    if c.attn_mask != "prefix" and prefix_len is not None:
        raise ValueError(f"prefix_len is only used with attn_mask='prefix', not {c.attn_mask!r}")
    lo, hi = int(idx.min()), int(idx.max())
    if lo < 0 or hi >= c.vocab_size:
        raise ValueError(f"token ids must lie in [0, vocab_size={c.vocab_size}), got min {lo}, max {hi}")
    return prefix_len
