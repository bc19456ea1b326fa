"""Pixel statistics of a training set, to replace the published ImageNet constants.

One pass over a split: the mean image of the 256x256 centre squares (AlexNet's mean
image), the per-channel mean and standard deviation (0-255), and the eigen-
decomposition of the RGB covariance on the 0-1 scale (the form of PCA_EIGVAL /
PCA_EIGVEC). Use them as
`build_dataset(mean=s.mean_image or s.mean_rgb, std=s.std_rgb,
pca_eigen=(s.eigval, s.eigvec))`.
"""

import dataclasses
import io

import numpy as np
import tensorflow as tf

from pipelines import constants
from pipelines import decode
from pipelines import transforms
from pipelines.sources import Source

_SIDE = constants.RESIZE_SHORTER_SIDE


@dataclasses.dataclass
class DatasetStatistics:
    """mean_image float32 [256, 256, 3] and mean_rgb / std_rgb [3] on the 0-255 scale;
    eigval [3] (descending) and eigvec [3, 3] (columns) of the RGB covariance on the
    0-1 scale; num_images used."""

    mean_image: np.ndarray
    mean_rgb: np.ndarray
    std_rgb: np.ndarray
    eigval: np.ndarray
    eigvec: np.ndarray
    num_images: int


def _center_square(encoded: tf.Tensor) -> tf.Tensor:
    """float32 [256, 256, 3]: shorter side 256, central square (0-255)."""
    image = transforms.resize_keep_aspect(decode.decode_image(encoded), _SIDE)
    return tf.image.resize_with_crop_or_pad(image, _SIDE, _SIDE)


def compute_statistics(
    source: Source, split: str = "train", max_images: int | None = None, batch_size: int = 64
) -> DatasetStatistics:
    """Streams `split` once (undecodable images skipped) and returns its statistics."""
    records = source.records(split)
    if max_images:
        records = records.take(max_images)
    images = (
        records.filter(lambda r: decode.check_encoded(r["encoded"])[0])
        .map(lambda r: _center_square(r["encoded"]), num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors(log_warning=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    image_sum = np.zeros((_SIDE, _SIDE, 3))
    outer_sum = np.zeros((3, 3))
    count = 0
    for batch in images.as_numpy_iterator():
        batch = batch.astype(np.float64)
        image_sum += batch.sum(axis=0)
        pixels = batch.reshape(-1, 3) / 255.0
        outer_sum += pixels.T @ pixels
        count += len(batch)
    if count == 0:
        raise ValueError(f"No decodable images in split {split!r}")
    mean_image = image_sum / count
    mean = mean_image.mean(axis=(0, 1)) / 255.0
    covariance = outer_sum / (count * _SIDE * _SIDE) - np.outer(mean, mean)
    eigval, eigvec = np.linalg.eigh(covariance)
    order = np.argsort(eigval)[::-1]
    return DatasetStatistics(
        mean_image=mean_image.astype(np.float32),
        mean_rgb=(mean * 255).astype(np.float32),
        std_rgb=(np.sqrt(np.diag(covariance)) * 255).astype(np.float32),
        eigval=eigval[order].astype(np.float32),
        eigvec=eigvec[:, order].astype(np.float32),
        num_images=count,
    )


def save_statistics(stats: DatasetStatistics, path: str) -> None:
    """Saves as a .npz file with one array per field."""
    buffer = io.BytesIO()  # np.savez needs a seekable file; GFile may not be one.
    np.savez(buffer, **dataclasses.asdict(stats))
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(buffer.getvalue())


def load_statistics(path: str) -> DatasetStatistics:
    """Loads what `save_statistics` wrote."""
    with tf.io.gfile.GFile(path, "rb") as f:
        arrays = dict(np.load(io.BytesIO(f.read())))
    arrays["num_images"] = int(arrays["num_images"])
    return DatasetStatistics(**arrays)
