"""The model zoo against the papers' tables."""

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import models

# Parameter counts for 1000 classes, from the papers' layer tables (AlexNet Fig. 2,
# ZFNet Fig. 3, OverFeat Tables 1 and 3).
PAPER_PARAMETERS = {
    "alexnet": 60_965_224,
    "zfnet": 62_357_608,
    "overfeat_fast": 145_920_872,
    "overfeat_accurate": 144_656_488,
}

# Spatial size of each layer's output at native input size.
PAPER_MAP_SIZES = {
    # AlexNet section 3.5 / Fig. 2: 55 -> 27 -> 13 -> 6.
    "alexnet": {
        "conv1": 55,
        "pool1": 27,
        "conv2": 27,
        "pool2": 13,
        "conv3": 13,
        "conv4": 13,
        "conv5": 13,
        "pool5": 6,
        "fc6": 1,
        "fc8": 1,
    },
    # ZFNet Fig. 3: 110 -> 55 -> 26 -> 13 -> 6 (pools round up).
    "zfnet": {
        "conv1": 110,
        "pool1": 55,
        "conv2": 26,
        "pool2": 13,
        "conv3": 13,
        "conv5": 13,
        "pool5": 6,
        "fc6": 1,
        "fc8": 1,
    },
    # OverFeat Table 1 (fast): 56 -> 28 -> 24 -> 12 -> 12 -> 6 -> 1.
    "overfeat_fast": {
        "conv1": 56,
        "pool1": 28,
        "conv2": 24,
        "pool2": 12,
        "conv3": 12,
        "conv5": 12,
        "pool5": 6,
        "fc6": 1,
        "fc8": 1,
    },
    # OverFeat Table 3 (accurate): 108 -> 36 -> 30 -> 15 -> 15 -> 5 -> 1.
    "overfeat_accurate": {
        "conv1": 108,
        "pool1": 36,
        "conv2": 30,
        "pool2": 15,
        "conv3": 15,
        "conv6": 15,
        "pool6": 5,
        "fc7": 1,
        "fc9": 1,
    },
}

NATIVE_SIZES = {"alexnet": 227, "zfnet": 224, "overfeat_fast": 231, "overfeat_accurate": 221}


def test_registry_names_and_sizes():
    assert set(overfeat_tf.MODEL_NAMES) == set(NATIVE_SIZES)
    for name, size in NATIVE_SIZES.items():
        assert overfeat_tf.native_input_size(name) == size


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="alexnet, zfnet, overfeat_fast, overfeat_accurate"):
        overfeat_tf.build_model("vgg16")


@pytest.mark.parametrize("name", sorted(PAPER_PARAMETERS))
def test_parameter_count_matches_paper(name):
    assert overfeat_tf.build_model(name).count_params() == PAPER_PARAMETERS[name]


@pytest.mark.parametrize("name", sorted(PAPER_MAP_SIZES))
def test_layer_output_sizes_match_paper(name):
    model = overfeat_tf.build_model(name, num_classes=7, width=0.0625)
    for layer_name, size in PAPER_MAP_SIZES[name].items():
        assert model.get_layer(layer_name).output.shape[1:3] == (size, size), layer_name
    assert model.output.shape == (None, 7)


@pytest.mark.parametrize("name", sorted(NATIVE_SIZES))
def test_width_scales_channels_not_geometry(name):
    full = overfeat_tf.build_model(name, num_classes=5)
    half = overfeat_tf.build_model(name, num_classes=5, width=0.5)
    for a, b in zip(full.layers[1:], half.layers[1:]):
        assert a.name == b.name
        assert a.output.shape[1:3] == b.output.shape[1:3]
        if a.name.startswith(("conv", "fc")) and a.name not in ("fc8", "fc9", "conv1_pad"):
            assert b.output.shape[-1] == a.output.shape[-1] // 2, a.name
    assert half.output.shape == (None, 5)


def test_alexnet_biases_are_one_where_the_paper_says():
    # AlexNet section 5: "We initialized the neuron biases in the second, fourth, and
    # fifth convolutional layers, as well as in the fully-connected hidden layers, with
    # the constant 1 ... remaining layers with the constant 0."
    model = overfeat_tf.build_model("alexnet", num_classes=3, width=0.0625)
    for layer_name, value in [
        ("conv1", 0),
        ("conv2", 1),
        ("conv3", 0),
        ("conv4", 1),
        ("conv5", 1),
        ("fc6", 1),
        ("fc7", 1),
        ("fc8", 0),
    ]:
        np.testing.assert_array_equal(model.get_layer(layer_name).bias.numpy(), value)
    kernel = model.get_layer("fc6").kernel.numpy()
    assert abs(kernel.std() - 0.01) < 0.001  # weights N(0, 0.01)


@pytest.mark.parametrize("name", sorted(NATIVE_SIZES))
def test_trunk_and_classifier_reproduce_the_model_and_slide(name):
    model = overfeat_tf.build_model(name, num_classes=4, width=0.0625)
    info = overfeat_tf.model_info(name)
    size = info.input_size
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype("float32")
    trunk, head = models.trunk(model), models.classifier(model)
    np.testing.assert_allclose(head(trunk(images))[:, 0, 0, :], model(images), rtol=1e-5, atol=1e-5)
    # A larger input gives a larger map, one cell per `stride` pixels (OverFeat 3.5).
    bigger = np.zeros((1, size + 2 * info.stride, size + info.stride, 3), "float32")
    assert head(trunk(bigger)).shape == (1, 3, 2, 4)
    # The views share the model's variables: no weight copies.
    model_vars = {id(v) for v in model.weights}
    assert {id(v) for v in trunk.weights + head.weights} <= model_vars
