"""Maths that Markdown would break: a fast source-level check of every page of the book.

A Markdown paragraph is split into lines, and a line that starts with ``-``, ``+`` or ``*`` (then a space),
``#``, ``>``, ``1.`` or a row of ``=``/``-`` starts a list, a heading, a quote or a setext heading, even when
the previous line left a ``$...$`` formula open. The formula is then cut in two and the reader sees raw
``$\\tfrac12(x-\\mu)...`` text with the sign gone (issue 9, chapter 3, theorems 3.1 and 3.2). This test scans
every Markdown cell of every notebook in ``book/`` and every ``book/*.md`` with the state of ``$``/``$$``,
code spans and fenced blocks, and reports each wrapped line that begins such a block inside inline maths,
and each paragraph that ends with a ``$`` still open. ``tests/site/test_rendered_math.py`` checks the
built pages themselves.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
SOURCES = sorted(BOOK.glob("*.ipynb")) + sorted(BOOK.glob("*.md"))

# fenced blocks whose content is not Markdown (code, raw maths): skipped
NON_MARKDOWN_FENCES = re.compile(r"^\{(code-cell|code-block|code|sourcecode|literalinclude|math|raw|glue:math)\}")
# what starts a new block when it begins a line of a paragraph (CommonMark; an ordered list interrupts a
# paragraph only when it starts at 1)
BLOCK_START = re.compile(r"^(?:[-+*](?:\s|$)|#{1,6}(?:\s|$)|>|1[.)](?:\s|$)|=+\s*$|-+\s*$)")
FENCE = re.compile(r"^(`{3,}|~{3,})(.*)$")


def markdown_texts(path: Path) -> list[tuple[str, str]]:
    """``(where, text)`` for every Markdown cell of a notebook, or the whole of a ``.md`` file."""
    if path.suffix == ".md":
        return [(path.name, path.read_text(encoding="utf-8"))]
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [
        (f"{path.name} cell {i} ({cell.get('id')})", "".join(cell["source"]))
        for i, cell in enumerate(cells)
        if cell["cell_type"] == "markdown"
    ]


def _strip_front_matter(lines: list[str]) -> list[str]:
    if lines and lines[0].strip() == "---":
        for k in range(1, len(lines)):
            if lines[k].strip() == "---":
                return [""] * (k + 1) + lines[k + 1 :]
    return lines


def math_breaks(text: str) -> list[tuple[int, str, str]]:
    """``(line number, problem, line)`` for each place where Markdown would cut a formula.

    State carried from character to character: inside a code span (a run of backticks up to the same run),
    inside inline maths (``$`` or ``$$`` opened within a paragraph), inside a display block (``$$`` opening
    a line, which Markdown reads as one block up to the closing ``$$``), inside a fenced block (skipped when
    it is code or raw maths; a directive's body is Markdown and is scanned).
    """
    problems: list[tuple[int, str, str]] = []
    fences: list[tuple[str, int, bool]] = []  # (fence char, length, content is Markdown)
    math: str | None = None  # None, "$", "$$" (inline) or "block"
    code_run = 0  # length of the backtick run that opened a code span, 0 outside one
    lines = _strip_front_matter(text.split("\n"))
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        in_code_fence = any(not markdown for _, _, markdown in fences)
        fence = FENCE.match(line) if math in (None, "block") and not code_run else None
        if fence:
            char, length, info = fence.group(1)[0], len(fence.group(1)), fence.group(2).strip()
            if fences and fences[-1][0] == char and length >= fences[-1][1] and not info:
                fences.pop()
                continue
            if not in_code_fence:
                fences.append((char, length, info.startswith("{") and not NON_MARKDOWN_FENCES.match(info)))
                continue
        if in_code_fence:
            continue
        if not line:  # a blank line ends the paragraph: inline maths and code spans cannot cross it
            if math in ("$", "$$"):
                problems.append((number, f"paragraph ends inside inline maths (an unmatched {math})", raw))
            if math != "block":
                math, code_run = None, 0
            continue
        if math in ("$", "$$") and not code_run and BLOCK_START.match(line):
            problems.append((number, f"line starts a Markdown block inside {math}...{math}", raw))
            math = None  # Markdown has ended the paragraph; resynchronise
        i = 0
        if math is None and not code_run and line.startswith("$$"):
            math, i = "block", 2
            if line.rstrip().endswith("$$") and len(line.split("$$")) > 2:
                math, i = None, len(line)  # a one-line display: $$ x $$ (label)
        while i < len(line):
            ch = line[i]
            if math == "block":
                if line.startswith("$$", i):
                    math = None
                    i = len(line)  # the rest is the (label)
                    continue
                i += 1
                continue
            if ch == "\\" and math is None and not code_run:
                i += 2
                continue
            if ch == "`":
                run = len(line[i:]) - len(line[i:].lstrip("`"))
                if math is None:
                    code_run = 0 if code_run == run else (code_run or run)
                i += run
                continue
            if code_run:
                i += 1
                continue
            if ch == "\\":  # inside maths: skip escaped characters such as \$ and \{
                i += 2
                continue
            if ch == "$":
                token = "$$" if line.startswith("$$", i) else "$"
                if math is None:
                    math = token
                elif math == token:
                    math = None
                i += len(token)
                continue
            i += 1
    if math in ("$", "$$"):
        problems.append((len(lines), f"text ends inside inline maths (an unmatched {math})", lines[-1]))
    return problems


CASES = [(path, where, text) for path in SOURCES for where, text in markdown_texts(path)]


def test_there_is_something_to_scan():
    names = {path.name for path in SOURCES}
    assert {"03_gaussians.ipynb", "intro.md", "notation.md"} <= names
    assert len(CASES) > 200


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_formula_is_cut_by_a_markdown_block(path):
    found = [
        f"{where}, line {number}: {problem}: {line.strip()[:100]!r}"
        for where, text in markdown_texts(path)
        for number, problem, line in math_breaks(text)
    ]
    assert not found, "Markdown would cut these formulas (rewrap the line, or use display maths):\n" + "\n".join(found)


# ----------------------------------------------------------------- the scanner itself, on the bugs it must find
CHAPTER3_THM31_STEP1 = (  # issue 9, item 1: the old source of theorem 3.1's proof, step 1
    "**Step 1: the log-ratio.** The density is $(2\\pi\\sigma^2)^{-1/2}$, so $\\log p(x) = -\\tfrac12\\log(2\\pi)"
    " - \\log\\sigma_0\n- (x-\\mu_0)^2/(2\\sigma_0^2)$ and likewise for $q$.\n"
)
CHAPTER3_THM32_STEP4 = (
    "**Step 4: combine**: $\\tfrac12\\log(\\det\\Sigma_1/\\det\\Sigma_0) - \\tfrac d2\n"
    "+ \\tfrac12[\\operatorname{tr}(\\Sigma_1^{-1}\\Sigma_0)]$, which is {eq}`eq-kl-mvn`.\n"
)


@pytest.mark.parametrize("text", [CHAPTER3_THM31_STEP1, CHAPTER3_THM32_STEP4, "a $x\n* y$ b", "a $$x\n- y$$ b",
                                  "a $x\n1. y$", "a $x\n# y$", "a $x$ and $y\n\nnext paragraph $z$"])
def test_scanner_finds_cut_formulas(text):
    assert math_breaks(text)


@pytest.mark.parametrize(
    "text",
    [
        "$$\nD = a\n - b\n + c\n$$ (eq-x)\n",  # a display block: its lines are not Markdown
        "````{prf:proof}\nso $a$\n- a list item\n$$\nx\n- y\n$$\n````\n",
        "```python\nx = $a\n- b\n```\n",  # code: skipped
        "text with `$` in code\n- item $x$\n",
        "a {glue:text}`name:.2f` and $x + y$\n+ a list item\n",
        "an escaped \\$ sign\n- item\n",
        "- item $a$\n  - nested $b - c$\n",
    ],
)
def test_scanner_accepts_what_markdown_keeps(text):
    assert not math_breaks(text)



# ------------------------------------------------------------- a proof that opens with display maths
PROOF_FENCE = re.compile(r"^(`{3,}|:{3,})\{prf:proof\}")


def proofs_opening_with_display_maths(text: str) -> list[int]:
    """Line numbers of ``prf:proof`` directives whose body starts with ``$$``.

    sphinx-proof renders the first paragraph of a proof inline after the word "Proof.", so a display
    equation there loses its block form and the page shows ``$`` signs around an inline formula
    (measured: chapter 7's proof of the monotonicity of EM). Start the proof with a sentence.
    """
    lines = text.split("\n")
    found = []
    for number, line in enumerate(lines, start=1):
        if PROOF_FENCE.match(line.strip()):
            body = [rest.strip() for rest in lines[number:]]
            body = [rest for rest in body if rest and not rest.startswith(":")]  # skip blank and option lines
            if body and body[0].startswith("$$"):
                found.append(number)
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_proof_opens_with_display_maths(path):
    found = [f"{where}, line {number}" for where, text in markdown_texts(path)
             for number in proofs_opening_with_display_maths(text)]
    message = "a prf:proof starts with $$ (sphinx-proof inlines it; start with a sentence):\n"
    assert not found, message + "\n".join(found)


def test_the_proof_check_sees_the_pattern():
    assert proofs_opening_with_display_maths("```{prf:proof}\n\n$$\nx\n$$\n```") == [1]
    assert proofs_opening_with_display_maths("````{prf:proof}\n:nonumber:\n$$\nx\n$$\n````") == [1]
    assert not proofs_opening_with_display_maths("```{prf:proof}\nSince\n\n$$\nx\n$$\n```")
