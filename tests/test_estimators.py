"""klcourse.mc_kl against a closed-form Gaussian KL written here (checked by quadrature), mpmath and torch."""

import functools
import math

import mpmath
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from klcourse import mc_kl

PAIRS = {  # (mu_q, sigma_q, mu_p, sigma_p): samples come from Q, target D(Q || P)
    "close": (0.0, 1.0, 0.1, 1.0),
    "scale": (0.0, 1.0, 0.3, 0.9),
    "far": (0.0, 1.0, 2.0, 1.0),
}


def gaussian_kl(mu_q, s_q, mu_p, s_p):
    """D(N(mu_q, s_q^2) || N(mu_p, s_p^2)) in nats, written out independently of klcourse."""
    return math.log(s_p / s_q) + (s_q**2 + (mu_q - mu_p) ** 2) / (2 * s_p**2) - 0.5


def normal_logpdf(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)


def log_densities(pair, n, rng):
    mu_q, s_q, mu_p, s_p = pair
    x = rng.normal(mu_q, s_q, size=n)
    return normal_logpdf(x, mu_q, s_q), normal_logpdf(x, mu_p, s_p)


@functools.cache
def replicate(pair, estimator, n=200, reps=300, seed=0):
    """``reps`` independent estimates, each from ``n`` fresh samples of Q."""
    rng = np.random.default_rng(seed)
    return np.array([mc_kl(*log_densities(pair, n, rng), estimator=estimator) for _ in range(reps)])


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_closed_form_against_quadrature(name):
    mu_q, s_q, mu_p, s_p = PAIRS[name]
    q, p = stats.norm(mu_q, s_q), stats.norm(mu_p, s_p)
    value, _ = integrate.quad(lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), -30, 30, epsabs=1e-13)
    assert gaussian_kl(*PAIRS[name]) == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("name", sorted(PAIRS))
@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_k1_and_k3_are_unbiased(name, estimator):
    estimates = replicate(PAIRS[name], estimator)
    standard_error = estimates.std(ddof=1) / math.sqrt(len(estimates))
    assert abs(estimates.mean() - gaussian_kl(*PAIRS[name])) < 4 * standard_error


def test_k2_is_biased_far_from_p_but_close_near_it():
    far = replicate(PAIRS["far"], "k2")  # E[k2] = E[(2x - 2)^2 / 2] = 4 while D = 2
    assert far.mean() - gaussian_kl(*PAIRS["far"]) > 20 * far.std(ddof=1) / math.sqrt(len(far))
    close = replicate(PAIRS["close"], "k2")
    assert close.mean() == pytest.approx(gaussian_kl(*PAIRS["close"]), rel=0.05)


@pytest.mark.parametrize("name", ["close", "scale"])
def test_k3_has_lower_variance_than_k1(name):
    """Schulman (2020): for nearby distributions k3 is far less noisy than k1."""
    assert replicate(PAIRS[name], "k3").std() < 0.5 * replicate(PAIRS[name], "k1").std()


def test_k3_loses_its_advantage_when_p_has_heavier_tails():
    """The control variate r - 1 = p/q - 1 is heavy-tailed under Q when P is wider than Q: its
    variance, integral p^2/q - 1, is finite only for sigma_p^2 < 2 sigma_q^2 and huge just below
    (here sigma_p^2 = 1.96).  Then k3 is noisier than k1, though still unbiased."""
    wide = (0.0, 1.0, 0.3, 1.4)
    k3 = replicate(wide, "k3")
    assert k3.std() > replicate(wide, "k1").std()
    assert abs(k3.mean() - gaussian_kl(*wide)) < 4 * k3.std(ddof=1) / math.sqrt(len(k3))  # still unbiased


def test_k1_can_be_negative_but_k3_cannot():
    rng = np.random.default_rng(1)
    k1 = [mc_kl(*log_densities(PAIRS["close"], 5, rng), estimator="k1") for _ in range(200)]
    k3 = [mc_kl(*log_densities(PAIRS["close"], 5, rng), estimator="k3") for _ in range(200)]
    assert min(k1) < 0 <= min(k3)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(-50, 50), st.floats(-50, 50)), min_size=1, max_size=20))
def test_k3_and_k2_are_nonnegative(pairs):
    log_q, log_p = np.array(pairs).T
    assert mc_kl(log_q, log_p, estimator="k3") >= 0.0
    assert mc_kl(log_q, log_p, estimator="k2") >= 0.0
    assert mc_kl(log_q, log_p, estimator="k1") == pytest.approx(np.mean(log_q - log_p), rel=1e-12, abs=1e-12)


def test_k3_keeps_full_relative_accuracy_for_tiny_log_ratios():
    log_r = 1e-9 * np.random.default_rng(2).standard_normal(100)
    with mpmath.workdps(50):
        ref = mpmath.fsum(mpmath.expm1(mpmath.mpf(x)) - mpmath.mpf(x) for x in log_r) / len(log_r)
    value = mc_kl(np.zeros_like(log_r), log_r, estimator="k3")
    assert abs(value - ref) / ref < 1e-13
    naive = float(np.mean(np.exp(log_r) - 1 - log_r))  # what the test guards against
    assert abs(naive - ref) / ref > 1e-3


def test_support_mismatch_gives_inf():
    for estimator in ("k1", "k2", "k3"):
        assert mc_kl([-1.0, -2.0], [-1.5, -np.inf], estimator=estimator) == math.inf


def test_torch_input_returns_a_differentiable_tensor():
    rng = np.random.default_rng(3)
    log_q, log_p = log_densities(PAIRS["scale"], 50, rng)
    for estimator in ("k1", "k2", "k3"):
        lp = torch.tensor(log_p, requires_grad=True)
        value = mc_kl(torch.tensor(log_q), lp, estimator=estimator, grad="pathwise")
        assert torch.is_tensor(value) and value.dim() == 0
        assert value.item() == pytest.approx(mc_kl(log_q, log_p, estimator=estimator), rel=1e-14)
        (grad,) = torch.autograd.grad(value, lp)
        log_r = log_p - log_q
        expected = {"k1": -np.ones_like(log_r), "k2": log_r, "k3": np.expm1(log_r)}[estimator] / len(log_r)
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-12, atol=1e-15)
    lq = torch.tensor(log_q[:6], requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mc_kl(a, b, grad="pathwise"),
                                    (lq, torch.tensor(log_p[:6], requires_grad=True)))
    mixed = mc_kl(torch.tensor(log_q), log_p)  # numpy partner is converted
    assert torch.is_tensor(mixed)
    assert type(mc_kl(log_q, log_p)) is float


@pytest.mark.parametrize("wrap", [np.asarray, torch.tensor])
def test_bad_input(wrap):
    good = wrap([-1.0, -2.0])
    with pytest.raises(ValueError, match="unknown estimator"):
        mc_kl(good, good, estimator="k4")
    with pytest.raises(ValueError, match="shape mismatch"):
        mc_kl(good, wrap([-1.0, -2.0, -3.0]))
    with pytest.raises(ValueError, match="NaN"):
        mc_kl(good, wrap([np.nan, -1.0]))
    with pytest.raises(ValueError, match="log_q must be finite"):
        mc_kl(wrap([-np.inf, -1.0]), good)
    with pytest.raises(ValueError, match=r"\+inf"):
        mc_kl(good, wrap([np.inf, -1.0]))
    with pytest.raises(ValueError, match="at least one sample"):
        mc_kl(wrap([]), wrap([]))


def test_non_numeric_input():
    with pytest.raises(ValueError, match="numeric"):
        mc_kl(["a"], [1.0])


# --------------------------------------------------------------------------- gradients (exact enumeration)
REF = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)  # pi_ref, the fixed P
THETA = torch.tensor([0.9, -0.4, 0.3, -1.1], dtype=torch.float64)  # logits of pi_theta = Q


def expected_gradient(estimator, grad, theta=THETA, ref_logits=None, n=1):
    """E over n i.i.d. draws x ~ pi_theta (enumerated exactly) of the autograd gradient of mc_kl with the draws held
    fixed; gradients in theta (and in the reference logits if given)."""
    theta = theta.clone().requires_grad_(True)
    ref_param = None if ref_logits is None else ref_logits.clone().requires_grad_(True)
    log_pi = torch.log_softmax(theta, 0)
    log_ref = REF.log() if ref_param is None else torch.log_softmax(ref_param, 0)
    weights = log_pi.detach().exp()
    total = 0.0
    for batch in np.ndindex(*(len(REF),) * n):
        idx = torch.tensor(batch)
        total = total + weights[idx].prod() * mc_kl(log_pi[idx], log_ref[idx], estimator=estimator, grad=grad)
    wrt = (theta,) if ref_param is None else (theta, ref_param)
    return torch.autograd.grad(total, wrt)


def exact_gradients(theta=THETA, ref_logits=None):
    """Autograd of the exact D(pi_theta || ref) and D(ref || pi_theta), by summation over the four outcomes."""
    theta = theta.clone().requires_grad_(True)
    ref_param = None if ref_logits is None else ref_logits.clone().requires_grad_(True)
    log_pi = torch.log_softmax(theta, 0)
    log_ref = REF.log() if ref_param is None else torch.log_softmax(ref_param, 0)
    reverse = (log_pi.exp() * (log_pi - log_ref)).sum()
    forward = (log_ref.exp() * (log_ref - log_pi)).sum()
    wrt = (theta,) if ref_param is None else (theta, ref_param)
    return torch.autograd.grad(reverse, wrt, retain_graph=True), torch.autograd.grad(forward, wrt)


def test_enumeration_toy_is_not_degenerate():
    (rev,), (fwd,) = exact_gradients()
    assert rev.norm() > 0.1 and fwd.norm() > 0.1 and (rev - fwd).norm() > 0.1  # the two directions differ


@pytest.mark.parametrize("n", [1, 2])
def test_pathwise_k1_gradient_has_mean_zero(n):
    (g,) = expected_gradient("k1", "pathwise", n=n)
    torch.testing.assert_close(g, torch.zeros_like(g), atol=1e-14, rtol=0)


@pytest.mark.parametrize("n", [1, 2])
def test_pathwise_k2_gradient_is_the_reverse_kl_gradient_on_policy(n):
    (g,) = expected_gradient("k2", "pathwise", n=n)
    (rev,), _ = exact_gradients()
    torch.testing.assert_close(g, rev, atol=1e-13, rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2])
def test_pathwise_k3_gradient_is_the_forward_kl_gradient(n):
    """The "k3 in the loss" pitfall: the expected gradient is that of D(P || Q), not of D(Q || P)."""
    (g,) = expected_gradient("k3", "pathwise", n=n)
    (rev,), (fwd,) = exact_gradients()
    torch.testing.assert_close(g, fwd, atol=1e-13, rtol=1e-12)
    assert (g - rev).norm() > 0.1


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
@pytest.mark.parametrize("n", [1, 2])
def test_reverse_mode_gradient_is_unbiased_for_the_reverse_kl(estimator, n):
    ref_logits = REF.log() + 0.25  # a parametrised reference: gradients in both sets of logits
    g_theta, g_ref = expected_gradient(estimator, "reverse", ref_logits=ref_logits, n=n)
    (rev_theta, rev_ref), _ = exact_gradients(ref_logits=ref_logits)
    torch.testing.assert_close(g_theta, rev_theta, atol=1e-13, rtol=1e-12)
    torch.testing.assert_close(g_ref, rev_ref, atol=1e-13, rtol=1e-12)


def test_pathwise_gradient_in_the_reference_parameters():
    """The draws do not depend on P: k1 and k3 give the right gradient there, k2 does not."""
    ref_logits = REF.log()
    (rev_theta, rev_ref), _ = exact_gradients(ref_logits=ref_logits)
    for estimator in ("k1", "k3"):
        _, g_ref = expected_gradient(estimator, "pathwise", ref_logits=ref_logits)
        torch.testing.assert_close(g_ref, rev_ref, atol=1e-13, rtol=1e-12)
    _, g_ref = expected_gradient("k2", "pathwise", ref_logits=ref_logits)
    assert (g_ref - rev_ref).norm() > 0.01


@pytest.mark.parametrize("estimator", ["k1", "k2", "k3"])
def test_reverse_and_detach_keep_the_value(estimator):
    log_q = torch.log_softmax(THETA, 0).requires_grad_(True)
    log_p = REF.log()
    plain = mc_kl(log_q.detach(), log_p, estimator=estimator)
    for grad in ("reverse", "detach", "pathwise"):
        value = mc_kl(log_q, log_p, estimator=estimator, grad=grad)
        assert value.item() == pytest.approx(plain.item(), rel=1e-15)
        assert value.requires_grad == (grad != "detach")
    with_inf = mc_kl(log_q, torch.tensor([-math.inf, -1.0, -1.0, -1.0], dtype=torch.float64), grad="reverse")
    assert with_inf.item() == math.inf


def test_a_differentiable_input_needs_an_explicit_grad_mode():
    log_q = torch.log_softmax(THETA, 0).requires_grad_(True)
    for args in ((log_q, REF.log()), (REF.log(), log_q)):
        with pytest.raises(ValueError, match="grad="):
            mc_kl(*args)
        with torch.no_grad():  # no gradient can flow: nothing to choose
            assert mc_kl(*args).requires_grad is False
    assert mc_kl(log_q.detach(), REF.log()).requires_grad is False
    for bad in ("k3", "forward", True, 1):
        with pytest.raises(ValueError, match="unknown grad"):
            mc_kl(log_q, REF.log(), grad=bad)
    with pytest.raises(ValueError, match="unknown grad"):
        mc_kl([-1.0], [-2.0], grad="yes")
    assert type(mc_kl([-1.0], [-2.0], grad="detach")) is float  # numpy input: a float, as always


# --------------------------------------------------------------------------- variances for the shifted Gaussian
@pytest.mark.parametrize("delta", [0.1, 0.5, 1.0])
def test_single_sample_variances_against_mpmath_quadrature(delta):
    from klcourse.estimators import gaussian_shift_variances

    mpmath.mp.dps = 30
    d = mpmath.mpf(delta)
    phi = lambda x: mpmath.exp(-x * x / 2) / mpmath.sqrt(2 * mpmath.pi)  # noqa: E731  density of Q = N(0, 1)
    log_r = lambda x: d * x - d * d / 2  # noqa: E731  log p(x) - log q(x) for P = N(delta, 1)
    values = {"k1": lambda x: -log_r(x), "k2": lambda x: log_r(x) ** 2 / 2,
              "k3": lambda x: mpmath.expm1(log_r(x)) - log_r(x)}
    got = gaussian_shift_variances(delta)
    for name, k in values.items():
        m1 = mpmath.quad(lambda x, k=k: phi(x) * k(x), [-mpmath.inf, 0, mpmath.inf])
        m2 = mpmath.quad(lambda x, k=k: phi(x) * k(x) ** 2, [-mpmath.inf, 0, mpmath.inf])
        assert got[name] == pytest.approx(float(m2 - m1**2), rel=1e-10), name
    mpmath.mp.dps = 15


def test_k1_needs_about_199_times_as_many_samples_for_the_close_pair():
    from klcourse.estimators import gaussian_shift_variances

    v = gaussian_shift_variances(0.1)
    d2 = 0.01
    assert v["k1"] / v["k3"] == pytest.approx(d2 / (math.exp(d2) - 1 - d2), rel=1e-9)
    assert round(v["k1"] / v["k3"]) == 199  # not 208, the single-seed measurement the chapter once quoted
    with pytest.raises(ValueError):
        gaussian_shift_variances(math.nan)


# ------------------------------------------------------------------ the other direction; control-variate coefficient
from klcourse.estimators import (  # noqa: E402
    control_variate_estimates,
    fitted_coefficient,
    forward_kl_estimates,
    gaussian_shift_control_variate,
    kl_estimates,
)


def test_forward_estimator_is_unbiased_by_exact_enumeration():
    # E_Q[r log r - (r - 1)] summed over every outcome with weight q equals D(P || Q) (scipy.stats.entropy)
    rng = np.random.default_rng(7)
    for _ in range(20):
        p, q = rng.dirichlet(np.ones(6)), rng.dirichlet(np.ones(6))
        p[0] = 0.0
        p /= p.sum()
        per_outcome = forward_kl_estimates(np.log(q)[:, None], np.log(p, where=p > 0, out=np.full(6, -np.inf))[:, None])
        assert float(q @ per_outcome) == pytest.approx(stats.entropy(p, q), rel=1e-12)


def test_forward_terms_are_non_negative_and_accurate_near_zero():
    log_r = np.concatenate([np.linspace(-30, 5, 2001), np.geomspace(1e-12, 0.3, 200), -np.geomspace(1e-12, 0.3, 200),
                            [-np.inf, 0.0]])
    values = forward_kl_estimates(np.zeros((log_r.size, 1)), log_r[:, None])
    assert np.all(values >= 0)
    with mpmath.workdps(50):
        for lr, v in zip(log_r, values, strict=True):
            if np.isfinite(lr):
                exact = float(mpmath.mpf(lr) * mpmath.exp(lr) - mpmath.expm1(lr))
                assert v == pytest.approx(exact, rel=1e-13, abs=1e-300)
            else:
                assert v == 1.0  # r = 0: 0 log 0 - (0 - 1)


def test_forward_estimate_matches_the_closed_form_on_many_draws():
    x = np.random.default_rng(3).normal(0.0, 1.0, 400_000)
    log_q, log_p = stats.norm.logpdf(x), stats.norm.logpdf(x, 1.0, 0.8)
    exact = gaussian_kl(1.0, 0.8, 0.0, 1.0)  # D(P || Q)
    assert forward_kl_estimates(log_q, log_p) == pytest.approx(exact, rel=5e-3)
    assert forward_kl_estimates(log_q, log_p + 5.0, self_normalised=True) == pytest.approx(exact, rel=5e-3)


def test_self_normalised_ignores_the_constant_and_is_never_negative():
    rng = np.random.default_rng(4)
    log_q, log_p = rng.normal(size=(300, 5)), rng.normal(size=(300, 5))
    base = forward_kl_estimates(log_q, log_p, self_normalised=True)
    np.testing.assert_allclose(forward_kl_estimates(log_q, log_p - 40.0, self_normalised=True), base, rtol=1e-10)
    assert np.all(base >= 0)
    # by hand for one batch: weights normalised to mean 1
    w = np.exp(log_p[0] - log_q[0])
    r_hat = w / w.mean()
    assert base[0] == pytest.approx(np.mean(r_hat * np.log(r_hat)), rel=1e-12)
    with pytest.raises(ValueError, match="weight"):
        forward_kl_estimates([0.0, 0.0], [-np.inf, -np.inf], self_normalised=True)


def test_control_variate_family_contains_k1_and_k3():
    rng = np.random.default_rng(5)
    log_q, log_p = rng.normal(size=(50, 20)), rng.normal(size=(50, 20))
    np.testing.assert_allclose(control_variate_estimates(log_q, log_p, 0.0), kl_estimates(log_q, log_p, estimator="k1"))
    np.testing.assert_allclose(control_variate_estimates(log_q, log_p, 1.0), kl_estimates(log_q, log_p, estimator="k3"),
                               rtol=1e-9)
    with pytest.raises(ValueError, match="lam"):
        control_variate_estimates(log_q, log_p, "best")


def test_fitted_coefficient_is_numpys_covariance_ratio():
    rng = np.random.default_rng(6)
    log_r = rng.normal(-0.2, 0.6, size=(4, 30))
    lam = fitted_coefficient(np.zeros_like(log_r), log_r)
    for row, value in zip(log_r, lam, strict=True):
        cov = np.cov(row, np.exp(row))
        assert value == pytest.approx(cov[0, 1] / cov[1, 1], rel=1e-10)


@pytest.mark.parametrize("delta", [0.3, 1.0, 1.4])
def test_gaussian_lambda_star_and_variances_match_quadrature(delta):
    cv = gaussian_shift_control_variate(delta)

    def moment(f):
        return integrate.quad(lambda x: stats.norm.pdf(x) * f(x), -40, 40, epsabs=1e-14, epsrel=1e-12, limit=200)[0]

    def log_r(x):
        return delta * x - delta**2 / 2

    cov = moment(lambda x: log_r(x) * math.exp(log_r(x))) - moment(log_r) * moment(lambda x: math.exp(log_r(x)))
    var_r = moment(lambda x: math.exp(2 * log_r(x))) - 1.0
    assert cv["lambda_star"] == pytest.approx(cov / var_r, rel=1e-8)
    lam = cv["lambda_star"]
    mean_k = delta**2 / 2
    var_star = moment(lambda x: (-log_r(x) + lam * math.expm1(log_r(x)) - mean_k) ** 2)
    assert cv["var_star"] == pytest.approx(var_star, rel=1e-7)
    assert float(cv["variance"](1.0)) == pytest.approx(cv["var_k3"], rel=1e-12)
    assert float(cv["variance"](0.0)) == pytest.approx(cv["var_k1"], rel=1e-12)
    # lambda* is the minimum of the parabola
    grid = np.linspace(lam - 0.5, lam + 0.5, 1001)
    assert np.all(cv["variance"](grid) >= cv["var_star"] - 1e-15)


def test_only_lambda_one_keeps_every_term_non_negative():
    r = np.geomspace(1e-6, 1e6, 20001)
    for lam in (0.5, 0.9, 1.1, 2.0):
        assert np.min(-np.log(r) + lam * (r - 1)) < 0
    assert np.min(-np.log(r) + (r - 1)) >= 0
