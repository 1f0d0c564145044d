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
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import sys
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


def on_page(app, pagename, templatename, context, doctree):
    preload_math_fonts(app, pagename, templatename, context, doctree)
    typeset_search_excerpts(app, pagename, templatename, context, doctree)
    drop_repeated_scripts(app, pagename, templatename, context, doctree)


def setup(app):
    app.connect("builder-inited", check_katex_version)
    app.add_css_file(SITE_CSS, priority=900)  # after the theme's and KaTeX's style sheets
    app.connect("html-page-context", on_page)
    app.connect("build-finished", copy_katex_assets)
    app.connect("build-finished", fix_pages)
    app.add_js_file(None, body=FOCUSABLE_WIDE_MATH_JS)
    app.connect("build-finished", write_root_redirect, priority=400)  # before sphinx-external-toc (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
