"""Choosing the merge, score and suppression thresholds on a tuning split.

Thresholds are chosen on a split of their own (the embedded data set's `tuning` and
`detection_tuning`, `pipelines.embedded`), never on the split whose figures are reported
(`validation`, `detection_validation`). The sweeps run the network once per image and
re-merge its proposals at every setting, so a grid costs one pass of the network plus
one merge per setting and image.

    rows = sweep_detection(detector, batches, grid(score_threshold=(0.2, 0.3, 0.5),
                                                   merge_threshold=(0.25, 0.5, 1.0),
                                                   suppress_iou=(0.3, None)))
    best = best_row(rows, "map")   # then evaluate `best` once on the reported split

`benchmarks/tune_thresholds.py` runs these on a trained run.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from overfeat_tf.detection import merge, metrics
from overfeat_tf.detection.detector import Detector
from overfeat_tf.detection.localizer import Localizer


@dataclasses.dataclass(frozen=True)
class Setting:
    """One point of a sweep. `score_threshold` and `suppress_iou` are detection's only
    (None: no suppression); localization reads `merge_threshold`."""

    merge_threshold: float
    score_threshold: float = 0.0
    suppress_iou: float | None = None


def grid(
    *,
    merge_threshold: Sequence[float],
    score_threshold: Sequence[float] = (0.0,),
    suppress_iou: Sequence[float | None] = (None,),
) -> list[Setting]:
    """Every combination of the given values, in order."""
    return [
        Setting(m, s, u)
        for s, m, u in itertools.product(score_threshold, merge_threshold, suppress_iou)
    ]


def _detections(found: merge.Merged, setting: Setting, match: str) -> merge.Merged:
    """The detector's merge and suppression of proposals `found` at `setting`."""
    keep = found.scores > setting.score_threshold
    merged = merge.greedy_merge(
        found.boxes[keep],
        found.scores[keep],
        found.classes[keep],
        threshold=setting.merge_threshold,
        match=match,
    )
    if setting.suppress_iou is None:
        return merged
    return merge.suppress_overlaps(merged, iou_threshold=setting.suppress_iou)


def sweep_detection(
    detector: Detector,
    batches: Iterable,
    settings: Sequence[Setting],
    max_examples: int | None = None,
) -> list[dict[str, Any]]:
    """mAP@0.5 of `detector` at every setting, on `build_dataset(eval_mode="full",
    with_boxes=True)` batches of the tuning split.

    The network runs once per image, proposing at the lowest score threshold of the grid
    (`detector.score_threshold` is set to it). Returns one row per setting: its fields,
    "map" and "detections_per_image".
    """
    if not settings:
        raise ValueError("settings must hold at least one Setting")
    detector.score_threshold = min(s.score_threshold for s in settings)
    proposals, truths, _ = metrics.predict_images(detector.proposals, batches, max_examples)
    rows = []
    for setting in settings:
        found = [_detections(p, setting, detector.match) for p in proposals]
        mean_ap, _ = metrics.mean_average_precision(found, truths, detector.background)
        rows.append(
            {
                **dataclasses.asdict(setting),
                "map": mean_ap,
                "detections_per_image": float(np.mean([len(f.scores) for f in found])),
            }
        )
    return rows


def sweep_localization(
    localizer: Localizer,
    batches: Iterable,
    settings: Sequence[Setting],
    max_examples: int | None = None,
) -> list[dict[str, Any]]:
    """Top-1 / top-5 localization error (%) of `localizer` at every setting's merge
    threshold, on `build_dataset(eval_mode="full", with_boxes=True)` batches."""
    if not settings:
        raise ValueError("settings must hold at least one Setting")

    def candidates(image: np.ndarray) -> tuple[merge.Merged, tuple[int, int]]:
        return localizer.candidates(image), image.shape[:2]

    found, truths, _ = metrics.predict_images(candidates, batches, max_examples)
    rows = []
    for setting in settings:
        guesses = [
            localizer.guesses_of(c, *size, setting.merge_threshold).ranked() for c, size in found
        ]
        rows.append(
            {
                "merge_threshold": setting.merge_threshold,
                "top1_error": 100.0 * metrics.localization_error(guesses, truths, top=1),
                "top5_error": 100.0 * metrics.localization_error(guesses, truths, top=5),
            }
        )
    return rows


def best_row(rows: Sequence[dict[str, Any]], key: str, *then: str) -> dict[str, Any]:
    """The row with the best `key` ("map": highest; an error: lowest); ties go to the
    best of the `then` keys in turn, then to the first row."""

    def rank(row: dict[str, Any]) -> tuple[float, ...]:
        return tuple((1.0 if k == "map" else -1.0) * row[k] for k in (key, *then))

    return max(rows, key=rank)
