"""The embedded data set: procedurally drawn shapes in the ImageNet TFRecord format.

What the project trains on when the user names no data, and what the tests use.
Twelve classes that differ by shape (`shapes.CLASS_NAMES`), drawn at varied size,
position, aspect and rotation on cluttered backgrounds; images 256-320 px a side.
Classification splits hold one object per image (45-80% of the shorter side, so it
stays recognisable in a 227 crop); detection splits hold 1-4 non-overlapping objects
(25-50%). Boxes are tight around the drawn pixels. Generation is deterministic: the
same config gives the same bytes.

Tuning splits. `tuning` (drawn like `validation`) and `detection_tuning` (drawn like
`detection_validation`) are where localization's and detection's merge, score and
suppression thresholds are chosen (`overfeat_tf.detection.tuning`); `validation` and
`detection_validation` are where the reported figures are measured, on images the
thresholds never saw. Each split draws from its own seed, so adding the tuning splits
left the bytes of the others unchanged.
"""

import dataclasses
import json
import os
import shutil

import numpy as np
import tensorflow as tf

from pipelines import shapes
from pipelines import shard_writer
from pipelines import sources
from pipelines import tfrecord_format

DEFAULT_DIR = os.path.join("data", "embedded")
SPLITS = (
    "train",
    "validation",
    "detection_train",
    "detection_validation",
    "tuning",
    "detection_tuning",
)
CLASS_NAMES = shapes.CLASS_NAMES
_MARKER = "COMPLETE"
_VERSION = 4  # Bump when drawing, splits or default sizes change: stale copies regenerate.


@dataclasses.dataclass(frozen=True)
class EmbeddedConfig:
    """Sizes of the embedded data set (images per split), its classes and its seed.

    `num_classes` keeps the first classes of `CLASS_NAMES` only (the default: all 12).
    """

    train: int = 9000
    validation: int = 500
    detection_train: int = 1000
    detection_validation: int = 300
    tuning: int = 200
    detection_tuning: int = 200
    seed: int = 0
    images_per_shard: int = 400
    num_classes: int = len(CLASS_NAMES)

    def split_sizes(self) -> dict[str, int]:
        return {split: getattr(self, split) for split in SPLITS}


def _make_record(task: tuple[int, int, str, int, int]) -> bytes:
    """Draws image `index` of split number `split_id`; runs in a worker process."""
    seed, split_id, split, index, num_classes = task
    rng = np.random.default_rng([seed, split_id, index])
    detection = split.startswith("detection")  # detection_train, _validation, _tuning
    num_objects = int(rng.integers(1, 5)) if detection else 1
    size_range = (0.25, 0.5) if detection else (0.45, 0.8)
    encoded, height, width, boxes, labels = shapes.render(rng, num_objects, size_range, num_classes)
    name = CLASS_NAMES[labels[0]]
    return tfrecord_format.make_example(
        encoded=encoded,
        filename=f"{split}_{index:06d}.JPEG",
        label=labels[0],
        synset=name,
        text=name,
        height=height,
        width=width,
        boxes=boxes,
        box_labels=labels,
    )


def generate(
    directory: str, config: EmbeddedConfig = EmbeddedConfig(), num_workers: int | None = None
) -> None:
    """Writes the data set into `directory` (created; existing shards overwritten)."""
    tf.io.gfile.makedirs(directory)
    for split_id, (split, count) in enumerate(config.split_sizes().items()):
        num_shards = max(1, -(-count // config.images_per_shard))
        tasks = [(config.seed, split_id, split, i, config.num_classes) for i in range(count)]
        shard_writer.write_shards(
            shard_writer.shard_paths(directory, split, num_shards), tasks, _make_record, num_workers
        )
    sources.write_labels_file(directory, [(n, n) for n in CLASS_NAMES[: config.num_classes]])
    sources.write_counts_file(directory, config.split_sizes())


def _marker_text(config: EmbeddedConfig) -> str:
    return json.dumps({"version": _VERSION, **dataclasses.asdict(config)}, sort_keys=True)


def _complete_config(directory: str) -> EmbeddedConfig | None:
    """The config of a complete data set of the current version in `directory`."""
    marker = os.path.join(directory, _MARKER)
    if not tf.io.gfile.exists(marker):
        return None
    with tf.io.gfile.GFile(marker) as f:
        fields = json.loads(f.read())
    if fields.pop("version", None) != _VERSION:
        return None
    return EmbeddedConfig(**fields)


def _is_ours(directory: str) -> bool:
    """Whether every file in `directory` is one the generator writes."""
    names = tf.io.gfile.listdir(directory)
    ours = (_MARKER, sources.LABELS_FILE, sources.COUNTS_FILE)
    return all(n in ours or n.split("-")[0] in SPLITS for n in names)


def ensure_embedded_dataset(data_dir: str, config: EmbeddedConfig | None = None) -> str:
    """Returns `data_dir` holding the complete embedded data set, generating it if needed.

    Args:
      data_dir: directory of the shards (created).
      config: sizes and seed. None: reuse any complete set already in `data_dir`, else
        generate the default `EmbeddedConfig()`. Given: reuse only a set made with it.

    Generates into a temporary sibling directory and renames it, so an interrupted or
    concurrent run never leaves a half-written set behind.

    Raises:
      ValueError: `data_dir` exists and holds files the generator does not write.
    """
    existing = _complete_config(data_dir)
    if existing is not None and config in (None, existing):
        return data_dir
    config = config or EmbeddedConfig()
    if tf.io.gfile.exists(data_dir) and not _is_ours(data_dir):
        raise ValueError(
            f"data_dir {data_dir!r} exists and is not an embedded data set; "
            f"name an empty or new directory"
        )
    tmp = f"{data_dir.rstrip('/')}.tmp-{os.getpid()}"
    generate(tmp, config)
    with tf.io.gfile.GFile(os.path.join(tmp, _MARKER), "w") as f:
        f.write(_marker_text(config))
    if tf.io.gfile.exists(data_dir):
        shutil.rmtree(data_dir)
    os.replace(tmp, data_dir)
    return data_dir
