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

import os

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads, runtime.py)

# isort: split
import keras
import tensorflow as tf
from absl import flags

import pipelines
from overfeat_tf import cli, dense
from overfeat_tf import model_dir as model_dir_lib
from overfeat_tf.cli import FlagError
from overfeat_tf.detection import detector, train_detector, train_regressor
from overfeat_tf.detection import regressor as regressor_lib
from overfeat_tf.training import trainer as trainer_lib

TASKS = ("localization", "detection")
# Training and validation splits per task on the embedded data set (and any source with
# the same split names); ImageNet's localization boxes live in its train split.
SPLITS = {
    "localization": ("train", "validation"),
    "detection": ("detection_train", "detection_validation"),
}
# Validation during training reads the tuning split when the data has one (converted
# VOC / ILSVRC DET data, `pipelines.voc`), so the reported split stays unseen.
TUNING_SPLIT = "detection_tuning"
# Side of the square training crops: the whole shorter side of the 256 image, so the
# boxes are rarely cut; each crop is then resized to every training scale.
CROP_SIZE = 256

FLAGS = flags.FLAGS
flags.DEFINE_enum("task", "localization", list(TASKS), "What the boxes are trained for.")
flags.DEFINE_string("classifier_dir", None, "The trained classifier's run directory.")
flags.DEFINE_string("model_dir", None, "Where the regressor goes (default <classifier_dir>/<task>).")
flags.DEFINE_string(
    "data", "embedded", "Data source with boxes: embedded or tfrecord:DIR."
)
flags.DEFINE_string("data_dir", None, "Where the embedded data set lives.")
flags.DEFINE_string("split", None, "Training split (default: train, detection_train).")
flags.DEFINE_string(
    "eval_split", None,
    "Validation split (default: validation; detection_tuning, else detection_validation)."
)
flags.DEFINE_list(
    "scales", None,
    "Training scales, shorter side in px (default: localization, the smallest three of "
    "the model's dense scales, 243,275,307 for alexnet; detection, the detector's, "
    "272,343,432,545 for alexnet); evaluation uses the same by default.",
)
flags.DEFINE_bool("per_class", True, "One box per class (paper) instead of one shared box.")
flags.DEFINE_integer("batch_size", 32, "Images per step.")
flags.DEFINE_integer("epochs", 3, "Epochs over the training split.")
flags.DEFINE_integer("max_steps", None, "Stop after this many steps in total.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam's learning rate.")
flags.DEFINE_integer("checkpoint_every", 200, "Steps between checkpoints.")
flags.DEFINE_integer("seed", 0, "Seed of initialisation and data order.")
flags.DEFINE_bool(
    "deterministic", False, "Same batches in the same order for a seed (slower input)."
)
flags.DEFINE_bool("onednn", True, "Use oneDNN CPU kernels (read before TensorFlow loads).")


def default_scales(model: str, task: str) -> list[int]:
    """Localization: the smallest three of the model's dense scales, as shorter sides
    (alexnet: 243, 275, 307, where the embedded set's objects, 45-80 % of the image,
    fill much of the 227 window). Detection: `detector.scales_for_objects`."""
    if task == "detection":
        return list(detector.scales_for_objects(overfeat_tf.model_info(model).input_size))
    return [min(scale) for scale in dense.default_scales(model)[:3]]


def _scales(model: str, input_size: int) -> list[int]:
    if FLAGS.scales is None:
        return default_scales(model, FLAGS.task)
    try:
        scales = [int(s) for s in FLAGS.scales]
    except ValueError:
        raise FlagError(f"--scales must be integers (shorter sides); received {FLAGS.scales}")
    if not scales or min(scales) < input_size:
        raise FlagError(f"--scales must be >= {input_size} (the native input of {model}); "
                        f"received {','.join(FLAGS.scales)}")
    return scales


def _check_flags() -> None:
    if FLAGS.classifier_dir is None:
        raise FlagError("--classifier_dir is required (a run of overfeat-train)")
    for flag in ("batch_size", "epochs", "max_steps", "checkpoint_every"):
        value = getattr(FLAGS, flag)
        if value is not None and value < 1:
            raise FlagError(f"--{flag} must be >= 1; received {value}")
    if FLAGS.learning_rate <= 0:
        raise FlagError(f"--learning_rate must be > 0; received {FLAGS.learning_rate}")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    _check_flags()
    try:
        classifier, config = model_dir_lib.restore_model(FLAGS.classifier_dir)
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise FlagError(f"--classifier_dir={FLAGS.classifier_dir}: {str(e).splitlines()[0]}")
    try:
        source = pipelines.open_source(FLAGS.data, FLAGS.data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise FlagError(f"--data={FLAGS.data}: {e}") from e
    if not source.has_boxes:
        raise FlagError(f"--data={FLAGS.data} has no boxes")
    split, eval_split = SPLITS[FLAGS.task]
    if FLAGS.task == "detection" and TUNING_SPLIT in getattr(source, "splits", ()):
        eval_split = TUNING_SPLIT
    split, eval_split = FLAGS.split or split, FLAGS.eval_split or eval_split
    try:
        train_examples = source.num_examples(split)
        source.num_examples(eval_split)
    except (ValueError, FileNotFoundError) as e:
        raise FlagError(f"--split={split} / --eval_split={eval_split}: {e}") from e
    if train_examples is None or train_examples < FLAGS.batch_size:
        raise FlagError(f"--batch_size={FLAGS.batch_size} exceeds the {train_examples} "
                        f"examples of split {split!r}")
    num_classes = config["build_kwargs"]["num_classes"]
    if num_classes != source.num_classes:
        raise FlagError(f"--data={FLAGS.data} has {source.num_classes} classes but the "
                        f"classifier has {num_classes}")
    scales = _scales(config["name"], config["input_size"])
    model_dir = FLAGS.model_dir or os.path.join(FLAGS.classifier_dir, FLAGS.task)
    reg_config = regressor_lib.RegressorConfig(
        model=config["name"],
        num_classes=num_classes,
        width=config["build_kwargs"].get("width", 1.0),
        per_class=FLAGS.per_class,
        classifier_dir=os.path.abspath(FLAGS.classifier_dir),
        scales=tuple(scales),
        task=FLAGS.task,
    )
    if tf.io.gfile.exists(os.path.join(model_dir, regressor_lib.CONFIG_FILE)):
        previous = regressor_lib.read_config(model_dir)
        if previous != reg_config:  # resuming must rebuild the same head
            raise FlagError(f"--model_dir={model_dir} holds a regressor trained with other "
                            f"settings ({previous}); use another --model_dir")
    regressor_lib.write_config(model_dir, reg_config)
    keras.utils.set_random_seed(FLAGS.seed)
    regressor = regressor_lib.build_regressor(reg_config)
    common = {"batch_size": FLAGS.batch_size, "crop_size": CROP_SIZE,
              "mean": config["mean"], "std": config["std"], "with_boxes": True}

    def train_dataset(epoch: int, skip: int) -> tf.data.Dataset:
        dataset = pipelines.build_dataset(
            source, split, training=True, recipe="overfeat", pca_lighting=False,
            seed=FLAGS.seed * 1000 + epoch, deterministic=FLAGS.deterministic, repeat=True,
            **common)
        return dataset.skip(skip)  # resuming mid-epoch: the epoch's order is seeded

    def eval_dataset() -> tf.data.Dataset:
        return pipelines.build_dataset(source, eval_split, training=False, **common)

    trainer = train_regressor.RegressorTrainer(
        train_regressor.RegressorTrainConfig(
            model_dir=model_dir,
            scales=scales,
            steps_per_epoch=train_examples // FLAGS.batch_size,
            epochs=FLAGS.epochs,
            learning_rate=FLAGS.learning_rate,
            max_steps=FLAGS.max_steps,
            checkpoint_every=FLAGS.checkpoint_every,
        ),
        classifier,
        regressor,
    )
    metrics = trainer.fit(train_dataset, eval_dataset)
    print(f"\n{FLAGS.task} regressor ({'per-class' if FLAGS.per_class else 'shared'}, "
          f"scales {','.join(map(str, scales))}): validation mean IoU "
          f"{metrics.get('val_mean_iou', float('nan')):.3f} at the trained locations")
    print(f"Regressor, checkpoints and metrics.json: {model_dir}")
    if FLAGS.task == "detection":
        classifier_dir = os.path.join(model_dir, "classifier")
        print("\nDetection classifier (the classes plus background) ...", flush=True)
        found = train_detector.fine_tune_with_background(
            FLAGS.classifier_dir, classifier_dir, source,
            train_detector.BackgroundFineTuning(
                train_split=split, validation_split=eval_split, seed=FLAGS.seed,
                max_steps=FLAGS.max_steps, checkpoint_every=FLAGS.checkpoint_every))
        print(f"Detection classifier: validation crop top-1 error "
              f"{found.get('val_top1_error', float('nan')):.2f} %, in {classifier_dir}")
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-train-boxes`)."""
    cli.run(main, "overfeat-train-boxes",
            (train_regressor.RegressionDiverged, trainer_lib.TrainingDiverged))


if __name__ == "__main__":
    run()
