"""PASCAL-style object annotation XMLs (VOC, ILSVRC CLS-LOC and DET), read with care.

One XML per image: `<size><width>/<height>`, then `<object>`s with `<name>`,
`<bndbox><xmin>/<ymin>/<xmax>/<ymax>` in pixels and, in VOC, `<difficult>`. Boxes are
normalised by the XML's image size to (ymin, xmin, ymax, xmax) in [0, 1].

Problems are counted and named, never a crash: an XML that does not parse or lacks its
size is skipped ("bad XML"); a box reaching outside its image is clipped to it, and
dropped when nothing is left ("box outside image"). With `strict` the first problem
raises `AnnotationError`, one line naming the file.
"""

import dataclasses
import xml.etree.ElementTree as ElementTree

Box = tuple[float, float, float, float]  # (ymin, xmin, ymax, xmax), normalised.


class AnnotationError(Exception):
    """A problem in strict mode: one line naming the file and what is wrong."""


class Problems:
    """Problems met while reading a data set: {kind: ["name: detail", ...]}.

    Args:
      strict: raise `AnnotationError` at the first problem instead of recording it.
    """

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.found: dict[str, list[str]] = {}

    def add(self, kind: str, name: str, detail: str) -> None:
        """Records (or, when strict, raises) one problem of `kind` in file `name`."""
        if self.strict:
            raise AnnotationError(f"{name}: {kind}: {detail}")
        self.found.setdefault(kind, []).append(f"{name}: {detail}")

    def counts(self) -> dict[str, int]:
        """{kind: number of problems}."""
        return {kind: len(items) for kind, items in self.found.items()}

    def summary(self, max_names: int = 5) -> str:
        """One line per kind: count, then the first `max_names` problems; "" if none."""
        lines = []
        for kind, items in sorted(self.found.items()):
            more = f"; ... {len(items) - max_names} more" if len(items) > max_names else ""
            lines.append(f"{kind}: {len(items)} ({'; '.join(items[:max_names])}{more})")
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One image's objects: class names, boxes [n] (normalised), difficult flags [n]."""

    height: int
    width: int
    names: tuple[str, ...]
    boxes: tuple[Box, ...]
    difficult: tuple[bool, ...]


def _number(element: ElementTree.Element, path: str) -> float:
    text = element.findtext(path)
    if text is None:
        raise ValueError(f"no <{path}>")
    return float(text)


def parse_annotation(
    xml_text: str | bytes, name: str, problems: Problems, pixel_offset: float = 0.0
) -> Annotation | None:
    """Parses one annotation XML; None (and a "bad XML" problem) when it cannot be read.

    Args:
      name: the file's name, used in problems.
      pixel_offset: subtracted from xmin / ymin before normalising. VOC numbers pixels
        from 1 and its boxes include both end pixels, so a VOC box covers
        [xmin - 1, xmax] (offset 1); ImageNet's XMLs are read as given (offset 0, as
        build_imagenet_data does).
    """
    try:
        root = ElementTree.fromstring(xml_text)
        width, height = _number(root, "size/width"), _number(root, "size/height")
        if width <= 0 or height <= 0:
            raise ValueError(f"image size {width:g}x{height:g}")
        objects = []
        for obj in root.iter("object"):
            label = (obj.findtext("name") or "").strip()
            if not label:
                raise ValueError("an <object> without <name>")
            corners = [_number(obj, f"bndbox/{k}") for k in ("ymin", "xmin", "ymax", "xmax")]
            difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "")
            objects.append((label, corners, difficult))
    except (ElementTree.ParseError, ValueError) as error:
        problems.add("bad XML", name, str(error))
        return None
    names, boxes, flags = [], [], []
    for label, (ymin, xmin, ymax, xmax), difficult in objects:
        raw = (
            (ymin - pixel_offset) / height,
            (xmin - pixel_offset) / width,
            ymax / height,
            xmax / width,
        )
        box = tuple(min(max(v, 0.0), 1.0) for v in raw)
        pixels = f"{label} box x {xmin:g}..{xmax:g}, y {ymin:g}..{ymax:g} in {width:g}x{height:g}"
        if not (box[2] > box[0] and box[3] > box[1]):
            problems.add("box outside image", name, f"{pixels} dropped")
            continue
        if box != raw:
            problems.add("box outside image", name, f"{pixels} clipped")
        names.append(label)
        boxes.append(box)
        flags.append(difficult)
    return Annotation(int(height), int(width), tuple(names), tuple(boxes), tuple(flags))


def read_annotation(path: str, problems: Problems, pixel_offset: float = 0.0) -> Annotation | None:
    """`parse_annotation` of a file; an unreadable file is a "bad XML" problem."""
    try:
        with open(path, "rb") as f:
            text = f.read()
    except OSError as error:
        problems.add("bad XML", path, error.strerror or str(error))
        return None
    return parse_annotation(text, path, problems, pixel_offset)
