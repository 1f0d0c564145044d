"""No page of the built book shows TeX or MyST source as text (issue 9, item 1).

Reads the built HTML of every page in ``_toc.yml`` (``$KLCOURSE_SITE``, default ``_build/html``; ``make test``
builds it before running ``tests/site``) and collects the text a reader sees in the page body, leaving out
``<pre>``, ``<code>``, scripts, styles and the rendered maths (KaTeX output, which keeps its TeX source in a
hidden annotation). That text must not contain a maths delimiter (``$``, ``\\(``, ``\\)``, ``\\[``, ``\\]``) or an
unprocessed MyST role (``{glue...``, ``{eq}``, ``{cite}``, ...): each one means Markdown cut a formula in two
(a wrapped line starting with ``-`` or ``+`` inside ``$...$``) or a role was not parsed. The fast source-level
check of the same defect is ``tests/test_rendered_text.py``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from test_browser import TOC_PAGES

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("KLCOURSE_SITE", ROOT / "_build" / "html")).resolve()  # as in conftest.py

SKIPPED_TAGS = ("pre", "code", "script", "style", "math", "annotation", "svg", "textarea", "kbd", "samp")
SKIPPED_CLASSES = re.compile(r"^(katex|katex-display|katex-mathml|katex-html|math|highlight)$")
STRAY = re.compile(
    r"\$|\\\(|\\\)|\\\[|\\\]"  # maths delimiters left as text
    r"|\{(?:glue|eval|eq|cite|numref|ref|doc|math|prf|exercise|solution|index|term|download)\b"  # unparsed MyST roles
)


PAGES = TOC_PAGES  # every page of _toc.yml, the root first


def visible_text_outside_code_and_maths(html: str) -> str:
    """The body's text without code, scripts and rendered maths: what a reader sees as prose."""
    from bs4 import BeautifulSoup

    body = BeautifulSoup(html, "html.parser").body
    if body is None:
        raise AssertionError("page has no <body>")
    for element in body.find_all(SKIPPED_TAGS):
        element.decompose()
    for element in body.find_all(class_=SKIPPED_CLASSES):
        element.decompose()
    return body.get_text(" ")


def stray_tex(html: str) -> list[str]:
    """Each stray delimiter or role in the visible text, with 40 characters either side."""
    text = re.sub(r"\s+", " ", visible_text_outside_code_and_maths(html))
    return [text[max(0, m.start() - 40) : m.end() + 40] for m in STRAY.finditer(text)]


def test_the_toc_lists_the_chapters():
    assert "book/03_gaussians.html" in PAGES and len(PAGES) >= 10


@pytest.mark.parametrize("page", PAGES)
def test_no_page_shows_tex_or_myst_source_as_text(site, page):
    path = site / page
    assert path.is_file(), f"{page} is in _toc.yml but was not built"
    found = stray_tex(path.read_text(encoding="utf-8"))
    assert not found, f"{page} shows TeX/MyST source as text:\n" + "\n".join(f"  …{s}…" for s in found)


# ----------------------------------------------------------------------------- the check on pages it must fail
BROKEN = """<html><body><div class="proof"><p>so <span class="math notranslate nohighlight">$\\log p(x)$</span>
and $\\log p(x) = -\\tfrac12\\log(2\\pi) - \\log\\sigma_0</p><ul><li><p>(x-\\mu_0)^2/(2\\sigma_0^2)$ and likewise</p>
</li></ul></div></body></html>"""
KATEX = """<html><body><p>text <span class="math notranslate nohighlight"><span class="katex">
<span class="katex-mathml"><math><semantics>
<annotation encoding="application/x-tex">\\$x\\$</annotation></semantics></math></span>
<span class="katex-html">x</span></span></span> costs <code>$HOME</code></p><pre>\\(y\\)</pre></body></html>"""


@pytest.mark.parametrize(
    ("html", "expected"),
    [(BROKEN, 2), (KATEX, 0), ("<html><body><p>see {cite}`x`</p></body></html>", 1),
     ("<html><body><p>{glue:text}`a`</p></body></html>", 1), ("<html><body><p>\\(x\\)</p></body></html>", 2)],
)
def test_the_check_sees_raw_tex_and_ignores_code_and_rendered_maths(html, expected):
    assert len(stray_tex(html)) == expected
