"""Bytes that cross between devices when a model's towers run on separate devices.

Computed from the layer sizes of a built model and the placement rules of
`towers.layer_roles` (the rules `TowerModel` runs), so the figures describe what
`TowerModel` does, per image. Weights never cross: each tower's slices live on its
device (`tower_weights`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import keras

from overfeat_tf.models import towers


@dataclasses.dataclass(frozen=True)
class Exchange:
    """Activation bytes one image sends between devices at one layer.

    `backward` is the gradient of the same tensors, sent back the other way (zero for the
    images, which need no gradient).
    """

    layer: str
    what: str
    forward: int
    backward: int


def _values(shape) -> int:
    """Values per image of a `[batch, ...]` shape."""
    return math.prod(shape[1:])


def activation_exchanges(model: keras.Model, bytes_per_value: int = 4) -> list[Exchange]:
    """Every activation transfer between devices for one image, in layer order.

    `model` is a model from `build_model` (its towers placed or not: the figures are
    those of `towers.TowerModel` on `towers.tower_count(model)` devices).
    """
    count = towers.tower_count(model)
    roles = towers.layer_roles(model)
    rows = []
    for layer, role in roles:
        inputs = _values(layer.input.shape)
        if role == "split" and layer is roles[0][0]:
            # The first convolution sees the whole image on every tower.
            rows.append(
                Exchange(
                    layer.name,
                    "images to the other towers",
                    (count - 1) * inputs * bytes_per_value,
                    0,
                )
            )
        elif role == "split":
            # Every tower gathers the other towers' slices: (count - 1) copies of the input.
            size = (count - 1) * inputs * bytes_per_value
            rows.append(Exchange(layer.name, "every tower's slice to every other", size, size))
        elif role == "gather" and isinstance(layer, keras.layers.Conv2D):
            # The first tower gathers the other slices (all but its own 1/count share).
            channels = layer.input.shape[-1]
            own = towers.split_sizes(channels, count)[0]
            size = (channels - own) * _values(layer.input.shape[:-1]) * bytes_per_value
            rows.append(Exchange(layer.name, "other towers' slices to the first", size, size))
        elif role == "lrn":
            # Up to depth_radius channels each way across each boundary between towers.
            slices = towers.split_sizes(layer.input.shape[-1], count)
            radius = layer.depth_radius
            channels = sum(min(radius, a) + min(radius, b) for a, b in itertools.pairwise(slices))
            size = channels * _values(layer.input.shape[:-1]) * bytes_per_value
            rows.append(Exchange(layer.name, "halo channels to the neighbour towers", size, size))
    return rows
