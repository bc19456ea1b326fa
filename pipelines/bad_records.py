"""Counting of records skipped because their image bytes are unusable."""

import tensorflow as tf


class BadRecordCounter:
    """Counts skipped records; safe to update from inside `Dataset.map`.

    Backed by an int64 `tf.Variable` on the CPU. Create it outside any
    `strategy.scope()` (a distribution strategy would mirror the variable) and pass it
    to `build_dataset(bad_records=...)`; the train binary prints `value()` at the end
    of each epoch and then calls `reset()`. Not usable with a tf.data service
    (variables cannot be shipped to its workers).
    """

    def __init__(self) -> None:
        with tf.init_scope(), tf.device("/cpu:0"):
            self._count = tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_records")

    def add(self, n: tf.Tensor) -> tf.Operation:
        """Adds `n` (an integer scalar tensor) to the count; returns the update op."""
        return self._count.assign_add(tf.cast(n, tf.int64))

    def value(self) -> int:
        """Number of records skipped since the last `reset()`."""
        return int(self._count.numpy())

    def reset(self) -> None:
        """Sets the count back to zero."""
        self._count.assign(0)
