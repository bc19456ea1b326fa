"""OverFeat's greedy box merge (Sermanet et al. 2014, section 4.3).

The paper: repeatedly merge the two boxes with the lowest match score until the lowest
exceeds a threshold t; a merged box is the average of the coordinates and its confidence
the sum of the merged boxes' confidences. Choices the paper leaves open, made here:

* **Match score** (`match=`). Distances are normalised by the pair's scale
  s = (sqrt(area_a) + sqrt(area_b)) / 2, so that t does not depend on the image size.
  - ``"centre_iou"`` (default): d / s / (1 - IoU), where d is the distance between the
    centres. Identical boxes score 0; disjoint boxes score d / s; the score grows
    without bound as the overlap vanishes relative to the distance.
  - ``"literal"``: d / s + intersection / s^2, the paper's words ("the sum of the
    distance between centres of the two boxes and the intersection area") read
    literally. It penalises overlap, so identical boxes score 1 like two touching
    disjoint boxes of the same size; it is kept to measure the text as written.
* **Merged box**: the mean over all original boxes it absorbed (each original weighs
  one), so the result does not depend on the order of the merges; "average of the
  coordinates" of a merge of two single boxes is the special case.
* **Classes**: with ``per_class=True`` (default) only boxes of one class merge. With
  ``per_class=False`` any two may merge and the result takes the class of the side with
  the larger accumulated score.
* **Ties**: inputs are sorted by score (descending, stable) first, and among equal match
  scores the pair with the lowest indices merges first, so results are deterministic.

`suppress_overlaps` is not in the paper: a per-class non-maximum suppression of the merged
boxes (drop a box that overlaps a higher-scored one of its class by more than an IoU),
which the detector applies after the merge (clusters the merge left apart, e.g. from
windows that see only part of an object, otherwise count as duplicates).

Pairwise scores live in an [n, n] matrix updated one row and column per merge, with the
per-row minima kept incrementally: each merge costs O(n) numpy work (plus a full row for
rows whose partner was absorbed), so thousands of boxes merge in seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from overfeat_tf.detection import boxes as box_ops

MATCHES = ("centre_iou", "literal")


class Merged(NamedTuple):
    """Merged boxes [k, 4], summed scores [k] and classes [k], score descending."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def _pair_scale(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Mean side length [p, q] of each pair: (sqrt(area_a) + sqrt(area_b)) / 2."""
    scale = 0.5 * (np.sqrt(box_ops.area(a))[:, None] + np.sqrt(box_ops.area(b))[None, :])
    return np.maximum(scale, 1e-12)


def _centre_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances [p, q] between the centres of a [p, 4] and b [q, 4]."""
    delta = box_ops.centres(a)[:, None, :] - box_ops.centres(b)[None, :, :]
    return np.sqrt(np.sum(delta * delta, axis=-1))


def centre_iou_score(a, b) -> np.ndarray:
    """Match scores [p, q]: normalised centre distance / (1 - IoU); 0 when identical."""
    a, b = box_ops.as_boxes(a, "a"), box_ops.as_boxes(b, "b")
    distance = _centre_distance(a, b) / _pair_scale(a, b)
    gap = 1.0 - box_ops.iou(a, b)
    return np.divide(distance, gap, out=np.zeros_like(distance), where=gap > 0)


def literal_score(a, b) -> np.ndarray:
    """Match scores [p, q]: normalised centre distance + normalised intersection area."""
    a, b = box_ops.as_boxes(a, "a"), box_ops.as_boxes(b, "b")
    scale = _pair_scale(a, b)
    return _centre_distance(a, b) / scale + box_ops.intersection(a, b) / scale**2


_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "centre_iou": centre_iou_score,
    "literal": literal_score,
}


def match_score(match: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The pairwise match-score function named `match` (one of MATCHES)."""
    if match not in _SCORES:
        raise ValueError(f"match must be one of {MATCHES}; received {match!r}.")
    return _SCORES[match]


def _merge_group(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray,
                 threshold: float, score_fn) -> Merged:
    """Greedy merge of one group (sorted by score); see the module docstring."""
    n = len(boxes)
    sums, counts = boxes.copy(), np.ones(n)
    current, totals, labels = boxes.copy(), scores.copy(), classes.copy()
    alive = np.ones(n, bool)
    pair = score_fn(current, current)
    np.fill_diagonal(pair, np.inf)
    row_arg = np.argmin(pair, axis=1) if n else np.zeros(0, np.int64)
    row_min = pair[np.arange(n), row_arg]
    while n > 1:
        i = int(np.argmin(row_min))
        if not row_min[i] <= threshold:
            break
        j = int(row_arg[i])  # i < j: the pair's other row ties and argmin takes the first.
        sums[i] += sums[j]
        counts[i] += counts[j]
        current[i] = sums[i] / counts[i]
        if totals[j] > totals[i]:
            labels[i] = labels[j]
        totals[i] += totals[j]
        alive[j] = False
        pair[j, :] = pair[:, j] = row_min[j] = np.inf
        new = score_fn(current[i:i + 1], current)[0]
        new[~alive] = np.inf
        new[i] = np.inf
        pair[i, :] = pair[:, i] = new
        # Rows whose best partner was i or j may have lost it: recompute them in full.
        # Every other row can only gain the new column i.
        stale = alive & ((row_arg == i) | (row_arg == j))
        stale[i] = True
        better = alive & ~stale & ((new < row_min) | ((new == row_min) & (i < row_arg)))
        row_min[better], row_arg[better] = new[better], i
        rows = np.flatnonzero(stale)
        row_arg[rows] = np.argmin(pair[rows], axis=1)
        row_min[rows] = pair[rows, row_arg[rows]]
    return Merged(current[alive], totals[alive], labels[alive])


def greedy_merge(boxes, scores, classes, *, threshold: float, match: str = "centre_iou",
                 per_class: bool = True) -> Merged:
    """Greedily merges boxes [n, 4] with scores [n] and int classes [n] (section 4.3).

    Merges the pair with the lowest match score while that score is <= `threshold`.
    Returns `Merged` sorted by summed score, descending; empty inputs give empty arrays.
    """
    score_fn = match_score(match)
    boxes = box_ops.as_boxes(boxes)
    scores = np.asarray(scores, np.float64).reshape(-1)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"boxes, scores and classes must have the same length; received "
                         f"{len(boxes)}, {len(scores)} and {len(classes)}.")
    order = np.argsort(-scores, kind="stable")
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    groups = [classes == c for c in np.unique(classes)] if per_class else [slice(None)]
    parts = [_merge_group(boxes[g], scores[g], classes[g], threshold, score_fn)
             for g in groups]
    merged_boxes = np.concatenate([p.boxes for p in parts] + [np.zeros((0, 4))])
    merged_scores = np.concatenate([p.scores for p in parts] + [np.zeros(0)])
    merged_classes = np.concatenate([p.classes for p in parts] + [np.zeros(0, np.int64)])
    order = np.argsort(-merged_scores, kind="stable")
    return Merged(merged_boxes[order], merged_scores[order], merged_classes[order])


def suppress_overlaps(merged: Merged, *, iou_threshold: float) -> Merged:
    """Drops every box whose IoU with a higher-scored kept box of its class exceeds
    `iou_threshold` (greedy non-maximum suppression per class; `merged` sorted by score,
    descending, as `greedy_merge` returns it). Ties in score keep the earlier box."""
    overlaps = box_ops.iou(merged.boxes, merged.boxes)
    same_class = merged.classes[:, None] == merged.classes[None, :]
    suppressing = same_class & (overlaps > iou_threshold)
    keep = np.ones(len(merged.scores), bool)
    for index in range(len(keep)):
        if keep[index]:
            keep[index + 1:] &= ~suppressing[index, index + 1:]
    return Merged(merged.boxes[keep], merged.scores[keep], merged.classes[keep])
