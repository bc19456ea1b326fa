"""The training loop: a custom `strategy.run` loop for every `tf.distribute` strategy.

Keras 3 `model.fit` fails under MultiWorkerMirroredStrategy (keras #20585), so one custom
loop serves one device, MirroredStrategy and MultiWorkerMirroredStrategy alike. Progress
lives in a `tf.train.Checkpoint` (model, optimiser, step, finished epochs, schedule) saved
every `checkpoint_every` steps and at each epoch end by the chief only; a restarted run
resumes from the last one, at the same step and position in the epoch.

What is trained is a `Task`: the loss and statistics of a batch, the optimiser, and the
name the model is saved under. `ClassificationTask` (the default) trains the classifiers;
`overfeat_tf.detection.train_regressor.RegressionTask` the box regressor.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf import run_dir as run_dir_lib
from overfeat_tf import runtime
from overfeat_tf.models import legacy
from overfeat_tf.training import constraints, schedules, strategies, summaries
from overfeat_tf.training.recipes import Recipe
from overfeat_tf.xla_choice import Calibration, XlaChoice, check_mode
from pipelines import ahead

# dataset_fn(epoch, skip_batches, input_context) -> per-replica batched dataset.
TrainDatasetFn = Callable[[int, int, tf.distribute.InputContext], tf.data.Dataset]
EvalDatasetFn = Callable[[tf.distribute.InputContext], tf.data.Dataset]

# "auto" calibrates XLA only on runs with at least this many steps left: the comparison
# takes 8 of them, and XLA's one-time compile (seconds to a minute on a CPU) needs tens of
# steps to pay back. Shorter runs stay plain.
XLA_CALIBRATION_MIN_STEPS = 50


class TrainingDiverged(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; the last good checkpoint is
    kept."""


class NoUsableData(RuntimeError):
    """A split yielded no image to train or evaluate on (every one unreadable)."""


class Task:
    """What a `Trainer` trains: the model's loss and statistics on a batch.

    A task's statistics are a float32 vector summed over batches and replicas; it turns
    the sums into named metrics. Subclasses set `checkpoint_name` (the model's name in
    checkpoints, which inference restores) and implement the methods below.
    """

    checkpoint_name = "model"
    progress_names: tuple[str, ...] = ()  # what `progress` returns, by name
    stats_size = 0  # length of `train_loss`'s statistics
    eval_size = 0  # length of `eval_sums`'s vector

    def optimizer(self, recipe: Recipe) -> keras.optimizers.Optimizer:
        """The optimiser, built under the strategy's scope."""
        return keras.optimizers.SGD(
            learning_rate=recipe.learning_rate,
            momentum=recipe.momentum,
            global_clipnorm=recipe.clip_norm,
        )

    def train_loss(self, model: keras.Model, inputs, labels) -> tuple[tf.Tensor, tf.Tensor]:
        """This replica's share of the batch's loss (gradients are summed over replicas),
        and the batch's statistics."""
        raise NotImplementedError

    def eval_sums(self, model: keras.Model, inputs, labels) -> tf.Tensor:
        """Sums over the batch for `eval_metrics` (float32 vector)."""
        raise NotImplementedError

    def train_metrics(self, stats: np.ndarray) -> dict[str, float]:
        """Named metrics of an epoch's summed `train_loss` statistics."""
        raise NotImplementedError

    def progress(self, stats: np.ndarray) -> list[tuple[str, float]]:
        """What the progress bar shows besides the loss (`progress_names`)."""
        return []

    def eval_metrics(self, sums: np.ndarray) -> dict[str, float]:
        """Named metrics of a split's summed `eval_sums`."""
        raise NotImplementedError

    def epoch_images(self, model: keras.Model) -> np.ndarray | None:
        """uint8 [n, h, w, 3] images showing `model` on validation data, written to the
        `validation/` run at every epoch end (the chief only); None: no images."""
        return None


class ClassificationTask(Task):
    """Softmax cross-entropy over the global batch; top-1 / top-5 error (%).

    Args:
      global_batch_size: images per step over all replicas (the loss's denominator).
    """

    progress_names = ("top1",)
    stats_size = 3
    eval_size = 4

    def __init__(self, global_batch_size: int) -> None:
        self.global_batch_size = global_batch_size

    def train_loss(self, model, inputs, labels):
        logits = model(inputs, training=True)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        loss = tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch_size)
        return loss, self._hits(labels, logits)

    def eval_sums(self, model, inputs, labels):
        logits = model(inputs, training=False)
        per_example = keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return tf.concat([[tf.reduce_sum(per_example)], self._hits(labels, logits)], 0)

    @staticmethod
    def _hits(labels, logits):
        """[top-1 hits, top-5 hits, examples] float32 [3]."""
        labels = tf.cast(labels, tf.int32)
        top1 = tf.math.in_top_k(labels, logits, 1)
        top5 = tf.math.in_top_k(labels, logits, min(5, logits.shape[-1]))
        return tf.stack(
            [
                tf.reduce_sum(tf.cast(top1, tf.float32)),
                tf.reduce_sum(tf.cast(top5, tf.float32)),
                tf.cast(tf.size(labels), tf.float32),
            ]
        )

    def train_metrics(self, stats):
        count = max(stats[2], 1)
        return {
            "top1_error": 100 * (1 - stats[0] / count),
            "top5_error": 100 * (1 - stats[1] / count),
        }

    def progress(self, stats):
        return [("top1", stats[0] / max(stats[2], 1))]

    def eval_metrics(self, sums):
        loss_sum, count = sums[0], max(sums[3], 1)
        return {
            "loss": loss_sum / count,
            **self.train_metrics(sums[1:]),
            "examples": int(sums[3]),
        }


@dataclasses.dataclass
class TrainConfig:
    """What one run trains, for how long, and where it writes.

    Attributes:
      model_dir: checkpoints, TensorBoard summaries and `metrics.json`.
      recipe: the paper's optimiser and schedule (flags already applied).
      steps_per_epoch: global steps that make one pass over the training split.
      epochs: epochs to train; `max_steps` stops earlier when set.
      batch_size: global batch, images.
      mean, std: the input normalisation, to show input images in TensorBoard.
      checkpoint_every: steps between checkpoints (besides each epoch end).
      xla: compile the forward/backward pass with XLA: "on", "off", or "auto" (time
        both on the run's first steps and keep the faster; `overfeat_tf.xla_choice`).
    """

    model_dir: str
    recipe: Recipe
    steps_per_epoch: int
    epochs: int
    batch_size: int
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    max_steps: int | None = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    xla: str = "auto"
    log_every: int = 20
    verbose: bool = True


class Trainer:
    """Trains a model built under `strategy.scope()` by `model_fn` on `task` (default:
    classification, `ClassificationTask`)."""

    def __init__(
        self,
        config: TrainConfig,
        strategy: tf.distribute.Strategy,
        model_fn: Callable[[], keras.Model],
        optimizer_fn: Callable[[], keras.optimizers.Optimizer] | None = None,
        task: Task | None = None,
    ) -> None:
        self.config = config
        self.strategy = strategy
        self.is_chief = strategies.is_chief(strategy)
        self.task = task or ClassificationTask(config.batch_size)
        recipe = config.recipe
        if config.batch_size % strategy.num_replicas_in_sync:
            raise ValueError(
                f"batch_size {config.batch_size} is not divisible by the "
                f"{strategy.num_replicas_in_sync} replicas"
            )
        with strategy.scope():
            self.model = model_fn()
            self.optimizer = (optimizer_fn or functools.partial(self.task.optimizer, recipe))()
            self.optimizer.build(self.model.trainable_variables)
            # Mixed float16: the loss is scaled, and gradients overflow by design.
            self._loss_scaled = isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.epochs_done = tf.Variable(0, dtype=tf.int64, trainable=False, name="epochs_done")
            self.plateau = schedules.PlateauSchedule(recipe)
        self._kernels = [v for v in self.model.trainable_variables if "kernel" in v.path]
        self._conv_kernels = [
            layer.kernel
            for layer in self.model.layers
            if isinstance(layer, keras.layers.Conv2D)
            and layer.name.startswith("conv")
            and layer.trainable  # frozen filters (transfer) stay as they are
        ]
        # Every worker saves (saving may run collectives); non-chiefs into a scratch dir.
        directory = (
            config.model_dir
            if self.is_chief
            else os.path.join(config.model_dir, f".scratch_{strategies.worker_id()}")
        )
        if self.is_chief:
            run_dir_lib.remove_partial_checkpoints(directory)
        checkpoint = tf.train.Checkpoint(
            # A run begun before dropout moved keeps its checkpoints' layout.
            **{
                self.task.checkpoint_name: legacy.checkpoint_view(
                    self.model, tf.train.latest_checkpoint(directory)
                )
            },
            optimizer=self.optimizer,
            step=self.step,
            epochs_done=self.epochs_done,
            plateau=self.plateau,
        )
        self.manager = tf.train.CheckpointManager(
            checkpoint, directory, max_to_keep=config.keep_checkpoints
        )
        self.restored_from = self.manager.restore_or_initialize()
        check_mode(config.xla)
        # The same step, plain and with the forward/backward pass XLA-compiled.
        self._grad_fns = {
            xla: tf.function(self._gradients, jit_compile=xla) for xla in (False, True)
        }
        self._train_fns = {
            xla: tf.function(functools.partial(self._distributed_train_step, grad_fn))
            for xla, grad_fn in self._grad_fns.items()
        }
        self._calibration = Calibration(config.xla)
        self._eval_fn = tf.function(self._distributed_eval_step)
        self._writers = summaries.RunWriters(config.model_dir, self.is_chief)
        self._writer = self._writers.train

    # ---- one step -------------------------------------------------------------------

    def _gradients(self, images, labels):
        """Per-replica loss, gradients and the task's statistics.

        The loss is the task's (classification: the cross-entropy averaged over the global
        batch) plus coupled L2 weight decay on the kernels, `wd / 2 * sum(w ** 2)` (its
        gradient `wd * w` joins the gradient before the momentum update, AlexNet section 5),
        split across replicas because the optimiser sums their gradients.
        """
        decay = self.config.recipe.weight_decay / self.strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss, stats = self.task.train_loss(self.model, images, labels)
            total = loss
            if decay:
                total += decay / 2 * tf.add_n([tf.reduce_sum(tf.square(k)) for k in self._kernels])
            if self._loss_scaled:
                total = self.optimizer.scale_loss(total)
        grads = tape.gradient(total, self.model.trainable_variables)
        return loss, grads, stats

    @staticmethod
    def _squared_norm(grads) -> tf.Tensor:
        """Sum of squares of every gradient entry, float32 []: NaN or inf when any is.

        Computed with multiplies and sums only, which propagate NaN on every CPU kernel
        (a max or ReLU may not), so divergence is seen even where the loss stays finite.
        """
        return tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, tf.float32))) for g in grads])

    def _replica_train_step(self, grad_fn, images, labels):
        loss, grads, hits = grad_fn(images, labels)
        self.optimizer.apply_gradients(zip(grads, self.model.trainable_variables))
        # The scaling optimizer skips the steps whose scaled gradients overflowed.
        squared_norm = tf.constant(0.0) if self._loss_scaled else self._squared_norm(grads)
        return loss, squared_norm, hits, images[:4]

    def _distributed_train_step(self, grad_fn, iterator):
        images, labels = next(iterator)
        loss, squared_norm, hits, images = self.strategy.run(
            self._replica_train_step, args=(grad_fn, images, labels)
        )
        if self.config.recipe.max_filter_rms:
            constraints.renormalize_filters(self._conv_kernels, self.config.recipe.max_filter_rms)
        self.step.assign_add(1)
        reduce = self.strategy.reduce
        # Summed, not maxed, over replicas: a sum keeps a replica's NaN.
        health = tf.stack([reduce("SUM", loss, axis=None), reduce("SUM", squared_norm, axis=None)])
        return health, reduce("SUM", hits, axis=None), images

    def _distributed_eval_step(self, batch):
        def replica_step(images, labels):
            return self.task.eval_sums(self.model, images, labels)

        sums = self.strategy.run(replica_step, args=batch)
        return self.strategy.reduce("SUM", sums, axis=None)

    def train_step(self, iterator, xla: bool | None = None) -> tuple[tf.Tensor, tf.Tensor]:
        """One global step (gradients, update, filter cap, step + 1) on `iterator`'s next batch.

        Args:
          iterator: over a dataset from `strategy.distribute_datasets_from_function`.
          xla: run the XLA-compiled version; None: as chosen (`xla_choice`; plain while
            "auto" has not decided yet).

        Returns:
          The loss summed over replicas (classification: the global batch's mean
          cross-entropy) and the task's statistics (classification: [top-1 hits, top-5
          hits, examples] float32 [3]), summed over replicas.
        """
        if xla is None:
            xla = self.xla_choice.xla if self.xla_choice else False
        health, hits, _ = self._train_fns[xla](iterator)
        return health[0], hits

    @property
    def xla_choice(self) -> XlaChoice | None:
        """Whether steps run XLA-compiled, and why; None while "auto" is still timing."""
        return self._calibration.choice

    def _agree_across_workers(self, choice: XlaChoice) -> XlaChoice:
        """Multi-worker runs decide on the workers' mean timings: every worker must run the
        same step function, or their collectives would not match."""
        if not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy):
            return choice
        local = [choice.plain_seconds, choice.xla_seconds, choice.compile_seconds]
        per_replica = self.strategy.run(lambda: tf.constant(local, tf.float64))
        plain, xla, compile_seconds = self.strategy.reduce("MEAN", per_replica, axis=None).numpy()
        return dataclasses.replace(
            choice,
            xla=bool(xla < plain),
            plain_seconds=float(plain),
            xla_seconds=float(xla),
            compile_seconds=float(compile_seconds),
        )

    # ---- the loop -------------------------------------------------------------------

    def learning_rate_for(self, epoch: int) -> float:
        recipe = self.config.recipe
        if recipe.schedule == "step":
            return schedules.step_rate(recipe, epoch)
        return self.plateau.rate()

    def evaluate(self, eval_dataset_fn: EvalDatasetFn) -> dict[str, float]:
        """The task's metrics over the whole evaluation split (classification: loss and
        top-1 / top-5 error, %)."""
        dataset = self.strategy.distribute_datasets_from_function(eval_dataset_fn)
        totals = np.zeros(self.task.eval_size)
        for batch in dataset:
            totals += self._eval_fn(batch).numpy()
        metrics = self.task.eval_metrics(totals)
        if metrics.get("examples", 1) == 0:
            raise NoUsableData(
                "No usable image in the evaluation split: every one was "
                "skipped as unreadable (see the messages above)"
            )
        return metrics

    def fit(
        self,
        train_dataset_fn: TrainDatasetFn,
        eval_dataset_fn: EvalDatasetFn | None = None,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Trains to `epochs` (or `max_steps`), evaluating after every epoch.

        `train_dataset_fn(epoch, skip, context)` is called once per epoch; from the second
        epoch on, on a background thread while the previous epoch trains (`pipelines.ahead`).

        Returns the final metrics, also written to `<model_dir>/metrics.json`.
        Raises `TrainingDiverged` on a NaN/inf loss, leaving the last good checkpoint.
        """
        cfg = self.config
        total_steps = cfg.epochs * cfg.steps_per_epoch
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        if self.restored_from:
            self._log(f"Resumed from {self.restored_from} at step {self._step()}.")
        if self.xla_choice is None and total_steps - self._step() < XLA_CALIBRATION_MIN_STEPS:
            self._calibration.skip(f"{total_steps - self._step()} steps left, too few to time XLA")
        if self.xla_choice is not None:
            self._log(f"Training step: {self.xla_choice.summary()}")
        # Each epoch's input iterator, the next one built (and its buffers filled) while the
        # current epoch trains.
        iterators = ahead.Ahead(
            lambda key: iter(
                self.strategy.distribute_datasets_from_function(
                    lambda context: ahead.warm(train_dataset_fn(*key, context))
                )
            )
        )
        with iterators:
            history = self._fit_epochs(total_steps, iterators, eval_dataset_fn, on_epoch_end)
        metrics_file = os.path.join(cfg.model_dir, "metrics.json")
        if not history and tf.io.gfile.exists(metrics_file):
            self._log("Nothing left to train; metrics.json kept.")
            with tf.io.gfile.GFile(metrics_file) as f:
                return json.load(f)
        metrics = {**history, "step": self._step(), "epochs": int(self.epochs_done.numpy())}
        if self.xla_choice is not None:
            metrics["xla"] = self.xla_choice.as_dict()
        metrics["onednn"] = runtime.onednn_record()
        if self.is_chief:
            run_dir_lib.write_json(metrics_file, metrics)
        self._cleanup_scratch()
        return metrics

    def _fit_epochs(
        self,
        total_steps: int,
        iterators: ahead.Ahead,
        eval_dataset_fn: EvalDatasetFn | None,
        on_epoch_end: Callable[[int, dict[str, Any]], None] | None,
    ) -> dict[str, Any]:
        """`fit`'s loop over epochs, each read from `iterators.take((epoch, skip))`;
        returns the last epoch's history ({} when nothing was left to train)."""
        cfg = self.config
        history: dict[str, Any] = {}
        # Also finishes the bookkeeping of an epoch whose last step ran before a restart.
        while self._step() < total_steps or self._epoch_end_pending():
            epoch = int(self.epochs_done.numpy())
            skip = self._step() - epoch * cfg.steps_per_epoch
            steps = min(cfg.steps_per_epoch, total_steps - epoch * cfg.steps_per_epoch)
            iterator = iterators.take((epoch, skip)) if skip < steps else None
            if (epoch + 1) * cfg.steps_per_epoch < total_steps:
                iterators.prepare((epoch + 1, 0))
            history = self._train_epoch(epoch, skip, steps, iterator)
            # A run stopped by max_steps mid-epoch leaves the epoch open, to resume.
            complete = self._step() >= (epoch + 1) * cfg.steps_per_epoch
            if eval_dataset_fn is not None:
                val = self.evaluate(eval_dataset_fn)
                history.update({f"val_{k}": v for k, v in val.items()})
                plateau = cfg.recipe.schedule == "plateau"
                if complete and plateau and self.plateau.update(val["top1_error"]):
                    self._log(
                        f"Validation error plateaued: learning rate -> {self.plateau.rate():g}"
                    )
            if complete:
                self.epochs_done.assign(epoch + 1)
            self._write_epoch_summaries(epoch, history)
            self._save()
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
            self._log(
                f"Epoch {epoch + 1}: "
                + ", ".join(f"{k} {v:.4g}" for k, v in history.items() if isinstance(v, float))
            )
        return history

    def _epoch_end_pending(self) -> bool:
        """True when the next epoch's steps all ran but it is not marked done."""
        return (int(self.epochs_done.numpy()) + 1) * self.config.steps_per_epoch <= self._step()

    def _train_epoch(self, epoch, skip, steps, iterator) -> dict[str, Any]:
        """Steps `skip` to `steps` of `epoch`, reading batches from `iterator` (None when
        no step is left)."""
        cfg = self.config
        rate = self.learning_rate_for(epoch)
        self.optimizer.learning_rate = rate
        # A progress bar on a terminal; in a log file, only the line per epoch.
        progress = keras.utils.Progbar(
            steps,
            stateful_metrics=["loss", *self.task.progress_names, "img/s"],
            verbose=1 if self._verbose and sys.stdout.isatty() else 0,
        )
        totals = np.zeros(self.task.stats_size)
        loss_sum = 0.0
        start = time.perf_counter()
        images_seen = 0
        for step_in_epoch in range(skip, steps):
            deciding = self.xla_choice is None
            step_start = time.perf_counter()
            try:
                health, hits, images = self._train_fns[self._calibration.next_xla()](iterator)
            except tf.errors.OutOfRangeError:
                raise NoUsableData(
                    f"The training data ran out at step {self._step()} (epoch {epoch + 1}): "
                    "no usable image in the training split (every one skipped as unreadable), "
                    "or a dataset that does not repeat"
                ) from None
            loss, squared_norm = (float(x) for x in health.numpy())
            if deciding:
                self._calibration.record(time.perf_counter() - step_start)
                if self.xla_choice is not None:
                    self._calibration.choice = self._agree_across_workers(self.xla_choice)
                    self._log(f"\nTraining step: {self.xla_choice.summary()}")
            if not (math.isfinite(loss) and math.isfinite(squared_norm)):
                raise TrainingDiverged(
                    f"Loss is {loss}, gradient norm {math.sqrt(squared_norm)} at step "
                    f"{self._step()} (epoch {epoch + 1}); last good checkpoint: "
                    f"{self.manager.latest_checkpoint}. Lower --learning_rate or check the "
                    "input data."
                )
            totals += hits.numpy()
            loss_sum += loss
            images_seen += cfg.batch_size
            speed = images_seen / (time.perf_counter() - start)
            progress.update(
                step_in_epoch + 1,
                [("loss", loss), *self.task.progress(totals), ("img/s", speed)],
            )
            step = self._step()
            if step_in_epoch == skip:
                self._write_images(images, step)
            if step % cfg.log_every == 0:
                with self._writer.as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("learning_rate", rate)
                    tf.summary.scalar("images_per_second", speed)
            if step % cfg.checkpoint_every == 0 and step_in_epoch + 1 < steps:
                self._save()
        return {
            "loss": loss_sum / max(steps - skip, 1),
            **self.task.train_metrics(totals),
            "learning_rate": rate,
            "images_per_second": images_seen / max(time.perf_counter() - start, 1e-9),
        }

    # ---- bookkeeping ----------------------------------------------------------------

    @property
    def _verbose(self) -> bool:
        return self.config.verbose and self.is_chief

    def _log(self, message: str) -> None:
        if self._verbose:
            print(message, flush=True)

    def _step(self) -> int:
        return int(self.step.numpy())

    def _save(self) -> None:
        self.manager.save(checkpoint_number=self._step())

    def _cleanup_scratch(self) -> None:
        if not self.is_chief:
            shutil.rmtree(self.manager.directory, ignore_errors=True)

    def _write_epoch_summaries(self, epoch: int, history: dict[str, Any]) -> None:
        self._writers.write_epoch(epoch + 1, history)
        if self.is_chief:
            images = self.task.epoch_images(self.model)
            if images is not None:
                self._writers.write_validation_images(epoch + 1, images)

    def _write_images(self, images, step: int) -> None:
        if not self.is_chief:
            return
        local = self.strategy.experimental_local_results(images)[0][:4]
        pixels = tf.cast(local, tf.float32) * self.config.std + self.config.mean
        with self._writer.as_default(step=step):
            tf.summary.image("inputs", tf.clip_by_value(pixels / 255.0, 0.0, 1.0), max_outputs=4)
