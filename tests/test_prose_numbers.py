"""Numbers in the prose as inline expressions, ``{eval}`num("key", ".3f")``` (klcourse.prose, issue 12).

The book (myst-nb, inline execution) and JupyterLab (jupyterlab-myst) both evaluate these in the chapter's kernel,
so a converted chapter must hold no myst-nb glue role or glue:figure directive (JupyterLab cannot paste those),
only expressions of the one allowed form, each naming a key that a cell ABOVE it glues (the kernel evaluates a
Markdown cell after the cells above it, never after the cells below).
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from klcourse.instructor.student import make_student_notebook
from klcourse.prose import EVAL_PATTERN, Shown, glue, glued_keys, num

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
#: every chapter writes its prose numbers as {eval} expressions (no {glue:text} role is left anywhere)
CONVERTED = sorted(path.stem for path in BOOK.glob("*.ipynb"))
GLUE_MARKUP = re.compile(r"\{glue(?::\w+)?\}")
EVAL_ROLE = re.compile(r"\{eval\}`([^`]*)`")
GLUE_CALL = re.compile(r"\bglue(?:_[a-z]+)?\(")
STRING = re.compile(r"(?<![A-Za-z0-9_])(f?)([\"'])([A-Za-z_][^\"'\n]*?)\2")


def _source(cell) -> str:
    return "".join(cell["source"])


def _glued_patterns(cell) -> list[re.Pattern]:
    """Keys a code cell may glue: the string literals of a cell that calls glue (an f-string as a pattern)."""
    text = _source(cell)
    if cell["cell_type"] != "code" or not GLUE_CALL.search(text):
        return []
    patterns = []
    for prefix, _, literal in STRING.findall(text):
        parts = re.split(r"\{[^}]*\}", literal) if prefix == "f" else [literal]
        patterns.append(re.compile(".+".join(re.escape(p) for p in parts)))
    return patterns


def _prose(cell) -> str:
    """A Markdown cell's text, or a code cell's figure caption (shown once the cell has run)."""
    if cell["cell_type"] == "markdown":
        return _source(cell)
    return cell.get("metadata", {}).get("mystnb", {}).get("figure", {}).get("caption", "")


def prose_problems(nb: dict) -> list[str]:
    """Glue markup left in the prose, expressions outside the allowed form, keys not glued in an earlier cell."""
    problems, patterns = [], []
    for index, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            patterns += _glued_patterns(cell)
        text = _prose(cell)
        where = f"cell {index} ({cell.get('id')})"
        if GLUE_MARKUP.search(text) or "glue:figure" in text:
            problems.append(f"{where}: myst-nb glue markup {GLUE_MARKUP.findall(text) or ['glue:figure']}")
        for expression in EVAL_ROLE.findall(text):
            if not re.match(EVAL_PATTERN, expression):
                problems.append(f"{where}: {expression!r} is not num(\"key\"[, \"format\"])")
                continue
            key = re.match(r'num\("([^"]+)"', expression).group(1)
            if not any(p.fullmatch(key) for p in patterns):
                problems.append(f"{where}: {key!r} is not glued in an earlier cell")
    return problems


def _load(stem: str) -> dict:
    return json.loads((BOOK / f"{stem}.ipynb").read_text(encoding="utf-8"))


@pytest.mark.parametrize("stem", CONVERTED)
def test_prose_numbers_are_eval_expressions_of_earlier_keys(stem):
    nb = _load(stem)
    assert any(EVAL_ROLE.search(_prose(c)) for c in nb["cells"]), f"{stem}: no {{eval}} numbers"
    assert prose_problems(nb) == []
    ids = [c.get("id") for c in nb["cells"]]
    assert len(ids) == len(set(ids)), f"{stem}: duplicate cell ids"  # split cells get new ids
    # myst-nb evaluates {eval} only while it executes the notebook inline
    assert nb["metadata"].get("mystnb", {}).get("execution_mode") == "inline"


@pytest.mark.parametrize("stem", CONVERTED)
def test_figures_are_cell_outputs_with_caption_name_and_alt(stem):
    """A converted figure is its code cell's own output: myst-nb's figure metadata, shown once, not removed."""
    for cell in _load(stem)["cells"]:
        meta = cell.get("metadata", {}).get("mystnb", {})
        if "figure" not in meta:
            continue
        assert cell["cell_type"] == "code"
        assert meta["figure"].get("caption") and re.fullmatch(r"[a-z][a-z0-9-]*", meta["figure"].get("name", ""))
        assert len(meta.get("image", {}).get("alt", "").split()) >= 5, cell["id"]
        assert "remove-cell" not in cell["metadata"].get("tags", [])
        assert "remove-output" not in cell["metadata"].get("tags", [])
        text = _source(cell)
        assert re.search(r"^\s*display\((\w+)\)\s*$", text, re.M), cell["id"]
        shown = re.search(r"^\s*display\((\w+)\)\s*$", text, re.M).group(1)
        assert f"close({shown})" in text.split(f"display({shown})", 1)[1], f"{cell['id']}: figure shown twice"


def test_the_book_evaluates_only_the_allowed_form():
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert config["sphinx"]["config"]["nb_eval_name_regex"] == EVAL_PATTERN
    allowed = ['num("H_p")', 'num("H_p", ".3f")', 'num("est-n-reps", ",.0f")', 'num("x", "+.1e")', 'num("y", ".0%")']
    refused = ['__import__("os").system("true")', 'num("a"); 1', 'num("a", "{}")', 'num(H_p)', 'num("a", ".3f", 1)',
               'num("a" , ".3f")', 'num("a\\"", ".3f")', "num('a')"]
    assert all(re.match(EVAL_PATTERN, e) for e in allowed)
    assert not any(re.match(EVAL_PATTERN, e) for e in refused)


def test_the_source_check_catches_a_forward_reference_and_leftover_glue():
    def md(text):
        return {"cell_type": "markdown", "id": "m", "metadata": {}, "source": [text]}

    def code(text):
        return {"cell_type": "code", "id": "c", "metadata": {}, "source": [text], "outputs": []}

    ok = {"cells": [code('glue("a", 1.0)\nfor k in (1, 2):\n    glue(f"b-{k}", k)'),
                    md('{eval}`num("a", ".2f")` and {eval}`num("b-2")`')]}
    assert prose_problems(ok) == []
    forward = {"cells": [md('{eval}`num("a", ".2f")`'), code('glue("a", 1.0)')]}
    assert "'a' is not glued in an earlier cell" in prose_problems(forward)[0]
    left = {"cells": [code('glue("a", 1.0)'), md("{glue:text}`a:.2f`")]}
    assert "glue markup" in prose_problems(left)[0]


def test_num_shows_the_formatted_number_without_quotes():
    glue("test-prose-h", 2.2009765, display=False)
    glue("test-prose-n", 12000, display=False)
    shown = num("test-prose-h", ".3f")
    assert isinstance(shown, Shown) and repr(shown) == "2.201" and str(shown) == "2.201"
    assert repr(num("test-prose-n", ",.0f")) == "12,000" and repr(num("test-prose-n")) == "12000"
    assert repr(num("test-prose-h", ".0%")) == "220%"
    assert glued_keys()[-2:] == ["test-prose-h", "test-prose-n"]


def test_glue_and_num_work_without_myst_nb(monkeypatch):
    """A learner's kernel (Colab) has no myst-nb: glue keeps the value for num, and display=True still shows it."""
    monkeypatch.setitem(sys.modules, "myst_nb", None)  # `import myst_nb` now raises ImportError
    with pytest.raises(ImportError):
        import myst_nb  # noqa: F401
    shown = []
    monkeypatch.setattr("klcourse.prose._in_kernel", lambda: True)  # as in a learner's kernel
    monkeypatch.setattr("IPython.display.display", lambda value: shown.append(value))
    glue("test-prose-bare", 0.5108256, display=False)
    glue("test-prose-bare-shown", 3, display=True)
    assert repr(num("test-prose-bare", ".4f")) == "0.5108" and shown == [3]


def test_glue_outside_a_kernel_creates_no_ipython_shell():
    """In a plain Python process glue only keeps the value: myst_nb.glue would create an IPython shell, after which
    check() and hint() believe they run in a notebook and print HTML objects instead of their sentences."""
    code = ("from klcourse.prose import glue, num\n"
            "glue('x', 0.25, display=True)\n"
            "import IPython, sys\n"
            "from klcourse.exercises.core import _in_ipython\n"
            "print(num('x', '.2f'), IPython.get_ipython(), _in_ipython())\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "0.25\n0.25 None False\n"


def test_num_of_a_key_not_glued_yet_raises():
    with pytest.raises(LookupError, match="no value glued under 'test-prose-never'"):
        num("test-prose-never", ".3f")
    glue("test-prose-text", "abc", display=False)
    with pytest.raises(ValueError, match="cannot format"):
        num("test-prose-text", ".3f")
    with pytest.raises(ValueError, match="glue key"):
        glue("bad key", 1.0)


def test_student_edition_keeps_the_execution_mode_and_figure_metadata():
    nb = nbformat.v4.new_notebook()
    nb.metadata["mystnb"] = {"execution_mode": "inline"}
    figure = nbformat.v4.new_code_cell("display(fig)")
    figure.metadata["mystnb"] = {"figure": {"caption": "A caption", "name": "fig-x"}, "image": {"alt": "a b c d e"}}
    figure.metadata["tags"] = ["hide-input"]
    nb.cells = [figure]
    student = make_student_notebook(copy.deepcopy(nb))
    assert student.metadata["mystnb"] == {"execution_mode": "inline"}
    assert student.cells[0].metadata["mystnb"] == figure.metadata["mystnb"]
    assert student.cells[0].metadata["tags"] == ["hide-input"]
