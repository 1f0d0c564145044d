"""Grade submitted notebooks into a gradebook.

Each submission runs in its own process and its own fresh kernel (nbclient), with a per-cell timeout and a
hard wall-clock limit for the whole notebook. The grader does not trust anything the notebook prints:

* every ``check("id", answer)`` call is rewritten to a recorder that the grader injects *before* the
  learner's code; the recorder holds the genuine checkers and writes each verdict to a file whose path the
  notebook never sees in its source, so redefining ``check`` changes nothing;
* code that reaches into ``klcourse`` internals (monkeypatching a checker or the registry) is detected
  statically and voids that submission's results, with the reason recorded.

Broken or hostile submissions — an infinite loop, a crash (``os._exit``, a segfault), a syntax error, a deleted
check cell, a file that is not a notebook — are recorded with a reason and never stop the others. The gradebook
is written atomically (a temporary file renamed into place), and always.

Grading runs submitted code with your privileges: for an untrusted class, run it inside a container.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

RECORDER = "__klcourse_record__"
RESULTS_ENV = "KLCOURSE_GRADE_RESULTS"

_RECORDER_CELL = f'''
def __klcourse_make_recorder():
    import json, os
    from klcourse.exercises import core
    core._load_chapters()
    checkers = {{key: exercise.checker for key, exercise in core._REGISTRY.items()}}
    out = open(os.environ.pop("{RESULTS_ENV}"), "a", buffering=1)
    def record(exercise_id, answer=..., *args, **kwargs):
        if exercise_id not in checkers:
            out.write(json.dumps({{"exercise_id": exercise_id, "status": "invalid", "passed": False,
                                   "message": "unknown exercise id"}}) + "\\n")
            return None
        if answer is ... or answer is None:
            verdict = dict(passed=False, status="not answered", message="Not answered yet.")
        else:
            try:
                v = checkers[exercise_id](answer)
                verdict = dict(passed=bool(v.passed), status=v.status, message=v.message)
            except BaseException as exc:
                verdict = dict(passed=False, status="invalid", message=f"checker failed: {{type(exc).__name__}}")
        out.write(json.dumps(dict(exercise_id=exercise_id, **verdict)) + "\\n")
        print(("PASS " if verdict["passed"] else "FAIL ") + exercise_id + ": " + verdict["message"])
    return record
{RECORDER} = __klcourse_make_recorder()
del __klcourse_make_recorder
'''


@dataclass
class Row:
    """One gradebook line: a submission's result on one exercise."""

    submission: str
    exercise: str
    passed: bool
    status: str
    message: str


@dataclass
class Submission:
    path: str
    assigned: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> int:
        return sum(r.passed for r in self.rows)


# ------------------------------------------------------------------------------------------ static analysis
def _cell_source(cell) -> str:
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


class _CheckRewriter(ast.NodeTransformer):
    """``check("id", answer)`` → ``__klcourse_record__("id", answer)``; remembers the ids."""

    def __init__(self):
        self.ids: list[str] = []

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        is_check = (isinstance(func, ast.Name) and func.id == "check") or (
            isinstance(func, ast.Attribute) and func.attr == "check"
        )
        if is_check and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            self.ids.append(node.args[0].value)
            node.func = ast.copy_location(ast.Name(RECORDER, ast.Load()), func)
        return node


def _klcourse_aliases(trees) -> set[str]:
    """Names a notebook binds to klcourse modules or objects (``import klcourse as kl``, ``from klcourse import x``)."""
    names = {"klcourse"}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names |= {(a.asname or a.name).split(".")[0] for a in node.names if a.name.startswith("klcourse")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("klcourse"):
                names |= {a.asname or a.name for a in node.names}
    return names - {"check"}


def _root_name(node):
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _tampering(tree: ast.AST, aliases: set[str]) -> list[str]:
    """Reasons to distrust a cell: it writes into klcourse, reaches for its private parts, or the recorder."""
    reasons = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id.startswith("__klcourse"):
            reasons.append("touches the grader's recorder")
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and _root_name(node) in aliases | {"sys"}:
            text = ast.unparse(node)
            if isinstance(node.ctx, (ast.Store, ast.Del)):
                reasons.append(f"assigns to {text}")
            elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                reasons.append(f"uses klcourse internals ({text})")
            elif "sys.modules" in text:
                reasons.append("changes sys.modules")
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"setattr", "delattr"}:
            reasons.append(f"calls {node.func.id}()")
    return sorted(set(reasons))


def _redefines_check(tree: ast.AST) -> bool:
    """Whether a cell binds the name ``check`` to anything but klcourse's own."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "check":
            return True
        if isinstance(node, ast.Name) and node.id == "check" and isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith("klcourse"):
            if any((alias.asname or alias.name) == "check" for alias in node.names):
                return True
    return False


def prepare(nb) -> tuple[object, dict]:
    """Rewrite a submission for grading; returns the notebook to run and what the analysis found."""
    import nbformat

    found = {"check_ids": [], "tampering": [], "redefines_check": False, "syntax_errors": []}
    trees = {}
    for index, cell in enumerate(nb.cells):
        if cell.get("cell_type") != "code":
            continue
        try:
            trees[index] = ast.parse(_cell_source(cell))
        except SyntaxError as exc:
            found["syntax_errors"].append(f"cell {index}: {exc.msg} (line {exc.lineno})")
    aliases = _klcourse_aliases(trees.values())
    for index, tree in trees.items():
        cell = nb.cells[index]
        found["tampering"] += [f"cell {index} {why}" for why in _tampering(tree, aliases)]
        found["redefines_check"] |= _redefines_check(tree)
        rewriter = _CheckRewriter()
        tree = rewriter.visit(tree)
        if rewriter.ids:
            found["check_ids"] += rewriter.ids
            cell["source"] = ast.unparse(ast.fix_missing_locations(tree))
        cell["outputs"], cell["execution_count"] = [], None
    nb.cells.insert(0, nbformat.v4.new_code_cell(_RECORDER_CELL))
    return nb, found


# ------------------------------------------------------------------------------------------ one submission
def run_submission(path: str, timeout: float) -> dict:
    """Execute one submission (in this process's child kernel) and return what was recorded.

    Meant to run inside a worker process (``python -m klcourse.grading --worker``), so that a hang or a crash
    of the machinery itself cannot take the grader down.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        return {"error": f"not a valid notebook ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"}
    metadata_assigned = list(nb.metadata.get("klcourse", {}).get("exercises", []))
    nb, found = prepare(nb)
    events: list[str] = []

    def on_cell_executed(cell, cell_index, execute_reply):
        content = execute_reply.get("content", {})
        if content.get("status") == "error":
            events.append(f"cell {cell_index - 1} raised {content.get('ename')}: {str(content.get('evalue'))[:100]}")

    with tempfile.TemporaryDirectory(prefix="klcourse-grade-") as workdir:
        results_file = Path(workdir) / ".results.jsonl"
        results_file.touch()
        os.environ[RESULTS_ENV] = str(results_file)
        client = NotebookClient(
            nb,
            timeout=int(timeout),
            kernel_name="python3",
            allow_errors=True,
            interrupt_on_timeout=True,
            error_on_timeout={"ename": "Timeout", "evalue": f"cell ran longer than {timeout:g} s", "traceback": []},
            record_timing=False,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": workdir}},
            on_cell_executed=on_cell_executed,
        )
        crash = None
        try:
            client.execute()
        except DeadKernelError:
            crash = "the kernel died (a crash: os._exit, a segfault or running out of memory)"
        except Exception as exc:  # anything else nbclient raises: record, don't stop
            crash = f"execution stopped: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
        finally:
            os.environ.pop(RESULTS_ENV, None)
        recorded = [json.loads(line) for line in results_file.read_text().splitlines() if line.strip()]
    return {
        "recorded": recorded,
        "found": found,
        "events": events,
        "crash": crash,
        "metadata_assigned": metadata_assigned,
    }


def _run_worker(path: str, timeout: float, hard_limit: float) -> dict:
    cmd = [sys.executable, "-m", "klcourse.grading", "--worker", str(path), "--timeout", str(timeout)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=hard_limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and its kernel
        proc.communicate()
        return {"error": f"the notebook did not finish within {hard_limit:g} s (killed)"}
    if proc.returncode != 0 or not out.strip():
        last = (err.strip().splitlines() or ["no output"])[-1][:160]
        return {"error": f"the grading worker failed ({last})"}
    return json.loads(out.strip().splitlines()[-1])


def _count_code_cells(path: str) -> int:
    try:
        with open(path, encoding="utf-8") as fh:
            return sum(c.get("cell_type") == "code" for c in json.load(fh).get("cells", []))
    except Exception:
        return 0


# ------------------------------------------------------------------------------------------ verdicts
def _assignment(outcome: dict, exercises) -> list[str]:
    from klcourse.exercises import list_exercises

    if exercises:
        return list(exercises)
    assigned = outcome.get("metadata_assigned") or []
    if assigned:
        return assigned
    chapters = {e.split(".")[0] for e in outcome.get("found", {}).get("check_ids", [])}
    return [e.id for e in list_exercises() if e.chapter in chapters]


def build_rows(path: str, outcome: dict, exercises=None) -> Submission:
    """Turn a worker's outcome into one gradebook row per assigned exercise."""
    name = Path(path).name
    sub = Submission(path=name)
    if "error" in outcome:
        sub.assigned = list(exercises or [])
        sub.notes.append(outcome["error"])
        sub.rows = [Row(name, e, False, "error", outcome["error"]) for e in sub.assigned]
        if not sub.rows:
            sub.rows = [Row(name, "*", False, "error", outcome["error"])]
        return sub
    found = outcome["found"]
    sub.assigned = _assignment(outcome, exercises)
    last = {r["exercise_id"]: r for r in outcome["recorded"]}
    void = found["tampering"]
    if void:
        sub.notes.append("tampering: " + "; ".join(void))
    if found["redefines_check"]:
        sub.notes.append("redefines check() (ignored: the grader records answers itself)")
    if found["syntax_errors"]:
        sub.notes.append("syntax errors: " + "; ".join(found["syntax_errors"]))
    if outcome.get("crash"):
        sub.notes.append(outcome["crash"])
    events = outcome["events"]
    sub.notes += events[:3] + ([f"(+{len(events) - 3} more errors)"] if len(events) > 3 else [])
    for exercise in sub.assigned:
        if void:
            row = Row(name, exercise, False, "tampered", "not graded: the notebook modifies the checker")
        elif exercise in last:
            r = last[exercise]
            row = Row(name, exercise, bool(r["passed"]), r["status"], r["message"])
        elif exercise not in found["check_ids"]:
            row = Row(name, exercise, False, "missing", "no check cell for this exercise (deleted?)")
        else:
            why = outcome.get("crash") or _explain_missing(outcome["events"]) or "its check cell did not run"
            row = Row(name, exercise, False, "error", why)
        sub.rows.append(row)
    return sub


def _explain_missing(events: list[str]) -> str:
    return events[-1] if events else ""


# ------------------------------------------------------------------------------------------ the gradebook
def expand_submissions(paths) -> list[str]:
    """Files named directly, and every non-hidden file inside named folders (sorted)."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += [str(f) for f in sorted(p.iterdir()) if f.is_file() and not f.name.startswith(".")]
        elif p.exists():
            out.append(str(p))
        else:
            raise ValueError(f"no such submission: {p}")
    return out


def grade(paths, out_csv, *, timeout: float = 60, jobs: int = 1, exercises=None, progress=True) -> list[Submission]:
    """Grade every submission and write ``out_csv`` (rows) and ``<out>_summary.csv`` (scores).

    Parameters
    ----------
    paths : iterable of str or Path
        Notebook files, or folders of them.
    out_csv : str or Path
        The gradebook: one row per submission and exercise (submission, exercise, passed, status, message).
    timeout : float
        Per-cell time limit in seconds; a whole notebook gets ``timeout × code cells + 120`` s at most.
    jobs : int
        Submissions graded in parallel.
    exercises : list of str, optional
        The assignment; by default the exercises the student edition lists in its metadata.
    """
    if timeout <= 0 or jobs < 1:
        raise ValueError("timeout must be > 0 and jobs >= 1")
    files = expand_submissions(paths)
    results: dict[str, Submission] = {}
    bar = _Progress(len(files), enabled=progress)

    def one(path):
        hard = timeout * max(_count_code_cells(path), 1) + 120
        try:
            outcome = _run_worker(path, timeout, hard)
        except Exception as exc:  # never let one submission stop the rest
            outcome = {"error": f"grading failed: {type(exc).__name__}: {exc}"}
        return build_rows(path, outcome, exercises)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {pool.submit(one, f): f for f in files}
        for future in as_completed(futures):
            sub = future.result()
            results[futures[future]] = sub
            bar.step(f"{sub.path}: {sub.score}/{len(sub.assigned)}")
    ordered = [results[f] for f in files]
    _assign_unreadable(ordered)
    write_gradebook(ordered, out_csv)
    return ordered


def _assign_unreadable(submissions: list[Submission]) -> None:
    """Give a submission that could not be read the class's assignment, so it scores 0 out of the right total."""
    from collections import Counter

    counts = Counter(tuple(s.assigned) for s in submissions if s.assigned)
    if not counts:
        return
    assignment = list(counts.most_common(1)[0][0])
    for sub in submissions:
        if not sub.assigned and sub.rows and sub.rows[0].exercise == "*":
            reason = sub.rows[0].message
            sub.assigned = assignment
            sub.rows = [Row(sub.path, e, False, "error", reason) for e in assignment]


def write_gradebook(submissions: list[Submission], out_csv) -> tuple[Path, Path]:
    out_csv = Path(out_csv)
    summary = out_csv.with_name(out_csv.stem + "_summary.csv")
    _atomic_csv(out_csv, ["submission", "exercise", "passed", "status", "message"],
                [list(asdict(r).values()) for s in submissions for r in s.rows])
    _atomic_csv(summary, ["submission", "score", "assigned", "notes"],
                [[s.path, s.score, len(s.assigned), " | ".join(s.notes)] for s in submissions])
    return out_csv, summary


def _atomic_csv(path: Path, header, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            writer.writerows(rows)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, enabled: bool = True, width: int = 30):
        self.total, self.done, self.enabled, self.width = total, 0, enabled, width

    def step(self, label: str) -> None:
        self.done += 1
        if not self.enabled:
            return
        filled = int(self.width * self.done / max(self.total, 1))
        end = "\n" if self.done == self.total or not sys.stderr.isatty() else ""
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {label}"[:200]
                         + end)
        sys.stderr.flush()


def _worker_main(argv=None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m klcourse.grading")
    parser.add_argument("--worker", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    print(json.dumps(run_submission(args.worker, args.timeout)))


if __name__ == "__main__":
    _worker_main()
