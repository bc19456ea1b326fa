"""The ILSVRC 2013 / 2014 DET layout, read for conversion into detection splits.

Either layout, extracted (the DET train tar holds one tar per synset: extract those too):

    ROOT/Data/DET/{train,val}/.../<image>.JPEG           (ILSVRC 2014 onwards)
    ROOT/Annotations/DET/{train,val}/.../<image>.xml

    ROOT/ILSVRC2013_DET_{train,val}/.../<image>.JPEG     (ILSVRC 2013, 2014 tars)
    ROOT/ILSVRC2013_DET_bbox_{train,val}/.../<image>.xml

Each XML names its image by its path relative to the split's annotation folder.
Splits, so that nothing is tuned on the images whose figures are reported (the DET test
annotations are not public): `train` -> `detection_train`; `val` -> half of its images,
chosen by a hash of their name, `detection_tuning` (as R-CNN's val1 / val2), the other
half `detection_validation` (the reported split). Images without objects (DET's
negative images) are skipped and counted by `convert.tasks_from_annotations`.
"""

import glob
import os

from pipelines import annotations
from pipelines import voc

# The share of `val` held out for tuning.
TUNING_FRACTION = 0.5
_IMAGE_EXTENSIONS = (".JPEG", ".jpeg", ".jpg", ".JPG")


def split_folders(root: str) -> dict[str, tuple[str, str]]:
    """{"train" / "val": (image folder, annotation folder)} of an ILSVRC DET root.

    Raises:
      ValueError: naming the root and the layouts looked for when it has neither.
    """
    found = {}
    for split in ("train", "val"):
        candidates = [
            (
                os.path.join(root, "Data", "DET", split),
                os.path.join(root, "Annotations", "DET", split),
            )
        ]
        for xml_dir in sorted(glob.glob(os.path.join(root, f"ILSVRC20??_DET_bbox_{split}"))):
            candidates.append((xml_dir.replace("_bbox_", "_"), xml_dir))
        for images, xmls in candidates:
            if os.path.isdir(images) and os.path.isdir(xmls):
                found[split] = (images, xmls)
                break
    if not found:
        raise ValueError(
            f"{root} is not an ILSVRC DET folder: neither Data/DET/<split> with "
            "Annotations/DET/<split> nor ILSVRC20NN_DET_<split> with "
            "ILSVRC20NN_DET_bbox_<split> (split train or val)"
        )
    return found


def _image_path(images: str, relative_stem: str) -> str | None:
    for extension in _IMAGE_EXTENSIONS:
        path = os.path.join(images, relative_stem + extension)
        if os.path.exists(path):
            return path
    return None


def _read_split(
    images: str, xmls: str, problems: annotations.Problems
) -> list[tuple[str, annotations.Annotation]]:
    items = []
    for directory, _, files in sorted(os.walk(xmls)):
        for name in sorted(files):
            if not name.endswith(".xml"):
                continue
            xml = os.path.join(directory, name)
            stem = os.path.relpath(xml, xmls)[: -len(".xml")]
            image = _image_path(images, stem)
            if image is None:
                problems.add("missing image", xml, f"no {stem}.JPEG in {images}")
                continue
            found = annotations.read_annotation(xml, problems)
            if found is not None:
                items.append((image, found))
    return items


def read_ilsvrc_det(
    root: str, problems: annotations.Problems
) -> dict[str, list[tuple[str, annotations.Annotation]]]:
    """{output split: [(image path, annotation)]} of an ILSVRC DET root, by the rule in
    the module docstring; bad XMLs and missing images are recorded in `problems`."""
    splits = {}
    for split, (images, xmls) in split_folders(root).items():
        items = _read_split(images, xmls, problems)
        if split == "train":
            splits["detection_train"] = items
            continue
        tuning = [voc.held_out(os.path.basename(path), TUNING_FRACTION) for path, _ in items]
        splits[voc.TUNING_SPLIT] = [item for item, t in zip(items, tuning) if t]
        splits["detection_validation"] = [item for item, t in zip(items, tuning) if not t]
    return splits
