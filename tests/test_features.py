"""Feature extraction: per-layer output shapes, order, file names, files on disk."""

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import features

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

WIDTH = 0.0625


@pytest.mark.parametrize(
    "name, shapes",
    [
        # AlexNet Fig. 2: pool5 6x6 (x 256 channels), fc6 / fc7 4096, both times width.
        (
            "alexnet",
            {"conv1": (55, 55, 6), "pool5": (6, 6, 16), "fc6": (1, 1, 256), "fc7": (1, 1, 256)},
        ),
        # OverFeat Table 3 (accurate): layer 6 map 15x15 pooled 3/3 to 5x5; fc7 4096.
        ("overfeat_accurate", {"conv6": (15, 15, 64), "pool6": (5, 5, 64), "fc7": (1, 1, 256)}),
    ],
)
def test_output_shape_per_layer(name, shapes):
    keras.utils.set_random_seed(0)
    model = overfeat_tf.build_model(name, num_classes=3, width=WIDTH)
    assert features.layer_shapes(model, list(shapes)) == shapes
    size = overfeat_tf.native_input_size(name)
    images = np.random.default_rng(0).normal(size=(5, size, size, 3)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(
        {"image": images, "filename": [f"img{i}.jpg" for i in range(5)], "label": np.arange(5)}
    ).batch(2)
    arrays, filenames, labels = features.extract(model, dataset, list(shapes), verbose=False)
    assert filenames == [f"img{i}.jpg" for i in range(5)]
    np.testing.assert_array_equal(labels, np.arange(5))
    for layer, shape in shapes.items():
        assert arrays[layer].shape == (5, *shape)
    # The last FC layer's features are what the model's own layers compute.
    last = list(shapes)[-1]
    sub = keras.Model(model.input, model.get_layer(last).output)
    np.testing.assert_allclose(arrays[last], sub(images).numpy(), rtol=1e-4, atol=1e-6)


def test_unknown_layer_names_the_valid_ones():
    model = overfeat_tf.build_model("zfnet", num_classes=3, width=WIDTH)
    with pytest.raises(ValueError, match="valid: conv1_pad, conv1"):
        features.feature_model(model, ["fc9"])
    with pytest.raises(ValueError, match="Unknown layers"):
        features.feature_model(model, ["logits"])


def test_write(tmp_path):
    arrays = {"fc7": np.ones((2, 1, 1, 4), np.float32)}
    paths = features.write(str(tmp_path), arrays, ["a.jpg", "b c.png"], np.array([3, 1]))
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == ["fc7.npy", "filenames.txt", "labels.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "fc7.npy"), arrays["fc7"])
    assert (tmp_path / "filenames.txt").read_text().splitlines() == ["a.jpg", "b c.png"]
    np.testing.assert_array_equal(np.load(tmp_path / "labels.npy"), [3, 1])
