"""Instructor tools: student editions, assignments, the sandboxed grader and its reports.

* :mod:`~klcourse.instructor.student` — student editions of the chapter notebooks (solutions removed);
* :mod:`~klcourse.instructor.assign` — assignment manifests, rosters, per-student notebooks;
* :mod:`~klcourse.instructor.variants` — exercises whose data each student gets from their own seed;
* :mod:`~klcourse.instructor.grading` — the grader (verdicts decided outside the student's code);
* :mod:`~klcourse.instructor.sandbox` and :mod:`~klcourse.instructor.worker` — what runs a submission;
* :mod:`~klcourse.instructor.datacodec` — answers as plain data; :mod:`~klcourse.instructor.reports` — outputs.
"""
