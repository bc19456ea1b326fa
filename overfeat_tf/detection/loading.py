"""Restoring a localizer or detector from the run directories the trainers write.

`overfeat-train` writes the classifier (`<model_dir>`), `overfeat-train-boxes` the
localization regressor (`<model_dir>/localization`), or the detection regressor
(`<model_dir>/detection`) with the background-class classifier
(`<model_dir>/detection/classifier`). Errors name the directory that failed.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from overfeat_tf import run_dir as run_dir_lib
from overfeat_tf.detection import box_maps, detector, localizer
from overfeat_tf.detection import regressor as regressor_lib


class RunError(ValueError):
    """A run directory that cannot be restored, one line.

    Attributes:
      role: "regressor_dir" or "detector_dir" (the loaders' argument names).
      directory: the directory.
    """

    def __init__(self, role: str, directory: str, message: str):
        super().__init__(message)
        self.role, self.directory = role, directory


def _first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def restore_regressor(directory: str) -> tuple[keras.Model, regressor_lib.RegressorConfig]:
    """The regressor of an `overfeat-train-boxes` run and its config."""
    try:
        return regressor_lib.restore_regressor(directory)
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise RunError("regressor_dir", directory, _first_line(e)) from e


def restore_detection_classifier(directory: str) -> keras.Model:
    """The background-class classifier of an `overfeat-train-boxes --task=detection` run."""
    try:
        return run_dir_lib.restore_model(directory)[0]
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise RunError("detector_dir", directory, _first_line(e)) from e


def load_localizer(
    model: keras.Model,
    regressor_dir: str,
    *,
    scales: list[tuple[int, int]] | None = None,
    flips: bool = True,
    **settings,
) -> localizer.Localizer:
    """A `Localizer` of a restored classifier and the regressor in `regressor_dir`, at
    `scales` (default: the regressor's training scales); `settings` go to `Localizer`."""
    regressor, config = restore_regressor(regressor_dir)
    predictor = box_maps.BoxPredictor(model, regressor, scales or list(config.scales), flips)
    return localizer.Localizer(predictor, **settings)


def load_detector(
    detector_dir: str,
    regressor_dir: str,
    *,
    scales: list[tuple[int, int]] | None = None,
    **settings,
) -> detector.Detector:
    """A `Detector` of the background-class classifier in `detector_dir` and the
    detection regressor in `regressor_dir`, at `scales` (default: the regressor's);
    `settings` go to `Detector`."""
    model = restore_detection_classifier(detector_dir)
    regressor, config = restore_regressor(regressor_dir)
    try:
        return detector.Detector(
            model, regressor, scales=scales or list(config.scales) or None, **settings
        )
    except ValueError as e:
        raise RunError("detector_dir", detector_dir, f"with {regressor_dir}: {e}") from e


def default_dirs(model_dir: str, task: str) -> dict[str, str]:
    """Where the trainers put a task's runs: {"regressor_dir"[, "detector_dir"]}."""
    dirs = {"regressor_dir": os.path.join(model_dir, task)}
    if task == "detection":
        dirs["detector_dir"] = os.path.join(model_dir, task, "classifier")
    return dirs
