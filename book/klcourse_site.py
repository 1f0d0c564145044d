"""Sphinx extension with the book's small website fixes (listed under ``sphinx.local_extensions`` in _config.yml).

It lives as a single file in ``book/`` so that the student edition (which copies the files of ``book/``) builds
with it too.

1. Sphinx 7.4 (the version Jupyter Book 1.0 pins) writes an inline ``<script>`` that an extension registers after
the builder has started twice on every page: once from ``app.add_js_file`` and once more when the builder
re-reads the registry before writing (the two copies differ only by ``filename=None`` versus ``''``, so its
duplicate check misses them). sphinx-thebe registers ``const THEBE_JS_URL = ...`` that way, and the second
copy throws "Identifier 'THEBE_JS_URL' has already been declared" in the console of every page. The
repeated copies are dropped before each page is rendered.

2. The search page shows an excerpt of each hit, cut from the page's text, so formulas appear as raw TeX
(``\\(D_{\\mathrm{KL}}(P\\,\\|\\,Q)\\)``). On the search page KaTeX (the copy in ``_static/katex``) is loaded, each
formula of a page is read back as its TeX source, and each excerpt is typeset as it arrives, after dropping a
formula that the excerpt's ends cut in half.

3. The site's root ``index.html`` (the book's first page is ``book/intro``) is written by sphinx-external-toc
as a bare ``<meta http-equiv="Refresh">`` line: without a ``<link rel="icon">`` the browser asks for
``/favicon.ico`` and gets a 404. It is written here first, as a small page with the favicon, a title and a
plain link for browsers that do not follow the refresh.

4. Maths is rendered at build time by sphinxcontrib-katex (``katex_prerender``): pages need no maths script,
show typeset formulas on first paint and do not shift when fonts arrive. KaTeX's CSS and fonts are copied
from the npm package into ``_static/katex``, and a small style sheet stops the theme from clipping formulas.

5. The theme's icon fonts (Font Awesome 6: 156 kB solid + 118 kB brands + 25 kB regular) are cut down to the
icons the site uses (a few kB each): the glyphs named by a ``fa-*`` class in a page or a script, and every glyph a
style sheet draws by itself (admonition and toggle icons). See :func:`subset_icon_fonts`.

6. The theme's style sheets (pydata-sphinx-theme 397 kB, most of it Bootstrap's utility classes; sphinx-design
55 kB; myst-nb 43 kB) keep only the rules that can apply to the site, as PurgeCSS does: a rule stays when every
class, id, attribute and element its selector names occurs in a page or in a script of the site. See
:func:`purge_style_sheets`.

7. The interactive figures (issue 16): ``book/klwidgets.js`` and ``book/klwidgets.css`` go to ``_static`` and are
loaded by the pages that hold a ``<div class="kl-widget" data-kl-widget=...>`` (placed in a chapter's Markdown with a
``{raw} html`` block), and by no other page. See :func:`add_widget_assets`.

8. KaTeX's pre-rendered markup is made smaller (a maths-dense chapter's HTML by about a fifth): short names for its
internal classes, in the pages and in a renamed copy of its style sheet, and classes for repeated inline styles;
the rendering is the same to the pixel (tests/site/test_katex_compact.py). See :func:`compact_katex_site`.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path

from sphinx.errors import ExtensionError

SEARCH_EXCERPT_JS = r"""(() => {
  const pairs = [[/\\\[/g, /\\\]/g], [/\\begin\{[a-z]+\*?\}/g, /\\end\{[a-z]+\*?\}/g], [/\\\(/g, /\\\)/g]];
  const matches = (re, text) => [...text.matchAll(re)];
  const locate = (root, index) => {  // text offset -> [text node, offset in it]
    const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    let last = null;
    for (let node; (node = walker.nextNode()); last = node) {
      if (index <= node.data.length) return [node, index];
      index -= node.data.length;
    }
    return [last, last ? last.data.length : 0];
  };
  const replace = (root, start, end, filler) => {  // keeps the search-term highlights outside [start, end)
    const range = document.createRange();
    range.setStart(...locate(root, start));
    range.setEnd(...locate(root, end));
    range.deleteContents();
    range.insertNode(document.createTextNode(filler));
  };
  const dropCutFormulas = (excerpt) => {
    for (const [open, close] of pairs) {
      let text = excerpt.textContent;
      const firstClose = matches(close, text)[0], firstOpen = matches(open, text)[0];
      if (firstClose && (!firstOpen || firstOpen.index > firstClose.index)) {
        replace(excerpt, 0, firstClose.index + firstClose[0].length, "... ");
        text = excerpt.textContent;
      }
      const lastOpen = matches(open, text).pop();
      if (lastOpen && !matches(close, text).some((m) => m.index > lastOpen.index)) {
        replace(excerpt, lastOpen.index, text.length, " ...");
      }
    }
  };
  // Pages carry maths pre-rendered by KaTeX: for an excerpt, each formula is read back as its TeX source
  // (KaTeX keeps it in an <annotation>) between \( \), so that the excerpt can be typeset again.
  const KATEX_OPTIONS = {delimiters: [{left: "\\(", right: "\\)", display: false},
                                      {left: "\\[", right: "\\]", display: false}], throwOnError: false};
  document.addEventListener("DOMContentLoaded", () => {
    const results = document.getElementById("search-results");
    if (!results || !window.renderMathInElement || typeof Search === "undefined") return;
    // (this listener runs before searchtools' own, which was registered later, so the search uses the patch)
    const htmlToText = Search.htmlToText;
    Search.htmlToText = (htmlString, anchor) => {
      const doc = new DOMParser().parseFromString(htmlString, "text/html");
      doc.querySelectorAll(".katex").forEach((el) => {
        const tex = el.querySelector('annotation[encoding="application/x-tex"]');
        el.replaceWith(doc.createTextNode(tex ? `\\(${tex.textContent}\\)` : ""));
      });
      return htmlToText(doc.documentElement.outerHTML, anchor);
    };
    new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        for (const node of mutation.addedNodes) {
          if (node.nodeType !== Node.ELEMENT_NODE || !node.matches("p.context")) continue;
          dropCutFormulas(node);
          renderMathInElement(node, KATEX_OPTIONS);
        }
      }
    }).observe(results, {childList: true, subtree: true});
  });
})();"""


def _script_key(script):
    """What makes two script entries the same script: file, priority and attributes (including an inline body)."""
    filename = getattr(script, "filename", script) or ""
    attributes = getattr(script, "attributes", {}) or {}
    return str(filename), getattr(script, "priority", 500), tuple(sorted(attributes.items()))


def drop_repeated_scripts(app, pagename, templatename, context, doctree):
    """Keep the first of any identical ``script_files`` entries of a page (order otherwise unchanged)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = _script_key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def typeset_search_excerpts(app, pagename, templatename, context, doctree):
    """On the search page, load KaTeX (the other pages need none: their maths is rendered at build time) and
    the script that typesets the excerpts."""
    if pagename != "search" or app.builder.name != "html":
        return
    app.builder.add_js_file("katex/katex.min.js", defer="defer")
    app.builder.add_js_file("katex/auto-render.min.js", defer="defer")
    app.builder.add_js_file("", body=SEARCH_EXCERPT_JS)


# ---------------------------------------------------------------------------------------------------------------
# Maths rendered at build time (sphinxcontrib-katex with katex_prerender) needs KaTeX's style sheet and fonts on
# the site. They come from the npm package ``katex`` that ``make venv`` installs into ``.venv/npm`` (never a CDN);
# its version must be the one sphinxcontrib-katex renders with, or the HTML and the CSS disagree.

KATEX_FILES = ("katex.min.css", "katex.min.js", "contrib/auto-render.min.js")


def katex_dist() -> Path:
    """The ``dist`` folder of the npm package ``katex`` ($KLCOURSE_KATEX_DIST, else <venv>/npm/node_modules)."""
    env = os.environ.get("KLCOURSE_KATEX_DIST")
    dist = Path(env) if env else Path(sys.prefix) / "npm" / "node_modules" / "katex" / "dist"
    if not (dist / "katex.min.css").is_file():
        raise ExtensionError(f"KaTeX's style sheet and fonts are missing ({dist}): `make venv` installs them "
                             "(npm install --prefix .venv/npm katex)")
    return dist


def _start_katex_server(cls, rundir, timeout):
    """sphinxcontrib-katex's start of its node server, without its race: the socket file appears when node
    binds it, before it listens, so its single connect can be refused on a busy machine (seen with 2 cores
    and several builds at once). Here the connect is retried until the deadline."""
    import socket
    import subprocess
    import time

    socket_path = Path(rundir) / "katex.sock"
    process = subprocess.Popen(cls.build_command(socket=socket_path), stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, cwd=rundir)
    deadline = time.monotonic() + timeout
    while True:
        if socket_path.is_socket():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                sock.connect(str(socket_path))
                sock.settimeout(None)
                return process, sock
            except (TimeoutError, ConnectionRefusedError, FileNotFoundError):
                sock.close()
        if process.poll() is not None:
            raise ExtensionError(f"the KaTeX server (node) exited with code {process.returncode}")
        if time.monotonic() > deadline:
            process.kill()
            raise cls.timeout_error(timeout)
        time.sleep(0.01)


def harden_katex_server():
    """Generous start-up and per-formula timeouts (5 s each upstream) and the race-free start above."""
    from sphinxcontrib import katex as sphinx_katex

    sphinx_katex.STARTUP_TIMEOUT = 120.0
    sphinx_katex.RENDER_TIMEOUT = 120.0
    sphinx_katex.KaTeXServer.start_server_process = classmethod(_start_katex_server)


def check_katex_version(app):
    if "sphinxcontrib.katex" not in app.extensions:
        return
    harden_katex_server()
    from sphinxcontrib import katex as sphinx_katex

    package = json.loads((katex_dist().parent / "package.json").read_text(encoding="utf-8"))
    if package["version"] != sphinx_katex.katex_version:
        raise ExtensionError(f"npm katex {package['version']} != the KaTeX {sphinx_katex.katex_version} that "
                             "sphinxcontrib-katex renders with: pin the same version in the Makefile")


def copy_katex_assets(app, exception):
    """KaTeX's CSS, woff2 fonts (what every current browser loads) and, for the search page, its scripts."""
    if exception is not None or "sphinxcontrib.katex" not in app.extensions or app.builder.format != "html":
        return
    dist, dest = katex_dist(), Path(app.outdir, "_static", "katex")
    (dest / "fonts").mkdir(parents=True, exist_ok=True)
    for name in KATEX_FILES:
        shutil.copyfile(dist / name, dest / Path(name).name)
    for font in (dist / "fonts").glob("*.woff2"):
        shutil.copyfile(font, dest / "fonts" / font.name)
    Path(app.outdir, "_static", SITE_CSS).write_text(SITE_CSS_TEXT, encoding="utf-8")


# Scripts a page does not need. fontawesome.js (1.5 MB, the SVG version of Font Awesome) draws the header
# icons a second time: the theme's style sheet already has Font Awesome's web font, which shows the same icons.
# The search index and its tools are needed on the search page only (the search button opens a form that goes
# there).
UNNEEDED_SCRIPTS = re.compile(
    r'<script[^>]*\ssrc="[^"]*(?:scripts/fontawesome\.js|searchindex\.js|searchtools\.js|language_data\.js)'
    r'[^"]*"[^>]*>\s*</script>\n?')


# Accessibility fixes to the theme's HTML (axe-core, WCAG 2.1 A/AA): an accessible name must contain the visible
# text (label-content-name-mismatch), so the code-cell toggles are named by their "Show code cell source" text
# and the search field by "Search Ctrl+K" rather than by a different aria-label; sphinxcontrib-bibtex's
# role="list" holds children that are not list items (aria-required-children) and doc-biblioentry is deprecated.
ACCESSIBILITY_FIXES = (
    (re.compile(r'(<summary\b[^>]*?)\s+aria-label="Toggle hidden content"'), r"\1"),
    (re.compile(r'(<button\b[^>]*\bsearch-button-field\b[^>]*?)\s+aria-label="Search"'), r"\1"),
    (re.compile(r'<div role="list" class="citation-list">'), '<div class="citation-list">'),
    (re.compile(r'(<div class="citation"[^>]*?)\s+role="doc-biblioentry"'), r"\1"),
)


# The figures of a chapter (PNGs in _images/) load when the reader scrolls near them (loading="lazy"), not all
# with the page; each gets its width and height so that the browser keeps its place before it arrives (no layout
# shift). make_pdf.py turns lazy loading off before printing.
_FIGURE_IMG = re.compile(r'<img\b(?![^>]*\bloading=)([^>]*?)\ssrc="([^"]*_images/[^"]+\.png)"([^>]*?)\s*/?>')


def png_size(path: Path) -> tuple[int, int]:
    """Width and height in pixels from a PNG's header."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def lazy_figure(page: Path, match: re.Match) -> str:
    """The ``<img>`` of ``match`` (a figure on ``page``) with its size and lazy loading."""
    before, src, after = match.groups()
    image = (page.parent / src).resolve()
    if not image.is_file():
        return match.group(0)
    width, height = png_size(image)
    shown = re.search(r"width:\s*([0-9.]+)px", before + after)
    if shown:  # the PNG is drawn at 2x: keep the displayed width and the PNG's proportions
        width, height = round(float(shown.group(1))), round(float(shown.group(1)) * height / width)
    return (f'<img{before} src="{src}"{after} width="{width}" height="{height}" loading="lazy" '
            'decoding="async" />')


def fix_pages(app, exception):
    """Drop the scripts of UNNEEDED_SCRIPTS from every page (the search page keeps its search scripts) and
    apply ACCESSIBILITY_FIXES."""
    if exception is not None or app.builder.format != "html":
        return
    for page in Path(app.outdir).rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        if page.name == "search.html" and page.parent == Path(app.outdir):
            slim = re.sub(r'<script[^>]*\ssrc="[^"]*scripts/fontawesome\.js[^"]*"[^>]*>\s*</script>\n?', "", text)
        else:
            slim = UNNEEDED_SCRIPTS.sub("", text)
        for pattern, replacement in ACCESSIBILITY_FIXES:
            slim = pattern.sub(replacement, slim)
        slim = _FIGURE_IMG.sub(lambda match, page=page: lazy_figure(page, match), slim)
        if slim != text:
            page.write_text(slim, encoding="utf-8")


# A display equation wider than its box scrolls sideways; a keyboard user can scroll it only if it can take the
# focus (axe-core: scrollable-region-focusable). Only the equations that overflow at the current width get a
# tab stop, so a desktop reader does not tab through every equation.
FOCUSABLE_WIDE_MATH_JS = """(() => {
  const mark = () => document.querySelectorAll("div.math > .katex-display").forEach((box) => {
    if (box.scrollWidth > box.clientWidth + 1) {
      box.setAttribute("tabindex", "0");
      box.setAttribute("role", "group");
      box.setAttribute("aria-label", "Equation, scrolls sideways");
    } else {
      box.removeAttribute("tabindex");
    }
  });
  document.addEventListener("DOMContentLoaded", mark);
  window.addEventListener("resize", mark);
})();"""


SITE_CSS = "klcourse-site.css"
# pydata-sphinx-theme styles ``span.math`` as a flex box with ``overflow: hidden``, made for MathJax: a long
# inline formula is then cut off with no way to scroll. KaTeX's inline output breaks lines after relations and
# operators like text, so inline maths is plain inline content again. A display equation wider than the column
# scrolls inside its own box, never the page, and its number sits beside it, not on top of it.
SITE_CSS_TEXT = """span.math { display: inline; max-width: none; overflow: visible; }
div.math { display: flex; flex-direction: row-reverse; align-items: center; gap: .5em; position: static;
           padding-right: 0; max-width: 100%; overflow: visible; }
div.math > .katex-display { flex: 1 1 auto; min-width: 0; margin: .6em 0; overflow-x: auto; overflow-y: hidden;
                            padding: .15em 0; }
div.math > .katex-display > .katex > .katex-html { overflow: visible; }
div.math > .eqno { position: static; flex: 0 0 auto; height: auto; padding: 0; white-space: nowrap; }
div.math > .eqno:before { content: none; }
div.math > .katex-display:focus-visible { outline: 3px solid var(--pst-color-accent); outline-offset: 2px; }
/* Links inside exercise, solution, theorem and proof boxes: the theme's link colour on the boxes' tinted
   backgrounds is 4.29:1, under WCAG AA's 4.5:1; its higher-contrast link colour passes in both modes. */
.admonition a:not(.headerlink), div.proof a:not(.headerlink) { color: var(--pst-color-link-higher-contrast); }
/* A visible focus ring on every header and toolbar button (the theme draws none on the icon buttons). */
.bd-header .btn:focus-visible, .header-article-items .btn:focus-visible, .dropdown-toggle:focus-visible,
.toggle-button:focus-visible, summary:focus-visible {
  outline: 3px solid var(--pst-color-accent); outline-offset: 2px; }
/* On a phone the theme's floating "Back to top" pill lies on top of the text and code being read. */
@media (max-width: 767.98px) { #pst-back-to-top { display: none !important; } }
"""


REDIRECT_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8" />
<meta http-equiv="Refresh" content="0; url={target}" />
<title>{title}</title>
{icon}</head>
<body><p><a href="{target}">{title}</a></p></body>
</html>
"""


def write_root_redirect(app, exception):
    """Write ``index.html`` (redirecting to the root document) before sphinx-external-toc writes its bare one."""
    if exception is not None or app.builder.name != "html" or app.config.root_doc == "index":
        return
    favicon = app.config.html_favicon
    icon = ""
    if favicon:
        href = favicon if "://" in favicon else f"_static/{Path(favicon).name}"
        icon = f'<link rel="icon" href="{html.escape(href)}" />\n'
    title = app.config.html_title or app.config.project
    page = REDIRECT_PAGE.format(target=html.escape(app.builder.get_target_uri(app.config.root_doc)),
                                title=html.escape(title), icon=icon)
    Path(app.outdir, "index.html").write_text(page, encoding="utf-8")


# The KaTeX fonts nearly every formula uses, fetched with the page's style sheets instead of when the first
# formula is laid out: without them the text reflows when they arrive (a layout shift of 0.22 on a phone).
PRELOADED_FONTS = ("KaTeX_Main-Regular", "KaTeX_Math-Italic", "KaTeX_Size1-Regular", "KaTeX_AMS-Regular")


def preload_math_fonts(app, pagename, templatename, context, doctree):
    if "sphinxcontrib.katex" not in app.extensions or doctree is None or not any(
            node.tagname in ("math", "math_block") for node in doctree.findall()):
        return
    links = "".join(f'<link rel="preload" href="{context["pathto"](f"_static/katex/fonts/{name}.woff2", 1)}" '
                    'as="font" type="font/woff2" crossorigin>\n' for name in PRELOADED_FONTS)
    context["metatags"] = context.get("metatags", "") + links


# ---------------------------------------------------------------------------------------------------------------
# Interactive figures (plain JavaScript, no library): next to this file, so that the student edition (which copies
# the files of book/) has them. A one-chapter build that copies only this file finds them in $KLCOURSE_ROOT/book.

WIDGET_FILES = ("klwidgets.js", "klwidgets.css")
WIDGET_MARK = 'data-kl-widget="'


def widget_files() -> list[Path]:
    for folder in (Path(__file__).resolve().parent, Path(os.environ.get("KLCOURSE_ROOT", "/nonexistent"), "book")):
        files = [folder / name for name in WIDGET_FILES]
        if all(f.is_file() for f in files):
            return files
    return []


def add_widget_assets(app, config):
    """Copy the widgets' script and style sheet into ``_static`` (Sphinx copies files of html_static_path).

    Without them (a copy of this file alone, $KLCOURSE_ROOT unset) the build warns -- an error under ``-W``, as in
    ``make book`` -- and the pages keep only the static figures (the widget blocks stay hidden)."""
    from sphinx.util import logging

    files = widget_files()
    app.klcourse_widgets = bool(files)
    if not files:
        logging.getLogger(__name__).warning(
            f"{' and '.join(WIDGET_FILES)} not found next to {__file__} nor in $KLCOURSE_ROOT/book: "
            "the interactive figures stay hidden")
        return
    config.html_static_path = list(config.html_static_path) + [str(f) for f in files]


def load_widgets(app, pagename, templatename, context, doctree):
    if getattr(app, "klcourse_widgets", False) and WIDGET_MARK in context.get("body", ""):
        app.builder.add_css_file(WIDGET_FILES[1], priority=900)
        app.builder.add_js_file(WIDGET_FILES[0], defer="defer")


def on_page(app, pagename, templatename, context, doctree):
    load_widgets(app, pagename, templatename, context, doctree)
    preload_math_fonts(app, pagename, templatename, context, doctree)
    typeset_search_excerpts(app, pagename, templatename, context, doctree)
    drop_repeated_scripts(app, pagename, templatename, context, doctree)


# ---------------------------------------------------------------------------------------------------------------
# Icon fonts cut down to the icons the site uses.

FA_WEBFONTS = Path("_static", "vendor", "fontawesome", "webfonts")
_CSS_RULE = re.compile(r"([^{}]+)\{([^{}]*)\}")
_CSS_ICON_ESCAPE = re.compile(r"\\([0-9a-f]{4})", re.IGNORECASE)  # "\f0c9"; the theme also writes the character
_PRIVATE_USE = range(0xE000, 0xF900)  # where Font Awesome puts its icons


def _icon_points(css_body: str) -> set[int]:
    """Code points of the Private Use Area in a CSS rule's body, written as escapes or as characters."""
    points = {int(code, 16) for code in _CSS_ICON_ESCAPE.findall(css_body)}
    points.update(ord(char) for char in css_body if ord(char) in _PRIVATE_USE)
    return {point for point in points if point in _PRIVATE_USE}
_ICON_CLASS_RULE = re.compile(r"^\.(fa-[a-z0-9-]+):{1,2}(?:before|after)$")
_FA_CLASS = re.compile(r"\bfa-[a-z0-9-]+")


def icon_codepoints(outdir: Path) -> set[int]:
    """The Font Awesome code points the built site can show.

    A rule of the theme's icon table (``.fa-bars:before{content:"\\f0c9"}``) counts when a page or a script names
    its class; any other rule that holds an icon (``content:"\\f107"``, or a CSS variable such as
    ``--pst-icon-info-circle`` that admonition titles draw) always counts.
    """
    used_classes: set[str] = set()
    for page in outdir.rglob("*.html"):
        used_classes.update(_FA_CLASS.findall(page.read_text(encoding="utf-8")))
    for script in (outdir / "_static").rglob("*.js"):
        if script.name != "fontawesome.js":  # the SVG copy of Font Awesome names every icon; pages do not load it
            used_classes.update(_FA_CLASS.findall(script.read_text(encoding="utf-8", errors="replace")))
    points: set[int] = set()
    for sheet in (outdir / "_static").rglob("*.css"):
        for selectors, body in _CSS_RULE.findall(sheet.read_text(encoding="utf-8", errors="replace")):
            escapes = _icon_points(body)
            if not escapes:
                continue
            names = [_ICON_CLASS_RULE.match(sel.strip()) for sel in selectors.split(",")]
            if all(names) and not any(match.group(1) in used_classes for match in names):
                continue
            points.update(escapes)
    return points


def subset_icon_fonts(app, exception):
    """Keep in each Font Awesome font (woff2 and ttf) only the glyphs of :func:`icon_codepoints`."""
    if exception is not None or app.builder.format != "html":
        return
    from fontTools import subset

    folder = Path(app.outdir, FA_WEBFONTS)
    if not folder.is_dir():
        return
    points = icon_codepoints(Path(app.outdir))
    if not points:
        raise ExtensionError("no Font Awesome icon found in the site's style sheets: the theme changed")
    for font_file in sorted(folder.glob("fa-*")):
        if font_file.suffix not in (".woff2", ".ttf"):
            continue
        options = subset.Options()
        options.flavor = "woff2" if font_file.suffix == ".woff2" else None
        options.layout_features = ["*"]
        options.notdef_outline = True
        font = subset.load_font(str(font_file), options)
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(points & set(font.getBestCmap())))
        subsetter.subset(font)
        subset.save_font(font, str(font_file), options)


# ---------------------------------------------------------------------------------------------------------------
# Style sheets cut down to the rules the site can use.

PURGE_SKIP = ("katex",)  # KaTeX's sheet is small and its classes come from the maths renderer
_SELECTOR_PSEUDO = re.compile(r"::?[\w-]+(?:\([^()]*(?:\([^()]*\))*[^()]*\))?")
_SELECTOR_CLASS = re.compile(r"\.(-?[_a-zA-Z][\w-]*)")
_SELECTOR_ID = re.compile(r"#(-?[_a-zA-Z][\w-]*)")
_SELECTOR_ATTR = re.compile(r"\[\s*([\w-]+)")
_SELECTOR_TAG = re.compile(r"(?:^|[\s>+~(])([a-zA-Z][a-zA-Z0-9]*)(?![\w-])")
_JS_TOKEN = re.compile(r"[A-Za-z_][\w-]*")


class _Vocabulary(HTMLParser):
    """Every class, id, attribute name and element name that occurs in the HTML fed to it."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.words: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.words.add(tag)
        for name, value in attrs:
            self.words.add(name)
            if name in ("class", "id") and value:
                self.words.update(value.split())


def site_vocabulary(outdir: Path) -> set[str]:
    """The words a selector may name and still apply: from every page, and every identifier in the scripts
    (Bootstrap adds ``show`` and ``collapsing``, the theme sets ``data-theme``, KaTeX writes its classes)."""
    vocabulary = _Vocabulary()
    for page in outdir.rglob("*.html"):
        if "_static" not in page.relative_to(outdir).parts:
            vocabulary.feed(page.read_text(encoding="utf-8"))
    words = vocabulary.words
    for script in (outdir / "_static").rglob("*.js"):
        if script.name != "fontawesome.js":
            words.update(_JS_TOKEN.findall(script.read_text(encoding="utf-8", errors="replace")))
    return words


def split_selectors(prelude: str) -> list[str]:
    """Split a selector list at its top-level commas (not those inside ``:is(a, b)`` or ``[x="a,b"]``)."""
    parts, depth, quote, start = [], 0, "", 0
    for i, char in enumerate(prelude):
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(prelude[start:i].strip())
            start = i + 1
    parts.append(prelude[start:].strip())
    return [part for part in parts if part]


def selector_may_apply(selector: str, words: set[str]) -> bool:
    """False only when the selector names a class, id, attribute or element that the site never has.

    Pseudo-classes and their arguments are ignored (``:not(.x)`` keeps a rule rather than dropping it)."""
    bare = _SELECTOR_PSEUDO.sub(" ", re.sub(r"\[[^\]]*\]", lambda m: "[" + _SELECTOR_ATTR.match(m.group(0)).group(1)
                                            + "]" if _SELECTOR_ATTR.match(m.group(0)) else "", selector))
    names = (_SELECTOR_CLASS.findall(bare) + _SELECTOR_ID.findall(bare) + _SELECTOR_ATTR.findall(bare)
             + [tag.lower() for tag in _SELECTOR_TAG.findall(_SELECTOR_CLASS.sub(" ", _SELECTOR_ID.sub(" ", bare)))])
    return all(name in words for name in names)


def purge_rules(rules, words: set[str]) -> str:
    import tinycss2

    out = []
    for rule in rules:
        if rule.type == "qualified-rule":
            kept = [sel for sel in split_selectors(tinycss2.serialize(rule.prelude)) if selector_may_apply(sel, words)]
            if kept:
                out.append(",".join(kept) + "{" + tinycss2.serialize(rule.content) + "}")
        elif rule.type == "at-rule" and rule.at_keyword.lower() in ("media", "supports", "layer", "container") \
                and rule.content is not None:
            inner = purge_rules(tinycss2.parse_rule_list(rule.content, skip_comments=True, skip_whitespace=True),
                                words)
            if inner:
                out.append(f"@{rule.at_keyword}{tinycss2.serialize(rule.prelude)}{{{inner}}}")
        elif rule.type == "at-rule":
            out.append(tinycss2.serialize([rule]))
    return "".join(out)


def purge_style_sheets(app, exception):
    """Rewrite each style sheet in ``_static`` (but KaTeX's) with the rules :func:`selector_may_apply` keeps."""
    if exception is not None or app.builder.format != "html":
        return
    import tinycss2

    outdir = Path(app.outdir)
    words = site_vocabulary(outdir)
    for sheet in sorted((outdir / "_static").rglob("*.css")):
        if any(part in PURGE_SKIP for part in sheet.relative_to(outdir / "_static").parts):
            continue
        text = sheet.read_text(encoding="utf-8")
        rules = tinycss2.parse_stylesheet(text, skip_comments=True, skip_whitespace=True)
        if any(rule.type == "error" for rule in rules):
            continue  # a sheet tinycss2 cannot read stays as it is
        charset = '@charset "UTF-8";' if text.startswith("@charset") else ""
        sheet.write_text(charset + purge_rules(rules, words), encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# KaTeX's pre-rendered maths made smaller (issue 10: a chapter's first visit <= 1.5 MB). Most of a maths-heavy
# page is KaTeX markup: long class names (``mord mathnormal``, ``vlist-t vlist-t2``) and inline styles that repeat
# hundreds of times (``margin-right:0.2778em``). After the build:
# - KaTeX's internal class names get short names, in the pages and in a renamed copy of KaTeX's style sheet
#   (``_static/katex/katex-compact.css``; the search page, whose excerpts KaTeX's script typesets in the browser
#   with the original names, keeps ``katex.min.css``). A name is renamed only when nothing else uses it: no
#   element outside a formula, no other style sheet, no string in a script; the public names below stay. The new
#   names occur nowhere on the site, so the renaming is a one-to-one change of names that every selector
#   follows: the same rules match the same elements.
# - An inline style repeated on a page becomes a class whose rule, in a ``<style>`` at the top of the page's head,
#   reads ``:where(.x){...!important}``: important declarations beat every normal rule, as an inline style does,
#   and with specificity 0 and the first place in the page any other important rule still wins, as it does
#   against an inline style. Names are the same on every page (make_pdf.py joins pages into one document and
#   carries their ``<style>`` along).
# - ``<math xmlns="...MathML">`` loses its ``xmlns``, which the HTML parser ignores (``<math>`` is MathML there).
# The MathML (what screen readers read), its TeX annotation (which the search page reads back) and aria-hidden on
# the visual markup are unchanged.

KATEX_PUBLIC_CLASSES = frozenset({"katex", "katex-display", "katex-html", "katex-mathml", "katex-error", "math",
                                  "eqno"})
KATEX_COMPACT_CSS = "katex-compact.css"
KATEX_STYLE_MARK = "data-katex-styles"
_KATEX_ROOT = re.compile(r'<span class="katex(?:\s[^"]*)?">')
_SPAN_TAG = re.compile(r"<(/?)span\b")
_TAG = re.compile(r"<([a-zA-Z][\w:-]*)(\s[^<>]*?)?(/?)>")
_CLASS_ATTR = re.compile(r'\sclass="([^"]*)"')
_STYLE_ATTR = re.compile(r'\sstyle="([^"]*)"')
_MATHML_XMLNS = ' xmlns="http://www.w3.org/1998/Math/MathML"'
_SKIPPED_ELEMENTS = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->", re.S | re.I)
_JS_STRING = re.compile(r""""(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`""", re.S)
_WORD = re.compile(r"-?[_a-zA-Z][\w-]*")
_KATEX_SCRIPTS = ("katex.min.js", "auto-render.min.js")


def katex_ranges(text: str) -> list[tuple[int, int]]:
    """(start, end) of each formula's ``<span class="katex">`` element in ``text`` (its closing tag included)."""
    ranges, pos = [], 0
    while (root := _KATEX_ROOT.search(text, pos)) is not None:
        depth = 0
        for tag in _SPAN_TAG.finditer(text, root.start()):
            depth += -1 if tag.group(1) else 1
            if depth == 0:
                end = text.index(">", tag.end()) + 1
                break
        else:
            raise ValueError(f"unclosed KaTeX span at offset {root.start()}")
        ranges.append((root.start(), end))
        pos = end
    return ranges


def _split(text: str, ranges) -> tuple[str, list[str]]:
    """The text outside the formulas (with scripts, styles and comments blanked) and the formulas."""
    outside, inside, last = [], [], 0
    for start, end in ranges:
        outside.append(text[last:start])
        inside.append(text[start:end])
        last = end
    outside.append(text[last:])
    return _SKIPPED_ELEMENTS.sub(" ", " ".join(outside)), inside


def _class_tokens(fragment: str) -> set[str]:
    return {token for value in _CLASS_ATTR.findall(fragment) for token in value.split()}


def css_class_names(css: str) -> set[str]:
    """Every class a selector of the style sheet ``css`` names (url(...) bodies and strings left out)."""
    import tinycss2

    names: set[str] = set()

    def walk(tokens):
        tokens = list(tokens)
        for i, token in enumerate(tokens):
            if token.type == "literal" and token.value == "." and i + 1 < len(tokens) \
                    and tokens[i + 1].type == "ident":
                names.add(tokens[i + 1].value)
            if token.type in ("() block", "[] block", "{} block", "function"):
                walk(token.arguments if token.type == "function" else token.content)

    for rule in tinycss2.parse_stylesheet(css, skip_comments=True, skip_whitespace=True):
        if rule.type in ("qualified-rule", "at-rule"):
            walk(rule.prelude or [])
            if rule.content is not None:
                if rule.type == "at-rule":
                    names.update(css_class_names(tinycss2.serialize(rule.content)))
    return names


def short_names(taken: set[str]):
    """a, b, ..., z, aa, ab, ..., a0, ...: lower-case CSS identifiers not in ``taken``."""
    first, rest = "abcdefghijklmnopqrstuvwxyz", "abcdefghijklmnopqrstuvwxyz0123456789"
    for length in range(1, 5):
        for index in range(26 * 36 ** (length - 1)):
            name, index = first[index % 26], index // 26
            for _ in range(length - 1):
                name, index = name + rest[index % 36], index // 36
            if name not in taken:
                yield name
    raise ValueError("out of short names")


def rename_css_classes(css: str, rename: dict[str, str]) -> str:
    """``css`` with each class selector ``.old`` of ``rename`` written ``.new`` (everything else as it was)."""
    import tinycss2

    def walk(tokens):
        tokens = list(tokens)
        for i, token in enumerate(tokens):
            if token.type == "literal" and token.value == "." and i + 1 < len(tokens) \
                    and tokens[i + 1].type == "ident" and tokens[i + 1].value in rename:
                tokens[i + 1] = tinycss2.ast.IdentToken(0, 0, rename[tokens[i + 1].value])
            elif token.type == "function":
                token.arguments = walk(token.arguments)
            elif token.type in ("() block", "[] block"):
                if token.type == "[] block" and any(t.type == "ident" and t.lower_value == "class"
                                                    for t in token.content):
                    raise ValueError("a [class...] selector cannot be renamed")
                token.content = walk(token.content)
        return tokens

    out = []
    for rule in tinycss2.parse_stylesheet(css):
        if rule.type == "qualified-rule":
            rule.prelude = walk(rule.prelude)
        elif rule.type == "at-rule" and rule.content is not None and rule.at_keyword.lower() in (
                "media", "supports", "layer", "container"):
            rule.content = tinycss2.parse_stylesheet(rename_css_classes(tinycss2.serialize(rule.content), rename))
        elif rule.type == "error":
            raise ValueError(f"unreadable CSS: {rule.message}")
        out.append(rule)
    return tinycss2.serialize(out)


def important_declarations(style: str) -> str | None:
    """``height:1em;vertical-align:-0.25em;`` -> ``height:1em!important;vertical-align:-0.25em!important``,
    or None when the style is not a plain list of declarations."""
    import tinycss2

    parts = []
    for item in tinycss2.parse_declaration_list(style, skip_comments=True, skip_whitespace=True):
        if item.type != "declaration":
            return None
        parts.append(f"{item.name}:{tinycss2.serialize(item.value).strip()}!important")
    return ";".join(parts) or None


class KatexCompaction:
    """The renaming of KaTeX's classes and the classes for repeated inline styles, planned over a whole site."""

    def __init__(self, pages: dict, sheets: dict, scripts: dict, katex_css: str, compacted: tuple = (),
                 previous: dict | None = None):
        """Plan for ``pages`` (as Sphinx wrote them) given the site's other style sheets and scripts. An
        incremental build leaves pages compacted by the previous run (``compacted``, their texts): the plan of that
        run (``previous``, see :meth:`state`) is kept and extended, so that every page uses the same names."""
        katex_tokens, outside, styles = {}, set(), {}
        for text in compacted:
            outside |= _class_tokens(_split(text, katex_ranges(text))[0])
        for text in pages.values():
            rest, formulas = _split(text, katex_ranges(text))
            outside |= _class_tokens(rest)
            for formula in formulas:
                for value in _CLASS_ATTR.findall(formula):
                    for token in value.split():
                        katex_tokens[token] = katex_tokens.get(token, 0) + 1
                for style in _STYLE_ATTR.findall(formula):
                    styles[style] = styles.get(style, 0) + 1
        sheet_names = set().union(*map(css_class_names, sheets.values())) if sheets else set()
        script_words = {word for js in scripts.values() for s in _JS_STRING.findall(js) for word in _WORD.findall(s)}
        katex_css_names = css_class_names(katex_css)
        used_elsewhere = outside | sheet_names | script_words | KATEX_PUBLIC_CLASSES
        previous = previous or {"rename": {}, "style_class": {}}
        self.rename, self.style_class = dict(previous["rename"]), dict(previous["style_class"])
        clash = (set(self.rename) | set(self.rename.values()) | set(self.style_class.values())) & used_elsewhere
        if clash:
            raise ValueError(f"the names {sorted(clash)} of the previous build's compacted maths are now used "
                             "elsewhere on the site: build from scratch")
        self.kept = sorted(t for t in katex_tokens if t in used_elsewhere)
        renamable = sorted((t for t in set(katex_tokens) | katex_css_names
                            if t not in used_elsewhere and t not in self.rename),
                           key=lambda t: (-katex_tokens.get(t, 0), t))
        taken = (outside | sheet_names | script_words | set(katex_tokens) | katex_css_names | KATEX_PUBLIC_CLASSES
                 | set(self.rename) | set(self.rename.values()) | set(self.style_class.values()))
        names = short_names(taken)
        self.rename.update((token, next(names)) for token in renamable)
        for style, count in sorted(styles.items(), key=lambda item: (-item[1], item[0])):
            if count > 1 and style not in self.style_class and important_declarations(style):
                self.style_class[style] = next(names)
        self.style_rules = {style: f":where(.{name}){{{important_declarations(style)}}}"
                            for style, name in self.style_class.items()}

    def state(self) -> dict:
        return {"rename": self.rename, "style_class": self.style_class}

    def compact_formula(self, formula: str, counts: dict) -> str:
        def tag(match):
            name, attrs, close = match.group(1), match.group(2) or "", match.group(3)
            classes = _CLASS_ATTR.search(attrs)
            tokens = [self.rename.get(t, t) for t in classes.group(1).split()] if classes else []
            style = _STYLE_ATTR.search(attrs)
            if style and style.group(1) in counts:
                tokens.append(self.style_class[style.group(1)])
                attrs = attrs[:style.start()] + attrs[style.end():]
            if tokens:
                new = f' class="{" ".join(tokens)}"'
                classes = _CLASS_ATTR.search(attrs)
                attrs = attrs[:classes.start()] + new + attrs[classes.end():] if classes else new + attrs
            return f"<{name}{attrs}{close}>"

        return _TAG.sub(tag, formula.replace(_MATHML_XMLNS, ""))

    def page_styles(self, formulas: list[str]) -> dict[str, int]:
        """The repeated styles worth a class on this page: the bytes saved exceed the bytes of the rule."""
        saved: dict[str, int] = {}
        for formula in formulas:
            for tag in _TAG.finditer(formula):
                style = _STYLE_ATTR.search(tag.group(2) or "")
                if style and style.group(1) in self.style_class:
                    name = self.style_class[style.group(1)]
                    added = len(name) + 1 if _CLASS_ATTR.search(tag.group(2)) else len(name) + 9
                    saved[style.group(1)] = saved.get(style.group(1), 0) + len(style.group(0)) - added
        return {style: n for style, n in saved.items() if n > len(self.style_rules[style])}

    def compact_page(self, text: str, css_href: tuple[str, str] | None = None) -> str:
        ranges = katex_ranges(text)
        formulas = [text[start:end] for start, end in ranges]
        counts = self.page_styles(formulas)
        out, last = [], 0
        for (start, end), formula in zip(ranges, formulas, strict=True):
            out += [text[last:start], self.compact_formula(formula, counts)]
            last = end
        out.append(text[last:])
        page = "".join(out)
        if counts:
            rules = "".join(self.style_rules[style] for style in sorted(counts, key=self.style_class.get))
            block = f"<style {KATEX_STYLE_MARK}>{rules}</style>\n"
            charset = re.search(r"<meta charset=[^>]*>\n?", page)
            at = charset.end() if charset else page.index("<head>") + len("<head>")
            page = page[:at] + block + page[at:]
        if css_href:
            page = page.replace(*css_href)
        return page


def compact_katex_site(outdir: Path, state: Path | None = None) -> dict:
    """Apply :class:`KatexCompaction` to the built site ``outdir`` (every page but the search page); return
    counts and bytes before and after. The plan is saved to ``state`` (a JSON file) for the next incremental
    build; default: ``<outdir>/../.doctrees/katex-compact.json``, where Sphinx keeps its own state."""
    outdir = Path(outdir)
    state = Path(state) if state else outdir.parent / ".doctrees" / "katex-compact.json"
    katex_dir = outdir / "_static" / "katex"
    original_css = (katex_dir / "katex.min.css").read_text(encoding="utf-8")
    search = outdir / "search.html"
    pages, compacted = {}, {}
    for page in sorted(outdir.rglob("*.html")):
        if "_static" not in page.relative_to(outdir).parts and page != search:
            text = page.read_text(encoding="utf-8")
            (compacted if f"/{KATEX_COMPACT_CSS}\"" in text else pages)[page] = text
    previous = json.loads(state.read_text(encoding="utf-8")) if compacted and state.is_file() else None
    if compacted and previous is None:
        raise ExtensionError(f"pages of {outdir} are compacted already and {state} is missing: build from scratch")
    sheets = {s: s.read_text(encoding="utf-8", errors="replace") for s in sorted((outdir / "_static").rglob("*.css"))
              if s.parent != katex_dir}
    scripts = {s: s.read_text(encoding="utf-8", errors="replace") for s in sorted((outdir / "_static").rglob("*.js"))
               if s.name not in _KATEX_SCRIPTS and s.name != "fontawesome.js"}
    try:
        plan = KatexCompaction(pages, sheets, scripts, original_css, tuple(compacted.values()), previous)
    except ValueError as error:
        raise ExtensionError(str(error)) from error
    before = after = 0
    for page, text in pages.items():
        new = plan.compact_page(text, ('/katex.min.css"', f'/{KATEX_COMPACT_CSS}"'))
        leftover = _class_tokens("".join(_split(new, katex_ranges(new))[1])) & set(plan.rename)
        if leftover:
            raise ExtensionError(f"{page}: KaTeX classes left with their long names: {sorted(leftover)}")
        before, after = before + len(text.encode()), after + len(new.encode())
        if new != text:
            page.write_text(new, encoding="utf-8")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(plan.state(), indent=0, sort_keys=True), encoding="utf-8")
    # the renamed sheet serves the pre-rendered pages only: it keeps the rules that can apply to them (see
    # purge_style_sheets; the search page keeps KaTeX's whole sheet for what its script writes)
    import tinycss2

    renamed = tinycss2.parse_stylesheet(rename_css_classes(original_css, plan.rename), skip_comments=True,
                                        skip_whitespace=True)
    (katex_dir / KATEX_COMPACT_CSS).write_text(purge_rules(renamed, site_vocabulary(outdir)), encoding="utf-8")
    return {"pages": len(pages), "already_compacted": len(compacted), "renamed": len(plan.rename),
            "kept": plan.kept, "style_classes": len(plan.style_class), "bytes_before": before, "bytes_after": after}


def compact_katex(app, exception):
    if exception is not None or app.builder.format != "html" or "sphinxcontrib.katex" not in app.extensions:
        return
    if not Path(app.outdir, "_static", "katex", "katex.min.css").is_file():
        return
    compact_katex_site(Path(app.outdir), Path(app.doctreedir) / "katex-compact.json")


def setup(app):
    app.connect("builder-inited", check_katex_version)
    app.connect("config-inited", add_widget_assets)
    app.add_css_file(SITE_CSS, priority=900)  # after the theme's and KaTeX's style sheets
    app.connect("html-page-context", on_page)
    app.connect("build-finished", copy_katex_assets)
    app.connect("build-finished", fix_pages)
    app.connect("build-finished", subset_icon_fonts, priority=600)  # after fix_pages and the theme's copies
    app.connect("build-finished", purge_style_sheets, priority=600)
    app.connect("build-finished", compact_katex, priority=700)  # after the purge, which reads the pages
    app.add_js_file(None, body=FOCUSABLE_WIDE_MATH_JS)
    app.connect("build-finished", write_root_redirect, priority=400)  # before sphinx-external-toc (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":  # python book/klcourse_site.py compact-katex SITE [STATE]: the KaTeX step on a built site
    if len(sys.argv) not in (3, 4) or sys.argv[1] != "compact-katex":
        sys.exit("usage: python book/klcourse_site.py compact-katex SITE_DIR [STATE_JSON]")
    print(compact_katex_site(Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else None))
