"""Dropout on the outputs of the first two FC layers, and files saved before it moved.

AlexNet section 4.2: "We use dropout in the first two fully-connected layers", which
sets the output of each hidden neuron to zero with probability 0.5; OverFeat section 3.1
applies it to its 6th and 7th layers. So the layers after them are fed from dropout,
and pool5 is never dropped.
"""

import json
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf.models import fully_conv, legacy
from overfeat_tf.training import recipes
from overfeat_tf.training.trainer import TrainConfig, Trainer

TINY = {"num_classes": 3, "width": 0.0625, "dropout": 0.5, "init": "he"}

# (first FC, second FC, the layer after them) per model: AlexNet Fig. 2, ZFNet Fig. 3,
# OverFeat Tables 1 and 3.
FC_LAYERS = {
    "alexnet": ("fc6", "fc7", "fc8"),
    "zfnet": ("fc6", "fc7", "fc8"),
    "overfeat_fast": ("fc6", "fc7", "fc8"),
    "overfeat_accurate": ("fc7", "fc8", "fc9"),
}


def _images(size: int, count: int = 2) -> np.ndarray:
    return np.random.default_rng(0).normal(scale=50, size=(count, size, size, 3)).astype("float32")


@pytest.mark.parametrize("name", sorted(FC_LAYERS))
def test_the_two_fc_layers_after_the_first_are_fed_from_dropout(name):
    first, second, last = FC_LAYERS[name]
    model = overfeat_tf.build_model(name, **TINY)
    names = fully_conv.layer_names(model)
    pool = overfeat_tf.model_info(name).last_pool.name
    assert names[names.index(pool) :] == [
        pool,
        first,
        f"{first}_dropout",
        second,
        f"{second}_dropout",
        last,
        "logits",
    ]
    assert model.get_layer(second).input is model.get_layer(f"{first}_dropout").output
    assert model.get_layer(last).input is model.get_layer(f"{second}_dropout").output


def test_dropout_zeroes_the_fc_neurons_and_never_pool5():
    # AlexNet section 4.2: the dropped neurons are the FC layer's outputs.
    model = overfeat_tf.build_model("alexnet", **TINY)
    probe = keras.Model(
        model.input, [model.get_layer(n).output for n in ("pool5", "fc6", "fc6_dropout")]
    )
    pool5, fc6, dropped = (t.numpy() for t in probe(_images(227), training=True))
    assert pool5.min() >= 0 and (pool5 > 0).mean() > 0.2
    alive = fc6 > 0
    zeroed = alive & (dropped == 0)
    assert 0.3 < zeroed.sum() / alive.sum() < 0.7  # rate 0.5 of the live neurons
    np.testing.assert_allclose(dropped[alive & ~zeroed], 2 * fc6[alive & ~zeroed], rtol=1e-6)
    # fc6 itself is computed from the undropped pool5 map.
    fc6_again = model.get_layer("fc6")(pool5)
    np.testing.assert_allclose(fc6_again, fc6, rtol=1e-5, atol=1e-5)


def _old_keras_file(model: keras.Model, path) -> None:
    """Saves `model` as a `.keras` file laid out as before dropout moved, with conv2's
    config carrying `tower_devices` as files of that time did."""
    legacy.old_dropout_order(model).save(path)
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    for layer in config["config"]["layers"]:
        if layer["config"]["name"] == "conv2":
            layer["config"]["tower_devices"] = ["/GPU:0", "/GPU:1"]
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def test_keras_file_with_the_old_placement_and_tower_devices_loads(tmp_path):
    model = overfeat_tf.build_model("alexnet", **TINY)
    path = tmp_path / "old.keras"
    _old_keras_file(model, path)
    assert b"tower_devices" in zipfile.ZipFile(path).read("config.json")
    loaded = keras.saving.load_model(path)
    # It rebuilds the model it was saved as: dropout before fc6 and fc7.
    names = fully_conv.layer_names(loaded)
    assert names.index("fc6_dropout") == names.index("fc6") - 1
    images = _images(227)
    np.testing.assert_allclose(loaded(images), model(images), rtol=1e-5, atol=1e-5)


def test_run_checkpoint_with_the_old_placement_restores_into_the_new(tmp_path):
    model = overfeat_tf.build_model("alexnet", **TINY)
    old = legacy.old_dropout_order(model)
    run_dir.write_config(
        str(tmp_path), name="alexnet", build_kwargs=TINY, class_names=["a", "b", "c"]
    )
    tf.train.CheckpointManager(tf.train.Checkpoint(model=old), str(tmp_path), 1).save()
    restored, _ = run_dir.restore_model(str(tmp_path))
    names = fully_conv.layer_names(restored)
    assert names.index("fc6_dropout") == names.index("fc6") + 1  # the new placement
    images = _images(227)
    np.testing.assert_allclose(restored(images), model(images), rtol=1e-5, atol=1e-5)

    # The Trainer resumes such a run too, and keeps writing its layout.
    config = TrainConfig(
        model_dir=str(tmp_path),
        recipe=recipes.get_recipe("alexnet"),
        steps_per_epoch=1,
        epochs=1,
        batch_size=2,
        verbose=False,
        xla="off",
    )
    trainer = Trainer(
        config, tf.distribute.get_strategy(), lambda: overfeat_tf.build_model("alexnet", **TINY)
    )
    assert trainer.restored_from is not None
    np.testing.assert_allclose(trainer.model(images), model(images), rtol=1e-5, atol=1e-5)


def test_new_checkpoints_restore_as_they_are(tmp_path):
    model = overfeat_tf.build_model("alexnet", **TINY)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    assert legacy.checkpoint_view(model, path) is model
    assert legacy.checkpoint_view(model, None) is model
