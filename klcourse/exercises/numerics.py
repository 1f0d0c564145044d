"""Exercises of chapter 5, "Computing KL without fooling yourself" (slug ``numerics``).

Every expected value is computed here, lazily, from the problem data below; the notebook
``book/05_numerics.ipynb`` states the same data and ``tests/test_exercises_numerics.py``
recomputes each answer by an independent route (mpmath, PyTorch, hand formulas).

References
----------
Higham, N. J. (2002). *Accuracy and Stability of Numerical Algorithms*, 2nd ed., SIAM.
Blanchard, P., Higham, D. J. & Higham, N. J. (2021). Accurately computing the log-sum-exp and
softmax functions. *IMA J. Numer. Anal.* 41(4), 2311-2330.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax

from klcourse.divergences import kl_divergence
from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    Case,
    Judged,
    Misconception,
    choice,
    conditions,
    function,
    number,
    predicate,
    sum_vs_mean,
    swapped,
    unit_misconceptions,
)
from klcourse.exercises.core import WRONG, Verdict, register
from klcourse.gaussians import kl_normal
from klcourse.numerics import (
    SWEEP_DELTAS,
    gaussian_sweep,
    kl_bernoulli,
    naive_kl_clipped,
    naive_kl_normal,
    relative_errors,
)

# --------------------------------------------------------------------------- problem data
#: ``numerics.kl-bernoulli``: relative tolerance of the function checker (6 significant digits)
BERNOULLI_RTOL = 1e-6

#: ``numerics.kl-div-batch``: target logits (rows of P) and model logits (rows of Q), 3 rows x 5 classes
TARGET_LOGITS = (
    (2.0, 1.0, 0.0, -1.0, 0.5),
    (0.0, 3.0, -1.0, 0.5, 0.5),
    (1.0, 1.0, 1.0, -2.0, 0.0),
)
MODEL_LOGITS = (
    (1.0, 1.5, 0.0, 0.0, -0.5),
    (0.5, 2.0, 0.0, 0.0, 1.0),
    (0.0, 2.0, 1.0, -1.0, 0.0),
)

#: ``numerics.clip-predict``: Q rules out the last outcome, to which P gives mass 0.05
CLIP_P = (0.5, 0.3, 0.15, 0.05)
CLIP_Q = (0.4, 0.4, 0.2, 0.0)
CLIP_EPS_YOURS = 1e-8
CLIP_EPS_COLLEAGUE = 1e-16

#: ``numerics.logsumexp``: logits whose exponentials overflow float64
LSE_LOGITS = (1000.0, 1001.5, 998.0, -1000.0)

#: ``numerics.digits-lost``: the relative difference of the standard deviations read off the figure
DIGITS_DELTA = 1e-6
DIGITS_OPTIONS = ("16", "10", "4", "0")


# --------------------------------------------------------------------------- 1. stable kl_bernoulli
def _near(a: float, rel: float) -> float:
    return float(a * (1.0 + rel))


def bernoulli_cases() -> dict[str, list[Case]]:
    """The cases of ``numerics.kl-bernoulli`` by group: separated, edges, infinite, near-identical."""
    return {
        "separated": [
            Case("a = 0.3, b = 0.6", (0.3, 0.6)),
            Case("a = 0.9, b = 0.2", (0.9, 0.2)),
            Case("a = 0.02, b = 0.5", (0.02, 0.5)),
            Case("a = b = 0.5 (the divergence is 0)", (0.5, 0.5)),
        ],
        "edges": [
            Case("a = 0, b = 0.3 (0·log 0 counts as 0)", (0.0, 0.3)),
            Case("a = 1, b = 0.3 (0·log 0 counts as 0)", (1.0, 0.3)),
            Case("a = b = 0", (0.0, 0.0)),
            Case("a = b = 1", (1.0, 1.0)),
        ],
        "infinite": [
            Case("a = 0.4, b = 0 (Q rules out an outcome P allows: the divergence is inf)", (0.4, 0.0)),
            Case("a = 0.4, b = 1 (Q rules out an outcome P allows: the divergence is inf)", (0.4, 1.0)),
        ],
        "near": [
            Case("a = 0.3, b = 0.3·(1 + 1e-7): a and b agree to 7 digits", (0.3, _near(0.3, 1e-7))),
            Case("a = 0.8, b = 0.8·(1 − 1e-6)", (0.8, _near(0.8, -1e-6))),
            Case("a = 0.02, b = 0.02·(1 + 1e-5)", (0.02, _near(0.02, 1e-5))),
            Case("a = 0.999, b = 0.999 − 1e-7", (0.999, 0.999 - 1e-7)),
            Case("a = 0.6, b = 0.6 + 1e-8", (0.6, 0.6 + 1e-8)),
        ],
    }


def _all_cases(groups=("separated", "edges", "infinite", "near")) -> list[Case]:
    cases = bernoulli_cases()
    return [dataclasses.replace(c, tag=g) for g in groups for c in cases[g]]


def _random_bernoulli_cases(rng: np.random.Generator) -> list[Case]:
    """Two random well-separated pairs and two random pairs agreeing to 5-8 digits (hidden cases vary these)."""
    cases = []
    for i in range(2):
        a, b = (float(v) for v in rng.uniform(0.01, 0.99, size=2))
        cases.append(Case(f"random pair {i + 1}: a = {a:.4f}, b = {b:.4f}", (a, b), tag="separated"))
    for i in range(2):
        a = float(rng.uniform(0.01, 0.99))
        rel = float(10 ** rng.uniform(-8, -5) * rng.choice([-1.0, 1.0]))
        cases.append(Case(f"random near pair {i + 1}: a = {a:.4f}, b = a·(1 {'+' if rel > 0 else '−'} "
                          f"{abs(rel):.1e})", (a, _near(a, rel)), tag="near"))
    return cases


def _bernoulli_cases(rng: np.random.Generator) -> list[Case]:
    return _all_cases() + _random_bernoulli_cases(rng)


_CANCELLATION = (
    "Your kl_bernoulli is right when a and b are far apart and at the edges, but loses its digits when a ≈ b: "
    "a·log(a/b) and (1−a)·log((1−a)/(1−b)) are each of order |a − b| with opposite signs, and their sum, of "
    "order (a − b)², is swamped by their rounding errors. Rewrite each term as a·ψ((b−a)/a) with "
    "ψ(r) = r − log1p(r) ≥ 0 (the two added r's cancel exactly), or use log1p on the exact difference b − a."
)
_CLIPPED = (
    "Your kl_bernoulli returns a finite number when b = 0 < a (or b = 1 > a). Then Q gives probability 0 to an "
    "outcome P allows and the divergence is +inf; clipping b with an epsilon hides that and makes the result "
    "depend on the epsilon."
)


def _diagnose_bernoulli(j: Judged) -> Verdict | None:
    for _, got, _ in j.output("infinite"):
        if not isinstance(got, str) and got.size == 1 and np.isfinite(got).all():
            return Verdict(False, _CLIPPED, WRONG, "clipped")
    # bits or log10 instead of nats, judged where a and b are well apart (a log-base slip may also lose digits
    # on the near pairs, which must not hide it)
    m = j.match(unit_misconceptions(kl_bernoulli, "nats"), where=lambda case: case.tag in ("separated", "edges"))
    if m is not None:
        return Verdict(False, m.message, WRONG, m.name)
    failing = j.failing()
    if failing and all(j.cases[i].tag == "near" for i in failing):
        return Verdict(False, _CANCELLATION, WRONG, "cancellation")
    return None


def _bernoulli_nan_hint(case: Case) -> str:
    if case.tag in ("edges", "infinite"):
        return ("a term whose weight a (or 1 − a) is 0 contributes 0 whatever b is (0·log 0 = 0, also "
                "0·log(0/0)), and b = 0 < a (or b = 1 > a) gives +inf, not NaN.")
    return "here 0 < a, b < 1, so every log is finite: look for a 0/0 or a log of a negative number."


def _kl_bernoulli_checker():
    return function(kl_bernoulli, _bernoulli_cases, rtol=BERNOULLI_RTOL, atol=0.0, name="kl_bernoulli",
                    misconceptions=[swapped(lambda a, b: kl_bernoulli(b, a))], diagnose=_diagnose_bernoulli,
                    nan_hint=_bernoulli_nan_hint,
                    allowed=("klcourse.numerics.r_minus_log1p",))


register("numerics.kl-bernoulli", title="Implement a stable kl_bernoulli(a, b)", kind="function",
         checker=_kl_bernoulli_checker())


# --------------------------------------------------------------------------- 2. F.kl_div on a batch
def _kl_div_rows():
    p, q = softmax(np.array(TARGET_LOGITS), axis=-1), softmax(np.array(MODEL_LOGITS), axis=-1)
    return p, q


def kl_div_batch_expected() -> float:
    """Batch mean of D(P_i || Q_i), P_i = softmax(target row i), Q_i = softmax(model row i)."""
    p, q = _kl_div_rows()
    return float(np.mean(kl_divergence(p, q)))


def _kl_div_probabilities_as_input() -> float:
    """``F.kl_div(q, p, reduction="batchmean")``: probabilities passed where log-probabilities belong."""
    p, q = _kl_div_rows()
    return float(np.sum(p * (np.log(p) - q)) / p.shape[0])


def _kl_div_swapped() -> float:
    p, q = _kl_div_rows()
    return float(np.mean(kl_divergence(q, p)))


_N_ROWS, _N_CLASSES = len(TARGET_LOGITS), len(TARGET_LOGITS[0])

register(
    "numerics.kl-div-batch",
    title="A batch KL with torch.nn.functional.kl_div",
    kind="number",
    checker=number(
        kl_div_batch_expected,
        rtol=1e-5,
        negative=KL_NEVER_NEGATIVE,
        nan=Misconception(
            "log-target",
            None,
            "Your answer is NaN: F.kl_div's second argument (target) must hold probabilities P; given "
            "log-probabilities it takes their log again (the log of a negative number). Pass P, or log P with "
            "log_target=True.",
        ),
        misconceptions=[
            Misconception(
                "reduction-mean", lambda: kl_div_batch_expected() / _N_CLASSES,
                "That is reduction='mean', PyTorch's default: it divides the summed KL by the number of elements "
                "(rows × classes), not by the number of rows, so it is too small by a factor of the number of "
                "classes. Use reduction='batchmean'.",
            ),
            sum_vs_mean(lambda: kl_div_batch_expected() * _N_ROWS),
            swapped(_kl_div_swapped),
            Misconception(
                "probabilities-as-input", _kl_div_probabilities_as_input,
                "F.kl_div expects its first argument (input) to be log-probabilities, log Q, e.g. from "
                "torch.log_softmax; you passed probabilities. (The result is then not a divergence at all: it "
                "is even negative here.)",
            ),
        ],
    ),
)


# --------------------------------------------------------------------------- 3. what clipping does
def _clip_comparison() -> str:
    yours = naive_kl_clipped(CLIP_P, CLIP_Q, eps=CLIP_EPS_YOURS)
    colleague = naive_kl_clipped(CLIP_P, CLIP_Q, eps=CLIP_EPS_COLLEAGUE)
    if not math.isfinite(colleague):
        return "inf"
    if math.isclose(yours, colleague, rel_tol=1e-3):
        return "same"
    return "larger" if colleague > yours else "smaller"


_CLIP_EXPLANATIONS = {
    "same": "The epsilon is not negligible here: Q has a zero where P has mass, so one term is p·log(p/eps). "
            "What happens to log(1/eps) when eps goes from 1e-8 to 1e-16?",
    "smaller": "Look at the term for the outcome where q = 0: p·log(p/eps). What does a smaller eps do to "
               "log(1/eps)?",
    "larger": "Compare the term p·log(p/eps) for the two values of eps.",
    "inf": "The true divergence is +inf, but the clipped one is finite for every eps > 0: 1e-16 is still a "
           "positive float64, so the clipped sum stays finite.",
}

register("numerics.clip-predict", title="Predict what a smaller epsilon does", kind="predict",
         checker=choice(_clip_comparison, ("same", "larger", "smaller", "inf"), explanations=_CLIP_EXPLANATIONS))


# --------------------------------------------------------------------------- 4. log-sum-exp
def _lse() -> float:
    return float(logsumexp(np.array(LSE_LOGITS)))


register(
    "numerics.logsumexp",
    title="The log-sum-exp of large logits",
    kind="number",
    checker=number(
        _lse,
        decimals_=3,
        unit=None,
        misconceptions=[
            Misconception("overflow", math.inf,
                          "exp(1000) overflows float64 (exp overflows above about 709.78), so the naive "
                          "log(sum(exp(z))) returns inf. Subtract the largest logit m first: "
                          "log Σ exp(z) = m + log Σ exp(z − m)."),
            Misconception("forgot-max", lambda: _lse() - max(LSE_LOGITS),
                          "You computed log Σ exp(z − m) with m the largest logit, but forgot to add m back."),
            Misconception("max-only", lambda: max(LSE_LOGITS),
                          "That is only the largest logit. The other logits add log Σ exp(z − m) > 0 to it."),
            Misconception("log-softmax", lambda: float(log_softmax(np.array(LSE_LOGITS))[0]),
                          "That is a log-probability (log-softmax) of one class, not the log-sum-exp of all "
                          "the logits."),
        ],
    ),
)


# --------------------------------------------------------------------------- 5. negative textbook KL
def _four_parameters(answer) -> tuple[float, float, float, float]:
    if isinstance(answer, (str, bytes, dict)) or not hasattr(answer, "__len__"):
        raise TypeError("give a tuple (mu0, sigma0, mu1, sigma1) of four numbers")
    if len(answer) != 4:
        raise ValueError(f"give exactly four numbers (mu0, sigma0, mu1, sigma1), got {len(answer)}")
    values = []
    for name, v in zip(("mu0", "sigma0", "mu1", "sigma1"), answer, strict=True):
        if hasattr(v, "item"):
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite real number, got {v!r}")
        values.append(float(v))
    if values[1] <= 0 or values[3] <= 0:
        raise ValueError("the standard deviations sigma0 and sigma1 must be > 0")
    return tuple(values)


def _negative_textbook_test(answer) -> tuple[bool, str]:
    mu0, s0, mu1, s1 = _four_parameters(answer)
    textbook = float(naive_kl_normal(mu0, s0, mu1, s1))
    stable = kl_normal(mu0, s0, mu1, s1)
    if textbook < 0:
        return True, (f"Correct! The textbook formula gives {textbook:.3g} nats, impossible for a KL; "
                      f"kl_normal gives {stable:.3g} nats. The negative sign is pure rounding error.")
    return False, (f"Not negative: the textbook formula gives {textbook:.3g} nats here (kl_normal: {stable:.3g}). "
                   "Look where the true divergence is far below the rounding error of its terms.")


register("numerics.negative-textbook", title="Make the textbook Gaussian formula go negative",
         kind="counterexample", checker=predicate(_negative_textbook_test, tolerance=conditions(
             "Accepted: any finite (mu0, sigma0, mu1, sigma1) with sigma0, sigma1 > 0 for which "
             "naive_kl_normal returns a number below 0 in float64.")))


# --------------------------------------------------------------------------- 6. read the error figure
def textbook_digits(delta: float = DIGITS_DELTA) -> float:
    """Correct significant digits of the textbook Gaussian KL at ``sigma1/sigma0 = 1 +- delta``.

    ``-log10`` of the median relative error over the draws of :func:`klcourse.numerics.gaussian_sweep`
    (the data of the chapter's error figure) at the swept ratio closest to ``delta``.
    """
    reference, values = gaussian_sweep(methods={"textbook": naive_kl_normal})
    row = int(np.argmin(np.abs(np.log10(SWEEP_DELTAS) - math.log10(delta))))
    median = float(np.median(relative_errors(values["textbook"][row], reference[row])))
    return -math.log10(max(median, 1e-17))


def _closest_digits_option() -> str:
    digits = max(textbook_digits(), 0.0)
    return min(DIGITS_OPTIONS, key=lambda option: abs(float(option) - digits))


_DIGITS_EXPLANATIONS = {
    "16": "About 16 digits is what klcourse.kl_normal keeps at every ratio; follow the textbook curve instead.",
    "10": "About 10 correct digits is the half-way form (error ~ eps/δ). The textbook formula's error grows like "
          "eps/δ², twice as fast on the log scale.",
    "4": "Read the textbook curve at 1e-6 on the horizontal axis again: digits ≈ −log10(relative error).",
    "0": "The textbook formula loses every digit only at smaller δ — further right on this axis, which runs "
         "towards δ → 0 — where δ² falls below the rounding error eps.",
}

register("numerics.digits-lost", title="Read the digits the textbook formula keeps", kind="choice",
         checker=choice(_closest_digits_option, DIGITS_OPTIONS, explanations=_DIGITS_EXPLANATIONS))


__all__ = [
    "BERNOULLI_RTOL",
    "CLIP_EPS_COLLEAGUE",
    "CLIP_EPS_YOURS",
    "CLIP_P",
    "CLIP_Q",
    "DIGITS_DELTA",
    "DIGITS_OPTIONS",
    "LSE_LOGITS",
    "MODEL_LOGITS",
    "TARGET_LOGITS",
    "bernoulli_cases",
    "kl_div_batch_expected",
    "textbook_digits",
]


# --------------------------------------------------------------------------- numerics.bf16-roundoff
#: bfloat16: significant bits (7 stored fraction bits + the implicit leading 1)
BF16_SIGNIFICANT_BITS = 8


def _bf16_roundoff() -> float:
    return 2.0 ** -BF16_SIGNIFICANT_BITS


register(
    "numerics.bf16-roundoff",
    title="The unit roundoff of bfloat16",
    kind="number",
    checker=number(
        _bf16_roundoff,
        sigfigs=3,
        unit=None,
        misconceptions=[
            Misconception("epsilon-not-u", lambda: 2 * _bf16_roundoff(),
                          "That is machine epsilon, the gap between 1 and the next bfloat16. Rounding to the "
                          "nearest number errs by at most half a gap: u = eps / 2."),
            Misconception("float16", 2.0**-11,
                          "That is float16's unit roundoff (11 significant bits). bfloat16 trades precision for "
                          "range: it keeps only 8."),
            Misconception("float32", 2.0**-24, "That is float32's unit roundoff (24 significant bits)."),
            Misconception("implicit-bit-twice", lambda: _bf16_roundoff() / 2,
                          "One bit too many: bfloat16 has 8 significant bits in all, the 7 stored fraction bits "
                          "plus the implicit leading 1."),
        ],
    ),
)


# --------------------------------------------------------------------------- numerics.condition-number
#: ``numerics.condition-number``: the pair whose unconstrained condition number the reader computes
COND_P = (0.5, 0.3, 0.2)
COND_Q = (0.4, 0.35, 0.25)
#: relative tolerance of the answer
COND_RTOL = 1e-3


def _cond_parts():
    p, q = np.asarray(COND_P), np.asarray(COND_Q)
    log_ratio = np.log(p / q)
    kl = float(np.sum(p * log_ratio))
    return p, q, log_ratio, kl


def condition_number_expected() -> float:
    """kappa_F = (sum p |log(p/q) + 1| + sum p) / D: free relative perturbations of all six entries."""
    p, _, log_ratio, kl = _cond_parts()
    return float((np.sum(p * np.abs(log_ratio + 1)) + np.sum(p)) / kl)


def _cond_simplex() -> float:
    p, q, log_ratio, kl = _cond_parts()
    return float((np.sum(p * np.abs(log_ratio - kl)) + np.sum(np.abs(q - p))) / kl)


def _cond_no_plus_one() -> float:
    p, _, log_ratio, kl = _cond_parts()
    return float((np.sum(p * np.abs(log_ratio)) + np.sum(p)) / kl)


def _cond_no_q() -> float:
    p, _, log_ratio, kl = _cond_parts()
    return float(np.sum(p * np.abs(log_ratio + 1)) / kl)


def _cond_absolute() -> float:
    p, _, log_ratio, _ = _cond_parts()
    return float(np.sum(p * np.abs(log_ratio + 1)) + np.sum(p))


def _cond_of_the_sum() -> float:
    p, _, log_ratio, kl = _cond_parts()
    return float(np.sum(p * np.abs(log_ratio)) / kl)


register(
    "numerics.condition-number",
    title="The condition number of the textbook KL formula",
    kind="number",
    checker=number(
        condition_number_expected,
        rtol=COND_RTOL,
        atol=0.0,
        unit=None,
        misconceptions=[
            Misconception("simplex", _cond_simplex,
                          "That is the condition number on the simplex, where the perturbed vectors are "
                          "renormalised (κ_Δ). Here the six numbers are perturbed freely and not renormalised: "
                          "the +1 in ∂F/∂p_j and the q-terms −p_j no longer cancel."),
            Misconception("no-plus-one", _cond_no_plus_one,
                          "The +1 is missing: the derivative of p log(p/q) with respect to p is log(p/q) + 1, "
                          "not log(p/q)."),
            Misconception("no-q-term", _cond_no_q,
                          "You perturbed only p. The entries of q are inputs too: q_j ∂F/∂q_j = −p_j adds "
                          "Σ p_j to the numerator."),
            Misconception("absolute", _cond_absolute,
                          "That is Σ|x_j ∂F/∂x_j|, the absolute sensitivity. The relative condition number "
                          "divides it by |F|, the divergence itself."),
            Misconception("bits", lambda: condition_number_expected() * math.log(2),
                          "A ratio of nats to bits: a condition number has no unit. If you take D in bits, "
                          "take the derivatives in bits too, and the factors ln 2 cancel."),
            Misconception("bits-other-way", lambda: condition_number_expected() / math.log(2),
                          "A ratio of bits to nats: a condition number has no unit. Use one log base for the "
                          "derivatives and for D, and the factors ln 2 cancel."),
            Misconception("sum-kappa", _cond_of_the_sum,
                          "That is Σ|t_i| / |Σ t_i| for the terms t_i = p_i log(p_i/q_i), the condition number "
                          "of the summation, a property of one algorithm. The problem's condition number "
                          "measures how F changes when its six inputs change."),
        ],
    ),
)

__all__ += ["COND_P", "COND_Q", "COND_RTOL", "condition_number_expected"]
