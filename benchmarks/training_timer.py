"""Steady-state training images/s of a model under a strategy, for the benchmarks.

Runs the project's training loop (`overfeat_tf.training.trainer.Trainer`) on one
in-memory batch repeated (no input pipeline cost) for two epochs and returns the second
epoch's images/s (the first traces and compiles).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable

# isort: off
import overfeat_tf  # noqa: F401  (first: turns oneDNN on before TensorFlow loads)
import keras
import numpy as np
import tensorflow as tf

from overfeat_tf.training import recipes
from overfeat_tf.training.trainer import TrainConfig, Trainer
# isort: on


def training_images_per_second(
    model_fn: Callable[[], keras.Model],
    strategy: tf.distribute.Strategy,
    *,
    input_size: int,
    batch_size: int,
    steps: int,
    num_classes: int = 1000,
    xla: bool = False,
) -> float:
    """Images/s of `steps` training steps of global `batch_size` after a warm-up epoch."""
    rng = np.random.default_rng(0)
    images = rng.normal(size=(batch_size, input_size, input_size, 3)).astype("float32")
    labels = rng.integers(0, num_classes, batch_size).astype("int32")

    def dataset_fn(epoch, skip, context):
        batch = context.get_per_replica_batch_size(batch_size)
        return tf.data.Dataset.from_tensors((images[:batch], labels[:batch])).repeat()

    recipe = dataclasses.replace(recipes.get_recipe("alexnet"), batch_size=batch_size)
    speeds = []
    with tempfile.TemporaryDirectory() as model_dir:
        config = TrainConfig(
            model_dir=model_dir,
            recipe=recipe,
            steps_per_epoch=steps,
            epochs=2,
            batch_size=batch_size,
            checkpoint_every=10**9,
            xla=xla,
            verbose=False,
        )
        trainer = Trainer(config, strategy, model_fn)
        trainer.fit(dataset_fn, on_epoch_end=lambda e, h: speeds.append(h["images_per_second"]))
    return speeds[-1]


def two_cpu_devices_without_gpus() -> None:
    """On a machine without GPUs, splits the CPU into two logical devices (they share its
    cores), so two-device placements run; call before TensorFlow starts its runtime."""
    if not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
