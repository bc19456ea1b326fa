"""The standard ImageNet TFRecord format (tensorflow/models `build_imagenet_data.py`).

`make_example` writes it (embedded generator, converter, tests); `parse_record` reads
it into the record dict every source yields. Labels are stored 1-based (0 unused, as in
build_imagenet_data) and returned 0-based.

One feature is added to the format: `image/object/difficult` (int64, one per box, 1 for
objects PASCAL VOC marks `difficult`), which detection evaluation ignores. Files without
it read as no difficult boxes.
"""

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

# Keys of the record dict yielded by every `Source.records`.
RECORD_KEYS = ("encoded", "label", "boxes", "box_labels", "difficult", "filename")

_FEATURES = {
    "image/encoded": tf.io.FixedLenFeature([], tf.string, default_value=""),
    "image/filename": tf.io.FixedLenFeature([], tf.string, default_value=""),
    # Missing labels parse as 0, which becomes -1 and fails the label check.
    "image/class/label": tf.io.FixedLenFeature([], tf.int64, default_value=0),
    "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32),
    "image/object/bbox/label": tf.io.VarLenFeature(tf.int64),
    "image/object/difficult": tf.io.VarLenFeature(tf.int64),
}


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parses one serialized tf.train.Example (tf.string scalar) into a record dict.

    Returns:
      {"encoded": tf.string [], "label": int32 [] 0-based (-1 when missing),
       "boxes": float32 [n, 4] (ymin, xmin, ymax, xmax) normalised to [0, 1],
       "box_labels": int32 [n] 0-based (the image label when the file has none),
       "difficult": bool [n] (all False when the file has no flags),
       "filename": tf.string []}. Labels are not range-checked here: the check runs
      after decoding so that skipping bad images never hides a bad label.
    """
    f = tf.io.parse_single_example(serialized, _FEATURES)
    coords = [
        tf.sparse.to_dense(f[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")
    ]
    boxes = tf.stack(coords, axis=1)
    label = tf.cast(f["image/class/label"], tf.int32) - 1
    box_labels = tf.cast(tf.sparse.to_dense(f["image/object/bbox/label"]), tf.int32) - 1
    # build_imagenet_data writes one bbox label per box; older files write none.
    box_labels = tf.cond(
        tf.size(box_labels) == tf.shape(boxes)[0],
        lambda: box_labels,
        lambda: tf.fill([tf.shape(boxes)[0]], label),
    )
    difficult = tf.sparse.to_dense(f["image/object/difficult"]) > 0
    difficult = tf.cond(
        tf.size(difficult) == tf.shape(boxes)[0],
        lambda: difficult,
        lambda: tf.zeros([tf.shape(boxes)[0]], tf.bool),
    )
    return {
        "encoded": f["image/encoded"],
        "label": label,
        "boxes": boxes,
        "box_labels": box_labels,
        "difficult": difficult,
        "filename": f["image/filename"],
    }


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64(values: Sequence[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values: Sequence[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_example(
    *,
    encoded: bytes,
    filename: str,
    label: int,
    synset: str,
    text: str,
    height: int,
    width: int,
    boxes: np.ndarray | Sequence[Sequence[float]] = (),
    box_labels: Sequence[int] = (),
    difficult: Sequence[bool] = (),
    image_format: str = "JPEG",
) -> bytes:
    """Serializes one image in the build_imagenet_data format.

    Args:
      encoded: the encoded image bytes.
      label: 0-based class index; stored as label + 1.
      boxes: [n, 4] (ymin, xmin, ymax, xmax) normalised to [0, 1].
      box_labels: [n] 0-based labels; stored + 1. Defaults to `label` for every box.
      difficult: [n] PASCAL VOC `difficult` flags; written only when some box is.

    Returns:
      The serialized tf.train.Example.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    box_labels = list(box_labels) or [label] * len(boxes)
    feature = {
        "image/height": _int64([height]),
        "image/width": _int64([width]),
        "image/colorspace": _bytes([b"RGB"]),
        "image/channels": _int64([3]),
        "image/class/label": _int64([label + 1]),
        "image/class/synset": _bytes([synset.encode()]),
        "image/class/text": _bytes([text.encode()]),
        "image/format": _bytes([image_format.encode()]),
        "image/filename": _bytes([filename.encode()]),
        "image/encoded": _bytes([encoded]),
        "image/object/bbox/ymin": _float(boxes[:, 0]),
        "image/object/bbox/xmin": _float(boxes[:, 1]),
        "image/object/bbox/ymax": _float(boxes[:, 2]),
        "image/object/bbox/xmax": _float(boxes[:, 3]),
        "image/object/bbox/label": _int64([b + 1 for b in box_labels]),
    }
    if any(difficult):
        if len(difficult) != len(boxes):
            raise ValueError(f"{filename}: {len(difficult)} difficult flags for {len(boxes)} boxes")
        feature["image/object/difficult"] = _int64(difficult)
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString()
