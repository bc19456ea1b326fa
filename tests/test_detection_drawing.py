"""Boxes drawn on images and written as PNG."""

import numpy as np
import pytest
from PIL import Image

from overfeat_tf.detection import drawing


def test_draw_boxes_outlines_in_the_colour_and_leaves_the_input_alone(tmp_path):
    image = np.zeros((50, 60, 3), np.uint8)
    drawn = drawing.draw_boxes(image, [[10, 20, 30, 40]], ["cat"], colour=(0, 255, 0))
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    assert not image.any()
    np.testing.assert_array_equal(drawn[10, 25], [0, 255, 0])  # top edge
    np.testing.assert_array_equal(drawn[20, 40], [0, 255, 0])  # right edge
    np.testing.assert_array_equal(drawn[28, 25], [0, 0, 0])  # inside, below the label
    path = tmp_path / "out" / "a.png"
    drawing.write_png(str(path), drawn)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), drawn)


def test_draw_boxes_bad_input():
    with pytest.raises(ValueError, match=r"uint8 \[h, w, 3\]"):
        drawing.draw_boxes(np.zeros((5, 5), np.uint8), [])
    with pytest.raises(ValueError, match="2 labels for 1 boxes"):
        drawing.draw_boxes(np.zeros((5, 5, 3), np.uint8), [[0, 0, 1, 1]], ["a", "b"])


def test_a_box_with_crossed_edges_is_drawn_over_its_extent():
    # A barely trained regressor can predict xmin > xmax; drawing its detections must not
    # fail, and the outline is the same as for the box with its edges in order.
    image = np.zeros((50, 60, 3), np.uint8)
    ordered = drawing.draw_boxes(image, [[10, 20, 30, 40]])
    np.testing.assert_array_equal(drawing.draw_boxes(image, [[30, 40, 10, 20]]), ordered)
    np.testing.assert_array_equal(drawing.draw_boxes(image, [[10, 40, 30, 20]]), ordered)


def test_to_pixels_undoes_the_input_normalisation_and_clips():
    mean, std = np.array([120.0, 110.0, 100.0]), np.array([50.0, 60.0, 70.0])
    pixels = np.array([[[0, 255, 37], [200, 3, 90]]], np.float64)
    got = drawing.to_pixels((pixels - mean) / std, mean, std)
    assert got.dtype == np.uint8
    np.testing.assert_allclose(got, pixels, atol=1)
    np.testing.assert_array_equal(
        drawing.to_pixels(np.array([[[-9.0, 9.0, 0.0]]]), mean, std), [[[0, 255, 100]]]
    )
