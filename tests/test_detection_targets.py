"""Box-regression targets relative to each location's window (overfeat_tf/detection/targets.py).

Expected values are worked out by hand below; AlexNet geometry: window S = 227 px, fine
cell stride 16 px.
"""

import numpy as np
import pytest
import tensorflow as tf

from overfeat_tf.detection import targets
from pipelines import transforms

S, STRIDE = 227, 16


def _targets(boxes, labels, height=2, width=2):
    windows = targets.cell_windows(height, width, STRIDE, S)
    return targets.regression_targets(
        tf.constant([boxes], tf.float32), tf.constant([labels], tf.int32), windows, S
    )


def test_cell_windows_are_the_stride_grid():
    windows = targets.cell_windows(2, 3, STRIDE, S).numpy()
    assert windows.shape == (2, 3, 4)
    np.testing.assert_array_equal(windows[0, 0], [0, 0, 227, 227])
    np.testing.assert_array_equal(windows[1, 2], [16, 32, 243, 259])


def test_encode_is_edge_offsets_in_window_sides_and_decode_inverts_it():
    window = tf.constant([16.0, 32.0, 243.0, 259.0])
    # A box twice the window's size around its centre: every edge half a side out.
    box = tf.constant([16 - 113.5, 32 - 113.5, 243 + 113.5, 259 + 113.5])
    np.testing.assert_allclose(targets.encode(box, window, S), [-0.5, -0.5, 0.5, 0.5])
    np.testing.assert_allclose(targets.encode(window, window, S), [0, 0, 0, 0])
    deltas = tf.constant([0.1, -0.2, 0.3, -0.4])
    np.testing.assert_allclose(
        targets.encode(targets.decode(deltas, window, S), window, S), deltas, atol=1e-6
    )


def _crop_then_scale(box, flip):
    """A 320x256 (w x h) image's box through a training crop (x offset 32, side 256),
    an optional flip, then resized to the 243 px scale: pixels of the trunk's input."""
    window_n = tf.constant([0.0, 32 / 320, 1.0, 288 / 320])
    boxes, labels = transforms.crop_boxes(tf.constant([box]), tf.constant([3]), window_n)
    if flip:
        boxes = transforms.flip_boxes(boxes)
    return boxes.numpy()[0] * 243, labels.numpy()


@pytest.mark.parametrize("flip", [False, True])
def test_targets_for_a_crop_and_a_flip(flip):
    # Box in the original image: y 64..192, x 80..160 px (of 256 x 320).
    box = [64 / 256, 80 / 320, 192 / 256, 160 / 320]
    pixels, labels = _crop_then_scale(box, flip)
    # In the 256 crop x runs 48..128 (minus the 32 px offset); flipped, 256 - x: 128..208.
    # Scaled by 243 / 256: y 60.75..182.25; x 45.5625..121.5, flipped 121.5..197.4375.
    x0, x1 = (121.5, 197.4375) if flip else (45.5625, 121.5)
    np.testing.assert_allclose(pixels, [60.75, x0, 182.25, x1], rtol=1e-6)
    result = _targets([pixels], labels)
    # The 243 px input has a 2 x 2 fine map; every window holds the whole box.
    np.testing.assert_array_equal(result.mask.numpy()[0], np.ones((2, 2), bool))
    np.testing.assert_array_equal(result.labels.numpy()[0], np.full((2, 2), 3))
    # Location (0, 0): window (0, 0, 227, 227); (1, 1): window (16, 16, 243, 243).
    np.testing.assert_allclose(
        result.deltas.numpy()[0, 0, 0],
        [60.75 / S, x0 / S, (182.25 - 227) / S, (x1 - 227) / S],
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        result.deltas.numpy()[0, 1, 1],
        [(60.75 - 16) / S, (x0 - 16) / S, (182.25 - 243) / S, (x1 - 243) / S],
        rtol=1e-5,
    )


def test_only_locations_seeing_more_than_half_the_box_train():
    # 60 px wide box; window (0, 0, 227, 227) sees x 200..227 = 27 / 60 = 45 % of it,
    # window (0, 16, 227, 243) sees 43 / 60 = 72 %.
    result = _targets([[0, 200, 100, 260]], [1], height=1, width=2)
    np.testing.assert_array_equal(result.mask.numpy()[0], [[False, True]])
    np.testing.assert_array_equal(result.labels.numpy()[0], [[-1, 1]])
    np.testing.assert_array_equal(result.deltas.numpy()[0, 0, 0], [0, 0, 0, 0])
    # Exactly half in view (x 197..257 in window 0: 30 / 60) does not train.
    assert not _targets([[0, 197, 100, 257]], [1], 1, 1).mask.numpy().any()


def test_several_boxes_take_the_one_best_matching_the_window_and_skip_padding():
    small = [10, 10, 60, 60]  # wholly inside, IoU with the 227 window ~ 0.05
    large = [0, 0, 200, 220]  # wholly inside, IoU ~ 0.85
    padding = [0, 0, 227, 227]  # a perfect match, but labelled -1
    result = _targets([small, large, padding], [4, 7, -1], 1, 1)
    assert result.labels.numpy()[0, 0, 0] == 7
    np.testing.assert_allclose(
        result.deltas.numpy()[0, 0, 0], np.array([0, 0, 200 - 227, 220 - 227]) / S, rtol=1e-6
    )
    # Padding alone trains nowhere.
    assert not _targets([padding], [-1], 1, 1).mask.numpy().any()


def test_coverage_is_the_fraction_of_the_box_in_the_window():
    window = tf.constant([0.0, 0.0, 100.0, 100.0])
    np.testing.assert_allclose(
        targets.coverage(window, tf.constant([50.0, 50.0, 150.0, 150.0])), 0.25
    )
    # A degenerate box has no area: coverage 0, not NaN.
    assert float(targets.coverage(window, tf.constant([5.0, 5.0, 5.0, 9.0]))) == 0.0
