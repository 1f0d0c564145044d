"""Numbers in a chapter's prose, computed by its code: the same text on the website and in JupyterLab.

A chapter stores each number it talks about with :func:`glue` and writes it into a Markdown cell as an inline
expression, ``{eval}`num("H_p", ".3f")```:

- the book (myst-nb with ``execution_mode: inline`` in the notebook's ``mystnb`` metadata) evaluates the
  expression in the chapter's kernel when it reaches that Markdown cell, after every cell above it has run;
- JupyterLab (jupyterlab-myst) evaluates it in the learner's kernel when the Markdown cell is run.

Both show the ``text/plain`` of the result, so :func:`num` returns an object whose ``repr`` is the formatted
number itself (a ``str`` would show its quotes). A key that no cell above has glued raises ``LookupError``: the
strict book build (``-W``) fails on it, and JupyterLab shows the error in place of the number.

:func:`glue` also hands the value to ``myst_nb.glue`` in a kernel where myst-nb is installed, so
``{glue:text}`` roles keep working in chapters not yet written this way. The expressions the book evaluates are
restricted by ``nb_eval_name_regex`` in ``_config.yml`` (:data:`EVAL_PATTERN` is the same pattern).
"""

from __future__ import annotations

import re

from klcourse.exercises.core import _in_ipython as _in_kernel  # an IPython shell or kernel, none created

__all__ = ["EVAL_PATTERN", "glue", "num", "glued_keys"]

#: the only inline expressions a chapter may evaluate: ``num("key")`` or ``num("key", "<format spec>")`` with a
#: plain number format (sign, grouping, precision, type); kept equal to ``nb_eval_name_regex`` in _config.yml
EVAL_PATTERN = r'^num\("[A-Za-z_][A-Za-z0-9_-]*"(, "[+ -]?[,_]?(\.[0-9]+)?[eEfFgGd%]?")?\)$'

_VALUES: dict[str, object] = {}


class Shown:
    """Text shown as it is: its ``repr`` (the ``text/plain`` a kernel sends) is the text, without quotes."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__

    def __eq__(self, other) -> bool:
        return isinstance(other, Shown) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def glue(name: str, value, display: bool = False) -> None:
    """Keep ``value`` under ``name`` for :func:`num` (and for ``myst_nb.glue``'s roles when myst-nb is here)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
        raise ValueError(f"a glue key is letters, digits, '_' or '-', starting with a letter or '_': {name!r}")
    _VALUES[name] = value
    if not _in_kernel():  # a plain Python process: nothing to hand to a notebook (and no shell to create)
        if display:
            print(repr(value))
        return
    try:
        from myst_nb import glue as nb_glue
    except ImportError:  # a learner's environment without myst-nb: the prose reads the values from here
        if display:
            from IPython.display import display as show

            show(value)
        return
    nb_glue(name, value, display=display)



def num(name: str, fmt: str = "") -> Shown:
    """The value glued under ``name``, formatted with ``fmt`` (a :func:`format` spec such as ``".3f"``)."""
    if name not in _VALUES:
        raise LookupError(f"no value glued under {name!r} yet: the prose may only use a number computed in a "
                          "cell above it (run the cells above first)")
    value = _VALUES[name]
    try:
        return Shown(format(value, fmt))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cannot format the value glued under {name!r} ({type(value).__name__}) "
                         f"with {fmt!r}: {exc}") from None


def glued_keys() -> list[str]:
    """The keys glued so far in this kernel, in order."""
    return list(_VALUES)
