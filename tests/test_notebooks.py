"""shared/tooling/notebooks.py: starter generation, drift check, starter execution, solution loading."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shared.tooling import notebooks as nbt

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
    src = (
        "# TODO 1: a\n### BEGIN SOLUTION\na = 1\n### END SOLUTION\n"
        "# TODO 2: b\n### BEGIN SOLUTION\nb = 2\n### END SOLUTION"
    )
    out = nbt.make_starter_source(src)
    assert out == (
        "# TODO 1: a\nraise NotImplementedError('TODO 1: a')\n"
        "# TODO 2: b\nraise NotImplementedError('TODO 2: b')"
    )


def test_quotes_in_the_todo_text_stay_valid_python():
    out = nbt.make_starter_source(
        "# TODO 4: don't \"quote\" me\n### BEGIN SOLUTION\npass\n### END SOLUTION\n"
    )
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
    assert nbt.sync_starters(tmp_path).stale == [folder / "starter.ipynb"]
    first = (folder / "starter.ipynb").read_bytes()
    assert nbt.sync_starters(tmp_path, check=True).stale == []
    assert nbt.sync_starters(tmp_path).stale == []
    assert (folder / "starter.ipynb").read_bytes() == first  # byte-identical regeneration
    (folder / "starter.ipynb").write_text(first.decode().replace("x squared", "x cubed"))
    assert nbt.sync_starters(tmp_path, check=True).stale == [folder / "starter.ipynb"]


def test_sync_backs_up_a_starter_with_a_learners_edits_before_regenerating_it(tmp_path, capsys):
    folder = tmp_path / "97_demo"
    folder.mkdir()
    (folder / "solution.ipynb").write_text(json.dumps(_nb(("code", SOLUTION_CELL))))
    nbt.sync_starters(tmp_path)
    starter = folder / "starter.ipynb"
    mine = starter.read_text().replace(
        "raise NotImplementedError('TODO 3: return x squared')", "return x ** 2"
    )
    starter.write_text(mine)
    assert nbt.main(["sync", "--root", str(tmp_path)]) == 0
    backups = list((tmp_path / ".hardway" / "backups" / "97_demo").glob("starter-*.ipynb"))
    assert len(backups) == 1 and backups[0].read_text() == mine
    assert "saved first as .hardway/backups/97_demo/starter-" in capsys.readouterr().out
    assert "NotImplementedError('TODO 3" in starter.read_text()


def test_sync_does_not_back_up_a_starter_that_is_what_was_last_committed(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("needs git")
    folder = tmp_path / "96_demo"
    folder.mkdir()
    (folder / "solution.ipynb").write_text(json.dumps(_nb(("code", SOLUTION_CELL))))
    nbt.sync_starters(tmp_path)
    git = [
        "git", "-C", str(tmp_path),
        "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false",
    ]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "demo"], check=True)
    changed = _nb(("code", SOLUTION_CELL.replace("x squared", "x * x")))
    (folder / "solution.ipynb").write_text(json.dumps(changed))
    report = nbt.sync_starters(tmp_path)  # the solution changed; the starter is the committed one
    assert report.stale == [folder / "starter.ipynb"] and report.backups == {}
    assert not (tmp_path / ".hardway").exists()


def _committed_or_current(path: Path) -> str:
    text = nbt.committed_text(path, ROOT)
    return text if text is not None else path.read_text(encoding="utf-8")


@pytest.mark.parametrize("project", PROJECTS)
def test_every_committed_starter_is_what_its_committed_solution_generates(project):
    # The repository, not the learner: a starter filled in by hand in this checkout does not count here.
    # (Maintainers check the working tree with `make check-starters`.)
    solution = json.loads(_committed_or_current(ROOT / project / "solution.ipynb"))
    want = nbt.dumps_notebook(nbt.make_starter(solution, name=f"{project}/solution.ipynb"))
    assert _committed_or_current(ROOT / project / "starter.ipynb") == want, (
        f"{project}/starter.ipynb is not what its solution generates: "
        "maintainers run `make starters` and commit"
    )


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


def test_classify_excuses_an_error_from_a_value_an_unfinished_todo_left_half_made():
    # the cell that fills `weights` stopped at TODO 6, so the next cell indexes an empty list
    cells = [
        _code("weights = []\nweights.append(attend())", _error("NotImplementedError", "TODO 6: attend")),
        _code("print(weights[0])", _error("IndexError", "list index out of range")),
        _code("print(other[0])", _error("IndexError", "list index out of range")),
    ]
    report = nbt.classify_errors(Path("demo"), cells)
    assert [c.kind for c in report.cells] == ["todo", "cascade", "bad"]
    # a name that only a finished cell bound is whole: an error reading it is the cell's own
    cells = [_code("other = []"), *cells]
    report = nbt.classify_errors(Path("demo"), cells)
    assert [c.kind for c in report.cells] == ["ok", "todo", "cascade", "bad"]


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
    nb = _nb(
        ("code", "import math\nSCALE = 3\nheavy = compute()"),
        ("code", SOLUTION_CELL.replace("x * x", "SCALE * x * x")),
    )
    path.write_text(json.dumps(nb))
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
    # The starter the solution generates, run in the project's folder: a learner's edits to their own
    # starter.ipynb never make the suite fail.
    solution = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    report = nbt.run_starter(
        ROOT / project / "starter.ipynb", timeout=600, notebook=nbt.make_starter(solution)
    )
    assert report.ok, report.summary()


@pytest.mark.parametrize("project", PROJECTS)
def test_solution_keeps_outputs_and_stays_small(project):
    path = ROOT / project / "solution.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code")
    assert path.stat().st_size <= 3 * 1024 * 1024, f"{path} is over 3 MB"
    errors = [
        o
        for c in nb["cells"]
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if o["output_type"] == "error"
    ]
    assert not errors, f"{path} was saved with an error output"


# Stored warnings that name the kernel's temporary file (/tmp/ipykernel_585/538660186.py:16) tell the reader
# nothing and differ on every run.
_KERNEL_TEMP_FILE = re.compile(r"/ipykernel_\d+/\d+\.py:\d+")


@pytest.mark.parametrize("project", PROJECTS)
def test_solution_stores_no_warning_that_names_a_kernel_temp_file(project):
    nb = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    found = [
        i
        for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code"
        for o in c.get("outputs", [])
        if o["output_type"] == "stream" and _KERNEL_TEMP_FILE.search("".join(o.get("text", "")))
    ]
    assert not found, (
        f"{project}/solution.ipynb stores a warning that names the kernel's temporary file in cells {found}: "
        "fix its cause (e.g. fig.tight_layout() on a figure that already has a layout engine) and re-execute"
    )


NBVAL_TAGS = {"nbval-check-output", "nbval-ignore-output", "nbval-skip", "raises-exception"}


@pytest.mark.parametrize("project", PROJECTS)
def test_nbval_instructions_are_cell_tags_that_nbval_recognises_not_comments(project):
    # Tags keep the code a learner sees free of test markers, and a starter's code equal to its solution's.
    nb = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    for index, cell in enumerate(nb["cells"]):
        assert "NBVAL_" not in "".join(cell["source"]), (
            f"{project} cell {index}: use a cell tag, not a comment"
        )
        for tag in cell.get("metadata", {}).get("tags", []):
            assert not tag.startswith("nbval") or tag in NBVAL_TAGS, (
                f"{project} cell {index}: unknown tag {tag!r}"
            )


# ----------------------------------------------------------------------------- starters ask, solutions answer


def test_answer_cells_become_a_prompt_and_markers_and_kernel_name_are_normalised():
    answer = {"cell_type": "markdown", "metadata": {"tags": ["answer"]},
              "source": "**What happened.** 3.7 nats", "id": "a1"}
    solution = _nb(("markdown", "## Part 1"), ("code", "print(1)"), ("code", SOLUTION_CELL))
    solution["cells"][1]["metadata"]["tags"] = ["nbval-check-output", "keep-me"]
    solution["cells"].insert(1, answer)
    starter = nbt.make_starter(solution)
    texts = ["".join(c["source"]) for c in starter["cells"]]
    assert texts[0] == "## Part 1" and texts[1] == nbt.ANSWER_PROMPT
    assert texts[2] == "print(1)"
    assert starter["cells"][2]["metadata"]["tags"] == ["keep-me"]  # the test runner's tag is gone
    assert starter["metadata"]["kernelspec"]["display_name"] == "Python 3 (ipykernel)"
    printed = _nb(("code", SOLUTION_CELL), ("code", "print(f'1. It fell by {drop:.2f}')"))
    printed["cells"][1]["metadata"]["tags"] = ["answer"]  # answers printed from the measurements
    cell = nbt.make_starter(printed)["cells"][1]
    assert cell["cell_type"] == "markdown" and "".join(cell["source"]) == nbt.ANSWER_PROMPT
    assert "outputs" not in cell and "execution_count" not in cell
    printed["cells"][0]["metadata"]["tags"] = ["answer"]
    with pytest.raises(ValueError, match="cannot hold a TODO region"):
        nbt.make_starter(printed, name="demo.ipynb")


def _reflection_questions(project: str) -> list[str]:
    readme = (ROOT / project / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Reflection questions[^\n]*\n(.*?)(?=^## )", readme, re.M | re.S)
    assert section, f"{project}/README.md has no '## Reflection questions' section"
    items = re.split(r"^\d+\.\s+", section.group(1), flags=re.M)[1:]
    return [" ".join(item.split()) for item in items]


def _plain(text: str) -> str:
    return " ".join(text.replace("**", "").split())


@pytest.mark.parametrize("project", PROJECTS)
def test_starter_keeps_every_question_and_none_of_the_answers(project):
    solution = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    starter = nbt.make_starter(solution)
    answers = [_plain("".join(c["source"])) for c in solution["cells"] if nbt.is_answer_cell(c)]
    answers += [_plain("".join(o.get("text", ""))) for c in solution["cells"] if nbt.is_answer_cell(c)
                for o in c.get("outputs", []) if o.get("output_type") == "stream"]
    assert answers, (
        f"{project}: no cell of the solution is tagged 'answer' "
        "(its conclusions would show in the starter)"
    )
    shown = _plain("\n".join("".join(c["source"]) for c in starter["cells"]))
    for answer in answers:
        assert answer not in shown
    questions = _reflection_questions(project)
    assert len(questions) >= 3
    for question in questions:
        assert _plain(question) in shown, f"{project}: README question not in the starter: {question!r}"


# ----------------------------------------------------------------------------- deterministic output checks


@pytest.mark.parametrize(
    "text, bad",
    [
        ("✅ TODO 5 forward_cached: ... max abs err 1.4e-06; length advanced", ["1.4e-06"]),  # measured error
        ("✅ TODO 7 train: loss 2.74 -> 1.92 in 79 steps", ["2.74", "1.92"]),  # measured losses
        ("cosine within topics 0.99 vs across 0.12", ["0.99", "0.12"]),  # 'within' must stand right before it
        ("✅ max abs err ≤ 1e-05; 12288 bytes; 4 × (a, a)", []),  # a bound met, exact counts
        ("p = 0.9, 0.5 and 1.0; rate 0.15 ± 0.01; error < 0.02; log 9 = 2.197", []),  # exact values, bounds
        ("matches to 1e-09 and 1.0e-09; C = 1e18", []),  # powers of ten
    ],
)
def test_unstable_numbers_flags_measured_floats_and_allows_bounds_and_exact_values(text, bad):
    assert nbt.unstable_numbers(text) == bad


def test_unstable_numbers_allows_a_number_the_check_writes_as_an_input():
    assert nbt.unstable_numbers("capacity factors 1.0, 1.25", literals="for cf in (1.0, 1.25):") == []


def test_a_deliberately_unrounded_checked_output_is_caught():
    nb = _nb(("code", "check(f)"), ("code", "print(err)"))
    nb["cells"][0]["metadata"]["tags"] = ["nbval-check-output"]
    nb["cells"][0]["outputs"] = [{"output_type": "stream", "name": "stdout",
                                  "text": "✅ TODO 5 forward_cached: max abs err 1.5e-06\n"}]
    unchecked = {"output_type": "stream", "name": "stdout", "text": "1.4e-06\n"}
    nb["cells"][1]["outputs"] = [unchecked]
    problems = nbt.checked_output_problems(nb, name="demo.ipynb")
    assert len(problems) == 1 and "demo.ipynb cell 0" in problems[0] and "1.5e-06" in problems[0]
    nb["cells"][0]["outputs"][0]["text"] = "✅ TODO 5 forward_cached: max abs err ≤ 1e-05\n"
    assert nbt.checked_output_problems(nb) == []


@pytest.mark.parametrize("project", PROJECTS)
def test_checked_cells_print_only_what_is_identical_on_every_machine(project):
    solution = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    literals = (ROOT / "shared" / "checks" / f"{project[3:]}.py").read_text(encoding="utf-8")
    assert nbt.checked_output_problems(solution, literals, name=f"{project}/solution.ipynb") == []


def _internals_used(source: str) -> list[str]:
    """What a solution cell does that reaches past the shared model's public API (issue 17's rule)."""
    found = []
    if re.search(r"\bglobals\(\)", source):
        found.append("swaps or reads functions through globals()")
    if re.search(r"\.register_forward(_pre)?_hook\(", source):
        found.append("hooks a module of the model to read its states (use GPT.record)")
    try:
        tree = ast.parse(source)
    except SyntaxError:  # IPython magics: nothing of the model's API in them
        return found
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", "") == "GPT" for b in node.bases):
            for item in node.body:
                name = getattr(item, "name", "")
                if isinstance(item, ast.FunctionDef) and name.startswith("_") and not name.endswith("__"):
                    found.append(f"overrides the private GPT.{name} (use mask_fn or record)")
        if isinstance(node, (ast.Assign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                on_attn = isinstance(t, ast.Attribute) and isinstance(t.value, ast.Attribute)
                if on_attn and t.value.attr == "attn":
                    found.append(f"sets the ad-hoc attribute .attn.{t.attr} on a shared module")
    return found


def test_the_internals_rule_catches_what_it_forbids():
    bad = (
        "class M(GPT):\n    def _attention_bias(self, *a):\n        pass\n"
        "block.attn.qkv_mode = 'swap'\n"
        "model.transformer.ln_f.register_forward_hook(f)\n"
        "globals().update(f=g)\n"
    )
    assert len(_internals_used(bad)) == 4
    assert _internals_used("with model.record(hidden=True) as rec:\n    model(x)\n") == []


@pytest.mark.parametrize("project", PROJECTS)
def test_no_solution_reaches_into_the_models_internals(project):
    nb = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    problems = [
        f"cell {i}: {what}"
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code"
        for what in _internals_used("".join(cell["source"]))
    ]
    assert problems == []
