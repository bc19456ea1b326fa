"""The pixel statistics a run normalises with: published constants or the data's own.

By default a model sees the published ImageNet constants: the registry's per-channel
means and stds (`models.registry`) and the published RGB eigen-decomposition
(`pipelines.constants`) for AlexNet's PCA lighting. A file from `overfeat-stats`
(`pipelines.stats`, computed on the training split) replaces both, in the model's own
form: mean subtraction for AlexNet and ZFNet (dividing by the data's std only under
"he" initialisation, as `registry.normalization` does), one mean and std over all three
channels for OverFeat.

A run records what it used: `model.json`'s `mean` and `std`, which evaluation, export
and serving read, and `stats`, naming the source; a statistics file is copied into the
run directory (`RUN_FILE`) so that resumed training draws the same PCA lighting.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np
import tensorflow as tf

import pipelines
from overfeat_tf.models import registry

PUBLISHED = "published"  # model.json's `stats` when the published constants were used
RUN_FILE = "input_stats.npz"

Triple = tuple[float, float, float]


@dataclasses.dataclass(frozen=True)
class InputStats:
    """mean, std: what the model sees is (pixel - mean) / std, 0-255 scale, per channel.
    eigval [3], eigvec [3, 3]: RGB covariance on the 0-1 scale (PCA lighting).
    source: `PUBLISHED` or the statistics file's path."""

    mean: Triple
    std: Triple
    eigval: np.ndarray
    eigvec: np.ndarray
    source: str

    @property
    def eigen(self) -> tuple[np.ndarray, np.ndarray]:
        return self.eigval, self.eigvec


def published(name: str, init: str = "paper") -> InputStats:
    """The published ImageNet constants for model `name` built with `init`."""
    mean, std = registry.normalization(name, init)
    return InputStats(
        tuple(mean), tuple(std), pipelines.PCA_EIGVAL, pipelines.PCA_EIGVEC, PUBLISHED
    )


def from_file(name: str, path: str, init: str = "paper") -> InputStats:
    """Model `name`'s normalisation from an `overfeat-stats` file.

    Raises FileNotFoundError (no file) or ValueError (not a statistics file).
    """
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} does not exist (write one with overfeat-stats)")
    try:
        stats = pipelines.load_statistics(path)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise ValueError(f"{path} is not an overfeat-stats file: {e}") from e
    base_mean, base_std = registry.normalization(name, init)
    mean, std = np.asarray(stats.mean_rgb, np.float64), np.asarray(stats.std_rgb, np.float64)
    if len(set(base_mean)) == 1:  # OverFeat: one mean and std over all channels
        overall = mean.mean()
        std = np.full(3, np.sqrt(np.mean(std**2 + mean**2) - overall**2))
        mean = np.full(3, overall)
    elif base_std == (1.0, 1.0, 1.0):  # AlexNet, ZFNet: mean subtraction only
        std = np.ones(3)
    return InputStats(_triple(mean), _triple(std), stats.eigval, stats.eigvec, path)


def resolve(name: str, init: str, path: str | None) -> InputStats:
    """`from_file` when `path` is given, else `published`."""
    return published(name, init) if path is None else from_file(name, path, init)


def record(model_dir: str, stats: InputStats) -> dict[str, Any]:
    """Copies a statistics file into `model_dir`; returns the entries `model.json`
    records for `stats` (mean, std, stats)."""
    entry = PUBLISHED
    if stats.source != PUBLISHED:
        tf.io.gfile.makedirs(model_dir)
        target = os.path.join(model_dir, RUN_FILE)
        if os.path.abspath(stats.source) != os.path.abspath(target):
            tf.io.gfile.copy(stats.source, target, overwrite=True)
        entry = RUN_FILE
    return {"mean": list(stats.mean), "std": list(stats.std), "stats": entry}


def of_run(model_dir: str, config: dict[str, Any]) -> InputStats:
    """The statistics the run at `model_dir` (with `model.json` `config`) recorded;
    runs from before statistics were recorded used the published constants."""
    if config.get("stats", PUBLISHED) == PUBLISHED:
        eigen = (pipelines.PCA_EIGVAL, pipelines.PCA_EIGVEC)
        source = PUBLISHED
    else:
        source = os.path.join(model_dir, config["stats"])
        loaded = pipelines.load_statistics(source)
        eigen = (loaded.eigval, loaded.eigvec)
    return InputStats(_triple(config["mean"]), _triple(config["std"]), *eigen, source)


def override(config: dict[str, Any], path: str) -> dict[str, Any]:
    """A run's `model.json` `config` normalising with the statistics file at `path`
    instead of what it recorded (for runs saved without their statistics)."""
    stats = from_file(config["name"], path, config["build_kwargs"].get("init", "paper"))
    return {**config, "mean": list(stats.mean), "std": list(stats.std), "stats": path}


def _triple(values) -> Triple:
    return tuple(float(v) for v in values)
