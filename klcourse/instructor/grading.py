"""Grade submitted notebooks: the student's code produces data, the grader decides.

For each submission the grader

1. reads the file itself (a file that is not a notebook is recorded as such, never run);
2. runs it in a sandbox (:mod:`klcourse.instructor.sandbox`: bubblewrap when available, with its own PID
   namespace, no network, no view of the book, the other submissions, the manifest or the gradebook) with a hard
   wall-clock limit, through :mod:`klcourse.instructor.worker`, which sends every ``check("id", answer)`` call to a
   recorder that serialises the *answer* as plain data; a function answer is called on cases the grader chose —
   hidden ones included — and only its outputs come back;
3. decides every verdict in its own process: :func:`klcourse.exercises.evaluate` on the decoded data, the
   variant's checker rebuilt from the manifest's secret and the student's id, or the function checker's
   ``judge`` on the outputs.

The denominator (exercises and points), the identities and the per-student data come from the manifest written by
``klcourse assign`` and its roster, never from the notebook: deleting a check cell or editing the metadata leaves
the exercise assigned and unanswered. A forged channel can only claim *some answer*.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from klcourse.instructor import datacodec, sandbox
from klcourse.instructor.sandbox import UNSANDBOXED

MAX_NOTEBOOK_BYTES = 20 * 2**20
#: Cells in one notebook (a chapter has about 110; an assignment of three chapters a few hundred).
MAX_CELLS = 2000
#: Lines of a notebook's output channel that are read (an honest notebook writes one per check call and event).
MAX_RECORDS = 10_000
#: Bytes of answer records kept of one notebook: only answers to the assigned exercises are kept, the last one
#: of each, as their JSON lines (parsed again when judged); a notebook that floods its channel with other records
#: cannot make the grader hold more than this per file until the run ends.
MAX_ANSWER_BYTES = 4 * 2**20
#: JSON objects and arrays parsed from one notebook's channel (counted as ``{`` and ``[`` bytes before parsing):
#: 16 MB of ``[],`` lines took the grader ~10 s to parse, outside any limit. An honest record has a few; an
#: answer of 1000 numbers about 1000.
MAX_PARSED_NODES = 200_000
#: Without ``limit``, a notebook gets ``cell_timeout`` × its code cells, counting at most this many cells.
DEFAULT_LIMIT_CELLS = 10
#: Notebooks graded per student (each gets its own wall-clock limit): the first ones by name; the rest are refused
#: with a note, as are files that are not ``.ipynb``.
MAX_NOTEBOOKS = 5
#: Canvas download names: ``<login>[_LATE]_<canvas user id>_<submission id>_<original name>``
CANVAS_NAME = re.compile(r"^(?P<login>[A-Za-z0-9-]+?)(?:_LATE)?_(?P<canvas>\d+)_(?P<submission>\d+)_(?P<file>.+)$")


# ------------------------------------------------------------------------------------------ data model
@dataclass
class Assignment:
    title: str
    points: dict  # exercise id -> points, in order
    variants: set = field(default_factory=set)
    secret: str | None = None
    roster: list = field(default_factory=list)
    due: str = ""
    source: str = "manifest"

    @property
    def exercises(self) -> list[str]:
        return list(self.points)

    @property
    def hidden_seed(self) -> int | None:
        if not self.secret:
            return None
        from klcourse.instructor.variants import seed_for

        return seed_for(self.secret, "", "hidden-cases") % 2**31

    @classmethod
    def from_manifest(cls, data: dict) -> Assignment:
        return cls(title=data.get("title", "assignment"), due=data.get("due", ""), secret=data.get("secret"),
                   points={e["id"]: float(e.get("points", 1)) for e in data["exercises"]},
                   variants={e["id"] for e in data["exercises"] if e.get("variant")},
                   roster=list(data.get("roster") or []))


@dataclass
class Row:
    """One gradebook line: a student's result on one exercise."""

    student: str
    exercise: str
    points: float
    max_points: float
    passed: bool
    status: str
    misconception: str
    message: str
    submission: str = ""


@dataclass
class StudentResult:
    student: str
    info: dict = field(default_factory=dict)  # roster entry
    submissions: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def points(self) -> float:
        return sum(r.points for r in self.rows)

    @property
    def max_points(self) -> float:
        return sum(r.max_points for r in self.rows)


@dataclass
class FileOutcome:
    path: str
    student: str
    error: str | None = None
    answers: dict = field(default_factory=dict)  # assigned exercise id -> its last answer record (JSON bytes)
    events: list = field(default_factory=list)
    finished: bool = False
    timed_out: bool = False
    sandboxed: bool = True
    elapsed: float = 0.0
    check_ids: list = field(default_factory=list)
    cell_errors: dict = field(default_factory=dict)  # exercise id -> what happened to its check cell


@dataclass
class GradeRun:
    assignment: Assignment
    students: list
    files: list
    sandboxed: bool
    outputs: dict = field(default_factory=dict)
    elapsed: float = 0.0


# ------------------------------------------------------------------------------------------ identities
def expand_submissions(paths) -> list[tuple[str, Path]]:
    """``(path, folder given)`` for files named directly and every non-hidden file under named folders.

    Folders are walked without following symbolic links; a symbolic link to a file is listed (and refused
    when it is read, see :func:`_read_notebook`), so that a student's folder cannot bring in another student's
    notebook, the manifest or a system file.
    """
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            files = []
            for folder, dirs, names in os.walk(p, followlinks=False):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [Path(folder) / n for n in names if not n.startswith(".")]
            out += [(str(f), p) for f in sorted(files)]
        elif p.exists() or p.is_symlink():
            out.append((str(p), p.parent))
        else:
            raise ValueError(f"no such submission: {p}")
    return out


def select_files(files: list[str], owners: dict) -> tuple[list[str], dict]:
    """The files that are run, and ``{student: [notes]}`` on the ones that are not.

    Only ``.ipynb`` files are graded, and at most :data:`MAX_NOTEBOOKS` of each student's (the first by name):
    every notebook gets its own wall-clock limit, so a folder of 100 notebooks would hold the grader for 100
    limits. Files of a folder that is not on the roster count as one student's.
    """
    chosen, refused, counts, skipped = [], {}, {}, {}
    for f in files:
        sid = owners[f][0]
        key = "unknown:" + sid[8:].split("/")[0] if sid.startswith("unknown:") and "/" in sid else sid
        name = Path(f).name
        if not name.lower().endswith(".ipynb"):
            why = "not graded: only Jupyter notebooks (.ipynb) are graded"
        elif counts.get(key, 0) >= MAX_NOTEBOOKS:
            why = f"not graded: at most {MAX_NOTEBOOKS} notebooks per student are graded (the first by name)"
        else:
            counts[key] = counts.get(key, 0) + 1
            chosen.append(f)
            continue
        notes = refused.setdefault(sid, [])
        if len(notes) < 2 * MAX_NOTEBOOKS:
            notes.append(f"{name}: {why}")
        else:
            skipped[sid] = skipped.get(sid, 0) + 1
    for sid, n in skipped.items():
        refused[sid].append(f"(+{n} more files not graded)")
    return chosen, refused


def identify(path: str, root: Path, roster: list) -> tuple[str, str | None]:
    """The student a file belongs to, and a note when it is not on the roster.

    Per-student folders (``root/<id>/…``, or a folder ``<id>`` given itself, as ``klcourse grade subs/*`` does),
    Canvas names (``login_12345_67890_file.ipynb``: the canvas id or the login), or a file named after the id
    (``<id>.ipynb``, ``<id>_hw1.ipynb``). A file inside a student's folder is named by the student: its name is
    never used, so a folder that is not on the roster is unknown rather than matched by the file names in it
    (``Mallory Smith/full.ipynb`` must not count for the student ``full``).
    """
    p = Path(path)
    rel = p.relative_to(root) if p.is_relative_to(root) else Path(p.name)
    by_id = {s["id"].lower(): s["id"] for s in roster}
    if roster and root.name.lower() in by_id:
        return by_id[root.name.lower()], None
    if len(rel.parts) > 1:
        folder = rel.parts[0]
        if not roster:
            return folder, None
        if folder.lower() in by_id:
            return by_id[folder.lower()], None
        return f"unknown:{rel.as_posix()}", f"{folder}/ matches no student on the roster"
    candidates = []
    match = CANVAS_NAME.match(p.name)
    if match:
        candidates += [("canvas", match["canvas"]), ("login", match["login"])]
    candidates.append(("stem", p.stem))
    if not roster:
        for kind, value in candidates:
            if kind != "canvas":
                return value, None
    by_canvas = {s.get("canvas_id"): s["id"] for s in roster if s.get("canvas_id")}
    for kind, value in candidates:
        if kind == "canvas" and value in by_canvas:
            return by_canvas[value], None
        if kind != "canvas" and value.lower() in by_id:
            return by_id[value.lower()], None
    stem = p.stem.lower()
    for key, sid in sorted(by_id.items(), key=lambda item: -len(item[0])):  # "ann_lee_hw1": ann_lee, not ann
        if stem.startswith(key + "_") or stem.startswith(key + "-"):
            return sid, None
    return f"unknown:{rel.as_posix()}", f"{rel.as_posix()} matches no student on the roster"


# ------------------------------------------------------------------------------------------ function cases
@dataclass
class FunctionJob:
    spec: dict  # what the sandbox receives
    judge: object  # outputs -> Verdict


def function_job(exercise_id: str, seed: int | None) -> FunctionJob:
    """What the sandbox needs to call a function answer (hidden cases from ``seed``), and how to judge it.

    With the checker protocol (``checker.cases(seed)``, ``checker.judge(outputs, cases)``) the sandbox
    regenerates the same cases from the seed and returns the outputs; the grader judges them. Without it,
    the cases are found by calling the checker on a probe that records its arguments, sent as data, and judged
    by calling the checker on a function that replays the recorded outputs.
    """
    from klcourse.exercises import get_exercise

    checker = get_exercise(exercise_id).checker
    allowed = list(getattr(checker, "allowed", ()) or ())
    if hasattr(checker, "cases") and hasattr(checker, "judge"):
        cases = list(checker.cases(seed=seed))
        return FunctionJob({"protocol": True, "seed": seed, "allowed": allowed},
                           lambda outputs: checker.judge(outputs, cases))
    calls = []

    def probe(*args, **kwargs):
        calls.append((tuple(args), tuple(kwargs.items())))
        return 0.0

    try:
        checker(probe)
    except Exception:
        pass
    encoded = datacodec.encode(calls)
    decoded = datacodec.decode(encoded)  # exactly what the sandbox sees

    def judge(outputs):
        def replay(*args, **kwargs):
            for (c_args, c_kwargs), out in zip(decoded, outputs, strict=False):
                if _same((args, tuple(kwargs.items())), (c_args, tuple(map(tuple, c_kwargs)))):
                    if isinstance(out, str) and out.startswith("raised "):
                        name, _, message = out[7:].partition(": ")
                        raise type(name if name.isidentifier() else "Error", (Exception,), {})(message)
                    return out
            raise LookupError("this input was not evaluated")

        replay.__name__ = replay.__qualname__ = "answer"
        replay.__module__ = "__main__"
        return checker(replay)

    return FunctionJob({"protocol": False, "cases": encoded, "allowed": allowed}, judge)


def _same(a, b) -> bool:
    import numpy as np

    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    a, b = (x.detach().cpu().numpy() if hasattr(x, "detach") else x for x in (a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    try:
        return bool(a == b) or (a != a and b != b)
    except Exception:
        return False


# ------------------------------------------------------------------------------------------ one file
def _read_notebook(path: str) -> tuple[dict | None, str | None]:
    """``(notebook, None)`` or ``(None, why it is not graded)``.

    Only a regular file that is not a symbolic link is read (``O_NOFOLLOW``), at most
    :data:`MAX_NOTEBOOK_BYTES` of it; a notebook of more than :data:`MAX_CELLS` cells is refused and only what
    grading uses is validated (:func:`_slim`): validation time grows with the notebook and is spent outside any
    sandbox limit. The reason never quotes the file: a link or a system file must not leak into a student's
    feedback.
    """
    import nbformat

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        if Path(path).is_symlink():
            return None, "not graded: a symbolic link (only regular files are graded)"
        return None, f"not graded: cannot be opened ({type(exc).__name__})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return None, "not graded: not a regular file"
        if info.st_size > MAX_NOTEBOOK_BYTES:
            return None, f"not graded: the file is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
        chunks, left = [], MAX_NOTEBOOK_BYTES + 1
        while left > 0:
            chunk = os.read(fd, min(left, 2**20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        raw = b"".join(chunks)
    finally:
        os.close(fd)
    if len(raw) > MAX_NOTEBOOK_BYTES:
        return None, f"not graded: the file is larger than {MAX_NOTEBOOK_BYTES // 2**20} MB"
    try:
        data = json.loads(raw.decode("utf-8"))
        cells = data.get("cells") if isinstance(data, dict) else None
        if isinstance(cells, list) and len(cells) > MAX_CELLS:
            return None, f"not graded: more than {MAX_CELLS} cells"
        if isinstance(data, dict) and data.get("nbformat") != 4:
            return None, "not graded: a notebook in nbformat 4 is required (save it with a current Jupyter)"
        nb = nbformat.from_dict(_slim(data))
        nbformat.validate(nb)
    except Exception as exc:
        return None, f"not a valid notebook ({type(exc).__name__})"
    return json.loads(nbformat.writes(nb)), None


def _slim(data: dict) -> dict:
    """What grading uses of a notebook: each cell's type, id and source, and the exercise list of its metadata.

    Outputs, attachments and other metadata are dropped *before* nbformat sees them: converting and validating
    them costs time in proportion to their size (300 000 outputs: 35 s; 15 MB of metadata: 22 s), spent by the
    grader outside any sandbox limit.
    """
    cells = []
    for index, cell in enumerate(data["cells"]):
        kind = cell.get("cell_type")
        source = cell.get("source", "")
        if isinstance(source, list) and all(isinstance(line, str) for line in source):
            source = "".join(source)
        slim = {"cell_type": kind, "metadata": {}, "source": source}
        if "id" in cell or data.get("nbformat_minor", 5) >= 5:
            slim["id"] = cell.get("id", f"graded-{index}")  # nbformat 4.5 wants ids; a missing one is no fault
        if kind == "code":
            slim.update(outputs=[], execution_count=None)
        cells.append(slim)
    metadata = data.get("metadata")
    klcourse = metadata.get("klcourse") if isinstance(metadata, dict) else None
    listed = klcourse.get("exercises") if isinstance(klcourse, dict) else None
    exercises = [e for e in listed[:1000] if isinstance(e, str) and len(e) <= 200] if isinstance(listed, list) else []
    return {"cells": cells, "metadata": {"klcourse": {"exercises": exercises}} if exercises else {},
            "nbformat": 4, "nbformat_minor": data.get("nbformat_minor", 5)}


def notebook_limit(code_cells: int, cell_timeout: float, limit: float | None) -> float:
    """Seconds for a whole notebook: ``limit``, or by default ``cell_timeout`` × its code cells (at most
    :data:`DEFAULT_LIMIT_CELLS` of them: the notebook must not choose its own limit) + 30."""
    if limit is not None:
        return limit
    return cell_timeout * min(max(code_cells, 1), DEFAULT_LIMIT_CELLS) + 30


def run_file(path: str, student: str, jobs: dict, *, cell_timeout: float, limit: float | None,
             use_sandbox: bool | None, loaded=None, exercises=None) -> FileOutcome:
    """Run one notebook in its sandbox and collect what it recorded (data only).

    ``loaded`` is ``(notebook, error)`` as read by the grader before any submission ran. Only answers to
    ``exercises`` (by default: the ids of the notebook's check cells and the function exercises) are kept, the
    last one of each, at most :data:`MAX_ANSWER_BYTES` in all; a record line longer than
    :data:`datacodec.MAX_RECORD_BYTES` is dropped unparsed.
    """
    from klcourse.instructor.worker import _ids_in

    outcome = FileOutcome(path=path, student=student)
    nb, error = loaded if loaded is not None else _read_notebook(path)
    if error:
        outcome.error = error
        return outcome
    code = [c for c in nb["cells"] if c.get("cell_type") == "code"]
    for cell in code:
        # the ids of the check cells, by a linear-time pattern: parsing and unparsing the code here, outside the
        # sandbox's limit, took 150 s for a cell of 3 million lines
        src = cell.get("source", "")
        outcome.check_ids += _ids_in(src if isinstance(src, str) else "".join(src))
    wall = notebook_limit(len(code), cell_timeout, limit)
    job = {"notebook": nb, "cell_timeout": min(cell_timeout, wall),
           "functions": {e: j.spec for e, j in jobs.items()}}
    result = sandbox.run([sys.executable, "-m", "klcourse.instructor.worker"],
                         limits=sandbox.Limits(wall=wall), stdin_data=json.dumps(job).encode(),
                         sandbox=use_sandbox)
    outcome.sandboxed, outcome.timed_out, outcome.elapsed = result.sandboxed, result.timed_out, result.elapsed
    channel = result.channels.get("stdout", b"")
    # at most MAX_RECORDS lines are parsed: 16 MB of tiny lines would cost the grader ~10 s, outside any limit
    lines = channel.split(b"\n", MAX_RECORDS)
    if len(lines) > MAX_RECORDS:
        lines = lines[:MAX_RECORDS]
        outcome.events.append(f"more than {MAX_RECORDS} records on the output channel: the rest ignored")
    elif "stdout" in result.truncated or not channel.endswith(b"\n"):
        lines = lines[:-1]  # an incomplete last line
    wanted = set(exercises) if exercises is not None else set(outcome.check_ids) | set(jobs)
    kept, too_long, over_budget, nodes, too_many = 0, 0, 0, 0, 0
    for line in lines:
        if len(line) >= datacodec.MAX_RECORD_BYTES:
            too_long += 1
            continue
        cost = line.count(b"{") + line.count(b"[")  # an upper bound on what parsing the line builds
        if nodes + cost > MAX_PARSED_NODES:
            too_many += 1
            continue
        nodes += cost
        try:
            record = json.loads(line)
        except (ValueError, UnicodeDecodeError, RecursionError):
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("kind")
        if kind == "answer":
            exercise = record.get("id")
            if not isinstance(exercise, str) or exercise not in wanted:
                continue
            old = len(outcome.answers.get(exercise, b""))
            if kept - old + len(line) > MAX_ANSWER_BYTES:
                over_budget += 1
                continue
            outcome.answers[exercise] = bytes(line)
            kept += len(line) - old
        elif kind == "event" and isinstance(record.get("text"), str) and len(outcome.events) < 50:
            outcome.events.append(record["text"][:200])
            ids = record.get("ids")
            for exercise in ids if isinstance(ids, list) else []:
                if isinstance(exercise, str):
                    outcome.cell_errors.setdefault(exercise, record["text"][:200])
        elif kind == "done":
            outcome.finished = True
    if too_long:
        outcome.events.append(f"{too_long} record(s) longer than {datacodec.MAX_RECORD_BYTES // 2**20} MB on the "
                              "output channel: ignored")
    if too_many:
        outcome.events.append(f"{too_many} record(s) beyond {MAX_PARSED_NODES} JSON lists and objects on the output "
                              "channel: ignored")
    if over_budget:
        outcome.events.append(f"{over_budget} answer(s) beyond {MAX_ANSWER_BYTES // 2**20} MB of answers in all: "
                              "ignored")
    if "stdout" in result.truncated:
        outcome.events.append(f"output channel flooded (more than {sandbox.MAX_CHANNEL // 2**20} MB): cut")
    if outcome.timed_out:
        outcome.events.append(f"timeout: the notebook did not finish within {wall:g} s (stopped)")
    elif not outcome.finished:
        outcome.events.append("the notebook's process died before the end (a crash: os._exit, a segfault, "
                              "or running out of memory)")
    return outcome


# ------------------------------------------------------------------------------------------ verdicts
#: Characters of a message in the gradebook and the feedback (the checkers already cut what they quote of an
#: answer to ``checkers.MAX_ECHO``; this bounds any message whatever it quotes).
MAX_MESSAGE = 1000


def judge(assignment: Assignment, student: str, exercise_id: str, record: dict | None, jobs: dict):
    """The grader's verdict (a :class:`klcourse.exercises.core.Feedback`) on one recorded answer; its message is
    cut to :data:`MAX_MESSAGE` characters."""
    fb = _judge(assignment, student, exercise_id, record, jobs)
    if fb is None or len(fb.message) <= MAX_MESSAGE:
        return fb
    import dataclasses

    return dataclasses.replace(fb, message=fb.message[:MAX_MESSAGE] + "…")


def _judge(assignment: Assignment, student: str, exercise_id: str, record: dict | None, jobs: dict):
    from klcourse.exercises.core import INVALID, NOT_ANSWERED, Feedback, evaluate

    if record is None:
        return None
    if "unrecordable" in record:
        return Feedback(exercise_id, False, f"Your answer could not be recorded: {record['unrecordable']}",
                        INVALID)
    try:
        if exercise_id in jobs:
            fn = record.get("function")
            if not isinstance(fn, dict):
                if "data" in record and datacodec.decode(record["data"]) is None:
                    return evaluate(exercise_id, None)
                return Feedback(exercise_id, False, "Expected a function (something defined with def).", INVALID)
            uses = fn.get("uses_klcourse")
            if isinstance(uses, str) and uses:
                return Feedback(exercise_id, False, uses[:300], "wrong", "klcourse-own")
            outputs = datacodec.decode(fn.get("outputs"))
            if not isinstance(outputs, list):
                raise datacodec.DataError("outputs are not a list")
            verdict = jobs[exercise_id].judge(outputs)
            return Feedback(exercise_id, verdict.passed, verdict.message, verdict.status, verdict.misconception)
        answer = datacodec.decode(record.get("data"))
    except datacodec.DataError as exc:
        return Feedback(exercise_id, False, f"Your answer could not be read as data: {exc}.", INVALID)
    except Exception as exc:
        return Feedback(exercise_id, False, f"Could not check this answer ({type(exc).__name__}).", INVALID)
    if answer is None:
        return Feedback(exercise_id, False, "Not answered yet.", NOT_ANSWERED)
    if exercise_id in assignment.variants:
        from klcourse.instructor.variants import judge as judge_variant
        from klcourse.instructor.variants import variant_data

        if student.startswith("unknown:") or not assignment.secret:
            return Feedback(exercise_id, False, "Not graded: this exercise has per-student data and the "
                            "submission could not be matched to a student on the roster.", INVALID)
        return judge_variant(exercise_id, variant_data(assignment.secret, student, exercise_id), answer)
    return evaluate(exercise_id, answer)


def _record(kept) -> dict | None:
    """A kept answer record (its JSON line, see :func:`run_file`), parsed."""
    if kept is None or isinstance(kept, dict):
        return kept
    try:
        record = json.loads(kept)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return record if isinstance(record, dict) else None


_RANK = {"correct": 4, "wrong": 3, "invalid": 2, "not answered": 1}


def combine(assignment: Assignment, student: str, outcomes: list[FileOutcome], jobs: dict,
            info: dict | None = None) -> StudentResult:
    """One student's rows: every assigned exercise, judged over their notebooks.

    Within one notebook the last recorded answer counts. An exercise answered in several of a student's notebooks
    gets the *lowest* of those verdicts (a notebook that leaves it unanswered does not count): taking the best
    would let a student hand in one copy per option of a choice and collect whichever is right.
    """
    from klcourse.exercises.core import NOT_ANSWERED

    res = StudentResult(student=student, info=info or {}, submissions=[Path(o.path).name for o in outcomes])
    judged: dict = {}  # exercise -> [(feedback, notebook name)]
    for o in outcomes:
        name = Path(o.path).name
        if o.error:
            res.notes.append(f"{name}: {o.error}")
            continue
        if not o.sandboxed:
            res.notes.append(f"{name}: {UNSANDBOXED}")
        res.notes += [f"{name}: {e}" for e in o.events[:5]]
        if len(o.events) > 5:
            res.notes.append(f"{name}: (+{len(o.events) - 5} more)")
        for exercise in assignment.exercises:
            fb = judge(assignment, student, exercise, _record(o.answers.get(exercise)), jobs)
            if fb is not None:
                judged.setdefault(exercise, []).append((fb, name))
    verdicts: dict = {}
    for exercise, found in judged.items():
        answered = [(fb, name) for fb, name in found if fb.status != NOT_ANSWERED] or found
        verdicts[exercise] = min(answered, key=lambda pair: (pair[0].passed, _RANK.get(pair[0].status, 0)))
        names = list(dict.fromkeys(name for _, name in answered))
        if len(names) > 1:
            res.notes.append(f"{exercise} is answered in {len(names)} notebooks ({', '.join(names)}): "
                             "the lowest verdict counts")
    ids_seen = {i for o in outcomes for i in o.check_ids}
    failure = next((o.error for o in outcomes if o.error), None)
    crash = next((e for o in outcomes for e in o.events if e.startswith(("timeout:", "the notebook's"))), None)
    for exercise, pts in assignment.points.items():
        if exercise in verdicts:
            fb, name = verdicts[exercise]
            res.rows.append(Row(student, exercise, pts if fb.passed else 0.0, pts, fb.passed, fb.status,
                                fb.misconception or "", fb.message, name))
        else:
            if not outcomes or all(o.error for o in outcomes):
                why = failure or "no submission"
                status = "error" if outcomes else "missing"
            elif exercise not in ids_seen:
                why, status = "No check cell for this exercise in the submission (deleted?): not answered.", \
                    "missing"
            else:
                cell = next((o.cell_errors[exercise] for o in outcomes if exercise in o.cell_errors), None)
                why = cell or crash or "Its check cell did not run (an earlier error?)."
                status = "timeout" if "timeout" in why else "error"
            res.rows.append(Row(student, exercise, 0.0, pts, False, status, "", why, ""))
    return res


# ------------------------------------------------------------------------------------------ the run
_CELL_TIMEOUT = re.compile(r"code cell \d+: timeout")


def hit_time_limit(outcome: FileOutcome) -> bool:
    """Whether a run stopped at the notebook's limit or one of its cells at the cell limit."""
    return outcome.timed_out or any(_CELL_TIMEOUT.match(e) for e in outcome.events)


def infer_assignment(files: list[str], exercises=None, loaded=None) -> Assignment:
    """Without a manifest: the given exercises, or what most of the class's notebooks list, 1 point each.

    One denominator for everybody (nobody shrinks their own), and an exercise counts only when more than half
    of the notebooks list it (in their metadata or a check cell): a single submission that adds check cells
    cannot grow everybody else's denominator.
    """
    from collections import Counter

    from klcourse.exercises import list_exercises

    known = [e.id for e in list_exercises()]
    if exercises:
        unknown = sorted(set(exercises) - set(known))
        if unknown:
            raise ValueError(f"unknown exercise id(s): {unknown}")
        return Assignment("assignment", dict.fromkeys(exercises, 1.0), source="--exercises")
    votes: Counter = Counter()
    notebooks = 0
    for path in files:
        nb, error = loaded[path] if loaded else _read_notebook(path)
        if nb is None:
            continue
        notebooks += 1
        listed = nb.get("metadata", {}).get("klcourse", {}).get("exercises", [])
        found = {e for e in listed if isinstance(e, str)}
        for cell in nb["cells"]:
            if cell.get("cell_type") == "code":
                src = cell.get("source", "")
                found |= set(re.findall(r"""check(?:_variant)?\(\s*["']([\w.-]+)["']""",
                                        src if isinstance(src, str) else "".join(src)))
        votes.update(found)
    chosen = [e for e in known if 2 * votes[e] > notebooks]
    return Assignment("assignment", dict.fromkeys(chosen, 1.0),
                      source="what most of the class's notebooks list (better: a manifest from klcourse assign)")


def grade(paths, out_csv="grades.csv", *, assignment=None, exercises=None, timeout: float = 60,
          limit: float | None = None, jobs: int = 1, progress: bool = True, sandbox: bool | None = None,
          write: bool = True) -> GradeRun:
    """Grade every submission and write the gradebook, summary, Canvas CSV, feedback and class report.

    Parameters
    ----------
    paths : iterable of str or Path
        Notebook files, or folders of them (per-student sub-folders are identities).
    out_csv : str or Path
        The gradebook (one row per student and exercise); the other outputs are written beside it:
        ``<stem>_summary.csv``, ``<stem>_canvas.csv``, ``<stem>_feedback/<student>.html``, ``<stem>_report.html``.
    assignment : path, dict or Assignment, optional
        The manifest written by ``klcourse assign``: exercises, points, roster, secret. Without it the
        assignment is ``exercises`` (1 point each) or, failing that, what most of the class's notebooks list.
    timeout : float
        Seconds per cell.
    limit : float, optional
        Seconds for a whole notebook (default ``timeout × code cells + 30``, counting at most
        :data:`DEFAULT_LIMIT_CELLS` cells); the sandbox is killed at it.
    jobs : int
        Submissions graded in parallel.
    sandbox : bool, optional
        Force bubblewrap on (True) or off (False); by default it is used when it works.
    """
    from klcourse.instructor.assign import read_manifest

    if timeout <= 0 or jobs < 1 or (limit is not None and limit <= 0):
        raise ValueError("timeout and limit must be > 0 and jobs >= 1")
    start = time.monotonic()
    entries = expand_submissions(paths)
    if isinstance(assignment, (str, Path)):
        assignment = Assignment.from_manifest(read_manifest(assignment))
    elif isinstance(assignment, dict):
        assignment = Assignment.from_manifest(assignment)
    owners = {f: identify(f, root, assignment.roster if assignment else []) for f, root in entries}
    files, refused = select_files([f for f, _ in entries], owners)
    # every file is read before any submission runs: nothing a notebook writes changes what is graded
    loaded = {f: _read_notebook(f) for f in files}
    if assignment is None:
        assignment = infer_assignment(files, exercises, loaded)
    use = _sandbox_choice(sandbox)
    fjobs = {}
    from klcourse.exercises import get_exercise

    for e in assignment.exercises:
        if get_exercise(e).kind == "function":
            fjobs[e] = function_job(e, assignment.hidden_seed)
    bar = _Progress(len(files), enabled=progress)

    running: set = set()
    crowded: set = set()  # files that ran while another file was running
    lock = threading.Lock()

    def one(path):
        with lock:
            if running:
                crowded.update(running | {path})
            running.add(path)
        try:
            outcome = run_file(path, owners[path][0], fjobs, cell_timeout=timeout, limit=limit, use_sandbox=use,
                               loaded=loaded[path], exercises=assignment.exercises)
        except Exception as exc:  # never let one submission stop the rest
            outcome = FileOutcome(path, owners[path][0], error=f"grading failed: {type(exc).__name__}: {exc}")
        finally:
            with lock:
                running.discard(path)
        bar.step(f"{Path(path).name}: {len(outcome.answers)} answer(s)")
        return outcome

    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        outcomes = list(pool.map(one, files))
    # A neighbour can starve a sandbox of CPU (many busy processes, each in its own session): a file that hit a
    # time limit while other files ran is graded again, alone, and that run counts — as long as the grading stays
    # within the sum of the files' limits (what grading them one by one could take) plus the longest limit.
    walls = {f: notebook_limit(sum(c.get("cell_type") == "code" for c in loaded[f][0]["cells"]), timeout, limit)
             for f in files if loaded[f][0] is not None}
    budget = sum(walls.values()) + max(walls.values(), default=0)
    for i, o in enumerate(outcomes):
        if o.path in crowded and hit_time_limit(o):
            if time.monotonic() - began + walls.get(o.path, 0) > budget:
                o.events.insert(0, "not graded again alone: the class's time budget (the sum of the notebooks' "
                                   "limits) is spent")
                continue
            bar.total += 1
            again = one(o.path)
            again.events.insert(0, "graded again alone (it hit a time limit while other submissions ran in "
                                   "parallel): this run counts")
            outcomes[i] = again
    by_student: dict = {}
    for o in outcomes:
        by_student.setdefault(o.student, []).append(o)
    roster = {s["id"]: s for s in assignment.roster}
    students = []
    for sid in [s["id"] for s in assignment.roster] + sorted(k for k in {*by_student, *refused} if k not in roster):
        res = combine(assignment, sid, by_student.get(sid, []), fjobs, roster.get(sid))
        res.notes += refused.get(sid, [])
        res.notes += sorted({owners[o.path][1] for o in by_student.get(sid, []) if owners[o.path][1]})
        if not by_student.get(sid):
            res.notes.append("no submission")
        students.append(res)
    if assignment.source != "manifest":
        for res in students:
            res.notes.append(f"no manifest: the assignment is {assignment.source}")
    ran = [o for o in outcomes if not o.error]
    sandboxed = all(o.sandboxed for o in ran) if ran else (use is not False and sandbox_ok())
    run = GradeRun(assignment, students, outcomes, sandboxed=sandboxed, elapsed=time.monotonic() - start)
    if write:
        from klcourse.instructor.reports import write_outputs

        run.outputs = write_outputs(run, out_csv)
    return run


def sandbox_ok() -> bool:
    return sandbox.bwrap_available()


def _sandbox_choice(value):
    if value is None:
        return None
    if value and not sandbox.bwrap_available():
        raise ValueError("bubblewrap (bwrap) was requested but does not work here")
    return bool(value)


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
