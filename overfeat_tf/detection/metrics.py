"""ILSVRC localization error and PASCAL VOC detection mean average precision.

Boxes are float (ymin, xmin, ymax, xmax) in any one unit shared by predictions and
ground truth (pixels or normalised); areas are continuous (no VOC "+1" pixel rule).
A match needs IoU >= `iou_threshold` (ILSVRC's rule; the VOC devkit's VOCevaldet.m
also tests ``ovmax >= minoverlap``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from overfeat_tf.detection import boxes as box_ops

# Per image: ranked (class, box[4]) guesses, best first.
RankedGuesses = Sequence[tuple[int, Sequence[float]]]
# Per image: (classes [n], boxes [n, 4]).
GroundTruth = tuple[Sequence[int], Sequence[Sequence[float]]]
# Per image: (boxes [k, 4], scores [k], classes [k]).
Detections = tuple[Sequence[Sequence[float]], Sequence[float], Sequence[int]]


def images_with_truth(batches: Iterable, max_examples: int | None = None
                      ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(image [h, w, 3], true classes [n], true boxes [n, 4] in pixels of the image) per
    image of `(images [1, h, w, 3], {"boxes" [1, N, 4] normalised, "box_labels",
    "num_boxes"})` batches (`pipelines.build_dataset(eval_mode="full",
    with_boxes=True)`), at most `max_examples` of them."""
    for index, (images, labels) in enumerate(batches):
        if max_examples is not None and index >= max_examples:
            return
        image = np.asarray(images[0])
        count = int(labels["num_boxes"][0])
        height, width = image.shape[:2]
        boxes = np.asarray(labels["boxes"][0, :count])
        yield (image, np.asarray(labels["box_labels"][0, :count]),
               box_ops.scale_boxes(boxes, height, width))


def predict_images(
    predict: Callable[[np.ndarray], Any],
    batches: Iterable,
    max_examples: int | None = None,
    on_image: Callable[..., None] | None = None,
) -> tuple[list[Any], list[tuple[np.ndarray, np.ndarray]], float]:
    """Runs `predict` on every image of `images_with_truth(batches, max_examples)`.

    `on_image(index, image, prediction, true classes, true boxes)` is called per image.
    Returns (predictions, ground truth (classes [n], boxes [n, 4] px) per image, seconds
    spent). Raises ValueError when there is no image.
    """
    found, truths = [], []
    start = time.perf_counter()
    for image, true_classes, true_boxes in images_with_truth(batches, max_examples):
        prediction = predict(image)
        found.append(prediction)
        truths.append((true_classes, true_boxes))
        if on_image is not None:
            on_image(len(truths) - 1, image, prediction, true_classes, true_boxes)
    if not truths:
        raise ValueError("No examples to evaluate")
    return found, truths, time.perf_counter() - start


def _check_same_length(predictions: Sequence, ground_truth: Sequence) -> None:
    if len(predictions) != len(ground_truth):
        raise ValueError(f"predictions and ground_truth must list the same images; received "
                         f"{len(predictions)} and {len(ground_truth)} entries.")


def _ground_truth(entry: GroundTruth) -> tuple[np.ndarray, np.ndarray]:
    classes, boxes = entry
    classes = np.asarray(classes, np.int64).reshape(-1)
    boxes = box_ops.as_boxes(boxes, "ground-truth boxes")
    if len(classes) != len(boxes):
        raise ValueError(f"ground truth has {len(classes)} classes for {len(boxes)} boxes.")
    return classes, boxes


def localization_error(predictions: Sequence[RankedGuesses],
                       ground_truth: Sequence[GroundTruth], *, top: int = 5,
                       iou_threshold: float = 0.5) -> float:
    """ILSVRC localization error: the fraction of images none of whose first `top`
    (class, box) guesses has a true object's class and IoU >= `iou_threshold` with it.

    Images without ground-truth objects are left out (ILSVRC has none); raises
    ValueError when no image has one. An image with no guesses counts as an error.
    """
    _check_same_length(predictions, ground_truth)
    if top < 1:
        raise ValueError(f"top must be >= 1; received {top}.")
    errors, counted = 0, 0
    for guesses, truth in zip(predictions, ground_truth):
        true_classes, true_boxes = _ground_truth(truth)
        if not len(true_classes):
            continue
        counted += 1
        guesses = list(guesses)[:top]
        if not guesses:
            errors += 1
            continue
        guess_classes = np.array([int(c) for c, _ in guesses])
        guess_boxes = box_ops.as_boxes([b for _, b in guesses], "predicted boxes")
        hits = ((guess_classes[:, None] == true_classes[None, :])
                & (box_ops.iou(guess_boxes, true_boxes) >= iou_threshold))
        errors += not hits.any()
    if not counted:
        raise ValueError("localization_error: no image has a ground-truth object.")
    return errors / counted


def average_precision(scores, true_positive, num_ground_truth: int) -> float:
    """PASCAL VOC all-point interpolated AP (VOC 2010 onwards) of one class.

    scores [k] and true_positive [k] (bool) describe every detection of the class over
    the data set; num_ground_truth counts its true objects. Detections are ranked by
    score, descending; ties keep their given order (VOC's stable sort). AP is the area
    under the precision-recall curve whose precision at recall r is the best precision
    at any recall >= r. NaN when num_ground_truth is 0 (recall is undefined).
    """
    if num_ground_truth < 0:
        raise ValueError(f"num_ground_truth must be >= 0; received {num_ground_truth}.")
    if num_ground_truth == 0:
        return float("nan")
    scores = np.asarray(scores, np.float64).reshape(-1)
    true_positive = np.asarray(true_positive, bool).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    tp = np.cumsum(true_positive[order])
    fp = np.cumsum(~true_positive[order])
    recall = np.concatenate([[0.0], tp / num_ground_truth, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def match_detections(boxes, scores, true_boxes, iou_threshold: float = 0.5) -> np.ndarray:
    """VOC matching within one image and class: true_positive [k] for detections [k, 4].

    In score order (descending, stable), each detection takes the true box it overlaps
    most; it is a true positive when IoU >= iou_threshold and that box is not already
    taken. A second detection of a taken box is a false positive (a duplicate), even if
    it also overlaps another true box less (as VOCevaldet.m).
    """
    boxes, true_boxes = box_ops.as_boxes(boxes), box_ops.as_boxes(true_boxes)
    true_positive = np.zeros(len(boxes), bool)
    if not len(boxes) or not len(true_boxes):
        return true_positive
    overlaps = box_ops.iou(boxes, true_boxes)
    taken = np.zeros(len(true_boxes), bool)
    for d in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        best = int(np.argmax(overlaps[d]))
        if overlaps[d, best] >= iou_threshold and not taken[best]:
            true_positive[d] = taken[best] = True
    return true_positive


def mean_average_precision(detections: Sequence[Detections],
                           ground_truth: Sequence[GroundTruth], num_classes: int,
                           iou_threshold: float = 0.5) -> tuple[float, np.ndarray]:
    """PASCAL VOC detection mAP at `iou_threshold`.

    detections: per image (boxes [k, 4], scores [k], classes [k]); ground_truth: per image
    (classes [n], boxes [n, 4]); classes in [0, num_classes). Returns (mAP,
    per_class_ap [num_classes]). A class with no true object in the data set has AP NaN
    and is left out of the mean, as VOC leaves out classes it does not score; mAP is NaN
    when no class has a true object. A class with true objects but no detections has AP 0.
    """
    _check_same_length(detections, ground_truth)
    per_class_scores = [[] for _ in range(num_classes)]
    per_class_tp = [[] for _ in range(num_classes)]
    num_true = np.zeros(num_classes, np.int64)
    for (boxes, scores, classes), truth in zip(detections, ground_truth):
        boxes = box_ops.as_boxes(boxes, "detected boxes")
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = np.asarray(classes, np.int64).reshape(-1)
        true_classes, true_boxes = _ground_truth(truth)
        if not len(boxes) == len(scores) == len(classes):
            raise ValueError(f"detections have {len(boxes)} boxes, {len(scores)} scores and "
                             f"{len(classes)} classes; they must match.")
        for name, values in (("detected", classes), ("ground-truth", true_classes)):
            if len(values) and (values.min() < 0 or values.max() >= num_classes):
                raise ValueError(f"{name} classes must lie in [0, {num_classes}); received "
                                 f"{values.min()}..{values.max()}.")
        num_true += np.bincount(true_classes, minlength=num_classes)
        for c in np.unique(classes):
            mine = classes == c
            per_class_scores[c].append(scores[mine])
            per_class_tp[c].append(match_detections(
                boxes[mine], scores[mine], true_boxes[true_classes == c], iou_threshold))
    per_class_ap = np.array([
        average_precision(np.concatenate(per_class_scores[c] + [np.zeros(0)]),
                          np.concatenate(per_class_tp[c] + [np.zeros(0, bool)]),
                          int(num_true[c]))
        for c in range(num_classes)])
    scored = ~np.isnan(per_class_ap)
    mean = float(per_class_ap[scored].mean()) if scored.any() else float("nan")
    return mean, per_class_ap
