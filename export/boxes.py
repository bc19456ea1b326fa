"""The box signatures' parts from a training run: its localization and detection heads.

`overfeat-train-boxes` writes `<model_dir>/localization` (regressor) and
`<model_dir>/detection` (regressor, and the detection classifier in `classifier/`);
`box_serving` turns those it finds into the `localize` and `detect` signatures' localizer
and detector, with the settings `overfeat-evaluate` uses by default (the regressors'
training scales, flips, the default thresholds).
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from export import signatures
from overfeat_tf import run_dir
from overfeat_tf.detection import box_maps, detector, localizer
from overfeat_tf.detection import regressor as regressor_lib
from overfeat_tf.models import towers

LOCALIZATION_DIR = "localization"
DETECTION_DIR = "detection"
DETECTION_CLASSIFIER_DIR = os.path.join(DETECTION_DIR, "classifier")


def _has(directory: str, name: str) -> bool:
    return tf.io.gfile.exists(os.path.join(directory, name))


def box_serving(
    model_dir: str, classifier: keras.Model, max_detections: int = 100
) -> signatures.BoxServing | None:
    """The localizer and detector of the run `model_dir`, where it has them.

    Args:
      model_dir: a classification run; `classifier` is its model, placed for export.
      max_detections: boxes per image `detect` returns at most.

    Returns:
      None when the run has neither a localization regressor nor a complete detection
      run (regressor and classifier).
    """
    found, models = {}, []
    path = os.path.join(model_dir, LOCALIZATION_DIR)
    if _has(path, regressor_lib.CONFIG_FILE):
        head, config = regressor_lib.restore_regressor(path)
        predictor = box_maps.BoxPredictor(classifier, head, list(config.scales) or None)
        found["localizer"] = localizer.Localizer(predictor)
        models.append(head)
    path = os.path.join(model_dir, DETECTION_DIR)
    classifier_dir = os.path.join(model_dir, DETECTION_CLASSIFIER_DIR)
    if _has(path, regressor_lib.CONFIG_FILE) and _has(classifier_dir, run_dir.CONFIG_FILE):
        head, config = regressor_lib.restore_regressor(path)
        model, _ = run_dir.restore_model(classifier_dir)
        model = towers.default_placement(model)
        found["detector"] = detector.Detector(
            model, head, scales=list(config.scales) or None, flips=True
        )
        models += [head, model]
    if not found:
        return None
    return signatures.BoxServing(**found, models=tuple(models), max_detections=max_detections)
