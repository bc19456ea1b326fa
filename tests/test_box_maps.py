"""Class maps and regressed boxes per location, scale and flip (detection/box_maps.py)."""

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf.detection import box_maps
from overfeat_tf.detection import regressor as regressor_lib

CLASSES = 5


@pytest.fixture(scope="module")
def model():
    return overfeat_tf.build_model("alexnet", CLASSES, 0.0625, init="he", dropout=0.0)


def _regressor(per_class=True, deltas=(0.0, 0.0, 0.0, 0.0)):
    """A head predicting the constant `deltas` everywhere (zero weights, bias only)."""
    head = regressor_lib.build_regressor(
        regressor_lib.RegressorConfig("alexnet", CLASSES, 0.0625, per_class=per_class)
    )
    layer = head.get_layer("reg_boxes")
    layer.bias.assign(np.tile(np.float32(deltas), layer.filters // 4))
    return head


def _image(height, width):
    return tf.random.stateless_normal([height, width, 3], seed=[1, 2])


def test_windows_map_back_to_the_image_pixels(model):
    # A 256 x 300 image at scale 243: resized to 243 x 285 (300 * 243 / 256 = 284.77).
    # The fine map has (243 - 227) / 16 + 1 = 2 rows and (285 - 227) // 16 + 1 = 4
    # columns; cell (i, j) sees scaled pixels (16 i, 16 j) + 227, i.e. image pixels
    # times (256 / 243, 300 / 285).
    predictor = box_maps.BoxPredictor(model, _regressor(), scales=[243], flips=False)
    (view,) = predictor(_image(256, 300))
    assert view.scale == (243, 243) and not view.flipped
    assert view.probs.shape == (2, 4, CLASSES)
    assert view.boxes.shape == (2, 4, CLASSES, 4)
    fy, fx = 256 / 243, 300 / 285
    np.testing.assert_allclose(
        view.windows[1, 3], [16 * fy, 48 * fx, 243 * fy, 275 * fx], rtol=1e-5
    )
    # The zero head predicts each location's own window, for every class.
    np.testing.assert_allclose(
        view.boxes, np.broadcast_to(view.windows[:, :, None], view.boxes.shape), rtol=1e-5
    )
    np.testing.assert_allclose(view.probs.sum(-1), 1.0, rtol=1e-5)


def test_probabilities_are_the_dense_evaluators(model):
    predictor = box_maps.BoxPredictor(model, _regressor(), scales=[243, 275], flips=True)
    image = _image(250, 260)
    dense_maps = overfeat_tf.DenseEvaluator(model, [243, 275], flips=True).score_maps(
        image[tf.newaxis]
    )
    views = predictor(image)
    assert [(v.scale, v.flipped) for v in views] == list(predictor.views)
    for view, expected in zip(views, dense_maps):
        np.testing.assert_allclose(view.probs, expected[0].numpy(), rtol=1e-4, atol=1e-6)


def test_flipped_boxes_are_mirrored_back(model):
    # The head moves every box's left edge right by 0.1 of the window side (22.7 px at
    # the scale). In the mirrored image that is the right edge of the original moving
    # left: the flipped view's box is its window with xmax - 22.7 px.
    predictor = box_maps.BoxPredictor(
        model, _regressor(per_class=False, deltas=(0.0, 0.1, 0.0, 0.0)), scales=[243], flips=True
    )
    # At the scale's exact size both grids span the image: flipped windows = windows.
    plain, flipped = predictor(_image(243, 243))
    np.testing.assert_allclose(flipped.windows, plain.windows, atol=1e-4)
    shift = np.array([0.0, 22.7, 0.0, 0.0], np.float32)
    np.testing.assert_allclose(plain.boxes[:, :, 0], plain.windows + shift, atol=1e-4)
    np.testing.assert_allclose(
        flipped.boxes[:, :, 0], flipped.windows - shift[[0, 3, 2, 1]], atol=1e-4
    )
    assert flipped.class_boxes(3).shape == (2, 2, 4)  # the shared box for any class


def test_flipped_grid_covers_the_image_from_the_right(model):
    # 300 px wide at scale 256 (no resize): unflipped columns start at 0, 16, 32, 48,
    # 64; the mirrored image's columns, mapped back, end at 300, 284, ... so after the
    # column reversal they start at 300 - 227 - 16 k, left to right.
    predictor = box_maps.BoxPredictor(model, _regressor(), scales=[256], flips=True)
    plain, flipped = predictor(_image(256, 300))
    np.testing.assert_allclose(plain.windows[0, :, 1], [0, 16, 32, 48, 64])
    np.testing.assert_allclose(flipped.windows[0, :, 1], [9, 25, 41, 57, 73], atol=1e-4)
    np.testing.assert_allclose(flipped.windows[0, -1, 3], 300, atol=1e-4)


def test_bad_image_shape_is_a_clear_error(model):
    predictor = box_maps.BoxPredictor(model, _regressor(), scales=[243], flips=False)
    with pytest.raises(ValueError, match=r"\[h, w, 3\]"):
        predictor(np.zeros((2, 243, 243, 3), np.float32))
