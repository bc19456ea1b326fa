"""Fine-tunes a trained classifier into a detection classifier with a background class.

OverFeat section 5: detection training "is similar to classification training but in a
spatial manner", "with the addition of a background task". Here the classification run's
weights start a model with one more class, **background, the last index**
(`num_classes`, so object classes keep their indices and a per-class box regressor
trained on the same classes lines up with them). The class layer keeps the trained
columns of the object classes and gets a fresh background column. Training uses the
crops of `detection_data` (positives around objects, negatives from the background,
drawn on the fly) and the project's `Trainer` (checkpoints, resume, metrics.json).

By default the trunk (through the model's last pool, `ModelInfo.last_pool`: pool5 for
AlexNet, ZFNet and OverFeat fast, pool6 for OverFeat accurate) stays frozen: the detection classifier then
shares its trunk with the classification run exactly, so a box regressor trained on that
trunk (`train_regressor`) serves the detector unchanged, and each step costs only the
classifier's backward pass.

The run directory is an ordinary one (`model.json` lists the data set's class names and
then "background"); `overfeat_tf.detection.detector` reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf import run_dir
from overfeat_tf import transfer
from overfeat_tf.detection import box_previews, detection_data, detector
from overfeat_tf.models import build_model, model_info
from overfeat_tf.training import recipes
from overfeat_tf.training.trainer import ClassificationTask, TrainConfig, Trainer
from pipelines.sources import Source

BACKGROUND_NAME = "background"


@dataclasses.dataclass(frozen=True)
class BackgroundFineTuning:
    """The fine-tuning run (defaults: the embedded data set's documented run).

    Attributes:
      epochs: passes over the training split's images (each draws new crops).
      batch_size: crops per step.
      learning_rate, momentum, weight_decay: SGD with coupled L2 (AlexNet's rule).
      step_epochs, step_factor: multiply the rate by `step_factor` after these epochs.
      freeze_trunk: keep the trunk fixed, through the model's last pool (the registry's
        `ModelInfo.last_pool`); False trains every layer.
      train_split, validation_split: detection splits (several boxes per image).
      sampling: how crops are drawn (`detection_data.CropSampling`).
      seed: initialisation of the background column and the crops.
      max_steps: stop after this many steps in total.
      checkpoint_every: steps between checkpoints.
      verbose: progress bars and per-epoch lines.
    """

    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    step_epochs: tuple[int, ...] = (4,)
    step_factor: float = 0.1
    freeze_trunk: bool = True
    train_split: str = "detection_train"
    validation_split: str = "detection_validation"
    sampling: detection_data.CropSampling = dataclasses.field(
        default_factory=detection_data.CropSampling
    )
    seed: int = 0
    max_steps: int | None = None
    checkpoint_every: int = 500
    verbose: bool = True


@dataclasses.dataclass(frozen=True)
class DetectionPreviews:
    """What the detection classifier's TensorBoard images show: `previews` with their
    true boxes and the detections of the classifier being trained with `regressor` (its
    trained box head) at `scales` (shorter sides), no flips."""

    regressor: keras.Model
    scales: tuple[int, ...]
    previews: box_previews.BoxPreviews


class _DetectionTask(ClassificationTask):
    """Classification training that draws `DetectionPreviews` at each epoch end."""

    def __init__(self, global_batch_size: int, previews: DetectionPreviews) -> None:
        super().__init__(global_batch_size)
        self._previews = previews
        self._detector: detector.Detector | None = None  # built on the first call

    def epoch_images(self, model: keras.Model) -> np.ndarray:
        if self._detector is None:
            self._detector = detector.Detector(
                model, self._previews.regressor, scales=self._previews.scales
            )
        return self._previews.previews.draw(self._detector)


def add_background_class(
    classifier: keras.Model, build_kwargs: dict[str, Any], name: str
) -> keras.Model:
    """A new `name` model with one more class than `classifier`, the background last.

    Every layer's weights are copied from `classifier`; the class layer keeps its
    trained columns for the object classes and a freshly initialised background column.
    """
    num_classes = build_kwargs["num_classes"]
    target = build_model(name, **{**build_kwargs, "num_classes": num_classes + 1})
    transfer.copy_matching_weights(classifier, target)
    class_layer = model_info(name).spec.head[-1].name
    trained = classifier.get_layer(class_layer).get_weights()
    fresh = target.get_layer(class_layer).get_weights()
    for new, old in zip(fresh, trained):  # kernel [1, 1, c, C + 1], bias [C + 1]
        new[..., :num_classes] = old
    target.get_layer(class_layer).set_weights(fresh)
    return target


def _objects_in(source: Source, split: str) -> tuple[int, int]:
    """(images, objects) of a split, from its records (nothing decoded)."""
    counts = source.records(split).map(lambda r: tf.shape(r["box_labels"])[0])
    objects = np.array(list(counts.as_numpy_iterator()))
    return len(objects), int(objects.sum())


def fine_tune_with_background(
    classifier_dir: str,
    model_dir: str,
    source: Source,
    settings: BackgroundFineTuning | None = None,
    strategy: tf.distribute.Strategy | None = None,
    previews: DetectionPreviews | None = None,
) -> dict[str, Any]:
    """Trains the detection classifier of `classifier_dir` into `model_dir`.

    Args:
      classifier_dir: a classification run (model.json + checkpoints) on `source`'s
        classes.
      model_dir: the detection classifier's run directory (created; an interrupted
        run resumes from its last checkpoint).
      source: a pipelines `Source` with boxes and the settings' splits.
      settings: see `BackgroundFineTuning` (None: its defaults).
      strategy: a `tf.distribute` strategy (default: the default strategy).
      previews: images drawn with detections to TensorBoard's `validation/` run at
        each epoch end (None: none).

    Returns:
      The final metrics (also `<model_dir>/metrics.json`): training loss and crop
      top-1 error, and the same on the validation split's fixed crops (`val_*`).

    Raises:
      ValueError: the classifier's classes differ from the source's, or the source
        has no boxes.
    """
    config = run_dir.read_config(classifier_dir)
    if config["build_kwargs"]["num_classes"] != source.num_classes:
        raise ValueError(
            f"{classifier_dir!r} classifies {config['build_kwargs']['num_classes']} classes; "
            f"the data has {source.num_classes}"
        )
    if not source.has_boxes:
        raise ValueError(f"{type(source).__name__} has no boxes: detection needs them")
    settings = settings or BackgroundFineTuning()
    strategy = strategy or tf.distribute.get_strategy()
    name, build_kwargs = config["name"], config["build_kwargs"]
    keras.utils.set_random_seed(settings.seed)
    detector_kwargs = {**build_kwargs, "num_classes": source.num_classes + 1}
    run_dir.write_config(
        model_dir,
        name=name,
        build_kwargs=detector_kwargs,
        class_names=list(config["class_names"]) + [BACKGROUND_NAME],
    )
    images, objects = _objects_in(source, settings.train_split)
    crops_per_epoch = objects + images * settings.sampling.negatives_per_image
    recipe = recipes.Recipe(
        learning_rate=settings.learning_rate,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
        batch_size=settings.batch_size,
        schedule="step",
        step_epochs=settings.step_epochs,
        step_factor=settings.step_factor,
        init=build_kwargs.get("init", "paper"),
        dropout=build_kwargs.get("dropout", 0.5),
        epochs=settings.epochs,
    )
    train_config = TrainConfig(
        model_dir=model_dir,
        recipe=recipe,
        steps_per_epoch=max(1, crops_per_epoch // settings.batch_size),
        epochs=settings.epochs,
        batch_size=settings.batch_size,
        mean=tuple(config["mean"]),
        std=tuple(config["std"]),
        max_steps=settings.max_steps,
        checkpoint_every=settings.checkpoint_every,
        verbose=settings.verbose,
    )
    crops = {
        "crop_size": config["input_size"],
        "mean": config["mean"],
        "std": config["std"],
        "sampling": settings.sampling,
    }

    def model_fn() -> keras.Model:
        classifier, _ = run_dir.restore_model(classifier_dir)
        model = add_background_class(classifier, build_kwargs, name)
        if settings.freeze_trunk:
            transfer.freeze_through(model, model_info(name).last_pool.name)
        return model

    def train_dataset(epoch: int, skip: int, context: tf.distribute.InputContext):
        return detection_data.crop_dataset(
            source,
            settings.train_split,
            training=True,
            repeat=True,
            input_context=context,
            batch_size=context.get_per_replica_batch_size(settings.batch_size),
            seed=settings.seed * 1000 + epoch,
            **crops,
        ).skip(skip)

    def eval_dataset(context: tf.distribute.InputContext):
        return detection_data.crop_dataset(
            source,
            settings.validation_split,
            training=False,
            input_context=context,
            batch_size=context.get_per_replica_batch_size(settings.batch_size),
            seed=settings.seed,
            **crops,
        )

    task = None if previews is None else _DetectionTask(settings.batch_size, previews)
    trainer = Trainer(train_config, strategy, model_fn, task=task)
    return trainer.fit(train_dataset, eval_dataset)
