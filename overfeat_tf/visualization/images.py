"""Image grids, display scaling, heat maps and PNG files for the visualizations.

Everything here works on numpy arrays (the figures are small; the heavy lifting is in
the compiled deconvnet and occlusion functions) and writes PNGs with `tf.io.encode_png`
through `tf.io.gfile`, so output paths may be local or remote (gs://...).
"""

from __future__ import annotations

import io
import os

import numpy as np
import tensorflow as tf


# Deconvnet projections are clipped at these percentiles of each projection before
# scaling: a few extreme pixels otherwise set the scale and leave the rest grey.
PROJECTION_PERCENTILES = (0.5, 99.5)


def to_display(
    images: np.ndarray, symmetric: bool = True, percentiles: tuple[float, float] | None = None
) -> np.ndarray:
    """Scales each image of `[n, h, w, c]` on its own to [0, 1].

    symmetric=True maps 0 to grey (0.5) and the largest |value| to 0 or 1, as ZFNet shows
    filters and deconvnet projections (signed quantities); symmetric=False stretches
    min..max to 0..1. With `percentiles` (low, high), e.g. `PROJECTION_PERCENTILES`,
    each image is first clipped to its own low and high percentiles. An all-zero image
    becomes uniform grey (or black).
    """
    images = np.asarray(images, np.float32)
    axes = tuple(range(1, images.ndim))
    if percentiles is not None:
        low, high = np.percentile(images, percentiles, axis=axes, keepdims=True)
        images = np.clip(images, low, high)
    if symmetric:
        scale = np.abs(images).max(axis=axes, keepdims=True)
        return 0.5 + 0.5 * images / np.maximum(scale, 1e-12)
    low = images.min(axis=axes, keepdims=True)
    high = images.max(axis=axes, keepdims=True)
    return (images - low) / np.maximum(high - low, 1e-12)


def denormalize(images: np.ndarray, mean, std) -> np.ndarray:
    """Model inputs `(pixel - mean) / std` back to pixels in [0, 1], `[..., 3]`."""
    pixels = np.asarray(images, np.float32) * np.asarray(std, np.float32)
    return np.clip((pixels + np.asarray(mean, np.float32)) / 255.0, 0.0, 1.0)


def tile(images: np.ndarray, columns: int, border: int = 1, fill: float = 1.0) -> np.ndarray:
    """`[n, h, w, c]` -> one `[rows * (h + border) + border, ..., c]` grid, row by row.

    Cells after the n-th are left `fill`.
    """
    images = np.asarray(images, np.float32)
    n, h, w, c = images.shape
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    grid = np.full(
        (rows * (h + border) + border, columns * (w + border) + border, c), fill, np.float32
    )
    for i, image in enumerate(images):
        y = border + (i // columns) * (h + border)
        x = border + (i % columns) * (w + border)
        grid[y : y + h, x : x + w] = image
    return grid


def upscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of `[n, h, w, c]` by an integer factor."""
    return np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1], any shape -> RGB `[..., 3]` in [0, 1] on a blue-cyan-yellow-red
    ("jet"-like) scale: blue is low, red is high."""
    v = np.clip(np.asarray(values, np.float32), 0.0, 1.0)[..., None]
    red = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    green = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    blue = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return np.concatenate([red, green, blue], axis=-1)


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    alpha: float = 0.5,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """A heat map `[h, w]` over an RGB image `[h, w, 3]` in [0, 1].

    `value_range` (low, high) fixes the colour scale (e.g. (0, 1) for probabilities);
    by default the map's own min..max.
    """
    heat = np.asarray(heat, np.float32)
    low, high = value_range if value_range is not None else (heat.min(), heat.max())
    colours = colormap((heat - low) / max(high - low, 1e-12))
    return (1 - alpha) * np.asarray(image, np.float32) + alpha * colours


def write_png(path: str, image: np.ndarray) -> str:
    """Writes `[h, w, c]` floats in [0, 1] (c = 1 or 3) as PNG; creates the folder."""
    pixels = np.round(np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255).astype(np.uint8)
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    tf.io.write_file(path, tf.io.encode_png(pixels))
    return path


def write_npz(path: str, arrays: dict[str, np.ndarray]) -> str:
    """Writes arrays as an `.npz` file (through a buffer: zipfile seeks, GFile cannot)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    directory = os.path.dirname(path)
    if directory:
        tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())
    return path
