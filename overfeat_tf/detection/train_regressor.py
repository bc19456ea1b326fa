"""The box regressor as a training task on a frozen classifier, over several scales
(OverFeat 4.2).

Each batch holds square training crops (random position and flip, from the input
pipeline with `with_boxes=True`). Every crop is resized to each training scale; the
frozen trunk runs once per scale and is pooled at every offset, and the head slides over
the pooled map (`overfeat_tf.evaluation.dense.slide_head`, the same path as inference), so every
location of every scale is one regression example. Loss: squared L2 distance between
predicted and target edge offsets (`targets.encode`), summed over the 4 edges and
averaged over the locations that train (more than 50 % of the box in view), then over
scales. A per-class head is trained on the outputs of the target box's class only.

Multi-scale training is what makes the scales agree at test time: a head trained at one
scale misplaces boxes at the others.
The optimiser is Adam at a fixed rate (the paper does not give the regressor's; Adam
needs no schedule for this small head). One device. `RegressionTask` plugs into the
project's `Trainer` (checkpoints every `checkpoint_every` steps and at each epoch end;
a restarted run resumes at the same step and position in the epoch), which saves the
head under the name "regressor" (`regressor.restore_regressor` reads it).
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf.evaluation import dense
from overfeat_tf.detection import box_maps, box_previews, localizer
from overfeat_tf.detection import regressor as regressor_lib
from overfeat_tf.detection import targets as targets_lib
from overfeat_tf.training.recipes import Recipe
from overfeat_tf.training.trainer import Task


def regression_recipe(learning_rate: float, batch_size: int, epochs: int) -> Recipe:
    """Adam's fixed rate as a `Trainer` recipe: no schedule, no weight decay, no cap."""
    return Recipe(
        learning_rate=learning_rate,
        momentum=0.0,
        weight_decay=0.0,
        batch_size=batch_size,
        schedule="step",
        epochs=epochs,
    )


class RegressionTask(Task):
    """Trains a regressor head on `classifier`'s frozen offset-pooled maps.

    Args:
      classifier: a trained model from `build_model` (not modified).
      scales: training scales, the side each square crop is resized to, pixels (each at
        least the model's native input).
      previews: validation images for `epoch_images`, which draws on them the top-1
        localization guess of the classifier with the current head (`Localizer` at
        `scales`, no flips); None: no images.
    """

    checkpoint_name = "regressor"
    progress_names = ("iou",)
    stats_size = 2
    eval_size = 4

    def __init__(
        self,
        classifier: keras.Model,
        scales: Sequence[int],
        previews: box_previews.BoxPreviews | None = None,
    ) -> None:
        self.scales = list(scales)
        self._classifier = classifier
        self.previews = previews
        self._localizer: localizer.Localizer | None = None  # built on the first call
        # The dense evaluator's trunk + stride-1 pool (and its check of the scales).
        self._dense = dense.DenseEvaluator(classifier, self.scales, flips=False)
        self.window = self._dense.info.input_size

    def optimizer(self, recipe: Recipe) -> keras.optimizers.Optimizer:
        return keras.optimizers.Adam(recipe.learning_rate)

    def _scale_loss(self, head, images, labels, scale: int):
        """(loss, sum of IoUs, trained locations) of a batch resized to `scale`."""
        outputs = head[-1].filters // 4
        x = dense.resize_to_scale(images, (scale, scale))
        pooled = tf.stop_gradient(self._dense.pooled_map(x))  # the trunk stays frozen
        deltas = tf.cast(dense.slide_head(head, pooled, self._dense.offsets), tf.float32)
        shape = tf.shape(deltas)
        windows = targets_lib.cell_windows(shape[1], shape[2], self._dense.cell_stride, self.window)
        boxes = labels["boxes"] * tf.tile(tf.cast(tf.shape(x)[1:3], tf.float32), [2])
        targets = targets_lib.regression_targets(boxes, labels["box_labels"], windows, self.window)
        deltas = tf.reshape(deltas, [shape[0], shape[1], shape[2], outputs, 4])
        if outputs > 1:  # the target class's outputs (any class where masked)
            deltas = tf.gather(deltas, tf.maximum(targets.labels, 0), axis=3, batch_dims=3)
        else:
            deltas = deltas[:, :, :, 0]
        mask = tf.cast(targets.mask, tf.float32)
        count = tf.reduce_sum(mask)
        squared = tf.reduce_sum(tf.square(deltas - targets.deltas), axis=-1)
        loss = tf.math.divide_no_nan(tf.reduce_sum(squared * mask), count)
        ious = targets_lib.iou(
            targets_lib.decode(deltas, windows, self.window),
            targets_lib.decode(targets.deltas, windows, self.window),
        )
        return loss, tf.reduce_sum(ious * mask), count

    def train_loss(self, model, inputs, labels):
        """Mean loss over scales, and [sum of IoUs, trained locations] for metrics."""
        head = regressor_lib.head_layers(model)
        losses, stats = [], []
        for scale in self.scales:
            loss, iou_sum, count = self._scale_loss(head, inputs, labels, scale)
            losses.append(loss)
            stats.append(tf.stack([iou_sum, count]))
        return tf.add_n(losses) / len(losses), tf.add_n(stats)

    def eval_sums(self, model, inputs, labels):
        """[loss, sum of IoUs, trained locations, batches]."""
        loss, stats = self.train_loss(model, inputs, labels)
        return tf.concat([[loss], stats, [1.0]], 0)

    def train_metrics(self, stats: np.ndarray) -> dict[str, float]:
        return {"mean_iou": stats[0] / max(stats[1], 1)}

    def progress(self, stats: np.ndarray) -> list[tuple[str, float]]:
        return [("iou", stats[0] / max(stats[1], 1))]

    def eval_metrics(self, sums: np.ndarray) -> dict[str, float]:
        """Loss (mean over batches) and mean IoU (predicted vs target box, trained
        locations)."""
        return {"loss": sums[0] / max(sums[3], 1), **self.train_metrics(sums[1:3])}

    def epoch_images(self, model: keras.Model) -> np.ndarray | None:
        """The previews with their true boxes and the top-1 guess of `model`'s head."""
        if self.previews is None:
            return None
        if self._localizer is None:
            predictor = box_maps.BoxPredictor(self._classifier, model, self.scales, flips=False)
            self._localizer = localizer.Localizer(predictor, classes_per_view=1, guesses=1)
        return self.previews.draw(self._localizer)
