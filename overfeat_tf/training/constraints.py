"""ZFNet's filter renormalisation (ZFNet section 3)."""

from __future__ import annotations

import tensorflow as tf


def renormalize_filters(kernels: list[tf.Variable], max_rms: float) -> None:
    """Rescales each filter (output channel) whose RMS exceeds `max_rms` to `max_rms`.

    A kernel is `[kh, kw, in, out]`; filter j is `kernel[..., j]` and its RMS is
    `sqrt(mean(kernel[..., j] ** 2))`.
    """
    for kernel in kernels:
        rms = tf.sqrt(tf.reduce_mean(tf.square(kernel), axis=[0, 1, 2], keepdims=True))
        kernel.assign(kernel * tf.minimum(1.0, max_rms / tf.maximum(rms, 1e-12)))
