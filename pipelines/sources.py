"""Where records come from: one `Source` interface, chosen by a spec string.

Every source yields the same record dicts (see `Source.records`), so the transforms
never know whether the bytes came from TFRecord shards, TFDS or a folder of files.
Sources shard by file per input pipeline when given a `tf.distribute.InputContext`
(by record when there are fewer files than pipelines) and never download anything.
"""

import abc
import hashlib
import json
import os

import tensorflow as tf

from pipelines import tfrecord_format

AUTOTUNE = tf.data.AUTOTUNE
LABELS_FILE = "labels.txt"  # One class per line: "synset<TAB>human-readable text".
COUNTS_FILE = "num_examples.json"  # {"train": 1281167, ...}
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".gif", ".bmp")
# A class-folder tree without a validation/ folder holds out this fraction of each class.
HOLDOUT_FRACTION = 0.1
_NUM_IMAGENET_CLASSES = 1000


class Source(abc.ABC):
    """A labelled image data set.

    Attributes:
      num_classes: number of classes; labels are 0 .. num_classes - 1.
      class_names: synsets or names, indexed by 0-based label.
      has_boxes: whether records carry object boxes.
      shuffles_fully: whether `records(shuffle_files=True)` already yields the records
        in a full random permutation (no record shuffle buffer is needed).
      validation_note: how the validation split was made, when not given by the data
        (one line for the binaries to print), else None.
    """

    num_classes: int
    class_names: list[str]
    has_boxes: bool
    shuffles_fully: bool = False
    validation_note: str | None = None

    @abc.abstractmethod
    def records(
        self,
        split: str,
        input_context: tf.distribute.InputContext | None = None,
        shuffle_files: bool = False,
        seed: int | None = None,
    ) -> tf.data.Dataset:
        """Dataset of record dicts for one split (`train`, `validation`, ...).

        Each element: {"encoded": tf.string [], "label": int32 [] 0-based,
        "boxes": float32 [n, 4] (ymin, xmin, ymax, xmax) normalised,
        "box_labels": int32 [n] 0-based, "difficult": bool [n] (PASCAL VOC's flag),
        "filename": tf.string []}. Image bytes are
        not decoded or validated and labels not range-checked: `build_dataset` does
        both, after the point where bad images are skipped.
        """

    @abc.abstractmethod
    def num_examples(self, split: str) -> int | None:
        """Number of records in `split`, or None when unknown without a full scan."""


def _empty_boxes(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    return {
        **record,
        "boxes": tf.zeros([0, 4], tf.float32),
        "box_labels": tf.zeros([0], tf.int32),
        "difficult": tf.zeros([0], tf.bool),
    }


def _shard(
    dataset: tf.data.Dataset, num_items: int, input_context: tf.distribute.InputContext | None
) -> tuple[tf.data.Dataset, bool]:
    """Shards a dataset of files per input pipeline.

    Returns (dataset, records_need_sharding): when there are fewer files than input
    pipelines the files are kept whole and the caller must shard records instead.
    """
    if input_context is None or input_context.num_input_pipelines == 1:
        return dataset, False
    if num_items < input_context.num_input_pipelines:
        return dataset, True
    return dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id), False


def _check_split(split: str, valid: list[str]) -> None:
    if split not in valid:
        raise ValueError(f"Unknown split {split!r}; valid splits: {valid}")


def read_labels_file(directory: str) -> list[tuple[str, str]] | None:
    """Reads (synset, text) pairs from `directory/labels.txt`, or None if absent."""
    path = os.path.join(directory, LABELS_FILE)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as f:
        rows = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return [(row[0], row[1] if len(row) > 1 else row[0]) for row in rows]


def write_labels_file(directory: str, classes: list[tuple[str, str]]) -> None:
    """Writes (synset, text) pairs to `directory/labels.txt`, index = 0-based label."""
    with tf.io.gfile.GFile(os.path.join(directory, LABELS_FILE), "w") as f:
        f.write("".join(f"{synset}\t{text}\n" for synset, text in classes))


def write_counts_file(directory: str, counts: dict[str, int]) -> None:
    """Writes the number of records per split next to the shards."""
    with tf.io.gfile.GFile(os.path.join(directory, COUNTS_FILE), "w") as f:
        json.dump(counts, f, indent=1, sort_keys=True)


class TFRecordSource(Source):
    """Sharded TFRecords in the build_imagenet_data format: `<dir>/<split>-*`.

    The splits are those with shards named `<split>-NNNNN-of-NNNNN` in the directory.

    Class names come from `<dir>/labels.txt` when present (written by the converter and
    the embedded generator); otherwise ImageNet's 1000 classes are assumed and named by
    their index, since build_imagenet_data writes no class list.
    """

    has_boxes = True

    def __init__(self, directory: str):
        self.directory = directory
        shards = tf.io.gfile.glob(os.path.join(directory, "*-[0-9][0-9][0-9][0-9][0-9]-of-*"))
        self.splits = sorted({os.path.basename(p).rsplit("-", 3)[0] for p in shards})
        classes = read_labels_file(directory)
        if classes is None:
            self.class_names = [str(i) for i in range(_NUM_IMAGENET_CLASSES)]
        else:
            self.class_names = [synset for synset, _ in classes]
        self.num_classes = len(self.class_names)

    def files(self, split: str) -> list[str]:
        """Sorted shard paths of `split`; raises ValueError when there are none."""
        _check_split(split, self.splits)
        pattern = os.path.join(self.directory, f"{split}-*")
        files = sorted(tf.io.gfile.glob(pattern))
        if not files:
            raise ValueError(f"No TFRecord shards match {pattern!r}")
        return files

    def records(self, split, input_context=None, shuffle_files=False, seed=None):
        files = self.files(split)
        dataset, shard_records = _shard(
            tf.data.Dataset.from_tensor_slices(files), len(files), input_context
        )
        if shuffle_files:
            dataset = dataset.shuffle(len(files), seed=seed)
        dataset = dataset.interleave(
            tf.data.TFRecordDataset,
            cycle_length=min(len(files), 16),
            num_parallel_calls=AUTOTUNE,
        )
        if shard_records:
            dataset = dataset.shard(
                input_context.num_input_pipelines, input_context.input_pipeline_id
            )
        return dataset.map(tfrecord_format.parse_record, num_parallel_calls=AUTOTUNE)

    def num_examples(self, split):
        _check_split(split, self.splits)
        path = os.path.join(self.directory, COUNTS_FILE)
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as f:
            return json.load(f).get(split)


def list_class_folder(root: str) -> dict[str, list[str]]:
    """{class folder name: sorted image paths} for a tree root/<class>/<image>."""
    classes = {}
    for name in sorted(tf.io.gfile.listdir(root)):
        name = name.rstrip("/")
        path = os.path.join(root, name)
        if not tf.io.gfile.isdir(path):
            continue
        classes[name] = sorted(
            os.path.join(path, f)
            for f in tf.io.gfile.listdir(path)
            if f.lower().endswith(IMAGE_EXTENSIONS)
        )
    if not classes:
        raise ValueError(f"No class sub-folders in {root!r}")
    return classes


def hold_out(
    paths: list[str], root: str, fraction: float = HOLDOUT_FRACTION
) -> tuple[list[str], list[str]]:
    """Splits one class's image paths into (train, held out).

    Holds out round(fraction * n) images, at least one when the class has two or more:
    those whose path relative to `root` has the smallest SHA-1, so the choice is the same
    on every machine and wherever the tree is mounted. Both lists sorted.
    """
    if len(paths) < 2:
        return sorted(paths), []
    count = max(1, round(fraction * len(paths)))
    ranked = sorted(paths, key=lambda p: hashlib.sha1(os.path.relpath(p, root).encode()).digest())
    return sorted(ranked[count:]), sorted(ranked[:count])


class FolderSource(Source):
    """Image files in class sub-folders named by synset (or any class name).

    `root/train/<class>/*` and `root/validation/<class>/*` when both sub-folders exist.
    Otherwise the tree is `root/train/<class>/*` (when `root/train` exists) or
    `root/<class>/*`, and its validation split is `HOLDOUT_FRACTION` of each class held
    out by `hold_out`, never trained on. Files are recognised by extension (.jpeg .jpg
    .png .gif .bmp, any case) and decoded by content. Labels follow the sorted class
    names of the train tree. No boxes.
    """

    has_boxes = False

    def __init__(self, root: str):
        if not tf.io.gfile.isdir(root):
            raise FileNotFoundError(f"No such directory: {root!r}")
        split_dirs = {s: os.path.join(root, s) for s in ("train", "validation")}
        if all(tf.io.gfile.isdir(d) for d in split_dirs.values()):
            self._trees = {s: list_class_folder(d) for s, d in split_dirs.items()}
        else:
            tree_root = split_dirs["train"] if tf.io.gfile.isdir(split_dirs["train"]) else root
            self._trees = {"train": {}, "validation": {}}
            for name, paths in list_class_folder(tree_root).items():
                train, held_out = hold_out(paths, tree_root)
                self._trees["train"][name] = train
                self._trees["validation"][name] = held_out
            self.validation_note = (
                f"{tree_root} has no validation/ folder: validating on "
                f"{sum(map(len, self._trees['validation'].values()))} images held out "
                f"({HOLDOUT_FRACTION:.0%} of each class, chosen by a hash of the file path)"
            )
        self.class_names = list(self._trees["train"])
        self.num_classes = len(self.class_names)
        unknown = sorted(set(self._trees["validation"]) - set(self.class_names))
        if unknown:
            raise ValueError(
                f"Validation classes {unknown} of {split_dirs['validation']!r} are not "
                f"in the train tree {split_dirs['train']!r}"
            )

    def _files_and_labels(self, split: str) -> tuple[list[str], list[int]]:
        _check_split(split, list(self._trees))
        files, labels = [], []
        for name, paths in self._trees[split].items():
            files += paths
            labels += [self.class_names.index(name)] * len(paths)
        return files, labels

    shuffles_fully = True  # one file per record, all shuffled

    def records(self, split, input_context=None, shuffle_files=False, seed=None):
        files, labels = self._files_and_labels(split)
        dataset = tf.data.Dataset.from_tensor_slices((files, tf.constant(labels, tf.int32)))
        if input_context is not None:  # Each file is one record: always shard files.
            dataset = dataset.shard(
                input_context.num_input_pipelines, input_context.input_pipeline_id
            )
        if shuffle_files:
            dataset = dataset.shuffle(len(files), seed=seed)

        def read(path: tf.Tensor, label: tf.Tensor) -> dict[str, tf.Tensor]:
            return _empty_boxes(
                {"encoded": tf.io.read_file(path), "label": label, "filename": path}
            )

        return dataset.map(read, num_parallel_calls=AUTOTUNE)

    def num_examples(self, split):
        return len(self._files_and_labels(split)[0])


class TFDSSource(Source):
    """A prepared TFDS image-classification data set, read with `download=False`.

    Images are read as encoded bytes (`tfds.decode.SkipDecoding`) so the same decode
    and fused crop apply. TFDS labels are already 0-based (imagenet2012: 0..999). The
    `validation` split maps to TFDS `test` for sets without a validation split. No
    boxes.
    """

    has_boxes = False

    def __init__(self, name: str, data_dir: str | None = None):
        import tensorflow_datasets as tfds  # Slow import; only needed for TFDS.

        self._tfds = tfds
        self.name = name
        self.builder = tfds.builder(name, data_dir=data_dir)
        features = self.builder.info.features
        self._image_key = self._feature_key(features, tfds.features.Image, "image")
        self._label_key = self._feature_key(features, tfds.features.ClassLabel, "class label")
        self.class_names = list(features[self._label_key].names)
        self.num_classes = len(self.class_names)

    def _feature_key(self, features, feature_type, what: str) -> str:
        keys = [k for k, v in features.items() if isinstance(v, feature_type)]
        if not keys:
            raise ValueError(
                f"TFDS data set {self.name!r} has no {what} feature; features: {list(features)}"
            )
        return keys[0]

    def _tfds_split(self, split: str) -> str:
        # Split metadata can be absent (e.g. under tfds.testing.mock_data): then the
        # names are passed through.
        available = list(self.builder.info.splits)
        if split == "validation" and "validation" not in available and "test" in available:
            return "test"
        if split not in ("train", "validation") or (available and split not in available):
            raise ValueError(
                f"Unknown split {split!r} for TFDS {self.name!r}; "
                f"valid splits: train, validation (available: {available})"
            )
        return split

    def records(self, split, input_context=None, shuffle_files=False, seed=None):
        tfds = self._tfds
        dataset = self.builder.as_dataset(
            split=self._tfds_split(split),
            shuffle_files=shuffle_files,
            decoders={self._image_key: tfds.decode.SkipDecoding()},
            read_config=tfds.ReadConfig(input_context=input_context, shuffle_seed=seed),
        )
        has_filename = "file_name" in self.builder.info.features

        def to_record(example: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
            return _empty_boxes(
                {
                    "encoded": example[self._image_key],
                    "label": tf.cast(example[self._label_key], tf.int32),
                    "filename": example["file_name"] if has_filename else tf.constant(""),
                }
            )

        return dataset.map(to_record, num_parallel_calls=AUTOTUNE)

    def num_examples(self, split):
        splits = self.builder.info.splits
        name = self._tfds_split(split)
        return splits[name].num_examples if name in splits else None


def _open_embedded(location: str, data_dir: str | None) -> Source:
    from pipelines import embedded  # Imports the generator only when needed.

    directory = embedded.ensure_embedded_dataset(data_dir or embedded.DEFAULT_DIR)
    return TFRecordSource(directory)


_SCHEMES = {
    "embedded": _open_embedded,
    "tfrecord": lambda location, data_dir: TFRecordSource(location),
    "tfds": lambda location, data_dir: TFDSSource(location, data_dir),
    "folder": lambda location, data_dir: FolderSource(location),
}


def open_source(spec: str, data_dir: str | None = None) -> Source:
    """Opens a data source from a spec string (the binaries' `--data` flag).

    Specs:
      `embedded`: the procedural data set of `pipelines.embedded`, generated into
        `data_dir` (default ./data/embedded) unless already there and complete.
        Splits train, validation, detection_train, detection_validation, and the
        threshold-tuning splits tuning and detection_tuning.
      `tfrecord:/dir`: `train-*` / `validation-*` shards in build_imagenet_data
        format, with an optional `labels.txt`.
      `tfds:NAME`: a prepared TFDS data set (e.g. `tfds:imagenet2012`) in `data_dir`
        (TFDS default when None); never downloads.
      `folder:/path`: `path/train/<class>/*` and `path/validation/<class>/*`, or one
        class-folder tree (`path/train/<class>/*` or `path/<class>/*`) whose validation
        split is a fixed 10 % of each class held out by a hash of the file path.

    Raises:
      ValueError: unknown scheme or missing location, naming the spec and valid schemes.
    """
    check_spec(spec)
    scheme, _, location = spec.partition(":")
    return _SCHEMES[scheme](location, data_dir)


def check_spec(spec: str) -> None:
    """Raises ValueError naming `spec` and the valid forms unless it is well formed."""
    scheme, _, location = spec.partition(":")
    if scheme not in _SCHEMES or (scheme != "embedded") == (not location):
        raise ValueError(
            f"Invalid data source spec {spec!r}; valid: 'embedded', 'tfrecord:/dir', "
            f"'tfds:NAME', 'folder:/path'"
        )
