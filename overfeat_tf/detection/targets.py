"""Box-regression targets relative to each map location's window (OverFeat section 4.2).

Boxes are float (ymin, xmin, ymax, xmax) in pixels of the image the trunk sees. Cell
(i, j) of a map with cell stride c and window side S (the model's native input: 227 for
AlexNet) sees the window (c i, c j, c i + S, c j + S) (`cell_windows`).

Encoding (`encode` / `decode`): each edge of the box as its offset from the same edge of
the window, in units of the window side:

    t = (ymin - wy0, xmin - wx0, ymax - wy1, xmax - wx1) / S

so the window itself is t = 0, and a box twice the window's size around its centre is
(-0.5, -0.5, 0.5, 0.5). Being relative, a target does not depend on where the window is
or on the scale, which is what lets one regressor serve every location and scale.

Which locations train (`regression_targets`): OverFeat trains the regressor only where
the box overlaps the field of view by more than 50 % ("we do not train the regression
network on bounding boxes with less than 50% overlap with the input field of view").
Overlap is read as the paper words it: the fraction of the box's area inside the window,
`coverage`. With several boxes (detection), the target is the box with the highest IoU
with the window among those covered by more than 50 % (the object the window is
centred on and sized for, rather than any small one it happens to contain).
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

# OverFeat section 4.2: train only where more than 50 % of the box is in view.
MIN_COVERAGE = 0.5


class Targets(NamedTuple):
    """Per location: deltas float32 [b, H, W, 4] (see `encode`; 0 where not trained),
    labels int32 [b, H, W] (the target box's class, -1 where none), mask bool [b, H, W]."""

    deltas: tf.Tensor
    labels: tf.Tensor
    mask: tf.Tensor


def cell_windows(
    height: int | tf.Tensor, width: int | tf.Tensor, cell_stride: int, window: int
) -> tf.Tensor:
    """Windows float32 `[height, width, 4]`: cell (i, j) -> (c i, c j, c i + S, c j + S)."""
    ys = tf.cast(tf.range(height) * cell_stride, tf.float32)
    xs = tf.cast(tf.range(width) * cell_stride, tf.float32)
    y0, x0 = tf.meshgrid(ys, xs, indexing="ij")
    return tf.stack([y0, x0, y0 + window, x0 + window], axis=-1)


def encode(boxes: tf.Tensor, windows: tf.Tensor, window: int) -> tf.Tensor:
    """Boxes `[..., 4]` -> edge offsets from `windows` `[..., 4]` in window sides."""
    return (tf.cast(boxes, tf.float32) - windows) / float(window)


def decode(deltas: tf.Tensor, windows: tf.Tensor, window: int) -> tf.Tensor:
    """Inverse of `encode`: edge offsets `[..., 4]` -> boxes in the windows' pixels."""
    return windows + tf.cast(deltas, tf.float32) * float(window)


def area(boxes: tf.Tensor) -> tf.Tensor:
    """Areas of boxes `[..., 4]` (0 when degenerate)."""
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(
        boxes[..., 3] - boxes[..., 1], 0.0
    )


def intersection(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Intersection areas of box pairs `[..., 4]` (broadcast)."""
    top_left = tf.maximum(a[..., :2], b[..., :2])
    bottom_right = tf.minimum(a[..., 2:], b[..., 2:])
    size = tf.maximum(bottom_right - top_left, 0.0)
    return size[..., 0] * size[..., 1]


def iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Intersection over union of box pairs `[..., 4]` (broadcast); 0 for empty pairs."""
    inter = intersection(a, b)
    return tf.math.divide_no_nan(inter, area(a) + area(b) - inter)


def coverage(windows: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """Fraction of each box's area inside each window (broadcast `[..., 4]` pairs)."""
    return tf.math.divide_no_nan(intersection(windows, boxes), area(boxes))


def regression_targets(
    boxes: tf.Tensor,
    box_labels: tf.Tensor,
    windows: tf.Tensor,
    window: int,
    min_coverage: float = MIN_COVERAGE,
) -> Targets:
    """The regression target of every location of a batch.

    Args:
      boxes: float32 `[b, n, 4]`, pixels of the image the trunk sees.
      box_labels: int32 `[b, n]`, -1 for padding (`pipelines.build_dataset` batches).
      windows: float32 `[H, W, 4]` from `cell_windows`.
      window: the window side S in pixels.
      min_coverage: train where more than this fraction of the box is in the window.

    Returns:
      `Targets`; see the module docstring for the encoding and the choice of box.
    """
    boxes = tf.cast(boxes, tf.float32)
    w = windows[tf.newaxis, :, :, tf.newaxis, :]  # [1, H, W, 1, 4]
    b = boxes[:, tf.newaxis, tf.newaxis, :, :]  # [b, 1, 1, n, 4]
    eligible = (box_labels[:, tf.newaxis, tf.newaxis, :] >= 0) & (coverage(w, b) > min_coverage)
    best = tf.argmax(tf.where(eligible, iou(w, b), -1.0), axis=-1, output_type=tf.int32)
    mask = tf.reduce_any(eligible, axis=-1)
    target_boxes = tf.gather(boxes, best, batch_dims=1)  # [b, H, W, 4]
    labels = tf.gather(tf.cast(box_labels, tf.int32), best, batch_dims=1)
    deltas = tf.where(mask[..., tf.newaxis], encode(target_boxes, windows, window), 0.0)
    return Targets(deltas, tf.where(mask, labels, -1), mask)
