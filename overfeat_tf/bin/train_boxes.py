r"""Trains OverFeat's box regressor on a trained classifier: `overfeat-train-boxes`.

Localization (OverFeat section 4): the classifier's trunk stays frozen; a regression
head on its offset-pooled maps learns the box relative to every location's window, over
several scales, from the boxes of the training split. After `overfeat-train`:

    overfeat-train-boxes --task=localization --classifier_dir=runs/alexnet
    overfeat-evaluate --model_dir=runs/alexnet --modes=localization

The regressor goes to `--model_dir` (default `<classifier_dir>/<task>`, where
`overfeat-evaluate` looks for it): `regressor.json`, checkpoints, `metrics.json`,
TensorBoard summaries. Run the same command again after an interruption: it resumes from
the last checkpoint.

Detection (OverFeat section 5) trains the regressor the same way on the detection split
(several objects per image; each location's target is the box it is centred on, see
`overfeat_tf.detection.targets`), at the detector's scales, then the detection
classifier with a background class into `<model_dir>/classifier`
(`overfeat_tf.detection.train_detector`):

    overfeat-train-boxes --task=detection --classifier_dir=runs/alexnet
    overfeat-evaluate --model_dir=runs/alexnet --modes=detection
"""

from __future__ import annotations

from absl import flags

from overfeat_tf import cli, flags_common
from overfeat_tf.cli import FlagError
from overfeat_tf.detection import box_training
from overfeat_tf.training.trainer import TrainingDiverged

FLAGS = flags.FLAGS
flags.DEFINE_enum(
    "task", "localization", list(box_training.TASKS), "What the boxes are trained for."
)
flags.DEFINE_string("classifier_dir", None, "The trained classifier's run directory.")
flags_common.define_model_dir("Where the regressor goes (default <classifier_dir>/<task>).")
flags_common.define_data(help="Data source with boxes: embedded or tfrecord:DIR.")
flags_common.define_data_dir("Where the embedded data set lives.")
flags_common.define_split(None, "Training split (default: train, detection_train).")
flags.DEFINE_string(
    "eval_split", None, "Validation split (default: validation, detection_validation)."
)
flags.DEFINE_list(
    "scales",
    None,
    "Training scales, shorter side in px (default: localization, the smallest three of "
    "the model's dense scales, 243,275,307 for alexnet; detection, the detector's: "
    "the model's dense scales 1,2,4,6 of OverFeat Table 2, 243,275,371,435 for alexnet); "
    "evaluation uses the same by default.",
)
flags.DEFINE_bool("per_class", True, "One box per class (paper) instead of one shared box.")
flags_common.define_batch_size(32, "Images per step.")
flags.DEFINE_integer("epochs", 3, "Epochs over the training split.")
flags_common.define_max_steps()
# Not overfeat-train's --learning_rate (the initial rate of a paper's SGD recipe): the
# regressor trains with Adam at a fixed rate, so the flag has its own name; the old name
# is kept as an alias.
flags.DEFINE_float("adam_learning_rate", 1e-3, "The regressor's Adam learning rate (fixed).")
flags.DEFINE_alias("learning_rate", "adam_learning_rate")
flags.DEFINE_integer("checkpoint_every", 200, "Steps between checkpoints.")
flags_common.define_seed()
flags.DEFINE_bool(
    "deterministic", False, "Same batches in the same order for a seed (slower input)."
)
flags_common.define_onednn()


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.classifier_dir is None:
        raise FlagError("--classifier_dir is required (a run of overfeat-train)")
    scales = None
    if FLAGS.scales is not None:
        try:
            scales = tuple(int(s) for s in FLAGS.scales)
        except ValueError as e:
            raise FlagError(
                f"--scales must be integers (shorter sides); received {FLAGS.scales}"
            ) from e
    fields = {f: FLAGS[f].value for f in box_training.BoxSpec.__dataclass_fields__}
    result = box_training.run(box_training.BoxSpec(**{**fields, "scales": scales}))
    print(
        f"\n{FLAGS.task} regressor ({'per-class' if FLAGS.per_class else 'shared'}, "
        f"scales {','.join(map(str, result.scales))}): validation mean IoU "
        f"{result.metrics.get('val_mean_iou', float('nan')):.3f} at the trained locations"
    )
    print(f"Regressor, checkpoints and metrics.json: {result.model_dir}")
    if result.detector_dir is not None:
        print(
            f"Detection classifier: validation crop top-1 error "
            f"{result.detector_metrics.get('val_top1_error', float('nan')):.2f} %, in "
            f"{result.detector_dir}"
        )
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-train-boxes`)."""
    cli.run(main, "overfeat-train-boxes", (TrainingDiverged, box_training.SpecError))


if __name__ == "__main__":
    run()
