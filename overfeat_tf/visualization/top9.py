"""The nine strongest activations of feature maps over a data set (ZFNet Fig. 2).

For each chosen feature map of a layer: the nine images (of a data set) where it fires
most, each with its deconvnet projection and the image patch under the activation's
receptive field, shown side by side as in the paper's figure.

Two passes over the data set: the first keeps the running top-k (value, image number,
position) per feature map; the second re-reads only the images it needs and projects
them in batches. The data set must therefore yield the same images in the same order
each time it is iterated (an evaluation pipeline, not a shuffled training one).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from overfeat_tf.visualization import images as images_lib
from overfeat_tf.visualization.deconvnet import Deconvnet, ReceptiveField


@dataclasses.dataclass(frozen=True)
class TopActivations:
    """The k strongest activations of each feature map, strongest first.

    Attributes:
      features: int `[f]` the feature maps.
      values: float32 `[f, k]` activations (-inf where the data set had < k images).
      image_index: int64 `[f, k]` image numbers in data-set order.
      positions: int32 `[f, k, 2]` (row, column) in the layer's map.
    """

    features: np.ndarray
    values: np.ndarray
    image_index: np.ndarray
    positions: np.ndarray


def _images_of(batch):
    """The model inputs of a batch: itself, its "image" entry, or its first element."""
    if isinstance(batch, dict):
        return batch["image"]
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def find_top_activations(
    deconv: Deconvnet, dataset: tf.data.Dataset, features: Sequence[int], k: int = 9
) -> TopActivations:
    """First pass: the top-k activations of `features` over batches of model inputs
    (`[b, h, w, 3]`, tuples whose first element is that, or dicts with an "image")."""
    features = np.asarray(features, np.int64)
    deconv.check_features(features)
    best_values = np.full((len(features), k), -np.inf, np.float32)
    best_index = np.zeros((len(features), k), np.int64)
    best_positions = np.zeros((len(features), k, 2), np.int32)
    seen = 0
    for batch in dataset:
        maps = tf.gather(deconv.activations(_images_of(batch)), features, axis=3).numpy()
        b, _, width, f = maps.shape
        flat = maps.reshape(b, -1, f)
        where = flat.argmax(axis=1)  # [b, f]
        values = flat.max(axis=1).T  # [f, b]
        index = np.broadcast_to(seen + np.arange(b), (f, b))
        positions = np.stack([where // width, where % width], axis=-1).transpose(1, 0, 2)
        best_values = np.concatenate([best_values, values], axis=1)
        best_index = np.concatenate([best_index, index], axis=1)
        best_positions = np.concatenate([best_positions, positions], axis=1)
        keep = np.argsort(-best_values, axis=1, kind="stable")[:, :k]
        best_values = np.take_along_axis(best_values, keep, axis=1)
        best_index = np.take_along_axis(best_index, keep, axis=1)
        best_positions = np.take_along_axis(best_positions, keep[..., None], axis=1)
        seen += b
    if seen == 0:
        raise ValueError("The data set yielded no images")
    return TopActivations(features, best_values, best_index, best_positions)


def _crop(image: np.ndarray, window: tuple[int, int, int, int], fill: float) -> np.ndarray:
    """`image[top:bottom, left:right]`, filled with `fill` where the window leaves it."""
    top, left, bottom, right = window
    height, width = image.shape[:2]
    patch = np.full((bottom - top, right - left, image.shape[2]), fill, np.float32)
    y0, x0, y1, x1 = max(top, 0), max(left, 0), min(bottom, height), min(right, width)
    if y1 > y0 and x1 > x0:
        patch[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return patch


def _patch_side(field: ReceptiveField, height: int, width: int) -> int:
    return min(field.size, max(height, width))


def project_top_activations(
    deconv: Deconvnet,
    dataset: tf.data.Dataset,
    top: TopActivations,
    mean,
    std,
    batch_size: int = 32,
) -> tuple[np.ndarray, np.ndarray]:
    """Second pass: (projections, image patches), RGB in [0, 1], `[f, k, p, p, 3]` each.

    Each patch is the receptive field of the activation (p = its size, at most the
    image side), grey outside the image; each projection is clipped at its robust
    percentiles (`images.PROJECTION_PERCENTILES`) and scaled on its own.
    """
    f, k = top.values.shape
    wanted = {}  # image number -> [(feature slot, rank)]
    for slot in range(f):
        for rank in range(k):
            if np.isfinite(top.values[slot, rank]):
                wanted.setdefault(int(top.image_index[slot, rank]), []).append((slot, rank))
    projections = patches = None
    jobs = []  # (image, slot, rank) waiting to be projected
    seen = 0

    def flush():
        nonlocal projections, patches
        images = np.stack([image for image, _, _ in jobs])
        slots = np.array([slot for _, slot, _ in jobs])
        ranks = np.array([rank for _, _, rank in jobs])
        projected, _, _ = deconv.project(images, top.features[slots], top.positions[slots, ranks])
        height, width = images.shape[1:3]
        side = _patch_side(deconv.receptive_field, height, width)
        if projections is None:
            projections = np.full((f, k, side, side, 3), 0.5, np.float32)
            patches = np.full((f, k, side, side, 3), 0.5, np.float32)
        pictures = images_lib.denormalize(images, mean, std)
        for j, (slot, rank) in enumerate(zip(slots, ranks)):
            top_left = deconv.receptive_field.window(*top.positions[slot, rank])[:2]
            window = (*top_left, top_left[0] + side, top_left[1] + side)
            projections[slot, rank] = images_lib.to_display(
                _crop(projected[j].numpy(), window, 0.0)[None],
                percentiles=images_lib.PROJECTION_PERCENTILES,
            )[0]
            patches[slot, rank] = _crop(pictures[j], window, 0.5)
        jobs.clear()

    for batch in dataset:
        for image in _images_of(batch).numpy():
            for slot, rank in wanted.get(seen, ()):
                jobs.append((image, slot, rank))
                if len(jobs) == batch_size:
                    flush()
            seen += 1
    if jobs:
        flush()
    return projections, patches


def figure(projections: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """One feature map's block: its k projections in a grid, then the k patches
    (`[k, p, p, 3]` each) -> `[H, W, 3]`."""
    columns = int(np.ceil(np.sqrt(len(projections))))
    left = images_lib.tile(projections, columns)
    right = images_lib.tile(patches, columns)
    gap = np.ones((left.shape[0], max(2, left.shape[1] // 20), 3), np.float32)
    return np.concatenate([left, gap, right], axis=1)


def top9(
    deconv: Deconvnet,
    dataset: tf.data.Dataset,
    features: Sequence[int],
    mean,
    std,
    output_dir: str,
    k: int = 9,
    batch_size: int = 32,
) -> list[str]:
    """Finds, projects and saves the top-k activations of `features` of `deconv.layer`.

    Writes `<layer>_feature<NNN>.png` per feature map (projections left, patches right),
    `<layer>_top9.png` with all blocks, and `<layer>_top9.npz` (features, values,
    image_index, positions). `mean`/`std` undo the input normalisation for the patches.
    Returns the paths written.
    """
    top = find_top_activations(deconv, dataset, features, k)
    projections, patches = project_top_activations(deconv, dataset, top, mean, std, batch_size)
    blocks = [figure(p, q) for p, q in zip(projections, patches)]
    paths = [
        images_lib.write_png(
            os.path.join(output_dir, f"{deconv.layer}_feature{feature:03d}.png"), block
        )
        for feature, block in zip(top.features, blocks)
    ]
    overview = images_lib.tile(np.stack(blocks), int(np.ceil(np.sqrt(len(blocks)))), border=6)
    paths.append(
        images_lib.write_png(os.path.join(output_dir, f"{deconv.layer}_top9.png"), overview)
    )
    path = os.path.join(output_dir, f"{deconv.layer}_top9.npz")
    return paths + [images_lib.write_npz(path, dataclasses.asdict(top))]
