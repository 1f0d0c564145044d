"""Chapter 6, "the VAE from both sides": importance weighting, per-image q, the joint view and the
Gaussian decoder (klcourse.vae_model), each checked against an independent route -- the exact
log-evidence and ELBO of a linear-Gaussian model (scipy and hand formulas), mpmath, Counter,
torch.distributions, and the model's own decoder path."""

import math
from collections import Counter

import mpmath
import numpy as np
import pytest
import torch
from scipy import stats
from torch.distributions import Normal

from klcourse import vae_kl
from klcourse import vae_model as vm

D_X, D_Z, NOISE_VAR = 5, 2, 0.3
W = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0]])  # orthogonal columns
B = np.array([0.1, -0.2, 0.3, 0.0, 0.5])
X = np.array([[0.4, 1.0, -0.3, 0.2, 0.1], [2.0, -1.5, 1.0, 0.8, -0.7]])


def linear_gaussian_log_joint(z):
    """log p(x, z) for p(z) = N(0, I), p(x|z) = N(W z + b, NOISE_VAR I), torch float64."""
    w, b, x = (torch.tensor(a) for a in (W, B, X))
    mean = z @ w.T + b
    log_lik = Normal(mean, math.sqrt(NOISE_VAR)).log_prob(x).sum(-1)
    return log_lik + Normal(0.0, 1.0).log_prob(z).sum(-1)


def exact_log_evidence():
    """log N(x; b, W W^T + s^2 I) with scipy."""
    cov = W @ W.T + NOISE_VAR * np.eye(D_X)
    return stats.multivariate_normal(B, cov).logpdf(X)


def exact_posterior():
    """N(m, S): S = (I + W^T W / s^2)^-1 (diagonal here), m = S W^T (x - b) / s^2."""
    s = np.linalg.inv(np.eye(D_Z) + W.T @ W / NOISE_VAR)
    assert np.allclose(s, np.diag(np.diag(s)))
    m = (X - B) @ W @ s / NOISE_VAR
    return m, np.log(np.tile(np.diag(s), (len(X), 1)))


def exact_elbo(mu, logvar):
    """The ELBO of q = N(mu, diag e^logvar) in closed form, by hand."""
    var = np.exp(logvar)
    resid = X - mu @ W.T - B
    e_lik = (-0.5 * D_X * math.log(2 * math.pi * NOISE_VAR)
             - (np.sum(resid**2, -1) + np.sum(var * np.sum(W**2, 0), -1)) / (2 * NOISE_VAR))
    e_prior = -0.5 * D_Z * math.log(2 * math.pi) - 0.5 * np.sum(mu**2 + var, -1)
    entropy = 0.5 * np.sum(np.log(2 * math.pi * math.e * var), -1)
    return e_lik + e_prior + entropy


def test_iwae_is_exact_for_every_k_when_q_is_the_posterior():
    m, lv = exact_posterior()
    for k in (1, 7, 300):
        got = vm.iwae_bound(linear_gaussian_log_joint, m, lv, k, n_repeats=3,
                            generator=torch.Generator().manual_seed(k)).numpy()
        np.testing.assert_allclose(got, np.tile(exact_log_evidence(), (3, 1)), atol=1e-10)


def test_iwae_starts_at_the_elbo_and_climbs_to_log_evidence():
    m, lv = exact_posterior()
    mu, logvar = m + 0.3, lv + 0.5  # a worse q: shifted and wider
    gen = torch.Generator().manual_seed(0)
    elbo = vm.elbo_mc(linear_gaussian_log_joint, mu, logvar, 40_000, generator=gen).numpy()
    np.testing.assert_allclose(elbo, exact_elbo(mu, logvar), atol=0.03)
    truth = exact_log_evidence()
    assert np.all(truth - exact_elbo(mu, logvar) > 0.3)  # a real gap to close
    means = []
    for k in (1, 10, 100, 1000):
        draws = vm.iwae_bound(linear_gaussian_log_joint, mu, logvar, k, n_repeats=200, generator=gen)
        se = draws.std(0).numpy() / math.sqrt(200)
        mean = draws.mean(0).numpy()
        assert np.all(mean <= truth + 4 * se + 1e-12)  # a lower bound in expectation
        means.append(mean)
    means = np.array(means)
    assert np.all(np.diff(means, axis=0) > 0)
    np.testing.assert_allclose(means[-1], truth, atol=0.02)


def test_log_mean_exp_matches_mpmath_at_extreme_scales():
    for values in ([-1e4, -1e4 + 1.0, -1e4 - 3.0], [800.0, 801.0], [1e-3, -2.0, 5.0]):
        exact = float(mpmath.log(sum(mpmath.exp(mpmath.mpf(v)) for v in values) / len(values)))
        got = float(vm.log_mean_exp(torch.tensor(values, dtype=torch.float64)))
        assert math.isfinite(got) and abs(got - exact) < 1e-9 * max(1.0, abs(exact))
    both = vm.log_mean_exp(torch.tensor([[0.0, -math.inf], [-math.inf, -math.inf]]), dim=1)
    assert abs(float(both[0]) - math.log(0.5)) < 1e-7 and float(both[1]) == -math.inf


def test_log_mean_exp_and_iwae_reject_bad_input():
    with pytest.raises(ValueError, match="at least one"):
        vm.log_mean_exp(torch.zeros(3, 0), dim=1)
    with pytest.raises(ValueError, match="NaN"):
        vm.log_mean_exp(torch.tensor([0.0, math.nan]))
    m, lv = exact_posterior()
    with pytest.raises(ValueError, match="n_importance"):
        vm.iwae_bound(linear_gaussian_log_joint, m, lv, 0)
    with pytest.raises(ValueError, match="shape"):
        vm.iwae_bound(linear_gaussian_log_joint, m, lv[:, :1], 5)


def test_optimised_q_finds_the_exact_posterior():
    m, lv = exact_posterior()
    mu, logvar = vm.optimise_gaussian_q(linear_gaussian_log_joint, m + 0.5, lv + 0.7,
                                        steps=400, n_samples=32, lr=0.03, seed=0)
    np.testing.assert_allclose(mu.numpy(), m, atol=0.03)
    np.testing.assert_allclose(logvar.numpy(), lv, atol=0.1)
    with pytest.raises(ValueError, match="steps"):
        vm.optimise_gaussian_q(linear_gaussian_log_joint, m, lv, steps=0)


def test_member_log_joint_matches_the_stack_decoder_path():
    model = vm.VAEStack(3, 2, 16, 64)
    x = torch.bernoulli(torch.full((4, 64), 0.3), generator=torch.Generator().manual_seed(0))
    z = torch.randn(5, 4, 2)
    with torch.no_grad():
        nll = torch.stack([vm.reconstruction_nll(model, x, zk.expand(3, -1, -1))[1] for zk in z])
    expected = -nll.double() + Normal(0.0, 1.0).log_prob(z.double()).sum(-1)
    np.testing.assert_allclose(vm.member_log_joint(model, x, member=1)(z.double()).numpy(),
                               expected.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="out of range"):
        vm.member_log_joint(model, x, member=3)
    with pytest.raises(ValueError, match="plain decoder"):
        vm.member_log_joint(vm.VAEStack(1, 2, 16, 64, True), x)


def test_empirical_log_mass_counts_repeated_rows():
    x = np.array([[0, 1], [1, 1], [0, 1], [0, 0], [0, 1]])
    counts = Counter(map(tuple, x))
    expected = [math.log(counts[tuple(r)] / len(x)) for r in x]
    np.testing.assert_allclose(vm.empirical_log_mass(x), expected)
    entropy = -sum(c / len(x) * math.log(c / len(x)) for c in counts.values())
    assert abs(-vm.empirical_log_mass(x).mean() - entropy) < 1e-12
    with pytest.raises(ValueError, match="non-empty"):
        vm.empirical_log_mass(np.zeros(3))


def test_gaussian_decoder_nll_is_the_normal_log_density_and_rejects_bad_variance():
    gen = torch.Generator().manual_seed(1)
    x, mean = torch.rand(6, 64, generator=gen), torch.rand(6, 64, generator=gen)
    for variance in (0.01, 0.5, 3.0):
        expected = -Normal(mean, math.sqrt(variance)).log_prob(x).sum(-1)
        torch.testing.assert_close(vm.gaussian_decoder_nll(x, mean, variance), expected)
    for bad in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="positive"):
            vm.gaussian_decoder_nll(x, mean, bad)


def test_grid_elbo_matches_gauss_hermite_and_the_closed_form_kl():
    model = vm.VAEStack(1, 2, 16, 64)
    x = torch.bernoulli(torch.full((3, 64), 0.4), generator=torch.Generator().manual_seed(2))
    mu = torch.tensor([[0.2, -0.4], [1.0, 0.3], [-0.5, 0.0]], dtype=torch.float64)
    logvar = torch.tensor([[-1.0, -0.5], [-2.0, -1.5], [-0.3, -1.2]], dtype=torch.float64)
    grid = vm.grid_posterior(model, x, n_grid=301)
    by_gh = vm.expected_log_likelihood_gh(model, x, mu, logvar) - vae_kl(mu, logvar).numpy()
    np.testing.assert_allclose(grid.elbo(mu.numpy(), logvar.numpy()), by_gh, atol=1e-4)
