"""Branches of the pipeline's functions that are rarely taken, kept out of its start-up.

tf.data instantiates, and runs TensorFlow's graph optimiser over, every function of a
pipeline each time an iterator is made (every epoch, every evaluation), at a cost that
grows with the functions' size; a `tf.cond` branch costs that even if it never runs,
and its dead operations are stepped through on every element. A branch wrapped here is
one call to a function marked not to be inlined, which TensorFlow instantiates and
optimises only when the branch first runs: other image formats than JPEG, bad images,
bad labels.
"""

from collections.abc import Callable
from typing import TypeVar

import tensorflow as tf

T = TypeVar("T")


def rare(branch: Callable[[], T]) -> Callable[[], T]:
    """`branch` (no arguments, a `tf.cond` branch) as a call to a function that is
    neither inlined nor instantiated until it first runs; same outputs."""
    return lambda: tf.function(
        branch, autograph=False, experimental_attributes={"_noinline": True}
    )()
