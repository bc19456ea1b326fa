"""Multi-scale evaluation resizes the original image to each scale (OverFeat section 3.3).

A 1000x750 image, stored losslessly, goes through the evaluation pipeline's "full" mode
(original resolution by default) and the dense evaluator at Table 5's largest scale,
461x569: the result is the classifier run on the original resized once to that scale
(`dense.resize_to_scale`), and not the old path that first resized the image to a
256 shorter side and then upsampled it.
"""

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
import pipelines
from overfeat_tf.evaluation import dense
from pipelines import testing, transforms

SCALE = (461, 569)  # OverFeat Table 5, scale 6


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """uint8 [750, 1000, 3]: 4-px blocks of noise, detail that a 256 resize loses."""
    blocks = np.random.default_rng(0).integers(0, 256, (750 // 5 + 1, 1000 // 5, 3))
    return np.kron(blocks, np.ones((5, 5, 1)))[:750].astype(np.uint8)


@pytest.fixture(scope="module")
def model():
    tf.keras.utils.set_random_seed(0)
    return overfeat_tf.build_model("overfeat_accurate", 3, width=0.0625, init="he", dropout=0.0)


def _pipeline_image(image: np.ndarray, tmp_path, **kwargs) -> tf.Tensor:
    """The image through `build_dataset(eval_mode="full")` from a TFRecord shard."""
    record = testing.example(testing.encode(image, "PNG"), "big.png", 0)
    testing.write_records(str(tmp_path), "validation", [record])
    source = pipelines.open_source(f"tfrecord:{tmp_path}")
    info = overfeat_tf.model_info("overfeat_accurate")
    batches = pipelines.build_dataset(
        source,
        "validation",
        batch_size=1,
        training=False,
        crop_size=info.input_size,
        mean=info.mean,
        std=info.std,
        eval_mode="full",
        **kwargs,
    )
    return next(iter(batches))[0]


def test_full_mode_keeps_the_original_resolution(image, tmp_path):
    info = overfeat_tf.model_info("overfeat_accurate")
    full = _pipeline_image(image, tmp_path)
    assert full.shape == (1, 750, 1000, 3)
    expected = (image.astype(np.float32) - np.float32(info.mean[0])) / np.float32(info.std[0])
    np.testing.assert_allclose(full[0], expected, rtol=1e-5, atol=1e-5)
    # The old behaviour stays available by name.
    assert _pipeline_image(image, tmp_path / "old", full_shorter_side=256).shape[1:3] == (256, 341)


def test_scale_461x569_is_the_original_resized_once(image, model, tmp_path):
    evaluator = dense.DenseEvaluator(model, scales=[SCALE], flips=False, xla="off")
    full = _pipeline_image(image, tmp_path)
    resized_once = dense.resize_to_scale(full, SCALE)
    assert resized_once.shape[1:3] == (461, 615)  # shorter side 461, 4:3 kept
    # The classifier's convolutions over the resized image (test_dense pins that these
    # maps are the classifier's windows).
    expected = evaluator.logit_map(resized_once)

    served = evaluator.score_maps(full)[0]
    np.testing.assert_allclose(served, tf.nn.softmax(expected), rtol=1e-5, atol=1e-6)

    # The 256 path upsamples a blurred copy: other maps.
    info = overfeat_tf.model_info("overfeat_accurate")
    small = transforms.preprocess_full(image, info.mean, info.std, 256)[tf.newaxis]
    upsampled = evaluator.logit_map(dense.resize_to_scale(small, SCALE))
    assert upsampled.shape == expected.shape
    assert np.max(np.abs(upsampled - expected)) > 100 * 1e-4 + 1e-3 * np.max(np.abs(expected))


def test_cap_at_the_largest_scale_keeps_that_scale_exact(image, model, tmp_path):
    """`full_max_shorter_side` bounds memory: a larger image is shrunk to the cap, a
    smaller one kept as it is, and the largest scale still sees the original resized
    once."""
    cap = dense.largest_shorter_side([(245, 245), SCALE])
    assert cap == 461
    capped = _pipeline_image(image, tmp_path / "capped", full_max_shorter_side=cap)
    assert capped.shape == (1, 461, 615, 3)
    full = _pipeline_image(image, tmp_path / "full")
    np.testing.assert_allclose(capped, dense.resize_to_scale(full, SCALE), rtol=1e-5, atol=1e-4)
    evaluator = dense.DenseEvaluator(model, scales=[SCALE], flips=False, xla="off")
    np.testing.assert_allclose(
        evaluator.score_maps(capped)[0], evaluator.score_maps(full)[0], rtol=1e-5, atol=1e-6
    )
    small = image[:300, :400]
    kept = _pipeline_image(small, tmp_path / "small", full_max_shorter_side=cap)
    np.testing.assert_allclose(kept[0], _pipeline_image(small, tmp_path / "small_full")[0])


def test_cap_needs_the_original_resolution(image, tmp_path):
    with pytest.raises(ValueError, match="full_max_shorter_side"):
        _pipeline_image(image, tmp_path, full_shorter_side=256, full_max_shorter_side=461)
    with pytest.raises(ValueError, match="full_max_shorter_side=0"):
        _pipeline_image(image, tmp_path / "zero", full_max_shorter_side=0)
