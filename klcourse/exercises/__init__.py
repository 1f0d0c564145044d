"""Self-checking exercises: ``check("chapter.short-name", answer)``, ``hint(...)`` and ``list_exercises()``.

The registry lives in :mod:`klcourse.exercises.core`; checkers in :mod:`klcourse.exercises.checkers`;
each chapter's exercises in ``klcourse/exercises/<chapter-slug>.py``.
"""

from klcourse.exercises.core import (
    Exercise,
    Feedback,
    Tolerance,
    check,
    evaluate,
    get_exercise,
    list_exercises,
    register,
    tolerance_text,
)
from klcourse.exercises.hints import hint

__all__ = [
    "Exercise",
    "Feedback",
    "Tolerance",
    "check",
    "evaluate",
    "get_exercise",
    "hint",
    "list_exercises",
    "register",
    "tolerance_text",
]
