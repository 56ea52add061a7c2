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
and the test runner's cell tags (``nbval-check-output`` ...) are dropped.

Starters ask, solutions answer: a cell of the solution tagged ``answer`` (a conclusion drawn from the
measurements above it, or the answers to the reflection questions; markdown, or a code cell that prints
them) becomes the markdown cell :data:`ANSWER_PROMPT` in the starter. Everything else is kept byte for
byte. Generation is deterministic, so ``--check`` can fail on drift.

Command line (maintainers; learners use ``hardway reset NN`` for a fresh starter)::

    python -m shared.tooling.notebooks sync            # regenerate every NN_*/starter.ipynb
                                                       # (edited ones are backed up)
    python -m shared.tooling.notebooks sync --check    # exit 1 if any starter is out of date
    python -m shared.tooling.notebooks run-starter 01_byte_pair_smith/starter.ipynb
"""

from __future__ import annotations

import argparse
import ast
import copy
import datetime as dt
import functools
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.utils import TODO_LABEL, TODO_NUMBER, atomic_write_text

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
_NAME_ERROR = re.compile(r"name '([^']+)' is not defined")
CHECK_OUTPUT_TAG = "nbval-check-output"  # nbval compares the output of a cell with this tag in CI
ROOT = Path(__file__).resolve().parents[2]  # shared/tooling/notebooks.py -> the repository root
ANSWER_TAG = "answer"
ANSWER_PROMPT = (
    "**What do you see?** Write it down here before you open the solution. "
    "*(This cell holds the solution's conclusion in `solution.ipynb`.)*"
)
KERNELSPEC = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}

__all__ = [
    "BEGIN",
    "END",
    "ANSWER_TAG",
    "ANSWER_PROMPT",
    "is_answer_cell",
    "backup_notebook",
    "committed_text",
    "make_starter_source",
    "make_starter",
    "project_dirs",
    "sync_starters",
    "run_starter",
    "StarterReport",
    "solution_functions",
    "unstable_numbers",
    "checked_output_problems",
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
        m = TODO_LABEL.match(line)
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


def is_answer_cell(cell: dict[str, Any]) -> bool:
    """True for a cell tagged ``answer``: a conclusion or reflection answer that the starter must not show."""
    return ANSWER_TAG in cell.get("metadata", {}).get("tags", [])


def _drop_nbval_tags(meta: dict[str, Any]) -> None:
    tags = [t for t in meta.get("tags", []) if not t.startswith(("nbval-", "raises-exception"))]
    if tags:
        meta["tags"] = tags
    else:
        meta.pop("tags", None)


def make_starter(solution: dict[str, Any], name: str = "solution.ipynb") -> dict[str, Any]:
    """The starter notebook (as a JSON dict) for a solution notebook dict."""
    nb = copy.deepcopy(solution)
    regions = 0
    for index, cell in enumerate(nb["cells"]):
        src = _source(cell)
        if is_answer_cell(cell):
            if BEGIN in src:
                raise ValueError(
                    f"{name} cell {index}: a cell tagged {ANSWER_TAG!r} cannot hold a TODO region"
                )
            # an answer printed by a code cell (from the measured numbers) becomes the same markdown
            # prompt
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
            cell["cell_type"] = "markdown"
            src = ANSWER_PROMPT
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
        _drop_nbval_tags(meta)
    if regions == 0:
        raise ValueError(f"{name}: no '{BEGIN}' regions, so the starter would have nothing to do")
    metadata = nb.setdefault("metadata", {})
    metadata.pop("widgets", None)
    metadata["kernelspec"] = dict(KERNELSPEC)  # what JupyterLab writes, so opening it marks nothing modified
    return nb


def dumps_notebook(nb: dict[str, Any]) -> str:
    """The canonical JSON text of a notebook (what nbformat writes).

    Stable, so regeneration is byte-identical.
    """
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def project_dirs(root: Path = ROOT) -> list[Path]:
    """Project folders ``NN_name`` that hold a ``solution.ipynb``, in order."""
    return sorted(p.parent for p in root.glob("[0-9][0-9]_*/solution.ipynb"))


def committed_text(path: Path, root: Path = ROOT) -> str | None:
    """The text of ``path`` as committed at ``HEAD`` of the git checkout at ``root``; None outside git."""
    try:
        rel = path.resolve().relative_to(root.resolve()).as_posix()
        done = subprocess.run(
            ["git", "-C", str(root), "show", f"HEAD:{rel}"], capture_output=True, timeout=30, check=False
        )
    except (ValueError, OSError, subprocess.SubprocessError):
        return None
    return done.stdout.decode("utf-8") if done.returncode == 0 else None


def backup_notebook(path: Path, backups: Path) -> Path:
    """Copy a learner's notebook to ``<backups>/<project folder>/<stem>-<time>.ipynb`` and verify the copy."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    backup = backups / path.parent.name / f"{path.stem}-{stamp}{path.suffix}"
    backup.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, backup)
    if backup.read_bytes() != path.read_bytes():
        raise OSError(f"could not verify the backup {backup}; {path} was left untouched")
    return backup


@dataclass
class SyncReport:
    """What :func:`sync_starters` found: the starters that were out of date, and the backups it made."""

    stale: list[Path] = field(default_factory=list)
    backups: dict[Path, Path] = field(default_factory=dict)


def sync_starters(root: Path = ROOT, check: bool = False) -> SyncReport:
    """Regenerate every starter (or, with ``check``, only report the out-of-date ones).

    A starter about to be overwritten that is not what was last generated (it differs from the committed
    starter, or there is no git checkout to ask) may hold a learner's work: it is first copied to
    ``<root>/.hardway/backups/`` (where ``hardway reset`` keeps its backups too) and the copy verified.
    """
    report = SyncReport()
    for folder in project_dirs(root):
        solution_path = folder / "solution.ipynb"
        starter_path = folder / "starter.ipynb"
        solution = json.loads(solution_path.read_text(encoding="utf-8"))
        text = dumps_notebook(make_starter(solution, name=str(solution_path.relative_to(root))))
        current = starter_path.read_text(encoding="utf-8") if starter_path.exists() else None
        if current == text:
            continue
        report.stale.append(starter_path)
        if check:
            continue
        if current is not None and current != committed_text(starter_path, root):
            report.backups[starter_path] = backup_notebook(starter_path, root / ".hardway" / "backups")
        atomic_write_text(starter_path, text)
    return report


# ----------------------------------------------------------------------------- deterministic output checks
#
# The rule for a cell tagged ``nbval-check-output`` (nbval compares its output with the stored one in CI,
# at whatever thread count, CPU and torch version CI has): it prints only what is identical everywhere —
# exact counts, shapes and token ids, exact results, the check's own constants and inputs, and bounds met
# ("max abs err ≤ 1e-05", "within 0.0045", "< 0.02"), never a measured floating-point value, whose last
# digits move with the order of floating-point sums. A measured value that a learner should see goes in a
# cell whose output is not checked.

_FLOAT = re.compile(r"(?<![\w.])[-+−]?(?:\d[\d,]*\.\d+(?:e[-+]?\d+)?|\d+e[-+]?\d+)(?![\w])", re.I)
_POWER_OF_TEN = re.compile(r"^[-+−]?1(?:\.0+)?e[-+]?\d+$", re.I)
_LIST_TAIL = re.compile(r"(?:[-+−]?[\d.,]+(?:e[-+]?\d+)?\s*(?:,|and|or|-|–|/)\s*)+$", re.I)
_BOUND_BEFORE = re.compile(
    r"(?:=|<|≤|(?<!-)>|≥|±|\bwithin|\bat most|\bat least|\bbelow|\bunder|\babove)\s*[(\[]?\s*$", re.I
)
_TOLERANCE_AFTER = re.compile(r"^\s*±")


def unstable_numbers(text: str, literals: str = "") -> list[str]:
    """The floating-point numbers in ``text`` that break the rule for checked output (see above).

    Allowed: integers; powers of ten (``1e-05``: an order of magnitude or a tolerance); a number after
    ``=``, a comparison or ``within``/``at most``/... (an exact value or a bound met), or before ``±``
    (a target with its tolerance), also as the later items of a list (``p = 0.9, 0.5 and 1.0``); a number
    written as such in ``literals`` (the source of the cell and of its checks: an input, not a result).
    """
    written = set(_FLOAT.findall(literals))
    bad: list[str] = []
    for m in _FLOAT.finditer(text):
        token = m.group(0)
        if _POWER_OF_TEN.match(token) or token in written or _TOLERANCE_AFTER.match(text[m.end():]):
            continue
        line = text[: m.start()].rsplit("\n", 1)[-1][-80:]
        if _BOUND_BEFORE.search(_LIST_TAIL.sub("", line)):
            continue
        bad.append(token)
    return bad


def _output_text(cell: dict[str, Any]) -> str:
    """The text a code cell printed or displayed (stream output and text/plain results)."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            text = out.get("text", "")
        else:
            text = out.get("data", {}).get("text/plain", "")
        parts.append("".join(text) if isinstance(text, list) else text)
    return "".join(parts)


def checked_output_problems(nb: dict[str, Any], literals: str = "", name: str = "notebook") -> list[str]:
    """One line per ``nbval-check-output`` cell whose stored output prints a measured float."""
    problems = []
    for index, cell in enumerate(nb["cells"]):
        src = _source(cell)
        if cell["cell_type"] != "code" or CHECK_OUTPUT_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        bad = unstable_numbers(_output_text(cell), literals + "\n" + src)
        if bad:
            problems.append(
                f"{name} cell {index} is output-checked but prints measured value(s) {bad}: print the bound "
                f"they meet (shared.checks.within) or drop its {CHECK_OUTPUT_TAG!r} tag"
            )
    return problems


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


def without_magics(source: str) -> str:
    """A code cell's source with its IPython magic and shell lines (``%``/``!``) blanked, so that it parses
    as Python (line numbers kept)."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())


def _parse_cell(source: str) -> ast.AST | None:
    """A code cell's syntax tree with its IPython magics (``%``/``!`` lines) blanked.

    None if it does not parse.
    """
    code = without_magics(source)
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


def _bound_names(source: str) -> set[str]:
    """Names a cell binds at any level (a superset is fine: used only to excuse cascading NameErrors)."""
    tree = _parse_cell(source)
    names: set[str] = set()
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                names.add((alias.asname or alias.name).split(".")[0])
    return names


def _loaded_names(source: str) -> set[str]:
    """Names a cell reads (used only to excuse errors that follow from an unfinished TODO)."""
    tree = _parse_cell(source)
    if tree is None:
        return set()
    return {
        node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }


def classify_errors(
    path: Path, cells: list[dict[str, Any]], solution_cells: list[dict[str, Any]] | None = None
) -> StarterReport:
    """Classify each executed code cell's error (see :meth:`StarterReport.ok`).

    After the first unfinished TODO, an error counts as a cascade when it is a NameError for a name that a
    failed cell would have bound, or any other error (not a SyntaxError) in a cell that reads a name that
    only failed cells bound.

    ``solution_cells`` (the solution's cells, same order) tell which names a failed TODO cell would
    have bound had it been finished, so that NameErrors for them count as cascades.
    """
    if solution_cells is not None and len(solution_cells) != len(cells):
        solution_cells = None
    report = StarterReport(path=path)
    failed_names: set[str] = set()
    ok_names: set[str] = set()  # bound by a cell that ran to the end: their values are whole
    seen_todo = False
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        src = _source(cell)
        report.stub_todos |= {int(n) for n in re.findall(r'NotImplementedError\([\'"]TODO (\d+):', src)}
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        head = src.strip().splitlines()[0] if src.strip() else ""
        if not errors:
            ok_names |= _bound_names(src)
            report.cells.append(CellResult(index, "ok", source_head=head))
            continue
        ename, evalue = errors[0].get("ename", ""), errors[0].get("evalue", "")
        todo = TODO_NUMBER.search(evalue)
        missing = _NAME_ERROR.search(evalue)
        if ename in ("NotImplementedError", "TodoNotDone") and todo:
            kind = "todo"
            seen_todo = True
            report.raised_todos.add(int(todo.group(1)))
        elif seen_todo and ename == "NameError" and missing and missing.group(1) in failed_names:
            kind = "cascade"
        elif seen_todo and ename != "SyntaxError" and _loaded_names(src) & (failed_names - ok_names):
            # it reads a value that a cell stopped by an unfinished TODO left half-made (an empty list,
            # a stale tensor): a consequence of that TODO, not a new error
            kind = "cascade"
        else:
            kind = "bad"
        failed_names |= _bound_names(src)
        if solution_cells is not None:
            failed_names |= _bound_names(_source(solution_cells[index]))
        report.cells.append(CellResult(index, kind, ename, evalue, head))
    return report


def run_starter(
    path: str | Path, timeout: int = 600, notebook: dict[str, Any] | None = None
) -> StarterReport:
    """Execute a starter top to bottom with errors allowed and classify every error.

    ``notebook`` (a starter as a dict, e.g. freshly made by :func:`make_starter`) is run instead of the
    file at ``path``, in ``path``'s folder: the test suite runs what the repository generates, not a
    learner's copy.

    A starter passes when it runs cleanly up to its first TODO, every later error is an unfinished TODO
    (the stub itself, or a check saying "TODO n is not done yet") or a NameError for a value that an
    unfinished cell never produced, and every TODO stub is reached.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    if notebook is None:
        nb = nbformat.read(path, as_version=4)
    else:
        # as if read from a file: sources as strings
        nb = nbformat.reads(dumps_notebook(notebook), as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
        config=kernel_config(),
    )
    client.execute()
    solution_path = path.parent / "solution.ipynb"
    solution_cells = None
    if solution_path.exists():
        solution_cells = json.loads(solution_path.read_text(encoding="utf-8"))["cells"]
    return classify_errors(path, nb["cells"], solution_cells)


def kernel_config() -> Any:
    """Configuration for the kernels that our tools start: talk to them over local IPC sockets, not
    unencrypted TCP ports on 127.0.0.1 (ipykernel warns about those on every start), except on Windows,
    where ZeroMQ has no IPC transport."""
    import tempfile
    import uuid

    from traitlets.config import Config

    if os.name == "nt":
        return Config()
    # an absolute prefix for the socket files: the kernel runs in the project's folder, the client here
    prefix = Path(tempfile.gettempdir()) / f"hardway-kernel-{uuid.uuid4().hex[:12]}"
    return Config({"KernelManager": {"transport": "ipc", "ip": str(prefix)}})


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
    path = Path(notebook)
    code, tree = _solution_code(str(path.resolve()), path.stat().st_mtime_ns)
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
            raise ValueError(
                f"edit {old!r} matches {count} times in {sorted(names)}; it must match exactly once"
            )
        source = source.replace(old, new)
    namespace: dict[str, Any] = {"__name__": f"solution_of_{Path(notebook).parent.name}"}
    exec(compile(source, str(notebook), "exec"), namespace)  # noqa: S102 - our own repository's notebook
    return {n: namespace[n] for n in names}


@functools.lru_cache(maxsize=32)
def _solution_code(path: str, mtime_ns: int) -> tuple[str, ast.Module]:
    """A notebook's code cells as one module's source and its syntax tree (cached per file version: the
    mutation catalogue loads the same solution hundreds of times)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    code = without_magics(code)
    return code, ast.parse(code)


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
    parser = argparse.ArgumentParser(
        prog="python -m shared.tooling.notebooks", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sync = sub.add_parser("sync", help="regenerate every NN_*/starter.ipynb from its solution.ipynb")
    sync.add_argument("--check", action="store_true", help="only report out-of-date starters (exit 1 if any)")
    sync.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this checkout)")
    run = sub.add_parser("run-starter", help="execute a starter and classify its errors")
    run.add_argument("path")
    args = parser.parse_args(argv)
    if args.command == "sync":
        try:
            report = sync_starters(args.root, check=args.check)
        except (ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        verb = "out of date" if args.check else "regenerated"
        for path in report.stale:
            print(f"{verb}: {path.relative_to(args.root)}")
            if path in report.backups:
                print(f"  it held edits: saved first as {report.backups[path].relative_to(args.root)}")
        if args.check and report.stale:
            print("maintainers: `make starters` regenerates them (edited starters are backed up first)",
                  file=sys.stderr)
            return 1
        print(f"{len(project_dirs(args.root))} starter(s) checked, {len(report.stale)} {verb}")
        return 0
    report = run_starter(args.path)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
