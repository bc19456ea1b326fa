"""Conversion of image trees or the raw ILSVRC2012 tars into sharded TFRecords.

Output: `<out>/train-NNNNN-of-NNNNN`, `validation-...` in the build_imagenet_data
format (`pipelines.tfrecord_format`) with `labels.txt` and `num_examples.json`. Work runs in
parallel worker processes (Pillow, no TensorFlow); CMYK, grayscale, palette and PNG
bytes named .JPEG become RGB JPEGs, and the shorter side can be resized once (e.g. to
256) so that training decodes small files. Unreadable images are skipped and named on
stderr. Tasks are shuffled with a fixed seed so every shard mixes classes.

Raw ILSVRC2012 tars are read in place: the train tar holds one uncompressed tar per
synset, so every image is a byte range of the outer file, found once by scanning the
headers, and workers read their ranges directly without extracting anything.
"""

import dataclasses
import io
import os
import random
import sys
import tarfile
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable

from PIL import Image

from pipelines import shard_writer
from pipelines import sources
from pipelines import tfrecord_format

Box = tuple[float, float, float, float]  # (ymin, xmin, ymax, xmax), normalised.


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """One image to convert: bytes [offset, offset + size) of `path` (size -1: whole
    file), its 0-based label and synset, and its boxes."""

    path: str
    offset: int
    size: int
    filename: str
    label: int
    synset: str
    text: str
    boxes: tuple[Box, ...] = ()
    resize_shorter: int = 0
    quality: int = 95


def read_bytes(task: ImageTask) -> bytes:
    """The encoded image of a task."""
    with open(task.path, "rb") as f:
        f.seek(task.offset)
        return f.read(task.size)


def to_rgb_jpeg(data: bytes, resize_shorter: int = 0, quality: int = 95) -> tuple[bytes, int, int]:
    """Returns (JPEG bytes, height, width) of an image, RGB.

    The original bytes are kept when they already are an RGB JPEG that needs no
    resize; otherwise the image is converted (CMYK, grayscale, palette, PNG, ...) and
    re-encoded. `resize_shorter` > 0 scales the shorter side down to it (never up).

    Raises:
      OSError or ValueError (from Pillow) when the bytes are not a complete image.
    """
    image = Image.open(io.BytesIO(data))
    image.load()  # Raises on truncated files.
    width, height = image.size
    scale = resize_shorter / min(width, height) if resize_shorter else 1.0
    if image.format == "JPEG" and image.mode == "RGB" and scale >= 1.0:
        return data, height, width
    image = image.convert("RGB")
    if scale < 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image = image.resize((width, height), Image.Resampling.BICUBIC, reducing_gap=3.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue(), height, width


def make_record(task: ImageTask) -> bytes | None:
    """Converts one task to a serialized Example; None (and a note on stderr) if the
    image cannot be read. Runs in worker processes."""
    try:
        encoded, height, width = to_rgb_jpeg(read_bytes(task), task.resize_shorter, task.quality)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        print(f"Skipping {task.filename} ({task.path}): {error}", file=sys.stderr)
        return None
    return tfrecord_format.make_example(
        encoded=encoded, filename=task.filename, label=task.label, synset=task.synset,
        text=task.text, height=height, width=width, boxes=task.boxes)


def parse_bbox_xml(xml_text: str) -> tuple[list[str], list[Box]]:
    """(synsets, boxes) of an ImageNet/PASCAL bbox XML; pixel coordinates are
    normalised by the XML's image size and clipped to [0, 1], as build_imagenet_data
    does."""
    root = ElementTree.fromstring(xml_text)
    width = float(root.findtext("size/width"))
    height = float(root.findtext("size/height"))
    names, boxes = [], []
    for obj in root.iter("object"):
        b = obj.find("bndbox")
        ymin, xmin, ymax, xmax = (float(b.findtext(k)) for k in ("ymin", "xmin", "ymax", "xmax"))
        clip = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731
        box = (clip(ymin / height), clip(xmin / width), clip(ymax / height), clip(xmax / width))
        if box[2] > box[0] and box[3] > box[1]:
            names.append(obj.findtext("name"))
            boxes.append(box)
    return names, boxes


def read_bbox_annotations(location: str | None) -> dict[str, tuple[list[str], list[Box]]]:
    """{image stem: (synsets, boxes)} from a directory tree or a .tar(.gz) of XMLs."""
    if not location:
        return {}
    found = {}
    if os.path.isdir(location):
        for directory, _, files in os.walk(location):
            for name in files:
                if name.endswith(".xml"):
                    with open(os.path.join(directory, name)) as f:
                        found[name[:-4]] = parse_bbox_xml(f.read())
        return found
    with tarfile.open(location) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".xml"):
                text = archive.extractfile(member).read().decode()
                found[os.path.basename(member.name)[:-4]] = parse_bbox_xml(text)
    return found


def read_synset_words(path: str | None) -> dict[str, str]:
    """{synset: text} from `synset_words.txt` ("n01440764 tench, Tinca tinca") or
    imagenet_metadata.txt (tab-separated); empty without a file."""
    if not path:
        return {}
    words = {}
    with open(path) as f:
        for line in f:
            synset, _, text = line.strip().replace("\t", " ").partition(" ")
            if synset:
                words[synset] = text.strip()
    return words


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0]


def _members(path: str) -> Iterable[tuple[str, int, int]]:
    """(name, absolute offset, size) of the files in an uncompressed tar, descending
    one level into member tars (the ILSVRC2012 train tar holds one tar per synset)."""
    with tarfile.open(path, "r:") as outer:
        for member in outer:
            if not member.isfile():
                continue
            if member.name.endswith(".tar"):
                with tarfile.open(fileobj=outer.extractfile(member), mode="r:") as inner:
                    for m in inner:
                        if m.isfile():
                            yield m.name, member.offset_data + m.offset_data, m.size
            else:
                yield member.name, member.offset_data, member.size


def tasks_from_tars(train_tar: str | None, val_tar: str | None, bbox_train: str | None,
                    bbox_val: str | None, synset_words: str | None, resize_shorter: int,
                    quality: int) -> tuple[list[str], dict[str, list[ImageTask]]]:
    """Tasks of the raw ILSVRC2012 tars.

    Train labels come from the file names (`n01440764_10026.JPEG`); validation labels
    from the validation bbox XMLs (first object), which are required with `val_tar`.

    Returns:
      (sorted synsets = class names, {split: tasks}).
    """
    if val_tar and not bbox_val:
        raise ValueError("val_tar needs bbox_val: validation labels come from its XMLs")
    words = read_synset_words(synset_words)
    train_files = list(_members(train_tar)) if train_tar else []
    val_boxes = read_bbox_annotations(bbox_val)
    synsets = sorted({_stem(n).split("_")[0] for n, _, _ in train_files}
                     or {names[0] for names, _ in val_boxes.values() if names})
    index = {s: i for i, s in enumerate(synsets)}
    train_boxes = read_bbox_annotations(bbox_train)

    def task(path, name, offset, size, synset, boxes):
        return ImageTask(path, offset, size, os.path.basename(name), index[synset], synset,
                         words.get(synset, synset), tuple(boxes), resize_shorter, quality)

    splits = {"train": [], "validation": []}
    for name, offset, size in train_files:
        synset = _stem(name).split("_")[0]
        splits["train"].append(task(train_tar, name, offset, size, synset,
                                    train_boxes.get(_stem(name), ([], []))[1]))
    for name, offset, size in (_members(val_tar) if val_tar else []):
        names, boxes = val_boxes.get(_stem(name), ([], []))
        if not names or names[0] not in index:
            print(f"Skipping {name}: no label in {bbox_val}", file=sys.stderr)
            continue
        splits["validation"].append(task(val_tar, name, offset, size, names[0], boxes))
    return synsets, {s: t for s, t in splits.items() if t}


def tasks_from_folder(root: str, resize_shorter: int, quality: int
                      ) -> tuple[list[str], dict[str, list[ImageTask]]]:
    """Tasks of a class-folder tree (`FolderSource` layout). With train/ and
    validation/ sub-folders both splits are converted; a single tree becomes `train`."""
    layout = {s: os.path.join(root, s) for s in ("train", "validation")}
    if not all(os.path.isdir(d) for d in layout.values()):
        layout = {"train": root}
    trees = {s: sources.list_class_folder(d) for s, d in layout.items()}
    synsets = list(trees["train"])
    splits = {}
    for split, tree in trees.items():
        splits[split] = [
            ImageTask(path, 0, -1, os.path.basename(path), synsets.index(synset), synset,
                      synset, (), resize_shorter, quality)
            for synset, paths in tree.items() for path in paths
        ]
    return synsets, splits


def write_dataset(output_dir: str, synsets: list[str], splits: dict[str, list[ImageTask]],
                  num_shards: dict[str, int], num_workers: int | None = None,
                  seed: int = 12345) -> dict[str, int]:
    """Shuffles each split's tasks (fixed seed) and writes its shards in parallel.

    Returns:
      {split: records written} (also saved as num_examples.json).
    """
    os.makedirs(output_dir, exist_ok=True)
    counts = {}
    for split, tasks in splits.items():
        tasks = list(tasks)
        random.Random(seed).shuffle(tasks)
        shards = max(1, min(num_shards[split], len(tasks)))
        counts[split] = shard_writer.write_shards(
            shard_writer.shard_paths(output_dir, split, shards), tasks, make_record, num_workers)
    texts = {t.synset: t.text for tasks in splits.values() for t in tasks}
    sources.write_labels_file(output_dir, [(s, texts.get(s, s)) for s in synsets])
    sources.write_counts_file(output_dir, counts)
    return counts
