"""The website as readers meet it: every page in Debian's Chromium (Playwright), at a desktop and a phone size.

Run after the book is built (``make test`` does; ``KLCOURSE_SITE`` points the tests at another build). Each page
is loaded once per viewport from a local server on 127.0.0.1; the load records every request, console message
and uncaught error, waits for the fonts, reads the DOM, saves a full-page screenshot to
``_build/screenshots/`` and unfolds each exercise solution. The tests below then check what that visit saw.
The static checks (no browser) read the built HTML and the executed notebooks in ``_build/jupyter_execute``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("KLCOURSE_SITE", ROOT / "_build" / "html")).resolve()  # as in conftest.py
_spec = importlib.util.spec_from_file_location("site_weights", ROOT / "benchmarks" / "site_weights.py")
site_weights = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(site_weights)
_spec = importlib.util.spec_from_file_location("make_pdf", ROOT / "book" / "make_pdf.py")
make_pdf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_pdf)

BOOK_ROOT = SITE.parents[1] if (SITE.parents[1] / "_toc.yml").is_file() else ROOT  # the book the site was built from
VIEWPORTS = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}
SEARCH_QUERY = "Gibbs"  # chapter 1 defines Gibbs' inequality
SHARED_BUDGET = 900_000  # bytes of theme, icon-font and KaTeX assets a first visit fetches besides the page
FIRST_VISIT_TARGET = 1_500_000  # issue 10: a chapter's first visit, everything included
FIRST_VISIT_CEILING = FIRST_VISIT_TARGET  # every page meets it since KaTeX's output is compacted (klcourse_site.py)


def toc_docnames(book_root: Path = BOOK_ROOT) -> list[str]:
    """Every document named in ``_toc.yml`` (the root first), without suffix: the PDF's own reading of it."""
    return make_pdf.toc_docnames(book_root)


TOC_PAGES = [f"{name}.html" for name in toc_docnames()]
EXTRA_PAGES = ["index.html", "search.html", "genindex.html"]
PAGES = list(dict.fromkeys(TOC_PAGES + EXTRA_PAGES + (site_weights.site_pages(SITE) if SITE.is_dir() else [])))


# ---------------------------------------------------------------------------------------------------------------
# Reading built HTML


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@cache
def page_ids(path: Path) -> frozenset:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8"))
    return frozenset(parser.ids)


@cache
def soup(page: str):
    from bs4 import BeautifulSoup

    return BeautifulSoup((SITE / page).read_text(encoding="utf-8"), "html.parser")


def source_suffix(docname: str) -> str:
    for suffix in (".ipynb", ".md"):
        if (BOOK_ROOT / f"{docname}{suffix}").is_file():
            return suffix
    raise AssertionError(f"no source for {docname} in {BOOK_ROOT}")


# ---------------------------------------------------------------------------------------------------------------
# One browser visit per page and viewport

SETTLE_JS = """async () => { await document.fonts.ready; }"""

MATH_JS = r"""() => {
  const math = [...document.querySelectorAll('.math')];
  const untypeset = math.filter(n => !n.querySelector('.katex')).map(n => n.textContent.trim().slice(0, 80));
  const errors = [...document.querySelectorAll('.katex-error')].map(n => (n.title || n.textContent).slice(0, 80));
  const skip = new Set(['SCRIPT', 'STYLE', 'PRE', 'CODE', 'TEXTAREA', 'MATH']);  // MathML keeps the TeX source
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode(node) {
    for (let el = node.parentElement; el; el = el.parentElement) {
      if (skip.has(el.tagName.toUpperCase())) return NodeFilter.FILTER_REJECT;
    }
    return NodeFilter.FILTER_ACCEPT;
  }});
  const raw = [];
  for (let node; (node = walker.nextNode());) {
    const text = node.textContent;
    for (const delim of ['\\(', '\\[', '$$', '\\begin{']) {
      const i = text.indexOf(delim);
      if (i >= 0) raw.push(text.slice(Math.max(0, i - 30), i + 50));
    }
  }
  return {math: math.length, rendered: document.querySelectorAll('.math .katex').length, untypeset, errors, raw,
          scripts: [...document.scripts].map(s => s.src).filter(src => /mathjax|katex/i.test(src))};
}"""

# Where a formula is cut off. An inline formula is clipped when an ancestor hides its overflow and the formula
# sticks out of it, or when it sticks out of the window with no scrolling box around it. A display equation is
# "wide" when it does not fit its box (it then scrolls inside that box); its number must not lie on top of it.
MATH_FIT_JS = r"""() => {
  const vw = window.innerWidth;
  const clipped = [];
  for (const formula of document.querySelectorAll('span.math')) {
    const rects = [...formula.getClientRects()];
    let cut = false, scrollable = false;
    for (let el = formula.parentElement; el && el !== document.body; el = el.parentElement) {
      const style = getComputedStyle(el);
      if (['auto', 'scroll'].includes(style.overflowX)) { scrollable = true; break; }
      if (['hidden', 'clip'].includes(style.overflowX)) {
        const box = el.getBoundingClientRect();
        if (rects.some(r => r.right > box.right + 1 || r.left < box.left - 1)) cut = true;
      }
    }
    if (!scrollable && rects.some(r => r.right > vw + 1 || r.left < -1)) cut = true;
    if (getComputedStyle(formula).overflowX !== 'visible' && formula.scrollWidth > formula.clientWidth + 1) cut = true;
    if (cut) clipped.push(formula.textContent.slice(0, 60));
  }
  const wide = [], covered = [], unscrollable = [];
  for (const display of document.querySelectorAll('div.math')) {
    const box = display.querySelector('.katex-display');
    if (!box) continue;
    const name = display.id || box.textContent.slice(0, 40);
    if (box.scrollWidth > box.clientWidth + 1) {
      wide.push(name);
      if (!['auto', 'scroll'].includes(getComputedStyle(box).overflowX)) unscrollable.push(name);
    }
    const number = display.querySelector('.eqno');
    if (number) {
      const a = number.getBoundingClientRect(), b = box.getBoundingClientRect();
      if (a.left < b.right - 1 && a.right > b.left + 1 && a.top < b.bottom && a.bottom > b.top) covered.push(name);
    }
  }
  return {inline: document.querySelectorAll('span.math').length, clipped,
          display: document.querySelectorAll('div.math').length, wide, covered, unscrollable};
}"""

IMAGES_JS = """() => [...document.images].map(img => ({
  src: img.currentSrc || img.src, loaded: img.complete && img.naturalWidth > 0,
  width: img.getBoundingClientRect().width, in_article: !!img.closest('article')}))"""

# Figures load as the reader scrolls near them (loading="lazy", book/klcourse_site.py): load them all now.
LOAD_LAZY_IMAGES_JS = """async () => {
  const lazy = [...document.images].filter(img => img.loading === 'lazy');
  lazy.forEach(img => { img.loading = 'eager'; });
  await Promise.all(lazy.map(img => img.decode().catch(() => null)));
  return lazy.length;
}"""

LINKS_JS = "() => [...document.querySelectorAll('a[href]')].map(a => a.href)"

WIDTH_JS = "() => ({page: document.documentElement.scrollWidth, window: window.innerWidth})"

SEARCH_DONE_JS = """() => {
  const status = document.querySelector('#search-results .search-summary');
  return status && /found|did not match/.test(status.textContent);
}"""


@dataclass
class Visit:
    page: str
    viewport: str
    url: str = ""
    requests: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    console_errors: list = field(default_factory=list)
    math: dict = field(default_factory=dict)
    math_fit: dict = field(default_factory=dict)
    images: list = field(default_factory=list)
    links: list = field(default_factory=list)
    solutions: list = field(default_factory=list)
    width: dict = field(default_factory=dict)
    search_results: list = field(default_factory=list)
    screenshot: Path | None = None


def page_url(base: str, page: str, query: str | None = None) -> str:
    if page == "search.html":
        query = SEARCH_QUERY if query is None else query
        return f"{base}{page}?q={query}"
    return base + page


def redirect_target(page: str) -> str | None:
    """Where a ``<meta http-equiv="Refresh">`` page (the root index.html) sends the reader, relative to the site."""
    meta = soup(page).find("meta", attrs={"http-equiv": re.compile("refresh", re.I)})
    if meta is None:
        return None
    target = re.search(r"url=(.+)$", meta.get("content", ""), re.I).group(1).strip()
    return str(Path(page).parent / target).removeprefix("./")


def load(tab, visit: Visit, url: str, redirect: str | None = None) -> None:
    """Open ``url`` in ``tab`` (following a redirect to ``redirect``), recording requests, failures and console
    errors into ``visit``; return once fonts, search results and every request have finished."""
    pending = set()
    redirecting = [redirect is not None]  # the redirect page's own requests may be cut off by the navigation

    def started(request):
        visit.requests.append(request.url)
        pending.add(request)

    def failed(request):
        pending.discard(request)
        if not (redirecting[0] and request.failure == "net::ERR_ABORTED"):
            visit.failures.append(f"{request.url}: {request.failure}")

    tab.on("request", started)
    tab.on("requestfinished", lambda r: pending.discard(r))
    tab.on("requestfailed", failed)
    tab.on("response", lambda r: r.status >= 400 and visit.failures.append(f"{r.url}: HTTP {r.status}"))
    tab.on("console", lambda m: m.type == "error" and visit.console_errors.append(f"{m.text} ({m.location})"))
    tab.on("pageerror", lambda e: visit.console_errors.append(f"uncaught: {e}"))
    tab.goto(url, wait_until="load")
    if redirect:
        tab.wait_for_url(urljoin(url, redirect), wait_until="load")
        redirecting[0] = False
    tab.evaluate(SETTLE_JS)
    if urlsplit(tab.url).path.endswith("/search.html"):
        tab.wait_for_function(SEARCH_DONE_JS, timeout=15_000)
    quiet_polls = 0
    for _ in range(300):  # until no request has been in flight for 3 polls in a row (at most ~15 s)
        tab.wait_for_timeout(50)
        quiet_polls = 0 if pending else quiet_polls + 1
        if quiet_polls == 3:
            break
    else:
        visit.failures.append(f"requests still pending: {[r.url for r in pending]}")
    tab.evaluate(SETTLE_JS)  # again: the search page typesets its excerpts as they arrive
    visit.url = tab.url


SOLUTIONS_JS = """() => [...document.querySelectorAll('.solution.dropdown')].map(solution => {
  const body = [...solution.children].filter(child => !child.classList.contains('admonition-title'));
  const shown = el => { const s = getComputedStyle(el); return s.visibility !== 'hidden' && s.display !== 'none'
                                                              && el.getBoundingClientRect().height > 0; };
  const button = solution.querySelector('.toggle-button');
  return {id: solution.id, has_button: !!button, folded: solution.classList.contains('toggle-hidden'),
          body_shown: body.length > 0 && body.every(shown), expanded: button && button.getAttribute('aria-expanded')};
})"""


def unfold_solutions(tab, phone: bool) -> list[dict]:
    """Each folded exercise solution: hidden after load, shown after a click on its button (a tap on the phone)."""
    before = tab.evaluate(SOLUTIONS_JS)
    buttons = tab.locator(".solution.dropdown .toggle-button")
    for i in range(buttons.count()):
        (buttons.nth(i).tap if phone else buttons.nth(i).click)(timeout=5_000)
    if before:
        try:
            tab.wait_for_function(f"() => ({SOLUTIONS_JS})().every(s => s.body_shown)", timeout=3_000)
        except Exception:  # noqa: BLE001 - the states below say which did not open
            pass
    after = tab.evaluate(SOLUTIONS_JS)
    return [{"id": b["id"], "has_button": b["has_button"], "closed": b["folded"] and not b["body_shown"],
             "opened": a["body_shown"] and a["expanded"] == "true"} for b, a in zip(before, after, strict=True)]


def screenshot_path(page: str, viewport: str) -> Path:
    stem = page.removesuffix(".html").replace("/", "-")
    return SITE.parent / "screenshots" / f"{stem}-{viewport}.png"


def save_screenshot(tab, path: Path) -> None:
    """Full-page PNG through the DevTools protocol with Chromium's fast encoder (half the time of the default)."""
    width, height = tab.evaluate("[document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    cdp = tab.context.new_cdp_session(tab)
    try:
        shot = cdp.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True, "optimizeForSpeed": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    finally:
        cdp.detach()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))


@pytest.fixture(scope="session")
def contexts(chromium):
    made = {}

    def get(viewport: str):
        if viewport not in made:
            made[viewport] = chromium.new_context(**VIEWPORTS[viewport])
            made[viewport].set_default_timeout(20_000)
        return made[viewport]

    yield get
    for context in made.values():
        context.close()


@pytest.fixture(scope="session")
def visit(contexts, site_url):
    """``visit(page, viewport)``: the (cached) record of loading ``page`` at ``viewport``."""
    done = {}

    def get(page: str, viewport: str) -> Visit:
        if (page, viewport) not in done:
            record = Visit(page, viewport)
            tab = contexts(viewport).new_page()
            try:
                load(tab, record, page_url(site_url, page), redirect=redirect_target(page))
                tab.evaluate(LOAD_LAZY_IMAGES_JS)  # what a reader who scrolls through the page sees
                record.math = tab.evaluate(MATH_JS)
                record.math_fit = tab.evaluate(MATH_FIT_JS)
                record.images = tab.evaluate(IMAGES_JS)
                record.links = tab.evaluate(LINKS_JS)
                record.width = tab.evaluate(WIDTH_JS)
                record.search_results = tab.locator("#search-results ul.search li a").evaluate_all(
                    "links => links.map(a => a.href)")
                record.screenshot = screenshot_path(page, viewport)
                save_screenshot(tab, record.screenshot)
                record.solutions = unfold_solutions(tab, phone=viewport == "phone")
            finally:
                tab.close()
            done[page, viewport] = record
        return done[page, viewport]

    return get


browser_cases = pytest.mark.parametrize("viewport,page", [(v, p) for v in VIEWPORTS for p in PAGES])


def is_local(url: str, site_url: str) -> bool:
    return url.startswith(site_url)


@browser_cases
def test_page_loads_cleanly(visit, site_url, viewport, page):
    """No failed request, no console error or uncaught exception, nothing fetched from another host."""
    v = visit(page, viewport)
    foreign = [u for u in v.requests if urlsplit(u).scheme not in ("data", "blob", "about")
               and urlsplit(u).hostname != "127.0.0.1"]
    assert not foreign, f"requests to other hosts: {foreign}"
    assert not v.failures, f"failed requests: {v.failures}"
    assert not v.console_errors, f"console errors: {v.console_errors}"
    assert v.url.startswith(page_url(site_url, redirect_target(page) or page)), v.url


@browser_cases
def test_math_is_typeset(visit, viewport, page):
    """KaTeX rendered every formula at build time: no raw TeX left, no KaTeX error, no maths script loaded
    (except on the search page, which typesets its excerpts)."""
    math = visit(page, viewport).math
    assert not math["untypeset"], f"{len(math['untypeset'])} formulas not typeset, e.g. {math['untypeset'][:3]}"
    assert math["rendered"] >= math["math"], math
    assert not math["errors"], f"KaTeX errors: {math['errors']}"
    assert not math["raw"], f"raw TeX in the text: {math['raw'][:5]}"
    if page != "search.html":
        assert not math["scripts"], f"a page with pre-rendered maths loads {math['scripts']}"


# Display equations wider than the 1280-px text column, counted over all pages: none (wide ones are written as
# multi-line ``aligned`` blocks). On a phone a wide equation scrolls inside its own box, never the page.
WIDE_AT_DESKTOP_BUDGET = 0


@browser_cases
def test_maths_is_never_clipped(visit, site_report, viewport, page):
    """No inline formula is cut off; a display equation wider than its column scrolls in its own box, with its
    number beside it, not over it."""
    fit = visit(page, viewport).math_fit
    assert not fit["clipped"], f"{len(fit['clipped'])} inline formulas cut off, e.g. {fit['clipped'][:3]}"
    assert not fit["unscrollable"], f"wide display equations that cannot scroll: {fit['unscrollable']}"
    assert not fit["covered"], f"equation numbers drawn over their equation: {fit['covered']}"


def test_wide_display_equations(visit, site_report):
    """How many display equations need sideways scrolling, per viewport (printed in the report)."""
    counts = {}
    for viewport in VIEWPORTS:
        fits = [visit(page, viewport).math_fit for page in TOC_PAGES]
        counts[viewport] = (sum(len(f["wide"]) for f in fits), sum(f["display"] for f in fits))
    site_report.append("Display equations wider than their column: " + ", ".join(
        f"{v} {wide} of {total}" for v, (wide, total) in counts.items()))
    assert counts["desktop"][0] <= WIDE_AT_DESKTOP_BUDGET, counts


@browser_cases
def test_images_load_and_links_resolve(visit, site, site_url, viewport, page):
    """Every image is decoded (naturalWidth > 0); every link into the site names a file and an id that exist."""
    v = visit(page, viewport)
    broken_images = [img["src"] for img in v.images if not img["loaded"]]
    assert not broken_images, f"images that did not load: {broken_images}"
    broken = [problem for href in v.links if (problem := link_problem(site, site_url, href))]
    assert not broken, f"{len(broken)} broken links, e.g. {broken[:5]}"


def link_problem(site: Path, site_url: str, href: str) -> str | None:
    if not is_local(href, site_url):
        return None
    parts = urlsplit(href)
    path = unquote(parts.path).lstrip("/")
    target = site / path
    if not path or path.endswith("/"):
        target = target / "index.html"
    if not target.is_file():
        return f"{href}: no file {target.relative_to(site)}"
    fragment = unquote(parts.fragment)
    if fragment and target.suffix == ".html" and fragment not in page_ids(target):
        return f"{href}: no id {fragment!r} in {target.relative_to(site)}"
    return None


@browser_cases
def test_page_fits_the_viewport(visit, viewport, page):
    """The page never scrolls sideways; wide code and display maths scroll inside their own boxes."""
    width = visit(page, viewport).width
    assert width["page"] <= width["window"], width


@browser_cases
def test_solutions_are_folded_until_clicked(visit, viewport, page):
    """sphinx-togglebutton turns each ``:class: dropdown`` solution into a folded admonition with a button."""
    solutions = visit(page, viewport).solutions
    for s in solutions:
        assert s["has_button"], f"{s['id']}: no toggle button"
        assert s["closed"], f"{s['id']}: open on load"
        assert s["opened"], f"{s['id']}: not shown (or aria-expanded not true) after a click on its button"


def test_solutions_exist_where_the_sources_have_them(site):
    """The folded-solution test above is not vacuous: each page has as many dropdown solutions as its source."""
    for page in TOC_PAGES:
        docname = page.removesuffix(".html")
        if source_suffix(docname) != ".ipynb":
            continue
        text = (BOOK_ROOT / f"{docname}.ipynb").read_text(encoding="utf-8")
        in_source = len(re.findall(r"solution-start[^`]*?:class: dropdown", text))
        on_page = len(soup(page).select(".solution.dropdown"))
        assert on_page == in_source, f"{page}: {on_page} dropdown solutions, source has {in_source}"


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_search_finds_gibbs(visit, site_url, viewport):
    results = visit("search.html", viewport).search_results
    assert results, f"search.html?q={SEARCH_QUERY} showed no result"
    assert any("book/01_definitions.html" in url for url in results), results


def test_search_of_a_missing_word_finds_nothing(contexts, site_url):
    """The search page really searches: a made-up word gives the "did not match" message, not every page."""
    record = Visit("search.html", "desktop")
    tab = contexts("desktop").new_page()
    try:
        load(tab, record, page_url(site_url, "search.html", query="qqxyzzynotaword"))
        assert tab.locator("#search-results ul.search li").count() == 0
        assert "did not match" in tab.locator("#search-results .search-summary").inner_text()
    finally:
        tab.close()
    assert not record.console_errors and not record.failures, (record.console_errors, record.failures)


def test_screenshots_saved(visit):
    """Both viewports of every page were photographed (for people to look at in _build/screenshots/)."""
    missing = [str(screenshot_path(p, v)) for v in VIEWPORTS for p in PAGES if not screenshot_path(p, v).is_file()]
    assert not missing, missing


THROTTLED = {"offline": False, "latency": 40, "downloadThroughput": 10e6 / 8, "uploadThroughput": 5e6 / 8}
LAYOUT_SHIFT_JS = """() => new Promise((resolve) => {
  let cls = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (!entry.hadRecentInput) cls += entry.value;
  }).observe({type: "layout-shift", buffered: true});
  const paint = performance.getEntriesByName("first-contentful-paint")[0];
  const nav = performance.getEntriesByType("navigation")[0];
  setTimeout(() => resolve({cls, fcp: paint ? paint.startTime : null, load: nav ? nav.loadEventEnd : null}), 500);
})"""


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_first_paint_under_a_throttled_profile(chromium, site_url, site_report, viewport):
    """Chapter 1 on a throttled 4G profile (10 Mbit/s, 40 ms, CPU x2), empty cache: its maths arrives typeset in
    the HTML, so the layout does not jump when it is ready (cumulative layout shift < 0.1, "good" in Web
    Vitals). First paint and load times go to the report, not into pass/fail."""
    context = chromium.new_context(**VIEWPORTS[viewport])
    try:
        tab = context.new_page()
        cdp = context.new_cdp_session(tab)
        cdp.send("Network.enable")
        cdp.send("Network.emulateNetworkConditions", THROTTLED)
        cdp.send("Emulation.setCPUThrottlingRate", {"rate": 2})
        # load can take long on a busy 2-core machine: the figures below are a report, not a timing test
        tab.goto(page_url(site_url, "book/01_definitions.html"), wait_until="load", timeout=120_000)
        tab.evaluate(SETTLE_JS)
        figures = tab.evaluate(LAYOUT_SHIFT_JS)
    finally:
        context.close()
    site_report.append(f"chapter 1, throttled 4G + CPU x2, {viewport}: first contentful paint "
                       f"{figures['fcp']:.0f} ms, load {figures['load']:.0f} ms, layout shift {figures['cls']:.3f}")
    assert figures["cls"] < 0.1, figures


# ---------------------------------------------------------------------------------------------------------------
# Weights


def test_page_weights_report(site, site_report):
    """Each page's own HTML and images, and the style sheets and scripts its HTML names (a static reading: the
    browser's own first visits are measured below). Nothing to assert beyond a page existing: it is a report."""
    rows = [site_weights.page_weight(site, page) for page in PAGES]
    site_report.append(f"Per-page weights of {site} (bytes; own = HTML + its images):")
    site_report.extend(site_weights.format_table(rows).splitlines())
    assert all(r["html"] > 0 for r in rows)


def first_visit_bytes(chromium, site, site_url, page) -> dict[Path, int]:
    """Every file of the site a browser with an empty cache fetches to show ``page`` (fonts included)."""
    context = chromium.new_context(**VIEWPORTS["desktop"])
    record = Visit(page, "desktop")
    try:
        load(context.new_page(), record, page_url(site_url, page))
    finally:
        context.close()
    assert not record.failures and not record.console_errors, (record.failures, record.console_errors)
    files = {}
    for url in record.requests:
        if is_local(url, site_url):
            path = site / unquote(urlsplit(url).path).lstrip("/")
            if path.is_file():
                files[path] = path.stat().st_size
    return files


@pytest.fixture(scope="module")
def first_visits():
    return {}


@pytest.mark.parametrize("page", [p for p in TOC_PAGES if p.startswith("book/")])
def test_first_visit_weight(chromium, site, site_url, site_report, first_visits, page):
    """What a reader's first visit to a page downloads in all (HTML, figures, style sheets, scripts, fonts).

    Issue 10 asks for <= 1.5 MB. The maths-dense chapters meet it because book/klcourse_site.py compacts KaTeX's
    pre-rendered markup (short class names, repeated inline styles as classes): chapter 1, the heaviest, went from
    1.75 MB to 1.47 MB, of which its typeset formulas are about 0.65 MB.
    """
    files = first_visit_bytes(chromium, site, site_url, page)
    total = sum(files.values())
    first_visits[page] = total
    biggest = sorted(files.items(), key=lambda item: -item[1])[:3]
    figures = {(SITE / page).parent.joinpath(img["src"]).resolve() for img in soup(page).find_all("img")
               if "_images/" in img.get("src", "")}
    later = sum(path.stat().st_size for path in figures if path not in files and path.is_file())
    site_report.append(f"first visit of {page}: {len(files)} files, {total:,} bytes, {later:,} more in "
                       f"figures loaded on scrolling "
                       f"({'within' if total <= FIRST_VISIT_TARGET else 'OVER'} the {FIRST_VISIT_TARGET:,} target); "
                       "largest: " + ", ".join(f"{p.relative_to(site)} {n:,}" for p, n in biggest))
    assert total <= FIRST_VISIT_CEILING, f"first visit of {page}: {total:,} bytes"


ICONS_JS = """() => {
  const out = [];
  const els = document.querySelectorAll(
    '[class*="fa-"], .admonition-title, .toggle-button, summary, a.reference.external');
  for (const el of els) {
    for (const pseudo of ['::before', '::after']) {
      const style = getComputedStyle(el, pseudo);
      if (!/^".*"$/.test(style.content || '')) continue;  // 'none', 'normal', counters
      const text = style.content.slice(1, -1);
      if (/Font Awesome/.test(style.fontFamily) && text && style.display !== 'none') {
        out.push({icon: [...text].map(c => c.codePointAt(0)), family: style.fontFamily, weight: style.fontWeight,
                  cls: String(el.className).slice(0, 60)});
      }
    }
  }
  return out;
}"""


@cache
def font_codepoints(name: str) -> frozenset:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(SITE / "_static" / "vendor" / "fontawesome" / "webfonts" / name).getBestCmap())


@pytest.mark.parametrize("page", ["book/intro.html", "book/01_definitions.html", "book/instructors.html"])
def test_every_icon_is_in_its_font(contexts, site_url, page):
    """The icon fonts are cut down to the icons the site uses (book/klcourse_site.py): every icon a page draws
    with Font Awesome (header buttons, admonition titles, links to other sites) must still be in its font."""
    tab = contexts("desktop").new_page()
    try:
        tab.goto(page_url(site_url, page), wait_until="load")
        tab.evaluate(SETTLE_JS)
        icons = tab.evaluate(ICONS_JS)
    finally:
        tab.close()
    assert len(icons) >= 5, icons
    missing = []
    for icon in icons:
        brands = "Brands" in icon["family"]
        name = "fa-brands-400.woff2" if brands else (
            "fa-solid-900.woff2" if int(icon["weight"]) >= 600 else "fa-regular-400.woff2")
        missing += [(icon["cls"], hex(point), name) for point in icon["icon"] if point not in font_codepoints(name)]
    assert not missing, f"icons the fonts no longer have: {missing}"


@pytest.mark.parametrize("page", ["book/01_definitions.html", "search.html"])
def test_shared_assets_of_a_first_visit(chromium, site, site_url, site_report, page):
    """What a first visit (empty cache) fetches besides the page itself, measured in the browser."""
    context = chromium.new_context(**VIEWPORTS["desktop"])
    record = Visit(page, "desktop")
    try:
        tab = context.new_page()
        load(tab, record, page_url(site_url, page))
    finally:
        context.close()
    files = {}
    for url in record.requests:
        if is_local(url, site_url):
            path = site / unquote(urlsplit(url).path).lstrip("/")
            if path.is_file():
                files[path] = path.stat().st_size
    shared = {p: s for p, s in files.items() if "_static" in p.relative_to(site).parts or p.name == "searchindex.js"}
    raw, gz = sum(shared.values()), sum(site_weights.gzip_size(p) for p in shared)
    biggest = sorted(shared.items(), key=lambda item: -item[1])[:4]
    site_report.append(f"First visit of {page}: {len(shared)} shared assets, {raw:,} bytes ({gz:,} gzipped); "
                       f"largest: " + ", ".join(f"{p.relative_to(site / '_static')} {s:,}" for p, s in biggest
                                                if "_static" in p.parts))
    assert not record.failures and not record.console_errors, (record.failures, record.console_errors)
    assert raw <= SHARED_BUDGET, f"first visit of {page} fetches {raw:,} bytes of shared assets"


# ---------------------------------------------------------------------------------------------------------------
# Static checks of the built HTML and the executed notebooks


def test_every_toc_page_is_built(site):
    missing = [page for page in TOC_PAGES if not (site / page).is_file()]
    assert not missing, f"pages in _toc.yml without HTML: {missing}"


RESOURCE_TAGS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "video": "src", "audio": "src",
                 "embed": "src", "link": "href"}


@pytest.mark.parametrize("page", PAGES)
def test_no_resource_from_another_host(site, page):
    """No page names a script, style sheet, image or frame on another host (links to other sites are fine)."""
    foreign = []
    for tag, attr in RESOURCE_TAGS.items():
        for node in soup(page).find_all(tag):
            url = node.get(attr) or ""
            if tag == "link" and not {"stylesheet", "icon", "preload", "modulepreload"} & set(node.get("rel") or []):
                continue
            if urlsplit(url).netloc:
                foreign.append(f"<{tag} {attr}={url}>")
    assert not foreign, foreign


@pytest.mark.parametrize("page", PAGES)
def test_no_error_output(site, page):
    """No cell output on any page is an error: no error or traceback block, no "Traceback" text.

    (A printed ``ValueError: ...`` is allowed: chapters show the library rejecting bad input on purpose.)"""
    page_soup = soup(page)
    blocks = page_soup.select(".output.error, .output.traceback, .cell_output .traceback")
    assert not blocks, [b.get_text()[:200] for b in blocks]
    outputs = " ".join(node.get_text() for node in page_soup.select(".cell_output, .output"))
    assert "Traceback" not in outputs, outputs[max(0, outputs.find("Traceback") - 100):][:400]


def notebook_images(docname: str) -> dict[str, str]:
    """``{png sha256: where}`` for every PNG the executed notebook displayed or glued."""
    executed = SITE.parent / "jupyter_execute" / f"{docname}.ipynb"
    assert executed.is_file(), f"no executed notebook {executed}"
    images = {}

    def add(data: dict, where: str):
        if "image/png" in data:
            images[hashlib.sha256(base64.b64decode(data["image/png"])).hexdigest()] = where

    notebook = json.loads(executed.read_text(encoding="utf-8"))
    for i, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            if "scrapbook" not in output.get("metadata", {}):  # glued outputs are shown where they are pasted
                add(output.get("data", {}), f"cell {i}")
    glue = executed.with_suffix(".glue.json")
    if glue.is_file():
        for name, output in json.loads(glue.read_text(encoding="utf-8")).items():
            add(output.get("data", {}), f"glue {name!r}")
    return images


@pytest.mark.parametrize("page", [p for p in TOC_PAGES if source_suffix(p.removesuffix(".html")) == ".ipynb"])
def test_every_figure_is_on_its_page(site, page):
    """Each PNG the notebook produced (a displayed plot or a glued figure) is an <img> on the page, and each
    numbered <figure> holds an image."""
    shown = {Path(img.get("src", "")).stem for img in soup(page).find_all("img")}
    missing = [where for sha, where in notebook_images(page.removesuffix(".html")).items() if sha not in shown]
    assert not missing, f"figures computed but not on {page}: {missing}"
    empty = [fig.get("id") for fig in soup(page).find_all("figure") if not fig.find(["img", "svg"])]
    assert not empty, f"figures without an image: {empty}"


def figure_pngs(page: str) -> list[Path]:
    """The PNG figures of a page's article (the notebook's plots; not logos or icons)."""
    article = soup(page).select_one("article") or soup(page)
    return [(SITE / page).parent.joinpath(unquote(img["src"])).resolve()
            for img in article.find_all("img") if "_images/" in img.get("src", "") and img["src"].endswith(".png")]


def test_figure_pngs_are_sharp_on_high_density_screens(site):
    """Every figure PNG has twice the pixels of its display size (klcourse.plotting.figure_png), at most 2400 px
    wide, and says how small its text is (the legibility test below needs it)."""
    problems = []
    for page in TOC_PAGES:
        widths = {Path(unquote(img["src"])).name: img.get("style", "") or img.get("width", "")
                  for img in (soup(page).select_one("article") or soup(page)).find_all("img")}
        for png in figure_pngs(page):
            with Image.open(png) as im:
                shown = re.search(r"(\d+)", widths.get(png.name, "") or "")
                if "klcourse:min-font-pt" not in im.info:
                    problems.append(f"{page} {png.name}: not drawn through klcourse.plotting (no text-size record)")
                elif not shown or abs(im.width - 2 * int(shown.group(1))) > 2 or im.width > 2400:
                    problems.append(f"{page} {png.name}: {im.width} px shown at {widths.get(png.name)!r}")
    assert not problems, problems


MIN_TEXT_PX = {"phone": 9.0, "desktop": 11.0}


@browser_cases
def test_figure_text_is_legible(visit, site_report, viewport, page):
    """The smallest text of every figure, at the width the browser draws it: >= 9 px on a 390-px phone and
    >= 11 px on a 1280-px desktop (smallest font in pt / 72 * drawn width / figure width in inches)."""
    sizes = []
    for img in visit(page, viewport).images:
        path = urlsplit(img["src"]).path
        if not img["in_article"] or "/_images/" not in path or not path.endswith(".png"):
            continue
        with Image.open(SITE / unquote(path).lstrip("/")) as im:
            font_pt, width_in = im.info.get("klcourse:min-font-pt"), im.info.get("klcourse:width-in")
        if font_pt is None:
            sizes.append((0.0, Path(path).name))
            continue
        sizes.append((float(font_pt) / 72 * img["width"] / float(width_in), Path(path).name))
    if sizes:
        site_report.append(f"figure text, {page} at {viewport}: smallest {min(sizes)[0]:.1f} px "
                           f"over {len(sizes)} figures")
    small = [f"{name}: {px:.1f} px" for px, name in sizes if px < MIN_TEXT_PX[viewport]]
    assert not small, f"figure text below {MIN_TEXT_PX[viewport]} px: {small}"


@pytest.mark.parametrize("page", TOC_PAGES)
def test_every_figure_has_alt_text(site, page):
    """Alt text says what a figure shows: at least five words, never a file name or path."""
    article = soup(page).select_one("article") or soup(page)
    bad = []
    for img in article.find_all("img"):
        if "_images/" not in img.get("src", ""):
            continue
        alt = (img.get("alt") or "").strip()
        if len(alt.split()) < 5 or re.search(r"^\.{0,2}/|_images/|\.(png|svg|jpe?g)\b|^[0-9a-f]{16,}", alt):
            bad.append(f"{Path(img['src']).name}: alt={alt!r}")
    assert not bad, bad


@pytest.mark.parametrize("page", [p for p in TOC_PAGES if source_suffix(p.removesuffix(".html")) == ".ipynb"])
def test_code_a_reader_sees(site, page):
    """Visible code cells (not folded, not removed) are teaching code: lines of at most 88 characters and no
    build plumbing (glue calls live in hidden cells)."""
    long, plumbing = [], []
    for cell in soup(page).select("div.cell"):
        source = cell.select_one(".cell_input pre")
        if source is None or cell.find_parent("details") or source.find_parent("details"):
            continue
        for line in source.get_text().splitlines():
            if len(line) > 88:
                long.append(f"[{len(line)}] {line[:70]}")
            if re.search(r"\bglue(_[a-z]+)?\(", line):
                plumbing.append(line.strip()[:70])
    assert not long, f"{len(long)} visible code lines over 88 characters, e.g. {long[:3]}"
    assert not plumbing, f"{len(plumbing)} visible glue calls, e.g. {plumbing[:3]}"


# ---------------------------------------------------------------------------------------------------------------
# The book-theme features readers expect


@pytest.mark.parametrize("page", TOC_PAGES)
def test_header_buttons(site, page):
    """Search and repository buttons everywhere; the source download (.ipynb or .md) exists; notebooks launch
    on Binder and Colab at their path in the repository."""
    page_soup = soup(page)
    docname = page.removesuffix(".html")
    suffix = source_suffix(docname)
    assert page_soup.select(".search-button__button"), "no search button"
    repo = page_soup.select_one("a.btn-source-repository-button")
    assert repo and repo["href"].startswith("https://github.com/"), "no repository button"
    download = [a["href"] for a in page_soup.select("a.btn-download-source-button")]
    assert len(download) == 1 and download[0].endswith(f"_sources/{docname}{suffix}"), download
    assert (SITE / page).parent.joinpath(download[0]).resolve().is_file(), f"{download[0]} not shipped"
    launch = {a.get_text(strip=True): a["href"] for a in page_soup.select(".dropdown-launch-buttons a")}
    if suffix == ".ipynb":
        repo_path = repo["href"].removeprefix("https://github.com/").rstrip("/")
        assert launch.get("Binder", "").endswith(f"/v2/gh/{repo_path}/main?urlpath=lab/tree/{docname}.ipynb"), launch
        assert launch.get("Colab", "").endswith(f"/github/{repo_path}/blob/main/{docname}.ipynb"), launch


def test_numbered_equations_figures_and_cross_references(site):
    """Equations and figures carry numbers, and {eq}/{numref} references link to them (the link test checks
    the targets exist)."""
    pages = [soup(p) for p in TOC_PAGES]
    assert any(s.select("span.eqno") for s in pages), "no numbered equation anywhere"
    assert any(s.select('a.reference.internal[href*="#equation-"]') for s in pages), "no equation reference"
    captions = [c.get_text(strip=True) for s in pages for c in s.select("figure .caption-number")]
    assert captions and all(re.match(r"Fig\. \d+\.\d+", c) for c in captions), captions
    assert any(s.select("a.reference.internal span.std-numref") for s in pages), "no figure reference"


def test_theorem_proof_and_exercise_boxes(site):
    pages = [soup(p) for p in TOC_PAGES]
    assert any(s.select("div.proof.theorem, div.proof.lemma") for s in pages), "no theorem box"
    assert any(s.select("div.proof.admonition") for s in pages), "no proof box"
    assert any(s.select("div.exercise.admonition") for s in pages), "no exercise box"


def test_one_bibliography_page(site):
    """Citations are collected on one page (the references chapter), and the chapters' citations link to it."""
    with_entries = [p for p in PAGES if soup(p).select(".citation-list .citation")]
    assert with_entries == ["book/references.html"], with_entries
    cites = [a["href"] for p in TOC_PAGES for a in soup(p).select(".bibtex-citation a.reference.internal")]
    assert all(href.startswith("references.html#") for href in cites), cites
    assert cites, "no chapter cites the bibliography"


def test_deploy_workflow_publishes_make_book():
    """The Pages workflow builds with the same `make book` and deploys _build/html with the official actions."""
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "deploy.yml").read_text(encoding="utf-8"))
    assert {"pages": "write", "id-token": "write"}.items() <= workflow["permissions"].items()
    build, deploy = workflow["jobs"]["build"], workflow["jobs"]["deploy"]
    assert any("make book" in step.get("run", "") for step in build["steps"])
    upload = [s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@")]
    assert len(upload) == 1 and upload[0]["with"]["path"] == "_build/html"
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert any(s.get("uses", "").startswith("actions/deploy-pages@") for s in deploy["steps"])
