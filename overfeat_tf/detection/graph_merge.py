"""The greedy merge and the overlap suppression as TensorFlow graph ops (for serving).

The same rules as `merge.greedy_merge(per_class=True)` and `merge.suppress_overlaps`
(OverFeat section 4.3; see `merge` for the match scores and the choices the paper leaves
open), written with `tf.while_loop` so that a SavedModel signature runs them in TF
Serving, where no Python runs. They compute in float64, as the numpy versions do.

Cost: an [n, n] matrix of match scores (n proposals; 8 n^2 bytes) with its per-row
minima kept incrementally, so each merge updates one row and column and recomputes
only the rows whose best partner changed.
"""

from __future__ import annotations

import tensorflow as tf

from overfeat_tf.detection import merge

_INF = float("inf")


def _area(boxes: tf.Tensor) -> tf.Tensor:
    return tf.maximum(boxes[:, 2] - boxes[:, 0], 0.0) * tf.maximum(boxes[:, 3] - boxes[:, 1], 0.0)


def _intersection(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    top = tf.maximum(a[:, None, 0], b[None, :, 0])
    left = tf.maximum(a[:, None, 1], b[None, :, 1])
    bottom = tf.minimum(a[:, None, 2], b[None, :, 2])
    right = tf.minimum(a[:, None, 3], b[None, :, 3])
    return tf.maximum(bottom - top, 0.0) * tf.maximum(right - left, 0.0)


def iou(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Pairwise IoU [p, q] of boxes a [p, 4] and b [q, 4]; 0 for two empty boxes."""
    inter = _intersection(a, b)
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return tf.math.divide_no_nan(inter, union)


def match_scores(a: tf.Tensor, b: tf.Tensor, match: str) -> tf.Tensor:
    """Match scores [p, q] of `merge.MATCHES` `match` (`merge.centre_iou_score`, ...)."""
    merge.match_score(match)  # an unknown name fails here
    scale = tf.maximum(0.5 * (tf.sqrt(_area(a))[:, None] + tf.sqrt(_area(b))[None, :]), 1e-12)
    delta = 0.5 * (a[:, None, :2] + a[:, None, 2:]) - 0.5 * (b[None, :, :2] + b[None, :, 2:])
    distance = tf.sqrt(tf.reduce_sum(delta * delta, axis=-1)) / scale
    if match == "literal":
        return distance + _intersection(a, b) / scale**2
    gap = 1.0 - iou(a, b)
    return tf.where(gap > 0, distance / tf.where(gap > 0, gap, 1.0), tf.zeros_like(distance))


def _set_row_and_column(pair: tf.Tensor, index: tf.Tensor, values: tf.Tensor) -> tf.Tensor:
    n = tf.shape(pair, out_type=tf.int64)[0]
    span = tf.range(n, dtype=tf.int64)
    at = tf.fill([n], index)
    pair = tf.tensor_scatter_nd_update(pair, tf.stack([at, span], 1), values)
    return tf.tensor_scatter_nd_update(pair, tf.stack([span, at], 1), values)


def greedy_merge(
    boxes: tf.Tensor,
    scores: tf.Tensor,
    classes: tf.Tensor,
    *,
    threshold: float,
    match: str = "centre_iou",
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """`merge.greedy_merge(..., per_class=True)` in graph ops.

    Args:
      boxes: float [n, 4]; scores: float [n]; classes: int [n]. n may be 0.

    Returns:
      (boxes float64 [k, 4], summed scores float64 [k], classes int64 [k]), score
      descending.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float64), [-1, 4])
    scores = tf.reshape(tf.cast(scores, tf.float64), [-1])
    classes = tf.reshape(tf.cast(classes, tf.int64), [-1])
    if scores.shape[0] == 0:  # statically empty: the loop's scatters would not build
        return boxes, scores, classes
    order = tf.argsort(-scores, stable=True)
    boxes, scores, classes = (tf.gather(t, order) for t in (boxes, scores, classes))
    n = tf.shape(scores, out_type=tf.int64)[0]
    span = tf.range(n, dtype=tf.int64)
    same = tf.equal(classes[:, None], classes[None, :])
    pair = tf.where(
        same & tf.not_equal(span[:, None], span[None, :]), match_scores(boxes, boxes, match), _INF
    )
    # A column of inf keeps argmin defined when n is 0 (it is never chosen: a merge
    # needs a finite score).
    row_arg = tf.argmin(
        tf.pad(pair, [[0, 0], [0, 1]], constant_values=_INF), axis=1, output_type=tf.int64
    )
    row_min = tf.reduce_min(pair, axis=1)

    def proceed(sums, counts, totals, alive, pair, row_min, row_arg):
        return tf.reduce_min(tf.concat([row_min, [_INF]], 0)) <= threshold

    def step(sums, counts, totals, alive, pair, row_min, row_arg):
        i = tf.argmin(row_min, output_type=tf.int64)
        j = row_arg[i]
        sums = tf.tensor_scatter_nd_add(sums, [[i]], sums[j][None])
        counts = tf.tensor_scatter_nd_add(counts, [[i]], counts[j][None])
        totals = tf.tensor_scatter_nd_add(totals, [[i]], totals[j][None])
        alive = tf.tensor_scatter_nd_update(alive, [[j]], [False])
        current = sums / counts[:, None]
        pair = _set_row_and_column(pair, j, tf.fill([n], tf.constant(_INF, tf.float64)))
        row_min = tf.tensor_scatter_nd_update(row_min, [[j]], [_INF])
        new = match_scores(current[i][None], current, match)[0]
        new = tf.where(alive & same[i] & tf.not_equal(span, i), new, _INF)
        pair = _set_row_and_column(pair, i, new)
        stale = alive & (tf.equal(row_arg, i) | tf.equal(row_arg, j) | tf.equal(span, i))
        better = alive & ~stale & ((new < row_min) | (tf.equal(new, row_min) & (i < row_arg)))
        row_min = tf.where(better, new, row_min)
        row_arg = tf.where(better, i, row_arg)
        rows = tf.where(stale)[:, 0]
        stale_pairs = tf.gather(pair, rows)
        row_arg = tf.tensor_scatter_nd_update(
            row_arg, rows[:, None], tf.argmin(stale_pairs, axis=1, output_type=tf.int64)
        )
        row_min = tf.tensor_scatter_nd_update(
            row_min, rows[:, None], tf.reduce_min(stale_pairs, axis=1)
        )
        return sums, counts, totals, alive, pair, row_min, row_arg

    state = (boxes, tf.ones([n], tf.float64), scores, tf.ones([n], tf.bool), pair, row_min, row_arg)
    sums, counts, totals, alive, *_ = tf.while_loop(proceed, step, state)
    kept = tf.where(alive)[:, 0]
    merged = tf.gather(sums / counts[:, None], kept)
    totals, classes = tf.gather(totals, kept), tf.gather(classes, kept)
    order = tf.argsort(-totals, stable=True)
    return tf.gather(merged, order), tf.gather(totals, order), tf.gather(classes, order)


def suppress_overlaps(boxes: tf.Tensor, classes: tf.Tensor, *, iou_threshold: float) -> tf.Tensor:
    """`merge.suppress_overlaps` in graph ops: the indices [k'] of the boxes kept, of
    boxes [k, 4] sorted by score descending with their classes [k]."""
    if classes.shape[0] == 0:
        return tf.zeros([0], tf.int64)
    count = tf.shape(classes)[0]
    span = tf.range(count)
    suppressing = (
        tf.equal(classes[:, None], classes[None, :])
        & (iou(boxes, boxes) > iou_threshold)
        & (span[None, :] > span[:, None])
    )

    def step(index, keep):
        drop = tf.logical_and(keep[index], suppressing[index])
        return index + 1, keep & ~drop

    _, keep = tf.while_loop(
        lambda index, keep: index < count, step, (tf.constant(0), tf.ones([count], tf.bool))
    )
    return tf.where(keep)[:, 0]
