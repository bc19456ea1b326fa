"""A heat-map figure with its colour bar and scale (matplotlib, off-screen Agg canvas).

The bar uses the colours of `images.colormap`, so it reads the overlay exactly; its
ticks are the values of `value_range`, in the unit named by `label`.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from PIL import Image

from overfeat_tf.visualization import images as images_lib

_COLOURS = ListedColormap(images_lib.colormap(np.linspace(0.0, 1.0, 256)))


def with_colour_bar(
    image: np.ndarray,
    value_range: tuple[float, float],
    label: str,
    title: str | None = None,
    dpi: int = 100,
) -> np.ndarray:
    """`image` (RGB [h, w, 3] in [0, 1], e.g. an `images.overlay`) beside a colour bar
    mapping `value_range` (low, high) to the overlay's colours, labelled `label`.

    Returns:
      RGB float32 [H, W, 3] in [0, 1], larger than `image` (shown at about its own
      size, the bar and its ticks to the right).
    """
    height, width = image.shape[:2]
    figure = Figure(figsize=((width + 140) / dpi, (height + 50) / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes(
        (10 / (width + 140), 10 / (height + 50), width / (width + 140), height / (height + 50))
    )
    axes.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
    axes.set_axis_off()
    if title:
        axes.set_title(title, fontsize=8)
    low, high = value_range
    bar = figure.colorbar(
        ScalarMappable(Normalize(low, high), _COLOURS), ax=axes, fraction=0.08, pad=0.03
    )
    bar.set_label(label, fontsize=8)
    bar.ax.tick_params(labelsize=7)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    pixels = np.asarray(Image.open(buffer).convert("RGB"), np.float32) / 255.0
    return pixels
