"""The ``klcourse`` command line: tools for instructors.

``klcourse exercises``  list the registered exercises
``klcourse progress``   the exercises this learner has passed, per chapter (``--reset`` clears the record)
``klcourse student``    write a student edition (solutions removed)
``klcourse assign``     an assignment: manifest (kept by the instructor) + student notebooks, optional roster
``klcourse grade``      grade submitted notebooks (sandboxed) into a gradebook, Canvas CSV, feedback, class report
"""

from __future__ import annotations

import argparse
import sys


def _split(values):
    """Accept both ``--x a b`` and ``--x a,b``."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def _printable(text: str) -> str:
    """``text`` with control characters and lone surrogates (file names of non-UTF-8 bytes) escaped."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def cmd_exercises(args) -> int:
    from klcourse.exercises import list_exercises

    exercises = list_exercises(args.chapter)
    if args.chapter and not exercises:
        print(f"klcourse: no exercises in chapter {args.chapter!r}", file=sys.stderr)
        return 2
    width = max((len(e.id) for e in exercises), default=10)
    print(f"{'id':<{width}}  {'chapter':<12}  {'kind':<14}  {'accepted':<20}  title")
    for e in exercises:
        accepted = e.tolerance.short if e.tolerance else ""  # what the checker accepts (tolerance_text: a sentence)
        print(f"{e.id:<{width}}  {e.chapter:<12}  {e.kind:<14}  {accepted:<20}  {e.title}")
    print(f"\n{len(exercises)} exercises")
    return 0


def cmd_progress(args) -> int:
    from klcourse.exercises.progress import progress_report, reset_record

    if args.reset:
        removed = reset_record()
        print(f"Progress record {removed} deleted." if removed else "No progress record to delete.")
    print(progress_report(args.chapter))
    return 0


def cmd_student(args) -> int:
    from klcourse.student import write_student_book, write_student_edition

    if args.site:
        path = write_student_book(args.outdir, book_dir=args.book_dir)
        print(f"Student book written to {path}; build it with: jupyter-book build {path}")
        return 0
    written = write_student_edition(args.outdir, chapters=_split(args.chapters), exercises=_split(args.exercises),
                                    book_dir=args.book_dir)
    for path in written:
        print(path)
    print(f"{len(written)} student notebook(s) written to {args.outdir}")
    return 0


def cmd_assign(args) -> int:
    from klcourse.instructor.assign import make_assignment

    points = [float(p) for p in _split(args.points)] if args.points else None
    data = make_assignment(_split(args.exercises), args.outdir, args.manifest, title=args.title, due=args.due or "",
                           points=points, roster=args.roster, variants=not args.no_variants,
                           book_dir=args.book_dir)
    total = sum(e["points"] for e in data["exercises"])
    personal = [e["id"] for e in data["exercises"] if e["variant"]]
    print(f"Assignment {data['title']!r}: {len(data['exercises'])} exercises, {total:g} points"
          + (f", due {data['due']}" if data["due"] else ""))
    if personal:
        print(f"Per-student data for {', '.join(personal)}: one folder per student in {args.outdir}")
    print(f"Student notebooks: {args.outdir}")
    print(f"Manifest (keep it private, it holds the secret): {args.manifest}")
    return 0


def cmd_grade(args) -> int:
    from klcourse.instructor.grading import grade
    from klcourse.instructor.sandbox import UNSANDBOXED

    sandbox = False if args.no_sandbox else None
    run = grade(args.submissions, args.out, assignment=args.assignment, exercises=_split(args.exercises),
                timeout=args.timeout, limit=args.limit, jobs=args.jobs, progress=not args.quiet, sandbox=sandbox)
    if not run.sandboxed:
        print(f"*** {UNSANDBOXED} ***", file=sys.stderr)
    width = max((len(s.student) for s in run.students), default=10)
    for s in run.students:
        notes = f"  ({'; '.join(s.notes)})" if s.notes else ""
        print(_printable(f"{s.student:<{width}}  {s.points:g}/{s.max_points:g}{notes}"))
    for name, path in run.outputs.items():
        print(f"{name + ':':<11} {path}")
    print(f"{len(run.files)} file(s), {len(run.students)} student(s) in {run.elapsed:.1f} s "
          f"({'sandboxed with bubblewrap' if run.sandboxed else 'UNSANDBOXED'})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klcourse", description="Instructor tools for the KL-divergence course.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("exercises", help="list every registered exercise")
    p.add_argument("--chapter", help="only this chapter (slug, e.g. gaussians)")
    p.set_defaults(func=cmd_exercises)

    p = sub.add_parser("progress", help="the exercises you have passed, per chapter",
                       description="Reads the record that check() keeps: $KLCOURSE_PROGRESS if set, else "
                                   "~/.klcourse/progress.json (KLCOURSE_PROGRESS=off: no record).")
    p.add_argument("--chapter", help="only this chapter (slug, e.g. gaussians)")
    p.add_argument("--reset", action="store_true", help="delete the record first")
    p.set_defaults(func=cmd_progress)

    p = sub.add_parser("student", help="write the student edition of the chapter notebooks")
    p.add_argument("outdir")
    p.add_argument("--chapters", nargs="+", help="chapter slugs (default: all)")
    p.add_argument("--exercises", nargs="+", help="exercise ids to keep (default: all)")
    p.add_argument("--book-dir", help="folder of the instructor notebooks (default: this repository's book/)")
    p.add_argument("--site", action="store_true",
                   help="write a whole buildable book (config, pages, notebooks) for a site without solutions")
    p.set_defaults(func=cmd_student)

    p = sub.add_parser("assign", help="write an assignment: a private manifest and the student notebooks")
    p.add_argument("outdir", help="folder for the student notebooks (one sub-folder per student with variants)")
    p.add_argument("--exercises", nargs="+", required=True, help="exercise ids, from any chapters")
    p.add_argument("--points", nargs="+", help="points per exercise (one value for all, or one per exercise)")
    p.add_argument("--title", required=True)
    p.add_argument("--due", help="due date, as you want it shown")
    p.add_argument("--manifest", required=True, help="the manifest JSON you keep (outside outdir)")
    p.add_argument("--roster", help="CSV of students: id[,name,canvas_id,sis_id,section]")
    p.add_argument("--no-variants", action="store_true", help="the same data for every student")
    p.add_argument("--book-dir", help="folder of the instructor notebooks (default: this repository's book/)")
    p.set_defaults(func=cmd_assign)

    p = sub.add_parser("grade", help="grade submitted notebooks (each in its own sandbox)",
                       description="Each submission runs under bubblewrap when available; the verdicts are decided "
                                   "by the grader from the answers recorded as data.")
    p.add_argument("submissions", nargs="+", help="notebooks, or folders of them (per-student sub-folders)")
    p.add_argument("--assignment", help="the manifest written by klcourse assign (denominator, roster, variants)")
    p.add_argument("--out", default="grades.csv",
                   help="gradebook CSV; _summary.csv, _canvas.csv, _feedback/ and _report.html go beside it")
    p.add_argument("--timeout", type=float, default=60, help="seconds per cell (default 60)")
    p.add_argument("--limit", type=float, help="seconds per notebook (default: timeout × code cells + 30, "
                                                    "counting at most 10 cells)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    p.add_argument("--exercises", nargs="+", help="without a manifest: the assignment (1 point each)")
    p.add_argument("--no-sandbox", action="store_true", help="run without bubblewrap (reported as UNSANDBOXED)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_grade)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"klcourse: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
