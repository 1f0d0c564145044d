"""Print the built website as one PDF of the whole book (``make pdf``), offline, with Debian's Chromium.

Usage: ``python book/make_pdf.py SITE_DIR OUT.pdf`` where SITE_DIR is a built ``_build/html``.

The pages of ``_toc.yml`` are loaded from a local server in their order; the article of each is appended to the
first, so the book prints as one document with continuous page numbers. What a printed book does not need is
left out: the site's navigation and buttons, the folded "Show code cell source" bars (their code stays hidden,
as on the site; the outputs stay), and the exercise solutions (the PDF is the book without its solutions; they
are on the website, folded). Maths is already typeset (KaTeX at build time); a display equation wider than the
printed column is scaled down to fit, and long code lines wrap instead of being cut. Chromium is
``/usr/bin/chromium`` (``make chromium``); nothing is downloaded.
"""

from __future__ import annotations

import functools
import http.server
import re
import sys
import threading
from pathlib import Path

import yaml

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

PRINT_CSS = """
@page { size: A4; margin: 16mm 15mm 18mm 15mm; }
html { font-size: 13px; }
.bd-header, .bd-sidebar-primary, .bd-sidebar-secondary, .header-article, .bd-header-article,
.prev-next-area, .bd-footer, .bd-footer-article, .bd-footer-content, #pst-back-to-top, .headerlink,
button.copybtn, .toggle-button, .pst-async-banner-revealer, .search-button, .skip-link { display: none !important; }
body, article.bd-article { max-width: none !important; width: auto !important; padding: 0 !important;
  margin: 0 !important; }
.klcourse-pdf-chapter { break-before: page; }
pre, pre span { white-space: pre-wrap !important; overflow-wrap: anywhere; }
div.highlight pre { overflow: visible !important; }
div.math > .katex-display, div.cell_output .output { overflow: visible !important; }
figure, img, div.math, div.highlight, table { break-inside: avoid; }
h1, h2, h3 { break-after: avoid; }
a { color: inherit !important; text-decoration: none !important; }
.klcourse-pdf-title { text-align: center; margin-top: 35vh; }
.klcourse-pdf-title h1 { font-size: 2.4rem; }
"""

# Runs in the first page: append every other chapter's article, drop what print does not need, load images.
ASSEMBLE_JS = r"""async ([urls, title]) => {
  const main = document.querySelector("article.bd-article");
  const strip = (root) => {
    root.querySelectorAll(".solution.dropdown, .tag_solution, details.hide.above-input, .toggle-button,"
                          + " .headerlink").forEach((el) => el.remove());
    root.querySelectorAll("img").forEach((img) => { img.loading = "eager"; });
    root.querySelectorAll("a[href]").forEach((a) => {  // links between pages do not exist in one document
      const href = a.getAttribute("href");
      if (!href.startsWith("#") && !/^[a-z]+:/.test(href)) a.removeAttribute("href");
    });
  };
  const first = document.createElement("section");
  first.className = "klcourse-pdf-chapter";
  first.append(...main.childNodes);
  main.append(first);
  for (const url of urls) {
    const html = await (await fetch(url)).text();
    const doc = new DOMParser().parseFromString(html, "text/html");
    // the classes klcourse_site.py gives a page's repeated formula styles (same names on every page)
    doc.querySelectorAll("style[data-katex-styles]").forEach(
      (el) => document.head.prepend(document.importNode(el, true)));
    const article = doc.querySelector("article.bd-article");
    if (!article) throw new Error("no article in " + url);
    const section = document.createElement("section");
    section.className = "klcourse-pdf-chapter";
    section.append(...[...article.childNodes].map((n) => document.importNode(n, true)));
    main.append(section);
  }
  strip(main);
  document.querySelectorAll(".onlyprint").forEach((el) => el.remove());  // the theme's per-page printed TOC
  document.body.replaceChildren(main);  // the book alone: no theme containers, sidebars or offsets
  const cover = document.createElement("div");
  cover.className = "klcourse-pdf-title";
  cover.innerHTML = `<h1></h1><p>The whole book, without the exercise solutions.</p>`;
  cover.querySelector("h1").textContent = title;
  main.prepend(cover);
  await Promise.all([...document.images].map((img) => img.decode().catch(() => null)));
  await document.fonts.ready;
  return document.querySelectorAll(".klcourse-pdf-chapter").length;
}"""

FIT_EQUATIONS_JS = r"""() => {
  let scaled = 0;
  document.querySelectorAll("div.math > .katex-display").forEach((box) => {
    const ratio = box.clientWidth / box.scrollWidth;
    if (ratio < 1) { box.style.fontSize = (ratio * 0.98).toFixed(3) + "em"; scaled += 1; }
  });
  return scaled;
}"""


def toc_docnames(book_root: Path) -> list[str]:
    """Every document named in ``book_root/_toc.yml``, the root first, without suffix (the site tests use this)."""
    toc = yaml.safe_load((book_root / "_toc.yml").read_text(encoding="utf-8"))
    names = [toc["root"]]

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [re.sub(r"\.(md|ipynb)$", "", name) for name in names]


def toc_pages(book_root: Path) -> list[str]:
    return [name + ".html" for name in toc_docnames(book_root)]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


def make_pdf(site: Path, out: Path, book_root: Path | None = None, title: str | None = None) -> dict:
    """Print ``site`` (a built ``_build/html``) to ``out``; return counts for the log."""
    from playwright.sync_api import sync_playwright

    book_root = book_root or site.parents[1]
    pages = [p for p in toc_pages(book_root) if (site / p).is_file()]
    if not pages:
        raise SystemExit(f"no pages of {book_root / '_toc.yml'} in {site}")
    title = title or yaml.safe_load((book_root / "_config.yml").read_text(encoding="utf-8")).get("title", "")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_port}/"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 680, "height": 960})  # A4 less the margins, in CSS px
            tab.set_default_timeout(60_000)
            tab.goto(base + pages[0], wait_until="load")
            tab.add_style_tag(content=f"@media print {{ {PRINT_CSS} }}")
            tab.emulate_media(media="print")
            chapters = tab.evaluate(ASSEMBLE_JS, [[base + p for p in pages[1:]], title])
            scaled = tab.evaluate(FIT_EQUATIONS_JS)
            out.parent.mkdir(parents=True, exist_ok=True)
            partial = out.with_suffix(".pdf.part")
            tab.pdf(path=str(partial), format="A4", print_background=True, display_header_footer=True,
                    header_template="<span></span>",
                    footer_template='<div style="font-size:9px;width:100%;text-align:center;">'
                                    '<span class="pageNumber"></span></div>',
                    margin={"top": "16mm", "bottom": "18mm", "left": "15mm", "right": "15mm"})
            partial.replace(out)
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return {"pages": len(pages), "chapters": chapters, "equations_scaled": scaled, "bytes": out.stat().st_size}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    site, out = Path(argv[0]).resolve(), Path(argv[1]).resolve()
    info = make_pdf(site, out)
    print(f"Wrote {out}: {info['bytes']:,} bytes, {info['chapters']} pages of _toc.yml, "
          f"{info['equations_scaled']} wide equations scaled to the printed column")
    return 0


if __name__ == "__main__":
    sys.exit(main())
