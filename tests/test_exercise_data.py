"""The data an exercise module checks against is the data its statement shows.

Each chapter's exercise module holds its data as UPPER_CASE tuples (e.g. ``CHAIN_P``); the notebook either
types the same numbers out for the reader or uses the constant itself. A value edited in one place and not
the other would make a right answer fail, so: a tuple typed out in the notebook must match the module in
every position, and a tuple not typed out must be used by the notebook's code (directly or via a helper).
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


NUMBER = r"[-−]?\d+(?:\.\d+)?(?:/\d+)?(?:e[-−+]?\d+)?"
GAP = r"[^\d]{1,40}?"  # what stands between two stated numbers: ", ", "), (", "],\n [", " and " …


def number_pattern(value: float) -> str:
    sign = "[-−]" if value < 0 else ""
    forms = [re.escape(f"{abs(value):g}") + ("0*" if "." in f"{value:g}" else "")]  # 0.3 or 0.30
    if value.is_integer():
        forms = [rf"{abs(int(value))}(?:\.0+)?"]
    fraction = Fraction(value).limit_denominator(1000)
    if fraction.denominator > 1:
        forms.append(rf"{abs(fraction.numerator)}/{fraction.denominator}")
    return rf"(?<![\d.]){sign}(?:{'|'.join(forms)})(?![\d])"


def sequence_in(values, text, wildcard=None) -> bool:
    parts = [NUMBER if i == wildcard else number_pattern(v) for i, v in enumerate(values)]
    return re.search(GAP.join(parts), text) is not None


@pytest.mark.parametrize(("slug", "name", "values"), CASES, ids=[f"{s}.{n}" for s, n, _ in CASES])
def test_exercise_data_appears_in_the_notebook(slug, name, values):
    text = notebook_text(slug)
    if sequence_in(values, text):
        return  # typed out in the notebook, and the same numbers
    stale = [i for i in range(len(values)) if len(values) > 2 and sequence_in(values, text, wildcard=i)]
    assert not stale, f"{slug}: {name} is typed in the notebook with a different value at position {stale[0]}"
    module = importlib.import_module(f"klcourse.exercises.{slug}")
    users = [f.__name__ for f in vars(module).values() if hasattr(f, "__code__") and name in f.__code__.co_names]
    assert any(re.search(rf"\b{used}\b", text) for used in [name, *users]), (
        f"{slug}: the reader never sees {name}: neither typed out nor used by the notebook's code"
    )
