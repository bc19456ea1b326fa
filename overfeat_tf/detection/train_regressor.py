"""Trains the box regressor on a frozen classifier, over several scales (OverFeat 4.2).

Each batch holds square training crops (random position and flip, from the input
pipeline with `with_boxes=True`). Every crop is resized to each training scale; the
frozen trunk runs once per scale and is pooled at every offset, and the head slides over
the pooled map (`overfeat_tf.dense.slide_head`, the same path as inference), so every
location of every scale is one regression example. Loss: squared L2 distance between
predicted and target edge offsets (`targets.encode`), summed over the 4 edges and
averaged over the locations that train (more than 50 % of the box in view), then over
scales. A per-class head is trained on the outputs of the target box's class only.

Multi-scale training is what makes the scales agree at test time (DESIGN.md section 3).
The optimiser is Adam (the paper does not give the regressor's; Adam needs no schedule
for this small head). One device. Progress (head, optimiser, step) is checkpointed every
`checkpoint_every` steps and at each epoch end; a restarted run resumes at the same step
and position in the epoch, as classification training does.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf import dense
from overfeat_tf.detection import drawing
from overfeat_tf.detection import regressor as regressor_lib
from overfeat_tf.detection import targets as targets_lib
from overfeat_tf.training import summaries

# (epoch, batches to skip) -> batches of (images [b, s, s, 3], labels dict with boxes).
TrainDatasetFn = Callable[[int, int], tf.data.Dataset]
EvalDatasetFn = Callable[[], tf.data.Dataset]


class RegressionDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclasses.dataclass
class RegressorTrainConfig:
    """What one regressor run trains, for how long, and where it writes.

    Attributes:
      model_dir: regressor.json, checkpoints, TensorBoard summaries, metrics.json.
      scales: training scales, the side each square crop is resized to, pixels
        (each at least the model's native input).
      steps_per_epoch: batches per pass over the training split.
      epochs: epochs to train; `max_steps` stops earlier when set.
      learning_rate: Adam's.
    """

    model_dir: str
    scales: Sequence[int]
    steps_per_epoch: int
    epochs: int
    learning_rate: float = 1e-3
    max_steps: int | None = None
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    verbose: bool = True


class RegressorTrainer:
    """Trains `regressor` on `classifier`'s frozen offset-pooled maps.

    Args:
      config: the run.
      classifier: a trained model from `build_model` (not modified).
      regressor: the head from `regressor_lib.build_regressor`.
    """

    def __init__(self, config: RegressorTrainConfig, classifier: keras.Model,
                 regressor: keras.Model) -> None:
        self.config = config
        self.regressor = regressor
        # The dense evaluator's trunk + stride-1 pool (and its check of the scales).
        self._dense = dense.DenseEvaluator(classifier, list(config.scales), flips=False)
        self._head = regressor_lib.head_layers(regressor)
        self._outputs = self._head[-1].filters // 4
        self.window = self._dense.info.input_size
        self.optimizer = keras.optimizers.Adam(config.learning_rate)
        self.optimizer.build(regressor.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        checkpoint = tf.train.Checkpoint(
            regressor=regressor, optimizer=self.optimizer, step=self.step
        )
        self.manager = tf.train.CheckpointManager(
            checkpoint, config.model_dir, max_to_keep=config.keep_checkpoints
        )
        self.restored_from = self.manager.restore_or_initialize()
        self._train_fn = tf.function(self._train_step)
        self._eval_fn = tf.function(self._losses)
        self._writers = summaries.RunWriters(config.model_dir)

    # ---- one step -------------------------------------------------------------------

    def _predict_at_scale(self, images, labels, scale: int):
        """(x, deltas, targets, windows) of a batch resized to `scale` (x [b, s, s, 3]):
        the head's deltas [b, h, w, 4] for each location's target class (any class where
        masked), the regression targets and the locations' windows [h, w, 4] (pixels)."""
        x = dense.resize_to_scale(images, (scale, scale))
        pooled = tf.stop_gradient(self._dense.pooled_map(x))  # the trunk stays frozen
        deltas = tf.cast(dense.slide_head(self._head, pooled, self._dense.offsets), tf.float32)
        shape = tf.shape(deltas)
        windows = targets_lib.cell_windows(shape[1], shape[2], self._dense.cell_stride,
                                           self.window)
        boxes = labels["boxes"] * tf.tile(tf.cast(tf.shape(x)[1:3], tf.float32), [2])
        targets = targets_lib.regression_targets(boxes, labels["box_labels"], windows,
                                                 self.window)
        deltas = tf.reshape(deltas, [shape[0], shape[1], shape[2], self._outputs, 4])
        if self._outputs > 1:
            deltas = tf.gather(deltas, tf.maximum(targets.labels, 0), axis=3, batch_dims=3)
        else:
            deltas = deltas[:, :, :, 0]
        return x, deltas, targets, windows

    def _scale_loss(self, images, labels, scale: int):
        """(loss, sum of IoUs, trained locations) of a batch resized to `scale`."""
        _, deltas, targets, windows = self._predict_at_scale(images, labels, scale)
        mask = tf.cast(targets.mask, tf.float32)
        count = tf.reduce_sum(mask)
        squared = tf.reduce_sum(tf.square(deltas - targets.deltas), axis=-1)
        loss = tf.math.divide_no_nan(tf.reduce_sum(squared * mask), count)
        ious = targets_lib.iou(
            targets_lib.decode(deltas, windows, self.window),
            targets_lib.decode(targets.deltas, windows, self.window),
        )
        return loss, tf.reduce_sum(ious * mask), count

    def _losses(self, images, labels):
        """Mean loss over scales, and [sum of IoUs, trained locations] for metrics."""
        losses, stats = [], []
        for scale in self.config.scales:
            loss, iou_sum, count = self._scale_loss(images, labels, scale)
            losses.append(loss)
            stats.append(tf.stack([iou_sum, count]))
        return tf.add_n(losses) / len(losses), tf.add_n(stats)

    def _train_step(self, images, labels):
        with tf.GradientTape() as tape:
            loss, stats = self._losses(images, labels)
        variables = self.regressor.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        self.step.assign_add(1)
        return loss, stats

    # ---- the loop -------------------------------------------------------------------

    def evaluate(self, eval_dataset_fn: EvalDatasetFn) -> dict[str, float]:
        """Loss and mean IoU (predicted vs target box, trained locations) over a split."""
        loss_sum, batches, stats = 0.0, 0, np.zeros(2)
        for images, labels in eval_dataset_fn():
            loss, batch_stats = self._eval_fn(images, labels)
            loss_sum += float(loss)
            batches += 1
            stats += batch_stats.numpy()
        return {"loss": loss_sum / max(batches, 1), "mean_iou": stats[0] / max(stats[1], 1)}

    def validation_images(self, images, labels, count: int = 3) -> np.ndarray:
        """The first `count` images of a validation batch at the first scale, uint8
        [k, s, s, 3] (contrast-stretched), with their true boxes in green and, in red,
        the box the regressor predicts at each location that trains on one."""
        images, scale = images[:count], self.config.scales[0]
        labels = {key: value[:count] for key, value in labels.items()}
        x, deltas, targets, windows = self._predict_at_scale(images, labels, scale)
        predicted = targets_lib.decode(deltas, windows, self.window).numpy()
        drawn = []
        for i, image in enumerate(x.numpy()):
            low, high = image.min(), image.max()
            pixels = (255 * (image - low) / max(high - low, 1e-6)).astype(np.uint8)
            true = labels["boxes"][i, :int(labels["num_boxes"][i])].numpy() * scale
            pixels = drawing.draw_boxes(pixels, true, colour=(0, 200, 0))
            drawn.append(drawing.draw_boxes(pixels, predicted[i][targets.mask[i].numpy()]))
        return np.stack(drawn)

    def _write_validation_images(self, eval_dataset_fn: EvalDatasetFn, step: int) -> None:
        for images, labels in eval_dataset_fn().take(1):
            with self._writers.validation.as_default(step=step):
                tf.summary.image("boxes", self.validation_images(images, labels), max_outputs=3)

    def fit(self, train_dataset_fn: TrainDatasetFn,
            eval_dataset_fn: EvalDatasetFn | None = None) -> dict[str, Any]:
        """Trains to `epochs` (or `max_steps`), evaluating after every epoch.

        Returns the final metrics, also written to `<model_dir>/metrics.json`.
        Raises `RegressionDiverged` on a NaN/inf loss, leaving the last good checkpoint.
        """
        cfg = self.config
        total = cfg.epochs * cfg.steps_per_epoch
        if cfg.max_steps is not None:
            total = min(total, cfg.max_steps)
        if self.restored_from:
            self._log(f"Resumed from {self.restored_from} at step {self._step()}.")
        history: dict[str, Any] = {}
        while self._step() < total:
            epoch, skip = divmod(self._step(), cfg.steps_per_epoch)
            steps = min(cfg.steps_per_epoch, total - epoch * cfg.steps_per_epoch)
            history = self._train_epoch(epoch, skip, steps, train_dataset_fn)
            if eval_dataset_fn is not None:
                history.update({f"val_{k}": v for k, v in self.evaluate(eval_dataset_fn).items()})
                self._write_validation_images(eval_dataset_fn, epoch + 1)
            self._writers.write_epoch(epoch + 1, history)
            self._save()
            self._log(f"Epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4g}" for k, v in history.items()))
        metrics = {**history, "step": self._step()}
        with tf.io.gfile.GFile(os.path.join(cfg.model_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2)
        return metrics

    def _train_epoch(self, epoch: int, skip: int, steps: int,
                     train_dataset_fn: TrainDatasetFn) -> dict[str, float]:
        cfg = self.config
        progress = keras.utils.Progbar(steps, stateful_metrics=["loss", "iou", "img/s"],
                                       verbose=1 if cfg.verbose else 0)
        loss_sum, stats, images_seen = 0.0, np.zeros(2), 0
        start = time.perf_counter()
        batches = iter(train_dataset_fn(epoch, skip))
        for step_in_epoch in range(skip, steps):
            images, labels = next(batches)
            loss, batch_stats = self._train_fn(images, labels)
            loss = float(loss)
            if not math.isfinite(loss):
                raise RegressionDiverged(
                    f"Regression loss is {loss} at step {self._step()}; last good "
                    f"checkpoint: {self.manager.latest_checkpoint}. Lower --learning_rate."
                )
            loss_sum += loss
            stats += batch_stats.numpy()
            images_seen += int(images.shape[0])
            speed = images_seen / (time.perf_counter() - start)
            progress.update(step_in_epoch + 1, [
                ("loss", loss), ("iou", stats[0] / max(stats[1], 1)), ("img/s", speed)])
            with self._writers.train.as_default(step=self._step()):
                tf.summary.scalar("loss", loss)
            if self._step() % cfg.checkpoint_every == 0 and step_in_epoch + 1 < steps:
                self._save()
        return {
            "loss": loss_sum / max(steps - skip, 1),
            "mean_iou": stats[0] / max(stats[1], 1),
            "images_per_second": images_seen / max(time.perf_counter() - start, 1e-9),
        }

    def _log(self, message: str) -> None:
        if self.config.verbose:
            print(message, flush=True)

    def _step(self) -> int:
        return int(self.step.numpy())

    def _save(self) -> None:
        self.manager.save(checkpoint_number=self._step())
