"""Exercises of chapter 8, "Knowledge distillation" (``book/08_distillation.ipynb``, slug ``distillation``).

Every expected value is computed here by code (lazily, on first use), never typed; the data each
exercise states are the module constants below, which the notebook imports.
``tests/test_exercises_distillation.py`` recomputes every answer by an independent route (scipy,
exact fractions, 60-digit mpmath).

torch is imported only inside functions, so listing the exercises does not load it.

Convention: the distillation loss is :math:`T^2` times the batch mean of the forward divergence
:math:`D(p_t^T \\| p_s^T)` (teacher first, expectation under the teacher), in nats, as in
:func:`klcourse.distillation_loss`.

References
----------
Hinton, G., Vinyals, O. & Dean, J. (2015). Distilling the knowledge in a neural network. arXiv:1503.02531.
Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural networks. ICML.
"""

from __future__ import annotations

import math

import numpy as np

from klcourse.distillation import (
    distillation_loss,
    ece_from_confidence,
    high_temperature_limit,
    reliability_bins,
    softmax_with_temperature,
)
from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Misconception,
    choice,
    function,
    number,
    sum_vs_mean,
    swapped,
)
from klcourse.exercises.core import register

# --------------------------------------------------------------------------- data stated in the notebook
#: loss-by-hand: a batch of two examples, three classes, temperature 2
LOSS_STUDENT = ((1.0, 2.0, 0.5), (0.0, -1.0, 2.0))
LOSS_TEACHER = ((4.0, 1.0, -2.0), (0.5, 0.0, 3.0))
LOSS_T = 2.0

#: ece-table: ten predictions (confidence = largest class probability, and whether they were right)
ECE_CONFIDENCE = (0.95, 0.92, 0.85, 0.98, 0.88, 0.75, 0.72, 0.65, 0.58, 0.45)
ECE_CORRECT = (1, 1, 0, 1, 1, 1, 1, 1, 1, 0)
ECE_BINS = 5

#: high-t-limit: one student and one teacher logit vector over four classes
LIMIT_STUDENT = (1.0, 0.0, -1.0, 2.0)
LIMIT_TEACHER = (3.0, 1.0, 0.0, 0.0)

ENTROPY_LIMIT_OPTIONS = ("zero", "log K", "unbounded", "unchanged")


def _loss(student, teacher, T) -> float:
    """klcourse.distillation_loss on float64 data, as a float."""
    import torch

    s = torch.tensor(student, dtype=torch.float64)
    t = torch.tensor(teacher, dtype=torch.float64)
    return float(distillation_loss(s, t, T=T))


def _row_kl(p, q) -> np.ndarray:
    """D(p || q) for each row of two arrays of strictly positive probabilities."""
    return np.sum(p * (np.log(p) - np.log(q)), axis=-1)


# --------------------------------------------------------------------------- 1. loss-by-hand
_CROSS_ENTROPY_MESSAGE = (
    "That is the soft-target cross-entropy T²·H(p_t, p_s), which exceeds T²·D(p_t‖p_s) by T²·H(p_t), the "
    "teacher's entropy at temperature T. (It has the same gradient in the student's logits, so it trains the same, "
    "but it is not the divergence.) Subtract the entropy term Σ p_t log p_t, or use F.kl_div."
)
_TEACHER_ONLY_MESSAGE = (
    "The temperature softens *both* distributions: the student's probabilities are softmax(s/T) too, not "
    "softmax(s)."
)

def _loss_variant(*, swap=False, teacher_only_T=False, squared=True, reduce="mean", cross_entropy=False) -> float:
    s, t = np.array(LOSS_STUDENT), np.array(LOSS_TEACHER)
    p_t = softmax_with_temperature(t, LOSS_T)
    p_s = softmax_with_temperature(s, 1.0 if teacher_only_T else LOSS_T)
    if cross_entropy:
        per_row = -np.sum(p_t * np.log(p_s), axis=-1)
    else:
        per_row = _row_kl(p_s, p_t) if swap else _row_kl(p_t, p_s)
    total = {"mean": per_row.mean(), "sum": per_row.sum(), "elements": per_row.sum() / s.size}[reduce]
    return float(total * (LOSS_T**2 if squared else 1.0))


register(
    "distillation.loss-by-hand",
    title="The distillation loss of a batch of two, by hand",
    kind="number",
    checker=number(
        lambda: _loss(LOSS_STUDENT, LOSS_TEACHER, LOSS_T),
        sigfigs=3,
        negative=KL_NEVER_NEGATIVE,
        misconceptions=[
            Misconception("soft-target-cross-entropy", lambda: _loss_variant(cross_entropy=True),
                          _CROSS_ENTROPY_MESSAGE),
            Misconception("no-T-squared", lambda: _loss_variant(squared=False),
                          "That is the divergence without the factor T²: the distillation loss multiplies "
                          "D(p_t‖p_s) by T², which offsets the roughly 1/T² shrinking of its gradients at high "
                          "temperature."),
            swapped(lambda: _loss_variant(swap=True)),
            sum_vs_mean(lambda: _loss_variant(reduce="sum")),
            Misconception("reduction-mean", lambda: _loss_variant(reduce="elements"),
                          "That is divided by the number of *elements* (batch × classes), like F.kl_div's "
                          "default reduction='mean'. Divide the sum only by the batch size ('batchmean')."),
            Misconception("teacher-only-temperature", lambda: _loss_variant(teacher_only_T=True),
                          _TEACHER_ONLY_MESSAGE),
        ],
    ),
)


# --------------------------------------------------------------------------- 2. soft-targets (function)
def soft_target_cases(rng: np.random.Generator) -> list[Case]:
    """Edge and random cases for ``soft_targets(logits, T)`` (numpy arrays in, numpy arrays out)."""
    cases = [
        Case("logits [2, 1, 0.1] at T = 1", (np.array([2.0, 1.0, 0.1]), 1.0)),
        Case("logits [2, 1, 0.1] at T = 3", (np.array([2.0, 1.0, 0.1]), 3.0)),
        Case("logits [2, 1, 0.1] at T = 0.5", (np.array([2.0, 1.0, 0.1]), 0.5)),
        Case("equal logits [4, 4, 4, 4] at T = 2 (must be uniform)", (np.full(4, 4.0), 2.0)),
        Case("logits as large as 2000 at T = 2 (exp(1000) overflows: subtract the largest logit first)",
             (np.array([2000.0, 1990.0, 0.0]), 2.0), tag="overflow"),
        Case("a very high temperature T = 100", (np.array([5.0, -3.0, 0.0, 1.0]), 100.0)),
        Case("a batch of 4 rows of 5 logits at T = 2 (softmax over each row, the last axis)",
             (rng.normal(0.0, 3.0, size=(4, 5)), 2.0)),
    ]
    for i in range(4):
        shape = (int(rng.integers(2, 6)), int(rng.integers(2, 11)))
        T = float(np.exp(rng.uniform(-1.0, 2.5)))
        cases.append(Case(f"random batch {i + 1}, shape {shape}, T = {T:.2f}",
                          (rng.normal(0.0, 4.0, size=shape), T)))
    return cases


def _softmax_axis0(logits, T):
    z = np.asarray(logits, dtype=float) / T
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


register(
    "distillation.soft-targets",
    title="Implement soft_targets(logits, T)",
    kind="function",
    checker=function(
        softmax_with_temperature,
        soft_target_cases,
        name="soft_targets",
        nan_hint=lambda case: (
            "exp(z / T) overflowed to inf, and inf / inf is NaN: subtract each row's largest z / T before "
            "exponentiating (the softmax does not change)." if case.tag == "overflow" else
            "these logits are moderate, so look for a 0/0 or a log of a negative number in the normalisation."),
        misconceptions=[
            Misconception("temperature-multiplied", lambda z, T: softmax_with_temperature(np.asarray(z) * T, 1.0),
                          "The logits are multiplied by T instead of divided: a high temperature must "
                          "*soften* the distribution (softmax(z / T))."),
            Misconception("no-temperature", lambda z, T: softmax_with_temperature(z, 1.0),
                          "The temperature is not used: divide the logits by T before the softmax."),
            Misconception("axis", _softmax_axis0,
                          "On a batch the normalisation runs down the columns: each *row* (the last axis) "
                          "holds one example's logits and must sum to 1."),
        ],
    ),
)


# --------------------------------------------------------------------------- 3. kl-div-loss (function)
def kd_loss_cases(rng: np.random.Generator) -> list[Case]:
    """Cases for ``kd_loss(student_logits, teacher_logits, T)``: float64 torch tensors of shape (B, K)."""
    import torch

    def tensor(a):
        return torch.tensor(a, dtype=torch.float64)

    base_s, base_t = rng.normal(0.0, 2.0, size=(6, 10)), rng.normal(0.0, 4.0, size=(6, 10))
    cases = [
        Case("a batch of 6 examples, 10 classes, T = 4", (tensor(base_s), tensor(base_t), 4.0)),
        Case("the same batch at T = 1", (tensor(base_s), tensor(base_t), 1.0)),
        Case("a single example (batch of 1), 3 classes, T = 2",
             (tensor([[1.0, 2.0, 0.5]]), tensor([[3.0, 1.0, -1.0]]), 2.0)),
        Case("identical student and teacher logits (loss 0)", (tensor(base_t), tensor(base_t), 3.0)),
    ]
    for i in range(4):
        b, k = int(rng.integers(2, 9)), int(rng.integers(2, 12))
        T = float(np.exp(rng.uniform(0.0, 2.0)))
        cases.append(Case(f"random batch {i + 1}: {b} examples, {k} classes, T = {T:.2f}",
                          (tensor(rng.normal(0.0, 2.0, size=(b, k))), tensor(rng.normal(0.0, 4.0, size=(b, k))), T)))
    return cases


def _kd_reference(student_logits, teacher_logits, T):
    return distillation_loss(student_logits, teacher_logits, T=T)


def _kd_variant(s, t, T, *, swap=False, squared=True, reduce="batchmean", probs_as_input=False,
                cross_entropy=False, student_T=None):
    p_s = softmax_with_temperature(s.numpy(), T if student_T is None else student_T)
    p_t = softmax_with_temperature(t.numpy(), T)
    if cross_entropy:
        per_row = -np.sum(p_t * np.log(p_s), axis=-1)
    elif probs_as_input:
        per_row = np.sum(p_t * (np.log(p_t) - p_s), axis=-1)
    else:
        per_row = _row_kl(p_s, p_t) if swap else _row_kl(p_t, p_s)
    total = {"batchmean": per_row.mean(), "sum": per_row.sum(), "mean": per_row.sum() / p_s.size}[reduce]
    return total * (T**2 if squared else 1.0)


def _kd_log_target(s, t, T):
    """F.kl_div given the teacher's log-probabilities as target without log_target=True: NaN."""
    import torch.nn.functional as F

    return F.kl_div(F.log_softmax(s / T, dim=-1), F.log_softmax(t / T, dim=-1), reduction="batchmean") * T**2


#: float32 arithmetic must pass: its rounding (~1e-7 relative, times T² on a loss of 0) stays inside these
KD_RTOL, KD_ATOL = 1e-5, 1e-5

_kd_checker = function(
    _kd_reference,
    kd_loss_cases,
    name="kd_loss",
    rtol=KD_RTOL,
    atol=KD_ATOL,
    misconceptions=[
        Misconception("soft-target-cross-entropy", lambda s, t, T: _kd_variant(s, t, T, cross_entropy=True),
                      _CROSS_ENTROPY_MESSAGE),
        Misconception("teacher-only-temperature", lambda s, t, T: _kd_variant(s, t, T, student_T=1.0),
                      _TEACHER_ONLY_MESSAGE),
        Misconception("reduction-mean", lambda s, t, T: _kd_variant(s, t, T, reduce="mean"),
                      "Your loss is too small by the number of classes: F.kl_div's default reduction='mean' "
                      "divides by batch × classes. Use reduction='batchmean'."),
        Misconception("no-T-squared", lambda s, t, T: _kd_variant(s, t, T, squared=False),
                      "The factor T² is missing: multiply the divergence by T**2."),
        Misconception("swapped", lambda s, t, T: _kd_variant(s, t, T, swap=True),
                      "That is the reverse divergence D(p_s‖p_t). F.kl_div(input, target) computes "
                      "D(target‖input): the *student's* log-probabilities go first, the teacher's "
                      "probabilities second — the opposite order of the notation D(p_t‖p_s)."),
        sum_vs_mean(lambda s, t, T: _kd_variant(s, t, T, reduce="sum")),
        Misconception("probabilities-as-input", lambda s, t, T: _kd_variant(s, t, T, probs_as_input=True),
                      "F.kl_div's first argument must be *log*-probabilities: use F.log_softmax(student / T), "
                      "not F.softmax."),
        Misconception("log-target", _kd_log_target,
                      "Your kd_loss returns NaN: the teacher's target holds log-probabilities, and F.kl_div takes "
                      "their log again (log of a negative number). Pass probabilities, or pass log_target=True."),
    ],
)


register("distillation.kl-div-loss", title="Implement the distillation loss with F.kl_div", kind="function",
         checker=_kd_checker)


# --------------------------------------------------------------------------- 4. entropy-limit (predict)
def _entropy_limit_answer() -> str:
    """Decide the option by computation: the entropy of softmax(z / T) at a huge T, against log K."""
    z = np.array([9.0, 2.0, 0.0, -4.0, 1.0])
    p = softmax_with_temperature(z, 1e6)
    h = float(-np.sum(p * np.log(p)))
    return "log K" if math.isclose(h, math.log(len(z)), rel_tol=1e-6) else "unbounded"


register(
    "distillation.entropy-limit",
    title="Soft-target entropy as T → ∞",
    kind="predict",
    checker=choice(
        _entropy_limit_answer(),
        ENTROPY_LIMIT_OPTIONS,
        explanations={
            "zero": "Zero entropy is the limit T → 0 (a one-hot vector on the largest logit, if it is unique). "
                    "A high temperature flattens the distribution.",
            "unbounded": "The entropy of a distribution over K outcomes can never exceed log K, whatever T is.",
            "unchanged": "The entropy does change: dH/dT = Var_p(z)/T³ > 0 unless all logits are equal.",
        },
    ),
)


# --------------------------------------------------------------------------- 5. ece-table
def _ece_variants():
    counts, conf, acc = reliability_bins(ECE_CONFIDENCE, ECE_CORRECT, n_bins=ECE_BINS)
    used = counts > 0
    gaps = acc[used] - conf[used]
    weights = counts[used] / counts.sum()
    return {
        "unweighted": float(np.mean(np.abs(gaps))),
        "signed": float(abs(np.sum(weights * gaps))),
        "max": float(np.max(np.abs(gaps))),
    }


register(
    "distillation.ece-table",
    title="Expected calibration error of ten predictions",
    kind="number",
    checker=number(
        lambda: ece_from_confidence(ECE_CONFIDENCE, ECE_CORRECT, n_bins=ECE_BINS),
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("unweighted", lambda: _ece_variants()["unweighted"],
                          "That is the plain average of the per-bin gaps. ECE weights each bin by the "
                          "fraction of predictions in it, n_m / N."),
            Misconception("no-abs", lambda: _ece_variants()["signed"],
                          "The over- and under-confident bins cancel in your sum: take |acc − conf| in each bin "
                          "before averaging (without it you get |overall accuracy − mean confidence|)."),
            Misconception("max", lambda: _ece_variants()["max"],
                          "That is the largest per-bin gap (the *maximum* calibration error); ECE is the "
                          "weighted average of the gaps."),
        ],
    ),
)


# --------------------------------------------------------------------------- 6. high-t-limit
def _limit_variant(*, centred=True, per_class=True, half=True) -> float:
    gap = np.array(LIMIT_STUDENT) - np.array(LIMIT_TEACHER)
    if centred:
        gap = gap - gap.mean()
    value = np.sum(gap**2)
    return float(value / (len(gap) if per_class else 1) / (2 if half else 1))


register(
    "distillation.high-t-limit",
    title="The limit of T²·D as T → ∞",
    kind="number",
    checker=number(
        lambda: high_temperature_limit(LIMIT_STUDENT, LIMIT_TEACHER),
        sigfigs=3,
        misconceptions=[
            Misconception("not-centred", lambda: _limit_variant(centred=False),
                          "Subtract each vector's mean over the classes first: logits are defined only up to "
                          "a shift, and the limit involves the centred gap (s − s̄) − (t − t̄)."),
            Misconception("no-1/K", lambda: _limit_variant(per_class=False),
                          "A factor 1/K is missing: near the uniform distribution every probability is about "
                          "1/K, and that factor stays in the limit."),
            Misconception("no-1/2", lambda: _limit_variant(half=False),
                          "A factor 1/2 is missing: the divergence is half the squared gap at second order."),
            Misconception("no-T-squared", 0.0,
                          "Without the factor T² the divergence does tend to 0 (like 1/T²); the question asks "
                          "for the limit of T² · D, which is finite and not zero."),
        ],
    ),
)


# --------------------------------------------------------------------------- 7. label-smoothing
#: label-smoothing: one example, four classes, the label and the smoothing weight
SMOOTH_LOGITS = (2.5, 0.0, -2.0, 1.0)
SMOOTH_LABEL = 0
SMOOTH_EPS = 0.2


def _smooth_expected() -> float:
    """H(q_eps, p_s) with q_eps = (1 - eps) onehot + eps / K, by klcourse.distillation.label_smoothing_loss."""
    import torch

    from klcourse.distillation import label_smoothing_loss

    s = torch.tensor([SMOOTH_LOGITS], dtype=torch.float64)
    return float(label_smoothing_loss(s, torch.tensor([SMOOTH_LABEL]), epsilon=SMOOTH_EPS))


def _smooth_variant(kind: str) -> float:
    z = np.array(SMOOTH_LOGITS)
    k = z.size
    log_p = z - z.max() - math.log(np.sum(np.exp(z - z.max())))
    p, u = np.exp(log_p), np.full(k, 1.0 / k)
    ce, eps = -log_p[SMOOTH_LABEL], SMOOTH_EPS
    if kind == "others-only":  # 1 - eps on the label, eps / (K - 1) on each other class
        q = np.full(k, eps / (k - 1))
        q[SMOOTH_LABEL] = 1 - eps
        return float(-np.sum(q * log_p))
    if kind == "kl-form":  # (1 - eps) CE + eps D(u || p): the constant eps log K dropped
        return float((1 - eps) * ce + eps * np.sum(u * np.log(u / p)))
    if kind == "reverse-kl":  # (1 - eps) CE + eps (D(p || u) + log K)
        return float((1 - eps) * ce + eps * (np.sum(p * np.log(p / u)) + math.log(k)))
    if kind == "not-renormalised":  # onehot + eps / K without the factor 1 - eps
        return float(ce + eps * -np.mean(log_p))
    if kind == "hard":
        return float(ce)
    raise ValueError(kind)


register(
    "distillation.label-smoothing",
    title="The label-smoothed cross-entropy of one example",
    kind="number",
    checker=number(
        _smooth_expected,
        sigfigs=3,
        misconceptions=[
            Misconception("others-only", lambda: _smooth_variant("others-only"),
                          "That puts ε/(K−1) on each *wrong* class and 1−ε on the label. Label smoothing (Szegedy "
                          "et al., Müller et al., PyTorch's label_smoothing) mixes the one-hot vector with the "
                          "uniform distribution: ε/K on *every* class, the label included, so the label gets "
                          "1−ε+ε/K."),
            Misconception("kl-form", lambda: _smooth_variant("kl-form"),
                          "That is (1−ε)·CE + ε·D(u‖p_s), the distillation form: it lacks the constant ε·log K "
                          "(the entropy of the uniform teacher), which the cross-entropy with the smoothed "
                          "targets contains. Same gradient, different value."),
            Misconception("reverse-kl", lambda: _smooth_variant("reverse-kl"),
                          "That uses D(p_s‖u), the reverse direction. The cross-entropy H(u, p_s) equals "
                          "D(u‖p_s) + log K: the uniform *teacher* comes first, the expectation is under it."),
            Misconception("not-renormalised", lambda: _smooth_variant("not-renormalised"),
                          "Your targets sum to 1+ε: the one-hot part must be scaled by (1−ε) before ε/K is "
                          "added to every class."),
            Misconception("no-smoothing", lambda: _smooth_variant("hard"),
                          "That is the ordinary cross-entropy with the label; smoothing moves ε of the target's "
                          "mass onto the uniform distribution."),
        ],
    ),
)
