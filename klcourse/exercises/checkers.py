"""Checkers: turn an expected value (or a reference function) into a callable checker, answer → Verdict.

Every checker

* accepts a right answer within a stated tolerance (its ``tolerance`` attribute, a
  :class:`~klcourse.exercises.core.Tolerance` whose sentence ends every "wrong" message);
* names the misconception when a wrong answer matches one it knows (bits instead of nats, log10,
  arguments swapped, σ for σ², a forgotten −1/2, sum instead of mean …);
* otherwise says roughly how far off the answer is — never what the expected value is;
* answers a wrong type or shape with one sentence, not a traceback.

Tolerances
----------
* "by hand" numbers (``number(..., sigfigs=3)``): an answer rounded to 3 significant figures, i.e. within half
  a unit in the 3rd significant figure of the expected value, is right — and so is any more precise one. An
  answer rounded to fewer figures that is otherwise right gets "right to the digits you gave — give more digits",
  before any misconception is named (one it also matches is added as a condition: see ``_rounding_message``);
* computed numbers: ``rtol`` relative (an expected 0 is compared absolutely with ``atol``);
* functions: every output within ``rtol`` relative or ``atol`` absolute, **shapes first**: a result of shape
  (1,) where a single number (shape ()) is expected is rejected with that sentence, not compared;
* number answers (not function outputs) may be any container of exactly one number: the value is what is asked.

The function-checker protocol (used by the grader, which runs the learner's code in a sandbox)
--------------------------------------------------------------------------------------------------
``checker = function(reference, cases, ...)`` is a :class:`FunctionChecker`:

* ``checker.cases(seed=None)`` — the public cases; with an int seed, hidden randomised cases drawn from
  ``np.random.default_rng(seed)`` are appended;
* ``run_case(fn, case)`` — the learner's output on one case as plain data (float, ndarray, or a string
  ``"raised <ExcType>: <msg>"`` / ``"returned <type>"``); ``checker.run(fn, cases)`` does it for a list;
* ``checker.judge(outputs, cases)`` — the :class:`Verdict`, computing the reference in the calling process;
* ``checker(answer)`` — in-process: rejects klcourse's own function (:func:`uses_klcourse`), then
  ``judge(run(answer, cases()), cases())``.

Example
-------
>>> from klcourse.exercises.checkers import number, swapped
>>> checker = number(0.5, misconceptions=[swapped(0.75)])
>>> checker(0.75).misconception
'swapped'
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import inspect
import math
import numbers
import sys
import sysconfig
import types
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache

import numpy as np

from klcourse.exercises.core import CORRECT, INVALID, WRONG, Tolerance, Verdict

LN2, LN10 = math.log(2.0), math.log(10.0)

#: The hint for a negative answer, for exercises whose statement says the quantity is a KL divergence.
KL_NEVER_NEGATIVE = ("A KL divergence is never negative (Gibbs' inequality): check the order of p and q in the "
                     "log ratio and which distribution you average over.")

#: The default end of "Your <function> returns NaN on <case>: …" (divergences of probability vectors p, q).
NAN_HINT = "look for 0·log 0 (terms with p = 0 contribute 0) or 0/0."

#: Why a divergence is infinite, in the default "should be infinite" message.
INFINITE_KL = "q = 0 where p > 0"


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
        return lambda *a, **k: np.asarray(_data_or_raise(value(*a, **k))) * factor
    return np.asarray(value, dtype=float) * factor


def _lazy(value):
    """Allow expected values given as zero-argument callables (computed once, on first use)."""
    if callable(value):
        return cache(value)
    return lambda: value


# --------------------------------------------------------------------------- tolerances
def significant(digits: int = 3, *, entries: bool = False) -> Tolerance:
    """"By hand" answers: rounded to ``digits`` significant figures (or more precise)."""
    where = " in every entry" if entries else ""
    return Tolerance("sigfigs", digits=digits, text=f"Accepted: {digits} significant figures{where}.",
                     short=f"{digits} s.f.")


def decimals(digits: int = 3) -> Tolerance:
    """Answers rounded to ``digits`` decimal places (or more precise)."""
    return Tolerance("decimals", digits=digits, text=f"Accepted: {digits} decimal places.",
                     short=f"{digits} d.p.")


def relative(rtol: float, atol: float = 0.0, *, entries: bool = False) -> Tolerance:
    """Computed answers: within ``rtol`` relative (an expected 0 within ``atol`` absolute)."""
    where = " in every entry" if entries else ""
    return Tolerance("relative", rtol=rtol, atol=atol, text=f"Accepted: within {_pct(rtol)} (relative){where}.",
                     short=f"rtol {rtol:g}")


def outputs(rtol: float, atol: float) -> Tolerance:
    """Function answers: same shape, and every output within ``rtol`` relative or ``atol`` absolute."""
    return Tolerance("outputs", rtol=rtol, atol=atol,
                     text=f"Accepted: outputs of the expected shape within {rtol:g} relative (or {atol:g} "
                          "absolute) on every test case.",
                     short=f"outputs rtol {rtol:g}")


def conditions(text: str, short: str = "conditions") -> Tolerance:
    """Open answers (counterexamples): ``text`` says what is accepted and how exactly it is tested."""
    return Tolerance("condition", text=text, short=short)


def _pct(rtol: float) -> str:
    value = 100 * rtol
    return f"{value:.10g}%"


def _unit(expected: np.ndarray, digits: int) -> np.ndarray:
    """A unit in the ``digits``-th significant figure of each entry (exact decimal exponent)."""
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log10(np.abs(expected)))
    # log10 can be off by one ulp at exact powers of ten: correct it against the value itself
    exponent = np.where(10.0 ** (exponent + 1) <= np.abs(expected), exponent + 1, exponent)
    exponent = np.where(10.0**exponent > np.abs(expected), exponent - 1, exponent)
    return 10.0 ** (exponent - digits + 1)


def _half_unit(tol: Tolerance, expected: np.ndarray, digits: int | None = None) -> np.ndarray:
    digits = tol.digits if digits is None else digits
    if tol.kind == "decimals":
        return np.full(expected.shape, 0.5 * 10.0**-digits)
    return 0.5 * _unit(expected, digits)


def _accepts(tol: Tolerance, answer, expected) -> np.ndarray:
    """Elementwise: is ``answer`` within ``tol`` of ``expected``? (Shapes must already agree.)"""
    a, e = np.asarray(answer, dtype=float), np.asarray(expected, dtype=float)
    with np.errstate(all="ignore"):
        same_inf = np.isinf(e) & (a == e)
        finite = np.isfinite(e) & np.isfinite(a)
        diff = np.abs(a - e)
        if tol.kind in ("sigfigs", "decimals"):
            zero = e == 0
            band = np.where(zero, 1e-12, _half_unit(tol, np.where(zero, 1.0, e)))
            ok = diff <= band * (1 + 1e-9) + 4 * np.finfo(float).eps * np.abs(e)
        else:
            ok = diff <= np.maximum(tol.atol, tol.rtol * np.abs(e))
    return same_inf | (finite & ok)


def _within(tol: Tolerance, answer, expected) -> bool:
    a, e = np.asarray(answer, dtype=float), np.asarray(expected, dtype=float)
    return a.shape == e.shape and bool(np.all(_accepts(tol, a, e)))


def _last_digit(x: float) -> int:
    """The decimal exponent of the last digit ``x`` was written with (shortest repr): 0.18 → -2, 1200.0 → 2."""
    return int(Decimal(repr(abs(float(x)))).normalize().as_tuple().exponent)


def _too_few_digits(tol: Tolerance, answer, expected) -> bool:
    """Right except that it was rounded more coarsely than the tolerance allows (checked on every wrong entry).

    An entry qualifies when it is the expected value rounded at the position of its own last digit, that
    position is coarser than the tolerance's (e.g. 0.18 for 0.18324 with 3 significant figures; not 0.9 for 1.07)
    and it keeps at least the leading significant figure (not 1 for 0.9486: no figure of 0.9486 is left in 1).
    """
    if tol.kind not in ("sigfigs", "decimals"):
        return False
    a, e = np.atleast_1d(np.asarray(answer, dtype=float)), np.atleast_1d(np.asarray(expected, dtype=float))
    if a.shape != e.shape or np.any(np.isnan(a)) or np.any(np.isnan(e)):
        return False
    infinite = ~np.isfinite(e)  # an infinite KL in an answer must be given as that same infinity
    if np.any(np.isfinite(a) == infinite) or np.any(a[infinite] != e[infinite]):
        return False
    ok = _accepts(tol, a, e)
    if ok.all():
        return False
    for x, y, good in zip(a.ravel(), e.ravel(), ok.ravel(), strict=True):
        if good:
            continue
        if x == 0 or y == 0:
            return False
        step = 10.0 ** _last_digit(x)
        needed = 2 * float(_half_unit(tol, np.array(y)))
        if step <= needed * (1 + 1e-9) or abs(x - y) > 0.5 * step * (1 + 1e-9):
            return False
        if step > float(_unit(np.array(abs(y)), 1)) * (1 + 1e-9):  # no significant figure of y survives
            return False
    return True


def _rounding_message(tol: Tolerance, also: Misconception | None = None) -> str:
    """"Give more digits"; with ``also``, the misconception the same digits match (a coarse answer fits both).

    The rounding sentence comes first: at the digits given the answer agrees with the expected value, so a
    mistake cannot be claimed. But when the answer also matches a misconception to the full tolerance, more
    digits could leave it unchanged (0.001 written as 0.00100 is the same number), so that mistake is named too —
    as a condition, not a verdict.
    """
    what = "significant figures" if tol.kind == "sigfigs" else "decimal places"
    text = f"Right to the digits you gave — give more digits: {tol.digits} {what} are needed."
    if also is not None:
        text += f" If more digits leave your answer as it is: {also.message}"
    return text


# --------------------------------------------------------------------------- how far (never the value)
def _about(x: float, above: float = 0.0) -> str:
    """A number rounded to one significant figure, for "how far" messages.

    With ``above`` (the stated tolerance, in the same unit), more figures are used until the rounded number
    exceeds it, so that a rejected answer is never said to be "off by about 0.01%" next to "Accepted: within
    0.01%". (A rejected answer's error exceeds the tolerance, so a few figures always suffice.)
    """
    if x == 0:
        return "0"
    for digits in range(1, 7):
        text = f"{x:.{digits - 1}e}"
        mantissa, exponent = text.split("e")
        value = float(mantissa) * 10.0 ** int(exponent)
        if value > above * (1 + 1e-12):
            break
    return f"{value:.10g}" if 1e-4 <= value < 1e6 else f"{value:.{digits - 1}e}"


def _floors(tol: Tolerance | None) -> tuple[float, float]:
    """The stated relative tolerance in percent and the absolute one (0 where the tolerance states none)."""
    if tol is None or tol.kind not in ("relative", "outputs"):
        return 0.0, 0.0
    return 100 * tol.rtol, tol.atol if tol.kind == "outputs" else 0.0


def _scalar_distance(a: float, e: float, reason: str = INFINITE_KL, tol: Tolerance | None = None) -> str:
    """How far a finite-or-infinite answer is from the expected value, without revealing it."""
    pct_floor, abs_floor = _floors(tol)
    if math.isinf(e) and not (math.isinf(a) and (a > 0) == (e > 0)):
        return f"should be infinite ({reason})" if e > 0 else "should be −∞"
    if math.isinf(a) and not math.isinf(e):
        return "is infinite but should be finite"
    if e == 0:
        return f"is off by about {_about(abs(a), abs_floor)} (absolute difference)"
    if a * e < 0:
        return "has the wrong sign"
    if a == 0:
        return "is 0, but should not be"
    ratio = a / e
    size = "" if e > 0 else " in magnitude"
    if ratio >= 2:
        return f"is too large{size} by a factor of about {_about(ratio)}"
    if ratio <= 0.5:
        return f"is too small{size} by a factor of about {_about(1 / ratio)}"
    direction = "too large" if a > e else "too small"
    return f"is {direction}, off by about {_about(100 * abs(ratio - 1), pct_floor)}% (relative)"


def _array_distance(a: np.ndarray, e: np.ndarray, tol: Tolerance, reason: str = INFINITE_KL) -> str:
    """Which entries are wrong and roughly by how much (arrays of equal shape)."""
    wrong = ~_accepts(tol, a, e)
    n_wrong, n = int(wrong.sum()), wrong.size
    flat_a, flat_e, flat_w = a.ravel(), e.ravel(), wrong.ravel()
    idx = np.flatnonzero(flat_w)
    inf_wrong = [i for i in idx if math.isinf(flat_e[i]) or math.isinf(flat_a[i])]
    if inf_wrong:
        i = inf_wrong[0]
        where = f"entry {np.unravel_index(i, a.shape)}" if a.ndim > 1 else f"entry {i}"
        return (f"{n_wrong} of {n} entries are wrong; {where} "
                f"{_scalar_distance(flat_a[i], flat_e[i], reason, tol)}")
    with np.errstate(all="ignore"):
        zero = flat_e[idx] == 0
        rel = np.where(zero, 0.0, np.abs(flat_a[idx] - flat_e[idx]) / np.abs(np.where(zero, 1.0, flat_e[idx])))
    parts = []
    if (~zero).any():
        parts.append(f"the largest relative error is about {_about(100 * float(rel.max()), _floors(tol)[0])}%")
    if zero.any():
        parts.append(f"where 0 is expected, the largest absolute error is about "
                     f"{_about(float(np.abs(flat_a[idx][zero]).max()), _floors(tol)[1])}")
    return f"{n_wrong} of {n} entries are off: " + "; ".join(parts)


def _shape_words(shape: tuple) -> str:
    return "a single number (shape ())" if shape == () else f"shape {shape}"


def _shape_message(got: tuple, expected: tuple) -> str:
    hint = " (transposed?)" if len(got) == 2 and got == expected[::-1] else ""
    return f"returns {_shape_words(got)}; {_shape_words(expected)} is expected{hint}"


def _with_tolerance(verdict: Verdict, tol: Tolerance | None) -> Verdict:
    """Append the tolerance sentence to a wrong (not invalid, not correct) verdict."""
    if tol is None or verdict.passed or verdict.status != WRONG or not tol.text or tol.text in verdict.message:
        return verdict
    return dataclasses.replace(verdict, message=f"{verdict.message.rstrip()} {tol.text}")


# --------------------------------------------------------------------------- answers as data
def _from_torch(value):
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu()
        if hasattr(value, "is_complex") and value.is_complex():
            return value.numpy()
        return value.double().numpy()
    return value


def _is_complex(value) -> bool:
    """Is ``value`` (already through :func:`_from_torch`) a complex number or an array with a complex dtype?

    A complex value with zero imaginary part counts too: a real quantity computed through complex numbers
    (``np.emath.log`` of a negative number, a complex dtype) is a mistake even where the imaginary part vanishes.
    """
    if isinstance(value, (complex, np.complexfloating)):
        return True
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                arr = np.asarray(value)
        except Exception:  # ragged or exotic: not a complex array
            return False
        if arr.dtype.kind == "c":
            return True
        if arr.dtype == object:
            return any(isinstance(_from_torch(x), (complex, np.complexfloating)) or
                       (isinstance(x, np.ndarray) and x.dtype.kind == "c") for x in arr.ravel()[:10_000])
    return False


def complex_message(value, what: str = "Your answer") -> str:
    """The sentence for a complex answer: the learner's own value is shown when it is a single number."""
    try:
        arr = np.asarray(value)
        shown = f" ({complex(arr.reshape(())):.4g})" if arr.size == 1 and arr.dtype != object else ""
    except Exception:  # nothing to show
        shown = ""
    return (f"{what} is complex{shown}, but the quantity asked for is real: look for the log of a negative "
            "number (np.emath.log returns complex numbers) or a complex dtype.")


#: Characters of a learner's answer that a message quotes (a string answer may be 10 000 characters long).
MAX_ECHO = 200


def echo(answer) -> str:
    """``repr(answer)`` for a message, cut to :data:`MAX_ECHO` characters (with its length when cut)."""
    text = repr(answer)
    return text if len(text) <= MAX_ECHO else f"{text[:MAX_ECHO]}… ({len(text)} characters)"


#: The sentence for a number beyond float64 (an int such as 10**400).
TOO_LARGE = "A number in your answer is too large for a floating-point number (the largest is about 1.8e308)."

_UNORDERED = (dict, set, frozenset)


def answer_problem(exc: BaseException, answer) -> str | None:
    """A sentence for an exception raised while reading ``answer``, when its cause is clear; else None.

    An int too large for a float, or a dict or set where a sequence (tuple or list) is expected — the raw
    exception text ("KeyError: 0", "'set' object is not subscriptable") would not help a learner.
    """
    if isinstance(exc, OverflowError):
        return TOO_LARGE
    if isinstance(exc, (TypeError, KeyError, IndexError, ValueError)):
        if isinstance(answer, _UNORDERED):
            return (f"Your answer is a {type(answer).__name__}; give a tuple or list, in the order the exercise "
                    "states.")
        if isinstance(answer, (list, tuple)):
            inner = next((v for v in answer if isinstance(v, _UNORDERED)), None)
            if inner is not None:
                return (f"Your answer contains a {type(inner).__name__}; give each part as a tuple or list of "
                        "numbers, in the order the exercise states.")
    return None


def output_data(value):
    """A function's result as plain data: a float (0-d), a float64 ndarray, or ``"returned <type>"``.

    Torch tensors (any float dtype, with or without grad) and numpy scalars are numbers; a list or tuple of
    numbers is an array (so ``[x]`` has shape (1,)); strings, None, bools and dicts are not numbers; complex
    numbers, arrays and tensors (even with zero imaginary part) give ``"returned complex"``.
    """
    if isinstance(value, (str, bytes, bool, np.bool_, dict, type(None))) or callable(value):
        return f"returned {type(value).__name__}"
    try:
        if isinstance(value, (list, tuple)):
            value = [_from_torch(v) for v in value]
        value = _from_torch(value)
        if _is_complex(value):
            return "returned complex"
        arr = np.asarray(value, dtype=float)
    except OverflowError:
        return "returned a number too large for a float"
    except (TypeError, ValueError, RuntimeError):
        return f"returned {type(value).__name__}"
    if arr.dtype == object:
        return f"returned {type(value).__name__}"
    return float(arr) if arr.ndim == 0 else arr


def _data_or_raise(value):
    data = output_data(value)
    if isinstance(data, str):
        raise TypeError(data)
    return data


def exit_message(who: str = "Your code", where: str = "") -> str:
    """The sentence for learner code that called ``exit()`` / ``sys.exit()`` (``SystemExit``)."""
    return (f"{who} called exit() (sys.exit){where}, which would stop Python: return the result "
            "instead of exiting.")


def run_case(fn: Callable, case: Case):
    """Call ``fn`` on ``case`` (on copies of its arguments) and return its output as plain data.

    An exception (also ``SystemExit`` from ``exit()``; not ``KeyboardInterrupt``) becomes the string
    ``"raised <ExcType>: <message>"``; a non-numeric result
    ``"returned <type>"`` (see :func:`output_data`). Floating-point warnings are silenced.
    """
    args, kwargs = copy.deepcopy(case.args), copy.deepcopy(case.kwargs or {})
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = case.probe(fn, *args, **kwargs) if case.probe else fn(*args, **kwargs)
    except (Exception, SystemExit) as exc:  # the learner's function may fail in any way (even exit()): data
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"raised {type(exc).__name__}: {message[:300]}"
    return output_data(value)


def _as_output(data):
    """An output as received by :meth:`FunctionChecker.judge` (a JSON list is an array)."""
    if isinstance(data, str):
        return data
    try:
        arr = np.asarray(data, dtype=float)
    except (TypeError, ValueError):
        return f"returned {type(data).__name__}"
    return arr


# --------------------------------------------------------------------------- number and array answers
def _as_number(answer):
    """Return (float, None) or (None, sentence explaining why the answer is not a number)."""
    if isinstance(answer, (bool, np.bool_)) or isinstance(answer, (str, bytes)):
        return None, f"Expected a single number, got {type(answer).__name__} {echo(answer)}."
    try:
        answer = _from_torch(answer)
    except (TypeError, RuntimeError):
        return None, f"Expected a single number, got {type(answer).__name__}."
    if isinstance(answer, (list, tuple)):
        answer = [_from_torch(v) for v in answer]
    if _is_complex(answer):
        return None, complex_message(answer)
    try:
        if isinstance(answer, numbers.Real):
            return float(answer), None
        arr = np.asarray(answer, dtype=float)
    except OverflowError:
        return None, TOO_LARGE
    except (TypeError, ValueError):
        return None, f"Expected a single number, got {type(answer).__name__}."
    if arr.size != 1:
        return None, f"Expected a single number, got an array of shape {arr.shape}."
    return float(arr.reshape(())), None


def _as_array(answer):
    if isinstance(answer, (str, bytes, bool, np.bool_)) or callable(answer):
        return None, f"Expected an array of numbers, got {type(answer).__name__}."
    try:
        if isinstance(answer, (list, tuple)):
            answer = [_from_torch(v) for v in answer]
        answer = _from_torch(answer)
        if _is_complex(answer):
            return None, complex_message(answer)
        return np.asarray(answer, dtype=float), None
    except OverflowError:
        return None, TOO_LARGE
    except (TypeError, ValueError, RuntimeError):
        return None, f"Expected an array of numbers, got {type(answer).__name__}."


def _match_misconception(answer, misconceptions, expected, tol):
    """The misconception whose value the answer matches; of several (a rounded answer), the closest."""
    matches = []
    for m in misconceptions:
        alt = m.value() if callable(m.value) else m.value
        alt = np.asarray(alt, dtype=float)
        if _within(tol, alt, expected):  # the mistake is harmless here; don't claim it
            continue
        if _within(tol, answer, alt):
            with np.errstate(all="ignore"):
                gap = np.abs(np.asarray(answer, dtype=float) - alt) / np.maximum(np.abs(alt), 1e-300)
            matches.append((float(np.nan_to_num(gap, nan=0.0, posinf=0.0).max()) if gap.size else 0.0, m))
    if not matches:
        return None
    matches.sort(key=lambda pair: pair[0])
    best = matches[0][1]
    if len(matches) == 1:
        return best
    others = " Or: ".join(m.message for _, m in matches[1:])
    return Misconception(best.name, best.value, f"{best.message} Or: {others} (At the digits you gave, your answer "
                         "matches more than one mistake.)")


class NumberChecker:
    """Checker for a single number; see :func:`number`."""

    kind = "number"

    def __init__(self, expected, tolerance: Tolerance, *, unit, misconceptions, negative, infinite_reason,
                 nan: Misconception | str | None = None):
        self._get = _lazy(expected)
        self._nan = nan
        self.tolerance = tolerance
        self.unit = unit
        self._extra = tuple(misconceptions)
        self._negative = negative
        self._reason = infinite_reason

    def __call__(self, answer) -> Verdict:
        value, problem = _as_number(answer)
        if problem:
            return Verdict(False, problem, INVALID)
        if math.isnan(value):
            if isinstance(self._nan, Misconception):  # the exercise knows the mistake that gives NaN
                return _with_tolerance(Verdict(False, self._nan.message, WRONG, self._nan.name), self.tolerance)
            text = self._nan or "look for 0·log 0, log of a negative number or 0/0."
            return _with_tolerance(Verdict(False, f"Your answer is NaN: {text}"), self.tolerance)
        exp = float(self._get())
        tol = self.tolerance
        if _within(tol, value, exp):
            return Verdict(True, "Correct!", CORRECT)
        known = list(self._extra) + (unit_misconceptions(exp, self.unit) if self.unit else [])
        m = _match_misconception(value, known, exp, tol)
        if _too_few_digits(tol, value, exp):  # right at the digits given: say so before naming any mistake
            return _with_tolerance(Verdict(False, _rounding_message(tol, m), WRONG, "too-few-digits"), tol)
        if m:
            return _with_tolerance(Verdict(False, m.message, WRONG, m.name), tol)
        if self._negative and exp >= 0 and value < 0:
            return _with_tolerance(Verdict(False, self._negative), tol)
        distance = _scalar_distance(value, exp, self._reason, tol)
        return _with_tolerance(Verdict(False, f"Not quite: your answer {distance}."), tol)


def number(expected, *, rtol: float = 1e-4, atol: float = 1e-10, sigfigs: int | None = None,
           decimals_: int | None = None, unit: str | None = "nats", misconceptions: Iterable[Misconception] = (),
           negative: str | None = None, infinite_reason: str = INFINITE_KL,
           nan: Misconception | str | None = None) -> NumberChecker:
    """Checker for a single number.

    Parameters
    ----------
    expected : float or callable
        The right answer, or a zero-argument function computing it (evaluated once, lazily).
    rtol, atol : float
        Computed answers: accepted within ``rtol`` relative, or ``atol`` absolute (an expected 0).
    sigfigs : int, optional
        "By hand" answers: accepted when rounded to this many significant figures (or more precise).
    decimals_ : int, optional
        Accepted when rounded to this many decimal places (or more precise).
    unit : {"nats", "bits", None}
        Adds the log-base traps (bits vs nats, log10) for answers carrying that unit.
    misconceptions : iterable of Misconception
        Wrong values to recognise, e.g. ``swapped(kl_reverse)``.
    negative : str, optional
        The message for a negative answer when the expected value is ≥ 0 (e.g. :data:`KL_NEVER_NEGATIVE`, for
        exercises whose statement says the quantity is a KL divergence). None: the generic message.
    nan : Misconception or str, optional
        A NaN answer: the misconception that produces it (its message is shown), or the end of the sentence
        "Your answer is NaN: …". None: a generic hint (0·log 0, log of a negative number, 0/0).
    """
    if sigfigs is not None:
        tol = significant(sigfigs)
    elif decimals_ is not None:
        tol = decimals(decimals_)
    else:
        tol = relative(rtol, atol)
    return NumberChecker(expected, tol, unit=unit, misconceptions=misconceptions, negative=negative,
                         infinite_reason=infinite_reason, nan=nan)


class ArrayChecker:
    """Checker for an array answer; see :func:`array`."""

    kind = "array"

    def __init__(self, expected, tolerance: Tolerance, *, unit, misconceptions):
        self._get = _lazy(expected)
        self.tolerance = tolerance
        self.unit = unit
        self._extra = tuple(misconceptions)

    def __call__(self, answer) -> Verdict:
        arr, problem = _as_array(answer)
        if problem:
            return Verdict(False, problem, INVALID)
        exp = np.asarray(self._get(), dtype=float)
        tol = self.tolerance
        if arr.shape != exp.shape:
            hint = " (transposed?)" if arr.ndim == 2 and arr.shape == exp.shape[::-1] else ""
            return Verdict(False, f"Expected an array of shape {exp.shape}, got shape {arr.shape}{hint}.", INVALID)
        if np.isnan(arr).any():
            return _with_tolerance(Verdict(False, "Your array contains NaN: look for 0·log 0 or 0/0."), tol)
        if _within(tol, arr, exp):
            return Verdict(True, "Correct!", CORRECT)
        known = list(self._extra) + (unit_misconceptions(exp, self.unit) if self.unit else [])
        m = _match_misconception(arr, known, exp, tol)
        if _too_few_digits(tol, arr, exp):  # right at the digits given: say so before naming any mistake
            return _with_tolerance(Verdict(False, _rounding_message(tol, m), WRONG, "too-few-digits"), tol)
        if m:
            return _with_tolerance(Verdict(False, m.message, WRONG, m.name), tol)
        return _with_tolerance(Verdict(False, f"Not quite: {_array_distance(arr, exp, tol)}."), tol)


def array(expected, *, rtol: float = 1e-4, atol: float = 1e-10, sigfigs: int | None = None,
          unit: str | None = None, misconceptions: Iterable[Misconception] = ()) -> ArrayChecker:
    """Checker for an array answer (shape must match exactly; see :func:`number` for the rest)."""
    tol = significant(sigfigs, entries=True) if sigfigs is not None else relative(rtol, atol, entries=True)
    return ArrayChecker(expected, tol, unit=unit, misconceptions=misconceptions)


# --------------------------------------------------------------------------- klcourse's own functions
def _library_name(obj) -> str | None:
    """``"module.qualname"`` if ``obj`` is a klcourse library callable (not klcourse.exercises), else None."""
    try:
        if not callable(obj) or isinstance(obj, types.ModuleType):
            return None
        module = getattr(obj, "__module__", None)
    except Exception:  # an exotic object: not ours
        return None
    if not isinstance(module, str) or not (module == "klcourse" or module.startswith("klcourse.")):
        return None
    if module.startswith("klcourse.exercises"):
        return None
    return f"{module}.{getattr(obj, '__qualname__', getattr(obj, '__name__', type(obj).__name__))}"


def _is_library_module(obj) -> bool:
    name = getattr(obj, "__name__", "") if isinstance(obj, types.ModuleType) else ""
    return (name == "klcourse" or name.startswith("klcourse.")) and not name.startswith("klcourse.exercises")


def _installed_elsewhere(fn: types.FunctionType) -> bool:
    """A function of klcourse.exercises, or of an installed third-party or standard-library module: not the
    learner's code and not the klcourse library, so :func:`uses_klcourse` does not look inside it."""
    name = getattr(fn, "__module__", None) or ""
    if name.startswith("klcourse.exercises"):
        return True  # the exercises' own helpers (check, evaluate …) are not the learner's code
    module = sys.modules.get(name)
    path = str(getattr(module, "__file__", "") or "")
    if not path or name.startswith("klcourse"):
        return False
    return "site-packages" in path or "dist-packages" in path or path.startswith(sysconfig.get_paths()["stdlib"])


def _all_consts(code: types.CodeType) -> list:
    consts = []
    for const in code.co_consts:
        consts.extend(_all_consts(const) if isinstance(const, types.CodeType) else [const])
    return consts


def _all_names(code: types.CodeType) -> set[str]:
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _all_names(const)
    return names


def uses_klcourse(fn, allowed: Iterable[str] = ()) -> str | None:
    """The sentence rejecting ``fn`` if it is, or calls, a klcourse library function; None otherwise.

    Looks at ``fn`` itself, through ``functools.partial``, bound methods, ``__wrapped__``, defaults, closure cells
    and — recursively, through nested code objects and the learner's own helper functions — every global name
    the code refers to (``kl_divergence``, ``klcourse.kl_normal``, ``kc.gaussians.kl_normal`` for a module alias).
    ``allowed`` lists qualified names the statement permits (e.g. ``"klcourse.numerics.r_minus_log1p"``).
    """
    allowed = set(allowed)
    seen: set[int] = set()

    def found(name: str | None) -> str | None:
        return name if name and name not in allowed else None

    def visit(obj, depth: int) -> str | None:
        if depth > 12 or id(obj) in seen:
            return None
        seen.add(id(obj))
        name = _library_name(obj)
        if name:
            return found(name)
        inner = []
        if isinstance(obj, functools.partial):
            inner += [obj.func, *obj.args, *(obj.keywords or {}).values()]
        if inspect.ismethod(obj):
            inner.append(obj.__func__)
        for attr in ("__wrapped__", "pyfunc", "func"):
            try:
                value = inspect.getattr_static(obj, attr)
            except AttributeError:
                continue
            if callable(value):
                inner.append(value)
        for item in inner:
            hit = visit(item, depth + 1)
            if hit:
                return hit
        if isinstance(obj, types.FunctionType):
            return None if _installed_elsewhere(obj) else visit_function(obj, depth)
        call = inspect.getattr_static(type(obj), "__call__", None)
        if isinstance(call, types.FunctionType) and not isinstance(obj, type):
            return visit(call, depth + 1)
        return None

    def visit_function(fn_: types.FunctionType, depth: int) -> str | None:
        namespace = {}
        for cell_name, cell in zip(fn_.__code__.co_freevars, fn_.__closure__ or (), strict=False):
            try:
                namespace[cell_name] = cell.cell_contents
            except ValueError:  # an empty cell
                continue
        names = _all_names(fn_.__code__) | set(fn_.__code__.co_freevars)
        values = [namespace[n] if n in namespace else fn_.__globals__.get(n) for n in names]
        values += list(fn_.__defaults__ or ()) + list((fn_.__kwdefaults__ or {}).values())
        modules = [v for v in values if _is_library_module(v)]
        # imports inside the function: ``import klcourse``, ``from klcourse.gaussians import kl_normal``,
        # ``__import__("klcourse")`` name the module in co_names or as a string constant
        strings = {c for c in _all_consts(fn_.__code__) if isinstance(c, str)}
        for name in names | strings:
            module = sys.modules.get(name) if isinstance(name, str) and name.startswith("klcourse") else None
            if _is_library_module(module):
                modules.append(module)
        while modules:  # klcourse.gaussians.kl_normal, kc.kl_normal: attribute names of library modules
            module = modules.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            for n in names:
                attr = getattr(module, n, None)
                if _is_library_module(attr):
                    modules.append(attr)
                elif found(_library_name(attr)):
                    return _library_name(attr)
        for value in values:
            if value is None or isinstance(value, types.ModuleType):
                continue
            if callable(value) or isinstance(value, functools.partial):
                hit = visit(value, depth + 1)
                if hit:
                    return hit
        return None

    hit = visit(fn, 0)
    if hit is None:
        return None
    return (f"This is klcourse's own function ({hit}), or a wrapper around it; the exercise asks you to write "
            "your own. Use klcourse afterwards to check your result.")


# --------------------------------------------------------------------------- function answers
@dataclass(frozen=True)
class Case:
    """One call of a learner's function: ``fn(*args, **kwargs)``, described in words for feedback.

    ``tag`` groups cases for an exercise's diagnosis; a case with ``graded=False`` is run but not required to
    match (it feeds a remark); ``probe(fn, *args, **kwargs)``, when given, replaces the plain call (e.g. to
    return gradients) and is applied to the reference in the same way.
    """

    description: str
    args: tuple
    kwargs: dict | None = None
    tag: str = ""
    graded: bool = True
    probe: Callable | None = None

    def run(self, fn: Callable):
        """``fn``'s raw result on this case (no copying, no conversion; see :func:`run_case`)."""
        kwargs = self.kwargs or {}
        return self.probe(fn, *self.args, **kwargs) if self.probe else fn(*self.args, **kwargs)


def _fingerprint(case: Case) -> str:
    digest = hashlib.sha1(case.description.encode())
    for value in (*case.args, *sorted((case.kwargs or {}).items())):
        value = _from_torch(value)
        try:
            digest.update(np.asarray(value, dtype=float).tobytes())
        except (TypeError, ValueError):
            digest.update(repr(value).encode())
    return digest.hexdigest()


@dataclass
class Judged:
    """What :meth:`FunctionChecker.judge` sees, handed to an exercise's ``diagnose`` and ``remark`` hooks."""

    checker: FunctionChecker
    cases: list
    outputs: list  # float ndarray or str, per case
    refs: list  # float ndarray per case
    ok: list  # bool per case

    def failing(self) -> list[int]:
        return [i for i, (c, good) in enumerate(zip(self.cases, self.ok, strict=True)) if c.graded and not good]

    def output(self, tag: str):
        """(case, output, reference) of the cases with ``tag``."""
        return [(c, o, r) for c, o, r in zip(self.cases, self.outputs, self.refs, strict=True) if c.tag == tag]

    def match(self, misconceptions, where: Callable[[Case], bool] = lambda case: True) -> Misconception | None:
        """The first misconception the outputs agree with on every informative case satisfying ``where``."""
        return self.checker._misconception(misconceptions, self, where)


class FunctionChecker:
    """Checker for "implement a function" exercises; see :func:`function` and the module docstring."""

    kind = "function"

    def __init__(self, reference: Callable, cases, *, rtol: float, atol: float, misconceptions, name: str,
                 diagnose=None, remark=None, allowed=(), infinite_reason: str = INFINITE_KL, seed: int = 12345,
                 nan_hint=None):
        self._reference = reference
        self._nan_hint = nan_hint
        self._make_cases = cases
        self.tolerance = outputs(rtol, atol)
        self._extra = tuple(misconceptions)
        self.name = name
        self._diagnose = diagnose
        self._remark = remark
        self.allowed = tuple(allowed)
        self._reason = infinite_reason
        self._seed = seed

    # ---- the protocol
    def cases(self, seed: int | None = None) -> list[Case]:
        """The public cases; with ``seed``, hidden randomised cases from ``np.random.default_rng(seed)`` appended."""
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
            raise ValueError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
        make = self._make_cases
        public = list(make(np.random.default_rng(self._seed)) if callable(make) else make)
        if seed is None or not callable(make):
            return public
        known = {_fingerprint(c) for c in public}
        hidden = [dataclasses.replace(c, description=f"hidden case: {c.description}")
                  for c in make(np.random.default_rng(seed)) if _fingerprint(c) not in known]
        return public + hidden

    def run(self, fn: Callable, cases: Sequence[Case] | None = None) -> list:
        """The learner's outputs on ``cases`` (default: the public ones) as plain data; see :func:`run_case`."""
        return [run_case(fn, case) for case in (self.cases() if cases is None else cases)]

    def judge(self, outputs: Sequence, cases: Sequence[Case]) -> Verdict:
        """The verdict on ``outputs[i]`` (plain data, see :func:`run_case`) for ``cases[i]``."""
        if len(outputs) != len(cases):
            raise ValueError(f"{len(outputs)} outputs for {len(cases)} cases")
        outs = [_as_output(o) for o in outputs]
        refs = [np.asarray(_data_or_raise(self._reference_output(c)), dtype=float) for c in cases]
        ok = [isinstance(o, np.ndarray) and o.shape == r.shape and bool(np.all(_accepts(self.tolerance, o, r)))
              for o, r in zip(outs, refs, strict=True)]
        verdict = self._verdict(Judged(self, list(cases), outs, refs, ok))
        if verdict.message.startswith(f"Your {self.name} raised"):
            return verdict  # a crash is not a question of tolerance
        return _with_tolerance(verdict, self.tolerance)

    def __call__(self, answer) -> Verdict:
        if not callable(answer):
            return Verdict(False, f"Expected a {self.name} (something defined with def), got "
                           f"{type(answer).__name__}.", INVALID)
        own = uses_klcourse(answer, self.allowed)
        if own:
            return Verdict(False, own, WRONG, "klcourse-own")
        cases = self.cases()
        return self.judge(self.run(answer, cases), cases)

    # ---- internals
    def _reference_output(self, case: Case):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return case.run(self._reference)

    def _verdict(self, j: Judged) -> Verdict:
        graded = [i for i, c in enumerate(j.cases) if c.graded]
        failing = j.failing()
        if not failing:
            note = self._remark(j) if self._remark else ""
            return Verdict(True, f"Correct on all {len(graded)} test cases!{note}", CORRECT)
        m = self._misconception(self._extra, j)
        if m:
            return Verdict(False, m.message, WRONG, m.name)
        low = _low_precision(j)
        if low:
            return Verdict(False, f"Your {self.name} computes in {low[0]} (about {low[1]:.0e} relative rounding), "
                           "which is coarser than this exercise's tolerance: compute in float64 (torch.float64 or "
                           ".double() for tensors, np.float64 for arrays).", WRONG, "low-precision")
        if self._diagnose:
            verdict = self._diagnose(j)
            if verdict is not None:
                return verdict
        name = self.name
        group = [i for i in failing if j.cases[i].probe is None] or failing  # plain calls before probes
        verdict = self._first_problem(j, group)
        if verdict is not None:
            return verdict
        i = group[0]
        out, ref, case = j.outputs[i], j.refs[i], j.cases[i]
        if ref.ndim == 0:
            return Verdict(False, f"Your {name} gives a wrong result on {case.description}: the result "
                           f"{_scalar_distance(float(out), float(ref), self._reason, self.tolerance)}.")
        return Verdict(False, f"Your {name} gives a wrong result on {case.description}: "
                       f"{_array_distance(out, ref, self.tolerance, self._reason)}.")

    def _first_problem(self, j: Judged, failing: list[int]) -> Verdict | None:
        """Shapes first: an exception, then a non-number, then a shape, then NaN — before any value."""
        name = self.name
        for i in failing:
            out, case = j.outputs[i], j.cases[i]
            if isinstance(out, str) and out.startswith("raised SystemExit"):
                return Verdict(False, exit_message(f"Your {name}", f" on {case.description}"), INVALID)
            if isinstance(out, str) and out.startswith("raised"):
                return Verdict(False, f"Your {name} {out} on {case.description}.")
        for i in failing:
            out, case = j.outputs[i], j.cases[i]
            if isinstance(out, str) and out == "returned a number too large for a float":
                return Verdict(False, f"Your {name} returned a number too large for a floating-point number "
                               f"(above about 1.8e308) on {case.description}.", INVALID)
            if isinstance(out, str) and out == "returned complex":
                return Verdict(False, complex_message(None, f"The result of your {name} on {case.description}"),
                               INVALID)
            if isinstance(out, str):
                return Verdict(False, f"Your {name} {out} on {case.description}, not a number or an array of "
                               "numbers.", INVALID)
        for i in failing:
            out, ref, case = j.outputs[i], j.refs[i], j.cases[i]
            if out.shape != ref.shape:
                return Verdict(False, f"Your {name} {_shape_message(out.shape, ref.shape)} on {case.description}.",
                               INVALID)
        for i in failing:
            if np.isnan(j.outputs[i]).any():
                hint = self._nan_hint(j.cases[i]) if callable(self._nan_hint) else self._nan_hint
                hint = hint or NAN_HINT
                return Verdict(False, f"Your {name} returns NaN on {j.cases[i].description}: {hint}")
        return None

    def _misconception(self, misconceptions, j: Judged, where=lambda case: True):
        tol = self.tolerance
        for m in misconceptions:
            informative = 0
            for case, got, exp in zip(j.cases, j.outputs, j.refs, strict=True):
                if not case.graded or not where(case):
                    continue
                try:
                    with np.errstate(all="ignore"), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        alt = np.asarray(_data_or_raise(case.run(m.value)), dtype=float)
                except Exception:  # a misconception that does not apply to this case
                    continue
                if _within(tol, alt, exp):
                    continue
                if isinstance(got, str) or got.shape != alt.shape:
                    break
                nan_match = np.isnan(alt) & np.isnan(got)
                if not np.all(nan_match | _accepts(tol, got, alt)):  # a mistake may well produce NaN
                    break
                informative += 1
            else:
                if informative:
                    return m
        return None


def _low_precision(j: Judged) -> tuple[str, float] | None:
    """(dtype name, its rounding) when every failing output is a float32, float16 or bfloat16 value (exactly
    representable, as a float64 converted from that dtype is) and off only at that dtype's rounding level.

    Outputs reach :meth:`FunctionChecker.judge` as float64 plain data, so the dtype is read from the values: a
    float64 computation practically never lands on float32-representable numbers everywhere.
    """
    failing = j.failing()
    outs = [j.outputs[i] for i in failing]
    if not failing or any(isinstance(o, str) or o.shape != j.refs[i].shape for o, i in zip(outs, failing,
                                                                                           strict=True)):
        return None
    values = np.concatenate([o.ravel() for o in outs])
    values = values[np.isfinite(values) & (values != 0)]
    if values.size == 0:
        return None
    with np.errstate(all="ignore"):
        single = values.astype(np.float32)
        if not np.all(single.astype(np.float64) == values):
            return None
        if np.all((single.view(np.uint32) & 0xFFFF) == 0):  # 8 significant bits (these fit float16 too)
            name, eps = "bfloat16", 2.0**-8
        elif np.all(single.astype(np.float16).astype(np.float32) == single):
            name, eps = "float16", 2.0**-11
        else:
            name, eps = "float32", 2.0**-24
        for i in failing:
            out, ref = j.outputs[i], j.refs[i]
            scale = float(np.max(np.abs(ref))) if ref.size and np.all(np.isfinite(ref)) else 0.0
            if not (np.all(np.isfinite(out) == np.isfinite(ref)) and
                    np.all(np.abs(out - ref)[np.isfinite(ref)] <= 256 * eps * max(scale, 1e-300))):
                return None
    return name, 2 * eps


def function(reference: Callable, cases, *, rtol: float = 1e-6, atol: float = 1e-9,
             misconceptions: Iterable[Misconception] = (), name: str = "function", diagnose=None, remark=None,
             allowed: Iterable[str] = (), infinite_reason: str = INFINITE_KL, nan_hint=None) -> FunctionChecker:
    """Checker for "implement a function" exercises.

    Parameters
    ----------
    reference : callable
        The reference implementation (usually from :mod:`klcourse`).
    cases : sequence of Case, or callable returning one
        Randomised and edge cases (zeros, identical inputs, large dimensions). A callable receives a seeded
        ``numpy.random.Generator`` (seed 12345 for the public cases, the grader's seed for hidden ones).
    rtol, atol : float
        Every output must be within ``rtol`` relative or ``atol`` absolute of the reference (same shape).
    misconceptions : iterable of Misconception
        Each ``value`` is an alternative *function* (e.g. the swapped-argument KL); if the learner's
        function agrees with it on every case where it differs from the reference, its message is shown.
    diagnose : callable, optional
        ``diagnose(judged) -> Verdict | None``, asked after the misconceptions and before the generic messages.
    remark : callable, optional
        ``remark(judged) -> str`` appended to the "correct" message (e.g. a precision note).
    allowed : iterable of str
        klcourse functions the statement lets the learner call (qualified names); any other is rejected.
    nan_hint : str or callable, optional
        Ends the sentence "Your <name> returns NaN on <case>: …" (a callable receives the Case). None:
        :data:`NAN_HINT`, written for divergences of probability vectors p, q.
    """
    return FunctionChecker(reference, cases, rtol=rtol, atol=atol, misconceptions=misconceptions, name=name,
                           diagnose=diagnose, remark=remark, allowed=allowed, infinite_reason=infinite_reason,
                           nan_hint=nan_hint)


# --------------------------------------------------------------------------- choices and open answers
class ChoiceChecker:
    """Checker for one of a list of strings; see :func:`choice`."""

    kind = "choice"

    def __init__(self, correct, options: Sequence[str], explanations):
        self.options = tuple(options)
        self._normal = {o.strip().lower(): o for o in options}
        self._correct = correct
        self._explanations = explanations
        self.tolerance = Tolerance("option", text="Accepted: one of the listed options, spelled as listed (case "
                                   "and surrounding spaces do not matter).", short="an option")
        if not callable(correct):
            self._right()  # a typo in a fixed answer fails at registration, not in front of a learner

    @functools.cached_property
    def _key(self) -> str:
        key = (self._correct() if callable(self._correct) else self._correct).strip().lower()
        if key not in self._normal:
            raise ValueError(f"correct answer {key!r} is not among the options {list(self.options)}")
        return key

    def _right(self) -> str:
        return self._key

    def _explain(self, key: str) -> str:
        if callable(self._explanations):
            return self._explanations(self._right(), key)
        table = {k.strip().lower(): v for k, v in (self._explanations or {}).items()}
        return table.get(key, "Not this one: run the code in the chapter and look again.")

    def __call__(self, answer) -> Verdict:
        options = list(self.options)
        if not isinstance(answer, str):
            return Verdict(False, f"Answer with one of the strings {options}, got {type(answer).__name__}.",
                           INVALID)
        key = answer.strip().lower()
        if key not in self._normal:
            return Verdict(False, f"Answer with one of {options}; got {echo(answer)}.", INVALID)
        if key == self._right():
            return Verdict(True, "Correct!", CORRECT)
        return Verdict(False, self._explain(key), WRONG, key)


def choice(correct, options: Sequence[str], *, explanations=None) -> ChoiceChecker:
    """Checker for a predict-then-verify question answered with one of ``options`` (case-insensitive).

    Parameters
    ----------
    correct : str or callable
        The right option, or a zero-argument function computing it (evaluated once, on first use), so that
        the answer to "which is larger?" comes from the same code as the chapter's figure.
    explanations : dict or callable, optional
        ``{wrong option: message}``, or ``f(correct, chosen) -> message``.
    """
    return ChoiceChecker(correct, options, explanations)


class PredicateChecker:
    """Checker for open answers; see :func:`predicate`."""

    kind = "counterexample"

    def __init__(self, test, tolerance: Tolerance | None):
        self._test = test
        self.tolerance = tolerance or conditions("Accepted: any answer that meets every condition of the "
                                                 "statement.")

    def __call__(self, answer) -> Verdict:
        try:
            result = self._test(answer)
        except (ValueError, TypeError, IndexError, KeyError, OverflowError) as exc:
            problem = answer_problem(exc, answer)
            if problem is None and isinstance(exc, (KeyError, OverflowError)):
                raise  # not a sentence written for the learner: evaluate() says it could not check
            return Verdict(False, problem or f"This answer cannot be used: {exc}", INVALID)
        if isinstance(result, Verdict):
            return _with_tolerance(result, self.tolerance)
        ok, message = result
        return _with_tolerance(Verdict(bool(ok), message, CORRECT if ok else WRONG), self.tolerance)


def predicate(test: Callable[[object], tuple[bool, str]], *, tolerance: Tolerance | None = None) -> PredicateChecker:
    """Checker for open answers (e.g. a counterexample): ``test(answer)`` returns ``(ok, message)`` or a Verdict.

    A ``ValueError``, ``TypeError`` or ``IndexError`` raised by ``test`` becomes an "invalid answer" sentence (a
    dict or set where a sequence is expected, or a number too large for a float, gets its own sentence).
    ``tolerance`` states what is accepted (its sentence ends every "wrong" message).
    """
    return PredicateChecker(test, tolerance)


# --------------------------------------------------------------------------- probability vectors in open answers
def probability_answer(x, name: str) -> np.ndarray:
    """A learner's probability vector as float64, validated with sentences a learner can act on.

    Accepts lists, numpy arrays and torch tensors of any float dtype; the sum must be 1 within 1e-6 (float32
    rounding passes), and the vector is then divided by its sum in float64.
    """
    try:
        x = [_from_torch(v) for v in x] if isinstance(x, (list, tuple)) else _from_torch(x)
        complex_ = _is_complex(x)
        arr = None if complex_ else np.asarray(x, dtype=float)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{name} must be a vector of numbers, got {type(x).__name__}") from None
    if complex_:
        raise ValueError(f"{name} is complex; probabilities are real numbers")
    if arr.ndim != 1 or arr.size < 2:
        raise ValueError(f"{name} must be a 1-D vector of at least two probabilities, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    if np.any(arr < 0):
        raise ValueError(f"{name} has a negative entry; probabilities are ≥ 0")
    if abs(arr.sum() - 1) > 1e-6:
        raise ValueError(f"{name} sums to {arr.sum():.6g}, not 1: divide it by its sum")
    return arr / arr.sum()
