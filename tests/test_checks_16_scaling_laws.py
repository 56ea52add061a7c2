"""Tests for shared/checks/scaling_laws.py.

Every check must (1) pass on the solution notebook's own functions, printing its ✅ line, (2) say "not done
yet" on an untouched starter stub, and (3) fail with a hint aimed at the bug on realistic mistakes. The
mistakes that are textual edits of the solution, and the correct variants each check must accept, are in
tests/catalogue/c16_scaling_laws.py (run by tests/test_mutation_catalogue.py); the tests here keep the ones
that need more than an edit: a Chinchilla loss written with scalar-only math.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from check_helpers import fails, solution_loader, stub

from shared.checks import TodoNotDone
from shared.checks.scaling_laws import (
    CHINCHILLA,
    check_chinchilla_loss,
    check_chinchilla_optimal,
    check_fit_power_law,
    check_isoflop_optimum,
    check_non_embedding_params,
    check_training_flops,
    numeric_chinchilla_optimal,
    reference_chinchilla_loss,
    reference_isoflop_optimum,
    reference_non_embedding_params,
    reference_power_law,
    reference_training_flops,
)
from shared.model import GPTConfig
from shared.plotting import fit_power_law as shared_fit_power_law

solution = solution_loader("16_scaling_laws")

# ----------------------------------------------------------------------------------------------- references


def test_reference_non_embedding_params_is_12_l_d_squared_plus_biases_and_norms():
    cfg = GPTConfig(vocab_size=69, block_size=32, n_layer=2, n_head=2, d_model=32)
    assert reference_non_embedding_params(cfg) == 2 * (12 * 32 * 32 + 13 * 32) + 2 * 32 == 25_472


def test_reference_training_flops_is_six_n_d_plus_attention():
    assert reference_training_flops(10, 100) == 6000
    assert reference_training_flops(10, 100, n_layer=2, context=4, d_model=8) == 6000 + 12 * 2 * 4 * 8 * 100


def test_reference_power_law_agrees_with_shared_plotting_fit():
    x, y = np.array([1e3, 1e4, 1e5, 3e5]), np.array([3.1, 2.7, 2.45, 2.3])
    a, alpha, r2 = reference_power_law(x, y)
    fit = shared_fit_power_law(x, y)
    assert a == pytest.approx(fit.a) and -alpha == pytest.approx(fit.b) and r2 == pytest.approx(fit.r2)


def test_reference_isoflop_optimum_finds_the_vertex_of_an_exact_parabola():
    n = np.geomspace(1e3, 1e5, 5)
    n_opt, d_opt, l_opt = reference_isoflop_optimum(6e12, n, 1.0 + (np.log(n) - math.log(1e4)) ** 2)
    assert n_opt == pytest.approx(1e4) and d_opt == pytest.approx(1e8) and l_opt == pytest.approx(1.0)


def test_chinchilla_reference_gives_the_published_70b_loss_and_a_closed_form_optimum():
    assert float(reference_chinchilla_loss(70e9, 1.4e12)) == pytest.approx(1.9366, abs=1e-4)
    c = CHINCHILLA
    G = (c["alpha"] * c["A"] / (c["beta"] * c["B"])) ** (1 / (c["alpha"] + c["beta"]))
    n, d = numeric_chinchilla_optimal(1e22)
    assert n == pytest.approx(G * (1e22 / 6) ** (c["beta"] / (c["alpha"] + c["beta"])), rel=1e-6)
    assert 6 * n * d == pytest.approx(1e22)


# ----------------------------------------------------------------------------------------------- TODO 1


def test_check_non_embedding_params_passes_on_solution(capsys):
    assert check_non_embedding_params(solution("non_embedding_params")) is None
    assert capsys.readouterr().out.startswith("✅ TODO 1 non_embedding_params: matches GPT(cfg).num_params")


def test_check_non_embedding_params_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 1 \\(non_embedding_params\\) is not done yet"):
        check_non_embedding_params(stub(1))


def test_check_training_flops_passes_on_solution(capsys):
    check_training_flops(solution("training_flops"))
    assert capsys.readouterr().out.startswith("✅ TODO 2 training_flops: 6·N·D matches")


def test_check_training_flops_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 2"):
        check_training_flops(stub(2))


def test_check_fit_power_law_passes_on_solution(capsys):
    check_fit_power_law(solution("fit_power_law"))
    assert capsys.readouterr().out.startswith("✅ TODO 3 fit_power_law: (a, alpha, R²) match numpy.polyfit")


def test_check_fit_power_law_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 3"):
        check_fit_power_law(stub(3))


def test_check_isoflop_optimum_passes_on_solution(capsys):
    check_isoflop_optimum(solution("isoflop_optimum"))
    assert capsys.readouterr().out.startswith("✅ TODO 4 isoflop_optimum: N*, D* = C/(6N*)")


def test_check_isoflop_optimum_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 4"):
        check_isoflop_optimum(stub(4))


def test_check_chinchilla_loss_passes_on_solution(capsys):
    check_chinchilla_loss(solution("chinchilla_loss"))
    assert capsys.readouterr().out.startswith("✅ TODO 5 chinchilla_loss: matches E + A/N^α + B/D^β")


def test_check_chinchilla_loss_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 5"):
        check_chinchilla_loss(stub(5))


def test_check_chinchilla_loss_catches_scalar_only_math():
    def scalar_only(n, d, E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28):
        return E + A / math.pow(float(n), alpha) + B / math.pow(float(d), beta)

    fails(check_chinchilla_loss, scalar_only, "elementwise numpy")


# ----------------------------------------------------------------------------------------------- TODO 6


def test_check_chinchilla_optimal_passes_on_solution(capsys):
    check_chinchilla_optimal(solution("chinchilla_optimal"))
    out = capsys.readouterr().out
    assert out.startswith("✅ TODO 6 chinchilla_optimal: matches scipy's minimisation")
    assert "93 tokens/parameter" in out


def test_check_chinchilla_optimal_says_not_done_on_the_stub():
    with pytest.raises(TodoNotDone, match="TODO 6"):
        check_chinchilla_optimal(stub(6))


