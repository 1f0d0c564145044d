"""klcourse.expfamily: closed-form KL divergences within exponential families.

Each function is checked against three independent routes: the textbook formula in 50-digit
mpmath, a numerical integral or sum of p log(p/q) (scipy.integrate.quad, a direct Poisson
series, the two Bernoulli terms), and the Bregman divergence of the log-partition function.
Then the edge cases (infinite divergences, point masses), non-negativity and exact zeros,
relative accuracy for nearly equal parameters, broadcasting, and bad input.
"""

from __future__ import annotations

import math
import re

import mpmath as mp
import numpy as np
import pytest
from scipy import integrate, special, stats

import klcourse
from klcourse import kl_divergence, kl_normal
from klcourse.expfamily import kl_bernoulli, kl_exponential, kl_exponential_family, kl_gamma, kl_poisson


@pytest.fixture(autouse=True)
def _fifty_digits():
    """50-digit references in every test (mpmath's precision is global: other tests in the same process set it)."""
    with mp.workdps(50):
        yield

RTOL = 1e-13  # against 50-digit mpmath (measured worst: ~7e-15 for the gamma, ~1e-15 for the others)


# ------------------------------------------------------------------------------ references
def mp_bernoulli(p, q):
    p, q = mp.mpf(p), mp.mpf(q)

    def term(a, b):
        return mp.mpf(0) if a == 0 else a * mp.log(a / b)

    return term(p, q) + term(1 - p, 1 - q)


def mp_poisson(lam0, lam1):
    lam0, lam1 = mp.mpf(lam0), mp.mpf(lam1)
    return (lam0 * mp.log(lam0 / lam1) if lam0 else 0) - lam0 + lam1


def mp_gamma(a0, b0, a1, b1):
    """The textbook formula (Penny 2001), shape and rate, at 50 digits."""
    a0, b0, a1, b1 = (mp.mpf(v) for v in (a0, b0, a1, b1))
    return ((a0 - a1) * mp.digamma(a0) - mp.loggamma(a0) + mp.loggamma(a1)
            + a1 * (mp.log(b0) - mp.log(b1)) + a0 * (b1 - b0) / b0)


def mp_exponential(r0, r1):
    r = mp.mpf(r1) / mp.mpf(r0)
    return r - 1 - mp.log(r)


def rel_err(got, ref):
    ref = float(ref)
    return abs(got - ref) / ref if ref else abs(got)


def quad_kl(logpdf0, logpdf1, lo, hi, points=None):
    """D by adaptive quadrature of p log(p/q) on (lo, hi)."""
    def integrand(x):
        lp = logpdf0(x)
        return math.exp(lp) * (lp - logpdf1(x))

    value, _ = integrate.quad(integrand, lo, hi, points=points, limit=400, epsabs=1e-14, epsrel=1e-12)
    return value


def quad_gamma(a0, b0, a1, b1):
    p, q = stats.gamma(a0, scale=1 / b0), stats.gamma(a1, scale=1 / b1)
    lo, hi = p.ppf(1e-15) if a0 < 1 else 0.0, p.isf(1e-17)
    pieces = [0.0, lo, p.mean(), hi] if a0 < 1 else [0.0, p.mean(), hi]
    return sum(quad_kl(p.logpdf, q.logpdf, x, y) for x, y in zip(pieces[:-1], pieces[1:], strict=True) if y > x)


def series_poisson(lam0, lam1):
    """D as a direct sum over k of p(k) log(p(k)/q(k)), to where the tail is below 1e-17."""
    k = np.arange(0, int(lam0 + 40 * math.sqrt(lam0) + 60))
    log_ratio = k * (math.log(lam0) - math.log(lam1)) - lam0 + lam1  # log k! cancels
    return float(np.sum(stats.poisson.pmf(k, lam0) * log_ratio))


# ------------------------------------------------------------------------------ mpmath
def random_pairs(rng, n, lo, hi):
    """Unrelated pairs and nearly equal pairs (relative gaps 1e-13 .. 1)."""
    a = 10 ** rng.uniform(lo, hi, n)
    gap = 10 ** rng.uniform(-13, 0, n) * rng.choice([-0.9, 1.0], n)
    b = np.where(rng.random(n) < 0.5, a * (1 + gap), 10 ** rng.uniform(lo, hi, n))
    return a, b


def test_bernoulli_matches_mpmath_including_nearly_equal_probabilities():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 400)
    step = 10 ** rng.uniform(-13, -1, 400) * rng.choice([-1.0, 1.0], 400) * np.minimum(p, 1 - p)
    q = np.where(rng.random(400) < 0.5, p + step, rng.uniform(0, 1, 400))
    got = kl_bernoulli(p, q)
    worst = max(rel_err(g, mp_bernoulli(a, b)) for g, a, b in zip(got, p, q, strict=True))
    assert worst < RTOL


def test_poisson_matches_mpmath():
    a, b = random_pairs(np.random.default_rng(2), 400, -3, 6)
    got = kl_poisson(a, b)
    assert max(rel_err(g, mp_poisson(x, y)) for g, x, y in zip(got, a, b, strict=True)) < RTOL


def test_exponential_matches_mpmath():
    a, b = random_pairs(np.random.default_rng(3), 400, -6, 6)
    got = kl_exponential(a, b)
    assert max(rel_err(g, mp_exponential(x, y)) for g, x, y in zip(got, a, b, strict=True)) < RTOL


def test_gamma_matches_mpmath_for_unrelated_and_nearly_equal_parameters():
    rng = np.random.default_rng(4)
    a0, a1 = random_pairs(rng, 300, -2, 4)
    b0, b1 = random_pairs(rng, 300, -3, 3)
    got = kl_gamma(a0, b0, a1, b1)
    errors = [rel_err(g, mp_gamma(*v)) for g, *v in zip(got, a0, b0, a1, b1, strict=True)]
    assert max(errors) < RTOL


@pytest.mark.parametrize("shape", [0.01, 0.7, 3.0, 19.9, 20.1, 500.0, 1e4])
@pytest.mark.parametrize("gap", [1e-12, 1e-8, 1e-4, 0.3])
def test_gamma_nearly_equal_shapes_keep_relative_accuracy(shape, gap):
    # same rate, shapes differing by a relative `gap`: the textbook form cancels completely here
    a1 = shape * (1 + gap)
    assert rel_err(kl_gamma(shape, 1.0, a1, 1.0), mp_gamma(shape, 1.0, a1, 1.0)) < RTOL
    assert rel_err(kl_gamma(a1, 2.0, shape, 2.0 * (1 + gap)), mp_gamma(a1, 2.0, shape, 2.0 * (1 + gap))) < RTOL


def test_textbook_gamma_formula_fails_where_kl_gamma_does_not():
    """The accurate split is needed: the typed formula in float64 loses the answer for near shapes."""
    a0, a1 = 500.0, 500.0 * (1 + 1e-9)
    typed = ((a0 - a1) * special.digamma(a0) - special.gammaln(a0) + special.gammaln(a1))
    ref = mp_gamma(a0, 1.0, a1, 1.0)
    assert rel_err(typed, ref) > 1e-3
    assert rel_err(kl_gamma(a0, 1.0, a1, 1.0), ref) < RTOL


# ------------------------------------------------------------------------------ quadrature / series
@pytest.mark.parametrize("pair", [(0.5, 2.0), (3.0, 2.5), (10.0, 4.0), (0.01, 7.0), (120.0, 100.0)])
def test_poisson_matches_the_direct_series(pair):
    assert kl_poisson(*pair) == pytest.approx(series_poisson(*pair), rel=1e-12)


@pytest.mark.parametrize("pair", [(1.0, 2.0), (2.0, 1.0), (0.3, 5.0), (1e-3, 1e-3 * 1.5)])
def test_exponential_matches_quadrature(pair):
    r0, r1 = pair
    p, q = stats.expon(scale=1 / r0), stats.expon(scale=1 / r1)
    assert kl_exponential(r0, r1) == pytest.approx(quad_kl(p.logpdf, q.logpdf, 0, p.isf(1e-17)), rel=1e-9)


@pytest.mark.parametrize("params", [(2.0, 1.0, 3.0, 2.0), (0.5, 1.0, 1.5, 0.4), (7.0, 3.0, 7.0, 1.0),
                                    (1.0, 1.0, 0.3, 0.2), (40.0, 10.0, 35.0, 9.0), (0.2, 0.1, 0.2, 0.3)])
def test_gamma_matches_quadrature(params):
    assert kl_gamma(*params) == pytest.approx(quad_gamma(*params), rel=1e-8)


def test_bernoulli_matches_the_two_term_sum_and_kl_divergence():
    for p, q in [(0.5, 0.9), (0.1, 0.2), (0.99, 0.5), (0.0, 0.3), (1.0, 0.3)]:
        two_terms = float(np.sum(special.rel_entr([p, 1 - p], [q, 1 - q])))
        assert kl_bernoulli(p, q) == pytest.approx(two_terms, rel=1e-14)
        assert kl_bernoulli(p, q) == pytest.approx(kl_divergence([p, 1 - p], [q, 1 - q]), rel=1e-14)


# ------------------------------------------------------------------------------ the Bregman route
def softplus(t):
    return float(np.logaddexp(0.0, t))


def gamma_theta(a, b):
    return np.array([a - 1.0, -b])


def gamma_a(t):
    a, b = t[0] + 1.0, -t[1]
    return special.gammaln(a) - a * math.log(b)


def gamma_mean(t):
    a, b = t[0] + 1.0, -t[1]
    return np.array([special.digamma(a) - math.log(b), a / b])


BREGMAN_CASES = {
    "bernoulli": (lambda p, q: (special.logit(p), special.logit(q)), softplus, special.expit,
                  kl_bernoulli, [(0.3, 0.6), (0.9, 0.05), (0.5, 0.5001)]),
    "poisson": (lambda a, b: (math.log(a), math.log(b)), np.exp, np.exp, kl_poisson,
                [(0.5, 2.0), (10.0, 4.0), (3.0, 3.3)]),
    "exponential": (lambda a, b: (-a, -b), lambda t: -math.log(-t), lambda t: -1.0 / t, kl_exponential,
                    [(1.0, 2.0), (4.0, 0.5), (2.0, 2.2)]),
}


@pytest.mark.parametrize("family", sorted(BREGMAN_CASES))
def test_one_parameter_families_are_bregman_divergences(family):
    to_theta, log_partition, mean, kl, pairs = BREGMAN_CASES[family]
    for pair in pairs:
        bregman = kl_exponential_family(log_partition, mean, *to_theta(*pair))
        assert bregman == pytest.approx(kl(*pair), rel=1e-9)


def test_gamma_is_the_bregman_divergence_of_lgamma_minus_alpha_log_beta():
    for a0, b0, a1, b1 in [(2.0, 1.0, 3.0, 2.0), (0.5, 1.0, 1.5, 0.4), (7.0, 3.0, 6.0, 2.5)]:
        bregman = kl_exponential_family(gamma_a, gamma_mean, gamma_theta(a0, b0), gamma_theta(a1, b1))
        assert bregman == pytest.approx(kl_gamma(a0, b0, a1, b1), rel=1e-10)


def test_categorical_and_gaussian_are_bregman_divergences_too():
    def cat_theta(p):
        return np.log(np.asarray(p[:-1]) / p[-1])

    def cat_a(t):
        return float(np.logaddexp.reduce(np.append(t, 0.0)))

    def cat_mean(t):
        return special.softmax(np.append(t, 0.0))[:-1]

    p, q = np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.1, 0.3])
    assert kl_exponential_family(cat_a, cat_mean, cat_theta(p), cat_theta(q)) == pytest.approx(
        kl_divergence(p, q), rel=1e-12)

    def gauss_theta(mu, s):
        return np.array([mu / s**2, -0.5 / s**2])

    def gauss_a(t):
        return -(t[0] ** 2) / (4 * t[1]) - 0.5 * math.log(-2 * t[1])

    def gauss_mean(t):
        mu, var = -t[0] / (2 * t[1]), -0.5 / t[1]
        return np.array([mu, mu**2 + var])

    for m0, s0, m1, s1 in [(0.0, 1.0, 1.5, 0.8), (-1.0, 3.0, 0.5, 0.7)]:
        assert kl_exponential_family(gauss_a, gauss_mean, gauss_theta(m0, s0), gauss_theta(m1, s1)) == (
            pytest.approx(kl_normal(m0, s0, m1, s1), rel=1e-12))


def test_generic_route_rejects_bad_parameters():
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_exponential_family(np.exp, np.exp, [0.0, 1.0], 0.5)
    with pytest.raises(ValueError, match="natural parameter space"):
        kl_exponential_family(lambda t: -math.log(-t) if t < 0 else math.inf, lambda t: -1.0 / t, -1.0, 1.0)
    with pytest.raises(ValueError, match="mean_statistic returned shape"):
        kl_exponential_family(gamma_a, lambda t: 1.0, gamma_theta(2, 1), gamma_theta(3, 1))
    with pytest.raises(ValueError, match="NaN"):
        kl_exponential_family(np.exp, np.exp, np.nan, 0.0)


# ------------------------------------------------------------------------------ edge cases
def test_bernoulli_support_mismatch_is_inf_not_a_clipped_number():
    assert kl_bernoulli(0.3, 0.0) == math.inf
    assert kl_bernoulli(0.3, 1.0) == math.inf
    assert kl_bernoulli(1.0, 0.0) == math.inf and kl_bernoulli(0.0, 1.0) == math.inf
    assert kl_bernoulli(1e-300, 0.0) == math.inf


def test_bernoulli_point_masses():
    assert kl_bernoulli(0.0, 0.25) == pytest.approx(-math.log(0.75), rel=1e-15)
    assert kl_bernoulli(1.0, 0.25) == pytest.approx(-math.log(0.25), rel=1e-15)
    assert kl_bernoulli(0.0, 0.0) == 0.0 and kl_bernoulli(1.0, 1.0) == 0.0


def test_poisson_point_mass_and_support_mismatch():
    assert kl_poisson(0.0, 2.5) == 2.5  # P = point mass at 0: D = -log q(0) = lam1
    assert kl_poisson(2.5, 0.0) == math.inf
    assert kl_poisson(0.0, 0.0) == 0.0


def test_extreme_ratios_are_finite_or_inf_never_nan():
    assert kl_exponential(1e300, 1e-300) == pytest.approx(float(mp_exponential(1e300, 1e-300)), rel=1e-13)
    assert kl_exponential(1e-300, 1e300) == math.inf  # true value ~1e600
    assert kl_poisson(1e-300, 1e10) == pytest.approx(1e10, rel=1e-13)
    assert kl_gamma(1e-2, 1e-3, 1e4, 1e3) == pytest.approx(float(mp_gamma(1e-2, 1e-3, 1e4, 1e3)), rel=RTOL)


def test_never_negative_and_exactly_zero_for_equal_parameters():
    rng = np.random.default_rng(5)
    x = 10 ** rng.uniform(-3, 3, 2000)
    near = x * (1 + rng.normal(scale=1e-15, size=x.size))
    p = rng.uniform(0, 1, 2000)
    p_near = np.clip(p + rng.normal(scale=1e-16, size=p.size), 0, 1)
    for values in (kl_poisson(x, near), kl_exponential(x, near), kl_gamma(x, 1.0, near, 1.0),
                   kl_gamma(x, x, x, near), kl_bernoulli(p, p_near)):
        assert np.all(values >= 0)
    assert np.all(kl_poisson(x, x) == 0) and np.all(kl_exponential(x, x) == 0)
    assert np.all(kl_gamma(x, near, x, near) == 0) and np.all(kl_bernoulli(p, p) == 0)


def test_not_symmetric_and_exponential_is_gamma_with_shape_one():
    assert kl_poisson(1.0, 3.0) != pytest.approx(kl_poisson(3.0, 1.0))
    rates = np.array([0.1, 1.0, 2.5, 40.0])
    np.testing.assert_allclose(kl_exponential(rates, 1.7), kl_gamma(1.0, rates, 1.0, 1.7), rtol=1e-14)


def test_gamma_depends_on_the_rates_only_through_their_ratio():
    base = kl_gamma(2.5, 1.0, 4.0, 3.0)
    for c in (1e-5, 0.5, 7.0, 1e6):
        assert kl_gamma(2.5, c, 4.0, 3.0 * c) == pytest.approx(base, rel=1e-14)


# ------------------------------------------------------------------------------ broadcasting, types
def test_broadcasting_and_return_types_follow_kl_normal():
    assert isinstance(kl_poisson(1.0, 2.0), float) and isinstance(kl_gamma(1, 2, 3, 4), float)
    assert isinstance(kl_bernoulli(0.2, 0.4), float) and isinstance(kl_exponential(1, 2), float)
    grid = kl_gamma(np.array([1.0, 2.0, 3.0])[:, None], 1.0, np.array([0.5, 4.0]), 2.0)
    assert grid.shape == (3, 2)
    assert grid[1, 0] == kl_gamma(2.0, 1.0, 0.5, 2.0)
    lam = np.array([[0.5, 1.0], [2.0, 4.0]])
    np.testing.assert_array_equal(kl_poisson(lam, 1.5), [[kl_poisson(v, 1.5) for v in row] for row in lam])
    assert kl_bernoulli([0.2, 0.4], 0.3).shape == (2,)
    # the same broadcasting rules as kl_normal
    assert np.shape(kl_normal(np.ones((3, 1)), 1.0, np.ones(2), 1.0)) == grid.shape


def test_exported_from_the_package():
    for name in ("kl_bernoulli", "kl_poisson", "kl_exponential", "kl_gamma", "kl_exponential_family"):
        assert name in klcourse.__all__ and callable(getattr(klcourse, name))


@pytest.mark.parametrize("func", [kl_bernoulli, kl_poisson, kl_exponential, kl_gamma, kl_exponential_family])
def test_numpydoc_docstrings_with_formula_and_reference(func):
    doc = func.__doc__
    for section in ("Parameters", "Returns", "Raises", "References"):
        assert f"\n    {section}\n    ---" in doc, (func.__name__, section)
    assert ".. math::" in doc


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: kl_bernoulli(1.2, 0.5), "p must be a probability in [0, 1]"),
        (lambda: kl_bernoulli(0.5, -0.1), "q must be a probability in [0, 1]"),
        (lambda: kl_bernoulli([0.2, 0.3], [0.1, 0.2, 0.3]), "shape mismatch"),
        (lambda: kl_bernoulli(np.nan, 0.5), "NaN"),
        (lambda: kl_bernoulli("a", 0.5), "numeric"),
        (lambda: kl_poisson(-1.0, 2.0), "lam0 must be >= 0"),
        (lambda: kl_poisson(1.0, -2.0), "lam1 must be >= 0"),
        (lambda: kl_poisson(1.0, np.inf), "inf"),
        (lambda: kl_exponential(0.0, 1.0), "rate0 must be strictly positive"),
        (lambda: kl_exponential(1.0, -3.0), "rate1 must be strictly positive"),
        (lambda: kl_exponential([1.0, 2.0], [1.0, 2.0, 3.0]), "shape mismatch"),
        (lambda: kl_gamma(0.0, 1.0, 1.0, 1.0), "shape0 must be strictly positive"),
        (lambda: kl_gamma(1.0, -1.0, 1.0, 1.0), "rate0 must be strictly positive"),
        (lambda: kl_gamma(1.0, 1.0, -2.0, 1.0), "shape1 must be strictly positive"),
        (lambda: kl_gamma(1.0, 1.0, 1.0, 0.0), "rate1 must be strictly positive"),
        (lambda: kl_gamma([1.0, 2.0], 1.0, [1.0, 2.0, 3.0], 1.0), "shape mismatch"),
    ],
)
def test_bad_input_raises_a_value_error_naming_the_problem(call, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        call()
