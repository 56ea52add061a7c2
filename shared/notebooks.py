"""Notebook tooling: starters generated from solutions, starter execution, solution functions for tests.

``solution.ipynb`` is the source of truth. In it, every piece the learner writes sits in a region::

    def merge(ids, pair, new_id):
        \"\"\"...docstring with shapes, maths and a hint...\"\"\"
        # TODO 2: replace every non-overlapping occurrence of `pair` in `ids` by `new_id`
        ### BEGIN SOLUTION
        ...
        ### END SOLUTION

The nearest ``# TODO n: text`` line above a region labels it. In the generated ``starter.ipynb`` the region
becomes ``raise NotImplementedError("TODO n: text")`` at the region's indentation, all outputs are cleared,
and everything else is kept byte for byte. Generation is deterministic, so ``--check`` can fail on drift.

Command line::

    python -m shared.notebooks sync            # regenerate every NN_*/starter.ipynb
    python -m shared.notebooks sync --check    # exit 1 if any starter is out of date
    python -m shared.notebooks run-starter 01_byte_pair_smith/starter.ipynb
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_TODO_LABEL = re.compile(r"^\s*# TODO (\d+): (.+?)\s*$")
_TODO_IN_ERROR = re.compile(r"TODO (\d+)")
_NAME_ERROR = re.compile(r"name '([^']+)' is not defined")
ROOT = Path(__file__).resolve().parent.parent

__all__ = [
    "BEGIN",
    "END",
    "make_starter_source",
    "make_starter",
    "project_dirs",
    "sync_starters",
    "run_starter",
    "StarterReport",
    "solution_functions",
]


# ----------------------------------------------------------------------------- starter generation


def make_starter_source(source: str, where: str = "cell") -> str:
    """Replace each solution region of one cell's source by its TODO stub.

    Raises ValueError (naming ``where``) for an unclosed region or a region with no ``# TODO n:`` label.
    """
    lines = source.splitlines(keepends=True)
    out: list[str] = []
    label: tuple[str, str] | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _TODO_LABEL.match(line)
        if m:
            label = (m.group(1), m.group(2))
        if line.strip() == BEGIN:
            if label is None:
                raise ValueError(f"{where}: '{BEGIN}' at line {i + 1} has no '# TODO n: text' line above it")
            try:
                end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == END)
            except StopIteration:
                raise ValueError(f"{where}: '{BEGIN}' at line {i + 1} has no matching '{END}'") from None
            indent = line[: len(line) - len(line.lstrip())]
            message = f"TODO {label[0]}: {label[1]}"
            newline = "\n" if lines[end].endswith("\n") else ""
            out.append(f"{indent}raise NotImplementedError({message!r}){newline}")
            i = end + 1
            continue
        if line.strip() == END:
            raise ValueError(f"{where}: '{END}' at line {i + 1} has no '{BEGIN}' before it")
        out.append(line)
        i += 1
    return "".join(out)


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def make_starter(solution: dict[str, Any], name: str = "solution.ipynb") -> dict[str, Any]:
    """The starter notebook (as a JSON dict) for a solution notebook dict."""
    nb = copy.deepcopy(solution)
    regions = 0
    for index, cell in enumerate(nb["cells"]):
        src = _source(cell)
        if cell["cell_type"] == "code":
            if BEGIN in src:
                regions += 1
                src = make_starter_source(src, where=f"{name} cell {index}")
            cell["outputs"] = []
            cell["execution_count"] = None
        cell["source"] = src.splitlines(keepends=True)
        meta = cell.get("metadata", {})
        for key in ("execution", "collapsed", "scrolled"):
            meta.pop(key, None)
    if regions == 0:
        raise ValueError(f"{name}: no '{BEGIN}' regions, so the starter would have nothing to do")
    nb.setdefault("metadata", {}).pop("widgets", None)
    return nb


def dumps_notebook(nb: dict[str, Any]) -> str:
    """The canonical JSON text of a notebook (what nbformat writes): stable, so regeneration is byte-identical."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def atomic_write_text(path: Path, text: str) -> None:
    """Write text so that a crash leaves either the old file or the new one, never half of either."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a starter is an ordinary, shareable file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def project_dirs(root: Path = ROOT) -> list[Path]:
    """Project folders ``NN_name`` that hold a ``solution.ipynb``, in order."""
    return sorted(p.parent for p in root.glob("[0-9][0-9]_*/solution.ipynb"))


def sync_starters(root: Path = ROOT, check: bool = False) -> list[Path]:
    """Regenerate every starter (or, with ``check``, only report them). Returns the out-of-date starters."""
    stale: list[Path] = []
    for folder in project_dirs(root):
        solution_path = folder / "solution.ipynb"
        starter_path = folder / "starter.ipynb"
        solution = json.loads(solution_path.read_text(encoding="utf-8"))
        text = dumps_notebook(make_starter(solution, name=str(solution_path.relative_to(root))))
        current = starter_path.read_text(encoding="utf-8") if starter_path.exists() else None
        if current != text:
            stale.append(starter_path)
            if not check:
                atomic_write_text(starter_path, text)
    return stale


# ----------------------------------------------------------------------------- starter execution


@dataclass
class CellResult:
    index: int
    kind: str  # "ok" | "todo" | "cascade" | "bad"
    ename: str = ""
    evalue: str = ""
    source_head: str = ""


@dataclass
class StarterReport:
    """What happened when a starter ran top to bottom with errors allowed."""

    path: Path
    cells: list[CellResult] = field(default_factory=list)
    stub_todos: set[int] = field(default_factory=set)
    raised_todos: set[int] = field(default_factory=set)

    @property
    def bad(self) -> list[CellResult]:
        return [c for c in self.cells if c.kind == "bad"]

    @property
    def ok(self) -> bool:
        """Clean up to the first TODO, every later error from an unfinished TODO, and every TODO reached."""
        return not self.bad and bool(self.stub_todos) and self.stub_todos <= self.raised_todos

    def summary(self) -> str:
        lines = [f"{self.path}: {'OK' if self.ok else 'FAILED'}"]
        for c in self.cells:
            if c.kind != "ok":
                lines.append(f"  cell {c.index} [{c.kind}] {c.ename}: {c.evalue[:160]}  <- {c.source_head!r}")
        missing = self.stub_todos - self.raised_todos
        if missing:
            lines.append(f"  TODOs never reached (no error mentions them): {sorted(missing)}")
        if not self.stub_todos:
            lines.append("  no TODO stubs found")
        return "\n".join(lines)


def _bound_names(source: str) -> set[str]:
    """Names a cell binds at any level (a superset is fine: used only to excuse cascading NameErrors)."""
    code = "\n".join(
        "" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()
    )
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
    return names


def classify_errors(
    path: Path, cells: list[dict[str, Any]], solution_cells: list[dict[str, Any]] | None = None
) -> StarterReport:
    """Classify each executed code cell's error (see :meth:`StarterReport.ok`).

    ``solution_cells`` (the solution's cells, same order) tell which names a failed TODO cell would
    have bound had it been finished, so that NameErrors for them count as cascades.
    """
    if solution_cells is not None and len(solution_cells) != len(cells):
        solution_cells = None
    report = StarterReport(path=path)
    failed_names: set[str] = set()
    seen_todo = False
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        report.stub_todos |= {int(n) for n in re.findall(r'NotImplementedError\([\'"]TODO (\d+):', src)}
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        head = src.strip().splitlines()[0] if src.strip() else ""
        if not errors:
            report.cells.append(CellResult(index, "ok", source_head=head))
            continue
        ename, evalue = errors[0].get("ename", ""), errors[0].get("evalue", "")
        todo = _TODO_IN_ERROR.search(evalue)
        missing = _NAME_ERROR.search(evalue)
        if ename in ("NotImplementedError", "TodoNotDone") and todo:
            kind = "todo"
            seen_todo = True
            report.raised_todos.add(int(todo.group(1)))
        elif seen_todo and ename == "NameError" and missing and missing.group(1) in failed_names:
            kind = "cascade"
        else:
            kind = "bad"
        failed_names |= _bound_names(src)
        if solution_cells is not None:
            failed_names |= _bound_names(_source(solution_cells[index]))
        report.cells.append(CellResult(index, kind, ename, evalue, head))
    return report


def run_starter(path: str | Path, timeout: int = 600) -> StarterReport:
    """Execute a starter top to bottom with errors allowed and classify every error.

    A starter passes when it runs cleanly up to its first TODO, every later error is an unfinished TODO
    (the stub itself, or a check saying "TODO n is not done yet") or a NameError for a value that an
    unfinished cell never produced, and every TODO stub is reached.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    solution_path = path.parent / "solution.ipynb"
    solution_cells = None
    if solution_path.exists():
        solution_cells = json.loads(solution_path.read_text(encoding="utf-8"))["cells"]
    return classify_errors(path, nb["cells"], solution_cells)


# ----------------------------------------------------------------------------- solution functions for tests


def solution_functions(
    notebook: str | Path,
    names: list[str],
    replace: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """Load named top-level functions (and the imports they need) from a trusted solution notebook.

    Tests use it to show that a check passes on the solution and fails on a realistic bug: ``replace`` is a
    list of ``(old, new)`` source edits, each of which must match exactly once, that turn the solution
    into the buggy variant. Only ``import`` statements, assignments of literal constants and the named
    ``def``s are taken from the notebook's own code cells in this repository.
    """
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in code.splitlines())
    tree = ast.parse(code)
    keep: list[str] = []
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            keep.append(ast.get_source_segment(code, node) or "")
        elif isinstance(node, ast.FunctionDef) and node.name in names:
            keep.append(ast.get_source_segment(code, node) or "")
            found.add(node.name)
        elif (
            isinstance(node, ast.Assign)
            and all(isinstance(t, ast.Name) and t.id.isupper() for t in node.targets)
            and _is_literal(node.value)
        ):
            keep.append(ast.get_source_segment(code, node) or "")
    if set(names) - found:
        raise ValueError(f"{notebook}: no top-level function(s) {sorted(set(names) - found)}")
    source = "\n\n".join(keep)
    for old, new in replace or []:
        count = source.count(old)
        if count != 1:
            raise ValueError(f"edit {old!r} matches {count} times in {sorted(names)}; it must match exactly once")
        source = source.replace(old, new)
    namespace: dict[str, Any] = {"__name__": f"solution_of_{Path(notebook).parent.name}"}
    exec(compile(source, str(notebook), "exec"), namespace)  # noqa: S102 - our own repository's notebook
    return {n: namespace[n] for n in names}


def _is_literal(node: ast.AST) -> bool:
    """A literal constant, or a compiled pattern such as ``regex.compile(r"...")`` of one."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "compile"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in ("re", "regex")
    ):
        return all(_is_literal(a) for a in node.args)
    try:
        ast.literal_eval(node)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.notebooks", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="regenerate every NN_*/starter.ipynb from its solution.ipynb")
    sync.add_argument("--check", action="store_true", help="only report out-of-date starters (exit 1 if any)")
    sync.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    run = sub.add_parser("run-starter", help="execute a starter and classify its errors")
    run.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "sync":
        try:
            stale = sync_starters(args.root, check=args.check)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        verb = "out of date" if args.check else "regenerated"
        for path in stale:
            print(f"{verb}: {path.relative_to(args.root)}")
        if args.check and stale:
            print("run `python -m shared.notebooks sync` to regenerate them", file=sys.stderr)
            return 1
        print(f"{len(project_dirs(args.root))} starter(s) checked, {len(stale)} {verb}")
        return 0
    report = run_starter(args.path)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
