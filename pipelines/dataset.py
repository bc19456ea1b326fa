"""`build_dataset`: records of a `Source` -> batches for training or evaluation.

Stage order: shuffle serialized records, not decoded images; one parallel map per
image (check the bytes, then decode and transform; a bad image raises an error naming
it, counted first); drop the images that raised (non-strict; strict mode fails
instead); batch; one map per batch (check labels, always an error, never skipped; the
batch half of training augmentation); optionally hand the work to a tf.data service;
prefetch last. Every parallel stage uses AUTOTUNE.
"""

import re
from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from pipelines import constants
from pipelines import decode
from pipelines import transforms
from pipelines.bad_records import BadRecordCounter
from pipelines.rare import rare
from pipelines.sources import Source

AUTOTUNE = tf.data.AUTOTUNE
EVAL_MODES = ("center", "ten_view", "full")
IMAGE_DTYPES = ("float32", "bfloat16", "float16")
# Boxes per image in `with_boxes` batches; extra boxes are dropped (ImageNet train
# images have at most a few dozen, the embedded set at most 4).
MAX_BOXES = 32
# How the pipeline's own data assertions begin (a bad image in strict mode, a bad label).
_DATA_ERROR = re.compile(r"(Bad image in record .*?|Record .*? has label .*?)\]?$", re.MULTILINE)


def data_error_line(message: str) -> str | None:
    """The line of a TensorFlow error message that names a bad record (strict mode's
    unusable image, a label out of range); None for any other error."""
    match = _DATA_ERROR.search(message)
    return match.group(1) if match else None


def _skip_bad_images(
    transform,
    image_shape: list[int],
    strict: bool,
    counter: BadRecordCounter | None,
    extra: dict[str, tf.Tensor],
    max_pixels: int | None,
):
    """Wraps a record transform so that it runs only on bytes that pass
    `decode.check_encoded` (with the pixel limit).

    A failing record raises InvalidArgumentError naming its file and the problem: in
    strict mode the error ends the pipeline; otherwise the record is first counted and
    the error is dropped (and logged) by the `ignore_errors` stage that follows. Runs
    inside the parallel map, so the check is not a serial stage. `image_shape` and
    `extra` (the transform's other outputs) shape the branch that never returns.
    """

    def wrapped(record: dict[str, tf.Tensor], *args):
        ok, reason = decode.check_encoded(record["encoded"], max_pixels)

        def bad() -> dict[str, tf.Tensor]:
            message = tf.strings.join(["Bad image in record ", record["filename"], ": ", reason])
            counted = (
                []
                if strict or counter is None
                else [counter.add(record["filename"], record["encoded"])]
            )
            with tf.control_dependencies(counted):
                failed = tf.debugging.Assert(False, [message])
            with tf.control_dependencies([failed]):
                return {
                    **record,
                    **extra,
                    "image": tf.zeros(image_shape),
                    "boxes": tf.zeros([0, 4]),
                    "box_labels": tf.zeros([0], tf.int32),
                    "difficult": tf.zeros([0], tf.bool),
                }

        return tf.cond(ok, lambda: transform(record, *args), rare(bad))

    return wrapped


def _pad_boxes(
    boxes: tf.Tensor, box_labels: tf.Tensor, difficult: tf.Tensor
) -> dict[str, tf.Tensor]:
    """Pads/truncates to MAX_BOXES: boxes [MAX_BOXES, 4] (zeros), box_labels
    [MAX_BOXES] (-1), difficult [MAX_BOXES] (False), num_boxes int32 scalar."""
    n = tf.minimum(tf.shape(boxes)[0], MAX_BOXES)
    boxes = tf.pad(boxes[:n], [[0, MAX_BOXES - n], [0, 0]])
    box_labels = tf.pad(box_labels[:n], [[0, MAX_BOXES - n]], constant_values=-1)
    difficult = tf.pad(difficult[:n], [[0, MAX_BOXES - n]], constant_values=False)
    boxes.set_shape([MAX_BOXES, 4])
    box_labels.set_shape([MAX_BOXES])
    difficult.set_shape([MAX_BOXES])
    return {"boxes": boxes, "box_labels": box_labels, "difficult": difficult, "num_boxes": n}


def _box_values(record: dict[str, tf.Tensor]) -> tf.Tensor:
    """int32 [n, 2]: each box's (label, difficult), cropped along with its box (the
    transforms keep or drop whole rows)."""
    return tf.stack([record["box_labels"], tf.cast(record["difficult"], tf.int32)], axis=1)


def _from_box_values(values: tf.Tensor) -> dict[str, tf.Tensor]:
    return {"box_labels": values[:, 0], "difficult": values[:, 1] > 0}


def _element(with_boxes: bool, draws: bool):
    """What one image contributes to a batch: image, label, file name, the boxes padded
    to MAX_BOXES when `with_boxes`, and the training draws when `draws`."""
    keys = ["image", "label", "filename", *(_DRAWS if draws else ())]

    def element(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {key: record[key] for key in keys}
        if with_boxes:
            out.update(_pad_boxes(record["boxes"], record["box_labels"], record["difficult"]))
        return out

    return element


def _checked_labels(batch: dict[str, tf.Tensor], num_classes: int, with_boxes: bool):
    """The batch's labels (int32 [b], or the box dict when `with_boxes`) once every label
    and box label is in 0..num_classes-1; otherwise an InvalidArgumentError naming the
    first bad record (always an error, never skipped)."""
    label = batch["label"]
    valid = (label >= 0) & (label < num_classes)
    if with_boxes:
        box_labels = batch["box_labels"]
        padding = tf.range(MAX_BOXES)[tf.newaxis] >= batch["num_boxes"][:, tf.newaxis]
        box_ok = ((box_labels >= 0) & (box_labels < num_classes)) | padding
        valid &= tf.reduce_all(box_ok, axis=1)

    def fail() -> tf.Tensor:
        first = tf.argmin(tf.cast(valid, tf.int32), output_type=tf.int32)
        boxes = batch["box_labels"][first, : batch["num_boxes"][first]] if with_boxes else []
        message = tf.strings.join(
            [
                "Record ",
                batch["filename"][first],
                tf.strings.format(
                    " has label {} and box labels {} (0-based; TFRecords store them "
                    "1-based, -1 = missing): valid labels are 0.." + str(num_classes - 1),
                    (label[first], boxes),
                    summarize=-1,
                ),
            ]
        )
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.identity(label)

    label = tf.cond(tf.reduce_all(valid), lambda: label, rare(fail))
    if not with_boxes:
        return label
    names = ("boxes", "box_labels", "difficult", "num_boxes")
    return {"label": label, **{name: batch[name] for name in names}}


def _eval_transform(
    eval_mode: str,
    crop_size: int,
    mean: tf.Tensor,
    std: tf.Tensor,
    full_shorter_side: int | None,
    full_max_shorter_side: int | None,
):
    def transform(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = decode.decode_image(record["encoded"])
        boxes, values = record["boxes"], _box_values(record)
        if eval_mode == "center":
            boxes, values = transforms.center_crop_boxes(
                boxes, values, tf.shape(image)[:2], crop_size
            )
            out = transforms.preprocess_for_eval(image, crop_size, mean, std)
        elif eval_mode == "ten_view":
            out = transforms.ten_views(image, crop_size, mean, std)
        else:
            out = transforms.preprocess_full(
                image, mean, std, full_shorter_side, full_max_shorter_side
            )
        return {**record, "image": out, "boxes": boxes, **_from_box_values(values)}

    return transform


# A training image's random draws that `transforms.augment_batch` applies per batch, and
# what a skipped image carries in their place.
# (Specs, not tensors: a tensor made at import would start TensorFlow's runtime.)
_DRAWS = {
    "flip": tf.TensorSpec([], tf.bool),
    "shift": tf.TensorSpec([3], tf.float32),
    "mean_window": tf.TensorSpec([4], tf.float32),
}


def _no_draws() -> dict[str, tf.Tensor]:
    """What a skipped training image carries in place of its draws."""
    return {name: tf.zeros(spec.shape, spec.dtype) for name, spec in _DRAWS.items()}


def _train_transform(
    crop_size: int, augmentation: str, eigen, scale_jitter, with_boxes: bool, pipeline_id: int
):
    """The per-image half of training augmentation (`transforms.train_crop`), seeded by
    (a random int64, the input pipeline's id); boxes are cropped only `with_boxes`
    (otherwise `_element` drops them as read)."""

    def transform(record: dict[str, tf.Tensor], random: tf.Tensor) -> dict[str, tf.Tensor]:
        image, boxes, values, draws = transforms.train_crop(
            record["encoded"],
            record["boxes"] if with_boxes else None,
            _box_values(record) if with_boxes else None,
            tf.stack([random, tf.constant(pipeline_id, tf.int64)]),
            crop_size=crop_size,
            augmentation=transforms.AUGMENTATIONS[augmentation],
            eigen=eigen,
            scale_jitter=scale_jitter,
        )
        if with_boxes:
            record = {**record, "boxes": boxes, **_from_box_values(values)}
        return {**record, **draws, "image": image}

    return transform


def _validate(
    source: Source,
    *,
    batch_size,
    training,
    crop_size,
    mean,
    std,
    augmentation,
    eval_mode,
    full_shorter_side,
    full_max_shorter_side,
    with_boxes,
    scale_jitter,
    seed,
    deterministic,
    bad_records,
    data_service,
    image_dtype="float32",
) -> None:
    """Raises ValueError naming the bad argument, its value and what is valid."""

    def fail(name: str, value, valid: str) -> None:
        raise ValueError(f"build_dataset: invalid {name}={value!r}; {valid}")

    if batch_size < 1:
        fail("batch_size", batch_size, "must be >= 1")
    if image_dtype not in IMAGE_DTYPES:
        fail("image_dtype", image_dtype, f"valid: {list(IMAGE_DTYPES)}")
    if not 1 <= crop_size <= constants.RESIZE_SHORTER_SIDE:
        fail("crop_size", crop_size, f"must be in 1..{constants.RESIZE_SHORTER_SIDE}")
    if augmentation not in transforms.AUGMENTATIONS:
        fail("augmentation", augmentation, f"valid: {sorted(transforms.AUGMENTATIONS)}")
    if eval_mode not in EVAL_MODES:
        fail("eval_mode", eval_mode, f"valid: {list(EVAL_MODES)}")
    if np.shape(mean) != (3,) and np.ndim(mean) != 3:
        fail("mean", np.shape(mean), "need 3 per-channel values or a mean image [H, W, 3]")
    if np.shape(std) != (3,) or min(std) <= 0:
        fail("std", std, "need 3 positive values")
    if full_shorter_side is not None and full_shorter_side < 1:
        fail("full_shorter_side", full_shorter_side, "must be >= 1, or None (original size)")
    if full_max_shorter_side is not None and full_max_shorter_side < 1:
        fail("full_max_shorter_side", full_max_shorter_side, "must be >= 1, or None (no cap)")
    if full_max_shorter_side is not None and full_shorter_side is not None:
        fail("full_max_shorter_side", full_max_shorter_side, "needs full_shorter_side=None")
    if scale_jitter is not None and not crop_size <= scale_jitter[0] <= scale_jitter[1]:
        fail("scale_jitter", scale_jitter, f"need crop_size ({crop_size}) <= min <= max")
    if not training and eval_mode == "full" and batch_size != 1:
        fail("batch_size", batch_size, "eval_mode='full' yields whole images: use 1")
    if with_boxes and not source.has_boxes:
        fail("with_boxes", with_boxes, f"{type(source).__name__} has no boxes")
    if with_boxes and not training and eval_mode == "ten_view":
        fail("with_boxes", with_boxes, "boxes are not produced for eval_mode='ten_view'")
    if deterministic and training and seed is None:
        fail("seed", seed, "deterministic=True training needs an integer seed")
    if bad_records is not None and data_service is not None:
        fail(
            "bad_records",
            bad_records,
            "cannot count on tf.data service workers: pass bad_records=None with data_service",
        )


def build_dataset(
    source: Source,
    split: str,
    *,
    batch_size: int,
    training: bool,
    crop_size: int,
    mean: Sequence[float] | np.ndarray,
    std: Sequence[float],
    augmentation: str = "alexnet",
    eval_mode: str = "center",
    full_shorter_side: int | None = None,
    full_max_shorter_side: int | None = None,
    with_boxes: bool = False,
    pca_lighting: bool = True,
    scale_jitter: tuple[int, int] | None = None,
    input_context: tf.distribute.InputContext | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    strict: bool = False,
    repeat: bool = False,
    bad_records: BadRecordCounter | None = None,
    max_pixels: int | None = constants.MAX_PIXELS,
    data_service: str | None = None,
    pca_eigen: tuple[np.ndarray, np.ndarray] | None = None,
    shuffle_buffer: int = 10_000,
    image_dtype: str = "float32",
) -> tf.data.Dataset:
    """Builds the input pipeline of one split.

    Args:
      source: from `open_source`.
      split: e.g. "train", "validation".
      batch_size: per input pipeline (= per replica under
        `strategy.distribute_datasets_from_function`). Training drops the remainder.
      training: random crops (`augmentation`) and flips; otherwise `eval_mode` views.
      crop_size: output side in pixels (227 AlexNet, 231/221 OverFeat fast/accurate).
      mean, std: normalisation `(pixel_0_255 - mean) / std`; mean may also be a mean
        image [H, W, 3] (see `transforms`).
      augmentation: "alexnet" (random crop of the central 256x256), "zfnet" (one of its
        4 corner and centre crops) or "overfeat" (random crop of the whole 256xN image).
      eval_mode: "center" -> images [b, crop, crop, 3]; "ten_view" -> [b, 10, crop,
        crop, 3]; "full" -> [1, h, w, 3], whole images (batch_size must be 1).
      full_shorter_side: "full" images: None keeps each image's original resolution
        (OverFeat section 3.3 resizes the original to every scale); an int resizes the
        shorter side to it (256: the pipeline's usual resize).
      full_max_shorter_side: "full" images at original resolution: shrink those whose
        shorter side exceeds it to it, to bound memory (None: no cap, the default; see
        `transforms.preprocess_full`). Pass the largest scale's shorter side
        (`overfeat_tf.evaluation.dense.largest_shorter_side`).
      with_boxes: labels become {"label": int32 [b], "boxes": float32
        [b, MAX_BOXES, 4] (ymin, xmin, ymax, xmax) normalised to the output image and
        zero-padded, "box_labels": int32 [b, MAX_BOXES] (-1 padded), "difficult": bool
        [b, MAX_BOXES] (PASCAL VOC's flag, False padded), "num_boxes": int32 [b]}.
        Boxes outside the crop are dropped, the rest clipped to it.
      pca_lighting: AlexNet's PCA colour noise in training (AlexNet's recipe only).
      scale_jitter: (min, max) shorter side per training image instead of 256.
      input_context: shards files per input pipeline.
      seed: seeds file order, shuffling and augmentation.
      deterministic: same elements in the same order for the same seed (slower). None:
        True for evaluation, so that "the first n images" (previews, `max_examples`)
        never depend on thread timing; False for training.
      strict: fail on the first unusable image, naming its file, instead of skipping.
      repeat: repeat the split forever (training loops with steps per epoch); a pass
        without one usable image ends the dataset instead of looping for ever.
      bad_records: counts the distinct files skipped (read `.value()` at the end of an
        epoch); one counter per split.
      max_pixels: images whose header promises more pixels are skipped and counted
        (strict: an error); None: no limit.
      data_service: "grpc://host:port" of a tf.data service dispatcher; decoding and
        augmentation then run on its workers.
      pca_eigen: (eigval [3], eigvec [3, 3]) from `pipelines.stats`; default the
        published PCA_EIGVAL / PCA_EIGVEC.
      shuffle_buffer: records held for shuffling in training (none for sources whose
        shuffled file order is a full permutation, `Source.shuffles_fully`).
      image_dtype: dtype of training images ("float32", "bfloat16", "float16"), cast
        per batch.

    Returns:
      A dataset of `(images float32, labels)` batches as described above.
    """
    if deterministic is None:
        deterministic = not training
    _validate(
        source,
        batch_size=batch_size,
        training=training,
        crop_size=crop_size,
        mean=mean,
        std=std,
        augmentation=augmentation,
        eval_mode=eval_mode,
        full_shorter_side=full_shorter_side,
        full_max_shorter_side=full_max_shorter_side,
        with_boxes=with_boxes,
        scale_jitter=scale_jitter,
        seed=seed,
        deterministic=deterministic,
        bad_records=bad_records,
        data_service=data_service,
        image_dtype=image_dtype,
    )
    mean = tf.constant(mean, tf.float32)
    std = tf.constant(std, tf.float32)
    dataset = source.records(split, input_context, shuffle_files=training, seed=seed)
    # A source whose shuffled file order is already a full permutation needs no record
    # buffer.
    if training and not source.shuffles_fully:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if training:
        eigen = None
        if pca_lighting:
            eigen = pca_eigen or (constants.PCA_EIGVAL, constants.PCA_EIGVEC)
            eigen = tuple(tf.constant(e, tf.float32) for e in eigen)
        pipeline_id = 0 if input_context is None else input_context.input_pipeline_id
        # One stateless seed per image: (random int64, input pipeline id).
        seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
        dataset = tf.data.Dataset.zip(dataset, seeds)
        transform = _train_transform(
            crop_size, augmentation, eigen, scale_jitter, with_boxes, pipeline_id
        )
    else:
        transform = _eval_transform(
            eval_mode, crop_size, mean, std, full_shorter_side, full_max_shorter_side
        )
    if training or eval_mode == "center":
        image_shape = [crop_size, crop_size, 3]
    elif eval_mode == "ten_view":
        image_shape = [10, crop_size, crop_size, 3]
    else:  # "full": whole images of any size; the placeholder is never batched.
        image_shape = [constants.RESIZE_SHORTER_SIDE, constants.RESIZE_SHORTER_SIDE, 3]
    read = _skip_bad_images(
        transform, image_shape, strict, bad_records, _no_draws() if training else {}, max_pixels
    )
    element = _element(with_boxes, training)
    dataset = dataset.map(lambda *args: element(read(*args)), num_parallel_calls=AUTOTUNE)
    if not strict:
        # Drops the records the check above failed (counted there) and any whose bytes
        # passed it yet fail to decode (not counted), logging each error (the check's
        # names the file), so that an epoch never dies on them.
        dataset = dataset.ignore_errors(log_warning=True)
    if repeat:
        # After dropping: tf.data ends a repeat whose pass yields nothing, so a split
        # without one usable image ends (the trainer reports it) instead of looping.
        dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=training, num_parallel_calls=AUTOTUNE)

    def finish(batch: dict[str, tf.Tensor]):
        labels = _checked_labels(batch, source.num_classes, with_boxes)
        if not training:
            return batch["image"], labels
        # Flip, lighting, normalisation and dtype once per batch.
        draws = {name: batch[name] for name in _DRAWS}
        images = transforms.augment_batch(
            batch["image"], draws, mean, std, tf.as_dtype(image_dtype)
        )
        return images, labels

    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE)
    if data_service is not None:
        dataset = dataset.apply(
            tf.data.experimental.service.distribute(
                processing_mode=tf.data.experimental.service.ShardingPolicy.OFF,
                service=data_service,
            )
        )
    dataset = dataset.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options)
