"""Exercises of chapter 9, "Estimating KL from samples" (``book/09_estimation.ipynb``, slug ``estimation``).

Every expected value is computed here by code (lazily, on first use), never typed. The data each exercise
states are the module constants below; the notebook reads them from here (and glues them into its text),
so the statement and the checker cannot drift apart. ``tests/test_exercises_estimation.py`` recomputes
each expected value by an independent route.

Conventions: samples ``x ~ Q``, the estimators target ``D(Q || P)``, ``log_r = log p(x) - log q(x)``,
``r = p(x)/q(x)``; ``k1 = -log_r``, ``k2 = log_r**2 / 2``, ``k3 = (r - 1) - log_r``.  N(mu, sigma^2) with
sigma^2 the variance; the tuples below hold (mu, sigma), sigma a standard deviation.

References
----------
Schulman, J. (2020). Approximating KL divergence. http://joschu.net/blog/kl-approx.html
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_softmax, softmax
from scipy.stats import norm

from klcourse.divergences import kl_divergence
from klcourse.estimators import gaussian_shift_control_variate, kl_regularised_optimum, mc_kl
from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Judged,
    Misconception,
    choice,
    function,
    number,
    sum_vs_mean,
    swapped,
)
from klcourse.exercises.checkers import array as array_checker
from klcourse.exercises.core import WRONG, Verdict, register

# --------------------------------------------------------------------------- the chapter's policy problem
#: logits of the reference policy pi_ref over ten actions (pi_ref = softmax(REF_LOGITS))
REF_LOGITS = (1.5, 1.2, 1.0, 0.8, 0.5, 0.3, 0.0, -0.3, -0.8, -1.5)
#: the fixed reward of each action
REWARDS = (0.1, 0.3, 0.0, 0.6, 0.2, 0.9, 0.4, 1.0, 0.5, 0.7)
#: the demo: KL-penalty strength, step size, number of steps, actions sampled per step, early-stopping target
BETA = 0.25
LEARNING_RATE = 2.0
N_STEPS = 250
BATCH_SIZE = 32
KL_TARGET = 0.6

# --------------------------------------------------------------------------- data stated in the exercises
#: small-sample: five draws from Q = N(0, 1); P = N(0.5, 1)
SMALL_X = (0.3, -1.1, 0.8, 1.9, -0.4)
SMALL_Q = (0.0, 1.0)
SMALL_P = (0.5, 1.0)

#: which-negative: the options
NEGATIVE_OPTIONS = ("k1", "k2", "k3", "none")

#: negative-average: Q = N(0, 1), P = N(0.1, 1), the k1 estimate averages N_AVERAGE draws
AVERAGE_Q = (0.0, 1.0)
AVERAGE_P = (0.1, 1.0)
N_AVERAGE = 100

#: policy-kl: logits of a trained policy pi = softmax(POLICY_LOGITS), compared with pi_ref
POLICY_LOGITS = (0.9, 1.0, 0.2, 1.6, 0.3, 2.3, 0.4, 2.2, -0.2, -0.6)

#: optimal-policy: the KL-penalty strength of the exercise (the rewards and pi_ref are the chapter's)
EX_BETA = 0.5

#: lambda-star: the mean shift delta of P = N(delta, 1) against Q = N(0, 1)
LAMBDA_DELTA = 0.8


def reference_policy() -> np.ndarray:
    """pi_ref = softmax(REF_LOGITS)."""
    return softmax(np.array(REF_LOGITS))


def swapped_roles(value) -> Misconception:
    """log q and log p exchanged in an estimator (the draws still come from Q)."""
    return Misconception(
        "swapped",
        value,
        "The roles of log q and log p are exchanged. The draws come from Q, so r = p(x)/q(x), i.e. "
        "log r = log p(x) − log q(x). With r = q/p the average estimates neither D(Q‖P) nor D(P‖Q) "
        "(that one would need draws from P).",
    )


# --------------------------------------------------------------------------- estimation.small-sample
def kl_normal_pair(q, p) -> float:
    """D(N(q) || N(p)) for (mu, sigma) pairs, via klcourse.kl_normal."""
    from klcourse.gaussians import kl_normal

    return kl_normal(q[0], q[1], p[0], p[1])


def _small_log_densities():
    x = np.array(SMALL_X)
    return norm.logpdf(x, *SMALL_Q), norm.logpdf(x, *SMALL_P)


def small_sample_expected() -> np.ndarray:
    """[k1, k2, k3] estimates of D(Q || P) from the five draws SMALL_X ~ Q."""
    log_q, log_p = _small_log_densities()
    return np.array([mc_kl(log_q, log_p, estimator=k) for k in ("k1", "k2", "k3")])


def _small_swapped() -> np.ndarray:
    log_q, log_p = _small_log_densities()
    return np.array([mc_kl(log_p, log_q, estimator=k) for k in ("k1", "k2", "k3")])


register(
    "estimation.small-sample",
    title="k1, k2 and k3 from five samples",
    kind="array",
    checker=array_checker(
        small_sample_expected,
        sigfigs=3,
        unit="nats",
        misconceptions=[
            swapped_roles(_small_swapped),
            sum_vs_mean(lambda: len(SMALL_X) * small_sample_expected()),
            Misconception("exact-kl", lambda: np.full(3, kl_normal_pair(SMALL_Q, SMALL_P)),
                          "Those are the exact D(Q‖P), three times. The exercise asks for what each estimator "
                          "gives on these five draws: averages of per-sample values, which differ from the exact "
                          "value and from each other."),
        ],
    ),
)


# --------------------------------------------------------------------------- estimation.k3-function
def k3_cases(rng: np.random.Generator) -> list[Case]:
    """Randomised and edge cases for ``k3_estimate(log_q, log_p)`` (samples from Q = N(0, 1))."""
    def gaussian(n, mu_p, s_p):
        x = rng.standard_normal(n)
        return Case(f"{n} draws from N(0, 1) against P = N({mu_p}, {s_p}²)",
                    (norm.logpdf(x), norm.logpdf(x, mu_p, s_p)))

    x = rng.standard_normal(40)
    batch = rng.standard_normal((4, 25))
    return [
        gaussian(50, 0.3, 1.0),
        gaussian(50, 2.0, 1.0),
        gaussian(200, -0.5, 0.7),
        Case("identical log-densities (the estimate must be 0)", (norm.logpdf(x), norm.logpdf(x))),
        Case("a single sample", (np.array([-1.2]), np.array([-0.4]))),
        Case("a (4, 25) batch: the mean over all entries", (norm.logpdf(batch), norm.logpdf(batch, 0.4, 1.2))),
        Case("large log-ratios (|log r| up to 8)", (np.zeros(30), rng.uniform(-8, 8, 30))),
        Case("tiny log-ratios (|log r| ~ 1e-6)", (np.full(30, -1.3), -1.3 + 1e-6 * rng.standard_normal(30))),
        Case("a draw outside P's support (log p = -inf): D(Q‖P) is infinite",
             (np.array([-1.0, -2.0, -0.5]), np.array([-1.5, -np.inf, -0.7])), tag="support"),
        _precision_case(),
    ]


def _precision_case() -> Case:
    """Nearly identical distributions in float32: not graded, it only feeds the precision remark."""
    rng = np.random.default_rng(7)
    log_q = np.zeros(1000, dtype=np.float32)
    log_p = (PRECISION_PROBE_SCALE * rng.standard_normal(1000)).astype(np.float32)
    return Case(f"float32 input with |log r| ≈ {PRECISION_PROBE_SCALE:g}", (log_q, log_p), tag="precision",
                graded=False)


def _log_r(log_q, log_p) -> np.ndarray:
    return np.asarray(log_p, dtype=float) - np.asarray(log_q, dtype=float)


def _quiet(fn):
    """Run a wrong implementation without floating-point warnings (inf - inf on the support-mismatch case)."""
    def wrapped(log_q, log_p):
        with np.errstate(all="ignore"):
            return fn(log_q, log_p)
    return wrapped


# The wrong implementations below must not raise on any case (log p = -inf included).
@_quiet
def _k3_swapped(log_q, log_p):
    log_r = -_log_r(log_q, log_p)  # r = q/p: the roles of the two densities exchanged
    return float(np.mean(np.expm1(log_r) - log_r))


@_quiet
def _k1(log_q, log_p):
    return float(np.mean(-_log_r(log_q, log_p)))


@_quiet
def _k2(log_q, log_p):
    return float(np.mean(0.5 * _log_r(log_q, log_p) ** 2))


@_quiet
def _k3_forgot_minus_one(log_q, log_p):
    log_r = _log_r(log_q, log_p)
    return float(np.mean(np.exp(log_r) - log_r))


@_quiet
def _k3_sum(log_q, log_p):
    log_r = _log_r(log_q, log_p)
    return float(np.sum(np.expm1(log_r) - log_r))


#: the probe behind the precision note: nearly identical distributions, float32 inputs
PRECISION_PROBE_SCALE = 1e-4


def _precision_note(j: Judged) -> str:
    """A hint when a (correct) k3 implementation loses accuracy on float32 input; '' otherwise."""
    for case, got, _ in j.output("precision"):
        log_q, log_p = (np.asarray(a, dtype=np.float64) for a in case.args)
        ref = mc_kl(log_q, log_p, estimator="k3")  # the float64 value of the same draws
        if isinstance(got, str) or got.size != 1:
            return ""  # the note is a bonus; never fail a correct answer over it
        rel = abs(float(got) - ref) / ref
        if np.isfinite(rel) and rel < 0.01:
            return ""
        return (f" One remark: on float32 input with |log r| ≈ {PRECISION_PROBE_SCALE:g} your function is off by "
                f"{'far more than 100%' if not np.isfinite(rel) or rel > 1 else f'about {100 * rel:.0f}%'} — "
                "exp(log r) − 1 cancels catastrophically in single precision. Compute in float64, and prefer "
                "np.expm1(log_r) − log_r (see the section on precision traps).")
    return ""


def _k3_nan_hint(case: Case) -> str:
    if case.tag == "support":
        return ("look for inf − inf or 0·inf: where log p = −inf, log r = log p − log q is −inf and r = exp(log r) "
                "is 0, so that draw's (r − 1) − log r is +inf and so is the mean.")
    return "with finite log q and log p, r = exp(log p − log q) is positive: look for a 0/0 or a log of r − 1."


def _k3_checker():
    def reference(log_q, log_p):
        return mc_kl(log_q, log_p, estimator="k3")

    misconceptions = [
        swapped_roles(_k3_swapped),
        Misconception("k1", _k1, "That is k1 = mean(log q − log p), the plain log-ratio average. k3 adds "
                      "the control variate r − 1 (with r = p/q), which has mean zero under Q."),
        Misconception("k2", _k2, "That is k2 = mean(½ (log r)²). The exercise asks for k3 = "
                      "mean((r − 1) − log r)."),
        Misconception("forgot-minus-one", _k3_forgot_minus_one,
                      "Off by exactly 1: k3 is (r − 1) − log r; the −1 makes each term vanish when p = q."),
        sum_vs_mean(_k3_sum),
    ]

    def diagnose(j: Judged):
        # a wrong formula may give NaN where log p = -inf; name it from the other cases
        m = j.match(misconceptions, where=lambda case: case.tag != "support")
        if m is not None:
            return Verdict(False, m.message, WRONG, m.name)
        return None

    return function(reference, k3_cases, name="k3_estimate", misconceptions=misconceptions, diagnose=diagnose,
                    nan_hint=_k3_nan_hint,
                    remark=_precision_note, infinite_reason="a draw where p = 0, i.e. log p = −inf")


register("estimation.k3-function", title="Implement k3_estimate(log_q, log_p)", kind="function",
         checker=_k3_checker())


# --------------------------------------------------------------------------- estimation.which-negative
register(
    "estimation.which-negative",
    title="Which estimator can give a negative single-sample value?",
    kind="predict",
    checker=choice(
        "k1",
        NEGATIVE_OPTIONS,
        explanations={
            "k2": "k2 = ½ (log r)² is a square, so it is never negative.",
            "k3": "k3 = (r − 1) − log r is never negative: log r ≤ r − 1 for every r > 0.",
            "none": "One of them can: k1 = −log r = log q(x) − log p(x) is negative at every draw where "
                    "p(x) > q(x).",
        },
    ),
)


# --------------------------------------------------------------------------- estimation.negative-average
def _average_shift() -> float:
    """delta sqrt(n) / 2 for the equal-variance pair: the mean k1 is N(delta^2/2, delta^2/n)."""
    (mu_q, s_q), (mu_p, s_p) = AVERAGE_Q, AVERAGE_P
    if s_q != s_p:
        raise ValueError("the closed form below needs equal standard deviations")
    delta = (mu_p - mu_q) / s_q
    return abs(delta) * math.sqrt(N_AVERAGE) / 2


def negative_average_expected() -> float:
    """P(k1 estimate < 0) = Phi(-delta sqrt(n) / 2): the k1 average is exactly Gaussian here."""
    return float(norm.cdf(-_average_shift()))


def _single_sample_fraction() -> float:
    (mu_q, s_q), (mu_p, _) = AVERAGE_Q, AVERAGE_P
    return float(norm.cdf(-abs(mu_p - mu_q) / s_q / 2))


register(
    "estimation.negative-average",
    title="How often is an average of 100 k1 values negative?",
    kind="number",
    checker=number(
        negative_average_expected,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("single-sample", _single_sample_fraction,
                          "That is the probability for a single k1 value. The estimate averages n draws: its "
                          "standard deviation shrinks by √n while its mean stays D(Q‖P)."),
            Misconception("complement", lambda: 1 - negative_average_expected(),
                          "That is the probability that the estimate is positive."),
            Misconception("n-not-sqrt-n", lambda: float(norm.cdf(-_average_shift() * math.sqrt(N_AVERAGE))),
                          "The standard deviation of an average of n independent values shrinks by √n, not n."),
            Misconception("never-negative", 0.0,
                          "An unbiased estimate of a positive number can still come out negative: k1's average "
                          "is negative whenever the draws happen to favour p(x) > q(x)."),
        ],
    ),
)


# --------------------------------------------------------------------------- estimation.policy-kl
def trained_policy() -> np.ndarray:
    return softmax(np.array(POLICY_LOGITS))


def policy_kl_expected() -> float:
    """D(pi || pi_ref), expectation under the trained policy pi."""
    log_ratio = log_softmax(np.array(POLICY_LOGITS)) - log_softmax(np.array(REF_LOGITS))
    return float(np.sum(trained_policy() * log_ratio))


register(
    "estimation.policy-kl",
    title="The exact KL divergence of the reference from a policy",
    kind="number",
    checker=number(
        policy_kl_expected,
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            swapped(lambda: kl_divergence(reference_policy(), trained_policy())),
        ],
    ),
)


# --------------------------------------------------------------------------- estimation.optimal-policy
def optimal_policy_expected() -> np.ndarray:
    return kl_regularised_optimum(reference_policy(), np.array(REWARDS), EX_BETA)


def _tilted(weights) -> np.ndarray:
    return weights / weights.sum()


register(
    "estimation.optimal-policy",
    title="The optimal policy under a KL penalty",
    kind="array",
    checker=array_checker(
        optimal_policy_expected,
        sigfigs=3,
        misconceptions=[
            Misconception("beta-times-r", lambda: _tilted(reference_policy() * np.exp(EX_BETA * np.array(REWARDS))),
                          "The exponent is R/β, not β·R: a stronger penalty (larger β) must keep the policy closer "
                          "to the reference, so β divides the reward."),
            Misconception("forgot-reference", lambda: softmax(np.array(REWARDS) / EX_BETA),
                          "π* is the reference policy tilted by exp(R/β): the factor π_ref(a) is missing."),
            Misconception("sign", lambda: _tilted(reference_policy() * np.exp(-np.array(REWARDS) / EX_BETA)),
                          "Wrong sign in the exponent: the optimum moves probability *towards* high reward."),
            Misconception("unnormalised", lambda: reference_policy() * np.exp(np.array(REWARDS) / EX_BETA),
                          "These weights have the right shape but do not sum to 1: divide by Z = Σ π_ref(a) "
                          "exp(R(a)/β)."),
        ],
    ),
)


# --------------------------------------------------------------------------- estimation.lambda-star
def lambda_star_expected() -> float:
    """Cov(log r, r) / Var(r) = delta^2 / (e^{delta^2} - 1) for Q = N(0, 1), P = N(delta, 1)."""
    return float(gaussian_shift_control_variate(LAMBDA_DELTA)["lambda_star"])


def _d2() -> float:
    return LAMBDA_DELTA**2


register(
    "estimation.lambda-star",
    title="The variance-optimal control-variate coefficient, by hand",
    kind="number",
    checker=number(
        lambda_star_expected,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("k3-coefficient", 1.0,
                          "1 is k3's coefficient, which is optimal only in the limit r → 1 (δ → 0). Compute "
                          "Cov(log r, r) / Var(r) for this δ."),
            Misconception("upside-down", lambda: math.expm1(_d2()) / _d2(),
                          "The ratio is upside down: λ* = Cov(log r, r) / Var(r), with the variance of the "
                          "control variate in the denominator."),
            Misconception("delta-not-squared", lambda: LAMBDA_DELTA / math.expm1(LAMBDA_DELTA),
                          "Use δ², not δ: Cov(log r, r) = δ² and Var(r) = e^(δ²) − 1."),
            Misconception("forgot-minus-one", lambda: _d2() / math.exp(_d2()),
                          "Var(r) = E[r²] − (E[r])² = e^(δ²) − 1: the − 1 is missing (E_Q[r] = 1)."),
            Misconception("sign", lambda: -lambda_star_expected(),
                          "The sign is off: with k_λ = −log r + λ(r − 1), the variance is smallest at "
                          "λ* = +Cov(log r, r) / Var(r), and Cov(log r, r) = δ² > 0."),
        ],
    ),
)
