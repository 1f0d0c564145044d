"""Exercises of chapter 1 (definitions): right answers computed by independent routes are accepted,
each targeted misconception is recognised by name, and the notebook states the registered data."""

import json
import math
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.special import rel_entr

from klcourse import kl_divergence
from klcourse.exercises import definitions as ex
from klcourse.exercises import evaluate, list_exercises
from klcourse.exercises.core import CORRECT, INVALID, KINDS, NOT_ANSWERED

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "01_definitions.ipynb"
IDS = {"definitions.kl-in-bits", "definitions.implement-kl", "definitions.predict-symmetry",
       "definitions.predict-zero", "definitions.triangle", "definitions.gibbs-figure", "definitions.excess-bits",
       "definitions.mixture-hedge", "definitions.atom", "definitions.stein-exponent", "definitions.sanov-exponent"}


def scipy_kl(p, q, base=None):
    """D(p || q) through scipy.stats.entropy (an independent implementation)."""
    return stats.entropy(np.asarray(p, float), np.asarray(q, float), base=base)


def assert_misconception(exercise_id, answer, name):
    feedback = evaluate(exercise_id, answer)
    assert not feedback.passed
    assert feedback.misconception == name, feedback.message


# --------------------------------------------------------------------------- registry
def test_all_exercises_registered_with_known_kinds():
    registered = {e.id: e for e in list_exercises("definitions")}
    assert set(registered) == IDS
    assert all(e.kind in KINDS for e in registered.values())
    assert len({e.kind for e in registered.values()}) >= 4  # mixed kinds


@pytest.mark.parametrize("exercise_id", sorted(IDS))
def test_unanswered_and_none_are_not_answered(exercise_id):
    for placeholder in (..., None):
        feedback = evaluate(exercise_id, placeholder)
        assert feedback.status == NOT_ANSWERED and not feedback.passed


# --------------------------------------------------------------------------- kl-in-bits
def test_kl_in_bits_accepts_hand_formula():
    hand = sum(pi * math.log2(pi / qi) for pi, qi in zip(ex.WEATHER_P, ex.WEATHER_Q, strict=True))
    assert evaluate("definitions.kl-in-bits", hand).status == CORRECT
    assert evaluate("definitions.kl-in-bits", scipy_kl(ex.WEATHER_P, ex.WEATHER_Q, base=2)).passed


@pytest.mark.parametrize("route, name", [
    (lambda: scipy_kl(ex.WEATHER_P, ex.WEATHER_Q), "nats"),
    (lambda: scipy_kl(ex.WEATHER_P, ex.WEATHER_Q, base=10), "log10"),
    (lambda: scipy_kl(ex.WEATHER_Q, ex.WEATHER_P, base=2), "swapped"),
])
def test_kl_in_bits_names_misconceptions(route, name):
    assert_misconception("definitions.kl-in-bits", route(), name)


def test_kl_in_bits_rejects_other_numbers_without_revealing():
    right = scipy_kl(ex.WEATHER_P, ex.WEATHER_Q, base=2)
    feedback = evaluate("definitions.kl-in-bits", 1.3 * right)
    assert not feedback.passed and feedback.misconception is None
    assert f"{right:.3f}" not in feedback.message
    assert evaluate("definitions.kl-in-bits", "1.2").status == INVALID


# --------------------------------------------------------------------------- implement-kl
def kl_rel_entr(p, q):
    return float(np.sum(rel_entr(p, q)))  # rel_entr: 0 for p = 0, inf for p > 0 = q


def kl_naive(p, q):
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum(p * np.log(p / q)))  # NaN from 0 * log 0


def kl_clipped(p, q):
    q = np.where(q > 0, q, 1e-10)
    return kl_rel_entr(p, q)


def test_implement_kl_accepts_a_correct_function():
    assert evaluate("definitions.implement-kl", kl_rel_entr).status == CORRECT


def test_implement_kl_rejects_klcourse_own_function():
    feedback = evaluate("definitions.implement-kl", kl_divergence)
    assert not feedback.passed and feedback.misconception == "klcourse-own" and "write your own" in feedback.message


@pytest.mark.parametrize("fn, name", [
    (lambda p, q: kl_rel_entr(q, p), "swapped"),
    (lambda p, q: kl_rel_entr(p, q) / math.log(2), "bits"),
    (lambda p, q: kl_rel_entr(p, q) / math.log(10), "log10"),
    (kl_naive, "zero-p-nan"),
    (kl_clipped, "clipped-q"),
])
def test_implement_kl_names_buggy_implementations(fn, name):
    assert_misconception("definitions.implement-kl", fn, name)


def test_implement_kl_rejects_non_functions_and_crashes():
    assert evaluate("definitions.implement-kl", 0.5).status == INVALID

    def crashes(p, q):
        raise RuntimeError("boom")

    feedback = evaluate("definitions.implement-kl", crashes)
    assert not feedback.passed and "RuntimeError" in feedback.message


def test_implement_kl_cases_cover_the_edge_cases():
    cases = ex._kl_cases(np.random.default_rng(0))
    text = " ".join(c.description for c in cases)
    for word in ("random", "identical", "zero", "q = 0", "10,000"):
        assert word in text
    for case in cases:
        p, q = case.args
        assert np.isclose(p.sum(), 1) and np.isclose(q.sum(), 1) and p.shape == q.shape
    mismatch = [c for c in cases if "infinite" in c.description][0]
    assert np.isinf(kl_rel_entr(*mismatch.args))


# --------------------------------------------------------------------------- predict-symmetry / predict-zero
def test_predict_symmetry():
    forward, reverse = scipy_kl(ex.SYMMETRY_P, ex.SYMMETRY_Q), scipy_kl(ex.SYMMETRY_Q, ex.SYMMETRY_P)
    truth = "equal" if math.isclose(forward, reverse, rel_tol=1e-12) else (
        "forward larger" if forward > reverse else "reverse larger")
    assert evaluate("definitions.predict-symmetry", truth.upper()).passed  # case-insensitive
    for wrong in {"equal", "forward larger", "reverse larger"} - {truth}:
        assert_misconception("definitions.predict-symmetry", wrong, wrong)
    assert evaluate("definitions.predict-symmetry", "maybe").status == INVALID


def test_predict_zero():
    forward_inf = np.isinf(np.sum(rel_entr(ex.ZERO_P, ex.ZERO_Q)))
    reverse_inf = np.isinf(np.sum(rel_entr(ex.ZERO_Q, ex.ZERO_P)))
    truth = {(True, True): "both", (True, False): "forward", (False, True): "reverse"}.get(
        (bool(forward_inf), bool(reverse_inf)), "neither")
    assert evaluate("definitions.predict-zero", truth).passed
    for wrong in {"forward", "reverse", "both", "neither"} - {truth}:
        assert_misconception("definitions.predict-zero", wrong, wrong)


# --------------------------------------------------------------------------- triangle
def test_triangle_accepts_midpoints_of_random_pairs():
    # Convexity of KL in each argument gives D(P||M) + D(M||R) <= D(P||R)/2 + D(P||R)/2 for M = (P+R)/2,
    # strictly when P != R: the midpoint is always a counterexample.
    rng = np.random.default_rng(1)
    for _ in range(50):
        p, r = rng.dirichlet(np.ones(4), size=2)
        m = (p + r) / 2
        assert scipy_kl(p, r) > scipy_kl(p, m) + scipy_kl(m, r)
        assert evaluate("definitions.triangle", (p, m, r)).passed


def test_triangle_rejects_triples_satisfying_the_inequality():
    p = np.array([0.5, 0.3, 0.2])
    r = np.array([0.2, 0.3, 0.5])
    assert not evaluate("definitions.triangle", (p, p, p)).passed
    assert scipy_kl(p, r) <= scipy_kl(p, p) + scipy_kl(p, r)  # Q = P: equality, not a violation
    feedback = evaluate("definitions.triangle", (p, p, r))
    assert not feedback.passed and feedback.status != INVALID


@pytest.mark.parametrize("answer", [
    ([0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]),  # a zero entry
    ([0.5, 0.5], [0.4, 0.6], [0.1, 0.9]),  # only two outcomes
    ([0.5, 0.3, 0.3], [0.2, 0.3, 0.5], [0.1, 0.1, 0.8]),  # p does not sum to 1
    ([0.5, 0.3, 0.2], [0.2, 0.3, 0.5]),  # two distributions
    ([0.5, 0.3, 0.2], [0.2, 0.3, 0.4, 0.1], [0.1, 0.1, 0.8]),  # different lengths
    "p, q, r",
    0.5,
])
def test_triangle_invalid_answers_get_a_sentence(answer):
    feedback = evaluate("definitions.triangle", answer)
    assert feedback.status == INVALID and not feedback.passed
    assert "Traceback" not in feedback.message


# --------------------------------------------------------------------------- gibbs-figure
def test_gibbs_gap_sum_is_forward_kl():
    # the identity behind the answer, by an independent route, for pairs with full support
    rng = np.random.default_rng(2)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(6), size=2)
        x = q / p
        assert np.isclose(np.sum(p * ((x - 1) - np.log(x))), scipy_kl(p, q), rtol=1e-10)
    assert evaluate("definitions.gibbs-figure", "forward").passed
    for wrong in ("reverse", "cross-entropy", "entropy"):
        assert_misconception("definitions.gibbs-figure", wrong, wrong)


# --------------------------------------------------------------------------- excess-bits
def exact_excess_bits():
    """Exact rational arithmetic: expected length of the used code minus that of the best (Huffman) code."""
    p = [Fraction(1, 2), Fraction(1, 4), Fraction(1, 8), Fraction(1, 8)]
    used = sum(pi * len(c) for pi, c in zip(p, ex.CODEWORDS, strict=True))
    best = sum(pi * n for pi, n in zip(p, (1, 2, 3, 3), strict=True))  # -log2 p, whole bits for dyadic P
    return used, best


def test_stated_code_is_a_complete_prefix_code():
    words = ex.CODEWORDS
    assert not any(a != b and b.startswith(a) for a in words for b in words)
    assert sum(Fraction(1, 2 ** len(w)) for w in words) == 1
    assert np.allclose(ex.code_distribution(), [1 / 8, 1 / 2, 1 / 4, 1 / 8])
    assert np.allclose(ex.SOURCE_P, [1 / 2, 1 / 4, 1 / 8, 1 / 8])


def test_excess_bits_accepts_exact_answer():
    used, best = exact_excess_bits()
    assert evaluate("definitions.excess-bits", float(ex.N_LETTERS * (used - best))).status == CORRECT


def test_excess_bits_names_misconceptions():
    used, best = exact_excess_bits()
    n = ex.N_LETTERS
    assert_misconception("definitions.excess-bits", float(used - best), "per-symbol")
    assert_misconception("definitions.excess-bits", float(n * used), "total-length")
    assert_misconception("definitions.excess-bits", float(n * (used - best)) * math.log(2), "nats")
    reverse = n * scipy_kl(ex.code_distribution(), ex.SOURCE_P, base=2)
    assert_misconception("definitions.excess-bits", reverse, "swapped")


# --------------------------------------------------------------------------- the notebook
def notebook_cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_every_exercise_has_statement_solution_and_check():
    cells = notebook_cells()
    checks = {}
    for i, cell in enumerate(cells):
        match = re.fullmatch(r'check\("([\w.-]+)", answer\)', source(cell).strip())
        if cell["cell_type"] == "code" and match:
            checks[match.group(1)] = i
    assert set(checks) == IDS
    for exercise_id, i in checks.items():
        assert source(cells[i - 1]).strip().startswith("```{solution-end}")
        solution = cells[i - 2]
        assert "solution" in solution["metadata"].get("tags", [])
        assert re.search(r"^answer = ", source(solution), flags=re.M)
        label = exercise_id.replace(".", "-")
        assert f"```{{solution-start}} {label}" in source(cells[i - 3])
        assert f":label: {label}" in source(cells[i - 4])


def _statement(label):
    return next(source(c) for c in notebook_cells() if f":label: {label}" in source(c))


def _stated(values):
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def test_statements_state_the_registered_data():
    bits = _statement("definitions-kl-in-bits")
    assert f"Q = {_stated(ex.WEATHER_Q)}" in bits and f"P = {_stated(ex.WEATHER_P)}" in bits
    symmetry = _statement("definitions-predict-symmetry")
    assert f"P = {_stated(ex.SYMMETRY_P)}" in symmetry and f"Q = {_stated(ex.SYMMETRY_Q)}" in symmetry
    zero = _statement("definitions-predict-zero")
    assert f"P = {_stated(ex.ZERO_P)}" in zero and f"Q = {_stated(ex.ZERO_Q)}" in zero
    excess = _statement("definitions-excess-bits")
    assert "P = (1/2, 1/4, 1/8, 1/8)" in excess and f"{ex.N_LETTERS:,}" in excess
    for letter, word in zip("ABCD", ex.CODEWORDS, strict=True):
        assert f"{letter} = `{word}`" in excess
    hedge = _statement("definitions-mixture-hedge")
    for name, values in (("P", ex.HEDGE_P), ("Q_1", ex.HEDGE_Q1), ("Q_2", ex.HEDGE_Q2)):
        assert f"{name} = {_stated(values)}" in hedge
    atom = _statement("definitions-atom")
    assert f"P = {ex.ATOM_WEIGHT:g}\\,\\delta_0 + {1 - ex.ATOM_WEIGHT:g}\\,\\mathcal N(0, 1)" in atom
    stein = _statement("definitions-stein-exponent")
    assert f"P = \\mathrm{{Bern}}({ex.STEIN_P:g})" in stein and f"Q = \\mathrm{{Bern}}({ex.STEIN_Q:g})" in stein
    sanov = _statement("definitions-sanov-exponent")
    assert f"probability {ex.SANOV_P:g} of heads" in sanov and f"at least {ex.SANOV_T:g}" in sanov


# --------------------------------------------------------------------------- feedback fairness (issue 9)
def test_excess_bits_negative_answer_does_not_reveal_that_it_is_a_kl():
    message = evaluate("definitions.excess-bits", -250_000.0).message
    for word in ("KL", "divergence", "Gibbs"):
        assert word not in message, message
    assert "longer" in message


def test_kl_in_bits_negative_answer_gets_the_gibbs_hint_its_statement_allows():
    assert "never negative" in evaluate("definitions.kl-in-bits", -0.5).message


def test_implement_kl_returning_a_list_of_one_is_a_shape_sentence():
    fb = evaluate("definitions.implement-kl", lambda p, q: [kl_rel_entr(p, q)])
    assert fb.status == INVALID
    assert "returns shape (1,); a single number (shape ()) is expected on random vectors of length 2" in fb.message


@pytest.mark.parametrize("exercise_id, answer", [
    ("definitions.triangle", ([0.5, 0.6, 0.2], [0.3, 0.3, 0.4], [0.2, 0.3, 0.5])),
    ("asymmetry.infinite-one-way", ([0.5, 0.6], [0.5, 0.5])),
    ("relatives.reverse-pinsker", ([0.5, 0.6], [0.5, 0.5])),
])
def test_unnormalised_vectors_get_advice_the_reader_can_use(exercise_id, answer):
    fb = evaluate(exercise_id, answer)
    assert fb.status == INVALID
    assert "normalize" not in fb.message and "axis" not in fb.message, fb.message
    assert "divide it by its sum" in fb.message


# --------------------------------------------------------------------------- mixture-hedge (issue 13, item 1)
def test_mixture_hedge_accepts_scipy_route_and_names_misconceptions():
    p, q1, q2 = (np.asarray(v, float) for v in (ex.HEDGE_P, ex.HEDGE_Q1, ex.HEDGE_Q2))
    mixture = (q1 + q2) / 2
    right = scipy_kl(p, mixture)
    average = (scipy_kl(p, q1) + scipy_kl(p, q2)) / 2
    assert right < average  # convexity, strictly here
    assert evaluate("definitions.mixture-hedge", right).status == CORRECT
    assert evaluate("definitions.mixture-hedge", float(f"{right:.3g}")).passed
    assert_misconception("definitions.mixture-hedge", average, "average-of-divergences")
    assert_misconception("definitions.mixture-hedge", scipy_kl(mixture, p), "swapped")
    assert_misconception("definitions.mixture-hedge", scipy_kl(p, mixture, base=2), "bits")
    assert_misconception("definitions.mixture-hedge", scipy_kl(p, mixture, base=10), "log10")
    assert "never negative" in evaluate("definitions.mixture-hedge", -right).message
    other = evaluate("definitions.mixture-hedge", 1.7 * right)
    assert not other.passed and other.misconception is None and f"{right:.3f}" not in other.message


# --------------------------------------------------------------------------- atom (issue 13, item 2)
def atom_by_smoothing(s):
    """P_s = w N(0, s^2) + (1 - w) N(0, 1) replaces the atom by a narrow Gaussian: (D(P_s||Q), D(Q||P_s)) by
    quadrature, with Q = N(0, 1)."""
    from scipy import integrate

    w = ex.ATOM_WEIGHT

    def log_p(x):
        return np.logaddexp(np.log(w) + stats.norm.logpdf(x, 0, s), np.log1p(-w) + stats.norm.logpdf(x))

    def forward_integrand(x):
        return math.exp(log_p(x)) * (log_p(x) - stats.norm.logpdf(x))

    def reverse_integrand(x):
        return stats.norm.pdf(x) * (stats.norm.logpdf(x) - log_p(x))

    points = [-10 * s, 0.0, 10 * s]
    forward = sum(integrate.quad(forward_integrand, a, b, limit=200)[0]
                  for a, b in [(-40, points[0]), (points[0], points[2]), (points[2], 40)])
    reverse = sum(integrate.quad(reverse_integrand, a, b, limit=200)[0]
                  for a, b in [(-40, points[0]), (points[0], points[2]), (points[2], 40)])
    return forward, reverse


def test_atom_expected_values_by_smoothing_the_point_mass():
    forwards, reverses = zip(*(atom_by_smoothing(s) for s in (1e-3, 1e-5, 1e-7)), strict=True)
    # D(P_s || Q) grows without bound, by w ln 100 per factor 100 in s; D(Q || P_s) converges to a finite limit
    assert np.all(np.diff(forwards) > 0.9 * ex.ATOM_WEIGHT * math.log(100))
    limit = reverses[-1]
    steps = np.abs(np.diff(reverses))
    assert steps[1] < steps[0] / 10 and steps[1] < 1e-3
    assert evaluate("definitions.atom", [math.inf, limit]).status == CORRECT
    assert evaluate("definitions.atom", np.array([np.inf, limit])).passed


def test_atom_names_misconceptions_and_rejects_shapes():
    limit = atom_by_smoothing(1e-7)[1]
    assert_misconception("definitions.atom", [limit, math.inf], "swapped")
    assert_misconception("definitions.atom", [limit, limit], "forgot-absolute-continuity")
    assert_misconception("definitions.atom", [math.inf, math.inf], "both-infinite")
    assert_misconception("definitions.atom", [math.inf, limit / math.log(2)], "bits")
    finite = evaluate("definitions.atom", [3.0, limit])
    assert not finite.passed and "should be infinite" in finite.message
    assert evaluate("definitions.atom", math.inf).status == INVALID
    assert evaluate("definitions.atom", [math.inf, limit, 0.0]).status == INVALID


# --------------------------------------------------------------------------- stein-exponent (issue 13, item 3)
def test_stein_exponent_by_exact_binomial_tests():
    p, q = ex.STEIN_P, ex.STEIN_Q
    d_pq = scipy_kl([1 - p, p], [1 - q, q])
    d_qp = scipy_kl([1 - q, q], [1 - p, p])
    # the exponent of beta_n for the non-randomised test "accept P when the count of ones <= c_n", c_n chosen so
    # that P(reject P) <= 1%: scipy's binomial, independently of klcourse.hypothesis
    rates = []
    for n in (300, 1200):
        c = int(stats.binom.ppf(0.99, n, p))
        rates.append(-stats.binom.logcdf(c, n, q) / n)
    assert rates[0] < rates[1] < d_pq < d_qp and d_pq - rates[1] < 0.06 < d_qp - rates[1]
    assert evaluate("definitions.stein-exponent", d_pq).status == CORRECT
    assert_misconception("definitions.stein-exponent", d_qp, "swapped")
    assert "D(P‖Q)" in evaluate("definitions.stein-exponent", d_qp).message
    assert_misconception("definitions.stein-exponent", d_pq / math.log(2), "bits")
    assert_misconception("definitions.stein-exponent", d_pq / math.log(10), "log10")
    assert "positive" in evaluate("definitions.stein-exponent", -d_pq).message


# --------------------------------------------------------------------------- sanov-exponent (issue 13, item 3)
def test_sanov_exponent_by_exact_binomial_tails():
    p, t = ex.SANOV_P, ex.SANOV_T
    d_tp = scipy_kl([1 - t, t], [1 - p, p])
    for n in (10, 100, 1000, 3000):
        log_tail = math.log(stats.binom.sf(math.ceil(n * t) - 1, n, p))
        assert -2 * math.log(n + 1) <= log_tail + n * d_tp <= 0  # Sanov's bounds for a coin
    assert evaluate("definitions.sanov-exponent", d_tp).status == CORRECT
    assert_misconception("definitions.sanov-exponent", scipy_kl([1 - p, p], [1 - t, t]), "swapped")
    assert_misconception("definitions.sanov-exponent", (t - p) ** 2 / (2 * p * (1 - p)), "gaussian-approximation")
    assert_misconception("definitions.sanov-exponent", d_tp / math.log(2), "bits")
    assert "positive" in evaluate("definitions.sanov-exponent", -d_tp).message
