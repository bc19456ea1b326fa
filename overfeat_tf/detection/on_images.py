"""Localization or detection on a folder of plain images: a JSON and a PNG per image.

Each image is decoded and normalised at its own resolution as in evaluation
(`pipelines.transforms.preprocess_full`; OverFeat section 3.3 resizes the original to every
scale), given to a `Localizer` or `Detector`, and its boxes are mapped to the image's own
pixels. `<output_dir>/<stem>.json` holds

    {"image": "cat.jpg", "width": 500, "height": 375, "task": "detection",
     "objects": [{"class": "cat", "class_index": 7, "score": 2.41,
                  "box": {"xmin": 12.0, "ymin": 30.5, "xmax": 260.1, "ymax": 371.0}}]}

(pixels, continuous coordinates, best score first; localization scores and detection
scores are sums of merged probabilities), and `<stem>.png` is the image with its boxes
drawn. Images that cannot be decoded are skipped and named.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from overfeat_tf.detection import drawing
from pipelines import decode, transforms
from pipelines.sources import IMAGE_EXTENSIONS

# A Localizer or Detector: normalised image [h, w, 3] -> .boxes [k, 4] (pixels),
# .scores [k], .classes [k].
Predict = Callable[[np.ndarray], Any]


def list_images(directory: str) -> list[str]:
    """Sorted image files (by extension, any case) directly in `directory`.

    Raises:
      ValueError: naming the directory when it is missing or holds no image.
    """
    if not os.path.isdir(directory):
        raise ValueError(f"{directory} is not a directory")
    paths = sorted(
        os.path.join(directory, name)
        for name in os.listdir(directory)
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise ValueError(f"{directory} holds no image ({', '.join(IMAGE_EXTENSIONS)})")
    return paths


def predict_file(
    predict: Predict, path: str, mean: Sequence[float], std: Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image uint8 [h, w, 3], boxes [k, 4] in its pixels, scores [k], classes [k]).

    Raises:
      tf.errors.InvalidArgumentError: the file cannot be decoded.
    """
    image = decode.decode_image(tf.io.read_file(path))
    normalised = transforms.preprocess_full(image, mean, std).numpy()
    found = predict(normalised)
    scale = np.array(image.shape[:2], np.float64) / normalised.shape[:2]
    boxes = np.asarray(found.boxes, np.float64).reshape(-1, 4) * np.tile(scale, 2)
    return image.numpy(), boxes, np.asarray(found.scores), np.asarray(found.classes)


def describe(
    name: str, image: np.ndarray, boxes, scores, classes, class_names: Sequence[str], task: str
) -> dict[str, Any]:
    """The JSON document of one image (see the module docstring)."""
    objects = [
        {
            "class": class_names[int(c)],
            "class_index": int(c),
            "score": float(score),
            "box": dict(zip(("ymin", "xmin", "ymax", "xmax"), map(float, box))),
        }
        for box, score, c in zip(boxes, scores, classes)
    ]
    return {
        "image": name,
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "task": task,
        "objects": objects,
    }


def run_on_folder(
    predict: Predict,
    paths: Sequence[str],
    output_dir: str,
    class_names: Sequence[str],
    mean: Sequence[float],
    std: Sequence[float],
    task: str,
    draw_min_score: float = 0.0,
) -> list[str]:
    """Writes `<stem>.json` and `<stem>.png` in `output_dir` for every image of `paths`;
    the PNG shows the boxes scoring at least `draw_min_score`, labelled with class and
    score. Returns the images that could not be decoded, each "path: why"."""
    os.makedirs(output_dir, exist_ok=True)
    skipped = []
    for path in paths:
        try:
            image, boxes, scores, classes = predict_file(predict, path, mean, std)
        except tf.errors.InvalidArgumentError as e:
            skipped.append(f"{path}: {e.message.splitlines()[0]}")
            continue
        stem = os.path.splitext(os.path.basename(path))[0]
        document = describe(
            os.path.basename(path), image, boxes, scores, classes, class_names, task
        )
        with open(os.path.join(output_dir, f"{stem}.json"), "w") as f:
            json.dump(document, f, indent=1)
        shown = scores >= draw_min_score
        labels = [f"{class_names[int(c)]} {s:.2f}" for c, s in zip(classes[shown], scores[shown])]
        drawing.write_png(
            os.path.join(output_dir, f"{stem}.png"), drawing.draw_boxes(image, boxes[shown], labels)
        )
    return skipped
