"""Fixtures for the website tests: the built site, a local web server for it, and Debian's Chromium.

The instructor site is read from ``$KLCOURSE_SITE`` (default ``<repo>/_build/html``), so the tests can run
against a snapshot built elsewhere. Nothing here downloads anything: the browser is ``/usr/bin/chromium``
(``make chromium`` installs it with apt), never one fetched by Playwright.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(os.environ.get("KLCOURSE_SITE", ROOT / "_build" / "html")).resolve()
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium phones home (and those requests fail on a closed network).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
REPORT = pytest.StashKey[list]()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the signature of the base class
        pass


@pytest.fixture(scope="session")
def site() -> Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built site at {SITE}: run `make book` first (or point KLCOURSE_SITE at a built _build/html)")
    return SITE


@pytest.fixture(scope="session")
def site_url(site):
    """Base URL of ``site`` served by a local http.server on 127.0.0.1 and a free port."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def chromium():
    """One headless Debian Chromium for the whole session (fails, never skips, when it is missing)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"Debian's Chromium is missing ({CHROMIUM}): run `make chromium` (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def site_report(request) -> list:
    """Lines the site tests want printed at the end of the run (the page-weight table)."""
    return request.config.stash.setdefault(REPORT, [])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    lines = config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("website weights")
        for line in lines:
            terminalreporter.write_line(line)
