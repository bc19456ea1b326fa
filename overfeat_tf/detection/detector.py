"""Detection: any number of (box, class, score) per image (OverFeat section 5).

The detection classifier (`train_detector`: the object classes plus background, last)
and its box regressor run densely over several scales (`box_maps.BoxPredictor`). Every
location, scale and flip whose probability for an object class exceeds
`score_threshold` proposes the box the regressor predicts there for that class, scored
by that probability; the greedy merge of section 4.3 (`merge.greedy_merge`, per class)
turns the proposals into detections whose score is the sum of their proposals'; last,
a merged box overlapping a higher-scored one of its class by IoU > `suppress_iou` is
dropped (`merge.suppress_overlaps`; not in the paper: it removes the clusters that the
merge leaves beside an object, e.g. from windows seeing part of it). An image where no
location passes the threshold gets no detection.

Scales. By default the detector runs at the scales of OverFeat's four-scale rows
(Table 2: scales 1, 2, 4 and 6 of the six of Table 5), derived for the model's
geometry by `overfeat_tf.evaluation.dense.default_scales` (AlexNet: shorter sides 243,
275, 371, 435 px; OverFeat accurate: 245, 281, 389, 461): nothing about the data
decides them. Users who know their objects' sizes can space scales to fit them with
`scales_for_objects`, or choose them on a tuning split (`overfeat_tf.detection.tuning`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf.evaluation import dense
from overfeat_tf.detection import box_maps, graph_merge, merge, metrics
from overfeat_tf.detection import boxes as box_ops

# The proposal score, greedy-merge and suppression thresholds (the paper gives none).
# Chosen on the embedded data set's `detection_tuning` split, never on
# `detection_validation`, where figures are reported: AlexNet width 0.125,
# `--recipe=quick` (its schedule then: rate / 10 after epochs 10 and 14), detection
# regressor 6 epochs, flips, the best mAP of a 3 x 4 x 3 grid,
# 2026-11-30 (`benchmarks/tune_thresholds.py`; the sweep is in
# docs/localization_detection.md).
DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_MERGE_THRESHOLD = 0.75
DEFAULT_SUPPRESS_IOU = 0.3


def default_scales(model: str | keras.Model) -> tuple[int, ...]:
    """Shorter sides (px) of the model's dense scales 1, 2, 4 and 6 (OverFeat Table 2's
    four-scale rows; `dense.PAPER_FOUR_SCALES`), ascending."""
    six = dense.default_scales(model)
    return tuple(min(six[index - 1]) for index in dense.PAPER_FOUR_SCALES)


def scales_for_objects(
    window: int, object_sides: tuple[float, float], fill: float = 0.6, count: int = 4
) -> tuple[int, ...]:
    """Shorter sides (px), ascending, at which objects whose side is `object_sides` of
    the image's shorter side fill `fill` of a `window`-px window: the largest object at
    the first scale, the smallest at the last, geometric steps between."""
    small, large = object_sides
    if not 0 < small <= large:
        raise ValueError(f"object_sides must satisfy 0 < small <= large; received {object_sides}")
    first, last = window * fill / large, window * fill / small
    sides = np.geomspace(first, last, count) if count > 1 else np.array([first])
    return tuple(max(window, round(side)) for side in sides)


class Detector:
    """Detects objects in one image at a time.

    Args:
      model: the detection classifier: the object classes, then background (last).
      regressor: its box head (one box per object class, or one shared box).
      scales: shorter sides (or (h, w) pairs); None: `default_scales` of the model.
      flips: also run the mirrored image.
      score_threshold: a location proposes class c when P(c) exceeds this.
      merge_threshold, match: the greedy merge's (see `merge.greedy_merge`).
      suppress_iou: drop merged boxes overlapping a better one of their class by more
        than this IoU; None keeps the merge's output as it is (the paper).

    Attributes: name, input_mode, description: the `overfeat_tf.evaluation.Evaluator`
    interface (reads whole images, "full").
    """

    name = "detection"
    input_mode = "full"

    def __init__(
        self,
        model: keras.Model,
        regressor: keras.Model,
        *,
        scales: Sequence[int | Sequence[int]] | None = None,
        flips: bool = False,
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        merge_threshold: float = DEFAULT_MERGE_THRESHOLD,
        match: str = "centre_iou",
        suppress_iou: float | None = DEFAULT_SUPPRESS_IOU,
    ) -> None:
        merge.match_score(match)  # fails early on an unknown name
        self.background = model.output.shape[-1] - 1
        if scales is None:
            scales = default_scales(model)
        self.predictor = box_maps.BoxPredictor(model, regressor, scales, flips)
        if self.predictor.outputs not in (1, self.background, self.background + 1):
            raise ValueError(
                f"The regressor predicts {self.predictor.outputs} boxes per location; a "
                f"detector of {self.background} object classes needs 1 (shared) or one per "
                "object class"
            )
        self.score_threshold = score_threshold
        self.merge_threshold = merge_threshold
        self.match = match
        self.suppress_iou = suppress_iou
        sides = sorted({min(scale) for scale, _ in self.predictor.views})
        flipped = any(flip for _, flip in self.predictor.views)
        self.description = (
            f"scales {','.join(map(str, sides))}{', flips' if flipped else ''}, "
            f"P > {score_threshold:g}, merge {match} <= {merge_threshold:g}"
            + ("" if suppress_iou is None else f", suppress IoU > {suppress_iou:g}")
        )

    def proposals(self, image) -> merge.Merged:
        """Every (box, score, class) above the threshold, over all views, unmerged.

        `image`: float32 [h, w, 3], normalised as the model expects. Boxes are pixels of
        `image`, clipped to it.
        """
        height, width = np.shape(image)[-3:-1]
        found = [np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, np.int64)]
        for view in self.predictor(image):
            probs = view.probs.copy()
            probs[..., self.background] = 0.0
            rows, cols, classes = np.nonzero(probs > self.score_threshold)
            outputs = classes if view.boxes.shape[2] > 1 else np.zeros_like(classes)
            found[0].append(view.boxes[rows, cols, outputs])
            found[1].append(probs[rows, cols, classes])
            found[2].append(classes)
        boxes, scores, classes = (np.concatenate(parts) for parts in found)
        return merge.Merged(box_ops.clip_boxes(boxes, height, width), scores, classes)

    def __call__(self, image) -> merge.Merged:
        """Detections of one normalised image [h, w, 3]: boxes [k, 4] (pixels of the
        image), summed scores [k] and classes [k], score descending; k may be 0."""
        found = self.proposals(image)
        merged = merge.greedy_merge(
            found.boxes,
            found.scores,
            found.classes,
            threshold=self.merge_threshold,
            match=self.match,
        )
        if self.suppress_iou is None:
            return merged
        return merge.suppress_overlaps(merged, iou_threshold=self.suppress_iou)

    def graph(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`__call__` as TF ops (a serving signature): a normalised image [h, w, 3] ->
        (boxes float32 [k, 4] in its pixels, summed scores float32 [k], classes int32
        [k]), score descending; float64 merge, as `__call__`."""
        flat = self.predictor.maps(image[tf.newaxis])
        size = tf.cast(tf.shape(image)[:2], tf.float32)
        boxes, scores, classes = [], [], []
        for index in range(len(self.predictor.views)):
            probs, view_boxes = flat[3 * index][0], flat[3 * index + 1][0]
            objects = tf.one_hot(self.background, tf.shape(probs)[-1], 0.0, 1.0)
            probs = probs * objects  # the background proposes nothing
            where = tf.where(probs > self.score_threshold)  # [m, 3]: row, column, class
            output = where[:, 2] if self.predictor.outputs > 1 else tf.zeros_like(where[:, 2])
            boxes.append(tf.gather_nd(view_boxes, tf.stack([where[:, 0], where[:, 1], output], 1)))
            scores.append(tf.gather_nd(probs, where))
            classes.append(where[:, 2])
        clipped = tf.clip_by_value(tf.concat(boxes, 0), 0.0, tf.tile(size, [2]))
        merged_boxes, merged_scores, merged_classes = graph_merge.greedy_merge(
            clipped,
            tf.concat(scores, 0),
            tf.concat(classes, 0),
            threshold=self.merge_threshold,
            match=self.match,
        )
        if self.suppress_iou is not None:
            kept = graph_merge.suppress_overlaps(
                merged_boxes, merged_classes, iou_threshold=self.suppress_iou
            )
            merged_boxes, merged_scores, merged_classes = (
                tf.gather(t, kept) for t in (merged_boxes, merged_scores, merged_classes)
            )
        return (
            tf.cast(merged_boxes, tf.float32),
            tf.cast(merged_scores, tf.float32),
            tf.cast(merged_classes, tf.int32),
        )


# Called per image with (index, image [h, w, 3], detections, true classes [n], true
# boxes [n, 4] in pixels); e.g. to draw them.
ImageCallback = Callable[[int, np.ndarray, merge.Merged, np.ndarray, np.ndarray], None]


def evaluate_detection(
    detector: Detector,
    batches: Iterable[tuple[tf.Tensor, dict[str, tf.Tensor]]],
    *,
    max_examples: int | None = None,
    on_image: ImageCallback | None = None,
) -> dict[str, Any]:
    """PASCAL VOC mean average precision at IoU 0.5 of `detector` (0-1), difficult
    objects ignored, in the all-point (VOC 2010+) and 11-point (VOC 2007) forms.

    Args:
      batches: `(images [1, h, w, 3], {"boxes" [1, n, 4] normalised, "box_labels",
        "num_boxes"})`, i.e. `build_dataset(eval_mode="full", with_boxes=True)`.
      max_examples: stop after this many images.
      on_image: called for every image (see `ImageCallback`).

    Returns:
      {"map" (all-point), "map_11point", "per_class_ap" (all-point; list, NaN for
      classes without true objects), "detections_per_image", "examples",
      "images_per_second"}.
    """
    found, truths, seconds = metrics.predict_images(detector, batches, max_examples, on_image)
    mean_ap, per_class = metrics.mean_average_precision(found, truths, detector.background)
    mean_11, _ = metrics.mean_average_precision(
        found, truths, detector.background, eleven_point=True
    )
    return {
        "map": mean_ap,
        "map_11point": mean_11,
        "per_class_ap": per_class.tolist(),
        "detections_per_image": sum(len(d.scores) for d in found) / len(found),
        "examples": len(truths),
        "images_per_second": len(truths) / seconds,
    }


def format_ap_table(result: dict[str, Any], class_names: Sequence[str]) -> str:
    """mAP and the AP of every class as a text table (one row per class, then the mean)."""
    width = max(len(name) for name in [*class_names, "11-point (VOC 2007)"])
    lines = [f"{'class':<{width}}  AP@0.5", "-" * (width + 8)]
    for name, ap in zip(class_names, result["per_class_ap"]):
        lines.append(f"{name:<{width}}  {'n/a' if np.isnan(ap) else f'{ap:.3f}':>6}")
    lines.append(f"{'mean (mAP@0.5)':<{width}}  {result['map']:>6.3f}")
    if "map_11point" in result:
        lines.append(f"{'11-point (VOC 2007)':<{width}}  {result['map_11point']:>6.3f}")
    return "\n".join(lines)
