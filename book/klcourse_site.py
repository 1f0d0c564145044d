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
(``\\(D_{\\mathrm{KL}}(P\\,\\|\\,Q)\\)``). On the search page MathJax (the offline copy) is loaded too, and each
excerpt is typeset as it arrives, after dropping a formula that the excerpt's ends cut in half.

3. The site's root ``index.html`` (the book's first page is ``book/intro``) is written by sphinx-external-toc
as a bare ``<meta http-equiv="Refresh">`` line: without a ``<link rel="icon">`` the browser asks for
``/favicon.ico`` and gets a 404. It is written here first, as a small page with the favicon, a title and a
plain link for browsers that do not follow the refresh.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

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
  document.addEventListener("DOMContentLoaded", () => {
    const results = document.getElementById("search-results");
    if (!results || !window.MathJax) return;
    new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        for (const node of mutation.addedNodes) {
          if (node.nodeType !== Node.ELEMENT_NODE || !node.matches("p.context")) continue;
          dropCutFormulas(node);
          MathJax.startup.promise = MathJax.startup.promise.then(() => MathJax.typesetPromise([node]));
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
    """On the search page, load MathJax as the pages with formulas do, plus the script that typesets excerpts."""
    builder = app.builder
    if pagename != "search" or getattr(builder, "math_renderer_name", None) != "mathjax":
        return
    if app.config.mathjax3_config:
        builder.add_js_file("", body=f"window.MathJax = {json.dumps(app.config.mathjax3_config)}")
    builder.add_js_file(app.config.mathjax_path, defer="defer")
    builder.add_js_file("", body=SEARCH_EXCERPT_JS)


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


def on_page(app, pagename, templatename, context, doctree):
    typeset_search_excerpts(app, pagename, templatename, context, doctree)
    drop_repeated_scripts(app, pagename, templatename, context, doctree)


def setup(app):
    app.connect("html-page-context", on_page)
    app.connect("build-finished", write_root_redirect, priority=400)  # before sphinx-external-toc (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
