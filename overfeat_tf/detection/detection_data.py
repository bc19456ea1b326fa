"""Training crops for the detection classifier: objects and background (OverFeat section 5).

OverFeat trains detection "with the addition of a background task": besides the object
classes the classifier learns a background class from "a few negative examples per
image", drawn on the fly (randomly, or the most offending ones). Every image of a
detection split (several objects each) gives, per pass:

* one **positive** crop per object, labelled with its class: a square window whose side
  is the object's longer side / f, f ~ U(`fill`) (the object fills 50-100 % of the
  window's side, as in classification training), centred on the object up to a jitter of
  `jitter` window sides, and shifted to lie inside the image where it fits;
* up to `negatives_per_image` **negative** crops, labelled `background`: random square
  windows whose side is U(`negative_sides`) times the image's shorter side, kept only
  when every object has IoU < `negative_max_iou` with the window **and** less than
  `negative_max_coverage` of its area inside it. The coverage test is what keeps a
  window twice an object's side, with the object in its middle (IoU 0.25), from being
  called background: dense detection regresses that object's box from such windows
  (`targets.MIN_COVERAGE`), and their scores are merged with the object's. Candidates
  that fail are dropped (an image full of objects may give fewer negatives).

Crops are cut from the normalised image with `tf.image.crop_and_resize` (bilinear) to
`crop_size` and mirrored at random in training. Windows are sampled with stateless ops
from a per-image seed, so a seed fixes the crops (the validation crops never change).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from overfeat_tf.detection import targets
from pipelines import decode, transforms
from pipelines.sources import Source

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass(frozen=True)
class CropSampling:
    """How positives and negatives are drawn (see the module docstring).

    Attributes:
      fill: range of the object's longer side over the window side, positives.
      jitter: largest shift of a positive window's centre, in window sides.
      negatives_per_image: background crops per image and pass (at most).
      negative_sides: range of a negative window's side, fraction of the shorter side.
      negative_max_iou: a negative's IoU with every object is below this.
      negative_max_coverage: every object has less than this fraction inside a negative.
      negative_tries: candidates drawn per image to find the negatives.
    """

    fill: tuple[float, float] = (0.5, 1.0)
    jitter: float = 0.08
    negatives_per_image: int = 3
    negative_sides: tuple[float, float] = (0.35, 0.85)
    negative_max_iou: float = 0.3
    negative_max_coverage: float = 0.5
    negative_tries: int = 16

    def __post_init__(self) -> None:
        for name in ("fill", "negative_sides"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(
                    f"CropSampling.{name} must satisfy 0 < low <= high <= 1; "
                    f"received {getattr(self, name)}"
                )
        if self.negatives_per_image < 0 or self.negative_tries < self.negatives_per_image:
            raise ValueError(
                "CropSampling needs 0 <= negatives_per_image <= negative_tries; "
                f"received {self.negatives_per_image} and {self.negative_tries}"
            )


def _square_inside(centre: tf.Tensor, side: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Square windows [k, 4] of `side` [k] around `centre` [k, 2] (y, x), shifted into
    an image of `size` (h, w) where they fit."""
    top_left = centre - side[:, tf.newaxis] / 2
    top_left = tf.clip_by_value(top_left, 0.0, tf.maximum(size - side[:, tf.newaxis], 0.0))
    return tf.concat([top_left, top_left + side[:, tf.newaxis]], axis=1)


def positive_windows(
    boxes: tf.Tensor, size: tf.Tensor, seed: tf.Tensor, sampling: CropSampling
) -> tf.Tensor:
    """One square window [n, 4] (pixels) per object box [n, 4] (pixels) of an image of
    `size` (float32 (h, w)); `seed`: a stateless seed [2]."""
    n = tf.shape(boxes)[0]
    fill_seed, jitter_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    longer = tf.reduce_max(boxes[:, 2:] - boxes[:, :2], axis=1)
    fill = tf.random.stateless_uniform([n], fill_seed, *sampling.fill)
    side = tf.minimum(longer / fill, tf.reduce_min(size))
    shift = tf.random.stateless_uniform([n, 2], jitter_seed, -sampling.jitter, sampling.jitter)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2 + shift * side[:, tf.newaxis]
    return _square_inside(centre, side, size)


def negative_windows(
    boxes: tf.Tensor, size: tf.Tensor, seed: tf.Tensor, sampling: CropSampling
) -> tf.Tensor:
    """Up to `negatives_per_image` background windows [k, 4] (pixels) of an image of
    `size` whose objects are `boxes` [n, 4] (pixels)."""
    tries = sampling.negative_tries
    side_seed, place_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    side = tf.random.stateless_uniform([tries], side_seed, *sampling.negative_sides)
    side *= tf.reduce_min(size)
    room = size - side[:, tf.newaxis]
    top_left = tf.random.stateless_uniform([tries, 2], place_seed) * room
    candidates = tf.concat([top_left, top_left + side[:, tf.newaxis]], axis=1)
    pairs = candidates[:, tf.newaxis, :], boxes[tf.newaxis, :, :]
    clear = (targets.iou(*pairs) < sampling.negative_max_iou) & (
        targets.coverage(*pairs) < sampling.negative_max_coverage
    )
    kept = tf.boolean_mask(candidates, tf.reduce_all(clear, axis=1))
    return kept[: sampling.negatives_per_image]


def image_crops(
    image: tf.Tensor,
    boxes: tf.Tensor,
    box_labels: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: int,
    background: int,
    sampling: CropSampling,
    flip: bool,
) -> tuple[tf.Tensor, tf.Tensor]:
    """One image's crops and labels.

    Args:
      image: float32 [h, w, 3], normalised. boxes: float32 [n, 4] normalised to the
        image; box_labels: int32 [n]. seed: stateless seed [2].
      background: the background class's label.
      flip: mirror each crop with probability 1/2.

    Returns:
      crops float32 [k, crop_size, crop_size, 3] and labels int32 [k]: the n positives
      first, then the negatives.
    """
    size = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.tile(size, [2])
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    pixels = boxes * scale
    windows = tf.concat(
        [
            positive_windows(pixels, size, seeds[0], sampling),
            negative_windows(pixels, size, seeds[1], sampling),
        ],
        axis=0,
    )
    labels = tf.concat(
        [
            tf.cast(box_labels, tf.int32),
            tf.fill([tf.shape(windows)[0] - tf.shape(pixels)[0]], background),
        ],
        0,
    )
    crops = tf.image.crop_and_resize(
        image[tf.newaxis], windows / scale, tf.zeros_like(labels), [crop_size, crop_size]
    )
    if flip:
        mirror = tf.random.stateless_uniform([tf.shape(crops)[0]], seeds[2]) < 0.5
        crops = tf.where(
            mirror[:, tf.newaxis, tf.newaxis, tf.newaxis], tf.reverse(crops, axis=[2]), crops
        )
    return crops, labels


def crop_dataset(
    source: Source,
    split: str,
    *,
    batch_size: int,
    crop_size: int,
    mean,
    std,
    training: bool,
    sampling: CropSampling = CropSampling(),
    seed: int = 0,
    repeat: bool = False,
    input_context: tf.distribute.InputContext | None = None,
    shuffle_buffer: int = 2048,
) -> tf.data.Dataset:
    """Batches (crops float32 [b, crop, crop, 3], labels int32 [b]) of a detection split.

    Labels are the source's classes 0..C-1 and C (= `source.num_classes`) for
    background. Training shuffles images and crops, mirrors crops and drops the last
    partial batch; evaluation keeps every crop, in order. The same `seed` gives the same
    crops. Images that fail to decode are skipped with a warning.
    """
    records = source.records(split, input_context, shuffle_files=training, seed=seed)
    if training:
        records = records.shuffle(1000, seed=seed, reshuffle_each_iteration=True)
    if repeat:
        records = records.repeat()
    pipeline_id = 0 if input_context is None else input_context.input_pipeline_id
    seeds = tf.data.Dataset.random(seed=seed).map(
        lambda r: tf.stack([r, tf.constant(pipeline_id, tf.int64)])
    )
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)

    def crops(record, image_seed):
        image = transforms.normalize(decode.decode_image(record["encoded"]), mean, std)
        return image_crops(
            image,
            record["boxes"],
            record["box_labels"],
            image_seed,
            crop_size=crop_size,
            background=source.num_classes,
            sampling=sampling,
            flip=training,
        )

    dataset = tf.data.Dataset.zip(records, seeds).map(crops, num_parallel_calls=AUTOTUNE)
    dataset = dataset.ignore_errors(log_warning=True).unbatch()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=training)
    return dataset.prefetch(AUTOTUNE)
