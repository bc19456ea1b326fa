"""Decoding of encoded image bytes into uint8 RGB, separate from record parsing.

Everything here is pure TensorFlow (no py_function) so that `export/` can put
`decode_image` into a serving graph, and so that it runs inside `Dataset.map`.
ImageNet quirks handled: CMYK and grayscale JPEGs decode to RGB
with `channels=3`; PNG bytes in a `.JPEG` file are recognised by their magic number,
not their name, so the fused JPEG crop is only used on real JPEGs.
"""

from collections.abc import Callable

import tensorflow as tf

from pipelines.rare import rare

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_EOI = b"\xff\xd9"
# A JPEG whose end-of-image marker is not within this many bytes of the end is treated
# as truncated (the entropy-coded data never contains 0xFFD9).
_JPEG_TAIL_BYTES = 64
_KNOWN_MAGICS = (_JPEG_MAGIC, _PNG_MAGIC, b"GIF8", b"BM")
# Header bytes read by `header_size` (BMP's size fields end at byte 26).
_HEADER_BYTES = 32


def is_jpeg(encoded: tf.Tensor) -> tf.Tensor:
    """Returns a bool scalar: whether `encoded` (tf.string scalar) starts like a JPEG."""
    return tf.equal(tf.strings.substr(encoded, 0, 3), _JPEG_MAGIC)


def _tail_has_eoi(encoded: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """Whether 0xFFD9 occurs in the last _JPEG_TAIL_BYTES bytes (trailing data after
    the end-of-image marker is legal)."""
    start = tf.maximum(length - _JPEG_TAIL_BYTES, 0)
    tail = tf.strings.bytes_split(tf.strings.substr(encoded, start, _JPEG_TAIL_BYTES))
    return tf.reduce_any(tf.logical_and(tail[:-1] == _JPEG_EOI[:1], tail[1:] == _JPEG_EOI[1:]))


def _problem(encoded: tf.Tensor, length: tf.Tensor) -> tf.Tensor:
    """tf.string scalar naming what is wrong with bytes that failed the fast check."""
    head = tf.strings.substr(encoded, 0, 4)
    known = tf.reduce_any([tf.strings.substr(head, 0, len(m)) == m for m in _KNOWN_MAGICS])
    checks = [
        (length == 0, "empty file"),
        (tf.logical_not(known), "unknown image format (not JPEG, PNG, GIF or BMP)"),
        (is_jpeg(encoded), "truncated JPEG (no end-of-image marker)"),
        (head == _PNG_MAGIC, "truncated PNG (no IEND chunk)"),
    ]
    reason = tf.constant("")
    for failed, message in reversed(checks):  # The first failing check wins.
        reason = tf.where(failed, message, reason)
    return reason


def _read_uint(header: tf.Tensor, offset: int, size: int, big_endian: bool) -> tf.Tensor:
    """int64 scalar: the unsigned integer of `size` bytes at `offset` of `header`."""
    raw = tf.io.decode_raw(tf.strings.substr(header, offset, size), tf.uint8, fixed_length=size)
    weights = [256**i for i in range(size)]
    return tf.reduce_sum(tf.cast(raw, tf.int64) * (weights[::-1] if big_endian else weights))


def header_size(encoded: tf.Tensor) -> tf.Tensor:
    """int64 [2] (height, width) read from a JPEG, PNG, GIF or BMP header, without decoding.

    JPEG: its start-of-frame segment (`extract_jpeg_shape`, libjpeg's header reader);
    PNG: the IHDR chunk (big-endian, bytes 16-23); GIF: the logical screen (little-endian
    16-bit, bytes 6-9), the canvas every frame is decoded into; BMP: the info header
    (little-endian, bytes 18-25; a negative height means top-down rows). [0, 0] for any
    other bytes. JPEGs take a path of their own: the other formats' reads cost the
    training pipeline more than the JPEG header itself.
    """
    return tf.cond(
        is_jpeg(encoded),
        lambda: tf.cast(tf.image.extract_jpeg_shape(encoded)[:2], tf.int64),
        rare(lambda: _other_header_size(encoded)),
    )


def _other_header_size(encoded: tf.Tensor) -> tf.Tensor:
    """`header_size` of PNG, GIF or BMP bytes; [0, 0] for any other bytes."""
    # Padded, so that reading past the end of a short file gives zeros, not an error.
    header = tf.strings.join([tf.strings.substr(encoded, 0, _HEADER_BYTES), b"\0" * _HEADER_BYTES])
    head = tf.strings.substr(header, 0, 4)

    def bmp() -> tf.Tensor:
        core = _read_uint(header, 14, 4, big_endian=False) == 12  # OS/2 BITMAPCOREHEADER
        width = tf.where(core, _read_uint(header, 18, 2, False), _read_uint(header, 18, 4, False))
        height = tf.where(core, _read_uint(header, 20, 2, False), _read_uint(header, 22, 4, False))
        height = tf.where(height >= 2**31, 2**32 - height, height)  # int32 sign
        return tf.stack([height, width])

    branches = [
        (
            head == _PNG_MAGIC,
            lambda: tf.stack([_read_uint(header, 20, 4, True), _read_uint(header, 16, 4, True)]),
        ),
        (
            head == b"GIF8",
            lambda: tf.stack([_read_uint(header, 8, 2, False), _read_uint(header, 6, 2, False)]),
        ),
        (tf.strings.substr(head, 0, 2) == b"BM", bmp),
    ]
    index = tf.constant(len(branches))
    for i, (matches, _) in reversed(list(enumerate(branches))):  # The first match wins.
        index = tf.where(matches, i, index)
    return tf.switch_case(
        index, [fn for _, fn in branches], default=lambda: tf.zeros([2], tf.int64)
    )


def check_encoded(encoded: tf.Tensor, max_pixels: int | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """Cheap validity check of encoded image bytes, without decoding.

    Catches empty files, unknown formats, JPEGs without their end-of-image marker
    (truncated), PNGs without their IEND chunk (truncated) and, with `max_pixels`,
    images whose header promises more pixels (a decompression bomb). Bytes that pass
    can still be corrupt inside; `build_dataset` skips those after decoding fails.

    Args:
      encoded: tf.string scalar.
      max_pixels: refuse images of more than this many pixels (height x width, from
        `header_size`); None: no limit.

    Returns:
      (ok, reason): a bool scalar and a tf.string scalar, empty when `ok` and
      otherwise naming the problem. The common case costs a handful of ops; the reason
      is only worked out for bytes that fail.
    """
    length = tf.strings.length(encoded)
    jpeg = is_jpeg(encoded)
    ends = tf.strings.substr(encoded, tf.maximum(length - 8, 0), 8)
    last_two = tf.strings.substr(ends, tf.maximum(tf.strings.length(ends) - 2, 0), 2)
    complete_jpeg = tf.cond(
        last_two == _JPEG_EOI,
        lambda: tf.constant(True),
        rare(lambda: _tail_has_eoi(encoded, length)),
    )
    head = tf.strings.substr(encoded, 0, 4)
    bytes_ok = tf.logical_or(
        tf.logical_and(jpeg, complete_jpeg),
        tf.logical_or(
            tf.logical_and(head == _PNG_MAGIC, ends == _PNG_END),
            tf.logical_or(head == b"GIF8", tf.strings.substr(head, 0, 2) == b"BM"),
        ),
    )
    ok = bytes_ok
    if max_pixels is not None:
        # The header is read only from bytes that passed (a JPEG without a frame header
        # has no size to read).
        size = tf.cond(bytes_ok, lambda: header_size(encoded), lambda: tf.zeros([2], tf.int64))
        ok = tf.logical_and(bytes_ok, size[0] * size[1] <= max_pixels)

    def problem() -> tf.Tensor:
        reason = _problem(encoded, length)
        if max_pixels is None:
            return reason
        too_large = tf.strings.format(
            "{}x{} pixels exceed the limit of " + str(max_pixels), (size[0], size[1])
        )
        return tf.where(bytes_ok, too_large, reason)

    return ok, tf.cond(ok, lambda: tf.constant(""), rare(problem))


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG, PNG, GIF (first frame) or BMP bytes to RGB.

    Grayscale, palette and CMYK images are converted to RGB; 16-bit PNGs are scaled to
    8 bits. Pure TF ops: usable in serving graphs, `tf.map_fn` and `Dataset.map`.

    Args:
      encoded: tf.string scalar holding the encoded image.

    Returns:
      uint8 tensor [height, width, 3].

    Raises:
      tf.errors.InvalidArgumentError: on empty, unknown or corrupt bytes.
    """
    image = tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def decode_window(
    encoded: tf.Tensor, window_of: Callable[[tf.Tensor], tf.Tensor]
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Decodes only a window of an image, the window chosen from the image's size: the
    fused fast path for JPEGs, which reads the size from the header
    (`extract_jpeg_shape`, which fails on PNG and reports 4 channels for CMYK, hence the
    format test) and decodes only the window; other formats (PNG named .JPEG, GIF, BMP)
    decode once, then crop. One branch on the format.

    Args:
      encoded: tf.string scalar.
      window_of: int32 [2] (height, width) -> int32 [4] (offset_y, offset_x, height,
        width), a window inside the image.

    Returns:
      (size int32 [2], window int32 [4], uint8 [window height, window width, 3]): the
      pixels of cropping `decode_image` (a JPEG's fused decode may differ in the
      window's last column, where chroma upsampling sees no right neighbour).
    """

    def fused():
        size = tf.image.extract_jpeg_shape(encoded)[:2]
        window = window_of(size)
        return size, window, tf.io.decode_and_crop_jpeg(encoded, window, channels=3)

    def fallback():
        image = decode_image(encoded)
        size = tf.shape(image)[:2]
        window = window_of(size)
        crop = tf.image.crop_to_bounding_box(image, window[0], window[1], window[2], window[3])
        return size, window, crop

    size, window, image = tf.cond(is_jpeg(encoded), fused, rare(fallback))
    image.set_shape([None, None, 3])
    return size, window, image
