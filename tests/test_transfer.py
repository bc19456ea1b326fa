"""Transfer learning (ZFNet section 5.2): copied weights, new class layer, frozen layers."""

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf import transfer
from overfeat_tf.training import recipes
from overfeat_tf.training.trainer import TrainConfig, Trainer

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

TINY = {"num_classes": 5, "width": 0.0625, "init": "he", "dropout": 0.5}


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory):
    """A run directory of a (randomly initialised) 5-class ZFNet: model.json + checkpoint."""
    directory = str(tmp_path_factory.mktemp("source"))
    keras.utils.set_random_seed(7)
    model = overfeat_tf.build_model("zfnet", **TINY)
    run_dir.save_model(directory, model, build_kwargs=TINY, class_names=[f"c{i}" for i in range(5)])
    return directory, model


def test_transfer_copies_all_but_the_class_layer(trained_dir):
    directory, source = trained_dir
    keras.utils.set_random_seed(8)
    model = transfer.transfer_model(directory, num_classes=3, freeze_through_layer="fc6")
    assert model.output.shape == (None, 3)
    for name in ("conv1", "conv5", "fc6", "fc7"):
        for a, b in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    assert model.get_layer("fc8").kernel.shape[-1] == 3
    trainable = [layer.name for layer in model.layers if layer.trainable_weights]
    assert trainable == ["fc7", "fc8"]
    assert transfer.transfer_build_kwargs(directory, 3) == ("zfnet", {**TINY, "num_classes": 3})


def test_frozen_weights_stay_unchanged_by_training(trained_dir, tmp_path):
    directory, _ = trained_dir
    config = TrainConfig(
        # AlexNet's recipe: the Trainer's ZFNet filter-RMS cap rescales every conv
        # kernel, frozen or not (reported to the Trainer's owner).
        model_dir=str(tmp_path / "transfer"),
        recipe=recipes.get_recipe("alexnet"),
        steps_per_epoch=3,
        epochs=1,
        batch_size=4,
        verbose=False,
    )
    trainer = Trainer(
        config, tf.distribute.get_strategy(), lambda: transfer.transfer_model(directory, 3, "conv5")
    )
    before = {layer.name: [w.copy() for w in layer.get_weights()] for layer in trainer.model.layers}
    rng = np.random.default_rng(0)
    images = rng.normal(size=(12, 224, 224, 3)).astype(np.float32)
    labels = rng.integers(0, 3, 12).astype(np.int32)

    def train_fn(epoch, skip, context):
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(4).skip(skip)

    trainer.fit(train_fn)
    assert int(trainer.step.numpy()) == 3
    frozen = transfer.freeze_through(trainer.model, "conv5")
    for layer in trainer.model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        changed = any(not np.array_equal(a, b) for a, b in zip(weights, before[layer.name]))
        assert changed == (layer.name not in frozen), layer.name
    assert {"conv1", "conv5"} <= set(frozen) and "fc6" not in frozen


def test_freeze_through_unknown_layer():
    model = overfeat_tf.build_model("alexnet", num_classes=2, width=0.0625)
    with pytest.raises(ValueError, match="valid: conv1, norm1"):
        transfer.freeze_through(model, "conv9")
