"""Data that cannot train: unusable splits end, skips count files, decompression bombs."""

import struct
import threading
import zlib

import pytest
import tensorflow as tf

import pipelines
from pipelines import decode, testing

COMMON = dict(crop_size=32, mean=pipelines.IMAGENET_MEAN_RGB, std=(58.4, 57.1, 57.4))


def _png_header_only(height: int, width: int) -> bytes:
    """A PNG whose IHDR claims height x width; its (empty) data never decodes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "fmt, mode", [("JPEG", None), ("PNG", None), ("GIF", "P"), ("BMP", None), ("PNG", "L")]
)
def test_header_size_reads_each_format_without_decoding(fmt, mode):
    encoded = testing.encode(testing.smooth_image(37, 53), fmt, mode)
    assert decode.header_size(tf.constant(encoded)).numpy().tolist() == [37, 53]


def test_header_size_of_a_20000_pixel_square_png_header():
    size = decode.header_size(tf.constant(_png_header_only(20000, 20000)))
    assert size.numpy().tolist() == [20000, 20000]
    ok, reason = decode.check_encoded(tf.constant(_png_header_only(20000, 20000)), 40_000_000)
    assert not ok and b"20000x20000 pixels exceed the limit of 40000000" in reason.numpy()


def test_pixel_limit_defaults_to_40_megapixels():
    assert pipelines.constants.MAX_PIXELS == 40_000_000


def _folder(root, good: int, bad: int, large: int = 0):
    images = {"a": [], "b": []}
    for i in range(good):
        images["ab"[i % 2]].append(
            (f"g{i}.png", testing.encode(testing.smooth_image(40, 40, i), "PNG"))
        )
    for i in range(bad):
        images["ab"[i % 2]].append((f"bad{i}.jpg", b"not an image"))
    for i in range(large):
        images["ab"[i % 2]].append(
            (f"large{i}.png", testing.encode(testing.smooth_image(120, 100, i), "PNG"))
        )
    for split in ("train", "validation"):  # Both given: nothing is held out.
        testing.write_class_folder(str(root / split), images)
    return pipelines.open_source(f"folder:{root}")


def test_repeated_split_without_a_usable_image_ends(tmp_path):
    source = _folder(tmp_path, good=0, bad=3)
    ds = pipelines.build_dataset(
        source, "train", batch_size=2, training=True, seed=0, repeat=True, **COMMON
    )
    batches = []
    reader = threading.Thread(target=lambda: batches.extend(ds.take(5)), daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "the repeated split loops for ever"
    assert batches == []


def test_skip_count_counts_distinct_files_over_repeated_passes(tmp_path):
    source = _folder(tmp_path, good=4, bad=3)
    counter = pipelines.BadRecordCounter()
    ds = pipelines.build_dataset(
        source,
        "train",
        batch_size=2,
        training=True,
        seed=0,
        repeat=True,
        bad_records=counter,
        **COMMON,
    )
    assert len(list(ds.take(8))) == 8  # Four passes over the four good images.
    assert counter.value() == 3


def test_oversized_image_is_skipped_and_counted(tmp_path):
    source = _folder(tmp_path, good=3, bad=0, large=1)
    counter = pipelines.BadRecordCounter()
    ds = pipelines.build_dataset(
        source,
        "train",
        batch_size=1,
        training=False,
        bad_records=counter,
        max_pixels=10_000,
        **COMMON,
    )
    assert len(list(ds)) == 3 and counter.value() == 1


def test_oversized_image_in_strict_mode_names_the_file(tmp_path):
    source = _folder(tmp_path, good=1, bad=0, large=1)
    ds = pipelines.build_dataset(
        source, "train", batch_size=1, training=False, strict=True, max_pixels=10_000, **COMMON
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match="large0.png: 120x100 pixels"):
        list(ds)
