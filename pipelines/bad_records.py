"""Counting of the distinct files skipped because their image bytes are unusable."""

import tensorflow as tf


class BadRecordCounter:
    """Counts distinct skipped files; safe to update from inside `Dataset.map`.

    A file skipped again (the next pass of a repeated split, the next epoch) is not
    counted twice: files are told apart by name, or, for records without one, by a
    fingerprint of their bytes. Backed by a string set on the CPU. Create it outside any
    `strategy.scope()` and pass it to `build_dataset(bad_records=...)`, one counter per
    split; read `value()` at the end of an epoch. Not usable with a tf.data service
    (its state cannot be shipped to the service's workers).
    """

    def __init__(self) -> None:
        with tf.init_scope(), tf.device("/cpu:0"):
            self._seen = tf.lookup.experimental.MutableHashTable(
                tf.string, tf.int64, default_value=0, name="bad_records"
            )

    def add(self, filename: tf.Tensor, encoded: tf.Tensor) -> tf.Operation:
        """Records one skipped file (tf.string scalars: its name, its bytes); returns the op."""
        fingerprint = tf.bitcast(tf.fingerprint(encoded[tf.newaxis])[0], tf.int64)
        key = tf.where(
            filename != "",
            filename,
            tf.strings.join(["<bytes ", tf.strings.as_string(fingerprint), ">"]),
        )
        return self._seen.insert(key[tf.newaxis], tf.ones([1], tf.int64))

    def value(self) -> int:
        """Number of distinct files skipped since the last `reset()`."""
        return int(self._seen.size().numpy())

    def reset(self) -> None:
        """Forgets every file."""
        self._seen.remove(self._seen.export()[0])
