"""Top-9 activations over a data set (ZFNet Fig. 2) and the filter grid (Fig. 5, 6)."""

import numpy as np
import pytest

import overfeat_tf  # noqa: F401  (oneDNN set-up before TensorFlow)
from overfeat_tf.visualization import deconvnet, filters, images, top9

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

MEAN, STD = (120.0, 110.0, 100.0), (50.0, 50.0, 50.0)


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return overfeat_tf.build_model("zfnet", num_classes=4, width=0.0625, init="he")


def _dataset(count=14, size=64):
    rng = np.random.default_rng(5)
    pictures = rng.normal(size=(count, size, size, 3)).astype(np.float32)
    labels = np.arange(count, dtype=np.int32)
    return tf.data.Dataset.from_tensor_slices((pictures, labels)).batch(4), pictures


def test_top_activations_are_the_strongest_over_the_data_set(model):
    deconv = deconvnet.Deconvnet(model, "conv2")
    dataset, pictures = _dataset()
    top = top9.find_top_activations(deconv, dataset, [0, 3, 5])
    maps = deconv.activations(pictures).numpy()[..., [0, 3, 5]]  # [n, h, w, 3]
    strongest = maps.max(axis=(1, 2)).T  # [3, n]
    expected = -np.sort(-strongest, axis=1)[:, :9]
    np.testing.assert_allclose(top.values, expected, rtol=1e-5)
    for slot in range(3):
        for rank in range(9):
            image, (row, column) = top.image_index[slot, rank], top.positions[slot, rank]
            assert maps[image, row, column, slot] == pytest.approx(top.values[slot, rank], rel=1e-5)


def test_projections_and_patches_match_the_recorded_activations(model):
    deconv = deconvnet.Deconvnet(model, "conv2")
    dataset, pictures = _dataset(count=5)
    top = top9.find_top_activations(deconv, dataset, [1, 2])
    assert np.isinf(top.values[:, 5:]).all()  # Fewer images than nine.
    projections, patches = top9.project_top_activations(deconv, dataset, top, MEAN, STD)
    side = deconv.receptive_field.size
    assert projections.shape == patches.shape == (2, 9, side, side, 3)
    image = top.image_index[1, 0]
    window = deconv.receptive_field.window(*top.positions[1, 0])
    projected = deconv.project(pictures[image : image + 1], [2], top.positions[1, :1])[0][0].numpy()
    np.testing.assert_allclose(
        projections[1, 0],
        images.to_display(
            top9._crop(projected, window, 0.0)[None], percentiles=images.PROJECTION_PERCENTILES
        )[0],
        rtol=1e-5,
        atol=1e-6,
    )
    expected_patch = top9._crop(images.denormalize(pictures[image], MEAN, STD), window, 0.5)
    np.testing.assert_allclose(patches[1, 0], expected_patch, rtol=1e-6)
    assert (patches[:, 5:] == 0.5).all()


def test_top9_writes_figures_and_arrays(model, tmp_path):
    deconv = deconvnet.Deconvnet(model, "conv1")
    dataset, _ = _dataset(count=10)
    paths = top9.top9(deconv, dataset, [0, 4], MEAN, STD, str(tmp_path))
    names = sorted(p.rsplit("/", 1)[-1] for p in paths)
    assert names == [
        "conv1_feature000.png",
        "conv1_feature004.png",
        "conv1_top9.npz",
        "conv1_top9.png",
    ]
    figure = tf.io.decode_png(tf.io.read_file(str(tmp_path / "conv1_feature004.png"))).numpy()
    side = deconv.receptive_field.size  # 7: 3 x 3 tiles of 7 px and borders, twice, plus a gap.
    assert figure.shape[0] == 3 * (side + 1) + 1
    assert figure.shape[1] == 2 * (3 * (side + 1) + 1) + 2
    arrays = np.load(tmp_path / "conv1_top9.npz")
    assert arrays["values"].shape == (2, 9)


def test_filter_grid(model, tmp_path):
    grid = filters.filter_grid(model, scale=4)
    # ZFNet conv1: 7x7 filters; width 0.0625 keeps 6, in a 3 x 2 grid of 28-pixel tiles.
    assert grid.shape == (2 * 29 + 1, 3 * 29 + 1, 3)
    kernel = model.get_layer("conv1").kernel.numpy()
    first = images.to_display(kernel[None, ..., 0])[0]
    np.testing.assert_allclose(grid[1:29:4, 1:29:4], first, rtol=1e-6)
    with pytest.raises(ValueError, match="RGB-input convolution"):
        filters.filter_grid(model, "conv2")
    callback = filters.filter_grid_callback(model, str(tmp_path / "filters"))
    callback(0, {})
    callback(1, {})
    assert sorted(p.name for p in (tmp_path / "filters").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
    ]


def test_projections_are_clipped_at_robust_percentiles_before_scaling():
    # A smooth signed projection in +-1 with one pixel at 1000: scaled by its maximum
    # it is near-uniform grey; clipped at the 0.5 / 99.5 % percentiles it spans the range.
    ramp = np.linspace(-1.0, 1.0, 40 * 40).reshape(1, 40, 40, 1).repeat(3, axis=3)
    ramp[0, 0, 0] = 1000.0
    plain = images.to_display(ramp)
    robust = images.to_display(ramp, percentiles=images.PROJECTION_PERCENTILES)
    assert np.ptp(plain[0, 1:]) < 0.01
    assert robust.min() < 0.01 and robust.max() == 1.0
    assert 0.45 < robust[0, 20, 0, 0] < 0.55  # zero stays grey
    # Clipping is per image: a second image's scale is its own.
    both = images.to_display(
        np.concatenate([ramp, ramp * 5]), percentiles=images.PROJECTION_PERCENTILES
    )
    np.testing.assert_allclose(both[0], both[1], atol=1e-6)
