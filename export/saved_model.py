"""Writes one export version: a SavedModel for TF Serving and a `.keras` file beside it.

Layout (TF Serving watches `<export_base>/` and loads the integer-named directories):

    <export_base>/<version>/saved_model.pb, variables/
    <export_base>/<version>/assets/class_names.txt         class names, one per line
    <export_base>/<version>/assets.extra/tf_serving_warmup_requests
    <export_base>/<version>/assets.extra/export.json       what was exported (runs, settings)
    <export_base>/<version>.keras                           the Keras model alone

The `.keras` file is the bare classifier (normalised float32 [b, s, s, 3] -> logits),
for Keras users; it sits beside its version directory because its name is not an
integer, so TF Serving ignores it. An ensemble (`export_model_dirs` with several runs)
is one SavedModel averaging its members (`export.signatures`) and has no `.keras` file:
each member's own export has one. A version is written under a temporary (non-integer)
name and renamed when complete, so a watching server never loads a half-written one.
Exporting what the latest version already holds (the same checkpoints and settings, as
`export.json` records) writes nothing and returns that version, so rerunning a finished
training run does not add a duplicate version.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tempfile
import uuid
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from export import boxes as boxes_lib
from export import requests, signatures
from overfeat_tf.evaluation import ensemble
from overfeat_tf.models import towers
from pipelines.constants import MAX_PIXELS

CLASS_NAMES_ASSET = "class_names.txt"
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
SOURCE_FILE = os.path.join("assets.extra", "export.json")
KERAS_SUFFIX = ".keras"


@dataclasses.dataclass(frozen=True)
class ExportPaths:
    """Where `export_model` wrote version `version` (`keras_file` None for an ensemble)."""

    version: int
    saved_model_dir: str
    keras_file: str | None
    existed: bool = False  # True: the latest version already held this export.

    def items(self) -> list[tuple[str, str]]:
        """(label, path) pairs, for binaries to print."""
        pairs = [("SavedModel", self.saved_model_dir), ("Keras file", self.keras_file)]
        return [(label, path) for label, path in pairs if path is not None]


def existing_versions(export_base: str) -> list[int]:
    """Sorted integer version directories under `export_base` (none if it is missing)."""
    if not tf.io.gfile.isdir(export_base):
        return []
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(export_base))
    return sorted(
        int(n)
        for n in names
        if re.fullmatch(r"\d+", n) and tf.io.gfile.isdir(os.path.join(export_base, n))
    )


def next_version(export_base: str) -> int:
    """One more than the highest version under `export_base`; 1 for a new base."""
    return max(existing_versions(export_base), default=0) + 1


def _synthetic_image(height: int, width: int, channels: int) -> np.ndarray:
    """A deterministic uint8 [height, width, channels] gradient image."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(y * 255 // max(height - 1, 1)), (x * 255 // max(width - 1, 1)), ((x + y) % 256)]
    return np.stack(planes[:channels], axis=-1).astype(np.uint8)


def warmup_requests(
    model_name: str, box_signatures: Sequence[str] = ()
) -> list[prediction_log_pb2.PredictionLog]:
    """A few valid requests that make TF Serving trace its kernels before real traffic.

    serving_default at batch 1 (an RGB JPEG) and batch 2 (the JPEG and a grayscale PNG of
    another size), predict_images and dense_classify at batch 1, and each of
    `box_signatures` (`localize`, `detect`: those the export has) at batch 1.
    """
    jpeg = tf.io.encode_jpeg(_synthetic_image(300, 400, 3)).numpy()
    png = tf.io.encode_png(_synthetic_image(180, 150, 1)).numpy()
    bodies = [
        (signatures.SERVING_DEFAULT, {signatures.IMAGE_BYTES: [jpeg]}),
        (signatures.SERVING_DEFAULT, {signatures.IMAGE_BYTES: [jpeg, png]}),
        (signatures.PREDICT_IMAGES, {signatures.IMAGES: _synthetic_image(256, 320, 3)[None]}),
        (signatures.DENSE_CLASSIFY, {signatures.IMAGE_BYTES: [jpeg]}),
    ] + [(name, {signatures.IMAGE_BYTES: [jpeg]}) for name in box_signatures]
    logs = []
    for signature_name, inputs in bodies:
        request = requests.predict_request(
            inputs, model_name=model_name, signature_name=signature_name
        )
        log = prediction_log_pb2.PredictionLog()
        log.predict_log.request.CopyFrom(request)
        logs.append(log)
    return logs


def write_warmup_requests(
    saved_model_dir: str, model_name: str, box_signatures: Sequence[str] = ()
) -> str:
    """Writes `assets.extra/tf_serving_warmup_requests` (TFRecord of PredictionLog)."""
    path = os.path.join(saved_model_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path) as writer:
        for log in warmup_requests(model_name, box_signatures):
            writer.write(log.SerializeToString())
    return path


def _paths(export_base: str, version: int) -> tuple[str, str]:
    """(SavedModel directory, `.keras` file) of `version`."""
    return os.path.join(export_base, str(version)), os.path.join(
        export_base, f"{version}{KERAS_SUFFIX}"
    )


def _latest_with_source(export_base: str, source: dict) -> ExportPaths | None:
    """The latest version, when its `export.json` records `source`; else None."""
    versions = existing_versions(export_base)
    if not versions:
        return None
    saved_model_dir, keras_file = _paths(export_base, versions[-1])
    path = os.path.join(saved_model_dir, SOURCE_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        if json.load(f) != source:
            return None
    return ExportPaths(
        versions[-1],
        saved_model_dir,
        keras_file if tf.io.gfile.exists(keras_file) else None,
        existed=True,
    )


def _box_signatures(boxes: signatures.BoxServing | None) -> list[str]:
    """The box signatures an export has, recorded in its source so that a run which
    gained regressors since its last export is exported again."""
    if boxes is None:
        return []
    return [
        name
        for name, part in (
            (signatures.LOCALIZE, boxes.localizer),
            (signatures.DETECT, boxes.detector),
        )
        if part is not None
    ]


def export_model(
    model: keras.Model | Sequence[keras.Model],
    config: signatures.ServingConfig,
    export_base: str,
    *,
    model_name: str,
    version: int | None = None,
    normalizations: Sequence[ensemble.Normalization] | None = None,
    source: dict | None = None,
    boxes: signatures.BoxServing | None = None,
) -> ExportPaths:
    """Exports `model` as version `version` (default: the next one) of `export_base`.

    Args:
      model: the trained Keras classifier, or the members of an ensemble (no `.keras`).
      config: class names, eval transform arguments and top_k.
      export_base: the directory TF Serving is pointed at (`--model_base_path`).
      model_name: the TF Serving model name written into the warm-up requests.
      version: a positive integer not yet exported.
      normalizations: an ensemble's (mean, std) per member (`signatures.ServingFunctions`).
      source: JSON-able description of what is exported (written to `export.json`);
        with `version` None, a latest version recording the same source is returned
        instead of writing a new one.
      boxes: the `localize` / `detect` signatures' parts (one model only); None: none.

    Raises:
      ValueError: a version below 1. FileExistsError: the version exists already.
    """
    if source is not None and version is None:
        existing = _latest_with_source(export_base, source)
        if existing is not None:
            return existing
    version = next_version(export_base) if version is None else version
    if version < 1:
        raise ValueError(f"version must be a positive integer. Received: version={version}")
    models = signatures.as_models(model)
    final_dir, keras_file = _paths(export_base, version)
    for path in (final_dir, keras_file):
        if tf.io.gfile.exists(path):
            raise FileExistsError(f"Version {version} exists already: {path}")
    tf.io.gfile.makedirs(export_base)
    partial = os.path.join(export_base, f".partial-{version}-{uuid.uuid4().hex}")
    try:
        with tempfile.TemporaryDirectory() as scratch:
            names_file = os.path.join(scratch, CLASS_NAMES_ASSET)
            signatures.write_class_names(names_file, config.class_names)
            archive = signatures.build_archive(models, config, names_file, normalizations, boxes)
            archive.write_out(partial, verbose=False)
        write_warmup_requests(partial, model_name, _box_signatures(boxes))
        if source is not None:
            with tf.io.gfile.GFile(os.path.join(partial, SOURCE_FILE), "w") as f:
                json.dump(source, f, indent=1)
        if len(models) == 1:
            models[0].save(partial + KERAS_SUFFIX)
            tf.io.gfile.rename(partial + KERAS_SUFFIX, keras_file)
        else:
            keras_file = None
        tf.io.gfile.rename(partial, final_dir)
    finally:
        for path in (partial, partial + KERAS_SUFFIX):
            if tf.io.gfile.exists(path):
                if tf.io.gfile.isdir(path):
                    tf.io.gfile.rmtree(path)
                else:
                    tf.io.gfile.remove(path)
    return ExportPaths(version=version, saved_model_dir=final_dir, keras_file=keras_file)


def _absolute(path: str | None) -> str | None:
    """`path` made absolute when local, so that the same checkpoint compares equal."""
    return path if path is None or "://" in path else os.path.abspath(path)


def export_model_dir(
    model_dir: str,
    export_base: str,
    *,
    version: int | None = None,
    top_k: int = 5,
    checkpoint: str | None = None,
    max_pixels: int = MAX_PIXELS,
) -> ExportPaths:
    """Exports a training run's model (`overfeat_tf.run_dir` layout) with its class names.

    Args:
      model_dir: the run's directory (model.json and checkpoints).
      export_base: see `export_model`.
      version: see `export_model`.
      top_k: classes per answer.
      checkpoint: a checkpoint path; None: the latest in `model_dir`.
      max_pixels: the serving signatures refuse larger encoded images
        (`signatures.ServingConfig`).

    Raises:
      FileNotFoundError: no model.json or no checkpoint. See also `export_model`.
    """
    return export_model_dirs(
        [model_dir],
        export_base,
        version=version,
        top_k=top_k,
        checkpoints=[checkpoint],
        max_pixels=max_pixels,
    )


def export_model_dirs(
    model_dirs: Sequence[str],
    export_base: str,
    *,
    version: int | None = None,
    top_k: int = 5,
    checkpoints: Sequence[str | None] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> ExportPaths:
    """Exports the ensemble of several runs (one run: its model) as one SavedModel.

    The members must share classes and input size (`overfeat_tf.evaluation.ensemble`); the
    served scores are the mean of their probabilities in every signature. A single run with
    the regressors of `overfeat-train-boxes` also gets the `localize` and `detect`
    signatures (`export.boxes`).

    Args:
      model_dirs: the runs' directories.
      checkpoints: a checkpoint path (None: the latest) per run; None: all the latest.
      export_base, version, top_k, max_pixels: see `export_model_dir`.

    Raises:
      FileNotFoundError: a run without model.json or checkpoint. ValueError: members
        that disagree (`overfeat_tf.evaluation.ensemble.check_compatible`). See `export_model`.
    """
    checkpoints = list(checkpoints or [None] * len(model_dirs))
    checkpoints = [c or tf.train.latest_checkpoint(d) for d, c in zip(model_dirs, checkpoints)]
    models, configs = ensemble.restore_ensemble(model_dirs, checkpoints)
    # No device pins of the training machine (`towers`) in a SavedModel.
    models = [towers.default_placement(model) for model in models]
    serving = signatures.ServingConfig.from_model_dir_config(
        configs[0], top_k=top_k, max_pixels=max_pixels
    )
    name = configs[0]["name"] if len(models) == 1 else f"{configs[0]['name']}_ensemble"
    boxes = boxes_lib.box_serving(model_dirs[0], models[0]) if len(models) == 1 else None
    return export_model(
        models if len(models) > 1 else models[0],
        serving,
        export_base,
        model_name=name,
        version=version,
        normalizations=[(c["mean"], c["std"]) for c in configs],
        source={
            "checkpoints": [_absolute(c) for c in checkpoints],
            "top_k": top_k,
            "max_pixels": max_pixels,
            "box_signatures": _box_signatures(boxes),
        },
        boxes=boxes,
    )
