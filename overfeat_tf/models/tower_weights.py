"""A layer's kernel and bias held as one variable per tower, each on its tower's device.

AlexNet section 3.2 puts half of each layer's kernels on each GPU. `split_weights`
replaces a built convolution's `kernel` and `bias` by `TowerWeight`s: slices along the
output channels (the last axis), variable i created on `devices[i]` (inside a
distribution strategy's scope too, which would otherwise put every variable on its own
device), so its gradient, its optimizer slots and its update stay there.

Saved files see the whole weights: `tf.train.Checkpoint` stores a `TowerWeight` under
the key of the variable it replaces, as one tensor, and the layer's `.keras` /
`.weights.h5` entries are the whole kernel and bias, so checkpoints and weight files
load both ways between the tower placement and the default one. A layer call outside
`towers.TowerModel` reads the slices back into one tensor.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.trackable import base as trackable


class TowerWeight(trackable.Trackable):
    """One weight as per-device slices along its last axis; reads as the whole tensor."""

    def __init__(self, parts: Sequence[keras.Variable]) -> None:
        self.parts = tuple(parts)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.parts[0].shape[:-1]) + (sum(p.shape[-1] for p in self.parts),)

    @property
    def dtype(self):
        return self.parts[0].dtype

    def value(self) -> tf.Tensor:
        """The whole weight (the slices concatenated)."""
        values = [p.value for p in self.parts]
        return values[0] if len(values) == 1 else tf.concat(values, axis=-1)

    def numpy(self) -> np.ndarray:
        return self.value().numpy()

    def assign(self, value) -> None:
        """Assigns the whole weight, each slice on its device."""
        sizes = [p.shape[-1] for p in self.parts]
        for part, piece in zip(self.parts, tf.split(value, sizes, axis=-1)):
            part.assign(piece)

    def _serialize_to_tensors(self):
        return {trackable.VARIABLE_VALUE_KEY: self.value()}

    def _restore_from_tensors(self, restored_tensors):
        self.assign(restored_tensors[trackable.VARIABLE_VALUE_KEY])
        return tf.no_op()


tf.register_tensor_conversion_function(
    TowerWeight, lambda weight, dtype=None, name=None, as_ref=False: weight.value()
)


@contextlib.contextmanager
def variables_on(device: str):
    """Variables created inside are placed on `device`, also under a strategy's scope."""
    with tf.device(device):
        anchor = tf.constant(0.0)

    def creator(next_creator, **kwargs):
        if tf.distribute.has_strategy():  # the strategy places a colocated variable
            kwargs["colocate_with"] = anchor
        return next_creator(**kwargs)

    with tf.device(device), tf.variable_creator_scope(creator):
        yield


def split_weights(layer: keras.layers.Conv2D, devices: Sequence[str], sizes: Sequence[int]) -> None:
    """Replaces `layer`'s kernel and bias by `TowerWeight`s of `sizes` output channels,
    slice i on `devices[i]`, holding the current values."""
    variables = []
    for attribute in ("_kernel", "bias"):
        whole = getattr(layer, attribute, None)
        if whole is None:
            continue
        parts = []
        pieces = tf.split(tf.convert_to_tensor(whole), list(sizes), axis=-1)
        for i, (device, piece) in enumerate(zip(devices, pieces)):
            with variables_on(device), keras.name_scope(layer.name):
                parts.append(
                    keras.Variable(piece, name=f"{whole.name}_tower{i}", trainable=whole.trainable)
                )
        setattr(layer, attribute, TowerWeight(parts))
        variables += parts
    layer._trainable_variables[:] = variables
    # `.keras` / `.weights.h5` entries: the whole kernel and bias, as the plain layer's.
    layer.save_own_variables = functools.partial(_save_whole, layer)
    layer.load_own_variables = functools.partial(_load_whole, layer)


def whole_weights(layer: keras.layers.Layer) -> list[np.ndarray]:
    """`layer`'s weights as the plain layer holds them (tower slices joined)."""
    if isinstance(getattr(layer, "_kernel", None), TowerWeight):
        return [w.numpy() for w in _towered(layer)]
    return layer.get_weights()


def _towered(layer) -> list[TowerWeight]:
    return [w for w in (layer._kernel, getattr(layer, "bias", None)) if w is not None]


def _save_whole(layer, store) -> None:
    for i, weight in enumerate(_towered(layer)):
        store[str(i)] = weight.numpy()


def _load_whole(layer, store) -> None:
    weights = _towered(layer)
    if len(store.keys()) != len(weights):
        raise ValueError(
            f"Layer {layer.name} expects {len(weights)} weights; the file holds {len(store.keys())}"
        )
    for i, weight in enumerate(weights):
        weight.assign(store[str(i)])
