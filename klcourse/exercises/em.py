"""Exercises of chapter 7, "EM climbs the ELBO" (``book/07_em.ipynb``).

Every expected value is computed here by code (lazily, on first use), never typed. The data each
exercise states in its text are the module constants below; the notebook glues them from here, so
the statement and the checker cannot drift apart.

References
----------
Bishop, C. M. (2006). *Pattern Recognition and Machine Learning*, Springer, sections 9.2-9.4.
Dempster, A. P., Laird, N. M. & Rubin, D. B. (1977). Maximum likelihood from incomplete data via
the EM algorithm. *JRSS B* 39(1), 1-38.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.special import logsumexp

from klcourse.em import e_step, fit_gmm_em, log_joint, m_step
from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Judged,
    Misconception,
    choice,
    function,
    number,
    swapped,
)
from klcourse.exercises.core import WRONG, Verdict, register

# --------------------------------------------------------------------------- data stated in the notebook
#: kl-gap: one data point, a guess q over three components, and the joint p(x, z = k | theta)
GAP_Q = (0.7, 0.2, 0.1)
GAP_JOINT = (0.004, 0.030, 0.006)

#: elbo-from-numbers: a log-likelihood and the KL gap D(q || p(z | x, theta)) at the same theta (nats)
ELBO_LOG_LIK = -186.6
ELBO_GAP = 2.4

#: better-optimum: k-means++ seeds of three EM runs on the four iris measurements, K = 3
OPTIMUM_SEEDS = (1, 11, 16)
OPTIMUM_OPTIONS = tuple(f"seed {s}" for s in OPTIMUM_SEEDS)
#: a component whose smallest variance is below this many times ``reg_covar`` has collapsed
COLLAPSE_FACTOR = 100.0

CAN_DECREASE_OPTIONS = ("strictly increases", "never decreases", "can decrease")


def posterior(joint) -> np.ndarray:
    """p(z | x) = p(x, z) / p(x) for one point."""
    joint = np.asarray(joint, dtype=float)
    return joint / joint.sum()


def _cross_entropy(p, q) -> float:
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return float(-np.sum(np.where(p > 0, p * np.log(q), 0.0)))


def _kl(p, q) -> float:
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    return float(np.sum(np.where(p > 0, p * np.log(p / q), 0.0)))


# --------------------------------------------------------------------------- 1. the KL gap for one point
register(
    "em.kl-gap",
    title="The KL gap for one data point",
    kind="number",
    checker=number(
        lambda: _kl(GAP_Q, posterior(GAP_JOINT)),
        sigfigs=3,
        unit="nats",
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(lambda: _kl(posterior(GAP_JOINT), GAP_Q)),
            Misconception(
                "unnormalised",
                lambda: _kl(GAP_Q, GAP_JOINT),
                "You compared q with the joint p(x, z | θ) instead of the posterior p(z | x, θ) = "
                "p(x, z | θ) / p(x | θ). That sum is −L(q, θ), the negative ELBO, not the gap.",
            ),
            Misconception(
                "forgot-entropy",
                lambda: _cross_entropy(GAP_Q, posterior(GAP_JOINT)),
                "The entropy of q is missing: the ELBO is E_q[log p(x, z | θ)] + H(q), so the gap "
                "log p(x | θ) − L(q, θ) is Σ_k q_k log q_k − Σ_k q_k log p(z = k | x, θ), with both sums.",
            ),
            Misconception(
                "elbo-not-gap",
                lambda: -_kl(GAP_Q, GAP_JOINT),
                "That is the ELBO L(q, θ) itself; the gap is log p(x | θ) − L(q, θ).",
            ),
        ],
    ),
)


# --------------------------------------------------------------------------- 2. implement the E-step
def _mixture(rng, k: int, d: int):
    weights = rng.dirichlet(np.full(k, 2.0))
    means = rng.normal(0.0, 3.0, size=(k, d))
    a = rng.normal(size=(k, d, d))
    covs = a @ np.swapaxes(a, 1, 2) / d + 0.3 * np.eye(d)
    return weights, means, covs


def _e_step_cases(rng) -> list[Case]:
    cases = []
    for n, k, d, label in [(6, 2, 1, "1-D data, two components"), (30, 3, 2, "2-D data, three components"),
                           (12, 5, 4, "4-D data, five components")]:
        weights, means, covs = _mixture(rng, k, d)
        x = rng.normal(0.0, 3.0, size=(n, d))
        cases.append(Case(label, (x, weights, means, covs)))
    weights, means, covs = _mixture(rng, 1, 3)
    cases.append(Case("a single component (every responsibility is 1)", (rng.normal(size=(4, 3)), weights,
                                                                           means, covs)))
    weights, means, covs = _mixture(rng, 3, 2)
    far = np.array([[12.0, -15.0], [-18.0, 9.0], [0.0, 0.0]])
    cases.append(Case("points far from every component", (far, weights, means, covs)))
    weights, means, covs = _mixture(rng, 3, 2)
    very_far = np.array([[150.0, -120.0], [-200.0, 90.0], [40.0, 260.0], [0.5, -0.5]])
    cases.append(Case("points so far from every component that each log-density is below −745 "
                      "(exp underflows to 0 in float64)", (very_far, weights, means, covs), tag="underflow"))
    return cases


#: every point but the last of the "underflow" case has log N(x | mu_k, Sigma_k) below this for every k
UNDERFLOW_LOG_DENSITY = -745.0


def _diagnose_underflow(j: Judged) -> Verdict | None:
    failing = j.failing()
    if failing and all(j.cases[i].tag == "underflow" for i in failing):
        return Verdict(False, "Your responsibilities are right for ordinary points but not for points far from every "
                       "component: there each π_k N(x | μ_k, Σ_k) underflows to 0 in float64 (its log is below "
                       "−745), and the row becomes 0/0. Keep everything in log space: log π_k + logpdf, then "
                       "subtract each row's logsumexp before exponentiating.", WRONG, "underflow")
    return None


def _normalise_rows(lj):
    return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))


register(
    "em.e-step",
    title="Implement the E-step",
    kind="function",
    checker=function(
        e_step,
        _e_step_cases,
        rtol=1e-6,
        atol=1e-9,
        name="e_step",
        diagnose=_diagnose_underflow,
        nan_hint="a row becomes 0/0 when every π_k N(x | μ_k, Σ_k) underflows to 0 (or a log-density is "
                 "−inf − (−inf)): keep the row in log space and subtract its logsumexp before exponentiating.",
        misconceptions=[
            Misconception(
                "forgot-weights",
                lambda x, w, m, c: _normalise_rows(log_joint(x, np.full(len(w), 1 / len(w)), m, c)),
                "Your responsibilities ignore the mixing weights: r_nk is proportional to "
                "π_k · N(x_n | μ_k, Σ_k), not to the density alone.",
            ),
            Misconception(
                "wrong-axis",
                lambda x, w, m, c: np.exp(log_joint(x, w, m, c) - logsumexp(log_joint(x, w, m, c), axis=0)),
                "You normalised over the data points (each column sums to 1). Each row — one point's "
                "distribution over the K components — must sum to 1.",
            ),
            Misconception(
                "unnormalised",
                lambda x, w, m, c: np.exp(log_joint(x, w, m, c)),
                "Those are the joint values π_k N(x_n | μ_k, Σ_k); divide each row by its sum p(x_n | θ) "
                "(in log space: subtract logsumexp) to get the posterior.",
            ),
        ],
    ),
)


# --------------------------------------------------------------------------- 3. implement the M-step mean update
def _reference_means(x, resp):
    return m_step(x, resp).means  # the means do not depend on the covariance ridge


def _m_step_cases(rng) -> list[Case]:
    cases = []
    for n, k, d, label in [(8, 2, 1, "1-D data, two components"), (40, 3, 2, "2-D data, three components"),
                           (25, 4, 5, "5-D data, four components")]:
        resp = rng.dirichlet(np.full(k, 0.7), size=n)
        cases.append(Case(label, (rng.normal(0.0, 2.0, size=(n, d)), resp)))
    resp = np.eye(3)[rng.integers(0, 3, size=9)]
    resp[:3] = np.eye(3)  # every component owns at least one point
    cases.append(Case("hard (0/1) responsibilities", (rng.normal(size=(9, 2)), resp)))
    cases.append(Case("a single component", (rng.normal(size=(7, 3)), np.ones((7, 1)))))
    return cases


register(
    "em.m-step-mean",
    title="Implement the M-step update of the means",
    kind="function",
    checker=function(
        _reference_means,
        _m_step_cases,
        rtol=1e-8,
        atol=1e-10,
        name="mean_update",
        misconceptions=[
            Misconception(
                "divide-by-n",
                lambda x, r: r.T @ x / x.shape[0],
                "You divided by the number of points n; each mean is a weighted average, so divide by "
                "that component's effective count N_k = Σ_n r_nk.",
            ),
            Misconception(
                "unnormalised",
                lambda x, r: r.T @ x,
                "That is the weighted sum Σ_n r_nk x_n; divide it by N_k = Σ_n r_nk to get an average.",
            ),
            Misconception(
                "hard-assignment",
                lambda x, r: _reference_means(x, np.eye(r.shape[1])[np.argmax(r, axis=1)]),
                "You assigned each point to its most likely component (k-means style). The M-step "
                "weights every point by its responsibility r_nk.",
            ),
        ],
    ),
)


# --------------------------------------------------------------------------- 4. predict: can the log-likelihood drop?
register(
    "em.can-decrease",
    title="Can the log-likelihood go down?",
    kind="predict",
    checker=choice(
        "never decreases",
        CAN_DECREASE_OPTIONS,
        explanations={
            "strictly increases": "Too strong: at a fixed point (a local maximum or a saddle) the E-step and "
                                  "M-step change nothing, and the log-likelihood stays exactly where it is.",
            "can decrease": "Follow the chain: the E-step makes the bound touch log p(x | θ_old), the M-step "
                            "cannot lower the bound, and the bound never exceeds log p(x | θ_new).",
        },
    ),
)


# --------------------------------------------------------------------------- 5. ELBO from two numbers
register(
    "em.elbo-from-numbers",
    title="The ELBO from the log-likelihood and the gap",
    kind="number",
    checker=number(
        lambda: ELBO_LOG_LIK - ELBO_GAP,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("added-gap", lambda: ELBO_LOG_LIK + ELBO_GAP,
                          "The ELBO is a lower bound: log p(x | θ) = L(q, θ) + gap, so L is the "
                          "log-likelihood minus the gap, not plus."),
            Misconception("sign", lambda: ELBO_GAP - ELBO_LOG_LIK,
                          "Check the sign: L(q, θ) = log p(x | θ) − D(q ‖ p(z | x, θ)); a "
                          "log-likelihood of continuous data can be negative, and so can L."),
        ],
    ),
)


# --------------------------------------------------------------------------- 6. interpret: which optimum?
@cache
def optimum_runs() -> dict:
    """The three runs of the better-optimum exercise: ``{option: (log-likelihood, smallest variance)}``."""
    from sklearn.datasets import load_iris

    x = load_iris().data
    out = {}
    for option, seed in zip(OPTIMUM_OPTIONS, OPTIMUM_SEEDS, strict=True):
        res = fit_gmm_em(x, 3, n_iter=1000, seed=seed)
        out[option] = (res.final_log_likelihood, float(np.linalg.eigvalsh(res.covs).min()), res.reg_covar)
    return out


def _collapsed(option: str) -> bool:
    _, smallest, reg = optimum_runs()[option]
    return smallest < COLLAPSE_FACTOR * reg


def _best_option() -> str:
    runs = optimum_runs()
    healthy = [o for o in OPTIMUM_OPTIONS if not _collapsed(o)]
    return max(healthy, key=lambda o: runs[o][0])


def _optimum_explanation(best: str, option: str) -> str:
    if _collapsed(option):
        top = optimum_runs()[option][0] >= max(run[0] for run in optimum_runs().values())
        return (("Highest log-likelihood, but look" if top else "Look") + " at that solution's smallest variance: "
                "it equals the ridge "
                "reg_covar. A component has collapsed onto points that share a value (the measurements are "
                "rounded to 0.1 cm); its likelihood is bought by the ridge, not by the data.")
    return ("A healthy solution, but another healthy run reached a higher log-likelihood: this one is a worse "
            "local optimum of the same objective.")


register(
    "em.better-optimum",
    title="Which initialisation found the better optimum?",
    kind="choice",
    checker=choice(_best_option, OPTIMUM_OPTIONS, explanations=_optimum_explanation),
)


# --------------------------------------------------------------------------- 7. the proximal penalty by hand
#: proximal-gap: one data point, the joint p(x, z = k | θ) under θ_old and under a candidate θ
PROX_JOINT_OLD = (0.004, 0.030, 0.006)
PROX_JOINT_NEW = (0.020, 0.010, 0.002)


def _entropy(p) -> float:
    return _cross_entropy(p, p)


def _proximal_gap() -> float:
    """Q(θ | θ_old) − log p(x | θ) = Σ_k p_old(k) log p(z = k | x, θ) = −H(p_old) − D(p_old ‖ p_θ)."""
    old, new = posterior(PROX_JOINT_OLD), posterior(PROX_JOINT_NEW)
    return -_entropy(old) - _kl(old, new)


register(
    "em.proximal-gap",
    title="The proximal penalty by hand",
    kind="number",
    checker=number(
        _proximal_gap,
        sigfigs=3,
        unit="nats",
        misconceptions=[
            Misconception(
                "forgot-entropy",
                lambda: -_kl(posterior(PROX_JOINT_OLD), posterior(PROX_JOINT_NEW)),
                "That is −D(p(z | x, θ_old) ‖ p(z | x, θ)) alone. The identity is Q(θ | θ_old) + H(p_old) = "
                "log p(x | θ) − D(p_old ‖ p_θ): the entropy of the old posterior is part of Q − log p too "
                "(a constant in θ, but not zero).",
            ),
            Misconception(
                "swapped",
                lambda: -_entropy(posterior(PROX_JOINT_OLD))
                - _kl(posterior(PROX_JOINT_NEW), posterior(PROX_JOINT_OLD)),
                "The KL term has its arguments swapped: the proximal penalty is D(p(z | x, θ_old) ‖ p(z | x, θ)), "
                "averaged under the old posterior, which is the distribution Q averages under.",
            ),
            Misconception(
                "under-new",
                lambda: -_cross_entropy(posterior(PROX_JOINT_NEW), posterior(PROX_JOINT_OLD)),
                "You averaged under the new posterior p(z | x, θ). Q(θ | θ_old) averages log p(x, z | θ) under "
                "the old posterior — the responsibilities the E-step computed from θ_old.",
            ),
            Misconception(
                "sign",
                lambda: -_proximal_gap(),
                "Check the sign: Q(θ | θ_old) − log p(x | θ) = Σ_k p_old(k) log p(z = k | x, θ), an average "
                "of logs of probabilities, so it is never positive.",
            ),
            Misconception(
                "forgot-kl",
                lambda: -_entropy(posterior(PROX_JOINT_OLD)),
                "That is −H(p_old) alone, the value at θ = θ_old. At another θ the posterior has moved, and "
                "the KL penalty D(p_old ‖ p_θ) is subtracted as well.",
            ),
            Misconception(
                "new-entropy",
                lambda: -_entropy(posterior(PROX_JOINT_NEW))
                - _kl(posterior(PROX_JOINT_OLD), posterior(PROX_JOINT_NEW)),
                "The entropy belongs to the old posterior p(z | x, θ_old) (it is the H(q) of the ELBO, with "
                "q from the E-step), not to the new one.",
            ),
        ],
    ),
)
