"""Correspondence analysis (Zeiler & Fergus 2013, arXiv v3 section 4.3, Table 1).

Does the network tie a part of an object (a dog's eye) to the same features across
images? For n related images and, per image, a box over the same part:
eps_i = x_i - x~_i, the layer-l features of image i and of its copy with the box
filled with the occlusion tool's grey (`occlusion.GREY`, the training mean), and

    Delta_l = sum over ordered pairs i != j of H(sign(eps_i), sign(eps_j)),

H the Hamming distance. Lower means the part changes the features more consistently.
The baseline masks each image with a box of the same size at a uniformly random
position inside it, over several draws.

Choices the paper does not state (documented here, stated again in the table):
- Normalisation: H is the *fraction* of features whose sign differs and Delta_l the
  *mean* over the n (n - 1) ordered pairs, so values lie in [0, 1] and compare with
  Table 1's (layer 5 / 7: right eye 0.067 / 0.069, random 0.107 / 0.073). The paper's
  sum is `delta * num_features * n * (n - 1)`. H is symmetric, so the mean over ordered
  pairs equals the mean over the n (n - 1) / 2 unordered ones, which are reported.
- sign(0) = 0, a third value. Post-ReLU features are often exactly 0, and every feature
  outside the mask's receptive field is unchanged, so most eps are 0: a feature unchanged
  in both images agrees, one changed in one image only differs. |eps| at most
  `zero_tolerance` times the layer's largest |feature| of the clean image counts as 0:
  the same input through a different batch differs in the last float32 bits (measured
  up to 4e-7 of the largest feature on CPU), which must not read as a sign.
- Spread: a part's row gives the mean and standard deviation over image pairs; the random
  row over draws (`draws` per part, each with that part's box sizes), each draw's value
  the mean over pairs. Standard deviations are population ones (ddof 0).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf.visualization import deconvnet, occlusion

RANDOM = "random"

# ZFNet arXiv v3 Table 1: Delta at layer 5 / layer 7, mean over 5 dog images.
PAPER_TABLE1 = {
    "right eye": (0.067, 0.069),
    "left eye": (0.069, 0.068),
    "nose": (0.079, 0.069),
    RANDOM: (0.107, 0.073),
}

Features = Callable[[tf.Tensor], Mapping[str, tf.Tensor]]


class LayerFeatures:
    """Compiled: images float32 `[b, h, w, 3]` -> {layer: float32 `[b, F_layer]`}.

    One pass through the model's chain (inference mode) up to the deepest of `layers`,
    keeping each chosen layer's map flattened. `layers` are names from
    `overfeat_tf.models.layer_names` (not the final `logits` flatten).
    """

    def __init__(self, model: keras.Model, layers: Sequence[str]) -> None:
        if not layers or len(set(layers)) != len(layers):
            raise ValueError(f"layers must be distinct layer names; received: {list(layers)}")
        depth = {name: len(deconvnet.layers_through(model, name)) for name in layers}
        self.layers = tuple(layers)
        self.chain = deconvnet.layers_through(model, max(layers, key=depth.get))
        self._features = tf.function(self._forward, reduce_retracing=True)

    def _forward(self, images):
        outputs = {}
        x = images
        for layer in self.chain:
            x = tf.cast(layer(x, training=False), tf.float32)
            if layer.name in self.layers:
                outputs[layer.name] = tf.reshape(x, [tf.shape(x)[0], -1])
        return outputs

    def __call__(self, images) -> dict[str, tf.Tensor]:
        outputs = self._features(tf.convert_to_tensor(images, tf.float32))
        return {layer: outputs[layer] for layer in self.layers}  # tf.function sorts keys.


def check_boxes(boxes, image_size: tuple[int, int], names: Sequence[str]) -> np.ndarray:
    """`boxes` as int32 `[n, 4]` (y0, x0, y1, x1; pixels, end exclusive), one per image.

    Raises ValueError naming the image whose box is empty or reaches outside it, or
    when the counts differ.
    """
    height, width = image_size
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != len(names):
        raise ValueError(
            f"Expected one box (y0, x0, y1, x1) per image, {len(names)} in all; "
            f"received an array of shape {boxes.shape}"
        )
    if not np.array_equal(boxes, np.round(boxes)):
        raise ValueError(f"Boxes are whole pixels; received {boxes.tolist()}")
    boxes = boxes.astype(np.int32)
    for name, (y0, x0, y1, x1) in zip(names, boxes):
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(
                f"{name}: mask {y0},{x0},{y1},{x1} is not a box inside the image "
                f"({height}x{width}): need 0 <= y0 < y1 <= {height} and 0 <= x0 < x1 <= {width}"
            )
    return boxes


def random_boxes(
    boxes: np.ndarray, image_size: tuple[int, int], draws: int, seed: int | np.random.Generator = 0
) -> np.ndarray:
    """int32 `[draws, n, 4]`: each image's box size at uniformly random positions inside it.

    `boxes`: int `[n, 4]` (y0, x0, y1, x1) from `check_boxes`; `seed` an int or a
    `np.random.Generator` (drawn from in place).
    """
    if draws < 1:
        raise ValueError(f"draws must be >= 1; received: {draws}")
    rng = np.random.default_rng(seed)
    sizes = boxes[:, 2:] - boxes[:, :2]  # [n, 2] (height, width)
    limits = np.asarray(image_size) - sizes + 1  # [n, 2] positions per axis
    corners = rng.integers(0, limits, size=(draws, *limits.shape))
    return np.concatenate([corners, corners + sizes], axis=-1).astype(np.int32)


def signs(eps: np.ndarray, tolerance: np.ndarray) -> np.ndarray:
    """int8 sign of `eps` `[n, F]`, 0 where |eps| <= `tolerance` (`[n, 1]` or scalar)."""
    return np.where(np.abs(eps) <= tolerance, 0, np.sign(eps)).astype(np.int8)


def pair_disagreement(sign: np.ndarray) -> np.ndarray:
    """float `[n (n - 1) / 2]`: per pair i < j of `sign` `[n, F]`, the fraction of
    features whose sign differs (the normalised Hamming distance)."""
    return np.array(
        [np.mean(sign[i] != sign[j]) for i, j in itertools.combinations(range(len(sign)), 2)]
    )


@dataclasses.dataclass(frozen=True)
class Row:
    """One row of Table 1: per layer, the values whose mean and std it reports.

    `over` is "pairs" (a part: one value per image pair) or "draws" (random: one
    value, the mean over pairs, per draw).
    """

    name: str
    over: str
    values: dict[str, np.ndarray]

    def mean(self, layer: str) -> float:
        return float(np.mean(self.values[layer]))

    def std(self, layer: str) -> float:
        return float(np.std(self.values[layer]))


@dataclasses.dataclass(frozen=True)
class Correspondence:
    """Delta_l for each part and for random masks, with what produced them.

    Attributes:
      layers: the layers (table columns).
      rows: the parts in the given order, then `RANDOM`.
      num_features: features per image at each layer.
      names: the images.
      boxes: per part, int32 `[n, 4]` masks; random_boxes: per part `[draws, n, 4]`.
      value, zero_tolerance, seed: the settings.
    """

    layers: tuple[str, ...]
    rows: tuple[Row, ...]
    num_features: dict[str, int]
    names: tuple[str, ...]
    boxes: dict[str, np.ndarray]
    random_boxes: dict[str, np.ndarray]
    value: float
    zero_tolerance: float
    seed: int

    def row(self, name: str) -> Row:
        return next(r for r in self.rows if r.name == name)

    def table(self) -> str:
        """The paper's Table 1: rows parts and random, columns layers, mean +- std."""
        first = max(len("part"), *(len(r.name) for r in self.rows))
        cells = [
            [f"{r.mean(layer):.3f} +- {r.std(layer):.3f}" for layer in self.layers]
            for r in self.rows
        ]
        widths = [
            max(len(layer), *(len(c[k]) for c in cells)) for k, layer in enumerate(self.layers)
        ]
        lines = [
            "  ".join(["part".ljust(first)] + [ly.ljust(w) for ly, w in zip(self.layers, widths)])
        ]
        lines += [
            "  ".join([r.name.ljust(first)] + [c.ljust(w) for c, w in zip(row, widths)])
            for r, row in zip(self.rows, cells)
        ]
        n = len(self.names)
        draws = len(next(iter(self.random_boxes.values())))
        lines.append(
            f"Delta: fraction of features whose sign(eps) differs, mean over the {n * (n - 1)} "
            f"ordered image pairs; parts: +- std over pairs; random: +- std over "
            f"{draws * len(self.boxes)} draws. Lower: the part is encoded more consistently."
        )
        paper = ", ".join(f"{k} {v[0]} / {v[1]}" for k, v in PAPER_TABLE1.items())
        lines.append(f"Paper (ZFNet arXiv v3 Table 1, 5 dog images, layer 5 / 7): {paper}.")
        return "\n".join(line.rstrip() for line in lines)

    def to_json(self) -> dict:
        """JSON-ready: the table (mean, std, values per row and layer) and the inputs."""
        return {
            "layers": list(self.layers),
            "num_features": self.num_features,
            "images": list(self.names),
            "rows": [
                {
                    "name": r.name,
                    "over": r.over,
                    "mean": {ly: r.mean(ly) for ly in self.layers},
                    "std": {ly: r.std(ly) for ly in self.layers},
                    "values": {ly: r.values[ly].tolist() for ly in self.layers},
                }
                for r in self.rows
            ],
            "boxes": {p: b.tolist() for p, b in self.boxes.items()},
            "random_boxes": {p: b.tolist() for p, b in self.random_boxes.items()},
            "value": self.value,
            "zero_tolerance": self.zero_tolerance,
            "seed": self.seed,
            "normalisation": "H = fraction of features whose sign differs (sign(0) = 0); "
            "Delta = mean of H over ordered pairs i != j",
            "paper_table1_layer5_layer7": PAPER_TABLE1,
        }


def _in_batches(features: Features, images: tf.Tensor, batch_size: int) -> dict[str, np.ndarray]:
    chunks = [features(images[s : s + batch_size]) for s in range(0, len(images), batch_size)]
    return {layer: np.concatenate([c[layer].numpy() for c in chunks]) for layer in chunks[0]}


def analyse(
    features: Features,
    images,
    parts: Mapping[str, object],
    *,
    draws: int = 10,
    seed: int = 0,
    value: float = occlusion.GREY,
    zero_tolerance: float = 1e-4,
    batch_size: int = 32,
    names: Sequence[str] | None = None,
) -> Correspondence:
    """Delta_l of each part against random masks of the same sizes.

    Args:
      features: images float32 `[b, h, w, 3]` -> {layer: `[b, ...]`}, e.g. `LayerFeatures`.
      images: float32 `[n, h, w, 3]` model inputs, n >= 2 related images.
      parts: part name -> int `[n, 4]` boxes (y0, x0, y1, x1), pixels of `images`, end
        exclusive, one per image.
      draws: random draws per part; seed: their random generator's seed.
      value: the masks' value in model-input units (`occlusion.GREY`: the training mean).
      zero_tolerance: |eps| at most this times the layer's largest clean |feature| of
        the image counts as sign 0.
      batch_size: images per forward pass (all masked copies of all parts and draws are
        batched together; each pass computes every layer).
      names: the images' names for errors and output (default "image 0", ...).
    """
    images = tf.convert_to_tensor(images, tf.float32)
    count, height, width = images.shape[:3]
    names = tuple(names or (f"image {i}" for i in range(count)))
    if count < 2 or len(names) != count:
        raise ValueError(
            f"Need at least 2 images and one name each; received {count} images, {len(names)} names"
        )
    if not parts:
        raise ValueError("Need at least one part (name -> one box per image)")
    boxes = {part: check_boxes(b, (height, width), names) for part, b in parts.items()}
    if RANDOM in boxes:
        raise ValueError(f"{RANDOM!r} names the baseline row; name the part otherwise")
    rng = np.random.default_rng(seed)
    randoms = {part: random_boxes(b, (height, width), draws, rng) for part, b in boxes.items()}
    # Mask sets, each n boxes: the parts, then every part's draws.
    sets = np.concatenate([np.stack(list(boxes.values()))] + list(randoms.values()))
    clean = _in_batches(features, images, batch_size)
    scale = {
        layer: zero_tolerance * np.abs(f).max(axis=1, keepdims=True) for layer, f in clean.items()
    }
    index = np.tile(np.arange(count), len(sets))
    flat_boxes = sets.reshape(-1, 4)
    sign = {layer: np.empty((len(index), f.shape[1]), np.int8) for layer, f in clean.items()}
    for start in range(0, len(index), batch_size):
        chunk = index[start : start + batch_size]
        masked = occlusion.fill_boxes(
            tf.gather(images, chunk), tf.constant(flat_boxes[start : start + batch_size]), value
        )
        for layer, f in features(masked).items():
            eps = clean[layer][chunk] - f.numpy()
            sign[layer][start : start + len(chunk)] = signs(eps, scale[layer][chunk])
    layers = tuple(clean)
    per_set = {
        layer: [pair_disagreement(s) for s in np.split(sign[layer], len(sets))] for layer in layers
    }
    rows = [
        Row(part, "pairs", {layer: per_set[layer][k] for layer in layers})
        for k, part in enumerate(boxes)
    ]
    rows.append(
        Row(
            RANDOM,
            "draws",
            {layer: np.array([v.mean() for v in per_set[layer][len(boxes) :]]) for layer in layers},
        )
    )
    return Correspondence(
        layers=layers,
        rows=tuple(rows),
        num_features={layer: int(f.shape[1]) for layer, f in clean.items()},
        names=names,
        boxes=boxes,
        random_boxes=randoms,
        value=float(value),
        zero_tolerance=zero_tolerance,
        seed=seed,
    )


def correspondence(
    model: keras.Model, images, parts: Mapping[str, object], layers: Sequence[str], **kwargs
) -> Correspondence:
    """`analyse` on `model`'s `layers` (e.g. ("conv5", "fc7"), ZFNet's layers 5 and 7)."""
    return analyse(LayerFeatures(model, layers), images, parts, **kwargs)
