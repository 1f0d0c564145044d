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


def test_unknown_exercise_id_names_the_problem():
    with pytest.raises(KeyError, match="no exercise"):
        check("definitions.no-such-exercise", 1.0)


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
    assert np.all(np.isfinite(expected))
    for factor in (1.37, 0.61, -1.0, 3.0):
        message = evaluate(exercise.id, expected * factor if expected.ndim else float(expected) * factor).message
        for digits in (3, 4, 5, 6):
            for value in np.atleast_1d(expected).ravel()[:5]:
                if abs(value) > 1e-3:
                    assert f"{value:.{digits}g}" not in message, (exercise.id, message)
