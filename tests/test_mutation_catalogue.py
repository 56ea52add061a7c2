"""The mutation catalogue (tests/catalogue/): every realistic bug caught with its hint, every correct variant
accepted, every TODO covered.

Each mutant is a textual edit of the solution notebook's own function (``solution_functions(...,
replace=edits)``); an edit that no longer matches the solution fails here, so the catalogue cannot drift
from the notebooks. CONTRIBUTING states the catalogue's size and score; a test keeps that statement true.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections import Counter

import pytest
from catalogue import BUG_CLASSES, Correct, Mutant, Todo, load
from check_helpers import ROOT, stub

import shared.checks
from shared.checks import CheckFailed, TodoNotDone
from shared.tooling.notebooks import solution_functions

CATALOGUE = load()
MIN_MUTANTS = 6  # per TODO


def _functions(todo: Todo, edits: list[tuple[str, str]]) -> dict:
    return solution_functions(ROOT / todo.project / "solution.ipynb", list(todo.functions), replace=edits)


MUTANTS = [(t, m) for t in CATALOGUE for m in t.mutants]
CORRECT = [(t, c) for t in CATALOGUE for c in t.correct]


# A mutant is a learner's bug: the deprecation warnings that some bugs trigger (k.T on a batched tensor) are
# part of the bug, not of the test run.
@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("todo", "mutant"), MUTANTS, ids=[f"{t.key}-{m.name}" for t, m in MUTANTS])
def test_mutant_is_caught_with_its_hint(todo: Todo, mutant: Mutant, capsys):
    fns = _functions(todo, mutant.edits)
    if mutant.setup is not None:
        mutant.setup(fns)
    with pytest.raises(CheckFailed) as info:
        todo.call(fns)
    message = str(info.value)
    assert message.startswith(f"❌ TODO {todo.todo} "), message
    assert "hint:" in message, message
    missing = [w for w in mutant.hint if w not in message]
    assert not missing, f"{missing} not in the message:\n{message}"
    assert "✅" not in capsys.readouterr().out


@pytest.mark.parametrize(("todo", "variant"), CORRECT, ids=[f"{t.key}-{c.name}" for t, c in CORRECT])
def test_correct_variant_passes(todo: Todo, variant: Correct, capsys):
    todo.call(_functions(todo, variant.edits))
    assert capsys.readouterr().out.startswith(f"✅ TODO {todo.todo} ")


@pytest.mark.parametrize("todo", CATALOGUE, ids=[t.key for t in CATALOGUE])
def test_solution_passes_and_the_stub_is_not_done(todo: Todo, capsys):
    fns = _functions(todo, [])
    todo.call(fns)
    assert capsys.readouterr().out.startswith(f"✅ TODO {todo.todo} ")
    fns[todo.target or todo.functions[-1]] = stub(todo.todo)
    with pytest.raises(TodoNotDone, match=f"TODO {todo.todo} "):
        todo.call(fns)


def _all_checks() -> dict[tuple[str, int], str]:
    """(checks module, TODO number) -> check name, for every learner check in shared/checks."""
    found = {}
    for info in pkgutil.iter_modules(shared.checks.__path__):
        module = importlib.import_module(f"shared.checks.{info.name}")
        for name, fn in vars(module).items():
            if name.startswith("check_") and hasattr(fn, "todo") and fn.__module__ == module.__name__:
                found[(info.name, fn.todo)] = name
    return found


def test_every_todo_has_its_catalogue_entry_with_enough_mutants_and_a_correct_variant():
    entries = Counter((t.check.__module__.rsplit(".", 1)[1], t.todo) for t in CATALOGUE)
    assert not [k for k, n in entries.items() if n > 1], "one catalogue entry per TODO"
    checks = _all_checks()
    missing = sorted(set(checks) - set(entries))
    assert not missing, f"TODOs without a catalogue entry: {[checks[k] for k in missing]}"
    for t in CATALOGUE:
        assert t.check.todo == t.todo, f"{t.key}: its check is bound to TODO {t.check.todo}"
        assert len(t.mutants) >= MIN_MUTANTS, f"{t.key}: {len(t.mutants)} mutants, at least {MIN_MUTANTS}"
        assert t.correct, f"{t.key}: no correct variant"
        names = [m.name for m in t.mutants] + [c.name for c in t.correct]
        assert len(set(names)) == len(names), f"{t.key}: duplicate names"


def test_contributing_states_the_catalogue_size_and_score():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    m = re.search(r"catalogue\s+holds\s+\*\*([\d,]+)\s+mutants\*\*\s+and\s+\*\*([\d,]+)\s+correct\s+"
                  r"variants\*\*\s+over\s+(\d+)\s+TODOs", text)
    assert m, "CONTRIBUTING.md must state the catalogue's size"
    stated = tuple(int(g.replace(",", "")) for g in m.groups())
    assert stated == (len(MUTANTS), len(CORRECT), len(CATALOGUE)), f"stated {stated}"


def test_bug_classes_used_are_known():
    used = {m.bug_class for _, m in MUTANTS}
    assert used <= set(BUG_CLASSES)
