"""TensorBoard layout: train/ and validation/ runs with the same tags, and validation
images with boxes from the regressor trainer, read back from the event files."""

import keras
import numpy as np
import tensorflow as tf

import overfeat_tf
from overfeat_tf.detection import regressor as regressor_lib
from overfeat_tf.detection import train_regressor
from overfeat_tf.training import summaries


def test_validation_keys_go_to_their_own_run_under_the_same_tag(tmp_path):
    writers = summaries.RunWriters(str(tmp_path))
    for epoch in (1, 2):
        writers.write_epoch(epoch, {"loss": 1.0 / epoch, "val_loss": 2.0, "top1_error": 50.0,
                                    "val_top1_error": 60.0, "lr_drops": 3})
    train, validation = (summaries.read_tags(str(tmp_path / run))
                         for run in ("train", "validation"))
    assert train == {"epoch/loss": [1, 2], "epoch/top1_error": [1, 2]}
    assert validation == train  # same tags: TensorBoard overlays the two runs


def _batches(count, seed):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(count, 2, 96, 96, 3)).astype(np.float32)
    boxes = np.zeros((count, 2, 32, 4), np.float32)
    boxes[:, :, 0] = [0.1, 0.2, 0.9, 0.8]
    labels = np.full((count, 2, 32), -1, np.int32)
    labels[:, :, 0] = 1
    return [(tf.constant(images[i]), {"boxes": tf.constant(boxes[i]),
                                      "box_labels": tf.constant(labels[i]),
                                      "num_boxes": tf.constant([1, 1], tf.int32)})
            for i in range(count)]


def test_regressor_runs_log_scalars_per_run_and_validation_images(tmp_path):
    keras.utils.set_random_seed(0)
    classifier = overfeat_tf.build_model("alexnet", 3, width=0.0625, init="he", dropout=0.0)
    config = regressor_lib.RegressorConfig("alexnet", 3, width=0.0625, scales=(227,))
    trainer = train_regressor.RegressorTrainer(
        train_regressor.RegressorTrainConfig(model_dir=str(tmp_path), scales=[227],
                                             steps_per_epoch=2, epochs=1, verbose=False),
        classifier, regressor_lib.build_regressor(config))
    train_batches, eval_batches = _batches(2, 0), _batches(1, 1)
    trainer.fit(lambda epoch, skip: iter(train_batches[skip:]), lambda: _Dataset(eval_batches))
    train, validation = (summaries.read_tags(str(tmp_path / run))
                         for run in ("train", "validation"))
    assert {"epoch/loss", "epoch/mean_iou"} <= set(train) and train["loss"] == [1, 2]
    assert {"epoch/loss", "epoch/mean_iou", "boxes"} == set(validation)
    pictures = trainer.validation_images(*eval_batches[0])
    assert pictures.shape == (2, 227, 227, 3) and pictures.dtype == np.uint8
    # The true box (0.1, 0.2, 0.9, 0.8) is outlined in green (red boxes may cross it).
    top, left, bottom = int(0.1 * 227), int(0.2 * 227), int(0.9 * 227)
    edge = pictures[0, top + 2:bottom - 2, left]
    assert np.all(edge == [0, 200, 0], axis=-1).mean() > 0.5


class _Dataset(list):
    """A list of batches with `take`, standing in for a tf.data validation set."""

    def take(self, count):
        return self[:count]
