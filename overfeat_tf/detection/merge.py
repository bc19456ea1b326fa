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

The merge runs in rounds and gives exactly what the one-pair-at-a-time rule gives. Only
pairs whose score can be <= t are ever scored (every score is at least d / s, so a lookup
over the centres finds them, and a refreshed row first bounds its best score by its
neighbours along x and gathers only the pairs that can match that bound); each live
cluster keeps its best partner, and pairs are met in the order (score, lower index, higher
index). A round takes the next disjoint pairs in that order, merges them tentatively,
scores the merged boxes against their neighbours in a few vectorised calls, and keeps the
longest prefix of merges that the sequential rule would also have made: a merge is kept
when its score is strictly below every score the round's earlier merges of its class
created, and below the scores a row left stale by them (its best partner was merged) may
take next; the rest wait for the next round. All classes merge in the same rounds, each
with its own prefix, so far-apart clusters and classes merge together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from overfeat_tf.detection import boxes as box_ops

MATCHES = ("centre_iou", "literal")
_PROBES = 4  # neighbours along x on each side that bound a refreshed row's best score
_COLUMNS = 4096  # most columns a candidate lookup splits the x-axis into


class Merged(NamedTuple):
    """Merged boxes [k, 4], summed scores [k] and classes [k], score descending."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


def _features(boxes: np.ndarray) -> np.ndarray:
    """Per box [..., 4] -> [..., 8]: ymin, xmin, ymax, xmax, centre y, centre x, area and
    its square root; computed once per box, then gathered for each pair."""
    centre = 0.5 * (boxes[..., :2] + boxes[..., 2:])
    area = np.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * np.maximum(
        boxes[..., 3] - boxes[..., 1], 0.0
    )
    return np.concatenate([boxes, centre, area[..., None], np.sqrt(area)[..., None]], axis=-1)


def _pair_terms(a: np.ndarray, b: np.ndarray):
    """Centre distance, scale s, intersection and both areas of boxes with `_features` a
    and b [..., 8] (broadcast against each other), elementwise: the one formula behind
    every score, so a score computed for a gathered pair equals its matrix entry bit for
    bit."""
    dy, dx = a[..., 4] - b[..., 4], a[..., 5] - b[..., 5]
    distance = np.sqrt(dy * dy + dx * dx)
    scale = np.maximum(0.5 * (a[..., 7] + b[..., 7]), 1e-12)
    inter = np.maximum(
        np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0.0
    ) * np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0.0)
    return distance, scale, inter, a[..., 6], b[..., 6]


def _centre_iou_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise centre-IoU scores of boxes with `_features` a and b (broadcast)."""
    distance, scale, inter, area_a, area_b = _pair_terms(a, b)
    distance = distance / scale
    union = area_a + area_b - inter
    gap = 1.0 - np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return np.divide(distance, gap, out=np.zeros_like(distance), where=gap > 0)


def _literal_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise literal scores of boxes with `_features` a and b (broadcast)."""
    distance, scale, inter, _, _ = _pair_terms(a, b)
    return distance / scale + inter / scale**2


def centre_iou_score(a, b) -> np.ndarray:
    """Match scores [p, q]: normalised centre distance / (1 - IoU); 0 when identical."""
    a, b = box_ops.as_boxes(a, "a"), box_ops.as_boxes(b, "b")
    return _centre_iou_pairs(_features(a)[:, None, :], _features(b)[None, :, :])


def literal_score(a, b) -> np.ndarray:
    """Match scores [p, q]: normalised centre distance + normalised intersection area."""
    a, b = box_ops.as_boxes(a, "a"), box_ops.as_boxes(b, "b")
    return _literal_pairs(_features(a)[:, None, :], _features(b)[None, :, :])


_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "centre_iou": centre_iou_score,
    "literal": literal_score,
}
_PAIR_SCORES = {"centre_iou": _centre_iou_pairs, "literal": _literal_pairs}


def match_score(match: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The pairwise match-score function named `match` (one of MATCHES)."""
    if match not in _SCORES:
        raise ValueError(f"match must be one of {MATCHES}; received {match!r}.")
    return _SCORES[match]


def _best(rows: np.ndarray, partners: np.ndarray, scores: np.ndarray, size: int):
    """Per row id in [0, size): the lowest score offered and, among equal scores, the
    lowest partner id (`size` where none); the queue order (score, lower id, higher id)
    restricted to one row."""
    lowest = np.full(size, np.inf)
    np.minimum.at(lowest, rows, scores)
    partner = np.full(size, size)
    tie = scores == lowest[rows]
    np.minimum.at(partner, rows[tie], partners[tie])
    return lowest, partner


class _Group:
    """The merge state, indexed like the sorted input boxes: clusters merge only within
    their group; each live cluster keeps its best partner (row_min, row_arg), exact
    whenever row_min <= threshold. All groups merge in the same rounds."""

    def __init__(
        self,
        boxes: np.ndarray,
        scores: np.ndarray,
        classes: np.ndarray,
        groups: np.ndarray,
        threshold: float,
        pair_fn,
    ):
        n = len(boxes)
        self.groups = groups
        self.n = n
        self.current, self.sums, self.counts = boxes.copy(), boxes.copy(), np.ones(n)
        self.features = _features(boxes)
        self.totals, self.labels = scores.copy(), classes.copy()
        self.alive = np.ones(n, bool)
        self.threshold, self.pair_fn = threshold, pair_fn
        self.row_min, self.row_arg = np.full(n, np.inf), np.full(n, n)

    def near(
        self,
        queries: np.ndarray,
        query_groups: np.ndarray,
        candidates: np.ndarray,
        bound: np.ndarray | None = None,
    ):
        """Pairs (q, c): q indexes `queries` [k, 8] (`_features`, of groups `query_groups`
        [k]), c is a cluster id from `candidates` of the same group, containing every pair
        whose score can be <= threshold, or <= `bound` [k] per query where given (both
        scores are at least centre distance / s)."""
        if not len(queries) or not len(candidates):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        features = self.features[candidates]
        centre, root = features[:, 4:6], features[:, 7]
        q_centre, q_root = queries[:, 4:6], queries[:, 7]
        bound = np.full(len(queries), self.threshold) if bound is None else bound
        largest = max(root.max(initial=0.0), q_root.max(initial=0.0))
        slack = 1 + 1e-9  # covers the rounding of the scores' own arithmetic
        reach = bound * np.maximum(0.5 * (q_root + largest), 1e-12) * slack + 1e-9
        # Columns along x as wide as the longest reach (at most _COLUMNS of them); within a
        # column, clusters sorted by group, then y, each group on its own stretch of the
        # line when the reach is finite. A query looks up a y-range in each column its
        # reach touches.
        xs, q_xs = centre[:, 1], q_centre[:, 1]
        ys, q_ys = centre[:, 0], q_centre[:, 0]
        span = np.concatenate([ys, q_ys])
        stretch = np.ptp(span) + 2 * reach.max(initial=0.0) + 1
        x_span = np.ptp(np.concatenate([xs, q_xs]))
        far = max(reach.max(initial=0.0), x_span / _COLUMNS)
        if np.isfinite(stretch) and far > 0:
            left = min(xs.min(), q_xs.min())
            columns = int(x_span // far) + 1
            buckets = self.groups[candidates] * columns + ((xs - left) // far).astype(np.int64)
            keys = buckets * stretch + (ys - span.min())
            first = np.maximum(((q_xs - reach - 1e-9 - left) // far).astype(np.int64), 0)
            last = np.minimum(((q_xs + reach + 1e-9 - left) // far).astype(np.int64), columns - 1)
            count = np.maximum(last - first + 1, 0)
            query = np.repeat(np.arange(len(queries)), count)
            column = np.arange(len(query)) + np.repeat(first - (np.cumsum(count) - count), count)
            q_keys = (query_groups[query] * columns + column) * stretch + (q_ys[query] - span.min())
        else:
            keys, q_keys, query = ys, q_ys, np.arange(len(queries))
        order = np.argsort(keys)
        sorted_keys = keys[order]
        window = reach[query] + 1e-12 * (1 + np.abs(sorted_keys).max(initial=0.0))  # rounding
        lo = np.searchsorted(sorted_keys, q_keys - window, "left")
        hi = np.searchsorted(sorted_keys, q_keys + window, "right")
        width = hi - lo
        q = np.repeat(query, width)
        position = np.arange(len(q)) + np.repeat(lo - (np.cumsum(width) - width), width)
        c = order[position]
        pair_reach = bound[q] * np.maximum(0.5 * (q_root[q] + root[c]), 1e-12) * slack + 1e-9
        keep = (np.abs(centre[c, 1] - q_centre[q, 1]) <= pair_reach) & (
            np.abs(centre[c, 0] - q_centre[q, 0]) <= pair_reach
        )
        q, c = q[keep], candidates[c[keep]]
        same = self.groups[c] == query_groups[q]
        return q[same], c[same]

    def probe(self, rows: np.ndarray, live: np.ndarray) -> np.ndarray:
        """Upper bounds [len(rows)] on the best scores of clusters `rows` (at most the
        threshold): each row scored against the live clusters of its group next to it
        along x, so that `near` need only gather the pairs that can match the bound."""
        keys = self.features[live, 5] + self.groups[live] * (np.ptp(self.features[live, 5]) + 1)
        order = np.argsort(keys, kind="stable")
        at = np.searchsorted(keys[order], keys[np.searchsorted(live, rows)], "left")
        spots = np.clip(at[:, None] + np.arange(-_PROBES, _PROBES + 1), 0, len(live) - 1)
        partners = live[order[spots]]
        scores = self.pair_fn(self.features[rows][:, None], self.features[partners])
        scores[
            (partners == rows[:, None]) | (self.groups[partners] != self.groups[rows][:, None])
        ] = np.inf
        return np.fmin(np.fmin.reduce(scores, axis=1), self.threshold)

    def refresh(self, rows: np.ndarray) -> None:
        """Recomputes the best partner of the live clusters `rows` from scratch."""
        live = np.flatnonzero(self.alive)
        bound = self.probe(rows, live) if np.isfinite(self.threshold) else None
        q, c = self.near(self.features[rows], self.groups[rows], live, bound)
        q = rows[q]
        other = q != c
        q, c = q[other], c[other]
        lowest, partner = _best(q, c, self.pair_fn(self.features[q], self.features[c]), self.n)
        self.row_min[rows], self.row_arg[rows] = lowest[rows], partner[rows]

    def offer(self, rows: np.ndarray, partners: np.ndarray, scores: np.ndarray) -> None:
        """Lets clusters `rows` take new partners where those rank before their best."""
        lowest, partner = _best(rows, partners, scores, self.n)
        better = (lowest < self.row_min) | ((lowest == self.row_min) & (partner < self.row_arg))
        self.row_min[better], self.row_arg[better] = lowest[better], partner[better]

    def take(self, limit: int):
        """Up to `limit` disjoint pairs in queue order (score, lower id, higher id), as the
        sequential rule would meet them in each group, and the stale clusters met on the
        way: a pair that touches a taken cluster on one side leaves the other side's row
        stale (its next partner is unknown until the round scores it). Returns the taken
        (score, lo, hi) and the stale (cluster, index of the first taken pair it may
        precede); a group stops at a pair that touches a stale cluster."""
        ids = np.flatnonzero(self.alive & (self.row_min <= self.threshold))
        if not len(ids):
            return [], []
        partner = self.row_arg[ids]
        low, high = np.minimum(ids, partner), np.maximum(ids, partner)
        order = np.lexsort((high, low, self.row_min[ids]))[: 4 * limit]
        taken, stale, touched, unknown, stopped, last = [], [], set(), set(), set(), None
        for score, lo, hi, group in zip(
            self.row_min[ids[order]].tolist(),
            low[order].tolist(),
            high[order].tolist(),
            self.groups[low[order]].tolist(),
        ):
            if (lo, hi) == last or group in stopped:
                continue  # the same pair seen from its other row, or a stopped group
            last = (lo, hi)
            if lo in unknown or hi in unknown:
                stopped.add(group)  # groups never interact: the others go on
                continue
            seen = (lo in touched) + (hi in touched)
            if seen == 1:
                cluster = hi if lo in touched else lo
                stale.append((cluster, len(taken)))
                unknown.add(cluster)
            elif seen == 0:
                if len(taken) == limit:
                    break
                taken.append((score, lo, hi))
                touched.update((lo, hi))
        return taken, stale

    def round(self, limit: int) -> int:
        """One round of merges (see the module docstring); returns how many were made."""
        taken, stale = self.take(limit)
        if not taken:
            return 0
        k = len(taken)
        pair_score = np.array([entry[0] for entry in taken])
        a = np.array([entry[1] for entry in taken])
        b = np.array([entry[2] for entry in taken])
        sums = self.sums[a] + self.sums[b]
        counts = self.counts[a] + self.counts[b]
        merged = sums / counts[:, None]
        merged_features = _features(merged)
        # Scores of merged box l against: merged box r (both merged), the original a_r and
        # b_r (r not merged yet), and the live clusters outside the round.
        apart = self.groups[a][:, None] != self.groups[a][None, :]
        among = np.where(
            apart, np.inf, self.pair_fn(merged_features[:, None], merged_features[None, :])
        )
        members = np.concatenate([a, b])
        before_all = np.where(
            np.concatenate([apart, apart], axis=1),
            np.inf,
            self.pair_fn(merged_features[:, None], self.features[members][None, :]),
        )
        before = np.minimum(before_all[:, :k], before_all[:, k:])
        outside = self.alive.copy()
        outside[members] = False
        q, c = self.near(merged_features, self.groups[a], np.flatnonzero(outside))
        out_score = self.pair_fn(merged_features[q], self.features[c])
        best_out = np.full(k, np.inf)
        np.minimum.at(best_out, q, out_score)
        # Groups never interact, so each group's merges are checked against its own: merge
        # m is what the sequential rule does next in its group when its score is below
        # every score its group's earlier merges created (ties stop the group, to be safe).
        rows = np.arange(k)
        same = self.groups[a][:, None] == self.groups[a][None, :]
        earlier = (rows[:, None] < rows[None, :]) & same
        created = np.minimum(best_out, np.where(earlier, among, np.inf).min(axis=0))
        suffix = np.minimum.accumulate(before[:, ::-1], axis=1)[:, ::-1]
        lowest = np.minimum(
            np.where(earlier, created[:, None], np.inf).min(axis=0),
            np.where(earlier, suffix, np.inf).min(axis=0),
        )
        if stale:
            lowest = np.minimum(
                lowest, self.unknown(stale, members, outside, self.groups[a], pair_score.max())
            )
        failed = ~(pair_score < lowest)
        # A group keeps its merges up to its first failure.
        kept = ~np.where(earlier | np.eye(k, dtype=bool), failed[:, None], False).any(axis=0)
        done_at, waiting_at = np.flatnonzero(kept), np.flatnonzero(~kept)
        done = len(done_at)
        a, b = a[done_at], b[done_at]
        self.commit(a, b, sums[done_at], counts[done_at], merged[done_at])
        self.features[a] = merged_features[done_at]
        # The merged clusters' rows, from all three kinds of scores; the rows that pointed
        # at a changed cluster start over; every other row may only gain a merged cluster.
        waiting = np.concatenate([waiting_at, k + waiting_at])
        first, second = np.divmod(np.arange(done * len(waiting)), len(waiting))
        cross_score = before_all[done_at][:, waiting].reshape(-1)
        cross_other = members[waiting[second]]
        mine = kept[q]
        position = np.cumsum(kept) - 1  # index among the kept merges
        pairs_i, pairs_j = np.nonzero(~np.eye(done, dtype=bool))
        lowest, partner = _best(
            np.concatenate([a[pairs_i], a[first], a[position[q[mine]]]]),
            np.concatenate([a[pairs_j], cross_other, c[mine]]),
            np.concatenate(
                [among[done_at[pairs_i], done_at[pairs_j]], cross_score, out_score[mine]]
            ),
            self.n,
        )
        self.row_min[a], self.row_arg[a] = lowest[a], partner[a]
        self.row_min[b], self.row_arg[b] = np.inf, self.n
        changed = np.zeros(self.n + 1, bool)
        changed[a] = changed[b] = True
        stale = np.flatnonzero(self.alive & changed[self.row_arg] & ~changed[:-1])
        self.offer(
            np.concatenate([cross_other, c[mine]]),
            np.concatenate([a[first], a[position[q[mine]]]]),
            np.concatenate([cross_score, out_score[mine]]),
        )
        if len(stale):
            self.refresh(stale)
        return done

    def unknown(
        self,
        stale,
        members: np.ndarray,
        outside: np.ndarray,
        pair_groups: np.ndarray,
        highest: float,
    ):
        """Per taken pair m [k]: the lowest score a stale row met before m may have when m
        is due, its cluster against the live clusters outside the round and the original
        boxes of the pairs m, m+1, ... (its scores against merged boxes are among those the
        round's merges create); inf where no stale row precedes m in its group. Scores
        above `highest`, the round's highest pair score, cannot stop a merge and may be
        left out."""
        k = len(pair_groups)
        rows = np.array([entry[0] for entry in stale])
        first = np.array([entry[1] for entry in stale])
        q, c = self.near(
            self.features[rows],
            self.groups[rows],
            np.flatnonzero(outside),
            np.full(len(rows), highest),
        )
        other = rows[q] != c
        q, c = q[other], c[other]
        out = np.full(len(rows), np.inf)
        np.minimum.at(out, q, self.pair_fn(self.features[rows[q]], self.features[c]))
        apart = self.groups[rows][:, None] != pair_groups[None, :]
        against = np.where(
            np.concatenate([apart, apart], axis=1),
            np.inf,
            self.pair_fn(self.features[rows][:, None], self.features[members][None, :]),
        )
        pending = np.minimum(against[:, :k], against[:, k:])
        suffix = np.minimum.accumulate(pending[:, ::-1], axis=1)[:, ::-1]
        applies = (first[:, None] <= np.arange(k)[None, :]) & ~apart
        return np.where(applies, np.minimum(out[:, None], suffix), np.inf).min(axis=0)

    def commit(self, a, b, sums, counts, merged) -> None:
        """Merges clusters b into a: summed members, mean box, summed score, the class of
        the side with the larger accumulated score."""
        self.sums[a], self.counts[a], self.current[a] = sums, counts, merged
        switch = self.totals[b] > self.totals[a]
        self.labels[a] = np.where(switch, self.labels[b], self.labels[a])
        self.totals[a] += self.totals[b]
        self.alive[b] = False


def _merge(
    boxes: np.ndarray,
    scores: np.ndarray,
    classes: np.ndarray,
    groups: np.ndarray,
    threshold: float,
    pair_fn,
) -> _Group:
    """Greedy merge of boxes sorted by score, within `groups` [n] (see the module
    docstring); returns the final state."""
    group = _Group(boxes, scores, classes, groups, threshold, pair_fn)
    if len(boxes) > 1 and threshold >= 0:  # scores are >= 0; NaN merges nothing
        group.refresh(np.arange(len(boxes)))
        limit = 8
        while done := group.round(limit):
            limit = min(4096, 2 * limit if done == limit else max(4, 2 * done))
    return group


def greedy_merge(
    boxes, scores, classes, *, threshold: float, match: str = "centre_iou", per_class: bool = True
) -> Merged:
    """Greedily merges boxes [n, 4] with scores [n] and int classes [n] (section 4.3).

    Merges the pair with the lowest match score while that score is <= `threshold`.
    Returns `Merged` sorted by summed score, descending; empty inputs give empty arrays.
    """
    match_score(match)  # fails early on an unknown name
    pair_fn = _PAIR_SCORES[match]
    boxes = box_ops.as_boxes(boxes)
    scores = np.asarray(scores, np.float64).reshape(-1)
    classes = np.asarray(classes, np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(
            f"boxes, scores and classes must have the same length; received "
            f"{len(boxes)}, {len(scores)} and {len(classes)}."
        )
    order = np.argsort(-scores, kind="stable")
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    groups = np.unique(classes, return_inverse=True)[1] if per_class else np.zeros_like(classes)
    group = _merge(boxes, scores, classes, groups.reshape(-1), threshold, pair_fn)
    # Clusters listed group by group in index order, then by summed score (stable).
    live = np.flatnonzero(group.alive)
    live = live[np.argsort(group.groups[live], kind="stable")]
    live = live[np.argsort(-group.totals[live], kind="stable")]
    return Merged(group.current[live], group.totals[live], group.labels[live])


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
            keep[index + 1 :] &= ~suppressing[index, index + 1 :]
    return Merged(merged.boxes[keep], merged.scores[keep], merged.classes[keep])
