"""The graph-op merge and suppression (for serving) equal the numpy ones (OverFeat 4.3)."""

import numpy as np
import pytest
import tensorflow as tf

from overfeat_tf.detection import graph_merge, merge

# Dynamic sizes, as in a SavedModel signature: one trace for every count.
SIGNATURE = [
    tf.TensorSpec([None, 4], tf.float64),
    tf.TensorSpec([None], tf.float64),
    tf.TensorSpec([None], tf.int64),
]


def _random_boxes(count: int, seed: int):
    rng = np.random.default_rng(seed)
    centres, sides = rng.uniform(0, 300, (count, 2)), rng.uniform(20, 120, (count, 2))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], 1)
    return boxes, rng.random(count), rng.integers(0, 3, count)


@pytest.mark.parametrize(
    "count, match, threshold",
    [
        (0, "centre_iou", 0.5),
        (1, "centre_iou", 0.5),
        (40, "centre_iou", 0.5),
        (150, "centre_iou", 2.0),
        (150, "literal", 1.0),
    ],
)
def test_greedy_merge_equals_numpy(count, match, threshold):
    boxes, scores, classes = _random_boxes(count, seed=count)
    expected = merge.greedy_merge(boxes, scores, classes, threshold=threshold, match=match)
    graph = tf.function(
        lambda b, s, c: graph_merge.greedy_merge(b, s, c, threshold=threshold, match=match),
        input_signature=SIGNATURE,
    )
    found = [t.numpy() for t in graph(boxes, scores, classes)]
    assert len(found[1]) == len(expected.scores)
    assert count < 40 or len(expected.scores) < count  # the larger sets do merge
    np.testing.assert_allclose(found[0], expected.boxes, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(found[1], expected.scores, rtol=1e-9)
    np.testing.assert_array_equal(found[2], expected.classes)

    kept = graph_merge.suppress_overlaps(
        tf.constant(expected.boxes), tf.constant(expected.classes), iou_threshold=0.3
    )
    suppressed = merge.suppress_overlaps(expected, iou_threshold=0.3)
    np.testing.assert_array_equal(expected.scores[kept.numpy()], suppressed.scores)


def test_statically_empty_inputs():
    found = graph_merge.greedy_merge(
        tf.zeros([0, 4]), tf.zeros([0]), tf.zeros([0], tf.int32), threshold=0.5
    )
    assert [t.shape[0] for t in found] == [0, 0, 0]
    assert graph_merge.suppress_overlaps(
        tf.zeros([0, 4]), tf.zeros([0]), iou_threshold=0.3
    ).shape == (0,)
