"""Tests for shared/checks/int8_quant.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes, made by
editing the solution's source: max instead of max-abs, floor or truncation instead of round, the max taken
over the wrong dimension, a fractional zero-point, a range that leaves out 0, an int8 or int16 accumulator,
no decomposition, `>` for `>=`, per-tensor instead of vector-wise scales, a missing outlier term, a
missing bias, row scales applied to columns, and STEs that leak or block the gradient.
"""

from __future__ import annotations

import pytest
import torch
from check_helpers import fails, solution_loader, stub

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


def test_check_absmax_quantize_catches_max_instead_of_max_abs():
    buggy = solution("absmax_quantize", replace=[
        ("x.abs().amax() if dim is None else x.abs().amax(dim=dim, keepdim=True)",
         "x.amax() if dim is None else x.amax(dim=dim, keepdim=True)"),
    ])
    fails(check_absmax_quantize, buggy, "max(|x|)")


def test_check_absmax_quantize_catches_floor_rounding():
    buggy = solution("absmax_quantize", replace=[("torch.round(x / scale)", "torch.floor(x / scale)")])
    fails(check_absmax_quantize, buggy, "floor", "torch.round")


def test_check_absmax_quantize_catches_truncation_by_the_int8_cast():
    buggy = solution("absmax_quantize", replace=[("torch.round(x / scale).clamp", "(x / scale).clamp")])
    fails(check_absmax_quantize, buggy, "truncation toward zero")


def test_check_absmax_quantize_catches_the_max_over_the_wrong_dimension():
    buggy = solution("absmax_quantize", replace=[("else x.abs().amax(dim=dim, keepdim=True)",
                                                  "else x.abs().amax(dim=1 - dim, keepdim=True)")])
    fails(check_absmax_quantize, buggy, "size 1 at `dim`")


def test_check_absmax_quantize_catches_nan_scales_for_zero_input():
    buggy = solution("absmax_quantize", replace=[("amax.clamp(min=1e-12) / q_max", "amax / q_max")])
    fails(check_absmax_quantize, buggy, "clamp(min=1e-12)")


# ----------------------------------------------------------------------------------------------- TODO 2


def test_check_zeropoint_quantize_passes_on_solution(capsys):
    check_zeropoint_quantize(solution("zeropoint_quantize"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 zeropoint_quantize: ")


def test_check_zeropoint_quantize_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_zeropoint_quantize(stub(2))


def test_check_zeropoint_quantize_catches_an_unrounded_zero_point():
    buggy = solution("zeropoint_quantize", replace=[("(q_min - torch.round(lo / scale))",
                                                     "(q_min - lo / scale)")])
    fails(check_zeropoint_quantize, buggy, "round(lo / scale)")


def test_check_zeropoint_quantize_catches_a_fractional_zero_point_returned_as_float():
    buggy = solution("zeropoint_quantize", replace=[
        ("(q_min - torch.round(lo / scale))", "(q_min - lo / scale)"),
        ("return q, scale, zero_point.to(torch.int32)", "return q, scale, zero_point"),
    ])
    fails(check_zeropoint_quantize, buggy, "not an integer")


def test_check_zeropoint_quantize_catches_a_range_without_zero():
    buggy = solution("zeropoint_quantize", replace=[
        ("lo, hi = lo.clamp(max=0), hi.clamp(min=0)", "pass"),
    ])
    fails(check_zeropoint_quantize, buggy, "min(x.amin(), 0)")


# ----------------------------------------------------------------------------------------------- TODO 3


def test_check_int8_matmul_passes_on_solution(capsys):
    check_int8_matmul(solution("int8_matmul"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 int8_matmul: exact int32 result")


def test_check_int8_matmul_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3 \\(int8_matmul\\) is not done yet"):
        check_int8_matmul(stub(3))


def test_check_int8_matmul_catches_an_int8_accumulator():
    buggy = solution("int8_matmul", replace=[("    return a.to(torch.int32) @ b.to(torch.int32)",
                                              "    return (a @ b).to(torch.int32)")])
    fails(check_int8_matmul, buggy, "wrapped around in int8")


def test_check_int8_matmul_catches_an_int16_accumulator():
    buggy = solution("int8_matmul", replace=[
        ("    return a.to(torch.int32) @ b.to(torch.int32)",
         "    return (a.to(torch.int16) @ b.to(torch.int16)).to(torch.int32)"),
    ])
    fails(check_int8_matmul, buggy, "wrapped around in int16")


def test_check_int8_matmul_catches_a_float_result():
    buggy = solution("int8_matmul", replace=[("    return a.to(torch.int32) @ b.to(torch.int32)",
                                              "    return a.float() @ b.float()")])
    fails(check_int8_matmul, buggy, "int32 tensor")


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


def test_check_llm_int8_matmul_catches_no_decomposition():
    fns = solution(*LLM_INT8, replace=[("(x.abs() >= threshold).any(dim=0)", "(x.abs() > 1e30).any(dim=0)")])
    fails(check_llm_int8_matmul, fns["llm_int8_matmul"], "no column was kept in fp32")


def test_check_llm_int8_matmul_catches_a_strict_threshold():
    fns = solution(*LLM_INT8, replace=[("(x.abs() >= threshold)", "(x.abs() > threshold)")])
    fails(check_llm_int8_matmul, fns["llm_int8_matmul"], ">= threshold")


def test_check_llm_int8_matmul_catches_per_tensor_scales():
    fns = solution(*LLM_INT8, replace=[
        ("absmax_quantize(x[:, ~outlier], dim=1)", "absmax_quantize(x[:, ~outlier])"),
        ("absmax_quantize(w[~outlier], dim=0)", "absmax_quantize(w[~outlier])"),
    ])
    fails(check_llm_int8_matmul, fns["llm_int8_matmul"], "one per ROW of x", "outer product")


def test_check_llm_int8_matmul_catches_a_missing_outlier_term():
    fns = solution(*LLM_INT8, replace=[("return y + x[:, outlier] @ w[outlier]", "return y")])
    fails(check_llm_int8_matmul, fns["llm_int8_matmul"], "outlier part is missing")


# ----------------------------------------------------------------------------------------------- TODO 5


def test_check_quant_linear_passes_on_solution(capsys):
    check_quant_linear(solution("quant_linear"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 quant_linear: matches "
                                              "F.linear with dequantized weights")


def test_check_quant_linear_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_quant_linear(stub(5))


def test_check_quant_linear_catches_a_missing_bias():
    buggy = solution("quant_linear", replace=[("return F.linear(x, w, bias)", "return F.linear(x, w)")])
    fails(check_quant_linear, buggy, "bias is missing")


def test_check_quant_linear_catches_scales_along_the_wrong_axis():
    buggy = solution("quant_linear", replace=[
        ("weight_q.to(torch.float32) * weight_scale", "weight_q.to(torch.float32) * weight_scale.T"),
    ])
    fails(check_quant_linear, buggy, "wrong axis")


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_fake_quant_passes_on_solution(capsys):
    check_fake_quant(solution("fake_quant"))
    assert capsys.readouterr().out.startswith("✅ TODO 6 fake_quant: forward equals")


def test_check_fake_quant_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6 \\(fake_quant\\) is not done yet"):
        check_fake_quant(stub(6))


def test_check_fake_quant_catches_a_scale_turned_into_a_python_float():
    buggy = solution("fake_quant", replace=[("    q_max = 2 ** (bits - 1) - 1",
                                             "    q_max = 2 ** (bits - 1) - 1\n    scale = float(scale)")])
    fails(check_fake_quant, buggy, "per-row scales", "no float(scale)")


def test_check_fake_quant_catches_a_gradient_that_leaks_outside_the_clip_range():
    buggy = solution("fake_quant", replace=[
        ("    return xc + (torch.round(xc / scale) * scale - xc).detach()",
         "    return x + (torch.round(xc / scale) * scale - x).detach()"),
    ])
    fails(check_fake_quant, buggy, "passes outside the clip range")


def test_check_fake_quant_catches_a_blocked_gradient():
    buggy = solution("fake_quant", replace=[
        ("    return xc + (torch.round(xc / scale) * scale - xc).detach()",
         "    return torch.round(xc / scale) * scale"),
    ])
    fails(check_fake_quant, buggy, "zero everywhere")


def test_check_fake_quant_catches_a_fully_detached_output():
    buggy = solution("fake_quant", replace=[
        ("    return xc + (torch.round(xc / scale) * scale - xc).detach()",
         "    return (torch.round(xc / scale) * scale).detach()"),
    ])
    fails(check_fake_quant, buggy, "only the rounding residual is detached")


def test_check_fake_quant_catches_a_missing_clip():
    buggy = solution("fake_quant", replace=[("xc = torch.clamp(x, -q_max * scale, q_max * scale)  #",
                                             "xc = x  #")])
    fails(check_fake_quant, buggy, "not clipped")
