"""Evaluators sharing one shape, and top-k error accumulation (overfeat_tf.evaluation)."""

import os

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import cli, evaluation
from overfeat_tf.evaluation import dense


class _Fixed:
    """An evaluator that returns the probabilities it was given, batch by batch."""

    name = "fixed"
    input_mode = "center"
    description = "fixed"

    def __call__(self, images):
        return images


def test_top_k_errors_count_hits():
    # Labels 0..3; class scores ranked so that label ranks are 1, 2, 6, 1.
    probs = np.array(
        [
            [0.9, 0.1, 0, 0, 0, 0],
            [0.5, 0.4, 0.1, 0, 0, 0],
            [0.3, 0.25, 0.0, 0.15, 0.1, 0.2],
            [0.0, 0.0, 0.0, 0.7, 0.2, 0.1],
        ],
        np.float32,
    )
    labels = np.array([0, 1, 2, 3], np.int32)
    batches = [(probs[:3], labels[:3]), (probs[3:], labels[3:])]
    metrics = evaluation.evaluate(_Fixed(), batches, num_classes=6)
    assert metrics["examples"] == 4
    assert metrics["top1_error"] == pytest.approx(50.0)
    assert metrics["top5_error"] == pytest.approx(25.0)
    # max_examples cuts inside a batch.
    metrics = evaluation.evaluate(_Fixed(), batches, num_classes=6, max_examples=2)
    assert metrics["examples"] == 2
    assert metrics["top1_error"] == pytest.approx(50.0)


def test_no_examples_is_a_user_error():
    with pytest.raises(evaluation.NothingToEvaluate, match="No image to evaluate"):
        evaluation.evaluate(_Fixed(), [], num_classes=3)
    assert issubclass(evaluation.NothingToEvaluate, (cli.UserError, ValueError))


def _model(name="overfeat_fast"):
    tf.keras.utils.set_random_seed(0)
    return overfeat_tf.build_model(name, 5, 0.0625, init="he")


def test_center_and_ten_view_are_softmax_and_its_mean_over_views():
    model = _model()
    size = overfeat_tf.native_input_size("overfeat_fast")
    views = tf.random.stateless_normal([2, 10, size, size, 3], [3, 0])
    center = evaluation.CenterEvaluator(model, xla="off")
    ten_view = evaluation.TenViewEvaluator(model, xla="off")
    per_view = tf.nn.softmax(model(tf.reshape(views, [20, size, size, 3])))
    expected = tf.reduce_mean(tf.reshape(per_view, [2, 10, 5]), axis=1)
    np.testing.assert_allclose(ten_view(views), expected, atol=1e-6)
    np.testing.assert_allclose(center(views[:, 4]), per_view.numpy()[4::10], atol=1e-6)
    assert center(views[:1, 0]).shape == (1, 5)  # any batch size, one trace
    assert center._fn.experimental_get_tracing_count() == 1


def test_all_evaluators_share_one_shape():
    model = _model()
    evaluators = [
        evaluation.CenterEvaluator(model, xla="off"),
        evaluation.TenViewEvaluator(model, xla="off"),
        dense.DenseEvaluator(model, scales=[231], xla="off"),
    ]
    assert [e.input_mode for e in evaluators] == ["center", "ten_view", "full"]
    results = {}
    for e in evaluators:
        assert e.name and e.description
        images = tf.zeros(
            {
                "center": [1, 231, 231, 3],
                "ten_view": [1, 10, 231, 231, 3],
                "full": [1, 256, 300, 3],
            }[e.input_mode]
        )
        results[e.name] = evaluation.evaluate(e, [(images, tf.constant([2]))], num_classes=5)
    table = evaluation.format_table(results, {e.name: e.description for e in evaluators})
    assert [line.split()[0] for line in table.splitlines()[2:]] == ["center", "ten_view", "dense"]
    assert "1 scale, fine stride, flips" in table


class _PredictImagesOnly(tf.Module):
    """A SavedModel with only `predict_images`: uint8 images -> fixed class scores."""

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    def predict_images(self, images):
        scores = tf.one_hot(tf.fill([tf.shape(images)[0]], 1), 3)
        return {"scores": scores, "classes": tf.argmax(scores, axis=-1)}


def test_saved_model_evaluator_falls_back_to_predict_images(tmp_path):
    module = _PredictImagesOnly()
    path = os.path.join(tmp_path, "1")
    tf.saved_model.save(module, path, signatures={"predict_images": module.predict_images})
    evaluator = evaluation.SavedModelEvaluator(path)
    assert evaluator.input_mode == "uint8"
    scores = evaluator(tf.zeros([2, 40, 50, 3], tf.uint8))
    np.testing.assert_array_equal(scores, [[0, 1, 0], [0, 1, 0]])


def test_saved_model_without_a_usable_signature_is_a_clear_error(tmp_path):
    module = tf.Module()
    module.f = tf.function(lambda x: {"y": x}, input_signature=[tf.TensorSpec([None], tf.float32)])
    tf.saved_model.save(module, str(tmp_path), signatures={"other": module.f})
    with pytest.raises(ValueError, match=r"signatures: \['other'\]"):
        evaluation.SavedModelEvaluator(str(tmp_path))


@pytest.mark.slow
def test_saved_model_center_equals_model_center(tmp_path):
    # The export serves the pipeline's own centre-crop transform (STYLE.md item 5), so its
    # scores equal CenterEvaluator's on the pipeline's centre crops.
    import pipelines
    from export import saved_model, signatures

    model = _model()
    info = overfeat_tf.model_info(model)
    config = signatures.ServingConfig(
        class_names=tuple("abcde"), crop_size=info.input_size, mean=info.mean, std=info.std
    )
    paths = saved_model.export_model(model, config, str(tmp_path), model_name="m")
    served = evaluation.SavedModelEvaluator(paths.saved_model_dir)
    assert served.input_mode == "encoded"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (260 + 7 * i, 300 - 5 * i, 3), dtype=np.uint8) for i in range(3)]
    encoded = tf.stack([tf.io.encode_png(image) for image in images])
    crops = tf.stack(
        [
            pipelines.preprocess_for_eval(image, info.input_size, info.mean, info.std)
            for image in images
        ]
    )
    np.testing.assert_allclose(
        served(encoded), evaluation.CenterEvaluator(model, xla="off")(crops), atol=1e-5
    )
