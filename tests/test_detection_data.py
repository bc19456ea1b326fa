"""Detection-classifier crops: positives around objects, negatives clear of them."""

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from overfeat_tf.detection import boxes as box_ops
from overfeat_tf.detection import detection_data
from pipelines import testing

SAMPLING = detection_data.CropSampling()
SIZE = tf.constant([256.0, 320.0])
OBJECTS = np.array([[20, 30, 100, 90], [150, 200, 230, 300], [40, 180, 90, 240]], np.float32)


def _coverage(windows, objects):
    """Fraction of each object inside each window [k, n]."""
    return box_ops.intersection(windows, objects) / box_ops.area(objects)[None, :]


@pytest.mark.parametrize("seed", range(5))
def test_positive_windows_frame_their_object(seed):
    windows = detection_data.positive_windows(
        OBJECTS, SIZE, tf.constant([seed, 0]), SAMPLING
    ).numpy()
    sides = windows[:, 2:] - windows[:, :2]
    np.testing.assert_allclose(sides[:, 0], sides[:, 1], rtol=1e-5)  # square
    longer = (OBJECTS[:, 2:] - OBJECTS[:, :2]).max(axis=1)
    assert np.all(sides[:, 0] >= longer * 0.999) and np.all(sides[:, 0] <= longer / 0.5 + 1e-3)
    assert np.all(windows[:, :2] >= 0) and np.all(windows[:, 2:] <= SIZE.numpy() + 1e-3)
    # Each object is mostly inside its own window (fill <= 1, jitter 0.08 window sides).
    assert np.all(np.diag(_coverage(windows, OBJECTS)) > 0.8)


@pytest.mark.parametrize("seed", range(5))
def test_negative_windows_stay_clear_of_every_object(seed):
    windows = detection_data.negative_windows(
        OBJECTS, SIZE, tf.constant([seed, 1]), SAMPLING
    ).numpy()
    assert len(windows) <= SAMPLING.negatives_per_image
    if len(windows):
        assert box_ops.iou(windows, OBJECTS).max() < SAMPLING.negative_max_iou
        assert _coverage(windows, OBJECTS).max() < SAMPLING.negative_max_coverage
        sides = (windows[:, 2] - windows[:, 0]) / 256.0
        assert np.all((sides >= 0.35 - 1e-6) & (sides <= 0.85 + 1e-6))
    empty = detection_data.negative_windows(
        tf.zeros([0, 4]), SIZE, tf.constant([seed, 1]), SAMPLING
    )
    assert empty.shape == (SAMPLING.negatives_per_image, 4)  # nothing to avoid


def test_image_crops_labels_and_content():
    image = np.zeros((256, 320, 3), np.float32)
    image[20:100, 30:90] = 1.0  # the first object is a bright rectangle
    normalised = OBJECTS / np.array([256, 320, 256, 320], np.float32)
    crops, labels = detection_data.image_crops(
        tf.constant(image),
        tf.constant(normalised),
        tf.constant([4, 0, 7]),
        tf.constant([3, 3]),
        crop_size=64,
        background=12,
        sampling=SAMPLING,
        flip=True,
    )
    labels = labels.numpy()
    np.testing.assert_array_equal(labels[:3], [4, 0, 7])
    assert np.all(labels[3:] == 12) and len(labels) <= 3 + SAMPLING.negatives_per_image
    assert crops.shape == (len(labels), 64, 64, 3)
    assert float(crops[0, 32, 32, 0]) == pytest.approx(1.0)  # the object's middle is in the middle


def test_sampling_rejects_bad_ranges():
    with pytest.raises(ValueError, match=r"CropSampling.fill must satisfy"):
        detection_data.CropSampling(fill=(0.8, 0.5))
    with pytest.raises(ValueError, match="negatives_per_image <= negative_tries"):
        detection_data.CropSampling(negatives_per_image=20, negative_tries=4)


@pytest.fixture(scope="module")
def source(tiny_data):
    return pipelines.open_source("embedded", tiny_data)


def test_crop_dataset(source):
    common = {"crop_size": 67, "mean": pipelines.IMAGENET_MEAN_RGB, "std": (58.4, 57.1, 57.4)}
    evaluation = detection_data.crop_dataset(
        source, "detection_validation", batch_size=7, training=False, seed=5, **common
    )
    first = [(x.numpy(), y.numpy()) for x, y in evaluation]
    again = [(x.numpy(), y.numpy()) for x, y in evaluation]
    labels = np.concatenate([y for _, y in first])
    objects = sum(len(r["box_labels"]) for r in source.records("detection_validation"))
    assert objects <= len(labels) <= objects + 3 * testing.TINY_EMBEDDED.detection_validation
    assert labels.min() >= 0 and labels.max() == source.num_classes  # background present
    for (x1, y1), (x2, y2) in zip(first, again):  # fixed crops for validation
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_allclose(x1, x2)
    training = detection_data.crop_dataset(
        source, "detection_train", batch_size=8, training=True, seed=1, **common
    )
    images, labels = next(iter(training))
    assert images.shape == (8, 67, 67, 3) and labels.dtype == tf.int32
