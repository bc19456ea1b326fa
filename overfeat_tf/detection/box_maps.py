"""Dense class-probability maps and regressed boxes at every location, scale and flip.

The building block of localization (`localizer.py`) and detection: OverFeat sections 4.2
and 4.3 run the classifier and the box regressor over the same offset-pooled maps at
several scales, and every location contributes a (class score, box) pair.

    predictor = BoxPredictor(model, regressor, scales=[243, 275, 307], flips=True)
    for view in predictor(image):        # image: float32 [h, w, 3] (or [1, h, w, 3]),
        view.probs    # [H, W, C]        # normalised as the classifier expects
        view.boxes    # [H, W, R, 4]     (R = C per-class, 1 shared regressor)
        view.windows  # [H, W, 4]        each location's input window

Geometry. Each scale resizes the image as `overfeat_tf.evaluation.dense.resize_to_scale` does
(shorter side to min(scale), aspect kept). The trunk runs once per scale (and once on
the mirrored image), the last pool is taken at every offset and both heads slide over it
(`overfeat_tf.evaluation.dense.slide_head`): cell (i, j) sees the S x S window (S: the model's
native input) at `cell_stride * (i, j)` px of the scaled image. Boxes and windows are
returned as float (ymin, xmin, ymax, xmax) in pixels of the image given (the scale's
resize undone per axis); a flipped view's boxes and windows are mirrored back into the
image, and its map columns reversed, so column j of every view lies left of column j + 1.
Probabilities are the softmax of the classifier's logits per location.

The signature `BoxPredictor(model, regressor, scales=None, flips=True)` and the fields
of `BoxMap` are the stable interface the detector builds on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf.evaluation import dense
from overfeat_tf.detection import regressor as regressor_lib
from overfeat_tf.detection import targets


class BoxMap(NamedTuple):
    """One view's maps (numpy), boxes in pixels of the image given.

    Attributes:
      scale: the (height, width) scale. flipped: whether this is the mirrored image.
      probs: float32 `[H, W, num_classes]`, class probabilities per location.
      boxes: float32 `[H, W, R, 4]`, the box regressed per location; R = num_classes
        for a per-class regressor (index by class), 1 for a shared one.
      windows: float32 `[H, W, 4]`, the window each location sees.
    """

    scale: dense.Scale
    flipped: bool
    probs: np.ndarray
    boxes: np.ndarray
    windows: np.ndarray

    def class_boxes(self, class_id: int) -> np.ndarray:
        """`[H, W, 4]`: the boxes predicted for `class_id` (the shared box if R = 1)."""
        return self.boxes[:, :, class_id if self.boxes.shape[2] > 1 else 0]


def _mirror(boxes: tf.Tensor, width: tf.Tensor) -> tf.Tensor:
    """Boxes `[..., 4]` of an image of `width` px, mirrored left-right."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)


class BoxPredictor:
    """Class maps and regressed boxes over scales and flips (OverFeat sections 4.2-4.3).

    Args:
      model: the classifier, from `build_model` (its trunk and FC layers are used).
      regressor: its box head, from `regressor.build_regressor` (trained on the same
        trunk).
      scales: (height, width) pairs or ints; None: `overfeat_tf.evaluation.dense.default_scales`.
      flips: also run the mirrored image at every scale.

    Attributes: views ((scale, flipped) per returned map, in order), cell_stride,
    window (S), outputs (R).
    """

    def __init__(
        self,
        model: keras.Model,
        regressor: keras.Model,
        scales: Sequence[int | Sequence[int]] | None = None,
        flips: bool = True,
    ) -> None:
        self._dense = dense.DenseEvaluator(model, scales, fine_stride=True, flips=flips)
        self.views = self._dense.views
        self.cell_stride = self._dense.cell_stride
        self.window = self._dense.info.input_size
        self._classifier = [model.get_layer(row.name) for row in self._dense.info.spec.head]
        self._regressor = regressor_lib.head_layers(regressor)
        self.outputs = self._regressor[-1].filters // 4
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]
        self._fn = tf.function(self.maps, input_signature=signature)

    def maps(self, images: tf.Tensor) -> list[tf.Tensor]:
        """(probs, boxes, windows) per view, flattened, as TF ops (graphs call this):
        `images` float32 [b, h, w, 3] of one size -> per view probs [b, H, W, C],
        boxes [b, H, W, R, 4] and windows [H, W, 4], pixels of `images`."""
        size = tf.cast(tf.shape(images)[1:3], tf.float32)
        batch = tf.shape(images)[0]
        flat = []
        for scale in self._dense.scales:
            x = dense.resize_to_scale(images, scale)
            scaled = tf.cast(tf.shape(x)[1:3], tf.float32)
            unscale = tf.tile(size / scaled, [2])  # (y, x, y, x) scaled px -> image px
            if self._dense.flips:
                x = tf.concat([x, tf.reverse(x, axis=[2])], axis=0)
            pooled = self._dense.pooled_map(x)
            offsets = self._dense.offsets
            probs = tf.nn.softmax(
                tf.cast(dense.slide_head(self._classifier, pooled, offsets), tf.float32), -1
            )
            deltas = tf.cast(dense.slide_head(self._regressor, pooled, offsets), tf.float32)
            height, width = tf.shape(deltas)[1], tf.shape(deltas)[2]
            deltas = tf.reshape(deltas, [-1, height, width, self.outputs, 4])
            windows = targets.cell_windows(height, width, self.cell_stride, self.window)
            boxes = targets.decode(deltas, windows[:, :, tf.newaxis, :], self.window)
            flat += [probs[:batch], boxes[:batch] * unscale, windows * unscale]
            if self._dense.flips:
                mirrored = [_mirror(boxes[batch:], scaled[1]), _mirror(windows, scaled[1])]
                flat += [
                    tf.reverse(probs[batch:], axis=[2]),
                    tf.reverse(mirrored[0], axis=[2]) * unscale,
                    tf.reverse(mirrored[1], axis=[1]) * unscale,
                ]
        return flat

    def __call__(self, image: tf.Tensor | np.ndarray) -> list[BoxMap]:
        """One normalised image `[h, w, 3]` or `[1, h, w, 3]` -> a `BoxMap` per view."""
        image = tf.convert_to_tensor(image, tf.float32)
        if image.shape.rank == 3:
            image = image[tf.newaxis]
        if image.shape.rank != 4 or image.shape[0] != 1 or image.shape[-1] != 3:
            raise ValueError(f"image must be [h, w, 3] or [1, h, w, 3]; received {image.shape}")
        flat = [t.numpy() for t in self._fn(image)]
        return [
            BoxMap(scale, flipped, flat[3 * i][0], flat[3 * i + 1][0], flat[3 * i + 2])
            for i, (scale, flipped) in enumerate(self.views)
        ]
