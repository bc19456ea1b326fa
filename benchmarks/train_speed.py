r"""Training images/s of each model: one device versus MirroredStrategy on two.

Runs the project's training loop (`benchmarks.training_timer`) on an in-memory batch
(no input pipeline cost), for every model at one width and global batch, first on one
device and then under MirroredStrategy over two logical CPU devices (two GPUs where
there are GPUs), all in one run. Each figure is the second epoch's images/s (the first
traces and compiles). On a CPU the two logical devices share the
same cores, so the mirrored figure shows the strategy's overhead, not a speed-up.

    PYTHONPATH=. python benchmarks/train_speed.py --width=0.25 --batch_size=64
"""

from __future__ import annotations

from absl import app, flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads
from overfeat_tf import flags_common
from overfeat_tf.training import strategies

import tensorflow as tf  # noqa: E402

from benchmarks.training_timer import (
    training_images_per_second,
    two_cpu_devices_without_gpus,
)

flags.DEFINE_list("models", list(overfeat_tf.MODEL_NAMES), "Models to time.")
flags.DEFINE_float("width", 0.25, "Channel multiplier (1.0 is the paper's network).")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_integer("steps", 4, "Timed steps (one epoch) after a warm-up epoch.")
flags.DEFINE_enum("xla", "off", ["auto", "on", "off"], "XLA for the training step.")
flags_common.define_onednn()
FLAGS = flags.FLAGS


def images_per_second(model_name: str, strategy: tf.distribute.Strategy) -> float:
    """Steady-state training images/s of `model_name` under `strategy`."""
    return training_images_per_second(
        lambda: overfeat_tf.build_model(model_name, 1000, FLAGS.width),
        strategy,
        input_size=overfeat_tf.native_input_size(model_name),
        batch_size=FLAGS.batch_size,
        steps=FLAGS.steps,
        xla=FLAGS.xla,
    )


def main(argv: list[str]) -> None:
    del argv
    one = strategies.make_strategy("one_device")
    two = strategies.make_strategy("mirrored")
    print(
        f"width {FLAGS.width}, global batch {FLAGS.batch_size}, XLA {FLAGS.xla}, "
        f"oneDNN {overfeat_tf.ONEDNN_STATUS}; mirrored over {two.num_replicas_in_sync} devices"
    )
    print(f"{'model':<18} {'one device':>12} {'mirrored':>12} {'ratio':>7}")
    for name in FLAGS.models:
        single = images_per_second(name, one)
        mirrored = images_per_second(name, two)
        print(
            f"{name:<18} {single:10.1f}/s {mirrored:10.1f}/s {mirrored / single:7.2f}", flush=True
        )


if __name__ == "__main__":
    two_cpu_devices_without_gpus()
    app.run(main)
