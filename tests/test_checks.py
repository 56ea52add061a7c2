"""shared/checks/__init__.py: the three outcomes of a learner check, and the comparison helpers;
shared/checks/compare.py: the matcher, the diagnoser and the seeded inputs under one tolerance policy."""

from __future__ import annotations

import inspect

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
from shared.checks.compare import (
    CHECK_ATOL,
    CHECK_RTOL,
    DIAGNOSE_ATOL,
    DIAGNOSE_RTOL,
    diagnose,
    expect_tensors,
    gen,
    matches,
    mismatch,
    randn,
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


@learner_check(todo=1, name="double")
def check_double(fn) -> str:
    x = torch.tensor([1.0, -2.0, 3.0])
    assert_close(call(fn, x), 2 * x, "double(x)", hint="multiply by 2")
    return "matches 2 * x"


@learner_check(todo=3, name="quadruple")
def check_quadruple(fn) -> str:
    x = torch.tensor([1.0, -2.0, 3.0])
    assert_close(call(fn, x), 4 * x, "quadruple(x)", hint="double twice")
    return "matches 4 * x"


def double(x):  # a learner's TODO 1, wrong
    return x + 1


def quadruple(x):  # a learner's correct TODO 3, which calls the wrong TODO 1
    return double(double(x))


def test_a_failure_names_an_earlier_todo_that_fails_its_own_check():
    with pytest.raises(CheckFailed) as err:
        check_quadruple(quadruple)
    text = str(err.value)
    assert text.startswith("❌ TODO 3 quadruple: quadruple(x): values differ")
    assert text.endswith("note: this TODO calls your double (TODO 1), which fails its own check: fix TODO 1 "
                         "first and run its check cell; this failure may come from it.")
    # the earlier check ran silently, and a failure that no earlier TODO explains gets no note
    with pytest.raises(CheckFailed) as err:
        check_quadruple(lambda x: 3 * x)
    assert "note:" not in str(err.value)


def test_a_values_differ_summary_has_no_empty_items_and_no_long_floats():
    with pytest.raises(CheckFailed) as err:
        check_square(lambda x: x * x + 0.123456789)
    first = str(err.value).splitlines()[0]
    assert "; ;" not in first and "0.1235" in first and "0.123456" not in first


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


# ----------------------------------------------------------------------------------------------- compare


def test_verdict_tolerance_is_the_default_of_assert_close():
    defaults = inspect.signature(assert_close).parameters
    assert (defaults["atol"].default, defaults["rtol"].default) == (CHECK_ATOL, CHECK_RTOL)
    assert DIAGNOSE_ATOL > CHECK_ATOL and DIAGNOSE_RTOL > CHECK_RTOL


def test_mismatch_gives_a_reason_instead_of_a_torch_error():
    x = torch.tensor([1.0, 2.0])
    assert mismatch(x.clone(), x) is None
    assert mismatch([1.0, 2.0], x) == "expected a torch.Tensor, got list"
    assert mismatch(x[None], x) == "shape (1, 2), expected (2,)"
    assert mismatch(x.double(), x) is None  # dtype is not part of a match by default
    assert mismatch(x.double(), x, check_dtype=True) == "dtype torch.float64, expected torch.float32"
    assert mismatch(x + 1e-3, x).startswith("values differ: max abs err 1.0e-03")
    assert not matches(None, x) and not matches(x[:1], x)


def test_matches_compares_in_float64_with_nan_and_inf_as_values():
    ref = torch.tensor([1.0, 1.0 + 1e-9], dtype=torch.float64)
    assert matches(torch.tensor([1.0, 1.0]), ref)  # the float32 answer to a float64 reference
    assert not matches(torch.tensor([1.0, 1.0]), ref, atol=0, rtol=0)  # exact: 1e-9 is not rounded away
    assert matches(torch.tensor([3, 4]), torch.tensor([3.0, 4.0]), atol=0, rtol=0)  # integers by value
    masked = torch.tensor([float("-inf"), float("nan"), 0.5])
    assert matches(masked.clone(), masked)
    assert not matches(torch.tensor([0.0, float("nan"), 0.5]), masked)
    near = torch.tensor(1.00005)
    assert matches(near, torch.tensor(1.0), atol=1e-4) and not matches(near, torch.tensor(1.0))


def test_diagnose_names_the_first_bug_matched_or_every_one_or_the_default():
    x = torch.tensor([1.0, 2.0])
    bugs = [(x * 2, "doubled"), (x + 1, "shifted"), (x + 1, "off by one")]
    assert diagnose(x * 2 + 5e-5, bugs, "default") == "doubled"  # within the diagnosis tolerance, 1e-4
    assert diagnose(x + 1, bugs, "default") == "shifted"
    assert diagnose(x + 1, bugs, "default", every=True) == "shifted OR off by one"
    assert diagnose(x, bugs, "default") == "default"
    assert diagnose("not a tensor", bugs, "default") == "default"
    assert diagnose(x * 2 + 5e-5, bugs, "default", atol=0, rtol=0) == "default"


def test_expect_tensors_returns_the_tuple_or_fails_with_the_rule_and_hint():
    pair = (torch.zeros(1), torch.ones(1))
    assert expect_tensors(pair, 2, "f must return two tensors", "return a, b") is pair
    for wrong in (torch.zeros(1), (torch.zeros(1),), (torch.zeros(1), 1.0), [torch.zeros(1), torch.ones(1)]):
        with pytest.raises(CheckFailed, match=r"f must return two tensors\n   hint: return a, b"):
            expect_tensors(wrong, 2, "f must return two tensors", "return a, b")


def test_gen_and_randn_are_seeded():
    assert torch.equal(randn(3, 4, seed=7), torch.randn(3, 4, generator=torch.Generator().manual_seed(7)))
    assert torch.equal(randn(5, seed=1, scale=2.0), 2.0 * randn(5, seed=1))
    assert torch.equal(torch.rand(3, generator=gen(2)), torch.rand(3, generator=gen(2)))
