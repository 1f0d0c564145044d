"""What a grading run writes — atomically (a temporary file renamed into place), and always.

* ``grades.csv``: one row per student and exercise (points, status, the misconception's name, the message);
* ``grades_summary.csv``: one row per student (points, maximum, submissions, notes such as ``UNSANDBOXED``);
* ``grades_canvas.csv``: a grade CSV Canvas imports (Student, ID, SIS User ID, SIS Login ID, Section, assignment);
* ``grades_feedback/<student>.html``: each exercise's verdict and message — never an expected value;
* ``grades_report.html``: the class report, figures embedded as PNG (score distribution, pass rate per exercise,
  the most frequent misconceptions per exercise).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import os
import re
import tempfile
from collections import Counter
from pathlib import Path

from klcourse.instructor.sandbox import UNSANDBOXED

GRADEBOOK_COLUMNS = ["student", "exercise", "points", "max_points", "passed", "status", "misconception", "message",
                     "submission"]
FIGURES = ("score-distribution", "pass-rate", "misconceptions")


def atomic_write(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


#: A spreadsheet reads a cell that starts with one of these as a formula (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value):
    """``value`` for a CSV cell, with a text that a spreadsheet would run as a formula quoted by a leading ``'``.

    Messages and notes can carry text a submission chose (a forged event, a file name): an instructor opening
    the gradebook in a spreadsheet must not run it.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _csv_bytes(header, rows) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows([_cell(v) for v in row] for row in rows)
    return _utf8(buf.getvalue())


def _utf8(text: str) -> bytes:
    """UTF-8, with lone surrogates written as ``\\udcff``: a file name of non-UTF-8 bytes or a forged ``"\\ud800"``
    in a message must not stop the whole class's outputs from being written."""
    return text.encode("utf-8", "backslashreplace")


def _num(x: float) -> str:
    return f"{x:g}"


def _safe_name(student: str) -> str:
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", student)[:80] or "student"


def write_outputs(run, out_csv) -> dict:
    out_csv = Path(out_csv)
    stem = out_csv.stem
    paths = {"gradebook": out_csv, "summary": out_csv.with_name(f"{stem}_summary.csv"),
             "canvas": out_csv.with_name(f"{stem}_canvas.csv"), "feedback": out_csv.with_name(f"{stem}_feedback"),
             "report": out_csv.with_name(f"{stem}_report.html")}
    banner = [] if run.sandboxed else [UNSANDBOXED]
    rows = [[r.student, r.exercise, _num(r.points), _num(r.max_points), r.passed, r.status, r.misconception,
             r.message, r.submission] for s in run.students for r in s.rows]
    atomic_write(paths["gradebook"], _csv_bytes(GRADEBOOK_COLUMNS, rows))
    summary = [[s.student, s.info.get("name", ""), _num(s.points), _num(s.max_points),
                sum(r.passed for r in s.rows), len(s.rows), " ".join(s.submissions),
                " | ".join(dict.fromkeys(banner + s.notes))] for s in run.students]
    atomic_write(paths["summary"], _csv_bytes(["student", "name", "points", "max_points", "passed", "exercises",
                                               "submissions", "notes"], summary))
    atomic_write(paths["canvas"], canvas_csv(run))
    paths["feedback"].mkdir(parents=True, exist_ok=True)
    for s in run.students:
        atomic_write(paths["feedback"] / f"{_safe_name(s.student)}.html", _utf8(feedback_html(run, s)))
    atomic_write(paths["report"], _utf8(report_html(run)))
    return paths


def canvas_csv(run) -> bytes:
    """Canvas's gradebook import format: the assignment column holds the points."""
    title = run.assignment.title or "assignment"
    header = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", title]
    rows = [["Points Possible", "", "", "", "", _num(sum(run.assignment.points.values()))]]
    for s in run.students:
        if s.student.startswith("unknown:"):
            continue  # not on the roster: Canvas could not match it; it is in the summary
        info = s.info or {}
        rows.append([info.get("name") or s.student, info.get("canvas_id", ""), info.get("sis_id", ""), s.student,
                     info.get("section", ""), _num(s.points)])
    return _csv_bytes(header, rows)


_STYLE = """<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
.pass{color:#116329}.fail{color:#a40e26}.warn{background:#fff3cd;padding:.5rem;border:1px solid #e0c060}</style>"""


def feedback_html(run, s) -> str:
    """One student's feedback page: verdict and message per exercise (messages never contain the answer)."""
    a = run.assignment
    esc = html.escape
    items = []
    for r in s.rows:
        mark = "✅" if r.passed else ("…" if r.status in ("not answered", "missing") else "❌")
        cls = "pass" if r.passed else "fail"
        items.append(f"<tr><td>{esc(r.exercise)}</td><td class='{cls}'>{mark} {esc(r.status)}</td>"
                     f"<td>{_num(r.points)} / {_num(r.max_points)}</td><td>{esc(r.message)}</td></tr>")
    notes = "".join(f"<li>{esc(n)}</li>" for n in s.notes)
    warn = "" if run.sandboxed else f"<p class='warn'>{esc(UNSANDBOXED)}</p>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(a.title)} — "
            f"{esc(s.student)}</title>{_STYLE}</head><body><h1>{esc(a.title)}</h1>{warn}"
            f"<p>Student: <b>{esc(s.info.get('name') or s.student)}</b> ({esc(s.student)})"
            + (f" · due {esc(a.due)}" if a.due else "") +
            f"</p><p>Score: <b>{_num(s.points)} / {_num(s.max_points)}</b></p>"
            "<table><tr><th>exercise</th><th>verdict</th><th>points</th><th>feedback</th></tr>"
            + "".join(items) + "</table>"
            + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "") + "</body></html>\n")


# ------------------------------------------------------------------------------------------ class report
def class_statistics(run) -> dict:
    exercises = run.assignment.exercises
    graded = [s for s in run.students if not s.student.startswith("unknown:")] or run.students
    scores = [s.points for s in graded]
    pass_rate = {e: (sum(r.passed for s in graded for r in s.rows if r.exercise == e) / len(graded)
                     if graded else 0.0) for e in exercises}
    misconceptions = {e: Counter(r.misconception for s in graded for r in s.rows
                                 if r.exercise == e and r.misconception and not r.passed) for e in exercises}
    return {"scores": scores, "max": sum(run.assignment.points.values()), "pass_rate": pass_rate,
            "misconceptions": misconceptions, "n": len(graded)}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def report_figures(run) -> dict:
    """``{figure name: base64 PNG}`` — matplotlib with the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    st = class_statistics(run)
    out = {}
    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot()
    top = st["max"] or 1
    ax.hist(st["scores"], bins=min(20, max(5, int(top) + 1)), range=(0, top), color="#4c72b0", edgecolor="white")
    ax.set_xlabel(f"points (out of {_num(top)})")
    ax.set_ylabel("students")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Score distribution")
    out["score-distribution"] = _png(fig)
    fig = Figure(figsize=(6, 0.45 * len(st["pass_rate"]) + 1.2))
    ax = fig.add_subplot()
    names = list(st["pass_rate"])[::-1]
    ax.barh(names, [100 * st["pass_rate"][e] for e in names], color="#55a868")
    ax.set_xlim(0, 100)
    ax.set_xlabel("students who passed (%)")
    ax.set_title("Pass rate per exercise")
    out["pass-rate"] = _png(fig)
    pairs = [(f"{e}: {m}", c) for e, counter in st["misconceptions"].items() for m, c in counter.most_common(3)]
    fig = Figure(figsize=(6, 0.45 * max(len(pairs), 1) + 1.2))
    ax = fig.add_subplot()
    if pairs:
        labels, counts = zip(*pairs[::-1], strict=True)
        ax.barh(labels, counts, color="#c44e52")
        ax.set_xlabel("students")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        ax.text(0.5, 0.5, "no recognised misconception", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    ax.set_title("Most frequent misconceptions (up to 3 per exercise)")
    out["misconceptions"] = _png(fig)
    return out


def report_html(run) -> str:
    esc = html.escape
    st = class_statistics(run)
    figs = report_figures(run)
    scores = st["scores"]
    mean = sum(scores) / len(scores) if scores else 0.0
    rows = "".join(
        f"<tr><td>{esc(e)}</td><td>{_num(run.assignment.points[e])}</td><td>{100 * st['pass_rate'][e]:.0f}%</td>"
        f"<td>{esc(', '.join(f'{m} ({c})' for m, c in st['misconceptions'][e].most_common(3)) or '—')}</td></tr>"
        for e in run.assignment.exercises)
    images = "".join(f"<figure><img alt='{esc(name)}' src='data:image/png;base64,{data}'>"
                     f"<figcaption>{esc(name)}</figcaption></figure>" for name, data in figs.items())
    warn = "" if run.sandboxed else f"<p class='warn'>{esc(UNSANDBOXED)}</p>"
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{esc(run.assignment.title)}"
            f" — class report</title>{_STYLE}</head><body><h1>{esc(run.assignment.title)}: class report</h1>{warn}"
            f"<p>{st['n']} students · mean {mean:.2f} / {_num(st['max'])} points · "
            f"{len(run.files)} files graded in {run.elapsed:.0f} s"
            f" ({'sandboxed with bubblewrap' if run.sandboxed else 'without a sandbox'})</p>"
            "<table><tr><th>exercise</th><th>points</th><th>pass rate</th><th>most frequent misconceptions</th></tr>"
            f"{rows}</table>{images}</body></html>\n")
