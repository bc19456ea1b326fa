"""Export for TF Serving and Keras: signatures, requests, bad bytes, fresh loads.

One tiny untrained AlexNet (3 classes, width 1/16) is restored from a model dir and
exported once per module; the tests query that export in process, through
`saved_model_cli` (TF1 session loading, as TF Serving's C++ loader does) and in a fresh
Python process.
"""

import base64
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import run_dir

import keras  # noqa: E402  (after overfeat_tf: oneDNN)
import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import saved_model_pb2  # noqa: E402
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2  # noqa: E402

from export import requests as serving_requests  # noqa: E402
from export import saved_model, signatures  # noqa: E402
from tests.conftest import run_module, saved_model_cli_run

# A name with a space: the asset keeps whole lines.
CLASS_NAMES = ["n01440764", "n01443537", "tabby cat"]
TOP_K = 2
# Graph vs eager float32 on the same kernels; observed differences are ~1e-7.
PROBABILITY_ATOL = 1e-5
PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


def _image(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth random uint8 image (compresses like a photo, unlike white noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, channels))
    big = tf.image.resize(small[None].astype(np.float32), [height, width])[0]
    return np.clip(big.numpy(), 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray) -> bytes:
    return tf.io.encode_jpeg(image, quality=90).numpy()


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image).numpy()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("run"))
    build_kwargs = {"num_classes": 3, "width": 0.0625}
    model = overfeat_tf.build_model("alexnet", **build_kwargs)
    run_dir.save_model(path, model, build_kwargs=build_kwargs, class_names=CLASS_NAMES)
    return path


@pytest.fixture(scope="module")
def export_base(model_dir, tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("exports") / "alexnet")


@pytest.fixture(scope="module")
def exported(model_dir, export_base):
    """(model, config, ExportPaths) of version 1 of `export_base`."""
    paths = saved_model.export_model_dir(model_dir, export_base, top_k=TOP_K)
    model, config = run_dir.restore_model(model_dir)
    return model, config, paths


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported[2].saved_model_dir)


def _eval_path_scores(model: keras.Model, config: dict, encoded: bytes) -> np.ndarray:
    """The Python evaluation path: the pipeline's decode and eval transform, eagerly."""
    image = pipelines.decode_image(tf.constant(encoded))
    x = pipelines.preprocess_for_eval(image, config["input_size"], config["mean"], config["std"])
    return tf.nn.softmax(model(x[None], training=False)).numpy()[0]


def _serve(loaded, name: str, **inputs) -> dict[str, np.ndarray]:
    return {k: v.numpy() for k, v in loaded.signatures[name](**inputs).items()}


def _assert_same_outputs(actual: dict, expected: dict) -> None:
    assert set(actual) == set(expected)
    for key in ("classes", "class_names"):
        np.testing.assert_array_equal(actual[key], expected[key], err_msg=key)
    for key in ("probabilities", "scores"):
        np.testing.assert_allclose(actual[key], expected[key], atol=PROBABILITY_ATOL, err_msg=key)


def test_signatures_have_named_inputs_and_outputs(loaded):
    assert set(loaded.signatures) == set(signatures.INPUT_SPECS)
    for name, specs in signatures.INPUT_SPECS.items():
        fn = loaded.signatures[name]
        assert set(fn.structured_input_signature[1]) == set(specs), name
        assert set(fn.structured_outputs) == set(signatures.OUTPUT_NAMES), name


def test_outputs_are_top_k_of_the_scores_with_their_names(loaded):
    out = _serve(loaded, "serving_default", image_bytes=tf.constant([_jpeg(_image(300, 400))]))
    assert out["classes"].shape == (1, TOP_K) and out["scores"].shape == (1, 3)
    np.testing.assert_allclose(out["scores"].sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(
        out["probabilities"], np.take_along_axis(out["scores"], out["classes"], axis=1)
    )
    assert np.all(np.diff(out["probabilities"], axis=1) <= 0)
    np.testing.assert_array_equal(
        out["class_names"].astype(str), np.array(CLASS_NAMES)[out["classes"]]
    )


def test_class_names_travel_as_an_asset_not_as_constants(exported):
    directory = exported[2].saved_model_dir
    with open(os.path.join(directory, "assets", saved_model.CLASS_NAMES_ASSET)) as f:
        assert f.read().splitlines() == CLASS_NAMES
    with open(os.path.join(directory, "saved_model.pb"), "rb") as f:
        assert b"tabby cat" not in f.read()


def test_graph_has_no_py_function_ops(exported):
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(exported[2].saved_model_dir, "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    graph = proto.meta_graphs[0].graph_def
    ops = {node.op for node in graph.node}
    for function in graph.library.function:
        ops.update(node.op for node in function.node_def)
    # The scan reaches into function bodies, where decoding and the convolutions live.
    assert {"DecodeImage", "Conv2D", "TopKV2"} <= ops
    assert not ops & PY_FUNC_OPS


def test_batch_of_mixed_sizes_and_formats_through_image_bytes(loaded):
    batch = [
        _jpeg(_image(300, 400)),
        _png(_image(64, 48, channels=1, seed=1)),
        _png(_image(257, 256, seed=2)),
    ]
    together = _serve(loaded, "serving_default", image_bytes=tf.constant(batch))
    for i, encoded in enumerate(batch):
        alone = _serve(loaded, "serving_default", image_bytes=tf.constant([encoded]))
        _assert_same_outputs({k: v[i : i + 1] for k, v in together.items()}, alone)


def test_empty_batch(loaded):
    out = _serve(loaded, "serving_default", image_bytes=tf.constant([], tf.string))
    assert out["classes"].shape == (0, TOP_K) and out["scores"].shape == (0, 3)


def test_predict_images_matches_image_bytes(loaded):
    image = _image(200, 320, seed=3)
    from_pixels = _serve(loaded, "predict_images", images=tf.constant(image[None]))
    from_png = _serve(loaded, "serving_default", image_bytes=tf.constant([_png(image)]))
    _assert_same_outputs(from_pixels, from_png)


def test_classify_tf_example_matches_image_bytes(loaded):
    encoded = [_jpeg(_image(240, 300, seed=4)), _png(_image(100, 90, seed=5))]
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[e]))
                }
            )
        ).SerializeToString()
        for e in encoded
    ]
    _assert_same_outputs(
        _serve(loaded, "classify_tf_example", examples=tf.constant(examples)),
        _serve(loaded, "serving_default", image_bytes=tf.constant(encoded)),
    )


def test_dense_classify_is_the_dense_evaluator_on_whole_images(exported, loaded):
    model, config, _ = exported
    batch = [_jpeg(_image(260, 390, seed=14)), _png(_image(300, 240, channels=1, seed=15))]
    served = _serve(loaded, "dense_classify", image_bytes=tf.constant(batch))
    evaluator = overfeat_tf.DenseEvaluator(model, xla="off")
    for i, encoded in enumerate(batch):
        # The pipeline's "full" eval mode: the whole image at its own resolution.
        image = pipelines.transforms.preprocess_full(
            pipelines.decode_image(tf.constant(encoded)), config["mean"], config["std"]
        )
        expected = evaluator(image[None]).numpy()[0]
        np.testing.assert_allclose(served["scores"][i], expected, atol=PROBABILITY_ATOL)
        np.testing.assert_array_equal(served["classes"][i], np.argsort(-expected)[:TOP_K])


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            lambda jpeg: jpeg[: len(jpeg) // 2],
            r"image_bytes\[1\] is not a valid image: truncated JPEG",
        ),
        (lambda jpeg: b"this is not an image", r"image_bytes\[1\] is not a valid image: unknown"),
        (lambda jpeg: b"", r"image_bytes\[1\] is not a valid image: empty"),
        (lambda jpeg: jpeg[:3] + b"\x00" * 200 + jpeg[-2:], r"JPEG"),  # intact ends, corrupt body
    ],
)
def test_bad_bytes_raise_invalid_argument_and_the_process_lives_on(loaded, bad, message):
    good = _jpeg(_image(120, 160))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        loaded.signatures["serving_default"](image_bytes=tf.constant([good, bad(good)]))
    out = _serve(loaded, "serving_default", image_bytes=tf.constant([good]))
    assert out["classes"].shape == (1, TOP_K)


def test_grpc_predict_request_is_converted_and_answered(loaded):
    jpeg = _jpeg(_image(300, 200, seed=6))
    # As a TF Serving Python client writes it, then over the wire (serialize, parse).
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "alexnet"
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([jpeg], shape=[1]))
    received = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    name, inputs = serving_requests.inputs_from_predict_request(received, loaded.signatures)
    assert name == "serving_default"
    _assert_same_outputs(
        _serve(loaded, name, **inputs),
        _serve(loaded, "serving_default", image_bytes=tf.constant([jpeg])),
    )

    pixels = _image(64, 80, seed=7)[None]
    request = serving_requests.predict_request(
        {"images": pixels}, model_name="alexnet", signature_name="predict_images"
    )
    name, inputs = serving_requests.inputs_from_predict_request(request, loaded.signatures)
    assert inputs["images"].dtype == tf.uint8
    _assert_same_outputs(
        _serve(loaded, name, **inputs), _serve(loaded, "predict_images", images=tf.constant(pixels))
    )


def _b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode("ascii")}


@pytest.mark.parametrize("layout", ["instances", "named_instances", "inputs", "named_inputs"])
def test_rest_json_body_is_converted_and_answered(loaded, layout):
    batch = [_jpeg(_image(150, 250, seed=8)), _png(_image(90, 60, seed=9))]
    bodies = {
        "instances": {"instances": [_b64(b) for b in batch]},
        "named_instances": {
            "signature_name": "serving_default",
            "instances": [{"image_bytes": _b64(b)} for b in batch],
        },
        "inputs": {"inputs": [_b64(b) for b in batch]},
        "named_inputs": {"inputs": {"image_bytes": [_b64(b) for b in batch]}},
    }
    name, inputs = serving_requests.inputs_from_rest(json.dumps(bodies[layout]), loaded.signatures)
    _assert_same_outputs(
        _serve(loaded, name, **inputs),
        _serve(loaded, "serving_default", image_bytes=tf.constant(batch)),
    )


def test_rest_json_pixels_and_errors(loaded):
    pixels = _image(40, 50, seed=10)
    body = {"signature_name": "predict_images", "instances": [pixels.tolist()]}
    name, inputs = serving_requests.inputs_from_rest(body, loaded.signatures)
    assert inputs["images"].dtype == tf.uint8 and inputs["images"].shape == (1, 40, 50, 3)
    _assert_same_outputs(
        _serve(loaded, name, **inputs),
        _serve(loaded, "predict_images", images=tf.constant(pixels[None])),
    )
    with pytest.raises(ValueError, match="Unknown signature_name 'detect'"):
        serving_requests.inputs_from_rest(
            {"signature_name": "detect", "instances": []}, loaded.signatures
        )
    with pytest.raises(ValueError, match=r"takes inputs \['image_bytes'\]"):
        serving_requests.inputs_from_rest({"inputs": {"image": [_b64(b"x")]}}, loaded.signatures)


def test_warmup_requests_are_valid_requests(exported, loaded):
    path = os.path.join(exported[2].saved_model_dir, saved_model.WARMUP_FILE)
    logs = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(path)
    ]
    assert {log.predict_log.request.model_spec.signature_name for log in logs} == {
        "serving_default",
        "predict_images",
        "dense_classify",
    }
    for log in logs:
        name, inputs = serving_requests.inputs_from_predict_request(
            log.predict_log.request, loaded.signatures
        )
        batch = next(iter(inputs.values())).shape[0]
        assert _serve(loaded, name, **inputs)["classes"].shape == (batch, TOP_K)


def test_versions_and_layout(exported, export_base, tmp_path):
    model, config, paths = exported
    assert paths.version == 1
    entries = os.listdir(export_base)
    assert {"1", "1.keras"} <= set(entries)
    assert not [e for e in entries if e.startswith(".partial")]
    serving = signatures.ServingConfig.from_model_dir_config(config)
    with pytest.raises(FileExistsError, match="Version 1 exists"):
        saved_model.export_model(model, serving, export_base, model_name="alexnet", version=1)

    base = tmp_path / "base"
    for name in ("1", "3", "abc", ".partial-7-x"):
        (base / name).mkdir(parents=True)
    (base / "12.keras").write_bytes(b"")
    assert saved_model.existing_versions(str(base)) == [1, 3]
    assert saved_model.next_version(str(base)) == 4
    assert saved_model.next_version(str(tmp_path / "missing")) == 1


def test_serving_config_is_checked(exported):
    model, config, _ = exported
    with pytest.raises(ValueError, match="top_k must be >= 1"):
        signatures.ServingConfig.from_model_dir_config(config, top_k=0)
    with pytest.raises(ValueError, match="single lines"):
        signatures.ServingConfig(("a", "b\nc", "d"), 227, (0, 0, 0), (1, 1, 1))
    two_names = signatures.ServingConfig(("a", "b"), 227, config["mean"], config["std"])
    with pytest.raises(ValueError, match="3 outputs but 2 class names"):
        signatures.ServingFunctions(model, None, two_names)


def test_saved_model_cli_show_and_run(exported, tmp_path):
    """TF1-session loading, as TF Serving's C++ loader does."""
    model, config, paths = exported
    shown = run_module(
        "tensorflow.python.tools.saved_model_cli", "show", "--dir", paths.saved_model_dir, "--all"
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    for name in [
        *signatures.INPUT_SPECS,
        "image_bytes",
        "images",
        "examples",
        *signatures.OUTPUT_NAMES,
    ]:
        assert f"'{name}'" in shown.stdout, name

    jpeg = _jpeg(_image(333, 250, seed=11))
    out = saved_model_cli_run(paths.saved_model_dir, "serving_default", jpeg, tmp_path)
    expected = _eval_path_scores(model, config, jpeg)
    np.testing.assert_allclose(np.load(out / "scores.npy")[0], expected, atol=PROBABILITY_ATOL)
    classes = np.load(out / "classes.npy")[0]
    np.testing.assert_array_equal(classes, np.argsort(-expected)[:TOP_K])


_FRESH_PROCESS = """
import sys, numpy as np
import overfeat_tf  # registers the custom layers
import keras, tensorflow as tf
saved_model_dir, keras_file, work = sys.argv[1:]
model = keras.saving.load_model(keras_file)
np.save(work + "/keras_out.npy", model.predict(np.load(work + "/x.npy"), verbose=0))
serving = tf.saved_model.load(saved_model_dir).signatures["serving_default"]
with open(work + "/image.jpg", "rb") as f:
    out = serving(image_bytes=tf.constant([f.read()]))
np.save(work + "/probabilities.npy", out["probabilities"].numpy())
np.save(work + "/classes.npy", out["classes"].numpy())
"""


def test_fresh_process_loads_the_keras_file_and_the_saved_model(exported, tmp_path, subprocess_env):
    model, config, paths = exported
    size = config["input_size"]
    x = np.random.default_rng(12).normal(size=(2, size, size, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    jpeg = _jpeg(_image(280, 360, seed=13))
    (tmp_path / "image.jpg").write_bytes(jpeg)
    subprocess.run(
        [
            sys.executable,
            "-c",
            _FRESH_PROCESS,
            paths.saved_model_dir,
            paths.keras_file,
            str(tmp_path),
        ],
        env=subprocess_env,
        check=True,
    )
    # Same weights and graph; oneDNN may sum in another order in another process.
    np.testing.assert_allclose(
        np.load(tmp_path / "keras_out.npy"), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6
    )
    expected = _eval_path_scores(model, config, jpeg)
    classes = np.load(tmp_path / "classes.npy")[0]
    np.testing.assert_array_equal(classes, np.argsort(-expected)[:TOP_K])
    np.testing.assert_allclose(
        np.load(tmp_path / "probabilities.npy")[0], expected[classes], atol=PROBABILITY_ATOL
    )


def _run_binary(env: dict, *flags: str) -> subprocess.CompletedProcess:
    return run_module("export", *flags, env=env)


def test_binary_exports_the_next_version(exported, model_dir, export_base, subprocess_env):
    result = _run_binary(
        subprocess_env, f"--model_dir={model_dir}", f"--export_base={export_base}", "--top_k=1"
    )
    assert result.returncode == 0, result.stderr
    assert os.path.join(export_base, "2") in result.stdout
    assert saved_model.existing_versions(export_base)[-1] == 2
    assert os.path.isfile(os.path.join(export_base, "2.keras"))


@pytest.mark.slow  # Two fresh TensorFlow processes: 15-30 s.
def test_binary_flag_errors_are_one_line(
    exported, model_dir, export_base, tmp_path, subprocess_env
):
    result = _run_binary(
        subprocess_env, f"--model_dir={model_dir}", f"--export_base={export_base}", "--version=1"
    )
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("overfeat-export: --version=1: Version 1 exists already")
    )
    result = _run_binary(subprocess_env, f"--model_dir={tmp_path}")
    assert result.returncode != 0
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"overfeat-export: --model_dir={tmp_path}: ")
    )
