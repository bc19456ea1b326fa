"""OverFeat as a feature extractor (Sermanet et al. 2013, section 1; ZFNet section 5.2).

The output of any named layer (e.g. `pool5`, the last pooled trunk map; `fc6`, `fc7`)
for batches of images, collected in data-set order with each image's file name and
written as `.npy` arrays that other models (SVMs, logistic regression, ...) train on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf.models import feature_layer_names

FILENAMES_FILE = "filenames.txt"
LABELS_FILE = "labels.npy"


def feature_model(model: keras.Model, layers: Sequence[str]) -> keras.Model:
    """`[b, s, s, 3]` native-size images -> {layer: its output `[b, ...]`}, sharing the
    model's layers. Raises ValueError naming the valid layers."""
    valid = feature_layer_names(model)
    unknown = [name for name in layers if name not in valid]
    if unknown or not layers:
        raise ValueError(
            f"Unknown layers {unknown or list(layers)} of {model.name}; valid: {', '.join(valid)}"
        )
    outputs = {name: model.get_layer(name).output for name in layers}
    return keras.Model(model.input, outputs, name=f"{model.name}_features")


def layer_shapes(model: keras.Model, layers: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Per-image output shape of each layer at the model's native input size."""
    return {
        name: tuple(model.get_layer(name).output.shape[1:])
        for name in feature_model(model, layers).output
    }


def extract(
    model: keras.Model,
    dataset: Iterable[dict[str, tf.Tensor]],
    layers: Sequence[str],
    num_examples: int | None = None,
    verbose: bool = True,
) -> tuple[dict[str, np.ndarray], list[str], np.ndarray | None]:
    """Runs the model over batches and keeps the named layers' outputs.

    Args:
      dataset: batches {"image": float32 `[b, s, s, 3]` model inputs, "filename":
        string `[b]`, optionally "label": int `[b]`}.
      layers: layer names (`overfeat_tf.models.layer_names`).
      num_examples: for the progress bar (None: unknown length).

    Returns:
      ({layer: float32 `[n, ...]`}, the n file names, int32 labels `[n]` or None).
    """
    extractor = feature_model(model, layers)
    run = tf.function(lambda images: extractor(images, training=False), reduce_retracing=True)
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in layers}
    filenames: list[str] = []
    labels: list[np.ndarray] = []
    progress = keras.utils.Progbar(num_examples, unit_name="image", verbose=1 if verbose else 0)
    for batch in dataset:
        for name, value in run(batch["image"]).items():
            outputs[name].append(np.asarray(value, np.float32))
        filenames += [f.decode() for f in batch["filename"].numpy()]
        if "label" in batch:
            labels.append(batch["label"].numpy().astype(np.int32))
        progress.add(len(batch["filename"]))
    if not filenames:
        raise ValueError("The data set yielded no images")
    arrays = {name: np.concatenate(values) for name, values in outputs.items()}
    return arrays, filenames, np.concatenate(labels) if labels else None


def write(
    output_dir: str,
    features: dict[str, np.ndarray],
    filenames: Sequence[str],
    labels: np.ndarray | None = None,
) -> list[str]:
    """Writes `<layer>.npy` per layer, `filenames.txt` (row i names row i of every array)
    and `labels.npy` when labels are given. Returns the paths."""
    tf.io.gfile.makedirs(output_dir)
    arrays = {f"{name}.npy": value for name, value in features.items()}
    if labels is not None:
        arrays[LABELS_FILE] = labels
    paths = []
    for file_name, value in arrays.items():
        path = os.path.join(output_dir, file_name)
        with tf.io.gfile.GFile(path, "wb") as f:
            np.save(f, value)
        paths.append(path)
    path = os.path.join(output_dir, FILENAMES_FILE)
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(f"{name}\n" for name in filenames))
    return paths + [path]
