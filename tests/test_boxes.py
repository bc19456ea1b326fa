"""Box arithmetic: IoU, areas and clipping against values computed by hand."""

import numpy as np
import pytest

from overfeat_tf.detection import boxes


def test_iou_by_hand():
    a = [[0, 0, 2, 2], [0, 0, 4, 4]]
    b = [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [2, 0, 4, 2]]
    expected = [
        [1 / 7, 1.0, 0.0, 0.0],  # corner overlap 1 / (4 + 4 - 1); touching = 0
        [4 / 16, 4 / 16, 0.0, 4 / 16],
    ]  # contained: the small box's area / 16
    got = boxes.iou(a, b)
    assert got.shape == (2, 4) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected)


def test_iou_is_symmetric_and_handles_empty_and_degenerate_boxes():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 10, (6, 2, 2))
    a = np.concatenate([corners.min(1), corners.max(1)], axis=1)
    np.testing.assert_allclose(boxes.iou(a, a), boxes.iou(a, a).T)
    np.testing.assert_allclose(np.diag(boxes.iou(a, a)), 1.0)
    assert boxes.iou(np.zeros((0, 4)), a).shape == (0, 6)
    assert boxes.iou([], []).shape == (0, 0)
    point = [[1, 1, 1, 1]]
    assert boxes.iou(point, point)[0, 0] == 0.0  # no NaN for zero-area boxes


def test_area_centres_clip_and_scale():
    b = [[1, 2, 4, 8], [3, 3, 1, 5]]
    np.testing.assert_allclose(boxes.area(b), [18, 0])  # inverted box has area 0
    np.testing.assert_allclose(boxes.centres(b), [[2.5, 5], [2, 4]])
    np.testing.assert_allclose(boxes.clip_boxes([[-1, 2, 40, 8]], 10, 6), [[0, 2, 10, 6]])
    np.testing.assert_allclose(boxes.scale_boxes([[0.5, 0.25, 1, 1]], 10, 20), [[5, 5, 10, 20]])


def test_bad_shape_names_the_argument():
    with pytest.raises(ValueError, match=r"b must have shape \[n, 4\].*\(3,\)"):
        boxes.iou([[0, 0, 1, 1]], [0, 1, 2])
