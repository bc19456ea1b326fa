"""Model inputs with their file names, for the visualization and feature binaries.

Image files (a folder, or paths) or a pipeline source's split -> ordered batches of
{"image": model inputs, "filename", "label" (sources only)}, through the pipelines'
own decode and evaluation transforms (the centre crop every evaluator uses, or the
whole image with the aspect kept). Unreadable images are skipped with a warning.
"""

from __future__ import annotations

import os

import pipelines
import tensorflow as tf
from pipelines import transforms
from pipelines.sources import IMAGE_EXTENSIONS


def list_images(directory: str) -> list[str]:
    """Sorted image files (by extension) directly in `directory`."""
    if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(f"No such folder: {directory!r}")
    names = sorted(
        n for n in tf.io.gfile.listdir(directory) if n.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not names:
        raise FileNotFoundError(f"No images ({' '.join(IMAGE_EXTENSIONS)}) in {directory!r}")
    return [os.path.join(directory, n) for n in names]


def file_records(paths: list[str]) -> tf.data.Dataset:
    """Records {"encoded", "filename"} of image files, in the given order."""
    missing = [p for p in paths if not tf.io.gfile.exists(p)]
    if missing:
        raise FileNotFoundError(f"No such image: {', '.join(missing)}")
    return tf.data.Dataset.from_tensor_slices(paths).map(
        lambda path: {"encoded": tf.io.read_file(path), "filename": path}
    )


def source_records(source: pipelines.Source, split: str) -> tf.data.Dataset:
    """Records {"encoded", "filename", "label"} of a source's split, in stored order."""
    return source.records(split).map(
        lambda r: {"encoded": r["encoded"], "filename": r["filename"], "label": r["label"]}
    )


def model_inputs(
    records: tf.data.Dataset,
    *,
    crop_size: int,
    mean,
    std,
    batch_size: int,
    full_image: bool = False,
    max_images: int | None = None,
) -> tf.data.Dataset:
    """Decoded, normalised, ordered batches {"image": float32 `[b, h, w, 3]`, ...}.

    `full_image=False`: the evaluation centre crop (`crop_size` square);
    True: the whole image with its shorter side 256 (sizes differ: batch_size must be 1).
    """

    def transform(record):
        image = pipelines.decode_image(record["encoded"])
        if full_image:
            image = transforms.preprocess_full(
                image, mean, std, pipelines.constants.RESIZE_SHORTER_SIDE
            )
        else:
            image = pipelines.preprocess_for_eval(image, crop_size, mean, std)
        return {**{k: v for k, v in record.items() if k != "encoded"}, "image": image}

    dataset = records.map(transform).ignore_errors(log_warning=True)
    if max_images is not None:
        dataset = dataset.take(max_images)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
