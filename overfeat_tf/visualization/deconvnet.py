"""ZFNet's deconvnet (Zeiler & Fergus 2013, section 2.1), as autodiff with a custom ReLU rule.

The deconvnet projects one activation down to pixels: zero every other activation of
its layer, then layer by layer unpool to the switch positions the forward max-pools
recorded, rectify, and filter with the transposed (flipped) learned filters. That is
exactly the gradient of the chosen activation with respect to the input, except that
each ReLU passes `max(R, 0)` back instead of `R * [x > 0]` (section 2.1):

- max pooling's gradient routes each value to the argmax of its window: unpooling with
  switches (overlapping windows, AlexNet's 3/2 and ZFNet's ceil-mode pools, add up the
  values that land on one position, as explicit unpooling does);
- a convolution's gradient is the transposed convolution with the same filters;
- the bias does not enter the gradient ("no biases");
- `tf.custom_gradient` replaces the ReLU's rule; `rule="guided"` gives guided
  backpropagation (`max(R, 0) * [x > 0]`), `rule="gradient"` the plain gradient.

Local response normalization is passed through unchanged on the way down: ZFNet does not
invert it, and its Jacobian is close to a per-pixel scaling that the display
normalisation removes anyway. The forward pass still applies it, so the switches are
those of the real network.

The forward pass walks the model's own layer chain (`overfeat_tf.models.layer_names`),
applying each convolution's `convolution_op` to its own kernel and bias variables: no
weights are copied.
"""

from __future__ import annotations

import dataclasses

import keras
import tensorflow as tf

from overfeat_tf import layers as of_layers
from overfeat_tf.models import feature_layer_names

RULES = ("deconvnet", "guided", "gradient")


def _relu_with_rule(rule: str):
    @tf.custom_gradient
    def relu(x):
        def backward(r):
            if rule == "deconvnet":
                return tf.nn.relu(r)
            if rule == "guided":
                return tf.nn.relu(r) * tf.cast(x > 0, r.dtype)
            return r * tf.cast(x > 0, r.dtype)

        return tf.nn.relu(x), backward

    return relu


def _passed_through_backward(layer: keras.layers.Layer):
    """`layer` forward; the returning signal unchanged backward (for LRN)."""

    @tf.custom_gradient
    def apply(x):
        return tf.cast(layer(x), x.dtype), lambda r: r

    return apply


def _is_relu(layer: keras.layers.Layer) -> bool:
    return keras.activations.serialize(layer.activation) == "relu"


def layers_through(model: keras.Model, layer: str) -> list[keras.layers.Layer]:
    """The model's chain from the input up to and including `layer`.

    Raises ValueError naming the valid layers when `layer` is not one of them (the
    final `logits` flatten is not a feature map).
    """
    names = feature_layer_names(model)
    if layer not in names:
        raise ValueError(f"Unknown layer {layer!r} of {model.name}; valid: {', '.join(names)}")
    return [model.get_layer(n) for n in names[: names.index(layer) + 1]]


def forward(
    layers: list[keras.layers.Layer], images: tf.Tensor, rule: str | None = None
) -> tf.Tensor:
    """Runs `layers` (from `layers_through`) on float32 `[b, h, w, 3]` images.

    With `rule` (one of RULES) the ReLUs and LRNs carry the deconvnet's backward rules;
    with None the plain layers run (inference mode), as the model does.
    """
    relu = _relu_with_rule(rule) if rule else tf.nn.relu
    x = tf.cast(images, tf.float32)
    for layer in layers:
        if isinstance(layer, keras.layers.Conv2D) and rule:
            x = layer.convolution_op(x, tf.cast(layer.kernel, tf.float32))
            if layer.use_bias:
                x = x + tf.cast(layer.bias, tf.float32)
            if _is_relu(layer):
                x = relu(x)
        elif isinstance(layer, of_layers.LocalResponseNormalization) and rule:
            x = _passed_through_backward(layer)(x)
        else:
            x = tf.cast(layer(x, training=False), tf.float32)
    return x


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Input pixels seen by one cell of a layer's map.

    Cell (i, j) sees the `size` x `size` square whose top-left input pixel is
    (i * stride + offset, j * stride + offset); offset < 0 where padding reaches
    outside the image.
    """

    size: int
    stride: int
    offset: int

    def window(self, row: int, column: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) input pixels of a cell, bottom/right exclusive."""
        top = row * self.stride + self.offset
        left = column * self.stride + self.offset
        return top, left, top + self.size, left + self.size


def receptive_field(model: keras.Model, layer: str) -> ReceptiveField:
    """The receptive field of `layer`'s cells (convolutions, pools, zero padding).

    Padding "same" is counted as (k - 1) // 2 pixels before, exact for the stride-1
    convolutions the paper models use it for.
    """
    size, stride, offset = 1, 1, 0
    for lay in layers_through(model, layer):
        if isinstance(lay, keras.layers.ZeroPadding2D):
            offset -= lay.padding[0][0] * stride
            continue
        if isinstance(lay, keras.layers.Conv2D):
            kernel, step = lay.kernel_size[0], lay.strides[0]
            pad = (kernel - 1) // 2 if lay.padding == "same" else 0
        elif isinstance(lay, keras.layers.MaxPooling2D):
            kernel, step, pad = lay.pool_size[0], lay.strides[0], 0
        elif isinstance(lay, of_layers.CeilMaxPool2D):
            kernel, step, pad = lay.pool_size, lay.strides, 0  # Ceil mode pads after.
        else:
            continue
        offset -= pad * stride
        size += (kernel - 1) * stride
        stride *= step
    return ReceptiveField(size, stride, offset)


class Deconvnet:
    """Projections of single activations of one layer down to the pixels.

    Example:
        deconv = Deconvnet(model, "conv5")
        projections, positions, values = deconv.project(images, features=[3, 3])

    `images` are model inputs `[b, h, w, 3]` (any size the model runs on); each example
    names its own feature map, and optionally its own position, so top-9 sets and
    several feature maps share batches. Compiled with `tf.function` (one trace per
    input shape).
    """

    def __init__(self, model: keras.Model, layer: str, rule: str = "deconvnet") -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}; received: {rule!r}")
        self.model = model
        self.layer = layer
        self.rule = rule
        self.layers = layers_through(model, layer)
        self.num_features = int(self.layers[-1].output.shape[-1])
        self.receptive_field = receptive_field(model, layer)
        self._activations = tf.function(lambda x: forward(self.layers, x), reduce_retracing=True)
        self._project = tf.function(self._project_batch, reduce_retracing=True)

    def activations(self, images) -> tf.Tensor:
        """The layer's map `[b, h', w', c]` (inference mode)."""
        return self._activations(tf.convert_to_tensor(images, tf.float32))

    def project(self, images, features, positions=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Deconvnet projections of one activation per example.

        Args:
          images: float32 `[b, h, w, 3]` model inputs.
          features: int `[b]` feature map (channel) per example.
          positions: int `[b, 2]` (row, column) in the layer's map per example; None,
            or a row with a negative entry, takes the map's strongest activation.

        Returns:
          (projections float32 `[b, h, w, 3]` in input units, positions int32 `[b, 2]`
          used, activation values float32 `[b]`). An activation of 0 projects to 0.
        """
        images = tf.convert_to_tensor(images, tf.float32)
        features = self.check_features(features)
        if positions is None:
            positions = -tf.ones([tf.shape(images)[0], 2], tf.int32)
        return self._project(images, features, tf.convert_to_tensor(positions, tf.int32))

    def check_features(self, features) -> tf.Tensor:
        """`features` as int32, or ValueError naming the valid range."""
        features = tf.convert_to_tensor(features, tf.int32)
        bad = [int(f) for f in features.numpy() if not 0 <= f < self.num_features]
        if bad:
            raise ValueError(
                f"Feature maps {bad} out of range: {self.layer} has {self.num_features} "
                f"(0..{self.num_features - 1})"
            )
        return features

    def _project_batch(self, images, features, positions):
        with tf.GradientTape() as tape:
            tape.watch(images)
            maps = forward(self.layers, images, self.rule)
            # [b, h', w'] the chosen feature map of each example.
            chosen = tf.gather(tf.transpose(maps, [0, 3, 1, 2]), features, batch_dims=1)
            width = tf.shape(chosen)[2]
            flat = tf.reshape(chosen, [tf.shape(chosen)[0], -1])
            given = positions[:, 0] * width + positions[:, 1]
            strongest = tf.argmax(flat, axis=1, output_type=tf.int32)
            index = tf.where(tf.reduce_any(positions < 0, axis=1), strongest, given)
            values = tf.gather(flat, index, batch_dims=1)
            # d(sum(v * stop(v)))/d(map) is the map with every activation zeroed but the
            # chosen one, which keeps its value: the deconvnet's input (section 2.1).
            objective = tf.reduce_sum(values * tf.stop_gradient(values))
        projections = tape.gradient(objective, images)
        used = tf.stack([index // width, index % width], axis=1)
        return projections, used, values
