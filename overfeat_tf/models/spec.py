"""Paper layer tables as data, and the one builder that turns any table into a Keras model.

A table is an `ArchSpec`: the convolutional trunk (up to the last convolution), the last
pooling layer, and the classifier head, whose fully connected layers are valid
convolutions (`fc6` is a 6x6 or 5x5 convolution on the last pooled map, later ones 1x1),
as OverFeat section 3.5 runs them at test time. The built model is a plain chain of
layers, so the same layer objects also run on any larger image (`fully_conv.py`).
"""

from __future__ import annotations

import dataclasses
import math

import keras

from overfeat_tf import layers as of_layers


@dataclasses.dataclass(frozen=True)
class Conv:
    """Convolution + ReLU. `pad` zero pixels on each side; `bias` is the initial bias."""

    name: str
    filters: int
    kernel: int
    stride: int = 1
    pad: int = 0
    groups: int = 1
    bias: float = 0.0


@dataclasses.dataclass(frozen=True)
class Pool:
    """Max pooling, `size` x `size` / `stride`; `ceil` rounds the output size up (Caffe)."""

    name: str
    size: int
    stride: int
    ceil: bool = False


@dataclasses.dataclass(frozen=True)
class Norm:
    """AlexNet's local response normalization (section 3.3)."""

    name: str


@dataclasses.dataclass(frozen=True)
class FC:
    """Fully connected layer as a valid `kernel` x `kernel` convolution.

    `units=None` is the class layer (num_classes, no ReLU); `dropout` puts dropout 0.5
    on this layer's output, so it zeroes the layer's neurons (AlexNet section 4.2,
    OverFeat section 3.1: "dropout in the first two fully-connected layers").
    """

    name: str
    units: int | None
    kernel: int = 1
    dropout: bool = False
    bias: float = 0.0


TrunkLayer = Conv | Pool | Norm


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """One paper table: trunk rows, the last pool, and the classifier rows."""

    trunk: tuple[TrunkLayer, ...]
    last_pool: Pool
    head: tuple[FC, ...]

    @property
    def stride(self) -> int:
        """Pixels between neighbouring cells of the classifier map (coarse, offset 0)."""
        strides = [row.stride for row in self.trunk if not isinstance(row, Norm)]
        return math.prod(strides) * self.last_pool.stride


def scaled(channels: int, width: float, groups: int = 1) -> int:
    """Channel count times `width`, a positive multiple of `groups`."""
    return max(groups, round(channels * width / groups) * groups)


def _initializers(init: str, bias: float):
    if init == "paper":
        # Weights N(0, 0.01) in all three papers (AlexNet section 5, ZFNet section 3,
        # OverFeat section 3.1); biases as each table says.
        return keras.initializers.RandomNormal(0.0, 0.01), keras.initializers.Constant(bias)
    if init == "he":
        # He et al. 2015 with zero biases; assumes unit-variance inputs
        # (`registry.normalization`). The papers' biases of 1 under He weights make
        # activations grow layer by layer and SGD at lr 0.01 diverges in a few steps.
        return keras.initializers.HeNormal(), keras.initializers.Zeros()
    raise ValueError(f"init must be 'paper' or 'he'; received: {init!r}")


def _trunk_layers(row: TrunkLayer, width: float, init: str, grouped_conv: str):
    if isinstance(row, Norm):
        return [of_layers.LocalResponseNormalization(name=row.name)]
    if isinstance(row, Pool):
        if row.ceil:
            return [of_layers.CeilMaxPool2D(row.size, row.stride, name=row.name)]
        return [keras.layers.MaxPooling2D(row.size, row.stride, name=row.name)]
    kernel_init, bias_init = _initializers(init, row.bias)
    if row.pad == 0:
        padding, pad_layers = "valid", []
    elif row.stride == 1 and row.kernel == 2 * row.pad + 1:
        padding, pad_layers = "same", []
    else:
        padding = "valid"
        pad_layers = [keras.layers.ZeroPadding2D(row.pad, name=f"{row.name}_pad")]
    conv_cls = of_layers.GroupedConv2D if row.groups > 1 else keras.layers.Conv2D
    extra = {"implementation": grouped_conv} if row.groups > 1 else {}
    conv = conv_cls(
        scaled(row.filters, width, row.groups),
        row.kernel,
        strides=row.stride,
        padding=padding,
        groups=row.groups,
        activation="relu",
        kernel_initializer=kernel_init,
        bias_initializer=bias_init,
        name=row.name,
        **extra,
    )
    return pad_layers + [conv]


def _head_layers(row: FC, width: float, num_classes: int, dropout: float, init: str):
    is_class_layer = row.units is None
    kernel_init, bias_init = _initializers(init, row.bias)
    layers = [
        of_layers.FullyConnected2D(
            num_classes if is_class_layer else scaled(row.units, width),
            row.kernel,
            activation=None if is_class_layer else "relu",
            kernel_initializer=kernel_init,
            bias_initializer=bias_init,
            name=row.name,
        )
    ]
    if row.dropout and dropout > 0:
        layers.append(keras.layers.Dropout(dropout, name=f"{row.name}_dropout"))
    return layers


def build(
    spec: ArchSpec,
    *,
    name: str,
    input_size: int,
    num_classes: int,
    width: float,
    dropout: float,
    init: str,
    grouped_conv: str,
) -> keras.Model:
    """Builds `spec` as a chain: `[b, input_size, input_size, 3]` -> `[b, num_classes]` logits."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1; received: {num_classes}")
    if width <= 0:
        raise ValueError(f"width must be > 0; received: {width}")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1); received: {dropout}")
    chain = []
    for row in spec.trunk + (spec.last_pool,):
        chain += _trunk_layers(row, width, init, grouped_conv)
    for row in spec.head:
        chain += _head_layers(row, width, num_classes, dropout, init)
    # The head's last map is 1x1 at native size; float32 logits under mixed precision.
    chain.append(keras.layers.Flatten(name="logits", dtype="float32"))

    inputs = keras.Input((input_size, input_size, 3), name="images")
    x = inputs
    for layer in chain:
        x = layer(x)
    return keras.Model(inputs, x, name=name)
