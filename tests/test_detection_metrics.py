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
    guesses = [
        [(3, FAR)],  # matches the second object
        [],  # no guess: an error
        [(1, BOX)],
        [(0, BOX)],
    ]  # no ground truth: left out
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
    assert metrics.average_precision([0.9, 0.8, 0.7], [True, False, True], 2) == pytest.approx(
        5 / 6
    )
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
    tp, ignored = metrics.match_detections([BOX, near, other], [0.9, 0.8, 0.7], [BOX, other])
    assert not ignored.any()
    # near takes its best box (BOX, taken) -> duplicate, although `other` was still free.
    np.testing.assert_array_equal(tp, [True, False, True])
    tp, _ = metrics.match_detections([BOX, BOX], [0.8, 0.9], [BOX])
    np.testing.assert_array_equal(tp, [False, True])  # the higher score takes the object


def test_mean_average_precision_by_hand():
    truth = [([0, 1], [BOX, FAR]), ([0], [FAR]), ([], np.zeros((0, 4)))]
    detections = [
        ([BOX, BOX, FAR], [0.9, 0.8, 0.6], [0, 0, 1]),  # class 0: TP then duplicate; class 1: TP
        ([FAR], [0.7], [0]),  # class 0: TP
        ([BOX], [0.95], [2]),  # class 2 has no object: not scored
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
        nothing, [([], np.zeros((0, 4)))] * 2, num_classes=2
    )
    assert math.isnan(mean) and np.isnan(per_class).all()


def test_mean_average_precision_bad_classes():
    with pytest.raises(ValueError, match=r"detected classes must lie in \[0, 2\)"):
        metrics.mean_average_precision([([BOX], [1.0], [2])], [([0], [BOX])], num_classes=2)
    with pytest.raises(ValueError, match="must match"):
        metrics.mean_average_precision([([BOX], [1.0, 2.0], [0])], [([0], [BOX])], num_classes=2)


def test_eleven_point_average_precision_by_hand():
    # VOC 2007: mean over recall thresholds 0, 0.1, ..., 1 of the best precision at
    # recall >= t. TP, FP, TP with 2 objects: t <= 0.5 -> 1 (6 points), t > 0.5 -> 2/3
    # (5 points).
    ap = metrics.average_precision([0.9, 0.8, 0.7], [True, False, True], 2, eleven_point=True)
    assert ap == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
    # One of 3 objects found, first: recall 1/3 -> points 0, 0.1, 0.2, 0.3 score 1.
    assert metrics.average_precision(
        [1.0, 0.5], [True, False], 3, eleven_point=True
    ) == pytest.approx(4 / 11)
    assert metrics.average_precision([], [], 2, eleven_point=True) == 0.0
    # The all-point form of the same case: 1/3 * 1.
    assert metrics.average_precision([1.0, 0.5], [True, False], 3) == pytest.approx(1 / 3)


def test_difficult_objects_count_neither_way():
    other = [0, 20, 10, 30]
    # A detection of a difficult object is ignored, not a false positive; a detection
    # elsewhere is a false positive; the easy object is found.
    tp, ignored = metrics.match_detections(
        [BOX, other, FAR], [0.9, 0.8, 0.7], [BOX, other], difficult=[True, False]
    )
    np.testing.assert_array_equal(tp, [False, True, False])
    np.testing.assert_array_equal(ignored, [True, False, False])
    # mAP: class 0 has one easy object (other) and one difficult (BOX). Ranked
    # detections: BOX 0.9 (ignored), FAR 0.8 (FP), other 0.7 (TP) -> precision 1/2 at
    # recall 1 -> AP 1/2. Without the flag, BOX would be a TP: TP, FP, TP of 2 -> 5/6.
    truth = [([0, 0], [BOX, other], [True, False])]
    detections = [([BOX, FAR, other], [0.9, 0.8, 0.7], [0, 0, 0])]
    mean, _ = metrics.mean_average_precision(detections, truth, num_classes=1)
    assert mean == pytest.approx(0.5)
    plain, _ = metrics.mean_average_precision(detections, [([0, 0], [BOX, other])], 1)
    assert plain == pytest.approx(5 / 6)
    eleven, _ = metrics.mean_average_precision(detections, truth, 1, eleven_point=True)
    assert eleven == pytest.approx(0.5)  # precision 1/2 at every recall threshold
    # A class whose only objects are difficult is not scored (AP NaN).
    mean, per_class = metrics.mean_average_precision(
        [([BOX], [0.9], [1])], [([0, 1], [FAR, BOX], [False, True])], num_classes=2
    )
    assert math.isnan(per_class[1]) and per_class[0] == 0.0 and mean == 0.0


def test_ground_truth_flags_must_match_the_boxes():
    with pytest.raises(ValueError, match="difficult flags"):
        metrics.mean_average_precision([([BOX], [0.9], [0])], [([0], [BOX], [True, False])], 1)
