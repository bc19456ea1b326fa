"""The on-disk layout of a training run, shared by training, evaluation and export.

`<model_dir>/model.json` records how to rebuild the model (registry name, `build_model`
keyword arguments, class names, the input normalisation it was trained with: read
`mean`/`std` from here, not from the registry, since "he" runs and runs with a data
set's own statistics differ, `input_stats`); `<model_dir>/ckpt-N*` are
`tf.train.CheckpointManager` checkpoints of `tf.train.Checkpoint(model=..., ...)`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import keras
import tensorflow as tf

from overfeat_tf import input_stats
from overfeat_tf.models import build_model, legacy, model_info

CONFIG_FILE = "model.json"


def write_config(
    model_dir: str,
    *,
    name: str,
    build_kwargs: dict[str, Any],
    class_names: list[str],
    data: str | None = None,
    stats: input_stats.InputStats | None = None,
) -> dict[str, Any]:
    """Writes `model.json` (atomically); returns the config it wrote.

    `build_kwargs` are `build_model`'s arguments besides the name (num_classes, width, ...);
    `data` the data source it trains on (a `pipelines.open_source` spec), when known.
    `stats`: the input statistics the run uses (default: the published constants);
    a statistics file is copied into `model_dir` (`input_stats.record`).
    """
    stats = stats or input_stats.published(name, build_kwargs.get("init", "paper"))
    config = {
        "name": name,
        "build_kwargs": dict(build_kwargs),
        "class_names": list(class_names),
        "input_size": model_info(name).input_size,
        **input_stats.record(model_dir, stats),
    }
    if data is not None:
        config["data"] = data
    tf.io.gfile.makedirs(model_dir)
    write_json(os.path.join(model_dir, CONFIG_FILE), config)
    return config


# Build arguments that place the model on devices: a run may resume on other devices.
_PLACEMENT_KWARGS = ("tower_devices",)


def check_compatible(
    model_dir: str,
    *,
    name: str,
    build_kwargs: dict[str, Any],
    class_names: list[str],
    data: str | None = None,
) -> bool:
    """Whether `model_dir` holds no run yet (True) or the same run (False).

    Reads only. Raises ValueError naming the first difference when `model_dir` holds a
    run of another model, other build arguments (width, classes, ...), other class
    names or other data; `data` is compared only when both sides record one.
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        return True
    config = read_config(model_dir)

    def differs(what: str, existing: Any, requested: Any) -> ValueError:
        return ValueError(
            f"{model_dir!r} holds a run with {what} {existing!r}, not {requested!r}; "
            "use another model_dir for a different run"
        )

    if config["name"] != name:
        raise differs("model", config["name"], name)
    existing = {k: v for k, v in config["build_kwargs"].items() if k not in _PLACEMENT_KWARGS}
    requested = {k: v for k, v in build_kwargs.items() if k not in _PLACEMENT_KWARGS}
    for key in sorted(set(existing) | set(requested)):
        if existing.get(key) != requested.get(key):
            raise differs(key, existing.get(key), requested.get(key))
    if list(config["class_names"]) != list(class_names):
        changed = sorted(set(config["class_names"]) ^ set(class_names))[:3]
        raise ValueError(
            f"{model_dir!r} holds a run with other classes ({len(config['class_names'])}, "
            f"not {len(class_names)}; "
            + (f"differing: {changed}" if changed else "another order")
            + "); use another model_dir for a different run"
        )
    if data is not None and config.get("data", data) != data:
        raise differs("data", config["data"], data)
    return False


def remove_partial_checkpoints(model_dir: str) -> list[str]:
    """Removes the `<prefix>_temp` folders a checkpoint write leaves when it is killed;
    returns their paths. Call only as the run's one writer (`overfeat_tf.run_lock`)."""
    partial = [
        p for p in tf.io.gfile.glob(os.path.join(model_dir, "*_temp")) if tf.io.gfile.isdir(p)
    ]
    for path in partial:
        tf.io.gfile.rmtree(path)
    return partial


def write_json(path: str, value: Any) -> None:
    """Writes `value` as JSON atomically (a temporary file, then a rename), so an
    interruption never leaves half a file."""
    with tf.io.gfile.GFile(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
    tf.io.gfile.rename(path + ".tmp", path, overwrite=True)


def read_config(model_dir: str) -> dict[str, Any]:
    """The run's `model.json`; a clear error when the directory holds no run."""
    path = os.path.join(model_dir, CONFIG_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{model_dir!r} is not a model dir: {CONFIG_FILE} is missing "
            "(train one with overfeat-train --model_dir=...)"
        )
    with tf.io.gfile.GFile(path) as f:
        return json.load(f)


def build_from_config(config: dict[str, Any]) -> keras.Model:
    """A fresh (untrained) model as `model.json` describes it."""
    return build_model(config["name"], **config["build_kwargs"])


def save_model(
    model_dir: str,
    model: keras.Model,
    *,
    build_kwargs: dict[str, Any],
    class_names: list[str],
) -> str:
    """Writes `model` as a run directory (`model.json` + a checkpoint); returns the
    checkpoint path. `build_kwargs` must be the ones `model` was built with.

    For models trained outside `overfeat-train`; the evaluator, exporter and
    visualizations read the directory as they read a training run.
    """
    write_config(model_dir, name=model.name, build_kwargs=build_kwargs, class_names=class_names)
    return tf.train.CheckpointManager(tf.train.Checkpoint(model=model), model_dir, 1).save()


def restore_model(
    model_dir: str, checkpoint: str | None = None
) -> tuple[keras.Model, dict[str, Any]]:
    """The trained model of a run (latest checkpoint unless `checkpoint` names one)."""
    config = read_config(model_dir)
    path = checkpoint or tf.train.latest_checkpoint(model_dir)
    if path is None:
        raise FileNotFoundError(f"No checkpoint in {model_dir!r}")
    model = build_from_config(config)
    target = legacy.checkpoint_view(model, path)  # runs saved before dropout moved
    tf.train.Checkpoint(model=target).restore(
        path
    ).expect_partial().assert_existing_objects_matched()
    return model, config
