"""XLA on the inference paths: the dense evaluator's padded buckets give the unpadded maps
and compile once per bucket; the classifiers compile once per split; the flags."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import evaluation
from overfeat_tf.evaluation import dense, launch
from overfeat_tf import run_dir
from tests.conftest import run_module

CLASSES = 5


def _model(name: str, seed: int = 0):
    """A narrow model whose biases are far from zero, so zeros padded into the image
    become non-zero activations: the padding is visible unless it is masked."""
    tf.keras.utils.set_random_seed(seed)
    model = overfeat_tf.build_model(name, CLASSES, 0.0625, dropout=0.0, init="he")
    for variable in model.weights:
        if "bias" in variable.path:
            variable.assign(tf.random.normal(variable.shape))
    return model


@pytest.mark.parametrize("name", overfeat_tf.MODEL_NAMES)
def test_padded_map_equals_the_unpadded_map_cell_for_cell(name):
    evaluator = dense.DenseEvaluator(_model(name), scales=[260], flips=False, xla="off")
    for height, width in [(250, 300), (301, 262)]:
        images = tf.random.stateless_normal([2, height, width, 3], [height, width])
        expected = evaluator.logit_map(images).numpy()
        assert expected.shape[1:3] == evaluator.map_size(height, width)
        padded_h, padded_w = evaluator.bucket(height), evaluator.bucket(width)
        assert padded_h > height and padded_w > width  # these sizes do get padded
        padded = tf.pad(images, [[0, 0], [0, padded_h - height], [0, padded_w - width], [0, 0]])
        rows, cols = expected.shape[1:3]
        masked = evaluator._padded_logit_map(padded, tf.constant([height, width]))
        unmasked = evaluator.logit_map(padded)
        scale = np.abs(expected).max()
        # Same kernels on a larger tensor: equal up to float32 summation order.
        np.testing.assert_allclose(masked[:, :rows, :cols], expected, rtol=0, atol=1e-5 * scale)
        # Without the masks, the cells near the padded edges see the padding.
        assert np.abs(unmasked[:, :rows, :cols] - expected).max() > 1e-2 * scale


def test_buckets_are_whole_coarse_strides_above_the_smallest_default_scale():
    evaluator = dense.DenseEvaluator(_model("overfeat_accurate"), xla="off")
    base = dense.default_scales("overfeat_accurate")[0][0]  # 245
    assert [evaluator.bucket(n) for n in (221, 245, 246, 281, 282)] == [
        base,
        base,
        base + 36,
        base + 36,
        base + 72,
    ]
    # The paper's scales are their own buckets: no padding, no waste.
    assert all(evaluator.bucket(n) == n for scale in evaluator.scales for n in scale)


def test_compiled_dense_scores_equal_plain_and_compile_once_per_bucket():
    model = _model("overfeat_fast")
    plain = dense.DenseEvaluator(model, scales=[231, (247, 279)], xla="off")
    compiled = dense.DenseEvaluator(model, scales=[231, (247, 279)], xla="on")
    # Heights differ; 231 x 300 and 231 x 310 scale to the same buckets, 231 x 400 not.
    sizes = [(231, 300), (231, 310), (231, 400), (240, 300)]
    for height, width in sizes:
        image = tf.random.stateless_normal([1, height, width, 3], [height, width])
        np.testing.assert_allclose(compiled(image), plain(image), rtol=0, atol=1e-5)
        maps = compiled.score_maps(image)
        for got, want in zip(maps, plain.score_maps(image)):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    buckets = {
        (2, compiled.bucket(h), compiled.bucket(w), 3)  # 2: the image and its mirror
        for height, width in sizes
        for h, w in [
            tuple(dense.resize_to_scale(tf.zeros([1, height, width, 3]), s).shape[1:3])
            for s in compiled.scales
        ]
    }
    # One XLA compile per distinct padded shape, not per image size, each traced once.
    assert set(compiled.compiled_shapes) == buckets and len(buckets) < 2 * len(sizes)
    for function in compiled._compiled_maps.values():
        assert function.experimental_get_tracing_count() == 1
    assert compiled.xla_choice.summary() == "XLA on (on: as asked)"


def test_classifier_auto_evaluates_every_batch_correctly_while_timing():
    model = _model("alexnet")
    size = overfeat_tf.native_input_size("alexnet")
    plain = evaluation.CenterEvaluator(model, xla="off")
    auto = evaluation.CenterEvaluator(model, xla="auto")
    batches = [tf.random.stateless_normal([4, size, size, 3], [i, 0]) for i in range(8)]
    batches.append(batches[0][:3])  # a split's partial last batch
    for i, images in enumerate(batches):
        assert (auto.xla_choice is None) == (i < 8)  # 8 batches: warm-up + 3 timed, each way
        np.testing.assert_allclose(auto(images), plain(images), rtol=0, atol=1e-6)
    record = auto.xla_choice.as_dict()
    assert record["mode"] == "auto" and record["plain_seconds"] > 0 and record["xla_seconds"] > 0


def test_ten_view_compiled_equals_plain_and_pads_a_smaller_batch_to_one_compile():
    model = _model("alexnet")
    size = overfeat_tf.native_input_size("alexnet")
    views = tf.random.stateless_normal([2, 10, size, size, 3], [7, 0])
    compiled = evaluation.TenViewEvaluator(model, xla="on")
    plain = evaluation.TenViewEvaluator(model, xla="off")
    for batch in (views, views[:1]):  # the second is a split's partial last batch
        np.testing.assert_allclose(compiled(batch), plain(batch), rtol=0, atol=1e-6)
    assert compiled._compiled.experimental_get_tracing_count() == 1


# ---- the binaries' flags -----------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    ["overfeat_tf.bin.evaluate", pytest.param("overfeat_tf.bin.train", marks=pytest.mark.slow)],
)
def test_a_bad_xla_flag_is_an_error_naming_it(module, subprocess_env):
    result = run_module(module, "--xla=fast", env=subprocess_env, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if "--xla" in line]
    expected = "FATAL Flags parsing error: flag --xla=fast: value should be one of <auto|on|off>"
    assert errors == [expected], result.stderr[-2000:]


def test_evaluate_records_the_choice_per_mode(tmp_path, tiny_data, capsys):
    build_kwargs = {"num_classes": 12, "width": 0.0625, "init": "he"}
    model = overfeat_tf.build_model("alexnet", **build_kwargs)
    run = str(tmp_path / "run")
    run_dir.save_model(
        run, model, build_kwargs=build_kwargs, class_names=[str(i) for i in range(12)]
    )
    # In process: the evaluation library overfeat-evaluate calls with its flags.
    launch.run(
        launch.EvalSpec(
            model_dir=(run,),
            modes=("center",),
            xla="off",
            max_examples=8,
            batch_size=4,
            data_dir=tiny_data,
        )
    )
    assert "center: XLA off (off: as asked)" in capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "eval.json").read_text())
    assert report["results"]["center"]["xla"]["xla"] is False
