"""Draws labelled boxes on images (pillow) and writes PNGs, for inspecting detections."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from overfeat_tf.detection import boxes as box_ops


def draw_boxes(
    image: np.ndarray,
    boxes,
    labels: Sequence[str] | None = None,
    colour: tuple[int, int, int] = (255, 0, 0),
) -> np.ndarray:
    """A copy of `image` (uint8 [h, w, 3]) with `boxes` [n, 4] (ymin, xmin, ymax, xmax,
    pixels) outlined in `colour` and each labelled with `labels[i]` (none if None)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 [h, w, 3]; received {image.dtype} {image.shape}.")
    boxes = box_ops.as_boxes(boxes)
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes.")
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    line = max(1, min(image.shape[:2]) // 100)
    for index, (ymin, xmin, ymax, xmax) in enumerate(boxes):
        draw.rectangle([xmin, ymin, xmax, ymax], outline=tuple(colour), width=line)
        if labels is not None and labels[index]:
            draw.text((xmin + line + 1, ymin + line), str(labels[index]), fill=tuple(colour))
    return np.asarray(picture)


def write_png(path: str, image: np.ndarray) -> None:
    """Writes uint8 [h, w, 3] `image` to `path` as PNG, creating its directory."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(path, format="PNG")
