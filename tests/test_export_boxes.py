"""The `localize` and `detect` serving signatures (OverFeat sections 4.3 and 5).

A tiny AlexNet run with a localization regressor, a detection regressor and a detection
classifier (laid out as `overfeat-train-boxes` writes them) is exported once; the
signatures must return what `Localizer` and `Detector` find on the whole image, in the
input image's pixels, in process, through `saved_model_cli run` (TF1 session loading,
as TF Serving's C++ loader does) and in a fresh Python process.
"""

import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

import overfeat_tf
import pipelines
from export import requests as serving_requests
from export import saved_model, signatures
from overfeat_tf import run_dir
from overfeat_tf.detection import box_maps, detector, localizer
from overfeat_tf.detection import regressor as regressor_lib
from tests.conftest import saved_model_cli_run

CLASS_NAMES = ["circle", "square", "tabby cat"]
KWARGS = {"width": 0.0625, "init": "he", "dropout": 0.0}
SCALES = (227, 259)
# Boxes are float32 pixels after a float64 merge; graph and eager convolutions may sum
# in another order.
PIXEL_ATOL, SCORE_ATOL = 1e-2, 1e-4


def _regressor(run, task: str, classes: int) -> keras.Model:
    config = regressor_lib.RegressorConfig(
        "alexnet", classes, width=0.0625, scales=SCALES, task=task
    )
    head = regressor_lib.build_regressor(config)
    kernel, bias = head.get_layer("reg_boxes").get_weights()  # boxes off their windows
    rng = np.random.default_rng(1)
    head.get_layer("reg_boxes").set_weights([rng.normal(0, 0.01, kernel.shape), bias])
    regressor_lib.write_config(str(run / task), config)
    tf.train.CheckpointManager(tf.train.Checkpoint(regressor=head), str(run / task), 1).save()
    return head


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """((classifier, its model.json), localizer, detector, SavedModel dir)."""
    root = tmp_path_factory.mktemp("export_boxes")
    keras.utils.set_random_seed(0)
    run, classes = root / "run", len(CLASS_NAMES)
    model = overfeat_tf.build_model("alexnet", classes, **KWARGS)
    run_dir.save_model(
        str(run), model, build_kwargs={"num_classes": classes, **KWARGS}, class_names=CLASS_NAMES
    )
    detection = overfeat_tf.build_model("alexnet", classes + 1, **KWARGS)
    bias = np.zeros(classes + 1, np.float32)
    bias[[1, 2]] = 4.0  # classes 1 and 2 above the threshold at many locations
    kernel = detection.get_layer("fc8").get_weights()[0]
    detection.get_layer("fc8").set_weights([kernel, bias])
    run_dir.save_model(
        str(run / "detection" / "classifier"),
        detection,
        build_kwargs={"num_classes": classes + 1, **KWARGS},
        class_names=CLASS_NAMES + ["background"],
    )
    local_head = _regressor(run, "localization", classes)
    detection_head = _regressor(run, "detection", classes)
    paths = saved_model.export_model_dir(str(run), str(root / "export"))
    found_by = detector.Detector(detection, detection_head, scales=SCALES, flips=True)
    locate = localizer.Localizer(box_maps.BoxPredictor(model, local_head, SCALES))
    config = run_dir.read_config(str(run))
    return (model, config), locate, found_by, paths.saved_model_dir


def _jpeg(height: int, width: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3)).astype(np.float32)
    image = tf.image.resize(small[None], [height, width])[0]
    return tf.io.encode_jpeg(tf.cast(image, tf.uint8), quality=95).numpy()


def _whole_image(encoded: bytes, run) -> np.ndarray:
    """The image normalised as the run's model.json says, at its own size."""
    _, config = run
    image = pipelines.decode_image(tf.constant(encoded))
    return pipelines.transforms.preprocess_full(image, config["mean"], config["std"]).numpy()


def _check_detect(outputs, index: int, expected) -> None:
    count = int(outputs["num_boxes"][index])
    assert count == min(len(expected.scores), 100) >= 1
    np.testing.assert_array_equal(outputs["classes"][index][:count], expected.classes)
    np.testing.assert_allclose(outputs["boxes"][index][:count], expected.boxes, atol=PIXEL_ATOL)
    np.testing.assert_allclose(outputs["scores"][index][:count], expected.scores, rtol=SCORE_ATOL)


def _check_localize(outputs, index: int, expected: localizer.Localization) -> None:
    count = int(outputs["num_boxes"][index])
    assert count == len(expected.classes) >= 1
    np.testing.assert_array_equal(outputs["classes"][index][:count], expected.classes)
    np.testing.assert_allclose(outputs["boxes"][index][:count], expected.boxes, atol=PIXEL_ATOL)
    np.testing.assert_allclose(outputs["scores"][index][:count], expected.scores, rtol=SCORE_ATOL)
    names = [n.decode() if isinstance(n, bytes) else n for n in outputs["class_names"][index]]
    assert names[:count] == [CLASS_NAMES[c] for c in expected.classes]
    assert all(name == "" for name in names[count:])
    assert np.all(np.asarray(outputs["classes"][index][count:]) == -1)


@pytest.mark.slow
def test_localize_and_detect_are_the_evaluators_on_whole_images(exported):
    run, locate, found_by, directory = exported
    loaded = tf.saved_model.load(directory)
    assert {signatures.LOCALIZE, signatures.DETECT} <= set(loaded.signatures)
    batch = [_jpeg(300, 420, seed=1), _jpeg(380, 260, seed=2)]  # sizes differ in a batch
    located = loaded.signatures["localize"](image_bytes=tf.constant(batch))
    detected = loaded.signatures["detect"](image_bytes=tf.constant(batch))
    assert located["boxes"].shape == (2, localizer.GUESSES, 4)
    for index, encoded in enumerate(batch):
        image = _whole_image(encoded, run)
        _check_localize(located, index, locate(image))
        _check_detect(detected, index, found_by(image))
        count = int(detected["num_boxes"][index])
        # Pixels of the input image, at its own size (the detector saw it whole).
        assert image.shape[:2] == tf.io.decode_jpeg(encoded).shape[:2]
        boxes = detected["boxes"][index][:count].numpy()
        assert np.all(boxes >= 0) and np.all(boxes[:, [2, 3]] <= image.shape[:2])


@pytest.mark.slow
def test_warmup_requests_cover_localize_and_detect(exported):
    """TF Serving replays `assets.extra/tf_serving_warmup_requests` at load time; the
    box signatures get one request each, and each answers as the evaluators do."""
    run, locate, found_by, directory = exported
    path = f"{directory}/{saved_model.WARMUP_FILE}"
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record.numpy())
        for record in tf.data.TFRecordDataset(path)
    ]
    requests = [log.predict_log.request for log in logs]
    names = [request.model_spec.signature_name for request in requests]
    assert names.count(signatures.LOCALIZE) == names.count(signatures.DETECT) == 1
    assert {"serving_default", "predict_images", "dense_classify"} <= set(names)
    loaded = tf.saved_model.load(directory)
    for request in requests:
        name, inputs = serving_requests.inputs_from_predict_request(request, loaded.signatures)
        outputs = loaded.signatures[name](**inputs)
        if name not in (signatures.LOCALIZE, signatures.DETECT):
            continue
        (encoded,) = inputs[signatures.IMAGE_BYTES].numpy()
        image = _whole_image(encoded, run)
        if name == signatures.LOCALIZE:
            _check_localize(outputs, 0, locate(image))
        else:
            _check_detect(outputs, 0, found_by(image))


@pytest.mark.slow
def test_saved_model_cli_runs_localize(exported, tmp_path):
    run, locate, _, directory = exported
    encoded = _jpeg(290, 350, seed=3)
    out = saved_model_cli_run(directory, "localize", encoded, tmp_path)
    outputs = {
        name: np.load(out / f"{name}.npy", allow_pickle=True)
        for name in signatures.BOX_OUTPUT_NAMES
    }
    _check_localize(outputs, 0, locate(_whole_image(encoded, run)))


_FRESH_PROCESS = """
import sys, numpy as np
import tensorflow as tf
directory, work = sys.argv[1:]
detect = tf.saved_model.load(directory).signatures["detect"]
with open(work + "/image.jpg", "rb") as f:
    out = detect(image_bytes=tf.constant([f.read()]))
for name in ("boxes", "classes", "scores", "num_boxes"):
    np.save(f"{work}/{name}.npy", out[name].numpy())
"""


@pytest.mark.slow
def test_fresh_process_loads_and_detects(exported, tmp_path, subprocess_env):
    run, _, found_by, directory = exported
    encoded = _jpeg(310, 330, seed=4)
    (tmp_path / "image.jpg").write_bytes(encoded)
    subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, directory, str(tmp_path)],
        env=subprocess_env,
        check=True,
    )
    outputs = {
        name: np.load(tmp_path / f"{name}.npy")
        for name in ("boxes", "classes", "scores", "num_boxes")
    }
    _check_detect(outputs, 0, found_by(_whole_image(encoded, run)))
