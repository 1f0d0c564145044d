"""klcourse.plotting.figure_png: the PNG the book shows for every figure (2x pixels, its text size recorded)."""

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from klcourse.plotting import DPI, FIGSIZE, MIN_FONT_PT, PIXEL_RATIO, course_style, figure_png  # noqa: E402


@pytest.fixture
def styled():
    with matplotlib.rc_context():
        course_style()
        yield
    plt.close("all")


def test_twice_the_pixels_of_the_display_width_and_the_text_size_recorded(styled):
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="a line")
    ax.set_xlabel("x (nats)")
    ax.legend()
    png, meta = figure_png(fig)
    image = Image.open(io.BytesIO(png))
    assert set(meta) == {"width"}  # a fixed height would distort the image on a narrow screen
    assert abs(image.width - PIXEL_RATIO * meta["width"]) <= PIXEL_RATIO
    assert float(image.info["klcourse:min-font-pt"]) == MIN_FONT_PT
    width_in = float(image.info["klcourse:width-in"])
    assert abs(width_in - image.width / (PIXEL_RATIO * DPI)) < 1e-3
    assert 0.6 * FIGSIZE[0] < width_in <= FIGSIZE[0] + 0.05  # tight bounding box, not wider than the figure
    # at the default width the smallest text is >= 9 CSS px on a 390-px phone (358 px of column)
    assert MIN_FONT_PT / 72 * min(358, meta["width"]) / width_in >= 9


def test_the_smallest_text_is_found_wherever_it_is(styled):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    ax.annotate("tiny", (0.5, 0.5), fontsize=6)
    ax.text(0.1, 0.1, "", fontsize=2)  # empty text is not text a reader sees
    ax.text(0.2, 0.2, "hidden", fontsize=3).set_visible(False)
    _, meta = figure_png(fig)
    png, _ = figure_png(fig)
    assert float(Image.open(io.BytesIO(png)).info["klcourse:min-font-pt"]) == 6


def test_png_is_small_enough_for_a_phone(styled):
    fig, axes = plt.subplots(2, 1, figsize=(5.6, 6.4))
    axes[0].plot(range(100), [i * i for i in range(100)])
    mesh = axes[1].pcolormesh([[i * j for i in range(60)] for j in range(60)])
    fig.colorbar(mesh)
    png, _ = figure_png(fig)
    assert Image.open(io.BytesIO(png)).mode == "P" and len(png) < 120_000  # 256 colours, a few tens of kB
