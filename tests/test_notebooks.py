"""shared/notebooks.py: starter generation, drift check, starter execution, solution loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared import notebooks as nbt

ROOT = Path(__file__).resolve().parent.parent
PROJECTS = [p.name for p in nbt.project_dirs(ROOT)]


def _nb(*cells: tuple[str, str]) -> dict:
    return {
        "cells": [
            {"cell_type": kind, "metadata": {}, "source": src, "id": f"c{i}",
             **({"outputs": [{"output_type": "stream", "name": "stdout", "text": "x"}], "execution_count": 3}
                if kind == "code" else {})}
            for i, (kind, src) in enumerate(cells)
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


SOLUTION_CELL = (
    "def f(x):\n"
    '    """Doc."""\n'
    "    # TODO 3: return x squared\n"
    "    ### BEGIN SOLUTION\n"
    "    y = x * x\n"
    "    return y\n"
    "    ### END SOLUTION\n"
)


def test_region_becomes_numbered_stub_at_region_indentation():
    out = nbt.make_starter_source(SOLUTION_CELL)
    assert out == (
        "def f(x):\n"
        '    """Doc."""\n'
        "    # TODO 3: return x squared\n"
        "    raise NotImplementedError('TODO 3: return x squared')\n"
    )


def test_top_level_region_and_two_regions_in_one_cell():
    src = "# TODO 1: a\n### BEGIN SOLUTION\na = 1\n### END SOLUTION\n# TODO 2: b\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION"
    out = nbt.make_starter_source(src)
    assert out == (
        "# TODO 1: a\nraise NotImplementedError('TODO 1: a')\n"
        "# TODO 2: b\nraise NotImplementedError('TODO 2: b')"
    )


def test_quotes_in_the_todo_text_stay_valid_python():
    out = nbt.make_starter_source("# TODO 4: don't \"quote\" me\n### BEGIN SOLUTION\npass\n### END SOLUTION\n")
    compile(out, "cell", "exec")
    assert "TODO 4: don't \"quote\" me" in out


@pytest.mark.parametrize(
    "src, message",
    [
        ("### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "no '# TODO n: text' line above it"),
        ("# TODO 1: a\n### BEGIN SOLUTION\nx = 1\n", "has no matching"),
        ("x = 1\n### END SOLUTION\n", "has no '### BEGIN SOLUTION' before it"),
    ],
)
def test_malformed_regions_are_refused_with_the_cell_named(src, message):
    with pytest.raises(ValueError, match=message) as err:
        nbt.make_starter_source(src, where="demo.ipynb cell 7")
    assert "demo.ipynb cell 7" in str(err.value)


def test_starter_clears_outputs_keeps_everything_else():
    solution = _nb(("markdown", "# Title"), ("code", "import math"), ("code", SOLUTION_CELL))
    starter = nbt.make_starter(solution)
    assert [c["cell_type"] for c in starter["cells"]] == ["markdown", "code", "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in starter["cells"][1:])
    assert "".join(starter["cells"][1]["source"]) == "import math"
    assert "NotImplementedError('TODO 3" in "".join(starter["cells"][2]["source"])
    assert solution["cells"][1]["outputs"], "the solution itself must not be modified"


def test_solution_without_regions_is_refused():
    with pytest.raises(ValueError, match="no '### BEGIN SOLUTION' regions"):
        nbt.make_starter(_nb(("code", "x = 1")))


def test_sync_is_deterministic_and_check_reports_drift(tmp_path):
    folder = tmp_path / "99_demo"
    folder.mkdir()
    (folder / "solution.ipynb").write_text(json.dumps(_nb(("code", SOLUTION_CELL))))
    assert nbt.sync_starters(tmp_path) == [folder / "starter.ipynb"]
    first = (folder / "starter.ipynb").read_bytes()
    assert nbt.sync_starters(tmp_path, check=True) == []
    assert nbt.sync_starters(tmp_path) == []
    assert (folder / "starter.ipynb").read_bytes() == first  # byte-identical regeneration
    (folder / "starter.ipynb").write_text(first.decode().replace("x squared", "x cubed"))
    assert nbt.sync_starters(tmp_path, check=True) == [folder / "starter.ipynb"]


def test_command_line_sync_check_exits_1_on_drift_and_0_after_sync(tmp_path, capsys):
    folder = tmp_path / "98_demo"
    folder.mkdir()
    (folder / "solution.ipynb").write_text(json.dumps(_nb(("code", SOLUTION_CELL))))
    assert nbt.main(["sync", "--check", "--root", str(tmp_path)]) == 1
    assert "out of date: 98_demo/starter.ipynb" in capsys.readouterr().out
    assert nbt.main(["sync", "--root", str(tmp_path)]) == 0
    assert nbt.main(["sync", "--check", "--root", str(tmp_path)]) == 0
    (folder / "solution.ipynb").write_text(json.dumps(_nb(("code", "x = 1"))))
    assert nbt.main(["sync", "--root", str(tmp_path)]) == 2
    assert "no '### BEGIN SOLUTION' regions" in capsys.readouterr().err


def test_every_committed_starter_is_in_sync_with_its_solution():
    stale = nbt.sync_starters(ROOT, check=True)
    assert stale == [], f"run `python -m shared.notebooks sync`: {stale}"


def _error(ename: str, evalue: str) -> list[dict]:
    return [{"output_type": "error", "ename": ename, "evalue": evalue, "traceback": []}]


def _code(src: str, outputs: list[dict] | None = None) -> dict:
    return {"cell_type": "code", "source": src, "outputs": outputs or [], "metadata": {}}


def test_classify_accepts_todo_errors_and_their_cascades():
    cells = [
        _code("import math"),
        _code("def f():\n    raise NotImplementedError('TODO 1: f')"),
        _code("check(f)", _error("TodoNotDone", "TODO 1 (f) is not done yet")),
        _code("raise NotImplementedError('TODO 2: y')", _error("NotImplementedError", "TODO 2: y")),
        _code("print(y)", _error("NameError", "name 'y' is not defined")),
    ]
    solution = [dict(c) for c in cells]
    solution[3] = _code("y = 1")
    report = nbt.classify_errors(Path("demo"), cells, solution)
    assert report.ok, report.summary()
    assert [c.kind for c in report.cells] == ["ok", "ok", "todo", "todo", "cascade"]


@pytest.mark.parametrize(
    "cells",
    [
        # an error before the first TODO (a wrong path, an ImportError ...)
        [_code("import nope", _error("ModuleNotFoundError", "No module named 'nope'")),
         _code("raise NotImplementedError('TODO 1: a')", _error("NotImplementedError", "TODO 1: a"))],
        # a NameError for a name no unfinished cell would have made (a typo in the starter)
        [_code("raise NotImplementedError('TODO 1: a')", _error("NotImplementedError", "TODO 1: a")),
         _code("print(typo)", _error("NameError", "name 'typo' is not defined"))],
        # a TODO stub that nothing ever reaches
        [_code("def g():\n    raise NotImplementedError('TODO 2: g')"),
         _code("raise NotImplementedError('TODO 1: a')", _error("NotImplementedError", "TODO 1: a"))],
        # a SyntaxError in a later cell
        [_code("raise NotImplementedError('TODO 1: a')", _error("NotImplementedError", "TODO 1: a")),
         _code("x = (", _error("SyntaxError", "incomplete input"))],
        # no TODO at all
        [_code("x = 1")],
    ],
)
def test_classify_rejects_errors_that_are_not_unfinished_todos(cells):
    report = nbt.classify_errors(Path("demo"), cells)
    assert not report.ok, report.summary()


def test_solution_functions_loads_defs_and_applies_exact_edits(tmp_path):
    path = tmp_path / "solution.ipynb"
    path.write_text(json.dumps(_nb(("code", "import math\nSCALE = 3\nheavy = compute()"), ("code", SOLUTION_CELL.replace("x * x", "SCALE * x * x")))))
    f = nbt.solution_functions(path, ["f"])["f"]
    assert f(2) == 12
    bug = nbt.solution_functions(path, ["f"], replace=[("SCALE * x * x", "SCALE * x")])["f"]
    assert bug(2) == 6
    with pytest.raises(ValueError, match="matches 0 times"):
        nbt.solution_functions(path, ["f"], replace=[("not there", "")])
    with pytest.raises(ValueError, match="no top-level function"):
        nbt.solution_functions(path, ["missing"])


@pytest.mark.parametrize("project", PROJECTS)
def test_starter_runs_cleanly_until_its_first_todo(project):
    report = nbt.run_starter(ROOT / project / "starter.ipynb", timeout=600)
    assert report.ok, report.summary()


@pytest.mark.parametrize("project", PROJECTS)
def test_solution_keeps_outputs_and_stays_small(project):
    path = ROOT / project / "solution.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    assert path.stat().st_size <= 3 * 1024 * 1024, f"{path} is over 3 MB"
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"{path} was saved with an error output"


NBVAL_MARKERS = {"NBVAL_CHECK_OUTPUT", "NBVAL_IGNORE_OUTPUT", "NBVAL_SKIP", "NBVAL_RAISES_EXCEPTION"}


@pytest.mark.parametrize("project", PROJECTS)
def test_nbval_markers_are_exact_lines_that_nbval_recognises(project):
    # nbval only honours a marker written as the whole comment line; "# NBVAL_CHECK_OUTPUT: why" is ignored.
    nb = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        for line in "".join(cell["source"]).splitlines():
            if "NBVAL_" in line:
                assert line.strip().lstrip("#").strip() in NBVAL_MARKERS, f"{project} cell {index}: {line!r}"
