"""The exercise registry, ``check`` and the generic checkers."""

import math

import numpy as np
import pytest

from klcourse.exercises import check, core, evaluate, get_exercise, list_exercises, register
from klcourse.exercises.checkers import (
    KL_NEVER_NEGATIVE,
    ArrayChecker,
    Case,
    Misconception,
    NumberChecker,
    array,
    choice,
    forgot_half,
    function,
    number,
    predicate,
    sigma_for_variance,
    sum_vs_mean,
    swapped,
)


@pytest.fixture
def scratch():
    """Register throw-away exercises in a scratch chapter and remove them afterwards."""
    added = []

    def add(name, **kw):
        ex = register(f"scratch.{name}", **kw)
        added.append(ex.id)
        return ex.id

    yield add
    for key in added:
        core._REGISTRY.pop(key, None)


def kl_bern(a, b):
    """Bernoulli KL written out by hand (independent of klcourse)."""
    return a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))


# ---------------------------------------------------------------- number
def test_number_accepts_within_tolerance_and_rejects_outside(scratch):
    value = kl_bern(0.3, 0.6)
    eid = scratch("n", title="t", kind="number", checker=number(value, rtol=1e-4))
    assert evaluate(eid, value * (1 + 5e-5)).passed
    fb = evaluate(eid, value * 1.2)
    assert not fb.passed and fb.status == "wrong" and "too large" in fb.message


@pytest.mark.parametrize(
    ("transform", "name"),
    [(lambda v: v / math.log(2), "bits"), (lambda v: v / math.log(10), "log10")],
)
def test_number_recognises_log_base_traps(scratch, transform, name):
    value = kl_bern(0.3, 0.6)
    eid = scratch("units", title="t", kind="number", checker=number(value))
    fb = evaluate(eid, transform(value))
    assert fb.misconception == name
    assert not fb.passed


def test_number_in_bits_recognises_nats(scratch):
    bits = kl_bern(0.2, 0.5) / math.log(2)
    eid = scratch("b", title="t", kind="number", checker=number(bits, unit="bits"))
    assert evaluate(eid, bits).passed
    assert evaluate(eid, bits * math.log(2)).misconception == "nats"


def test_named_misconceptions_get_their_messages(scratch):
    forward, reverse = kl_bern(0.1, 0.5), kl_bern(0.5, 0.1)
    eid = scratch(
        "m",
        title="t",
        kind="number",
        checker=number(forward, misconceptions=[swapped(reverse), sigma_for_variance(2.5), forgot_half(3.5),
                                                sum_vs_mean(forward * 32)]),
    )
    assert "swapped" in evaluate(eid, reverse).message
    assert evaluate(eid, 2.5).misconception == "sigma-variance"
    assert evaluate(eid, 3.5).misconception == "forgot-constant"
    assert evaluate(eid, forward * 32).misconception == "sum-vs-mean"


def test_misconception_equal_to_the_answer_is_not_claimed(scratch):
    # a symmetric pair: the swapped value *is* the right one, so it must pass
    value = kl_bern(0.3, 0.7)
    eid = scratch("sym", title="t", kind="number", checker=number(value, misconceptions=[swapped(kl_bern(0.7, 0.3))]))
    assert evaluate(eid, value).passed


def test_feedback_never_reveals_expected_value(scratch):
    value = 0.123456
    eid = scratch("secret", title="t", kind="number", checker=number(value))
    for wrong in (0.2, -1.0, 5.0, 0.1, 1e6):
        assert "0.123" not in evaluate(eid, wrong).message


@pytest.mark.parametrize("bad", ["0.5", [0.1, 0.2], True, {"a": 1}, object()])
def test_number_wrong_type_is_a_sentence_not_a_traceback(scratch, bad):
    eid = scratch("types", title="t", kind="number", checker=number(0.5))
    fb = evaluate(eid, bad)
    assert fb.status == "invalid" and not fb.passed
    assert fb.message.endswith(".")


@pytest.mark.parametrize("blank", [..., None])
def test_unanswered(scratch, blank):
    eid = scratch("blank", title="t", kind="number", checker=number(0.5))
    fb = evaluate(eid, blank)
    assert fb.status == "not answered" and not fb.passed
    assert "Not answered" in fb.message


def test_negative_kl_gets_gibbs_hint_only_when_asked(scratch):
    eid = scratch("neg", title="t", kind="number", checker=number(0.4, negative=KL_NEVER_NEGATIVE))
    assert "never negative" in evaluate(eid, -0.4 * 0.77).message
    plain = scratch("neg-plain", title="t", kind="number", checker=number(0.4))
    message = evaluate(plain, -0.4 * 0.77).message
    assert "KL" not in message and "wrong sign" in message


def test_infinite_expected_value(scratch):
    eid = scratch("inf", title="t", kind="number", checker=number(math.inf))
    assert evaluate(eid, float("inf")).passed
    assert "infinite" in evaluate(eid, 40.0).message


def test_lazy_expected_value_is_computed_once(scratch):
    calls = []

    def expensive():
        calls.append(1)
        return 2.0

    eid = scratch("lazy", title="t", kind="number", checker=number(expensive))
    assert not calls
    assert evaluate(eid, 2.0).passed and evaluate(eid, 2.0).passed
    assert len(calls) == 1


def test_torch_scalar_answers_are_accepted(scratch):
    torch = pytest.importorskip("torch")
    eid = scratch("torch", title="t", kind="number", checker=number(0.25))
    assert evaluate(eid, torch.tensor(0.25, dtype=torch.float64)).passed
    assert evaluate(eid, np.float32(0.25)).passed


# ---------------------------------------------------------------- array
def test_array_checker_shape_and_values(scratch):
    expected = np.array([0.1, 0.2, 0.3])
    eid = scratch("arr", title="t", kind="array", checker=array(expected, unit="nats"))
    assert evaluate(eid, [0.1, 0.2, 0.3]).passed
    fb = evaluate(eid, [0.1, 0.2])
    assert fb.status == "invalid" and "(3,)" in fb.message and "(2,)" in fb.message
    assert evaluate(eid, expected / math.log(2)).misconception == "bits"
    assert not evaluate(eid, expected * 1.5).passed


# ---------------------------------------------------------------- function
def _kl_reference(p, q):
    p, q = np.asarray(p, float), np.asarray(q, float)
    with np.errstate(divide="ignore"):
        return float(np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1) / q), 0.0)))


CASES = [
    Case("two random vectors", (np.array([0.2, 0.5, 0.3]), np.array([0.4, 0.4, 0.2]))),
    Case("identical inputs", (np.array([0.5, 0.5]), np.array([0.5, 0.5]))),
    Case("a zero in p", (np.array([0.0, 1.0]), np.array([0.5, 0.5]))),
]


def test_function_checker(scratch):
    eid = scratch(
        "fn",
        title="t",
        kind="function",
        checker=function(_kl_reference, CASES, misconceptions=[swapped(lambda p, q: _kl_reference(q, p))]),
    )
    assert evaluate(eid, _kl_reference).passed
    assert evaluate(eid, lambda p, q: _kl_reference(q, p)).misconception == "swapped"
    naive = evaluate(eid, lambda p, q: float(np.sum(p * np.log(p / q))))  # nan on the zero case
    assert not naive.passed and "a zero in p" in naive.message and "NaN" in naive.message
    crash = evaluate(eid, lambda p: 0.0)
    assert not crash.passed and "TypeError" in crash.message
    assert evaluate(eid, 3.0).status == "invalid"


def test_function_checker_with_generated_cases(scratch):
    def cases(rng):
        return [Case(f"random case {i}", (rng.dirichlet(np.ones(4)), rng.dirichlet(np.ones(4)))) for i in range(5)]

    eid = scratch("gen", title="t", kind="function", checker=function(_kl_reference, cases))
    assert evaluate(eid, _kl_reference).passed
    assert not evaluate(eid, lambda p, q: 1.1 * _kl_reference(p, q)).passed


# ---------------------------------------------------------------- choice and predicate
def test_choice_checker(scratch):
    eid = scratch("ch", title="t", kind="choice",
                  checker=choice("forward", ["forward", "reverse"], explanations={"reverse": "Reverse is narrow."}))
    assert evaluate(eid, " Forward ").passed
    assert evaluate(eid, "reverse").message == "Reverse is narrow."
    assert evaluate(eid, "sideways").status == "invalid"
    assert evaluate(eid, 1).status == "invalid"
    with pytest.raises(ValueError):
        choice("up", ["left", "right"])


def test_predicate_checker(scratch):
    def is_prob(answer):
        p = np.asarray(answer, dtype=float)
        return bool(np.isclose(p.sum(), 1) and (p >= 0).all()), "ok" if np.isclose(p.sum(), 1) else "must sum to 1"

    eid = scratch("pred", title="t", kind="counterexample", checker=predicate(is_prob))
    assert evaluate(eid, [0.5, 0.5]).passed
    assert evaluate(eid, [0.5, 0.6]).message.startswith("must sum to 1 Accepted:")
    assert evaluate(eid, "abc").status == "invalid"


# ---------------------------------------------------------------- registry
def test_register_rejects_bad_ids_kinds_and_duplicates(scratch):
    scratch("dup", title="t", kind="number", checker=number(1.0))
    with pytest.raises(ValueError, match="twice"):
        register("scratch.dup", title="t", kind="number", checker=number(1.0))
    with pytest.raises(ValueError, match="chapter.short-name"):
        register("nodot", title="t", kind="number", checker=number(1.0))
    with pytest.raises(ValueError, match="kind"):
        register("scratch.kind", title="t", kind="essay", checker=number(1.0))


def test_unknown_exercise_id_names_the_problem(capsys):
    with pytest.raises(KeyError, match="no exercise"):  # the programmatic API (the grader) raises
        evaluate("definitions.no-such-exercise", 1.0)
    fb = check("definitions.no-such-exercise", 1.0)  # a learner's typo gets a sentence
    assert not fb.passed and fb.status == "invalid" and "definitions.kl-in-bits" in fb.message
    assert "There is no exercise" in capsys.readouterr().out


def test_check_prints_outside_jupyter_and_returns_feedback(scratch, capsys):
    eid = scratch("print", title="t", kind="number", checker=number(1.0))
    fb = check(eid, 1.0)
    assert fb.passed and bool(fb)
    assert "Correct" in capsys.readouterr().out
    bundle = fb._repr_mimebundle_()
    assert bundle[core.FEEDBACK_MIME]["passed"] is True


def test_a_crashing_checker_becomes_feedback(scratch):
    def broken(answer):
        raise RuntimeError("boom")

    eid = scratch("broken", title="t", kind="number", checker=broken)
    fb = evaluate(eid, 1.0)
    assert fb.status == "invalid" and "boom" in fb.message


def test_every_registered_exercise_belongs_to_a_chapter():
    for ex in list_exercises():
        assert ex.chapter in core.CHAPTERS, ex.id
        assert ex.title and ex.kind in core.KINDS
        assert get_exercise(ex.id) is ex


def test_function_misconception_that_produces_nan_is_still_recognised(scratch):
    def naive(p, q):  # 0·log 0 → NaN on the zero case, like the learner's
        with np.errstate(all="ignore"):
            return float(np.sum(np.asarray(p) * np.log(np.asarray(p) / np.asarray(q))))

    named = Misconception("no-zero-handling", naive, "Terms with p = 0 must contribute 0.")
    eid = scratch("nanmis", title="t", kind="function", checker=function(_kl_reference, CASES, misconceptions=[named]))
    assert evaluate(eid, naive).misconception == "no-zero-handling"


def test_choice_with_a_computed_answer_and_explanation_function(scratch):
    calls = []

    def larger():
        calls.append(1)
        return "forward" if kl_bern(0.1, 0.5) > kl_bern(0.5, 0.1) else "reverse"

    eid = scratch("lazych", title="t", kind="predict",
                  checker=choice(larger, ["forward", "reverse"], explanations=lambda right, got: f"not {got}"))
    assert not calls  # computed on first use
    expected = "forward" if kl_bern(0.1, 0.5) > kl_bern(0.5, 0.1) else "reverse"
    other = "reverse" if expected == "forward" else "forward"
    assert evaluate(eid, expected).passed
    assert evaluate(eid, other).message == f"not {other}"
    assert len(calls) == 1


def _expected_of(checker):
    """The expected value inside a number/array checker (private access, for this test only)."""
    return checker._get()


GENERIC = [e for e in list_exercises() if isinstance(e.checker, (NumberChecker, ArrayChecker))]


def test_most_number_exercises_use_the_generic_checkers():
    assert len(GENERIC) >= 15


@pytest.mark.parametrize("exercise", GENERIC, ids=lambda e: e.id)
def test_no_registered_exercise_reveals_its_answer(exercise):
    expected = np.asarray(_expected_of(exercise.checker), dtype=float)
    assert not np.any(np.isnan(expected)) and np.any(np.isfinite(expected))  # an answer may hold inf (a KL)
    for factor in (1.37, 0.61, -1.0, 3.0):
        message = evaluate(exercise.id, expected * factor if expected.ndim else float(expected) * factor).message
        for digits in (3, 4, 5, 6):
            for value in np.atleast_1d(expected).ravel()[:5]:
                if np.isfinite(value) and abs(value) > 1e-3:
                    assert f"{value:.{digits}g}" not in message, (exercise.id, message)


# ---------------------------------------------------------------- by-hand answers: 3 significant figures
from klcourse.exercises import tolerance_text  # noqa: E402
from klcourse.exercises.checkers import (  # noqa: E402
    ChoiceChecker,
    FunctionChecker,
    _fingerprint,
    output_data,
    run_case,
    uses_klcourse,
)

#: the exercises whose answer a reader computes by hand (or with a calculator) from a few stated numbers
BY_HAND = {
    "definitions.kl-in-bits", "definitions.excess-bits", "definitions.stein-exponent", "definitions.sanov-exponent",
    "definitions.mixture-hedge", "definitions.atom", "gaussians.poisson-by-hand",
    "relatives.js-overlap", "relatives.chain-rule-term",
    "relatives.tv-bound", "relatives.renyi-two", "relatives.cmi-xor",
    "gaussians.kl-by-hand", "gaussians.vae-term", "gaussians.fisher-approx", "gaussians.mvn-by-hand",
    "asymmetry.both-directions", "asymmetry.gaussian-reverse", "asymmetry.mean-field-variance",
    "vae.kl-batch", "vae.rate-from-kl", "vae.implicit-beta",
    "vae.elbo-gap", "em.kl-gap", "em.elbo-from-numbers", "distillation.loss-by-hand", "distillation.ece-table",
    "em.proximal-gap",
    "distillation.high-t-limit", "estimation.small-sample", "estimation.negative-average", "estimation.policy-kl",
    "estimation.optimal-policy", "estimation.lambda-star",
    "numerics.bf16-roundoff", "distillation.label-smoothing",
    "posttraining.sequence-kl", "posttraining.optimum-prob", "posttraining.shaped-reward",
    "posttraining.dpo-preference", "posttraining.optimum-kl-bits",
}


def round_sig(x: float, digits: int) -> float:
    """x rounded to ``digits`` significant figures, through its decimal string (independent of the checker)."""
    return float(f"{x:.{digits - 1}e}")


def test_the_by_hand_exercises_are_exactly_those_with_a_significant_figures_tolerance():
    sigfigs = {e.id for e in list_exercises() if e.tolerance.kind == "sigfigs"}
    assert sigfigs == BY_HAND
    assert all(get_exercise(i).tolerance.digits == 3 for i in BY_HAND)


@pytest.mark.parametrize(("exercise_id", "answer"), [
    ("gaussians.kl-by-hand", 0.1832), ("em.kl-gap", 1.057), ("estimation.policy-kl", 0.652),
    ("distillation.loss-by-hand", 1.075), ("numerics.logsumexp", 1001.726),
])
def test_the_referees_pen_and_paper_answers_are_accepted(exercise_id, answer):
    feedback = evaluate(exercise_id, answer)
    assert feedback.passed, feedback.message


@pytest.mark.parametrize("exercise_id", sorted(BY_HAND))
def test_by_hand_answers_rounded_to_3_or_more_figures_pass_and_2_figures_ask_for_digits(exercise_id):
    expected = np.asarray(_expected_of(get_exercise(exercise_id).checker), dtype=float)
    for digits in (3, 4, 6):
        rounded = np.vectorize(lambda v, d=digits: round_sig(v, d))(expected)
        assert evaluate(exercise_id, rounded if rounded.ndim else float(rounded)).passed, (digits, rounded)
    two = np.vectorize(lambda v: round_sig(v, 2))(expected)
    fb = evaluate(exercise_id, two if two.ndim else float(two))
    if not fb.passed:  # (0.4 or 0.91 rounded to 2 figures are still exact)
        assert fb.misconception == "too-few-digits", fb.message
        assert "Right to the digits you gave — give more digits" in fb.message


@pytest.mark.parametrize(("expected", "inside", "outside"), [
    (0.18324288588594212, [0.1832, 0.183, 0.18374], [0.1838, 0.184, 0.1827]),  # half a unit is 0.0005
    (0.09996, [0.1, 0.1000, 0.09996], [0.1001, 0.0994]),  # rounds up across a power of ten
    (999.6, [1000.0, 999.6, 999.2], [1001.0, 999.0]),
    (-189.0, [-189.0, -189.4], [-190.0, -188.0]),
    (625000.0, [625000.0, 625400.0], [626000.0]),
])
def test_three_significant_figures_means_half_a_unit_in_the_third_figure(scratch, expected, inside, outside):
    eid = scratch("sig", title="t", kind="number", checker=number(expected, sigfigs=3, unit=None))
    for answer in inside:
        assert evaluate(eid, answer).passed, answer
    for answer in outside:
        assert not evaluate(eid, answer).passed, answer


def test_too_few_digits_only_when_the_coarse_answer_is_right(scratch):
    eid = scratch("few", title="t", kind="number", checker=number(1.074881566167292, sigfigs=3))
    assert evaluate(eid, 1.1).misconception == "too-few-digits"
    assert evaluate(eid, 1.0).misconception == "too-few-digits"
    assert evaluate(eid, 0.9).misconception is None  # 1.07 rounded to one decimal is 1.1, not 0.9
    assert "give more digits" not in evaluate(eid, 1.08).message


def test_decimal_places_tolerance(scratch):
    eid = scratch("dec", title="t", kind="number", checker=number(1001.7258020492316, decimals_=3, unit=None))
    assert evaluate(eid, 1001.726).passed
    assert evaluate(eid, 1001.7).misconception == "too-few-digits"
    assert not evaluate(eid, 1001.5).passed
    assert tolerance_text(eid) == "Accepted: 3 decimal places."


# ---------------------------------------------------------------- every exercise states its tolerance
def test_every_exercise_states_its_tolerance_as_a_sentence():
    texts = {e.id: tolerance_text(e.id) for e in list_exercises()}
    assert {e.chapter for e in list_exercises()} == set(core.CHAPTERS)  # every chapter loaded
    for eid, text in texts.items():
        assert text.startswith("Accepted: ") and text.endswith("."), eid
        assert get_exercise(eid).tolerance.kind in ("sigfigs", "decimals", "relative", "outputs", "option",
                                                    "condition"), eid
    assert texts["gaussians.kl-by-hand"] == "Accepted: 3 significant figures."
    assert texts["relatives.mi-bits"] == "Accepted: within 0.01% (relative)."
    assert texts["gaussians.kl-gauss"].startswith("Accepted: outputs of the expected shape within 1e-06 relative")


WRONG_ANSWER = {"number": 1e6, "array": None, "function": lambda *a, **k: 12345.0}


@pytest.mark.parametrize("exercise", [e for e in list_exercises() if e.kind in ("number", "array", "function")],
                         ids=lambda e: e.id)
def test_a_wrong_answer_is_told_the_tolerance(exercise):
    if exercise.kind == "array":
        answer = 1e6 * np.ones_like(np.asarray(_expected_of(exercise.checker), dtype=float))
    else:
        answer = WRONG_ANSWER[exercise.kind]
    feedback = evaluate(exercise.id, answer)
    assert not feedback.passed
    if feedback.status == "wrong":
        assert feedback.message.endswith(tolerance_text(exercise.id)), feedback.message


# ---------------------------------------------------------------- expected 0 and inf: no factors
def test_number_and_array_with_expected_zero_or_inf_speak_without_factors(scratch):
    zero = scratch("zero", title="t", kind="number", checker=number(0.0, unit=None))
    message = evaluate(zero, 0.5).message
    assert "factor" not in message and "absolute" in message
    inf = scratch("inf2", title="t", kind="number", checker=number(math.inf))
    message = evaluate(inf, 3.0).message
    assert "should be infinite (q = 0 where p > 0)" in message and "factor" not in message
    finite = scratch("fin", title="t", kind="number", checker=number(0.7))
    message = evaluate(finite, math.inf).message
    assert "is infinite but should be finite" in message and "factor" not in message
    arr = scratch("arr0", title="t", kind="array", checker=array([0.0, 0.3, math.inf]))
    message = evaluate(arr, [0.2, 0.3, 4.0]).message
    assert "factor" not in message and "should be infinite" in message


def kl_np(p, q):
    p, q = np.asarray(p, float), np.asarray(q, float)
    if np.any((q == 0) & (p > 0)):
        return np.inf
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


INF_CASES = CASES + [Case("q = 0 where p > 0", (np.array([0.5, 0.5]), np.array([1.0, 0.0])))]


@pytest.mark.parametrize(("answer", "words"), [
    (lambda p, q: kl_np(p, q) + (0.01 if np.allclose(p, q) else 0.0), "absolute difference"),
    (lambda p, q: 2.0 if np.isinf(kl_np(p, q)) else kl_np(p, q), "should be infinite (q = 0 where p > 0)"),
    (lambda p, q: np.inf, "is infinite but should be finite"),
])
def test_function_checker_expected_zero_and_infinite(scratch, answer, words):
    eid = scratch("fn0", title="t", kind="function", checker=function(_kl_reference_inf, INF_CASES))
    message = evaluate(eid, answer).message
    assert words in message and "factor" not in message, message


def _kl_reference_inf(p, q):
    return kl_np(p, q)


# ---------------------------------------------------------------- shapes first
def _torch():
    import torch

    return torch


@pytest.mark.parametrize(("answer", "words"), [
    (lambda p, q: [kl_np(p, q)], "returns shape (1,); a single number (shape ()) is expected on"),
    (lambda p, q: np.array([kl_np(p, q)]), "returns shape (1,); a single number (shape ()) is expected on"),
    (lambda p, q: _torch().tensor([kl_np(p, q)]), "returns shape (1,)"),
    (lambda p, q: np.full(len(p), kl_np(p, q)), "is expected on"),
])
def test_function_checker_compares_shapes_first(scratch, answer, words):
    eid = scratch("shape", title="t", kind="function", checker=function(_kl_reference_inf, CASES))
    fb = evaluate(eid, answer)
    assert fb.status == "invalid" and words in fb.message, fb.message
    assert "off by" not in fb.message and "ambiguous" not in fb.message


def test_function_checker_names_a_transposed_result(scratch):
    def ref(x):
        return np.asarray(x, float) * 2

    cases = [Case("a 2 × 3 array", (np.arange(6.0).reshape(2, 3),))]
    eid = scratch("transposed", title="t", kind="function", checker=function(ref, cases))
    fb = evaluate(eid, lambda x: (np.asarray(x) * 2).T)
    assert fb.status == "invalid" and "returns shape (3, 2); shape (2, 3) is expected (transposed?)" in fb.message


def test_function_checker_accepts_torch_and_numpy_scalars(scratch):
    torch = _torch()
    eid = scratch("scalars", title="t", kind="function", checker=function(_kl_reference_inf, CASES))
    assert evaluate(eid, lambda p, q: np.float32(kl_np(p, q))).passed  # float32 rounding is below 1e-6
    assert evaluate(eid, lambda p, q: np.float64(kl_np(p, q))).passed
    assert evaluate(eid, lambda p, q: torch.tensor(kl_np(p, q), dtype=torch.float64, requires_grad=True)).passed


def test_output_data_turns_results_into_plain_data():
    torch = _torch()
    assert output_data(torch.tensor(0.5, dtype=torch.bfloat16)) == 0.5
    assert output_data(np.float32(0.25)) == 0.25 and isinstance(output_data(np.float32(0.25)), float)
    assert output_data([0.5]).shape == (1,)
    assert output_data(None) == "returned NoneType" and output_data("0.5") == "returned str"
    assert run_case(lambda p, q: 1 / 0, CASES[0]).startswith("raised ZeroDivisionError: ")


# ---------------------------------------------------------------- klcourse's own functions
def test_uses_klcourse_sees_direct_use_wrappers_partials_and_aliases():
    import functools

    import klcourse
    import klcourse as kc
    from klcourse import kl_divergence, kl_normal

    def def_wrapper(p, q):
        return kl_divergence(p, q)

    def via_helper(p, q):
        return def_wrapper(p, q)

    def make_closure():
        f = kl_divergence

        def inner(p, q):
            return f(p, q)

        return inner

    own = [kl_divergence, lambda p, q: kl_divergence(p, q), def_wrapper, via_helper, make_closure(),
           functools.partial(kl_normal, 0.0), lambda m0, s0, m1, s1: klcourse.kl_normal(m0, s0, m1, s1),
           lambda m0, s0, m1, s1: kc.gaussians.kl_normal(m0, s0, m1, s1)]
    for fn in own:
        sentence = uses_klcourse(fn)
        assert sentence and "klcourse's own function" in sentence and "write your own" in sentence, fn
    def imports_inside(p, q):
        from klcourse.divergences import kl_divergence as kl

        return kl(p, q)

    def imports_module_inside(p, q):
        import klcourse as k

        return k.kl_divergence(p, q)

    own += [imports_inside, imports_module_inside, lambda p, q: __import__("klcourse").kl_divergence(p, q)]
    for fn in own[-3:]:
        assert uses_klcourse(fn), fn
    assert uses_klcourse(kl_np) is None
    assert uses_klcourse(lambda p, q: np.sum(p * np.log(p / q))) is None
    assert uses_klcourse(check) is None  # klcourse.exercises is not the library


def test_allowed_library_helpers_pass_uses_klcourse():
    from klcourse import numerics as nm

    def kl_b(a, b):
        return a * nm.r_minus_log1p((b - a) / a)

    assert uses_klcourse(kl_b, allowed=("klcourse.numerics.r_minus_log1p",)) is None
    assert uses_klcourse(kl_b) is not None


# ---------------------------------------------------------------- the function-checker protocol
FUNCTION_EXERCISES = [e for e in list_exercises() if e.kind == "function"]


def test_every_function_exercise_has_a_protocol_checker():
    assert len(FUNCTION_EXERCISES) >= 11  # none lost; chapters keep adding them
    for e in FUNCTION_EXERCISES:
        assert isinstance(e.checker, FunctionChecker), e.id
        assert not hasattr(e.checker, "__closure__")
        assert callable(e.checker.cases) and callable(e.checker.judge)


@pytest.mark.parametrize("exercise", FUNCTION_EXERCISES, ids=lambda e: e.id)
def test_hidden_cases_extend_the_public_ones_deterministically(exercise):
    checker = exercise.checker
    public = checker.cases()
    assert [c.description for c in checker.cases(None)] == [c.description for c in public]
    hidden_1, again, hidden_2 = checker.cases(seed=1), checker.cases(seed=1), checker.cases(seed=2)
    assert [c.description for c in hidden_1[:len(public)]] == [c.description for c in public]
    assert len(hidden_1) > len(public)
    assert [c.description for c in hidden_1] == [c.description for c in again]
    extra = hidden_1[len(public):]
    assert all(c.description.startswith("hidden case: ") for c in extra)
    assert {_fingerprint(c) for c in extra} != {_fingerprint(c) for c in hidden_2[len(public):]}
    assert not {_fingerprint(c) for c in extra} & {_fingerprint(c) for c in public}


def test_judge_on_plain_data_equals_the_in_process_verdict(scratch):
    named = Misconception("swapped", lambda p, q: _kl_reference_inf(q, p), "Swapped.")
    checker = function(_kl_reference_inf, INF_CASES, misconceptions=[named], name="kl")
    answers = [kl_np, lambda p, q: kl_np(q, p), lambda p, q: [kl_np(p, q)], lambda p, q: 1 / 0,
               lambda p, q: float(np.sum(np.asarray(p) * np.log(np.asarray(p) / np.asarray(q)))), lambda p, q: None]
    for answer in answers:
        cases = checker.cases(seed=3)
        outputs = checker.run(answer, cases)
        as_json = [o if isinstance(o, (str, float)) else o.tolist() for o in outputs]  # what a sandbox sends
        assert checker.judge(as_json, cases) == checker.judge(outputs, cases)
        assert checker.judge(checker.run(answer), checker.cases()) == checker(answer)
    in_process = checker(lambda p, q: kl_np(q, p))
    assert in_process.misconception == "swapped"
    raised = checker.judge(["raised ValueError: bad input"] * len(INF_CASES), INF_CASES)
    assert "raised ValueError: bad input on two random vectors" in raised.message


def test_function_feedback_does_not_contain_the_reference_outputs():
    for exercise in FUNCTION_EXERCISES:
        checker = exercise.checker
        cases = checker.cases()
        refs = [np.asarray(output_data(checker._reference_output(c)), dtype=float) for c in cases]
        scaled = [r * 1.37 for r in refs]
        message = checker.judge(scaled, cases).message
        for case in cases:  # the inputs are no secret: the learner's function sees them
            message = message.replace(case.description, "")
        for ref in refs:
            for value in np.atleast_1d(ref).ravel()[:5]:
                if np.isfinite(value) and abs(value) > 1e-3:
                    for digits in (3, 4, 5):
                        text = f"{value:.{digits}g}"
                        assert len(text.strip("-0.")) < 3 or text not in message, (exercise.id, message)


# ---------------------------------------------------------------- audit of every choice explanation
CHOICES = [e for e in list_exercises() if isinstance(e.checker, ChoiceChecker)]


@pytest.mark.parametrize("exercise", CHOICES, ids=lambda e: e.id)
def test_every_wrong_option_gets_an_explanation_a_reader_can_act_on(exercise):
    right = exercise.checker._right()
    for option in exercise.checker.options:
        fb = evaluate(exercise.id, option)
        if option.strip().lower() == right:
            assert fb.passed
            continue
        assert not fb.passed and fb.message.endswith((".", "?", ")")), fb.message
        assert "normalize" not in fb.message
        assert "second order" not in fb.message  # (6.6: the KL and MSE penalties do not agree to second order)


def test_clip_predict_same_explanation_asks_instead_of_telling():
    message = evaluate("numerics.clip-predict", "same").message
    assert "doubles" not in message and message.endswith("?")


def test_cli_listing_shows_what_each_exercise_accepts():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "klcourse.cli", "exercises", "--chapter", "gaussians"],
                         capture_output=True, text=True, check=True).stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith("gaussians.")}
    assert "accepted" in out.splitlines()[0]
    assert "3 s.f." in rows["gaussians.kl-by-hand"]
    assert "outputs rtol 1e-06" in rows["gaussians.kl-gauss"]
    assert "an option" in rows["gaussians.halve-or-double"]


def test_uses_klcourse_does_not_wander_into_installed_libraries():
    import time

    import scipy.stats
    import torch

    net = torch.nn.Linear(2, 2)

    def model(x):
        return net(x) + scipy.stats.norm.logpdf(x) + np.log(x)

    start = time.perf_counter()
    assert uses_klcourse(model) is None
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------- learner-feedback audit
def _complex_kl(p, q):
    return complex(_kl_reference(p, q), 2.0)


@pytest.mark.parametrize("make", [
    lambda v: np.complex128(v + 5j),
    lambda v: np.array([v + 5j]),
    lambda v: _torch().tensor(v + 5j),
    lambda v: v + 5j,
    lambda v: np.complex64(v),  # zero imaginary part: rejected too (a real quantity never needs complex numbers)
    lambda v: [np.complex128(v)],
], ids=["np-complex128", "np-array", "torch", "python", "zero-imag", "list"])
def test_a_complex_number_answer_is_rejected_with_one_sentence(scratch, make):
    value = kl_bern(0.3, 0.6)
    eid = scratch("cplx", title="t", kind="number", checker=number(value, sigfigs=3))
    fb = evaluate(eid, make(value))
    assert not fb.passed and fb.status == "invalid"
    assert "complex" in fb.message and "real" in fb.message and "Error" not in fb.message


def test_a_complex_array_answer_is_rejected(scratch):
    expected = np.array([kl_bern(0.3, 0.6), kl_bern(0.6, 0.3)])
    eid = scratch("cplxarr", title="t", kind="array", checker=array(expected, sigfigs=3))
    for answer in (expected + np.array([3j, -1j]), _torch().tensor(expected + 1j), list(expected + 0j)):
        fb = evaluate(eid, answer)
        assert not fb.passed and fb.status == "invalid" and "complex" in fb.message


@pytest.mark.parametrize("fn", [
    _complex_kl,
    lambda p, q: np.complex128(_kl_reference(p, q) + 1j),
    lambda p, q: np.array([_kl_reference(p, q) + 0j])[0],
    lambda p, q: _torch().tensor(_kl_reference(p, q) + 1j),
], ids=["python", "numpy", "numpy-zero-imag", "torch"])
def test_a_function_returning_complex_numbers_is_rejected(scratch, fn):
    eid = scratch("cplxfn", title="t", kind="function", checker=function(_kl_reference, CASES, name="kl"))
    fb = evaluate(eid, fn)
    assert not fb.passed and fb.status == "invalid" and "complex" in fb.message
    assert run_case(fn, CASES[0]) == "returned complex"  # the grader's plain data keeps its documented form


def test_a_registered_exercise_rejects_its_answer_with_an_imaginary_part():
    exercise = get_exercise("definitions.kl-in-bits")
    fb = evaluate(exercise.id, np.complex128(float(_expected_of(exercise.checker)) + 5j))
    assert not fb.passed and "complex" in fb.message


def _exits(p, q):
    import sys

    sys.exit(3)


def _exits_quietly(p, q):
    raise SystemExit


def _interrupted(p, q):
    raise KeyboardInterrupt


@pytest.mark.parametrize("fn", [_exits, _exits_quietly], ids=["sys.exit(3)", "SystemExit"])
def test_a_function_calling_exit_gets_a_sentence_not_a_systemexit(scratch, fn):
    eid = scratch("exits", title="t", kind="function", checker=function(_kl_reference, CASES, name="kl"))
    fb = evaluate(eid, fn)
    assert not fb.passed and "called exit()" in fb.message and "return the result" in fb.message
    out = run_case(fn, CASES[0])  # the grader's plain data keeps the documented "raised <ExcType>: <msg>" form
    assert isinstance(out, str) and out.startswith("raised SystemExit:")
    assert run_case(_exits, CASES[0]) == "raised SystemExit: 3"


def test_exit_inside_a_checker_is_caught_by_evaluate_but_keyboard_interrupt_is_not(scratch):
    def leaves(answer):
        raise SystemExit(answer)

    eid = scratch("exitpred", title="t", kind="counterexample", checker=predicate(leaves))
    fb = evaluate(eid, 1)
    assert not fb.passed and fb.status == "invalid" and "called exit()" in fb.message
    eid = scratch("interrupt", title="t", kind="function", checker=function(_kl_reference, CASES, name="kl"))
    with pytest.raises(KeyboardInterrupt):
        evaluate(eid, _interrupted)


@pytest.mark.parametrize("given", ["DEFINITIONS.KL-IN-BITS", " definitions.kl-in-bits", "Definitions.Kl-In-Bits\n"])
def test_exercise_ids_ignore_case_and_surrounding_spaces(given):
    exercise = get_exercise("definitions.kl-in-bits")
    fb = check(given, float(_expected_of(exercise.checker)))
    assert fb.passed and fb.exercise_id == "definitions.kl-in-bits"


@pytest.mark.parametrize(("given", "answer", "words"), [
    ("definitions.kl-in-bit", 1.0, 'did you mean "definitions.kl-in-bits"'),
    ("definitions.kl_in_bits", 1.0, 'did you mean "definitions.kl-in-bits"'),
    ("gaussians.zzz", 1.0, '"gaussians.kl-gauss"'),  # no close name: the chapter's exercises
    ("nochapter", 1.0, "list_exercises()"),
    (None, 1, "must be the exercise id, a string"),
    (3, 1, "must be the exercise id, a string"),
    (0.5, "definitions.kl-in-bits", 'swapped: the exercise id comes first, check("definitions.kl-in-bits"'),
])
def test_a_bad_exercise_id_gets_one_sentence_not_an_exception(capsys, given, answer, words):
    before = len(core._RESULTS)
    fb = check(given, answer)
    assert not fb.passed and fb.status == "invalid" and words in fb.message
    assert "Error" not in fb.message and fb.message.count(". ") <= 1
    assert words in capsys.readouterr().out
    assert len(core._RESULTS) == before  # not an answer to any exercise: the grader's record is untouched


@pytest.mark.parametrize(("kind", "answer"), [("number", 10**400), ("number", [10**400]), ("number", -(10**400)),
                                              ("array", [10**400, 1.0])])
def test_an_int_too_large_for_a_float_gets_a_sentence(scratch, kind, answer):
    make = number(0.5) if kind == "number" else array([0.5, 0.5])
    eid = scratch(f"huge{kind}", title="t", kind=kind, checker=make)
    fb = evaluate(eid, answer)
    assert fb.status == "invalid" and "too large for a floating-point number" in fb.message
    assert "OverflowError" not in fb.message


def test_a_function_returning_a_huge_int_gets_a_sentence(scratch):
    eid = scratch("hugefn", title="t", kind="function", checker=function(_kl_reference, CASES, name="kl"))
    fb = evaluate(eid, lambda p, q: 10**400)
    assert fb.status == "invalid" and "too large for a floating-point number" in fb.message
    assert run_case(lambda p, q: 10**400, CASES[0]) == "returned a number too large for a float"


def _pair_test(answer):
    p, q = np.asarray(answer[0], dtype=float), np.asarray(answer[1], dtype=float)
    return bool(p.sum() == 1 and q.sum() == 1), "checked"


@pytest.mark.parametrize(("answer", "needle"), [
    ({"p": [1, 0], "q": [0.5, 0.5]}, "Your answer is a dict; give a tuple or list"),
    ({(1, 0), (0.5, 0.5)}, "Your answer is a set; give a tuple or list"),
    (([1, 0], {0.5}), "Your answer contains a set"),
])
def test_a_dict_or_set_for_a_pair_gets_a_sentence_not_the_exception(scratch, answer, needle):
    eid = scratch("pairdict", title="t", kind="counterexample", checker=predicate(_pair_test))
    fb = evaluate(eid, answer)
    assert fb.status == "invalid" and needle in fb.message
    assert "KeyError" not in fb.message and "subscriptable" not in fb.message and "float()" not in fb.message


@pytest.mark.parametrize("exercise_id", ["asymmetry.infinite-one-way", "relatives.reverse-pinsker"])
def test_registered_pair_exercises_answer_a_dict_with_a_sentence(exercise_id):
    fb = evaluate(exercise_id, {"p": [0.5, 0.5], "q": [1.0, 0.0]})
    assert fb.status == "invalid" and "Your answer is a dict" in fb.message


def _coarse_checker():
    # expected 0.9486 (sqrt(0.9)); a mistake gives 0.89993, another the trivial 1 (values independent of klcourse)
    expected = math.sqrt(0.9)
    return number(expected, sigfigs=3, unit=None, misconceptions=[
        Misconception("forgot-sqrt", 0.89993, "You left out the square root."),
        Misconception("trivial-one", 1.0, "1 is the trivial bound."),
    ])


@pytest.mark.parametrize(("answer", "misconception", "words", "absent"), [
    # right at the digits given, and no mistake gives these digits: the rounding sentence alone
    (0.95, "too-few-digits", "give more digits", "square root"),
    # right at the digits given (0.9486 -> 0.9) but 0.900 is also the mistake to 3 figures: rounding first,
    # the mistake only as a condition (before the fix: "You left out the square root." alone)
    (0.9, "too-few-digits", "give more digits: 3 significant figures are needed. If more digits leave your "
                            "answer as it is: You left out the square root.", None),
    # the digits given match the mistake and not the expected value: the mistake
    (0.8999, "forgot-sqrt", "You left out the square root.", "give more digits"),
    # 1 keeps no significant figure of 0.9486: not a rounding of it, but the trivial bound
    (1.0, "trivial-one", "1 is the trivial bound.", "give more digits"),
])
def test_a_coarse_right_answer_is_asked_for_digits_before_a_misconception_is_named(scratch, answer, misconception,
                                                                                    words, absent):
    eid = scratch("coarse", title="t", kind="number", checker=_coarse_checker())
    fb = evaluate(eid, answer)
    assert not fb.passed and fb.misconception == misconception and words in fb.message
    assert absent is None or absent not in fb.message


@pytest.mark.parametrize(("exercise_id", "coarse"), [("relatives.tv-bound", 0.9), ("gaussians.fisher-approx", 0.001)])
def test_registered_coarse_right_answers_get_the_rounding_sentence_first(exercise_id, coarse):
    expected = float(_expected_of(get_exercise(exercise_id).checker))
    assert abs(coarse - expected) <= 0.5 * 10.0 ** math.floor(math.log10(coarse))  # coarse is expected, rounded
    fb = evaluate(exercise_id, coarse)
    assert fb.misconception == "too-few-digits" and fb.message.startswith("Right to the digits you gave")


def test_a_coarse_right_array_is_asked_for_digits_before_a_misconception(scratch):
    expected = np.array([math.sqrt(0.9), 0.25])
    eid = scratch("coarsearr", title="t", kind="array", checker=array(expected, sigfigs=3, misconceptions=[
        Misconception("forgot-sqrt", np.array([0.89993, 0.25]), "You left out the square root.")]))
    fb = evaluate(eid, [0.9, 0.25])
    assert fb.misconception == "too-few-digits" and fb.message.startswith("Right to the digits you gave")
    assert evaluate(eid, [0.8999, 0.25]).misconception == "forgot-sqrt"


def _stated_pct(message: str) -> tuple[float, float]:
    import re

    off = float(re.search(r"off by about ([0-9.e+-]+)%", message).group(1))
    accepted = float(re.search(r"within ([0-9.e+-]+)%", message).group(1))
    return off, accepted


@pytest.mark.parametrize("factor", [1 - 1.4e-4, 1 + 1.04e-4, 1 - 1.9e-4, 1.3e-4 + 1])
def test_a_rejected_answer_is_never_said_to_be_off_by_no_more_than_the_tolerance(scratch, factor):
    value = kl_bern(0.3, 0.6)
    eid = scratch("nearrtol", title="t", kind="number", checker=number(value, rtol=1e-4))
    fb = evaluate(eid, value * factor)
    assert not fb.passed
    off, accepted = _stated_pct(fb.message)
    assert accepted == pytest.approx(0.01) and off > accepted, fb.message


def test_relatives_mi_bits_near_miss_states_an_error_above_the_tolerance():
    exercise = get_exercise("relatives.mi-bits")
    expected = float(_expected_of(exercise.checker))
    fb = evaluate(exercise.id, expected * (1 - 1.4e-4))  # the audit's 1.416 is about this far off
    off, accepted = _stated_pct(fb.message)
    assert not fb.passed and off > accepted, fb.message


def test_function_and_array_errors_near_the_tolerance_are_stated_above_it(scratch):
    expected = np.array([kl_bern(0.3, 0.6), kl_bern(0.6, 0.3)])
    eid = scratch("nearrtolarr", title="t", kind="array", checker=array(expected, rtol=1e-4))
    fb = evaluate(eid, expected * (1 + 1.2e-4))
    assert not fb.passed and "about 0.012%" in fb.message and "within 0.01%" in fb.message


@pytest.mark.parametrize(("dtype", "words"), [("float32", "computes in float32"), ("float16", "computes in float16"),
                                              ("bfloat16", "computes in bfloat16")])
def test_a_function_computing_in_low_precision_is_told_so(scratch, dtype, words):
    torch = _torch()
    eid = scratch(f"low{dtype}", title="t", kind="function",
                  checker=function(_kl_reference, CASES, rtol=1e-9, atol=1e-12, name="kl"))
    fb = evaluate(eid, lambda p, q: torch.tensor(_kl_reference(p, q), dtype=getattr(torch, dtype)))
    assert not fb.passed and fb.misconception == "low-precision" and words in fb.message
    assert "float64" in fb.message and "largest relative error" not in fb.message


def test_a_float64_result_off_by_a_tiny_amount_is_not_called_float32(scratch):
    eid = scratch("tiny64", title="t", kind="function",
                  checker=function(_kl_reference, CASES, rtol=1e-9, atol=1e-12, name="kl"))
    fb = evaluate(eid, lambda p, q: _kl_reference(p, q) * (1 + 3e-8) + 1e-9)
    assert not fb.passed and fb.misconception is None and "float32" not in fb.message


def test_vae_kl_torch_in_float32_is_told_to_use_float64():
    torch = _torch()

    def kl32(mu, logvar):  # the right formula, computed in single precision
        mu, logvar = mu.float(), logvar.float()
        return 0.5 * torch.sum(torch.exp(logvar) + mu**2 - 1 - logvar, dim=-1)

    fb = evaluate("vae.kl-torch", kl32)
    assert not fb.passed and "computes in float32" in fb.message and "float64" in fb.message


def _nan_like(n):
    return lambda *args: np.full(np.shape(args[0])[:-1] + (n,), np.nan) if n else math.nan


@pytest.mark.parametrize(("exercise_id", "fn", "words"), [
    ("gaussians.kl-gauss", lambda m0, s0, m1, s1: math.nan, "σ0, σ1 > 0"),
    ("numerics.kl-bernoulli", lambda a, b: math.nan, "every log is finite"),
    ("numerics.kl-bernoulli", lambda a, b: math.nan if a in (0.0, 1.0) or b in (0.0, 1.0) else kl_bern(a, b),
     "whatever b is"),
    ("estimation.k3-function", lambda log_q, log_p: math.nan, "r = exp(log p − log q) is positive"),
    ("em.e-step", lambda x, w, m, c: np.full((len(x), len(w)), np.nan), "logsumexp"),
    ("distillation.soft-targets", lambda z, T: np.full(np.shape(z), np.nan), "these logits are moderate"),
])
def test_the_nan_sentence_fits_the_exercise(exercise_id, fn, words):
    fb = evaluate(exercise_id, fn)
    assert not fb.passed and "returns NaN" in fb.message and words in fb.message, fb.message
    assert "p = 0" not in fb.message  # the generic sentence for probability vectors does not apply here


def test_soft_targets_nan_from_overflow_is_explained_as_overflow():
    def naive(z, T):  # right except that exp(2000 / 2) overflows
        e = np.exp(np.asarray(z, dtype=float) / T)
        return e / e.sum(axis=-1, keepdims=True)

    fb = evaluate("distillation.soft-targets", naive)
    assert not fb.passed and "overflow" in fb.message and "0/0" not in fb.message


def test_kl_div_batch_nan_names_log_probabilities_as_target():
    torch = _torch()
    from klcourse.exercises.numerics import MODEL_LOGITS, TARGET_LOGITS

    target, model = torch.tensor(TARGET_LOGITS), torch.tensor(MODEL_LOGITS)
    nll = torch.nn.functional
    answer = nll.kl_div(nll.log_softmax(model, -1), nll.log_softmax(target, -1), reduction="batchmean").item()
    assert math.isnan(answer)  # the mistake really gives NaN
    fb = evaluate("numerics.kl-div-batch", answer)
    assert fb.misconception == "log-target" and "log_target=True" in fb.message


def test_a_long_answer_is_quoted_short():
    """A 10 000-character string where an option or a number is expected: the message quotes its start only."""
    long = "spam " * 2000
    for exercise_id in ("definitions.predict-symmetry", "definitions.kl-in-bits"):
        message = evaluate(exercise_id, long).message
        assert "'spam spam" in message and "(10002 characters)" in message, message
        assert len(message) < 600, len(message)
