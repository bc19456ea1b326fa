"""Occlusion sensitivity (ZFNet section 4.2): crafted images, non-square batches, files."""

import numpy as np
import pytest

import overfeat_tf  # noqa: F401  (oneDNN set-up before TensorFlow)
from overfeat_tf.visualization import occlusion

import keras  # noqa: E402

HEIGHT, WIDTH = 24, 36  # Non-square on purpose (tf-explain's occlusion fails on these).


def _region_detector() -> keras.Model:
    """Class 0 iff some pixel is bright red, else class 1: conv1 fires on red > 0.5, a
    whole-image max pool, then a 1x1 class layer. Weights set by hand."""
    inputs = keras.Input((HEIGHT, WIDTH, 3))
    conv1 = keras.layers.Conv2D(1, 1, activation="relu", name="conv1")
    pool = keras.layers.MaxPooling2D((HEIGHT, WIDTH), name="pool")
    fc = keras.layers.Conv2D(2, 1, name="fc")
    outputs = keras.layers.Flatten(name="logits")(fc(pool(conv1(inputs))))
    model = keras.Model(inputs, outputs, name="detector")
    conv1.set_weights([np.array([1.0, 0.0, 0.0]).reshape(1, 1, 3, 1), np.array([-0.5])])
    fc.set_weights([np.array([8.0, 0.0]).reshape(1, 1, 1, 2), np.array([0.0, 2.0])])
    return model


def _crafted(regions) -> np.ndarray:
    """Dim noise with one bright red 6x6 square per image at (top, left)."""
    rng = np.random.default_rng(0)
    images = rng.uniform(-0.3, 0.3, (len(regions), HEIGHT, WIDTH, 3)).astype(np.float32)
    for image, (top, left) in zip(images, regions):
        image[top : top + 6, left : left + 6, 0] = 2.0
    return images


def test_map_is_lowest_where_the_deciding_region_is_covered():
    regions = [(8, 20), (14, 4)]
    model = _region_detector()
    images = _crafted(regions)
    maps = occlusion.occlusion_maps(
        model, images, labels=[0, 0], size=6, stride=2, layer="conv1", batch_size=7
    )
    assert maps.true_class_probability.shape == (2, 10, 16)
    assert (maps.clean_probabilities.argmax(axis=1) == 0).all()
    for i, (top, left) in enumerate(regions):
        probability = maps.true_class_probability[i]
        row, column = np.unravel_index(probability.argmin(), probability.shape)
        assert (maps.tops[row], maps.lefts[column]) == (top, left)
        # Only the exact cover removes the region: the class flips there and only there.
        assert (
            probability[row, column]
            < 0.5
            < np.delete(probability.ravel(), probability.argmin()).min()
        )
        assert maps.top_class[i, row, column] == 1
        assert (np.delete(maps.top_class[i].ravel(), probability.argmin()) == 0).all()
        activation = maps.feature_activation[i]
        assert np.unravel_index(activation.argmin(), activation.shape) == (row, column)
        assert activation.max() == pytest.approx(maps.clean_feature_activation[i])


def test_registry_model_batches_and_sizes():
    keras.utils.set_random_seed(0)
    model = overfeat_tf.build_model("zfnet", num_classes=4, width=0.0625, init="he")
    images = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
    maps = occlusion.occlusion_maps(model, images, size=64, stride=80, layer="conv5")
    np.testing.assert_allclose(
        maps.clean_probabilities, keras.ops.softmax(model(images)).numpy(), rtol=1e-4, atol=1e-6
    )
    np.testing.assert_array_equal(maps.labels, maps.clean_probabilities.argmax(axis=1))
    assert maps.true_class_probability.shape == (2, 3, 3)
    # Larger, non-square images run through the same layers (class map averaged).
    wide = np.random.default_rng(2).normal(size=(3, 224, 288, 3)).astype(np.float32)
    one = occlusion.occlusion_maps(
        model, wide, [0, 1, 2], size=96, stride=64, layer="conv5", features=[0, 1, 2], batch_size=4
    )
    together = occlusion.occlusion_maps(
        model, wide, [0, 1, 2], size=96, stride=64, layer="conv5", features=[0, 1, 2], batch_size=64
    )
    assert one.feature_activation.shape == (3, 3, 4)
    np.testing.assert_allclose(
        one.true_class_probability, together.true_class_probability, rtol=1e-5
    )
    np.testing.assert_allclose(one.feature_activation, together.feature_activation, rtol=1e-4)
    np.testing.assert_array_equal(one.features, [0, 1, 2])


def test_settings_are_checked():
    model = _region_detector()
    with pytest.raises(ValueError, match="size must be in 1..24"):
        occlusion.occlusion_maps(model, _crafted([(0, 0)]), size=30, stride=2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        occlusion.occlusion_maps(model, _crafted([(0, 0)]), size=4, stride=0)


def test_to_pixels_takes_the_nearest_square_centre():
    values = np.array([[1.0, 2.0]])
    pixels = occlusion.to_pixels(values, np.array([0]), np.array([0, 4]), 4, 4, 8)
    assert pixels.shape == (4, 8)
    np.testing.assert_array_equal(pixels[0], [1, 1, 1, 1, 2, 2, 2, 2])


def test_save_writes_heat_maps_and_arrays(tmp_path):
    model = _region_detector()
    images = _crafted([(8, 20)])
    maps = occlusion.occlusion_maps(model, images, size=6, stride=3, layer="conv1")
    paths = occlusion.save(maps, np.clip(images * 0.2 + 0.5, 0, 1), str(tmp_path), ["crafted"])
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == [
        "crafted_feature.png",
        "crafted_top_class.png",
        "crafted_true_class.png",
        "occlusion.npz",
    ]
    arrays = np.load(tmp_path / "occlusion.npz")
    np.testing.assert_array_equal(arrays["true_class_probability"], maps.true_class_probability)
    assert int(arrays["size"]) == 6


def test_heat_maps_carry_a_colour_bar_in_the_overlay_colours():
    from overfeat_tf.visualization import colour_bar, images

    shown = images.overlay(np.full((120, 160, 3), 0.5), np.linspace(0, 1, 160)[None].repeat(120, 0))
    figure = colour_bar.with_colour_bar(shown, (0.0, 1.0), "probability")
    assert figure.ndim == 3 and figure.shape[0] >= 120 and figure.shape[1] >= 160 + 100
    # The bar holds the colour scale's two ends, dark blue and dark red, which the
    # overlay (60 % colour over the image) never shows.
    pixels = figure.reshape(-1, 3)
    for end in (0.0, 1.0):
        colour = images.colormap(np.array(end))
        assert np.abs(pixels - colour).max(axis=1).min() < 0.03
        assert np.abs(shown.reshape(-1, 3) - colour).max(axis=1).min() > 0.1
