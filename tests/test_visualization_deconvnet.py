"""The deconvnet (ZFNet section 2.1) against an explicit one with recorded switches."""

import numpy as np
import pytest

import overfeat_tf  # noqa: F401  (oneDNN set-up before TensorFlow)
from overfeat_tf import layers as of_layers
from overfeat_tf.visualization import deconvnet

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

WIDTH = 0.0625


def _model(name: str) -> keras.Model:
    keras.utils.set_random_seed(1)
    return overfeat_tf.build_model(name, num_classes=5, width=WIDTH, init="he")


def _images(batch: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, height, width, 3)).astype(np.float32)


def _unpool(values, switches, input_shape):
    """Explicit unpooling: each value added at its recorded argmax (flat NHWC index)."""
    flat = tf.scatter_nd(
        tf.reshape(switches, [-1, 1]), tf.reshape(values, [-1]), [int(np.prod(input_shape))]
    )
    return tf.reshape(flat, input_shape)


def _explicit_deconvnet(layers, images, feature, position):
    """ZFNet's deconvnet written out: forward recording switches, then down to pixels
    (unpool with switches, rectify, transposed filters); LRN passed through."""
    x = tf.constant(images)
    undo = []  # One function per layer, from the layer's output signal to its input's.
    for layer in layers:
        shape = x.shape
        if isinstance(layer, keras.layers.ZeroPadding2D):
            (top, _), (left, _) = layer.padding
            x = layer(x)
            undo.append(lambda r, s=shape, t=top, lf=left: r[:, t : t + s[1], lf : lf + s[2]])
        elif isinstance(layer, keras.layers.Conv2D):
            assert layer.groups == 1
            kernel = tf.constant(layer.kernel.numpy())
            x = tf.nn.relu(layer.convolution_op(x, kernel) + layer.bias.numpy())
            stride = layer.strides[0]
            padding = layer.padding.upper()
            undo.append(
                lambda r, s=shape, k=kernel, st=stride, p=padding: tf.nn.conv2d_transpose(
                    tf.nn.relu(r), k, s, st, p
                )
            )
        elif isinstance(layer, (keras.layers.MaxPooling2D, of_layers.CeilMaxPool2D)):
            size = layer.pool_size if isinstance(layer.pool_size, int) else layer.pool_size[0]
            stride = layer.strides if isinstance(layer.strides, int) else layer.strides[0]
            pad = [0, 0]
            if isinstance(layer, of_layers.CeilMaxPool2D):
                pad = [int(layer._padding(n)) for n in shape[1:3]]
            padded = tf.pad(x, [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]], constant_values=-1e30)
            x, switches = tf.nn.max_pool_with_argmax(
                padded, size, stride, "VALID", include_batch_in_index=True
            )
            undo.append(
                lambda r, s=shape, sw=switches, ps=padded.shape: _unpool(r, sw, ps)[
                    :, : s[1], : s[2]
                ]
            )
        elif isinstance(layer, of_layers.LocalResponseNormalization):
            x = layer(x)
            undo.append(lambda r: r)
        else:
            raise AssertionError(f"unexpected layer {layer.name}")
    row, column = position
    signal = np.zeros(x.shape, np.float32)
    signal[:, row, column, feature] = x.numpy()[:, row, column, feature]
    signal = tf.constant(signal)
    for step in reversed(undo):
        signal = step(signal)
    return signal.numpy()


def test_unpooling_puts_values_at_the_recorded_argmax():
    """Through an overlapping ceil-mode pool (ZFNet), each pooled activation lands on the
    switch max_pool_with_argmax records, with its value."""
    inputs = keras.Input((None, None, 2))
    model = keras.Model(inputs, of_layers.CeilMaxPool2D(3, 2, name="pool")(inputs))
    images = np.random.default_rng(0).normal(size=(1, 8, 9, 2)).astype(np.float32)
    padded = np.pad(images, [[0, 0], [0, 1], [0, 0], [0, 0]], constant_values=-1e30)
    pooled, switches = tf.nn.max_pool_with_argmax(padded, 3, 2, "VALID")
    assert pooled.shape[1:3] == (4, 4)  # ceil((8-3)/2)+1, ceil((9-3)/2)+1
    # Every cell of the map, each as its own example, including the ceil-mode edge cells.
    cells = [(i, j, f) for i in range(4) for j in range(4) for f in range(2)]
    batch = np.repeat(images, len(cells), axis=0)
    projections, _, values = deconvnet.Deconvnet(model, "pool").project(
        batch, [f for _, _, f in cells], [(i, j) for i, j, _ in cells]
    )
    for k, (i, j, f) in enumerate(cells):
        expected = np.zeros(padded.shape[1:], np.float32).reshape(-1)
        expected[int(switches[0, i, j, f])] = pooled[0, i, j, f]
        expected = expected.reshape(padded.shape[1:])[:8]
        np.testing.assert_allclose(projections[k], expected, rtol=1e-6)
        assert float(values[k]) == pytest.approx(float(pooled[0, i, j, f]))


@pytest.mark.parametrize(
    "name, layer, shape",
    [
        ("zfnet", "conv2", (75, 91)),  # ceil-mode 3/2 pools, LRN after the pool
        ("alexnet", "pool1", (67, 83)),  # overlapping 3/2 pool, LRN before it
        ("overfeat_accurate", "pool2", (61, 73)),  # 3/3 and 2/2 pools
        ("overfeat_fast", "conv3", (63, 63)),  # "same" padding
    ],
)
def test_deconvnet_equals_explicit_switch_unpooling(name, layer, shape):
    model = _model(name)
    deconv = deconvnet.Deconvnet(model, layer)
    images = _images(2, *shape)
    maps = deconv.activations(images).numpy()
    feature = int(maps.sum(axis=(0, 1, 2)).argmax())
    row, column = np.unravel_index(maps[0, ..., feature].argmax(), maps.shape[1:3])
    projections, positions, _ = deconv.project(images, [feature] * 2, [(row, column)] * 2)
    expected = _explicit_deconvnet(deconv.layers, images, feature, (row, column))
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(projections, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    np.testing.assert_array_equal(positions, [(row, column)] * 2)


def test_projection_of_one_conv1_activation_is_its_filter_at_that_position():
    """One conv1 activation projects to its filter, scaled by the activation, over the
    cell's receptive field (ZFNet conv1: 7x7 / 2 after one pixel of padding). The
    deconvnet filters with the flipped filter by transposed convolution; TensorFlow's
    convolution is a correlation, so on the pixels the kernel array appears unflipped."""
    model = _model("zfnet")
    deconv = deconvnet.Deconvnet(model, "conv1")
    field = deconv.receptive_field
    assert (field.size, field.stride, field.offset) == (7, 2, -1)
    images = _images(1, 40, 48)
    maps = deconv.activations(images).numpy()
    feature = int(maps[0, 5:12, 5:12].max(axis=(0, 1)).argmax())
    row, column = np.unravel_index(maps[0, 5:12, 5:12, feature].argmax(), (7, 7))
    row, column = row + 5, column + 5
    projections, _, values = deconv.project(images, [feature], [(row, column)])
    top, left, bottom, right = field.window(row, column)
    expected = np.zeros_like(images[0])
    expected[top:bottom, left:right] = (
        values[0] * model.get_layer("conv1").kernel.numpy()[..., feature]
    )
    assert values[0] > 0
    np.testing.assert_allclose(projections[0], expected, rtol=1e-5, atol=1e-7)


def test_strongest_activation_is_the_default_position():
    model = _model("overfeat_fast")
    deconv = deconvnet.Deconvnet(model, "conv2")
    images = _images(3, 70, 90, seed=2)
    maps = deconv.activations(images).numpy()
    _, positions, values = deconv.project(images, [0, 1, 2])
    for k in range(3):
        assert float(values[k]) == pytest.approx(maps[k, ..., k].max())
        assert maps[k, positions[k][0], positions[k][1], k] == pytest.approx(maps[k, ..., k].max())


def test_projection_stays_inside_the_receptive_field():
    model = _model("alexnet")
    deconv = deconvnet.Deconvnet(model, "conv3")
    images = _images(1, 131, 131, seed=3)
    projections, positions, values = deconv.project(images, [1])
    assert values[0] > 0
    top, left, bottom, right = deconv.receptive_field.window(*positions[0].numpy())
    outside = np.abs(projections[0].numpy()).copy()
    outside[max(top, 0) : bottom, max(left, 0) : right] = 0
    assert np.abs(projections[0]).max() > 0
    assert outside.max() == 0


def test_guided_and_gradient_rules():
    """`gradient` is autodiff's gradient of the activation; `guided` is zero wherever
    either the deconvnet or the gradient rule would be."""
    model = _model("zfnet")
    images = _images(1, 224, 224, seed=4)
    position = [(3, 4)]
    grads = deconvnet.Deconvnet(model, "conv2", rule="gradient").project(images, [2], position)[0]
    sub = keras.Model(model.input, model.get_layer("conv2").output)
    x = tf.constant(images)
    with tf.GradientTape() as tape:
        tape.watch(x)
        maps = sub(x)
        value = maps[0, 3, 4, 2]
        objective = value * tf.stop_gradient(value)
    # The plain gradient rule also differentiates LRN; our forward passes it through.
    reference = tape.gradient(objective, x)
    assert np.corrcoef(np.ravel(grads), np.ravel(reference))[0, 1] > 0.99
    guided = deconvnet.Deconvnet(model, "conv2", rule="guided").project(images, [2], position)[0]
    assert np.abs(guided).max() > 0
    with pytest.raises(ValueError, match="rule must be one of"):
        deconvnet.Deconvnet(model, "conv2", rule="backprop")


def test_errors_name_the_valid_choices():
    model = _model("zfnet")
    with pytest.raises(ValueError, match="valid: conv1_pad, conv1, pool1"):
        deconvnet.Deconvnet(model, "conv9")
    with pytest.raises(ValueError, match="conv1 has 6"):
        deconvnet.Deconvnet(model, "conv1").project(_images(1, 30, 30), [6])
