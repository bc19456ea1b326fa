"""The detector: background-class fine-tuning, and any number of boxes per image."""

import dataclasses
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
import pipelines
from overfeat_tf import run_dir
from overfeat_tf.detection import (
    detection_data,
    detector,
    merge,
    regressor,
    train_detector,
)
from tests.conftest import TINY_MODEL as TINY


def test_default_scales_are_the_papers_four_not_the_datas():
    # OverFeat Table 2's four-scale rows: scales 1, 2, 4, 6 of Table 5 (accurate: 245x245,
    # 281x317, 389x461, 461x569), shorter sides; the same derivation for AlexNet.
    assert detector.default_scales("overfeat_accurate") == (245, 281, 389, 461)
    assert detector.default_scales("alexnet") == (243, 275, 371, 435)


def test_scales_for_objects():
    # 227 * 0.6 / 0.5 = 272.4 and 227 * 0.6 / 0.25 = 544.8, geometric steps of 2 ** (1/3).
    assert detector.scales_for_objects(227, (0.25, 0.5)) == (272, 343, 432, 545)
    assert detector.scales_for_objects(227, (0.9, 1.0), count=1) == (227,)  # >= the window
    with pytest.raises(ValueError, match="object_sides"):
        detector.scales_for_objects(227, (0.5, 0.25))


def test_add_background_class_keeps_the_trained_classes():
    keras.utils.set_random_seed(1)
    classifier = overfeat_tf.build_model("alexnet", **TINY)
    model = train_detector.add_background_class(classifier, TINY, "alexnet")
    assert model.output.shape[-1] == 4
    for name in ("conv1", "conv5", "fc6", "fc7"):
        for a, b in zip(
            model.get_layer(name).get_weights(), classifier.get_layer(name).get_weights()
        ):
            np.testing.assert_array_equal(a, b)
    kernel, bias = model.get_layer("fc8").get_weights()
    old_kernel, old_bias = classifier.get_layer("fc8").get_weights()
    np.testing.assert_array_equal(kernel[..., :3], old_kernel)
    np.testing.assert_array_equal(bias[:3], old_bias)
    assert np.any(kernel[..., 3] != 0)  # a fresh, initialised background column


def _detection_model(favourite: int) -> tuple[keras.Model, keras.Model]:
    """A 3-class + background model whose class layer always prefers `favourite`, and a
    per-class regressor (zero box layer: each location predicts its own window)."""
    keras.utils.set_random_seed(2)
    model = overfeat_tf.build_model("alexnet", **{**TINY, "num_classes": 4})
    kernel, bias = model.get_layer("fc8").get_weights()
    bias[favourite] = 50.0
    model.get_layer("fc8").set_weights([kernel * 0, bias])
    head = regressor.build_regressor(regressor.RegressorConfig("alexnet", 3, width=0.0625))
    return model, head


def test_background_everywhere_gives_no_detection():
    model, head = _detection_model(favourite=3)  # background
    found = detector.Detector(model, head, scales=[227, 260])(np.zeros((240, 260, 3), np.float32))
    assert found.boxes.shape == (0, 4) and found.scores.shape == (0,) and len(found.classes) == 0


def test_detections_are_the_merged_proposals_of_one_class():
    model, head = _detection_model(favourite=1)
    image = np.random.default_rng(0).normal(size=(240, 300, 3)).astype(np.float32)
    found_by = detector.Detector(
        model, head, scales=[227, 300], flips=True, merge_threshold=0.5, suppress_iou=None
    )
    proposals = found_by.proposals(image)
    found = found_by(image)
    assert len(proposals.boxes) > len(found.boxes) >= 1
    assert set(proposals.classes) == {1} and set(found.classes) == {1}
    np.testing.assert_allclose(found.scores.sum(), proposals.scores.sum())
    np.testing.assert_allclose(proposals.scores, 1.0, atol=1e-6)
    assert np.all(found.boxes >= 0) and np.all(found.boxes[:, [2, 3]] <= [240, 300])
    assert np.all(np.diff(found.scores) <= 0)
    found_by.suppress_iou = 0.0  # any overlap with a better box of the class: dropped
    suppressed = found_by(image)
    assert 1 <= len(suppressed.boxes) <= len(found.boxes)
    np.testing.assert_allclose(suppressed.boxes[0], found.boxes[0])


def test_detector_rejects_a_regressor_of_other_classes():
    model, _ = _detection_model(favourite=1)
    head = regressor.build_regressor(regressor.RegressorConfig("alexnet", 7, width=0.0625))
    with pytest.raises(ValueError, match="predicts 7 boxes per location"):
        detector.Detector(model, head, scales=[227])


@pytest.fixture(scope="module")
def source(tiny_data):
    return pipelines.open_source("embedded", tiny_data)


def test_fine_tune_with_background_trains_and_resumes(source, tmp_path):
    classifier_dir, model_dir = str(tmp_path / "cls"), str(tmp_path / "det")
    keras.utils.set_random_seed(3)
    kwargs = {**TINY, "num_classes": source.num_classes}
    classifier = overfeat_tf.build_model("alexnet", **kwargs)
    run_dir.save_model(
        classifier_dir, classifier, build_kwargs=kwargs, class_names=list(source.class_names)
    )
    settings = train_detector.BackgroundFineTuning(
        epochs=1,
        batch_size=8,
        verbose=False,
        sampling=detection_data.CropSampling(negatives_per_image=2),
    )
    metrics = train_detector.fine_tune_with_background(classifier_dir, model_dir, source, settings)
    steps = metrics["step"]
    assert steps >= 5 and metrics["epochs"] == 1 and np.isfinite(metrics["val_loss"])
    config = run_dir.read_config(model_dir)
    assert config["build_kwargs"]["num_classes"] == source.num_classes + 1
    assert config["class_names"][-1] == "background"
    model, _ = run_dir.restore_model(model_dir)
    # The trunk was frozen: identical to the classifier's; the classifier was trained.
    np.testing.assert_array_equal(
        model.get_layer("conv5").get_weights()[0], classifier.get_layer("conv5").get_weights()[0]
    )
    assert np.any(
        model.get_layer("fc6").get_weights()[0] != classifier.get_layer("fc6").get_weights()[0]
    )
    more = train_detector.fine_tune_with_background(
        classifier_dir, model_dir, source, dataclasses.replace(settings, epochs=2)
    )
    assert more["step"] == 2 * steps and more["epochs"] == 2  # resumed after epoch 1
    with open(os.path.join(model_dir, "metrics.json")) as f:
        assert json.load(f)["step"] == 2 * steps


def test_fine_tune_refuses_a_classifier_of_other_classes(source, tmp_path):
    kwargs = {**TINY, "num_classes": 5}
    run_dir.save_model(
        str(tmp_path),
        overfeat_tf.build_model("alexnet", **kwargs),
        build_kwargs=kwargs,
        class_names=list("abcde"),
    )
    with pytest.raises(ValueError, match="classifies 5 classes; the data has 12"):
        train_detector.fine_tune_with_background(str(tmp_path), str(tmp_path / "d"), source)


class _Fixed:
    """Stands in for a Detector: the same two detections on every image."""

    background = 2

    def __call__(self, image):
        return merge.Merged(
            np.array([[0, 0, 50, 50], [10, 10, 20, 20]], float),
            np.array([3.0, 1.0]),
            np.array([0, 1]),
        )


def test_evaluate_detection_and_its_table():
    image = tf.zeros([1, 100, 200, 3])

    def labels(boxes, classes):
        padded = np.zeros((1, 4, 4), np.float32)
        padded[0, : len(boxes)] = np.reshape(boxes, (-1, 4))
        return {
            "boxes": tf.constant(padded),
            "box_labels": tf.constant([classes + [-1] * (4 - len(classes))]),
            "num_boxes": tf.constant([len(classes)]),
        }

    # Image 1: class 0's box is [0, 0, 50, 50] px = [0, 0, .5, .25] normalised -> hit.
    # Image 2: no objects -> both detections are false positives.
    batches = [(image, labels([[0, 0, 0.5, 0.25]], [0])), (image, labels([], []))]
    seen = []
    result = detector.evaluate_detection(
        _Fixed(), batches, on_image=lambda i, *rest: seen.append(i)
    )
    assert seen == [0, 1] and result["examples"] == 2
    # Class 0: ranked hit (image 1, 3.0) then the miss of image 2 (3.0, later): AP 1.
    # Class 1 has no true object: left out.
    assert result["map"] == pytest.approx(1.0)
    assert result["per_class_ap"][0] == pytest.approx(1.0) and np.isnan(result["per_class_ap"][1])
    assert result["detections_per_image"] == 2.0
    table = detector.format_ap_table(result, ["circle", "ring"])
    assert "circle" in table and "n/a" in table and table.splitlines()[-1].endswith("1.000")
    assert detector.evaluate_detection(_Fixed(), batches, max_examples=1)["examples"] == 1
