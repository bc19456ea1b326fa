"""The first layer's filters as an image grid (ZFNet Fig. 5 / 6, AlexNet Fig. 3).

ZFNet inspected these during training to spot dead and dominating filters; the
training binary can write a grid after every epoch (`filter_grid_callback`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from overfeat_tf.visualization import images as images_lib


def filter_grid(model: keras.Model, layer: str = "conv1", scale: int = 4) -> np.ndarray:
    """RGB grid `[H, W, 3]` in [0, 1] of a convolution's filters on 3 input channels.

    Each filter is scaled on its own so 0 is grey and its largest |weight| is black or
    white, then enlarged `scale` times; filters fill a near-square grid, row by row.
    """
    kernel = model.get_layer(layer).kernel.numpy()  # [kh, kw, 3, filters]
    if kernel.ndim != 4 or kernel.shape[2] != 3:
        raise ValueError(
            f"Layer {layer!r} has kernel shape {kernel.shape}; a filter grid needs an "
            "RGB-input convolution [kh, kw, 3, filters] (conv1)"
        )
    filters = images_lib.to_display(np.transpose(kernel, (3, 0, 1, 2)))
    columns = int(np.ceil(np.sqrt(len(filters))))
    return images_lib.tile(images_lib.upscale(filters, scale), columns)


def write_filter_grid(model: keras.Model, path: str, layer: str = "conv1", scale: int = 4) -> str:
    """Writes `filter_grid` as a PNG at `path`; returns the path."""
    return images_lib.write_png(path, filter_grid(model, layer, scale))


def filter_grid_callback(
    model: keras.Model, directory: str, layer: str = "conv1"
) -> Callable[[int, dict[str, Any]], None]:
    """`Trainer.fit(on_epoch_end=...)` callback writing `<directory>/epoch_NNN.png`
    (epochs counted from 1) to watch the filters evolve."""

    def write(epoch: int, history: dict[str, Any]) -> None:
        write_filter_grid(model, os.path.join(directory, f"epoch_{epoch + 1:03d}.png"), layer)

    return write
