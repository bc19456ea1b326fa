"""ILSVRC localization error and PASCAL VOC detection mean average precision.

Boxes are float (ymin, xmin, ymax, xmax) in any one unit shared by predictions and
ground truth (pixels or normalised); areas are continuous (no VOC "+1" pixel rule).
A match needs IoU >= `iou_threshold` (ILSVRC's rule; the VOC devkit's VOCevaldet.m
also tests ``ovmax >= minoverlap``).

PASCAL VOC's `difficult` objects (VOC devkit, VOCevaldet.m / voc_eval.py) count neither
way: they are not among the objects to find, and a detection whose best match is a
difficult object is neither a true nor a false positive. Average precision has two
forms: all-point interpolation (VOC 2010 onwards, the default) and VOC 2007's 11-point
interpolation (`eleven_point=True`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from overfeat_tf.detection import boxes as box_ops

# Per image: ranked (class, box[4]) guesses, best first.
RankedGuesses = Sequence[tuple[int, Sequence[float]]]
# Per image: (classes [n], boxes [n, 4]) or (classes [n], boxes [n, 4], difficult [n]).
GroundTruth = (
    tuple[Sequence[int], Sequence[Sequence[float]]]
    | tuple[Sequence[int], Sequence[Sequence[float]], Sequence[bool]]
)
# Per image: (boxes [k, 4], scores [k], classes [k]).
Detections = tuple[Sequence[Sequence[float]], Sequence[float], Sequence[int]]


def images_with_truth(
    batches: Iterable, max_examples: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(image [h, w, 3], true classes [n], true boxes [n, 4] in pixels of the image,
    difficult [n] bool) per image of `(images [1, h, w, 3], {"boxes" [1, N, 4]
    normalised, "box_labels", "num_boxes", optional "difficult"})` batches
    (`pipelines.build_dataset(eval_mode="full", with_boxes=True)`), at most
    `max_examples` of them."""
    for index, (images, labels) in enumerate(batches):
        if max_examples is not None and index >= max_examples:
            return
        image = np.asarray(images[0])
        count = int(labels["num_boxes"][0])
        height, width = image.shape[:2]
        boxes = np.asarray(labels["boxes"][0, :count])
        difficult = (
            np.asarray(labels["difficult"][0, :count], bool)
            if "difficult" in labels
            else np.zeros(count, bool)
        )
        yield (
            image,
            np.asarray(labels["box_labels"][0, :count]),
            box_ops.scale_boxes(boxes, height, width),
            difficult,
        )


def predict_images(
    predict: Callable[[np.ndarray], Any],
    batches: Iterable,
    max_examples: int | None = None,
    on_image: Callable[..., None] | None = None,
) -> tuple[list[Any], list[tuple[np.ndarray, np.ndarray]], float]:
    """Runs `predict` on every image of `images_with_truth(batches, max_examples)`.

    `on_image(index, image, prediction, true classes, true boxes)` is called per image.
    Returns (predictions, ground truth (classes [n], boxes [n, 4] px, difficult [n]) per
    image, seconds spent). Raises ValueError when there is no image.
    """
    found, truths = [], []
    start = time.perf_counter()
    for image, true_classes, true_boxes, difficult in images_with_truth(batches, max_examples):
        prediction = predict(image)
        found.append(prediction)
        truths.append((true_classes, true_boxes, difficult))
        if on_image is not None:
            on_image(len(truths) - 1, image, prediction, true_classes, true_boxes)
    if not truths:
        raise ValueError("No examples to evaluate")
    return found, truths, time.perf_counter() - start


def _check_same_length(predictions: Sequence, ground_truth: Sequence) -> None:
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"predictions and ground_truth must list the same images; received "
            f"{len(predictions)} and {len(ground_truth)} entries."
        )


def _ground_truth(entry: GroundTruth) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(classes [n], boxes [n, 4], difficult [n] bool: all False when not given)."""
    classes, boxes, *flags = entry
    classes = np.asarray(classes, np.int64).reshape(-1)
    boxes = box_ops.as_boxes(boxes, "ground-truth boxes")
    difficult = np.asarray(flags[0] if flags else np.zeros(len(classes)), bool).reshape(-1)
    if not len(classes) == len(boxes) == len(difficult):
        raise ValueError(
            f"ground truth has {len(classes)} classes, {len(boxes)} boxes and "
            f"{len(difficult)} difficult flags; they must match."
        )
    return classes, boxes, difficult


def localization_error(
    predictions: Sequence[RankedGuesses],
    ground_truth: Sequence[GroundTruth],
    *,
    top: int = 5,
    iou_threshold: float = 0.5,
) -> float:
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
        true_classes, true_boxes, _ = _ground_truth(truth)
        if not len(true_classes):
            continue
        counted += 1
        guesses = list(guesses)[:top]
        if not guesses:
            errors += 1
            continue
        guess_classes = np.array([int(c) for c, _ in guesses])
        guess_boxes = box_ops.as_boxes([b for _, b in guesses], "predicted boxes")
        hits = (guess_classes[:, None] == true_classes[None, :]) & (
            box_ops.iou(guess_boxes, true_boxes) >= iou_threshold
        )
        errors += not hits.any()
    if not counted:
        raise ValueError("localization_error: no image has a ground-truth object.")
    return errors / counted


def average_precision(
    scores, true_positive, num_ground_truth: int, *, eleven_point: bool = False
) -> float:
    """PASCAL VOC average precision of one class.

    scores [k] and true_positive [k] (bool) describe every detection of the class over
    the data set; num_ground_truth counts its true objects. Detections are ranked by
    score, descending; ties keep their given order (VOC's stable sort). NaN when
    num_ground_truth is 0 (recall is undefined).

    All-point form (VOC 2010 onwards): the area under the precision-recall curve whose
    precision at recall r is the best precision at any recall >= r. 11-point form
    (`eleven_point`, VOC 2007, VOCevaldet.m of the 2007 devkit): the mean over
    t = 0, 0.1, ..., 1 of the best precision at any recall >= t (0 where none).
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
    if eleven_point:
        recall, precision = tp / num_ground_truth, tp / np.maximum(tp + fp, 1)
        return float(
            np.mean([precision[recall >= t].max(initial=0.0) for t in np.linspace(0.0, 1.0, 11)])
        )
    recall = np.concatenate([[0.0], tp / num_ground_truth, [1.0]])
    precision = np.concatenate([[0.0], tp / np.maximum(tp + fp, 1), [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def match_detections(
    boxes, scores, true_boxes, iou_threshold: float = 0.5, difficult=None
) -> tuple[np.ndarray, np.ndarray]:
    """VOC matching within one image and class of detections [k, 4] to true boxes [n, 4].

    In score order (descending, stable), each detection takes the true box it overlaps
    most. When IoU >= iou_threshold and that box is `difficult` [n] (default none), the
    detection is ignored; otherwise it is a true positive when the box is not already
    taken. A second detection of a taken box is a false positive (a duplicate), even if
    it also overlaps another true box less (as VOCevaldet.m).

    Returns:
      (true_positive [k] bool, ignored [k] bool); the rest are false positives.
    """
    boxes, true_boxes = box_ops.as_boxes(boxes), box_ops.as_boxes(true_boxes)
    true_positive, ignored = np.zeros(len(boxes), bool), np.zeros(len(boxes), bool)
    if not len(boxes) or not len(true_boxes):
        return true_positive, ignored
    difficult = (
        np.zeros(len(true_boxes), bool)
        if difficult is None
        else np.asarray(difficult, bool).reshape(-1)
    )
    overlaps = box_ops.iou(boxes, true_boxes)
    taken = np.zeros(len(true_boxes), bool)
    for d in np.argsort(-np.asarray(scores, np.float64), kind="stable"):
        best = int(np.argmax(overlaps[d]))
        if overlaps[d, best] < iou_threshold:
            continue
        if difficult[best]:
            ignored[d] = True
        elif not taken[best]:
            true_positive[d] = taken[best] = True
    return true_positive, ignored


def mean_average_precision(
    detections: Sequence[Detections],
    ground_truth: Sequence[GroundTruth],
    num_classes: int,
    iou_threshold: float = 0.5,
    *,
    eleven_point: bool = False,
) -> tuple[float, np.ndarray]:
    """PASCAL VOC detection mAP at `iou_threshold`.

    detections: per image (boxes [k, 4], scores [k], classes [k]); ground_truth: per image
    (classes [n], boxes [n, 4][, difficult [n]]); classes in [0, num_classes). Difficult
    objects and the detections they match are left out (see the module docstring);
    `eleven_point` selects VOC 2007's AP. Returns (mAP, per_class_ap [num_classes]). A
    class with no (non-difficult) true object in the data set has AP NaN and is left out
    of the mean, as VOC leaves out classes it does not score; mAP is NaN when no class
    has a true object. A class with true objects but no detections has AP 0.
    """
    _check_same_length(detections, ground_truth)
    per_class_scores = [[] for _ in range(num_classes)]
    per_class_tp = [[] for _ in range(num_classes)]
    num_true = np.zeros(num_classes, np.int64)
    for (boxes, scores, classes), truth in zip(detections, ground_truth):
        boxes = box_ops.as_boxes(boxes, "detected boxes")
        scores = np.asarray(scores, np.float64).reshape(-1)
        classes = np.asarray(classes, np.int64).reshape(-1)
        true_classes, true_boxes, difficult = _ground_truth(truth)
        if not len(boxes) == len(scores) == len(classes):
            raise ValueError(
                f"detections have {len(boxes)} boxes, {len(scores)} scores and "
                f"{len(classes)} classes; they must match."
            )
        for name, values in (("detected", classes), ("ground-truth", true_classes)):
            if len(values) and (values.min() < 0 or values.max() >= num_classes):
                raise ValueError(
                    f"{name} classes must lie in [0, {num_classes}); received "
                    f"{values.min()}..{values.max()}."
                )
        num_true += np.bincount(true_classes[~difficult], minlength=num_classes)
        for c in np.unique(classes):
            mine = classes == c
            theirs = true_classes == c
            true_positive, ignored = match_detections(
                boxes[mine], scores[mine], true_boxes[theirs], iou_threshold, difficult[theirs]
            )
            per_class_scores[c].append(scores[mine][~ignored])
            per_class_tp[c].append(true_positive[~ignored])
    per_class_ap = np.array(
        [
            average_precision(
                np.concatenate(per_class_scores[c] + [np.zeros(0)]),
                np.concatenate(per_class_tp[c] + [np.zeros(0, bool)]),
                int(num_true[c]),
                eleven_point=eleven_point,
            )
            for c in range(num_classes)
        ]
    )
    scored = ~np.isnan(per_class_ap)
    mean = float(per_class_ap[scored].mean()) if scored.any() else float("nan")
    return mean, per_class_ap
