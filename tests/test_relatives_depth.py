"""Chapter 2 in depth (issue 13, items 4-6): Renyi divergences, Pinsker and Bretagnolle-Huber, conditional mutual
information, and the Donsker-Varadhan / NWJ lower bounds — each against an independent route (mpmath at 50 digits,
direct sums with scipy/numpy, entropies, quadrature, exact enumeration)."""

import math

import mpmath
import numpy as np
import pytest
from scipy import integrate, optimize, stats
from scipy.special import rel_entr
from scipy.stats import entropy as scipy_entropy

from klcourse.divergences import (
    bretagnolle_huber_bound,
    conditional_mutual_information,
    dv_bound,
    fit_critic,
    nwj_bound,
    pinsker_bound,
    quadratic_features,
    renyi_divergence,
)

RNG = np.random.default_rng(13)


def mp_renyi(p, q, alpha, dps=50):
    """D_alpha(P || Q) straight from the definition at ``dps`` digits (inputs normalised exactly in mpmath)."""
    with mpmath.workdps(dps):
        pp = [mpmath.mpf(float(v)) for v in p]
        qq = [mpmath.mpf(float(v)) for v in q]
        sp, sq = mpmath.fsum(pp), mpmath.fsum(qq)
        a = mpmath.mpf(alpha)
        s = mpmath.fsum((x / sp) ** a * (y / sq) ** (1 - a) for x, y in zip(pp, qq, strict=True) if x > 0 and y > 0)
        return mpmath.log(s) / (a - 1)


def random_pair(n=5, conc=0.7):
    return RNG.dirichlet(np.full(n, conc)), RNG.dirichlet(np.full(n, conc))


# ------------------------------------------------------------------ Renyi
@pytest.mark.parametrize("alpha", [0.05, 0.3, 0.5, 0.9, 0.999999, 1.000001, 1.5, 2.0, 3.7, 10.0, 200.0])
def test_renyi_matches_mpmath(alpha):
    for _ in range(20):
        p, q = random_pair()
        expected = float(mp_renyi(p, q, alpha))
        assert renyi_divergence(p, q, alpha) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("alpha", [0.5, 2.0, 0.2, 5.0])
@pytest.mark.parametrize("delta", [1e-3, 1e-6, 1e-9])
def test_renyi_keeps_relative_accuracy_for_nearly_equal_inputs(alpha, delta):
    p = RNG.dirichlet(np.ones(6))
    q = p * (1 + delta * RNG.standard_normal(6))
    q /= q.sum()
    expected = float(mp_renyi(p, q, alpha, dps=80))
    assert expected > 0
    assert renyi_divergence(p, q, alpha) == pytest.approx(expected, rel=1e-8)


def test_renyi_special_orders_against_direct_formulas():
    for _ in range(50):
        p, q = random_pair()
        bc = np.sum(np.sqrt(p * q))
        chi2 = np.sum((p - q) ** 2 / q)
        assert renyi_divergence(p, q, 0.5) == pytest.approx(-2 * np.log(bc), rel=1e-10)
        assert renyi_divergence(p, q, 2) == pytest.approx(np.log1p(chi2), rel=1e-10)
        assert renyi_divergence(p, q, 1) == pytest.approx(rel_entr(p, q).sum(), rel=1e-12)
        assert renyi_divergence(p, q, math.inf) == pytest.approx(np.log(np.max(p / q)), rel=1e-12)


def test_renyi_order_zero_and_infinity_with_zeros():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.2, 0.3, 0.5])
    assert renyi_divergence(p, q, 0) == pytest.approx(-math.log(0.5), rel=1e-14)  # -log Q(supp P)
    assert renyi_divergence(p, q, math.inf) == pytest.approx(math.log(0.5 / 0.2), rel=1e-14)
    # the alpha -> 0 and alpha -> inf limits
    assert renyi_divergence(p, q, 1e-7) == pytest.approx(-math.log(0.5), rel=1e-5)
    assert renyi_divergence(p, q, 5000.0) == pytest.approx(math.log(2.5), rel=1e-3)


def test_renyi_tends_to_kl_as_alpha_tends_to_one():
    p, q = random_pair()
    kl = rel_entr(p, q).sum()
    for eps in [1e-2, 1e-4, 1e-6]:
        assert abs(renyi_divergence(p, q, 1 - eps) - kl) < 10 * eps
        assert abs(renyi_divergence(p, q, 1 + eps) - kl) < 10 * eps


def test_renyi_is_non_decreasing_in_alpha():
    alphas = [0, 0.1, 0.25, 0.5, 0.75, 0.99, 1, 1.01, 1.5, 2, 3, 8, 30, math.inf]
    for _ in range(200):
        p, q = random_pair(4, 0.4)
        values = [renyi_divergence(p, q, a) for a in alphas]
        assert all(b >= a * (1 - 1e-12) for a, b in zip(values, values[1:], strict=False)), values


def test_renyi_exactly_zero_for_equal_inputs_and_never_negative():
    p = RNG.dirichlet(np.ones(7), size=50)
    for alpha in [0, 0.3, 0.5, 1, 2, 7.5, math.inf]:
        values = renyi_divergence(p, p, alpha)
        assert np.all(values == 0.0) and not np.any(np.signbit(values))
    q = p * (1 + 1e-15 * RNG.standard_normal(p.shape))
    q /= q.sum(axis=1, keepdims=True)
    assert np.all(renyi_divergence(p, q, 0.5) >= 0) and np.all(renyi_divergence(p, q, 3.0) >= 0)


def test_renyi_infinities():
    p, q = [0.5, 0.5], [1.0, 0.0]           # q = 0 < p
    assert renyi_divergence(p, q, 2) == math.inf and renyi_divergence(p, q, 1) == math.inf
    assert renyi_divergence(p, q, math.inf) == math.inf
    assert renyi_divergence(p, q, 0.5) == pytest.approx(-2 * math.log(math.sqrt(0.5)), rel=1e-14)  # finite
    assert renyi_divergence([1.0, 0.0], [0.0, 1.0], 0.5) == math.inf   # disjoint supports
    assert renyi_divergence([1.0, 0.0], [0.0, 1.0], 0) == math.inf


@pytest.mark.parametrize("alpha", [0.3, 2.0, 700.0])
def test_renyi_batch_rows_with_special_cases_match_single_calls(alpha):
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.98, 0.01, 0.01], [0.0, 0.5, 0.5]])
    q = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.2, 0.3, 0.5], [0.01, 0.01, 0.98], [0.2, 0.3, 0.5]])
    batch = renyi_divergence(p, q, alpha)
    for row in range(p.shape[0]):
        single = renyi_divergence(p[row], q[row], alpha)
        assert batch[row] == single or (math.isinf(single) and batch[row] == single)
        if math.isfinite(single) and single > 0:
            assert single == pytest.approx(float(mp_renyi(p[row], q[row], alpha)), rel=1e-9)
    assert batch[0] == math.inf and batch[2] == 0.0
    assert (batch[1] == math.inf) == (alpha > 1)


def test_renyi_batch_base_and_bad_input():
    p, q = RNG.dirichlet(np.ones(4), size=(3, 2)), RNG.dirichlet(np.ones(4), size=(3, 2))
    batch = renyi_divergence(p, q, 2.5)
    assert batch.shape == (3, 2)
    assert batch[1, 0] == pytest.approx(renyi_divergence(p[1, 0], q[1, 0], 2.5), rel=1e-15)
    assert renyi_divergence(p[0, 0], q[0, 0], 0.5, base=2) == pytest.approx(
        renyi_divergence(p[0, 0], q[0, 0], 0.5) / math.log(2), rel=1e-14)
    for bad in [-0.5, float("nan"), "2", None, True]:
        with pytest.raises(ValueError, match="alpha"):
            renyi_divergence([0.5, 0.5], [0.4, 0.6], bad)
    with pytest.raises(ValueError, match="negative"):
        renyi_divergence([1.2, -0.2], [0.4, 0.6], 2)
    with pytest.raises(ValueError, match="sum to 1"):
        renyi_divergence([0.5, 0.6], [0.4, 0.6], 2)


# ------------------------------------------------------------------ Pinsker and Bretagnolle-Huber
def test_tv_bounds_against_mpmath_and_limits():
    for d in [0.0, 1e-12, 1e-3, 0.5, 1.5, 3.0, 40.0]:
        with mpmath.workdps(40):
            assert bretagnolle_huber_bound(d) == pytest.approx(float(mpmath.sqrt(1 - mpmath.exp(-d))), rel=1e-14)
            assert pinsker_bound(d) == pytest.approx(float(mpmath.sqrt(mpmath.mpf(d) / 2)), rel=1e-15)
    assert bretagnolle_huber_bound(0.0) == 0.0 and pinsker_bound(0.0) == 0.0
    assert bretagnolle_huber_bound(math.inf) == 1.0 and pinsker_bound(math.inf) == math.inf
    assert bretagnolle_huber_bound([0.1, 2.0]).shape == (2,)
    for bad in [-1e-9, float("nan"), "x"]:
        with pytest.raises(ValueError):
            bretagnolle_huber_bound(bad)
        with pytest.raises(ValueError):
            pinsker_bound(bad)


def test_both_bounds_hold_and_bh_is_tighter_exactly_above_the_crossing():
    p, q = RNG.dirichlet(np.full(4, 0.3), size=(2, 3000))
    tv = 0.5 * np.abs(p - q).sum(axis=1)
    kl = rel_entr(p, q).sum(axis=1)
    assert np.all(tv <= bretagnolle_huber_bound(kl) + 1e-12)
    assert np.all(tv <= pinsker_bound(kl) + 1e-12)
    crossing = optimize.brentq(lambda d: 1 - math.exp(-d) - d / 2, 0.5, 3.0)   # about 1.594 nats
    grid = np.linspace(0.01, 6, 600)
    bh_tighter = bretagnolle_huber_bound(grid) < pinsker_bound(grid)
    assert np.array_equal(bh_tighter, grid > crossing)


# ------------------------------------------------------------------ conditional mutual information
def cmi_by_entropies(joint):
    h = lambda t: scipy_entropy(np.asarray(t).ravel())   # noqa: E731
    return h(joint.sum(axis=1)) + h(joint.sum(axis=0)) - h(joint) - h(joint.sum(axis=(0, 1)))


def mi_by_enumeration(joint2d):
    """I(A; B) summed cell by cell with math.log (exact enumeration of the table)."""
    pa, pb = joint2d.sum(axis=1), joint2d.sum(axis=0)
    return math.fsum(v * math.log(v / (pa[i] * pb[j])) for (i, j), v in np.ndenumerate(joint2d) if v > 0)


def test_cmi_matches_entropies_and_the_chain_rule():
    for shape in [(2, 3, 2), (3, 3, 4), (4, 2, 3)]:
        joint = RNG.dirichlet(np.ones(np.prod(shape))).reshape(shape)
        cmi = conditional_mutual_information(joint)
        assert cmi == pytest.approx(cmi_by_entropies(joint), rel=1e-10)
        i_x_yz = mi_by_enumeration(joint.reshape(shape[0], -1))
        i_x_z = mi_by_enumeration(joint.sum(axis=1))
        assert i_x_yz == pytest.approx(i_x_z + cmi, rel=1e-10)
        assert conditional_mutual_information(joint, base=2) == pytest.approx(cmi / math.log(2), rel=1e-14)


def test_cmi_xor_and_conditional_independence():
    xor = np.zeros((2, 2, 2))
    for x in range(2):
        for y in range(2):
            xor[x, y, x ^ y] = 0.25
    assert mi_by_enumeration(xor.sum(axis=2)) == 0.0                     # X, Y independent
    assert conditional_mutual_information(xor) == pytest.approx(math.log(2), rel=1e-15)
    pz = np.array([0.3, 0.7, 0.0])                                       # an empty z slice too
    slices = [np.outer(RNG.dirichlet(np.ones(3)), RNG.dirichlet(np.ones(2))) for _ in range(3)]
    ci = np.stack([w * s for w, s in zip(pz, slices, strict=True)], axis=2)
    assert abs(conditional_mutual_information(ci)) < 1e-15
    assert conditional_mutual_information(np.full((1, 3, 2), 1 / 6)) == 0.0


def test_cmi_bad_input():
    with pytest.raises(ValueError, match="3-D"):
        conditional_mutual_information([[0.5, 0.5]])
    with pytest.raises(ValueError, match="negative"):
        conditional_mutual_information(np.array([0.6, -0.1, 0.25, 0.25]).reshape(1, 2, 2))
    with pytest.raises(ValueError, match="sum"):
        conditional_mutual_information(np.full((2, 2, 2), 0.2))


# ------------------------------------------------------------------ DV and NWJ
def population_bounds(w, mu_p, s_p, mu_q, s_q):
    """DV and NWJ bounds of the critic T = w0 + w1 x + w2 x^2, by quadrature."""
    t = lambda x: w[0] + w[1] * x + w[2] * x * x   # noqa: E731
    e_p = integrate.quad(lambda x: stats.norm.pdf(x, mu_p, s_p) * t(x), -np.inf, np.inf)[0]
    e_q_exp = integrate.quad(lambda x: np.exp(stats.norm.logpdf(x, mu_q, s_q) + t(x)), -np.inf, np.inf)[0]
    return e_p - math.log(e_q_exp), e_p - e_q_exp / math.e


def kl_gauss(mu_p, s_p, mu_q, s_q):
    """D(N(mu_p, s_p^2) || N(mu_q, s_q^2)) by quadrature (independent of klcourse.gaussians)."""
    f = lambda x: stats.norm.pdf(x, mu_p, s_p) * (stats.norm.logpdf(x, mu_p, s_p) - stats.norm.logpdf(x, mu_q, s_q))  # noqa: E731
    return integrate.quad(f, -np.inf, np.inf)[0]


def test_bounds_at_the_optimal_critic_estimate_the_kl():
    mu_p, s_p, mu_q, s_q = 0.0, 1.0, 1.0, 1.5
    kl = kl_gauss(mu_p, s_p, mu_q, s_q)
    rng = np.random.default_rng(3)
    x_p, x_q = rng.normal(mu_p, s_p, 200_000), rng.normal(mu_q, s_q, 200_000)
    log_ratio = lambda x: stats.norm.logpdf(x, mu_p, s_p) - stats.norm.logpdf(x, mu_q, s_q)   # noqa: E731
    assert dv_bound(log_ratio(x_p), log_ratio(x_q)) == pytest.approx(kl, abs=0.01)
    assert nwj_bound(1 + log_ratio(x_p), 1 + log_ratio(x_q)) == pytest.approx(kl, abs=0.01)


def test_dv_and_nwj_with_exact_values():
    assert dv_bound([0.3, 0.3], [0.3, 0.3, 0.3]) == 0.0        # a constant critic
    assert dv_bound([1.0, 3.0], [0.0, math.log(3.0)]) == pytest.approx(2.0 - math.log(2.0), rel=1e-15)
    assert nwj_bound([1.0, 3.0], [1.0, 1.0 + math.log(3.0)]) == pytest.approx(2.0 - 2.0, abs=1e-15)
    rng = np.random.default_rng(4)
    for _ in range(200):    # log u <= u/e: NWJ never exceeds DV for the same critic values
        t_p, t_q = rng.normal(0, 2, 5), rng.normal(0, 2, 7)
        assert nwj_bound(t_p, t_q) <= dv_bound(t_p, t_q) + 1e-12
    assert dv_bound([0.0], [1000.0, 0.0]) == pytest.approx(-1000.0 + math.log(2.0), rel=1e-15)   # no overflow


def test_every_critic_gives_a_population_lower_bound():
    kl = kl_gauss(0.0, 1.0, 1.0, 1.5)
    rng = np.random.default_rng(5)
    for _ in range(30):
        # x^2 weight below 1/(2 * 1.5^2), so that E_Q[exp T] is finite
        w = np.array([rng.normal(0, 0.5), rng.normal(0, 0.5), rng.uniform(-0.3, 0.15)])
        dv, nwj = population_bounds(w, 0.0, 1.0, 1.0, 1.5)
        assert nwj <= dv <= kl + 1e-9


def test_fit_critic_pushes_held_out_bounds_to_the_kl():
    kl = kl_gauss(0.0, 1.0, 1.0, 1.5)
    finals = {"dv": [], "nwj": []}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        x_p, x_q = rng.normal(0, 1, 2000), rng.normal(1, 1.5, 2000)
        for bound, fn in (("dv", dv_bound), ("nwj", nwj_bound)):
            weights, history = fit_critic(x_p, x_q, bound=bound, n_steps=300)
            assert weights.shape == (301, 3) and history.shape == (301,)
            assert history[-1] > history[0]
            finals[bound].append(population_bounds(weights[-1], 0.0, 1.0, 1.0, 1.5)[0 if bound == "dv" else 1])
            feats_p, feats_q = quadratic_features(x_p), quadratic_features(x_q)
            assert history[-1] == pytest.approx(fn(feats_p @ weights[-1], feats_q @ weights[-1]), rel=1e-12)
    for bound, values in finals.items():
        assert np.all(np.array(values) <= kl + 1e-9), bound       # the population bound of a fitted critic
        assert np.mean(values) > kl - 0.02, (bound, values)


def test_variational_bad_input():
    with pytest.raises(ValueError, match="t_q"):
        dv_bound([0.1], [])
    with pytest.raises(ValueError, match="t_p"):
        nwj_bound([[0.1]], [0.2])
    with pytest.raises(ValueError, match="finite"):
        dv_bound([np.nan], [0.0])
    with pytest.raises(ValueError, match="bound"):
        fit_critic([0.0], [1.0], bound="mine")
    with pytest.raises(ValueError, match="n_steps"):
        fit_critic([0.0], [1.0], n_steps=0)
    with pytest.raises(ValueError, match="lr"):
        fit_critic([0.0], [1.0], lr=-1)
    with pytest.raises(ValueError, match="at least one"):
        fit_critic([], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        quadratic_features([[1.0, 2.0]])
