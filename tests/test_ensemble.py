"""Ensembles (`overfeat_tf.evaluation.ensemble`): the mean of the members' probabilities."""

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import evaluation
from overfeat_tf.evaluation import ensemble
from overfeat_tf import run_dir

CLASSES = ["a", "b", "c"]
# Plain graphs: an "auto" evaluator may switch to XLA between two calls (float round-off).
DENSE = {"scales": [227, (240, 259)], "fine_stride": True, "flips": True, "xla": "off"}


def _model(seed, name="alexnet", **kwargs):
    tf.keras.utils.set_random_seed(seed)
    return overfeat_tf.build_model(name, len(CLASSES), 0.0625, init="he", **kwargs)


def _inputs(mode, size=227):
    rng = np.random.default_rng(1)
    shape = {
        "center": (2, size, size, 3),
        "ten_view": (2, 10, size, size, 3),
        "dense": (1, 250, 280, 3),
    }[mode]
    return rng.normal(size=shape).astype("float32")


def _softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


@pytest.mark.parametrize("mode", evaluation.MODES)
def test_ensemble_of_one_is_the_model(mode):
    single = evaluation.make_evaluator(_model(0), mode, **DENSE)
    images = _inputs(mode)
    one = ensemble.EnsembleEvaluator([single])
    assert (one.name, one.input_mode, one.description) == (
        single.name,
        single.input_mode,
        single.description,
    )
    np.testing.assert_array_equal(one(images), single(images))


def test_ensemble_of_two_is_the_mean_by_hand():
    # A variant and the default: members may differ in architecture.
    a, b = _model(0), _model(1, towers=1)
    x = _inputs("center")
    by_hand = (_softmax(a(x).numpy()) + _softmax(b(x).numpy())) / 2
    pair = ensemble.EnsembleEvaluator(
        [evaluation.CenterEvaluator(a), evaluation.CenterEvaluator(b)]
    )
    assert pair.description == "centre 227 crop, mean of 2 models"
    np.testing.assert_allclose(pair(x), by_hand, rtol=1e-5, atol=1e-7)

    views = _inputs("ten_view")
    flat = views.reshape((-1, 227, 227, 3))
    by_hand = sum(_softmax(m(flat).numpy()).reshape(2, 10, 3).mean(1) for m in (a, b)) / 2
    pair = ensemble.EnsembleEvaluator(
        [evaluation.TenViewEvaluator(a), evaluation.TenViewEvaluator(b)]
    )
    np.testing.assert_allclose(pair(views), by_hand, rtol=1e-5, atol=1e-7)

    image = _inputs("dense")
    members = [overfeat_tf.DenseEvaluator(m, **DENSE) for m in (a, b)]
    by_hand = (members[0](image).numpy() + members[1](image).numpy()) / 2
    np.testing.assert_allclose(
        ensemble.EnsembleEvaluator(members)(image), by_hand, rtol=1e-6, atol=1e-7
    )


def test_renormalized_feeds_each_member_its_own_normalisation():
    model = _model(0)
    pixels = np.random.default_rng(2).uniform(0, 255, (2, 227, 227, 3)).astype("float32")
    source = ([120.0, 110.0, 100.0], [60.0, 50.0, 40.0])
    target = ([123.68, 116.78, 103.94], [58.395, 57.12, 57.375])
    as_source = (pixels - source[0]) / source[1]
    as_target = (pixels - target[0]) / target[1]
    center = evaluation.CenterEvaluator(model)
    renormalized = ensemble.Renormalized(center, source, target)
    np.testing.assert_allclose(renormalized(as_source), center(as_target), rtol=1e-4, atol=1e-6)


def test_members_must_read_the_same_input():
    model = _model(0)
    with pytest.raises(ValueError, match="read different inputs"):
        ensemble.EnsembleEvaluator(
            [evaluation.CenterEvaluator(model), evaluation.TenViewEvaluator(model)]
        )
    with pytest.raises(ValueError, match="at least one member"):
        ensemble.EnsembleEvaluator([])


def _save(path, model, init="he", classes=CLASSES):
    kwargs = {"num_classes": len(classes), "width": 0.0625, "init": init}
    run_dir.save_model(str(path), model, build_kwargs=kwargs, class_names=classes)
    return str(path)


def test_model_dirs_with_different_normalisations(tmp_path):
    # "he" runs divide by ImageNet's std, "paper" runs do not (registry.normalization).
    a, b = _model(0), _model(1)
    dirs = [_save(tmp_path / "a", a, "he"), _save(tmp_path / "b", b, "paper")]
    models, configs = ensemble.restore_ensemble(dirs)
    assert configs[0]["std"] != configs[1]["std"]
    evaluator = ensemble.ensemble_evaluator(models, configs, "center")
    pixels = np.random.default_rng(3).uniform(0, 255, (2, 227, 227, 3)).astype("float32")

    def normalised(config):
        return ((pixels - config["mean"]) / config["std"]).astype("float32")

    by_hand = (
        _softmax(a(normalised(configs[0])).numpy()) + _softmax(b(normalised(configs[1])).numpy())
    ) / 2
    np.testing.assert_allclose(evaluator(normalised(configs[0])), by_hand, rtol=1e-4, atol=1e-6)


def test_mismatched_classes_or_input_sizes_are_one_line_errors(tmp_path):
    base = _save(tmp_path / "base", _model(0))
    other_classes = _save(tmp_path / "classes", _model(1), classes=["a", "b", "d"])
    zfnet = _save(tmp_path / "zfnet", _model(2, "zfnet"))
    cases = [
        (other_classes, "classes has 3 classes that differ from the 3 of .*base"),
        (zfnet, "zfnet takes 224 px inputs, .*base 227 px: ensemble members share"),
    ]
    for other, message in cases:
        with pytest.raises(ValueError, match=message) as error:
            ensemble.restore_ensemble([base, other])
        assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match="2 checkpoints given for 1 model dirs"):
        ensemble.restore_ensemble([base], [None, None])
