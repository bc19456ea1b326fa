"""Occlusion sensitivity (Zeiler & Fergus 2013, section 4.2, Fig. 5).

A grey square slides over the image; for each position the network sees the occluded
copy and we record (a) the probability of the correct class, (b) the most probable
class and its probability, and (c) the total activation of one feature map of a chosen
layer (by default the map strongest on the clean image, as in Fig. 5 (b)).

Images may be non-square and come in batches: all occluded copies of all images are
built on the fly and evaluated in batches of `batch_size`. Images of any size the model
runs on are accepted: the class probabilities are the softmax of the model's class map
averaged over its positions (at the native size the map is 1x1, the model's output).
"""

from __future__ import annotations

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf.models import feature_layer_names
from overfeat_tf.visualization import colour_bar, deconvnet, images as images_lib

GREY = 0.0
"""The occluder's value in model-input units: the training mean (ZFNet's grey square)."""


def grey_value(pixel: float | None, mean, std) -> float:
    """A grey level on the 0-255 scale in model-input units: the channel average of
    (pixel - mean) / std; None gives `GREY`. `mean`, `std`: `[3]`, 0-255 scale."""
    if pixel is None:
        return GREY
    return float(np.mean((pixel - np.asarray(mean)) / np.asarray(std)))


def fill_boxes(images: tf.Tensor, boxes: tf.Tensor, value: float = GREY) -> tf.Tensor:
    """float32 `[n, h, w, c]` images with box i set to `value` in image i.

    `boxes`: int32 `[n, 4]` (y0, x0, y1, x1), pixels, end exclusive.
    """
    rows = tf.range(tf.shape(images)[1])[None, :]
    columns = tf.range(tf.shape(images)[2])[None, :]
    in_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 2:3])
    in_columns = (columns >= boxes[:, 1:2]) & (columns < boxes[:, 3:4])
    covered = in_rows[:, :, None, None] & in_columns[:, None, :, None]
    return tf.where(covered, tf.constant(value, images.dtype), images)


@dataclasses.dataclass(frozen=True)
class OcclusionMaps:
    """Per image, per square position (rows `tops`, columns `lefts`, top-left pixels).

    Attributes:
      true_class_probability: float32 `[b, ny, nx]`, probability of `labels`.
      top_class: int32 `[b, ny, nx]`, the most probable class.
      top_class_probability: float32 `[b, ny, nx]`.
      feature_activation: float32 `[b, ny, nx]`, the total activation of `features`
        in `layer`'s map; None without a layer.
      clean_probabilities: float32 `[b, num_classes]`, without occlusion.
      clean_feature_activation: float32 `[b]` or None.
      labels, features: int32 `[b]` (features None without a layer).
      layer, size, stride, value: the settings (value in model-input units).
    """

    true_class_probability: np.ndarray
    top_class: np.ndarray
    top_class_probability: np.ndarray
    feature_activation: np.ndarray | None
    clean_probabilities: np.ndarray
    clean_feature_activation: np.ndarray | None
    labels: np.ndarray
    features: np.ndarray | None
    tops: np.ndarray
    lefts: np.ndarray
    layer: str | None
    size: int
    stride: int
    value: float

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays that are set, by name (for `np.savez`)."""
        return {
            k: np.asarray(v)
            for k, v in dataclasses.asdict(self).items()
            if v is not None and not isinstance(v, str)
        }


def square_positions(length: int, size: int, stride: int) -> np.ndarray:
    """Top-left offsets of the square along one side: 0, stride, ... <= length - size."""
    if not 0 < size <= length:
        raise ValueError(f"size must be in 1..{length} (the image side); received: {size}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1; received: {stride}")
    return np.arange(0, length - size + 1, stride, dtype=np.int32)


def _split_chain(model: keras.Model, layer: str | None):
    """(layers up to `layer`, the rest up to the class map); all in the first without."""
    chain = deconvnet.layers_through(model, feature_layer_names(model)[-1])
    if layer is None:
        return chain, []
    head = deconvnet.layers_through(model, layer)
    return head, chain[len(head) :]


class _Occluder:
    """Compiled: images -> class probabilities `[n, k]` and per-feature-map totals and
    maxima `[n, c]` of the layer (zeros `[n, 1]` without one)."""

    def __init__(self, model: keras.Model, layer: str | None, size: int, value: float):
        self.to_layer, self.to_classes = _split_chain(model, layer)
        self.has_layer = layer is not None
        self.size = size
        self.value = value
        self.evaluate = tf.function(self._evaluate, reduce_retracing=True)
        self.occluded = tf.function(self._occluded, reduce_retracing=True)

    def _evaluate(self, batch):
        maps = deconvnet.forward(self.to_layer, batch)
        logits = deconvnet.forward(self.to_classes, maps) if self.to_classes else maps
        if logits.shape.rank == 4:
            probabilities = tf.reduce_mean(tf.nn.softmax(logits), axis=[1, 2])
        else:
            probabilities = tf.nn.softmax(logits)
        if not self.has_layer:
            maps = tf.zeros_like(batch[:, :1, :1, :1])
        return probabilities, tf.reduce_sum(maps, axis=[1, 2]), tf.reduce_max(maps, axis=[1, 2])

    def _occluded(self, images, index, tops, lefts):
        """Images `index` [n] with the square at (tops, lefts) [n], evaluated."""
        boxes = tf.stack([tops, lefts, tops + self.size, lefts + self.size], axis=1)
        return self._evaluate(fill_boxes(tf.gather(images, index), boxes, self.value))


def occlusion_maps(
    model: keras.Model,
    images,
    labels=None,
    *,
    size: int,
    stride: int,
    value: float = GREY,
    layer: str | None = None,
    features=None,
    batch_size: int = 64,
) -> OcclusionMaps:
    """Slides a `size` x `size` square of `value` over each image, `stride` pixels apart.

    Args:
      model: a model from `build_model` (or any chain of layers ending in class logits).
      images: float32 `[b, h, w, 3]` model inputs (normalised); h != w is fine.
      labels: int `[b]` correct classes; None takes the clean image's top class.
      size, stride: the square's side and step, pixels.
      value: the square's value in model-input units (`GREY`: the training mean).
      layer: a layer whose feature map's total activation is recorded (ZFNet: conv5).
      features: int `[b]` feature map per image; None: the map with the strongest
        activation on the clean image.
      batch_size: occluded images per forward pass.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    count, height, width = images.shape[:3]
    tops = square_positions(height, size, stride)
    lefts = square_positions(width, size, stride)
    occluder = _Occluder(model, layer, size, value)
    clean, clean_totals, clean_maxima = (t.numpy() for t in occluder.evaluate(images))
    if labels is None:
        labels = clean.argmax(axis=1)
    labels = np.asarray(labels, np.int32)
    features = clean_maxima.argmax(axis=1) if features is None else features
    features = np.asarray(features, np.int32)
    # Every (image, row, column) occluded copy, in batches.
    grid = np.stack(np.meshgrid(np.arange(count), tops, lefts, indexing="ij"), -1).reshape(-1, 3)
    probabilities, totals = [], []
    for start in range(0, len(grid), batch_size):
        chunk = grid[start : start + batch_size].astype(np.int32)
        p, total, _ = occluder.occluded(images, chunk[:, 0], chunk[:, 1], chunk[:, 2])
        probabilities.append(p.numpy())
        totals.append(np.take_along_axis(total.numpy(), features[chunk[:, 0], None], axis=1)[:, 0])
    shape = (count, len(tops), len(lefts))
    probabilities = np.concatenate(probabilities).reshape(shape + (-1,))
    with_layer = layer is not None
    return OcclusionMaps(
        true_class_probability=np.take_along_axis(
            probabilities, labels[:, None, None, None], axis=-1
        )[..., 0],
        top_class=probabilities.argmax(axis=-1).astype(np.int32),
        top_class_probability=probabilities.max(axis=-1),
        feature_activation=np.concatenate(totals).reshape(shape) if with_layer else None,
        clean_probabilities=clean,
        clean_feature_activation=(clean_totals[np.arange(count), features] if with_layer else None),
        labels=labels,
        features=features if with_layer else None,
        tops=tops,
        lefts=lefts,
        layer=layer,
        size=size,
        stride=stride,
        value=value,
    )


def to_pixels(
    values: np.ndarray, tops: np.ndarray, lefts: np.ndarray, size: int, height: int, width: int
) -> np.ndarray:
    """A map over square positions `[ny, nx]` -> `[height, width]`: each pixel takes the
    value of the position whose square centre is nearest."""

    def nearest(offsets, length):
        centres = offsets + size / 2
        pixels = np.arange(length) + 0.5
        return np.abs(pixels[:, None] - centres[None, :]).argmin(axis=1)

    return values[np.ix_(nearest(tops, height), nearest(lefts, width))]


def save(
    maps: OcclusionMaps, pictures: np.ndarray, output_dir: str, names: list[str] | None = None
) -> list[str]:
    """Writes heat maps over each image and all arrays (`occlusion.npz`).

    `pictures` are the images as RGB in [0, 1] `[b, h, w, 3]`. Per image `<name>`, each
    with a colour bar giving its scale: `<name>_true_class.png` (probability of the
    correct class, 0..1), `<name>_top_class.png` (the most probable class, one colour per
    class index) and `<name>_feature.png` (feature map total, 0..the unoccluded
    image's). Returns the paths.
    """
    count, height, width = pictures.shape[:3]
    names = names or [f"image{i}" for i in range(count)]
    num_classes = maps.clean_probabilities.shape[1]
    paths = []
    for i, name in enumerate(names):

        def heat(values, value_range, suffix, label, name=name, picture=pictures[i]):
            pixels = to_pixels(values, maps.tops, maps.lefts, maps.size, height, width)
            path = os.path.join(output_dir, f"{name}_{suffix}.png")
            shown = images_lib.overlay(picture, pixels, 0.6, value_range)
            paths.append(
                images_lib.write_png(
                    path,
                    colour_bar.with_colour_bar(
                        shown, value_range, label, f"{name}: grey square {maps.size} px"
                    ),
                )
            )

        heat(
            maps.true_class_probability[i],
            (0.0, 1.0),
            "true_class",
            "probability of the true class",
        )
        heat(
            maps.top_class[i],
            (0, max(num_classes - 1, 1)),
            "top_class",
            "most probable class (index)",
        )
        if maps.feature_activation is not None:
            top = max(
                float(maps.clean_feature_activation[i]), float(maps.feature_activation[i].max())
            )
            heat(maps.feature_activation[i], (0.0, top), "feature", "feature map total")
    return paths + [images_lib.write_npz(os.path.join(output_dir, "occlusion.npz"), maps.arrays())]
