"""Training OverFeat's box regressor on a trained classifier, as one call: `run(BoxSpec)`.

Localization (OverFeat section 4): the classifier's trunk stays frozen; a regression
head on its offset-pooled maps learns the box relative to every location's window, over
several scales, from the boxes of the training split (`train_regressor.RegressionTask`
in the project's `Trainer`). Detection (OverFeat section 5) trains the regressor the
same way on the detection split at the detector's scales, then the detection classifier
with a background class into `<model_dir>/classifier` (`train_detector`).

The regressor goes to `model_dir` (default `<classifier_dir>/<task>`, where evaluation
looks for it): `regressor.json`, checkpoints, `metrics.json`, TensorBoard summaries; a
second run with the same spec resumes from the last checkpoint. Errors name the field
as `overfeat-train-boxes`' flag (`--field=value`); nothing is written before the spec is
checked against the classifier and the data.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import keras
import numpy as np
import tensorflow as tf

import pipelines
from overfeat_tf import run_dir
from overfeat_tf.detection import box_previews, detector, metrics, train_detector, train_regressor
from overfeat_tf.detection import regressor as regressor_lib
from overfeat_tf.evaluation import dense
from overfeat_tf.training.trainer import TrainConfig, Trainer

TASKS = ("localization", "detection")
# Training and validation splits per task on the embedded data set (and any source with
# the same split names); ImageNet's localization boxes live in its train split.
SPLITS = {
    "localization": ("train", "validation"),
    "detection": ("detection_train", "detection_validation"),
}
# Validation during training reads the tuning split when the data has one (converted
# VOC / ILSVRC DET data, `pipelines.voc`; the embedded set), so the reported split stays
# unseen.
TUNING_SPLIT = "detection_tuning"
# Side of the square training crops: the whole shorter side of the 256 image, so the
# boxes are rarely cut; each crop is then resized to every training scale.
CROP_SIZE = 256
# Validation images drawn with predicted and true boxes to TensorBoard at each epoch end.
PREVIEW_IMAGES = 4


class SpecError(ValueError):
    """A spec that cannot run; the message names the field as `--field=value`."""


@dataclasses.dataclass(frozen=True)
class BoxSpec:
    """One regressor run; field names are `overfeat-train-boxes`' flags.

    `scales` are training scales, shorter sides in pixels (None: `default_scales`);
    `split` / `eval_split` default to the task's (`SPLITS`); `adam_learning_rate` is the
    regressor's fixed Adam rate.
    """

    classifier_dir: str
    task: str = "localization"
    model_dir: str | None = None
    data: str = "embedded"
    data_dir: str | None = None
    split: str | None = None
    eval_split: str | None = None
    scales: tuple[int, ...] | None = None
    per_class: bool = True
    batch_size: int = 32
    epochs: int = 3
    max_steps: int | None = None
    adam_learning_rate: float = 1e-3
    checkpoint_every: int = 200
    seed: int = 0
    deterministic: bool = False


@dataclasses.dataclass(frozen=True)
class BoxResult:
    """Where the regressor went, its scales and final metrics; for detection also the
    background-class classifier's directory and metrics."""

    model_dir: str
    scales: tuple[int, ...]
    metrics: dict[str, Any]
    detector_dir: str | None = None
    detector_metrics: dict[str, Any] | None = None


def default_scales(model: str, task: str) -> list[int]:
    """Localization: the smallest three of the model's dense scales, as shorter sides
    (alexnet: 243, 275, 307, where the embedded set's objects, 45-80 % of the image,
    fill much of the 227 window). Detection: `detector.default_scales`."""
    if task == "detection":
        return list(detector.default_scales(model))
    return [min(scale) for scale in dense.default_scales(model)[:3]]


def _check(spec: BoxSpec) -> None:
    if spec.task not in TASKS:
        raise SpecError(f"--task={spec.task}: one of {', '.join(TASKS)}")
    for field in ("batch_size", "epochs", "max_steps", "checkpoint_every"):
        value = getattr(spec, field)
        if value is not None and value < 1:
            raise SpecError(f"--{field} must be >= 1; received {value}")
    if spec.adam_learning_rate <= 0:
        raise SpecError(f"--adam_learning_rate must be > 0; received {spec.adam_learning_rate}")


def _scales(spec: BoxSpec, model: str, input_size: int) -> list[int]:
    if spec.scales is None:
        return default_scales(model, spec.task)
    if not spec.scales or min(spec.scales) < input_size:
        raise SpecError(
            f"--scales must be >= {input_size} (the native input of {model}); "
            f"received {','.join(map(str, spec.scales))}"
        )
    return list(spec.scales)


def _previews(source: pipelines.Source, split: str, mean, std) -> box_previews.BoxPreviews | None:
    """The first `PREVIEW_IMAGES` images of `split` as evaluation sees them, and their
    true boxes (pixels); None when the split has no image."""
    batches = pipelines.build_dataset(
        source,
        split,
        batch_size=1,
        training=False,
        crop_size=CROP_SIZE,
        mean=mean,
        std=std,
        eval_mode="full",
        with_boxes=True,
    )
    rows = list(metrics.images_with_truth(batches.as_numpy_iterator(), PREVIEW_IMAGES))
    if not rows:
        return None
    return box_previews.BoxPreviews(
        [row[0] for row in rows],
        [row[2] for row in rows],
        np.asarray(mean, np.float32),
        np.asarray(std, np.float32),
    )


def run(spec: BoxSpec) -> BoxResult:
    """Trains (or resumes) the regressor, then for detection the background classifier.

    Raises `SpecError` for a spec that cannot run and `TrainingDiverged` on a
    non-finite loss.
    """
    _check(spec)
    try:
        classifier, config = run_dir.restore_model(spec.classifier_dir)
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        first_line = str(e).splitlines()[0]
        raise SpecError(f"--classifier_dir={spec.classifier_dir}: {first_line}") from e
    try:
        source = pipelines.open_source(spec.data, spec.data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise SpecError(f"--data={spec.data}: {e}") from e
    if not source.has_boxes:
        raise SpecError(f"--data={spec.data} has no boxes")
    split, eval_split = SPLITS[spec.task]
    if spec.task == "detection" and TUNING_SPLIT in getattr(source, "splits", ()):
        eval_split = TUNING_SPLIT
    split, eval_split = spec.split or split, spec.eval_split or eval_split
    try:
        train_examples = source.num_examples(split)
        source.num_examples(eval_split)
    except (ValueError, FileNotFoundError) as e:
        raise SpecError(f"--split={split} / --eval_split={eval_split}: {e}") from e
    if train_examples is None or train_examples < spec.batch_size:
        raise SpecError(
            f"--batch_size={spec.batch_size} exceeds the {train_examples} "
            f"examples of split {split!r}"
        )
    num_classes = config["build_kwargs"]["num_classes"]
    if num_classes != source.num_classes:
        raise SpecError(
            f"--data={spec.data} has {source.num_classes} classes but the "
            f"classifier has {num_classes}"
        )
    scales = _scales(spec, config["name"], config["input_size"])
    model_dir = spec.model_dir or os.path.join(spec.classifier_dir, spec.task)
    reg_config = regressor_lib.RegressorConfig(
        model=config["name"],
        num_classes=num_classes,
        width=config["build_kwargs"].get("width", 1.0),
        per_class=spec.per_class,
        classifier_dir=os.path.abspath(spec.classifier_dir),
        scales=tuple(scales),
        task=spec.task,
    )
    if tf.io.gfile.exists(os.path.join(model_dir, regressor_lib.CONFIG_FILE)):
        previous = regressor_lib.read_config(model_dir)
        if previous != reg_config:  # resuming must rebuild the same head
            raise SpecError(
                f"--model_dir={model_dir} holds a regressor trained with other "
                f"settings ({previous}); use another --model_dir"
            )
    regressor_lib.write_config(model_dir, reg_config)
    keras.utils.set_random_seed(spec.seed)
    regressor = regressor_lib.build_regressor(reg_config)
    common = {
        "batch_size": spec.batch_size,
        "crop_size": CROP_SIZE,
        "mean": config["mean"],
        "std": config["std"],
        "with_boxes": True,
    }

    def train_dataset(epoch: int, skip: int, context: tf.distribute.InputContext):
        dataset = pipelines.build_dataset(
            source,
            split,
            training=True,
            augmentation="overfeat",
            pca_lighting=False,
            seed=spec.seed * 1000 + epoch,
            deterministic=spec.deterministic,
            repeat=True,
            **common,
        )
        return dataset.skip(skip)  # resuming mid-epoch: the epoch's order is seeded

    def eval_dataset(context: tf.distribute.InputContext) -> tf.data.Dataset:
        return pipelines.build_dataset(source, eval_split, training=False, **common)

    train_config = TrainConfig(
        model_dir=model_dir,
        recipe=train_regressor.regression_recipe(
            spec.adam_learning_rate, spec.batch_size, spec.epochs
        ),
        steps_per_epoch=train_examples // spec.batch_size,
        epochs=spec.epochs,
        batch_size=spec.batch_size,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        max_steps=spec.max_steps,
        checkpoint_every=spec.checkpoint_every,
        xla="off",
    )
    previews = _previews(source, eval_split, config["mean"], config["std"])
    task = train_regressor.RegressionTask(classifier, scales, previews)
    trainer = Trainer(train_config, tf.distribute.get_strategy(), lambda: regressor, task=task)
    metrics = trainer.fit(train_dataset, eval_dataset)
    if spec.task != "detection":
        return BoxResult(model_dir, tuple(scales), metrics)
    detector_dir = os.path.join(model_dir, "classifier")
    print("\nDetection classifier (the classes plus background) ...", flush=True)
    found = train_detector.fine_tune_with_background(
        spec.classifier_dir,
        detector_dir,
        source,
        train_detector.BackgroundFineTuning(
            train_split=split,
            validation_split=eval_split,
            seed=spec.seed,
            max_steps=spec.max_steps,
            checkpoint_every=spec.checkpoint_every,
        ),
        previews=None
        if previews is None
        else train_detector.DetectionPreviews(regressor, tuple(scales), previews),
    )
    return BoxResult(model_dir, tuple(scales), metrics, detector_dir, found)
