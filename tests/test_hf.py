"""shared.hf: a shared.GPT moves to transformers (GPT-2 and Llama) and back with identical logits and
generations."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from shared.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")

from shared.hf import from_hf, hf_architecture, load_hf, save_hf, to_hf  # noqa: E402

GPT2_STYLE = GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=4, d_model=48, activation="gelu_tanh")
LLAMA_STYLE = GPTConfig(
    vocab_size=61, block_size=32, n_layer=2, n_head=4, n_kv_head=2, d_model=48, pos_encoding="rope",
    norm="rmsnorm", activation="swiglu", bias=False, rope_base=500.0,
)
CONFIGS = {
    "gpt2": GPT2_STYLE,
    "gpt2_exact_gelu_untied": dataclasses.replace(GPT2_STYLE, activation="gelu", tie_embeddings=False),
    "gpt2_relu_no_bias": dataclasses.replace(GPT2_STYLE, activation="relu", bias=False),
    "llama_gqa": LLAMA_STYLE,
    "llama_mqa_untied_bias": dataclasses.replace(LLAMA_STYLE, n_kv_head=1, tie_embeddings=False, bias=True),
    "llama_mha": dataclasses.replace(LLAMA_STYLE, n_kv_head=None),
}


def perturbed_model(config: GPTConfig, seed: int = 0) -> GPT:
    """A GPT whose every weight is moved off its init value, so a swapped or missed tensor cannot hide."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def tokens(config: GPTConfig, T: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, config.vocab_size, (2, T or config.block_size), generator=g)


@pytest.mark.parametrize("name", CONFIGS)
def test_exported_model_has_the_same_logits_and_greedy_generation(name):
    config = CONFIGS[name]
    model = perturbed_model(config)
    hf = to_hf(model)
    assert type(hf).__name__ == ("GPT2LMHeadModel" if name.startswith("gpt2") else "LlamaForCausalLM")
    idx = tokens(config)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx)[0], atol=1e-5, rtol=0)
    prompt = idx[:, :5]
    ours = model.generate(prompt, 20, temperature=0.0)
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=20, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(ours, theirs)


def hf_greedy(hf, prompt: torch.Tensor, new: int) -> torch.Tensor:
    return hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=new, do_sample=False,
                       pad_token_id=0)


@pytest.mark.parametrize("name", ["gpt2", "llama_gqa"])
def test_generations_are_identical_up_to_block_size_tokens_in_total(name, one_thread):
    config = CONFIGS[name]
    model = perturbed_model(config)
    hf = to_hf(model)
    prompt = tokens(config, 5)
    new = config.block_size - 5  # prompt + new = block_size: the last step sees exactly block_size tokens
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the context guard stays silent up to block_size
        theirs = hf_greedy(hf, prompt, new)
    ours = model.generate(prompt, new, temperature=0.0)
    assert ours.shape == (2, config.block_size) and torch.equal(ours, theirs)


def test_past_block_size_our_generate_crops_and_the_gpt2_export_refuses_with_a_clear_error(one_thread):
    config = GPT2_STYLE
    model = perturbed_model(config)
    hf = to_hf(model)
    B, prompt = config.block_size, tokens(config, 5)
    ours = model.generate(prompt, B - 5 + 8, temperature=0.0)  # GPT.generate crops to the last B tokens
    assert ours.shape == (2, B + 8)
    with pytest.raises(ValueError, match=f"has {B} learned positions .* asked for position {B}"):
        hf_greedy(hf, prompt, B - 5 + 8)
    # without the guard: plain transformers has no row B in its position table at all
    hf.hardway_context_guard.remove()
    with pytest.raises(IndexError), torch.no_grad():
        hf(tokens(config, B + 1))


def test_past_block_size_the_llama_export_attends_to_the_whole_sequence_and_warns_once(one_thread):
    config = LLAMA_STYLE
    model = perturbed_model(config)
    hf = to_hf(model)
    B = config.block_size
    idx = tokens(config, B + 8)  # (2, 40)
    window = idx[:, -B:]  # what GPT.generate feeds the model for the next token: the last B tokens
    with torch.no_grad():
        ours_next = model(window)[0][:, -1]
        torch.testing.assert_close(hf(window).logits[:, -1], ours_next, atol=1e-5, rtol=0)
        with pytest.warns(UserWarning, match=f"sees {B + 8} tokens.*attends to the whole sequence"):
            theirs_next = hf(idx).logits[:, -1]  # all 40 tokens, RoPE positions 0..39
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # once per model
            hf(idx)
    assert (theirs_next - ours_next).abs().max() > 0.1  # a different context, different logits
    # greedy decoding: the same tokens while the sequence fits in block_size, then they part ways
    prompt = idx[:, :5]
    ours = model.generate(prompt, B - 5 + 16, temperature=0.0)
    theirs = hf_greedy(hf, prompt, B - 5 + 16)
    assert torch.equal(ours[:, :B], theirs[:, :B])
    assert not torch.equal(ours, theirs)


@pytest.mark.parametrize("name", CONFIGS)
def test_imported_model_has_the_same_logits_and_an_equivalent_config(name):
    config = CONFIGS[name]
    model = perturbed_model(config)
    back = from_hf(to_hf(model))
    c = back.config
    assert (c.pos_encoding, c.norm, c.activation, c.kv_heads, c.ff_dim, c.tie_embeddings, c.rope_base) == (
        config.pos_encoding, config.norm, config.activation, config.kv_heads, config.ff_dim,
        config.tie_embeddings,
        config.rope_base)
    idx = tokens(config)
    with torch.no_grad():
        torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_a_model_made_by_transformers_imports_with_identical_logits_and_generation(arch):
    torch.manual_seed(3)
    if arch == "gpt2":
        hf_cfg = transformers.GPT2Config(vocab_size=50, n_positions=24, n_embd=32, n_layer=2, n_head=2,
                                         activation_function="gelu_new", bos_token_id=None, eos_token_id=None)
        hf = transformers.GPT2LMHeadModel(hf_cfg)
    else:
        hf_cfg = transformers.LlamaConfig(vocab_size=50, max_position_embeddings=24, hidden_size=32,
                                          intermediate_size=88, num_hidden_layers=2, num_attention_heads=4,
                                          num_key_value_heads=2, bos_token_id=None, eos_token_id=None,
                                          pad_token_id=None)
        hf = transformers.LlamaForCausalLM(hf_cfg)
    hf.eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    ours = from_hf(hf)
    idx = torch.randint(0, 50, (2, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(idx)[0], hf(idx).logits, atol=1e-5, rtol=0)
    prompt = idx[:, :4]
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=16, do_sample=False,
                         pad_token_id=0)
    assert torch.equal(ours.generate(prompt, 16, temperature=0.0), theirs)


@pytest.mark.parametrize("name", ["gpt2", "llama_gqa"])
def test_save_hf_writes_safetensors_that_load_hf_reads_back_exactly(name, tmp_path):
    config = CONFIGS[name]
    model = perturbed_model(config)
    out = save_hf(model, tmp_path / "export")
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file()
    assert not list(out.glob("*.bin")), "save_hf must not write pickle weights"
    back = load_hf(out)
    idx = tokens(config)
    with torch.no_grad():
        torch.testing.assert_close(back(idx)[0], model(idx)[0], atol=1e-5, rtol=0)
    # and transformers itself reads the directory
    hf = transformers.AutoModelForCausalLM.from_pretrained(out, local_files_only=True)
    with torch.no_grad():
        torch.testing.assert_close(hf(idx).logits, model(idx)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("change", "feature"),
    [
        (dict(pos_encoding="alibi", norm="rmsnorm", activation="swiglu"), "pos_encoding='alibi'"),
        (dict(sliding_window=8), "sliding_window=8"),
        (dict(n_experts=4), "n_experts=4"),
        (dict(norm_placement="post"), "norm_placement='post'"),
        (dict(attn_mask="prefix"), "attn_mask='prefix'"),
        (dict(pos_encoding="sinusoidal"), "pos_encoding='sinusoidal'"),
        (dict(n_kv_head=2), "n_kv_head=2"),
        (dict(activation="swiglu"), "activation='swiglu'"),
    ],
)
def test_configs_neither_architecture_can_express_are_refused_naming_the_feature(change, feature):
    config = dataclasses.replace(GPT2_STYLE, **change)
    with pytest.raises(ValueError, match="cannot be exported") as err:
        hf_architecture(config)
    assert feature in str(err.value)
    with pytest.raises(ValueError, match="cannot be exported"):
        to_hf(GPT(config))


def test_hf_architecture_picks_gpt2_or_llama():
    assert hf_architecture(GPT2_STYLE) == "gpt2"
    assert hf_architecture(LLAMA_STYLE) == "llama"


def test_bad_inputs_get_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="needs a shared.model.GPT"):
        to_hf(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="supports GPT2LMHeadModel and LlamaForCausalLM"):
        from_hf(torch.nn.Linear(2, 2))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_hf(tmp_path)
