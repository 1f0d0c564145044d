"""Chapter 4 exercises: each checker accepts an answer computed here by an independent route
(scipy.special.rel_entr, adaptive quadrature, hand formulas, torch.optim.Adam) and names every
targeted misconception."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate, optimize
from scipy.special import rel_entr

import klcourse.exercises.asymmetry as ex
from klcourse.asymmetry import EXAMPLE_MIXTURE
from klcourse.exercises import evaluate, list_exercises

LN2, LN10 = math.log(2), math.log(10)


def assert_misconception(exercise_id, answer, name):
    fb = evaluate(exercise_id, answer)
    assert not fb.passed and fb.misconception == name, (fb.misconception, fb.message)


def kl_discrete(p, q):
    return float(np.sum(rel_entr(p, q)))


def normal_logpdf(x, m, s):
    return -0.5 * ((x - m) / s) ** 2 - math.log(s) - 0.5 * math.log(2 * math.pi)


def kl_normal_quad(mu0, var0, mu1, var1):
    """D(N(mu0, var0) ‖ N(mu1, var1)) by adaptive quadrature; the arguments are variances."""
    s0, s1 = math.sqrt(var0), math.sqrt(var1)

    def integrand(x):
        log_p = normal_logpdf(x, mu0, s0)
        return math.exp(log_p) * (log_p - normal_logpdf(x, mu1, s1))

    return integrate.quad(integrand, mu0 - 40 * s0, mu0 + 40 * s0, epsabs=1e-13, epsrel=1e-12, limit=200)[0]


def test_seven_exercises_of_mixed_kinds_are_registered():
    exercises = list_exercises("asymmetry")
    assert len(exercises) == 7
    assert {e.kind for e in exercises} >= {"array", "number", "function", "predict", "choice", "counterexample"}


@pytest.mark.parametrize("exercise", [e.id for e in list_exercises("asymmetry")])
def test_unanswered_and_wrong_types_are_not_a_crash(exercise):
    assert evaluate(exercise, ...).status == "not answered"
    assert evaluate(exercise, None).status == "not answered"
    assert evaluate(exercise, object()).status == "invalid"


# ------------------------------------------------------------------ both-directions
def right_pair():
    return np.array([kl_discrete(ex.PAIR_P, ex.PAIR_Q), kl_discrete(ex.PAIR_Q, ex.PAIR_P)])


def test_both_directions_accepts_scipy_rel_entr():
    assert evaluate("asymmetry.both-directions", right_pair()).passed
    by_hand = [0.7 * math.log(0.7 / 0.2) + 0.2 * math.log(0.2 / 0.5) + 0.1 * math.log(0.1 / 0.3),
               0.2 * math.log(0.2 / 0.7) + 0.5 * math.log(0.5 / 0.2) + 0.3 * math.log(0.3 / 0.1)]
    assert evaluate("asymmetry.both-directions", by_hand).passed


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (right_pair()[::-1], "swapped"),
        (right_pair() / LN2, "bits"),
        (right_pair() / LN10, "log10"),
        (np.full(2, right_pair()[0]), "assumed-symmetric"),
        (np.full(2, right_pair()[1]), "assumed-symmetric"),
    ],
)
def test_both_directions_names_misconceptions(wrong, name):
    assert_misconception("asymmetry.both-directions", wrong, name)


def test_both_directions_wrong_shape_is_invalid():
    assert evaluate("asymmetry.both-directions", right_pair()[0]).status == "invalid"


# ------------------------------------------------------------------ gaussian-reverse
def test_gaussian_reverse_accepts_quadrature_and_hand_formula():
    # Q = N(1, 1), P = N(0, 4): D(Q‖P) = log(2/1) + (1 + 1) / (2 * 4) - 1/2
    assert evaluate("asymmetry.gaussian-reverse", kl_normal_quad(1.0, 1.0, 0.0, 4.0)).passed
    assert evaluate("asymmetry.gaussian-reverse", math.log(2) + 2 / 8 - 0.5).passed


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (kl_normal_quad(0.0, 4.0, 1.0, 1.0), "swapped"),
        (kl_normal_quad(1.0, 1.0, 0.0, 16.0), "sigma-variance"),  # 4 read as the standard deviation
        (math.log(2) + 2 / 8, "forgot-constant"),
        ((math.log(2) + 2 / 8 - 0.5) / LN2, "bits"),
    ],
)
def test_gaussian_reverse_names_misconceptions(wrong, name):
    assert_misconception("asymmetry.gaussian-reverse", wrong, name)


def test_gaussian_reverse_negative_answer_gets_gibbs_hint():
    fb = evaluate("asymmetry.gaussian-reverse", -0.2)
    assert not fb.passed and "never negative" in fb.message


# ------------------------------------------------------------------ fit-forward
def fit_forward_via_raw_moments(weights, means, sds):
    """E[X] and sqrt(E[X²] - E[X]²), with E[X²] = Σ w (s² + m²): a different formula from the reference."""
    w, m, s = (np.asarray(a, dtype=float) for a in (weights, means, sds))
    first, second = np.sum(w * m), np.sum(w * (s**2 + m**2))
    return first, math.sqrt(second - first**2)


def test_fit_forward_accepts_an_independent_implementation():
    assert evaluate("asymmetry.fit-forward", fit_forward_via_raw_moments).passed


def test_fit_forward_reference_minimises_quadrature_forward_kl_on_a_case():
    weights, means, sds = (0.9, 0.1), (0.0, 8.0), (1.0, 1.0)

    def forward(theta):
        def integrand(x):
            parts = zip(weights, means, sds, strict=True)
            log_p = math.log(sum(w * math.exp(normal_logpdf(x, m, s)) for w, m, s in parts))
            return math.exp(log_p) * (log_p - normal_logpdf(x, theta[0], math.exp(theta[1])))

        return integrate.quad(integrand, -15, 20, points=[0.0, 8.0], limit=200)[0]

    found = optimize.minimize(forward, x0=[0.0, 0.0], method="Nelder-Mead", options={"xatol": 1e-6})
    mu, sigma = fit_forward_via_raw_moments(weights, means, sds)
    assert found.x[0] == pytest.approx(mu, abs=1e-3) and math.exp(found.x[1]) == pytest.approx(sigma, rel=1e-3)


def variance_instead_of_sd(weights, means, sds):
    mu, sigma = fit_forward_via_raw_moments(weights, means, sds)
    return mu, sigma**2


def within_variance_only(weights, means, sds):
    w, m, s = (np.asarray(a, dtype=float) for a in (weights, means, sds))
    return float(np.sum(w * m)), float(np.sqrt(np.sum(w * s**2)))


def unweighted_moments(weights, means, sds):
    m, s = np.asarray(means, dtype=float), np.asarray(sds, dtype=float)
    return fit_forward_via_raw_moments(np.ones_like(m) / m.size, m, s)


@pytest.mark.parametrize(
    ("buggy", "name"),
    [(variance_instead_of_sd, "sigma-variance"), (within_variance_only, "within-variance-only"),
     (unweighted_moments, "unweighted")],
)
def test_fit_forward_names_misconceptions(buggy, name):
    assert_misconception("asymmetry.fit-forward", buggy, name)


def test_fit_forward_rejects_other_wrong_functions():
    def mode_of_heaviest(weights, means, sds):
        k = int(np.argmax(weights))
        return means[k], sds[k]

    fb = evaluate("asymmetry.fit-forward", mode_of_heaviest)
    assert not fb.passed and fb.misconception is None

    def crashes(weights, means, sds):
        raise RuntimeError("boom")

    fb = evaluate("asymmetry.fit-forward", crashes)
    assert not fb.passed and "RuntimeError" in fb.message


# ------------------------------------------------------------------ wide-or-narrow
def test_wide_or_narrow_answer_matches_an_independent_comparison():
    mix = ex.WIDE_OR_NARROW_MIXTURE
    w, m, s = (np.array(mix[k]) for k in ("weights", "means", "sds"))
    sigma_forward = math.sqrt(np.sum(w * (s**2 + m**2)) - np.sum(w * m) ** 2)

    def reverse(theta):
        mu, sigma = theta[0], math.exp(theta[1])
        x = np.linspace(mu - 12 * sigma, mu + 12 * sigma, 4001)
        log_q = normal_logpdf(x, mu, sigma)
        log_p = np.logaddexp(*(np.log(wk) + normal_logpdf(x, mk, sk) for wk, mk, sk in zip(w, m, s, strict=True)))
        return integrate.simpson(np.exp(log_q) * (log_q - log_p), x=x)

    best = min((optimize.minimize(reverse, x0=[mu0, 0.0], method="Nelder-Mead") for mu0 in (-2.0, 0.0, 2.0)),
               key=lambda r: r.fun)
    expected = "forward" if sigma_forward > math.exp(best.x[1]) else "reverse"
    assert evaluate("asymmetry.wide-or-narrow", expected).passed
    assert evaluate("asymmetry.wide-or-narrow", f"  {expected.upper()} ").passed


@pytest.mark.parametrize("wrong", ["reverse", "equal"])
def test_wide_or_narrow_rejects_the_other_options(wrong):
    assert_misconception("asymmetry.wide-or-narrow", wrong, wrong)


def test_wide_or_narrow_rejects_unknown_option():
    assert evaluate("asymmetry.wide-or-narrow", "both").status == "invalid"


# ------------------------------------------------------------------ which-basin
def adam_endpoint(start, steps=500, lr=0.05):
    """Reverse-KL descent written here with torch.optim.Adam and torch.trapezoid on a plain grid."""
    mix = EXAMPLE_MIXTURE
    x = torch.linspace(-40.0, 40.0, 4001, dtype=torch.float64)
    log_p = torch.logsumexp(torch.stack([
        math.log(w) + torch.distributions.Normal(m, s).log_prob(x)
        for w, m, s in zip(mix["weights"], mix["means"], mix["sds"], strict=True)
    ]), dim=0)
    mu = torch.tensor(start[0], dtype=torch.float64, requires_grad=True)
    log_sigma = torch.tensor(math.log(start[1]), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([mu, log_sigma], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 - t / steps)
    for _ in range(steps):
        opt.zero_grad()
        log_q = torch.distributions.Normal(mu, log_sigma.exp()).log_prob(x)
        torch.trapezoid(log_q.exp() * (log_q - log_p), x).backward()
        opt.step()
        sched.step()
    return mu.item(), log_sigma.exp().item()


def test_which_basin_answer_matches_an_independent_descent():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors: one thread is much faster on a busy machine
    try:
        mu, sigma = adam_endpoint(ex.BASIN_START)
    finally:
        torch.set_num_threads(threads)
    left, right = EXAMPLE_MIXTURE["means"]
    if abs(mu - left) < 0.2 and sigma < 1.5:
        expected = "left"
    elif abs(mu - right) < 0.2 and sigma < 1.5:
        expected = "right"
    else:
        assert sigma > 2.0  # the third optimum spans both modes
        expected = "wide"
    assert evaluate("asymmetry.which-basin", expected).passed
    for wrong in set(ex.BASIN_OPTIONS) - {expected}:
        assert_misconception("asymmetry.which-basin", wrong, wrong)


# ------------------------------------------------------------------ infinite-one-way
def test_infinite_one_way_accepts_counterexamples():
    pairs = [([0.5, 0.5, 0.0], [0.4, 0.3, 0.3]), ([1.0, 0.0], [0.5, 0.5]), (np.array([0.2, 0.8, 0]), [0.1, 0.1, 0.8])]
    for p, q in pairs:
        assert np.isfinite(kl_discrete(p, q)) and np.isinf(kl_discrete(q, p))
        assert evaluate("asymmetry.infinite-one-way", (p, q)).passed


@pytest.mark.parametrize(
    ("pair", "name"),
    [
        (([0.4, 0.3, 0.3], [0.5, 0.5, 0.0]), "swapped"),
        (([0.5, 0.5], [0.9, 0.1]), "both-finite"),
        (([0.5, 0.5, 0.0], [0.0, 0.5, 0.5]), "both-infinite"),
    ],
)
def test_infinite_one_way_names_misconceptions(pair, name):
    assert_misconception("asymmetry.infinite-one-way", pair, name)


@pytest.mark.parametrize(
    "bad",
    ["p and q", ([0.5, 0.5],), ([0.5, 0.5], [0.2, 0.3, 0.5]), ([0.5, 0.6], [0.5, 0.5]), ([-0.5, 1.5], [0.5, 0.5])],
)
def test_infinite_one_way_invalid_answers_are_explained(bad):
    fb = evaluate("asymmetry.infinite-one-way", bad)
    assert not fb.passed and fb.status == "invalid"


# ------------------------------------------------------------------ mean-field-variance
def mean_field_by_inversion():
    """1 / (Σ⁻¹)₁₁ by scipy's inverse of the covariance written out entry by entry."""
    from scipy import linalg

    (s1, s2), rho = ex.MEAN_FIELD_SDS, ex.MEAN_FIELD_RHO
    cov = [[s1**2, rho * s1 * s2], [rho * s1 * s2, s2**2]]
    return 1.0 / linalg.inv(cov)[0, 0]


def test_mean_field_variance_accepts_inversion_and_three_figures():
    assert evaluate("asymmetry.mean-field-variance", mean_field_by_inversion()).passed
    assert evaluate("asymmetry.mean-field-variance", 1.15).passed  # 2.25 * 0.51 = 1.1475


def test_mean_field_variance_is_the_conditional_variance_by_monte_carlo():
    # the variance of z1 given z2 = 0.3, from draws near z2 = 0.3 of the joint Gaussian
    (s1, s2), rho = ex.MEAN_FIELD_SDS, ex.MEAN_FIELD_RHO
    rng = np.random.default_rng(0)
    z2 = rng.normal(0.0, s2, 2_000_000)
    z1 = rho * s1 / s2 * z2 + rng.normal(0.0, 1.0, z2.size) * np.sqrt(ex._mean_field_variance())
    near = np.abs(z2 - 0.3) < 0.02
    assert np.var(z1[near]) == pytest.approx(mean_field_by_inversion(), rel=0.02)
    assert np.corrcoef(z1, z2)[0, 1] == pytest.approx(rho, abs=2e-3)


@pytest.mark.parametrize(
    ("wrong", "name"),
    [
        (2.25, "marginal-variance"),
        (1 / 1.1475, "precision"),
        (math.sqrt(1.1475), "sigma-variance"),
        (1.5 * 0.51, "sigma-variance"),
        (2.25 * 0.3, "one-minus-rho"),
        (0.51, "other-coordinate"),
    ],
)
def test_mean_field_variance_names_misconceptions(wrong, name):
    assert_misconception("asymmetry.mean-field-variance", wrong, name)


def test_mean_field_variance_far_answer_gets_no_value():
    fb = evaluate("asymmetry.mean-field-variance", 3.7)
    assert not fb.passed and fb.misconception is None and "1.1475" not in fb.message and "1.15" not in fb.message
