"""Figure helpers shared by several chapters.

Figures are PNG at a modest resolution (line plots do not need 300 dpi) with labelled axes; call
:func:`course_style` once at the top of a chapter.
"""

from __future__ import annotations

import numpy as np

#: resolution of the PNGs the book embeds
DPI = 90


def course_style() -> None:
    """Set the book's matplotlib defaults (inline PNG resolution, sizes, grid)."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": DPI,
        "savefig.dpi": DPI,
        "figure.figsize": (6.4, 3.6),
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "font.size": 10,
    })
    try:  # the inline backend keeps its own dpi setting
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("png")
    except ImportError:
        pass


def plot_pmfs(ax, pmfs: dict, *, support=None, width: float = 0.8):
    """Side-by-side bar chart of several probability mass functions on the same support.

    Parameters
    ----------
    ax : matplotlib Axes
    pmfs : dict
        ``{label: probabilities}``; all of the same length.
    support : sequence, optional
        Tick labels for the outcomes (default 0, 1, ...).
    """
    labels = list(pmfs)
    k = len(np.asarray(pmfs[labels[0]]))
    x = np.arange(k)
    w = width / len(labels)
    for i, label in enumerate(labels):
        ax.bar(x + (i - (len(labels) - 1) / 2) * w, np.asarray(pmfs[label]), w, label=label)
    ax.set_xticks(x, support if support is not None else x)
    ax.set_xlabel("outcome")
    ax.set_ylabel("probability")
    ax.legend()
    return ax


def plot_densities(ax, x, densities: dict, *, fill: bool = False):
    """Plot several densities ``{label: values on x}`` on one axis."""
    for label, y in densities.items():
        (line,) = ax.plot(x, y, label=label)
        if fill:
            ax.fill_between(x, y, alpha=0.15, color=line.get_color())
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend()
    return ax
