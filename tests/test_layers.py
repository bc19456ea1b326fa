"""Custom layers against direct evaluations of their definitions."""

import json
import zipfile

import numpy as np
import keras
import pytest
import tensorflow as tf

from overfeat_tf import layers


def test_lrn_equals_the_paper_formula():
    # AlexNet section 3.3: b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta
    # with k=2, n=5, alpha=1e-4, beta=0.75.
    a = np.random.default_rng(0).normal(scale=30, size=(2, 3, 4, 11)).astype("float64")
    expected = np.empty_like(a)
    channels = a.shape[-1]
    for i in range(channels):
        lo, hi = max(0, i - 2), min(channels - 1, i + 2)
        denom = (2 + 1e-4 * (a[..., lo : hi + 1] ** 2).sum(-1)) ** 0.75
        expected[..., i] = a[..., i] / denom
    got = layers.LocalResponseNormalization()(a.astype("float32"))
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("padding,strides", [("same", 1), ("valid", 2)])
def test_split_grouped_conv_equals_native_groups(padding, strides):
    x = np.random.default_rng(1).normal(size=(2, 9, 9, 8)).astype("float32")
    reference = keras.layers.Conv2D(6, 3, strides=strides, padding=padding, groups=2)
    split = layers.GroupedConv2D(6, 3, strides=strides, padding=padding, groups=2)
    expected = reference(x)
    split.build(x.shape)
    split.set_weights(reference.get_weights())
    np.testing.assert_allclose(split(x), expected, rtol=1e-5, atol=1e-5)
    # Output channels of group i only see input group i.
    x2 = x.copy()
    x2[..., 4:] = 0
    np.testing.assert_allclose(split(x2)[..., :3], expected[..., :3], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [5, 8])
def test_fully_connected_2d_equals_conv2d_with_the_same_weights(size):
    # At the kernel's size (the training size: one window) it is a matrix multiply; at
    # larger inputs (dense evaluation) a convolution. Both match Conv2D, outputs and
    # gradients.
    x = tf.constant(np.random.default_rng(2).normal(size=(3, size, size, 6)), tf.float32)
    reference = keras.layers.Conv2D(7, 5, activation="relu")
    layer = layers.FullyConnected2D(7, 5, activation="relu")
    reference.build(x.shape)
    layer.build(x.shape)
    layer.set_weights(reference.get_weights())
    results = []
    for conv in (reference, layer):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = conv(x)
            loss = tf.reduce_sum(y * tf.range(7, dtype=tf.float32))
        results.append((y, *tape.gradient(loss, [x, *conv.trainable_variables])))
    assert results[1][0].shape == (3, size - 4, size - 4, 7)
    for expected, got in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_convolve_is_a_matrix_multiply_only_on_one_whole_window():
    kernel = tf.ones([3, 3, 2, 4])
    plain = dict(strides=(1, 1), padding="valid", dilation_rate=(1, 1))
    one_window = tf.function(
        lambda x: layers.convolve(x, kernel, **plain, data_format="channels_last")
    )
    ops = {
        op.type
        for op in one_window.get_concrete_function(tf.ones([2, 3, 3, 2])).graph.get_operations()
    }
    assert "MatMul" in ops and "Conv2D" not in ops
    for shape, arguments in [
        ([2, 4, 4, 2], plain),
        ([2, 3, 3, 2], {**plain, "padding": "same"}),
        ([2, 3, 3, 2], {**plain, "strides": (2, 2)}),
        ([2, None, None, 2], plain),
    ]:
        fn = tf.function(
            lambda x, a=arguments: layers.convolve(x, kernel, **a, data_format="channels_last")
        )
        graph = fn.get_concrete_function(tf.TensorSpec(shape)).graph
        assert "MatMul" not in {op.type for op in graph.get_operations()}, (shape, arguments)


def test_grouped_conv_rejects_bad_arguments():
    with pytest.raises(ValueError, match="implementation"):
        layers.GroupedConv2D(4, 3, groups=2, implementation="fast")


def test_a_keras_file_with_the_old_tower_devices_entry_still_loads(tmp_path):
    # Files saved when GroupedConv2D placed its own groups carry `tower_devices` in the
    # layer's config; they load, with the same weights and results.
    inputs = keras.Input((9, 9, 4))
    model = keras.Model(inputs, layers.GroupedConv2D(6, 3, groups=2, name="conv")(inputs))
    path = tmp_path / "new.keras"
    model.save(path)
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "config.json":
                config = json.loads(data)
                [conv] = [c for c in config["config"]["layers"] if c["config"]["name"] == "conv"]
                conv["config"]["tower_devices"] = ["/CPU:0", "/CPU:1"]
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    loaded = keras.saving.load_model(old)
    x = np.random.default_rng(3).normal(size=(1, 9, 9, 4)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), rtol=1e-6, atol=1e-6)
    assert "tower_devices" not in loaded.get_layer("conv").get_config()


def test_grouped_conv_ignores_tower_devices_of_older_configs():
    # Older `.keras` files store the placement in the layer's config; towers.py places now.
    layer = layers.GroupedConv2D.from_config(
        {**layers.GroupedConv2D(4, 3, groups=2).get_config(), "tower_devices": ["/GPU:0", "/GPU:1"]}
    )
    assert "tower_devices" not in layer.get_config() and layer.groups == 2


def _ceil_pool_numpy(x, k, s):
    b, h, w, c = x.shape
    oh, ow = -(-(h - k) // s) + 1, -(-(w - k) // s) + 1
    out = np.empty((b, oh, ow, c), x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = x[:, i * s : i * s + k, j * s : j * s + k].max(axis=(1, 2))
    return out


@pytest.mark.parametrize("size,expected", [(110, 55), (26, 13), (13, 6), (14, 7)])
def test_ceil_max_pool_rounds_up(size, expected):
    # ZFNet Fig. 3 (Caffe ceil mode): 110 -> 55, 26 -> 13, 13 -> 6.
    x = np.random.default_rng(2).normal(size=(1, size, size + 1, 2)).astype("float32")
    got = layers.CeilMaxPool2D(3, 2)(x)
    assert got.shape[1] == expected
    np.testing.assert_array_equal(got, _ceil_pool_numpy(x, 3, 2))


def test_ceil_pool_output_shape_is_static():
    inputs = keras.Input((110, 26, 5))
    assert layers.CeilMaxPool2D(3, 2)(inputs).shape == (None, 55, 13, 5)
    assert layers.CeilMaxPool2D(3, 2)(keras.Input((None, None, 5))).shape == (None, None, None, 5)


@pytest.mark.parametrize(
    "layer",
    [
        layers.LocalResponseNormalization(depth_radius=3, bias=1.5, alpha=2e-4, beta=0.5),
        layers.GroupedConv2D(4, 3, groups=2, padding="same", implementation="native"),
        layers.CeilMaxPool2D(3, 2),
        layers.FullyConnected2D(5, 7),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_layers_round_trip_through_keras_files(layer, tmp_path):
    inputs = keras.Input((7, 7, 4))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(3).normal(size=(2, 7, 7, 4)).astype("float32")
    path = tmp_path / "layer.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.layers[1].get_config() == layer.get_config()
    np.testing.assert_allclose(restored(x), model(x), rtol=1e-6)


def test_lrn_keeps_dtype_under_mixed_precision():
    x = tf.random.normal((1, 3, 3, 6), dtype=tf.float16)
    assert layers.LocalResponseNormalization(dtype="mixed_float16")(x).dtype == tf.float16
