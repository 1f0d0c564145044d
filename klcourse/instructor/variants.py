"""Per-student variants: exercises whose data each student gets from their own seed.

A variant's data comes from ``seed_for(secret, student_id, exercise_id)`` (SHA-256 of the three), so it is
reproducible by the grader from the manifest (which keeps the secret) and the roster, and a neighbour's number
is wrong for you. The student edition shows each student their data (in the statement and in a box below it)
and its check cell calls :func:`check_variant` with that data, so the feedback while working is about *their*
numbers; the grader ignores whatever the notebook passes and regenerates the data itself.

Checkers are built with :mod:`klcourse.exercises.checkers` — same tolerances and misconceptions as the fixed
exercise, expected values computed from the student's data.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from klcourse.divergences import kl_divergence
from klcourse.exercises import checkers as ck
from klcourse.exercises.core import Feedback, evaluate
from klcourse.gaussians import kl_normal


@dataclass(frozen=True)
class Variant:
    exercise: str
    make_data: Callable[[np.random.Generator], dict]  # JSON-able data
    checker: Callable[[dict], Callable]  # data -> answer -> Verdict
    describe: Callable[[dict], str]  # Markdown: the student's data
    replacements: Callable[[dict], list[tuple[str, str]]]  # (regex in the statement, replacement)


def seed_for(secret: str, student_id: str, exercise_id: str) -> int:
    digest = hashlib.sha256(f"{secret}\x00{student_id}\x00{exercise_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def variant_data(secret: str, student_id: str, exercise_id: str) -> dict:
    return VARIANTS[exercise_id].make_data(np.random.default_rng(seed_for(secret, student_id, exercise_id)))


# --------------------------------------------------------------------------- helpers
def _pmf(rng, k: int = 3, grid: int = 20) -> tuple:
    """A strictly positive distribution on ``k`` outcomes with entries on a 1/grid lattice."""
    while True:
        cuts = np.sort(rng.choice(np.arange(1, grid), size=k - 1, replace=False))
        parts = np.diff(np.concatenate([[0], cuts, [grid]]))
        if parts.min() >= 1:
            return tuple(float(x) / grid for x in parts)


def _pair(rng) -> dict:
    p = _pmf(rng)
    q = _pmf(rng)
    while np.allclose(p, q) or np.allclose(p, q[::-1]):
        q = _pmf(rng)
    return {"P": list(p), "Q": list(q)}


def _tuple_text(values) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _space(text: str) -> str:
    """A regex matching ``text`` with any run of whitespace where it has one."""
    return r"\s+".join(re.escape(part) for part in text.split())


# --------------------------------------------------------------------------- definitions.kl-in-bits
def _kl_bits_checker(d):
    p, q = d["P"], d["Q"]
    return ck.number(lambda: kl_divergence(p, q, base=2), unit="bits",
                     misconceptions=[ck.swapped(lambda: kl_divergence(q, p, base=2))])


# --------------------------------------------------------------------------- gaussians.kl-by-hand
def _gauss_data(rng) -> dict:
    m0, m1 = (int(x) for x in rng.integers(-2, 3, size=2))
    s0 = int(rng.integers(1, 4))
    s1 = int(rng.choice([s for s in (1, 2, 3, 4) if s != s0]))
    return {"m0": m0, "s0": s0, "m1": m1, "s1": s1}


def _gauss_checker(d):
    m0, s0, m1, s1 = d["m0"], d["s0"], d["m1"], d["s1"]

    def log10_in_log_term():
        return math.log10(s1 / s0) + (s0**2 + (m0 - m1) ** 2) / (2 * s1**2) - 0.5

    return ck.number(lambda: kl_normal(m0, s0, m1, s1), misconceptions=[
        ck.swapped(lambda: kl_normal(m1, s1, m0, s0)),
        ck.sigma_for_variance(lambda: kl_normal(m0, s0**2, m1, s1**2)),
        ck.sigma_for_variance(lambda: kl_normal(m0, math.sqrt(s0), m1, math.sqrt(s1))),
        ck.forgot_half(lambda: kl_normal(m0, s0, m1, s1) + 0.5),
        ck.Misconception("log10", log10_in_log_term, "The log term looks like a base-10 logarithm "
                         "(np.log10 / math.log10); KL in nats uses the natural log."),
    ])


def _gauss_text(d) -> str:
    return (f"$D_{{\\mathrm{{KL}}}}\\big(\\mathcal N({d['m0']}, {d['s0']}^2)\\,\\|\\,"
            f"\\mathcal N({d['m1']}, {d['s1']}^2)\\big)$, where {d['s0']} and {d['s1']} are standard deviations")


# --------------------------------------------------------------------------- asymmetry.both-directions
def _both_checker(d):
    p, q = d["P"], d["Q"]

    def both():
        return np.array([kl_divergence(p, q), kl_divergence(q, p)])

    return ck.array(both, unit="nats", misconceptions=[
        ck.swapped(lambda: both()[::-1]),
        ck.Misconception("assumed-symmetric", lambda: np.full(2, both()[0]),
                         "Both entries are the same number: KL is not symmetric. Compute the second entry "
                         "from its own definition, averaging log(q/p) under Q."),
        ck.Misconception("assumed-symmetric", lambda: np.full(2, both()[1]),
                         "Both entries are the same number: KL is not symmetric. Compute the first entry "
                         "from its own definition, averaging log(p/q) under P."),
    ])


def _pair_text(d) -> str:
    return f"$P = {_tuple_text(d['P'])}$ and $Q = {_tuple_text(d['Q'])}$"


VARIANTS: dict[str, Variant] = {
    "definitions.kl-in-bits": Variant(
        "definitions.kl-in-bits", _pair, _kl_bits_checker, _pair_text,
        lambda d: [(re.escape("$Q = (0.2, 0.3, 0.5)$"), f"$Q = {_tuple_text(d['Q'])}$"),
                   (re.escape("$P = (0.7, 0.2, 0.1)$"), f"$P = {_tuple_text(d['P'])}$")]),
    "gaussians.kl-by-hand": Variant(
        "gaussians.kl-by-hand", _gauss_data, _gauss_checker, _gauss_text,
        lambda d: [(re.escape(r"\mathcal N(1, 2^2)\,\|\,\mathcal N(0, 3^2)"),
                    f"\\mathcal N({d['m0']}, {d['s0']}^2)\\,\\|\\,\\mathcal N({d['m1']}, {d['s1']}^2)"),
                   (_space("Here 2 and 3 are **standard deviations** (the variances are 4 and 9)"),
                    f"Here {d['s0']} and {d['s1']} are **standard deviations** (the variances are "
                    f"{d['s0'] ** 2} and {d['s1'] ** 2})"),
                   (re.escape(r"\mathcal N(1,2^2)"), f"\\mathcal N({d['m0']},{d['s0']}^2)")]),
    "asymmetry.both-directions": Variant(
        "asymmetry.both-directions", _pair, _both_checker, _pair_text,
        lambda d: [(re.escape("$P = (0.7, 0.2, 0.1)$ and $Q = (0.2, 0.5, 0.3)$"), _pair_text(d))]),
}


def personalise_statement(text: str, exercise_id: str, data: dict) -> str:
    for pattern, replacement in VARIANTS[exercise_id].replacements(data):
        text = re.sub(pattern, lambda _m, r=replacement: r, text)
    return text


def judge(exercise_id: str, data: dict, answer) -> Feedback:
    """The verdict on ``answer`` for the variant with ``data`` (used by the grader and by check_variant)."""
    from klcourse.exercises.core import CORRECT, INVALID, NOT_ANSWERED

    if answer is ... or answer is None:
        return Feedback(exercise_id, False, "Not answered yet: replace `...` with your answer.", NOT_ANSWERED)
    try:
        verdict = VARIANTS[exercise_id].checker(data)(answer)
    except Exception as exc:
        return Feedback(exercise_id, False, f"Could not check this answer ({type(exc).__name__}).", INVALID)
    status = verdict.status if verdict.status else (CORRECT if verdict.passed else "wrong")
    return Feedback(exercise_id, verdict.passed, verdict.message, status, verdict.misconception)


def check_variant(exercise_id: str, answer, data: dict | None = None) -> Feedback:
    """``check`` for a personalised exercise: the feedback is about the data in your notebook."""
    from klcourse.exercises.core import _in_ipython

    feedback = judge(exercise_id, data, answer) if data is not None else evaluate(exercise_id, answer)
    if not _in_ipython():
        print(feedback)
    return feedback
