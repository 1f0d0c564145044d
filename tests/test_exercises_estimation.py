"""The chapter-9 exercises accept right answers computed by independent routes and name the misconceptions."""

import math

import mpmath
import numpy as np
from scipy import optimize
from scipy.stats import entropy

from klcourse import mc_kl
from klcourse.exercises import estimation as ex
from klcourse.exercises import evaluate, list_exercises


def verdict(exercise, answer):
    return evaluate(f"estimation.{exercise}", answer)


def test_at_least_five_exercises_of_several_kinds():
    exercises = list_exercises("estimation")
    assert len(exercises) >= 5
    assert {e.kind for e in exercises} >= {"number", "array", "function", "predict"}


def test_unanswered_and_malformed_answers_get_a_sentence():
    assert verdict("small-sample", ...).status == "not answered"
    assert verdict("optimal-policy", np.ones(3)).status == "invalid"
    assert verdict("k3-function", 0.5).status == "invalid"
    assert verdict("which-negative", 1).status == "invalid"


# --------------------------------------------------------------------------- small-sample
def hand_log_ratios():
    """log p(x) - log q(x) = delta x - delta^2 / 2 for Q = N(0, 1), P = N(delta, 1)."""
    assert ex.SMALL_Q == (0.0, 1.0) and ex.SMALL_P[1] == 1.0
    delta = ex.SMALL_P[0]
    return [delta * x - delta**2 / 2 for x in ex.SMALL_X]


def test_small_sample_accepts_hand_values_and_names_mistakes():
    lr = hand_log_ratios()
    n = len(lr)
    k1 = sum(-v for v in lr) / n
    k2 = sum(v * v / 2 for v in lr) / n
    k3 = sum(math.exp(v) - 1 - v for v in lr) / n
    right = np.array([k1, k2, k3])
    assert verdict("small-sample", right).passed
    assert verdict("small-sample", right.tolist()).passed
    swapped = np.array([sum(v for v in lr) / n, k2, sum(math.exp(-v) - 1 + v for v in lr) / n])
    assert verdict("small-sample", swapped).misconception == "swapped"
    assert verdict("small-sample", n * right).misconception == "sum-vs-mean"
    assert verdict("small-sample", right / math.log(2)).misconception == "bits"
    exact = ex.SMALL_P[0] ** 2 / 2  # D(N(0,1) || N(delta,1)) = delta^2 / 2
    assert verdict("small-sample", [exact] * 3).misconception == "exact-kl"
    assert not verdict("small-sample", right * 1.05).passed
    assert verdict("small-sample", right[:2]).status == "invalid"


def test_small_sample_k1_is_negative_here():
    """The point of the exercise data: five draws can make k1 negative while k2 and k3 stay positive."""
    lr = hand_log_ratios()
    assert sum(-v for v in lr) < 0 < sum(math.exp(v) - 1 - v for v in lr)


# --------------------------------------------------------------------------- k3-function
def k3_mpmath(log_q, log_p):
    """k3 with 40-digit arithmetic, entry by entry."""
    lq, lp = np.ravel(log_q), np.ravel(log_p)
    if np.any(np.isneginf(lp)):
        return math.inf
    with mpmath.workdps(40):
        terms = [mpmath.expm1(mpmath.mpf(b) - mpmath.mpf(a)) - (mpmath.mpf(b) - mpmath.mpf(a))
                 for a, b in zip(lq.tolist(), lp.tolist(), strict=True)]
        return float(mpmath.fsum(terms) / len(terms))


def k3_float64(log_q, log_p):
    log_r = np.asarray(log_p, dtype=float) - np.asarray(log_q, dtype=float)
    return np.mean(np.expm1(log_r) - log_r)


def test_k3_function_accepts_independent_implementations():
    assert verdict("k3-function", k3_mpmath).passed
    fb = verdict("k3-function", k3_float64)
    assert fb.passed and "One remark" not in fb.message
    assert verdict("k3-function", lambda lq, lp: mc_kl(lq, lp, estimator="k3")).misconception == "klcourse-own"


def test_k3_function_naive_float32_formula_passes_with_a_precision_note():
    def naive(log_q, log_p):
        log_r = log_p - log_q  # stays float32 on float32 input
        return np.mean(np.exp(log_r) - 1 - log_r)

    fb = verdict("k3-function", naive)
    assert fb.passed and "One remark" in fb.message and "float32" in fb.message


def test_k3_function_names_the_mistakes():
    def lr(lq, lp):
        return np.asarray(lp, dtype=float) - np.asarray(lq, dtype=float)

    def k1(lq, lp):
        return np.mean(lq - lp)

    def k2(lq, lp):
        return np.mean(lr(lq, lp) ** 2) / 2

    def swapped(lq, lp):
        u = -lr(lq, lp)
        return np.mean(np.exp(u) - 1 - u)  # NaN on the support-mismatch case, like a learner's code

    def total(lq, lp):
        return np.sum(np.expm1(lr(lq, lp)) - lr(lq, lp))

    def no_minus_one(lq, lp):
        return np.mean(np.exp(lr(lq, lp)) - lr(lq, lp))

    expected = {k1: "k1", k2: "k2", swapped: "swapped", total: "sum-vs-mean", no_minus_one: "forgot-minus-one"}
    for fn, name in expected.items():
        fb = verdict("k3-function", fn)
        assert not fb.passed and fb.misconception == name, (fn.__name__, fb)


def test_k3_function_rejects_an_unrecognised_bug_without_revealing_values():
    fb = verdict("k3-function", lambda lq, lp: 2 * k3_float64(lq, lp))
    assert not fb.passed and fb.misconception is None and "wrong result" in fb.message


def test_k3_function_reports_a_crash_as_a_sentence():
    def crashes(lq, lp):
        raise ZeroDivisionError("oops")

    fb = verdict("k3-function", crashes)
    assert not fb.passed and "raised ZeroDivisionError" in fb.message


# --------------------------------------------------------------------------- which-negative
def test_which_negative():
    assert verdict("which-negative", "k1").passed
    assert verdict("which-negative", " K1 ").passed
    for wrong in ("k2", "k3", "none"):
        assert verdict("which-negative", wrong).misconception == wrong
    rng = np.random.default_rng(4)
    x = rng.standard_normal(1000)
    log_r = 0.1 * x - 0.005  # Q = N(0,1), P = N(0.1,1)
    assert np.any(-log_r < 0) and np.all(0.5 * log_r**2 >= 0) and np.all(np.expm1(log_r) - log_r >= 0)


# --------------------------------------------------------------------------- negative-average
def phi_lower(z):
    """Phi(z) by the complementary error function (independent of scipy)."""
    return 0.5 * math.erfc(-z / math.sqrt(2))


def test_negative_average_accepts_erfc_value_and_monte_carlo_agrees():
    delta, n = ex.AVERAGE_P[0] - ex.AVERAGE_Q[0], ex.N_AVERAGE
    right = phi_lower(-delta * math.sqrt(n) / 2)
    assert verdict("negative-average", right).passed
    rng = np.random.default_rng(5)
    x = rng.standard_normal((20000, n))
    k1 = np.mean(-(delta * x - delta**2 / 2), axis=1)
    frac = np.mean(k1 < 0)
    assert abs(frac - right) < 4 * math.sqrt(right * (1 - right) / len(k1))


def test_negative_average_names_the_mistakes():
    delta, n = ex.AVERAGE_P[0] - ex.AVERAGE_Q[0], ex.N_AVERAGE
    right = phi_lower(-delta * math.sqrt(n) / 2)
    assert verdict("negative-average", phi_lower(-delta / 2)).misconception == "single-sample"
    assert verdict("negative-average", 1 - right).misconception == "complement"
    assert verdict("negative-average", phi_lower(-delta * n / 2)).misconception == "n-not-sqrt-n"
    assert verdict("negative-average", 0).misconception == "never-negative"
    assert not verdict("negative-average", 0.2).passed


# --------------------------------------------------------------------------- policy-kl
def softmax_by_hand(logits):
    w = [math.exp(v) for v in logits]
    return np.array(w) / sum(w)


def test_policy_kl_accepts_scipy_value_and_names_mistakes():
    pi, ref = softmax_by_hand(ex.POLICY_LOGITS), softmax_by_hand(ex.REF_LOGITS)
    right = entropy(pi, ref)  # scipy: D(pi || ref)
    assert verdict("policy-kl", right).passed
    assert verdict("policy-kl", entropy(ref, pi)).misconception == "swapped"
    assert verdict("policy-kl", entropy(pi, ref, base=2)).misconception == "bits"
    assert verdict("policy-kl", right / math.log(10)).misconception == "log10"
    assert not verdict("policy-kl", 1.1 * right).passed


# --------------------------------------------------------------------------- optimal-policy
def tilt_by_hand(beta, sign=1.0, with_ref=True, normalise=True, mode="divide"):
    ref = softmax_by_hand(ex.REF_LOGITS) if with_ref else np.ones(len(ex.REWARDS))
    w = np.array([p * math.exp(sign * (r / beta if mode == "divide" else r * beta))
                  for p, r in zip(ref, ex.REWARDS, strict=True)])
    return w / w.sum() if normalise else w


def test_optimal_policy_matches_numerical_maximisation():
    ref, r, beta = softmax_by_hand(ex.REF_LOGITS), np.array(ex.REWARDS), ex.EX_BETA

    def negative_objective(theta):
        pi = softmax_by_hand(theta)
        return -(pi @ r - beta * entropy(pi, ref))

    best = optimize.minimize(negative_objective, np.zeros(len(r)), method="BFGS", options={"gtol": 1e-10})
    np.testing.assert_allclose(softmax_by_hand(best.x), tilt_by_hand(beta), atol=1e-5)


def test_optimal_policy_accepts_the_hand_formula_and_names_mistakes():
    beta = ex.EX_BETA
    assert verdict("optimal-policy", tilt_by_hand(beta)).passed
    assert verdict("optimal-policy", tilt_by_hand(beta, mode="multiply")).misconception == "beta-times-r"
    assert verdict("optimal-policy", tilt_by_hand(beta, with_ref=False)).misconception == "forgot-reference"
    assert verdict("optimal-policy", tilt_by_hand(beta, sign=-1.0)).misconception == "sign"
    assert verdict("optimal-policy", tilt_by_hand(beta, normalise=False)).misconception == "unnormalised"
    assert not verdict("optimal-policy", softmax_by_hand(ex.REF_LOGITS)).passed


# ------------------------------------------------------------------ lambda-star
def lambda_star_by_minimising_the_variance():
    """The minimiser of Var(-log r + lam (r - 1)) under Q, with the moments from mpmath quadrature."""
    d = ex.LAMBDA_DELTA

    def moment(f):
        return float(mpmath.quad(lambda x: mpmath.npdf(x) * f(x), [-mpmath.inf, mpmath.inf]))

    mean_k = d**2 / 2

    def variance(lam):
        return moment(lambda x: (-(d * x - d**2 / 2) + lam * mpmath.expm1(d * x - d**2 / 2) - mean_k) ** 2)

    return optimize.minimize_scalar(variance, bounds=(0.0, 1.5), method="bounded", options={"xatol": 1e-8}).x


def test_lambda_star_accepts_the_minimiser_of_the_variance_and_three_figures():
    assert verdict("lambda-star", lambda_star_by_minimising_the_variance()).passed
    assert verdict("lambda-star", round(0.64 / math.expm1(0.64), 3)).passed


def test_lambda_star_names_misconceptions():
    d2 = ex.LAMBDA_DELTA**2
    cases = {
        "k3-coefficient": 1.0,
        "upside-down": math.expm1(d2) / d2,
        "delta-not-squared": ex.LAMBDA_DELTA / math.expm1(ex.LAMBDA_DELTA),
        "forgot-minus-one": d2 / math.exp(d2),
        "sign": -d2 / math.expm1(d2),
    }
    for name, wrong in cases.items():
        fb = verdict("lambda-star", wrong)
        assert not fb.passed and fb.misconception == name, (name, fb.message)


def test_lambda_star_far_answer_does_not_reveal_the_value():
    fb = verdict("lambda-star", 0.2)
    assert not fb.passed and fb.misconception is None and "0.714" not in fb.message
