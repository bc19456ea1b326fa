"""Draws labelled boxes on images (pillow) and writes PNGs, for inspecting detections."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from overfeat_tf.detection import boxes as box_ops


def to_pixels(image: np.ndarray, mean, std) -> np.ndarray:
    """A model input `(pixel - mean) / std`, float [h, w, 3], back to uint8 pixels
    (`mean`, `std`: RGB, 0-255 scale), clipped to 0-255."""
    return np.clip(image * np.asarray(std) + np.asarray(mean), 0, 255).astype(np.uint8)


def draw_boxes(
    image: np.ndarray,
    boxes,
    labels: Sequence[str] | None = None,
    colour: tuple[int, int, int] = (255, 0, 0),
) -> np.ndarray:
    """A copy of `image` (uint8 [h, w, 3]) with `boxes` [n, 4] (ymin, xmin, ymax, xmax,
    pixels) outlined in `colour` and each labelled with `labels[i]` (none if None). A box
    with crossed edges (a regressor can predict xmin > xmax) is drawn over its extent."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be uint8 [h, w, 3]; received {image.dtype} {image.shape}.")
    boxes = box_ops.as_boxes(boxes)
    if labels is not None and len(labels) != len(boxes):
        raise ValueError(f"{len(labels)} labels for {len(boxes)} boxes.")
    picture = Image.fromarray(image)
    draw = ImageDraw.Draw(picture)
    line = max(1, min(image.shape[:2]) // 100)
    corners = np.concatenate(
        [np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1
    )
    for index, (ymin, xmin, ymax, xmax) in enumerate(corners):
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


def found_boxes_writer(
    directory: str,
    prefix: str,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    max_images: int,
    min_score: float | None = None,
) -> Callable[[int, np.ndarray, Any, np.ndarray, np.ndarray], None]:
    """An image callback of `localizer.evaluate_localization` and
    `detector.evaluate_detection` writing `<directory>/<prefix>_NNNN.png` for the first
    `max_images` images: the true boxes in green, the found ones in red.

    Args:
      mean, std: the model's input normalisation (RGB, 0-255), to undo on the image.
      min_score: None for localization (guesses labelled with their class names, best
        first); for detection, draw the detections whose summed score is at least this
        (labelled with class name and score).
    """

    def draw(index: int, image, found, true_classes, true_boxes) -> None:
        if index >= max_images:
            return
        pixels = draw_boxes(
            to_pixels(image, mean, std),
            true_boxes,
            [class_names[c] for c in true_classes],
            (0, 200, 0),
        )
        boxes = found.boxes
        if min_score is not None:
            shown = found.scores >= min_score
            boxes = boxes[shown]
            labels = [
                f"{class_names[c]} {score:.1f}"
                for c, score in zip(found.classes[shown], found.scores[shown])
            ]
        else:
            labels = [f"{rank + 1}. {class_names[c]}" for rank, c in enumerate(found.classes)]
        pixels = draw_boxes(pixels, boxes, labels, (255, 0, 0))
        write_png(os.path.join(directory, f"{prefix}_{index:04d}.png"), pixels)

    return draw
