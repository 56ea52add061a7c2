"""README.md and INDEX.md say what exists now: existing projects linked, the rest marked coming."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NUMBERS = [f"{n:02d}" for n in range(1, 17)]


def _folder(number: str) -> Path | None:
    found = sorted(ROOT.glob(f"{number}_*/solution.ipynb"))
    return found[0].parent if found else None


def _row(text: str, number: str) -> str:
    rows = [line for line in text.splitlines() if re.match(rf"^\| {number} \|", line)]
    assert len(rows) == 1, f"expected exactly one table row for project {number}, found {len(rows)}"
    return rows[0]


@pytest.mark.parametrize("doc", ["README.md", "INDEX.md"])
@pytest.mark.parametrize("number", NUMBERS)
def test_journey_tables_link_only_projects_that_exist(doc, number):
    row = _row((ROOT / doc).read_text(encoding="utf-8"), number)
    folder = _folder(number)
    if folder is not None:
        assert f"]({folder.name}/)" in row, f"{doc}: project {number} exists but its row does not link {folder.name}/"
        assert "coming" not in row
    else:
        assert "](" not in row, f"{doc}: project {number} does not exist yet but its row links somewhere"
        assert "coming" in row


def test_every_existing_project_has_readme_solution_and_starter():
    for number in NUMBERS:
        folder = _folder(number)
        if folder is not None:
            for name in ("README.md", "solution.ipynb", "starter.ipynb"):
                assert (folder / name).exists(), f"{folder.name}/{name} is missing"


def test_readme_quickstart_commands_exist_in_the_makefile():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in ("lab", "test", "starters", "check-starters"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no '{target}' target"
