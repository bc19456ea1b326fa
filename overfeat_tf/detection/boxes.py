"""Box arithmetic on float boxes (ymin, xmin, ymax, xmax), vectorised over numpy arrays.

Coordinates are continuous: a box covers [ymin, ymax) x [xmin, xmax), so its area is
(ymax - ymin) * (xmax - xmin) with no "+1" (PASCAL VOC's devkit adds 1 to pixel-index
boxes; these are real-valued pixel edges). Degenerate boxes (max < min) have area 0.
"""

from __future__ import annotations

import numpy as np


def as_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """`boxes` as a float64 array [n, 4]; an empty input gives [0, 4]."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, 4), np.float64)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape [n, 4] (ymin, xmin, ymax, xmax); received shape {array.shape}."
        )
    return array


def area(boxes) -> np.ndarray:
    """Areas [n] of boxes [n, 4]; 0 for degenerate boxes."""
    boxes = as_boxes(boxes)
    heights = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    widths = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    return heights * widths


def intersection(a, b) -> np.ndarray:
    """Pairwise intersection areas [n, m] of boxes a [n, 4] and b [m, 4]."""
    a, b = as_boxes(a, "a"), as_boxes(b, "b")
    top = np.maximum(a[:, None, 0], b[None, :, 0])
    left = np.maximum(a[:, None, 1], b[None, :, 1])
    bottom = np.minimum(a[:, None, 2], b[None, :, 2])
    right = np.minimum(a[:, None, 3], b[None, :, 3])
    return np.maximum(bottom - top, 0.0) * np.maximum(right - left, 0.0)


def iou(a, b) -> np.ndarray:
    """Pairwise intersection over union [n, m] of boxes a [n, 4] and b [m, 4] (float64).

    Two empty boxes have IoU 0 (not NaN).
    """
    inter = intersection(a, b)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def centres(boxes) -> np.ndarray:
    """Box centres [n, 2] as (y, x)."""
    boxes = as_boxes(boxes)
    return 0.5 * (boxes[:, :2] + boxes[:, 2:])


def clip_boxes(boxes, height: float, width: float) -> np.ndarray:
    """Boxes [n, 4] clipped to the image [0, height] x [0, width]."""
    boxes = as_boxes(boxes)
    limits = np.array([height, width, height, width], np.float64)
    return np.clip(boxes, 0.0, limits)


def scale_boxes(boxes, height: float, width: float) -> np.ndarray:
    """Normalised boxes [n, 4] (0..1) to pixels of a height x width image."""
    return as_boxes(boxes) * np.array([height, width, height, width], np.float64)
