"""Chapter 8 exercises: every checker accepts an answer computed here by an independent route (scipy,
exact fractions, high-precision mpmath, torch's own F.kl_div) and names each targeted misconception."""

import math
import subprocess
import sys
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import rel_entr, softmax
from scipy.stats import entropy

from klcourse import distillation_loss
from klcourse.exercises import distillation as ex
from klcourse.exercises import evaluate, list_exercises


def verdict(name, answer):
    return evaluate(f"distillation.{name}", answer)


def assert_misconception(name, answer, expected):
    fb = verdict(name, answer)
    assert not fb.passed and fb.misconception == expected, (fb.misconception, fb.message)


def test_six_exercises_of_mixed_kinds_are_registered():
    exercises = list_exercises("distillation")
    assert len(exercises) >= 5
    assert {e.kind for e in exercises} >= {"number", "function", "predict"}
    assert sum(e.kind == "function" for e in exercises) >= 2


@pytest.mark.parametrize("exercise", list_exercises("distillation"), ids=lambda e: e.id)
def test_unanswered_and_wrong_types_are_not_crashes(exercise):
    assert evaluate(exercise.id, ...).status == "not answered"
    wrong_type = 3 if exercise.kind == "predict" else "a string"
    assert evaluate(exercise.id, wrong_type).status == "invalid"


def test_registering_the_exercises_does_not_import_torch():
    code = "import sys, klcourse.exercises.distillation; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- loss-by-hand
def scipy_rows(p, q):
    return rel_entr(p, q).sum(axis=1)


def loss_parts():
    s, t, T = np.array(ex.LOSS_STUDENT), np.array(ex.LOSS_TEACHER), ex.LOSS_T
    return softmax(s / T, axis=1), softmax(t / T, axis=1), T


def test_loss_by_hand_accepts_scipy_value():
    p_s, p_t, T = loss_parts()
    right = T**2 * scipy_rows(p_t, p_s).mean()
    assert verdict("loss-by-hand", right).passed
    # and torch's kl_div used correctly gives the same number
    s, t = torch.tensor(ex.LOSS_STUDENT), torch.tensor(ex.LOSS_TEACHER)
    via_torch = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T**2
    assert verdict("loss-by-hand", via_torch.item()).passed


def test_loss_by_hand_names_misconceptions():
    p_s, p_t, T = loss_parts()
    right = scipy_rows(p_t, p_s)
    s, t = torch.tensor(ex.LOSS_STUDENT), torch.tensor(ex.LOSS_TEACHER)
    with pytest.warns(UserWarning, match="batchmean"):
        default_mean = F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1)).item() * T**2
    p_s_cold = softmax(np.array(ex.LOSS_STUDENT), axis=1)
    cases = [
        (right.mean(), "no-T-squared"),
        (T**2 * scipy_rows(p_s, p_t).mean(), "swapped"),
        (T**2 * right.sum(), "sum-vs-mean"),
        (default_mean, "reduction-mean"),
        (T**2 * scipy_rows(p_t, p_s_cold).mean(), "teacher-only-temperature"),
        (T**2 * right.mean() / math.log(2), "bits"),
    ]
    for wrong, name in cases:
        assert_misconception("loss-by-hand", wrong, name)
    assert verdict("loss-by-hand", 0.9).misconception is None


# --------------------------------------------------------------------------- soft-targets
def soft_targets_scipy(logits, T):
    return softmax(np.asarray(logits) / T, axis=-1)


def soft_targets_naive(logits, T):
    e = np.exp(np.asarray(logits) / T)
    return e / e.sum(axis=-1, keepdims=True)


def test_soft_targets_accepts_scipy_softmax():
    fb = verdict("soft-targets", soft_targets_scipy)
    assert fb.passed, fb.message


@pytest.mark.parametrize(
    ("buggy", "name"),
    [
        (lambda z, T: softmax(np.asarray(z) * T, axis=-1), "temperature-multiplied"),
        (lambda z, T: softmax(np.asarray(z), axis=-1), "no-temperature"),
        (lambda z, T: softmax(np.asarray(z) / T, axis=0), "axis"),
    ],
)
def test_soft_targets_names_misconceptions(buggy, name):
    assert_misconception("soft-targets", buggy, name)


def test_soft_targets_overflow_is_explained():
    fb = verdict("soft-targets", soft_targets_naive)
    assert not fb.passed and "NaN" in fb.message and "subtract the largest logit" in fb.message


def test_soft_targets_rejects_a_number():
    assert verdict("soft-targets", 0.5).status == "invalid"


# --------------------------------------------------------------------------- kl-div-loss
def kd_right(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=-1), F.softmax(t / T, dim=-1), reduction="batchmean") * T**2


def kd_right_log_target(s, t, T):
    return F.kl_div(F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), reduction="batchmean",
                    log_target=True) * T**2


@pytest.mark.parametrize("answer", [kd_right, kd_right_log_target])
def test_kl_div_loss_accepts_correct_implementations(answer):
    fb = verdict("kl-div-loss", answer)
    assert fb.passed, fb.message


def test_kl_div_loss_rejects_a_wrapper_of_distillation_loss():
    fb = verdict("kl-div-loss", lambda s, t, T: distillation_loss(s, t, T=T))
    assert not fb.passed and fb.misconception == "klcourse-own"


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize(
    ("buggy", "name"),
    [
        (lambda s, t, T: F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1)) * T**2, "reduction-mean"),
        (lambda s, t, T: kd_right(s, t, T) / T**2, "no-T-squared"),
        (lambda s, t, T: kd_right(t, s, T), "swapped"),
        (lambda s, t, T: F.kl_div(F.log_softmax(s / T, -1), F.softmax(t / T, -1), reduction="sum") * T**2,
         "sum-vs-mean"),
        (lambda s, t, T: F.kl_div(F.softmax(s / T, -1), F.softmax(t / T, -1), reduction="batchmean") * T**2,
         "probabilities-as-input"),
        (lambda s, t, T: F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean") * T**2,
         "log-target"),
    ],
)
def test_kl_div_loss_names_misconceptions(buggy, name):
    assert_misconception("kl-div-loss", buggy, name)


def test_kl_div_loss_reports_an_exception_without_traceback():
    def broken(s, t, T):
        raise RuntimeError("boom")

    fb = verdict("kl-div-loss", broken)
    assert not fb.passed and "RuntimeError" in fb.message


# --------------------------------------------------------------------------- entropy-limit
def test_entropy_limit_answer_is_log_k():
    z = np.array([3.0, -1.0, 0.5, 7.0, 2.0, 0.0])
    entropies = [entropy(softmax(z / T)) for T in (1.0, 10.0, 1e3, 1e6)]
    assert np.all(np.diff(entropies) > 0) and entropies[-1] == pytest.approx(math.log(len(z)), rel=1e-9)
    assert verdict("entropy-limit", "log K").passed
    assert verdict("entropy-limit", "  LOG k ").passed
    for wrong in ("zero", "unbounded", "unchanged"):
        assert_misconception("entropy-limit", wrong, wrong)
    assert verdict("entropy-limit", "log 2").status == "invalid"


# --------------------------------------------------------------------------- ece-table
def ece_by_fractions():
    """Bins ((m-1)/5, m/5] by hand with exact rational arithmetic; returns (ece, unweighted, signed, max)."""
    bins = {}
    for c, hit in zip(ex.ECE_CONFIDENCE, ex.ECE_CORRECT, strict=True):
        c = Fraction(str(c))
        m = math.ceil(c * ex.ECE_BINS)  # bin index 1..M of ((m-1)/M, m/M]
        bins.setdefault(m, []).append((c, hit))
    n = len(ex.ECE_CONFIDENCE)
    gaps = {m: (Fraction(sum(h for _, h in v), len(v)) - sum(c for c, _ in v) / len(v), len(v))
            for m, v in bins.items()}
    ece = sum(Fraction(k, n) * abs(g) for g, k in gaps.values())
    unweighted = sum(abs(g) for g, _ in gaps.values()) / len(gaps)
    signed = abs(sum(Fraction(k, n) * g for g, k in gaps.values()))
    worst = max(abs(g) for g, _ in gaps.values())
    return float(ece), float(unweighted), float(signed), float(worst)


def test_ece_table_accepts_exact_value_and_names_misconceptions():
    ece, unweighted, signed, worst = ece_by_fractions()
    assert verdict("ece-table", ece).passed
    # the signed version is the gap between overall accuracy and mean confidence
    assert signed == pytest.approx(abs(np.mean(ex.ECE_CORRECT) - np.mean(ex.ECE_CONFIDENCE)), rel=1e-12)
    for wrong, name in ((unweighted, "unweighted"), (signed, "no-abs"), (worst, "max")):
        assert_misconception("ece-table", wrong, name)
    assert verdict("ece-table", ece * 1.1).misconception is None


# --------------------------------------------------------------------------- high-t-limit
def limit_by_mpmath(s, t, T=10**12, digits=80):
    """T² D(softmax(t/T) || softmax(s/T)) at a huge T in 80-digit arithmetic."""
    with mpmath.workdps(digits):
        T = mpmath.mpf(T)

        def probs(z):
            e = [mpmath.exp(mpmath.mpf(v) / T) for v in z]
            total = sum(e)
            return [x / total for x in e]

        p_t, p_s = probs(t), probs(s)
        return float(T**2 * sum(a * mpmath.log(a / b) for a, b in zip(p_t, p_s, strict=True)))


def test_high_t_limit_accepts_mpmath_value_and_names_misconceptions():
    right = limit_by_mpmath(ex.LIMIT_STUDENT, ex.LIMIT_TEACHER)
    assert verdict("high-t-limit", right).passed
    gap = np.array(ex.LIMIT_STUDENT) - np.array(ex.LIMIT_TEACHER)
    k = len(gap)
    centred = np.sum((gap - gap.mean()) ** 2)
    for wrong, name in ((np.sum(gap**2) / (2 * k), "not-centred"), (centred / 2, "no-1/K"),
                        (centred / k, "no-1/2"), (0.0, "no-T-squared")):
        assert_misconception("high-t-limit", wrong, name)


# --------------------------------------------------------------------------- issue 9: float32, cross-entropy, T
def kd_float32(s, t, T):
    log_p_student = F.log_softmax(s.float() / T, dim=-1)
    return F.kl_div(log_p_student, F.softmax(t.float() / T, dim=-1), reduction="batchmean") * T**2


def kd_soft_target_cross_entropy(s, t, T):
    return -(F.softmax(t / T, dim=-1) * F.log_softmax(s / T, dim=-1)).sum(dim=-1).mean() * T**2


def kd_teacher_only_temperature(s, t, T):
    return F.kl_div(F.log_softmax(s, dim=-1), F.softmax(t / T, dim=-1), reduction="batchmean") * T**2


def test_kl_div_loss_accepts_a_float32_loss_including_identical_logits():
    case = next(c for c in ex.kd_loss_cases(np.random.default_rng(12345)) if "identical" in c.description)
    assert abs(float(kd_float32(*case.args))) > 1e-10  # float32 rounding: not exactly 0
    fb = verdict("kl-div-loss", kd_float32)
    assert fb.passed, fb.message


def test_kl_div_loss_names_soft_target_cross_entropy():
    s, t, T = (torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64), torch.tensor([[3.0, 1.0, -1.0]],
               dtype=torch.float64), 2.0)
    p_t = softmax(t.numpy() / T, axis=1)
    gap = float(kd_soft_target_cross_entropy(s, t, T) - kd_right(s, t, T))
    assert gap == pytest.approx(T**2 * entropy(p_t[0]), rel=1e-12)  # off by T²·H(p_teacher)
    fb = verdict("kl-div-loss", kd_soft_target_cross_entropy)
    assert fb.misconception == "soft-target-cross-entropy" and "T²·H(p_t)" in fb.message


def test_kl_div_loss_names_a_teacher_only_temperature():
    fb = verdict("kl-div-loss", kd_teacher_only_temperature)
    assert fb.misconception == "teacher-only-temperature", fb.message


def test_loss_by_hand_names_soft_target_cross_entropy():
    p_s, p_t, T = loss_parts()
    cross = T**2 * float(np.mean(-np.sum(p_t * np.log(p_s), axis=1)))
    assert verdict("loss-by-hand", round(cross, 4)).misconception == "soft-target-cross-entropy"


# --------------------------------------------------------------------------- label-smoothing
def torch_label_smoothing_value():
    """Independent route: PyTorch's own F.cross_entropy(label_smoothing=...) in float64."""
    s = torch.tensor([ex.SMOOTH_LOGITS], dtype=torch.float64)
    return F.cross_entropy(s, torch.tensor([ex.SMOOTH_LABEL]), label_smoothing=ex.SMOOTH_EPS).item()


def test_label_smoothing_accepts_torch_value_and_three_figures():
    value = torch_label_smoothing_value()
    assert verdict("label-smoothing", value).passed
    assert verdict("label-smoothing", float(f"{value:.3g}")).passed
    # the identity by exact enumeration in mpmath: (1 - eps) CE + eps (D(u || p) + log K)
    mpmath.mp.dps = 40
    z = [mpmath.mpf(v) for v in ex.SMOOTH_LOGITS]
    lse = mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z))
    log_p = [v - lse for v in z]
    k, eps = len(z), mpmath.mpf(ex.SMOOTH_EPS)
    kl_u = mpmath.fsum((1 / mpmath.mpf(k)) * (-mpmath.log(k) - lp) for lp in log_p)
    exact = (1 - eps) * -log_p[ex.SMOOTH_LABEL] + eps * (kl_u + mpmath.log(k))
    assert math.isclose(value, float(exact), rel_tol=1e-12)


def mistaken_smoothing(kind):
    """Each mistake computed independently with scipy (softmax, rel_entr) and explicit target vectors."""
    z = np.array(ex.SMOOTH_LOGITS)
    p, k, eps, y = softmax(z), len(z), ex.SMOOTH_EPS, ex.SMOOTH_LABEL
    onehot, u = np.eye(k)[y], np.full(k, 1 / k)
    if kind == "others-only":
        q = np.where(onehot == 1, 1 - eps, eps / (k - 1))
    elif kind == "not-renormalised":
        q = onehot + eps / k
    elif kind == "no-smoothing":
        q = onehot
    elif kind == "kl-form":
        return (1 - eps) * -np.log(p[y]) + eps * rel_entr(u, p).sum()
    elif kind == "reverse-kl":
        return (1 - eps) * -np.log(p[y]) + eps * (rel_entr(p, u).sum() + np.log(k))
    return float(-(q * np.log(p)).sum())


@pytest.mark.parametrize("kind", ["others-only", "kl-form", "reverse-kl", "not-renormalised", "no-smoothing"])
def test_label_smoothing_names_misconceptions(kind):
    assert_misconception("label-smoothing", mistaken_smoothing(kind), kind)


def test_label_smoothing_far_answer_does_not_reveal_the_value():
    fb = verdict("label-smoothing", 2.0)
    value = torch_label_smoothing_value()
    assert not fb.passed and fb.misconception is None and f"{value:.3g}" not in fb.message
