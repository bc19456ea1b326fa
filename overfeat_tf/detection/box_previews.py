"""A few validation images with predicted and true boxes drawn, for TensorBoard.

`BoxPreviews` holds images as evaluation sees them (normalised; e.g. from
`pipelines.build_dataset(eval_mode="full", with_boxes=True)`) with their true boxes;
`draw` runs a `Localizer` or `Detector` on each and returns one uint8 array: true boxes
in green, predicted boxes in red, every image padded with black at the bottom and right
to the largest one's size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from overfeat_tf.detection import drawing

# A Localizer or Detector: normalised image [h, w, 3] -> .boxes [k, 4] (pixels).
Predict = Callable[[np.ndarray], Any]


@dataclasses.dataclass(frozen=True)
class BoxPreviews:
    """Normalised images (float32 [h, w, 3] each), their true boxes ([n, 4] pixels
    each) and the per-channel mean and std that undo the normalisation."""

    images: list[np.ndarray]
    true_boxes: list[np.ndarray]
    mean: np.ndarray
    std: np.ndarray

    def draw(self, predict: Predict) -> np.ndarray:
        """uint8 [n, h, w, 3]: each image with its true (green) and predicted (red)
        boxes."""
        drawn = []
        for image, true_boxes in zip(self.images, self.true_boxes):
            pixels = drawing.draw_boxes(
                drawing.to_pixels(image, self.mean, self.std), true_boxes, colour=(0, 200, 0)
            )
            drawn.append(drawing.draw_boxes(pixels, predict(image).boxes))
        height = max(p.shape[0] for p in drawn)
        width = max(p.shape[1] for p in drawn)
        batch = np.zeros((len(drawn), height, width, 3), np.uint8)
        for index, pixels in enumerate(drawn):
            batch[index, : pixels.shape[0], : pixels.shape[1]] = pixels
        return batch
