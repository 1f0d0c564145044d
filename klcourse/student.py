"""Re-export of :mod:`klcourse.instructor.student` (student editions), kept for existing imports."""

from klcourse.instructor.student import (  # noqa: F401
    PLACEHOLDER_TAG,
    SOLUTION_TAG,
    chapter_notebooks,
    default_book_dir,
    defined_names,
    make_student_notebook,
    placeholder_source,
    solution_lines,
    student_site_config,
    write_student_book,
    write_student_edition,
)
