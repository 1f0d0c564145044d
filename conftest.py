"""Loaded by every pytest run in this repository: the unit tests and the notebooks under nbval."""

import os

# check() keeps a learner's progress record (klcourse.exercises.progress); a test run is not a learner, and the
# notebook kernels nbval starts inherit this. A value set by hand wins.
os.environ.setdefault("KLCOURSE_PROGRESS", "off")
