"""Re-export of :mod:`klcourse.instructor.grading` (the grader), kept for existing imports."""

from klcourse.instructor.grading import (  # noqa: F401
    Assignment,
    GradeRun,
    Row,
    StudentResult,
    expand_submissions,
    grade,
    identify,
)
