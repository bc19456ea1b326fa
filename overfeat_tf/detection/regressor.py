"""The bounding-box regressor head (OverFeat section 4.2) and its run directory.

The regressor reads the same last pooled maps as the classifier, at every pooling offset:
a K x K convolution of 4096 units (K = the classifier's first FC kernel: 6 for AlexNet,
ZFNet and OverFeat fast, 5 for accurate), a 1x1 convolution of 1024 units, then a 1x1
convolution of 4 box edges per class (`per_class=True`, the paper's class-specific last
layer) or 4 in all (`per_class=False`, one box for any class, the single-class regressor
of OverFeat's winning ILSVRC-2013 entry). Hidden widths scale with the classifier's
`width`. Being convolutions, the head slides over any map exactly as the classifier does
(`overfeat_tf.evaluation.dense.slide_head`, dilated by the pool stride for all offsets).

Run directory: `<dir>/regressor.json` (`RegressorConfig`: how to rebuild the head, the
classifier run it reads, the scales it was trained at) and `tf.train.CheckpointManager`
checkpoints of `tf.train.Checkpoint(regressor=...)` (training adds its optimiser and
step). By default the directory is `<classifier_dir>/localization`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import keras
import tensorflow as tf

from overfeat_tf import layers as of_layers
from overfeat_tf import run_dir
from overfeat_tf.models import model_info
from overfeat_tf.models import spec as spec_lib

CONFIG_FILE = "regressor.json"
# OverFeat section 4.2: 4096 -> 1024 -> 4 (per class) units.
HIDDEN_UNITS = (4096, 1024)
# Layer names: stable end points, distinct from the classifier's fc6...
LAYER_NAMES = ("reg_fc1", "reg_fc2", "reg_boxes")


@dataclasses.dataclass(frozen=True)
class RegressorConfig:
    """What `regressor.json` records.

    Attributes:
      model: registry name of the classifier (its trunk feeds the head).
      num_classes: the classifier's classes.
      width: channel multiplier, the classifier's.
      per_class: 4 outputs per class (True) or 4 shared (False).
      classifier_dir: the classification run whose frozen trunk the head reads.
      scales: training scales, shorter side in pixels (evaluation's default).
      task: "localization" or "detection".
    """

    model: str
    num_classes: int
    width: float = 1.0
    per_class: bool = True
    classifier_dir: str = ""
    scales: tuple[int, ...] = ()
    task: str = "localization"

    @property
    def outputs(self) -> int:
        """Boxes predicted per location: num_classes (per-class) or 1 (shared)."""
        return self.num_classes if self.per_class else 1


def trunk_channels(model: str, width: float) -> int:
    """Channels of the last convolution's map at `width` (the regressor's input)."""
    last_conv = [row for row in model_info(model).spec.trunk if isinstance(row, spec_lib.Conv)][-1]
    return spec_lib.scaled(last_conv.filters, width, last_conv.groups)


def build_regressor(config: RegressorConfig) -> keras.Model:
    """The head: pooled maps `[b, H', W', c5]` -> box edges `[b, H, W, 4 * outputs]`.

    Applied directly (`regressor(pooled)`) it is the coarse, offset-0 head; the dense
    path runs its layers with `slide_head` instead. He-initialised hidden layers; the
    box layer starts at zero weights, i.e. predicting each location's own window.
    """
    info = model_info(config.model)
    if config.num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; received: {config.num_classes}")
    kernel = info.spec.head[0].kernel
    inputs = keras.Input((None, None, trunk_channels(config.model, config.width)), name="pooled")
    x = inputs
    for name, units, size in zip(LAYER_NAMES, HIDDEN_UNITS, (kernel, 1)):
        x = of_layers.FullyConnected2D(
            spec_lib.scaled(units, config.width),
            size,
            activation="relu",
            kernel_initializer="he_normal",
            name=name,
        )(x)
    x = of_layers.FullyConnected2D(
        4 * config.outputs, 1, kernel_initializer="zeros", name=LAYER_NAMES[-1]
    )(x)
    return keras.Model(inputs, x, name=f"{config.model}_regressor")


def head_layers(regressor: keras.Model) -> list[keras.layers.Conv2D]:
    """The head's convolutions in order (for `overfeat_tf.evaluation.dense.slide_head`)."""
    return [regressor.get_layer(name) for name in LAYER_NAMES]


def write_config(directory: str, config: RegressorConfig) -> None:
    """Writes `<directory>/regressor.json` atomically."""
    tf.io.gfile.makedirs(directory)
    run_dir.write_json(os.path.join(directory, CONFIG_FILE), dataclasses.asdict(config))


def read_config(directory: str) -> RegressorConfig:
    """The `RegressorConfig` of a regressor run; a clear error when there is none."""
    path = os.path.join(directory, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{directory!r} holds no regressor: {CONFIG_FILE} is missing "
            "(train one with overfeat-train-boxes)"
        )
    with tf.io.gfile.GFile(path) as f:
        fields: dict[str, Any] = json.load(f)
    fields["scales"] = tuple(fields.get("scales", ()))
    return RegressorConfig(**fields)


def restore_regressor(
    directory: str, checkpoint: str | None = None
) -> tuple[keras.Model, RegressorConfig]:
    """The trained head of a regressor run (latest checkpoint unless one is named)."""
    config = read_config(directory)
    path = checkpoint or tf.train.latest_checkpoint(directory)
    if path is None:
        raise FileNotFoundError(f"No regressor checkpoint in {directory!r}")
    regressor = build_regressor(config)
    tf.train.Checkpoint(regressor=regressor).restore(
        path
    ).expect_partial().assert_existing_objects_matched()
    return regressor, config
