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
        assert f"]({folder.name}/)" in row, (
            f"{doc}: project {number} exists but its row does not link {folder.name}/"
        )
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
    contributing = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    for target, doc in [("lab", readme), ("test", readme), ("dashboard", readme), ("starters", contributing),
                        ("check-starters", contributing)]:
        assert f"make {target}" in doc
        assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no '{target}' target"


def test_the_readme_speaks_to_the_learner_first():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## (.+)$", readme, re.M)
    assert headings[:5] == [
        "Quickstart", "The journey", "How a project works", "Check your work", "Troubleshooting"
    ]
    # maintainers' commands belong in CONTRIBUTING
    assert "make starters" not in readme and "shared.tooling.notebooks sync" not in readme
    assert "⚠️ not checked" in readme  # every status `hardway check` prints is explained


EXISTING = [folder for number in NUMBERS if (folder := _folder(number)) is not None]


@pytest.mark.parametrize("folder", EXISTING, ids=lambda f: f.name)
def test_project_readmes_keep_maintainer_commands_out_of_the_learners_block(folder):
    text = (folder / "README.md").read_text(encoding="utf-8")
    assert "shared.tooling.notebooks sync" not in text and "make starters" not in text, (
        f"{folder.name}/README.md: regenerating starters overwrites the learner's; "
        "it belongs in CONTRIBUTING.md"
    )


_LEVELS = ("Beginner", "Intermediate", "Advanced")


def _readme_hours(folder: Path) -> list[str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Time estimate\s*\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert section, f"{folder.name}/README.md has no '## Time estimate' section"
    hours = []
    for level in _LEVELS:
        line = re.search(rf"^- {level}[^:]*:\s*(.*)$", section.group(1), re.M)
        assert line, f"{folder.name}/README.md: no '- {level}...:' line in its time estimate"
        m = re.match(r"(about |under )?(an|[\d.]+(?:–[\d.]+)?) hours?", line.group(1))
        assert m, f"{folder.name}/README.md: cannot read the hours in {line.group(1)!r}"
        hours.append(f"{m.group(1) or ''}{'1' if m.group(2) == 'an' else m.group(2)} h")
    return hours


@pytest.mark.parametrize("folder", EXISTING, ids=lambda f: f.name)
def test_index_time_estimates_agree_with_each_project_readme(folder):
    index = (ROOT / "INDEX.md").read_text(encoding="utf-8")
    number, name = folder.name.split("_", 1)
    rows = [line for line in index.splitlines() if line.startswith(f"| {number} · {name} |")]
    assert len(rows) == 1, f"INDEX.md: expected one time-estimate row for {number} · {name}"
    assert [c.strip() for c in rows[0].strip("|").split("|")[1:]] == _readme_hours(folder)


def test_streamlit_usage_statistics_are_off():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert config["browser"]["gatherUsageStats"] is False
    assert "--browser.gatherUsageStats false" in (ROOT / "Makefile").read_text(encoding="utf-8")


def _modules() -> list[str]:
    """Every module of the shared package as a dotted name, e.g. shared.model, shared.checks.compare."""
    found = []
    for path in sorted((ROOT / "shared").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] in ("__init__", "__main__"):
            continue
        found.append(".".join(parts))
    return found


def test_the_module_map_names_every_module_of_the_package():
    import shared

    text = shared.__doc__
    project_checks = {f"shared.checks.{p.name[3:]}" for p in ROOT.glob("[0-9][0-9]_*")}
    for module in _modules():
        if module in project_checks:  # named once, as shared.checks.<project>
            continue
        leaf = module.split(".")[-1]
        assert f"``{module}``" in text or (module.count(".") == 2 and f"``{leaf}``" in text), (
            f"{module} is missing from the module map in shared/__init__.py"
        )


def test_the_readme_layout_shows_every_file_of_the_package():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme[readme.index("## Layout"):]
    for path in sorted((ROOT / "shared").glob("*.py")):
        if path.name not in ("__init__.py", "__main__.py"):
            assert f"  {path.name} " in layout, f"shared/{path.name} is missing from README's Layout"
    for package in ("checks/", "tooling/"):
        assert f"  {package} " in layout
