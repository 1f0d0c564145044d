"""klcourse.numerics: the naive formulas fail the way chapter 5 says, the stable pieces are exact to
rounding, the stress sets and references are what they claim, and the accuracy table measures it.

Independent routes: quadrature (scipy.integrate), scipy.stats / scipy.special, mpmath written out here,
exact rational arithmetic (fractions), and PyTorch.
"""

import math
import time
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, stats
from scipy.special import log_softmax, logsumexp, softmax

from klcourse import kl_divergence, kl_normal
from klcourse import numerics as nm

EPS = np.finfo(np.float64).eps


def quad_kl_normal(m0, s0, m1, s1):
    """D(N(m0, s0²) || N(m1, s1²)) by quadrature of p log(p/q)."""
    def integrand(x):
        return stats.norm.pdf(x, m0, s0) * (stats.norm.logpdf(x, m0, s0) - stats.norm.logpdf(x, m1, s1))
    lo, hi = m0 - 40 * s0, m0 + 40 * s0
    return integrate.quad(integrand, lo, hi, points=[m0, m1], limit=200, epsabs=1e-13, epsrel=1e-12)[0]


def mp_bernoulli(a, b, dps=60):
    """Binary relative entropy written out in mpmath (0 log 0 = 0, inf when Q rules out P's outcome)."""
    with mpmath.workdps(dps):
        a, b = mpmath.mpf(a), mpmath.mpf(b)

        def term(x, y):
            if x == 0:
                return mpmath.mpf(0)
            return mpmath.inf if y == 0 else x * mpmath.log(x / y)

        return float(term(a, b) + term(1 - a, 1 - b))


# --------------------------------------------------------------------------- naive formulas
@pytest.mark.parametrize("params", [(0.0, 1.0, 1.0, 2.0), (0.3, 1.2, -0.4, 0.9), (2.0, 0.5, -1.0, 3.0)])
def test_naive_kl_normal_is_the_textbook_value_for_separated_pairs(params):
    assert math.isclose(nm.naive_kl_normal(*params), quad_kl_normal(*params), rel_tol=1e-9)
    assert math.isclose(nm.naive_kl_normal_expm1(*params), quad_kl_normal(*params), rel_tol=1e-9)


def test_naive_kl_normal_goes_negative_where_kl_normal_does_not():
    m0, s0, m1, s1 = nm.gaussian_stress_set(2000, seed=3)
    with np.errstate(all="ignore"):
        textbook = nm.naive_kl_normal(m0, s0, m1, s1)
    assert np.mean(textbook < 0) > 0.005
    assert np.all(kl_normal(m0, s0, m1, s1) >= 0)


def test_error_ordering_textbook_halfway_stable_near_equality():
    """At sigma1 = sigma0 (1 + 1e-6): textbook ~ eps/delta², half-way ~ eps/delta, kl_normal ~ eps."""
    rng = np.random.default_rng(4)
    s0 = np.exp(rng.uniform(-2, 2, 64))
    s1 = s0 * (1 + 1e-6 * rng.choice([-1.0, 1.0], 64))
    ref = np.array([mp_kl_normal_here(0.0, a, 0.0, b) for a, b in zip(s0, s1, strict=True)])
    routes = [("textbook", nm.naive_kl_normal), ("half", nm.naive_kl_normal_expm1), ("stable", kl_normal)]
    err = {name: np.median(np.abs(fn(0.0, s0, 0.0, s1) - ref) / ref) for name, fn in routes}
    assert err["textbook"] > 1e-7
    assert 1e-13 < err["half"] < 1e-8
    assert err["stable"] < 1e-15


def mp_kl_normal_here(m0, s0, m1, s1):
    with mpmath.workdps(60):
        a, b, c, d = map(mpmath.mpf, (m0, s0, m1, s1))
        return float(mpmath.log(d / b) + (b**2 + (a - c) ** 2) / (2 * d**2) - mpmath.mpf(1) / 2)


def test_naive_kl_discrete_nan_and_the_log1p_form():
    p, q = np.array([0.5, 0.5, 0.0]), np.array([0.25, 0.5, 0.25])
    with np.errstate(all="ignore"):
        assert math.isnan(nm.naive_kl_discrete(p, q))
    assert math.isclose(nm.naive_kl_discrete_log1p(p, q), stats.entropy(p, q), rel_tol=1e-12)
    rng = np.random.default_rng(5)
    a, b = rng.dirichlet(np.ones(7), size=2)
    assert math.isclose(nm.naive_kl_discrete(a, b), stats.entropy(a, b), rel_tol=1e-12)
    assert math.isclose(nm.naive_kl_discrete_log1p(a, b), stats.entropy(a, b), rel_tol=1e-12)


def test_clipped_kl_is_finite_and_set_by_eps():
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.7, 0.3, 0.0])
    eps = np.logspace(-16, -2, 15)
    values = np.array([nm.naive_kl_clipped(p, q, e) for e in eps])
    assert np.all(np.isfinite(values)) and np.isinf(stats.entropy(p, q))
    slope = np.polyfit(np.log10(eps), values, 1)[0]
    assert math.isclose(-slope, 0.2 * math.log(10), rel_tol=1e-9)  # missing mass times ln 10 per decade
    r = np.array([0.2, 0.3, 0.5])
    assert math.isclose(nm.naive_kl_clipped(p, r, 1e-10), stats.entropy(p, r), rel_tol=1e-12)  # no zeros: no effect


def test_naive_softmax_overflows_and_naive_log_softmax_underflows():
    with np.errstate(all="ignore"):
        assert np.all(np.isnan(nm.naive_softmax([1000.0, 999.0, 998.0])))
        assert np.all(np.isnan(nm.naive_softmax(np.array([100, 99, 98], dtype=np.float32))))
        assert nm.naive_softmax(np.array([1.0, 2.0], dtype=np.float32)).dtype == np.float32
        assert np.isneginf(nm.naive_log_softmax([0.0, -800.0])[1])
        assert np.isneginf(nm.naive_log_softmax(np.array([0.0, -120.0], dtype=np.float32))[1])
    z = np.array([0.3, -1.2, 2.0, 0.0])
    assert np.allclose(nm.naive_softmax(z), softmax(z), rtol=1e-14)
    assert np.allclose(nm.naive_log_softmax(z), log_softmax(z), rtol=1e-13)
    assert math.isclose(log_softmax([0.0, -800.0])[1], -800.0, rel_tol=1e-15)


def test_naive_kl_bernoulli():
    assert math.isclose(nm.naive_kl_bernoulli(0.3, 0.6), mp_bernoulli(0.3, 0.6), rel_tol=1e-13)
    with np.errstate(all="ignore"):
        assert math.isnan(nm.naive_kl_bernoulli(0.0, 0.3))
    a, b = 0.3, 0.3 * (1 + 1e-8)
    assert abs(nm.naive_kl_bernoulli(a, b) - mp_bernoulli(a, b)) / mp_bernoulli(a, b) > 1e-3


# --------------------------------------------------------------------------- stable pieces
def test_r_minus_log1p_matches_mpmath():
    r = np.concatenate([np.logspace(-15, 2, 60), -np.logspace(-15, math.log10(0.999), 60), [0.0]])
    got = nm.r_minus_log1p(r)
    with mpmath.workdps(60):
        ref = np.array([float(mpmath.mpf(x) - mpmath.log1p(mpmath.mpf(x))) for x in r.tolist()])
    nonzero = ref != 0
    assert np.all(got >= 0) and got[~nonzero].tolist() == [0.0]
    assert np.max(np.abs(got[nonzero] - ref[nonzero]) / ref[nonzero]) < 1e-14
    assert nm.r_minus_log1p(-1.0) == math.inf
    with pytest.raises(ValueError):
        nm.r_minus_log1p(-1.5)


def test_kl_bernoulli_matches_mpmath_also_near_equality():
    rng = np.random.default_rng(6)
    a = rng.uniform(0.001, 0.999, 40)
    b_far = rng.uniform(0.001, 0.999, 40)
    b_near = a * (1 + rng.choice([-1.0, 1.0], 40) * 10 ** rng.uniform(-12, -2, 40))
    for b in (b_far, b_near):
        got = nm.kl_bernoulli(a, b)
        ref = np.array([mp_bernoulli(x, y) for x, y in zip(a, b, strict=True)])
        assert np.max(np.abs(got - ref) / ref) < 1e-13


def test_kl_bernoulli_edges_and_agreement_with_kl_divergence():
    edge = [(0.0, 0.3), (1.0, 0.3), (0.0, 0.0), (1.0, 1.0), (0.4, 0.0), (0.4, 1.0), (0.0, 1.0), (1.0, 0.0)]
    for a, b in edge:
        got, ref = nm.kl_bernoulli(a, b), mp_bernoulli(a, b)
        assert got == ref == math.inf or math.isclose(got, ref, rel_tol=1e-14, abs_tol=0.0)
    a, b = 0.35, 0.8
    assert math.isclose(nm.kl_bernoulli(a, b), kl_divergence([1 - a, a], [1 - b, b]), rel_tol=1e-14)
    assert nm.kl_bernoulli(0.25, 0.25) == 0.0
    for bad in ((1.2, 0.5), (0.5, -0.1), (math.nan, 0.5)):
        with pytest.raises(ValueError):
            nm.kl_bernoulli(*bad)


# --------------------------------------------------------------------------- stress sets
def test_gaussian_stress_set_groups_and_determinism():
    m0, s0, m1, s1 = nm.gaussian_stress_set(1000, seed=2)
    again = nm.gaussian_stress_set(1000, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip((m0, s0, m1, s1), again, strict=True))
    assert all(a.shape == (1000,) for a in (m0, s0, m1, s1))
    assert np.all(s0 > 0) and np.all(s1 > 0) and np.all(np.isfinite(m1))
    k = 200
    ratio_b = s1[k:2 * k] / s0[k:2 * k] - 1
    assert np.all(np.abs(ratio_b) <= 1.01e-6)  # group B: nearly equal widths
    assert np.array_equal(s1[2 * k:3 * k], s0[2 * k:3 * k])  # group C: equal widths
    assert np.all(np.abs(m1[3 * k:4 * k] - m0[3 * k:4 * k]) / s1[3 * k:4 * k] >= 0.99e2)  # group D: huge gaps


def test_discrete_stress_set_rows():
    p, q, delta = nm.discrete_stress_set(deltas=(1e-3, 0.0), n_outcomes=30, seeds=range(3))
    assert p.shape == q.shape == (6, 30) and delta.tolist() == [1e-3] * 3 + [0.0] * 3
    assert np.allclose(p.sum(-1), 1, rtol=0, atol=1e-14) and np.allclose(q.sum(-1), 1, rtol=0, atol=1e-14)
    rel = np.abs(q / p - 1)
    assert np.all(rel[:3].max(-1) < 1e-2) and np.all(rel[3:] < 1e-14)


@pytest.mark.parametrize("delta", [1e-2, 1e-7, 1e-12])
def test_dyadic_pairs_sum_to_exactly_one(delta):
    p, q = nm.dyadic_near_pair(delta, 40, np.random.default_rng(7))
    for v in (p, q):
        assert sum(map(Fraction, v.tolist())) == 1  # exact rational sum
        assert float(np.sum(v)) == 1.0 and np.all(v > 0)
        assert np.all(v * 2.0**52 == np.round(v * 2.0**52))  # on the 2**-52 grid
    rel = np.median(np.abs(q / p - 1))
    assert delta / 20 < rel < delta * 5


def test_dyadic_pair_rejects_a_too_large_delta():
    with pytest.raises(ValueError):
        nm.dyadic_near_pair(50.0, 10, np.random.default_rng(0))


# --------------------------------------------------------------------------- references
def test_mp_references_against_quadrature_and_scipy():
    params = (0.3, 1.2, -0.4, 0.9)
    assert math.isclose(nm.mp_kl_normal(*params), quad_kl_normal(*params), rel_tol=1e-10)
    rng = np.random.default_rng(8)
    p, q = rng.dirichlet(np.ones(9), size=2)
    assert math.isclose(nm.mp_kl_discrete(p, q), stats.entropy(p, q), rel_tol=1e-13)
    rows = nm.mp_kl_discrete(np.stack([p, q]), np.stack([q, p]))
    assert rows.shape == (2,) and math.isclose(rows[1], stats.entropy(q, p), rel_tol=1e-13)
    assert nm.mp_kl_discrete([0.5, 0.5], [1.0, 0.0]) == math.inf
    assert nm.mp_kl_discrete([0.0, 1.0], [0.5, 0.5]) == pytest.approx(math.log(2), rel=1e-15)
    # the exact sums: scaling a vector does not change the normalised divergence
    assert math.isclose(nm.mp_kl_discrete(3 * p, q), nm.mp_kl_discrete(p, q), rel_tol=1e-14)


def test_relative_errors_semantics():
    err = nm.relative_errors([1.1, 0.0, 1e-30, np.nan, np.inf, np.inf], [1.0, 0.0, 0.0, 1.0, 1.0, np.inf])
    assert err[0] == pytest.approx(0.1) and err[1] == 0.0
    assert np.isinf(err[2]) and np.isinf(err[3]) and np.isinf(err[4]) and err[5] == 0.0


def test_library_wrappers_agree_on_separated_pairs():
    m0, s0, m1, s1 = np.array([0.0, 1.0]), np.array([1.0, 0.5]), np.array([1.0, -1.0]), np.array([2.0, 3.0])
    assert np.allclose(nm.scipy_kl_normal(m0, s0, m1, s1), kl_normal(m0, s0, m1, s1), rtol=1e-12)
    assert np.allclose(nm.torch_kl_normal(m0, s0, m1, s1), kl_normal(m0, s0, m1, s1), rtol=1e-12)
    rng = np.random.default_rng(9)
    p, q = rng.dirichlet(np.ones(5), size=(2, 3))
    assert np.allclose(nm.torch_kl_categorical(p, q), stats.entropy(p, q, axis=-1), rtol=1e-12)


# --------------------------------------------------------------------------- table and sweeps
def test_accuracy_table_measures_the_known_failures():
    t0 = time.perf_counter()
    rows = nm.accuracy_table(n_gaussian=2000, discrete_seeds=range(2), n_outcomes=40)
    assert time.perf_counter() - t0 < 20
    table = {(r["family"], r["key"]): r for r in rows}
    assert set(table) == {(f, k) for f in ("gaussian", "discrete") for k in ("klcourse", "textbook", "scipy", "torch")}
    for family in ("gaussian", "discrete"):
        assert table[family, "klcourse"]["worst_rel_err"] < 1e-14
        assert table[family, "klcourse"]["share_negative"] == 0.0
        assert table[family, "textbook"]["worst_rel_err"] > 1.0
        assert table[family, "textbook"]["share_inaccurate"] > 0.1
    assert table["gaussian", "textbook"]["share_negative"] > 0.005
    assert 0.1 < table["gaussian", "torch"]["worst_rel_err"] < 100
    assert table["gaussian", "torch"]["share_negative"] == 0.0
    html = nm.accuracy_table_html(rows)
    assert html.count("<tr>") == len(rows) + 1 and "kl_normal" in html


def test_gaussian_and_discrete_sweeps():
    deltas = (1e-2, 1e-10)
    ref, vals = nm.gaussian_sweep(deltas, n_draws=6)
    assert ref.shape == (2, 6) and set(vals) == set(nm.SWEEP_GAUSSIAN_METHODS)
    err = {k: np.median(nm.relative_errors(v, ref), axis=1) for k, v in vals.items()}
    assert err["textbook formula"][1] > 1e-2 and err["klcourse.kl_normal"].max() < 1e-14
    ref_d, vals_d = nm.discrete_sweep(deltas, n_draws=4, n_outcomes=20)
    err_d = {k: np.median(nm.relative_errors(v, ref_d), axis=1) for k, v in vals_d.items()}
    assert err_d["textbook sum(p log(p/q))"][1] > 1e-2 and err_d["klcourse.kl_divergence"].max() < 1e-14
    naive_psi = err_d["sum p (r − log1p(r)), subtracted naively"][1]
    assert 1e-12 < naive_psi < 1e-3  # better than the textbook, worse than klcourse


def test_float32_kl_div_sweep():
    ref, vals = nm.float32_kl_div_sweep((1e-1, 1e-4), n_classes=500, n_draws=4)
    assert np.all(ref > 0)
    err = {k: np.median(nm.relative_errors(v, ref), axis=1) for k, v in vals.items()}
    assert err["float32 throughout"][0] < 1e-3 and err["float32 throughout"][1] > 0.1
    assert err["float32 log-probs, summed in float64"][1] > 0.1
    assert err["logits cast to float64 first"].max() < 1e-5


# --------------------------------------------------------------------------- conditioning versus stability
def mp_relative_sensitivity(f, x):
    """sum_j |f(x + eta x_j e_j) - f(x)| / (eta |f(x)|): the componentwise condition number by perturbation."""
    eta = mpmath.mpf("1e-30")
    base = f(x)
    total = mpmath.mpf(0)
    for j in range(len(x)):
        y = list(x)
        y[j] = y[j] * (1 + eta)
        total += abs(f(y) - base)
    return float(total / (eta * abs(base)))


@pytest.mark.parametrize("params", [(0.0, 1.0, 0.0, 1.0 + 1e-6), (0.3, 2.0, 0.3, 2.0 * (1 - 1e-9)),
                                    (0.0, 1.0, 1e-9, 1.0), (1.0, 1.0, 1.0 + 1e-7, 1.0), (0.3, 1.2, -0.4, 0.9)])
def test_kl_normal_condition_matches_mpmath_perturbation(params):
    def kl(x):
        a, b, c, d = x
        return mpmath.log(d / b) + (b**2 + (a - c) ** 2) / (2 * d**2) - mpmath.mpf(1) / 2

    with mpmath.workdps(80):
        expected = mp_relative_sensitivity(kl, [mpmath.mpf(v) for v in params])
    assert nm.kl_normal_condition(*params) == pytest.approx(expected, rel=1e-8)


def test_kl_normal_condition_is_two_over_delta_per_width():
    """Chapter 5: for equal means and sigma1 = sigma0 (1 + delta) each width contributes 2/delta."""
    for delta in (1e-3, 1e-6, 1e-9):
        assert nm.kl_normal_condition(0.7, 1.5, 0.7, 1.5 * (1 + delta)) * delta == pytest.approx(4.0, rel=2e-3)
    assert nm.kl_normal_condition(0.0, 1.0, 1e-9, 1.0) == pytest.approx(4.0, rel=1e-12)  # equal widths, mu0 = 0
    assert nm.kl_normal_condition(0.5, 1.0, 0.5, 1.0) == math.inf
    with pytest.raises(ValueError):
        nm.kl_normal_condition(0.0, -1.0, 0.0, 1.0)


def test_kl_discrete_condition_matches_mpmath_perturbation():
    rng = np.random.default_rng(11)
    for delta in (1e-2, 1e-7):
        p, q = nm.dyadic_near_pair(delta, 12, rng)

        def kl(x):
            ps, qs = mpmath.fsum(x[:12]), mpmath.fsum(x[12:])
            return mpmath.fsum(a / ps * mpmath.log((a / ps) / (b / qs)) for a, b in zip(x[:12], x[12:], strict=True))

        with mpmath.workdps(80):
            expected = mp_relative_sensitivity(kl, [mpmath.mpf(v) for v in (*p, *q)])
        assert nm.kl_discrete_condition(p, q) == pytest.approx(expected, rel=1e-8)
        assert 0.5 / delta < nm.kl_discrete_condition(p, q) < 20 / delta
    assert math.isnan(nm.kl_discrete_condition([0.5, 0.5], [1.0, 0.0]))
    assert nm.kl_discrete_condition([[0.5, 0.5]], [[0.5, 0.5]])[0] == math.inf


def test_torch_is_backward_stable_near_equal_widths_and_the_textbook_is_not():
    """Error / (kappa u) at sigma ratio 1 +- delta: a few at most for torch.distributions, huge for the textbook."""
    deltas = (1e-4, 1e-8, 1e-12)
    ref, vals, params = nm.gaussian_sweep(deltas, n_draws=8, return_params=True)
    m0, s0, m1, s1 = params
    assert np.array_equal(m0, m1) and np.allclose(np.abs(s1 / s0 - 1), np.array(deltas)[:, None], rtol=1e-3)
    assert np.array_equal(nm.mp_kl_normal(*params), ref)
    kappa_u = nm.kl_normal_condition(*params) * EPS / 2
    ratio = {k: nm.relative_errors(v, ref) / kappa_u for k, v in vals.items()}
    assert np.max(ratio["torch.distributions (float64)"]) < 5
    assert np.median(ratio["textbook formula"][1:]) > 1e5


def test_torch_returns_zero_for_equal_widths_and_a_tiny_mean_gap():
    """A well-conditioned problem (kappa = 4) that torch.distributions gets 100 % wrong; kl_normal does not."""
    exact = nm.mp_kl_normal(0.0, 1.0, 1e-9, 1.0)
    assert exact == pytest.approx(5e-19, rel=1e-12)
    assert nm.torch_kl_normal(0.0, 1.0, 1e-9, 1.0).item() == 0.0
    assert kl_normal(0.0, 1.0, 1e-9, 1.0) == pytest.approx(exact, rel=1e-15)


# --------------------------------------------------------------------------- masked logits
def mp_kl_from_logits(zp, zq):
    """D(softmax(zp) || softmax(zq)) in mpmath; -inf logits are classes of probability 0."""
    with mpmath.workdps(50):
        def probs(z):
            e = [mpmath.mpf(0) if v == -math.inf else mpmath.exp(mpmath.mpf(v)) for v in z]
            s = mpmath.fsum(e)
            return [x / s for x in e]

        p, q = probs(zp), probs(zq)
        if any(a > 0 and b == 0 for a, b in zip(p, q, strict=True)):
            return math.inf
        return float(mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(p, q, strict=True) if a > 0))


def test_kl_from_logits_with_masked_classes_where_f_kl_div_gives_nan():
    import torch
    import torch.nn.functional as F

    ninf = -math.inf
    zp = torch.tensor([[1.0, 0.5, -0.5, ninf, ninf], [0.0, 2.0, ninf, 1.0, -1.0]], dtype=torch.float64)
    zq = torch.tensor([[0.2, 0.1, 0.0, ninf, 3.0], [0.5, 1.0, ninf, ninf, 0.0]], dtype=torch.float64,
                      requires_grad=True)
    # the old route: nan as soon as a class is masked in both
    assert torch.isnan(F.kl_div(torch.log_softmax(zq, -1), torch.softmax(zp, -1), reduction="none").sum(-1)).all()
    value = nm.kl_from_logits(zp, zq)
    assert value.shape == (2,)
    assert value[0].item() == pytest.approx(mp_kl_from_logits(zp[0].tolist(), zq[0].tolist()), rel=1e-13)
    assert value[1].item() == math.inf  # P allows class 4, which Q masks
    value[0].backward()
    assert torch.isfinite(zq.grad).all()
    # gradient: the same as for the unmasked sub-problem (classes 0-2 and 4 of row 0)
    keep = [0, 1, 2, 4]
    sub = zq.detach()[0, keep].clone().requires_grad_(True)
    p_sub = torch.softmax(zp[0, keep], -1)
    (p_sub * (torch.log(p_sub.clamp_min(1e-300)) - torch.log_softmax(sub, -1))).sum().backward()
    np.testing.assert_allclose(zq.grad[0, keep].numpy(), sub.grad.numpy(), rtol=1e-12, atol=1e-15)
    assert zq.grad[0, 3].item() == 0.0


def test_kl_from_logits_agrees_with_kl_divergence_and_rejects_bad_input():
    rng = np.random.default_rng(12)
    zp, zq = rng.normal(0, 2, (3, 7)), rng.normal(0, 2, (3, 7))
    expected = kl_divergence(softmax(zp, axis=-1), softmax(zq, axis=-1))
    np.testing.assert_allclose(nm.kl_from_logits(zp, zq).numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(nm.kl_from_logits(zp.T, zq.T, dim=0).numpy(), expected, rtol=1e-12)
    for bad in ((zp, zq[:, :6]), (np.full(3, np.nan), np.zeros(3)), (np.zeros(3), np.array([0.0, np.inf, 0.0])),
                (np.full(3, -np.inf), np.zeros(3)), (np.zeros(3), np.full(3, -np.inf))):
        with pytest.raises(ValueError):
            nm.kl_from_logits(*bad)


def test_rel_entr_error_stays_within_the_discrete_condition_number():
    ref, vals, (p, q) = nm.discrete_sweep((1e-3, 1e-7, 1e-11), n_draws=3, n_outcomes=20, return_params=True)
    kappa = nm.kl_discrete_condition(p.reshape(-1, 20), q.reshape(-1, 20)).reshape(ref.shape)
    ratio = {k: nm.relative_errors(v, ref) / (kappa * EPS / 2) for k, v in vals.items()}
    assert np.max(ratio["SciPy rel_entr(p, q).sum()"]) < 10
    assert np.median(ratio["textbook sum(p log(p/q))"][1:]) > 1e3


# --------------------------------------------------------------------------- float16 and bfloat16
def test_unit_roundoffs_are_the_measured_largest_rounding_errors():
    x = torch.from_numpy(np.random.default_rng(1).uniform(1.0, 2.0, 100_000))
    for dtype in nm.LOW_PRECISION_DTYPES[1:]:
        measured = float(((x.to(getattr(torch, dtype)).double() - x).abs() / x).max())
        assert 0.98 * nm.unit_roundoff(dtype) < measured <= nm.unit_roundoff(dtype)
    assert nm.unit_roundoff("float64") == 2.0**-53
    with pytest.raises(ValueError):
        nm.unit_roundoff("int8")


def test_low_precision_references_agree_with_mpmath_and_autograd():
    # float64 errors are tiny against a 50-digit reference: the float64 reference is trustworthy
    errs = nm.low_precision_errors(deltas=(0.1,), dtypes=("float64",), n_classes=50, n_draws=2, seed=3)
    assert np.all(errs[("float64", 0.1)]["log-space"] < 1e-12)
    rng = np.random.default_rng(3)
    for _ in range(2):  # the reference route, kl_divergence of float64 softmaxes, against 50 digits
        zp = 2 * rng.standard_normal(50)
        zq = zp + 0.1 * rng.standard_normal(50)
        p, q = (np.exp(z - logsumexp(z)) for z in (zp, zq))
        reference = float(nm.mp_kl_discrete(p, q))
        assert kl_divergence(p, q, normalize=True) == pytest.approx(reference, rel=1e-12)
        # the gradient of D(P || softmax(z_q)) in z_q is q - p: check by autograd in float64
        zq_t = torch.tensor(zq, requires_grad=True)
        lp, lq = torch.log_softmax(torch.tensor(zp), -1), torch.log_softmax(zq_t, -1)
        (lp.exp() * (lp - lq)).sum().backward()
        np.testing.assert_allclose(zq_t.grad.numpy(), q - p, atol=1e-15)


def test_half_precision_gradient_outlives_the_value():
    errs = nm.low_precision_errors(deltas=(0.01,), dtypes=("bfloat16", "float16"), n_classes=500, n_draws=4)
    for dtype in ("bfloat16", "float16"):
        e = errs[(dtype, 0.01)]
        assert np.median(e["log-space"]) > 10 * np.median(e["gradient"])


# --------------------------------------------------------------------------- two condition numbers, backward stability
def test_kl_discrete_condition_unconstrained_matches_mpmath_perturbation():
    """kappa_F of the raw formula sum p log(p/q) (no renormalisation), by perturbing each of the 2n entries."""
    rng = np.random.default_rng(12)
    for delta in (1e-2, 1e-7):
        p, q = nm.dyadic_near_pair(delta, 12, rng)

        def formula(x):
            return mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(x[:12], x[12:], strict=True))

        with mpmath.workdps(80):
            expected = mp_relative_sensitivity(formula, [mpmath.mpf(v) for v in (*p, *q)])
        kappa_f = nm.kl_discrete_condition(p, q, perturbation="unconstrained")
        assert kappa_f == pytest.approx(expected, rel=1e-8)
        assert 0.5 / delta**2 < kappa_f < 50 / delta**2  # grows like 1/delta^2, not 1/delta
    with pytest.raises(ValueError, match="perturbation"):
        nm.kl_discrete_condition([0.5, 0.5], [0.4, 0.6], perturbation="relative")


def test_condition_numbers_near_p_follow_chi_square_and_total_variation():
    """Chapter 5: D ~ chi^2/2, kappa_F ~ 4/chi^2, kappa_simplex ~ 8 TV/chi^2 as q -> p (chi^2, TV computed here)."""
    rng = np.random.default_rng(3)
    for _ in range(3):
        p, q = nm.dyadic_near_pair(1e-6, 20, rng)
        pf, qf = [Fraction(a) for a in p], [Fraction(b) for b in q]
        chi2 = float(sum((b - a) ** 2 / a for a, b in zip(pf, qf, strict=True)))
        tv = float(sum(abs(b - a) for a, b in zip(pf, qf, strict=True)) / 2)
        assert nm.mp_kl_discrete(p, q) / (chi2 / 2) == pytest.approx(1.0, abs=1e-4)
        assert nm.kl_discrete_condition(p, q, perturbation="unconstrained") * chi2 / 4 == pytest.approx(1.0, abs=1e-4)
        assert nm.kl_discrete_condition(p, q) * chi2 / (8 * tv) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("perturbation", ["simplex", "unconstrained"])
def test_perturbation_amplification_is_bounded_by_and_attains_kappa(perturbation):
    for delta in (1e-1, 1e-5):
        p, q = nm.dyadic_near_pair(delta, 15, np.random.default_rng(4))
        kappa = nm.kl_discrete_condition(p, q, perturbation=perturbation)
        random, aligned = nm.kl_perturbation_amplification(p, q, perturbation, n_draws=30, seed=1)
        assert random.shape == (30,)
        assert np.all(random <= kappa * (1 + 1e-9))
        assert np.median(random) < 0.9 * kappa  # random corners are not the worst case
        assert aligned == pytest.approx(kappa, rel=1e-9)


def test_perturbation_amplification_rejects_bad_input():
    p, q = [0.5, 0.5], [0.4, 0.6]
    for kwargs in ({"perturbation": "free"}, {"size": 0.0}, {"size": 1e-3}, {"n_draws": 0}):
        with pytest.raises(ValueError):
            nm.kl_perturbation_amplification(p, q, **kwargs)
    with pytest.raises(ValueError):
        nm.kl_perturbation_amplification([0.5, 0.5], [1.0, 0.0])
    with pytest.raises(ValueError):
        nm.kl_perturbation_amplification([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="equal"):
        nm.kl_perturbation_amplification(p, p)


def test_backward_stability_classes_of_the_routes():
    """The textbook sum is backward stable only off the simplex; rel_entr and klcourse in both classes."""
    rng = np.random.default_rng(5)
    pairs = [nm.dyadic_near_pair(d, 30, rng) for d in (1e-3, 1e-6, 1e-9) for _ in range(3)]
    p, q = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    ref = nm.mp_kl_discrete(p, q)
    rows = {r["route"]: r for r in nm.backward_stability_rows(
        p, q, ref, nm.kl_discrete_condition(p, q), nm.kl_discrete_condition(p, q, perturbation="unconstrained"))}
    assert set(rows) == set(nm.BACKWARD_ROUTES)
    textbook = rows["textbook np.sum(p * np.log(p / q))"]
    assert textbook["stable_unconstrained"] and not textbook["stable_simplex"]
    assert textbook["max_simplex"] > 1e5
    for name in ("SciPy rel_entr(p, q).sum()", "klcourse.kl_divergence"):
        assert rows[name]["stable_simplex"] and rows[name]["stable_unconstrained"]
    # the ratio is the relative error over kappa u, recomputed here for the textbook route
    err = np.abs(np.sum(p * np.log(p / q), axis=-1) - ref) / ref
    assert textbook["max_simplex"] == pytest.approx(np.max(err / (nm.kl_discrete_condition(p, q) * EPS / 2)))
    with pytest.raises(ValueError):
        nm.backward_stability_rows(p, q, ref, np.ones(2), np.ones(2))


def test_backward_stability_flags_pairs_beyond_first_order():
    """A negative value on the simplex, or ratio * u >= delta, is not read as a backward error."""
    rng = np.random.default_rng(7)
    pairs = [nm.dyadic_near_pair(d, 30, rng) for d in (1e-4, 1e-12, 1e-13) for _ in range(4)]
    p, q = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    ref = nm.mp_kl_discrete(p, q)
    ks, kf = nm.kl_discrete_condition(p, q), nm.kl_discrete_condition(p, q, perturbation="unconstrained")
    delta = np.max(np.abs(q / p - 1), axis=-1)
    routes = {"negative": lambda a, b: -ref, "off by 2 delta": lambda a, b: ref * (1 + 2 * delta),
              "exact": lambda a, b: ref.copy(),
              "textbook": lambda a, b: np.sum(a * np.log(a / b), axis=-1)}
    rows = {r["route"]: r for r in nm.backward_stability_rows(p, q, ref, ks, kf, routes=routes)}
    assert rows["negative"]["negative"] == rows["negative"]["beyond_simplex"] == ref.size
    assert not rows["negative"]["stable_simplex"]
    # relative error 2 delta against kappa = 1: ratio * u = 2 delta >= delta in both classes
    ones = np.ones_like(ref)
    off = nm.backward_stability_rows(p, q, ref, ones, ones, routes={"o": routes["off by 2 delta"]})[0]
    assert off["beyond_simplex"] == off["beyond_unconstrained"] == ref.size and off["negative"] == 0
    assert rows["exact"]["beyond_simplex"] == 0 and rows["exact"]["stable_simplex"]
    textbook = np.sum(p * np.log(p / q), axis=-1)
    expected = np.sum((textbook < 0) | (np.abs(textbook - ref) / ref / ks >= delta))
    assert rows["textbook"]["beyond_simplex"] == expected > 0
    out = nm.backward_stability_html(list(rows.values()))
    assert "beyond first order" in out and "forward error / (κ<sub>Δ</sub> u)" in out


@pytest.mark.parametrize("r", [1e-15, -3e-12, 2e-8, -1e-4, 0.1, -0.25, 0.25, 0.3, -0.9, 5.0, 1e3])
def test_torch_r_minus_log1p_value_and_gradient_match_mpmath(r):
    x = torch.tensor([r], dtype=torch.float64, requires_grad=True)
    value = nm.torch_r_minus_log1p(x)
    (grad,) = torch.autograd.grad(value.sum(), x)
    value = value.detach()
    with mpmath.workdps(50):
        rm = mpmath.mpf(r)
        exact, exact_grad = rm - mpmath.log1p(rm), rm / (1 + rm)
    assert float(value) == pytest.approx(float(exact), rel=8 * EPS)
    assert float(grad) == pytest.approx(float(exact_grad), rel=8 * EPS)


def test_torch_r_minus_log1p_rejects_and_agrees_with_numpy():
    with pytest.raises(ValueError):
        nm.torch_r_minus_log1p(torch.tensor([-1.5], dtype=torch.float64))
    r = np.linspace(-0.99, 3.0, 401)
    assert np.allclose(nm.torch_r_minus_log1p(torch.from_numpy(r)).numpy(), nm.r_minus_log1p(r), rtol=8 * EPS, atol=0)


def test_softmax_gradients_stay_at_the_rounding_floor_where_textbook_values_do_not():
    res = nm.softmax_value_gradient_errors((1e-2, 1e-9), n_draws=3, n_classes=20, seed=2)
    kappa_u = res["kappa_simplex"] * EPS / 2
    assert np.all(res["value_floor"] <= kappa_u) and np.all(res["gradient_floor"] < 1e-5)
    for route in nm.VALUE_GRADIENT_ROUTES:
        assert np.all(res["gradient"][route] <= 10 * np.maximum(res["gradient_floor"], EPS))
    textbook = res["value"][nm.VALUE_GRADIENT_ROUTES[0]]
    stable = res["value"][nm.VALUE_GRADIENT_ROUTES[2]]
    assert np.median(textbook[1]) > 1e-2 and np.all(stable <= 10 * np.maximum(res["value_floor"], EPS))
    with pytest.raises(ValueError):
        nm.softmax_value_gradient_errors((1e-2, 0.0))


def test_condition_experiment_records_kappa_attained_and_exact_chi2_tv():
    deltas = (1e-2, 1e-5)
    res = nm.condition_experiment(deltas, n_pairs=3, n_outcomes=10, n_draws=8, seed=7)
    for kind in ("simplex", "unconstrained"):
        r = res[kind]
        assert all(a.shape == (2, 3) for a in r.values())
        assert np.allclose(r["aligned"], r["kappa"], rtol=1e-9)
        assert np.all(r["median_random"] <= r["max_random"]) and np.all(r["max_random"] <= r["kappa"] * (1 + 1e-9))
    # the same pairs, rebuilt from the same stream: chi^2 and TV by plain float arithmetic
    rng = np.random.default_rng(7)
    for i, delta in enumerate(deltas):
        for j in range(3):
            p, q = nm.dyadic_near_pair(delta, 10, rng)
            rng.integers(2**31), rng.integers(2**31)  # the two seeds drawn for the perturbations
            assert res["chi2"][i, j] == pytest.approx(np.sum((q - p) ** 2 / p), rel=1e-12)
            assert res["tv"][i, j] == pytest.approx(np.sum(np.abs(q - p)) / 2, rel=1e-12)
            assert res["kl"][i, j] == pytest.approx(nm.mp_kl_discrete(p, q), rel=1e-15)
    with pytest.raises(ValueError):
        nm.condition_experiment((1e-2, -1.0))


def test_backward_stability_html_says_yes_and_no():
    rows = [{"route": "a <b>", "median_simplex": 1e5, "max_simplex": 1e9, "median_unconstrained": 0.1,
             "max_unconstrained": 0.5, "stable_simplex": False, "stable_unconstrained": True}]
    out = nm.backward_stability_html(rows)
    assert "a &lt;b&gt;" in out and "<td>no</td>" in out and "<td>yes</td>" in out and "1.0e+09" in out
