"""Structure of the chapter notebooks: committed clean, listed in the TOC, exercises wired to the registry."""

import ast
import json
import re
from pathlib import Path

import pytest

from klcourse.exercises import list_exercises
from klcourse.exercises.core import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
MIN_EXERCISES = 5


def cells(nb_path):
    return json.loads(nb_path.read_text(encoding="utf-8"))["cells"]


def source(cell):
    src = cell["source"]
    return "".join(src) if isinstance(src, list) else src


def check_calls(nb_path):
    """Exercise ids used in ``check("id", ...)`` calls of a notebook."""
    ids = []
    for cell in cells(nb_path):
        if cell["cell_type"] != "code":
            continue
        try:
            tree = ast.parse(source(cell))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check" and node.args:
                first = node.args[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str):
                    ids.append(first.value)
    return ids


def test_one_notebook_per_chapter_in_order():
    assert [nb.stem.split("_", 1)[1] for nb in NOTEBOOKS] == list(CHAPTERS)


def test_toc_lists_every_notebook():
    toc = (ROOT / "_toc.yml").read_text()
    listed = set(re.findall(r"file:\s*(\S+)", toc))
    for nb in NOTEBOOKS:
        assert f"book/{nb.stem}" in listed, nb.name


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs_and_with_a_title(nb):
    cs = cells(nb)
    title = cs[0]  # the title opens the notebook; the setup cell follows it (test_learner_setup)
    assert title["cell_type"] == "markdown" and source(title).lstrip().startswith("# ")
    for cell in cs:
        assert cell.get("id"), "every cell needs an id"
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("nb", [*NOTEBOOKS, ROOT / "book" / "instructors.ipynb"], ids=lambda p: p.stem)
def test_code_lines_fit_88_characters(nb):
    """The course's code style (as QuantEcon's): a code line fits 88 characters, on a phone and in a diff."""
    long = [(cell.get("id"), len(line)) for cell in cells(nb) if cell["cell_type"] == "code"
            for line in source(cell).splitlines() if len(line) > 88]
    assert not long, long


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_a_check_cell_and_a_folded_solution(nb):
    slug = nb.stem.split("_", 1)[1]
    registered = {e.id for e in list_exercises(slug)}
    used = check_calls(nb)
    assert len(registered) >= MIN_EXERCISES, f"{slug}: only {len(registered)} exercises registered"
    assert set(used) == registered, f"check cells {sorted(set(used) ^ registered)} do not match the registry"
    text = [source(c) for c in cells(nb) if c["cell_type"] == "markdown"]
    starts = sum(s.count("{exercise-start}") for s in text)
    solutions = [s for s in text if "{solution-start}" in s]
    assert starts >= len(registered)
    assert all(":class: dropdown" in s for s in solutions), "solutions must be folded"
    tagged = [c for c in cells(nb) if "solution" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) >= len(registered), "each exercise needs a solution-tagged cell"
