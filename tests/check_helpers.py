"""Helpers shared by the tests of every project's checks (tests/test_checks_NN_name.py).

Each check a learner sees is shown to pass on the solution, to say "not done yet" on the starter's stub, and
to fail on realistic bugs made by editing the solution's own source.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from shared.checks import CheckFailed
from shared.tooling.notebooks import solution_functions

ROOT = Path(__file__).resolve().parent.parent


def solution_loader(project: str) -> Callable[..., Any]:
    """``solution(*names, replace=None)`` for one project:
    several names give a dict, one name the function."""
    notebook = ROOT / project / "solution.ipynb"

    def solution(*names: str, replace: list[tuple[str, str]] | None = None) -> Any:
        found = solution_functions(notebook, list(names), replace=replace)
        return found if len(names) > 1 else found[names[0]]

    return solution


def stub(todo: int) -> Callable[..., Any]:
    """What an untouched starter function does: raise the TODO's NotImplementedError."""

    def fn(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"TODO {todo}: the starter's stub")

    return fn


def fails(check: Callable[..., Any], fn: Any, *hint_words: str) -> str:
    """Run ``check(fn)`` expecting a failure; assert the message names its TODO, has a hint, and contains
    each hint word. Returns the message."""
    with pytest.raises(CheckFailed) as info:
        check(fn)
    message = str(info.value)
    assert message.startswith(f"❌ TODO {check.todo} "), message
    assert "hint:" in message, message
    for word in hint_words:
        assert word in message, f"{word!r} not in:\n{message}"
    return message
