"""Conversion of image trees, the raw ILSVRC2012 tars or annotated detection data
(`pipelines.voc`, `pipelines.ilsvrc_det`) into sharded TFRecords.

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
from collections.abc import Iterable

from PIL import Image

from pipelines import annotations
from pipelines import shard_writer
from pipelines import sources
from pipelines import tfrecord_format
from pipelines.annotations import Box


@dataclasses.dataclass(frozen=True)
class ImageTask:
    """One image to convert: bytes [offset, offset + size) of `path` (size -1: whole
    file), its 0-based label and synset, its boxes with their 0-based labels (default:
    the image's) and PASCAL VOC `difficult` flags (default: none)."""

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
    box_labels: tuple[int, ...] = ()
    difficult: tuple[bool, ...] = ()


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
        encoded=encoded,
        filename=task.filename,
        label=task.label,
        synset=task.synset,
        text=task.text,
        height=height,
        width=width,
        boxes=task.boxes,
        box_labels=task.box_labels,
        difficult=task.difficult,
    )


def read_bbox_annotations(
    location: str | None, problems: annotations.Problems
) -> dict[str, annotations.Annotation]:
    """{image stem: annotation} from a directory tree or a .tar(.gz) of ImageNet XMLs;
    unreadable XMLs and bad boxes go to `problems`."""
    if not location:
        return {}
    found = {}
    if os.path.isdir(location):
        for directory, _, files in os.walk(location):
            for name in files:
                if name.endswith(".xml"):
                    parsed = annotations.read_annotation(os.path.join(directory, name), problems)
                    if parsed is not None:
                        found[name[:-4]] = parsed
        return found
    with tarfile.open(location) as archive:
        for member in archive:
            if member.isfile() and member.name.endswith(".xml"):
                parsed = annotations.parse_annotation(
                    archive.extractfile(member).read(), member.name, problems
                )
                if parsed is not None:
                    found[os.path.basename(member.name)[:-4]] = parsed
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


def tasks_from_tars(
    train_tar: str | None,
    val_tar: str | None,
    bbox_train: str | None,
    bbox_val: str | None,
    synset_words: str | None,
    resize_shorter: int,
    quality: int,
    problems: annotations.Problems | None = None,
) -> tuple[list[str], dict[str, list[ImageTask]]]:
    """Tasks of the raw ILSVRC2012 tars.

    Train labels come from the file names (`n01440764_10026.JPEG`); validation labels
    from the validation bbox XMLs (the image's label is its first object's; every box
    keeps its own), which are required with `val_tar`. XML problems go to `problems`
    (default: a fresh non-strict `Problems`).

    Returns:
      (sorted synsets = class names, {split: tasks}).
    """
    if val_tar and not bbox_val:
        raise ValueError("val_tar needs bbox_val: validation labels come from its XMLs")
    problems = problems or annotations.Problems()
    words = read_synset_words(synset_words)
    train_files = list(_members(train_tar)) if train_tar else []
    val_boxes = read_bbox_annotations(bbox_val, problems)
    synsets = sorted(
        {_stem(n).split("_")[0] for n, _, _ in train_files}
        or {a.names[0] for a in val_boxes.values() if a.names}
    )
    index = {s: i for i, s in enumerate(synsets)}
    train_boxes = read_bbox_annotations(bbox_train, problems)
    none = annotations.Annotation(0, 0, (), (), ())

    def task(path, name, offset, size, synset, found):
        known = [i for i, n in enumerate(found.names) if n in index]
        return ImageTask(
            path,
            offset,
            size,
            os.path.basename(name),
            index[synset],
            synset,
            words.get(synset, synset),
            tuple(found.boxes[i] for i in known),
            resize_shorter,
            quality,
            tuple(index[found.names[i]] for i in known),
        )

    splits = {"train": [], "validation": []}
    for name, offset, size in train_files:
        synset = _stem(name).split("_")[0]
        splits["train"].append(
            task(train_tar, name, offset, size, synset, train_boxes.get(_stem(name), none))
        )
    for name, offset, size in _members(val_tar) if val_tar else []:
        found = val_boxes.get(_stem(name), none)
        if not found.names or found.names[0] not in index:
            print(f"Skipping {name}: no label in {bbox_val}", file=sys.stderr)
            continue
        splits["validation"].append(task(val_tar, name, offset, size, found.names[0], found))
    return synsets, {s: t for s, t in splits.items() if t}


def tasks_from_annotations(
    images: dict[str, list[tuple[str, annotations.Annotation]]],
    words: dict[str, str],
    resize_shorter: int,
    quality: int,
    problems: annotations.Problems,
) -> tuple[list[str], dict[str, list[ImageTask]]]:
    """Tasks of annotated detection images, {split: [(image path, annotation)]}.

    The classes are the sorted object names of all splits. Every box keeps its label
    and `difficult` flag; the image's label is its first non-difficult object's (the
    first object's when all are difficult). Images without objects are skipped as a
    "no objects" problem (the record format needs an image label).

    Returns:
      (class names, {split: tasks}), splits without images left out.
    """
    synsets = sorted({n for items in images.values() for _, a in items for n in a.names})
    index = {s: i for i, s in enumerate(synsets)}
    splits = {}
    for split, items in images.items():
        tasks = []
        for path, found in items:
            if not found.names:
                problems.add("no objects", path, "skipped")
                continue
            first = next((n for n, d in zip(found.names, found.difficult) if not d), found.names[0])
            tasks.append(
                ImageTask(
                    path,
                    0,
                    -1,
                    os.path.basename(path),
                    index[first],
                    first,
                    words.get(first, first),
                    found.boxes,
                    resize_shorter,
                    quality,
                    tuple(index[n] for n in found.names),
                    found.difficult,
                )
            )
        if tasks:
            splits[split] = tasks
    return synsets, splits


def tasks_from_folder(
    root: str, resize_shorter: int, quality: int
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
            ImageTask(
                path,
                0,
                -1,
                os.path.basename(path),
                synsets.index(synset),
                synset,
                synset,
                (),
                resize_shorter,
                quality,
            )
            for synset, paths in tree.items()
            for path in paths
        ]
    return synsets, splits


def write_dataset(
    output_dir: str,
    synsets: list[str],
    splits: dict[str, list[ImageTask]],
    num_shards: dict[str, int],
    num_workers: int | None = None,
    seed: int = 12345,
) -> dict[str, int]:
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
            shard_writer.shard_paths(output_dir, split, shards), tasks, make_record, num_workers
        )
    texts = {t.synset: t.text for tasks in splits.values() for t in tasks}
    sources.write_labels_file(output_dir, [(s, texts.get(s, s)) for s in synsets])
    sources.write_counts_file(output_dir, counts)
    return counts
