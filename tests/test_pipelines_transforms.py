"""Transforms: shapes, boxes that follow crops and flips, randomness, PCA lighting."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines import constants
from pipelines import testing
from pipelines import transforms

ZERO_MEAN = (0.0, 0.0, 0.0)
UNIT_STD = (1.0, 1.0, 1.0)


def _map(fn, *values):
    return next(iter(tf.data.Dataset.from_tensors(values).map(fn)))


@pytest.mark.parametrize(
    "size, expected", [((300, 400), (256, 341)), ((512, 256), (512, 256)), ((1, 1), (256, 256))]
)
def test_resize_keep_aspect(size, expected):
    image = tf.zeros(size + (3,), tf.uint8)
    out = transforms.resize_keep_aspect(image, 256)
    assert out.shape == expected + (3,) and out.dtype == tf.float32


@pytest.mark.parametrize("run", ["eager", "dataset_map"])
def test_preprocess_for_eval_normalizes_center_crop(run):
    image = tf.fill([300, 400, 3], tf.constant(100, tf.uint8))
    fn = lambda im: transforms.preprocess_for_eval(im, 227, (10.0, 20.0, 30.0), (2.0, 4.0, 5.0))  # noqa: E731
    out = fn(image) if run == "eager" else _map(fn, image)
    assert out.shape == (227, 227, 3) and out.dtype == tf.float32
    np.testing.assert_allclose(out[0, 0], [45.0, 20.0, 14.0], rtol=1e-5)


def test_preprocess_for_eval_takes_the_center():
    image = np.zeros((256, 512, 3), np.uint8)
    image[:, 128:384] = 255  # Centre square white, sides black.
    out = transforms.preprocess_for_eval(tf.constant(image), 200, ZERO_MEAN, UNIT_STD)
    assert float(tf.reduce_min(out)) > 250


def test_preprocess_for_eval_in_map_fn_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def serve(batch):
        return tf.map_fn(
            lambda im: transforms.preprocess_for_eval(im, 221, ZERO_MEAN, UNIT_STD),
            batch,
            fn_output_signature=tf.float32,
        )

    assert serve(tf.zeros([2, 300, 280, 3], tf.uint8)).shape == (2, 221, 221, 3)


def test_mean_image_is_cropped_with_the_view():
    mean_image = np.zeros((256, 256, 3), np.float32)
    mean_image[:, 128:] = 100.0  # Right half of the mean image is 100.
    image = tf.fill([256, 256, 3], tf.constant(100, tf.uint8))
    views = transforms.ten_views(image, 128, mean_image, UNIT_STD).numpy()
    assert abs(views[0].mean() - 100) < 1 and abs(views[1].mean()) < 1  # TL vs TR.
    assert abs(views[5].mean() - 100) < 1  # TL flipped: same pixels, mirrored.


def test_ten_views_order_and_flips():
    image = tf.constant(testing.smooth_image(256, 300))
    views = transforms.ten_views(image, 224, ZERO_MEAN, UNIT_STD)
    assert views.shape == (10, 224, 224, 3)
    for i in range(5):
        np.testing.assert_allclose(views[i + 5], tf.image.flip_left_right(views[i]))
    square = transforms.resize_keep_aspect(image, 256)[:, 22:278]
    np.testing.assert_allclose(views[0], square[:224, :224], atol=1e-3)
    np.testing.assert_allclose(views[3], square[32:, 32:], atol=1e-3)


def test_crop_and_flip_boxes_exact():
    boxes = tf.constant([[0.2, 0.2, 0.6, 0.4], [0.0, 0.9, 0.1, 1.0]])
    labels = tf.constant([3, 4])
    moved, kept = transforms.crop_boxes(boxes, labels, tf.constant([0.0, 0.0, 0.8, 0.8]))
    np.testing.assert_allclose(moved, [[0.25, 0.25, 0.75, 0.5]])
    np.testing.assert_array_equal(kept, [3])
    np.testing.assert_allclose(transforms.flip_boxes(moved), [[0.25, 0.5, 0.75, 0.75]])


def _object_image(height, width, box):
    """Black JPEG with a white rectangle at pixel box (y0, x0, y1, x1); edges on
    multiples of 16 (the JPEG MCU) so that no ringing leaks past them."""
    image = np.zeros((height, width, 3), np.uint8)
    image[box[0] : box[2], box[1] : box[3]] = 255
    return testing.encode(image, quality=100)


def _train(encoded, boxes, seed, recipe="alexnet", crop=227, jitter=None):
    return transforms.preprocess_for_train(
        encoded,
        boxes,
        tf.zeros([tf.shape(boxes)[0]], tf.int32),
        seed,
        crop_size=crop,
        mean=ZERO_MEAN,
        std=UNIT_STD,
        augmentation=transforms.AUGMENTATIONS[recipe],
        eigen=None,
        scale_jitter=jitter,
    )


@pytest.mark.parametrize(
    "recipe, jitter", [("alexnet", None), ("overfeat", None), ("overfeat", (221, 320))]
)
def test_train_boxes_follow_crops_and_flips(recipe, jitter):
    height, width, pixel_box = 300, 450, (96, 128, 224, 224)
    encoded = tf.constant(_object_image(height, width, pixel_box))
    boxes = tf.constant([[96 / height, 128 / width, 224 / height, 224 / width]])
    seeds = tf.data.Dataset.range(40).map(lambda i: tf.stack([i, tf.constant(7, tf.int64)]))
    results = seeds.map(lambda s: _train(encoded, boxes, s, recipe, 221, jitter))
    checked = 0
    for image, out_boxes, _ in results:
        mask = image.numpy().mean(axis=2) > 127
        if out_boxes.shape[0] == 0:
            assert mask.mean() < 0.01
            continue
        rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        measured = np.array([rows[0], cols[0], rows[-1] + 1, cols[-1] + 1]) / 221
        np.testing.assert_allclose(out_boxes[0], measured, atol=1.0 / 221)
        checked += 1
    assert checked > 20


def test_train_crops_are_random_and_flip_half_the_time():
    encoded = tf.constant(_object_image(256, 256, (0, 0, 256, 128)))  # Left half white.
    seeds = tf.data.Dataset.range(200).map(lambda i: tf.stack([i, tf.constant(0, tf.int64)]))
    out = list(seeds.map(lambda s: _train(encoded, tf.zeros([0, 4]), s)).batch(200))[0][0]
    left_white = out[:, :, :100].numpy().mean(axis=(1, 2, 3)) > 127
    assert 70 <= left_white.sum() <= 130  # Binomial(200, 0.5): +-4.2 sigma.
    boundary = (out.numpy().mean(axis=(1, 3)) > 127).sum(axis=1)
    assert len(np.unique(boundary)) > 10  # Crop offsets vary.


def test_train_same_seed_same_output():
    encoded = tf.constant(testing.encode(testing.smooth_image(300, 400)))
    a = _train(encoded, tf.zeros([0, 4]), tf.constant([5, 1], tf.int64))[0]
    b = _train(encoded, tf.zeros([0, 4]), tf.constant([5, 1], tf.int64))[0]
    c = _train(encoded, tf.zeros([0, 4]), tf.constant([6, 1], tf.int64))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_train_png_fallback_and_one_pixel():
    for data in (
        testing.encode(testing.smooth_image(200, 260), "PNG"),
        testing.encode(testing.smooth_image(1, 1)),
    ):
        image = _train(tf.constant(data), tf.zeros([0, 4]), tf.constant([1, 2], tf.int64))[0]
        assert image.shape == (227, 227, 3)


def test_pca_lighting_covariance_matches_constants():
    n = 4000
    seeds = tf.data.Dataset.range(n).map(lambda i: tf.stack([i, tf.constant(3, tf.int64)]))
    gray = tf.fill([1, 1, 3], 128.0)
    shifts = seeds.map(
        lambda s: (
            transforms.pca_lighting(gray, s, constants.PCA_EIGVAL, constants.PCA_EIGVEC)[0, 0]
            - 128.0
        )
    )
    added = next(iter(shifts.batch(n))).numpy() / 255.0
    v, lam = constants.PCA_EIGVEC, constants.PCA_EIGVAL
    expected = v @ np.diag((0.1 * lam) ** 2) @ v.T
    np.testing.assert_allclose(np.cov(added.T), expected, atol=0.06 * expected.max())
    np.testing.assert_allclose(added.mean(0), 0, atol=4 * np.sqrt(expected.max() / n))


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
def test_fused_batch_half_equals_the_formula_op_by_op(dtype):
    # The per-channel batch half runs as one XLA-fused pass; it must still be
    # (flipped image - (mean - shift)) / std for each image with its own draws.
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 5, 6, 3)).astype(np.float32)
    flip = np.array([True, False, True, False])
    shift = rng.normal(0, 5, (4, 3)).astype(np.float32)
    mean, std = np.float32([120, 110, 100]), np.float32([50, 60, 70])
    draws = {
        "flip": tf.constant(flip),
        "shift": tf.constant(shift),
        "mean_window": tf.zeros([4, 4]),
    }
    got = transforms.augment_batch(tf.constant(images), draws, mean, std, dtype)
    assert got.dtype == dtype
    flipped = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
    expected = (flipped - (mean - shift[:, None, None, :])) / std
    tolerance = 1e-5 if dtype == tf.float32 else 2e-2
    np.testing.assert_allclose(tf.cast(got, tf.float32), expected, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("mean_image", [False, True])
def test_batch_half_applies_each_images_own_draws(mean_image):
    # Per-image crops, then flip, lighting and normalisation over the batch at once,
    # equal image by image to the one-image path with the same seeds.
    encoded = tf.constant(testing.encode(testing.smooth_image(300, 400)))
    mean = (
        np.arange(256 * 256 * 3, dtype=np.float32).reshape(256, 256, 3) % 251
        if mean_image
        else np.array([120.0, 110.0, 100.0], np.float32)
    )
    std = np.array([50.0, 60.0, 70.0], np.float32)
    eigen = (tf.constant([0.2, 0.02, 0.005]), tf.eye(3))
    seeds = [tf.constant([i, 3], tf.int64) for i in range(8)]
    # Without boxes (the classification path, which skips the box arithmetic); the
    # one-image path below crops boxes, and the images must not differ.
    crops = [
        transforms.train_crop(
            encoded,
            None,
            None,
            seed,
            crop_size=99,
            augmentation=transforms.AUGMENTATIONS["overfeat"],
            eigen=eigen,
            scale_jitter=None,
        )
        for seed in seeds
    ]
    assert crops[0][1] is None and crops[0][2] is None
    draws = {name: tf.stack([c[3][name] for c in crops]) for name in crops[0][3]}
    assert 0 < int(tf.reduce_sum(tf.cast(draws["flip"], tf.int32))) < 8
    batch = transforms.augment_batch(tf.stack([c[0] for c in crops]), draws, mean, std, tf.bfloat16)
    assert batch.dtype == tf.bfloat16
    for seed, image in zip(seeds, batch):
        single = transforms.preprocess_for_train(
            encoded,
            tf.zeros([0, 4]),
            tf.zeros([0], tf.int32),
            seed,
            crop_size=99,
            mean=mean,
            std=std,
            augmentation=transforms.AUGMENTATIONS["overfeat"],
            eigen=eigen,
            scale_jitter=None,
        )[0]
        np.testing.assert_allclose(tf.cast(image, tf.float32), single, atol=0.02, rtol=0.01)
