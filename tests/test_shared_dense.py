"""Dense evaluations sharing one model's score maps equal separate dense evaluations
(OverFeat section 3.3: a coarse view is the fine map's offset (0, 0))."""

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import evaluation
from overfeat_tf.evaluation import dense
from overfeat_tf.experiments import shared_dense


@pytest.mark.parametrize("name", ["overfeat_accurate", "alexnet"])
def test_shared_views_equal_separate_dense_evaluations(name):
    tf.keras.utils.set_random_seed(0)
    model = overfeat_tf.build_model(name, 4, 0.0625, init="he")
    every = dense.default_scales(model)[:3]
    rows = {  # (scales, fine_stride, flips)
        "one_coarse": (every[:1], False, True),
        "one_fine": (every[:1], True, True),
        "two_fine_no_flips": (every[1:3], True, False),
        "three_coarse": (every, False, True),
    }
    shared = shared_dense.SharedDenseViews(model, every, flips=True, xla="off")
    evaluators = {
        key: shared.evaluation(s, fine, flips, key) for key, (s, fine, flips) in rows.items()
    }
    # An image whose scaled width is not a whole number of coarse cells past the first,
    # so that a flipped view's coarse cells are not the mirrored fine map's.
    images = tf.random.stateless_normal([2, 251, 307, 3], [3, 0])
    for key, (scales, fine, flips) in rows.items():
        alone = dense.DenseEvaluator(model, scales, fine_stride=fine, flips=flips, xla="off")
        np.testing.assert_allclose(
            evaluators[key](images), alone(images), rtol=1e-4, atol=1e-5, err_msg=key
        )


def test_evaluate_many_reads_each_batch_once_for_all():
    calls = []

    class Fixed:
        name, input_mode, description = "fixed", "center", ""

        def __init__(self, probs):
            self.probs = tf.constant(probs, tf.float32)

        def __call__(self, images):
            calls.append(images)
            return tf.repeat(self.probs[None], tf.shape(images)[0], axis=0)

    batches = [(tf.zeros([2, 1]), tf.constant([0, 1])), (tf.zeros([2, 1]), tf.constant([1, 1]))]
    got = evaluation.evaluate_many(
        {"right": Fixed([0.1, 0.9]), "wrong": Fixed([0.9, 0.1])}, batches, num_classes=2
    )
    assert got["right"][evaluation.TOP1] == 25.0 and got["wrong"][evaluation.TOP1] == 75.0
    assert got["right"]["examples"] == 4
    assert calls[0] is calls[1] and calls[2] is calls[3]  # the same tensor for both
    assert got["right"] == {
        **evaluation.evaluate(Fixed([0.1, 0.9]), batches, num_classes=2),
        "images_per_second": got["right"]["images_per_second"],
    }
