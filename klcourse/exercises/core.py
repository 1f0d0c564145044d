"""The exercise registry and ``check``.

Each chapter registers its exercises in ``klcourse/exercises/<chapter-slug>.py`` with :func:`register`.
A reader calls ``check("chapter.short-name", answer)``; the registered checker returns a
:class:`Feedback` that says whether the answer is right and, when it is not, why — without ever
revealing the expected value.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from dataclasses import dataclass, field

#: Status values a :class:`Feedback` can carry.
CORRECT, WRONG, NOT_ANSWERED, INVALID = "correct", "wrong", "not answered", "invalid"

#: MIME type of the machine-readable copy of each check result (read by ``klcourse grade``).
FEEDBACK_MIME = "application/vnd.klcourse.feedback+json"


@dataclass(frozen=True)
class Feedback:
    """The verdict on one answer.

    Attributes
    ----------
    exercise_id : str
    passed : bool
    message : str
        One or two sentences for the learner; never contains the expected value.
    status : str
        ``"correct"``, ``"wrong"``, ``"not answered"`` or ``"invalid"`` (wrong type or shape).
    misconception : str or None
        Name of the recognised misconception, e.g. ``"bits"`` or ``"swapped"``.
    """

    exercise_id: str
    passed: bool
    message: str
    status: str = WRONG
    misconception: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "✅" if self.passed else ("…" if self.status == NOT_ANSWERED else "❌")
        return f"{mark} [{self.exercise_id}] {self.message}"

    def to_dict(self) -> dict:
        return {
            "exercise_id": self.exercise_id,
            "passed": self.passed,
            "status": self.status,
            "message": self.message,
            "misconception": self.misconception,
        }

    def _repr_mimebundle_(self, include=None, exclude=None):
        # dark enough for WCAG AA (>= 4.5:1) on white and on the light grey that dark mode puts behind outputs
        colour = "#116329" if self.passed else ("#4b535c" if self.status == NOT_ANSWERED else "#a40e26")
        text = html.escape(str(self))
        return {
            "text/plain": str(self),
            "text/html": f'<div class="klcourse-feedback" style="color:{colour}">{text}</div>',
            FEEDBACK_MIME: self.to_dict(),
        }


@dataclass(frozen=True)
class Verdict:
    """What a checker returns; :func:`check` turns it into a :class:`Feedback`."""

    passed: bool
    message: str
    status: str = WRONG
    misconception: str | None = None


@dataclass(frozen=True)
class Tolerance:
    """What a checker accepts, machine-readable (``kind``, ``rtol``, ``atol``, ``digits``) and as a sentence.

    Kinds
    -----
    ``"sigfigs"``
        "By hand" answers: an answer within half a unit in the ``digits``-th significant figure of the expected
        value is accepted (that is what "rounded to 3 significant figures" allows, and any more precise answer
        is inside the same band).
    ``"decimals"``
        Within half a unit in the ``digits``-th decimal place.
    ``"relative"``
        Computed answers: within ``rtol`` relative, or ``atol`` absolute (an expected 0 is compared absolutely).
    ``"outputs"``
        Function answers: every output within ``rtol`` relative or ``atol`` absolute of the reference, with the
        same shape.
    ``"option"``
        One of the listed strings.
    ``"condition"``
        An open answer (counterexample) meeting every condition of the statement; ``text`` says how exactly.
    """

    kind: str
    rtol: float = 0.0
    atol: float = 0.0
    digits: int = 0
    text: str = ""
    short: str = ""

    def __str__(self) -> str:
        return self.text


def tolerance_for_kind(kind: str) -> Tolerance:
    """The tolerance of an exercise whose checker states none (choices and predictions)."""
    if kind in ("choice", "predict"):
        return Tolerance("option", text="Accepted: one of the listed options, spelled as listed (case and "
                         "surrounding spaces do not matter).", short="an option")
    return Tolerance("condition", text="Accepted: any answer that meets every condition of the statement.",
                     short="conditions")


@dataclass(frozen=True)
class Exercise:
    """A registered exercise.

    ``tolerance`` is what the checker accepts (see :class:`Tolerance`); :func:`tolerance_text` gives its
    sentence, e.g. "Accepted: 3 significant figures."
    """

    id: str
    title: str
    kind: str
    checker: Callable[[object], Verdict] = field(repr=False)
    tolerance: Tolerance | None = field(default=None, repr=False, compare=False)

    @property
    def chapter(self) -> str:
        return self.id.split(".", 1)[0]


KINDS = ("number", "array", "function", "choice", "counterexample", "predict")
_REGISTRY: dict[str, Exercise] = {}


def register(exercise_id: str, *, title: str, kind: str, checker: Callable[[object], Verdict],
             tolerance: Tolerance | None = None) -> Exercise:
    """Register an exercise under ``"<chapter-slug>.<short-name>"``.

    ``checker`` is usually built with :mod:`klcourse.exercises.checkers`; it receives the
    answer (never ``...`` or ``None`` — :func:`check` handles those) and returns a :class:`Verdict`.
    ``tolerance`` defaults to the checker's own ``tolerance`` attribute, else to one fitting ``kind``.
    """
    if exercise_id.count(".") != 1 or not all(exercise_id.split(".")):
        raise ValueError(f"exercise id must look like 'chapter.short-name', got {exercise_id!r}")
    if kind not in KINDS:
        raise ValueError(f"unknown exercise kind {kind!r}; expected one of {KINDS}")
    if exercise_id in _REGISTRY:
        raise ValueError(f"exercise {exercise_id!r} is registered twice")
    tolerance = tolerance or getattr(checker, "tolerance", None) or tolerance_for_kind(kind)
    exercise = Exercise(exercise_id, title, kind, checker, tolerance)
    _REGISTRY[exercise_id] = exercise
    return exercise


def _load_chapters() -> None:
    """Import every chapter module of this package so that its exercises are registered."""
    import importlib
    import pkgutil

    import klcourse.exercises as package

    for info in pkgutil.iter_modules(package.__path__):
        if info.name not in ("core", "checkers"):
            importlib.import_module(f"klcourse.exercises.{info.name}")


def normalise_id(exercise_id):
    """An exercise id as registered: surrounding spaces removed, lower case (non-strings are returned as given)."""
    return exercise_id.strip().lower() if isinstance(exercise_id, str) else exercise_id


def _closest_ids(exercise_id: str) -> list[str]:
    """Registered ids that look like ``exercise_id`` (a typo), at most three, closest first."""
    import difflib

    key = normalise_id(exercise_id)
    chapter, _, name = key.rpartition(".")
    if chapter in CHAPTERS:  # a known chapter: compare the short names of its exercises
        short = {k.split(".", 1)[1]: k for k in _REGISTRY if k.split(".")[0] == chapter}
        return [short[k] for k in difflib.get_close_matches(name, list(short), n=3, cutoff=0.6)]
    close = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.6)
    if not close and name:  # a wrong chapter: the exercises whose short name is close, in any chapter
        short = {k.split(".", 1)[1]: k for k in _REGISTRY}
        close = [short[k] for k in difflib.get_close_matches(name, list(short), n=3, cutoff=0.6)]
    return close


def unknown_id_message(exercise_id, answer=None) -> str:
    """One sentence for an exercise id that is not registered (or not a string), naming the closest ids."""
    _load_chapters()
    if isinstance(answer, str) and normalise_id(answer) in _REGISTRY:
        return f"The arguments are swapped: the exercise id comes first, check(\"{normalise_id(answer)}\", answer)."
    if not isinstance(exercise_id, str):
        return (f"The first argument must be the exercise id, a string such as \"gaussians.kl-by-hand\" as "
                f"printed next to the exercise; got {type(exercise_id).__name__}.")
    close = _closest_ids(exercise_id)
    if close:
        names = " or ".join(f'"{k}"' for k in close)
        return f"There is no exercise \"{exercise_id}\"; did you mean {names}?"
    chapter = normalise_id(exercise_id).split(".")[0]
    if chapter in CHAPTERS:
        names = ", ".join(f'"{e.id}"' for e in list_exercises(chapter))
        return f"There is no exercise \"{exercise_id}\"; the exercises of that chapter are {names}."
    return (f"There is no exercise \"{exercise_id}\": copy the id printed next to the exercise "
            "(list_exercises() lists them all).")


def get_exercise(exercise_id: str) -> Exercise:
    """The registered :class:`Exercise` with this id (spaces around it and case do not matter).

    An unknown id raises a ``KeyError`` naming the closest ids and the exercises of its chapter.
    """
    _load_chapters()
    try:
        return _REGISTRY[normalise_id(exercise_id)]
    except (KeyError, TypeError):
        if not isinstance(exercise_id, str):
            raise KeyError(f"no exercise with id {exercise_id!r}: an exercise id is a string") from None
        close = [k for k in _REGISTRY if k.split(".")[0] == normalise_id(exercise_id).split(".")[0]]
        hint = f" Exercises in that chapter: {', '.join(sorted(close))}." if close else ""
        similar = [k for k in _closest_ids(exercise_id) if k not in close]
        hint += f" Did you mean {' or '.join(similar)}?" if similar else ""
        raise KeyError(f"no exercise with id {exercise_id!r}.{hint}") from None


def list_exercises(chapter: str | None = None) -> list[Exercise]:
    """All registered exercises, optionally only those of one chapter slug, in book order."""
    _load_chapters()
    order = {key: i for i, key in enumerate(_REGISTRY)}  # within a chapter: registration (= notebook) order
    exercises = [e for e in _REGISTRY.values() if chapter is None or e.chapter == chapter]
    return sorted(exercises, key=lambda e: (CHAPTERS.index(e.chapter) if e.chapter in CHAPTERS else 99, order[e.id]))


#: Chapter slugs in book order (notebook ``book/NN_<slug>.ipynb``).
CHAPTERS = (
    "definitions",
    "relatives",
    "gaussians",
    "asymmetry",
    "numerics",
    "vae",
    "em",
    "distillation",
    "estimation",
    "posttraining",
)


def tolerance_text(exercise_id: str) -> str:
    """The sentence stating what the exercise accepts, e.g. ``"Accepted: 3 significant figures."``."""
    exercise = get_exercise(exercise_id)
    return (exercise.tolerance or tolerance_for_kind(exercise.kind)).text


def evaluate(exercise_id: str, answer) -> Feedback:
    """Check ``answer`` without printing anything."""
    exercise = get_exercise(exercise_id)
    exercise_id = exercise.id  # " Gaussians.KL-gauss " is "gaussians.kl-gauss"
    # The tolerance is stated before and after a right answer too (a wrong one states it in its message), so a
    # reader of the book sees under every exercise what it accepts.
    stated = "" if exercise.kind in ("choice", "predict") else " " + tolerance_text(exercise_id)
    if answer is ... or answer is None:
        return Feedback(exercise_id, False, "Not answered yet: replace `...` with your answer." + stated,
                        NOT_ANSWERED)
    try:
        verdict = exercise.checker(answer)
    except SystemExit:  # the learner's code, run by a checker, called exit(): not a reason to stop
        from klcourse.exercises.checkers import exit_message

        verdict = Verdict(False, exit_message(), INVALID)
    except Exception as exc:  # a checker must never show a learner a traceback
        from klcourse.exercises.checkers import answer_problem

        problem = answer_problem(exc, answer)  # a dict or set for a sequence, an int beyond float64
        verdict = Verdict(False, problem or f"Could not check this answer ({type(exc).__name__}: {exc}).", INVALID)
        from klcourse._optional import missing_package_verdict

        verdict = missing_package_verdict(exc, verdict)  # no torch / scikit-learn: say which extra installs it
    message = verdict.message
    if verdict.passed and stated.strip() not in message:
        message += stated
    return Feedback(exercise_id, verdict.passed, message, verdict.status, verdict.misconception)


def check(exercise_id: str, answer) -> Feedback:
    """Check a learner's answer and show the feedback.

    Parameters
    ----------
    exercise_id : str
        ``"<chapter-slug>.<short-name>"``, as printed next to the exercise (case and surrounding spaces do not
        matter). An unknown id gets an "invalid" Feedback naming the closest ids, not an exception.
    answer
        A number, array, string or function, depending on the exercise; ``...`` means not answered yet.

    Returns
    -------
    Feedback
        In Jupyter the returned object displays itself; elsewhere it is also printed.
        ``.passed`` and ``.message`` for scripts.
    """
    _load_chapters()
    if not isinstance(exercise_id, str) or normalise_id(exercise_id) not in _REGISTRY:
        # a typo in the id is the learner's mistake too: a sentence, not a KeyError (nothing recorded)
        shown = exercise_id if isinstance(exercise_id, str) else repr(exercise_id)
        feedback = Feedback(shown, False, unknown_id_message(exercise_id, answer), INVALID)
        if not _in_ipython():
            print(feedback)
        return feedback
    feedback = evaluate(exercise_id, answer)
    _RESULTS.append(feedback)
    from klcourse.exercises.hints import point_to_hint  # learner tools
    from klcourse.exercises.progress import record as record_progress

    record_progress(feedback)  # the learner's local record (KLCOURSE_PROGRESS=off: none); never raises
    feedback = point_to_hint(feedback)  # a wrong or invalid answer's message points at hint("id")
    if not _in_ipython():
        print(feedback)  # in Jupyter the returned Feedback displays itself (rich, once)
    return feedback


def _in_ipython() -> bool:
    import sys

    ipython = sys.modules.get("IPython")
    return bool(ipython and getattr(ipython, "get_ipython", lambda: None)())


#: Every feedback produced in this process, in order (the grader reads it).
_RESULTS: list[Feedback] = []


def results_json() -> str:
    return json.dumps([f.to_dict() for f in _RESULTS])
