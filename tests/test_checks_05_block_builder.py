"""Tests for shared/checks/block_builder.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: the tanh GELU or no activation, LayerNorm after the residual add in Pre-LN,
a missing residual, Post-LN normalising the sublayer input instead of the sum, missing position
embeddings, unchained blocks, no final norm, forgetting zero_grad, no warmup.
"""

from __future__ import annotations

import pytest
import torch
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.block_builder import (
    check_feed_forward,
    check_mini_former,
    check_train_model,
    check_transformer_block,
    reference_block,
    torch_encoder_layer,
)
from shared.model import GPT, Block, GPTConfig

solution = solution_loader("05_block_builder")
BLOCK_PARTS = ["causal_self_attention", "feed_forward", "transformer_block"]
MODEL_PARTS = [*BLOCK_PARTS, "mini_former"]

PRE_ATTN = "x = keep * x + causal_self_attention(block.ln_1(x), block.attn)"
POST_ATTN = "x = block.ln_1(keep * x + causal_self_attention(x, block.attn))"


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


# ----------------------------------------------------------------------------------------------- references


@pytest.mark.parametrize("placement", ["pre", "post"])
def test_reference_block_equals_the_shared_gpt_block(placement):
    torch.manual_seed(0)
    block = Block(GPTConfig(d_model=16, n_head=4, norm_placement=placement)).eval()
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        assert torch.allclose(reference_block(x, block, placement), block(x, is_causal=True), atol=1e-5)


def test_torch_encoder_layer_is_causal_and_matches_the_pre_ln_reference():
    torch.manual_seed(1)
    block = Block(GPTConfig(d_model=16, n_head=4)).eval()
    layer = torch_encoder_layer(block, norm_first=True)
    x = torch.randn(1, 6, 16)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(6)
    with torch.no_grad():
        y = layer(x, src_mask=mask, is_causal=True)
        x2 = x.clone()
        x2[:, 4:] = 0.0
        y2 = layer(x2, src_mask=mask, is_causal=True)
        assert torch.allclose(y, reference_block(x, block, "pre"), atol=1e-5)
    assert torch.allclose(y[:, :4], y2[:, :4], atol=1e-6)


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_feed_forward_passes_on_solution(capsys):
    assert check_feed_forward(solution("feed_forward")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 feed_forward: matches W₂·GELU(W₁x + b₁) + b₂")


def test_check_feed_forward_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(feed_forward\\) is not done yet"):
        check_feed_forward(stub(1))


@pytest.mark.parametrize(
    ("new", "hint"),
    [
        ("h = F.gelu(mlp.c_fc(x), approximate='tanh')", "tanh approximation"),
        ("h = F.relu(mlp.c_fc(x))", "that is ReLU"),
        ("h = mlp.c_fc(x)", "activation is missing"),
    ],
)
def test_check_feed_forward_catches_the_wrong_activation(new, hint):
    buggy = solution("feed_forward", replace=[("h = F.gelu(mlp.c_fc(x))", new)])
    fails(check_feed_forward, buggy, hint)


def test_check_feed_forward_catches_the_activation_after_the_second_layer():
    buggy = solution("feed_forward", replace=[
        ("h = F.gelu(mlp.c_fc(x))", "h = mlp.c_fc(x)"), ("return mlp.c_proj(h)",
                                                         "return F.gelu(mlp.c_proj(h))"),
    ])
    fails(check_feed_forward, buggy, "BETWEEN the two Linear layers")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_transformer_block_passes_on_solution(capsys):
    check_transformer_block(solution(*BLOCK_PARTS)["transformer_block"])
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 2 transformer_block: Pre-LN and Post-LN match nn.TransformerEncoderLayer")


def test_check_transformer_block_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2 \\(transformer_block\\) is not done yet"):
        check_transformer_block(stub(2))


def test_check_transformer_block_names_an_unfinished_feed_forward():
    fns = solution(*BLOCK_PARTS)
    fns["transformer_block"].__globals__["feed_forward"] = stub(1)
    with pytest.raises(TodoNotDone, match="uses TODO 1"):
        check_transformer_block(fns["transformer_block"])


def test_check_transformer_block_catches_layernorm_after_the_residual_add_in_pre_ln():
    fns = solution(*BLOCK_PARTS, replace=[
        (PRE_ATTN, "x = block.ln_1(keep * x + causal_self_attention(x, block.attn))"),
        ("x = keep * x + feed_forward(block.ln_2(x), block.mlp)",
         "x = block.ln_2(keep * x + feed_forward(x, block.mlp))"),
    ])
    fails(check_transformer_block, fns["transformer_block"], "this is Post-LN")


def test_check_transformer_block_catches_a_normalised_residual_stream_in_pre_ln():
    fns = solution(*BLOCK_PARTS, replace=[
        (PRE_ATTN, "x = block.ln_1(x)\n        x = keep * x + causal_self_attention(x, block.attn)"),
        ("x = keep * x + feed_forward(block.ln_2(x), block.mlp)",
         "x = block.ln_2(x)\n        x = keep * x + feed_forward(x, block.mlp)"),
    ])
    fails(check_transformer_block, fns["transformer_block"], "replaced by its normalised copy")


def test_check_transformer_block_catches_a_missing_residual():
    fns = solution(*BLOCK_PARTS, replace=[("keep = 1.0 if residual else 0.0", "keep = 0.0")])
    fails(check_transformer_block, fns["transformer_block"], "residual connections are missing")


def test_check_transformer_block_catches_post_ln_normalising_the_sublayer_input():
    fns = solution(*BLOCK_PARTS, replace=[
        (POST_ATTN, "x = keep * x + causal_self_attention(block.ln_1(x), block.attn)"),
        ("x = block.ln_2(keep * x + feed_forward(x, block.mlp))",
         "x = keep * x + feed_forward(block.ln_2(x), block.mlp)"),
    ])
    fails(check_transformer_block, fns["transformer_block"], "this is Pre-LN", "normalises the SUM")


def test_check_transformer_block_catches_swapped_norms():
    fns = solution(*BLOCK_PARTS, replace=[
        ("causal_self_attention(block.ln_1(x), block.attn)",
         "causal_self_attention(block.ln_2(x), block.attn)"),
        ("feed_forward(block.ln_2(x), block.mlp)", "feed_forward(block.ln_1(x), block.mlp)"),
    ])
    fails(check_transformer_block, fns["transformer_block"], "swapped")


def test_check_transformer_block_catches_a_missing_feed_forward():
    fns = solution(*BLOCK_PARTS, replace=[
        ("x = keep * x + feed_forward(block.ln_2(x), block.mlp)", "x = x"),
    ])
    fails(check_transformer_block, fns["transformer_block"], "feed-forward sublayer is missing")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_mini_former_passes_on_solution(capsys):
    check_mini_former(solution(*MODEL_PARTS)["mini_former"])
    assert capsys.readouterr().out.startswith("✅ TODO 3 mini_former: 3 blocks")


def test_check_mini_former_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(mini_former\\) is not done yet"):
        check_mini_former(stub(3))


def test_check_mini_former_catches_missing_position_embeddings():
    fns = solution(*MODEL_PARTS, replace=[
        ("x = tr.wte(idx) + tr.wpe(torch.arange(T, device=idx.device))", "x = tr.wte(idx)"),
    ])
    fails(check_mini_former, fns["mini_former"], "position embeddings are missing")


def test_check_mini_former_catches_unchained_blocks():
    fns = solution(*MODEL_PARTS, replace=[
        ("        x = transformer_block(x, block, norm_placement, residual)",
         "        out = transformer_block(x, block, norm_placement, residual)\n    x = out"),
    ])
    fails(check_mini_former, fns["mini_former"], "PREVIOUS block's output")


def test_check_mini_former_catches_a_missing_final_norm():
    fns = solution(*MODEL_PARTS, replace=[("return model.lm_head(tr.ln_f(x))", "return model.lm_head(x)")])
    fails(check_mini_former, fns["mini_former"], "final norm is missing")


def test_check_mini_former_output_matches_the_shared_gpt():
    fns = solution(*MODEL_PARTS)
    torch.manual_seed(2)
    model = GPT(GPTConfig(vocab_size=13, block_size=8, n_layer=2, n_head=2, d_model=16,
                          norm_placement="post")).eval()
    idx = torch.randint(13, (3, 8))
    with torch.no_grad():
        assert torch.allclose(fns["mini_former"](idx, model, "post"), model(idx)[0], atol=1e-5)


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_train_model_passes_on_solution(capsys):
    check_train_model(solution("train_model"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 4 train_model: gradients are fresh and clipped to norm 1 at every step")


def test_check_train_model_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4 \\(train_model\\) is not done yet"):
        check_train_model(stub(4))


def test_check_train_model_catches_a_missing_gradient_clip():
    buggy = solution("train_model", replace=[
        ("        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n", "")])
    fails(check_train_model, buggy, "must be clipped to 1", "BEFORE optimizer.step()")


def test_check_train_model_catches_a_clip_after_the_step():
    buggy = solution("train_model", replace=[
        ("        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n        opt.step()\n",
         "        opt.step()\n        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\n")])
    fails(check_train_model, buggy, "must be clipped to 1", "BEFORE optimizer.step()")


def test_check_train_model_catches_a_generator_reseeded_every_step():
    buggy = solution("train_model", replace=[
        ('        x, y = get_batch("train", batch_size, gen)',
         '        x, y = get_batch("train", batch_size, torch.Generator().manual_seed(seed))')])
    fails(check_train_model, buggy, "same batch", "ONCE")


def test_check_train_model_catches_an_ignored_seed():
    buggy = solution("train_model", replace=[
        ("    gen = torch.Generator().manual_seed(seed)\n    opt",
         "    gen = torch.Generator().manual_seed(1234)\n    opt")])
    fails(check_train_model, buggy, "first batch", "manual_seed(seed)")


def test_check_train_model_catches_a_forgotten_zero_grad():
    buggy = solution("train_model", replace=[("        opt.zero_grad(set_to_none=True)\n", "")])
    fails(check_train_model, buggy, "ACCUMULATE", "zero_grad")


def test_check_train_model_catches_zero_grad_between_backward_and_step():
    buggy = solution("train_model", replace=[
        ("        opt.zero_grad(set_to_none=True)\n        loss.backward()\n",
         "        loss.backward()\n        opt.zero_grad(set_to_none=True)\n"),
    ])
    fails(check_train_model, buggy, "never moved")


def test_check_train_model_catches_a_missing_warmup():
    buggy = solution("train_model", replace=[
        ('group["lr"] = lr * min(1.0, (t + 1) / (warmup_steps + 1))', 'group["lr"] = lr'),
    ])
    fails(check_train_model, buggy, "never warmed up")


def test_check_train_model_catches_a_warmup_that_starts_at_zero():
    buggy = solution("train_model", replace=[
        ('group["lr"] = lr * min(1.0, (t + 1) / (warmup_steps + 1))',
         'group["lr"] = lr * min(1.0, t / warmup_steps)'),
    ])
    fails(check_train_model, buggy, "off by one")


def test_check_train_model_rejects_a_result_that_is_not_a_list_of_floats():
    fns = solution("train_model", replace=[("    return losses", "    return torch.tensor(losses)")])
    fails(check_train_model, fns, "list of 8 Python floats")
