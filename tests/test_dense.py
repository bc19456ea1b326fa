"""Dense multi-scale evaluation (OverFeat section 3.3)."""

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf.evaluation import dense
from overfeat_tf.models import classifier, trunk

NUM_CLASSES = 4
WIDTH = 0.0625


def _model(name, **kwargs):
    # He init keeps activations O(1) through a tiny-width net, so equalities are not
    # trivially met by all-zero maps.
    tf.keras.utils.set_random_seed(0)
    return overfeat_tf.build_model(name, NUM_CLASSES, WIDTH, init="he", **kwargs)


def _images(height, width, batch=1, seed=1):
    return tf.random.stateless_normal([batch, height, width, 3], [seed, 0])


@pytest.mark.parametrize("name", overfeat_tf.MODEL_NAMES)
def test_native_size_score_is_the_classifier_softmax(name):
    model = _model(name)
    size = overfeat_tf.native_input_size(name)
    evaluator = dense.DenseEvaluator(model, scales=[size], flips=False, xla="off")
    images = _images(size, size, batch=2)
    expected = tf.nn.softmax(model(images, training=False))
    np.testing.assert_allclose(evaluator(images), expected, atol=1e-5)
    assert evaluator.score_maps(images)[0].shape == (2, 1, 1, NUM_CLASSES)


def test_default_scales_are_the_papers_six():
    # OverFeat Table 5.
    assert dense.default_scales("overfeat_accurate") == (
        (245, 245),
        (281, 317),
        (317, 389),
        (389, 461),
        (425, 497),
        (461, 569),
    )


# OverFeat Table 5: input -> layer-5 pre-pool -> fine map. The
# paper prints 32x35 for scale 5, a misprint: its own 18x24 needs 32x38.
PAPER_MAPS = [
    ((245, 245), (17, 17), (3, 3)),
    ((281, 317), (20, 23), (6, 9)),
    ((317, 389), (23, 29), (9, 15)),
    ((389, 461), (29, 35), (15, 21)),
    ((425, 497), (32, 38), (18, 24)),
    ((461, 569), (35, 44), (21, 30)),
]


def test_paper_scales_give_the_papers_map_sizes():
    model = _model("overfeat_accurate")
    evaluator = dense.DenseEvaluator(model, flips=False, xla="off")
    coarse = dense.DenseEvaluator(model, fine_stride=False, flips=False, xla="off")
    features = trunk(model)
    for index, (scale, layer5, fine) in enumerate(PAPER_MAPS):
        images = _images(*scale)
        assert features(images).shape[1:3] == layer5
        assert evaluator.score_maps(images)[index].shape == (1, *fine, NUM_CLASSES)
        # All nine offsets give equal maps: the fine map is 3x the coarse one.
        coarse_map = coarse.score_maps(images)[index]
        assert coarse_map.shape == (1, fine[0] // 3, fine[1] // 3, NUM_CLASSES)


@pytest.mark.parametrize("name", overfeat_tf.MODEL_NAMES)
def test_default_scales_give_equal_maps_at_every_offset(name):
    model = _model(name)
    stride = overfeat_tf.model_info(name).last_pool.stride
    evaluator = dense.DenseEvaluator(model, flips=False, xla="off")
    for scale in evaluator.scales[:2]:
        fine = evaluator.logit_map(_images(*scale))
        assert fine.shape[1] % stride == 0 and fine.shape[2] % stride == 0, (scale, fine.shape)


@pytest.mark.parametrize("name", overfeat_tf.MODEL_NAMES)
def test_fine_map_offset_is_coarse_map_of_shifted_layer5(name):
    model = _model(name)
    info = overfeat_tf.model_info(name)
    s = info.last_pool.stride
    # A size that is no paper scale and not square: offsets give unequal map sizes.
    images = _images(info.input_size + 41, info.input_size + 58, batch=2)
    evaluator = dense.DenseEvaluator(model, scales=[info.input_size], flips=False, xla="off")
    fine = evaluator.logit_map(images).numpy()
    features = trunk(model)(images)
    head = classifier(model)
    for dy in range(s):
        for dx in range(s):
            expected = head(features[:, dy:, dx:]).numpy()
            offset = fine[:, dy::s, dx::s]
            if info.last_pool.ceil:
                # ZFNet's ceil pool may add one partial window per axis; dense keeps
                # whole windows only (documented in overfeat_tf.evaluation.dense).
                assert 0 <= expected.shape[1] - offset.shape[1] <= 1
                assert 0 <= expected.shape[2] - offset.shape[2] <= 1
                expected = expected[:, : offset.shape[1], : offset.shape[2]]
            assert offset.shape == expected.shape, (dy, dx)
            np.testing.assert_allclose(offset, expected, rtol=1e-4, atol=1e-4)
    # The offsets are different windows: interleaving them wrongly would fail above.
    assert not np.allclose(fine[:, 0::s, 0::s][:, :2, :2], fine[:, 1::s, 1::s][:, :2, :2])


@pytest.mark.parametrize("name", ["overfeat_accurate", "alexnet"])
def test_coarse_map_is_the_models_classifier_map(name):
    model = _model(name)
    size = overfeat_tf.native_input_size(name)
    images = _images(size + 77, size + 40)
    evaluator = dense.DenseEvaluator(
        model, scales=[size], fine_stride=False, flips=False, xla="off"
    )
    expected = classifier(model)(trunk(model)(images))
    np.testing.assert_allclose(evaluator.logit_map(images), expected, rtol=1e-4, atol=1e-4)
    assert evaluator.cell_stride == overfeat_tf.model_info(name).stride


def _symmetrise(model):
    """Makes every kernel left-right symmetric, so the network commutes with a flip."""
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            kernel = layer.kernel.numpy()
            layer.kernel.assign((kernel + kernel[:, ::-1]) / 2)


def test_flipping_the_input_flips_the_map():
    # At 245 + 36 k px every strided layer tiles the image exactly, so a mirror-symmetric
    # network maps the mirrored image to the mirrored map.
    model = _model("overfeat_accurate")
    _symmetrise(model)
    evaluator = dense.DenseEvaluator(model, scales=[(245, 281)], flips=False, xla="off")
    images = _images(245, 281)
    maps = evaluator.logit_map(images)
    mirrored = evaluator.logit_map(tf.reverse(images, axis=[2]))
    assert maps.shape == (1, 3, 6, NUM_CLASSES)
    assert not np.allclose(maps[:, :, 0], maps[:, :, -1], atol=1e-3)
    np.testing.assert_allclose(mirrored, tf.reverse(maps, axis=[2]), rtol=1e-4, atol=1e-4)


def test_flipped_view_is_the_mirror_images_map_mirrored_back():
    model = _model("overfeat_fast")
    evaluator = dense.DenseEvaluator(model, scales=[(247, 279)], flips=True, xla="off")
    assert evaluator.views == (((247, 279), False), ((247, 279), True))
    images = _images(247, 279)
    plain, flipped = evaluator.score_maps(images)
    mirror_plain, _ = evaluator.score_maps(tf.reverse(images, axis=[2]))
    np.testing.assert_allclose(flipped, tf.reverse(mirror_plain, axis=[2]), atol=1e-6)
    assert not np.allclose(plain, flipped, atol=1e-4)


def test_score_is_the_mean_over_views_of_the_spatial_max():
    model = _model("overfeat_fast")
    evaluator = dense.DenseEvaluator(model, scales=[231, (247, 279)], xla="off")
    images = _images(250, 300, batch=2)
    maps = evaluator.score_maps(images)
    assert len(maps) == 4
    expected = np.mean([m.numpy().max(axis=(1, 2)) for m in maps], axis=0)
    np.testing.assert_allclose(evaluator(images), expected, atol=1e-6)


def test_new_image_sizes_do_not_retrace():
    evaluator = dense.DenseEvaluator(_model("overfeat_fast"), scales=[231, 263], xla="off")
    evaluator(_images(240, 320))
    evaluator(_images(300, 250, batch=3))
    evaluator.score_maps(_images(240, 320))
    evaluator.score_maps(_images(260, 260, batch=2))
    assert evaluator._fn.experimental_get_tracing_count() == 1
    assert evaluator._maps_fn.experimental_get_tracing_count() == 1


def test_evaluator_reads_the_models_current_weights():
    model = _model("overfeat_fast")
    evaluator = dense.DenseEvaluator(model, scales=[231], xla="off")
    images = _images(260, 300)
    evaluator(images)
    last = model.get_layer("fc8")
    bias = np.zeros(NUM_CLASSES, np.float32)
    bias[2] = 100.0
    last.bias.assign(bias)
    np.testing.assert_allclose(evaluator(images)[0, 2], 1.0, atol=1e-6)


def test_resize_keeps_aspect_with_shorter_side_the_scales_smaller_side():
    landscape = dense.resize_to_scale(tf.zeros([2, 490, 570, 3]), (300, 245))
    portrait = dense.resize_to_scale(tf.zeros([1, 922, 461, 3]), (461, 569))
    exact = dense.resize_to_scale(tf.zeros([1, 922, 1138, 3]), (461, 569))
    assert landscape.shape == (2, 245, 285, 3)
    assert portrait.shape == (1, 922, 461, 3)
    assert exact.shape == (1, 461, 569, 3)


def test_scale_below_native_size_is_rejected():
    with pytest.raises(ValueError, match="received: \\(200, 300\\)"):
        dense.DenseEvaluator(_model("overfeat_accurate"), scales=[(200, 300)], xla="off")


def test_fine_cell_strides():
    # OverFeat section 3.3: 36 -> 12 px for accurate, 32 -> 16 px for fast.
    assert dense.fine_cell_stride("overfeat_accurate") == 12
    assert dense.fine_cell_stride("overfeat_fast") == 16
    assert dense.fine_cell_stride("alexnet") == 16


def test_parse_scales():
    parsed = dense.parse_scales(["245x245", " 281X317", "300"])
    assert parsed == [(245, 245), (281, 317), (300, 300)]
    for bad in ["2x3x4", "24y5", "", "-245"]:
        with pytest.raises(ValueError, match="is not HxW or S"):
            dense.parse_scales([bad])


def test_resize_to_the_same_size_returns_what_the_resize_would():
    images = tf.random.stateless_uniform([1, 37, 45, 3], [1, 2], maxval=255)
    same = dense.resize_to_scale(images, (37, 50))  # shorter side already 37
    resized = tf.image.resize(images, [37, 45], method="bilinear", antialias=True)
    np.testing.assert_array_equal(same.numpy(), resized.numpy())
    as_uint8 = dense.resize_to_scale(tf.cast(images, tf.uint8), (37, 37))
    assert as_uint8.dtype == tf.float32
