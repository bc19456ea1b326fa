r"""Dense evaluation versus classifying every window in batches (OverFeat section 3.3).

Both compute the same thing: at every scale, the class scores of every window of the
fine-stride grid (221 px windows every 12 px for OverFeat accurate), then the spatial
max per class and the mean over scales. The dense evaluator shares the convolutions of
overlapping windows and resizes the image itself; the baseline cuts every window from the
already resized images and classifies them `--batch` at a time (the last batch of a scale
may be smaller), the way a plain classifier would be run over a grid. Both are timed in
one run, each the median of `--repeats`; the FLOP ratio (TF's profiler on both graphs)
is what the time ratio approaches when both run their FLOPs equally fast.

    PYTHONPATH=. python benchmarks/dense_speed.py --width=0.25
    PYTHONPATH=. python benchmarks/dense_speed.py --width=1.0 --scales=245x245,281x317
    PYTHONPATH=. python benchmarks/dense_speed.py --width=0.05 --scales=245x245 \
        --image_size=245x302 --repeats=1       # a smoke run
"""

from __future__ import annotations

import statistics
import time

from absl import app, flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads
from overfeat_tf import flags_common, runtime
from overfeat_tf.evaluation import dense

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

flags.DEFINE_string("model", "overfeat_accurate", "Registry name of the model.")
flags.DEFINE_float("width", 0.25, "Channel multiplier (1.0 is the paper's network).")
flags.DEFINE_string("image_size", "461x569", "HxW of the test image.")
flags.DEFINE_list("scales", None, "HxW scales; default: the model's six (the paper's).")
flags.DEFINE_integer("repeats", 3, "Timed runs of each way (the median is kept).")
flags.DEFINE_integer("batch", 64, "Windows per batch in the baseline.")
flags.DEFINE_enum("xla", "auto", ["auto", "on", "off"], "The dense evaluator's XLA mode.")
flags_common.define_onednn()
FLAGS = flags.FLAGS


def _flops(fn, shape) -> int:
    """Floating-point operations of `fn` on a float32 input of static `shape`."""
    function = tf.function(fn, autograph=False)
    graph = function.get_concrete_function(tf.TensorSpec(shape, tf.float32)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return tf.compat.v1.profiler.profile(graph, cmd="op", options=options).total_float_ops


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str]) -> None:
    del argv
    image_h, image_w = dense.parse_scales([FLAGS.image_size])[0]
    scales = dense.parse_scales(FLAGS.scales) if FLAGS.scales else None
    tf.keras.utils.set_random_seed(0)
    model = overfeat_tf.build_model(FLAGS.model, 1000, FLAGS.width, init="he")
    info = overfeat_tf.model_info(model)
    evaluator = dense.DenseEvaluator(model, scales, fine_stride=True, flips=False, xla=FLAGS.xla)
    image = tf.random.stateless_normal([1, image_h, image_w, 3], [0, 0])
    size, step = info.input_size, evaluator.cell_stride

    # The baseline: the same resized images, the same grid, `--batch` windows per call.
    classify = tf.function(
        lambda x: tf.nn.softmax(model(x, training=False)),
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)],
    )
    resized = [dense.resize_to_scale(image, scale) for scale in evaluator.scales]
    grids = [m.shape[1:3] for m in evaluator.score_maps(image)]
    classify(resized[0][:, :size, :size])  # trace once

    def batched_windows() -> np.ndarray:
        per_scale = []
        for x, (rows, cols) in zip(resized, grids):
            corners = [(i * step, j * step) for i in range(rows) for j in range(cols)]
            best = None
            for first in range(0, len(corners), FLAGS.batch):
                windows = tf.stack(
                    [
                        x[0, top : top + size, left : left + size]
                        for top, left in corners[first : first + FLAGS.batch]
                    ]
                )
                probs = tf.reduce_max(classify(windows), axis=0)
                best = probs if best is None else tf.maximum(best, probs)
            per_scale.append(best)
        return (tf.add_n(per_scale) / len(per_scale)).numpy()

    dense_scores = evaluator(image).numpy()[0]  # trace (and for "auto", choose) once
    window_scores = batched_windows()  # warm up
    dense_s = _median_time(lambda: evaluator(image).numpy(), FLAGS.repeats)
    window_s = _median_time(batched_windows, FLAGS.repeats)

    windows = sum(rows * cols for rows, cols in grids)
    dense_flops = sum(_flops(evaluator.logit_map, x.shape) for x in resized)
    window_flops = windows * _flops(lambda x: model(x, training=False), [1, size, size, 3])

    print(runtime.cpu_summary())
    print(
        f"TensorFlow {tf.__version__}, oneDNN {overfeat_tf.ONEDNN_STATUS}, dense XLA "
        f"{evaluator.xla_choice}"
    )
    print(
        f"{info.name}, width {FLAGS.width}, image {image_h}x{image_w}, no flips, "
        f"median of {FLAGS.repeats}"
    )
    print("scale      resized     fine map  windows")
    for scale, x, (rows, cols) in zip(evaluator.scales, resized, grids):
        print(
            f"{scale[0]}x{scale[1]:<6} {x.shape[1]}x{x.shape[2]:<7} {rows}x{cols:<6} "
            f"{rows * cols:>7}"
        )
    print(f"windows of {size} px every {step} px: {windows}")
    print(f"dense:             {dense_s:8.3f} s  {dense_flops / 1e9:9.2f} GFLOP")
    print(f"windows, batch {FLAGS.batch}: {window_s:8.3f} s  {window_flops / 1e9:9.2f} GFLOP")
    print(f"speed-up {window_s / dense_s:.1f}x (FLOP ratio {window_flops / dense_flops:.1f}x)")
    # Zero padding inside the trunk makes dense and windowed scores differ: inside the
    # image, a window's border sees its neighbours' pixels where, cut out, it sees zeros.
    print(f"max |dense - windowed| score: {np.abs(dense_scores - window_scores).max():.2e}")


if __name__ == "__main__":
    app.run(main)
