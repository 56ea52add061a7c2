"""Tests for shared/model.py: config validation, every switch, masks, KV cache, generation, HF parity."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from shared.kv_cache import KVCache
from shared.model import GPT, MLP, Block, GPTConfig, LayerNorm, RMSNorm
from shared.model_checks import ACTIVATIONS, NORM_PLACEMENTS, NORMS, POS_ENCODINGS
from shared.moe import MoE
from shared.positions import alibi_slopes, apply_rope, attention_allowed, rope_cos_sin, sinusoidal_positions
from shared.sampling import sampling_probs, top_k_filter, top_p_filter
from shared.train import TrainConfig, make_optimizer

V = 23  # vocabulary of the tiny test models


pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py


def tiny(**overrides) -> GPTConfig:
    """A small config (2 layers, 4 heads, d_model 32, context 16) with overrides."""
    kw = dict(vocab_size=V, block_size=16, n_layer=2, n_head=4, d_model=32)
    kw.update(overrides)
    return GPTConfig(**kw)


def model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny(**overrides)).eval()


def tokens(B: int = 2, T: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def perturb_norms(m: torch.nn.Module, seed: int = 3) -> torch.nn.Module:
    """Move 1-D parameters (norm gains and biases, which start at exactly 1 and 0) off their init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn(p.shape, generator=g))
    return m


# ----------------------------------------------------------------------------------------------
# GPTConfig validation
# ----------------------------------------------------------------------------------------------

BAD_CONFIGS = [
    ({"vocab_size": 0}, "vocab_size", "positive int"),
    ({"block_size": -4}, "block_size", "positive int"),
    ({"n_layer": 0}, "n_layer", "positive int"),
    ({"n_layer": 2.0}, "n_layer", "positive int"),
    ({"n_head": True}, "n_head", "positive int"),
    ({"d_model": 0}, "d_model", "positive int"),
    ({"n_head": 3}, "n_head", "must divide d_model=32"),
    ({"n_kv_head": 0}, "n_kv_head", "positive int"),
    ({"n_kv_head": 3}, "n_kv_head", "must divide n_head=4"),
    ({"d_ff": 0}, "d_ff", "positive int"),
    ({"dropout": -0.1}, "dropout", "0 <= dropout < 1"),
    ({"dropout": 1.0}, "dropout", "0 <= dropout < 1"),
    ({"bias": "yes"}, "bias", "True or False"),
    ({"tie_embeddings": None}, "tie_embeddings", "True or False"),
    ({"pos_encoding": "xpos"}, "pos_encoding", "'rope'"),
    ({"rope_base": 0.0}, "rope_base", "positive"),
    ({"rope_base": float("nan")}, "rope_base", "positive"),
    ({"pos_encoding": "rope", "d_model": 12, "n_head": 4}, "pos_encoding", "even head size"),
    ({"pos_encoding": "sinusoidal", "d_model": 9, "n_head": 3}, "pos_encoding", "even d_model"),
    ({"norm": "batchnorm"}, "norm", "'rmsnorm'"),
    ({"norm_placement": "sandwich"}, "norm_placement", "'pre'"),
    ({"norm_eps": 0.0}, "norm_eps", "positive"),
    ({"activation": "tanh"}, "activation", "'swiglu'"),
    ({"attn_mask": "random"}, "attn_mask", "'prefix'"),
    ({"attn_impl": "flash"}, "attn_impl", "'manual'"),
    ({"sliding_window": 0}, "sliding_window", ">= 1"),
    ({"sliding_window": 2.5}, "sliding_window", ">= 1"),
    ({"n_experts": -1}, "n_experts", ">= 0"),
    ({"moe_top_k": 0}, "moe_top_k", ">= 1"),
    ({"n_experts": 2, "moe_top_k": 3}, "moe_top_k", "<= n_experts=2"),
    ({"moe_aux_loss_coef": -0.5}, "moe_aux_loss_coef", ">= 0"),
]


@pytest.mark.parametrize(
    ("overrides", "field", "rule"), BAD_CONFIGS, ids=[f"{b[1]}-{i}" for i, b in enumerate(BAD_CONFIGS)]
)
def test_config_rejects_bad_value_naming_field_value_and_rule(overrides, field, rule):
    with pytest.raises(ValueError) as err:
        tiny(**overrides)
    msg = str(err.value)
    assert msg.startswith(f"GPTConfig.{field}="), msg
    assert repr(overrides[field]) in msg, msg
    assert rule in msg, msg


def test_config_defaults_resolve_kv_heads_and_ffn_width_lazily():
    cfg = tiny()
    assert cfg.n_kv_head is None and cfg.kv_heads == cfg.n_head
    assert cfg.d_ff is None and cfg.ff_dim == 4 * 32
    assert GPTConfig(d_model=128, activation="swiglu").ff_dim == 344  # 8·ceil(341/8)
    wider = dataclasses.replace(cfg, d_model=64, n_head=8)
    assert wider.ff_dim == 256 and wider.kv_heads == 8  # not stuck at the old values
    assert tiny(d_ff=50).ff_dim == 50 and tiny(n_kv_head=2).kv_heads == 2


def test_gpt_rejects_a_non_config():
    with pytest.raises(ValueError, match="GPTConfig"):
        GPT({"vocab_size": 10})


# ----------------------------------------------------------------------------------------------
# Every combination runs
# ----------------------------------------------------------------------------------------------

COMBOS = list(itertools.product(POS_ENCODINGS, NORMS, NORM_PLACEMENTS, ACTIVATIONS))


@pytest.mark.parametrize(("pos", "norm", "placement", "act"), COMBOS, ids=["-".join(c) for c in COMBOS])
def test_every_architecture_combo_gives_logits_of_shape_B_T_V_and_a_finite_loss(pos, norm, placement, act):
    torch.manual_seed(0)
    m = GPT(tiny(n_layer=1, d_model=16, n_head=2, pos_encoding=pos, norm=norm, norm_placement=placement,
                 activation=act))
    idx = tokens(B=2, T=8)
    logits, loss = m(idx, targets=idx)
    assert logits.shape == (2, 8, V)
    assert loss.ndim == 0 and torch.isfinite(loss)
    logits, loss = m(idx)
    assert loss is None


# ----------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------


def test_layernorm_and_rmsnorm_match_torch_and_the_formula():
    x = torch.randn(3, 5, 16)
    ln, rms = perturb_norms(LayerNorm(16)), perturb_norms(RMSNorm(16, eps=1e-6))
    ref_ln = torch.nn.LayerNorm(16)
    ref_ln.load_state_dict(ln.state_dict())
    torch.testing.assert_close(ln(x), ref_ln(x), atol=1e-6, rtol=0)
    by_hand = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * rms.weight
    torch.testing.assert_close(rms(x), by_hand, atol=1e-6, rtol=0)
    assert LayerNorm(16, bias=False).bias is None


def test_sinusoidal_table_is_sin_in_even_and_cos_in_odd_columns():
    pe = sinusoidal_positions(10, 8)
    p, i = torch.arange(10.0)[:, None], torch.arange(4.0)[None, :]
    angle = p / 10000 ** (2 * i / 8)
    torch.testing.assert_close(pe[:, 0::2], angle.sin())
    torch.testing.assert_close(pe[:, 1::2], angle.cos())


def test_rope_score_depends_only_on_relative_position_and_preserves_norms():
    hs = 16
    q, k = torch.randn(1, 1, 1, hs), torch.randn(1, 1, 1, hs)

    def rotated(x, m):
        return apply_rope(x, *rope_cos_sin(torch.tensor([m]), hs))

    scores = [(rotated(q, m) * rotated(k, n)).sum().item() for m, n in [(3, 1), (10, 8), (102, 100)]]
    assert max(scores) - min(scores) < 1e-4
    torch.testing.assert_close(rotated(q, 57).norm(), q.norm())


def test_alibi_slopes_are_geometric_for_powers_of_two_and_follow_press_for_other_head_counts():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # 6 heads: the 4-head slopes, then every other slope of the 8-head sequence (2 of them)
    expected6 = [2**-2, 2**-4, 2**-6, 2**-8, 2**-1, 2**-3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected6))
    assert alibi_slopes(12).shape == (12,) and bool((alibi_slopes(12) > 0).all())


def test_attention_allowed_builds_causal_prefix_bidirectional_and_window_masks():
    pos = torch.arange(5)
    causal = attention_allowed(pos, pos, "causal")[0, 0]
    assert torch.equal(causal, torch.ones(5, 5, dtype=torch.bool).tril())
    prefix = attention_allowed(pos, pos, "prefix", prefix_len=torch.tensor([3, 0]))
    assert prefix.shape == (2, 1, 5, 5)
    assert bool(prefix[0, 0, :3, :3].all())  # prefix positions see each other
    assert torch.equal(prefix[0, 0, 3:], causal[3:])  # later ones causal
    assert torch.equal(prefix[1, 0], causal)  # empty prefix = causal
    assert bool(attention_allowed(pos, pos, "bidirectional").all())
    window = attention_allowed(pos, pos, "causal", sliding_window=2)[0, 0]
    assert window[4].tolist() == [False, False, False, True, True]


# ----------------------------------------------------------------------------------------------
# Attention behaviour
# ----------------------------------------------------------------------------------------------

ATTN_VARIANTS = [
    dict(pos_encoding=pos) for pos in POS_ENCODINGS
] + [
    dict(n_kv_head=1), dict(n_kv_head=2, pos_encoding="rope"), dict(sliding_window=3),
    dict(sliding_window=4, pos_encoding="alibi"), dict(attn_mask="bidirectional"),
    dict(attn_mask="prefix"), dict(n_head=8, pos_encoding="alibi"),
]


@pytest.mark.parametrize("variant", ATTN_VARIANTS, ids=[str(v) for v in ATTN_VARIANTS])
def test_manual_attention_equals_sdpa(variant):
    m_sdpa = perturb_norms(model(**variant, attn_impl="sdpa"))
    m_manual = model(**variant, attn_impl="manual")
    m_manual.load_state_dict(m_sdpa.state_dict())
    idx = tokens()
    kw = {"prefix_len": torch.tensor([4, 9])} if variant.get("attn_mask") == "prefix" else {}
    torch.testing.assert_close(m_manual(idx, **kw)[0], m_sdpa(idx, **kw)[0], atol=1e-5, rtol=0)


def test_manual_attention_gradients_equal_sdpa():
    m_sdpa = model(attn_impl="sdpa", pos_encoding="rope")
    m_manual = model(attn_impl="manual", pos_encoding="rope")
    idx = tokens()
    for m in (m_sdpa, m_manual):
        m(idx, targets=idx)[1].backward()
    for (name, a), b in zip(m_sdpa.named_parameters(), m_manual.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("pos", POS_ENCODINGS)
@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_causal_model_past_logits_do_not_change_when_future_tokens_change(pos, impl):
    m = model(pos_encoding=pos, attn_impl=impl)
    idx = tokens(T=12)
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 5) % V
    a, b = m(idx)[0], m(changed)[0]
    torch.testing.assert_close(a[:, :7], b[:, :7], atol=1e-6, rtol=0)
    assert (a[:, 7:] - b[:, 7:]).abs().max() > 1e-3


@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_prefix_mask_positions_see_the_whole_prefix_and_later_positions_are_causal(impl):
    m = model(attn_mask="prefix", attn_impl=impl)
    idx = tokens(B=1, T=12)
    p = 5
    base = m(idx, prefix_len=p)[0]
    inside = idx.clone()
    inside[0, 4] = (inside[0, 4] + 1) % V  # last prefix token
    out = m(inside, prefix_len=p)[0]
    assert (out[0, 0] - base[0, 0]).abs().max() > 1e-4  # position 0 sees position 4
    after = idx.clone()
    after[0, 8] = (after[0, 8] + 1) % V
    out = m(after, prefix_len=p)[0]
    torch.testing.assert_close(out[0, :8], base[0, :8], atol=1e-6, rtol=0)  # causal after the prefix
    # per-row prefix lengths: row with prefix 0 behaves like a causal model
    causal = model(attn_impl=impl)
    causal.load_state_dict(m.state_dict())
    two = tokens(B=2, T=12)
    mixed = m(two, prefix_len=torch.tensor([0, 6]))[0]
    torch.testing.assert_close(mixed[0], causal(two)[0][0], atol=1e-6, rtol=0)


def test_bidirectional_model_sees_the_future():
    m = model(attn_mask="bidirectional")
    idx = tokens(B=1, T=10)
    changed = idx.clone()
    changed[0, -1] = (changed[0, -1] + 1) % V
    assert (m(idx)[0][0, 0] - m(changed)[0][0, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_token_beyond_the_sliding_window_has_no_influence(impl):
    W, t = 3, 9
    one_layer = model(n_layer=1, sliding_window=W, attn_impl=impl)
    idx = tokens(B=1, T=12)
    base = one_layer(idx)[0]
    far, near = idx.clone(), idx.clone()
    far[0, t - W] = (far[0, t - W] + 1) % V  # just outside the window of position t
    near[0, t - W + 1] = (near[0, t - W + 1] + 1) % V  # the oldest key inside it
    torch.testing.assert_close(one_layer(far)[0][0, t], base[0, t], atol=1e-6, rtol=0)
    assert (one_layer(near)[0][0, t] - base[0, t]).abs().max() > 1e-4
    # two layers: the receptive field grows to 2·(W − 1) tokens back
    two_layers = model(n_layer=2, sliding_window=W, attn_impl=impl)
    assert (two_layers(far)[0][0, t] - two_layers(idx)[0][0, t]).abs().max() > 1e-5


@pytest.mark.parametrize("pos", ["learned", "alibi", "rope"])
def test_sliding_window_at_least_T_equals_full_causal_attention(pos):
    full = model(pos_encoding=pos)
    windowed = model(pos_encoding=pos, sliding_window=12)
    windowed.load_state_dict(full.state_dict())
    idx = tokens(T=12)
    torch.testing.assert_close(windowed(idx)[0], full(idx)[0], atol=1e-6, rtol=0)


def test_gqa_with_n_kv_head_equal_n_head_is_multi_head_attention():
    mha = model(pos_encoding="rope")
    gqa = model(pos_encoding="rope", n_kv_head=4)
    assert gqa.transformer.h[0].attn.c_attn.weight.shape == mha.transformer.h[0].attn.c_attn.weight.shape
    gqa.load_state_dict(mha.state_dict())
    idx = tokens()
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], atol=0, rtol=0)


def test_gqa_equals_mha_whose_kv_heads_are_copies_of_the_shared_ones():
    gqa = model(pos_encoding="rope", n_kv_head=2)  # query heads 0,1 share KV head 0; 2,3 share 1
    mha = model(pos_encoding="rope")
    hs, nh = 8, 4
    state = gqa.state_dict()
    for name in list(state):
        if name.endswith("c_attn.weight") or name.endswith("c_attn.bias"):
            q, k, v = state[name].split([nh * hs, 2 * hs, 2 * hs])
            expand = lambda t: t.unflatten(0, (2, hs)).repeat_interleave(2, dim=0).flatten(0, 1)
            state[name] = torch.cat([q, expand(k), expand(v)])
    mha.load_state_dict(state)
    idx = tokens()
    torch.testing.assert_close(gqa(idx)[0], mha(idx)[0], atol=1e-6, rtol=0)


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_post_ln_block_output_is_normalised_and_pre_ln_block_adds_to_the_residual(norm):
    torch.manual_seed(0)
    x = torch.randn(2, 6, 32) * 3 + 1
    post = Block(tiny(norm=norm, norm_placement="post"))
    y = post(x, is_causal=True)
    if norm == "layernorm":
        torch.testing.assert_close(y.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
        torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-3, rtol=0)
    else:
        torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(2, 6), atol=1e-3, rtol=0)
    h = post.ln_1(x + post.attn(x, is_causal=True))
    torch.testing.assert_close(y, post.ln_2(h + post.mlp(h)))
    pre = Block(tiny(norm=norm, norm_placement="pre"))
    h = x + pre.attn(pre.ln_1(x), is_causal=True)
    torch.testing.assert_close(pre(x, is_causal=True), h + pre.mlp(pre.ln_2(h)))
    assert isinstance(GPT(tiny(norm_placement="post")).transformer.ln_f, torch.nn.Identity)
    assert isinstance(GPT(tiny(norm=norm)).transformer.ln_f, (LayerNorm, RMSNorm))


# ----------------------------------------------------------------------------------------------
# Mixture of experts
# ----------------------------------------------------------------------------------------------


def moe_layer(E: int = 4, k: int = 1) -> MoE:
    torch.manual_seed(0)
    return MoE(GPTConfig(vocab_size=V, d_model=8, n_head=1, n_experts=E, moe_top_k=k))


def test_moe_aux_loss_is_one_for_perfectly_uniform_routing_and_E_when_collapsed():
    moe = moe_layer(E=4)
    with torch.no_grad():
        moe.router.weight.copy_(torch.eye(4, 8) * 5.0)  # expert e listens to feature e
    x = torch.zeros(2, 8, 8)
    x.view(16, 8)[torch.arange(16), torch.arange(16) % 4] = 1.0  # token t prefers expert t % 4
    moe(x)
    assert moe.last_load.tolist() == [0.25] * 4  # f_i uniform; P_i uniform by symmetry
    assert moe.aux_loss.item() == pytest.approx(1.0, abs=1e-6)
    collapsed = torch.zeros(2, 8, 8)
    collapsed[..., 0] = 10.0  # every token prefers expert 0 with p ≈ 1
    moe(collapsed)
    assert moe.last_load.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert moe.aux_loss.item() == pytest.approx(4.0, abs=1e-3)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_moe_dispatch_equals_a_per_token_loop_over_the_chosen_experts(k):
    """k > 1: top-k probabilities renormalised; k = 1: the Switch gate p_e (not renormalised)."""
    moe = moe_layer(E=4, k=k)
    x = torch.randn(3, 5, 8)
    out = moe(x)
    flat = x.reshape(-1, 8)
    probs = F.softmax(moe.router(flat), dim=-1)
    expected = torch.zeros_like(flat)
    for n in range(flat.size(0)):
        p, chosen = probs[n].topk(k)
        gates = p / p.sum() if k > 1 else p
        for w, e in zip(gates, chosen.tolist(), strict=True):
            expected[n] += w * moe.experts[e](flat[n])
    torch.testing.assert_close(out.reshape(-1, 8), expected, atol=1e-6, rtol=0)


def test_moe_with_one_expert_equals_the_dense_mlp():
    moe = moe_layer(E=1)
    mlp = MLP(GPTConfig(vocab_size=V, d_model=8, n_head=1))
    mlp.load_state_dict(moe.experts[0].state_dict())
    x = torch.randn(2, 3, 8)
    torch.testing.assert_close(moe(x), mlp(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("k", [1, 2])
def test_moe_aux_loss_is_added_to_the_loss_and_the_router_learns_from_it(k):
    m = model(n_experts=4, moe_top_k=k, moe_aux_loss_coef=0.5)
    idx = tokens()
    logits, loss = m(idx, targets=idx)
    ce = F.cross_entropy(logits.reshape(-1, V), idx.reshape(-1))
    per_layer = torch.stack([b.mlp.aux_loss for b in m.transformer.h])
    torch.testing.assert_close(m.last_aux_loss, per_layer.mean())
    torch.testing.assert_close(loss, ce + 0.5 * m.last_aux_loss)
    assert 0.0 < m.last_aux_loss.item() <= 4.0  # between near-perfect balance and full collapse (E)
    loss.backward()
    assert m.transformer.h[0].mlp.router.weight.grad.abs().sum() > 0
    m.zero_grad()
    F.cross_entropy(m(idx)[0].reshape(-1, V), idx.reshape(-1)).backward()  # the LM loss alone
    assert m.transformer.h[0].mlp.router.weight.grad.abs().sum() > 0  # reaches the router too


# ----------------------------------------------------------------------------------------------
# Loss, inputs, positions
# ----------------------------------------------------------------------------------------------


def test_loss_ignores_targets_set_to_minus_100():
    m = model()
    idx = tokens(T=10)
    targets = idx.roll(-1, dims=1)
    targets[:, -1] = -100
    targets[0, :4] = -100
    logits, loss = m(idx, targets=targets)
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_absolute_positions_beyond_block_size_raise_naming_the_lengths(pos):
    m = model(pos_encoding=pos)
    with pytest.raises(ValueError, match=r"positions 0\.\.16 .* 0\.\.15 \(block_size=16, T=17\)"):
        m(tokens(T=17))


@pytest.mark.parametrize("pos", ["none", "rope", "alibi"])
def test_relative_or_no_positions_run_beyond_block_size(pos):
    assert model(pos_encoding=pos)(tokens(T=40))[0].shape == (2, 40, V)


BAD_INPUTS = [
    (lambda: torch.zeros(2, 5), {}, "dtype"),
    (lambda: torch.zeros(5, dtype=torch.long), {}, r"shape \(B, T\)"),
    (lambda: torch.zeros(2, 0, dtype=torch.long), {}, r"shape \(B, T\)"),
    (lambda: torch.full((2, 5), V), {}, "vocab_size"),
    (lambda: torch.full((2, 5), -1), {}, "vocab_size"),
    (lambda: torch.zeros(2, 5, dtype=torch.long), {"targets": torch.zeros(2, 4, dtype=torch.long)},
     "targets"),
    (lambda: torch.zeros(2, 5, dtype=torch.long), {"prefix_len": 2}, "prefix_len"),
    (lambda: torch.zeros(2, 5, dtype=torch.long), {"start_pos": 3}, "kv_cache"),
]


@pytest.mark.parametrize(("make_idx", "kwargs", "match"), BAD_INPUTS)
def test_forward_rejects_bad_inputs_with_a_clear_error(make_idx, kwargs, match):
    with pytest.raises(ValueError, match=match):
        model()(make_idx(), **kwargs)


def test_prefix_model_requires_prefix_len():
    with pytest.raises(ValueError, match="needs prefix_len"):
        model(attn_mask="prefix")(tokens())


# ----------------------------------------------------------------------------------------------
# KV cache
# ----------------------------------------------------------------------------------------------

CACHE_VARIANTS = [dict(pos_encoding=pos) for pos in POS_ENCODINGS] + [
    dict(pos_encoding=pos, n_kv_head=2, sliding_window=4) for pos in POS_ENCODINGS
] + [
    dict(pos_encoding="rope", n_kv_head=1, attn_impl="manual"),
    dict(pos_encoding="alibi", sliding_window=3, attn_impl="manual"),
    dict(pos_encoding="learned", n_experts=3, moe_top_k=2, norm="rmsnorm", activation="swiglu"),
    dict(pos_encoding="rope", norm_placement="post"),
]


@pytest.mark.parametrize("variant", CACHE_VARIANTS, ids=[str(v) for v in CACHE_VARIANTS])
def test_kv_cache_prefill_then_one_token_steps_equal_the_full_forward(variant):
    m = perturb_norms(model(**variant))
    idx = tokens(T=14)
    full = m(idx)[0]
    cache = m.new_kv_cache(batch_size=2)
    pieces = [m(idx[:, :6], kv_cache=cache)[0]]  # prefill 6, then 2 tokens at once, then singles
    pieces.append(m(idx[:, 6:8], kv_cache=cache)[0])
    for t in range(8, 14):
        pieces.append(m(idx[:, t : t + 1], kv_cache=cache, start_pos=t)[0])
    assert cache.length == 14
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)


def test_kv_cache_with_a_prefix_lm_prefill_equals_the_full_forward():
    m = model(attn_mask="prefix", pos_encoding="rope")
    idx = tokens(T=12)
    full = m(idx, prefix_len=5)[0]
    cache = m.new_kv_cache(2)
    pieces = [m(idx[:, :7], prefix_len=5, kv_cache=cache)[0]]
    pieces += [m(idx[:, t : t + 1], prefix_len=5, kv_cache=cache)[0] for t in range(7, 12)]
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=0)
    cache.reset()
    m(idx[:, :3], prefix_len=3, kv_cache=cache)
    with pytest.raises(ValueError, match="prefix_len=5 reaches past start_pos=3"):
        m(idx[:, 3:4], prefix_len=5, kv_cache=cache)


def test_kv_cache_shapes_bytes_and_reset():
    m = model(n_kv_head=2)
    cache = m.new_kv_cache(batch_size=3, max_len=10)
    assert isinstance(cache, KVCache)
    assert cache.k[0].shape == (3, 2, 10, 8) and len(cache.v) == 2
    assert cache.nbytes() == 2 * 2 * 3 * 2 * 10 * 8 * 4  # 2·layers·B·kv_heads·max_len·hs·bytes
    m(tokens(B=3, T=4), kv_cache=cache)
    assert cache.length == 4
    cache.reset()
    assert cache.length == 0


def test_kv_cache_misuse_raises_clear_errors():
    m = model()
    cache = m.new_kv_cache(batch_size=2, max_len=8)
    with pytest.raises(ValueError, match="max_len=8"):
        m(tokens(T=9), kv_cache=cache)
    with pytest.raises(ValueError, match="past the cache length 0"):
        m(tokens(T=2), kv_cache=cache, start_pos=3)
    with pytest.raises(ValueError, match="does not match"):
        m(tokens(B=3, T=2), kv_cache=cache)
    with pytest.raises(ValueError, match="bidirectional"):
        model(attn_mask="bidirectional")(tokens(), kv_cache=cache)
    with pytest.raises(ValueError, match="KVCache.max_len=0"):
        KVCache(1, 1, 1, 0, 4)


# ----------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------


def generate_with_logits(m: GPT, idx: torch.Tensor, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Run generate and record the last-position logits of every step (via a hook on lm_head)."""
    seen = []
    hook = m.lm_head.register_forward_hook(lambda mod, inp, out: seen.append(out[:, -1].clone()))
    try:
        out = m.generate(idx, **kwargs)
    finally:
        hook.remove()
    return out, torch.stack(seen, dim=1)


@pytest.mark.parametrize("pos", POS_ENCODINGS)
@pytest.mark.parametrize("sampling", ["greedy", "seeded"])
def test_cached_and_uncached_generation_give_identical_tokens_and_logits_past_block_size(pos, sampling):
    m = model(pos_encoding=pos, n_kv_head=2)
    prompt = tokens(T=5)
    kw = dict(max_new_tokens=20, temperature=0.0) if sampling == "greedy" else dict(
        max_new_tokens=20, temperature=1.3, top_k=10, top_p=0.9)
    runs = {}
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(42)
        runs[use_cache] = generate_with_logits(m, prompt, use_cache=use_cache, generator=g, **kw)
    assert runs[True][0].shape == (2, 25)  # 25 > block_size 16: the window slid
    assert torch.equal(runs[True][0], runs[False][0])
    torch.testing.assert_close(runs[True][1], runs[False][1], atol=1e-5, rtol=0)


def test_cached_generation_with_a_sliding_window_and_prefix_matches_uncached():
    m = model(pos_encoding="alibi", sliding_window=5, attn_mask="prefix")
    prompt = tokens(T=6)
    a = m.generate(prompt, 15, temperature=0.0, prefix_len=4, use_cache=True)
    b = m.generate(prompt, 15, temperature=0.0, prefix_len=4, use_cache=False)
    assert torch.equal(a, b)
    whole_prompt = m.generate(prompt, 3, temperature=0.0)  # default prefix: the whole prompt
    assert torch.equal(whole_prompt[:, 6], m(prompt, prefix_len=6)[0][:, -1].argmax(-1))
    assert torch.equal(whole_prompt, m.generate(prompt, 3, temperature=0.0, prefix_len=6))


def test_prompt_longer_than_block_size_is_cropped_alike_with_and_without_cache():
    m = model(pos_encoding="learned")
    prompt = tokens(T=21)  # block_size is 16
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a = m.generate(prompt, 6, temperature=0.8, use_cache=True, generator=g1)
    b = m.generate(prompt, 6, temperature=0.8, use_cache=False, generator=g2)
    assert a.shape == (2, 27) and torch.equal(a, b) and torch.equal(a[:, :21], prompt)


def test_top_k_one_sampling_equals_greedy():
    m = model()
    prompt = tokens(T=4)
    greedy = m.generate(prompt, 10, temperature=0.0)
    sampled = m.generate(prompt, 10, temperature=1.0, top_k=1, generator=torch.Generator().manual_seed(0))
    assert torch.equal(greedy, sampled)


def test_greedy_generation_takes_the_argmax_of_the_uncropped_forward():
    m = model()
    prompt = tokens(T=4)
    out = m.generate(prompt, 1, temperature=0.0)
    assert torch.equal(out[:, -1], m(prompt)[0][:, -1].argmax(-1))


def test_top_p_keeps_the_token_that_crosses_p():
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log()
    kept = lambda p: torch.isfinite(top_p_filter(logits, p))[0].tolist()
    assert kept(0.45) == [True, False, False]
    assert kept(0.6) == [True, True, False]  # 0.5 < 0.6, so the token that crosses (0.3) stays
    assert kept(0.85) == [True, True, True]
    assert kept(1.0) == [True, True, True]
    shuffled = logits[:, [2, 0, 1]]  # order of the vocabulary does not matter
    assert torch.isfinite(top_p_filter(shuffled, 0.6))[0].tolist() == [False, True, True]


def test_top_k_filter_keeps_the_k_largest():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    assert torch.isfinite(top_k_filter(logits, 2))[0].tolist() == [False, True, True, False]
    assert torch.isfinite(top_k_filter(logits, 10)).all()


@pytest.mark.parametrize(
    ("temperature", "top_k", "top_p"),
    [(0, None, None), (1.0, None, None), (0.7, 5, None), (1.3, None, 0.9), (0.5, 8, 0.8)],
)
def test_sampling_probs_match_project_07s_independent_reference(temperature, top_k, top_p):
    from shared.checks.entropy_plotter import reference_sampling_probs

    logits = torch.randn(3, 40, generator=torch.Generator().manual_seed(5)) * 3
    got = sampling_probs(logits, temperature, top_k, top_p)
    torch.testing.assert_close(got, reference_sampling_probs(logits, temperature, top_k, top_p))
    torch.testing.assert_close(got.sum(-1), torch.ones(3))


BAD_GENERATE = [
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 2, "temperature": -0.5}, "temperature"),
    ({"max_new_tokens": 2, "top_k": 0}, "top_k"),
    ({"max_new_tokens": 2, "top_p": 0.0}, "top_p"),
    ({"max_new_tokens": 2, "top_p": 1.5}, "top_p"),
    ({"max_new_tokens": 2, "prefix_len": 1}, "prefix_len"),
]


@pytest.mark.parametrize(("kwargs", "field"), BAD_GENERATE)
def test_generate_rejects_bad_arguments(kwargs, field):
    with pytest.raises(ValueError, match=field):
        model().generate(tokens(T=3), **kwargs)


def test_generate_restores_train_mode_and_zero_new_tokens_returns_the_prompt():
    m = model(dropout=0.1)
    m.train()
    prompt = tokens(T=3)
    assert torch.equal(m.generate(prompt, 0), prompt)
    m.generate(prompt, 3)
    assert m.training
    m.eval()
    m.generate(prompt, 3)
    assert not m.training


def test_generate_checks_prompt_ids_once_and_forward_keeps_checking_afterwards():
    m = model()
    bad = torch.tensor([[0, m.config.vocab_size]])
    with pytest.raises(ValueError, match="vocab_size"):
        m.generate(bad, 2)
    m.generate(tokens(T=3), 2)
    with pytest.raises(ValueError, match="vocab_size"):  # the per-step shortcut is off again
        m(bad)


def test_zero_dropout_uses_no_dropout_modules_and_positive_dropout_does():
    assert not any(isinstance(mod, torch.nn.Dropout) for mod in model().modules())
    assert sum(isinstance(mod, torch.nn.Dropout) for mod in model(dropout=0.1).modules()) > 0


def test_bidirectional_generation_needs_use_cache_false():
    m = model(attn_mask="bidirectional")
    with pytest.raises(ValueError, match="use_cache=False"):
        m.generate(tokens(T=3), 2)
    assert m.generate(tokens(T=3), 2, use_cache=False).shape == (2, 5)


# ----------------------------------------------------------------------------------------------
# Accounting, init, optimizer
# ----------------------------------------------------------------------------------------------


def test_num_params_and_flops_per_token_follow_the_stated_formulas():
    m = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, d_model=128))
    C, L = 128, 4
    per_layer = (C * 3 * C + 3 * C) + (C * C + C) + (C * 4 * C + 4 * C) + (4 * C * C + C) + 4 * C
    non_embedding = L * per_layer + 2 * C  # + final LayerNorm
    assert m.num_params() == non_embedding
    assert m.num_params(non_embedding=False) == non_embedding + 65 * C + 64 * C  # wte (tied) + wpe
    assert m.flops_per_token() == 6 * (non_embedding + 65 * C) + 12 * L * 64 * C
    assert m.flops_per_token(seq_len=32) == 6 * (non_embedding + 65 * C) + 12 * L * 32 * C


def test_flops_per_token_counts_only_the_active_experts():
    dense = GPT(tiny())
    moe = GPT(tiny(n_experts=4, moe_top_k=1))
    router = 32 * 4  # d_model x n_experts, no bias
    mlp = sum(p.numel() for p in dense.transformer.h[0].mlp.parameters())
    assert moe.num_params() - dense.num_params() == 2 * (router + 3 * mlp)  # 2 layers, 3 extra experts
    assert moe.flops_per_token() - dense.flops_per_token() == 6 * 2 * router  # one expert active


def test_gpt2_init_scales_residual_projections_and_ties_embeddings():
    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=8, d_model=256, n_head=4))
    proj_std = m.transformer.h[0].mlp.c_proj.weight.std().item()
    assert proj_std == pytest.approx(0.02 / math.sqrt(16), rel=0.05)
    assert m.transformer.h[0].mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert m.lm_head.weight is m.transformer.wte.weight
    untied = GPT(GPTConfig(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_tiny_model_overfits_a_tiny_batch():
    torch.manual_seed(0)
    m = GPT(tiny(n_layer=2, d_model=32))
    idx = tokens(B=2, T=16, seed=5)
    x, y = idx[:, :-1], idx[:, 1:]
    opt = make_optimizer(m, TrainConfig(lr=1e-2, weight_decay=0.0, betas=(0.9, 0.99)))
    for _ in range(150):
        _, loss = m(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


# ----------------------------------------------------------------------------------------------
# Hugging Face GPT-2 reference
# ----------------------------------------------------------------------------------------------


def copy_hf_gpt2_weights(hf_model, model_: GPT) -> None:
    """Copy a transformers GPT2LMHeadModel into a GPT configured like GPT-2.

    HF's Conv1D stores weights as (in, out), nn.Linear as (out, in): those are transposed.
    """
    hf = hf_model.state_dict()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    ours = model_.state_dict()
    with torch.no_grad():
        for name, target in ours.items():
            source = hf[name]
            target.copy_(source.t() if name.endswith(conv1d) else source)


def test_logits_equal_hugging_face_gpt2_with_copied_weights():
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPT2Config(
        vocab_size=61, n_positions=32, n_embd=48, n_layer=3, n_head=4, activation_function="gelu_new",
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(hf_cfg).eval()
    with torch.no_grad():  # move every weight off its init value so a mix-up cannot hide
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = GPT(GPTConfig(
        vocab_size=61, block_size=32, n_layer=3, n_head=4, d_model=48, pos_encoding="learned",
        norm="layernorm", norm_placement="pre", activation="gelu_tanh", bias=True, tie_embeddings=True,
        norm_eps=hf_cfg.layer_norm_epsilon,
    )).eval()
    copy_hf_gpt2_weights(hf, ours)
    idx = torch.randint(0, 61, (2, 32), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = hf(idx).logits
    torch.testing.assert_close(ours(idx)[0], expected, atol=1e-5, rtol=0)


def test_rmsnorm_fallback_for_torch_without_f_rms_norm_matches_the_fused_kernel(monkeypatch):
    from shared.model import RMSNorm

    norm = RMSNorm(16, eps=1e-5)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(3, 5, 16)
    fused = norm(x)
    monkeypatch.delattr(torch.nn.functional, "rms_norm")
    torch.testing.assert_close(norm(x), fused, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------------------------
# Extension points: mask_fn and record
# ----------------------------------------------------------------------------------------------


def causal_fn(q_pos: torch.Tensor, k_pos: torch.Tensor) -> torch.Tensor:
    return k_pos[None, :] <= q_pos[:, None]  # (T, S)


@pytest.mark.parametrize("overrides", [{}, {"attn_impl": "manual"}, {"pos_encoding": "alibi"}])
def test_mask_fn_causal_equals_the_built_in_causal_mask(overrides):
    x = torch.randint(V, (2, 12), generator=torch.Generator().manual_seed(0))
    ref = model(**overrides)
    custom = model(**overrides)
    custom.mask_fn = causal_fn
    assert torch.allclose(custom(x)[0], ref(x)[0], atol=1e-6)
    four_d = GPT(ref.config, mask_fn=lambda q, k: causal_fn(q, k)[None, None])  # (1, 1, T, S)
    four_d.load_state_dict(ref.state_dict())
    assert torch.allclose(four_d.eval()(x)[0], ref(x)[0], atol=1e-6)


def test_mask_fn_replaces_the_mask_in_training_and_with_the_kv_cache():
    x = torch.randint(V, (2, 12), generator=torch.Generator().manual_seed(1))
    windowed = model(sliding_window=3)
    custom = model()
    custom.mask_fn = lambda q, k: (k[None, :] <= q[:, None]) & (q[:, None] - k[None, :] < 3)
    assert torch.allclose(custom(x)[0], windowed(x)[0], atol=1e-6)
    cache = custom.new_kv_cache(2)
    steps = [custom(x[:, :5], kv_cache=cache)[0]]
    steps += [custom(x[:, t:t + 1], kv_cache=cache)[0] for t in range(5, 12)]
    assert torch.allclose(torch.cat(steps, 1), windowed(x)[0], atol=1e-5)
    custom.train()
    _, loss = custom(x, x)
    loss.backward()  # the mask works through an ordinary training step
    assert custom.transformer.wte.weight.grad is not None


def test_bidirectional_mask_fn_lets_every_position_see_the_future():
    x = torch.randint(V, (1, 8), generator=torch.Generator().manual_seed(2))
    m = model()
    m.mask_fn = lambda q, k: torch.ones(q.numel(), k.numel(), dtype=torch.bool)
    y = x.clone()
    y[0, -1] = (y[0, -1] + 1) % V
    assert not torch.allclose(m(x)[0][0, 0], m(y)[0][0, 0])  # position 0 sees the last token


@pytest.mark.parametrize(
    "bad",
    [
        lambda q, k: causal_fn(q, k).float(),  # wrong dtype
        lambda q, k: causal_fn(q, k)[:, :-1],  # wrong shape
        lambda q, k: causal_fn(q, k)[None],  # (1, T, S): three dims
        lambda q, k: causal_fn(q, k).tolist(),  # not a tensor
    ],
)
def test_a_wrong_mask_fn_output_raises_a_clear_error(bad):
    m = model()
    m.mask_fn = bad
    with pytest.raises(ValueError, match=r"mask_fn\(q_pos, k_pos\) must return a torch.bool tensor"):
        m(torch.zeros(2, 6, dtype=torch.long))


def test_record_attention_rows_sum_to_one_and_equal_a_manual_softmax():
    m = model(attn_impl="manual")
    x = torch.randint(V, (2, 7), generator=torch.Generator().manual_seed(3))
    with torch.no_grad(), m.record(attention=True, residual=True) as rec:
        logits, _ = m(x)
    assert torch.equal(logits, m(x)[0])  # recording changes nothing under attn_impl="manual"
    assert len(rec.attention) == 2 and rec.attention[0].shape == (2, 4, 7, 7)
    assert rec.hidden is None and len(rec.residual) == 3
    for w in rec.attention:
        assert torch.allclose(w.sum(-1), torch.ones(2, 4, 7), atol=1e-6)
        assert torch.equal(w.triu(1), torch.zeros_like(w))  # causal
    block = m.transformer.h[0]
    with torch.no_grad():
        h = block.ln_1(rec.residual[0])
        q, k, _ = block.attn.c_attn(h).split(32, dim=2)
        q, k = (t.view(2, 7, 4, 8).transpose(1, 2) for t in (q, k))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(8)
        manual = scores.masked_fill(torch.ones(7, 7, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
    assert torch.allclose(rec.attention[0], manual, atol=1e-6)


def test_record_attention_under_sdpa_matches_the_unrecorded_pass():
    m = model()  # attn_impl="sdpa": recording switches to the written-out softmax
    x = torch.randint(V, (2, 7), generator=torch.Generator().manual_seed(4))
    with torch.no_grad(), m.record(attention=True) as rec:
        logits, _ = m(x)
    assert torch.allclose(logits, m(x)[0], atol=1e-5)
    assert len(rec.attention) == 2


def test_record_hidden_is_the_input_of_lm_head_and_carries_gradients():
    m = model()
    x = torch.randint(V, (2, 7), generator=torch.Generator().manual_seed(5))
    seen = []
    hook = m.lm_head.register_forward_hook(lambda mod, inp, out: seen.append(inp[0]))
    with m.record(hidden=True) as rec:
        logits, _ = m(x)
    hook.remove()
    assert rec.hidden is seen[0] and rec.hidden.shape == (2, 7, 32) and rec.attention == []
    value_head = torch.nn.Linear(32, 1)
    value_head(rec.hidden).sum().backward()
    assert m.transformer.wte.weight.grad is not None and m.transformer.wte.weight.grad.abs().sum() > 0
    assert m._recording is None  # the with-block ended: later passes record nothing


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_record_sublayers_are_what_attention_and_ffn_receive_and_return(placement):
    m = GPT(tiny(norm_placement=placement))
    x = torch.randint(V, (2, 7), generator=torch.Generator().manual_seed(5))
    seen = []  # the reference: hooks on the blocks' attention and feed-forward layers
    hooks = [mod.register_forward_hook(lambda mod, inp, out: seen.append((inp[0], out)))
             for b in m.transformer.h for mod in (b.attn, b.mlp)]
    with m.record(sublayers=True, residual=True) as rec:
        logits, _ = m(x)
    for h in hooks:
        h.remove()
    assert logits.shape == (2, 7, V) and len(rec.sublayers) == m.config.n_layer
    for layer, got in enumerate(rec.sublayers):
        (a_in, a_out), (f_in, f_out) = seen[2 * layer], seen[2 * layer + 1]
        assert got["attn_in"] is a_in and got["attn_out"] is a_out
        assert got["mlp_in"] is f_in and got["mlp_out"] is f_out
    if placement == "pre":  # the residual stream adds exactly the two sublayer outputs
        b0 = rec.sublayers[0]
        torch.testing.assert_close(rec.residual[1], rec.residual[0] + b0["attn_out"] + b0["mlp_out"])


def test_no_state_flag_on_the_model_steers_its_own_checks():
    m = model()
    before = dict(vars(m))
    m.generate(torch.zeros(1, 3, dtype=torch.long), 4)
    assert not any("checked" in name for name in vars(m))
    assert vars(m).keys() == before.keys()
    with pytest.raises(ValueError, match="token ids must lie in"):
        m(torch.full((1, 3), V))  # forward always checks its ids
