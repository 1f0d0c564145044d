"""The student website (``make book-student``) carries no solution text anywhere in its built output."""

import html
from pathlib import Path

import nbformat
import pytest

from klcourse.student import chapter_notebooks, solution_lines

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "_build" / "student-book" / "_build" / "html"


@pytest.fixture(scope="module")
def built_text():
    assert (SITE / "index.html").exists(), "run `make book-student` first (make test does)"
    texts = {}
    for path in SITE.rglob("*"):
        if path.is_file() and path.suffix in {".html", ".js", ".json", ".txt", ".ipynb", ".md", ".py", ""}:
            texts[path] = path.read_text(encoding="utf-8", errors="replace")
    return texts


def test_no_notebook_sources_are_shipped():
    assert not (SITE / "_sources").exists()
    assert not list(SITE.rglob("*.ipynb"))


@pytest.mark.parametrize("slug", list(chapter_notebooks(ROOT / "book")))
def test_no_solution_text_in_the_student_site(built_text, slug):
    instructor = nbformat.read(chapter_notebooks(ROOT / "book")[slug], as_version=4)
    lines = solution_lines(instructor)
    forms = {line: {line, html.escape(line), html.escape(line, quote=False)} for line in lines}
    leaks = [(p.name, line) for p, text in built_text.items() for line in lines if any(f in text for f in forms[line])]
    assert not leaks, leaks[:5]


def test_the_student_site_has_every_chapter():
    for path in chapter_notebooks(ROOT / "book").values():
        page = SITE / "book" / f"{path.stem}.html"
        assert page.exists(), page
        text = page.read_text(encoding="utf-8")
        assert "Not answered yet" in text  # the check cells ran on the placeholders without crashing
