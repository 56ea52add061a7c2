"""Tests for shared/checks/int8_quant.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, and (2) say "not
done yet" on an untouched starter stub, also when a TODO it builds on is unfinished. The realistic bugs,
textual edits of the solution, and the correct variants every check must accept are in the mutation catalogue
(tests/catalogue/c12_int8_quant.py).
"""

from __future__ import annotations

import pytest
import torch
from check_helpers import solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.int8_quant import (
    check_absmax_quantize,
    check_fake_quant,
    check_int8_matmul,
    check_llm_int8_matmul,
    check_quant_linear,
    check_zeropoint_quantize,
    reference_absmax,
    reference_llm_int8_matmul,
    reference_zeropoint,
)

solution = solution_loader("12_int8_quant")
LLM_INT8 = ["absmax_quantize", "int8_matmul", "llm_int8_matmul"]


# ----------------------------------------------------------------------------------------------- references


def test_reference_absmax_matches_the_formula_and_round_trips_within_half_a_step():
    x = torch.randn(7, 9)
    for dim in (None, 0, 1):
        q, s = reference_absmax(x, dim)
        assert torch.equal(q.float(), torch.round(x / s).clamp(-127, 127))
        assert ((q.float() * s - x).abs() <= s / 2 + 1e-6).all()


def test_reference_zeropoint_maps_zero_exactly_and_covers_min_to_max():
    x = torch.rand(4, 6) * 3 + 0.5  # all positive: 0 is added to the range
    for dim in (None, 1):
        q, s, z = reference_zeropoint(x, dim)
        assert ((q.float() - z) * s - x).abs().max() <= s.max() / 2 + 1e-6
        assert (z == -128).all()  # lo = 0 maps to q_min


def test_reference_llm_int8_is_close_to_fp32_with_an_outlier_feature():
    x, w = torch.randn(16, 32), torch.randn(32, 8)
    x[:, 3] = 50.0
    y = x @ w
    assert (reference_llm_int8_matmul(x, w) - y).norm() / y.norm() < 0.01
    all_int8_err = (reference_llm_int8_matmul(x, w, None) - y).norm()
    assert all_int8_err > 3 * (reference_llm_int8_matmul(x, w) - y).norm()


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_absmax_quantize_passes_on_solution(capsys):
    assert check_absmax_quantize(solution("absmax_quantize")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 absmax_quantize: per "
                                              "tensor, per row, per column and int4")


def test_check_absmax_quantize_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(absmax_quantize\\) is not done yet"):
        check_absmax_quantize(stub(1))


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_zeropoint_quantize_passes_on_solution(capsys):
    check_zeropoint_quantize(solution("zeropoint_quantize"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 zeropoint_quantize: ")


def test_check_zeropoint_quantize_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_zeropoint_quantize(stub(2))


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_int8_matmul_passes_on_solution(capsys):
    check_int8_matmul(solution("int8_matmul"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 int8_matmul: exact int32 result")


def test_check_int8_matmul_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(int8_matmul\\) is not done yet"):
        check_int8_matmul(stub(3))


# ----------------------------------------------------------------------------------------------- TODO 4


def test_check_llm_int8_matmul_passes_on_solution(capsys):
    check_llm_int8_matmul(solution(*LLM_INT8)["llm_int8_matmul"])
    assert capsys.readouterr().out.startswith("✅ TODO 4 llm_int8_matmul: matches a reference LLM.int8()")


def test_check_llm_int8_matmul_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4 \\(llm_int8_matmul\\) is not done yet"):
        check_llm_int8_matmul(stub(4))


def test_check_llm_int8_matmul_names_an_unfinished_int8_matmul():
    fns = solution(*LLM_INT8)
    fns["llm_int8_matmul"].__globals__["int8_matmul"] = stub(3)
    with pytest.raises(TodoNotDone, match="uses TODO 3"):
        check_llm_int8_matmul(fns["llm_int8_matmul"])


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_quant_linear_passes_on_solution(capsys):
    check_quant_linear(solution("quant_linear"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 quant_linear: matches "
                                              "F.linear with dequantized weights")


def test_check_quant_linear_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_quant_linear(stub(5))


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_fake_quant_passes_on_solution(capsys):
    check_fake_quant(solution("fake_quant"))
    assert capsys.readouterr().out.startswith("✅ TODO 6 fake_quant: forward equals")


def test_check_fake_quant_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6 \\(fake_quant\\) is not done yet"):
        check_fake_quant(stub(6))


