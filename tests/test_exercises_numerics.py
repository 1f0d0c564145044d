"""Exercises of chapter 5 (numerics): right answers computed by independent routes (mpmath, PyTorch, hand
formulas) are accepted, each targeted misconception is recognised by name, and the notebook states the
registered data."""

import ast
import json
import math
import re
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import rel_entr

from klcourse.exercises import evaluate, get_exercise, list_exercises
from klcourse.exercises import numerics as ex
from klcourse.exercises.core import CORRECT, INVALID, KINDS, NOT_ANSWERED
from klcourse.numerics import kl_bernoulli

NOTEBOOK = Path(__file__).resolve().parents[1] / "book" / "05_numerics.ipynb"
IDS = {"numerics.kl-bernoulli", "numerics.kl-div-batch", "numerics.clip-predict", "numerics.logsumexp",
       "numerics.negative-textbook", "numerics.digits-lost", "numerics.bf16-roundoff",
       "numerics.condition-number"}


def assert_misconception(exercise_id, answer, name):
    feedback = evaluate(exercise_id, answer)
    assert not feedback.passed
    assert feedback.misconception == name, feedback.message
    return feedback


# --------------------------------------------------------------------------- registry
def test_all_exercises_registered_with_mixed_kinds():
    registered = {e.id: e for e in list_exercises("numerics")}
    assert set(registered) == IDS
    assert all(e.kind in KINDS for e in registered.values())
    assert len({e.kind for e in registered.values()}) >= 4
    assert "function" in {e.kind for e in registered.values()}


@pytest.mark.parametrize("exercise_id", sorted(IDS))
def test_unanswered_and_none_are_not_answered(exercise_id):
    for placeholder in (..., None):
        feedback = evaluate(exercise_id, placeholder)
        assert feedback.status == NOT_ANSWERED and not feedback.passed


# --------------------------------------------------------------------------- kl-bernoulli
def kl_bernoulli_mpmath(a, b):
    """An independent, exact-to-rounding answer: the definition in 50-digit arithmetic."""
    with mpmath.workdps(50):
        a, b = mpmath.mpf(a), mpmath.mpf(b)
        total = mpmath.mpf(0)
        for x, y in ((a, b), (1 - a, 1 - b)):
            if x > 0:
                if y == 0:
                    return math.inf
                total += x * mpmath.log(x / y)
        return float(total)


def kl_bernoulli_log1p(a, b):
    """Another correct learner answer: log1p on the exact gaps, the added zero (b - a) + (a - b) dropped."""
    def term(weight, gap):
        if weight == 0:
            return 0.0
        ratio = gap / weight
        return math.inf if ratio <= -1 else -weight * math.log1p(ratio)

    return term(a, b - a) + term(1 - a, a - b)


def kl_bernoulli_textbook_guarded(a, b):
    """The textbook form with correct edge handling: right except when a ~ b."""
    return float(rel_entr(a, b) + rel_entr(1 - a, 1 - b))


def kl_bernoulli_naive(a, b):
    a, b = np.float64(a), np.float64(b)  # NumPy scalars: 0/0 is nan, not ZeroDivisionError
    return a * np.log(a / b) + (1 - a) * np.log((1 - a) / (1 - b))


def kl_bernoulli_clipped(a, b):
    b = min(max(b, 1e-12), 1 - 1e-12)
    return kl_bernoulli_mpmath(a, b)


def kl_bernoulli_with_psi(a, b):
    """The chapter's solution: it may call klcourse.numerics.r_minus_log1p, as the hint says."""
    from klcourse import numerics as nm

    def weighted_psi(weight, gap):
        if weight == 0:
            return gap
        return weight * nm.r_minus_log1p(gap / weight)

    return float(weighted_psi(a, b - a) + weighted_psi(1 - a, a - b))


@pytest.mark.parametrize("answer", [kl_bernoulli_with_psi, kl_bernoulli_mpmath, kl_bernoulli_log1p])
def test_kl_bernoulli_accepts_correct_implementations(answer):
    assert evaluate("numerics.kl-bernoulli", answer).status == CORRECT


def test_kl_bernoulli_rejects_klcourse_own_function():
    feedback = evaluate("numerics.kl-bernoulli", kl_bernoulli)
    assert feedback.misconception == "klcourse-own" and "kl_bernoulli" in feedback.message


def test_kl_bernoulli_reference_matches_mpmath_on_the_checked_cases():
    for cases in ex.bernoulli_cases().values():
        for case in cases:
            got, ref = kl_bernoulli(*case.args), kl_bernoulli_mpmath(*case.args)
            assert got == ref == math.inf or math.isclose(got, ref, rel_tol=1e-13, abs_tol=0.0), case.description


def test_kl_bernoulli_names_the_cancellation():
    feedback = assert_misconception("numerics.kl-bernoulli", kl_bernoulli_textbook_guarded, "cancellation")
    assert "log1p" in feedback.message


def test_the_textbook_form_really_fails_near_equality_and_only_there():
    near = ex.bernoulli_cases()["near"]
    errors = [abs(kl_bernoulli_textbook_guarded(*c.args) - kl_bernoulli_mpmath(*c.args)) / kl_bernoulli_mpmath(*c.args)
              for c in near]
    assert max(errors) > ex.BERNOULLI_RTOL
    separated = ex.bernoulli_cases()["separated"]
    assert all(math.isclose(kl_bernoulli_textbook_guarded(*c.args), kl_bernoulli_mpmath(*c.args), rel_tol=1e-12,
                            abs_tol=1e-300) for c in separated)


def test_kl_bernoulli_other_mistakes():
    feedback = evaluate("numerics.kl-bernoulli", kl_bernoulli_naive)
    assert not feedback.passed and "NaN" in feedback.message
    assert_misconception("numerics.kl-bernoulli", kl_bernoulli_clipped, "clipped")
    assert_misconception("numerics.kl-bernoulli", lambda a, b: kl_bernoulli_mpmath(b, a), "swapped")
    assert evaluate("numerics.kl-bernoulli", 0.5).status == INVALID


# --------------------------------------------------------------------------- kl-div-batch
def batch_tensors():
    target = torch.tensor(ex.TARGET_LOGITS, dtype=torch.float64)
    model = torch.tensor(ex.MODEL_LOGITS, dtype=torch.float64)
    return target, model


def hand_batch_kl(reverse=False):
    """Mean over rows of D(P_b || Q_b) with softmax and logs written out in mpmath."""
    total = mpmath.mpf(0)
    with mpmath.workdps(40):
        for zp, zq in zip(ex.TARGET_LOGITS, ex.MODEL_LOGITS, strict=True):
            lp = [mpmath.mpf(z) - mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zp)) for z in zp]
            lq = [mpmath.mpf(z) - mpmath.log(mpmath.fsum(mpmath.exp(v) for v in zq)) for z in zq]
            if reverse:
                lp, lq = lq, lp
            total += mpmath.fsum(mpmath.exp(a) * (a - b) for a, b in zip(lp, lq, strict=True))
        return float(total / len(ex.TARGET_LOGITS))


def test_kl_div_batch_accepts_batchmean_and_the_hand_value():
    target, model = batch_tensors()
    answer = F.kl_div(torch.log_softmax(model, -1), torch.softmax(target, -1), reduction="batchmean").item()
    assert evaluate("numerics.kl-div-batch", answer).status == CORRECT
    assert evaluate("numerics.kl-div-batch", hand_batch_kl()).status == CORRECT
    assert math.isclose(answer, hand_batch_kl(), rel_tol=1e-12)


def test_kl_div_batch_names_the_reduction_and_argument_traps():
    target, model = batch_tensors()
    log_q, p = torch.log_softmax(model, -1), torch.softmax(target, -1)
    with pytest.warns(UserWarning):
        default = F.kl_div(log_q, p).item()
    feedback = assert_misconception("numerics.kl-div-batch", default, "reduction-mean")
    assert "batchmean" in feedback.message
    assert_misconception("numerics.kl-div-batch", F.kl_div(log_q, p, reduction="sum").item(), "sum-vs-mean")
    swapped = F.kl_div(torch.log_softmax(target, -1), torch.softmax(model, -1), reduction="batchmean").item()
    assert math.isclose(swapped, hand_batch_kl(reverse=True), rel_tol=1e-12)
    assert_misconception("numerics.kl-div-batch", swapped, "swapped")
    no_log = F.kl_div(log_q.exp(), p, reduction="batchmean").item()
    assert_misconception("numerics.kl-div-batch", no_log, "probabilities-as-input")


def test_kl_div_batch_log_target_without_flag_is_nan_and_explained():
    target, model = batch_tensors()
    value = F.kl_div(torch.log_softmax(model, -1), torch.log_softmax(target, -1), reduction="batchmean").item()
    assert math.isnan(value)
    feedback = evaluate("numerics.kl-div-batch", value)
    assert not feedback.passed and "NaN" in feedback.message
    with_flag = F.kl_div(torch.log_softmax(model, -1), torch.log_softmax(target, -1), reduction="batchmean",
                         log_target=True).item()
    assert evaluate("numerics.kl-div-batch", with_flag).passed


# --------------------------------------------------------------------------- clip-predict
def test_clip_predict_answer_from_the_missing_mass():
    p, q = np.array(ex.CLIP_P), np.array(ex.CLIP_Q)
    missing = p[q == 0].sum()
    assert missing > 0  # the true divergence is infinite
    # clipped value = const + missing * log(1/eps): a smaller eps gives a larger value
    change = missing * (math.log(1 / ex.CLIP_EPS_COLLEAGUE) - math.log(1 / ex.CLIP_EPS_YOURS))
    assert change > 0.5
    assert evaluate("numerics.clip-predict", "larger").status == CORRECT
    assert evaluate("numerics.clip-predict", " Larger ").passed
    for wrong in ("same", "smaller", "inf"):
        assert_misconception("numerics.clip-predict", wrong, wrong)
    assert evaluate("numerics.clip-predict", "bigger").status == INVALID
    assert evaluate("numerics.clip-predict", 1.0).status == INVALID


# --------------------------------------------------------------------------- logsumexp
def mp_logsumexp(z):
    with mpmath.workdps(40):
        return float(mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(v)) for v in z)))


def test_logsumexp_accepts_the_exact_value_and_float32():
    z = ex.LSE_LOGITS
    assert evaluate("numerics.logsumexp", mp_logsumexp(z)).status == CORRECT
    assert evaluate("numerics.logsumexp", torch.logsumexp(torch.tensor(z, dtype=torch.float32), 0)).passed


def test_logsumexp_names_misconceptions():
    z = np.array(ex.LSE_LOGITS)
    with np.errstate(over="ignore"):
        assert_misconception("numerics.logsumexp", float(np.log(np.sum(np.exp(z)))), "overflow")
    m = max(ex.LSE_LOGITS)
    assert_misconception("numerics.logsumexp", mp_logsumexp(z) - m, "forgot-max")
    assert_misconception("numerics.logsumexp", m, "max-only")
    assert_misconception("numerics.logsumexp", ex.LSE_LOGITS[0] - mp_logsumexp(z), "log-softmax")
    feedback = evaluate("numerics.logsumexp", mp_logsumexp(z) + 0.3)
    assert not feedback.passed and feedback.misconception is None
    assert f"{mp_logsumexp(z):.4f}" not in feedback.message
    assert evaluate("numerics.logsumexp", "1001").status == INVALID


# --------------------------------------------------------------------------- negative-textbook
def textbook_python(mu0, s0, mu1, s1):
    return math.log(s1 / s0) + (s0**2 + (mu0 - mu1) ** 2) / (2 * s1**2) - 0.5


def first_negative_pair():
    for k in range(1, 200):
        for s1 in (3.0 * (1 - k * 1e-9), 3.0 * (1 + k * 1e-9), 0.7 * (1 - k * 1e-9)):
            for s0 in (3.0, 0.7):
                if textbook_python(0.0, s0, 0.0, s1) < 0:
                    return (0.0, s0, 0.0, s1)
    raise AssertionError("no negative textbook value found")


def test_negative_textbook_accepts_a_found_pair():
    pair = first_negative_pair()
    feedback = evaluate("numerics.negative-textbook", pair)
    assert feedback.status == CORRECT, feedback.message
    assert evaluate("numerics.negative-textbook", np.array(pair)).passed


def test_negative_textbook_rejects_positive_pairs():
    feedback = evaluate("numerics.negative-textbook", (0.0, 1.0, 1.0, 2.0))
    assert not feedback.passed and feedback.status != INVALID
    assert not evaluate("numerics.negative-textbook", (0.0, 1.0, 0.0, 1.0)).passed  # exactly 0 is not negative


@pytest.mark.parametrize("answer", [(0.0, -1.0, 0.0, 1.0), (0.0, 1.0, 0.0), (0.0, 1.0, 0.0, math.nan), "0 1 0 1",
                                    (0.0, 1.0, "a", 1.0), 3.0])
def test_negative_textbook_invalid_answers(answer):
    feedback = evaluate("numerics.negative-textbook", answer)
    assert feedback.status == INVALID and "Traceback" not in feedback.message


# --------------------------------------------------------------------------- digits-lost
def test_digits_lost_follows_the_rounding_model():
    # eps / delta**2 at delta = 1e-6: the relative error the cancellation argument predicts
    predicted = -math.log10(np.finfo(float).eps / ex.DIGITS_DELTA**2)
    closest = min(ex.DIGITS_OPTIONS, key=lambda o: abs(float(o) - predicted))
    assert abs(ex.textbook_digits() - predicted) < 1.5  # the measurement agrees with the model
    assert evaluate("numerics.digits-lost", closest).status == CORRECT
    for wrong in set(ex.DIGITS_OPTIONS) - {closest}:
        assert_misconception("numerics.digits-lost", wrong, wrong)
    assert evaluate("numerics.digits-lost", 4).status == INVALID


# --------------------------------------------------------------------------- the notebook
def notebook_cells():
    return json.loads(NOTEBOOK.read_text())["cells"]


def source(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_every_exercise_has_statement_solution_and_check():
    cells = notebook_cells()
    checks = {}
    for i, cell in enumerate(cells):
        match = re.fullmatch(r'check\("([\w.-]+)", answer\)', source(cell).strip())
        if cell["cell_type"] == "code" and match:
            checks[match.group(1)] = i
    assert set(checks) == IDS
    for exercise_id, i in checks.items():
        label = exercise_id.replace(".", "-")
        assert source(cells[i - 1]).strip().startswith("```{solution-end}")
        solution = cells[i - 2]
        assert "solution" in solution["metadata"].get("tags", [])
        assert re.search(r"^answer = ", source(solution), flags=re.M)
        assert f"```{{solution-start}} {label}" in source(cells[i - 3])
        assert source(cells[i - 4]).strip().startswith("```{exercise-end}") or "```{exercise-end}" in source(
            cells[i - 4])
        starts = [j for j in range(i) if f":label: {label}" in source(cells[j])]
        assert len(starts) == 1 and i - 6 <= starts[0] <= i - 4


def _statement(label):
    return next(source(c) for c in notebook_cells() if f":label: {label}" in source(c))


def test_statements_state_the_registered_data():
    def stated(values):
        return "(" + ", ".join(f"{v:g}" for v in values) + ")"

    def short(x):
        return f"{x:.0e}".replace("e-0", "e-")

    clip = _statement("numerics-clip-predict")
    assert f"P = {stated(ex.CLIP_P)}" in clip and f"Q = {stated(ex.CLIP_Q)}" in clip
    assert f"eps={short(ex.CLIP_EPS_YOURS)}" in clip and f"eps={short(ex.CLIP_EPS_COLLEAGUE)}" in clip
    assert f"z = {stated(ex.LSE_LOGITS)}" in _statement("numerics-logsumexp")
    assert "10^{-6}" in _statement("numerics-digits-lost") and ex.DIGITS_DELTA == 1e-6
    for option in ex.DIGITS_OPTIONS:
        assert f'`"{option}"`' in _statement("numerics-digits-lost")


def test_kl_div_data_cell_holds_the_registered_logits():
    cells = notebook_cells()
    data = next(source(c) for c in cells if c["cell_type"] == "code" and "target_logits_ex = " in source(c))
    tensors = {}
    for node in ast.parse(data).body:
        call = node.value
        tensors[node.targets[0].id] = ast.literal_eval(call.args[0])
    assert tuple(map(tuple, tensors["target_logits_ex"])) == ex.TARGET_LOGITS
    assert tuple(map(tuple, tensors["model_logits_ex"])) == ex.MODEL_LOGITS


# --------------------------------------------------------------------------- issue 9: direction, hidden cases
def test_digits_lost_feedback_points_the_way_the_figure_runs():
    nb = json.loads((Path(__file__).resolve().parents[1] / "book" / "05_numerics.ipynb").read_text())
    figure = next("".join(c["source"]) for c in nb["cells"]
                  if c["metadata"].get("mystnb", {}).get("figure", {}).get("name") == "fig-num-sweep")
    message = evaluate("numerics.digits-lost", "0").message
    if "invert_xaxis()" in figure:  # δ → 0 to the right
        assert "right" in message and "left" not in message, message
    else:
        assert "left" in message and "right" not in message, message


def test_kl_bernoulli_hidden_cases():
    checker = get_exercise("numerics.kl-bernoulli").checker
    for seed in (1, 2, 3):
        cases = checker.cases(seed=seed)
        assert checker.judge(checker.run(kl_bernoulli_with_psi, cases), cases).passed
        naive = checker.judge(checker.run(kl_bernoulli_naive, cases), cases)
        assert naive.misconception in ("cancellation", None) and not naive.passed


# --------------------------------------------------------------------------- bf16-roundoff
def measured_bf16_roundoff():
    """The largest relative error of rounding 200 000 random numbers to bfloat16, measured with torch."""
    x = torch.from_numpy(np.random.default_rng(0).uniform(1.0, 2.0, 200_000))
    rounded = x.to(torch.bfloat16).double()
    return float(((rounded - x).abs() / x).max())


def test_bf16_roundoff_is_the_measured_largest_rounding_error():
    measured = measured_bf16_roundoff()
    assert 0.99 * ex._bf16_roundoff() < measured <= ex._bf16_roundoff()  # the bound is attained, up to sampling
    assert evaluate("numerics.bf16-roundoff", torch.finfo(torch.bfloat16).eps / 2).passed
    assert evaluate("numerics.bf16-roundoff", 0.00391).passed


@pytest.mark.parametrize(("wrong", "name"), [
    (torch.finfo(torch.bfloat16).eps, "epsilon-not-u"),
    (torch.finfo(torch.float16).eps / 2, "float16"),
    (torch.finfo(torch.float32).eps / 2, "float32"),
    (2.0**-9, "implicit-bit-twice"),
])
def test_bf16_roundoff_names_misconceptions(wrong, name):
    assert_misconception("numerics.bf16-roundoff", wrong, name)


def test_bf16_roundoff_far_answer_does_not_reveal_the_value():
    fb = evaluate("numerics.bf16-roundoff", 0.1)
    assert not fb.passed and fb.misconception is None and "0.0039" not in fb.message


# --------------------------------------------------------------------------- condition-number
def mp_condition_by_perturbation():
    """sum_j |F(x + eta x_j e_j) - F(x)| / (eta |F(x)|) over the six entries, F = sum p log(p/q), in mpmath."""
    def f(y):
        return mpmath.fsum(a * mpmath.log(a / b) for a, b in zip(y[:3], y[3:], strict=True))

    return _mp_amplification(f)


def _mp_amplification(f) -> float:
    """sum_j |f(x + eta x_j e_j) - f(x)| / (eta |f(x)|) at x = (COND_P, COND_Q), in 60-digit mpmath."""
    with mpmath.workdps(60):
        x = [mpmath.mpf(v) for v in (*ex.COND_P, *ex.COND_Q)]
        eta, base = mpmath.mpf("1e-30"), f(x)
        total = mpmath.mpf(0)
        for j in range(6):
            y = list(x)
            y[j] *= 1 + eta
            total += abs(f(y) - base)
        return float(total / (eta * abs(base)))


def test_condition_number_matches_mpmath_perturbation():
    expected = mp_condition_by_perturbation()
    assert ex.condition_number_expected() == pytest.approx(expected, rel=1e-10)
    assert evaluate("numerics.condition-number", expected).passed
    assert evaluate("numerics.condition-number", float(f"{expected:.4g}")).passed


def test_condition_number_simplex_misconception_is_the_renormalised_problem():
    """The 'simplex' value is the condition number of D(p/sum p || q/sum q), measured by perturbation."""
    def d(y):
        ps, qs = mpmath.fsum(y[:3]), mpmath.fsum(y[3:])
        return mpmath.fsum(a / ps * mpmath.log((a / ps) / (b / qs)) for a, b in zip(y[:3], y[3:], strict=True))

    simplex = _mp_amplification(d)
    assert_misconception("numerics.condition-number", simplex, "simplex")


def _by_hand_parts():
    p, q = np.array(ex.COND_P), np.array(ex.COND_Q)
    kl = sum(a * math.log(a / b) for a, b in zip(p, q, strict=True))
    return p, q, kl


@pytest.mark.parametrize(("name", "wrong"), [
    ("no-plus-one", lambda p, q, kl: (sum(a * abs(math.log(a / b)) for a, b in zip(p, q, strict=True)) + 1) / kl),
    ("no-q-term", lambda p, q, kl: sum(a * abs(math.log(a / b) + 1) for a, b in zip(p, q, strict=True)) / kl),
    ("absolute", lambda p, q, kl: sum(a * abs(math.log(a / b) + 1) for a, b in zip(p, q, strict=True)) + 1),
    ("bits", lambda p, q, kl: mp_condition_by_perturbation() * math.log(2)),
    ("bits-other-way", lambda p, q, kl: mp_condition_by_perturbation() / math.log(2)),
    ("sum-kappa", lambda p, q, kl: sum(abs(a * math.log(a / b)) for a, b in zip(p, q, strict=True)) / kl),
])
def test_condition_number_names_misconceptions(name, wrong):
    assert_misconception("numerics.condition-number", wrong(*_by_hand_parts()), name)


def test_condition_number_far_answer_does_not_reveal_the_value():
    fb = evaluate("numerics.condition-number", 30.0)
    assert not fb.passed and fb.misconception is None and "97" not in fb.message


def test_condition_number_statement_states_the_data():
    statement = _statement("numerics-condition-number")
    assert "P = (0.5, 0.3, 0.2)" in statement and "Q = (0.4, 0.35, 0.25)" in statement
    assert ex.COND_P == (0.5, 0.3, 0.2) and ex.COND_Q == (0.4, 0.35, 0.25)

def test_condition_number_hints_point_to_the_formula_not_to_the_answering_call():
    from klcourse.exercises import hints as hints_module
    texts = hints_module.HINTS["numerics.condition-number"]
    assert not any("kl_discrete_condition" in t for t in texts)
    assert "κ_F" in texts[-1]


# --------------------------------------------------------------------------- log base in kl-bernoulli
@pytest.mark.parametrize(("base", "name"), [(2.0, "bits"), (10.0, "log10")])
def test_kl_bernoulli_in_another_log_base_is_named(base, name):
    def in_base(a, b):  # the exact answer (50-digit arithmetic) in the wrong unit
        return kl_bernoulli_mpmath(a, b) / math.log(base)

    assert_misconception("numerics.kl-bernoulli", in_base, name)


def test_kl_bernoulli_in_bits_is_named_even_when_it_also_cancels():
    def textbook_bits(a, b):  # the textbook form in bits: it loses digits when a ~ b as well
        return kl_bernoulli_textbook_guarded(a, b) / math.log(2)

    assert_misconception("numerics.kl-bernoulli", textbook_bits, "bits")
