"""Architecture variants (`overfeat_tf.models.variants`): the papers' ablations.

Parameter counts are computed by hand from the layer tables (AlexNet section 3 and
Fig. 2, ZFNet Fig. 3 and section 5 / Table 3), at width 1 and 1000 classes.
"""

import keras
import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf.models import variants


def conv(kernel, inputs, outputs, groups=1):
    """Weights + biases of a `kernel` x `kernel` convolution (FC layers are convs too)."""
    return kernel * kernel * (inputs // groups) * outputs + outputs


# ZFNet Fig. 3: 7x7 conv1, 96-256-384-384-256 maps, fc6 6x6 on 256 maps, 4096, 1000.
ZFNET_CONV1, ZFNET_CONV2 = conv(7, 3, 96), conv(5, 96, 256)
ZFNET_CONV345 = conv(3, 256, 384) + conv(3, 384, 384) + conv(3, 384, 256)
ZFNET_FC = conv(6, 256, 4096) + conv(1, 4096, 4096) + conv(1, 4096, 1000)

HAND_COUNTS = {
    # AlexNet section 3.2: one tower has half the kernels of conv1-4 (48, 128, 192, 192)
    # and the same conv5 (256) and FC layers; nothing is grouped.
    "alexnet-towers1": (
        conv(11, 3, 48)
        + conv(5, 48, 128)
        + conv(3, 128, 192)
        + conv(3, 192, 192)
        + conv(3, 192, 256)
        + conv(6, 256, 4096)
        + conv(1, 4096, 4096)
        + conv(1, 4096, 1000)
    ),
    # ZFNet Table 3 rows: removed layers; the first remaining FC layer is 6x6 on pool5.
    "zfnet-noconv3-noconv4": ZFNET_CONV1 + ZFNET_CONV2 + conv(3, 256, 256) + ZFNET_FC,
    "zfnet-nofc7": (
        ZFNET_CONV1 + ZFNET_CONV2 + ZFNET_CONV345 + conv(6, 256, 4096) + conv(1, 4096, 1000)
    ),
    "zfnet-nofc6-nofc7": ZFNET_CONV1 + ZFNET_CONV2 + ZFNET_CONV345 + conv(6, 256, 1000),
    "zfnet-noconv3-noconv4-nofc6-nofc7": (
        ZFNET_CONV1 + ZFNET_CONV2 + conv(3, 256, 256) + conv(6, 256, 1000)
    ),
    # AlexNet with the four layers removed: conv5 keeps its two towers.
    "alexnet-noconv3-noconv4-nofc6-nofc7": (
        conv(11, 3, 96) + conv(5, 96, 256, 2) + conv(3, 256, 256, 2) + conv(6, 256, 1000)
    ),
    "zfnet-maps512_1024_512": (
        ZFNET_CONV1
        + ZFNET_CONV2
        + conv(3, 256, 512)
        + conv(3, 512, 1024)
        + conv(3, 1024, 512)
        + conv(6, 512, 4096)
        + conv(1, 4096, 4096)
        + conv(1, 4096, 1000)
    ),
    "zfnet-fc8192": (
        ZFNET_CONV1
        + ZFNET_CONV2
        + ZFNET_CONV345
        + conv(6, 256, 8192)
        + conv(1, 8192, 8192)
        + conv(1, 8192, 1000)
    ),
    "zfnet-fc2048": (
        ZFNET_CONV1
        + ZFNET_CONV2
        + ZFNET_CONV345
        + conv(6, 256, 2048)
        + conv(1, 2048, 2048)
        + conv(1, 2048, 1000)
    ),
    # ZFNet Fig. 6's comparison: AlexNet's 11x11 conv1 (and 5x5 / 1 conv2: same weights).
    "zfnet-conv1_11x11s4": conv(11, 3, 96) + ZFNET_CONV2 + ZFNET_CONV345 + ZFNET_FC,
}


def test_the_hand_arithmetic_agrees_with_the_paper_counts():
    assert ZFNET_CONV1 + ZFNET_CONV2 + ZFNET_CONV345 + ZFNET_FC == 62_357_608  # ZFNet Fig. 3
    assert HAND_COUNTS["alexnet-towers1"] == 17_472 + 153_728 + 221_376 + 331_968 + 442_624 + (
        37_752_832 + 16_781_312 + 4_097_000
    )


@pytest.mark.parametrize("name", sorted(HAND_COUNTS))
def test_parameter_count_by_hand(name):
    assert overfeat_tf.build_model(name).count_params() == HAND_COUNTS[name]


def test_lrn_and_pooling_variants_hold_the_same_weights():
    # LRN and max-pooling have no weights (AlexNet sections 3.3, 3.4).
    def count(name):
        return overfeat_tf.build_model(name, 10, 0.0625).count_params()

    assert count("alexnet-nolrn") == count("alexnet-nonoverlapping") == count("alexnet")
    assert count("zfnet-nolrn-nonoverlapping") == count("zfnet")


# Output side of each layer at native size (None: the layer is absent).
MAP_SIZES = {
    # AlexNet section 3.4: 2x2 / 2 pooling keeps 55 -> 27 -> 13 -> 6 (floor rounding).
    "alexnet-nonoverlapping": {
        "conv1": 55,
        "pool1": 27,
        "conv2": 27,
        "pool2": 13,
        "conv5": 13,
        "pool5": 6,
        "fc6": 1,
        "norm1": 55,
    },
    "alexnet-nolrn-towers1": {
        "conv1": 55,
        "pool1": 27,
        "pool2": 13,
        "pool5": 6,
        "norm1": None,
        "norm2": None,
    },
    "zfnet-nonoverlapping": {
        "conv1": 110,
        "pool1": 55,
        "conv2": 26,
        "pool2": 13,
        "pool5": 6,
        "fc6": 1,
    },
    # 224 + 2 * 2 padding, 11x11 / 4 -> 55 (AlexNet's conv1 map); 5x5 / 1 conv2 keeps 27.
    "zfnet-conv1_11x11s4": {
        "conv1_pad": 228,
        "conv1": 55,
        "pool1": 27,
        "conv2": 27,
        "pool2": 13,
        "conv5": 13,
        "pool5": 6,
        "fc6": 1,
    },
    "zfnet-noconv3-noconv4-nofc6-nofc7": {
        "pool2": 13,
        "conv3": None,
        "conv4": None,
        "conv5": 13,
        "pool5": 6,
        "fc6": None,
        "fc7": None,
        "fc8": 1,
    },
}


@pytest.mark.parametrize("name", sorted(MAP_SIZES))
def test_layer_output_sizes(name):
    model = overfeat_tf.build_model(name, num_classes=7, width=0.0625)
    present = {layer.name for layer in model.layers}
    for layer_name, size in MAP_SIZES[name].items():
        if size is None:
            assert layer_name not in present, layer_name
        else:
            assert model.get_layer(layer_name).output.shape[1:3] == (size, size), layer_name
    assert model.output.shape == (None, 7)


def test_pool_and_group_geometry():
    info = overfeat_tf.model_info("alexnet-nonoverlapping-towers1")
    pools = [row for row in info.spec.trunk + (info.spec.last_pool,) if hasattr(row, "size")]
    assert [(p.size, p.stride) for p in pools] == [(2, 2)] * 3
    assert all(getattr(row, "groups", 1) == 1 for row in info.spec.trunk)
    assert info.stride == overfeat_tf.model_info("alexnet").stride == 32
    assert overfeat_tf.model_info("zfnet-conv1_11x11s4").stride == 32


def test_names_are_canonical_and_defaults_keep_the_plain_name():
    build = overfeat_tf.build_model
    assert build("alexnet", 3, 0.0625, towers=2, lrn=True, pooling="overlapping").name == "alexnet"
    assert build("alexnet", 3, 0.0625, towers=1, lrn=False).name == "alexnet-nolrn-towers1"
    assert build("alexnet-towers1", 3, 0.0625, lrn=False).name == "alexnet-nolrn-towers1"
    # Tokens in any order name the same variant; the record carries the canonical name.
    assert overfeat_tf.model_info("alexnet-towers1-nolrn").name == "alexnet-nolrn-towers1"
    name = variants.variant_name(
        "zfnet", {"without": ["fc7", "conv3"], "conv_maps": [512, 1024, 512], "fc_units": 8192}
    )
    assert name == "zfnet-maps512_1024_512-fc8192-noconv3-nofc7"
    assert variants.split_name(name) == (
        "zfnet",
        {"conv_maps": (512, 1024, 512), "fc_units": 8192, "without": ("conv3", "fc7")},
    )
    # Input size and normalisation are the base model's.
    assert overfeat_tf.native_input_size(name) == 224
    assert overfeat_tf.models.normalization(name, "he") == overfeat_tf.models.normalization(
        "zfnet", "he"
    )


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("zfnet", {"towers": 1}, "'towers' does not apply to zfnet; valid for zfnet: conv1,"),
        ("overfeat_fast", {"lrn": False}, "does not apply to overfeat_fast"),
        ("alexnet", {"conv1": "11x11/4"}, "'conv1' does not apply to alexnet"),
        ("alexnet", {"tower": 1}, "Unknown variant option 'tower'; valid for alexnet"),
        ("alexnet", {"lrn": 1}, "lrn must be one of True, False; received 1"),
        ("alexnet", {"towers": 3}, "towers must be one of 2, 1"),
        ("alexnet", {"without": ["conv5"]}, "without must be distinct layers among conv3"),
        ("alexnet", {"conv_maps": [512, 1024]}, "conv_maps must be 3 positive integers"),
        ("alexnet-towers1", {"towers": 2}, "towers=2 contradicts the model name"),
        ("alexnet-towers3", {}, "Unknown variant token 'towers3'; valid: conv1_11x11s4"),
        ("alexnet-nolrn-nolrn", {}, "'nolrn' repeats option lrn"),
        ("vgg16-nolrn", {}, "Unknown model 'vgg16-nolrn'; valid names: alexnet"),
    ],
)
def test_bad_options_are_one_line_errors(name, options, message):
    with pytest.raises(ValueError, match=message) as error:
        overfeat_tf.build_model(name, 3, 0.0625, **options)
    assert "\n" not in str(error.value)


def _images(size, count=2):
    return np.random.default_rng(0).normal(size=(count, size, size, 3)).astype("float32")


def test_keras_file_rebuilds_the_variant(tmp_path):
    model = overfeat_tf.build_model("zfnet", 5, 0.0625, conv1="11x11/4", lrn=False)
    model.save(tmp_path / "v.keras")
    loaded = keras.saving.load_model(tmp_path / "v.keras")
    assert loaded.name == "zfnet-conv1_11x11s4-nolrn"
    assert overfeat_tf.model_info(loaded) == overfeat_tf.model_info(model)
    np.testing.assert_allclose(loaded(_images(224)), model(_images(224)), atol=1e-6)


def test_model_dir_rebuilds_the_variant(tmp_path):
    kwargs = {"num_classes": 4, "width": 0.0625, "towers": 1, "without": ["fc7"]}
    model = overfeat_tf.build_model("alexnet", **kwargs)
    run_dir.save_model(str(tmp_path), model, build_kwargs=kwargs, class_names=list("abcd"))
    restored, config = run_dir.restore_model(str(tmp_path))
    assert restored.name == model.name == "alexnet-nofc7-towers1"
    assert config["input_size"] == 227
    np.testing.assert_array_equal(restored(_images(227)), model(_images(227)))


def test_dense_evaluator_and_fully_conv_views_run_on_variants():
    for name in ("alexnet-nofc6-nofc7-nonoverlapping-towers1", "zfnet-conv1_11x11s4-fc2048"):
        model = overfeat_tf.build_model(name, 3, 0.0625)
        size = overfeat_tf.native_input_size(name)
        trunk, head = overfeat_tf.models.trunk(model), overfeat_tf.models.classifier(model)
        np.testing.assert_allclose(
            head(trunk(_images(size)))[:, 0, 0], model(_images(size)), rtol=1e-5, atol=1e-6
        )
        # At native size the coarse single-scale dense map is the model's own prediction.
        dense = overfeat_tf.DenseEvaluator(model, scales=[size], fine_stride=False, flips=False)
        expected = keras.ops.softmax(model(_images(size, 1)))
        np.testing.assert_allclose(dense(_images(size, 1)), expected, rtol=1e-5, atol=1e-6)
        fine = overfeat_tf.DenseEvaluator(model)  # default scales, fine stride, flips
        assert fine(_images(size + 40, 1)).shape == (1, 3)
