"""The PASCAL VOC 2007 / 2012 layout, read for conversion into detection splits.

    VOC2007/JPEGImages/000005.jpg
    VOC2007/Annotations/000005.xml
    VOC2007/ImageSets/Main/{train,val,trainval,test}.txt   (one image id per line)

Splits, so that nothing is tuned on the images whose figures are reported:

* with `test.txt` (VOC 2007): `train` -> `detection_train`, `val` ->
  `detection_tuning`, `test` -> `detection_validation` (the reported split);
* without it (VOC 2012, whose test annotations are not public): `train` ->
  `detection_train` less a tenth of its images, chosen by a hash of their id, which
  become `detection_tuning`; `val` -> `detection_validation`.

Every box keeps its class and `difficult` flag. VOC numbers pixels from 1, inclusive at
both ends (`annotations.parse_annotation`, offset 1). A missing annotation or image is
a problem, counted and named (`annotations.Problems`).
"""

import os
import zlib

from pipelines import annotations

SPLITS_WITH_TEST = {
    "train": "detection_train",
    "val": "detection_tuning",
    "test": "detection_validation",
}
SPLITS_WITHOUT_TEST = {"train": "detection_train", "val": "detection_validation"}
TUNING_SPLIT = "detection_tuning"
# Without test.txt: the share of `train` held out for tuning.
TUNING_FRACTION = 0.1
_PIXEL_OFFSET = 1.0


def _image_set(root: str, name: str) -> list[str] | None:
    """Image ids of ImageSets/Main/<name>.txt, None when the file does not exist."""
    path = os.path.join(root, "ImageSets", "Main", f"{name}.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def held_out(image_id: str, fraction: float) -> bool:
    """Whether a hash of `image_id` puts it in the held-out `fraction` (stable across
    runs, machines and orderings)."""
    return zlib.crc32(image_id.encode()) % 1000 < fraction * 1000


def split_ids(root: str) -> dict[str, list[str]]:
    """{output split: image ids} of a VOC root, by the rule in the module docstring.

    Raises:
      ValueError: naming the root when it has no ImageSets/Main/train.txt and val.txt.
    """
    sets = {name: _image_set(root, name) for name in ("train", "val", "test")}
    missing = [name for name in ("train", "val") if sets[name] is None]
    if missing:
        raise ValueError(
            f"{root} is not a PASCAL VOC folder: no ImageSets/Main/"
            f"{' or '.join(n + '.txt' for n in missing)}"
        )
    if sets["test"] is not None:
        return {SPLITS_WITH_TEST[name]: ids for name, ids in sets.items()}
    train = sets["train"]
    return {
        "detection_train": [i for i in train if not held_out(i, TUNING_FRACTION)],
        TUNING_SPLIT: [i for i in train if held_out(i, TUNING_FRACTION)],
        "detection_validation": sets["val"],
    }


def read_voc(
    root: str, problems: annotations.Problems
) -> dict[str, list[tuple[str, annotations.Annotation]]]:
    """{output split: [(image path, annotation)]} of a VOC root; images whose XML or
    JPEG is missing or bad are left out and recorded in `problems`."""
    splits = {}
    for split, ids in split_ids(root).items():
        items = []
        for image_id in ids:
            image = os.path.join(root, "JPEGImages", f"{image_id}.jpg")
            xml = os.path.join(root, "Annotations", f"{image_id}.xml")
            if not os.path.exists(image):
                problems.add("missing image", image, f"listed in ImageSets/Main for {split}")
                continue
            found = annotations.read_annotation(xml, problems, _PIXEL_OFFSET)
            if found is not None:
                items.append((image, found))
        splits[split] = items
    return splits
