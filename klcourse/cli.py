"""The ``klcourse`` command line: tools for instructors.

``klcourse exercises``  list the registered exercises
``klcourse student``    write a student edition (solutions removed)
``klcourse grade``      grade submitted notebooks into a gradebook CSV
"""

from __future__ import annotations

import argparse
import sys


def _split(values):
    """Accept both ``--x a b`` and ``--x a,b``."""
    if not values:
        return None
    return [v for item in values for v in item.split(",") if v]


def cmd_exercises(args) -> int:
    from klcourse.exercises import list_exercises

    exercises = list_exercises(args.chapter)
    if args.chapter and not exercises:
        print(f"klcourse: no exercises in chapter {args.chapter!r}", file=sys.stderr)
        return 2
    width = max((len(e.id) for e in exercises), default=10)
    print(f"{'id':<{width}}  {'chapter':<12}  {'kind':<14}  title")
    for e in exercises:
        print(f"{e.id:<{width}}  {e.chapter:<12}  {e.kind:<14}  {e.title}")
    print(f"\n{len(exercises)} exercises")
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


def cmd_grade(args) -> int:
    from klcourse.grading import grade

    subs = grade(args.submissions, args.out, timeout=args.timeout, jobs=args.jobs,
                 exercises=_split(args.exercises), progress=not args.quiet)
    width = max((len(s.path) for s in subs), default=10)
    for s in subs:
        notes = f"  ({'; '.join(s.notes)})" if s.notes else ""
        print(f"{s.path:<{width}}  {s.score}/{len(s.assigned)}{notes}")
    print(f"Gradebook: {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="klcourse", description="Instructor tools for the KL-divergence course.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("exercises", help="list every registered exercise")
    p.add_argument("--chapter", help="only this chapter (slug, e.g. gaussians)")
    p.set_defaults(func=cmd_exercises)

    p = sub.add_parser("student", help="write the student edition of the chapter notebooks")
    p.add_argument("outdir")
    p.add_argument("--chapters", nargs="+", help="chapter slugs (default: all)")
    p.add_argument("--exercises", nargs="+", help="exercise ids to keep (default: all)")
    p.add_argument("--book-dir", help="folder of the instructor notebooks (default: this repository's book/)")
    p.add_argument("--site", action="store_true",
                   help="write a whole buildable book (config, pages, notebooks) for a site without solutions")
    p.set_defaults(func=cmd_student)

    p = sub.add_parser("grade", help="grade submitted notebooks into a gradebook CSV",
                       description="Runs submitted code: for an untrusted class, run it inside a container.")
    p.add_argument("submissions", nargs="+", help="notebooks, or folders of them")
    p.add_argument("--out", required=True, help="gradebook CSV (a _summary.csv is written beside it)")
    p.add_argument("--timeout", type=float, default=60, help="seconds per cell (default 60)")
    p.add_argument("--jobs", type=int, default=1, help="submissions graded in parallel")
    p.add_argument("--exercises", nargs="+", help="the assignment (default: what the student edition lists)")
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
