"""Move a ``shared.GPT`` to and from Hugging Face ``transformers``.

Two target architectures, chosen by the config's switches:

* **GPT-2** (``GPT2LMHeadModel``): learned positions, LayerNorm, pre-LN, GELU (exact or tanh) or
  ReLU, plain multi-head attention.
* **Llama** (``LlamaForCausalLM``): RoPE, RMSNorm, pre-LN, SwiGLU, any number of KV heads (GQA).

A config neither architecture can express (ALiBi, a sliding window, a mixture of experts, post-LN,
a prefix mask, ...) is refused with a ``ValueError`` that names every offending feature. Weights
are copied, never re-initialised, so logits agree to float32 round-off (tested to 1e-5 both ways).

    hf = to_hf(model)                      # a transformers model holding the same weights
    save_hf(model, "out/")                 # config.json + model.safetensors
    model2 = load_hf("out/")               # back to shared.GPT (local files only)

**Context length: the one behaviour that is not copied.** ``GPT.generate`` never shows the model more
than ``block_size`` tokens: once the sequence is longer it crops to the last ``block_size`` and
restarts their positions at 0 (nanoGPT's sliding window). ``transformers`` has no such switch. The
export declares ``n_positions`` / ``max_position_embeddings = block_size``, and past it:

* **GPT-2** cannot go on at all (its learned position table has ``block_size`` rows; plain
  ``transformers`` fails with ``IndexError: index out of range in self``);
* **Llama** (RoPE) goes on attending to the *whole* sequence, positions beyond anything the model
  was trained on, so its greedy tokens part from ``GPT.generate``'s after ``block_size`` tokens in total.

Up to ``block_size`` tokens in total (prompt + new) both give the same tokens (tested). The model
that :func:`to_hf` returns guards that limit: past it, the GPT-2 one raises a ``ValueError`` that
says so, and the Llama one warns (``UserWarning``, once per model) and carries on. A checkpoint
written by :func:`save_hf` and reloaded with ``from_pretrained`` is a plain ``transformers`` model
without that guard (``transformers`` itself only logs a "friendly reminder"); crop long inputs to
the last ``block_size`` tokens yourself if you want ``GPT.generate``'s behaviour.

``transformers`` is imported lazily: it is only needed for this module (``pip install transformers``).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

from shared.model import GPT, GPTConfig

__all__ = ["hf_architecture", "to_hf", "from_hf", "save_hf", "load_hf", "ContextGuard"]

_GPT2_ACTIVATIONS = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
_GPT2_ACTIVATIONS_BACK = {
    "gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"
}


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - transformers is in the dev extra
        raise ImportError(
            "shared.hf needs the `transformers` package: pip install transformers "
            "(it is part of this repository's dev extra: pip install -e '.[dev]')"
        ) from err
    return transformers


def _common_problems(config: GPTConfig) -> list[str]:
    problems = []
    if config.attn_mask != "causal":
        problems.append(f"attn_mask={config.attn_mask!r} (only 'causal')")
    if config.sliding_window is not None:
        problems.append(f"sliding_window={config.sliding_window} (only full attention)")
    if config.n_experts > 0:
        problems.append(f"n_experts={config.n_experts} (mixture of experts; only a dense FFN)")
    if config.norm_placement != "pre":
        problems.append(f"norm_placement={config.norm_placement!r} (only 'pre')")
    return problems


def _gpt2_problems(config: GPTConfig) -> list[str]:
    problems = _common_problems(config)
    if config.pos_encoding != "learned":
        problems.append(f"pos_encoding={config.pos_encoding!r} (GPT-2 has only 'learned')")
    if config.norm != "layernorm":
        problems.append(f"norm={config.norm!r} (GPT-2 has only 'layernorm')")
    if config.activation not in _GPT2_ACTIVATIONS:
        problems.append(f"activation={config.activation!r} (GPT-2 allows {sorted(_GPT2_ACTIVATIONS)})")
    if config.kv_heads != config.n_head:
        problems.append(f"n_kv_head={config.n_kv_head} (GPT-2 has no grouped-query attention)")
    return problems


def _llama_problems(config: GPTConfig) -> list[str]:
    problems = _common_problems(config)
    if config.pos_encoding != "rope":
        problems.append(f"pos_encoding={config.pos_encoding!r} (Llama has only 'rope')")
    if config.norm != "rmsnorm":
        problems.append(f"norm={config.norm!r} (Llama has only 'rmsnorm')")
    if config.activation != "swiglu":
        problems.append(f"activation={config.activation!r} (Llama has only 'swiglu')")
    return problems


def hf_architecture(config: GPTConfig) -> str:
    """"gpt2" or "llama": the transformers architecture that can hold this config exactly.

    Raises ValueError naming the features that neither can express.
    """
    if not isinstance(config, GPTConfig):
        raise ValueError(f"hf_architecture needs a GPTConfig, got {type(config).__name__}")
    gpt2, llama = _gpt2_problems(config), _llama_problems(config)
    if not gpt2:
        return "gpt2"
    if not llama:
        return "llama"
    # report against the architecture the config is closer to
    closest, name = (gpt2, "GPT-2") if len(gpt2) <= len(llama) else (llama, "Llama")
    raise ValueError(
        f"this GPTConfig cannot be exported to transformers: as {name} it has " + "; ".join(closest)
        + ". Exportable: GPT-2 style (learned, layernorm, pre, gelu/gelu_tanh/relu, MHA) or "
        "Llama style (rope, rmsnorm, pre, swiglu, any n_kv_head), causal, no sliding window, no MoE."
    )


# ----------------------------------------------------------------------------------------------
# GPT -> transformers
# ----------------------------------------------------------------------------------------------


def _gpt2_config(config: GPTConfig) -> Any:
    tf = _transformers()
    return tf.GPT2Config(
        vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.d_model,
        n_layer=config.n_layer, n_head=config.n_head, n_inner=config.d_ff,
        activation_function=_GPT2_ACTIVATIONS[config.activation], layer_norm_epsilon=config.norm_eps,
        resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        tie_word_embeddings=config.tie_embeddings, bos_token_id=None, eos_token_id=None,
    )


def _llama_config(config: GPTConfig) -> Any:
    tf = _transformers()
    return tf.LlamaConfig(
        vocab_size=config.vocab_size, max_position_embeddings=config.block_size,
        hidden_size=config.d_model, intermediate_size=config.ff_dim, num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head, num_key_value_heads=config.kv_heads, head_dim=config.head_dim,
        hidden_act="silu", rms_norm_eps=config.norm_eps, rope_theta=config.rope_base,
        attention_bias=config.bias, mlp_bias=config.bias, attention_dropout=config.dropout,
        tie_word_embeddings=config.tie_embeddings, bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def _gpt2_state(model: GPT) -> dict[str, torch.Tensor]:
    """Our state dict in GPT2LMHeadModel's names; HF's Conv1D stores (in, out), so Linear weights are
    transposed."""
    c = model.config
    sd = {}
    conv1d = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    for name, t in model.state_dict().items():
        if name == "lm_head.weight" and c.tie_embeddings:
            continue
        sd[name] = t.t() if name.endswith(tuple(f"{m}.weight" for m in conv1d)) else t
    # GPT-2 always has biases: a bias-free model exports exact zeros
    for i in range(c.n_layer):
        p = f"transformer.h.{i}."
        for m, width in (("attn.c_attn", (c.n_head + 2 * c.kv_heads) * c.head_dim),
                         ("attn.c_proj", c.d_model), ("mlp.c_fc", c.ff_dim), ("mlp.c_proj", c.d_model),
                         ("ln_1", c.d_model), ("ln_2", c.d_model)):
            sd.setdefault(p + m + ".bias", torch.zeros(width))
    sd.setdefault("transformer.ln_f.bias", torch.zeros(c.d_model))
    return sd


def _llama_state(model: GPT) -> dict[str, torch.Tensor]:
    c = model.config
    nh, nkv, hs, d_ff = c.n_head, c.kv_heads, c.head_dim, c.ff_dim
    src = model.state_dict()
    sd = {"model.embed_tokens.weight": src["transformer.wte.weight"],
          "model.norm.weight": src["transformer.ln_f.weight"]}
    if not c.tie_embeddings:
        sd["lm_head.weight"] = src["lm_head.weight"]
    for i in range(c.n_layer):
        p, q = f"transformer.h.{i}.", f"model.layers.{i}."
        sd[q + "input_layernorm.weight"] = src[p + "ln_1.weight"]
        sd[q + "post_attention_layernorm.weight"] = src[p + "ln_2.weight"]
        for kind in ("weight", "bias") if c.bias else ("weight",):
            wq, wk, wv = src[p + f"attn.c_attn.{kind}"].split([nh * hs, nkv * hs, nkv * hs], dim=0)
            sd[q + f"self_attn.q_proj.{kind}"] = wq
            sd[q + f"self_attn.k_proj.{kind}"] = wk
            sd[q + f"self_attn.v_proj.{kind}"] = wv
            sd[q + f"self_attn.o_proj.{kind}"] = src[p + f"attn.c_proj.{kind}"]
            gate, up = src[p + f"mlp.c_fc.{kind}"].split([d_ff, d_ff], dim=0)  # rows [gate | up]
            sd[q + f"mlp.gate_proj.{kind}"] = gate
            sd[q + f"mlp.up_proj.{kind}"] = up
            sd[q + f"mlp.down_proj.{kind}"] = src[p + f"mlp.c_proj.{kind}"]
    return sd


def _load_exact(target: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Copy every tensor into ``target``; any missing or unexpected name is a bug, not a warning."""
    expected = {k for k in target.state_dict() if not k.endswith(".attn.bias") and "rotary_emb" not in k
                and not k.endswith(".attn.masked_bias")}
    cfg = target.config
    tie = getattr(cfg, "tie_word_embeddings", getattr(cfg, "tie_embeddings", False))
    tied = {"lm_head.weight"} if tie else set()
    missing = expected - set(state) - tied
    unexpected = set(state) - set(target.state_dict())
    if missing or unexpected:
        raise ValueError(f"{what}: weight names do not line up; missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    with torch.no_grad():
        own = target.state_dict()
        for name, t in state.items():
            if own[name].shape != t.shape:
                raise ValueError(
                    f"{what}: {name} has shape {tuple(t.shape)}, expected {tuple(own[name].shape)}"
                )
            own[name].copy_(t)


class ContextGuard:
    """Forward pre-hook that :func:`to_hf` puts on the model it returns: the context stops at ``block_size``.

    ``GPT.generate`` crops the sequence to its last ``block_size`` tokens; a ``transformers`` model does
    not (see the module docstring). Once a forward pass would use position ``block_size`` or later, a
    GPT-2 export raises a ``ValueError`` (it has no position there; ``transformers`` alone raises an
    ``IndexError``) and a Llama export warns once and carries on over the whole sequence. Up to
    ``block_size`` tokens it costs one comparison per forward pass. Remove it with
    ``hf.hardway_context_guard.remove()`` (a ``torch.utils.hooks.RemovableHandle``).
    """

    def __init__(self, block_size: int, arch: str) -> None:
        self.block_size, self.arch, self.warned = block_size, arch, False

    @staticmethod
    def positions_used(args: tuple, kwargs: dict) -> int | None:
        """One past the last position this forward pass uses, or None if it cannot tell."""
        for name in ("position_ids", "cache_position"):
            pos = kwargs.get(name)
            if isinstance(pos, torch.Tensor) and pos.numel():
                return int(pos.max()) + 1
        x = kwargs.get("input_ids", args[0] if args else None)
        if x is None:
            x = kwargs.get("inputs_embeds")
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            return None
        past = kwargs.get("past_key_values", kwargs.get("cache"))
        try:
            done = int(past.get_seq_length()) if past is not None else 0
        except (AttributeError, TypeError):
            return None
        return done + x.size(1)

    def __call__(self, module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
        end = self.positions_used(args, kwargs)
        if end is None or end <= self.block_size:
            return
        if self.arch == "gpt2":
            raise ValueError(
                f"this GPT2LMHeadModel (exported by shared.hf.to_hf) has {self.block_size} learned positions "
                f"(block_size) and was asked for position {end - 1}. shared.GPT.generate would crop the "
                f"sequence to its last {self.block_size} tokens; transformers cannot. Keep prompt + new "
                f"tokens <= {self.block_size}, or crop the input to its last {self.block_size} tokens "
                "yourself."
            )
        if not self.warned:
            self.warned = True
            warnings.warn(
                f"this LlamaForCausalLM (exported by shared.hf.to_hf) now sees {end} tokens, more than "
                f"block_size = max_position_embeddings = {self.block_size}: it attends to the whole "
                f"sequence, while shared.GPT.generate crops to the last {self.block_size} tokens, so from "
                "here on its logits, and soon its tokens, differ from shared.GPT's (at positions the model "
                "was never trained on).",
                UserWarning, stacklevel=2,
            )


def to_hf(model: GPT) -> Any:
    """A transformers ``GPT2LMHeadModel`` or ``LlamaForCausalLM`` holding ``model``'s weights (eval mode).

    Same logits, and the same greedy tokens as ``model.generate`` up to ``block_size`` tokens in total
    (prompt + new). Past that they differ: ``GPT.generate`` crops to the last ``block_size`` tokens,
    while the GPT-2 export has no position beyond ``block_size`` and the Llama export attends to the
    whole sequence. The returned model carries a :class:`ContextGuard` that raises (GPT-2) or warns
    once (Llama) when that happens; ``hf.hardway_context_guard`` is its removable handle.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"to_hf needs a shared.model.GPT, got {type(model).__name__}")
    tf = _transformers()
    arch = hf_architecture(model.config)
    if arch == "gpt2":
        hf = tf.GPT2LMHeadModel(_gpt2_config(model.config))
        _load_exact(hf, _gpt2_state(model), "GPT -> GPT2LMHeadModel")
    else:
        hf = tf.LlamaForCausalLM(_llama_config(model.config))
        _load_exact(hf, _llama_state(model), "GPT -> LlamaForCausalLM")
    if model.config.tie_embeddings:
        hf.tie_weights()
    hf.hardway_context_guard = hf.register_forward_pre_hook(
        ContextGuard(model.config.block_size, arch), with_kwargs=True)
    return hf.to(next(model.parameters()).device).eval()


# ----------------------------------------------------------------------------------------------
# transformers -> GPT
# ----------------------------------------------------------------------------------------------


def _rope_theta(cfg: Any) -> float:
    params = getattr(cfg, "rope_parameters", None)  # transformers >= 5
    if params is None:  # transformers 4.x: rope_theta plus an optional rope_scaling dict
        params = dict(getattr(cfg, "rope_scaling", None) or {}, rope_theta=cfg.rope_theta)
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type != "default":
        raise ValueError(
            f"Llama rope_type={rope_type!r} (RoPE scaling) has no GPTConfig switch; only 'default'"
        )
    return float(params["rope_theta"])


def from_hf(hf: Any) -> GPT:
    """A ``shared.GPT`` (eval mode) holding the weights of a ``GPT2LMHeadModel`` or ``LlamaForCausalLM``."""
    tf = _transformers()
    if isinstance(hf, tf.GPT2LMHeadModel):
        cfg = hf.config
        if cfg.activation_function not in _GPT2_ACTIVATIONS_BACK:
            raise ValueError(f"GPT-2 activation_function={cfg.activation_function!r} has no GPTConfig "
                             f"switch; allowed {sorted(_GPT2_ACTIVATIONS_BACK)}")
        config = GPTConfig(
            vocab_size=cfg.vocab_size, block_size=cfg.n_positions, n_layer=cfg.n_layer, n_head=cfg.n_head,
            d_model=cfg.n_embd, d_ff=cfg.n_inner, dropout=cfg.resid_pdrop,
            bias=True, pos_encoding="learned", norm="layernorm", norm_placement="pre",
            norm_eps=cfg.layer_norm_epsilon, activation=_GPT2_ACTIVATIONS_BACK[cfg.activation_function],
            tie_embeddings=bool(cfg.tie_word_embeddings),
        )
        model = GPT(config)
        conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
        state = {k: (v.t() if k.endswith(conv1d) else v) for k, v in hf.state_dict().items()
                 if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        if config.tie_embeddings:
            state.pop("lm_head.weight", None)
        _load_exact(model, state, "GPT2LMHeadModel -> GPT")
    elif isinstance(hf, tf.LlamaForCausalLM):
        cfg = hf.config
        if cfg.hidden_act != "silu":
            raise ValueError(
                f"Llama hidden_act={cfg.hidden_act!r}: only 'silu' (SwiGLU) has a GPTConfig switch"
            )
        if bool(cfg.attention_bias) != bool(getattr(cfg, "mlp_bias", False)):
            raise ValueError("Llama attention_bias and mlp_bias differ; GPTConfig.bias sets both")
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        if head_dim * cfg.num_attention_heads != cfg.hidden_size:
            raise ValueError(f"Llama head_dim={head_dim} x heads={cfg.num_attention_heads} != hidden_size="
                             f"{cfg.hidden_size}; GPTConfig needs head_dim = d_model / n_head")
        config = GPTConfig(
            vocab_size=cfg.vocab_size, block_size=cfg.max_position_embeddings, n_layer=cfg.num_hidden_layers,
            n_head=cfg.num_attention_heads, n_kv_head=cfg.num_key_value_heads, d_model=cfg.hidden_size,
            d_ff=cfg.intermediate_size, dropout=float(cfg.attention_dropout), bias=bool(cfg.attention_bias),
            pos_encoding="rope", rope_base=_rope_theta(cfg), norm="rmsnorm", norm_placement="pre",
            norm_eps=cfg.rms_norm_eps, activation="swiglu", tie_embeddings=bool(cfg.tie_word_embeddings),
        )
        model = GPT(config)
        src = hf.state_dict()
        state = {"transformer.wte.weight": src["model.embed_tokens.weight"],
                 "transformer.ln_f.weight": src["model.norm.weight"]}
        if not config.tie_embeddings:
            state["lm_head.weight"] = src["lm_head.weight"]
        for i in range(config.n_layer):
            p, q = f"transformer.h.{i}.", f"model.layers.{i}."
            state[p + "ln_1.weight"] = src[q + "input_layernorm.weight"]
            state[p + "ln_2.weight"] = src[q + "post_attention_layernorm.weight"]
            for kind in ("weight", "bias") if config.bias else ("weight",):
                state[p + f"attn.c_attn.{kind}"] = torch.cat(
                    [src[q + f"self_attn.{m}_proj.{kind}"] for m in ("q", "k", "v")], dim=0)
                state[p + f"attn.c_proj.{kind}"] = src[q + f"self_attn.o_proj.{kind}"]
                state[p + f"mlp.c_fc.{kind}"] = torch.cat(
                    [src[q + f"mlp.{m}_proj.{kind}"] for m in ("gate", "up")], dim=0)
                state[p + f"mlp.c_proj.{kind}"] = src[q + f"mlp.down_proj.{kind}"]
        _load_exact(model, state, "LlamaForCausalLM -> GPT")
    else:
        raise ValueError(f"from_hf supports GPT2LMHeadModel and LlamaForCausalLM, got {type(hf).__name__}")
    return model.to(next(hf.parameters()).device).eval()


# ----------------------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------------------


def save_hf(model: GPT, directory: str | os.PathLike) -> Path:
    """Write ``model`` as a transformers checkpoint (config.json + model.safetensors) into ``directory``.

    The checkpoint declares ``block_size`` as its maximum length but, reloaded by ``transformers``, does
    not crop to it as ``GPT.generate`` does (see the module docstring); :func:`load_hf` gives the cropping
    ``shared.GPT`` back.
    """
    directory = Path(directory)
    to_hf(model).save_pretrained(directory, safe_serialization=True)
    if not (directory / "model.safetensors").is_file():
        raise OSError(f"save_hf: {directory / 'model.safetensors'} was not written")
    return directory


def load_hf(directory: str | os.PathLike) -> GPT:
    """Read a transformers checkpoint directory (local files only, safetensors) back into a ``shared.GPT``."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(
            f"load_hf: {directory} has no config.json (expected a save_pretrained directory)"
        )
    tf = _transformers()
    hf = tf.AutoModelForCausalLM.from_pretrained(directory, local_files_only=True, use_safetensors=True)
    return from_hf(hf)
