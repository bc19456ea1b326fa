"""Layers the papers use that Keras does not ship, all serializable.

- `LocalResponseNormalization`: AlexNet section 3.3 (also ZFNet).
- `GroupedConv2D`: AlexNet's two towers, computed as one convolution per channel group
  (`Conv2D(groups=2)` trains 4-6x slower on CPU: benchmarks/model_speed.py).
- `CeilMaxPool2D`: max pooling that rounds the output size up (Caffe's ceil mode, ZFNet).
- `FullyConnected2D`: a fully connected layer written as a convolution (the papers' FC
  layers, so that the network slides over larger images), one matrix multiply where the
  input is a single kernel window.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import tensorflow as tf

_PACKAGE = "overfeat_tf"


class _LoadHint:
    """Adds an entry to the layer's config that says how to load it.

    Keras prints a layer's config when it cannot find the layer's class (the package was
    not imported before `keras.saving.load_model`); this entry turns that error into
    an instruction. `from_config` drops it again.
    """

    KEY, HINT = "to_load", "import overfeat_tf before keras.saving.load_model"

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), self.KEY: self.HINT}

    @classmethod
    def from_config(cls, config: dict[str, Any]):
        return super().from_config({k: v for k, v in config.items() if k != cls.KEY})


@keras.saving.register_keras_serializable(package=_PACKAGE)
class LocalResponseNormalization(_LoadHint, keras.layers.Layer):
    """AlexNet's LRN across channels, NHWC -> NHWC of the same shape.

    b = a / (k + alpha * sum_{|j - i| <= depth_radius} a_j^2) ** beta, with the paper's
    k=2, n=5 (depth_radius=2), alpha=1e-4, beta=0.75 (AlexNet section 3.3). TF's
    `local_response_normalization` is exactly this formula: it does not divide alpha
    by n as Caffe does. Computed in float32 under mixed precision.
    """

    def __init__(
        self,
        depth_radius: int = 2,
        bias: float = 2.0,
        alpha: float = 1e-4,
        beta: float = 0.75,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.depth_radius = depth_radius
        self.bias = bias
        self.alpha = alpha
        self.beta = beta

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        outputs = tf.nn.local_response_normalization(
            tf.cast(inputs, tf.float32),
            depth_radius=self.depth_radius,
            bias=self.bias,
            alpha=self.alpha,
            beta=self.beta,
        )
        return tf.cast(outputs, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "depth_radius": self.depth_radius,
            "bias": self.bias,
            "alpha": self.alpha,
            "beta": self.beta,
        }


@keras.saving.register_keras_serializable(package=_PACKAGE)
class GroupedConv2D(_LoadHint, keras.layers.Conv2D):
    """`Conv2D(groups=g)` computed as g convolutions on channel slices, then concatenated.

    Same variables, shapes and results as `keras.layers.Conv2D(groups=g)` (kernel
    `[kh, kw, in / g, filters]`; output channels `[i * filters / g, (i + 1) * filters / g)`
    see only input group i), so weights load into either. TensorFlow's native grouped
    convolution has no fast CPU kernel; split convolutions train about 6x faster
    (benchmarks/model_speed.py). `implementation="native"` keeps the slow path for benchmarks
    and equivalence tests. Device placement of the towers is `models.towers`' job; a
    `tower_devices` entry in the config of an older `.keras` file is ignored.
    """

    IMPLEMENTATIONS = ("split", "native")

    def __init__(
        self,
        *args: Any,
        implementation: str = "split",
        **kwargs: Any,
    ) -> None:
        kwargs.pop("tower_devices", None)  # older files' configs carry it
        super().__init__(*args, **kwargs)
        if implementation not in self.IMPLEMENTATIONS:
            raise ValueError(
                f"implementation must be one of {self.IMPLEMENTATIONS}; "
                f"received: {implementation!r}"
            )
        self.implementation = implementation

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        if self.groups == 1 or self.implementation == "native":
            return super().convolution_op(inputs, kernel)
        input_groups = tf.split(inputs, self.groups, axis=-1)
        kernel_groups = tf.split(kernel, self.groups, axis=-1)
        outputs = [
            super(GroupedConv2D, self).convolution_op(x, k)
            for x, k in zip(input_groups, kernel_groups)
        ]
        return tf.concat(outputs, axis=-1)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "implementation": self.implementation,
        }


def convolve(
    inputs: tf.Tensor,
    kernel: tf.Tensor,
    *,
    strides: tuple[int, int],
    padding: str,
    dilation_rate: tuple[int, int],
    data_format: str,
) -> tf.Tensor:
    """`keras.ops.conv` (arguments as a Keras `Conv2D` holds them), computed as one matrix
    multiply where it is one: a valid, stride-1, undilated channels-last convolution whose
    kernel `[kh, kw, c, f]` covers the whole input `[b, kh, kw, c]` (static sizes), giving
    `[b, 1, 1, f]`.

    A fully connected layer at the training size is such a convolution (AlexNet's fc6: a
    6x6 kernel on the 6x6 pool5 map); CPU convolution kernels run it and its gradients
    several times slower than the equivalent matrix multiply.
    """
    window = tuple(kernel.shape[:2])
    if (
        data_format == "channels_last"
        and padding == "valid"
        and tuple(inputs.shape[1:3]) == window
        and tuple(strides) == (1, 1)
        and tuple(dilation_rate) == (1, 1)
    ):
        size = window[0] * window[1] * kernel.shape[2]
        outputs = tf.matmul(tf.reshape(inputs, [-1, size]), tf.reshape(kernel, [size, -1]))
        return tf.reshape(outputs, [-1, 1, 1, kernel.shape[3]])
    return keras.ops.conv(
        inputs,
        kernel,
        strides=strides,
        padding=padding,
        data_format=data_format,
        dilation_rate=dilation_rate,
    )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FullyConnected2D(_LoadHint, keras.layers.Conv2D):
    """A fully connected layer as a `Conv2D` (same variables, config and results), so
    that the network runs at any input size: `[b, h, w, c]` -> `[b, h - kh + 1, w - kw +
    1, filters]`. At the training size, where the input is exactly one kernel window, it
    is one matrix multiply (`convolve`)."""

    def convolution_op(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return convolve(
            inputs,
            kernel,
            strides=self.strides,
            padding=self.padding,
            dilation_rate=self.dilation_rate,
            data_format=self.data_format,
        )


def ceil_pool_size(size: int, pool_size: int, strides: int) -> int:
    """Output length of a pool that rounds up (Caffe): ceil((size - k) / s) + 1."""
    return math.ceil((size - pool_size) / strides) + 1


@keras.saving.register_keras_serializable(package=_PACKAGE)
class CeilMaxPool2D(_LoadHint, keras.layers.Layer):
    """Max pooling whose output size rounds up: NHWC -> [b, ceil((h-k)/s)+1, ..., c].

    ZFNet's pools (Caffe ceil mode: 110 -> 55, 26 -> 13, 13 -> 6, ZFNet Fig. 3). The
    bottom/right edge is padded with the lowest value before a valid pool, so a padded
    cell never wins a window that holds a real one.
    """

    def __init__(self, pool_size: int = 3, strides: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pool_size = pool_size
        self.strides = strides

    def _padding(self, size):
        steps = -((size - self.pool_size) // -self.strides)  # ceil division
        return steps * self.strides + self.pool_size - size

    def call(self, inputs: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(inputs)
        pad_h, pad_w = self._padding(shape[1]), self._padding(shape[2])
        padded = tf.pad(
            inputs,
            [[0, 0], [0, pad_h], [0, pad_w], [0, 0]],
            constant_values=inputs.dtype.min,
        )
        return tf.nn.max_pool2d(padded, self.pool_size, self.strides, "VALID")

    def compute_output_shape(self, input_shape):
        def out(n):
            return None if n is None else ceil_pool_size(n, self.pool_size, self.strides)

        batch, height, width, channels = input_shape
        return (batch, out(height), out(width), channels)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}
