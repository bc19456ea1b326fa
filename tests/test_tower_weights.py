"""Per-tower weights on one device pair (/CPU:0 twice): whole in every saved form.

The two-device checks (each slice on its own device) are in test_towers.py.
"""

import keras
import numpy as np

import overfeat_tf
from overfeat_tf import transfer
from overfeat_tf.models import tower_weights, towers

SAME = ("/CPU:0", "/CPU:0")
TINY = {"num_classes": 3, "width": 0.0625, "dropout": 0.0, "init": "he"}


def _images() -> np.ndarray:
    return np.random.default_rng(1).normal(scale=50, size=(2, 227, 227, 3)).astype("float32")


def test_towers_hold_one_variable_per_tower_and_slice():
    placed = overfeat_tf.build_model("alexnet", **TINY, tower_devices=SAME)
    conv2 = placed.get_layer("conv2")
    assert isinstance(conv2.kernel, tower_weights.TowerWeight)
    assert [v.shape for v in conv2.trainable_variables] == [(5, 5, 3, 8), (5, 5, 3, 8), (8,), (8,)]
    assert conv2.kernel.shape == (5, 5, 3, 16)
    assert len(placed.get_layer("fc8").trainable_variables) == 2  # one tower: the first


def test_export_weight_files_and_keras_files_hold_whole_weights(tmp_path):
    placed = overfeat_tf.build_model("alexnet", **TINY, tower_devices=SAME)
    images = _images()
    expected = placed(images).numpy()

    plain = towers.default_placement(placed)
    assert not isinstance(plain, towers.TowerModel)
    assert not any(
        isinstance(layer.kernel, tower_weights.TowerWeight)
        for layer in plain.layers
        if isinstance(layer, keras.layers.Conv2D)
    )
    np.testing.assert_allclose(plain(images), expected, rtol=1e-5, atol=1e-4)

    placed.save_weights(tmp_path / "placed.weights.h5")
    default = overfeat_tf.build_model("alexnet", **TINY)
    default.load_weights(tmp_path / "placed.weights.h5")
    np.testing.assert_allclose(default(images), expected, rtol=1e-5, atol=1e-4)
    again = overfeat_tf.build_model("alexnet", **TINY, tower_devices=SAME)
    default.save_weights(tmp_path / "default.weights.h5")
    again.load_weights(tmp_path / "default.weights.h5")
    np.testing.assert_allclose(again(images), expected, rtol=1e-5, atol=1e-4)

    placed.save(tmp_path / "placed.keras")
    loaded = keras.saving.load_model(tmp_path / "placed.keras")
    assert isinstance(loaded, towers.TowerModel)
    np.testing.assert_allclose(loaded(images), expected, rtol=1e-5, atol=1e-4)


def test_transfer_copies_a_tower_runs_weights_whole():
    placed = overfeat_tf.build_model("alexnet", **TINY, tower_devices=SAME)
    target = overfeat_tf.build_model("alexnet", **{**TINY, "num_classes": 5})
    copied = transfer.copy_matching_weights(placed, target)
    assert copied == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    np.testing.assert_array_equal(
        target.get_layer("fc7").kernel.numpy(), placed.get_layer("fc7").kernel.numpy()
    )
