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
        value = mc_kl(torch.tensor(log_q), lp, estimator=estimator)
        assert torch.is_tensor(value) and value.dim() == 0
        assert value.item() == pytest.approx(mc_kl(log_q, log_p, estimator=estimator), rel=1e-14)
        (grad,) = torch.autograd.grad(value, lp)
        log_r = log_p - log_q
        expected = {"k1": -np.ones_like(log_r), "k2": log_r, "k3": np.expm1(log_r)}[estimator] / len(log_r)
        np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-12, atol=1e-15)
    lq = torch.tensor(log_q[:6], requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: mc_kl(a, b), (lq, torch.tensor(log_p[:6], requires_grad=True)))
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
