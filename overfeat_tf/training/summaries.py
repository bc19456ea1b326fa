"""TensorBoard runs of a training directory, laid out as Keras' TensorBoard callback does.

`<model_dir>/train/` holds the training scalars and `<model_dir>/validation/` the
validation ones under the same tags, so TensorBoard draws the two runs of a tag as
overlaid curves: a history key `val_<name>` is written to `validation/` as
`epoch/<name>`, every other key to `train/` as `epoch/<name>`. Images a task draws on
validation data (e.g. predicted and true boxes) go to `validation/` as `boxes`.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

TRAIN_RUN = "train"
VALIDATION_RUN = "validation"
_VALIDATION_PREFIX = "val_"
# The validation images a task draws at each epoch end (`Task.epoch_images`).
IMAGES_TAG = "boxes"


class RunWriters:
    """The `train/` and `validation/` summary writers of `model_dir` (no-op writers
    when `enabled` is False, e.g. on a worker that is not the chief)."""

    def __init__(self, model_dir: str, enabled: bool = True):
        def writer(run: str):
            if not enabled:
                return tf.summary.create_noop_writer()
            return tf.summary.create_file_writer(os.path.join(model_dir, run))

        self.train = writer(TRAIN_RUN)
        self.validation = writer(VALIDATION_RUN)

    def write_epoch(self, step: int, history: Mapping[str, Any]) -> None:
        """Writes every float of `history` at `step` (see the module docstring)."""
        for key, value in history.items():
            if not isinstance(value, float):
                continue
            validation = key.startswith(_VALIDATION_PREFIX)
            writer = self.validation if validation else self.train
            name = key[len(_VALIDATION_PREFIX) :] if validation else key
            with writer.as_default(step=step):
                tf.summary.scalar(f"epoch/{name}", value)
        self.flush()

    def write_validation_images(self, step: int, images: np.ndarray) -> None:
        """Writes uint8 [n, h, w, 3] `images` to `validation/` as the image summary
        `IMAGES_TAG` at `step`."""
        with self.validation.as_default(step=step):
            tf.summary.image(IMAGES_TAG, images, max_outputs=len(images))
        self.validation.flush()

    def flush(self) -> None:
        self.train.flush()
        self.validation.flush()


def read_tags(run_dir: str) -> dict[str, list[int]]:
    """{tag: steps written, in file order} of the event files directly in `run_dir`
    (e.g. `<model_dir>/validation`); empty when there are none."""
    tags: dict[str, list[int]] = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
            event = tf.compat.v1.Event.FromString(record)
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    return tags
