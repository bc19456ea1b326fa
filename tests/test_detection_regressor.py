"""The box-regressor head and its run directory (overfeat_tf/detection/regressor.py)."""

import numpy as np
import pytest
import tensorflow as tf

from overfeat_tf.detection import regressor as regressor_lib

ALEXNET = regressor_lib.RegressorConfig("alexnet", num_classes=12, width=0.125)


def _params(kernel, inputs, units):
    return kernel * kernel * inputs * units + units


@pytest.mark.parametrize(
    "config, expected",
    [
        # AlexNet at width 1/8: conv5 has 256 / 8 = 32 channels; a 6x6 conv to
        # 4096 / 8 = 512 units, 1x1 to 1024 / 8 = 128, 1x1 to 4 x 12 classes.
        (ALEXNET, _params(6, 32, 512) + _params(1, 512, 128) + _params(1, 128, 48)),
        # The shared last layer: 4 outputs whatever the class (662,192 - 6,192 + 516).
        (regressor_lib.RegressorConfig("alexnet", 12, 0.125, per_class=False), 656_516),
        # OverFeat accurate's 5x5 kernel (OverFeat section 4.2: 4096 -> 1024 -> 4 per
        # class), at width 1/4: 1024 / 4 = 256 input channels, 1024 and 256 units.
        (
            regressor_lib.RegressorConfig("overfeat_accurate", 10, 0.25),
            _params(5, 256, 1024) + _params(1, 1024, 256) + _params(1, 256, 40),
        ),
    ],
    ids=["alexnet_per_class", "alexnet_shared", "accurate_per_class"],
)
def test_parameter_count(config, expected):
    assert regressor_lib.build_regressor(config).count_params() == expected


def test_alexnet_per_class_count_by_hand():
    # 6*6*32*512 + 512 = 590,336; 512*128 + 128 = 65,664; 128*48 + 48 = 6,192.
    assert regressor_lib.build_regressor(ALEXNET).count_params() == 662_192


def test_shapes_slide_like_the_classifier():
    head = regressor_lib.build_regressor(ALEXNET)
    # The native 6x6 pooled map gives one location, a larger map one per 6x6 window.
    assert head(np.zeros((2, 6, 6, 32), np.float32)).shape == (2, 1, 1, 48)
    assert head(np.zeros((1, 9, 11, 32), np.float32)).shape == (1, 4, 6, 48)
    assert [layer.name for layer in regressor_lib.head_layers(head)] == list(
        regressor_lib.LAYER_NAMES
    )
    # The box layer starts at zero: every location first predicts its own window.
    assert not np.any(head(np.random.rand(1, 6, 6, 32).astype(np.float32)))


def test_config_and_checkpoint_round_trip(tmp_path):
    config = regressor_lib.RegressorConfig(
        "alexnet", 12, 0.125, per_class=False, classifier_dir="/runs/a", scales=(243, 275)
    )
    regressor_lib.write_config(str(tmp_path), config)
    head = regressor_lib.build_regressor(config)
    for variable in head.trainable_variables:
        variable.assign(tf.random.normal(variable.shape))
    tf.train.CheckpointManager(tf.train.Checkpoint(regressor=head), str(tmp_path), 1).save()
    restored, read = regressor_lib.restore_regressor(str(tmp_path))
    assert read == config
    for a, b in zip(head.weights, restored.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_missing_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="regressor.json is missing"):
        regressor_lib.restore_regressor(str(tmp_path))
    regressor_lib.write_config(str(tmp_path), ALEXNET)
    with pytest.raises(FileNotFoundError, match="No regressor checkpoint"):
        regressor_lib.restore_regressor(str(tmp_path))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        regressor_lib.build_regressor(regressor_lib.RegressorConfig("alexnet", 0))
