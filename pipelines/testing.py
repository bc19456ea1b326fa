"""Real-format test data: encoded images, the ImageNet quirks, shards and folder trees.

Used by the tests and the benchmark; everything is generated locally, nothing is
downloaded. Images are encoded with Pillow (JPEG, PNG, CMYK and grayscale JPEG).
"""

import io
import os

import numpy as np
from PIL import Image

from pipelines import embedded
from pipelines import shard_writer
from pipelines import tfrecord_format

# A tiny embedded data set for tests: seconds to generate.
TINY_EMBEDDED = embedded.EmbeddedConfig(
    train=48,
    validation=16,
    detection_train=16,
    detection_validation=8,
    tuning=8,
    detection_tuning=8,
    images_per_shard=12,
)


def encode(
    array: np.ndarray, fmt: str = "JPEG", mode: str | None = None, quality: int = 90
) -> bytes:
    """Encodes uint8 [h, w, 3] (or [h, w]) as `fmt`, after converting to `mode`
    (e.g. "CMYK", "L") when given."""
    image = Image.fromarray(array)
    if mode is not None:
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return out.getvalue()


def smooth_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [height, width, 3]: smooth colour gradients (compress like photos)."""
    rng = np.random.default_rng(seed)
    y = np.linspace(0, 1, height)[:, None, None]
    x = np.linspace(0, 1, width)[None, :, None]
    a, b, c = rng.random((3, 1, 1, 3))
    return (255 * (a * y + b * x + c * x * y) / (a + b + c)).astype(np.uint8)


def quirky_images() -> dict[str, tuple[bytes, bool]]:
    """The bad inputs of ImageNet and the web, keyed by a file-name stem.

    Returns {stem: (bytes, decodable)}: a truncated JPEG, a zero-byte file, PNG bytes
    (to be named .JPEG), a CMYK JPEG, a grayscale JPEG, a 1x1 JPEG and a 4000x3000
    JPEG. Only the truncated and empty files are not decodable.
    """
    photo = encode(smooth_image(300, 400))
    return {
        "truncated": (photo[: len(photo) // 2], False),
        "empty": (b"", False),
        "png_named_jpeg": (encode(smooth_image(200, 260, 1), "PNG"), True),
        "cmyk": (encode(smooth_image(240, 320, 2), mode="CMYK"), True),
        "grayscale": (encode(smooth_image(320, 240, 3), mode="L"), True),
        "one_pixel": (encode(smooth_image(1, 1, 4)), True),
        "very_large": (encode(smooth_image(3000, 4000, 5)), True),
    }


def write_class_folder(root: str, images: dict[str, list[tuple[str, bytes]]]) -> None:
    """Writes root/<class>/<file name> for {class: [(file name, bytes)]}."""
    for class_name, files in images.items():
        os.makedirs(os.path.join(root, class_name), exist_ok=True)
        for name, data in files:
            with open(os.path.join(root, class_name, name), "wb") as f:
                f.write(data)


def write_records(directory: str, split: str, records: list[bytes], num_shards: int = 1) -> None:
    """Writes serialized records (from `tfrecord_format.make_example`) as shards."""
    os.makedirs(directory, exist_ok=True)
    paths = shard_writer.shard_paths(directory, split, num_shards)
    for i, path in enumerate(paths):
        shard_writer.write_serialized(path, records[i::num_shards])


def example(
    encoded: bytes,
    filename: str,
    label: int,
    height: int = 0,
    width: int = 0,
    boxes=(),
    box_labels=(),
) -> bytes:
    """A build_imagenet_data record with synset/text derived from the 0-based label."""
    return tfrecord_format.make_example(
        encoded=encoded,
        filename=filename,
        label=label,
        synset=f"n{label:08d}",
        text=f"class {label}",
        height=height,
        width=width,
        boxes=boxes,
        box_labels=box_labels,
    )


# One object of an annotation XML: (class name, (xmin, ymin, xmax, ymax) pixels, difficult).
XmlObject = tuple[str, tuple[float, float, float, float], bool]


def annotation_xml(width: int, height: int, objects: list[XmlObject]) -> bytes:
    """A PASCAL VOC / ILSVRC annotation XML of an image of width x height."""
    parts = [
        f"<annotation><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    ]
    for name, (xmin, ymin, xmax, ymax), difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{int(difficult)}</difficult>"
            f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax>"
            f"<ymax>{ymax}</ymax></bndbox></object>"
        )
    return ("".join(parts) + "</annotation>").encode()


def write_voc_tree(
    root: str, images: dict[str, tuple[bytes, bytes]], image_sets: dict[str, list[str]]
) -> None:
    """Writes a PASCAL VOC folder: {image id: (JPEG bytes, XML bytes)} (either may be
    b"" to leave the file out) and ImageSets/Main/<name>.txt of {name: ids}."""
    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, (jpeg, xml) in images.items():
        for sub, suffix, data in (("JPEGImages", ".jpg", jpeg), ("Annotations", ".xml", xml)):
            if data:
                with open(os.path.join(root, sub, image_id + suffix), "wb") as f:
                    f.write(data)
    for name, ids in image_sets.items():
        with open(os.path.join(root, "ImageSets", "Main", f"{name}.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
