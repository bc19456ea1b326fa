"""Decoding: every format and ImageNet quirk, eagerly, in Dataset.map and in tf.map_fn."""

import numpy as np
import pytest
import tensorflow as tf

from pipelines import decode
from pipelines import rare
from pipelines import testing

IMAGE = testing.smooth_image(60, 80)
NOISE = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
GOOD = {
    "jpeg": testing.encode(IMAGE),
    "png": testing.encode(IMAGE, "PNG"),
    "gif": testing.encode(IMAGE, "GIF"),
    "bmp": testing.encode(IMAGE, "BMP"),
    "grayscale_jpeg": testing.encode(IMAGE, mode="L"),
    "cmyk_jpeg": testing.encode(IMAGE, mode="CMYK"),
}
# Max mean absolute error against IMAGE (GIF is palettised; grayscale loses colour).
QUIRKS = testing.quirky_images()
TOLERANCE = {"jpeg": 3, "png": 0, "gif": 12, "bmp": 0, "grayscale_jpeg": 40, "cmyk_jpeg": 3}


def _in_dataset_map(fn, value):
    return next(iter(tf.data.Dataset.from_tensors(value).map(fn)))


@pytest.mark.parametrize("run", ["eager", "dataset_map"])
@pytest.mark.parametrize("name", sorted(GOOD))
def test_decode_image_formats_to_rgb(name, run):
    encoded = tf.constant(GOOD[name])
    image = (
        decode.decode_image(encoded)
        if run == "eager"
        else _in_dataset_map(decode.decode_image, encoded)
    )
    assert image.dtype == tf.uint8 and image.shape == (60, 80, 3)
    assert np.abs(image.numpy().astype(float) - IMAGE).mean() <= TOLERANCE[name]


def test_decode_image_batch_with_map_fn_in_graph():
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def serve(batch):
        return tf.map_fn(
            decode.decode_image, batch, fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)
        )

    out = serve(tf.constant([GOOD["jpeg"], GOOD["cmyk_jpeg"], GOOD["png"]]))
    assert out.shape == (3, 60, 80, 3)


@pytest.mark.parametrize("bad", [b"", b"not an image at all"])
def test_decode_image_raises_invalid_argument_on_bad_bytes(bad):
    with pytest.raises(tf.errors.InvalidArgumentError):
        decode.decode_image(tf.constant(bad))


@pytest.mark.parametrize("stem", sorted(QUIRKS))
def test_check_encoded_flags_exactly_the_undecodable_quirks(stem):
    data, decodable = QUIRKS[stem]
    ok, reason = decode.check_encoded(tf.constant(data))
    ok_in_map, _ = _in_dataset_map(decode.check_encoded, tf.constant(data))
    assert bool(ok) == bool(ok_in_map) == decodable
    assert (reason.numpy() == b"") == decodable
    if decodable:
        assert decode.decode_image(tf.constant(data)).shape[2] == 3


def test_check_encoded_names_the_problem():
    reasons = {
        stem: decode.check_encoded(tf.constant(data))[1].numpy().decode()
        for stem, (data, _) in QUIRKS.items()
    }
    assert reasons["empty"] == "empty file"
    assert "truncated JPEG" in reasons["truncated"]
    assert "unknown" in decode.check_encoded(tf.constant(b"xyz123"))[1].numpy().decode()
    png = GOOD["png"]
    assert "truncated PNG" in decode.check_encoded(tf.constant(png[:-20]))[1].numpy().decode()


@pytest.mark.parametrize("name", ["jpeg", "png", "cmyk_jpeg", "grayscale_jpeg"])
def test_decode_window_reads_the_size_of_every_format(name):
    size, window, image = decode.decode_window(
        tf.constant(GOOD[name]), lambda size: tf.stack([0, 0, size[0] // 2, size[1]])
    )
    np.testing.assert_array_equal(size, [60, 80])
    np.testing.assert_array_equal(window, [0, 0, 30, 80])
    assert image.shape == (30, 80, 3)


@pytest.mark.parametrize("run", ["eager", "dataset_map"])
@pytest.mark.parametrize("fmt, mode", [("JPEG", None), ("PNG", None), ("JPEG", "CMYK")])
def test_decode_and_crop_matches_decode_then_crop(fmt, mode, run):
    encoded = tf.constant(testing.encode(NOISE, fmt, mode))
    window = tf.constant([10, 20, 30, 40])
    fn = lambda e: decode.decode_window(e, lambda size: window)[2]  # noqa: E731
    crop = fn(encoded) if run == "eager" else _in_dataset_map(fn, encoded)
    full = decode.decode_image(encoded).numpy()[10:40, 20:60]
    assert crop.shape == (30, 40, 3)
    # Exact but for the last column: libjpeg's chroma upsampling sees no right
    # neighbour there.
    np.testing.assert_array_equal(crop[:, :-1], full[:, :-1])
    assert np.abs(crop.numpy().astype(int) - full).max() <= 32


def test_rare_branch_gives_its_values_from_a_call_kept_out_of_line():
    """A `rare` branch computes what the branch computes, traced as one call to a
    function marked not to be inlined (TensorFlow instantiates such a function when the
    call first runs, not when an iterator over the pipeline is made)."""

    @tf.function(autograph=False)
    def pick(taken, x):
        return tf.cond(taken, lambda: x + 1.0, rare.rare(lambda: x * 3.0))

    assert float(pick(tf.constant(True), tf.constant(2.0))) == 3.0
    assert float(pick(tf.constant(False), tf.constant(2.0))) == 6.0
    graph = pick.get_concrete_function(tf.constant(True), tf.constant(2.0)).graph
    library = graph.as_graph_def().library.function
    marked = [f for f in library if f.attr["_noinline"].b]
    assert len(marked) == 1
    assert {node.op for node in marked[0].node_def} >= {"Mul"}
