"""ILSVRC localization error and VOC mAP against cases computed by hand."""

import math

import numpy as np
import pytest

from overfeat_tf.detection import metrics

BOX = [0, 0, 10, 10]
HALF = [0, 0, 10, 5]  # IoU with BOX exactly 0.5
FAR = [20, 20, 30, 30]


def test_localization_needs_class_and_box_within_the_top_k():
    truth = [([1], [BOX])]
    guesses = [[(2, BOX), (1, HALF)]]  # wrong class first, then right class at IoU 0.5
    assert metrics.localization_error(guesses, truth, top=1) == 1.0
    assert metrics.localization_error(guesses, truth, top=2) == 0.0  # IoU >= 0.5 counts
    assert metrics.localization_error(guesses, truth, top=2, iou_threshold=0.51) == 1.0
    assert metrics.localization_error([[(1, FAR)]], truth) == 1.0  # right class, wrong place


def test_localization_over_several_images_and_objects():
    truth = [([0, 3], [BOX, FAR]), ([2], [BOX]), ([1], [BOX]), ([], np.zeros((0, 4)))]
    guesses = [[(3, FAR)],   # matches the second object
               [],            # no guess: an error
               [(1, BOX)],
               [(0, BOX)]]    # no ground truth: left out
    assert metrics.localization_error(guesses, truth) == pytest.approx(1 / 3)


def test_localization_bad_input():
    with pytest.raises(ValueError, match="no image has a ground-truth object"):
        metrics.localization_error([[]], [([], np.zeros((0, 4)))])
    with pytest.raises(ValueError, match="same images"):
        metrics.localization_error([[]], [])
    with pytest.raises(ValueError, match="top must be >= 1"):
        metrics.localization_error([[]], [([0], [BOX])], top=0)


def test_average_precision_by_hand():
    # Ranked TP, FP, TP with 2 true objects: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # All-point interpolation: 1/2 * 1 + 1/2 * 2/3.
    assert metrics.average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(5 / 6)
    assert metrics.average_precision([0.1, 0.9], [True, True], 2) == 1.0
    assert metrics.average_precision([], [], 3) == 0.0
    assert metrics.average_precision([0.5], [False], 1) == 0.0
    assert math.isnan(metrics.average_precision([0.5], [False], 0))
    # Precision interpolation: FP, TP, TP, 2 objects -> 1/2 * 2/3 + 1/2 * 2/3.
    assert metrics.average_precision([3, 2, 1], [False, True, True], 2) == pytest.approx(2 / 3)


def test_ties_keep_their_order():
    assert metrics.average_precision([0.5, 0.5], [True, False], 1) == 1.0
    assert metrics.average_precision([0.5, 0.5], [False, True], 1) == 0.5


def test_duplicates_are_false_positives_as_in_voc():
    other = [0, 1, 10, 11]  # IoU with BOX = 90 / 110
    near = [0, 0.4, 10, 10.4]  # IoU 96 / 104 with BOX, 94 / 106 with `other`
    tp = metrics.match_detections([BOX, near, other], [0.9, 0.8, 0.7], [BOX, other])
    # near takes its best box (BOX, taken) -> duplicate, although `other` was still free.
    np.testing.assert_array_equal(tp, [True, False, True])
    tp = metrics.match_detections([BOX, BOX], [0.8, 0.9], [BOX])
    np.testing.assert_array_equal(tp, [False, True])  # the higher score takes the object


def test_mean_average_precision_by_hand():
    truth = [([0, 1], [BOX, FAR]), ([0], [FAR]), ([], np.zeros((0, 4)))]
    detections = [
        ([BOX, BOX, FAR], [0.9, 0.8, 0.6], [0, 0, 1]),  # class 0: TP then duplicate; class 1: TP
        ([FAR], [0.7], [0]),                              # class 0: TP
        ([BOX], [0.95], [2]),                             # class 2 has no object: not scored
    ]
    mean, per_class = metrics.mean_average_precision(detections, truth, num_classes=4)
    np.testing.assert_allclose(per_class[:2], [5 / 6, 1.0])
    assert math.isnan(per_class[2]) and math.isnan(per_class[3])
    assert mean == pytest.approx((5 / 6 + 1.0) / 2)


def test_mean_average_precision_empty_predictions_and_empty_ground_truth():
    truth = [([0], [BOX]), ([], np.zeros((0, 4)))]
    nothing = [(np.zeros((0, 4)), [], []), (np.zeros((0, 4)), [], [])]
    mean, per_class = metrics.mean_average_precision(nothing, truth, num_classes=2)
    assert mean == 0.0 and per_class[0] == 0.0 and math.isnan(per_class[1])
    # A detection on an image without objects is a false positive of its class.
    spurious = [([BOX], [0.9], [0]), ([BOX], [0.95], [0])]
    mean, _ = metrics.mean_average_precision(spurious, truth, num_classes=2)
    assert mean == pytest.approx(0.5)
    mean, per_class = metrics.mean_average_precision(
        nothing, [([], np.zeros((0, 4)))] * 2, num_classes=2)
    assert math.isnan(mean) and np.isnan(per_class).all()


def test_mean_average_precision_bad_classes():
    with pytest.raises(ValueError, match=r"detected classes must lie in \[0, 2\)"):
        metrics.mean_average_precision([([BOX], [1.0], [2])], [([0], [BOX])], num_classes=2)
    with pytest.raises(ValueError, match="must match"):
        metrics.mean_average_precision([([BOX], [1.0, 2.0], [0])], [([0], [BOX])], num_classes=2)
