"""Checkers: turn an expected value (or a reference function) into a function answer → Verdict.

Every checker

* accepts a right answer within a stated tolerance;
* names the misconception when a wrong answer matches one it knows (bits instead of nats, log10,
  arguments swapped, σ for σ², a forgotten −1/2, sum instead of mean …);
* otherwise says how far off the answer is — never what the expected value is;
* answers a wrong type or shape with one sentence, not a traceback.

Example
-------
>>> from klcourse.exercises.checkers import number, swapped
>>> checker = number(0.5, misconceptions=[swapped(0.75)])
>>> checker(0.75).misconception
'swapped'
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from klcourse.exercises.core import CORRECT, INVALID, WRONG, Verdict

LN2, LN10 = math.log(2.0), math.log(10.0)


# --------------------------------------------------------------------------- misconceptions
@dataclass(frozen=True)
class Misconception:
    """A wrong answer we recognise: ``value`` is what the mistake produces (number, array or callable)."""

    name: str
    value: object
    message: str


def swapped(value) -> Misconception:
    return Misconception(
        "swapped",
        value,
        "That is the divergence with the arguments swapped: D(P‖Q) averages log(p/q) under P, "
        "the first argument.",
    )


def sigma_for_variance(value) -> Misconception:
    return Misconception(
        "sigma-variance",
        value,
        "It looks like a standard deviation σ was used where the variance σ² belongs (or the other "
        "way round). In N(μ, σ²) the second parameter is the variance.",
    )


def forgot_half(value) -> Misconception:
    return Misconception(
        "forgot-constant",
        value,
        "Close, but the constant term is missing: check the −1/2 (−k/2 in k dimensions) in the formula.",
    )


def sum_vs_mean(value, *, expected_is_mean: bool = True) -> Misconception:
    wanted, got = ("mean", "sum") if expected_is_mean else ("sum", "mean")
    return Misconception(
        "sum-vs-mean",
        value,
        f"Off by a factor of the batch size: the exercise asks for the {wanted} over the batch, "
        f"your answer looks like the {got}.",
    )


def unit_misconceptions(value, unit: str) -> list[Misconception]:
    """The log-base traps for an answer expected in ``unit`` ("nats" or "bits")."""
    if unit == "nats":
        return [
            Misconception("bits", _scaled(value, 1 / LN2), "That is the answer in bits; the exercise asks for "
                          "nats (natural log). Bits = nats / ln 2."),
            Misconception("log10", _scaled(value, 1 / LN10), "That looks like a base-10 logarithm (np.log10); "
                          "use the natural log (np.log) for nats."),
        ]
    if unit == "bits":
        return [
            Misconception("nats", _scaled(value, LN2), "That is the answer in nats; the exercise asks for bits "
                          "(log base 2). Bits = nats / ln 2."),
            Misconception("log10", _scaled(value, LN2 / LN10), "That looks like a base-10 logarithm; use "
                          "np.log2 for bits."),
        ]
    return []


def _scaled(value, factor):
    if callable(value):
        return lambda *a, **k: np.asarray(value(*a, **k)) * factor
    return np.asarray(value, dtype=float) * factor


def _lazy(value):
    """Allow expected values given as zero-argument callables (computed once, on first use)."""
    if callable(value):
        return cache(value)
    return lambda: value


# --------------------------------------------------------------------------- comparisons
def _close(a, b, rtol, atol, equal_nan: bool = False) -> bool:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        return False
    return bool(np.all(np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan) | ((a == b) & np.isinf(a))))


def _how_far(answer, expected) -> str:
    answer, expected = np.asarray(answer, dtype=float), np.asarray(expected, dtype=float)
    if np.any(np.isinf(expected)) and not np.all(np.isinf(answer) == np.isinf(expected)):
        return "Not quite: where the divergence is infinite your answer is finite (or the other way round)."
    diff = np.abs(answer - expected)
    scale = np.maximum(np.abs(expected), 1e-12)
    rel = float(np.max(diff / scale))
    if expected.ndim == 0 and np.isfinite(rel):
        direction = "too large" if answer > expected else "too small"
        return f"Not quite: your answer is {direction}, off by about {_percent(rel)} (relative)."
    return f"Not quite: the largest relative error over the entries is about {_percent(rel)}."


def _percent(rel: float) -> str:
    if rel >= 10:
        return f"a factor of {rel + 1:.0f}"
    return f"{100 * rel:.3g}%"


def _match_misconception(answer, misconceptions, expected, rtol, atol, args=()):
    for m in misconceptions:
        alt = m.value(*args) if callable(m.value) else m.value
        if _close(alt, expected, rtol, atol):  # the mistake is harmless here; don't claim it
            continue
        if _close(answer, alt, rtol, atol):
            return m
    return None


# --------------------------------------------------------------------------- answer coercion
def _as_number(answer):
    """Return (float, None) or (None, sentence explaining why the answer is not a number)."""
    if isinstance(answer, bool) or isinstance(answer, (str, bytes)):
        return None, f"Expected a single number, got {type(answer).__name__} {answer!r}."
    if hasattr(answer, "detach"):  # a torch tensor
        answer = answer.detach().cpu().numpy()
    if isinstance(answer, numbers.Real):
        return float(answer), None
    try:
        arr = np.asarray(answer, dtype=float)
    except (TypeError, ValueError):
        return None, f"Expected a single number, got {type(answer).__name__}."
    if arr.size != 1:
        return None, f"Expected a single number, got an array of shape {arr.shape}."
    return float(arr.reshape(())), None


def _as_array(answer):
    if isinstance(answer, (str, bytes, bool)) or callable(answer):
        return None, f"Expected an array of numbers, got {type(answer).__name__}."
    if hasattr(answer, "detach"):
        answer = answer.detach().cpu().numpy()
    try:
        return np.asarray(answer, dtype=float), None
    except (TypeError, ValueError):
        return None, f"Expected an array of numbers, got {type(answer).__name__}."


# --------------------------------------------------------------------------- checkers
def number(expected, *, rtol: float = 1e-4, atol: float = 1e-10, unit: str | None = "nats",
           misconceptions: Iterable[Misconception] = ()) -> Callable[[object], Verdict]:
    """Checker for a single number.

    Parameters
    ----------
    expected : float or callable
        The right answer, or a zero-argument function computing it (evaluated once, lazily).
    rtol, atol : float
        Tolerances, as in :func:`numpy.isclose`.
    unit : {"nats", "bits", None}
        Adds the log-base traps (bits vs nats, log10) for answers carrying that unit.
    misconceptions : iterable of Misconception
        Wrong values to recognise, e.g. ``swapped(kl_reverse)``.
    """
    get = _lazy(expected)
    extra = tuple(misconceptions)

    def checker(answer) -> Verdict:
        value, problem = _as_number(answer)
        if problem:
            return Verdict(False, problem, INVALID)
        if math.isnan(value):
            return Verdict(False, "Your answer is NaN: look for 0·log 0, log of a negative number or 0/0.")
        exp = float(get())
        if _close(value, exp, rtol, atol):
            return Verdict(True, "Correct!", CORRECT)
        known = list(extra) + (unit_misconceptions(exp, unit) if unit else [])
        m = _match_misconception(value, known, exp, rtol, atol)
        if m:
            return Verdict(False, m.message, WRONG, m.name)
        if exp >= 0 and value < 0 and unit:
            return Verdict(False, "A KL divergence is never negative (Gibbs' inequality): check the order of "
                           "p and q in the log ratio and which distribution you average over.")
        return Verdict(False, _how_far(value, exp))

    return checker


def array(expected, *, rtol: float = 1e-4, atol: float = 1e-10, unit: str | None = None,
          misconceptions: Iterable[Misconception] = ()) -> Callable[[object], Verdict]:
    """Checker for an array answer (shape must match exactly; see :func:`number` for the rest)."""
    get = _lazy(expected)
    extra = tuple(misconceptions)

    def checker(answer) -> Verdict:
        arr, problem = _as_array(answer)
        if problem:
            return Verdict(False, problem, INVALID)
        exp = np.asarray(get(), dtype=float)
        if arr.shape != exp.shape:
            return Verdict(False, f"Expected an array of shape {exp.shape}, got shape {arr.shape}.", INVALID)
        if np.isnan(arr).any():
            return Verdict(False, "Your array contains NaN: look for 0·log 0 or 0/0.")
        if _close(arr, exp, rtol, atol):
            return Verdict(True, "Correct!", CORRECT)
        known = list(extra) + (unit_misconceptions(exp, unit) if unit else [])
        m = _match_misconception(arr, known, exp, rtol, atol)
        if m:
            return Verdict(False, m.message, WRONG, m.name)
        return Verdict(False, _how_far(arr, exp))

    return checker


@dataclass(frozen=True)
class Case:
    """One call of a learner's function: ``fn(*args, **kwargs)``, described in words for feedback."""

    description: str
    args: tuple
    kwargs: dict | None = None


def function(reference: Callable, cases, *, rtol: float = 1e-6, atol: float = 1e-9,
             misconceptions: Iterable[Misconception] = (), name: str = "function") -> Callable[[object], Verdict]:
    """Checker for "implement a function" exercises.

    Parameters
    ----------
    reference : callable
        The reference implementation (usually from :mod:`klcourse`).
    cases : sequence of Case, or callable returning one
        Randomised and edge cases (zeros, identical inputs, large dimensions). A callable receives a seeded
        ``numpy.random.Generator``.
    misconceptions : iterable of Misconception
        Each ``value`` is an alternative *function* (e.g. the swapped-argument KL); if the learner's
        function agrees with it on every case where it differs from the reference, its message is shown.
    """
    extra = tuple(misconceptions)

    def get_cases() -> Sequence[Case]:
        return cases(np.random.default_rng(12345)) if callable(cases) else cases

    def checker(answer) -> Verdict:
        if not callable(answer):
            return Verdict(False, f"Expected a {name} (something defined with def), got "
                           f"{type(answer).__name__}.", INVALID)
        outputs = []
        for case in get_cases():
            kwargs = case.kwargs or {}
            try:
                with np.errstate(all="ignore"):
                    got = answer(*case.args, **kwargs)
            except Exception as exc:
                return Verdict(False, f"Your {name} raised {type(exc).__name__} on {case.description}: {exc}")
            got, problem = _as_array(got)
            if problem:
                return Verdict(False, f"Your {name} returned something that is not a number on "
                               f"{case.description}. {problem}", INVALID)
            with np.errstate(all="ignore"):
                outputs.append((case, got, np.asarray(reference(*case.args, **kwargs), dtype=float)))
        for case, got, exp in outputs:
            if not _close(got, exp, rtol, atol):
                m = _function_misconception(extra, outputs, rtol, atol)
                if m:
                    return Verdict(False, m.message, WRONG, m.name)
                if np.isnan(got).any():
                    return Verdict(False, f"Your {name} returns NaN on {case.description}: look for 0·log 0 "
                                   "(terms with p = 0 contribute 0) or 0/0.")
                return Verdict(False, f"Your {name} gives a wrong result on {case.description}. "
                               + _how_far(got, exp).replace("Not quite: your answer", "The result"))
        return Verdict(True, f"Correct on all {len(outputs)} test cases!", CORRECT)

    return checker


def _function_misconception(misconceptions, outputs, rtol, atol):
    for m in misconceptions:
        informative = 0
        for case, got, exp in outputs:
            with np.errstate(all="ignore"):
                alt = np.asarray(m.value(*case.args, **(case.kwargs or {})), dtype=float)
            if _close(alt, exp, rtol, atol):
                continue
            if not _close(got, alt, rtol, atol, equal_nan=True):  # a mistake may well produce NaN
                break
            informative += 1
        else:
            if informative:
                return m
    return None


def choice(correct, options: Sequence[str], *, explanations=None) -> Callable[[object], Verdict]:
    """Checker for a predict-then-verify question answered with one of ``options`` (case-insensitive).

    Parameters
    ----------
    correct : str or callable
        The right option, or a zero-argument function computing it (evaluated once, on first use), so that
        the answer to "which is larger?" comes from the same code as the chapter's figure.
    explanations : dict or callable, optional
        ``{wrong option: message}``, or ``f(correct, chosen) -> message``.
    """
    normal = {o.strip().lower(): o for o in options}

    @cache
    def right() -> str:
        key = (correct() if callable(correct) else correct).strip().lower()
        if key not in normal:
            raise ValueError(f"correct answer {key!r} is not among the options {list(options)}")
        return key

    if not callable(correct):
        right()  # a typo in a fixed answer fails at registration, not in front of a learner

    def explain(key: str) -> str:
        if callable(explanations):
            return explanations(right(), key)
        table = {k.strip().lower(): v for k, v in (explanations or {}).items()}
        return table.get(key, "Not this one: run the code in the chapter and look again.")

    def checker(answer) -> Verdict:
        if not isinstance(answer, str):
            return Verdict(False, f"Answer with one of the strings {list(options)}, got "
                           f"{type(answer).__name__}.", INVALID)
        key = answer.strip().lower()
        if key not in normal:
            return Verdict(False, f"Answer with one of {list(options)}; got {answer!r}.", INVALID)
        if key == right():
            return Verdict(True, "Correct!", CORRECT)
        return Verdict(False, explain(key), WRONG, key)

    return checker


def predicate(test: Callable[[object], tuple[bool, str]]) -> Callable[[object], Verdict]:
    """Checker for open answers (e.g. a counterexample): ``test(answer)`` returns ``(ok, message)``.

    A ``ValueError`` or ``TypeError`` raised by ``test`` becomes an "invalid answer" sentence.
    """

    def checker(answer) -> Verdict:
        try:
            ok, message = test(answer)
        except (ValueError, TypeError, IndexError) as exc:
            return Verdict(False, f"This answer cannot be used: {exc}", INVALID)
        return Verdict(bool(ok), message, CORRECT if ok else WRONG)

    return checker
