"""Dense evaluations of one model that share its score maps (OverFeat section 3.3).

The rows of OverFeat's Table 2 evaluate one model at subsets of the same six scales,
with the fine or the coarse stride: every such evaluation is a mean, over its views
(scale, flipped), of each view's spatial maximum of the class probabilities. One dense
pass at the union of the scales, fine stride, gives every view's map once; a coarse view
is the fine map's offset (0, 0) cells, `map[:, ::s, ::s]` (in the flipped image's own
columns for a flipped view: the maximum does not depend on the mirroring). The maps of
the last images are kept, so that evaluators called in turn on the same batch
(`evaluation.evaluate_many`) compute them once.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import tensorflow as tf

from overfeat_tf.evaluation import dense

Scale = dense.Scale


class SharedDenseViews:
    """The score maps of one model at the union of several evaluations' scales.

    Args:
      model: a model from `build_model`.
      scales: every scale any evaluation uses; flips: whether any uses flips.
      xla: the dense evaluator's XLA mode.
    """

    def __init__(self, model: keras.Model, scales: Sequence[Scale], flips: bool, xla: str = "auto"):
        self.evaluator = dense.DenseEvaluator(
            model, list(dict.fromkeys(scales)), fine_stride=True, flips=flips, xla=xla
        )
        self._images: tf.Tensor | None = None
        self._maxima: dict[tuple[dense.View, bool], tf.Tensor] = {}

    def maxima(self, images: tf.Tensor, view: dense.View, fine: bool) -> tf.Tensor:
        """Spatial maximum [b, num_classes] of `view`'s probabilities on `images`."""
        if images is not self._images:
            self._images, self._maxima = images, {}
            maps = self.evaluator.score_maps(images)
            step = self.evaluator.offsets
            for (scale, flipped), probs in zip(self.evaluator.views, maps):
                own = tf.reverse(probs, axis=[2]) if flipped else probs
                self._maxima[(scale, flipped), True] = tf.reduce_max(probs, axis=[1, 2])
                self._maxima[(scale, flipped), False] = tf.reduce_max(
                    own[:, ::step, ::step], axis=[1, 2]
                )
        return self._maxima[view, fine]

    def evaluation(
        self, scales: Sequence[Scale], fine_stride: bool, flips: bool, description: str
    ) -> SharedView:
        """An `evaluation.Evaluator` of these scales, stride and flips."""
        return SharedView(self, scales, fine_stride, flips, description)


class SharedView:
    """One dense evaluation (mean over its views of their maxima) read from shared maps;
    the `evaluation.Evaluator` interface."""

    name = "dense"
    input_mode = "full"

    def __init__(
        self,
        shared: SharedDenseViews,
        scales: Sequence[Scale],
        fine_stride: bool,
        flips: bool,
        description: str,
    ):
        self._shared, self._fine = shared, fine_stride
        self._views = [
            (tuple(scale), flipped)
            for scale in scales
            for flipped in ((False, True) if flips else (False,))
        ]
        self.description = description

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        maxima = [self._shared.maxima(images, view, self._fine) for view in self._views]
        return tf.add_n(maxima) / len(maxima)
