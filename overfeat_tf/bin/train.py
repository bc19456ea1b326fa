r"""Trains a paper model: `overfeat-train` / `python -m overfeat_tf.bin.train`.

The project's main job generates the embedded data set if absent, trains a 1/8-width
AlexNet on it with the `quick` recipe for small data sets, evaluates on its validation
split, exports a SavedModel and a `.keras` file, and prints where everything went:

    overfeat-train --recipe=quick --width=0.125

On ImageNet TFRecords with the paper's recipe, over every local GPU:

    overfeat-train --model=alexnet --data=tfrecord:/data/imagenet \
        --model_dir=runs/alexnet --steps_per_epoch=10009

Run the same command again after an interruption: it resumes from the last checkpoint.
"""

from __future__ import annotations

import os

from absl import flags

from overfeat_tf import cli
from overfeat_tf.bin import train_flags
from overfeat_tf.cli import FlagError
from overfeat_tf.training import launch
from overfeat_tf.training.trainer import NoUsableData, TrainingDiverged

FLAGS = flags.FLAGS


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    spec = train_flags.spec_from_flags()
    result = launch.run(spec)
    if not result.is_chief:
        return 0
    metrics = result.metrics
    print(
        f"\n{result.model_name} (width {result.width}) on {spec.data}: validation top-1 error "
        f"{metrics.get('val_top1_error', float('nan')):.2f} %, top-5 error "
        f"{metrics.get('val_top5_error', float('nan')):.2f} %"
    )
    print(f"Checkpoints and metrics.json: {result.model_dir}")
    print(f"TensorBoard:                  tensorboard --logdir {result.model_dir}")
    if FLAGS.export:
        from export import export_model_dir

        export_base = FLAGS.export_base or os.path.join(result.model_dir, "export")
        paths = export_model_dir(result.model_dir, export_base)
        if paths.existed:
            print(f"Export version {paths.version} already holds this checkpoint; nothing written.")
        for kind, path in paths.items():
            print(f"{kind + ':':<30}{path}")
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-train`)."""
    train_flags.define_flags()
    cli.run(main, "overfeat-train", (TrainingDiverged, NoUsableData, launch.SpecError))


if __name__ == "__main__":
    run()
