"""AlexNet's towers on separate devices (model parallelism, AlexNet section 3.2).

The paper split the net over two GPUs, one tower each, the towers exchanging activations
only at conv3 and the fully connected layers. `TowerModel` runs the layers of a model
from `build_model` that way: it is the same Keras functional model (same layers, same
variables, same checkpoints), with a `call` that keeps a list of per-tower activations
instead of one tensor, so an activation crosses devices only where a layer needs another
tower's channels:

- conv1 (not grouped: each tower has half the filters over the whole image), the grouped
  conv2, conv4, conv5, their pools and dropout: tower i computes channel slice i on
  `tower_devices[i]` from its own slice.
- conv3, fc6, fc7 (not grouped, after conv1): each tower gathers every tower's slice and
  computes its half of the outputs (the paper's 2048 + 2048 neurons of fc6 and fc7).
- fc8, the class layer: gathered on the first device (one 1000-way layer, Fig. 2).
- LRN: this project's LRN runs across all channels (one tower in Caffe's formulation),
  so each tower borrows `depth_radius` boundary channels (a halo) from its neighbour:
  the output equals the single-device model's. The paper's per-tower LRN needs none.

The weights are split too: each layer's kernel and bias are one variable per tower, the
tower's slice on the tower's device (the class layer's on the first device;
`tower_weights`), so gradients, momenta and updates stay on their tower. Checkpoints and
weight files still hold each kernel whole, so they load both ways between this placement
and the default one (a Trainer checkpoint's optimizer state, one slot per variable,
resumes only under the placement that wrote it).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

from overfeat_tf import layers as of_layers
from overfeat_tf.models import tower_weights

_LOG = logging.getLogger("overfeat_tf")

# Layers that act on each channel slice on its own (spatial or elementwise).
_PER_TOWER = (
    keras.layers.MaxPooling2D,
    keras.layers.ZeroPadding2D,
    keras.layers.Dropout,
    of_layers.CeilMaxPool2D,
)


def missing_devices(devices: Sequence[str]) -> list[str]:
    """The devices of `devices` that this process does not have (logical devices)."""
    names = set()
    for device in tf.config.list_logical_devices():
        spec = tf.DeviceSpec.from_string(device.name)
        names.add((spec.device_type, spec.device_index))
    missing = []
    for device in devices:
        spec = tf.DeviceSpec.from_string(device)
        if (spec.device_type and spec.device_type.upper(), spec.device_index) not in names:
            missing.append(device)
    return missing


def tower_count(model: keras.Model) -> int:
    """The number of towers of a built model: the groups of its grouped convolutions
    (2 for AlexNet); 1 when it has none."""
    groups = {
        layer.groups
        for layer in model.layers
        if isinstance(layer, keras.layers.Conv2D) and layer.groups > 1
    }
    if len(groups) > 1:
        raise ValueError(f"{model.name} mixes convolution groups {sorted(groups)}")
    return groups.pop() if groups else 1


def split_sizes(channels: int, parts: int) -> list[int]:
    """`channels` cut into `parts` slices, the first ones one larger if it does not divide."""
    base, extra = divmod(channels, parts)
    return [base + (i < extra) for i in range(parts)]


def _concat(tensors) -> tf.Tensor:
    return tensors[0] if len(tensors) == 1 else tf.concat(list(tensors), axis=-1)


def on_device(device: str, fn, *tensors: tf.Tensor):
    """`fn(*tensors)` (a tensor or a list of them) on `device`, its gradient on `device` too.

    A `GradientTape` creates gradient ops under the device scope of its `gradient()` call,
    not of the forward op, so without this one tower's backward pass would run on another
    device. `fn` must read no variables (pass their values as tensors).
    """

    @tf.custom_gradient
    def forward(*inputs):
        with tf.device(device), tf.GradientTape() as tape:
            tape.watch(inputs)
            output = fn(*inputs)

        def backward(*grads):
            with tf.device(device):
                upstream = list(grads) if isinstance(output, list) else grads[0]
                return tape.gradient(output, inputs, output_gradients=upstream)

        return output, backward

    with tf.device(device):  # the op that wires the gradient, too
        return forward(*tensors)


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def layer_roles(model: keras.Model) -> list[tuple[keras.layers.Layer, str]]:
    """How each layer of the chain runs on towers, one of:

    "split": tower i computes output slice i from the whole input (conv1, which sees the
      image, and the cross-tower conv3, fc6, fc7: these gather every tower's slice);
    "grouped": tower i computes output slice i from input slice i (conv2, conv4, conv5);
    "gather": on the first device from every slice (the class layer and the final
      flatten);
    "lrn": per tower, with a halo of `depth_radius` channels from the neighbours;
    "local": per tower on its own slice (pools, padding, dropout).
    Raises ValueError for a layer it cannot place.
    """
    chain = _chain(model)
    convs = [layer for layer in chain if isinstance(layer, keras.layers.Conv2D)]
    roles = []
    for layer in chain:
        if isinstance(layer, keras.layers.Conv2D):
            if layer is convs[-1]:
                role = "gather"
            else:
                role = "grouped" if layer.groups > 1 else "split"
        elif isinstance(layer, of_layers.LocalResponseNormalization):
            role = "lrn"
        elif isinstance(layer, _PER_TOWER):
            role = "local"
        elif layer is chain[-1] and isinstance(layer, keras.layers.Flatten):
            role = "gather"
        else:
            raise ValueError(f"No tower placement for layer {layer.name} ({type(layer).__name__})")
        roles.append((layer, role))
    return roles


@keras.saving.register_keras_serializable(package="overfeat_tf")
class TowerModel(keras.Model):
    """A `build_model` chain whose towers run on `tower_devices` (module docstring).

    `[b, s, s, 3]` images -> `[b, num_classes]` logits, equal to the single-device model's
    up to float32 rounding. Construct with `TowerModel.wrap(model, devices)`: `model`'s
    layers, whose kernels and biases become one variable per tower on its device;
    checkpoints and `.keras` weights are those of `model` (whole). `.keras` files store
    `tower_devices`; loading one where those devices are missing returns the plain model
    (default placement) with one warning.
    """

    # Functional's own signature, so Keras serializes the layer graph (`get_config`).
    def __init__(self, inputs, outputs, name=None, **kwargs: Any) -> None:
        tower_devices = kwargs.pop("tower_devices")
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.tower_devices = tuple(tower_devices)
        towers = tower_count(self)
        if towers < 2:
            raise ValueError(f"tower_devices: {self.name} has no towers (grouped convolutions)")
        if len(self.tower_devices) != towers:
            raise ValueError(
                f"tower_devices needs one device per tower ({towers} for {self.name}); "
                f"received: {list(self.tower_devices)}"
            )
        # Role names only: a list holding layers would be tracked as a second path to them.
        self._roles = tuple(role for _, role in layer_roles(self))
        if not missing_devices(self.tower_devices):
            self._place_weights()

    def _place_weights(self) -> None:
        """Each convolution's kernel and bias as one variable per tower, on its device."""
        for layer, role in zip(_chain(self), self._roles):
            if isinstance(layer, keras.layers.Conv2D) and not isinstance(
                layer._kernel, tower_weights.TowerWeight
            ):
                devices = self.tower_devices[:1] if role == "gather" else self.tower_devices
                tower_weights.split_weights(
                    layer, devices, split_sizes(layer.filters, len(devices))
                )

    @classmethod
    def wrap(cls, model: keras.Model, tower_devices: Sequence[str]) -> TowerModel:
        """`model`'s layers and variables, run with one tower per device."""
        return cls(model.input, model.output, name=model.name, tower_devices=tower_devices)

    def call(self, inputs, training=None, mask=None):
        # Before conv1: one tensor, the images (as the Input layer's dtype, as Functional does).
        parts = [tf.cast(tf.convert_to_tensor(inputs), self.inputs[0].dtype)]
        for layer, role in zip(_chain(self), self._roles):
            if role == "lrn":
                parts = self._lrn(layer, parts)
            elif role == "local":
                kwargs = {"training": training} if isinstance(layer, keras.layers.Dropout) else {}
                parts = [
                    on_device(device, lambda x, f=layer, kw=kwargs: f(x, **kw), part)
                    for part, device in zip(parts, self.tower_devices)
                ]
            elif isinstance(layer, keras.layers.Conv2D):
                parts = self._conv(layer, parts, role)
            else:  # the final flatten
                first = self.tower_devices[0]
                parts = [on_device(first, lambda *xs, f=layer: f(_concat(xs)), *parts)]
        return parts[0]

    # A slice read by several towers is copied once per reader on its own device, so the
    # tape sums the readers' gradients there (it would sum them on the outer device).

    def _lrn(self, layer, parts):
        """Per tower, on its slice widened by `depth_radius` channels of each neighbour."""
        radius, last = layer.depth_radius, len(parts) - 1

        def pieces(x, i):  # [own slice, left edge for tower i - 1, right edge for i + 1]
            return (
                [x]
                + ([x[..., :radius]] if i > 0 else [])
                + ([x[..., -radius:]] if i < last else [])
            )

        cut = [
            on_device(device, lambda x, i=i: pieces(x, i), part)
            for i, (part, device) in enumerate(zip(parts, self.tower_devices))
        ]
        outputs = []
        for i, device in enumerate(self.tower_devices):
            left = [cut[i - 1][-1]] if i > 0 else []
            right = [cut[i + 1][1]] if i < last else []
            start, channels = (left[0].shape[-1] if left else 0), parts[i].shape[-1]

            def normalize(*window, start=start, channels=channels):
                return layer(_concat(window))[..., start : start + channels]

            outputs.append(on_device(device, normalize, *left, cut[i][0], *right))
        return outputs

    def _conv(self, layer, parts, role):
        """Output channel slice i on tower i (or all of them on the first device)."""
        dtype = layer.compute_dtype
        devices = self.tower_devices[:1] if role == "gather" else self.tower_devices
        sizes = split_sizes(layer.filters, len(devices))
        weights = [layer.kernel] + ([layer.bias] if layer.use_bias else [])
        # Each tower reads only its own slice, on its own device.
        slices = [
            [p.value for p in w.parts]
            if isinstance(w, tower_weights.TowerWeight)
            else tf.split(w, sizes, axis=-1)
            for w in weights
        ]
        if role == "grouped":
            inputs = [[part] for part in parts]
        elif len(parts) > 1 and len(devices) > 1:  # conv3, fc6, fc7: every tower reads all
            copies = [
                on_device(device, lambda x: [tf.identity(x) for _ in devices], part)
                for part, device in zip(parts, self.tower_devices)
            ]
            inputs = [[c[i] for c in copies] for i in range(len(devices))]
        else:  # conv1 (the images) or the class layer (one reader)
            inputs = [parts] * len(devices)

        def conv(*tensors):
            kernel = tf.cast(tensors[0], dtype)
            bias = tf.cast(tensors[1], dtype) if layer.use_bias else None
            y = of_layers.convolve(
                tf.cast(_concat(tensors[len(weights) :]), dtype),
                kernel,
                strides=layer.strides,
                padding=layer.padding,
                data_format=layer.data_format,
                dilation_rate=layer.dilation_rate,
            )
            if bias is not None:
                y = y + bias
            return layer.activation(y) if layer.activation else y

        return [
            on_device(device, conv, *(s[i] for s in slices), *inputs[i])
            for i, device in enumerate(devices)
        ]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "tower_devices": list(self.tower_devices)}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects=None) -> keras.Model:
        config = dict(config)
        devices = config.pop("tower_devices")
        model = keras.Model.from_config(config, custom_objects=custom_objects)
        return place_towers(model, devices)


def place_towers(model: keras.Model, tower_devices: Sequence[str] | None) -> keras.Model:
    """`model` with its towers on `tower_devices` (a `TowerModel`); `model` itself when
    `tower_devices` is empty, or, with one warning, when this process lacks any of them.

    Raises ValueError when `model` has no towers or `tower_devices` does not give one
    device per tower.
    """
    if not tower_devices:
        return model
    placed = TowerModel.wrap(model, tower_devices)
    missing = missing_devices(tower_devices)
    if missing:
        _LOG.warning(
            "Tower placement %s: this machine has no %s; running %s with default "
            "placement instead (same weights and outputs).",
            list(tower_devices),
            ", ".join(missing),
            model.name,
        )
        return model
    return placed


def default_placement(model: keras.Model) -> keras.Model:
    """A model with `model`'s weights, run without tower placement, its variables
    whole (for export: a SavedModel should not pin devices of the machine that trained
    it). `model` itself when it is not a `TowerModel`."""
    if not isinstance(model, TowerModel):
        return model
    plain = keras.Model.from_config(
        keras.Model(model.input, model.output, name=model.name).get_config()
    )
    for layer in plain.layers:
        layer.set_weights(tower_weights.whole_weights(model.get_layer(layer.name)))
    return plain
