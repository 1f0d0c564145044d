"""Instructor tools end to end: student editions leak no solution, the grader survives hostile submissions."""

import copy
import csv
import json
import subprocess
import sys
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
HOSTILE_CHAPTER = "definitions"  # a quick chapter: each hostile case executes all of it


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
def _student_nb(slug):
    return make_student_notebook(nbformat.read(CHAPTERS[slug], as_version=4))


def _instructor_nb(slug):
    nb = nbformat.read(CHAPTERS[slug], as_version=4)
    nb.metadata["klcourse"] = {"exercises": [e.id for e in list_exercises(slug)]}
    return nb


def _with_cell(nb, code, before_check=0):
    nb = copy.deepcopy(nb)
    index = nb.cells.index(check_cells(nb)[before_check])
    nb.cells.insert(index, nbformat.v4.new_code_cell(code))
    return nb


def _broken_first_solution(nb):
    """The first solution cell replaced by a syntax error that would have defined the same name."""
    nb = copy.deepcopy(nb)
    cell = next(c for c in nb.cells if "solution" in c.metadata.get("tags", []))
    cell.source = f"{defined_names(src(cell))[0]} = ("
    return nb


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def instructor_grades(tmp_path_factory):
    folder = tmp_path_factory.mktemp("instructor")
    for slug in CHAPTERS:
        nbformat.write(_instructor_nb(slug), folder / f"{slug}.ipynb")
    out = folder / "grades.csv"
    grade([folder], out, timeout=300, jobs=2, progress=False)
    return read_rows(out)


def test_every_instructor_notebook_passes_every_check(instructor_grades):
    failed = [(r["submission"], r["exercise"], r["message"]) for r in instructor_grades if r["passed"] != "True"]
    assert not failed
    assert {r["exercise"] for r in instructor_grades} == {e.id for e in list_exercises()}


@pytest.fixture(scope="module")
def hostile_grades(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    good = _instructor_nb(HOSTILE_CHAPTER)
    cases = {
        "instructor": good,
        "untouched-student": _student_nb(HOSTILE_CHAPTER),
        "infinite-loop": _with_cell(good, "while True:\n    pass", before_check=1),
        "os-exit": _with_cell(good, "import os\nos._exit(3)", before_check=1),
        "segfault": _with_cell(good, "import ctypes\nctypes.string_at(0)", before_check=1),
        "syntax-error": _broken_first_solution(good),
        "redefines-check": _with_cell(_student_nb(HOSTILE_CHAPTER), "def check(*args, **kwargs):\n    return True"),
        "monkeypatch": _with_cell(good, "import klcourse.exercises.core as core\ncore._REGISTRY.clear()"),
    }
    deleted = copy.deepcopy(good)
    deleted.cells.remove(check_cells(deleted)[-1])
    cases["deleted-check"] = deleted
    for name, nb in cases.items():
        nbformat.write(nb, folder / f"{name}.ipynb")
    (folder / "essay.txt").write_text("I did not do the homework")
    (folder / "broken.ipynb").write_text("{ this is not json")
    out = folder / "grades.csv"
    grade([folder], out, timeout=20, jobs=2, exercises=[e.id for e in list_exercises(HOSTILE_CHAPTER)],
          progress=False)
    rows = read_rows(out)
    summary = {r["submission"]: r for r in read_rows(out.with_name("grades_summary.csv"))}
    return rows, summary


def by_submission(rows, name):
    return {r["exercise"]: r for r in rows if r["submission"] == f"{name}.ipynb" or r["submission"] == name}


def test_gradebook_has_a_row_per_submission_and_exercise(hostile_grades):
    rows, summary = hostile_grades
    ids = [e.id for e in list_exercises(HOSTILE_CHAPTER)]
    assert len(summary) == 11
    for sub in summary:
        assert [r["exercise"] for r in rows if r["submission"] == sub] == ids
    assert summary["instructor.ipynb"]["score"] == str(len(ids))


def test_untouched_student_edition_is_not_answered(hostile_grades):
    rows, _ = hostile_grades
    assert {r["status"] for r in by_submission(rows, "untouched-student").values()} == {"not answered"}


def test_infinite_loop_is_cut_and_the_rest_graded(hostile_grades):
    rows, summary = hostile_grades
    graded = by_submission(rows, "infinite-loop")
    assert all(r["passed"] == "True" for r in graded.values())
    assert "Timeout" in summary["infinite-loop.ipynb"]["notes"]


@pytest.mark.parametrize("name", ["os-exit", "segfault"])
def test_crash_keeps_earlier_results(hostile_grades, name):
    rows, summary = hostile_grades
    graded = list(by_submission(rows, name).values())
    assert graded[0]["passed"] == "True"
    assert all(r["passed"] == "False" and "kernel died" in r["message"] for r in graded[1:])
    assert "kernel died" in summary[f"{name}.ipynb"]["notes"]


def test_syntax_error_is_recorded_and_other_exercises_graded(hostile_grades):
    rows, summary = hostile_grades
    graded = list(by_submission(rows, "syntax-error").values())
    assert graded[0]["passed"] == "False"
    assert all(r["passed"] == "True" for r in graded[1:])
    assert "syntax" in summary["syntax-error.ipynb"]["notes"]


def test_redefined_check_cannot_fake_a_pass(hostile_grades):
    rows, summary = hostile_grades
    assert {r["status"] for r in by_submission(rows, "redefines-check").values()} == {"not answered"}
    assert "redefines check" in summary["redefines-check.ipynb"]["notes"]


def test_monkeypatching_the_checker_voids_the_submission(hostile_grades):
    rows, summary = hostile_grades
    assert {r["status"] for r in by_submission(rows, "monkeypatch").values()} == {"tampered"}
    assert "tampering" in summary["monkeypatch.ipynb"]["notes"]


def test_deleted_check_cell(hostile_grades):
    rows, _ = hostile_grades
    graded = list(by_submission(rows, "deleted-check").values())
    assert graded[-1]["status"] == "missing"
    assert all(r["passed"] == "True" for r in graded[:-1])


@pytest.mark.parametrize("name", ["essay.txt", "broken.ipynb"])
def test_files_that_are_not_notebooks(hostile_grades, name):
    rows, summary = hostile_grades
    graded = by_submission(rows, name)
    assert graded and all(r["status"] == "error" and "not a valid notebook" in r["message"] for r in graded.values())
    assert summary[name]["score"] == "0"


def test_gradebook_is_written_atomically_and_always(tmp_path):
    out = tmp_path / "grades.csv"
    (tmp_path / "junk.ipynb").write_text("nope")
    grade([tmp_path / "junk.ipynb"], out, timeout=5, progress=False)
    assert read_rows(out)[0]["status"] == "error"
    assert read_rows(out)[0]["exercise"] == "*"  # alone, nobody knows what was assigned
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".grades")]
    with pytest.raises(ValueError, match="no such submission"):
        grade([tmp_path / "missing.ipynb"], out, progress=False)


def test_student_book_has_every_page_of_the_toc(tmp_path):
    import re

    from klcourse.student import write_student_book

    root = write_student_book(tmp_path / "site", book_dir=ROOT / "book")
    for entry in re.findall(r"(?:root|file):\s*(\S+)", (root / "_toc.yml").read_text()):
        assert list(root.glob(entry + ".*")), f"{entry} missing from the student book"
    config = (root / "_config.yml").read_text()
    assert "html_copy_source: false" in config and "launch_buttons" not in config


def test_unreadable_submission_gets_the_class_assignment(tmp_path):
    from klcourse.grading import Row, Submission, _assign_unreadable

    ok = Submission("a.ipynb", ["x.one", "x.two"], [Row("a.ipynb", "x.one", True, "correct", "")] * 2)
    bad = Submission("b.txt", [], [Row("b.txt", "*", False, "error", "not a valid notebook")])
    _assign_unreadable([ok, bad])
    assert bad.assigned == ["x.one", "x.two"]
    assert [(r.exercise, r.passed) for r in bad.rows] == [("x.one", False), ("x.two", False)]
