"""The program that runs *inside* a sandbox: execute one notebook, record its answers as data.

``python -m klcourse.instructor.worker`` reads its job from stdin (JSON: the notebook, the cell time limit and
the cases of the function exercises — no file is shared with the grader or with other submissions), runs
the code cells in order in one IPython shell (a per-cell time limit; errors are recorded and the next cell
runs), and writes JSON lines to its *original* stdout — the only channel the grader reads:

* ``{"kind": "answer", "id": ..., "data": ...}`` for each ``check("id", answer)`` call (rewritten to the
  recorder before the cell runs); ``data`` is plain data (:mod:`klcourse.instructor.datacodec`). For a
  function exercise the recorder calls the function on the cases the grader passed in the job and
  records the *outputs* (numbers or arrays, or ``"raised <Exception>: <message>"``);
* ``{"kind": "event", "text": ...}`` for a cell that raised or timed out;
* ``{"kind": "done"}`` at the end.

Nothing here decides anything: no expected value, no verdict (the registered checkers are replaced by stubs
before the notebook runs). A notebook can overwrite the recorder or write
to the channel itself; all it can then claim is *some answer*, which the grader judges like any other.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import sys

RECORDER = "__klcourse_record__"
#: Functions whose first argument is an exercise id and second the answer.
CHECK_NAMES = ("check", "check_variant")


class CellTimeout(BaseException):
    """Raised in a cell that runs longer than its limit."""


class _CheckRewriter(ast.NodeTransformer):
    """``check("id", answer)`` -> ``__klcourse_record__("id", answer)``; remembers the ids."""

    def __init__(self):
        self.ids: list[str] = []

    def visit_Call(self, node):
        self.generic_visit(node)
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        first = node.args[0] if node.args else None
        if name in CHECK_NAMES and isinstance(first, ast.Constant) and isinstance(first.value, str):
            self.ids.append(first.value)
            node.func = ast.copy_location(ast.Name(RECORDER, ast.Load()), func)
            node.args, node.keywords = node.args[:2], [k for k in node.keywords if k.arg == "answer"]
        return node


def _ids_in(source: str) -> list[str]:
    import re

    return re.findall(r"""check(?:_variant)?\(\s*["']([\w.-]+)["']""", source)


def rewrite(source: str) -> tuple[str, list[str]]:
    """The cell's source with its check calls sent to the recorder, and the exercise ids it checks."""
    tree = ast.parse(source)
    rewriter = _CheckRewriter()
    tree = rewriter.visit(tree)
    if not rewriter.ids:
        return source, []
    return ast.unparse(ast.fix_missing_locations(tree)), rewriter.ids


def _uses_klcourse_fallback(fn):
    """A sentence when ``fn`` is one of klcourse's functions or a thin wrapper that calls one (else None)."""
    import types

    def from_klcourse(obj) -> bool:
        return callable(obj) and str(getattr(obj, "__module__", "") or "").startswith("klcourse")

    if from_klcourse(fn):
        return (f"That is klcourse's own {getattr(fn, '__name__', 'function')}; the exercise asks you to "
                "implement it yourself.")
    code = getattr(fn, "__code__", None)
    if isinstance(code, types.CodeType):
        names = set(code.co_names)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                names |= set(const.co_names)
        g = getattr(fn, "__globals__", {})
        used = sorted(n for n in names if from_klcourse(g.get(n)) or n == "klcourse"
                      or getattr(g.get(n), "__name__", "") == "klcourse")
        if used:
            return (f"Your function calls klcourse ({', '.join(used)}); the exercise asks you to implement "
                    "the computation yourself, with NumPy.")
    return None


def scrub_checkers() -> None:
    """Replace every registered checker by a stub, so that no expected value lives in this process.

    The chapter modules stay importable (notebooks use their data), but ``get_exercise(id).checker`` and
    ``check`` hold nothing to read: closures, frames and ``evaluate`` find no expected value here.
    """
    import gc

    from klcourse.exercises import core

    core._load_chapters()

    def checked_by_the_grader(answer):
        return core.Verdict(False, "This answer is checked by the grader, not in this process.",
                            core.NOT_ANSWERED)

    for key, exercise in list(core._REGISTRY.items()):
        core._REGISTRY[key] = core.Exercise(exercise.id, exercise.title, exercise.kind, checked_by_the_grader)
    core._RESULTS.clear()
    gc.collect()


def prepare_functions(functions: dict) -> dict:
    """``{exercise id: (cases, allowed)}`` for the function exercises, computed *before* the checkers are scrubbed.

    With the checker protocol (``checker.cases(seed)``) the cases are regenerated here from the seed the grader
    sent — the same cases the grader judges against; their inputs are no secret (the function sees them), the
    reference outputs are never computed here. Without it, the grader sent the cases themselves as data.
    """
    from klcourse.exercises import core
    from klcourse.instructor import datacodec

    core._load_chapters()
    prepared = {}
    for exercise_id, spec in functions.items():
        checker = core._REGISTRY[exercise_id].checker if exercise_id in core._REGISTRY else None
        if spec.get("protocol") and hasattr(checker, "cases"):
            prepared[exercise_id] = (list(checker.cases(seed=spec.get("seed"))), tuple(spec.get("allowed", ())))
        else:
            calls = datacodec.decode(spec["cases"])
            prepared[exercise_id] = ([_PlainCase(tuple(a), dict(k)) for a, k in calls], tuple(spec.get("allowed", ())))
    return prepared


class _PlainCase:
    probe = None

    def __init__(self, args, kwargs):
        self.args, self.kwargs = args, kwargs


def _run_case(fn, case):
    """The learner's output on one case as plain data (the protocol's ``run_case`` when there is one)."""
    try:
        from klcourse.exercises.checkers import run_case
    except ImportError:
        run_case = None
    if run_case is not None and not isinstance(case, _PlainCase):
        return run_case(fn, case)
    import numpy as np

    try:
        with np.errstate(all="ignore"):
            got = fn(*case.args, **(case.kwargs or {}))
    except Exception as exc:
        return f"raised {type(exc).__name__}: {str(exc)[:200]}"
    if hasattr(got, "detach"):
        got = got.detach().cpu().numpy()
    try:
        arr = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return f"returned {type(got).__name__}"
    return float(arr) if arr.ndim == 0 else arr


def _uses(fn, allowed):
    try:
        from klcourse.exercises.checkers import uses_klcourse
    except ImportError:
        return _uses_klcourse_fallback(fn)
    try:
        return uses_klcourse(fn, allowed)
    except Exception:
        return None


def make_recorder(out_fd: int, functions: dict):
    """The recorder the check calls are sent to; ``functions`` is what :func:`prepare_functions` returned."""
    from klcourse.instructor import datacodec

    dumps, write, encode = json.dumps, os.write, datacodec.encode

    def emit(record: dict) -> None:
        line = (dumps(record) + "\n").encode()
        while line:
            line = line[write(out_fd, line):]

    def record(exercise_id, answer=..., *args, **kwargs):
        record = {"kind": "answer", "id": str(exercise_id)[:200]}
        try:
            if callable(answer) and exercise_id in functions:
                cases, allowed = functions[exercise_id]
                record["function"] = {"uses_klcourse": _uses(answer, allowed),
                                      "outputs": encode([_run_case(answer, case) for case in cases])}
            elif callable(answer):
                record["data"] = {"t": "str", "v": f"<function {getattr(answer, '__name__', '?')}>"}
            else:
                record["data"] = encode(answer)
        except CellTimeout:
            raise
        except Exception as exc:
            record["unrecordable"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        if len(dumps(record)) >= datacodec.MAX_RECORD_BYTES:  # the grader would drop the line unread
            record = {"kind": "answer", "id": record["id"], "unrecordable":
                      f"the answer is larger than {datacodec.MAX_RECORD_BYTES // 2**20} MB as data"}
        emit(record)
        print(f"[recorded an answer to {exercise_id}]")

    return record, emit


def main() -> None:
    job = json.loads(sys.stdin.buffer.read())
    nb = job["notebook"]
    out_fd = os.dup(1)  # the grader's channel; the notebook's own output goes nowhere
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(1, "w", closefd=False)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a file too large fails to write; it does not kill us

    functions = prepare_functions(job.get("functions", {}))
    scrub_checkers()
    record, emit = make_recorder(out_fd, functions)
    cell_timeout = float(job.get("cell_timeout", 60))

    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.user_ns[RECORDER] = record

    def on_alarm(signum, frame):
        raise CellTimeout(f"cell ran longer than {cell_timeout:g} s")

    signal.signal(signal.SIGALRM, on_alarm)
    index = -1
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        index += 1
        source = cell.get("source", "")
        source = source if isinstance(source, str) else "".join(source)
        try:
            source, ids = rewrite(source)
        except SyntaxError as exc:
            emit({"kind": "event", "text": f"code cell {index}: syntax error ({exc.msg}, line {exc.lineno})",
                  "ids": _ids_in(source)})
            continue
        shell.user_ns[RECORDER] = record
        signal.setitimer(signal.ITIMER_REAL, cell_timeout)
        try:
            result = shell.run_cell(source, store_history=False)
        except CellTimeout:
            result = None
            emit({"kind": "event", "text": f"code cell {index}: timeout (ran longer than {cell_timeout:g} s)",
                  "ids": ids})
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        error = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if isinstance(error, CellTimeout):
            emit({"kind": "event", "text": f"code cell {index}: timeout (ran longer than {cell_timeout:g} s)",
                  "ids": ids})
        elif error is not None:
            emit({"kind": "event", "text": f"code cell {index} raised {type(error).__name__}: {str(error)[:100]}",
                  "ids": ids})
    emit({"kind": "done"})
    os._exit(0)  # no atexit hooks of the notebook's making


if __name__ == "__main__":
    main()
