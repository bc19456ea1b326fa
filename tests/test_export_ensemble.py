"""An ensemble exported as one SavedModel (`overfeat-export --model_dir=a,b`).

Two tiny untrained AlexNets that differ in architecture (the one-tower variant) and
input normalisation ("paper" and "he" runs) are exported by the binary; the served
scores must be the mean of the members' probabilities computed by hand, in the Python
loader and in `saved_model_cli` (TF1 session loading, as TF Serving's C++ loader does).
"""

import os  # noqa: I001  (overfeat_tf before TensorFlow: oneDNN)
import pathlib

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import evaluation
from overfeat_tf.evaluation import ensemble
from overfeat_tf import run_dir

import pipelines
import tensorflow as tf

from export import saved_model
from tests.conftest import run_module, saved_model_cli_run

CLASS_NAMES = ["disc", "square", "star"]
PROBABILITY_ATOL = 1e-5


def _jpeg(seed: int, height: int, width: int) -> bytes:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3)).astype(np.float32)
    image = tf.image.resize(small[None], [height, width])[0]
    return tf.io.encode_jpeg(tf.cast(tf.clip_by_value(image, 0, 255), tf.uint8)).numpy()


def _run(env, module, *flags):
    return run_module(module, *flags, env=env)


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    """[(model, config, model_dir)] of the two runs."""
    runs = []
    for seed, init, variant in ((0, "paper", {}), (1, "he", {"towers": 1})):
        tf.keras.utils.set_random_seed(seed)
        kwargs = {"num_classes": 3, "width": 0.0625, "init": init, **variant}
        model = overfeat_tf.build_model("alexnet", **kwargs)
        path = str(tmp_path_factory.mktemp(f"run{seed}"))
        run_dir.save_model(path, model, build_kwargs=kwargs, class_names=CLASS_NAMES)
        runs.append((model, run_dir.read_config(path), path))
    return runs


@pytest.fixture(scope="module")
def exported(members, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("exports") / "ensemble")
    dirs = ",".join(path for _, _, path in members)
    root = str(pathlib.Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    result = _run(env, "export", f"--model_dir={dirs}", f"--export_base={base}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Keras file" not in result.stdout  # an ensemble has no single .keras model
    return f"{base}/1"


def _center_by_hand(members, encoded: bytes) -> np.ndarray:
    """Each member's own eval transform and softmax, averaged."""
    image = pipelines.decode_image(tf.constant(encoded))
    scores = []
    for model, config, _ in members:
        x = pipelines.preprocess_for_eval(image, 227, config["mean"], config["std"])
        scores.append(tf.nn.softmax(model(x[None], training=False)).numpy()[0])
    assert not np.allclose(scores[0], scores[1], atol=1e-3)  # the members disagree
    return np.mean(scores, axis=0)


def test_served_scores_are_the_members_mean(members, exported):
    loaded = tf.saved_model.load(exported)
    assert sorted(loaded.signatures) == sorted(
        ["serving_default", "predict_images", "classify_tf_example", "dense_classify"]
    )
    encoded = [_jpeg(1, 300, 260), _jpeg(2, 240, 320)]
    served = loaded.signatures["serving_default"](image_bytes=tf.constant(encoded))
    for i, jpeg in enumerate(encoded):
        np.testing.assert_allclose(
            served["scores"][i], _center_by_hand(members, jpeg), atol=PROBABILITY_ATOL
        )
    images = tf.stack([pipelines.decode_image(tf.constant(e)) for e in encoded[:1]])
    by_images = loaded.signatures["predict_images"](images=images)
    np.testing.assert_allclose(by_images["scores"], served["scores"][:1], atol=PROBABILITY_ATOL)

    dense = loaded.signatures["dense_classify"](image_bytes=tf.constant(encoded[:1]))
    image = pipelines.decode_image(tf.constant(encoded[0]))
    by_hand = np.mean(
        [
            overfeat_tf.DenseEvaluator(model)(
                pipelines.transforms.preprocess_full(image, config["mean"], config["std"])[None]
            ).numpy()[0]
            for model, config, _ in members
        ],
        axis=0,
    )
    np.testing.assert_allclose(dense["scores"][0], by_hand, atol=PROBABILITY_ATOL)


def test_saved_model_cli_runs_the_ensemble(members, exported, tmp_path):
    jpeg = _jpeg(3, 280, 250)
    out = saved_model_cli_run(exported, "serving_default", jpeg, tmp_path)
    np.testing.assert_allclose(
        np.load(out / "scores.npy")[0], _center_by_hand(members, jpeg), atol=PROBABILITY_ATOL
    )


def test_mismatched_members_are_a_one_line_error(members, tmp_path, subprocess_env):
    model, _, path = members[0]
    other = str(tmp_path / "other")
    run_dir.save_model(
        other, model, build_kwargs={"num_classes": 3, "width": 0.0625}, class_names=["a", "b", "c"]
    )
    result = _run(
        subprocess_env,
        "export",
        f"--model_dir={path},{other}",
        f"--export_base={tmp_path / 'exports'}",
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode != 0
    assert last.startswith(f"overfeat-export: --model_dir={path},{other}: ")
    assert "classes that differ" in last


def test_saved_models_average_as_evaluators(members, exported, tmp_path):
    # overfeat-evaluate --saved_model=a,b: each SavedModel's centre-crop scores, averaged.
    single = saved_model.export_model_dir(members[0][2], str(tmp_path / "single")).saved_model_dir
    pair = ensemble.EnsembleEvaluator(
        [evaluation.SavedModelEvaluator(single), evaluation.SavedModelEvaluator(exported)]
    )
    assert pair.input_mode == "encoded"
    jpeg = _jpeg(4, 260, 300)
    model, config, _ = members[0]
    image = pipelines.decode_image(tf.constant(jpeg))
    x = pipelines.preprocess_for_eval(image, 227, config["mean"], config["std"])
    alone = tf.nn.softmax(model(x[None], training=False)).numpy()[0]
    by_hand = (alone + _center_by_hand(members, jpeg)) / 2
    np.testing.assert_allclose(pair(tf.constant([jpeg]))[0], by_hand, atol=PROBABILITY_ATOL)
