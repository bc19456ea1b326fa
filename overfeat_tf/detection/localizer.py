"""Ranked (class, box) guesses per image and the ILSVRC localization error (OverFeat 4.3).

`Localizer` follows the paper's section 4.3: at every scale and flip (one `BoxMap` each,
`box_maps.BoxPredictor`), the top-k classes of the spatially maxed class map; for each,
the box its regressor predicts at every location, carrying that location's class
probability (locations below `min_score` are left out: they barely move a sum of
probabilities, and the merge's cost grows with the square of the boxes); the greedy merge (`merge.greedy_merge`, boxes of one class merge); then the
guesses. ILSVRC scores 5 (class, box) guesses per image, so a guess is one class with
its best merged box: classes ranked by their best merged box's accumulated score.

`evaluate_localization` runs a localizer over `pipelines.build_dataset(...,
eval_mode="full", with_boxes=True)` batches and returns top-1 / top-5 localization error
in % (right class and IoU >= 0.5 with one of its true boxes, `metrics.localization_error`)
in the shape of `overfeat_tf.evaluation.evaluate`'s results, so both print in one table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from overfeat_tf.detection import boxes as box_ops
from overfeat_tf.detection import graph_merge, merge, metrics
from overfeat_tf.detection.box_maps import BoxPredictor

# Guesses per image scored by ILSVRC localization (top-5).
GUESSES = 5
# The greedy merge's threshold (the paper gives none). Chosen on the embedded data set's
# `tuning` split, never on `validation`, where figures are reported: AlexNet width
# 0.125, `--recipe=quick` (its schedule then: rate / 10 after epochs 10 and 14),
# per-class regressor, 2026-11-30 (`benchmarks/tune_thresholds.py`;
# the sweep is in docs/localization_detection.md).
DEFAULT_MERGE_THRESHOLD = 0.5


class Localization(NamedTuple):
    """Guesses of one image, best first: classes int [g], boxes float [g, 4] (pixels of
    the image given), scores float [g] (accumulated probability of the merged box)."""

    classes: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray

    def ranked(self) -> list[tuple[int, np.ndarray]]:
        """[(class, box)], the form `metrics.localization_error` reads."""
        return list(zip(self.classes.tolist(), self.boxes))


class Localizer:
    """Image -> ranked (class, box) guesses (OverFeat section 4.3).

    Args:
      predictor: class maps and boxes per view.
      classes_per_view: k, the top classes of each view's spatially maxed map whose
        boxes enter the merge.
      threshold: merge while the lowest match score is at most this (`merge`).
      min_score: boxes whose location gives their class a lower probability are left
        out of the merge.
      match: the match score, "centre_iou" or "literal" (`merge.MATCHES`).
      guesses: classes returned per image (5 for ILSVRC).
    """

    name = "localization"
    input_mode = "full"

    def __init__(
        self,
        predictor: BoxPredictor,
        *,
        classes_per_view: int = 5,
        threshold: float = DEFAULT_MERGE_THRESHOLD,
        match: str = "centre_iou",
        min_score: float = 0.01,
        guesses: int = GUESSES,
    ) -> None:
        if classes_per_view < 1 or guesses < 1:
            raise ValueError(
                f"classes_per_view and guesses must be >= 1; received "
                f"{classes_per_view} and {guesses}"
            )
        merge.match_score(match)  # fails early on an unknown name
        self.predictor = predictor
        self.classes_per_view = classes_per_view
        self.threshold = threshold
        self.match = match
        self.min_score = min_score
        self.guesses = guesses
        scales = sorted({min(scale) for scale, _ in predictor.views})
        flips = any(flipped for _, flipped in predictor.views)
        self.description = (
            f"scales {','.join(map(str, scales))}{', flips' if flips else ''}, "
            f"top {classes_per_view} classes, merge {match} <= {threshold:g}"
        )

    def candidates(self, image: tf.Tensor | np.ndarray) -> merge.Merged:
        """Every (box, score, class) that enters the merge, unmerged."""
        boxes, scores, classes = [], [], []
        for view in self.predictor(image):
            maxed = view.probs.max(axis=(0, 1))
            for class_id in np.argsort(-maxed, kind="stable")[: self.classes_per_view]:
                probs = view.probs[:, :, class_id].reshape(-1)
                keep = probs >= self.min_score
                boxes.append(view.class_boxes(int(class_id)).reshape(-1, 4)[keep])
                scores.append(probs[keep])
                classes.append(np.full(scores[-1].shape, class_id))
        return merge.Merged(np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes))

    def __call__(self, image: tf.Tensor | np.ndarray) -> Localization:
        """A normalised image `[h, w, 3]` (or `[1, h, w, 3]`) -> its guesses."""
        height, width = np.shape(image)[-3:-1]
        return self.guesses_of(self.candidates(image), height, width, self.threshold)

    def guesses_of(
        self, candidates: merge.Merged, height: int, width: int, threshold: float
    ) -> Localization:
        """The guesses of an image's `candidates` merged at `threshold` (a sweep over
        thresholds reuses one `candidates` call)."""
        merged = merge.greedy_merge(
            *candidates, threshold=threshold, match=self.match, per_class=True
        )
        # Sorted by score: a class's first merged box is its best.
        _, first = np.unique(merged.classes, return_index=True)
        best = np.sort(first)[: self.guesses]
        return Localization(
            merged.classes[best],
            box_ops.clip_boxes(merged.boxes[best], height, width),
            merged.scores[best],
        )

    def graph(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """`__call__` as TF ops (a serving signature): a normalised image [h, w, 3] ->
        (classes int32 [g], boxes float32 [g, 4] in its pixels, scores float32 [g]),
        g <= `guesses`; float64 merge, so it matches `__call__` to float32 rounding."""
        flat = self.predictor.maps(image[tf.newaxis])
        boxes, scores, classes = [], [], []
        for index in range(len(self.predictor.views)):
            probs, view_boxes = flat[3 * index][0], flat[3 * index + 1][0]
            count = min(self.classes_per_view, probs.shape[-1])
            top = tf.math.top_k(tf.reduce_max(probs, axis=[0, 1]), k=count).indices
            top_probs = tf.gather(probs, top, axis=-1)  # [H, W, k]
            if self.predictor.outputs > 1:
                top_boxes = tf.gather(view_boxes, top, axis=2)
            else:
                top_boxes = tf.repeat(view_boxes, count, axis=2)
            keep = top_probs >= self.min_score
            boxes.append(tf.boolean_mask(top_boxes, keep))
            scores.append(tf.boolean_mask(top_probs, keep))
            classes.append(tf.boolean_mask(tf.broadcast_to(top, tf.shape(top_probs)), keep))
        merged_boxes, merged_scores, merged_classes = graph_merge.greedy_merge(
            tf.concat(boxes, 0),
            tf.concat(scores, 0),
            tf.concat(classes, 0),
            threshold=self.threshold,
            match=self.match,
        )
        # Sorted by score: the first box of each class is its best; classes in that order.
        unique, first_of = tf.unique(merged_classes)
        first = tf.math.unsorted_segment_min(
            tf.range(tf.shape(first_of)[0]), first_of, tf.shape(unique)[0]
        )
        best = first[: self.guesses]
        size = tf.cast(tf.shape(image)[:2], tf.float64)
        clipped = tf.clip_by_value(tf.gather(merged_boxes, best), 0.0, tf.tile(size, [2]))
        return (
            tf.cast(tf.gather(merged_classes, best), tf.int32),
            tf.cast(clipped, tf.float32),
            tf.cast(tf.gather(merged_scores, best), tf.float32),
        )


# Called per image with (index, image [h, w, 3], localization, true classes [n],
# true boxes [n, 4] in pixels); e.g. to draw them.
ImageCallback = Callable[[int, np.ndarray, Localization, np.ndarray, np.ndarray], None]


def evaluate_localization(
    localizer: Localizer,
    batches: Iterable[tuple[tf.Tensor, dict[str, tf.Tensor]]],
    *,
    max_examples: int | None = None,
    on_image: ImageCallback | None = None,
) -> dict[str, Any]:
    """Top-1 and top-5 ILSVRC localization error of `localizer`, in %.

    Args:
      batches: `(images [1, h, w, 3], {"boxes" [1, n, 4] normalised, "box_labels",
        "num_boxes"})`, i.e. `build_dataset(eval_mode="full", with_boxes=True)`.
      max_examples: stop after this many images.
      on_image: called for every image (see `ImageCallback`).

    Returns:
      {"top1_error", "top5_error" (%), "examples", "images_per_second"}, the keys of
      `overfeat_tf.evaluation.evaluate`.
    """
    found, truths, seconds = metrics.predict_images(localizer, batches, max_examples, on_image)
    predictions = [localization.ranked() for localization in found]
    return {
        "top1_error": 100.0 * metrics.localization_error(predictions, truths, top=1),
        "top5_error": 100.0 * metrics.localization_error(predictions, truths, top=5),
        "examples": len(truths),
        "images_per_second": len(truths) / seconds,
    }
