"""Instructor tools end to end: student editions leak no solution, the grader survives hostile submissions."""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from klcourse.exercises import list_exercises
from klcourse.grading import grade
from klcourse.student import (
    chapter_notebooks,
    defined_names,
    make_student_notebook,
    placeholder_source,
    solution_lines,
    write_student_edition,
)

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapter_notebooks(ROOT / "book")
HOSTILE_CHAPTER = "definitions"  # a quick chapter (the hostile suite is tests/test_grading_hostile.py)


def src(cell):
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def check_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code" and "check(" in src(c)]


# ------------------------------------------------------------------------------------------- student editions
def test_placeholders_cover_what_the_solution_defines():
    code = "import numpy as np\ndef kl(p, q):\n    return 0.0\nanswer, other = 1, 2\nx += 1\n"
    assert defined_names(code) == ["kl", "answer", "other", "x"]
    assert "kl = ...\nanswer = ...\nother = ...\nx = ..." in placeholder_source(code)
    assert defined_names("answer = (") == []
    assert defined_names("_ = plt.plot([1])\n_tmp = 3\nanswer = 1") == ["answer"]  # no `_ = ...` placeholder


def test_student_edition_of_every_chapter_has_no_solution_text(tmp_path):
    written = write_student_edition(tmp_path)
    assert [p.name for p in written] == [p.name for p in CHAPTERS.values()]
    for slug, path in CHAPTERS.items():
        instructor = nbformat.read(path, as_version=4)
        student_raw = (tmp_path / path.name).read_text(encoding="utf-8")
        student = nbformat.reads(student_raw, as_version=4)
        snippets = solution_lines(instructor)
        leaked = sorted(s for s in snippets if s in student_raw or json.dumps(s)[1:-1] in student_raw)
        assert not leaked, f"{slug}: solution text left in the student edition: {leaked[:3]}"
        assert "{solution-start}" not in student_raw and "{solution}" not in student_raw
        assert '"solution"' not in student_raw  # no tag, no metadata key
        for cell in student.cells:
            assert "attachments" not in cell
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        # the check cells and the statements are all kept
        assert len(check_cells(student)) == len(check_cells(instructor))
        assert src(student.cells[0]) == src(instructor.cells[0])
        registered = {e.id for e in list_exercises(slug)}
        assert set(student.metadata["klcourse"]["exercises"]) == registered
        assert "folded solution" not in student_raw  # there is none in the student edition
        assert "\n_ = ..." not in student_raw and '"_ = ...' not in student_raw


def test_selected_exercises_only(tmp_path):
    chosen = [e.id for e in list_exercises(HOSTILE_CHAPTER)][:2]
    written = write_student_edition(tmp_path, exercises=chosen)
    assert [p.name for p in written] == [CHAPTERS[HOSTILE_CHAPTER].name]
    student = nbformat.read(written[0], as_version=4)
    used = {i for c in check_cells(student) for i in [src(c).split('"')[1]]}
    assert used == set(chosen)
    assert student.metadata["klcourse"]["exercises"] == chosen
    others = [e.id for e in list_exercises(HOSTILE_CHAPTER) if e.id not in chosen]
    raw = written[0].read_text()
    assert not any(f'"{e}"' in raw or f"\\\"{e}\\\"" in raw for e in others)


def test_unknown_exercise_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown exercise"):
        write_student_edition(tmp_path, exercises=["definitions.nope"])
    with pytest.raises(ValueError, match="unknown chapter"):
        write_student_edition(tmp_path, chapters=["astrology"])


def test_cli_lists_exercises():
    out = subprocess.run([sys.executable, "-m", "klcourse.cli", "exercises"], capture_output=True, text=True,
                         check=True).stdout
    for e in list_exercises():
        assert e.id in out
    one = subprocess.run([sys.executable, "-m", "klcourse.cli", "exercises", "--chapter", "gaussians"],
                         capture_output=True, text=True, check=True).stdout
    assert "gaussians." in one and "definitions." not in one


# ------------------------------------------------------------------------------------------- grading
def _instructor_nb(slug):
    nb = nbformat.read(CHAPTERS[slug], as_version=4)
    nb.metadata["klcourse"] = {"exercises": [e.id for e in list_exercises(slug)]}
    return nb


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def instructor_grades(tmp_path_factory):
    """Every chapter's instructor notebook graded through the sandbox and the data channel."""
    from test_grading_hostile import shared

    def compute(folder):
        (folder / "subs").mkdir()
        for slug in CHAPTERS:
            nbformat.write(_instructor_nb(slug), folder / "subs" / f"{slug}.ipynb")
        out = folder / "grades.csv"
        grade([folder / "subs"], out, exercises=[e.id for e in list_exercises()], timeout=120, limit=400,
              jobs=2, progress=False)
        return read_rows(out)

    return shared(tmp_path_factory, "instructor-notebooks", compute)


def test_every_instructor_notebook_passes_every_check(instructor_grades):
    own = [r for r in instructor_grades if r["exercise"].split(".")[0] == r["student"]]
    failed = [(r["exercise"], r["message"]) for r in own if r["passed"] != "True"]
    assert not failed
    assert {r["exercise"] for r in own} == {e.id for e in list_exercises()}


def test_student_book_has_every_page_of_the_toc(tmp_path):
    import re

    from klcourse.student import write_student_book

    root = write_student_book(tmp_path / "site", book_dir=ROOT / "book")
    for entry in re.findall(r"(?:root|file):\s*(\S+)", (root / "_toc.yml").read_text()):
        assert list(root.glob(entry + ".*")), f"{entry} missing from the student book"
    config = (root / "_config.yml").read_text()
    assert "html_copy_source: false" in config and "launch_buttons" not in config


# ------------------------------------------------------------------------------------------- student editions: safety
def test_student_edition_refuses_the_instructor_folder(tmp_path):
    from klcourse.student import default_book_dir

    for target in (default_book_dir(), default_book_dir().parent, ROOT / "book"):
        with pytest.raises(ValueError, match="instructor notebooks"):
            write_student_edition(target, chapters=[HOSTILE_CHAPTER])
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    nbformat.write(nbformat.read(CHAPTERS[HOSTILE_CHAPTER], as_version=4), mixed / "copy.ipynb")
    with pytest.raises(ValueError, match="instructor notebooks"):
        write_student_edition(mixed, chapters=[HOSTILE_CHAPTER])
    written = write_student_edition(tmp_path / "ok", chapters=[HOSTILE_CHAPTER])
    assert written and write_student_edition(tmp_path / "ok", chapters=[HOSTILE_CHAPTER])  # its own output is fine


def test_student_edition_text_points_at_no_folded_solution():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("Each exercise ends with a check cell. Replace the solution with your "
                                              "own answer (or open the folded solution) and run\nthe check."),
                nbformat.v4.new_markdown_cell("Each exercise has a folded solution and a check cell; `check` says.")]
    text = "\n".join(src(c) for c in make_student_notebook(nb).cells)
    assert "folded" not in text
    assert "Replace each `...` with your own answer and run" in text
    assert "Each exercise has a check cell;" in text


# ------------------------------------------------------------------------------------------- answers as data
def test_answers_travel_as_validated_data():
    import base64
    import io

    import numpy as np

    from klcourse.instructor.datacodec import MAX_ELEMENTS, DataError, decode, encode

    for value in (0.25, 3, "equal", (np.array([0.2, 0.8]), 1.5), [1, 2.0], float("inf"), np.arange(6.0).reshape(2, 3)):
        back = decode(json.loads(json.dumps(encode(value))))
        if isinstance(value, np.ndarray):
            assert np.array_equal(back, value) and back.shape == value.shape
        elif isinstance(value, tuple):
            assert isinstance(back, tuple) and np.array_equal(back[0], value[0]) and back[1] == value[1]
        else:
            assert back == value and type(back) is type(value)
    with pytest.raises(DataError):
        encode(np.zeros(MAX_ELEMENTS + 1))
    with pytest.raises(DataError):
        encode(object())
    buf = io.BytesIO()
    np.save(buf, np.array([object()], dtype=object), allow_pickle=True)  # a pickle inside .npy
    with pytest.raises(DataError):
        decode({"t": "npy", "v": base64.b64encode(buf.getvalue()).decode()})
    for forged in ({"t": "float", "v": [1]}, {"passed": True}, {"t": "int", "v": True}, "x", {"t": "eval", "v": "1"}):
        with pytest.raises(DataError):
            decode(forged)


# ------------------------------------------------------------------------------------------- identities
def test_identities_from_folders_canvas_names_and_stems(tmp_path):
    from klcourse.instructor.grading import identify

    roster = [{"id": "doejane", "canvas_id": "12345"}, {"id": "s2", "canvas_id": ""}, {"id": "lee", "canvas_id": ""}]
    root = tmp_path
    assert identify(str(root / "doejane_12345_67890_hw1.ipynb"), root, roster) == ("doejane", None)
    assert identify(str(root / "janie_12345_67890_hw1.ipynb"), root, roster)[0] == "doejane"  # by canvas id
    assert identify(str(root / "doejane_LATE_12345_67890_hw1-1.ipynb"), root, roster)[0] == "doejane"
    assert identify(str(root / "s2" / "anything.ipynb"), root, roster) == ("s2", None)
    assert identify(str(root / "lee_part2.ipynb"), root, roster) == ("lee", None)
    sid, note = identify(str(root / "stranger.ipynb"), root, roster)
    assert sid.startswith("unknown:") and "roster" in note
    assert identify(str(root / "smith_777_888_hw.ipynb"), root, []) == ("smith", None)


# ------------------------------------------------------------------------------------------- variants
def test_variants_differ_between_students_and_are_reproducible():
    from klcourse.instructor.variants import VARIANTS, variant_data

    assert len(VARIANTS) >= 3
    for exercise in VARIANTS:
        datas = [json.dumps(variant_data("secret", f"s{i}", exercise)) for i in range(12)]
        assert len(set(datas)) >= 8, exercise
        assert datas[0] == json.dumps(variant_data("secret", "s0", exercise))
        assert datas[0] != json.dumps(variant_data("other secret", "s0", exercise))


def test_variant_checkers_judge_the_students_own_data():
    """Expected values from independent formulas (NumPy sums, the closed form written out here)."""
    import math

    import numpy as np

    from klcourse.instructor.variants import judge, variant_data

    def kl(p, q, log=np.log):
        p, q = np.asarray(p), np.asarray(q)
        return float(np.sum(p * log(p / q)))

    for student in ("ann", "bob", "cyd"):
        d = variant_data("s3cret", student, "definitions.kl-in-bits")
        other = variant_data("s3cret", student + "x", "definitions.kl-in-bits")
        assert judge("definitions.kl-in-bits", d, kl(d["P"], d["Q"], np.log2)).passed
        assert not judge("definitions.kl-in-bits", d, kl(other["P"], other["Q"], np.log2)).passed
        assert judge("definitions.kl-in-bits", d, kl(d["P"], d["Q"])).misconception == "nats"
        g = variant_data("s3cret", student, "gaussians.kl-by-hand")
        closed = (math.log(g["s1"] / g["s0"]) + (g["s0"] ** 2 + (g["m0"] - g["m1"]) ** 2) / (2 * g["s1"] ** 2)
                  - 0.5)
        assert judge("gaussians.kl-by-hand", g, closed).passed
        assert judge("gaussians.kl-by-hand", g, closed + 0.5).misconception in ("forgot-constant", None)
        a = variant_data("s3cret", student, "asymmetry.both-directions")
        both = np.array([kl(a["P"], a["Q"]), kl(a["Q"], a["P"])])
        assert judge("asymmetry.both-directions", a, both).passed
        assert judge("asymmetry.both-directions", a, both[::-1]).misconception == "swapped"


def test_assign_writes_a_private_manifest_and_personal_notebooks(tmp_path):
    from klcourse.instructor.variants import variant_data

    roster = tmp_path / "roster.csv"
    roster.write_text("id,name,canvas_id\nann,Ann A,111\nbob,Bob B,222\n")
    out = subprocess.run([sys.executable, "-m", "klcourse.cli", "assign", str(tmp_path / "handout"),
                          "--exercises", "definitions.kl-in-bits,gaussians.kl-by-hand", "definitions.triangle",
                          "--points", "2", "3", "1", "--title", "HW 2", "--due", "2026-12-18",
                          "--manifest", str(tmp_path / "private" / "hw2.json"), "--roster", str(roster)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((tmp_path / "private" / "hw2.json").read_text())
    assert [(e["id"], e["points"], e["variant"]) for e in manifest["exercises"]] == [
        ("definitions.kl-in-bits", 2.0, True), ("gaussians.kl-by-hand", 3.0, True),
        ("definitions.triangle", 1.0, False)]
    assert oct((tmp_path / "private" / "hw2.json").stat().st_mode)[-3:] == "600"
    for student in ("ann", "bob"):
        files = sorted(p.name for p in (tmp_path / "handout" / student).iterdir())
        assert files == ["01_definitions.ipynb", "03_gaussians.ipynb"]
        raw = (tmp_path / "handout" / student / "01_definitions.ipynb").read_text()
        assert manifest["secret"] not in raw
        d = variant_data(manifest["secret"], student, "definitions.kl-in-bits")
        shown = "(" + ", ".join(f"{v:g}" for v in d["P"]) + ")"
        assert f"$P = {shown}$" in raw and "Your data for this exercise" in raw
        assert "$P = (0.7, 0.2, 0.1)$" not in raw  # the statement shows the student's own numbers
        from klcourse.instructor.student import _exercise_units

        mine = nbformat.read(tmp_path / "handout" / student / "01_definitions.ipynb", as_version=4)
        units = {e: (a, b) for a, b, e in _exercise_units(mine.cells)}
        first, last = units["definitions.kl-in-bits"]  # the personalised check cell still closes its exercise
        assert "check_variant" in src(mine.cells[last]) and json.dumps(d) in src(mine.cells[last])
        nb = nbformat.read(tmp_path / "handout" / student / "03_gaussians.ipynb", as_version=4)
        g = variant_data(manifest["secret"], student, "gaussians.kl-by-hand")
        mine = f"\\mathcal N({g['m0']}, {g['s0']}^2)\\,\\|\\,\\mathcal N({g['m1']}, {g['s1']}^2)"
        statement = "".join(src(c) for c in nb.cells if "kl-by-hand" in src(c))
        assert mine in statement  # the student's own pair (it may coincide with the book's: the secret is random)
        if g != {"m0": 1, "s0": 2, "m1": 0, "s1": 3}:
            assert "\\mathcal N(1, 2^2)\\,\\|\\,\\mathcal N(0, 3^2)" not in statement
    with pytest.raises(ValueError, match="secret"):
        from klcourse.instructor.assign import make_assignment

        make_assignment(["definitions.triangle"], tmp_path / "h", tmp_path / "h" / "m.json", title="x")


def test_cli_grade_writes_every_output(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from klcourse import check\nanswer = 'equal'"),
                nbformat.v4.new_code_cell('check("definitions.predict-symmetry", answer)')]
    nbformat.write(nb, subs / "ann.ipynb")
    (subs / "bob.ipynb").write_text("not a notebook")
    out = subprocess.run([sys.executable, "-m", "klcourse.cli", "grade", str(subs), "--out",
                          str(tmp_path / "g" / "grades.csv"), "--exercises", "definitions.predict-symmetry",
                          "definitions.gibbs-figure", "--timeout", "10", "--limit", "20", "--quiet"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "ann  1/2" in out.stdout and "bob  0/2" in out.stdout
    names = sorted(p.name for p in (tmp_path / "g").iterdir())
    assert names == ["grades.csv", "grades_canvas.csv", "grades_feedback", "grades_report.html",
                     "grades_summary.csv"]
    assert sorted(p.name for p in (tmp_path / "g" / "grades_feedback").iterdir()) == ["ann.html", "bob.html"]


# ------------------------------------------------------------------------------------------- the sandbox
def test_sandbox_isolation_or_loud_fallback():
    from klcourse.instructor import sandbox

    probe = ("import os, socket, pathlib\n"
             "from klcourse.student import default_book_dir\n"
             "print('book', default_book_dir().exists())\n"
             "print('pids', len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
             "try:\n    socket.create_connection(('1.1.1.1', 53), timeout=2); print('net yes')\n"
             "except OSError:\n    print('net no')\n"
             "try:\n    open(pathlib.Path(default_book_dir()).parent / 'x', 'w'); print('write yes')\n"
             "except OSError:\n    print('write no')\n")
    result = sandbox.run([sys.executable, "-c", probe], limits=sandbox.Limits(wall=30))
    out = result.channels["stdout"].decode()
    if sandbox.bwrap_available():
        assert result.sandboxed
        assert "book False" in out and "net no" in out
        # "write yes" may happen when the checkout lives under the host's /tmp: the write then lands in the
        # sandbox's private /tmp, never in the checkout (the last assert below looks on the host)
        assert "write no" in out or str(ROOT).startswith("/tmp/"), out
        assert int(out.split("pids ")[1].split()[0]) <= 3  # its own PID namespace
    else:
        assert not result.sandboxed and sandbox.UNSANDBOXED.startswith("UNSANDBOXED")
    assert not (ROOT / "x").exists()


def test_a_run_is_killed_whole_at_its_limit():
    from klcourse.instructor import sandbox

    code = ("import subprocess, sys, time\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True)\n"
            "print('started', flush=True)\ntime.sleep(60)\n")
    start = time.monotonic()
    result = sandbox.run([sys.executable, "-c", code], limits=sandbox.Limits(wall=3))
    assert result.timed_out and time.monotonic() - start < 3 + 3
    assert result.channels["stdout"] == b"started\n"
