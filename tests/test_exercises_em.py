"""The chapter-7 exercises accept right answers computed by independent routes and name the misconceptions."""

import math
import warnings

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import entropy, multivariate_normal
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture

from klcourse import fit_gmm_em
from klcourse.em import e_step
from klcourse.exercises import em as ex
from klcourse.exercises import evaluate, get_exercise, list_exercises
from klcourse.exercises.hints import HINTS


def verdict(exercise, answer):
    return evaluate(f"em.{exercise}", answer)


def test_six_exercises_of_several_kinds_are_registered():
    exercises = list_exercises("em")
    assert len(exercises) >= 5
    assert {e.kind for e in exercises} >= {"number", "function", "predict", "choice"}


# --------------------------------------------------------------------------- kl-gap
def test_kl_gap_accepts_scipy_value_and_names_mistakes():
    q = np.array(ex.GAP_Q)
    joint = np.array(ex.GAP_JOINT)
    post = joint / joint.sum()
    right = entropy(q, post)  # scipy's relative entropy D(q || post)
    # second independent route: gap = log p(x) - L(q), with L = E_q[log p(x, z)] + H(q)
    elbo = np.sum(q * np.log(joint)) + entropy(q)
    assert right == pytest.approx(math.log(joint.sum()) - elbo, rel=1e-12)
    assert verdict("kl-gap", right).passed
    assert verdict("kl-gap", entropy(post, q)).misconception == "swapped"
    assert verdict("kl-gap", right / math.log(2)).misconception == "bits"
    assert verdict("kl-gap", -elbo).misconception == "unnormalised"
    assert verdict("kl-gap", elbo).misconception == "elbo-not-gap"
    assert not verdict("kl-gap", 1.1 * right).passed


# --------------------------------------------------------------------------- e-step
def scipy_e_step(x, weights, means, covs):
    lj = np.column_stack([np.log(w) + np.atleast_1d(multivariate_normal(m, c).logpdf(x))
                          for w, m, c in zip(weights, means, covs, strict=True)])
    return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))


def test_e_step_accepts_independent_and_reference_implementations():
    assert verdict("e-step", scipy_e_step).passed
    assert verdict("e-step", e_step).misconception == "klcourse-own"


def test_e_step_names_the_mistakes():
    def no_weights(x, weights, means, covs):
        return scipy_e_step(x, np.full(len(weights), 1 / len(weights)), means, covs)

    def columns(x, weights, means, covs):
        joint = np.column_stack([w * multivariate_normal(m, c).pdf(x) for w, m, c in zip(weights, means, covs,
                                                                                         strict=True)])
        return joint / joint.sum(axis=0, keepdims=True)

    def joint_only(x, weights, means, covs):
        return np.column_stack([w * multivariate_normal(m, c).pdf(x) for w, m, c in zip(weights, means, covs,
                                                                                        strict=True)])

    assert verdict("e-step", no_weights).misconception == "forgot-weights"
    assert verdict("e-step", columns).misconception == "wrong-axis"
    assert verdict("e-step", joint_only).misconception == "unnormalised"
    assert not verdict("e-step", lambda x, w, m, c: np.zeros(3)).passed
    assert verdict("e-step", 3.0).status == "invalid"


# --------------------------------------------------------------------------- m-step mean
def average_means(x, resp):
    return np.array([np.average(x, axis=0, weights=resp[:, k]) for k in range(resp.shape[1])])


def test_m_step_mean_accepts_weighted_average_and_names_mistakes():
    assert verdict("m-step-mean", average_means).passed
    assert verdict("m-step-mean", lambda x, r: np.einsum("nk,nd->kd", r, x) / len(x)).misconception == \
        "divide-by-n"
    assert verdict("m-step-mean", lambda x, r: np.einsum("nk,nd->kd", r, x)).misconception == "unnormalised"

    def hard(x, r):
        labels = r.argmax(axis=1)
        return np.array([x[labels == k].mean(axis=0) for k in range(r.shape[1])])

    assert verdict("m-step-mean", hard).misconception == "hard-assignment"


# --------------------------------------------------------------------------- can-decrease
def test_can_decrease_prediction():
    # the claim, checked on data: exact EM (no ridge) never lowers the log-likelihood
    ll = fit_gmm_em(load_iris().data[:, 2:], 3, reg_covar=0.0, seed=3).log_likelihood
    assert np.all(np.diff(ll) >= -1e-10 * np.abs(ll[1:]))
    assert verdict("can-decrease", "Never decreases ").passed
    assert verdict("can-decrease", "can decrease").misconception == "can decrease"
    assert verdict("can-decrease", "strictly increases").misconception == "strictly increases"
    assert verdict("can-decrease", "maybe").status == "invalid"


# --------------------------------------------------------------------------- elbo-from-numbers
def test_elbo_from_numbers():
    right = -(abs(ex.ELBO_LOG_LIK) + ex.ELBO_GAP)  # the log-likelihood is negative here
    assert ex.ELBO_LOG_LIK < 0
    assert verdict("elbo-from-numbers", right).passed
    assert verdict("elbo-from-numbers", ex.ELBO_LOG_LIK + ex.ELBO_GAP).misconception == "added-gap"
    assert verdict("elbo-from-numbers", ex.ELBO_GAP - ex.ELBO_LOG_LIK).misconception == "sign"
    assert verdict("elbo-from-numbers", ...).status == "not answered"


# --------------------------------------------------------------------------- better-optimum
def test_better_optimum_agrees_with_sklearn_runs_from_the_same_starts():
    x = load_iris().data
    summary = {}
    for option, seed in zip(ex.OPTIMUM_OPTIONS, ex.OPTIMUM_SEEDS, strict=True):
        start = fit_gmm_em(x, 3, n_iter=1, seed=seed).initial
        gm = GaussianMixture(3, weights_init=start.weights, means_init=start.means,
                             precisions_init=np.linalg.inv(start.covs), max_iter=1000, tol=1e-10)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(x)
        smallest = np.linalg.eigvalsh(gm.covariances_).min()
        summary[option] = (gm.score(x) * len(x), smallest < 100 * gm.reg_covar)
    healthy = {o: ll for o, (ll, collapsed) in summary.items() if not collapsed}
    best = max(healthy, key=healthy.get)
    assert len(healthy) == 2  # one of the three runs collapses: that is the point of the exercise
    assert verdict("better-optimum", best).passed
    for option, (_, collapsed) in summary.items():
        if option != best:
            feedback = verdict("better-optimum", option)
            assert feedback.misconception == option
            assert ("ridge" in feedback.message) == collapsed
    top = max(summary, key=lambda o: summary[o][0])
    assert summary[top][1]  # the highest log-likelihood belongs to the collapsed run


# --------------------------------------------------------------------------- issue 9: underflow, forgotten H(q)
def naive_density_e_step(x, weights, means, covs):
    """The version the chapter warns against: densities (not log-densities) normalised row by row."""
    dens = np.column_stack([w * multivariate_normal(m, c).pdf(x) for w, m, c in zip(weights, means, covs,
                                                                                      strict=True)])
    with np.errstate(all="ignore"):
        return dens / dens.sum(axis=1, keepdims=True)


def test_e_step_has_points_whose_log_density_underflows():
    case = next(c for c in get_exercise("em.e-step").checker.cases() if c.tag == "underflow")
    x, weights, means, covs = case.args
    logpdf = np.column_stack([multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covs, strict=True)])
    assert np.all(logpdf[:-1] < ex.UNDERFLOW_LOG_DENSITY)
    assert np.all(np.exp(logpdf[:-1]) == 0.0)  # the naive version sees 0/0 there


def test_e_step_rejects_the_naive_density_version():
    fb = verdict("e-step", naive_density_e_step)
    assert not fb.passed and fb.misconception == "underflow", fb.message
    assert "logsumexp" in fb.message


def test_kl_gap_names_a_forgotten_entropy_of_q():
    q = np.array(ex.GAP_Q)
    post = np.array(ex.GAP_JOINT) / np.sum(ex.GAP_JOINT)
    cross_entropy = float(-np.sum(q * np.log(post)))  # log p(x) − E_q[log p(x, z)]: the ELBO without H(q)
    assert cross_entropy == pytest.approx(entropy(q, post) + entropy(q), rel=1e-12)
    fb = verdict("kl-gap", round(cross_entropy, 3))
    assert not fb.passed and fb.misconception == "forgot-entropy", fb.message


# --------------------------------------------------------------------------- proximal-gap
def _proximal_terms():
    old = np.array(ex.PROX_JOINT_OLD) / sum(ex.PROX_JOINT_OLD)
    new = np.array(ex.PROX_JOINT_NEW) / sum(ex.PROX_JOINT_NEW)
    return old, new


def test_proximal_gap_accepts_the_value_from_its_definition():
    """Q(θ|θ_old) − log p(x|θ) from the definition of Q, and from −H(p_old) − D(p_old ‖ p_θ) with scipy."""
    old, new = _proximal_terms()
    joint_new = np.array(ex.PROX_JOINT_NEW)
    from_definition = np.sum(old * np.log(joint_new)) - math.log(joint_new.sum())
    assert from_definition == pytest.approx(-entropy(old) - entropy(old, new), rel=1e-12)
    assert verdict("proximal-gap", from_definition).passed
    assert verdict("proximal-gap", round(from_definition, 3)).passed


@pytest.mark.parametrize("name", ["forgot-entropy", "swapped", "under-new", "sign", "forgot-kl", "new-entropy",
                                  "bits"])
def test_proximal_gap_names_the_mistake(name):
    old, new = _proximal_terms()
    right = -entropy(old) - entropy(old, new)
    wrong = {"forgot-entropy": -entropy(old, new), "swapped": -entropy(old) - entropy(new, old),
             "under-new": np.sum(new * np.log(old)), "sign": -right, "forgot-kl": -entropy(old),
             "new-entropy": -entropy(new) - entropy(old, new), "bits": right / math.log(2)}[name]
    fb = verdict("proximal-gap", wrong)
    assert not fb.passed and fb.misconception == name, fb.message


def test_proximal_gap_hints_point_to_the_identity_not_the_one_line_solution():
    hints = HINTS["em.proximal-gap"]
    assert not any("np." in h for h in hints), "a hint spells out the numpy solution"
    assert "−H(p_old) − D(p_old ‖ p_new)" in hints[-1]


def test_proximal_gap_far_answer_does_not_reveal_the_value():
    fb = verdict("proximal-gap", -5.0)
    assert not fb.passed and fb.misconception is None and "1.33" not in fb.message and "1.34" not in fb.message
