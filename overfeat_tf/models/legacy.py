"""Checkpoints written while dropout sat on the inputs of the first two FC layers.

Models now drop the outputs of the first two FC layers (AlexNet section 4.2, OverFeat
section 3.1); they used to drop their inputs (pool5 and the first FC layer's output).
Dropout holds no weights and is the identity at inference, so an old run's weights
give the same model; but `tf.train.Checkpoint` keys a Keras model's layers by their
position in the chain, which moved. `checkpoint_view` returns a model to restore an old
checkpoint into: the same layer objects (the same variables) in the old order.
`.keras` files need nothing: they store their layer graph and rebuild it as saved.
"""

from __future__ import annotations

import keras
import tensorflow as tf

_DROPOUT_SUFFIX = "_dropout"


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def old_dropout_order(model: keras.Model) -> keras.Model:
    """A model of `model`'s layers (shared, not copied) with each `<fc>_dropout` layer
    moved before its FC layer `<fc>`: the chain as built before dropout moved."""
    chain = _chain(model)
    names = [layer.name for layer in chain]
    for layer in list(chain):
        if isinstance(layer, keras.layers.Dropout) and layer.name.endswith(_DROPOUT_SUFFIX):
            fc = layer.name[: -len(_DROPOUT_SUFFIX)]
            chain.remove(layer)
            chain.insert(names.index(fc) if fc in names else len(chain), layer)
            names = [item.name for item in chain]
    inputs = keras.Input(model.input.shape[1:])
    x = inputs
    for layer in chain:
        x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def _kernel_positions(model: keras.Model) -> set[int]:
    return {i for i, layer in enumerate(model.layers) if getattr(layer, "kernel", None) is not None}


def _checkpoint_positions(path: str) -> set[int]:
    """Positions of the layers whose kernel the checkpoint at `path` holds (for the
    object saved as `model`)."""
    positions = set()
    for name, _ in tf.train.list_variables(path):
        parts = name.split("/")
        if parts[:2] == ["model", "_operations"] and parts[3:4] == ["_kernel"]:
            positions.add(int(parts[2]))
    return positions


def checkpoint_view(model: keras.Model, path: str | None) -> keras.Model:
    """What to pass as `tf.train.Checkpoint(model=...)` to restore `path` into `model`.

    `model` itself when `path` is None or matches its layout; `old_dropout_order(model)`
    when `path` was written with dropout before the FC layers (its variables are
    `model`'s, so restoring into it restores `model`).
    """
    if path is None or not any(isinstance(layer, keras.layers.Dropout) for layer in model.layers):
        return model
    saved = _checkpoint_positions(path)
    if not saved or _kernel_positions(model) <= saved:
        return model
    old = old_dropout_order(model)
    return old if _kernel_positions(old) <= saved else model
