r"""AlexNet training images/s: its towers on two devices versus one device versus mirrored.

Three placements of the same training step (`benchmarks.training_timer`, in-memory
batch), timed side by side in one run on two logical CPU devices (two GPUs where there
are two):

- one device: the whole model on the first device;
- towers: the paper's model parallelism (`build_model(..., tower_devices=...)`), one
  replica, each tower on its device;
- mirrored: MirroredStrategy over both devices (data parallelism, half the batch each).

On a CPU the two logical devices share the same cores, so the ratios show each
placement's overhead (copies, extra ops, scheduling), not a speed-up; on two GPUs they
show the speed-up.

    PYTHONPATH=. python benchmarks/tower_speed.py --width=0.25 --batch_size=64
"""

from __future__ import annotations

import statistics

# isort: off
import overfeat_tf  # first: turns oneDNN on before TensorFlow loads
from overfeat_tf import flags_common
import tensorflow as tf
from absl import app, flags

from benchmarks.training_timer import (
    training_images_per_second,
    two_cpu_devices_without_gpus,
)
from overfeat_tf import runtime
from overfeat_tf.models import tower_traffic
# isort: on

flags.DEFINE_float("width", 0.25, "Channel multiplier (1.0 is the paper's network).")
flags.DEFINE_integer("batch_size", 64, "Global batch size.")
flags.DEFINE_integer("steps", 4, "Timed steps (one epoch) after a warm-up epoch.")
flags.DEFINE_integer(
    "repeats", 3, "Rounds over the three placements, in turn (the load drifts); medians."
)
flags_common.define_onednn()
FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    del argv
    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    devices = [d.name for d in tf.config.list_logical_devices(kind)][:2]

    def speed(strategy, **build_kwargs):
        return training_images_per_second(
            lambda: overfeat_tf.build_model("alexnet", 1000, FLAGS.width, **build_kwargs),
            strategy,
            input_size=overfeat_tf.native_input_size("alexnet"),
            batch_size=FLAGS.batch_size,
            steps=FLAGS.steps,
        )

    model = overfeat_tf.build_model("alexnet", 1000, FLAGS.width)
    rows = tower_traffic.activation_exchanges(model)
    print(
        f"{runtime.cpu_model()}, oneDNN {overfeat_tf.ONEDNN_STATUS}; AlexNet width "
        f"{FLAGS.width}, global batch {FLAGS.batch_size}, {FLAGS.steps} timed steps; "
        f"devices {', '.join(devices)}\n"
        f"towers: per image {sum(r.forward for r in rows) / 1e3:.1f} kB forward and "
        f"{sum(r.backward for r in rows) / 1e3:.1f} kB backward between devices (images "
        "included); weights stay on their tower's device"
    )
    placements = {
        "one device": lambda: speed(tf.distribute.OneDeviceStrategy(devices[0])),
        "towers": lambda: speed(tf.distribute.OneDeviceStrategy(devices[0]), tower_devices=devices),
        "mirrored": lambda: speed(tf.distribute.MirroredStrategy(devices)),
    }
    runs = {name: [] for name in placements}
    for _ in range(FLAGS.repeats):
        for name, run in placements.items():
            runs[name].append(run())
    one = statistics.median(runs["one device"])
    print(f"{'placement':<12} {'median img/s':>13} {'vs one device':>14}   all runs")
    for name, values in runs.items():
        median = statistics.median(values)
        every = ", ".join(f"{v:.1f}" for v in values)
        print(f"{name:<12} {median:13.1f} {median / one:14.2f}   {every}", flush=True)


if __name__ == "__main__":
    two_cpu_devices_without_gpus()
    app.run(main)
