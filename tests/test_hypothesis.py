"""klcourse.hypothesis against independent routes: enumeration of every sequence (exact fractions), scipy.stats's
binomial and multinomial distributions, and the bounds of the method of types."""

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from klcourse import kl_divergence
from klcourse.hypothesis import (
    bernoulli_kl,
    coin_tail_exponent,
    log_binomial_tail,
    neyman_pearson_bernoulli,
    type_log_probability,
)


# --------------------------------------------------------------------------- bernoulli_kl
def test_bernoulli_kl_matches_scipy_and_conventions():
    rng = np.random.default_rng(0)
    for a, b in rng.uniform(0.01, 0.99, size=(50, 2)):
        assert bernoulli_kl(a, b) == pytest.approx(stats.entropy([1 - a, a], [1 - b, b]), rel=1e-12)
    assert bernoulli_kl(0.3, 0.3) == 0.0
    assert bernoulli_kl(0.0, 0.4) == pytest.approx(-math.log(0.6), rel=1e-15)
    assert bernoulli_kl(0.2, 0.0) == math.inf and bernoulli_kl(0.0, 0.0) == 0.0


@pytest.mark.parametrize("a, b", [(1.2, 0.5), (0.5, -0.1), (float("nan"), 0.5), ("x", 0.5)])
def test_bernoulli_kl_bad_input(a, b):
    with pytest.raises(ValueError):
        bernoulli_kl(a, b)


# --------------------------------------------------------------------------- the Neyman-Pearson test
def enumerated_np_errors(p, q, n, alpha):
    """The most powerful level-alpha test by brute force over all 2**n sequences, in exact fractions.

    Sequences are sorted by their likelihood ratio q^n(x)/p^n(x); P is rejected on the most Q-like sequences
    until the P-probability of the rejection region reaches alpha, randomising the last ratio level.
    """
    p, q, alpha = Fraction(p), Fraction(q), Fraction(alpha)
    levels = {}
    for x in itertools.product((0, 1), repeat=n):
        k = sum(x)
        pp = p**k * (1 - p) ** (n - k)
        qq = q**k * (1 - q) ** (n - k)
        ratio = qq / pp
        lp, lq = levels.get(ratio, (0, 0))
        levels[ratio] = (lp + pp, lq + qq)
    size, beta = Fraction(0), Fraction(0)
    for ratio in sorted(levels, reverse=True):  # most Q-like first
        lp, lq = levels[ratio]
        if size + lp <= alpha:
            size += lp
        elif size < alpha:
            frac = (alpha - size) / lp
            size = alpha
            beta += (1 - frac) * lq
        else:
            beta += lq
    return float(size), float(beta)


@pytest.mark.parametrize("p, q, n, alpha", [(0.5, 0.1, 10, 0.05), (0.3, 0.6, 9, 0.1), (0.7, 0.2, 11, 0.2),
                                            (0.5, 0.9, 6, 0.01)])
def test_neyman_pearson_matches_enumeration_of_all_sequences(p, q, n, alpha):
    size, beta = enumerated_np_errors(p, q, n, alpha)
    test = neyman_pearson_bernoulli(p, q, n, alpha)
    assert size == pytest.approx(alpha, rel=1e-12)
    assert test.beta == pytest.approx(beta, rel=1e-10)


@pytest.mark.parametrize("p, q", [(0.5, 0.1), (0.3, 0.45)])
def test_neyman_pearson_errors_by_scipy_binomial(p, q):
    n, alpha = 200, 0.05
    test = neyman_pearson_bernoulli(p, q, n, alpha)
    c, g = test.threshold, test.gamma
    if q > p:  # reject P above c ones
        size = stats.binom.sf(c, n, p) + g * stats.binom.pmf(c, n, p)
        beta = stats.binom.cdf(c - 1, n, q) + (1 - g) * stats.binom.pmf(c, n, q)
    else:  # reject P below n - c ones
        size = stats.binom.cdf(n - c - 1, n, p) + g * stats.binom.pmf(n - c, n, p)
        beta = stats.binom.sf(n - c, n, q) + (1 - g) * stats.binom.pmf(n - c, n, q)
    assert size == pytest.approx(alpha, rel=1e-9)
    assert test.beta == pytest.approx(beta, rel=1e-9)


def test_rejects_reproduces_both_errors_by_simulation():
    test = neyman_pearson_bernoulli(0.5, 0.1, 12, 0.05)
    rng = np.random.default_rng(3)
    m = 400_000
    for rate, target in ((0.5, test.alpha), (0.1, 1 - test.beta)):  # P(reject | P) and P(reject | Q)
        k = rng.binomial(12, rate, size=m)
        frac = test.rejects(k, rng.random(m)).mean()
        se = math.sqrt(target * (1 - target) / m)
        assert abs(frac - target) < 5 * se


def test_stein_exponent_is_d_p_q_not_d_q_p():
    # -log(beta_n)/n approaches D(P||Q) from below, and passes the reverse divergence on the way
    p, q = 0.5, 0.1
    d_pq, d_qp = bernoulli_kl(p, q), bernoulli_kl(q, p)
    rates = [-neyman_pearson_bernoulli(p, q, n, 0.05).log_beta / n for n in (100, 1000, 10_000, 100_000)]
    assert np.all(np.diff(rates) > 0) and rates[-1] < d_pq
    assert abs(rates[-1] - d_pq) < 0.01 < abs(rates[-1] - d_qp)
    # the second-order (Strassen) term: -log beta = nD - sqrt(nV) z_{1-alpha} + (1/2) log n + O(1)
    n = 100_000
    v = 0.5 * 0.5 * math.log(0.5 / 0.1 / (0.5 / 0.9)) ** 2  # variance of log(p/q) under P
    second = n * d_pq - math.sqrt(n * v) * stats.norm.ppf(0.95) + 0.5 * math.log(n)
    assert abs(-neyman_pearson_bernoulli(p, q, n, 0.05).log_beta - second) < 5


def test_beta_stays_finite_far_below_the_smallest_double():
    test = neyman_pearson_bernoulli(0.5, 0.1, 5000, 0.05)
    assert test.beta == 0.0 and -3000 < test.log_beta < -2000


@pytest.mark.parametrize("args", [(0.5, 0.5, 10, 0.05), (0.0, 0.3, 10, 0.05), (0.5, 1.0, 10, 0.05),
                                  (0.5, 0.3, 0, 0.05), (0.5, 0.3, 2.5, 0.05), (0.5, 0.3, 10, 0.0),
                                  (0.5, 0.3, 10, 1.5), (0.5, 0.3, True, 0.05)])
def test_neyman_pearson_bad_input(args):
    with pytest.raises(ValueError):
        neyman_pearson_bernoulli(*args)


def test_rejects_bad_input():
    test = neyman_pearson_bernoulli(0.5, 0.1, 10, 0.05)
    with pytest.raises(ValueError):
        test.rejects([11], [0.5])
    with pytest.raises(ValueError):
        test.rejects([1, 2], [0.5])


# --------------------------------------------------------------------------- the method of types
def test_type_probability_matches_scipy_multinomial_and_enumeration():
    rng = np.random.default_rng(4)
    for _ in range(20):
        p = rng.dirichlet(np.ones(4))
        counts = rng.multinomial(30, rng.dirichlet(np.ones(4)))
        assert type_log_probability(counts, p) == pytest.approx(stats.multinomial.logpmf(counts, 30, p), rel=1e-10)
    p = [Fraction(1, 2), Fraction(1, 3), Fraction(1, 6)]
    counts = (2, 1, 1)
    exact = sum(math.prod(p[i] for i in x) for x in itertools.product(range(3), repeat=4)
                if tuple(x.count(j) for j in range(3)) == counts)
    assert math.exp(type_log_probability(counts, [1 / 2, 1 / 3, 1 / 6])) == pytest.approx(float(exact), rel=1e-12)


def test_type_class_bounds_of_cover_and_thomas():
    rng = np.random.default_rng(5)
    for n in (5, 50, 500):
        for _ in range(20):
            p = rng.dirichlet(np.ones(3))
            counts = rng.multinomial(n, rng.dirichlet(np.ones(3)))
            d = kl_divergence(counts / n, p)
            log_prob = type_log_probability(counts, p)
            assert -3 * math.log(n + 1) - n * d <= log_prob <= -n * d + 1e-9


def test_type_probability_conventions_and_bad_input():
    assert type_log_probability([2, 0], [1.0, 0.0]) == 0.0
    assert type_log_probability([1, 1], [1.0, 0.0]) == -math.inf
    for counts, p in [([1, 2], [0.5, 0.3, 0.2]), ([1.5, 2], [0.5, 0.5]), ([-1, 2], [0.5, 0.5]),
                      ([0, 0], [0.5, 0.5]), ([1, 2], [0.6, 0.6]), ("ab", [0.5, 0.5])]:
        with pytest.raises(ValueError):
            type_log_probability(counts, p)


def test_binomial_tail_matches_scipy_and_sanov_bounds():
    for n, p, t in [(10, 0.5, 0.7), (100, 0.5, 0.7), (1000, 0.3, 0.35), (50, 0.2, 0.0), (40, 0.6, 1.0)]:
        k_min = math.ceil(n * t - 1e-9)
        assert math.exp(log_binomial_tail(n, p, t)) == pytest.approx(stats.binom.sf(k_min - 1, n, p), rel=1e-9)
    # Sanov for a coin, t > p with n t an integer: (n+1)^-2 exp(-n D) <= P(K/n >= t) <= exp(-n D)
    for n in (10, 100, 1000, 10_000):
        log_tail, d = log_binomial_tail(n, 0.5, 0.7), coin_tail_exponent(0.5, 0.7)
        assert -2 * math.log(n + 1) - n * d <= log_tail <= -n * d
    assert coin_tail_exponent(0.5, 0.4) == 0.0
    assert coin_tail_exponent(0.5, 0.7) == pytest.approx(stats.entropy([0.3, 0.7], [0.5, 0.5]), rel=1e-12)
    assert log_binomial_tail(30, 0.5, 0.5 + 1e-14) == pytest.approx(math.log(stats.binom.sf(14, 30, 0.5)))


@pytest.mark.parametrize("args", [(0, 0.5, 0.7), (10, 1.0, 0.7), (10, 0.5, 1.2), (10, 0.5, float("nan"))])
def test_binomial_tail_bad_input(args):
    with pytest.raises(ValueError):
        log_binomial_tail(*args)
    with pytest.raises(ValueError):
        coin_tail_exponent(*args[1:]) if args[0] else coin_tail_exponent(0.5, "x")
