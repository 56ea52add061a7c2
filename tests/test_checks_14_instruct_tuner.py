"""Tests for shared/checks/instruct_tuner.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: a template without the end token or with the response start one too early;
loss masking that masks nothing, masks the response instead of the prompt, is off by one in either
direction with the shifted targets, or counts padding; an SFT loop without zero_grad or without the
optimizer step; LoRA with B initialised non-zero, the scale alpha / r inverted or missing, a forward pass
without the scale, and a merge that forgets the scale or overwrites the frozen weight.
"""

from __future__ import annotations

import pytest
import torch.nn.functional as F
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.instruct_tuner import (
    check_build_example,
    check_init_lora,
    check_lora_forward,
    check_merge_lora,
    check_sft_batch,
    check_sft_train,
    reference_example,
    reference_sft_batch,
)
from shared.data import IGNORE_INDEX
from shared.pretrained import RESERVED, base_tokenizer

solution = solution_loader("14_instruct_tuner")

# ----------------------------------------------------------------------------------------------- references


def test_reference_example_puts_the_response_after_the_assistant_token():
    tok = base_tokenizer()
    ids, start = reference_example("ab", "c", tok)
    assert tok.decode(ids) == RESERVED[0] + "ab" + RESERVED[1] + "c" + RESERVED[2]
    assert start == 4 and tok.decode(ids[start:]) == "c" + RESERVED[2]


def test_reference_sft_batch_counts_only_response_targets_and_pads_on_the_right():
    x, y = reference_sft_batch([([1, 2, 3, 4, 5, 6], 4), ([1, 2, 3, 9], 3)], pad_id=0)
    assert x.tolist() == [[1, 2, 3, 4, 5], [1, 2, 3, 0, 0]]
    assert y.tolist() == [[IGNORE_INDEX, IGNORE_INDEX, IGNORE_INDEX, 5, 6],
                          [IGNORE_INDEX, IGNORE_INDEX, 9, IGNORE_INDEX, IGNORE_INDEX]]


# -------------------------------------------------------------------------------------------- pass / not done

CASES = [
    (check_build_example, "build_example", 1),
    (check_sft_batch, "sft_batch", 2),
    (check_sft_train, "sft_train", 3),
    (check_init_lora, "init_lora", 4),
    (check_lora_forward, "lora_forward", 5),
    (check_merge_lora, "merge_lora", 6),
]


@pytest.mark.parametrize(("check", "name", "todo"), CASES)
def test_check_passes_on_the_solution(check, name, todo, capsys):
    assert check(solution(name)) is None
    assert capsys.readouterr().out.startswith(f"✅ TODO {todo} {name}: ")


@pytest.mark.parametrize(("check", "name", "todo"), CASES)
def test_check_says_not_done_on_the_stub(check, name, todo):
    with pytest.raises(TodoNotDone, match=f"TODO {todo} \\({name}\\) is not done yet"):
        check(stub(todo))


# ----------------------------------------------------------------------------------------------- TODO 1

ENCODE = "    ids = tok.encode(USER + prompt + ASSISTANT + response + END)\n"


def test_check_build_example_catches_a_template_without_the_end_token():
    buggy = solution("build_example",
                     replace=[(ENCODE, "    ids = tok.encode(USER + prompt + ASSISTANT + response)\n")])
    fails(check_build_example, buggy, "END", "never learns to stop")


def test_check_build_example_catches_a_response_start_one_too_early():
    buggy = solution("build_example", replace=[("1 + len(prompt) + 1", "1 + len(prompt)")])
    fails(check_build_example, buggy, "one too early")


def test_check_build_example_catches_a_missing_assistant_token():
    buggy = solution("build_example",
                     replace=[(ENCODE, "    ids = tok.encode(USER + prompt + response + END)\n")])
    fails(check_build_example, buggy, "ASSISTANT")


# ----------------------------------------------------------------------------------------------- TODO 2

SFT_LINE = "y[b, start - 1 : n] = ids_t[start:]"


def test_check_sft_batch_catches_masking_that_masks_nothing():
    buggy = solution("sft_batch", replace=[(SFT_LINE, "y[b, :n] = ids_t[1:]")])
    fails(check_sft_batch, buggy, "not masked", "write prompts")


def test_check_sft_batch_catches_masking_the_response_instead_of_the_prompt():
    buggy = solution("sft_batch", replace=[(SFT_LINE, "y[b, : start - 1] = ids_t[1:start]")])
    fails(check_sft_batch, buggy, "inverted")


def test_check_sft_batch_catches_an_off_by_one_that_masks_the_first_response_token():
    buggy = solution("sft_batch", replace=[(SFT_LINE, "y[b, start : n] = ids_t[start + 1 :]")])
    fails(check_sft_batch, buggy, "FIRST response token", "start - 1")


def test_check_sft_batch_catches_an_off_by_one_that_counts_the_assistant_token():
    buggy = solution("sft_batch", replace=[(SFT_LINE, "y[b, start - 2 : n] = ids_t[start - 1 :]")])
    fails(check_sft_batch, buggy, "start - 2")


def test_check_sft_batch_catches_padding_with_targets():
    buggy = solution("sft_batch", replace=[("y = torch.full((len(examples), T), IGNORE_INDEX",
                                             "y = torch.full((len(examples), T), pad_id")])
    fails(check_sft_batch, buggy, "padding")


def test_check_sft_batch_catches_unshifted_targets():
    buggy = solution("sft_batch", replace=[(SFT_LINE, "y[b, start - 1 : n] = ids_t[start - 1 : n]")])
    fails(check_sft_batch, buggy, "y (targets) differ")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_sft_train_catches_a_missing_zero_grad():
    buggy = solution("sft_train", replace=[("        opt.zero_grad(set_to_none=True)\n", "")])
    fails(check_sft_train, buggy, "zero_grad")


def test_check_sft_train_catches_a_missing_optimizer_step():
    buggy = solution("sft_train", replace=[("        opt.step()\n", "")])
    fails(check_sft_train, buggy, "opt.step()")


def test_check_sft_train_catches_losses_kept_as_tensors():
    buggy = solution("sft_train", replace=[("losses.append(loss.item())", "losses.append(loss)")])
    fails(check_sft_train, buggy, "loss.item()")


def test_check_sft_train_catches_training_a_frozen_parameter():
    buggy = solution("sft_train", replace=[("params = [p for p in model.parameters() if p.requires_grad]",
                                             "params = [p.requires_grad_(True) for p in "
                                             "model.parameters()]")])
    fails(check_sft_train, buggy, "frozen parameter")


# ----------------------------------------------------------------------------------------------- TODO 4

B_INIT = "B = torch.zeros(out_features, r)"
A_DRAW = ".uniform_(-bound, bound, generator=generator)  # (r, in)"


def test_check_init_lora_catches_b_initialised_non_zero():
    buggy = solution("init_lora",
                     replace=[(B_INIT, "B = torch.empty(out_features, r).uniform_(-bound, bound, "
                                       "generator=generator)")])
    fails(check_init_lora, buggy, "B starts at zero", "EXACTLY equal to the base")


def test_check_init_lora_catches_an_inverted_scale():
    buggy = solution("init_lora", replace=[("return A, B, alpha / r", "return A, B, r / alpha")])
    fails(check_init_lora, buggy, "inverted", "alpha / r")


def test_check_init_lora_catches_a_missing_scale():
    buggy = solution("init_lora", replace=[("return A, B, alpha / r", "return A, B, 1.0")])
    fails(check_init_lora, buggy, "not alpha / r")


def test_check_init_lora_catches_a_zero_a():
    buggy = solution("init_lora", replace=[(A_DRAW, ".zero_()  # (r, in)")])
    fails(check_init_lora, buggy, "A is constant")


def test_check_init_lora_catches_a_normal_a_of_the_wrong_size():
    buggy = solution("init_lora", replace=[(A_DRAW, ".normal_(generator=generator)  # (r, in)")])
    fails(check_init_lora, buggy, "1/sqrt(in_features)")


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_lora_forward_catches_a_missing_scale():
    buggy = solution("lora_forward", replace=[("return frozen + scale * low_rank",
                                               "return frozen + low_rank")])
    fails(check_lora_forward, buggy, "without the scale")


def test_check_lora_forward_catches_an_ignored_adapter():
    buggy = solution("lora_forward", replace=[("return frozen + scale * low_rank", "return frozen")])
    fails(check_lora_forward, buggy, "ignores the adapter")


def test_check_lora_forward_catches_a_missing_bias():
    buggy = solution("lora_forward", replace=[("frozen = F.linear(x, weight, bias)",
                                               "frozen = F.linear(x, weight)")])
    fails(check_lora_forward, buggy, "x @ W.T + b")


def test_check_lora_forward_catches_a_base_path_that_is_not_bit_exact():
    def rounded(x, weight, bias, A, B, scale):  # right to 1e-5, but a fresh adapter moves the output
        return F.linear(x, weight, bias) + scale * (x @ A.T) @ B.T + 1e-7

    fails(check_lora_forward, rounded, "bit for bit")


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_merge_lora_catches_a_merge_that_forgets_the_scale():
    buggy = solution("merge_lora", replace=[("return weight + scale * (B @ A)", "return weight + B @ A")])
    fails(check_merge_lora, buggy, "scale is missing")


def test_check_merge_lora_catches_a_merge_in_place():
    buggy = solution("merge_lora", replace=[("return weight + scale * (B @ A)",
                                             "return weight.add_(scale * (B @ A))")])
    fails(check_merge_lora, buggy, "in place")
