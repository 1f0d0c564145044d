"""Figure helpers shared by several chapters.

Figures are drawn for phones as well as desktops. :func:`course_style` sets the book's defaults and makes every
figure a notebook shows (or ``glue`` stores) a PNG at twice its display resolution: sharp on high-density
screens, displayed at ``DPI`` CSS pixels per inch of figure. Each PNG records, in its text chunks, the figure's
width in inches and the size of its smallest text in points (``klcourse:min-font-pt``), so that the website test
can compute how large that text appears at any rendered width:

    text px = min_font_pt / 72 * rendered_width_px / width_in

At the book's default width (5.6 in) and font size (11 pt) the smallest text is 9.8 px on a 390-px phone and
13.8 px on a desktop. A wider figure needs larger text or stacked panels.
"""

from __future__ import annotations

import io

import numpy as np

#: CSS pixels per inch of figure on the page (the PNG itself has twice as many pixels)
DPI = 90
#: pixel density of the PNG relative to its display size
PIXEL_RATIO = 2
#: the book's default figure size in inches (width fits a 390-px phone with 11-pt text >= 9 px)
FIGSIZE = (5.6, 3.5)
#: the smallest text a figure may use, in points, at the default width
MIN_FONT_PT = 11


def smallest_text_pt(fig) -> float:
    """Size in points of the smallest visible, non-empty text of ``fig`` (titles, labels, ticks, legends...)."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and t.get_figure() is not None]
    return float(min(sizes)) if sizes else float("inf")


def figure_png(fig) -> tuple[bytes, dict]:
    """The PNG of ``fig`` for the book: ``(png bytes, {"width": css px})``.

    Rendered at ``PIXEL_RATIO * DPI`` with a tight bounding box; the text chunks ``klcourse:width-in`` and
    ``klcourse:min-font-pt`` say how wide the saved figure is and how small its smallest text.
    """
    from PIL import Image, PngImagePlugin

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=PIXEL_RATIO * DPI, bbox_inches="tight")
    image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGBA")
    width_in = image.width / (PIXEL_RATIO * DPI)
    # 256 colours without dithering: line plots and heat maps look the same and the file is 3-4x smaller
    # (a 2x figure costs about as much as the 1x one did)
    flat = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image).convert("RGB")
    image = flat.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    info = PngImagePlugin.PngInfo()
    info.add_text("klcourse:width-in", f"{width_in:.4f}")
    info.add_text("klcourse:min-font-pt", f"{smallest_text_pt(fig):.2f}")
    out = io.BytesIO()
    image.save(out, format="png", pnginfo=info, dpi=(PIXEL_RATIO * DPI, PIXEL_RATIO * DPI))
    # width only: Sphinx writes it as an inline style, and a fixed height would distort the image when the
    # page is narrower than the figure (CSS max-width then scales the width, the height follows it)
    return out.getvalue(), {"width": round(image.width / PIXEL_RATIO)}


def course_style() -> None:
    """Set the book's matplotlib defaults and show every figure through :func:`figure_png`."""
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.dpi": DPI,
        "savefig.dpi": PIXEL_RATIO * DPI,
        "figure.figsize": FIGSIZE,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "legend.frameon": False,
        "font.size": MIN_FONT_PT,
        "axes.titlesize": MIN_FONT_PT + 1,
        "axes.labelsize": MIN_FONT_PT,
        "xtick.labelsize": MIN_FONT_PT,
        "ytick.labelsize": MIN_FONT_PT,
        "legend.fontsize": MIN_FONT_PT,
    })
    try:
        from IPython import get_ipython
        from matplotlib.figure import Figure
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:
        return
    ipython = get_ipython()
    if ipython is None:
        return
    set_matplotlib_formats("png")  # the inline backend's own formatter first, then ours replaces it
    ipython.display_formatter.formatters["image/png"].for_type(Figure, figure_png)


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


def plot_heatmap(ax, x, y, z, *, xlabel: str, ylabel: str, cbar_label: str, levels=None, cmap: str = "viridis",
                 vmax=None):
    """Heat map of ``z[i, j]`` over the grid ``(x[j], y[i])`` with optional labelled contour lines.

    Parameters
    ----------
    ax : matplotlib Axes
    x, y : 1-D arrays
        Grid coordinates (columns and rows of ``z``).
    z : 2-D array, shape (len(y), len(x))
    xlabel, ylabel, cbar_label : str
        Axis labels and the colour-bar label (say the unit, e.g. "KL (nats)").
    levels : sequence of float, optional
        Values at which to draw labelled contour lines.
    vmax : float, optional
        Upper end of the colour scale (values above it saturate).

    Returns
    -------
    matplotlib.collections.QuadMesh
        The image; its colour bar is ``mesh.colorbar``.
    """
    mesh = ax.pcolormesh(x, y, z, shading="auto", cmap=cmap, vmin=0.0, vmax=vmax)
    ax.figure.colorbar(mesh, ax=ax, label=cbar_label)
    if levels is not None:
        lines = ax.contour(x, y, z, levels=levels, colors="white", linewidths=0.8)
        ax.clabel(lines, fmt="%g", fontsize=MIN_FONT_PT)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(False)
    return mesh


def annotated_heatmap(ax, table, *, row_labels, col_labels, fmt: str = "{:.3f}", cmap: str = "Blues",
                      vmin=None, vmax=None):
    """Show a 2-D table (e.g. a joint distribution) as a heatmap with each cell's value written in it.

    Parameters
    ----------
    ax : matplotlib Axes
    table : array of shape (rows, columns)
    row_labels, col_labels : sequences of str
        Tick labels for the rows (y axis) and columns (x axis).
    fmt : str
        Format of the cell annotations.
    cmap, vmin, vmax
        Colour map and its range (default: the range of ``table``).

    Returns
    -------
    matplotlib.image.AxesImage
        The image, e.g. for ``fig.colorbar``.
    """
    table = np.asarray(table, dtype=float)
    image = ax.imshow(table, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    middle = (image.norm.vmin + image.norm.vmax) / 2
    for (i, j), value in np.ndenumerate(table):
        ax.text(j, i, fmt.format(value), ha="center", va="center", fontsize=MIN_FONT_PT,
                color="white" if value > middle else "black")
    ax.set_xticks(range(table.shape[1]), col_labels)
    ax.set_yticks(range(table.shape[0]), row_labels)
    ax.grid(False)
    return image


def plot_em_staircase(ax, result, *, n_steps: int | None = None):
    """EM's "staircase": the bound after every E-step and M-step under the log-likelihood (chapter 7).

    Iteration ``t`` is drawn from x = t - 1 (before its E-step) to x = t (after its M-step): the E-step is
    the vertical jump at x = t - 1 (it lifts the bound onto the log-likelihood curve), the M-step the
    move to the right (it raises the bound at fixed q). The log-likelihood is drawn at every integer x.

    Parameters
    ----------
    ax : matplotlib Axes
    result : klcourse.em.EMResult
        A run of :func:`klcourse.fit_gmm_em`.
    n_steps : int, optional
        Draw only the first ``n_steps`` iterations (default: all of them).
    """
    t = result.n_iter if n_steps is None else min(n_steps, result.n_iter)
    steps = np.arange(t + 1)
    ax.plot(steps, result.log_likelihood[: t + 1], "k-", lw=1.5, label=r"$\log p(x\mid\theta_t)$")
    xs = np.repeat(steps, 2)[1:-1]  # 0,1,1,2,2,... : E-step (vertical) then M-step (horizontal)
    ys = np.column_stack([result.elbo_after_e[:t], result.elbo_after_m[:t]]).ravel()
    ax.plot(xs, ys, "-", color="tab:blue", lw=1, alpha=0.6)
    ax.plot(steps[:-1], result.elbo_after_e[:t], "o", color="tab:orange", ms=5,
            label=r"ELBO after E-step $\mathcal{L}(q_{t+1},\theta_t)$")
    ax.plot(steps[1:], result.elbo_after_m[:t], "s", color="tab:blue", ms=4, mfc="none",
            label=r"ELBO after M-step $\mathcal{L}(q_t,\theta_t)$")
    ax.set_xlabel("EM iteration t")
    ax.set_ylabel("nats (summed over points)")
    ax.legend()
    return ax


def plot_gaussian_ellipses(ax, means, covs, *, dims=(0, 1), n_std: float = 2.0, colors=None, **kwargs):
    """Draw the ``n_std``-standard-deviation ellipse of each Gaussian N(mean, cov) in the plane ``dims``.

    The ellipse of the two-dimensional marginal: rows/columns ``dims`` of each mean and covariance.

    Parameters
    ----------
    ax : matplotlib Axes
    means : array_like, shape (K, d)
    covs : array_like, shape (K, d, d)
        Covariances (not standard deviations).
    dims : pair of int
        The coordinates to plot.
    n_std : float
        Radius in Mahalanobis units (2 covers about 86% of a 2-D Gaussian's mass).
    colors : sequence of colours, optional
    **kwargs
        Passed to :class:`matplotlib.patches.Ellipse` (e.g. ``ls="--"``).
    """
    from matplotlib.patches import Ellipse

    idx = list(dims)
    means, covs = np.asarray(means, dtype=float), np.asarray(covs, dtype=float)
    for k, (mean, cov) in enumerate(zip(means[:, idx], covs[:, idx][:, :, idx], strict=True)):
        vals, vecs = np.linalg.eigh(cov)
        angle = np.degrees(np.arctan2(vecs[1, -1], vecs[0, -1]))
        width, height = 2 * n_std * np.sqrt(vals[::-1])
        color = colors[k] if colors is not None else f"C{k}"
        ax.add_patch(Ellipse(mean, width, height, angle=angle, fill=False, color=color, lw=1.5, **kwargs))
        ax.plot(*mean, "x", color=color, ms=7)
    return ax


def plot_paths(ax, paths, *, labels=None, color: str = "white"):
    """Draw optimisation trajectories in a 2-D parameter plane (e.g. over a loss heat map).

    Parameters
    ----------
    ax : matplotlib Axes
    paths : sequence of arrays of shape (n_steps + 1, 2)
        The (x, y) position after every step, starting with the start.
    labels : sequence of str, optional
        Written next to each start.
    color : str
        Colour of the lines and markers (white reads well on dark colour maps).

    Each path is a line from a circle (start) to a star (end).
    """
    for i, path in enumerate(paths):
        path = np.asarray(path, dtype=float)
        ax.plot(path[:, 0], path[:, 1], "-", color=color, lw=1.2)
        ax.plot(*path[0], "o", color=color, ms=5, mfc="none")
        ax.plot(*path[-1], "*", color=color, ms=10, mec="k", mew=0.5)
        if labels is not None:
            ax.annotate(labels[i], path[0], textcoords="offset points", xytext=(4, 4), color=color,
                        fontsize=MIN_FONT_PT, fontweight="bold")
    return ax
