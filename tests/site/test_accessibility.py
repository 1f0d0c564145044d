"""Accessibility of every page: axe-core (WCAG 2.1 A and AA rules) in Debian's Chromium, at desktop and phone
sizes, in light and dark mode, and a visible focus ring on the header buttons.

axe-core comes from the npm registry into ``.venv/npm`` (``make venv``); it is injected into the page from that
file, never from a CDN. The counts of every rule's violations, whatever their impact, are printed in the report;
the test fails on any violation of impact "serious" or "critical".
"""

from __future__ import annotations

import collections
import os
import sys
from pathlib import Path

import pytest
from test_browser import TOC_PAGES, VIEWPORTS, Visit, load, page_url

AXE = Path(os.environ.get("KLCOURSE_AXE", Path(sys.prefix) / "npm" / "node_modules" / "axe-core" / "axe.min.js"))
PAGES = TOC_PAGES + ["search.html"]
MODES = ("light", "dark")
BLOCKING = {"serious", "critical"}

AXE_RUN_JS = """async () => {
  const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
  const result = await axe.run(document, {runOnly: {type: "tag", values: tags}});
  return result.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length,
    example: v.nodes[0].target.join(" ") + ": " + (v.nodes[0].failureSummary || "")}));
}"""

_TOTALS: collections.Counter = collections.Counter()


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): `make venv` installs it from npm")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def mode_contexts(chromium):
    made = {}

    def get(viewport: str, mode: str):
        if (viewport, mode) not in made:
            made[viewport, mode] = chromium.new_context(**VIEWPORTS[viewport], color_scheme=mode)
        return made[viewport, mode]

    yield get
    for context in made.values():
        context.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("page", PAGES)
def test_axe_finds_no_serious_violation(mode_contexts, site_url, site_report, axe_source, page, viewport, mode):
    tab = mode_contexts(viewport, mode).new_page()
    try:
        load(tab, Visit(page, viewport), page_url(site_url, page))
        tab.evaluate(f"document.documentElement.dataset.theme = {mode!r}")  # the theme's own switch
        tab.add_script_tag(content=axe_source)
        violations = tab.evaluate(AXE_RUN_JS)
    finally:
        tab.close()
    for v in violations:
        _TOTALS[v["id"], v["impact"], viewport, mode] += v["nodes"]
    blocking = [v for v in violations if v["impact"] in BLOCKING]
    assert not blocking, "\n".join(f"{v['id']} ({v['impact']}, {v['nodes']} nodes): {v['example'][:300]}"
                                   for v in blocking)


def test_axe_report(site_report):
    """Print the totals (runs last in this file: pytest keeps definition order)."""
    site_report.append(f"axe-core {AXE.parent.name}: violations over {len(PAGES)} pages x 2 sizes x 2 modes: "
                       + (", ".join(f"{rule} [{impact}] {viewport}/{mode}: {n}"
                                    for (rule, impact, viewport, mode), n in sorted(_TOTALS.items())) or "none"))


FOCUS_JS = """() => {
  const el = document.activeElement;
  const style = getComputedStyle(el);
  return {tag: el.tagName, cls: el.className, shadow: style.boxShadow !== "none",
          outline: style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2};
}"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_header_buttons_show_focus(mode_contexts, site_url, viewport):
    """Tabbing through the page header, every button that takes the focus draws a visible ring."""
    tab = mode_contexts(viewport, "light").new_page()
    try:
        load(tab, Visit("book/01_definitions.html", viewport), page_url(site_url, "book/01_definitions.html"))
        seen = []
        for _ in range(14):
            tab.keyboard.press("Tab")
            state = tab.evaluate(FOCUS_JS)
            if state["tag"] == "BUTTON" or "btn" in str(state["cls"]):
                seen.append(state)
    finally:
        tab.close()
    assert seen, "no header button took the focus"
    invisible = [s["cls"] for s in seen if not (s["outline"] or s["shadow"])]
    assert not invisible, f"buttons without a visible focus ring: {invisible}"
