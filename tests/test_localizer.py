"""Ranked (class, box) guesses and localization error (overfeat_tf/detection/localizer.py).

The predictor is replaced by hand-made `BoxMap`s, so every candidate and merge is known.
"""

import numpy as np
import pytest
import tensorflow as tf

from overfeat_tf.detection import localizer as localizer_lib
from overfeat_tf.detection.box_maps import BoxMap

NUM_CLASSES = 4


class FakePredictor:
    """Returns fixed views: two locations (1 x 2 map), a per-class regressor."""

    def __init__(self, views):
        self._views = views
        self.views = [(v.scale, v.flipped) for v in views]

    def __call__(self, image):
        return self._views


def _view(probs, boxes, flipped=False):
    probs = np.asarray(probs, np.float32).reshape(1, 2, NUM_CLASSES)
    boxes = np.asarray(boxes, np.float32).reshape(1, 2, NUM_CLASSES, 4)
    return BoxMap((243, 243), flipped, probs, boxes, np.zeros((1, 2, 4), np.float32))


def _boxes(per_location):
    """[2 locations][class] -> box; classes not given get a far-away box."""
    out = np.tile(np.float32([500, 500, 510, 510]), (2, NUM_CLASSES, 1))
    for location, boxes in enumerate(per_location):
        for class_id, box in boxes.items():
            out[location, class_id] = box
    return out


def _localizer(views, **kwargs):
    return localizer_lib.Localizer(FakePredictor(views), **kwargs)


def test_guesses_merge_each_class_and_rank_classes_by_accumulated_score():
    # Class 2 is likelier at both locations and both views; its four near-identical
    # boxes merge into their mean with the summed probability. Class 0's two boxes lie
    # far apart (no merge): its best guess carries only one location's probability.
    probs = [[0.3, 0.0, 0.6, 0.1], [0.3, 0.0, 0.6, 0.1]]
    boxes = _boxes(
        [
            {2: [10, 10, 110, 110], 0: [0, 0, 50, 50]},
            {2: [12, 14, 112, 114], 0: [150, 150, 200, 200]},
        ]
    )
    views = [_view(probs, boxes), _view(probs, boxes, flipped=True)]
    found = _localizer(views, classes_per_view=2)(np.zeros((240, 260, 3), np.float32))
    np.testing.assert_array_equal(found.classes, [2, 0])
    np.testing.assert_allclose(found.scores, [4 * 0.6, 2 * 0.3], rtol=1e-6)
    np.testing.assert_allclose(found.boxes[0], [11, 12, 111, 112], rtol=1e-6)
    assert found.ranked()[0][0] == 2


def test_top_k_classes_per_view_and_min_score_choose_the_candidates():
    probs = [[0.5, 0.3, 0.195, 0.005], [0.4, 0.4, 0.19, 0.01]]
    boxes = _boxes([{}, {}])
    localizer = _localizer([_view(probs, boxes)], classes_per_view=3, min_score=0.01)
    candidates = localizer.candidates(np.zeros((243, 243, 3), np.float32))
    # Top 3 of the maxed map (0.5, 0.4, 0.195): classes 0, 1, 2; class 3 is out.
    np.testing.assert_array_equal(candidates.classes, [0, 0, 1, 1, 2, 2])
    np.testing.assert_allclose(candidates.scores, [0.5, 0.4, 0.3, 0.4, 0.195, 0.19], rtol=1e-6)
    only_likely = _localizer([_view(probs, boxes)], classes_per_view=3, min_score=0.35)
    np.testing.assert_array_equal(only_likely.candidates(np.zeros((9, 9, 3))).classes, [0, 0, 1])


def test_guesses_are_clipped_to_the_image_and_capped():
    probs = [[0.4, 0.3, 0.2, 0.1]] * 2
    box = [-20, -30, 300, 400]
    boxes = _boxes([{c: box for c in range(4)}, {c: box for c in range(4)}])
    found = _localizer([_view(probs, boxes)], classes_per_view=4, guesses=3)(
        np.zeros((200, 250, 3), np.float32)
    )
    np.testing.assert_array_equal(found.classes, [0, 1, 2])
    np.testing.assert_allclose(found.boxes, [[0, 0, 200, 250]] * 3)


def test_evaluate_localization_counts_top1_and_top5():
    # Guesses: class 2 at (11, 12, 111, 112), then class 0 at (0, 0, 50, 50).
    probs = [[0.3, 0.0, 0.6, 0.1], [0.3, 0.0, 0.6, 0.1]]
    boxes = _boxes(
        [{2: [10, 10, 110, 110], 0: [0, 0, 50, 50]}, {2: [12, 14, 112, 114], 0: [0, 0, 50, 50]}]
    )
    localizer = _localizer([_view(probs, boxes)], classes_per_view=2)
    image = tf.zeros([1, 200, 200, 3])

    def labels(box_pixels, class_id):
        return {
            "boxes": tf.constant([[box_pixels, [0, 0, 0, 0]]], tf.float32) / 200.0,
            "box_labels": tf.constant([[class_id, -1]]),
            "num_boxes": tf.constant([1]),
        }

    batches = [
        (image, labels([11, 12, 111, 112], 2)),  # top-1 right
        (image, labels([0, 0, 50, 50], 0)),  # right at guess 2: a top-5 hit only
        (image, labels([11, 12, 111, 112], 3)),  # wrong class: missed
        (image, labels([100, 100, 200, 200], 2)),  # right class, IoU < 0.5: missed
    ]
    seen = []
    result = localizer_lib.evaluate_localization(
        localizer, batches, on_image=lambda index, *rest: seen.append(index)
    )
    assert result["examples"] == 4 and seen == [0, 1, 2, 3]
    assert result["top1_error"] == pytest.approx(75.0)
    assert result["top5_error"] == pytest.approx(50.0)
    assert (
        localizer_lib.evaluate_localization(localizer, batches, max_examples=1)["top1_error"] == 0.0
    )


def test_bad_arguments_are_clear_errors():
    views = [_view([[1, 0, 0, 0]] * 2, _boxes([{}, {}]))]
    with pytest.raises(ValueError, match="match must be one of"):
        _localizer(views, match="nearest")
    with pytest.raises(ValueError, match="must be >= 1"):
        _localizer(views, guesses=0)
    with pytest.raises(ValueError, match="No examples"):
        localizer_lib.evaluate_localization(_localizer(views), [])
