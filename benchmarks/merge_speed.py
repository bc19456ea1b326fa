r"""The greedy merge (OverFeat section 4.3) on thousands of boxes: the vectorised rounds of
`merge.greedy_merge` beside the one-merge-at-a-time loop over a full [n, n] score matrix
(the loop tests/test_merge.py keeps as its reference), timed in one run on the same boxes,
with the outputs compared bit for bit.

Two kinds of input: boxes spread over an image (the merge test's distribution), and
detections clustered around a few objects with several classes, as a detector emits
them. The median of `--repeats` runs is kept for each.

    PYTHONPATH=. python benchmarks/merge_speed.py              # 2,000 boxes
    PYTHONPATH=. python benchmarks/merge_speed.py --boxes=200 --repeats=1
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
from absl import app, flags

from overfeat_tf import runtime
from overfeat_tf.detection import merge
from tests.test_merge import _reference

flags.DEFINE_integer("boxes", 2000, "Boxes per image.")
flags.DEFINE_integer("repeats", 5, "Timed runs of each way (the median is kept).")
flags.DEFINE_float("threshold", 1.0, "Merge threshold (centre_iou match score).")
FLAGS = flags.FLAGS


def spread(rng: np.random.Generator, n: int):
    """n boxes 4-40 px a side spread over a 300 x 300 image, one class."""
    centre = rng.uniform(0, 300, (n, 2))
    half = rng.uniform(2, 20, (n, 2))
    return (
        np.concatenate([centre - half, centre + half], 1),
        rng.uniform(0, 1, n),
        np.zeros(n, np.int64),
    )


def detections(rng: np.random.Generator, n: int):
    """n boxes jittered around 8 objects (60-200 px) of a 461 x 569 image, 5 classes."""
    centre = rng.uniform([60, 60], [400, 510], (8, 2))
    half = rng.uniform(30, 100, (8, 2))
    objects = np.concatenate([centre - half, centre + half], 1)
    pick = rng.integers(0, 8, n)
    boxes = objects[pick] + rng.normal(0, 12, (n, 4))
    return boxes, rng.uniform(0, 1, n), rng.integers(0, 5, n)


def _vectorised(boxes, scores, classes, threshold: float) -> merge.Merged:
    return merge.greedy_merge(boxes, scores, classes, threshold=threshold)


def _median_time(fn, args, repeats: int):
    """Median wall-clock and process CPU seconds of `repeats` calls, and the last result.
    On a loaded machine the CPU time is the closer estimate of a quiet machine's wall
    time (the merge runs on one thread)."""
    times, cpu_times, result = [], [], None
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = fn(*args)
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return statistics.median(times), statistics.median(cpu_times), result


def main(argv: list[str]) -> None:
    del argv
    print(runtime.cpu_summary())
    print(f"{FLAGS.boxes} boxes, centre_iou <= {FLAGS.threshold}, median of {FLAGS.repeats}")
    print(f"load average {os.getloadavg()[0]:.1f}; wall-clock ms, CPU ms in brackets")
    print(f"{'input':<12} {'kept':>6} {'vectorised':>20} {'matrix loop':>20} {'ratio':>7}  same")
    rng = np.random.default_rng(0)
    for name, make in (("spread", spread), ("detections", detections)):
        boxes, scores, classes = make(rng, FLAGS.boxes)
        fast_s, fast_cpu, got = _median_time(
            _vectorised, (boxes, scores, classes, FLAGS.threshold), FLAGS.repeats
        )
        loop_s, loop_cpu, want = _median_time(
            _reference, (boxes, scores, classes, FLAGS.threshold, "centre_iou", True), FLAGS.repeats
        )
        same = (
            np.array_equal(got.boxes, want[0])
            and np.array_equal(got.scores, want[1])
            and np.array_equal(got.classes, want[2])
        )
        print(
            f"{name:<12} {len(got.boxes):>6} {fast_s * 1e3:>8.1f} ({fast_cpu * 1e3:>7.1f}) ms "
            f"{loop_s * 1e3:>8.1f} ({loop_cpu * 1e3:>7.1f}) ms "
            f"{loop_s / fast_s:>6.1f}x  {same}"
        )


if __name__ == "__main__":
    app.run(main)
