"""Which exercises this learner has passed: a small local record that :func:`~klcourse.exercises.check` keeps.

Where the record lives
----------------------
A JSON file, ``~/.klcourse/progress.json`` (in the learner's home folder), or the file named by the environment
variable ``KLCOURSE_PROGRESS``. ``KLCOURSE_PROGRESS=off`` (or ``0``, ``no``, ``false``, ``none``) turns recording
off — the grader and the test suite run that way. Nothing is ever sent anywhere: the record is read and written
on this machine only.

What it holds
-------------
For each exercise id: how many answers were checked, whether one passed, and when one first passed (UTC).
``...`` (not answered yet) is not counted, nor a check that needs a package not installed here. A pass stays a
pass: a later wrong answer does not undo it.

Safety
------
Recording never breaks :func:`check`: a folder that cannot be written (a read-only home, a sandbox), a file that
is not valid JSON or any other ``OSError`` only means this check is not recorded. The file is written atomically
(a temporary file in the same folder, then :func:`os.replace`), so an interrupted write never leaves half a file.

Use
---
``progress()`` in a notebook (or ``klcourse progress`` in a terminal) shows, chapter by chapter, the exercises
passed; ``progress(reset=True)`` (``klcourse progress --reset``) deletes the record.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from klcourse._optional import MISSING_PACKAGE
from klcourse.exercises.core import CHAPTERS, CORRECT, NOT_ANSWERED, Feedback, _in_ipython, list_exercises

#: Environment variable naming the record's file, or turning recording off.
ENV = "KLCOURSE_PROGRESS"
#: Values of :data:`ENV` that turn recording off.
OFF = frozenset({"off", "0", "no", "false", "none"})
VERSION = 1

__all__ = ["ENV", "Progress", "progress", "progress_path", "progress_report", "record", "reset_record"]


def progress_path() -> Path | None:
    """The record's file: ``$KLCOURSE_PROGRESS`` if set, else ``~/.klcourse/progress.json``; ``None`` when off."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    return Path.home() / ".klcourse" / "progress.json"


def _load(path: Path) -> dict:
    """The record's exercises (``{id: entry}``); empty when the file is missing, unreadable or not a record."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    exercises = data.get("exercises") if isinstance(data, dict) else None
    return {k: v for k, v in exercises.items() if isinstance(v, dict)} if isinstance(exercises, dict) else {}


def _write(path: Path, exercises: dict) -> None:
    """Write atomically: a temporary file beside ``path``, flushed, then renamed over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"version": VERSION, "exercises": exercises}, indent=1, sort_keys=True) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=".progress-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def record(feedback: Feedback) -> bool:
    """Add one checked answer to the record; ``True`` when it was recorded.

    Called by :func:`klcourse.exercises.check`. Never raises (a record that cannot be written is skipped) and
    does nothing when ``KLCOURSE_PROGRESS=off`` or the answer was ``...``.
    """
    try:
        path = progress_path()
        if path is None or feedback.status == NOT_ANSWERED or feedback.misconception == MISSING_PACKAGE:
            return False  # off, not answered yet, or a package to install (not an attempt)
        exercises = _load(path)
        entry = exercises.setdefault(feedback.exercise_id, {})
        entry["attempts"] = int(entry.get("attempts", 0)) + 1
        passed = bool(entry.get("passed")) or feedback.status == CORRECT
        if passed and not entry.get("first_passed"):
            entry["first_passed"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        entry["passed"] = passed
        _write(path, exercises)
        return True
    except Exception:  # a learner's check must work on a read-only disk
        return False


def reset_record() -> Path | None:
    """Delete the record; returns the file that was removed (``None`` if there was none or recording is off)."""
    path = progress_path()
    if path is None or not path.exists():
        return None
    path.unlink()
    return path


@dataclass(frozen=True)
class Progress:
    """The learner's progress: per chapter, the exercises passed, attempted without a pass, and not tried."""

    path: Path | None
    chapters: dict  # slug -> list of (exercise id, title, "passed" | "tried" | "todo")

    @property
    def passed(self) -> list[str]:
        return [eid for rows in self.chapters.values() for eid, _, state in rows if state == "passed"]

    @property
    def total(self) -> int:
        return sum(len(rows) for rows in self.chapters.values())

    def _where(self) -> str:
        if self.path is None:
            return f"Recording is off ({ENV}=off)."
        return f"Record: {self.path}"

    def __str__(self) -> str:
        marks = {"passed": "✅", "tried": "❌", "todo": "·"}
        lines = [f"{len(self.passed)} of {self.total} exercises passed. {self._where()}"]
        for slug, rows in self.chapters.items():
            done = sum(state == "passed" for _, _, state in rows)
            lines.append(f"\n{CHAPTERS.index(slug) + 1 if slug in CHAPTERS else '?'}. {slug}: {done}/{len(rows)}")
            lines += [f"   {marks[state]} {eid}  {title}" for eid, title, state in rows]
        lines.append("\n✅ passed   ❌ tried, not passed yet   · not tried")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        marks = {"passed": "✅", "tried": "❌", "todo": "·"}
        parts = [f"<p><b>{len(self.passed)} of {self.total} exercises passed.</b> {html.escape(self._where())}</p>"]
        for slug, rows in self.chapters.items():
            done = sum(state == "passed" for _, _, state in rows)
            number = CHAPTERS.index(slug) + 1 if slug in CHAPTERS else "?"
            items = "".join(f"<li>{marks[state]} <code>{html.escape(eid)}</code> {html.escape(title)}</li>"
                            for eid, title, state in rows)
            parts.append(f"<details><summary>{number}. {html.escape(slug)}: {done}/{len(rows)}</summary>"
                         f"<ul style='list-style:none'>{items}</ul></details>")
        parts.append("<p><small>✅ passed · ❌ tried, not passed yet · · not tried</small></p>")
        return "".join(parts)


def progress_report(chapter: str | None = None) -> Progress:
    """The learner's :class:`Progress` (all chapters, or one chapter slug), without printing it."""
    path = progress_path()
    exercises = _load(path) if path is not None else {}
    listed = list_exercises(chapter)
    if chapter is not None and not listed:
        raise ValueError(f"no exercises in chapter {chapter!r}; chapters: {', '.join(CHAPTERS)}")
    chapters: dict = {}
    for exercise in listed:
        entry = exercises.get(exercise.id, {})
        state = "passed" if entry.get("passed") else ("tried" if entry.get("attempts") else "todo")
        chapters.setdefault(exercise.chapter, []).append((exercise.id, exercise.title, state))
    return Progress(path, chapters)


def progress(reset: bool = False, chapter: str | None = None) -> Progress:
    """Show which exercises this learner has passed, per chapter (``reset=True`` deletes the record first).

    The record is kept by :func:`klcourse.check` in ``~/.klcourse/progress.json`` (the learner's home folder), or
    in the file named by the environment variable ``KLCOURSE_PROGRESS``; ``KLCOURSE_PROGRESS=off`` turns
    recording off. It never leaves this machine. ``chapter`` (a slug such as ``"gaussians"``) shows one chapter.
    In Jupyter the returned object displays itself; elsewhere it is printed too.
    """
    if not isinstance(reset, bool):
        raise ValueError(f"reset must be True or False, got {reset!r}")
    if reset:
        removed = reset_record()
        print(f"Progress record {removed} deleted." if removed else "No progress record to delete.")
    result = progress_report(chapter)
    if not _in_ipython():
        print(result)
    return result
