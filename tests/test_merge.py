"""OverFeat greedy merge (section 4.3): the rule by hand, and the vectorised rounds
against a brute-force re-implementation and against the one-merge-at-a-time matrix loop
(kept here as the reference), bit for bit."""

import numpy as np
import pytest

from overfeat_tf.detection import merge

A, B, C = [0, 0, 10, 10], [0, 1, 10, 11], [0, 2, 10, 12]


def test_match_scores_by_hand():
    # A, B: centres 1 apart, scale 10 -> d = 0.1; IoU = 90 / 110 -> 0.1 / (2 / 11) = 0.55.
    np.testing.assert_allclose(merge.centre_iou_score([A], [B, A]), [[0.55, 0.0]])
    # literal: d / s + intersection / s^2 = 0.1 + 0.9; identical boxes score 1.
    np.testing.assert_allclose(merge.literal_score([A], [B, A]), [[1.0, 1.0]])
    far = [0, 30, 10, 40]  # disjoint: centres 30 apart -> 3 in both forms
    np.testing.assert_allclose(merge.centre_iou_score([A], [far]), [[3.0]])
    np.testing.assert_allclose(merge.literal_score([A], [far]), [[3.0]])


def test_merge_threshold_average_and_summed_score():
    merged = merge.greedy_merge([B, A], [0.3, 0.5], [0, 0], threshold=0.6)
    np.testing.assert_allclose(merged.boxes, [[0, 0.5, 10, 10.5]])
    np.testing.assert_allclose(merged.scores, [0.8])
    kept = merge.greedy_merge([B, A], [0.3, 0.5], [0, 0], threshold=0.5)
    np.testing.assert_allclose(kept.boxes, [A, B])  # score descending
    np.testing.assert_allclose(kept.scores, [0.5, 0.3])


def test_merged_box_is_the_mean_of_all_original_boxes():
    # A-B and B-C tie at 0.55; the lowest indices (A, B) merge first. AB = [0, .5, 10, 10.5]
    # then matches C at d = 0.15, IoU = 85 / 115: 0.15 * 115 / 30 = 0.575.
    merged = merge.greedy_merge([A, B, C], [0.5, 0.3, 0.2], [1, 1, 1], threshold=0.58)
    np.testing.assert_allclose(merged.boxes, [[0, 1, 10, 11]])  # not the pairwise [.., 1.25, ..]
    np.testing.assert_allclose(merged.scores, [1.0])
    np.testing.assert_array_equal(merged.classes, [1])
    partial = merge.greedy_merge([A, B, C], [0.5, 0.3, 0.2], [1, 1, 1], threshold=0.57)
    np.testing.assert_allclose(partial.boxes, [[0, 0.5, 10, 10.5], C])
    np.testing.assert_allclose(partial.scores, [0.8, 0.2])


def test_classes_merge_only_among_themselves_unless_asked():
    merged = merge.greedy_merge([A, A], [0.2, 0.7], [3, 4], threshold=0.1)
    np.testing.assert_array_equal(merged.classes, [4, 3])
    across = merge.greedy_merge([A, A], [0.2, 0.7], [3, 4], threshold=0.1, per_class=False)
    np.testing.assert_array_equal(across.classes, [4])  # the larger score's class
    np.testing.assert_allclose(across.scores, [0.9])


def test_literal_form_needs_a_threshold_of_one_to_merge_identical_boxes():
    assert (
        len(merge.greedy_merge([A, A], [1, 1], [0, 0], threshold=0.99, match="literal").boxes) == 2
    )
    assert (
        len(merge.greedy_merge([A, A], [1, 1], [0, 0], threshold=1.0, match="literal").boxes) == 1
    )


def test_suppress_overlaps_keeps_the_best_box_of_each_class():
    far = [0, 30, 10, 40]
    merged = merge.Merged(
        np.array([A, B, far, B], float), np.array([4.0, 3.0, 2.0, 1.0]), np.array([0, 0, 0, 1])
    )
    # B overlaps A (IoU 9/11 > 0.5): dropped; far overlaps nothing; class 1's B stays.
    kept = merge.suppress_overlaps(merged, iou_threshold=0.5)
    np.testing.assert_allclose(kept.boxes, [A, far, B])
    np.testing.assert_array_equal(kept.classes, [0, 0, 1])
    np.testing.assert_allclose(kept.scores, [4.0, 2.0, 1.0])
    assert len(merge.suppress_overlaps(merged, iou_threshold=0.9).boxes) == 4  # 9/11 < 0.9
    empty = merge.Merged(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    assert len(merge.suppress_overlaps(empty, iou_threshold=0.5).boxes) == 0


def test_empty_and_single_inputs():
    empty = merge.greedy_merge(np.zeros((0, 4)), [], [], threshold=1.0)
    assert (
        empty.boxes.shape == (0, 4) and empty.scores.shape == (0,) and empty.classes.shape == (0,)
    )
    single = merge.greedy_merge([A], [0.4], [2], threshold=1.0)
    np.testing.assert_allclose(single.boxes, [A])


def test_bad_arguments():
    with pytest.raises(ValueError, match="match must be one of"):
        merge.greedy_merge([A], [1], [0], threshold=1, match="nearest")
    with pytest.raises(ValueError, match="same length"):
        merge.greedy_merge([A, B], [1], [0, 0], threshold=1)


def _brute_force(boxes, scores, classes, threshold, match, per_class):
    """The rule written plainly: recompute every pair after every merge (O(n^3))."""
    score_fn = merge.match_score(match)
    order = np.argsort(-np.asarray(scores), kind="stable")
    clusters = [([np.asarray(boxes[i], float)], scores[i], classes[i]) for i in order]
    while len(clusters) > 1:
        means = np.array([np.mean(members, axis=0) for members, _, _ in clusters])
        pair = score_fn(means, means)
        np.fill_diagonal(pair, np.inf)
        if per_class:
            labels = np.array([c for _, _, c in clusters])
            pair[labels[:, None] != labels[None, :]] = np.inf
        i, j = np.unravel_index(np.argmin(pair), pair.shape)
        if not pair[i, j] <= threshold:
            break
        (mi, si, ci), (mj, sj, cj) = clusters[i], clusters[j]
        clusters[i] = (mi + mj, si + sj, cj if sj > si else ci)
        del clusters[j]
    result = sorted(((np.mean(m, axis=0), s, c) for m, s, c in clusters), key=lambda t: -t[1])
    return (
        np.array([r[0] for r in result]),
        np.array([r[1] for r in result]),
        np.array([r[2] for r in result]),
    )


def _reference_group(boxes, scores, classes, threshold, score_fn):
    """The merge one pair at a time over a full [n, n] score matrix, updated one row and
    column per merge, with per-row minima kept incrementally."""
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
        new = score_fn(current[i : i + 1], current)[0]
        new[~alive] = np.inf
        new[i] = np.inf
        pair[i, :] = pair[:, i] = new
        stale = alive & ((row_arg == i) | (row_arg == j))
        stale[i] = True
        better = alive & ~stale & ((new < row_min) | ((new == row_min) & (i < row_arg)))
        row_min[better], row_arg[better] = new[better], i
        rows = np.flatnonzero(stale)
        row_arg[rows] = np.argmin(pair[rows], axis=1)
        row_min[rows] = pair[rows, row_arg[rows]]
    return current[alive], totals[alive], labels[alive]


def _reference(boxes, scores, classes, threshold, match, per_class):
    """greedy_merge as the matrix loop computes it: sorted input, one group per class."""
    score_fn = merge.match_score(match)
    boxes, scores = np.asarray(boxes, float), np.asarray(scores, float)
    classes = np.asarray(classes, np.int64)
    order = np.argsort(-scores, kind="stable")
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    groups = [classes == c for c in np.unique(classes)] if per_class else [slice(None)]
    parts = [_reference_group(boxes[g], scores[g], classes[g], threshold, score_fn) for g in groups]
    merged = [
        np.concatenate([p[k] for p in parts] + [empty])
        for k, empty in enumerate([np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)])
    ]
    order = np.argsort(-merged[1], kind="stable")
    return [m[order] for m in merged]


def _random_boxes(rng, n, size=100.0):
    centre = rng.uniform(0, size, (n, 2))
    half = rng.uniform(2, 20, (n, 2))
    return np.concatenate([centre - half, centre + half], axis=1)


@pytest.mark.parametrize("match,threshold", [("centre_iou", 1.0), ("literal", 0.8)])
@pytest.mark.parametrize("per_class", [True, False])
def test_agrees_with_brute_force(match, threshold, per_class):
    rng = np.random.default_rng(1)
    boxes = _random_boxes(rng, 60)
    scores, classes = rng.uniform(0, 1, 60), rng.integers(0, 3, 60)
    got = merge.greedy_merge(
        boxes, scores, classes, threshold=threshold, match=match, per_class=per_class
    )
    want = _brute_force(boxes, scores, classes, threshold, match, per_class)
    assert 1 < len(got.boxes) < 60  # the case does merge, and does not merge everything
    np.testing.assert_allclose(got.boxes, want[0])
    np.testing.assert_allclose(got.scores, want[1])
    np.testing.assert_array_equal(got.classes, want[2])


def test_thousands_of_boxes():
    rng = np.random.default_rng(2)
    boxes = _random_boxes(rng, 2000, size=300.0)
    scores = rng.uniform(0, 1, 2000)
    merged = merge.greedy_merge(boxes, scores, np.zeros(2000, int), threshold=1.0)
    assert 1 < len(merged.boxes) < 2000
    np.testing.assert_allclose(merged.scores.sum(), scores.sum())  # confidence is conserved
    assert np.all(np.diff(merged.scores) <= 0)
    # No pair left at or under the threshold.
    pair = merge.centre_iou_score(merged.boxes, merged.boxes)
    np.fill_diagonal(pair, np.inf)
    assert pair.min() > 1.0


def _assert_identical(got, want):
    """Bit for bit: the same boxes, scores and classes in the same order."""
    np.testing.assert_array_equal(got.boxes, want[0])
    np.testing.assert_array_equal(got.scores, want[1])
    np.testing.assert_array_equal(got.classes, want[2])


def _case(seed):
    """Random boxes of one of three kinds: spread out, clustered like detections around a
    few objects, or small integer boxes with many exact duplicates and tied scores."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 120))
    kind = seed % 3
    if kind == 0:
        boxes = _random_boxes(rng, n, size=float(rng.choice([30.0, 100.0, 300.0])))
    elif kind == 1:
        objects = _random_boxes(rng, 4, size=200.0)
        boxes = objects[rng.integers(0, 4, n)] + rng.normal(0, 4, (n, 4))
    else:
        boxes = rng.integers(0, 5, (n, 4)).astype(float)
        boxes[:, 2:] += boxes[:, :2] + 1
    scores = rng.integers(0, 4, n).astype(float) if kind == 2 else rng.uniform(0, 1, n)
    return rng, boxes, scores, rng.integers(0, 3, n)


@pytest.mark.parametrize("seed", range(60))
def test_identical_to_the_matrix_loop(seed):
    rng, boxes, scores, classes = _case(seed)
    match = merge.MATCHES[seed % 2]
    threshold = float(rng.choice([0.0, 0.3, 1.0, 2.5]))
    per_class = bool(seed % 4 < 2)
    got = merge.greedy_merge(
        boxes, scores, classes, threshold=threshold, match=match, per_class=per_class
    )
    _assert_identical(got, _reference(boxes, scores, classes, threshold, match, per_class))


def test_identical_to_the_matrix_loop_on_thousands_of_boxes():
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 1500, size=300.0)
    scores, classes = rng.uniform(0, 1, 1500), rng.integers(0, 4, 1500)
    for per_class in (True, False):
        got = merge.greedy_merge(boxes, scores, classes, threshold=1.0, per_class=per_class)
        _assert_identical(got, _reference(boxes, scores, classes, 1.0, "centre_iou", per_class))


def test_a_nan_or_negative_threshold_merges_nothing():
    for threshold in (float("nan"), -1.0):
        kept = merge.greedy_merge([A, A, B], [0.1, 0.3, 0.2], [0, 0, 0], threshold=threshold)
        np.testing.assert_allclose(kept.boxes, [A, B, A])


def test_identical_to_the_matrix_loop_on_2000_clustered_detections():
    # Detections jittered around a few objects, several classes: long runs of merges within
    # each class, many rows left stale by a round's merges.
    rng = np.random.default_rng(4)
    objects = _random_boxes(rng, 6, size=400.0) * 3
    boxes = objects[rng.integers(0, 6, 2000)] + rng.normal(0, 10, (2000, 4))
    scores, classes = rng.uniform(0, 1, 2000), rng.integers(0, 3, 2000)
    got = merge.greedy_merge(boxes, scores, classes, threshold=1.0)
    assert len(got.boxes) < 200  # most boxes do merge
    _assert_identical(got, _reference(boxes, scores, classes, 1.0, "centre_iou", True))


def test_identical_to_the_matrix_loop_on_duplicates_at_large_coordinates():
    # Every box has an exact duplicate (best score 0) and the image is huge: the candidate
    # lookup must still find every pair.
    rng = np.random.default_rng(5)
    boxes = np.repeat(_random_boxes(rng, 150, size=1e7), 2, axis=0)
    scores, classes = rng.uniform(0, 1, 300), np.repeat(rng.integers(0, 2, 150), 2)
    got = merge.greedy_merge(boxes, scores, classes, threshold=1.0)
    assert len(got.boxes) <= 150
    _assert_identical(got, _reference(boxes, scores, classes, 1.0, "centre_iou", True))
