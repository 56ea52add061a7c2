"""The mutation catalogue: realistic learner bugs, each a textual edit of a solution function, with the hint
its check must give; and known-correct variants that every check must accept.

One module per project, ``tests/catalogue/cNN_<name>.py``, defines ``CATALOGUE``, a list of :class:`Todo`
(one per TODO of the project). ``tests/test_mutation_catalogue.py`` runs every entry: each edit must apply
to the solution's source exactly once, each mutant must fail its check with ``❌ TODO n`` and every one of
its hint words, and each correct variant must pass (print its ✅ line).

A mutant is named for the bug (what a learner wrote), not for the check's symptom, and carries one of the
bug classes in :data:`BUG_CLASSES`, so the catalogue shows which classes each TODO covers.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# The classes of realistic learner bugs the catalogue covers (issue: mutation catalogue). A mutant names one.
BUG_CLASSES = (
    "axis",  # wrong axis or dim, transposed layout, wrong reshape order
    "off-by-one",  # slicing, ranges, shifts, lengths
    "scale",  # missing or wrong scale, normaliser, constant, sign
    "in-place",  # mutates its inputs or shares storage it should copy
    "grad",  # detach / no-grad mistakes, gradients through what should be constant, missing zero_grad
    "state",  # state carried across calls, or not carried where it must be
    "argument",  # an argument ignored or hard-coded to its default
    "positions",  # positions not starting at 0, offsets ignored
    "shape",  # fails on batch 1, length 1, odd or non-square sizes
    "dtype",  # wrong dtype, integer division, rounding, casting
    "stability",  # overflow / underflow on large inputs
    "branch",  # a branch of a multi-step function wrong or skipped (beta > 0, k > 1, masks, ...)
    "logic",  # the algorithm itself wrong (wrong formula, wrong order of steps, wrong rule)
    "validation",  # bad input accepted silently
)

Edits = list[tuple[str, str]]


@dataclass(frozen=True)
class Mutant:
    """A realistic bug: ``edits`` turn the solution into what a learner wrote; its check must fail with a
    message that contains every word of ``hint``.

    ``setup(fns)`` may patch the loaded functions' globals before the check runs (e.g. to plant a wrong
    earlier TODO that this one calls)."""

    name: str
    bug_class: str
    edits: Edits
    hint: tuple[str, ...]
    setup: Callable[[dict[str, Any]], None] | None = None

    def __post_init__(self) -> None:
        if self.bug_class not in BUG_CLASSES:
            raise ValueError(f"mutant {self.name!r}: bug_class {self.bug_class!r} is not one of "
                             f"{BUG_CLASSES}")
        if not self.hint or isinstance(self.hint, str):
            raise ValueError(f"mutant {self.name!r}: hint must be a non-empty tuple of words")
        if not self.edits and self.setup is None:
            raise ValueError(f"mutant {self.name!r}: needs edits or a setup")


@dataclass(frozen=True)
class Correct:
    """A correct alternative a learner may write: ``edits`` of the solution that its check must accept."""

    name: str
    edits: Edits


@dataclass(frozen=True)
class Todo:
    """One TODO: its check, the solution functions to load (``functions``; the check gets ``target``, by
    default the last of them), and its mutants and correct variants.

    ``run(check, fns)`` replaces the default call ``check(fns[target])`` for checks that take more than the
    learner's function."""

    project: str
    todo: int
    check: Callable[..., None]
    functions: tuple[str, ...]
    mutants: list[Mutant]
    correct: list[Correct] = field(default_factory=list)
    target: str | None = None
    run: Callable[[Callable[..., None], dict[str, Any]], None] | None = None

    @property
    def key(self) -> str:
        return f"p{self.project[:2]}_todo{self.todo}"

    def call(self, fns: dict[str, Any]) -> None:
        if self.run is not None:
            self.run(self.check, fns)
        else:
            self.check(fns[self.target or self.functions[-1]])


def load() -> list[Todo]:
    """Every project's catalogue, in project and TODO order."""
    todos: list[Todo] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("c") and info.name[1:3].isdigit():
            todos.extend(importlib.import_module(f"{__name__}.{info.name}").CATALOGUE)
    return todos
