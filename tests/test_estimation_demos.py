"""Chapter-9 helpers in klcourse.estimators against independent routes: hand closed forms for Gaussian
log-ratios, quadrature, scipy optimisation, torch autograd and direct simulation."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats
from scipy.special import logsumexp

from klcourse import mc_kl
from klcourse.estimators import (
    first_exceedance,
    gaussian_estimator_study,
    kl_estimates,
    kl_estimates_along,
    kl_regularised_gradient,
    kl_regularised_objective,
    kl_regularised_optimum,
    train_kl_regularised_policy,
)

REF = np.array([0.3, 0.2, 0.15, 0.1, 0.1, 0.08, 0.05, 0.02])
REWARDS = np.array([0.0, 0.4, 0.1, 0.9, 0.3, 1.0, 0.2, 0.8])
BETA = 0.3


def kl_by_hand(p, q):
    return float(sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0))


def softmax_by_hand(theta):
    w = np.exp(np.asarray(theta) - np.max(theta))
    return w / w.sum()


# --------------------------------------------------------------------------- kl_estimates
def test_kl_estimates_equal_mc_kl_row_by_row_and_along_any_axis():
    rng = np.random.default_rng(0)
    lq, lp = rng.normal(-1, 1, (7, 30)), rng.normal(-1.2, 1, (7, 30))
    for name in ("k1", "k2", "k3"):
        rows = kl_estimates(lq, lp, estimator=name)
        assert rows.shape == (7,)
        np.testing.assert_allclose(rows, [mc_kl(a, b, estimator=name) for a, b in zip(lq, lp, strict=True)],
                                   rtol=1e-13)
        cols = kl_estimates(lq, lp, estimator=name, axis=0)
        np.testing.assert_allclose(cols, [mc_kl(a, b, estimator=name) for a, b in zip(lq.T, lp.T, strict=True)],
                                   rtol=1e-13)


def test_kl_estimates_support_mismatch_and_bad_input():
    assert kl_estimates([[-1.0, -2.0], [-1.0, -2.0]], [[-1.5, -np.inf], [-1.5, -1.0]]).tolist()[0] == math.inf
    with pytest.raises(ValueError, match="unknown estimator"):
        kl_estimates([-1.0], [-1.0], estimator="k4")
    with pytest.raises(ValueError, match="shape mismatch"):
        kl_estimates(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least one sample"):
        kl_estimates(np.zeros((2, 0)), np.zeros((2, 0)))
    with pytest.raises(ValueError, match="NaN"):
        kl_estimates([np.nan], [0.0])


# --------------------------------------------------------------------------- Gaussian bias/variance study
@pytest.mark.parametrize("delta", [0.1, 1.0])
def test_gaussian_study_exact_value_against_quadrature(delta):
    study = gaussian_estimator_study(0.0, 1.0, delta, 1.0, n_samples=10, n_reps=50)
    q, p = stats.norm(0, 1), stats.norm(delta, 1)
    value, _ = integrate.quad(lambda x: q.pdf(x) * (q.logpdf(x) - p.logpdf(x)), -30, 30, epsabs=1e-13)
    assert study.exact == pytest.approx(value, rel=1e-9)


@pytest.mark.parametrize("delta", [0.1, 1.0])
def test_gaussian_study_against_hand_moments(delta):
    """Q = N(0,1), P = N(delta,1): log r = delta x - delta^2/2 ~ N(-delta^2/2, delta^2), so
    E[k1] = E[k3] = delta^2/2, E[k2] = (delta^2 + delta^4/4)/2, sd of one k1 value = delta,
    P(k1 < 0) = P(x > delta/2) = Phi(-delta/2)."""
    study = gaussian_estimator_study(0.0, 1.0, delta, 1.0, n_samples=100, n_reps=2000, seed=3)
    n = study.n_samples * study.n_reps
    means = {"k1": delta**2 / 2, "k2": (delta**2 + delta**4 / 4) / 2, "k3": delta**2 / 2}
    for name, mean in means.items():
        se = study.std(name) / math.sqrt(study.n_reps)
        assert abs(np.mean(study.estimates[name]) - mean) < 4 * se, name
    assert study.single_std["k1"] == pytest.approx(delta, rel=0.02)
    frac = stats.norm.cdf(-delta / 2)
    assert abs(study.single_negative["k1"] - frac) < 4 * math.sqrt(frac * (1 - frac) / n)
    assert study.single_negative["k2"] == study.single_negative["k3"] == 0.0
    assert study.std("k3") < study.std("k1")
    summary = study.summary()
    assert summary["k1"]["relative_std"] == pytest.approx(study.std("k1") / study.exact)
    assert summary["k1"]["negative"] == study.negative_fraction("k1")


def test_gaussian_study_k2_bias_is_visible_for_the_far_pair():
    study = gaussian_estimator_study(0.0, 1.0, 1.0, 1.0, n_reps=2000)
    assert study.bias("k2") > 10 * study.std("k2") / math.sqrt(study.n_reps)
    assert study.bias("k2") == pytest.approx(1.0 / 8, rel=0.15)  # delta^4 / 8


def test_gaussian_study_is_deterministic_and_validates():
    a = gaussian_estimator_study(0.0, 1.0, 0.5, 2.0, n_samples=5, n_reps=10, seed=1)
    b = gaussian_estimator_study(0.0, 1.0, 0.5, 2.0, n_samples=5, n_reps=10, seed=1)
    np.testing.assert_array_equal(a.estimates["k1"], b.estimates["k1"])
    with pytest.raises(ValueError):
        gaussian_estimator_study(0.0, -1.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        gaussian_estimator_study(0.0, 1.0, 0.0, 1.0, n_reps=1)


# --------------------------------------------------------------------------- the KL-regularised policy
def test_optimum_matches_numerical_maximisation():
    def negative_objective(theta):
        pi = softmax_by_hand(theta)
        return -(pi @ REWARDS - BETA * kl_by_hand(pi, REF))

    best = optimize.minimize(negative_objective, np.zeros(len(REF)), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(kl_regularised_optimum(REF, REWARDS, BETA), softmax_by_hand(best.x), atol=1e-5)


def test_objective_identity_beta_log_z_minus_kl_to_optimum():
    """J(pi) = beta log Z - beta D(pi || pi*), checked on random policies with a hand-written KL."""
    star = kl_regularised_optimum(REF, REWARDS, BETA)
    log_z = logsumexp(np.log(REF) + REWARDS / BETA)
    rng = np.random.default_rng(1)
    for pi in rng.dirichlet(np.ones(len(REF)), size=5):
        j = kl_regularised_objective(pi, REF, REWARDS, BETA)
        assert j == pytest.approx(BETA * log_z - BETA * kl_by_hand(pi, star), rel=1e-10)
    assert kl_regularised_objective(star, REF, REWARDS, BETA) == pytest.approx(BETA * log_z, rel=1e-12)


def test_optimum_edge_cases():
    ref = np.array([0.5, 0.0, 0.5])
    star = kl_regularised_optimum(ref, [1.0, 5.0, 0.0], 0.1)
    assert star[1] == 0.0 and star.sum() == pytest.approx(1.0)
    greedy = kl_regularised_optimum(REF, REWARDS, 1e-4)  # tiny beta: no overflow, all mass on the best action
    assert np.all(np.isfinite(greedy)) and greedy[np.argmax(REWARDS)] == pytest.approx(1.0)
    np.testing.assert_allclose(kl_regularised_optimum(REF, REWARDS, 1e6), REF, rtol=1e-5)
    with pytest.raises(ValueError, match="beta"):
        kl_regularised_optimum(REF, REWARDS, 0.0)
    with pytest.raises(ValueError, match="same length"):
        kl_regularised_optimum(REF, REWARDS[:3], 1.0)


def test_exact_gradient_against_torch_autograd():
    rng = np.random.default_rng(2)
    for _ in range(3):
        theta = rng.normal(size=len(REF))
        t = torch.tensor(theta, requires_grad=True)
        pi = torch.softmax(t, 0)
        ref = torch.tensor(REF)
        objective = pi @ torch.tensor(REWARDS) - BETA * torch.sum(pi * (torch.log(pi) - torch.log(ref)))
        (grad,) = torch.autograd.grad(objective, t)
        np.testing.assert_allclose(kl_regularised_gradient(theta, REF, REWARDS, BETA), grad.numpy(), atol=1e-12)


def test_exact_training_climbs_to_the_optimum():
    run = train_kl_regularised_policy(REF, REWARDS, BETA, lr=3.0, n_steps=300, seed=0)
    assert run.stopped_at is None and run.probs.shape == (301, len(REF))
    np.testing.assert_allclose(run.probs[0], REF, rtol=1e-12)
    assert run.exact_kl[0] == pytest.approx(0.0, abs=1e-15)
    assert run.kl_to_optimum[-1] < 1e-4 * run.kl_to_optimum[0]
    assert np.all(np.diff(run.objective) >= -1e-12)  # gradient ascent with a small enough step
    log_z = logsumexp(np.log(REF) + REWARDS / BETA)
    assert run.objective[-1] == pytest.approx(BETA * log_z, rel=1e-5)
    np.testing.assert_allclose(run.exact_kl, [kl_by_hand(p, REF) for p in run.probs], rtol=1e-9, atol=1e-15)


def test_sampled_policy_gradient_also_reaches_the_optimum():
    run = train_kl_regularised_policy(REF, REWARDS, BETA, lr=3.0, n_steps=300, gradient="sampled", seed=1)
    assert run.kl_to_optimum[-1] < 1e-3 < run.kl_to_optimum[0]


def test_logged_estimates_are_unbiased_along_the_trajectory():
    run = train_kl_regularised_policy(REF, REWARDS, BETA, lr=3.0, n_steps=40, seed=0)
    steps = [0, 5, 40]
    est = kl_estimates_along(run.probs[steps], REF, batch_size=32, n_reps=4000, seed=2)
    for j, t in enumerate(steps):
        for name in ("k1", "k3"):
            column = est[name][:, j]
            assert abs(column.mean() - run.exact_kl[t]) <= 4 * column.std() / math.sqrt(len(column)) + 1e-15
    assert np.max(np.abs(est["k1"][:, 0])) < 1e-12  # pi_0 = pi_ref: every estimate is 0 up to round-off
    assert est["k2"][:, -1].mean() > run.exact_kl[40]  # k2's bias at a KL of this size


def test_direction_of_the_logged_estimates():
    """The estimates target D(pi_t || pi_ref) (draws from pi_t), not D(pi_ref || pi_t)."""
    run = train_kl_regularised_policy(REF, REWARDS, BETA, lr=3.0, n_steps=60, seed=0)
    est = kl_estimates_along(run.probs[-1:], REF, batch_size=64, n_reps=3000, seed=3)["k3"][:, 0]
    reverse = kl_by_hand(REF, run.probs[-1])
    se = est.std() / math.sqrt(len(est))
    assert abs(est.mean() - run.exact_kl[-1]) < 4 * se < abs(reverse - run.exact_kl[-1])


def test_early_stopping_fires_at_the_first_estimate_above_target():
    run = train_kl_regularised_policy(REF, REWARDS, BETA, lr=3.0, n_steps=300, kl_target=0.2,
                                      stop_estimator="k1", seed=4)
    t = run.stopped_at
    assert t is not None and len(run.exact_kl) == t + 1
    assert run.estimates["k1"][t] > 0.2 and np.all(run.estimates["k1"][:t] <= 0.2)
    never = train_kl_regularised_policy(REF, REWARDS, BETA, n_steps=20, kl_target=100.0)
    assert never.stopped_at is None and len(never.exact_kl) == 21
    with pytest.raises(ValueError, match="gradient"):
        train_kl_regularised_policy(REF, REWARDS, BETA, gradient="adam")
    with pytest.raises(ValueError, match="strictly positive"):
        train_kl_regularised_policy([0.5, 0.5, 0.0], [1.0, 0.0, 0.0], BETA)


def test_first_exceedance():
    values = np.array([[0.1, 0.5, 0.3, 0.9], [0.1, 0.2, 0.2, 0.2], [0.7, 0.0, 0.0, 0.0]])
    assert first_exceedance(values, 0.4).tolist() == [1, -1, 0]
    assert first_exceedance([0.1, 0.2], 0.15) == 1
