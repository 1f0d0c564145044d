"""The data an exercise module checks against is the data its statement shows.

Each chapter's exercise module holds its data as UPPER_CASE tuples (e.g. ``VAE_MU``); the notebook
states the same numbers to the reader. A value edited in one place and not the other would make a
right answer fail, so every non-integer number of every such tuple must appear in the notebook.
"""

import importlib
import json
import numbers
import re
from fractions import Fraction
from pathlib import Path

import pytest

from klcourse.exercises.core import CHAPTERS

BOOK = Path(__file__).resolve().parents[1] / "book"


def flat(value):
    if isinstance(value, (tuple, list)):
        for item in value:
            yield from flat(item)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        yield float(value)


def data_constants(module):
    for name, value in vars(module).items():
        if name.isupper() and isinstance(value, tuple):
            numbers_ = list(flat(value))
            if numbers_ and len(numbers_) == len(list(flat(value))):
                yield name, numbers_


def notebook_text(slug):
    nb = json.loads(next(BOOK.glob(f"[0-9][0-9]_{slug}.ipynb")).read_text(encoding="utf-8"))
    return "\n".join("".join(c["source"]) for c in nb["cells"])


CASES = [
    (slug, name, values)
    for slug in CHAPTERS
    for name, values in data_constants(importlib.import_module(f"klcourse.exercises.{slug}"))
]


def test_there_is_data_to_check():
    assert len(CASES) >= 20


def stated(value, text):
    fraction = Fraction(value).limit_denominator(1000)
    return f"{value:g}" in text or (fraction.denominator > 1 and f"{fraction.numerator}/{fraction.denominator}" in text)


@pytest.mark.parametrize(("slug", "name", "values"), CASES, ids=[f"{s}.{n}" for s, n, _ in CASES])
def test_exercise_data_appears_in_the_notebook(slug, name, values):
    text = notebook_text(slug)
    module = importlib.import_module(f"klcourse.exercises.{slug}")
    users = [f.__name__ for f in vars(module).values() if hasattr(f, "__code__") and name in f.__code__.co_names]
    if any(re.search(rf"\b{used}\b", text) for used in [name, *users]):
        return  # the notebook uses the module's own constant (directly or through a helper): consistent

    missing = [v for v in values if not v.is_integer() and not stated(v, text)]
    assert not missing, f"{slug}: {name} values {missing} are not in the notebook"
