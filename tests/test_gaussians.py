"""kl_normal, kl_diag_normal, kl_mvn against independent routes.

References: mpmath at 60 digits on the exact float64 inputs (the stress set), scipy
quadrature of p log(p/q), Monte Carlo, torch.distributions, the eigendecomposition route,
and hypothesis properties.  Tolerances are the accuracy the module promises, not slack.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
import scipy.integrate
import scipy.stats
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from klcourse import kl_diag_normal, kl_mvn, kl_normal

EPS = np.finfo(np.float64).eps
DPS = 60


# --------------------------------------------------------------------------- references
def mp_kl_normal(m0, s0, m1, s1):
    """Textbook formula in multiprecision on the exact float64 inputs.

    The formula cancels terms of size ~1 down to the answer, so the working precision is
    raised until at least 40 significant digits of the answer survive.
    """
    for dps in (DPS, 150, 400, 1000):
        with mp.workdps(dps):
            m0_, s0_, m1_, s1_ = (mp.mpf(float(v)) for v in (m0, s0, m1, s1))
            log_term = mp.log(s1_ / s0_)
            quad_term = (s0_**2 + (m0_ - m1_) ** 2) / (2 * s1_**2)
            value = log_term + quad_term - mp.mpf(1) / 2
            identical = m0_ == m1_ and s0_ == s1_
            if identical or abs(value) > (abs(log_term) + quad_term) * mp.mpf(10) ** (40 - dps):
                return +value
    return mp.mpf(0)  # below 1e-950: zero in float64 anyway


def mp_kl_mvn(m0, c0, m1, c1):
    """Textbook formula (inverse, determinants) in multiprecision, precision raised until
    at least 40 significant digits of the answer survive the cancellation."""
    d = len(m0)
    for dps in (DPS, 150, 400):
        with mp.workdps(dps):
            a0, a1 = mp.matrix(c0.tolist()), mp.matrix(c1.tolist())
            dm = mp.matrix((np.asarray(m1) - np.asarray(m0)).tolist())
            inv1 = mp.inverse(a1)
            trace = mp.fsum((inv1 * a0)[i, i] for i in range(d))
            quad = (dm.T * inv1 * dm)[0, 0]
            logdet = mp.log(mp.det(a1)) - mp.log(mp.det(a0))
            value = (trace + quad - d + logdet) / 2
            size = abs(trace) + abs(quad) + d + abs(logdet)
            identical = np.array_equal(c0, c1) and np.array_equal(m0, m1)
            if identical or abs(value) > size * mp.mpf(10) ** (40 - dps):
                return float(value)
    raise AssertionError("mpmath reference did not converge")


def eigen_kl_mvn(m0, c0, m1, c1):
    """Independent route: eigendecomposition of cov1."""
    w1, v1 = np.linalg.eigh(c1)
    w0 = np.linalg.eigvalsh(c0)
    b = v1.T @ c0 @ v1
    z = v1.T @ (m1 - m0)
    return 0.5 * (np.sum(np.diag(b) / w1) + np.sum(z**2 / w1) - len(m0) + np.sum(np.log(w1)) - np.sum(np.log(w0)))


def relative_error(value, ref):
    ref = float(ref)
    if ref == 0:
        return 0.0 if value == 0 else math.inf
    return abs(float(value) - ref) / ref


def stress_pairs(n_per_group=200, seed=0):
    """Hard (mu0, sigma0, mu1, sigma1) pairs: sigma ratios up to e^+-20, sigma1 = sigma0(1+eps)
    with |eps| down to 1e-16, mean gaps from 1e-12 to 1e8 sigma, identical pairs."""
    rng = np.random.default_rng(seed)
    k = n_per_group
    sign = rng.choice([-1.0, 1.0], (5, k))
    s0 = np.exp(rng.uniform(-20, 20, (5, k)))
    m0 = rng.normal(0, 1, (5, k)) * s0
    s1 = s0 * np.exp(rng.uniform(-20, 20, (5, k)))
    m1 = m0 + s1 * rng.normal(0, 1, (5, k))
    s1[1] = s0[1] * (1 + sign[1] * 10 ** rng.uniform(-16, -6, k))  # nearly identical sigmas
    m1[1] = m0[1] + rng.choice([0.0, 1.0], k) * s0[1] * 10 ** rng.uniform(-12, -6, k)
    s1[2] = s0[2]  # equal sigmas, mean gap down to 1e-12 sigma
    m1[2] = m0[2] + sign[2] * s0[2] * 10 ** rng.uniform(-12, 0, k)
    m1[3] = m0[3] + sign[3] * s1[3] * 10 ** rng.uniform(2, 8, k)  # large mean gaps
    s1[4] = s0[4] * np.exp(sign[4] * 10 ** rng.uniform(-8, 0, k))  # |log ratio| 1e-8..1
    edge = np.array(
        [
            [0.0, 1.0, 0.0, 1.0],
            [0.0, 1.0, 0.0, 1.0 + 1e-12],
            [0.0, 1.0 + 1e-12, 0.0, 1.0],
            [0.0, 1.0, 1e-12, 1.0],
            [3.0, 2.0, 3.0, np.nextafter(2.0, 3.0)],
            [0.0, 1.0, 0.0, np.exp(20.0)],
            [0.0, np.exp(20.0), 0.0, 1.0],
            [0.0, 1e-300, 0.0, 1e300],
            [1e10, 1e-3, -1e10, 1e-3],
        ]
    )
    cols = [np.concatenate([a.ravel(), edge[:, i]]) for i, a in enumerate((m0, s0, m1, s1))]
    return tuple(cols)


# -------------------------------------------------------------------------- kl_normal
def test_kl_normal_matches_mpmath_on_stress_set():
    params = stress_pairs()
    values = kl_normal(*params)
    errors = [relative_error(v, mp_kl_normal(*p)) for v, p in zip(values, zip(*params, strict=True), strict=True)]
    assert max(errors) <= 1e-14
    assert np.all(values >= 0)


def test_kl_normal_stress_set_really_is_hard_for_the_textbook_formula():
    # Guards the test above: the stress set must defeat the naive formula.
    m0, s0, m1, s1 = stress_pairs()
    with np.errstate(over="ignore"):
        naive = np.log(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5
    assert np.any(naive < 0)
    ref = np.array([float(mp_kl_normal(*p)) for p in zip(m0, s0, m1, s1, strict=True)])
    with np.errstate(divide="ignore", invalid="ignore"):
        assert np.nanmax(np.abs(naive - ref) / ref) > 1.0


def test_kl_normal_identical_parameters_give_exact_zero():
    rng = np.random.default_rng(1)
    mu, sigma = rng.normal(0, 1e3, 500), np.exp(rng.uniform(-30, 30, 500))
    assert np.all(kl_normal(mu, sigma, mu, sigma) == 0.0)


def test_kl_normal_known_value_and_scalar_type():
    value = kl_normal(0.0, 1.0, 1.0, 2.0)
    assert isinstance(value, float)
    assert math.isclose(value, math.log(2) + 2 / 8 - 0.5, rel_tol=1e-15)


def test_kl_normal_broadcasts():
    mu0 = np.linspace(-1, 1, 3)[:, None]
    sigma1 = np.array([0.5, 1.0, 2.0, 4.0])
    out = kl_normal(mu0, 1.0, 0.0, sigma1)
    assert out.shape == (3, 4)
    assert out[2, 3] == kl_normal(1.0, 1.0, 0.0, 4.0)


@pytest.mark.parametrize(("mu0", "s0", "mu1", "s1"), [(0, 1, 1, 2), (0.3, 0.5, -1, 1.5), (2, 3, 0, 1)])
def test_kl_normal_matches_quadrature(mu0, s0, mu1, s1):
    p, q = scipy.stats.norm(mu0, s0), scipy.stats.norm(mu1, s1)
    integrand = lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x))  # noqa: E731
    value, err = scipy.integrate.quad(integrand, mu0 - 40 * s0, mu0 + 40 * s0, limit=200)
    assert abs(kl_normal(mu0, s0, mu1, s1) - value) <= 1e-9 * value + 10 * err


def test_kl_normal_matches_monte_carlo():
    rng = np.random.default_rng(0)
    mu0, s0, mu1, s1 = 0.5, 1.3, -0.2, 0.8
    x = rng.normal(mu0, s0, 200_000)
    log_ratio = scipy.stats.norm.logpdf(x, mu0, s0) - scipy.stats.norm.logpdf(x, mu1, s1)
    se = log_ratio.std() / math.sqrt(x.size)
    assert abs(kl_normal(mu0, s0, mu1, s1) - log_ratio.mean()) < 5 * se


def test_kl_normal_matches_torch_distributions():
    rng = np.random.default_rng(2)
    m0, m1 = rng.normal(0, 2, (2, 300))
    s0, s1 = np.exp(rng.uniform(-2, 2, (2, 300)))
    p = torch.distributions.Normal(torch.from_numpy(m0), torch.from_numpy(s0))
    q = torch.distributions.Normal(torch.from_numpy(m1), torch.from_numpy(s1))
    expected = torch.distributions.kl_divergence(p, q).numpy()
    np.testing.assert_allclose(kl_normal(m0, s0, m1, s1), expected, rtol=1e-12)


means = st.floats(-1e6, 1e6, allow_nan=False)
sigmas = st.floats(1e-6, 1e6, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(means, sigmas, means, sigmas)
def test_kl_normal_properties(mu0, s0, mu1, s1):
    value = kl_normal(mu0, s0, mu1, s1)
    assert value >= 0
    assert kl_normal(mu0, s0, mu0, s0) == 0.0
    if s0 != s1:  # the variance part alone is > 0 (a mean-gap part may underflow)
        assert value > 0


@settings(max_examples=100, deadline=None)
@given(means, sigmas, means, sigmas, st.integers(-30, 30))
def test_kl_normal_is_invariant_to_exact_rescaling(mu0, s0, mu1, s1, k):
    # scaling by 2**k is exact in floating point, so the answer must not move by one bit
    a = 2.0**k
    assert kl_normal(a * mu0, a * s0, a * mu1, a * s1) == kl_normal(mu0, s0, mu1, s1)


small_means = st.floats(-10, 10)
small_sigmas = st.floats(0.1, 10)
scales = st.floats(-10, 10).filter(lambda a: abs(a) > 0.1)


@settings(max_examples=100, deadline=None)
@given(small_means, small_sigmas, small_means, small_sigmas, scales, small_means)
def test_kl_normal_is_invariant_to_common_affine_map(mu0, s0, mu1, s1, a, b):
    mapped = (a * mu0 + b, abs(a) * s0, a * mu1 + b, abs(a) * s1)
    # the mapped floats are rounded, so allow for that rounding (1e-15 relative inputs) ...
    assert math.isclose(kl_normal(*mapped), kl_normal(mu0, s0, mu1, s1), rel_tol=1e-9, abs_tol=1e-12)
    # ... and check the mapped value itself at full accuracy against mpmath
    ref = float(mp_kl_normal(*mapped))
    assert abs(kl_normal(*mapped) - ref) <= 1e-14 * ref + 1e-300  # (subnormal results: absolute)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 0, 0, 1), "sigma0"),
        ((0, 1, 0, -1), "sigma1"),
        ((np.nan, 1, 0, 1), "NaN"),
        ((0, 1, np.inf, 1), "inf"),
        ((0, 1, 0, np.inf), "inf"),
        (([0, 1], 1, [0, 1, 2], 1), "shape mismatch"),
        (("a", 1, 0, 1), "numeric"),
    ],
)
def test_kl_normal_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=message):
        kl_normal(*args)


# ---------------------------------------------------------------------- kl_diag_normal
def test_kl_diag_normal_matches_mpmath_sums():
    params = [a.reshape(-1)[:1000].reshape(-1, 8) for a in stress_pairs()]
    values = kl_diag_normal(*params)
    for row, value in enumerate(values):
        with mp.workdps(DPS):
            ref = mp.fsum(mp_kl_normal(*(a[row, j] for a in params)) for j in range(8))
        assert relative_error(value, ref) <= 1e-14


def test_kl_diag_normal_axis_and_sum_of_univariate():
    rng = np.random.default_rng(3)
    m0, m1 = rng.normal(size=(2, 4, 5))
    s0, s1 = np.exp(rng.normal(size=(2, 4, 5)))
    per_coordinate = kl_normal(m0, s0, m1, s1)
    np.testing.assert_allclose(kl_diag_normal(m0, s0, m1, s1), per_coordinate.sum(-1), rtol=1e-15)
    np.testing.assert_allclose(kl_diag_normal(m0, s0, m1, s1, axis=0), per_coordinate.sum(0), rtol=1e-15)
    assert isinstance(kl_diag_normal(m0[0], s0[0], m1[0], s1[0]), float)
    assert kl_diag_normal(m0, s0, m0, s0).tolist() == [0.0] * 4


def test_kl_diag_normal_matches_torch_independent_normals():
    rng = np.random.default_rng(4)
    m0, m1 = rng.normal(size=(2, 6, 3))
    s0, s1 = np.exp(rng.normal(size=(2, 6, 3)))
    t = [torch.from_numpy(a) for a in (m0, s0, m1, s1)]
    p = torch.distributions.Independent(torch.distributions.Normal(t[0], t[1]), 1)
    q = torch.distributions.Independent(torch.distributions.Normal(t[2], t[3]), 1)
    np.testing.assert_allclose(kl_diag_normal(m0, s0, m1, s1), torch.distributions.kl_divergence(p, q), rtol=1e-12)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0.0, 1.0, 0.0, 1.0), {}, "at least 1-D"),
        (([0.0], [1.0], [0.0], [1.0]), {"axis": 1}, "axis"),
        (([0.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0]), {}, "sigma0"),
    ],
)
def test_kl_diag_normal_rejects_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        kl_diag_normal(*args, **kwargs)


# ------------------------------------------------------------------------------ kl_mvn
def random_spd(rng, d, cond):
    """SPD matrix with condition number ``cond`` (eigenvalues log-spaced, random basis)."""
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    eig = np.logspace(0, -math.log10(cond), d)
    rng.shuffle(eig)
    cov = (q * eig) @ q.T
    return (cov + cov.T) / 2


@pytest.mark.parametrize("cond", [1.0e0, 1e4, 1e8])
def test_kl_mvn_matches_mpmath(cond):
    rng = np.random.default_rng(5)
    for d in (2, 7):
        c0, c1 = random_spd(rng, d, cond), random_spd(rng, d, cond)
        m0 = rng.standard_normal(d)
        m1 = m0 + 0.1 * rng.standard_normal(d)
        error = relative_error(kl_mvn(m0, c0, m1, c1), mp_kl_mvn(m0, c0, m1, c1))
        # backward-stable Cholesky: error ~ d * condition number * eps (measured 1e-9 at 1e8)
        assert error <= max(4 * d * np.linalg.cond(c1) * EPS, 1e-14)


def test_kl_mvn_matches_eigen_route_and_torch():
    rng = np.random.default_rng(6)
    for d in (1, 3, 20):
        c0, c1 = random_spd(rng, d, 50.0), random_spd(rng, d, 50.0) * 2
        m0, m1 = rng.standard_normal((2, d))
        value = kl_mvn(m0, c0, m1, c1)
        assert math.isclose(value, eigen_kl_mvn(m0, c0, m1, c1), rel_tol=1e-11)
        tm = [torch.from_numpy(a) for a in (m0, c0, m1, c1)]
        p = torch.distributions.MultivariateNormal(tm[0], covariance_matrix=tm[1])
        q = torch.distributions.MultivariateNormal(tm[2], covariance_matrix=tm[3])
        assert math.isclose(value, float(torch.distributions.kl_divergence(p, q)), rel_tol=1e-11)


def test_kl_mvn_matches_monte_carlo():
    rng = np.random.default_rng(7)
    c0, c1 = random_spd(rng, 3, 10.0), random_spd(rng, 3, 10.0)
    m0, m1 = np.zeros(3), np.array([0.3, -0.2, 0.1])
    x = rng.multivariate_normal(m0, c0, 200_000)
    log_ratio = scipy.stats.multivariate_normal(m0, c0).logpdf(x) - scipy.stats.multivariate_normal(m1, c1).logpdf(x)
    se = log_ratio.std() / math.sqrt(len(x))
    assert abs(kl_mvn(m0, c0, m1, c1) - log_ratio.mean()) < 5 * se


def test_kl_mvn_reduces_to_univariate_and_diagonal_cases():
    assert kl_mvn([0.5], [[4.0]], [1.0], [[0.25]]) == kl_normal(0.5, 2.0, 1.0, 0.5)
    rng = np.random.default_rng(8)
    m0, m1 = rng.normal(size=(2, 6))
    s0, s1 = np.exp(rng.normal(size=(2, 6)))
    expected = kl_diag_normal(m0, s0, m1, s1)
    assert math.isclose(kl_mvn(m0, np.diag(s0**2), m1, np.diag(s1**2)), expected, rel_tol=1e-14)


@pytest.mark.parametrize("d", [1, 5, 150])
def test_kl_mvn_of_identical_distributions_is_exactly_zero(d):
    rng = np.random.default_rng(9)
    cov = random_spd(rng, d, 1e6)
    mu = rng.standard_normal(d)
    assert kl_mvn(mu, cov, mu, cov.copy()) == 0.0


@pytest.mark.parametrize("cond", [1.0e0, 1e3, 1e8])
@pytest.mark.parametrize(
    ("delta", "kind"), [(1e-12, "entrywise"), (1e-12, "congruent"), (1e-6, "congruent"), (3e-2, "congruent")]
)
def test_kl_mvn_nearly_identical_keeps_relative_accuracy(cond, delta, kind):
    # Cholesky factors alone would give ~1e-4 relative error at delta = 1e-12
    rng = np.random.default_rng(10)
    d = 6
    c0 = random_spd(rng, d, cond)
    noise = rng.standard_normal((d, d))
    noise = (noise + noise.T) / 2
    if kind == "entrywise":  # every entry moved by a relative 1e-12
        c1 = c0 * (1 + delta * noise)
    else:  # c1 = L0 (I + delta E) L0^T stays SPD at any condition number
        l0 = np.linalg.cholesky(c0)
        c1 = c0 + delta * l0 @ noise @ l0.T / np.sqrt(d)
        c1 = (c1 + c1.T) / 2
    m0 = rng.standard_normal(d)
    value, ref = kl_mvn(m0, c0, m0, c1), mp_kl_mvn(m0, c0, m0, c1)
    assert 0 < value
    assert relative_error(value, ref) <= max(4 * d * np.linalg.cond(c1) * EPS, 1e-14)


def test_kl_mvn_batches_over_leading_dimensions():
    rng = np.random.default_rng(11)
    covs = np.stack([random_spd(rng, 4, 10.0) for _ in range(3)])
    mus = rng.standard_normal((3, 4))
    mu1, cov1 = rng.standard_normal(4), random_spd(rng, 4, 10.0)
    batch = kl_mvn(mus, covs, mu1, cov1)
    assert batch.shape == (3,)
    for i in range(3):
        assert math.isclose(batch[i], kl_mvn(mus[i], covs[i], mu1, cov1), rel_tol=1e-14)
    reverse = kl_mvn(mu1, cov1, mus, covs)
    for i in range(3):
        assert math.isclose(reverse[i], kl_mvn(mu1, cov1, mus[i], covs[i]), rel_tol=1e-14)
    assert np.all(kl_mvn(mus, covs, mus, covs) == 0.0)


def test_kl_mvn_bad_input():
    eye = np.eye(2)
    not_spd = np.array([[1.0, 2.0], [2.0, 1.0]])
    with pytest.raises(ValueError, match="cov1 is not symmetric positive definite"):
        kl_mvn([0, 0], eye, [0, 0], not_spd)
    with pytest.raises(ValueError, match="cov0 is not symmetric positive definite"):
        kl_mvn([0, 0], np.zeros((2, 2)), [0, 0], eye)
    with pytest.raises(ValueError, match="not symmetric"):
        kl_mvn([0, 0], eye, [0, 0], np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="square"):
        kl_mvn([0, 0], np.ones((2, 3)), [0, 0], eye)
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_mvn([0, 0, 0], eye, [0, 0], eye)
    with pytest.raises(ValueError, match="dimension mismatch"):
        kl_mvn([0, 0], eye, [0, 0, 0], np.eye(3))
    with pytest.raises(ValueError, match="NaN"):
        kl_mvn([0, np.nan], eye, [0, 0], eye)
    with pytest.raises(ValueError, match="inf"):
        kl_mvn([0, 0], eye, [0, 0], np.array([[np.inf, 0.0], [0.0, 1.0]]))


# ------------------------------------------------------------ kl_mvn's two routes (issue 9, item 2)
def congruent_pair(rng, d, cond, delta):
    """cov1 with condition number ``cond`` and cov0 = cov1 + delta L1 E L1^T, ||E||_2 = 1 (SPD for delta < 1)."""
    c1 = random_spd(rng, d, cond)
    l1 = np.linalg.cholesky(c1)
    e = rng.standard_normal((d, d))
    e = (e + e.T) / 2
    e /= np.linalg.norm(e, 2)
    c0 = c1 + delta * l1 @ e @ l1.T
    return (c0 + c0.T) / 2, c1


@pytest.mark.parametrize("method", ["auto", "cholesky", "eig"])
@pytest.mark.parametrize("cond", [1.0, 1e4, 1e8])
def test_kl_mvn_every_method_matches_mpmath_on_unrelated_pairs(method, cond):
    rng = np.random.default_rng(12)
    for d in (2, 5):
        c0, c1 = random_spd(rng, d, cond), random_spd(rng, d, cond)
        m0 = rng.standard_normal(d)
        m1 = m0 + 0.1 * rng.standard_normal(d)
        error = relative_error(kl_mvn(m0, c0, m1, c1, method=method), mp_kl_mvn(m0, c0, m1, c1))
        assert error <= max(4 * d * np.linalg.cond(c1) * EPS, 1e-14)


def test_kl_mvn_cholesky_route_alone_loses_digits_on_nearly_equal_covariances():
    """The chapter's claim: (3.12) alone is not what makes kl_mvn accurate for nearly equal pairs."""
    rng = np.random.default_rng(13)
    chol_errors, eig_errors, auto_errors = [], [], []
    for _ in range(4):
        c0, c1 = congruent_pair(rng, 6, 10.0, 1e-12)
        m = np.zeros(6)
        ref = mp_kl_mvn(m, c0, m, c1)
        chol_errors.append(relative_error(kl_mvn(m, c0, m, c1, method="cholesky"), ref))
        eig_errors.append(relative_error(kl_mvn(m, c0, m, c1, method="eig"), ref))
        auto_errors.append(relative_error(kl_mvn(m, c0, m, c1), ref))
    assert min(chol_errors) > 1e-7  # measured 1e-5 .. 1e-3
    assert max(eig_errors) < 1e-14 and max(auto_errors) < 1e-14  # measured ~3e-16


def test_kl_mvn_auto_switches_to_the_eigenvalue_route_below_near_kl():
    from klcourse.gaussians import NEAR_KL

    rng = np.random.default_rng(14)
    m0, m1 = np.zeros(4), np.full(4, 3.0)  # a large mean part must not affect the switch
    used = {}
    for delta in (0.9, 0.5, 0.2, 0.05, 1e-3, 1e-8):
        c0, c1 = congruent_pair(rng, 4, 100.0, delta)
        chol, eig, auto = (kl_mvn(m0, c0, m1, c1, method=m) for m in ("cholesky", "eig", "auto"))
        cov_part = kl_mvn(m0, c0, m0, c1, method="cholesky")  # what auto compares with NEAR_KL
        if cov_part < NEAR_KL:
            assert auto == eig
            used[delta] = "eig"
        else:
            assert auto == chol
            used[delta] = "cholesky"
    assert set(used.values()) == {"eig", "cholesky"}  # both branches were exercised


@pytest.mark.parametrize("method", ["auto", "cholesky", "eig"])
def test_kl_mvn_every_method_gives_exact_zero_and_batches(method):
    rng = np.random.default_rng(15)
    covs = np.stack([random_spd(rng, 3, 10.0) for _ in range(4)])
    mus = rng.standard_normal((4, 3))
    assert np.all(kl_mvn(mus, covs, mus, covs, method=method) == 0.0)
    cov1 = random_spd(rng, 3, 10.0)
    batch = kl_mvn(mus, covs, mus[0], cov1, method=method)
    single = [kl_mvn(mus[i], covs[i], mus[0], cov1, method=method) for i in range(4)]
    np.testing.assert_allclose(batch, single, rtol=1e-13)


def test_kl_mvn_method_bad_input():
    eye = np.eye(2)
    for bad in ("chol", "Cholesky", None, 1):
        with pytest.raises(ValueError, match="method must be one of 'auto', 'cholesky', 'eig'"):
            kl_mvn([0, 0], eye, [0, 0], eye, method=bad)
    for method in ("cholesky", "eig"):
        with pytest.raises(ValueError, match="cov0 is not symmetric positive definite"):
            kl_mvn([0, 0], np.ones((2, 2)), [0, 0], eye, method=method)
        with pytest.raises(ValueError, match="cov0 is not symmetric positive definite"):
            kl_mvn([0, 0], -eye, [0, 0], eye, method=method)
