"""Transfer learning as in ZFNet's Caltech-101/256 and PASCAL experiments (section 5.2).

ZFNet kept the ImageNet-trained layers 1-7 fixed and trained a new softmax classifier
on top for the new classes. `transfer_model` loads a trained run, rebuilds the same
architecture with a new class count, copies the weights of every layer whose shapes
still match (all but the class layer), and freezes the layers up to and including a
named one; training then updates only the layers above it.
"""

from __future__ import annotations

from typing import Any

import keras

from overfeat_tf import run_dir
from overfeat_tf.models import build_model, layer_names, tower_weights


def copy_matching_weights(source: keras.Model, target: keras.Model) -> list[str]:
    """Copies each layer's weights from `source` to the `target` layer of the same name
    when all their shapes agree; returns the names copied, in layer order."""
    copied = []
    source_names = set(layer_names(source))
    for name in layer_names(target):
        if name not in source_names:
            continue
        weights = tower_weights.whole_weights(source.get_layer(name))  # a tower run too
        target_layer = target.get_layer(name)
        shapes = [w.shape for w in target_layer.get_weights()]
        if weights and [w.shape for w in weights] == shapes:
            target_layer.set_weights(weights)
            copied.append(name)
    return copied


def freeze_through(model: keras.Model, layer: str) -> list[str]:
    """Makes `layer` and every layer before it non-trainable; returns their names."""
    names = layer_names(model)
    if layer not in names:
        raise ValueError(f"Unknown layer {layer!r} of {model.name}; valid: {', '.join(names)}")
    frozen = names[: names.index(layer) + 1]
    for name in frozen:
        model.get_layer(name).trainable = False
    return frozen


def transfer_build_kwargs(model_dir: str, num_classes: int) -> tuple[str, dict[str, Any]]:
    """(model name, `build_model` keyword arguments) of the run at `model_dir` with a
    new class count: what the new run's `model.json` records."""
    config = run_dir.read_config(model_dir)
    # Tower placement belongs to the source run's devices, not to the architecture.
    kwargs = {k: v for k, v in config["build_kwargs"].items() if k != "tower_devices"}
    return config["name"], {**kwargs, "num_classes": num_classes}


def transfer_model(
    model_dir: str,
    num_classes: int,
    freeze_through_layer: str | None = None,
    checkpoint: str | None = None,
) -> keras.Model:
    """The trained model of `model_dir` with a new `num_classes` class layer.

    Every layer but the class layer starts from the trained weights; the class layer
    is freshly initialised. With `freeze_through_layer` (e.g. "fc7" as in ZFNet, or
    "pool5" to retrain the whole classifier), that layer and all below it are frozen.
    Call it inside `strategy.scope()` (a `Trainer` model_fn does).
    """
    source, _ = run_dir.restore_model(model_dir, checkpoint)
    name, build_kwargs = transfer_build_kwargs(model_dir, num_classes)
    target = build_model(name, **build_kwargs)
    copy_matching_weights(source, target)
    if freeze_through_layer is not None:
        freeze_through(target, freeze_through_layer)
    return target
