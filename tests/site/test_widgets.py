"""The interactive figures (issue 16) in Debian's Chromium: each widget is driven through its inputs with
Playwright, and every number it shows is compared with ``klcourse``.

Widgets are ``<div class="kl-widget" data-kl-widget=NAME>`` blocks in the chapters, filled in by
``book/klwidgets.js``. A shown number is a ``<span data-kl-out=KEY>``: its text (4 significant digits, "∞" for an
infinite divergence) and its ``data-value`` (the double the script computed) are both checked:

- ``data-value`` against the library within a relative 1e-10 (absolute 1e-14 for the discrete sums, which the
  script adds without the library's correction for sums that are 1 only to an ulp): the same stable formulas;
  the estimators' statistics against ``estimator_study`` on the same seeded draws regenerated in numpy; the
  Gaussian fits of chapter 4 within 1e-8 (two quadratures) and the reverse fit within 1e-4 of
  ``fit_reverse_gaussian`` (the same Adam schedule, measured to agree to 1e-6);
- the text within half a unit of its 4th significant digit (relative 5.01e-4), exactly "0" for equal
  distributions and "∞" when Q puts 0 where P does not.

The tests run on the widgets whose chapter is in the ``_toc.yml`` of the book the site was built from (all of them
in ``make test``; one chapter when ``KLCOURSE_SITE`` points at a one-chapter build), and check that every widget of
the chapters' sources is listed here. The time of one update (input event, script, layout) is reported, not
asserted.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import statistics
import sys
from pathlib import Path

import numpy as np
import pytest
from test_browser import ROOT, TOC_PAGES, VIEWPORTS, Visit, load, page_url

from klcourse import entropy, f_divergence, js_divergence, kl_divergence, kl_normal
from klcourse.asymmetry import (
    EXAMPLE_MIXTURE,
    EXAMPLE_STARTS,
    fit_forward_gaussian,
    fit_reverse_gaussian,
    forward_kl_gaussian,
    reverse_kl_gaussian,
)
from klcourse.distillation import distillation_loss, high_temperature_limit, softmax_with_temperature
from klcourse.estimators import estimator_study

AXE = Path(sys.prefix) / "npm" / "node_modules" / "axe-core" / "axe.min.js"
WIDGET_PAGES = {"gaussians": "book/03_gaussians.html", "discrete": "book/01_definitions.html",
                "temperature": "book/08_distillation.html", "estimators": "book/09_estimation.html",
                "fits": "book/04_asymmetry.html"}
WIDGET_FILES = ("klwidgets.js", "klwidgets.css")
BUDGET = 150_000  # bytes of all widgets together (issue 16)
RTOL_VALUE, ATOL_DISCRETE, RTOL_TEXT = 1e-10, 1e-14, 5.01e-4
BUILT = [name for name, page in WIDGET_PAGES.items() if page in TOC_PAGES]
LN2 = math.log(2.0)
_TIMES: dict[str, list[float]] = {}


def parse_shown(text: str) -> float:
    """The number in a widget's text: "0.4431 nats" -> 0.4431, "∞" -> inf, "−1.2e-5" -> -1.2e-5."""
    number = text.split()[0].replace("−", "-")
    return math.inf if number == "∞" else -math.inf if number == "-∞" else float(number)


def assert_shown(shown: dict, key: str, expected: float, atol: float = 0.0):
    text, value = shown[key]
    if math.isinf(expected):
        assert text == "∞" and value == math.inf, (key, text, value, expected)
        return
    assert value == pytest.approx(expected, rel=RTOL_VALUE, abs=atol), (key, value, expected)
    assert parse_shown(text) == pytest.approx(expected, rel=RTOL_TEXT, abs=atol), (key, text, expected)
    if expected == 0:
        assert text.split()[0] == "0" and value == 0.0, (key, text, value)


@pytest.fixture(scope="module")
def tabs(chromium, site_url):
    """One loaded page per (widget, viewport), kept for the module; console errors collected for the last test."""
    opened = {}

    def get(name: str, viewport: str = "desktop"):
        if (name, viewport) not in opened:
            context = chromium.new_context(**VIEWPORTS[viewport])
            tab = context.new_page()
            visit = Visit(WIDGET_PAGES[name], viewport)
            load(tab, visit, page_url(site_url, WIDGET_PAGES[name]))
            root = tab.locator(f'div.kl-widget[data-kl-widget="{name}"]')
            root.wait_for(state="visible", timeout=10_000)
            opened[name, viewport] = (context, tab, root, visit)
        return opened[name, viewport][1:3]

    get.visits = lambda: [entry[3] for entry in opened.values()]
    yield get
    for context, *_ in opened.values():
        context.close()


def set_inputs(root, **values):
    for key, value in values.items():
        control = root.locator(f'[data-kl-in="{key}"]')
        kind = control.evaluate("e => e.tagName === 'SELECT' ? 'select' : e.type")
        if kind == "select":
            control.select_option(str(value))
        elif kind == "checkbox":
            control.set_checked(bool(value))
        else:
            control.fill(str(value))
            assert float(control.input_value()) == pytest.approx(float(value)), (key, value)


def read(root) -> dict:
    """{key: (shown text, data-value as float)} of every visible output of the widget."""
    rows = root.evaluate("""r => [...r.querySelectorAll('[data-kl-out]')].filter(e => e.offsetParent !== null)
        .map(e => [e.dataset.klOut, e.textContent, e.dataset.value])""")
    return {key: (text, float(value)) for key, text, value in rows}


def test_every_widget_in_the_sources_is_tested():
    """Each widget block in a chapter's source is one this file knows, on the page it is checked on."""
    found = {}
    for notebook in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(notebook.read_text(encoding="utf-8"))["cells"]:
            for name in re.findall(r'data-kl-widget="([a-z]+)"', "".join(cell["source"])):
                found[name] = f"book/{notebook.stem}.html"
    assert found == WIDGET_PAGES


def test_the_built_chapters_carry_their_widgets(site):
    assert BUILT, f"no chapter with a widget among the built pages {TOC_PAGES}"
    for name in BUILT:
        text = (site / WIDGET_PAGES[name]).read_text(encoding="utf-8")
        assert f'data-kl-widget="{name}"' in text and "_static/klwidgets.js" in text, name
        assert "_static/klwidgets.css" in text, name


def test_pages_without_widgets_do_not_load_the_script(site):
    for page in TOC_PAGES:
        if page not in WIDGET_PAGES.values():
            assert "klwidgets.js" not in (site / page).read_text(encoding="utf-8"), page


def test_widget_bytes(site, site_report):
    sizes = {name: (site / "_static" / name).stat().st_size for name in WIDGET_FILES}
    zipped = sum(len(gzip.compress((site / "_static" / name).read_bytes())) for name in WIDGET_FILES)
    total = sum(sizes.values())
    site_report.append(f"widgets: {', '.join(f'{n} {b:,} B' for n, b in sizes.items())}; total {total:,} B "
                       f"({zipped:,} B gzipped), budget {BUDGET:,} B")
    assert total <= BUDGET


# ---------------------------------------------------------------------------------------------- Gaussians

GAUSS_POSITIONS = [  # mu_p, sigma_p, mu_q, sigma_q
    (0, 1, 1.5, 0.8),  # the chapter's figure
    (0, 1, 0, 1),  # equal
    (-1.3, 2.45, -1.3, 2.45),  # equal again
    (0.3, 0.05, -0.2, 4),  # widths 80x apart
    (-4, 4, 4, 0.05),  # the extremes of every slider
    (1, 2, 1, 2.05),  # nearly equal
    (2, 0.5, -1, 1.5),
]


if "gaussians" in BUILT:  # defined only when its chapter is built (a one-chapter site has one)
    @pytest.mark.parametrize("unit", ["nats", "bits"])
    @pytest.mark.parametrize("position", GAUSS_POSITIONS)
    def test_gaussians_against_kl_normal(tabs, position, unit):
        _, root = tabs("gaussians")
        m0, s0, m1, s1 = position
        set_inputs(root, unit=unit, traps=True, mu_p=m0, sigma_p=s0, mu_q=m1, sigma_q=s1)
        shown = read(root)
        scale = 1 / LN2 if unit == "bits" else 1.0
        assert_shown(shown, "forward", kl_normal(m0, s0, m1, s1) * scale)
        assert_shown(shown, "reverse", kl_normal(m1, s1, m0, s0) * scale)
        assert_shown(shown, "trap_variance", kl_normal(m0, s0**2, m1, s1**2) * scale)
        log10_mistake = math.log10(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5
        assert shown["trap_log10"][1] == pytest.approx(log10_mistake, rel=1e-12, abs=1e-15)
        assert shown["forward"][1] >= 0 and shown["reverse"][1] >= 0
        assert (shown["forward"][0].split()[1:] or [unit]) == [unit]


    def test_gaussians_never_negative_and_the_log10_mistake_is(tabs):
        """A sweep of sigma_p against sigma_q = 1 and mu both 0: the KL is >= 0 and 0 only at sigma_p = 1; the
        log10 mistake of chapter 1 dips below 0 just left of 1, as the widget shows when the box is ticked."""
        _, root = tabs("gaussians")
        set_inputs(root, unit="nats", traps=True, mu_p=0, mu_q=0, sigma_q=1)
        negative_mistake = []
        for sigma in np.round(np.arange(0.05, 4.0001, 0.15), 2):
            set_inputs(root, sigma_p=sigma)
            shown = read(root)
            for key in ("forward", "reverse"):
                assert shown[key][1] >= 0 and not shown[key][0].startswith("−"), (sigma, shown[key])
                assert (shown[key][1] == 0) == (sigma == 1.0), (sigma, shown[key])
            if shown["trap_log10"][1] < 0:
                negative_mistake.append(sigma)
                assert shown["trap_log10"][0].startswith("−")
        assert negative_mistake and max(negative_mistake) < 1, negative_mistake


    def test_gaussians_traps_are_one_toggle_away(tabs):
        _, root = tabs("gaussians")
        set_inputs(root, traps=False)
        assert "trap_variance" not in read(root)
        set_inputs(root, traps=True)
        assert {"trap_variance", "trap_log10"} <= set(read(root))


# ---------------------------------------------------------------------------------------------- discrete

DISCRETE_POSITIONS = [  # weights of P, weights of Q (the widget divides each by its sum)
    ((50, 30, 20), (70, 30, 0)),  # the chapter's epsilon example: D(P||Q) = inf
    ((50, 30, 20), (50, 30, 20)),  # equal
    ((1, 1, 1), (2, 2, 2)),  # equal after normalising
    ((0, 50, 50), (30, 30, 40)),  # 0 log 0 = 0 forward; D(Q||P) = inf
    ((10, 60, 30), (33, 33, 34)),
    ((100, 1, 0), (1, 100, 1)),
    ((50, 30, 20), (50, 30, 21)),  # nearly equal
]


if "discrete" in BUILT:  # defined only when its chapter is built (a one-chapter site has one)
    @pytest.mark.parametrize("unit", ["nats", "bits"])
    @pytest.mark.parametrize("weights", DISCRETE_POSITIONS)
    def test_discrete_against_the_library(tabs, weights, unit):
        _, root = tabs("discrete")
        wp, wq = weights
        set_inputs(root, unit=unit, **{f"p{i}": w for i, w in enumerate(wp)}, **{f"q{i}": w for i, w in enumerate(wq)})
        p, q = np.array(wp, float) / sum(wp), np.array(wq, float) / sum(wq)
        base = 2 if unit == "bits" else None
        shown = read(root)
        assert_shown(shown, "forward", kl_divergence(p, q, base=base), ATOL_DISCRETE)
        assert_shown(shown, "reverse", kl_divergence(q, p, base=base), ATOL_DISCRETE)
        assert_shown(shown, "js", js_divergence(p, q, base=base), ATOL_DISCRETE)
        assert_shown(shown, "tv", f_divergence(p, q, "tv"), ATOL_DISCRETE)
        note = root.locator(".kl-w-note").text_content()
        assert ("D(P‖Q) = ∞" in note) == bool(np.any((q == 0) & (p > 0))), note
        assert ("D(Q‖P) = ∞" in note) == bool(np.any((p == 0) & (q > 0))), note


    def test_discrete_needs_some_weight(tabs):
        _, root = tabs("discrete")
        set_inputs(root, p0=50, p1=30, p2=20, q0=0, q1=0, q2=0)
        assert read(root) == {}
        assert "Give Q some weight" in root.locator(".kl-w-note").text_content()
        set_inputs(root, q0=70, q1=30)
        assert set(read(root)) == {"forward", "reverse", "js", "tv"}


# ---------------------------------------------------------------------------------------------- temperature

TEACHER, STUDENT = (6, 3.5, 1, 0, -1), (4, 4, 0.5, 0.5, 0)  # the data-teacher and data-student of chapter 8


def entropy_mp(logits, T) -> float:
    """Entropy of softmax(logits/T) with mpmath at 50 digits (an independent route)."""
    import mpmath

    with mpmath.workdps(50):
        weights = [mpmath.exp(mpmath.mpf(z) / mpmath.mpf(T)) for z in logits]
        total = mpmath.fsum(weights)
        return float(-mpmath.fsum(w / total * mpmath.log(w / total) for w in weights))

if "temperature" in BUILT:  # defined only when its chapter is built (a one-chapter site has one)

    @pytest.mark.parametrize("log10_t", [-1, -0.5, 0, 0.3, 0.77, 1, 1.5])
    def test_temperature_against_distillation(tabs, log10_t):
        """Soft targets (bar labels), their entropy, T^2 D(p_t || p_s) and its high-T limit, against
        softmax_with_temperature, entropy, distillation_loss (torch, float64) and high_temperature_limit."""
        import torch

        _, root = tabs("temperature")
        set_inputs(root, log10_t=log10_t)
        shown = read(root)
        T = shown["T"][1]
        assert T == pytest.approx(10.0**log10_t, rel=1e-12)
        p_t = softmax_with_temperature(np.array(TEACHER, float), T)
        assert_shown(shown, "entropy", entropy_mp(TEACHER, T))
        if shown["entropy"][1] > 1e-3:  # the library's entropy of p_t (a tiny entropy needs log space)
            assert shown["entropy"][1] == pytest.approx(entropy(p_t), rel=1e-12)
        loss = distillation_loss(torch.tensor([STUDENT], dtype=torch.float64),
                                 torch.tensor([TEACHER], dtype=torch.float64), T=T).item()
        assert_shown(shown, "t2_kl", loss, 1e-13)
        assert shown["t2_kl"][1] >= 0
        assert_shown(shown, "limit", high_temperature_limit(STUDENT, TEACHER))
        bars = root.evaluate("r => r.querySelector('svg').getAttribute('aria-label')")
        shown_teacher = [float(v) for v in bars.split("teacher ")[1].split(";")[0].split(", ")]
        np.testing.assert_allclose(shown_teacher, p_t, atol=0.005 + 1e-12)

    def test_temperature_equal_logits_give_zero(tabs):
        """Same logits for teacher and student: T^2 D is exactly 0 at every temperature (a second widget
        instance is not needed: the page's script builds any container, so one is made here)."""
        tab, _ = tabs("temperature")
        root = tab.evaluate_handle("""() => { const d = document.createElement('div');
            d.className = 'kl-widget'; d.dataset.klWidget = 'temperature'; d.dataset.teacher = '2,-1,0.5';
            d.dataset.student = '2,-1,0.5'; d.hidden = true; d.id = 'kl-test-equal';
            document.querySelector('div.kl-widget').after(d); return d; }""")
        assert root is not None
        tab.evaluate("() => window.klWidgets.start()")
        widget = tab.locator("#kl-test-equal")
        for value in ("-1", "0", "1.5"):
            widget.locator('[data-kl-in="log10_t"]').fill(value)
            shown = read(widget)
            assert shown["t2_kl"] == ("0", 0.0) or shown["t2_kl"][0].startswith("0 "), shown["t2_kl"]
            assert shown["t2_kl"][1] == 0.0 and shown["limit"][1] == 0.0
        tab.evaluate("() => document.getElementById('kl-test-equal').remove()")


# ---------------------------------------------------------------------------------------------- estimators

REPS, SEED = 400, 16  # the data-reps and data-seed of chapter 9's widget


def mulberry32_normals(seed: int, count: int) -> np.ndarray:
    """The widget's draws: mulberry32 (uint32 arithmetic, as Math.imul and >>> do) and Box-Muller's cosine."""
    with np.errstate(over="ignore"):
        a = (np.uint32(seed) + np.arange(1, 2 * count + 1, dtype=np.uint64).astype(np.uint32)
             * np.uint32(0x6D2B79F5)).astype(np.uint32)
        t = (a ^ (a >> np.uint32(15))) * (a | np.uint32(1))
        t = (t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61))) ^ t
        u = (t ^ (t >> np.uint32(14))).astype(np.float64) / 4294967296.0
    u1, u2 = u[0::2], u[1::2]
    return np.sqrt(-2 * np.log(1 - u1)) * np.cos(2 * np.pi * u2)


if "estimators" in BUILT:  # defined only when its chapter is built (a one-chapter site has one)

    @pytest.mark.parametrize(("delta", "log10_n"), [(0.5, 2), (0.1, 2), (2.0, 1), (1.0, 0), (0.05, 3), (3.0, 2.5)])
    def test_estimators_against_estimator_study(tabs, delta, log10_n):
        """The same seeded draws in numpy; mean, bias, std and the fraction of negative estimates of k1, k2, k3
        against klcourse.estimator_study, the exact value against kl_normal."""
        _, root = tabs("estimators")
        set_inputs(root, delta=delta, log10_n=log10_n)
        shown = read(root)
        n = shown["n"][1]
        assert n == round(10**log10_n)
        x = mulberry32_normals(SEED, REPS * int(n)).reshape(REPS, int(n))
        log_q = -0.5 * x**2 - 0.5 * math.log(2 * math.pi)
        log_p = -0.5 * (x - delta) ** 2 - 0.5 * math.log(2 * math.pi)
        exact = kl_normal(0.0, 1.0, delta, 1.0)
        assert_shown(shown, "exact", exact)
        summary = estimator_study(log_q, log_p, exact).summary()
        for name in ("k1", "k2", "k3"):
            for stat in ("mean", "bias", "std"):
                # the per-draw log-ratio: the widget's delta*x - delta^2/2 against log_p - log_q of the library
                assert_shown(shown, f"{name}_{stat}", summary[name][stat], 1e-12 * (1 + abs(exact)))
            assert shown[f"{name}_negative"][1] == summary[name]["negative"]
        assert shown["k2_negative"][1] == 0 and shown["k3_negative"][1] == 0  # k2, k3 >= 0 draw by draw

    def test_estimators_are_seeded(tabs):
        """Moving a slider and back gives the same estimates (the draws are seeded, not Math.random)."""
        _, root = tabs("estimators")
        set_inputs(root, delta=0.5, log10_n=2)
        first = read(root)
        set_inputs(root, delta=2)
        set_inputs(root, delta=0.5)
        assert read(root) == first


# ---------------------------------------------------------------------------------------------- fits

RTOL_QUADRATURE = 1e-8  # the widget's quadrature (401 points in z for D(Q||P), sd/10 in x for H(P)) vs the library's
ATOL_FIT = 1e-4  # the widget's Adam (analytic gradient) vs fit_reverse_gaussian's (autograd on another grid)

if "fits" in BUILT:  # defined only when its chapter is built (a one-chapter site has one)

    @pytest.mark.parametrize("start", list(EXAMPLE_STARTS))
    def test_fits_against_the_library(tabs, site_report, start):
        """Chapter 4's target and starts A-E: the forward fit is fit_forward_gaussian, the reverse fit ends where
        fit_reverse_gaussian ends (same Adam schedule), each shown divergence is forward_kl_gaussian or
        reverse_kl_gaussian at the shown (mu, sigma)."""
        _, root = tabs("fits")
        mu0, sigma0 = EXAMPLE_STARTS[start]
        set_inputs(root, separation=6, weight=0.4, start_mu=mu0, start_sigma=sigma0)
        shown = read(root)
        mix = EXAMPLE_MIXTURE
        fwd = fit_forward_gaussian(**mix)
        assert_shown(shown, "fwd_mu", fwd[0], 1e-15)
        assert_shown(shown, "fwd_sigma", fwd[1])
        (ref,) = fit_reverse_gaussian(starts=[(mu0, sigma0)], **mix)
        gap = max(abs(shown["rev_mu"][1] - ref.mu), abs(shown["rev_sigma"][1] - ref.sigma))
        site_report.append(f"widget fits, start {start}: reverse fit ({shown['rev_mu'][1]:.6f}, "
                           f"{shown['rev_sigma'][1]:.6f}) vs the library's ({ref.mu:.6f}, {ref.sigma:.6f})")
        assert gap < ATOL_FIT, (shown["rev_mu"], shown["rev_sigma"], ref.mu, ref.sigma)
        for key in ("fwd", "rev"):
            mu, sigma = shown[f"{key}_mu"][1], shown[f"{key}_sigma"][1]
            assert shown[f"{key}_forward"][1] == pytest.approx(forward_kl_gaussian(mu, sigma, **mix),
                                                                rel=RTOL_QUADRATURE)
            assert shown[f"{key}_reverse"][1] == pytest.approx(reverse_kl_gaussian(mu, sigma, **mix),
                                                                rel=RTOL_QUADRATURE)
            assert parse_shown(shown[f"{key}_reverse"][0]) == pytest.approx(shown[f"{key}_reverse"][1], rel=RTOL_TEXT)

    @pytest.mark.parametrize(("separation", "weight"), [(0, 0.5), (2, 0.3), (8, 0.95)])
    def test_fits_other_targets(tabs, separation, weight):
        """Other targets: the forward fit is the moment match, every shown divergence is the library's at the shown
        (mu, sigma) and >= 0, and no Gaussian has a smaller forward KL than the forward fit."""
        _, root = tabs("fits")
        set_inputs(root, separation=separation, weight=weight, start_mu=0.3, start_sigma=0.5)
        shown = read(root)
        mix = {"weights": (weight, 1 - weight), "means": (-separation / 2, separation / 2), "sds": (1.0, 0.8)}
        fwd = fit_forward_gaussian(**mix)
        assert shown["fwd_mu"][1] == pytest.approx(fwd[0], abs=1e-12)
        assert shown["fwd_sigma"][1] == pytest.approx(fwd[1], rel=1e-12)
        for key in ("fwd", "rev"):
            mu, sigma = shown[f"{key}_mu"][1], shown[f"{key}_sigma"][1]
            assert shown[f"{key}_forward"][1] == pytest.approx(forward_kl_gaussian(mu, sigma, **mix),
                                                                rel=RTOL_QUADRATURE, abs=1e-12)
            assert shown[f"{key}_reverse"][1] == pytest.approx(reverse_kl_gaussian(mu, sigma, **mix),
                                                                rel=RTOL_QUADRATURE, abs=1e-12)
            assert shown[f"{key}_forward"][1] >= 0 and shown[f"{key}_reverse"][1] >= 0
        assert shown["fwd_forward"][1] <= shown["rev_forward"][1]  # the global minimum of the forward KL


# ---------------------------------------------------------------------------------------------- all widgets

MOVES = {"gaussians": ("sigma_q", ["0.5", "1.2", "2.5", "0.1"]), "discrete": ("q2", ["0", "10", "40", "5"]),
         "temperature": ("log10_t", ["-0.5", "0", "0.7", "1.2"]), "estimators": ("delta", ["0.1", "0.5", "1", "2"]),
         "fits": ("start_mu", ["-5", "0.3", "2", "-0.5"])}


@pytest.mark.parametrize("name", BUILT)
def test_time_per_update(tabs, site_report, name):
    """Median time of one update, from the input event to a laid-out widget (reported, not a pass/fail)."""
    tab, root = tabs(name)
    key, values = MOVES[name]
    times = root.evaluate("""(r, [key, values]) => {
        const input = r.querySelector(`[data-kl-in="${key}"]`), times = [];
        for (let i = 0; i < 60; i++) {
          input.value = values[i % values.length];
          const t0 = performance.now();
          input.dispatchEvent(new Event("input", {bubbles: true}));
          const t1 = performance.now();
          document.body.offsetHeight;  // forces the layout the browser would do before the next frame
          times.push([t1 - t0, performance.now() - t0]);
        }
        return times; }""", [key, values])
    script = statistics.median(t[0] for t in times)
    total = statistics.median(t[1] for t in times)
    _TIMES[name] = times
    site_report.append(f"widget {name}: one update: script median {script:.2f} ms, with layout {total:.2f} ms "
                       f"(max {max(t[1] for t in times):.2f} ms) over {len(times)} updates (a frame is 16.7 ms)")
    assert all(0 <= t[0] <= t[1] for t in times)


@pytest.mark.parametrize("name", BUILT)
def test_keyboard_moves_a_slider(tabs, name):
    tab, root = tabs(name)
    key = MOVES[name][0]
    slider = root.locator(f'[data-kl-in="{key}"]')
    slider.fill(MOVES[name][1][1])
    before = read(root)
    slider.focus()
    tab.keyboard.press("ArrowRight")
    assert float(slider.input_value()) > float(MOVES[name][1][1])
    assert read(root) != before
    assert slider.get_attribute("aria-valuetext") == root.locator(f'[data-kl-in="{key}"] + .kl-w-val').text_content()


@pytest.mark.parametrize("name", BUILT)
def test_labels_and_live_region(tabs, name):
    tab, root = tabs(name)
    unlabelled = root.evaluate("""r => [...r.querySelectorAll('input, select')]
        .filter(i => !(i.labels && i.labels.length && i.labels[0].textContent.trim())).map(i => i.outerHTML)""")
    assert not unlabelled
    assert root.locator('[aria-live="polite"] [data-kl-out]').count() >= 2


@pytest.mark.parametrize("name", BUILT)
def test_phone_touch_and_legibility(tabs, name):
    """At 390 px: a tap moves a slider, nothing is wider than the screen, no text under 12 px."""
    tab, root = tabs(name, "phone")
    key = MOVES[name][0]
    slider = root.locator(f'[data-kl-in="{key}"]')
    slider.scroll_into_view_if_needed()
    before = slider.input_value()
    box = slider.bounding_box()
    tab.touchscreen.tap(box["x"] + box["width"] * 0.9, box["y"] + box["height"] / 2)
    assert slider.input_value() != before
    fit = root.evaluate("""r => ({
        right: Math.max(...[...r.querySelectorAll('*')].map(e => e.getBoundingClientRect().right)),
        width: document.documentElement.clientWidth, scroll: r.scrollWidth - r.clientWidth,
        small: [...r.querySelectorAll('*')].filter(e => [...e.childNodes].some(n => n.nodeType === 3 && n.data.trim()))
          .map(e => [e.tagName, e.textContent.slice(0, 30), parseFloat(getComputedStyle(e).fontSize)])
          .filter(([, , size]) => size < 12)})""")
    assert fit["right"] <= fit["width"] + 1 and fit["scroll"] <= 1, fit
    assert not fit["small"], fit["small"]


@pytest.mark.parametrize("mode", ["light", "dark"])
@pytest.mark.parametrize("viewport", list(VIEWPORTS))
@pytest.mark.parametrize("name", BUILT)
def test_axe_on_the_widget(tabs, name, viewport, mode):
    if not AXE.is_file():
        pytest.fail(f"axe-core is missing ({AXE}): `make venv` installs it from npm")
    tab, root = tabs(name, viewport)
    tab.evaluate(f"document.documentElement.dataset.theme = {mode!r}")
    if not tab.evaluate("typeof axe !== 'undefined'"):
        tab.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    violations = root.evaluate("""async r => {
      const tags = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"];
      const result = await axe.run(r, {runOnly: {type: "tag", values: tags}});
      return result.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length,
        example: v.nodes[0].target.join(" ") + ": " + (v.nodes[0].failureSummary || "")}));
    }""")
    tab.evaluate("document.documentElement.dataset.theme = 'light'")
    blocking = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not blocking, blocking


@pytest.mark.parametrize("name", BUILT)
def test_hidden_in_print_and_without_scripts(chromium, tabs, site_url, name):
    """Printed (make_pdf.py prints the site), the widget is hidden and the static figure stays; without scripts
    the widget never appears."""
    tab, root = tabs(name)
    tab.emulate_media(media="print")
    try:
        assert root.evaluate("r => getComputedStyle(r).display") == "none"
    finally:
        tab.emulate_media(media="screen")
    assert root.is_visible()
    context = chromium.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(page_url(site_url, WIDGET_PAGES[name]))
        widget = page.locator(f'div.kl-widget[data-kl-widget="{name}"]')
        assert widget.count() == 1 and not widget.is_visible()
        figure = page.locator("figure img").first  # the static figures are still there
        assert figure.count() == 1
    finally:
        context.close()


@pytest.mark.parametrize("name", BUILT)
def test_no_console_errors(tabs, name):
    """Runs last in this file: every console error or uncaught exception since the widget pages were opened."""
    tabs(name)
    errors = [error for visit in tabs.visits() if visit.page == WIDGET_PAGES[name] for error in visit.console_errors]
    failures = [f for visit in tabs.visits() if visit.page == WIDGET_PAGES[name] for f in visit.failures]
    assert not errors and not failures, (errors, failures)
