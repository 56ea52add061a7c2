"""Tests for shared/checks/block_builder.py.

Every check must pass on the solution notebook's own functions, printing its ✅ line, and say "not done
yet" on an untouched starter stub. The realistic bugs each check must catch with a hint aimed at them, and
the correct variants it must accept, are edits of the solution's source listed in the mutation catalogue,
tests/catalogue/c05_block_builder.py
(run by tests/test_mutation_catalogue.py); this file keeps the references and the cases that need more
than an edit.
"""

from __future__ import annotations

import pytest
import torch
from check_helpers import solution_loader, stub

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


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_mini_former_passes_on_solution(capsys):
    check_mini_former(solution(*MODEL_PARTS)["mini_former"])
    assert capsys.readouterr().out.startswith("✅ TODO 3 mini_former: 3 blocks")


def test_check_mini_former_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(mini_former\\) is not done yet"):
        check_mini_former(stub(3))


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


