"""KaTeX's pre-rendered maths made smaller after the build (book/klcourse_site.py, issue 10's page weight).

The pages carry short names for KaTeX's internal classes and classes for repeated inline styles. The unit tests
check the renaming on a small sample; the browser test renders every formula of a chapter twice in Debian's
Chromium -- once as KaTeX writes it (``katex.renderToString`` of the formula's TeX, with KaTeX's own style sheet)
and once as the built page carries it (with the renamed style sheet and the page's style classes) -- and asks for
the same box for every element and the same pixels.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("KLCOURSE_SITE", ROOT / "_build" / "html")).resolve()  # as in conftest.py
_spec = importlib.util.spec_from_file_location("klcourse_site", ROOT / "book" / "klcourse_site.py")
klcourse_site = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(klcourse_site)

FORMULA = ('<span class="katex"><span class="katex-mathml"><math xmlns="http://www.w3.org/1998/Math/MathML">'
           '<semantics><mrow><mi>x</mi></mrow><annotation encoding="application/x-tex">x+y</annotation>'
           '</semantics></math></span><span class="katex-html" aria-hidden="true"><span class="base">'
           '<span class="strut" style="height:1em;vertical-align:-0.25em;"></span>'
           '<span class="mord mathnormal">x</span><span class="mspace" style="margin-right:0.2222em;"></span>'
           '<span class="mbin">+</span><span class="mspace" style="margin-right:0.2222em;"></span>'
           '<span style="top:-2.55em;"><span class="accent">y</span></span></span></span></span>')
PAGE = ('<!DOCTYPE html>\n<html><head><meta charset="utf-8" />\n'
        '<link rel="stylesheet" href="_static/katex/katex.min.css" /></head>\n'
        f'<body><p class="accent">An accent outside maths.</p><span class="math">{FORMULA}</span>'
        '<script>const s = "<span class=\\"mord\\">";</script></body></html>\n')
KATEX_CSS = (".katex{font:normal 1.21em KaTeX_Main}.katex .mord{color:red}.katex .mathnormal{font-style:italic}"
             ".katex .accent>.mbin,.katex .mspace:not(.mord){display:inline-block}"
             "@media screen{.katex .strut{display:inline-block}}.katex .unused-here{width:0}")
OTHER_CSS = {"theme.css": ".accent{color:blue}.b{margin:0}", "site.css": ".katex-html{overflow:visible}"}
SCRIPTS = {"theme.js": 'el.classList.add("c"); const mbin = 3;'}


def plan(page=PAGE):
    return klcourse_site.KatexCompaction({"p.html": page}, OTHER_CSS, SCRIPTS, KATEX_CSS)


def test_the_renaming_is_one_to_one_and_new_names_occur_nowhere_else():
    compaction = plan()
    rename = compaction.rename
    assert {"mord", "mathnormal", "strut", "mspace", "mbin", "unused-here"} <= set(rename)
    assert len(set(rename.values())) == len(rename)
    # public names, a class used outside maths (accent) and one a style sheet uses (katex-html) keep their names
    assert not {"katex", "katex-html", "katex-mathml", "accent"} & set(rename)
    taken = {"accent", "b", "c", "katex", "katex-html", "katex-mathml", "mord", "mathnormal", "strut", "mspace",
             "mbin", "base", "math", "unused-here"}
    new_names = set(rename.values()) | set(compaction.style_class.values())
    assert not new_names & taken
    assert len(new_names) == len(rename) + len(compaction.style_class)
    # a name in a script's string is a name the script may use: it is not given to a formula's class
    assert "mbin" in rename  # an identifier (not a string) in a script is no use of a class
    assert all(re.fullmatch(r"[a-z][a-z0-9]*", name) for name in new_names)


def test_the_style_sheet_follows_the_renaming():
    rename = plan().rename
    css = klcourse_site.rename_css_classes(KATEX_CSS, rename)
    assert f".katex .accent>.{rename['mbin']}" in css  # accent is used outside the maths: it keeps its name
    assert f".katex .{rename['mspace']}:not(.{rename['mord']})" in css
    assert f"@media screen{{.katex .{rename['strut']}{{display:inline-block}}}}" in css
    assert ".katex{font:normal 1.21em KaTeX_Main}" in css
    assert klcourse_site.css_class_names(css) == {"katex", "accent"} | {rename[t] for t in
                                                                        ("mord", "mathnormal", "mbin", "mspace",
                                                                         "strut", "unused-here")}
    with pytest.raises(ValueError, match="class"):
        klcourse_site.rename_css_classes('.katex [class^="m"]{color:red}', rename)


def test_a_page_keeps_its_maths_text_and_accessibility_and_loses_repeated_styles():
    compaction = plan()
    out = compaction.compact_page(PAGE, ('/katex.min.css"', '/katex-compact.css"'))
    rename, styles = compaction.rename, compaction.style_class
    assert 'href="_static/katex/katex-compact.css"' in out
    assert '<p class="accent">' in out and '"<span class=\\"mord\\">"' in out  # outside the formula: untouched
    assert 'aria-hidden="true"' in out and '<annotation encoding="application/x-tex">x+y</annotation>' in out
    assert "<math><semantics>" in out and "xmlns" not in out
    space = styles["margin-right:0.2222em;"]
    assert out.count(f'<span class="{rename["mspace"]} {space}"></span>') == 2  # repeated: a class
    assert "margin-right:0.2222em;" not in out.split("</style>")[1]
    assert 'style="height:1em;vertical-align:-0.25em;"' in out  # once only: stays inline
    assert f'<span class="{rename["mord"]} {rename["mathnormal"]}">x</span>' in out
    # the rule: every declaration of the style, important, at specificity 0, first in the head after the charset
    assert re.search(r'<meta charset="utf-8" />\n<style data-katex-styles>:where\(\.' + space
                     + r'\)\{margin-right:0\.2222em!important\}</style>\n<link', out)
    assert len(out) < len(PAGE)


def test_styles_worth_no_class_stay_inline_and_an_element_without_class_gets_one():
    many = PAGE.replace(FORMULA, FORMULA * 6)
    compaction = plan(many)
    out = compaction.compact_page(many)
    top = compaction.style_class["top:-2.55em;"]
    assert out.count(f'<span class="{top}"><span class="accent">y</span></span>') == 6
    single = plan().compact_page(PAGE)
    assert '<span style="top:-2.55em;"><span class="accent">y</span></span>' in single


def test_an_incremental_build_keeps_the_names_of_the_pages_compacted_before():
    first = plan()
    done = first.compact_page(PAGE)
    second_page = PAGE.replace('<span class="mbin">+</span>', '<span class="mbin newop">+</span>')
    second = klcourse_site.KatexCompaction({"q.html": second_page}, OTHER_CSS, SCRIPTS, KATEX_CSS,
                                           compacted=(done,), previous=first.state())
    assert {token: second.rename[token] for token in first.rename} == first.rename
    assert second.style_class.items() >= first.style_class.items()
    assert second.rename["newop"] not in set(first.rename.values()) | set(first.style_class.values())
    out = second.compact_page(second_page)
    assert f'<span class="{first.rename["mbin"]} {second.rename["newop"]}">+</span>' in out
    # a new page that uses a short name of the previous run outside its maths: the names would clash
    clashing = PAGE.replace('<p class="accent">', f'<p class="{first.rename["mord"]}">')
    with pytest.raises(ValueError, match="build from scratch"):
        klcourse_site.KatexCompaction({"r.html": clashing}, OTHER_CSS, SCRIPTS, KATEX_CSS, compacted=(done,),
                                      previous=first.state())


def test_unclosed_formula_is_an_error():
    with pytest.raises(ValueError, match="unclosed"):
        klcourse_site.katex_ranges('<p><span class="katex"><span class="base">x</span></p>')


# ---------------------------------------------------------------------------------------------------------------
# The built site: each chapter's formulas as KaTeX writes them and as the page carries them, side by side.

MATH_PAGES = sorted(p.relative_to(SITE).as_posix() for p in (SITE / "book").glob("*.html")
                    if 'class="katex"' in p.read_text(encoding="utf-8")) if (SITE / "book").is_dir() else []

FORMULAS_JS = """() => [...document.querySelectorAll(".katex")].map((k) => {
  const display = k.parentElement.classList.contains("katex-display");
  const tex = k.querySelector('annotation[encoding="application/x-tex"]');
  return {tex: tex ? tex.textContent : null, display, html: (display ? k.parentElement : k).outerHTML};
})"""

SHELL = """<!DOCTYPE html><html><head><meta charset="utf-8"><base href="{base}">{styles}
<link rel="stylesheet" href="_static/katex/{css}">
<style>body {{ margin: 0; width: 1400px; font: 16px/1.4 serif; }}
body > div {{ display: inline-block; vertical-align: top; margin: 3px; }}</style></head><body></body></html>"""

LAYOUT_JS = """async (formulas) => {
  document.body.innerHTML = formulas.map((f) => `<div>${f}</div>`).join("");
  await new Promise((done) => requestAnimationFrame(done));
  await document.fonts.ready;
  await new Promise((done) => requestAnimationFrame(done));
  return [...document.body.children].map((box) => [box, ...box.querySelectorAll("*")].map((el) => {
    const r = el.getBoundingClientRect();
    return [el.tagName, r.x, r.y, r.width, r.height];
  }));
}"""

ORIGINAL_JS = """(formulas) => formulas.map((f) => katex.renderToString(f.tex, {throwOnError: false,
                                                                             displayMode: f.display}))"""


def rendering(context, site_url, css, styles, formulas=None, original=None):
    tab = context.new_page()
    tab.set_content(SHELL.format(base=site_url, css=css, styles=styles), wait_until="load")
    if original is not None:
        tab.add_script_tag(url=site_url + "_static/katex/katex.min.js")
        formulas = tab.evaluate(ORIGINAL_JS, original)
    boxes = tab.evaluate(LAYOUT_JS, formulas)
    shot = Image.open(io.BytesIO(tab.screenshot(full_page=True))).convert("RGB")
    tab.close()
    return boxes, shot


@pytest.mark.parametrize("page", MATH_PAGES)
def test_compacted_formulas_render_exactly_as_katex_writes_them(chromium, site, site_url, page):
    text = (site / page).read_text(encoding="utf-8")
    assert "katex/katex-compact.css" in text and "katex/katex.min.css" not in text
    styles = "".join(re.findall(r"<style data-katex-styles>.*?</style>", text))
    context = chromium.new_context(viewport={"width": 1400, "height": 900})
    try:
        tab = context.new_page()
        tab.goto(site_url + page, wait_until="domcontentloaded")
        formulas = tab.evaluate(FORMULAS_JS)
        tab.close()
        assert formulas and all(f["tex"] is not None for f in formulas)
        compact_boxes, compact_shot = rendering(context, site_url, "katex-compact.css", styles,
                                                formulas=[f["html"] for f in formulas])
        boxes, shot = rendering(context, site_url, "katex.min.css", "", original=formulas)
    finally:
        context.close()
    assert len(compact_boxes) == len(boxes) == len(formulas)
    for i, (got, want) in enumerate(zip(compact_boxes, boxes, strict=True)):
        assert got == want, f"formula {i} of {page} ({formulas[i]['tex']!r}) is laid out differently"
    assert compact_shot.size == shot.size
    assert compact_shot.tobytes() == shot.tobytes(), f"{page}: the pixels differ"


def test_the_search_page_keeps_katex_own_names(site):
    """The search page typesets its excerpts in the browser with KaTeX's script, which writes the original names."""
    text = (site / "search.html").read_text(encoding="utf-8")
    assert "katex/katex.min.css" in text and "katex-compact.css" not in text
    assert (site / "_static" / "katex" / "katex.min.css").is_file()
