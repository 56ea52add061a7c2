"""shared/checks.py: the three outcomes of a learner check, and the comparison helpers."""

from __future__ import annotations

import pytest
import torch

from shared.checks import (
    CheckFailed,
    TodoNotDone,
    assert_close,
    call,
    expect,
    expect_equal,
    fmt,
    learner_check,
)


@learner_check(todo=2, name="square")
def check_square(fn) -> str:
    x = torch.tensor([1.0, -2.0, 3.0])
    err = assert_close(call(fn, x), x * x, "square(x)", hint="multiply x by itself, elementwise")
    return f"matches x * x on 3 values, max abs err {err:.1e}"


def test_pass_prints_one_line_naming_the_todo_and_what_was_compared(capsys):
    assert check_square(lambda x: x * x) is None  # nothing echoed again as the cell's value
    out = capsys.readouterr().out
    assert out == "✅ TODO 2 square: matches x * x on 3 values, max abs err 0.0e+00\n"


def test_wrong_answer_shows_expected_got_and_hint():
    with pytest.raises(CheckFailed) as err:
        check_square(lambda x: x + x)
    text = str(err.value)
    assert text.startswith("❌ TODO 2 square: square(x): values differ")
    assert "expected:" in text and "got:" in text
    assert "hint: multiply x by itself" in text
    assert isinstance(err.value, AssertionError)


def test_wrong_shape_is_reported_as_a_shape_error():
    with pytest.raises(CheckFailed, match=r"wrong shape[\s\S]*expected: \(3,\)[\s\S]*got:      \(1, 3\)"):
        check_square(lambda x: (x * x)[None])


def test_untouched_stub_says_todo_not_done_yet():
    def stub(x):
        raise NotImplementedError("TODO 2: square x")

    with pytest.raises(TodoNotDone, match=r"TODO 2 \(square\) is not done yet"):
        check_square(stub)


def test_stub_of_an_earlier_todo_is_named_as_the_blocker():
    def uses_todo_1(x):
        raise NotImplementedError("TODO 1: helper")

    with pytest.raises(TodoNotDone, match="cannot be checked yet: it uses TODO 1"):
        check_square(uses_todo_1)


def test_crash_in_learner_code_becomes_a_readable_failure_with_the_input():
    def crashes(x):
        return x @ torch.zeros(5)

    with pytest.raises(CheckFailed, match=r"crashes\(tensor\(shape=\(3,\).*raised RuntimeError"):
        check_square(crashes)


def test_non_tensor_answer_is_rejected_clearly():
    with pytest.raises(CheckFailed, match="expected a torch.Tensor, got list"):
        check_square(lambda x: (x * x).tolist())


def test_expect_and_expect_equal():
    expect(True, "fine")
    with pytest.raises(CheckFailed, match="hint: look here"):
        expect(False, "broken", hint="look here")
    expect_equal([1, 2], [1, 2], "lists")
    with pytest.raises(CheckFailed, match=r"expected: \[1, 2\]\n   got:      \[2, 1\]"):
        expect_equal([2, 1], [1, 2], "lists")
    expect_equal(torch.tensor([1, 2]), torch.tensor([1, 2]), "tensors")
    with pytest.raises(CheckFailed):
        expect_equal(torch.tensor([1, 2]), torch.tensor([[1, 2]]), "tensors of other shape")
    with pytest.raises(CheckFailed):
        expect_equal([1, 2], torch.tensor([1, 2]), "list vs tensor")


def test_assert_close_returns_max_abs_error_and_respects_tolerance():
    a = torch.tensor([1.0, 2.0])
    assert assert_close(a + 1e-7, a, "tiny") == pytest.approx(1e-7, rel=0.5)
    with pytest.raises(CheckFailed):
        assert_close(a + 1e-3, a, "big", atol=1e-5, rtol=0)
    assert assert_close(a + 1e-3, a, "loose", atol=1e-2) == pytest.approx(1e-3, rel=1e-2)


def test_fmt_cuts_long_values():
    assert len(fmt(list(range(1000)), limit=50)) == 50
    assert fmt("ab") == "'ab'"
