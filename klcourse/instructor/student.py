"""Student editions: the chapter notebooks with every solution removed.

The instructor notebook (the one in ``book/``) holds the solutions. Its student edition

* replaces each ``solution``-tagged cell by placeholders (``answer = ...``) for the public names the cell
  defines (never ``_ = ...``), so that the check cells run and report "not answered yet";
* rewrites the sentences that point at a "folded solution" (there is none in this edition);
* removes the folded solution blocks (``solution-start`` … ``solution-end``) and any ``{solution}`` directive;
* clears outputs, execution counts, attachments and metadata of every cell it keeps;
* keeps only the selected exercises (statement, placeholder and check cell) when a selection is given.
"""

from __future__ import annotations

import ast
import copy
import re
import shutil
from pathlib import Path

import nbformat

from klcourse.exercises.core import CHAPTERS

SOLUTION_TAG = "solution"
PLACEHOLDER_TAG = "answer"
_CHECK_ID = re.compile(r"""\bcheck(?:_variant)?\(\s*["']([\w.-]+)["']""")
_SOLUTION_DIRECTIVE = re.compile(r"(`{3,}|:{3,})\{solution\}.*?\n\1", re.DOTALL)
#: Sentences of the instructor edition that mention folded solutions, and what the student edition says.
_FOLDED = [
    (re.compile(r"\s*\(or open the folded solution\)"), ""),
    (re.compile(r"Replace the solution with your own answer"), "Replace each `...` with your own answer"),
    (re.compile(r"Each exercise has a folded solution and a check cell;"), "Each exercise has a check cell;"),
    (re.compile(r"open the folded solution", re.IGNORECASE), "ask your instructor"),
]


def default_book_dir() -> Path:
    """The ``book/`` folder of the repository this package was installed from."""
    return Path(__file__).resolve().parents[2] / "book"


def refuse_instructor_folder(outdir, book_dir=None) -> None:
    """ValueError if ``outdir`` is, or contains, the instructor notebooks (writing there would destroy or ship
    the solutions)."""
    out = Path(outdir).resolve()
    book = Path(book_dir or default_book_dir()).resolve()
    if out == book or book.is_relative_to(out):
        raise ValueError(f"refusing to write a student edition into {outdir}: it is or contains the instructor "
                         f"notebooks ({book}); choose a folder outside the book")
    if out.is_dir() and any(_is_instructor_notebook(p) for p in out.rglob("*.ipynb")):
        raise ValueError(f"refusing to write into {outdir}: it contains instructor notebooks (with solutions)")


def _is_instructor_notebook(path: Path) -> bool:
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:
        return False
    return nb.metadata.get("klcourse", {}).get("edition") != "student" and any(
        SOLUTION_TAG in _tags(c) or "{solution-start}" in _source(c) for c in nb.cells)


def chapter_notebooks(book_dir: Path | None = None, chapters=None) -> dict[str, Path]:
    """``{slug: path}`` of the chapter notebooks, in book order, optionally only ``chapters``."""
    book_dir = Path(book_dir or default_book_dir())
    found = {}
    for slug in CHAPTERS:
        matches = sorted(book_dir.glob(f"[0-9][0-9]_{slug}.ipynb"))
        if matches:
            found[slug] = matches[0]
    if chapters:
        unknown = sorted(set(chapters) - set(found))
        if unknown:
            raise ValueError(f"unknown chapter(s) {unknown}; known: {list(found)}")
        found = {k: v for k, v in found.items() if k in set(chapters)}
    return found


def _source(cell) -> str:
    return cell.source if isinstance(cell.source, str) else "".join(cell.source)


def _tags(cell) -> list:
    return list(cell.get("metadata", {}).get("tags", []))


def defined_names(code: str) -> list[str]:
    """Top-level names a solution cell binds (assignments, defs, classes), in order of appearance."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return []
    names: list[str] = []

    def add(target):
        if isinstance(target, ast.Name) and target.id not in names:
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                add(element)

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            add(ast.Name(node.name))
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                add(target)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            add(node.target)
    return [name for name in names if not name.startswith("_")]  # `_ = plt.plot(...)` is no answer


def placeholder_source(solution_code: str) -> str:
    """The code a learner starts from in place of a solution cell."""
    names = defined_names(solution_code)
    if not names:
        return "# Your code here\n"
    lines = ["# Your answer: replace each `...` (a function you define with `def` may replace its line)."]
    lines += [f"{name} = ..." for name in names]
    return "\n".join(lines) + "\n"


def _exercise_units(cells) -> list[tuple[int, int, str | None]]:
    """(first, last, exercise id) spans: from an ``exercise-start`` cell to the check cell that follows."""
    units, start = [], None
    for i, cell in enumerate(cells):
        text = _source(cell)
        if cell.cell_type == "markdown" and "{exercise-start}" in text:
            start = i
        elif cell.cell_type == "code" and start is not None:
            match = _CHECK_ID.search(text)
            if match:
                units.append((start, i, match.group(1)))
                start = None
    return units


def _clean(cell):
    """A copy of ``cell`` with outputs, counts, attachments and all metadata but the tags (and myst-nb's
    ``mystnb``: a figure's caption, name and alt text) removed."""
    cell = copy.deepcopy(cell)
    tags = [t for t in _tags(cell) if t != SOLUTION_TAG]
    mystnb = cell.get("metadata", {}).get("mystnb")
    cell["metadata"] = {"tags": tags} if tags else {}
    if mystnb:
        cell["metadata"]["mystnb"] = mystnb
    cell.pop("attachments", None)
    if cell.cell_type == "code":
        cell["outputs"] = []
        cell["execution_count"] = None
    return cell


def make_student_notebook(nb, *, exercises=None):
    """Return the student edition of an instructor notebook (``nbformat.NotebookNode``).

    Parameters
    ----------
    nb : NotebookNode
        The instructor notebook.
    exercises : iterable of str, optional
        Exercise ids to keep; the other exercises are removed whole. ``None`` keeps every exercise.
    """
    cells = nb.cells
    drop: set[int] = set()
    kept_ids = []
    for first, last, exercise_id in _exercise_units(cells):
        if exercises is not None and exercise_id not in exercises:
            drop.update(range(first, last + 1))
        else:
            kept_ids.append(exercise_id)

    out_cells, in_solution = [], False
    for i, cell in enumerate(cells):
        text = _source(cell)
        if i in drop:
            continue
        if cell.cell_type == "markdown" and "{solution-start}" in text:
            in_solution = "{solution-end}" not in text
            continue
        if in_solution:
            if cell.cell_type == "markdown" and "{solution-end}" in text:
                in_solution = False
            elif SOLUTION_TAG in _tags(cell):
                out_cells.append(_placeholder_cell(cell))
            continue
        if SOLUTION_TAG in _tags(cell):
            out_cells.append(_placeholder_cell(cell))
            continue
        cleaned = _clean(cell)
        if cell.cell_type == "markdown":
            new = _SOLUTION_DIRECTIVE.sub("", text) if "{solution}" in text else text
            for pattern, replacement in _FOLDED:
                new = pattern.sub(replacement, new)
            if new != text:
                cleaned["source"] = new
        out_cells.append(cleaned)

    student = nbformat.v4.new_notebook()
    student.cells = out_cells
    student.metadata = {
        # mystnb: how the book executes the chapter (inline, for its {eval} numbers)
        key: copy.deepcopy(nb.metadata[key]) for key in ("kernelspec", "language_info", "mystnb")
        if key in nb.metadata
    }
    student.metadata["klcourse"] = {"edition": "student", "exercises": kept_ids}
    return student


def _placeholder_cell(cell):
    placeholder = nbformat.v4.new_code_cell(placeholder_source(_source(cell)))
    placeholder["id"] = cell.get("id") or placeholder["id"]
    placeholder["metadata"] = {"tags": [PLACEHOLDER_TAG]}
    return placeholder


def solution_lines(nb, *, min_length: int = 12) -> set[str]:
    """Lines that occur only inside the solutions of an instructor notebook (to prove none leaked).

    A line counts when it is at least ``min_length`` characters long and appears nowhere outside the
    solutions (tagged cells and folded ``solution-start``/``solution-end`` blocks).
    """
    inside, solution_text, other_text = False, [], []
    for cell in nb.cells:
        text = _source(cell)
        if cell.cell_type == "markdown" and "{solution-start}" in text:
            inside = "{solution-end}" not in text
            continue
        if inside and cell.cell_type == "markdown" and "{solution-end}" in text:
            inside = False
            continue
        is_solution = inside or SOLUTION_TAG in _tags(cell)
        (solution_text if is_solution else other_text).append(text)
    public = "\n".join(other_text)  # a line quoted by the statement itself is no secret
    return {
        line.strip()
        for text in solution_text
        for line in text.splitlines()
        if len(line.strip()) >= min_length and line.strip() not in public and not line.strip().startswith("```")
    }


def write_student_edition(outdir, *, chapters=None, exercises=None, book_dir=None) -> list[Path]:
    """Write the student edition of the chosen chapters into ``outdir``; returns the written paths.

    With ``exercises`` given, a chapter is included only if at least one of its exercises is selected
    (unless ``chapters`` names it explicitly).
    """
    outdir = Path(outdir)
    refuse_instructor_folder(outdir, book_dir)
    outdir.mkdir(parents=True, exist_ok=True)
    selected = set(exercises) if exercises else None
    if selected is not None:
        from klcourse.exercises import list_exercises

        known = {e.id for e in list_exercises()}
        unknown = sorted(selected - known)
        if unknown:
            raise ValueError(f"unknown exercise id(s): {unknown}")
        if not chapters:
            chapters = sorted({e.split(".")[0] for e in selected})
    written = []
    for path in chapter_notebooks(book_dir, chapters).values():
        nb = nbformat.read(path, as_version=4)
        student = make_student_notebook(nb, exercises=selected)
        target = outdir / path.name
        nbformat.write(student, target)
        written.append(target)
    return written


def write_student_book(outdir, *, book_dir=None) -> Path:
    """Write a buildable Jupyter Book of the student edition (for a website without solutions).

    The configuration turns off Sphinx's copies of the sources (``_sources/``), which would otherwise ship
    the notebooks — solutions included — with the site.
    """
    book_dir = Path(book_dir or default_book_dir())
    root = book_dir.parent
    outdir = Path(outdir)
    refuse_instructor_folder(outdir, book_dir)
    if outdir.exists():
        shutil.rmtree(outdir)
    (outdir / "book").mkdir(parents=True)
    chapters = set(chapter_notebooks(book_dir).values())
    for item in book_dir.iterdir():  # pages without exercises (intro, notation, instructors…) as they are
        if item.is_file() and item not in chapters:
            shutil.copy2(item, outdir / "book" / item.name)
    write_student_edition(outdir / "book", book_dir=book_dir)
    shutil.copy2(root / "_toc.yml", outdir / "_toc.yml")
    (outdir / "_config.yml").write_text(student_site_config(root / "_config.yml"), encoding="utf-8")
    return outdir


def student_site_config(config_path) -> str:
    """The book's ``_config.yml`` adapted for a site without solutions.

    Sphinx normally copies every source into ``_sources/`` (the download buttons link there), and the launch
    buttons open the instructor notebooks: both would hand out the solutions, so both are turned off.
    """
    import yaml

    config = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    config["title"] = f"{config.get('title', 'klcourse')} (student edition)"
    config.pop("launch_buttons", None)
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config.update({
        "html_copy_source": False,
        "html_show_sourcelink": False,
        "html_theme_options": {"use_download_button": False, "search_bar_text": "Search this book..."},
    })
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True)
