"""Thresholds are chosen on a tuning split distinct from the reported one.

The embedded data set holds `tuning` and `detection_tuning` beside the reported
`validation` and `detection_validation`; the sweeps re-merge one pass of proposals per
setting and must give what the evaluators give when built with that setting.
"""

import keras
import pytest

import overfeat_tf
import pipelines
from overfeat_tf.detection import box_maps, detector, localizer, regressor, tuning
from pipelines import embedded, testing

KWARGS = {"width": 0.0625, "init": "he", "dropout": 0.0}
CLASSES = len(embedded.CLASS_NAMES)


@pytest.fixture(scope="module")
def source(tiny_data):
    return pipelines.open_source("embedded", tiny_data)


def _batches(source, split: str):
    info = overfeat_tf.model_info("alexnet")
    return pipelines.build_dataset(
        source,
        split,
        batch_size=1,
        training=False,
        crop_size=info.input_size,
        mean=info.mean,
        std=(58.0, 58.0, 58.0),
        eval_mode="full",
        with_boxes=True,
        deterministic=True,
    )


def test_tuning_splits_are_their_own_images(source):
    config = testing.TINY_EMBEDDED
    for tune, report in (("tuning", "validation"), ("detection_tuning", "detection_validation")):
        assert source.num_examples(tune) == getattr(config, tune)
        tuned = {bytes(r["encoded"].numpy()) for r in source.records(tune)}
        reported = {bytes(r["encoded"].numpy()) for r in source.records(report)}
        assert tuned and not tuned & reported
    boxes = [int(r["box_labels"].shape[0]) for r in source.records("detection_tuning")]
    assert max(boxes) <= 4 and min(boxes) >= 1  # drawn like detection_validation


def _models(classes: int):
    keras.utils.set_random_seed(3)
    model = overfeat_tf.build_model("alexnet", classes, **KWARGS)
    kernel, bias = model.get_layer("fc8").get_weights()
    model.get_layer("fc8").set_weights([kernel * 20, bias])  # confident, varied maps
    head = regressor.build_regressor(regressor.RegressorConfig("alexnet", CLASSES, width=0.0625))
    return model, head


def test_detection_sweep_equals_the_detector_at_each_setting(source):
    model, head = _models(CLASSES + 1)
    settings = tuning.grid(
        score_threshold=(0.2, 0.4), merge_threshold=(0.5,), suppress_iou=(0.3, None)
    )
    found_by = detector.Detector(model, head, scales=[227, 259])
    rows = tuning.sweep_detection(
        found_by, _batches(source, "detection_tuning"), settings, max_examples=3
    )
    assert [
        tuning.Setting(r["merge_threshold"], r["score_threshold"], r["suppress_iou"]) for r in rows
    ] == settings
    assert min(r["detections_per_image"] for r in rows) > 0  # the settings have work to do
    for row, setting in zip(rows, settings):
        direct = detector.Detector(
            model,
            head,
            scales=[227, 259],
            score_threshold=setting.score_threshold,
            merge_threshold=setting.merge_threshold,
            suppress_iou=setting.suppress_iou,
        )
        expected = detector.evaluate_detection(
            direct, _batches(source, "detection_tuning"), max_examples=3
        )
        assert row["map"] == pytest.approx(expected["map"], nan_ok=True)
        assert row["detections_per_image"] == pytest.approx(expected["detections_per_image"])


def test_localization_sweep_equals_the_localizer_at_each_setting(source):
    model, head = _models(CLASSES)
    predictor = box_maps.BoxPredictor(model, head, [227], flips=False)
    settings = tuning.grid(merge_threshold=(0.25, 2.0))
    rows = tuning.sweep_localization(
        localizer.Localizer(predictor), _batches(source, "tuning"), settings, max_examples=3
    )
    for row, setting in zip(rows, settings):
        direct = localizer.Localizer(predictor, threshold=setting.merge_threshold)
        expected = localizer.evaluate_localization(
            direct, _batches(source, "tuning"), max_examples=3
        )
        assert row["top1_error"] == pytest.approx(expected["top1_error"])
        assert row["top5_error"] == pytest.approx(expected["top5_error"])


def test_best_row():
    rows = [
        {"map": 0.5, "top5_error": 9.0},
        {"map": 0.7, "top5_error": 9.0},
        {"map": 0.7, "top5_error": 3.0},
    ]
    assert tuning.best_row(rows, "map") is rows[1]  # ties: the first
    assert tuning.best_row(rows, "top5_error") is rows[2]
    errors = [
        {"top1_error": 6.0, "top5_error": 2.0},
        {"top1_error": 5.0, "top5_error": 2.0},
        {"top1_error": 4.0, "top5_error": 2.5},
    ]
    assert tuning.best_row(errors, "top5_error") is errors[0]
    assert tuning.best_row(errors, "top5_error", "top1_error") is errors[1]
    with pytest.raises(ValueError, match="at least one"):
        tuning.sweep_detection(None, [], [])
