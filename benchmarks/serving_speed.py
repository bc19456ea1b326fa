r"""Cost of the serving signature around the model: `python benchmarks/serving_speed.py`.

Exports a model (untrained: speed does not depend on the weights) with `export/`, loads
the SavedModel, and times, side by side in one run on the same synthetic JPEGs:

  signature   `serving_default` on JPEG bytes (decode, preprocess, model, softmax, top-k,
              class-name lookup), the loaded SavedModel's function;
  preprocess  the same decode + eval transform alone (`ServingFunctions.preprocess_encoded`);
  head        the signature's body after preprocessing (`ServingFunctions.classify`: model,
              softmax, top-k, names) on the already-preprocessed tensors;
  keras       the Keras model called directly on those tensors: eagerly, through
              `predict_on_batch`, and inside a `tf.function`; the fastest is the baseline.

Two estimates of what the signature adds besides decoding and preprocessing (the
goal: at most 10 %): head / keras - 1, measured directly, and (signature - preprocess) /
keras - 1, end to end but the difference of two larger, noisier times. Reported at
batch 1 from p50 latencies (p99 printed too), and at batch 32 from throughput. Rounds
interleave the paths so that load from other processes hits them alike.

    python benchmarks/serving_speed.py --model=alexnet --width=1.0
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

from absl import app, flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads (see runtime.py)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from export import saved_model, signatures  # noqa: E402

flags.DEFINE_enum("model", "alexnet", list(overfeat_tf.MODEL_NAMES), "Model to export.")
flags.DEFINE_float("width", 1.0, "Channel multiplier of the model.")
flags.DEFINE_integer("num_classes", 1000, "Number of classes.")
flags.DEFINE_integer("batch", 32, "Batch size of the throughput measurement.")
flags.DEFINE_integer("latency_calls", 200, "Batch-1 calls per timed path (p50 / p99).")
flags.DEFINE_integer("throughput_calls", 10, "Batch calls per timed path.")
flags.DEFINE_list("image_size", ["375", "500"], "Height,width of the JPEGs (ImageNet-like).")

FLAGS = flags.FLAGS


def _jpegs(count: int, height: int, width: int) -> list[bytes]:
    """Smooth random images as JPEG bytes (compress like photos, unlike noise)."""
    rng = np.random.default_rng(0)
    small = rng.uniform(0, 255, size=(count, height // 16 + 2, width // 16 + 2, 3))
    images = tf.cast(tf.image.resize(small, [height, width]), tf.uint8)
    return [tf.io.encode_jpeg(image, quality=90).numpy() for image in images]


def _time_rounds(paths: dict[str, Callable[[], object]], calls: int) -> dict[str, np.ndarray]:
    """Seconds per call of each path, calls interleaved path by path; one warm-up each."""
    for fn in paths.values():
        fn()
    times = {name: [] for name in paths}
    for _ in range(calls):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in times.items()}


def _paths(
    functions: signatures.ServingFunctions, serve, model, encoded: list[bytes]
) -> dict[str, Callable[[], object]]:
    image_bytes = tf.constant(encoded)
    preprocess = tf.function(functions.preprocess_encoded)
    head = tf.function(functions.classify)
    compiled_model = tf.function(lambda x: model(x, training=False))
    x = preprocess(image_bytes)
    return {
        "signature": lambda: serve(image_bytes=image_bytes)["scores"].numpy(),
        "preprocess": lambda: preprocess(image_bytes).numpy(),
        "head": lambda: head(x)["scores"].numpy(),
        "keras call": lambda: model(x, training=False).numpy(),
        "keras predict_on_batch": lambda: model.predict_on_batch(x),
        "keras tf.function": lambda: compiled_model(x).numpy(),
    }


def _report(seconds: dict[str, float]) -> str:
    keras_s = min(v for k, v in seconds.items() if k.startswith("keras"))
    head = seconds["head"] / keras_s - 1
    end_to_end = (seconds["signature"] - seconds["preprocess"]) / keras_s - 1
    return (
        f"signature overhead (decode and preprocessing excluded) over the fastest Keras "
        f"call ({1e3 * keras_s:.2f} ms): head {100 * head:+.1f} %, "
        f"end to end {100 * end_to_end:+.1f} %"
    )


def main(argv: list[str]) -> None:
    del argv
    height, width = (int(v) for v in FLAGS.image_size)
    model = overfeat_tf.build_model(FLAGS.model, num_classes=FLAGS.num_classes, width=FLAGS.width)
    info = overfeat_tf.model_info(model)
    config = signatures.ServingConfig(
        class_names=tuple(f"class_{i}" for i in range(FLAGS.num_classes)),
        crop_size=info.input_size,
        mean=info.mean,
        std=info.std,
    )
    with tempfile.TemporaryDirectory() as base:
        paths = saved_model.export_model(model, config, base, model_name=FLAGS.model)
        serve = tf.saved_model.load(paths.saved_model_dir).signatures["serving_default"]
        names = signatures.class_name_table(
            os.path.join(paths.saved_model_dir, "assets", saved_model.CLASS_NAMES_ASSET)
        )
        functions = signatures.ServingFunctions(model, names, config)
        encoded = _jpegs(FLAGS.batch, height, width)

        print(
            f"{FLAGS.model} width {FLAGS.width}, {FLAGS.num_classes} classes, "
            f"{height}x{width} JPEGs -> {info.input_size}^2; oneDNN "
            f"{overfeat_tf.ONEDNN_STATUS}; TF {tf.__version__}"
        )
        latency = _time_rounds(_paths(functions, serve, model, encoded[:1]), FLAGS.latency_calls)
        print(f"\nbatch 1 latency, ms ({FLAGS.latency_calls} calls)")
        print(f"{'path':<24}{'p50':>9}{'p99':>9}")
        for name, t in latency.items():
            print(f"{name:<24}{1e3 * np.percentile(t, 50):>9.2f}{1e3 * np.percentile(t, 99):>9.2f}")
        print(_report({k: np.percentile(t, 50) for k, t in latency.items()}))

        throughput = _time_rounds(_paths(functions, serve, model, encoded), FLAGS.throughput_calls)
        print(f"\nbatch {FLAGS.batch} throughput, images/s ({FLAGS.throughput_calls} calls)")
        for name, t in throughput.items():
            print(f"{name:<24}{FLAGS.batch / np.median(t):>9.1f}")
        print(_report({k: np.median(t) for k, t in throughput.items()}))


if __name__ == "__main__":
    app.run(main)
