"""Tests for shared/checks/instruct_tuner.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes. The
mistakes that are textual edits of the solution, and the correct variants each check must accept, are in
tests/catalogue/c14_instruct_tuner.py (run by tests/test_mutation_catalogue.py); the tests here keep the
ones that need more than an edit: a LoRA forward pass whose base path is not bit-exact.
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


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_lora_forward_catches_a_base_path_that_is_not_bit_exact():
    def rounded(x, weight, bias, A, B, scale):  # right to 1e-5, but a fresh adapter moves the output
        return F.linear(x, weight, bias) + scale * (x @ A.T) @ B.T + 1e-7

    fails(check_lora_forward, rounded, "bit for bit")
