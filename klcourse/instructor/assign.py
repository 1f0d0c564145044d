"""Assignments: what is assigned, with what points, to whom — the instructor's files, never the submission's.

:func:`make_assignment` writes

* a **manifest** (JSON) the instructor keeps: title, due date, exercises with points, the roster, and a random
  secret from which the per-student variant data and the hidden test cases are derived. The grader takes the
  denominator, the identities and the variant data from it; students never see it;
* the **student notebooks**: one student edition per chapter involved (only the assigned exercises), or with a
  roster and variants, one folder per student whose personalised exercises show that student's data.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import secrets
import tempfile
from pathlib import Path

import nbformat

from klcourse.instructor import variants as vr
from klcourse.instructor.student import (
    _exercise_units,
    _source,
    chapter_notebooks,
    make_student_notebook,
    refuse_instructor_folder,
)

MANIFEST_VERSION = 1
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,79}$")


def read_roster(path) -> list[dict]:
    """Students from a CSV with a column ``id`` (or ``student_id``/``login``); optional ``name``,
    ``canvas_id``, ``sis_id``, ``section``."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    students, seen = [], set()
    for n, row in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        sid = row.get("id") or row.get("student_id") or row.get("login")
        if not sid:
            raise ValueError(f"roster {path}, line {n}: no student id (a column 'id' is required)")
        if not _SAFE_ID.match(sid):
            raise ValueError(f"roster {path}, line {n}: student id {sid!r} must be letters, digits, . _ @ -")
        if sid.lower() in seen:  # the grader matches ids ignoring case: "Ann" and "ann" would share files
            raise ValueError(f"roster {path}, line {n}: student id {sid!r} appears twice (ignoring case)")
        seen.add(sid.lower())
        students.append({"id": sid, "name": row.get("name", ""), "canvas_id": row.get("canvas_id", ""),
                         "sis_id": row.get("sis_id", ""), "section": row.get("section", "")})
    if not students:
        raise ValueError(f"roster {path} lists no students")
    return students


def _points(exercises, points) -> dict:
    if points is None:
        return dict.fromkeys(exercises, 1.0)
    if isinstance(points, (int, float)):
        return dict.fromkeys(exercises, float(points))
    if isinstance(points, dict):
        missing = [e for e in exercises if e not in points]
        if missing:
            raise ValueError(f"no points given for {missing}")
        return {e: float(points[e]) for e in exercises}
    points = list(points)
    if len(points) == 1:
        return dict.fromkeys(exercises, float(points[0]))
    if len(points) != len(exercises):
        raise ValueError(f"{len(points)} point values for {len(exercises)} exercises")
    return {e: float(p) for e, p in zip(exercises, points, strict=True)}


def make_assignment(exercises, outdir, manifest, *, title: str, due: str = "", points=None, roster=None,
                    variants: bool = True, book_dir=None) -> dict:
    """Write the student notebooks into ``outdir`` and the manifest to ``manifest``; returns the manifest.

    Parameters
    ----------
    exercises : list of str
        Exercise ids, from any chapters.
    points : number, list or dict, optional
        Points per exercise (default 1 each).
    roster : path or list of dict, optional
        The students; with ``variants`` the exercises in :data:`klcourse.instructor.variants.VARIANTS` get
        per-student data and each student a folder ``outdir/<student id>/``.
    """
    from klcourse.exercises import get_exercise

    exercises = list(dict.fromkeys(exercises))
    if not exercises:
        raise ValueError("an assignment needs at least one exercise")
    for e in exercises:
        try:
            get_exercise(e)
        except KeyError as exc:
            raise ValueError(str(exc).strip('"')) from None
    pts = _points(exercises, points)
    if any(p <= 0 for p in pts.values()):
        raise ValueError("points must be positive")
    outdir, manifest = Path(outdir), Path(manifest)
    refuse_instructor_folder(outdir, book_dir)
    if manifest.resolve().is_relative_to(outdir.resolve()):
        raise ValueError("the manifest holds the assignment's secret: keep it outside the students' folder")
    students = roster if isinstance(roster, list) or roster is None else read_roster(roster)
    personal = [e for e in exercises if variants and students and e in vr.VARIANTS]
    data = {
        "klcourse_manifest": MANIFEST_VERSION,
        "title": title,
        "due": due,
        "secret": secrets.token_hex(16),
        "exercises": [{"id": e, "points": pts[e], "kind": get_exercise(e).kind, "variant": e in personal}
                      for e in exercises],
        "roster": students or [],
    }
    chapters = list(dict.fromkeys(e.split(".")[0] for e in exercises))
    notebooks = chapter_notebooks(book_dir, chapters)
    outdir.mkdir(parents=True, exist_ok=True)
    editions = {slug: make_student_notebook(nbformat.read(path, as_version=4), exercises=set(exercises))
                for slug, path in notebooks.items()}
    for nb in editions.values():
        nb.metadata["klcourse"]["assignment"] = title
    if personal:
        for student in students:
            folder = outdir / student["id"]
            folder.mkdir(exist_ok=True)
            for slug, nb in editions.items():
                mine = personalise(nb, data["secret"], student, personal)
                nbformat.write(mine, folder / notebooks[slug].name)
    else:
        for slug, nb in editions.items():
            nbformat.write(nb, outdir / notebooks[slug].name)
    data["notebooks"] = [p.name for p in notebooks.values()]
    write_manifest(data, manifest)
    return data


def personalise(nb, secret: str, student: dict, personal) -> nbformat.NotebookNode:
    """A copy of a student edition with ``student``'s data in each personalised exercise."""
    nb = copy.deepcopy(nb)
    nb.metadata["klcourse"]["student"] = student["id"]
    inserts = []
    for first, last, exercise_id in _exercise_units(nb.cells):
        if exercise_id not in personal:
            continue
        data = vr.variant_data(secret, student["id"], exercise_id)
        for cell in nb.cells[first:last]:
            if cell.cell_type == "markdown":
                cell.source = vr.personalise_statement(_source(cell), exercise_id, data)
        check_cell = nb.cells[last]
        call = re.compile(r"""\bcheck\(\s*(["'])""" + re.escape(exercise_id) + r"""\1\s*,\s*answer\s*\)""")
        check_cell.source = ("from klcourse.instructor.variants import check_variant\n\n"
                             + call.sub(f'check_variant("{exercise_id}", answer, data={json.dumps(data)})',
                                        _source(check_cell)))
        box = nbformat.v4.new_markdown_cell(
            f"**Your data for this exercise** (student `{student['id']}`): {vr.VARIANTS[exercise_id].describe(data)}."
            " Every student has their own numbers: use these, not a classmate's.")
        inserts.append((first + 1, box))
    for index, cell in sorted(inserts, key=lambda x: -x[0]):
        nb.cells.insert(index, cell)
    return nb


def write_manifest(data: dict, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        os.chmod(tmp, 0o600)  # it holds the secret
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_manifest(path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the assignment manifest {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("klcourse_manifest") != MANIFEST_VERSION:
        raise ValueError(f"{path} is not a klcourse assignment manifest")
    if not data.get("exercises"):
        raise ValueError(f"manifest {path} assigns no exercises")
    return data
