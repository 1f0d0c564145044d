"""Learner tools: staged hints for every exercise (never the answer) and the local progress record."""

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from klcourse import cli
from klcourse.exercises import check, evaluate, hint, list_exercises
from klcourse.exercises import hints as hints_module
from klcourse.exercises.checkers import ArrayChecker, NumberChecker
from klcourse.exercises.core import CHAPTERS
from klcourse.exercises.progress import ENV, progress, progress_path, progress_report, record

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = list_exercises()
NUMBER_TOKEN = re.compile(r"(?<![\w.])[-−]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch, tmp_path):
    """Each test: its own progress file, and hints counted from the first."""
    monkeypatch.setenv(ENV, str(tmp_path / "progress.json"))
    monkeypatch.setattr(hints_module, "_SHOWN", {})


# --------------------------------------------------------------------------- hints
def test_every_exercise_has_two_or_three_hints():
    ids = [e.id for e in EXERCISES]
    assert {e.chapter for e in EXERCISES} == set(CHAPTERS)  # every chapter loaded
    assert set(hints_module.HINTS) == set(ids), set(hints_module.HINTS) ^ set(ids)
    for eid in ids:
        hints = hints_module.HINTS[eid]
        assert 2 <= len(hints) <= 3, eid
        assert all(isinstance(h, str) and len(h) > 40 for h in hints), eid
        assert len(set(hints)) == len(hints), eid


def test_hint_stages_advance_and_stop_at_the_last(capsys):
    eid = "gaussians.kl-by-hand"
    total = len(hints_module.HINTS[eid])
    shown = [hint(eid) for _ in range(total + 1)]
    assert [h.number for h in shown] == [*range(1, total + 1), total]
    assert [h.text for h in shown[:total]] == list(hints_module.HINTS[eid])
    assert f'hint("{eid}") again for hint 2' in str(shown[0])
    assert "the last hint" in str(shown[-1])
    assert str(shown[0]) in capsys.readouterr().out  # printed outside Jupyter
    # a given hint, and the next call continues after it
    assert hint(eid, 1).text == hints_module.HINTS[eid][0]
    assert hint(eid).number == 2
    assert "text/html" in shown[0]._repr_mimebundle_()


@pytest.mark.parametrize("bad", [0, 4, -1, 1.5, True, "2"])
def test_hint_number_out_of_range_is_a_value_error(bad):
    with pytest.raises(ValueError, match="from 1 to 3"):
        hint("gaussians.kl-by-hand", bad)


def test_hint_for_an_unknown_exercise_names_the_chapter_exercises():
    with pytest.raises(KeyError, match="gaussians.kl-by-hand"):
        hint("gaussians.no-such-exercise")


def test_hint_ignores_case_and_surrounding_spaces_of_the_id():
    shown = hint(" Gaussians.KL-by-hand ", 2)
    assert shown.exercise_id == "gaussians.kl-by-hand" and shown.number == 2
    assert shown.text == hint("gaussians.kl-by-hand", 2).text


def _accepted(exercise, value) -> bool:
    return evaluate(exercise.id, value).passed


NUMBER_EXERCISES = [e for e in EXERCISES if e.kind in ("number", "array")]


@pytest.mark.parametrize("exercise", NUMBER_EXERCISES, ids=lambda e: e.id)
def test_no_hint_contains_the_expected_value(exercise):
    """No number written in a hint is accepted as the answer, and no hint spells the expected value."""
    text = " ".join(hints_module.HINTS[exercise.id])
    tokens = {float(t.replace("−", "-")) for t in NUMBER_TOKEN.findall(text)}
    if exercise.kind == "number":
        assert not [t for t in tokens if _accepted(exercise, t)], exercise.id
    if isinstance(exercise.checker, (NumberChecker, ArrayChecker)):
        # no entry of the expected value, rounded to 2-6 significant digits, is written in a hint
        expected = np.atleast_1d(np.asarray(exercise.checker._get(), dtype=float)).ravel()
        rounded = {float(f"{v:.{d}g}") for v in expected for d in (2, 3, 4, 5, 6) if abs(v) > 1e-3}
        assert not tokens & rounded, (exercise.id, tokens & rounded)


def _exercise_statements() -> dict[str, str]:
    """Exercise label -> the Markdown of its statement (from its exercise-start to its exercise-end)."""
    statements = {}
    for path in sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        for m in re.finditer(r"\{exercise-start\}\s*\n:label:\s*([\w-]+)", text):
            statements[m[1]] = text[m.end():text.find("{exercise-end}", m.end())]
    return statements


# decimals a hint may write that its statement does not: formula constants and a start value given as (−1, 3)
HINT_DECIMALS_ALLOWED = {("gaussians.vae-term", "0.5"), ("gaussians.halve-or-double", "0.5"),
                         ("asymmetry.which-basin", "1.0"), ("asymmetry.which-basin", "3.0")}


def test_the_decimals_in_a_hint_are_the_exercises_own_data():
    """A hint that names the data (Bern(0.05)…) names this exercise's data, not another's or an older version's."""
    statements = _exercise_statements()
    found = [e.id for e in EXERCISES if e.id.replace(".", "-") in statements]
    assert len(found) >= 50, len(found)
    stray = [(eid, n) for eid in found for h in hints_module.HINTS[eid]
             for n in re.findall(r"(?<![\w.])\d+\.\d+", h)
             if n not in statements[eid.replace(".", "-")] and (eid, n) not in HINT_DECIMALS_ALLOWED]
    assert not stray, stray


def test_the_number_check_catches_a_hint_that_gives_the_answer():
    """The test above can fail: a hint holding the answer, as the reader would type it, is accepted."""
    exercise = next(e for e in NUMBER_EXERCISES if e.id == "gaussians.kl-by-hand")
    value = float(exercise.checker._get())
    leaked = f"The answer is {value:.4f} nats."
    tokens = {float(t) for t in NUMBER_TOKEN.findall(leaked)}
    assert any(_accepted(exercise, t) for t in tokens)


def test_wrong_and_invalid_answers_point_to_the_hint_right_ones_do_not(capsys):
    wrong = check("gaussians.kl-by-hand", 123.0)
    assert not wrong.passed and wrong.message.endswith('Stuck? hint("gaussians.kl-by-hand") gives a hint.')
    invalid = check("definitions.implement-kl", "not a function")
    assert invalid.status in ("invalid", "wrong") and 'hint("definitions.implement-kl")' in invalid.message
    right = check("definitions.predict-symmetry", "equal")
    assert right.passed and "hint(" not in right.message
    assert "hint(" not in check("gaussians.kl-by-hand", ...).message  # not answered yet: no pointer
    # evaluate (used by tests and tools) stays as it was
    assert "hint(" not in evaluate("gaussians.kl-by-hand", 123.0).message
    assert 'Stuck? hint("gaussians.kl-by-hand")' in capsys.readouterr().out


# --------------------------------------------------------------------------- progress
def test_check_keeps_a_record_and_progress_shows_it(tmp_path, capsys):
    path = tmp_path / "progress.json"
    assert progress_path() == path and not path.exists()
    check("gaussians.kl-by-hand", 123.0)  # wrong: tried
    check("definitions.predict-symmetry", "equal")  # right: passed
    check("definitions.predict-zero", ...)  # not answered: not counted
    data = json.loads(path.read_text())
    assert data["version"] == 1
    assert data["exercises"]["definitions.predict-symmetry"]["passed"] is True
    assert data["exercises"]["gaussians.kl-by-hand"] == {"attempts": 1, "passed": False}
    assert "definitions.predict-zero" not in data["exercises"]
    # a pass stays a pass
    check("definitions.predict-symmetry", "forward larger")
    entry = json.loads(path.read_text())["exercises"]["definitions.predict-symmetry"]
    assert entry["passed"] is True and entry["attempts"] == 2
    capsys.readouterr()

    report = progress()
    out = capsys.readouterr().out
    assert report.passed == ["definitions.predict-symmetry"]
    assert f"1 of {len(EXERCISES)} exercises passed" in out and str(path) in out
    per_chapter = {ch: sum(e.id.startswith(f"{ch}.") for e in EXERCISES) for ch in ("definitions", "gaussians")}
    assert f"1. definitions: 1/{per_chapter['definitions']}" in out
    assert f"3. gaussians: 0/{per_chapter['gaussians']}" in out
    assert "✅ definitions.predict-symmetry" in out and "❌ gaussians.kl-by-hand" in out
    assert "· definitions.predict-zero" in out
    assert "<details>" in report._repr_html_()
    assert list(progress_report("gaussians").chapters) == ["gaussians"]
    with pytest.raises(ValueError, match="no exercises in chapter"):
        progress_report("no-such-chapter")

    progress(reset=True)
    assert not path.exists()
    assert "deleted" in capsys.readouterr().out
    assert progress_report().passed == []


def test_record_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "progress.json"
    check("definitions.predict-symmetry", "equal")
    before = path.read_text()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    feedback = check("definitions.predict-zero", "reverse")  # the write fails half-way
    assert feedback.passed
    assert path.read_text() == before  # the old record is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]  # no temporary file left behind


def test_an_unwritable_or_broken_record_never_breaks_check(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(ENV, str(blocker / "progress.json"))  # its folder cannot be created, even by root
    feedback = check("definitions.predict-symmetry", "equal")
    assert feedback.passed and not record(feedback)
    assert progress_report().passed == []

    broken = tmp_path / "broken.json"
    broken.write_text("{ not json")
    monkeypatch.setenv(ENV, str(broken))
    assert check("definitions.predict-symmetry", "equal").passed
    assert progress_report().passed == ["definitions.predict-symmetry"]  # the broken record was replaced


@pytest.mark.parametrize("value", ["off", "OFF", "0", "none"])
def test_recording_can_be_switched_off(tmp_path, monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert progress_path() is None
    assert check("definitions.predict-symmetry", "equal").passed
    assert list(tmp_path.iterdir()) == []
    assert "Recording is off" in str(progress_report())


def test_default_record_lives_in_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert progress_path() == tmp_path / ".klcourse" / "progress.json"
    check("definitions.predict-symmetry", "equal")
    assert (tmp_path / ".klcourse" / "progress.json").exists()


def test_cli_progress_and_reset(tmp_path, capsys):
    check("definitions.predict-symmetry", "equal")
    capsys.readouterr()
    assert cli.main(["progress", "--chapter", "definitions"]) == 0
    out = capsys.readouterr().out
    assert "1 of 11 exercises passed" in out and "✅ definitions.predict-symmetry" in out
    assert cli.main(["progress", "--reset"]) == 0
    out = capsys.readouterr().out
    assert "deleted" in out and f"0 of {len(EXERCISES)} exercises passed" in out
    assert not (tmp_path / "progress.json").exists()
    assert cli.main(["progress", "--chapter", "nope"]) == 2


# --------------------------------------------------------------------------- a checker without its optional package
@pytest.fixture
def failing_checker(monkeypatch):
    """Registered exercises whose checkers fail with a given exception (removed afterwards)."""
    from klcourse.exercises import core

    added = []

    def add(name, exc, with_hints=True):
        def checker(answer):
            raise exc

        eid = f"scratch.{name}"
        core.register(eid, title="t", kind="number", checker=checker)
        added.append(eid)
        if with_hints:
            monkeypatch.setitem(hints_module.HINTS, eid, ("first hint " * 5, "second hint " * 5))
        return eid

    yield add
    for eid in added:
        core._REGISTRY.pop(eid, None)


@pytest.mark.parametrize(("module", "command"), [("sklearn", 'pip install "klcourse[datasets]"'),
                                                 ("torch", 'pip install "klcourse[torch]"'),
                                                 ("torch.nn", 'pip install "klcourse[torch]"')])
def test_a_check_without_its_optional_package_says_how_to_install_it(failing_checker, module, command):
    eid = failing_checker(module.replace(".", "-"), ModuleNotFoundError(f"No module named '{module}'", name=module))
    feedback = check(eid, 1.0)
    assert not feedback.passed and feedback.status == "invalid"
    assert command in feedback.message and "hint(" not in feedback.message  # not the learner's mistake
    assert progress_report().chapters["scratch"] == [(eid, "t", "todo")]  # and not an attempt


def test_other_checker_failures_keep_their_sentence_and_the_hint_pointer(failing_checker):
    eid = failing_checker("other", ModuleNotFoundError("No module named 'foo'", name="foo"))
    message = check(eid, 1.0).message
    assert message.startswith("Could not check this answer (ModuleNotFoundError") and f'hint("{eid}")' in message
    assert "pip install" not in message
