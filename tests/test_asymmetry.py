"""klcourse.asymmetry against independent routes: scipy.stats densities, adaptive quadrature
(scipy.integrate.quad), mpmath, closed-form Gaussian KL, scipy.optimize, and torch.optim.Adam."""

import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

import klcourse.asymmetry as asym
from klcourse import kl_normal

MIX = asym.EXAMPLE_MIXTURE
OTHER = {"weights": (0.2, 0.5, 0.3), "means": (-1.0, 0.5, 4.0), "sds": (0.6, 1.5, 0.9)}


def scipy_mixture_pdf(x, weights, means, sds):
    return sum(w * stats.norm(m, s).pdf(x) for w, m, s in zip(weights, means, sds, strict=True))


def scalar_normal_logpdf(x, m, s):
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def scalar_mixture_logpdf(x, weights, means, sds):
    """log p(x) for one float x, with plain math (a hand-written log-sum-exp)."""
    terms = [math.log(w) + scalar_normal_logpdf(x, m, s) for w, m, s in zip(weights, means, sds, strict=True)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms))


def quad(f, lo=-60.0, hi=60.0, points=None):
    value, _ = integrate.quad(f, lo, hi, points=points, epsabs=1e-13, epsrel=1e-12, limit=500)
    return value


def quad_reverse_kl(mu, sigma, mix):
    def integrand(x):
        log_q = scalar_normal_logpdf(x, mu, sigma)
        return math.exp(log_q) * (log_q - scalar_mixture_logpdf(x, **mix))

    return quad(integrand, mu - 25 * sigma, mu + 25 * sigma, points=[*mix["means"], mu])


def quad_forward_kl(mu, sigma, mix):
    def integrand(x):
        log_p = scalar_mixture_logpdf(x, **mix)
        return math.exp(log_p) * (log_p - scalar_normal_logpdf(x, mu, sigma))

    return quad(integrand, -25.0, 25.0, points=list(mix["means"]))


def fd_gradient(f, mu, sigma, h=1e-4):
    """Central finite differences of f(mu, sigma) with respect to (mu, log sigma)."""
    return np.array([
        (f(mu + h, sigma) - f(mu - h, sigma)) / (2 * h),
        (f(mu, sigma * math.exp(h)) - f(mu, sigma * math.exp(-h))) / (2 * h),
    ])


# ------------------------------------------------------------------ densities and moments
@pytest.mark.parametrize("mix", [MIX, OTHER])
def test_mixture_density_matches_scipy_and_integrates_to_one(mix):
    x = np.linspace(-8, 8, 101)
    np.testing.assert_allclose(asym.mixture_pdf(x, **mix), scipy_mixture_pdf(x, **mix), rtol=1e-12, atol=1e-300)
    x = np.linspace(-30, 30, 60001)  # mixture_pdf is vectorised: integrate it with scipy's Simpson rule
    assert integrate.simpson(asym.mixture_pdf(x, **mix), x=x) == pytest.approx(1.0, abs=1e-10)


def test_mixture_logpdf_is_accurate_far_in_the_tails():
    x = 60.0  # every component density underflows to 0 in float64 here
    with mpmath.workdps(50):
        exact = mpmath.log(sum(mpmath.mpf(w) * mpmath.npdf(x, m, s) for w, m, s in zip(*MIX.values(), strict=True)))
    assert asym.mixture_pdf(x, **MIX) == 0.0
    assert asym.mixture_logpdf(x, **MIX) == pytest.approx(float(exact), rel=1e-13)


def test_zero_weight_component_is_ignored():
    with_zero = {"weights": (0.0, 1.0), "means": (100.0, 0.0), "sds": (1e-3, 1.0)}
    x = np.linspace(-3, 3, 7)
    np.testing.assert_allclose(asym.mixture_logpdf(x, **with_zero), stats.norm.logpdf(x), rtol=1e-13)


@pytest.mark.parametrize("mix", [MIX, OTHER])
def test_mixture_moments_match_quadrature(mix):
    mean, variance = asym.mixture_moments(**mix)
    def pdf(t):
        return math.exp(scalar_mixture_logpdf(t, **mix))

    assert mean == pytest.approx(quad(lambda t: t * pdf(t), -25, 25), abs=1e-10)
    assert variance == pytest.approx(quad(lambda t: (t - mean) ** 2 * pdf(t), -25, 25), rel=1e-10)


@pytest.mark.parametrize(
    "bad",
    [
        {"weights": (0.5, 0.6), "means": (0, 1), "sds": (1, 1)},
        {"weights": (1.5, -0.5), "means": (0, 1), "sds": (1, 1)},
        {"weights": (0.5, 0.5), "means": (0, 1), "sds": (1, 0)},
        {"weights": (0.5, 0.5), "means": (0, 1, 2), "sds": (1, 1)},
        {"weights": (0.5, 0.5), "means": (0, np.nan), "sds": (1, 1)},
    ],
)
def test_bad_mixtures_raise_value_error(bad):
    with pytest.raises(ValueError):
        asym.mixture_logpdf(0.0, **bad)


# ------------------------------------------------------------------ forward KL: moment matching
@pytest.mark.parametrize("mix", [MIX, OTHER])
def test_moment_matching_is_a_stationary_point_of_the_quadrature_forward_kl(mix):
    mu, sigma = asym.fit_forward_gaussian(**mix)
    grad = fd_gradient(lambda m, s: quad_forward_kl(m, s, mix), mu, sigma)
    np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def test_moment_matching_equals_maximum_likelihood_on_a_large_sample():
    """Forward KL D(P_data‖Q), expectation under the data, = maximum likelihood: the MLE of a big sample."""
    rng = np.random.default_rng(0)
    n = 400_000
    component = rng.choice(len(OTHER["weights"]), size=n, p=OTHER["weights"])
    sample = rng.normal(np.take(OTHER["means"], component), np.take(OTHER["sds"], component))
    mle_mu, mle_sigma = stats.norm.fit(sample)
    mu, sigma = asym.fit_forward_gaussian(**OTHER)
    assert mle_mu == pytest.approx(mu, abs=5 * sigma / math.sqrt(n))
    assert mle_sigma == pytest.approx(sigma, rel=5 / math.sqrt(n))


def test_forward_kl_closed_form_in_moments_matches_quadrature():
    """D(P‖N(mu, sigma²)) = -H(P) + ½ log(2π sigma²) + (Var + (mean - mu)²) / (2 sigma²) — the chapter's proof."""
    mean, variance = asym.mixture_moments(**MIX)
    entropy = -quad(lambda t: math.exp(scalar_mixture_logpdf(t, **MIX)) * scalar_mixture_logpdf(t, **MIX), -25, 25)
    for mu, sigma in [(0.0, 1.0), (2.0, 3.5), (-4.0, 0.7)]:
        closed = -entropy + 0.5 * math.log(2 * math.pi * sigma**2) + (variance + (mean - mu) ** 2) / (2 * sigma**2)
        assert asym.forward_kl_gaussian(mu, sigma, **MIX) == pytest.approx(closed, rel=1e-10)


@pytest.mark.parametrize(("mu", "sigma"), [(0.6, 3.07), (-3.0, 1.0), (3.0, 0.8), (1.0, 5.0)])
def test_forward_and_reverse_kl_match_adaptive_quadrature(mu, sigma):
    assert asym.forward_kl_gaussian(mu, sigma, **MIX) == pytest.approx(quad_forward_kl(mu, sigma, MIX), rel=1e-9)
    assert asym.reverse_kl_gaussian(mu, sigma, **MIX) == pytest.approx(quad_reverse_kl(mu, sigma, MIX), rel=1e-9)


def test_single_component_target_reduces_to_closed_form_gaussian_kl():
    target = {"weights": (1.0,), "means": (0.5,), "sds": (1.3,)}
    for mu, sigma in [(0.0, 1.0), (2.0, 0.4), (-1.0, 3.0)]:
        assert asym.reverse_kl_gaussian(mu, sigma, **target) == pytest.approx(kl_normal(mu, sigma, 0.5, 1.3),
                                                                              rel=1e-10)
        assert asym.forward_kl_gaussian(mu, sigma, **target) == pytest.approx(kl_normal(0.5, 1.3, mu, sigma),
                                                                              rel=1e-10)


def test_kl_is_vectorised_over_parameters():
    mu, sigma = np.array([-3.0, 0.0, 3.0]), np.array([[1.0], [2.0]])
    grid_values = asym.reverse_kl_gaussian(mu, sigma, **MIX)
    assert grid_values.shape == (2, 3)
    assert grid_values[1, 2] == pytest.approx(quad_reverse_kl(3.0, 2.0, MIX), rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    weights=st.lists(st.floats(0.05, 1.0), min_size=1, max_size=4),
    data=st.data(),
)
def test_moment_matched_fit_beats_every_perturbation(weights, data):
    k = len(weights)
    mix = {
        "weights": tuple(np.array(weights) / sum(weights)),
        "means": tuple(data.draw(st.lists(st.floats(-5, 5), min_size=k, max_size=k))),
        "sds": tuple(data.draw(st.lists(st.floats(0.3, 3.0), min_size=k, max_size=k))),
    }
    mu, sigma = asym.fit_forward_gaussian(**mix)
    best = asym.forward_kl_gaussian(mu, sigma, **mix)
    for d_mu, d_log_sigma in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05), (0.05, 0.05)]:
        assert asym.forward_kl_gaussian(mu + d_mu * sigma, sigma * math.exp(d_log_sigma), **mix) > best


# ------------------------------------------------------------------ grids and kl_on_grid
def test_kl_on_grid_matches_closed_form_both_directions():
    x = np.linspace(-30, 30, 6001)
    log_p, log_q = stats.norm.logpdf(x, 0, 1), stats.norm.logpdf(x, 1, 2)
    assert asym.kl_on_grid(log_p, log_q, x) == pytest.approx(kl_normal(0, 1, 1, 2), rel=1e-12)
    assert asym.kl_on_grid(log_q, log_p, x) == pytest.approx(kl_normal(1, 2, 0, 1), rel=1e-12)


def test_kl_on_grid_support_mismatch_is_infinite_one_way_only():
    x = np.linspace(0.0, 2.0, 2001)
    with np.errstate(divide="ignore"):
        log_p = np.where(x <= 1.0, 0.0, -np.inf)  # uniform on [0, 1]
    log_q = np.full_like(x, -math.log(2.0))  # uniform on [0, 2]
    assert asym.kl_on_grid(log_p, log_q, x) == pytest.approx(math.log(2.0), rel=1e-3)
    assert asym.kl_on_grid(log_q, log_p, x) == math.inf


def test_quadrature_grid_covers_and_refuses_absurd_grids():
    x = asym.quadrature_grid(**MIX, cover=[(10.0, 2.0)])
    assert x[0] <= -3 - 10 * 1.0 and x[-1] >= 10 + 10 * 2.0
    assert np.diff(x).max() <= 0.8 / 10 + 1e-12
    with pytest.raises(ValueError, match="max_points"):
        asym.quadrature_grid(**MIX, cover=[(1e6, 1e-3)])


def test_trapezoid_weights_integrate_linear_functions_exactly():
    x = np.sort(np.random.default_rng(0).uniform(0, 3, size=50))
    w = asym.trapezoid_weights(x)
    assert w @ (2 * x + 1) == pytest.approx((x[-1] ** 2 + x[-1]) - (x[0] ** 2 + x[0]), rel=1e-12)
    with pytest.raises(ValueError):
        asym.trapezoid_weights([0.0, 1.0, 0.5])


# ------------------------------------------------------------------ reverse KL by Adam
@pytest.fixture(scope="module")
def example_fits():
    return asym.fit_reverse_gaussian(**MIX, starts=list(asym.EXAMPLE_STARTS.values()))


def test_reverse_fits_reach_stationary_points_of_the_quadrature_reverse_kl(example_fits):
    for fit in example_fits:
        assert fit.grad_norm < 1e-6
        assert fit.kl == pytest.approx(quad_reverse_kl(fit.mu, fit.sigma, MIX), rel=1e-10)
        grad = fd_gradient(lambda m, s: quad_reverse_kl(m, s, MIX), fit.mu, fit.sigma)
        np.testing.assert_allclose(grad, 0.0, atol=1e-6)


def reverse_objective(theta):
    return asym.reverse_kl_gaussian(theta[0], math.exp(theta[1]), **MIX)


def test_reverse_fits_agree_with_scipy_minimize(example_fits):
    for fit in example_fits:  # BFGS from a nearby point falls back into the same minimum
        found = optimize.minimize(reverse_objective, x0=[fit.mu + 0.1, math.log(fit.sigma) - 0.1], method="BFGS")
        assert found.x[0] == pytest.approx(fit.mu, abs=1e-4)
        assert math.exp(found.x[1]) == pytest.approx(fit.sigma, rel=1e-4)
    best = min(example_fits, key=lambda f: f.kl)
    global_min = optimize.minimize(reverse_objective, x0=[2.5, 0.0], method="BFGS")
    assert global_min.fun == pytest.approx(best.kl, rel=1e-8)


def test_reverse_fits_are_mode_seeking_local_minima(example_fits):
    ends = {round(f.mu) for f in example_fits}
    assert {-3, 3} <= ends  # each mode is reached from some start
    by_mode = {round(f.mu): f.kl for f in example_fits}
    # a Gaussian sitting on component k alone costs about -log w_k
    assert by_mode[3] == pytest.approx(-math.log(0.6), abs=0.02)
    assert by_mode[-3] == pytest.approx(-math.log(0.4), abs=0.02)
    for w, m, s in zip(*MIX.values(), strict=True):  # p >= w_k N_k gives D(N_k‖P) <= -log w_k
        assert by_mode[round(m)] <= asym.reverse_kl_gaussian(m, s, **MIX) <= -math.log(w)
    for fit in example_fits:  # local minima: positive-definite Hessian by finite differences
        h, f0 = 1e-3, fit.kl
        for d in [(h, 0), (-h, 0), (0, h), (0, -h)]:
            assert asym.reverse_kl_gaussian(fit.mu + d[0], fit.sigma * math.exp(d[1]), **MIX) > f0


def test_reverse_fit_paths_are_consistent(example_fits):
    for (label, start), fit in zip(asym.EXAMPLE_STARTS.items(), example_fits, strict=True):
        assert fit.start == start, label
        assert fit.path.shape == (501, 2) and fit.kl_path.shape == (501,)
        np.testing.assert_allclose(fit.path[0], start)
        np.testing.assert_allclose(fit.path[-1], [fit.mu, fit.sigma])
        assert fit.kl_path[-1] == fit.kl
        assert fit.kl_path[-1] <= fit.kl_path[0]
        assert fit.kl == pytest.approx(asym.reverse_kl_gaussian(fit.mu, fit.sigma, **MIX), rel=1e-10)


def test_reverse_fit_recovers_a_gaussian_target_exactly():
    target = {"weights": (1.0,), "means": (1.0,), "sds": (0.7,)}
    (fit,) = asym.fit_reverse_gaussian(**target, starts=[(-2.0, 2.0)])
    assert fit.mu == pytest.approx(1.0, abs=1e-6) and fit.sigma == pytest.approx(0.7, rel=1e-6)
    assert fit.kl == pytest.approx(0.0, abs=1e-10)


def test_hand_written_adam_matches_torch_optim_adam_step_for_step():
    target = {"weights": (0.3, 0.7), "means": (-1.0, 2.0), "sds": (0.5, 1.0)}
    starts = np.array([(0.0, 1.0), (3.0, 0.4)])
    steps, lr = 30, 0.1
    x = asym.quadrature_grid(**target, cover=starts)
    fits = asym.fit_reverse_gaussian(**target, starts=starts, steps=steps, lr=lr, grid=x)

    xt = torch.from_numpy(x)
    log_p = torch.from_numpy(np.log(scipy_mixture_pdf(x, **target)))
    mu = torch.tensor(starts[:, 0], requires_grad=True)
    log_sigma = torch.tensor(np.log(starts[:, 1]), requires_grad=True)
    opt = torch.optim.Adam([mu, log_sigma], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 - t / steps)
    for _ in range(steps):
        opt.zero_grad()
        q = torch.distributions.Normal(mu[:, None], log_sigma.exp()[:, None])
        log_q = q.log_prob(xt)
        torch.trapezoid(log_q.exp() * (log_q - log_p), xt, dim=-1).sum().backward()
        opt.step()
        sched.step()
    np.testing.assert_allclose([f.mu for f in fits], mu.detach().numpy(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose([f.sigma for f in fits], log_sigma.detach().exp().numpy(), rtol=1e-9)


def test_fit_restores_torch_thread_count():
    before = torch.get_num_threads()
    asym.fit_reverse_gaussian(**MIX, starts=[(0.0, 1.0)], steps=2)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    ("starts", "kwargs"),
    [([(0.0, -1.0)], {}), ([0.0, 1.0], {}), ([(0.0, 1.0)], {"steps": 0}), ([(0.0, 1.0)], {"lr": 0.0})],
)
def test_bad_fit_arguments_raise_value_error(starts, kwargs):
    with pytest.raises(ValueError):
        asym.fit_reverse_gaussian(**MIX, starts=starts, **kwargs)


def test_bad_gaussian_parameters_raise_value_error():
    with pytest.raises(ValueError, match="sigma"):
        asym.reverse_kl_gaussian(0.0, 0.0, **MIX)
    with pytest.raises(ValueError):
        asym.forward_kl_gaussian(np.nan, 1.0, **MIX)


# ------------------------------------------------------------------ curvature: neither objective is convex
def fd_hessian(f, mu, sigma, h=1e-3):
    """Central finite differences of f(mu, sigma) in (mu, log sigma)."""
    t = math.log(sigma)

    def g(a, b):
        return f(mu + a, math.exp(t + b))

    faa = (g(h, 0) - 2 * g(0, 0) + g(-h, 0)) / h**2
    fbb = (g(0, h) - 2 * g(0, 0) + g(0, -h)) / h**2
    fab = (g(h, h) - g(h, -h) - g(-h, h) + g(-h, -h)) / (4 * h * h)
    return np.array([[faa, fab], [fab, fbb]])


@pytest.mark.parametrize(("mu", "sigma"), [(0.6, 3.07), (5.0, 2.0), (-4.0, 1.0), (1.0, 0.5)])
def test_forward_kl_hessian_matches_finite_differences_of_adaptive_quadrature(mu, sigma):
    expected = fd_hessian(lambda m, s: quad_forward_kl(m, s, MIX), mu, sigma)
    np.testing.assert_allclose(asym.forward_kl_hessian(mu, sigma, **MIX), expected, rtol=1e-4, atol=1e-5)


def test_forward_kl_is_not_convex_in_mu_log_sigma():
    """Chapter 4 used to call the forward KL 'a single bowl'; far from the mean its Hessian is indefinite."""
    mean, variance = asym.mixture_moments(**MIX)
    far = mean + 1.5 * math.sqrt(variance)
    assert np.linalg.eigvalsh(fd_hessian(lambda m, s: quad_forward_kl(m, s, MIX), far, 2.0)).min() < 0
    near = mean + 0.5 * math.sqrt(variance)
    assert np.linalg.eigvalsh(fd_hessian(lambda m, s: quad_forward_kl(m, s, MIX), near, 2.0)).min() > 0
    mus = np.linspace(-6, 6, 41)
    indefinite = np.linalg.eigvalsh(asym.forward_kl_hessian(mus, 2.0, **MIX))[:, 0] < 0
    np.testing.assert_array_equal(indefinite, np.abs(mus - mean) > math.sqrt(variance))


def test_forward_kl_is_convex_in_natural_parameters():
    """(eta1, eta2) = (mu/sigma^2, -1/(2 sigma^2)): D(P||Q) = A(eta) - eta . E_P[T] + const, A convex."""
    def f(e1, e2):
        var = -1 / (2 * e2)
        return asym.forward_kl_gaussian(e1 * var, math.sqrt(var), **MIX)

    h = 1e-4
    for e1 in (-2.0, 0.0, 1.0, 3.0):
        for e2 in (-2.0, -0.5, -0.05):
            faa = (f(e1 + h, e2) - 2 * f(e1, e2) + f(e1 - h, e2)) / h**2
            fbb = (f(e1, e2 + h) - 2 * f(e1, e2) + f(e1, e2 - h)) / h**2
            fab = (f(e1 + h, e2 + h) - f(e1 + h, e2 - h) - f(e1 - h, e2 + h) + f(e1 - h, e2 - h)) / (4 * h * h)
            assert np.linalg.eigvalsh(np.array([[faa, fab], [fab, fbb]])).min() > -1e-5 * max(faa, fbb)


def test_reverse_kl_hessian_matches_finite_differences_and_the_wide_fit_is_a_minimum(example_fits):
    """Start D ends on a wide Gaussian spanning both modes: a genuine local minimum (issue 9, item 11)."""
    wide = max(example_fits, key=lambda fit: fit.sigma)
    assert abs(wide.mu) < 1 and wide.sigma > 2
    hess = asym.reverse_kl_hessian(wide.mu, wide.sigma, **MIX)
    np.testing.assert_allclose(hess, fd_hessian(lambda m, s: quad_reverse_kl(m, s, MIX), wide.mu, wide.sigma),
                               rtol=1e-4, atol=1e-5)
    low, high = np.linalg.eigvalsh(hess)
    assert low == pytest.approx(0.139, abs=1e-3) and high == pytest.approx(9.83, abs=1e-2)
    with pytest.raises(ValueError):
        asym.reverse_kl_hessian([0.0, 1.0], 1.0, **MIX)


# ------------------------------------------------------------------ factorised fits of a correlated Gaussian
MEAN_2D = np.array([1.0, -0.5, 2.0])
COV_3D = np.array([[1.0, 0.6, -0.3], [0.6, 2.0, 0.5], [-0.3, 0.5, 1.5]])


def factorised_kl(theta, direction, mean, cov):
    """D between N(mean, cov) and a diagonal Gaussian, by the general formula with numpy's inverse and slogdet."""
    d = mean.size
    m, var = theta[:d], np.exp(2 * theta[d:])
    if direction == "reverse":  # D(Q || P)
        inv = np.linalg.inv(cov)
        diff = m - mean
        return 0.5 * (np.sum(np.diag(inv) * var) + diff @ inv @ diff - d + np.linalg.slogdet(cov)[1]
                      - np.sum(np.log(var)))
    diff = mean - m  # D(P || Q)
    return 0.5 * (np.sum(np.diag(cov) / var) + np.sum(diff**2 / var) - d + np.sum(np.log(var))
                  - np.linalg.slogdet(cov)[1])


@pytest.mark.parametrize("direction", ["reverse", "forward"])
def test_factorised_fits_minimise_the_kl_numerically_in_three_dimensions(direction):
    means, sds = asym.factorised_gaussian_fit(MEAN_2D, COV_3D, direction)
    for seed in range(3):
        x0 = np.random.default_rng(seed).normal(size=6)
        found = optimize.minimize(factorised_kl, x0, args=(direction, MEAN_2D, COV_3D), method="BFGS",
                                  options={"gtol": 1e-10})
        np.testing.assert_allclose(found.x[:3], means, atol=1e-5)
        np.testing.assert_allclose(np.exp(found.x[3:]), sds, rtol=1e-5)


def test_factorised_fits_in_two_dimensions_are_conditional_and_marginal_variances():
    s1, s2, rho = 1.3, 0.4, -0.8
    cov = np.array([[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]])
    _, rev = asym.factorised_gaussian_fit([0.0, 0.0], cov, "reverse")
    _, fwd = asym.factorised_gaussian_fit([0.0, 0.0], cov, "forward")
    np.testing.assert_allclose(rev**2, np.array([s1**2, s2**2]) * (1 - rho**2), rtol=1e-12)
    np.testing.assert_allclose(fwd, [s1, s2], rtol=1e-12)
    # both minima equal the mutual information -1/2 log(1 - rho^2), by kl_mvn
    from klcourse.gaussians import kl_mvn

    mi = -0.5 * math.log(1 - rho**2)
    assert kl_mvn(np.zeros(2), np.diag(rev**2), np.zeros(2), cov) == pytest.approx(mi, rel=1e-12)
    assert kl_mvn(np.zeros(2), cov, np.zeros(2), np.diag(fwd**2)) == pytest.approx(mi, rel=1e-12)


def test_mean_field_updates_converge_to_the_mean_at_rate_rho_squared():
    cov = np.array([[1.0, 0.54], [0.54, 0.36]])  # rho = 0.9
    path = asym.mean_field_updates([1.0, -0.5], cov, [-1.0, 0.5], sweeps=30)
    assert path.shape == (61, 2)
    assert np.array_equal(path[1][1], path[0][1])  # one coordinate per step
    errors = np.abs(path[2::2, 0] - 1.0)
    np.testing.assert_allclose(errors[1:] / errors[:-1], 0.81, rtol=1e-6)
    # each step is the exact minimiser of D(Q || P) in that coordinate's mean (finite differences)
    inv = np.linalg.inv(cov)
    m = path[3]
    assert (inv @ (m - np.array([1.0, -0.5])))[0] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("bad", [
    {"mean": [0.0, 0.0], "cov": [[1.0, 2.0], [2.0, 1.0]]},  # not positive definite
    {"mean": [0.0, 0.0], "cov": [[1.0, 0.5], [0.4, 1.0]]},  # not symmetric
    {"mean": [0.0], "cov": [[1.0, 0.0], [0.0, 1.0]]},
])
def test_bad_factorised_inputs_raise_value_error(bad):
    with pytest.raises(ValueError):
        asym.factorised_gaussian_fit(bad["mean"], bad["cov"], "reverse")
    with pytest.raises(ValueError, match="direction"):
        asym.factorised_gaussian_fit([0.0, 0.0], np.eye(2), "sideways")


# ------------------------------------------------------------------ alpha-divergence fits
def quad_alpha(mu, sigma, mix, alpha):
    def integrand(x):
        return math.exp(alpha * scalar_mixture_logpdf(x, **mix) + (1 - alpha) * scalar_normal_logpdf(x, mu, sigma))

    integral = quad(integrand, -30.0, 30.0, points=[*mix["means"], mu])
    return (1 - integral) / (alpha * (1 - alpha))


@pytest.mark.parametrize(("mu", "sigma", "alpha"), [(0.5, 2.0, 0.5), (2.5, 0.9, 0.2), (-1.0, 3.0, 0.8)])
def test_alpha_divergence_matches_adaptive_quadrature(mu, sigma, alpha):
    value = asym.alpha_divergence_gaussian(mu, sigma, **MIX, alpha=alpha)
    assert value == pytest.approx(quad_alpha(mu, sigma, MIX, alpha), rel=1e-9)


def test_alpha_divergence_ends_are_the_two_kls_and_the_limits_agree():
    for mu, sigma in [(0.5, 2.0), (3.0, 0.8)]:
        assert asym.alpha_divergence_gaussian(mu, sigma, **MIX, alpha=0.0) == pytest.approx(
            quad_reverse_kl(mu, sigma, MIX), rel=1e-9)
        assert asym.alpha_divergence_gaussian(mu, sigma, **MIX, alpha=1.0) == pytest.approx(
            quad_forward_kl(mu, sigma, MIX), rel=1e-9)
        assert asym.alpha_divergence_gaussian(mu, sigma, **MIX, alpha=1e-6) == pytest.approx(
            quad_reverse_kl(mu, sigma, MIX), rel=1e-4)
        assert asym.alpha_divergence_gaussian(mu, sigma, **MIX, alpha=1 - 1e-6) == pytest.approx(
            quad_forward_kl(mu, sigma, MIX), rel=1e-4)


def test_alpha_fits_end_at_forward_and_reverse_fits(example_fits):
    (mu1, s1, _), = asym.fit_alpha_gaussian(**MIX, alpha=1.0, starts=[(0.0, 1.0)])
    assert (mu1, s1) == pytest.approx(asym.fit_forward_gaussian(**MIX), abs=1e-6)
    ends = asym.fit_alpha_gaussian(**MIX, alpha=0.0, starts=[f.start for f in example_fits])
    for mu0, s0, v0 in ends:  # every minimum L-BFGS finds is one of Adam's (a start may roll elsewhere)
        fit = min(example_fits, key=lambda f: abs(f.mu - mu0) + abs(f.sigma - s0))
        assert (mu0, s0) == pytest.approx((fit.mu, fit.sigma), abs=1e-3)
        assert v0 == pytest.approx(fit.kl, rel=1e-6)
    assert min(v for *_, v in ends) == pytest.approx(min(f.kl for f in example_fits), rel=1e-8)


@pytest.mark.parametrize("alpha", [0.3, 0.6])
def test_alpha_fit_satisfies_minkas_moment_condition(alpha):
    # at a stationary point, q matches the mean and variance of p^alpha q^(1-alpha), normalised (Minka 2005)
    fits = asym.fit_alpha_gaussian(**MIX, alpha=alpha, starts=[(0.0, 4.0), (3.0, 0.8)])
    for mu, sigma, _ in fits:
        def tilted(x, power, mu=mu, sigma=sigma):
            log_t = alpha * scalar_mixture_logpdf(x, **MIX) + (1 - alpha) * scalar_normal_logpdf(x, mu, sigma)
            return x**power * math.exp(log_t)

        z = [quad(lambda x, k=k: tilted(x, k), -30.0, 30.0, points=[-3.0, 3.0, mu]) for k in range(3)]
        mean = z[1] / z[0]
        assert mean == pytest.approx(mu, abs=1e-6)
        assert z[2] / z[0] - mean**2 == pytest.approx(sigma**2, rel=1e-6)


def test_bad_alpha_raises_value_error():
    for alpha in (-0.5, 1.5, float("nan"), "half", True):
        with pytest.raises(ValueError, match="alpha"):
            asym.fit_alpha_gaussian(**MIX, alpha=alpha, starts=[(0.0, 1.0)])
