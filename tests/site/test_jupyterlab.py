"""Two chapters opened in JupyterLab as a learner opens them (`make lab`), in Debian's Chromium.

JupyterLab runs from this environment on 127.0.0.1 with a random token, on copies of the chapters in a temporary
folder (JupyterLab autosaves: nothing is written into book/), with its news feed, update check and PyPI extension
manager off, and is stopped at the end. Each chapter is run whole (Run > Run All Cells); then the rendered page
must show the MyST that jupyterlab-myst draws: a box (or a start marker) per exercise and per solution, a box per
theorem, proof and admonition, and none of the raw markup (`{exercise-start}`, `{prf:…}`, `{cite}`, `{eq}`,
`{glue…}`, `{eval}`, ```` ```{ ````, "Unknown Directive"). The prose numbers are inline expressions,
{eval}`num("key", ".3f")` (klcourse.prose), which jupyterlab-myst evaluates in the kernel when a Markdown cell runs:
each Markdown cell must show, for each of its expressions, the text the kernel gives for it at the end (asked again
through the kernel's user_expressions), and no expression may show an error. Each figure is its code cell's own
output (an image in that cell's output area).
No request leaves 127.0.0.1. Screenshots go to ``$KLCOURSE_LAB_SHOTS`` (default ``_build/jupyterlab/``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
CHAPTERS = ["01_definitions.ipynb", "03_gaussians.ipynb"]
SHOTS = Path(os.environ.get("KLCOURSE_LAB_SHOTS", ROOT / "_build" / "jupyterlab"))
RAW = ["{exercise-start}", "{exercise-end}", "{solution-start}", "{solution-end}", "{prf:", "{cite}", "{cite:",
       "{eq}", "{glue", "{eval}", "{numref}", "```{", ":::{", "Unknown Directive"]
# JupyterLab's own calls home, all off as `make lab` has them: the news feed, the update check, the PyPI listing
OFFLINE = re.search(r"^LAB_OFFLINE := (.*?[^\\])$", (ROOT / "Makefile").read_text().replace("\\\n\t", " "),
                    re.M | re.S)[1].split()
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},  # render every cell, not only visible ones
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}
START_TIMEOUT, RUN_TIMEOUT = 90, 300  # seconds (JupyterLab start; one chapter on a loaded 2-core machine)
SHOW_TIMEOUT = 60  # seconds for the last Markdown cells to show their numbers once the code has run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _counts(nb_path: Path) -> dict:
    nb = json.loads(nb_path.read_text(encoding="utf-8"))
    md = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return {
        "exercise": len(re.findall(r"\{exercise-start\}", md)),
        "solution": len(re.findall(r"\{solution-start\}", md)),
        "proof": len(re.findall(r"[`:]{3,}\{prf:\w+\}", md)),
        "admonition": len(re.findall(r"[`:]{3,}\{(?:admonition|note|tip|warning|important|seealso)\}", md)),
        # (cell index, expression) of every number in the prose; the figures' cell indices
        "expressions": [(i, e) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown"
                        for e in re.findall(r"\{eval\}`([^`]+)`", "".join(c["source"]))],
        "figures": [i for i, c in enumerate(nb["cells"]) if "figure" in c["metadata"].get("mystnb", {})],
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lab")
    work = tmp / "notebooks"
    work.mkdir()
    for name in [*CHAPTERS, "references.bib"]:
        shutil.copy2(ROOT / "book" / name, work / name)
    for plugin, values in SETTINGS.items():
        path = tmp / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(HOME=str(tmp / "home"), JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"), KLCOURSE_PROGRESS="off",
               JUPYTER_RUNTIME_DIR=str(tmp / "runtime"), OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    argv = [str(BIN / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--ServerApp.port_retries=0",
            "--LabApp.expose_app_in_browser=True", *OFFLINE]
    if os.getuid() == 0:
        argv.append("--allow-root")
    log = open(tmp / "lab.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(argv, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start: {(tmp / 'lab.log').read_text()[-3000:]}")
                time.sleep(0.5)
        yield {"url": url, "token": token, "work": work, "log": tmp / "lab.log"}
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own process group: the server and its kernels
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        log.close()


WAIT_KERNEL = """chapter => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    if (!w || !w.context || w.context.path !== chapter) return false;
    const kernel = w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
    if (!kernel || kernel.status !== 'idle') return false;
    window.klcoursePanel = w; w.node.setAttribute('data-klcourse-chapter', chapter); return true; }"""
WAIT_DONE = """() => { const w = window.klcoursePanel;
    const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
    if (!kernel || kernel.status !== 'idle') return false;
    return w.content.widgets.every(c => c.model.type !== 'code' ||
        (c.model.executionCount !== null && !c.node.querySelector('.jp-InputPrompt').textContent.includes('*'))); }"""
KERNEL_TEXTS = """async expressions => { const w = window.klcoursePanel;
    const kernel = w.sessionContext.session.kernel; const asked = {};
    expressions.forEach((e, i) => { asked[String(i)] = e; });
    const reply = await kernel.requestExecute({code: '', silent: true, store_history: false,
                                               user_expressions: asked}).done;
    return expressions.map((e, i) => { const r = reply.content.user_expressions[String(i)];
        return r.status === 'ok' ? r.data['text/plain'] : 'ERROR ' + r.ename; }); }"""
CELL_VIEW = """() => window.klcoursePanel.content.widgets.map(c => ({
    text: c.node.innerText,
    errors: c.model.type === 'markdown' ? c.node.querySelectorAll('[data-mime-type*="stderr"]').length : 0,
    images: c.model.type === 'code' ? c.node.querySelectorAll('.jp-OutputArea-output img').length : 0 }))"""
WAIT_SHOWN = """shown => shown.every(([i, text]) =>
    window.klcoursePanel.content.widgets[i].node.innerText.includes(text))"""
OUTPUT_ERRORS = """() => { const w = window.klcoursePanel; const errors = [];
    w.content.widgets.forEach((c, i) => { if (c.model.type === 'code') {
        c.model.outputs.toJSON().forEach(o => { if (o.output_type === 'error') errors.push([i, o.ename, o.evalue]); });
    } }); return errors; }"""


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_chapter_reads_properly_in_jupyterlab(lab, chromium, chapter):
    expected = _counts(ROOT / "book" / chapter)
    assert expected["exercise"] >= 5 and expected["proof"] >= 1
    assert len(expected["expressions"]) >= 50 and len(expected["figures"]) >= 5
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    outside, console_errors = [], []
    page.on("request", lambda r: None if r.url.startswith(lab["url"]) or r.url.startswith(("data:", "blob:"))
            else outside.append(r.url))
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        page.goto(f"{lab['url']}/lab/tree/{chapter}?token={lab['token']}")
        page.wait_for_function(WAIT_KERNEL, arg=chapter, timeout=START_TIMEOUT * 1000)
        nb = f'[data-klcourse-chapter="{chapter}"] .jp-Notebook'  # this chapter's tab, not one left open
        started = time.monotonic()
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function(WAIT_DONE, timeout=RUN_TIMEOUT * 1000, polling=500)
        seconds = time.monotonic() - started
        errors = page.evaluate(OUTPUT_ERRORS)
        kernel_texts = page.evaluate(KERNEL_TEXTS, [e for _, e in expected["expressions"]])
        # Markdown cells after the last code cell ask the kernel for their expressions once it is idle again:
        # wait (bounded) until every cell shows its numbers; what is still missing then fails below
        shown = [[i, t] for (i, _), t in zip(expected["expressions"], kernel_texts, strict=True)]
        code_done = time.monotonic()
        try:
            page.wait_for_function(WAIT_SHOWN, arg=shown, timeout=SHOW_TIMEOUT * 1000, polling=250)
        except PlaywrightTimeout:
            pass
        settle = time.monotonic() - code_done
        cells = page.evaluate(CELL_VIEW)
        notebook = page.locator(nb)
        text = notebook.inner_text()
        boxes = {
            "exercise": page.locator(f"{nb} .myst-exercise").count(),
            "proof": page.locator(f"{nb} .myst-proof").count(),
            "admonition": page.locator(f"{nb} aside.admonition, {nb} .myst-admonition").count(),
        }
        titles = page.locator(f"{nb} .myst-exercise-title").all_inner_texts()
        SHOTS.mkdir(parents=True, exist_ok=True)
        stem = chapter.removesuffix(".ipynb")
        page.locator(f"{nb} .jp-MarkdownCell").nth(0).scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"{stem}-top.png"))
        page.locator(f"{nb} .myst-exercise", has_text="Exercise").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"{stem}-exercise.png"))
        page.locator(f"{nb} .myst-proof").first.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / f"{stem}-theorem.png"))
        # the end of the first figure (its cell's output) and the prose numbers below it
        page.evaluate("i => window.klcoursePanel.content.widgets[i].node.scrollIntoView({block: 'center'})",
                      expected["figures"][0] + 1)
        page.wait_for_timeout(500)
        page.screenshot(path=str(SHOTS / f"{stem}-figure.png"))
    finally:
        context.close()

    print(f"\n{chapter}: ran all cells in {seconds:.0f} s (prose numbers shown {settle:.1f} s later); "
          f"boxes {boxes}; {len(expected['expressions'])} prose "
          f"numbers, {len(expected['figures'])} figures")
    assert not errors, f"cells raised in JupyterLab: {errors[:3]}"
    # the prose numbers: each Markdown cell shows the kernel's text for each of its expressions, and no error
    assert not [t for t in kernel_texts if t.startswith("ERROR")], kernel_texts
    numbers = [t for t in kernel_texts if re.fullmatch(r"[-+]?[0-9][0-9,]*(\.[0-9]+)?(e[-+][0-9]+)?%?", t)]
    assert len(numbers) >= 0.9 * len(kernel_texts), kernel_texts  # numbers, not keys or reprs
    missing = [(i, e, t) for (i, e), t in zip(expected["expressions"], kernel_texts, strict=True)
               if t not in cells[i]["text"]]
    assert not missing, f"{len(missing)} prose numbers not shown, e.g. {missing[:3]}"
    assert not [i for i, c in enumerate(cells) if c["errors"]], "an inline expression shows an error"
    assert len(cells) == len(json.loads((ROOT / "book" / chapter).read_text(encoding="utf-8"))["cells"])
    assert [i for i in expected["figures"] if cells[i]["images"] != 1] == [], "a figure is not its cell's one image"
    # an exercise inside one cell is a box titled "Exercise N"; one spread over several cells (code in between)
    # is opened by a "Start of Exercise N" box; a solution by "Start of Solution to Exercise N"
    exercises = [t for t in titles if re.match(r"(Start of )?Exercise\s*\d", t.strip())]
    solutions = [t for t in titles if re.match(r"(Start of )?Solution to Exercise\s*\d", t.strip())]
    assert len(exercises) == expected["exercise"], titles
    assert len(solutions) == expected["solution"], titles
    assert boxes["proof"] == expected["proof"]
    assert boxes["admonition"] == expected["admonition"]
    raw = {s: text.count(s) for s in RAW if s in text}
    assert not raw, f"raw MyST markup shown in JupyterLab: {raw}"
    assert not outside, f"requests left 127.0.0.1: {outside[:5]}"
    for name in ("top", "exercise", "theorem", "figure"):
        assert (SHOTS / f"{stem}-{name}.png").stat().st_size > 10_000
