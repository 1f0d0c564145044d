"""The PDF of the whole book (``make pdf``; ``make book`` and ``make test`` print it too): built from the same
site, offline, by Debian's Chromium (book/make_pdf.py). Read back with poppler's pdftotext/pdfinfo/pdfimages."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
from test_browser import SITE, TOC_PAGES, soup

PDF = SITE / "klcourse.pdf"


def poppler(tool: str, *args) -> str:
    if not shutil.which(tool):
        pytest.fail(f"{tool} is missing: `make chromium` installs Debian's poppler-utils")
    return subprocess.run([tool, *args], check=True, capture_output=True, text=True, timeout=120).stdout


@pytest.fixture(scope="module")
def text() -> str:
    assert PDF.is_file(), f"no {PDF}: `make pdf` prints it"
    return poppler("pdftotext", "-layout", str(PDF), "-")


def chapter_title(page: str) -> str:
    h1 = soup(page).select_one("article h1")
    return re.sub(r"\s+", " ", h1.get_text(" ", strip=True).replace("#", "")).strip()


def test_pdf_has_pages_and_is_linked_from_the_site():
    info = poppler("pdfinfo", str(PDF))
    pages = int(re.search(r"^Pages:\s+(\d+)", info, re.M).group(1))
    assert pages >= 5 * len(TOC_PAGES), f"only {pages} pages for {len(TOC_PAGES)} documents"
    links = [a.get("href", "") for a in soup("book/intro.html").find_all("a")]
    assert "../klcourse.pdf" in links, "the intro page does not link the PDF"


@pytest.mark.parametrize("page", TOC_PAGES)
def test_every_chapter_title_is_in_the_pdf(text, page):
    title = chapter_title(page)
    flat = re.sub(r"\s+", " ", re.sub(r"-[ \t]*\n\s*", "-", text))  # a title may wrap after a hyphen
    assert title and title in flat, f"{title!r} ({page}) not found in the PDF"


def test_no_raw_tex_no_code_toggles_no_solutions(text):
    for raw in ("\\(", "\\[", "$$", "\\begin{", "{eq}`", "{cite}`"):  # (code cells may mention {glue:text})
        assert raw not in text, f"{raw!r} printed in the PDF: {text[max(0, text.find(raw) - 60):][:160]!r}"
    assert "Show code cell" not in text and "Hide code cell" not in text
    assert "Solution to Exercise" not in text, "the PDF leaves the solutions out"


def test_every_figure_is_printed():
    figures = sum(len([img for img in soup(page).find_all("img") if "_images/" in img.get("src", "")])
                  for page in TOC_PAGES)
    images = [line for line in poppler("pdfimages", "-list", str(PDF)).splitlines()[2:] if " image " in line]
    assert figures and len(images) >= figures, f"{len(images)} images in the PDF, {figures} figures on the site"
