"""Weight of every page of the built website: its own HTML and images, and the theme's shared assets.

Run ``.venv/bin/python benchmarks/site_weights.py [SITE_DIR]`` after ``make book`` (SITE_DIR defaults to
``$KLCOURSE_SITE`` or ``_build/html``). It prints one row per page and asserts nothing;
``tests/site/test_browser.py`` measures what a browser really fetches on a first visit (this script only sees
the files named in the HTML, not the fonts that style sheets load).

Columns
-------
html        bytes of the page's HTML file
images      bytes of the images it shows from outside ``_static/`` (the figures in ``_images/``)
own         html + images: what a reader downloads for this page once the shared assets are cached
gzip        the same compressed with gzip, roughly what GitHub Pages sends over the wire
shared      the ``_static/`` scripts and style sheets the HTML names (cached after the first page)
"""

from __future__ import annotations

import gzip
import os
import sys
from functools import cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

REPO = Path(__file__).resolve().parent.parent


def default_site() -> Path:
    return Path(os.environ.get("KLCOURSE_SITE", REPO / "_build" / "html")).resolve()


def site_pages(site: Path) -> list[str]:
    """Every HTML page of the site (paths relative to ``site``), without the theme's ``_static`` templates."""
    return sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if "_static" not in p.parts)


class _Refs(HTMLParser):
    """Collect the resources an HTML page names: images, scripts and style sheets."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images, self.scripts, self.styles = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.images.append(a["src"])
        elif tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        elif tag == "link" and a.get("href") and "stylesheet" in (a.get("rel") or ""):
            self.styles.append(a["href"])


def local_file(site: Path, page: str, ref: str) -> Path | None:
    """The file in ``site`` that a reference on ``page`` points to, or None for other hosts and data: URLs."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc or not parts.path:
        return None
    return (site / page).parent.joinpath(unquote(parts.path)).resolve()


@cache
def gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


def page_weight(site: Path, page: str) -> dict:
    """Bytes of the page's HTML and of its own images (not ``_static``), plus the shared assets it names."""
    html = site / page
    refs = _Refs()
    refs.feed(html.read_text(encoding="utf-8"))
    static = (site / "_static").resolve()
    images = {f for ref in refs.images if (f := local_file(site, page, ref)) and f.is_file()}
    own_images = {f for f in images if static not in f.parents}
    shared = {f for ref in refs.scripts + refs.styles if (f := local_file(site, page, ref)) and f.is_file()}
    shared |= images - own_images
    own = [html, *own_images]
    return {
        "page": page,
        "html": html.stat().st_size,
        "images": sum(f.stat().st_size for f in own_images),
        "n_images": len(own_images),
        "own": sum(f.stat().st_size for f in own),
        "own_gzip": sum(gzip_size(f) for f in own),
        "shared": sum(f.stat().st_size for f in shared),
        "shared_gzip": sum(gzip_size(f) for f in shared),
    }


def format_table(rows: list[dict]) -> str:
    head = f"{'page':<28} {'html':>9} {'images':>9} {'n':>3} {'own':>9} {'own gz':>8} {'shared':>9} {'shared gz':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['page']:<28} {r['html']:>9,} {r['images']:>9,} {r['n_images']:>3} {r['own']:>9,} "
                     f"{r['own_gzip']:>8,} {r['shared']:>9,} {r['shared_gzip']:>9,}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    site = Path(argv[1]).resolve() if len(argv) > 1 else default_site()
    if not (site / "index.html").is_file():
        print(f"no built site at {site}: run `make book` first", file=sys.stderr)
        return 1
    rows = [page_weight(site, page) for page in site_pages(site)]
    print(f"Page weights of {site} (bytes)")
    print(format_table(rows))
    heaviest = max(rows, key=lambda r: r["own"])
    print(f"\nheaviest page: {heaviest['page']} ({heaviest['own'] / 1e6:.2f} MB own)")
    total_static = sum(f.stat().st_size for f in (site / "_static").rglob("*") if f.is_file())
    print(f"_static/ on disk: {total_static / 1e6:.1f} MB (all the theme and MathJax ship; most is never fetched)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
