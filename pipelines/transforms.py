"""Image and box transforms of the AlexNet and OverFeat recipes, one function per purpose.

Pixel convention: uint8 in, float32 `(pixel_0_255 - mean) / std` out, HWC. Boxes are
float32 [n, 4] (ymin, xmin, ymax, xmax) normalised to the image they belong to; every
crop, resize and flip that changes the image changes its boxes the same way.

`mean` may be per-channel, shape [3], or a mean image [H, W, 3] of the 256x256 centre
squares (as saved by `pipelines.stats`; AlexNet, Krizhevsky et al. 2012, section 2,
subtracts the mean image). A mean image is cropped with the same window as the image,
located in the 256x256 centre square; windows outside it (OverFeat crops of the whole
image) are clipped to it, and views with no fixed window use its per-channel average.

All functions are pure TF ops and work eagerly, in `tf.function` and in `Dataset.map`.
Randomness is stateless: the caller passes an int64 [2] seed per image, so a fixed
pipeline seed gives the same crops whatever the order of parallel map calls.
"""

import dataclasses

import tensorflow as tf

from pipelines import constants
from pipelines import decode

Window = tf.Tensor  # float32 [4] (ymin, xmin, ymax, xmax), normalised.


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Where random training crops are taken from.

    crop_from_center_square: AlexNet (section 4.1) crops at random inside the central
      256x256 square of the image resized to shorter side 256; OverFeat (Sermanet et
      al. 2014, section 3.1) crops anywhere in the 256xN image.
    corners_and_center: ZFNet (Zeiler & Fergus 2013, section 3) takes one of the 10
      sub-crops of the central 256x256 square (4 corners and the centre, each with and
      without a horizontal flip), chosen at random per image, instead of any position.
    """

    name: str
    crop_from_center_square: bool
    corners_and_center: bool = False


AUGMENTATIONS = {
    "alexnet": Augmentation("alexnet", crop_from_center_square=True),
    "zfnet": Augmentation("zfnet", crop_from_center_square=True, corners_and_center=True),
    "overfeat": Augmentation("overfeat", crop_from_center_square=False),
}

_SHORTER = constants.RESIZE_SHORTER_SIDE


def _to_float(image: tf.Tensor) -> tf.Tensor:
    return tf.cast(image, tf.float32)


def _resize(image: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Bilinear resize of [h, w, c] to `size` (int32 [2]); float32 out.

    Antialiased only when shrinking more than 2x (e.g. a 4000-pixel photo to 256): at
    ImageNet's usual factors (< 1.6x) plain bilinear aliases little and is about four
    times faster, which keeps the training pipeline near decode speed. Same-size input
    (pre-resized files) is only cast. Training, evaluation and serving all resize
    through here, so they never disagree.
    """
    image = _to_float(image)
    shape = tf.shape(image)[:2]
    shrink = tf.reduce_max(tf.cast(shape, tf.float32) / tf.cast(size, tf.float32))

    def resize() -> tf.Tensor:
        return tf.cond(
            shrink > 2.0,
            lambda: tf.image.resize(image, size, method="bilinear", antialias=True),
            lambda: tf.image.resize(image, size, method="bilinear"),
        )

    return tf.cond(tf.reduce_all(tf.equal(shape, size)), lambda: image, resize)


def _scaled_size(size: tf.Tensor, shorter_side: int | tf.Tensor) -> tf.Tensor:
    """int32 [2]: `size` (h, w) scaled so that min(h, w) == shorter_side, aspect kept."""
    size_f = tf.cast(size, tf.float32)
    scale = tf.cast(shorter_side, tf.float32) / tf.reduce_min(size_f)
    return tf.maximum(tf.cast(tf.round(size_f * scale), tf.int32), 1)


def resize_keep_aspect(image: tf.Tensor, shorter_side: int) -> tf.Tensor:
    """Resizes [h, w, 3] so that its shorter side is `shorter_side`, aspect kept.

    Returns float32 [h', w', 3] on the input's pixel scale (0-255 for uint8 input).
    """
    return _resize(image, _scaled_size(tf.shape(image)[:2], shorter_side))


def normalize(
    image: tf.Tensor, mean: tf.Tensor, std: tf.Tensor, mean_window: Window | None = None
) -> tf.Tensor:
    """Returns float32 `(image - mean) / std` for a 0-255 image [h, w, 3].

    Args:
      mean: float32 [3], or a mean image [H, W, 3] (see module docstring).
      std: float32 [3].
      mean_window: where the image lies in the mean image's 256x256 centre square,
        normalised (may extend past it: it is clipped; xmin > xmax mirrors). None:
        use the per-channel average of a mean image.
    """
    mean = tf.convert_to_tensor(mean, tf.float32)
    std = tf.convert_to_tensor(std, tf.float32)
    if mean.shape.rank == 3:
        if mean_window is None:
            mean = tf.reduce_mean(mean, axis=[0, 1])
        else:
            window = tf.clip_by_value(mean_window, 0.0, 1.0)
            mean = tf.image.crop_and_resize(
                mean[tf.newaxis], window[tf.newaxis], [0], tf.shape(image)[:2]
            )[0]
            return (_to_float(image) - mean) / std
    # Per-channel: one multiply-add over the pixels.
    return _to_float(image) * (1.0 / std) - mean / std


def pca_lighting_shift(
    seed: tf.Tensor, eigval: tf.Tensor, eigvec: tf.Tensor, alpha_std: float = 0.1
) -> tf.Tensor:
    """AlexNet's PCA colour shift (Krizhevsky et al. 2012, section 4.1) for one image.

    Args:
      seed: int64 [2] stateless seed; alpha ~ N(0, alpha_std) [3] is drawn from it.
      eigval: float32 [3] eigenvalues of the RGB covariance on the 0-1 scale.
      eigvec: float32 [3, 3], rows R, G, B, columns the eigenvectors.

    Returns:
      float32 [3]: `eigvec @ (alpha * eigval) * 255`, to add to every 0-255 pixel.
    """
    alpha = tf.random.stateless_normal([3], seed, stddev=alpha_std)
    eigval = tf.convert_to_tensor(eigval, tf.float32)
    eigvec = tf.convert_to_tensor(eigvec, tf.float32)
    # eigvec @ (alpha * eigval), written elementwise: a MatMul op would hand this
    # 3x3 product to the intra-op thread pool, which costs milliseconds per image.
    return tf.reduce_sum(eigvec * (alpha * eigval), axis=1) * 255.0


def pca_lighting(
    image: tf.Tensor, seed: tf.Tensor, eigval: tf.Tensor, eigvec: tf.Tensor, alpha_std: float = 0.1
) -> tf.Tensor:
    """Adds `pca_lighting_shift` to every pixel of a 0-255 float32 image [h, w, 3];
    not clipped (as in fb.resnet.torch)."""
    return image + pca_lighting_shift(seed, eigval, eigvec, alpha_std)


def crop_boxes(
    boxes: tf.Tensor, box_labels: tf.Tensor, window: Window
) -> tuple[tf.Tensor, tf.Tensor]:
    """Expresses boxes in the coordinates of a crop window, dropping those outside it.

    Args:
      boxes: float32 [n, 4] normalised to the uncropped image.
      box_labels: int32 [n], or [n, k]: values kept or dropped with their box.
      window: float32 [4] the crop, normalised to the uncropped image.

    Returns:
      (boxes [m, 4] normalised to the window and clipped to [0, 1], box_labels [m]),
      keeping the m boxes that overlap the window with non-zero area.
    """
    offset = tf.tile(window[:2], [2])
    extent = tf.tile(window[2:] - window[:2], [2])
    moved = tf.clip_by_value((boxes - offset) / extent, 0.0, 1.0)
    keep = tf.logical_and(moved[:, 2] > moved[:, 0], moved[:, 3] > moved[:, 1])
    return tf.boolean_mask(moved, keep), tf.boolean_mask(box_labels, keep)


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
    """Mirrors normalised boxes [n, 4] left-right, like `tf.image.flip_left_right`."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, num=4, axis=1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=1)


def _center_square(size: tf.Tensor) -> tf.Tensor:
    """int32 [4] (y, x, side, side): the largest centred square of an image (h, w)."""
    side = tf.reduce_min(size)
    return tf.stack([(size[0] - side) // 2, (size[1] - side) // 2, side, side])


def _pixel_to_normalized(window: tf.Tensor, size: tf.Tensor) -> Window:
    """(y, x, h, w) pixels of an image of `size` -> float32 (ymin, xmin, ymax, xmax)."""
    w = tf.cast(window, tf.float32)
    s = tf.tile(tf.cast(size, tf.float32), [2])
    return tf.stack([w[0], w[1], w[0] + w[2], w[1] + w[3]]) / s


def _relative_to(window: Window, outer: Window) -> Window:
    """Expresses a normalised window in the normalised coordinates of `outer`."""
    offset = tf.tile(outer[:2], [2])
    return (window - offset) / tf.tile(outer[2:] - outer[:2], [2])


def random_crop_window(
    size: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: int,
    shorter_side: tf.Tensor,
    augmentation: Augmentation,
) -> tf.Tensor:
    """Random training crop window in the pixels of the original image.

    The crop is `crop_size` pixels of the image resized to `shorter_side`; computing it
    in original pixels lets the fused JPEG decoder decode only the window, and one
    resize of the window to crop_size x crop_size gives the same geometry as
    resize-then-crop.

    Args:
      size: int32 [2] (h, w) of the original image.
      seed: int64 [2] stateless seed.
      shorter_side: int32 scalar, 256 or the scale-jittered size.

    Returns:
      int32 [4] (offset_y, offset_x, height, width), a square inside the image.
    """
    short = tf.reduce_min(size)
    side = tf.cast(
        tf.round(crop_size * tf.cast(short, tf.float32) / tf.cast(shorter_side, tf.float32)),
        tf.int32,
    )
    side = tf.clip_by_value(side, 1, short)
    if augmentation.crop_from_center_square:
        region = _center_square(size)
    else:
        region = tf.stack([0, 0, size[0], size[1]])
    if augmentation.corners_and_center:
        # Top-left, top-right, bottom-left, bottom-right, centre (as `ten_views`).
        choice = tf.random.stateless_uniform([], seed, maxval=5, dtype=tf.int32)
        room = region[2:] - side
        offset = region[:2] + tf.gather([[0, 0], [0, 1], [1, 0], [1, 1], [0, 0]], choice) * room
        offset += tf.cast(tf.equal(choice, 4), tf.int32) * (room // 2)
        return tf.stack([offset[0], offset[1], side, side])
    u = tf.random.stateless_uniform([2], seed)
    room = tf.cast(region[2:] - side + 1, tf.float32)
    offset = region[:2] + tf.minimum(tf.cast(u * room, tf.int32), region[2:] - side)
    return tf.stack([offset[0], offset[1], side, side])


def train_crop(
    encoded: tf.Tensor,
    boxes: tf.Tensor | None,
    box_labels: tf.Tensor | None,
    seed: tf.Tensor,
    *,
    crop_size: int,
    augmentation: Augmentation,
    eigen: tuple[tf.Tensor, tf.Tensor] | None,
    scale_jitter: tuple[int, int] | None,
) -> tuple[tf.Tensor, tf.Tensor | None, tf.Tensor | None, dict[str, tf.Tensor]]:
    """The per-image half of training augmentation (AlexNet or OverFeat recipe): the
    random crop (fused `decode_and_crop_jpeg` on JPEGs) resized to crop_size, and this
    image's draws for the batch half (`augment_batch`).

    Args:
      encoded: tf.string scalar.
      boxes: float32 [n, 4] normalised to the original image; box_labels int32 [n];
        both None for no boxes (classification), which skips the box arithmetic.
      seed: int64 [2] stateless seed for this image.
      eigen: (eigval [3], eigvec [3, 3]) for PCA lighting, or None for none.
      scale_jitter: (min, max) shorter side drawn uniformly per image, or None for 256.

    Returns:
      (image float32 0-255 [crop_size, crop_size, 3], not yet flipped; boxes [m, 4]
      normalised to the returned image once flipped, box_labels [m] (None, None without
      boxes); draws {"flip":
      bool [], "shift": float32 [3] the PCA lighting shift (zeros without eigen),
      "mean_window": float32 [4] the crop in the mean image's 256x256 centre square}).
    """
    seeds = tf.random.experimental.stateless_split(seed, num=4)
    if scale_jitter is None:
        shorter = tf.constant(_SHORTER)
    else:
        shorter = tf.random.stateless_uniform(
            [], seeds[0], minval=scale_jitter[0], maxval=scale_jitter[1] + 1, dtype=tf.int32
        )
    size, window, image = decode.decode_window(
        encoded,
        lambda size: random_crop_window(
            size, seeds[1], crop_size=crop_size, shorter_side=shorter, augmentation=augmentation
        ),
    )
    flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
    image = _resize(image, [crop_size, crop_size])
    image.set_shape([crop_size, crop_size, 3])
    shift = tf.zeros([3]) if eigen is None else pca_lighting_shift(seeds[2], *eigen)
    window_n = _pixel_to_normalized(window, size)
    square_n = _pixel_to_normalized(_center_square(size), size)
    if boxes is not None:
        boxes, box_labels = crop_boxes(boxes, box_labels, window_n)
        boxes = tf.cond(flip, lambda: flip_boxes(boxes), lambda: boxes)
    draws = {"flip": flip, "shift": shift, "mean_window": _relative_to(window_n, square_n)}
    return image, boxes, box_labels, draws


def augment_batch(
    images: tf.Tensor,
    draws: dict[str, tf.Tensor],
    mean: tf.Tensor,
    std: tf.Tensor,
    dtype: tf.DType = tf.float32,
) -> tf.Tensor:
    """The batch half of training augmentation, each image with its own draws: the
    horizontal flip, PCA lighting (folded into the mean), normalisation, the dtype.

    Args:
      images: float32 0-255 [b, h, w, 3] from `train_crop`.
      draws: `train_crop`'s draws stacked over the batch: flip [b], shift [b, 3],
        mean_window [b, 4].
      mean: [3] or a mean image [H, W, 3], 0-255 scale. std: [3].

    Returns:
      `dtype` [b, h, w, 3]: `(flipped image - (mean - shift)) / std`.
    """
    flip = draws["flip"]
    mean = tf.convert_to_tensor(mean, tf.float32)
    std = tf.convert_to_tensor(std, tf.float32)
    if mean.shape.rank != 3:
        return _flip_and_normalise(images, flip, draws["shift"], mean, std, dtype)
    # A mean image: each image's crop of it, mirrored where the image is flipped.
    images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)
    ymin, xmin, ymax, xmax = tf.unstack(draws["mean_window"], axis=1)
    # crop_and_resize mirrors the mean patch where xmin > xmax.
    windows = tf.clip_by_value(
        tf.stack([ymin, tf.where(flip, xmax, xmin), ymax, tf.where(flip, xmin, xmax)], axis=1),
        0.0,
        1.0,
    )
    means = tf.image.crop_and_resize(
        mean[tf.newaxis], windows, tf.zeros_like(flip, tf.int32), tf.shape(images)[1:3]
    )
    return tf.cast((images - (means - draws["shift"][:, None, None, :])) / std, dtype)


@tf.function(jit_compile=True, autograph=False)
def _flip_and_normalise(
    images: tf.Tensor,
    flip: tf.Tensor,
    shift: tf.Tensor,
    mean: tf.Tensor,
    std: tf.Tensor,
    dtype: tf.DType,
) -> tf.Tensor:
    """`augment_batch` with a per-channel mean [3]: one pass over the pixels, fused by
    XLA. Run op by op, the flip, the normalisation and the cast read and write the whole
    float32 batch four times, which cost more than decoding its JPEGs."""
    images = tf.where(flip[:, None, None, None], tf.reverse(images, [2]), images)
    return tf.cast(images * (1.0 / std) - (mean - shift[:, None, None, :]) / std, dtype)


def preprocess_for_train(
    encoded: tf.Tensor,
    boxes: tf.Tensor,
    box_labels: tf.Tensor,
    seed: tf.Tensor,
    *,
    crop_size: int,
    mean: tf.Tensor,
    std: tf.Tensor,
    augmentation: Augmentation,
    eigen: tuple[tf.Tensor, tf.Tensor] | None,
    scale_jitter: tuple[int, int] | None,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Decodes and augments one training image: `train_crop`, then `augment_batch` on a
    batch of one (the input pipeline runs the two halves apart, the second per batch).

    Returns:
      (image float32 [crop_size, crop_size, 3], boxes [m, 4], box_labels [m]); boxes
      are normalised to the returned image.
    """
    image, boxes, box_labels, draws = train_crop(
        encoded,
        boxes,
        box_labels,
        seed,
        crop_size=crop_size,
        augmentation=augmentation,
        eigen=eigen,
        scale_jitter=scale_jitter,
    )
    batch = {name: value[tf.newaxis] for name, value in draws.items()}
    return augment_batch(image[tf.newaxis], batch, mean, std)[0], boxes, box_labels


def _center_crop_window(size: tf.Tensor, crop_size: int) -> tuple[tf.Tensor, Window, Window]:
    """Centre crop of the image resized to shorter side 256.

    Returns (resized size int32 [2], the crop window in the resized image's pixels as
    int32 (y, x, h, w), the same window normalised) for an original image of `size`.
    """
    resized = _scaled_size(size, _SHORTER)
    offset = (resized - crop_size) // 2
    window = tf.stack([offset[0], offset[1], crop_size, crop_size])
    return resized, window, _pixel_to_normalized(window, resized)


def preprocess_for_eval(image: tf.Tensor, crop_size: int, mean, std) -> tf.Tensor:
    """The single-view evaluation and serving transform.

    Resizes the shorter side to 256 (aspect kept), takes the central crop_size square
    and normalises. `export/` puts exactly this function into the serving graph.

    Args:
      image: uint8 [h, w, 3] (from `decode_image`).
      crop_size: output side, at most 256.
      mean: [3] or a mean image [H, W, 3], 0-255 scale. std: [3].

    Returns:
      float32 [crop_size, crop_size, 3].
    """
    resized, window, window_n = _center_crop_window(tf.shape(image)[:2], crop_size)
    square_n = _pixel_to_normalized(_center_square(resized), resized)
    crop = tf.image.crop_to_bounding_box(
        _resize(image, resized), window[0], window[1], crop_size, crop_size
    )
    crop.set_shape([crop_size, crop_size, 3])
    return normalize(crop, mean, std, _relative_to(window_n, square_n))


def center_crop_boxes(
    boxes: tf.Tensor, box_labels: tf.Tensor, image_size: tf.Tensor, crop_size: int
) -> tuple[tf.Tensor, tf.Tensor]:
    """Boxes of the original image (h, w) = image_size, moved into the crop that
    `preprocess_for_eval` takes; see `crop_boxes` for the return value."""
    _, _, window_n = _center_crop_window(image_size, crop_size)
    return crop_boxes(boxes, box_labels, window_n)


def ten_views(image: tf.Tensor, crop_size: int, mean, std) -> tf.Tensor:
    """AlexNet's ten test views (Krizhevsky et al. 2012, section 4.1).

    Resizes the shorter side to 256, takes the central 256x256 square, then its four
    corner crops and centre crop of crop_size, and their horizontal flips.

    Args:
      image: uint8 [h, w, 3].

    Returns:
      float32 [10, crop_size, crop_size, 3], in the order top-left, top-right,
      bottom-left, bottom-right, centre, then the same five flipped.
    """
    resized = _scaled_size(tf.shape(image)[:2], _SHORTER)
    square = _center_square(resized)
    full = _resize(image, resized)
    square_image = tf.image.crop_to_bounding_box(full, square[0], square[1], _SHORTER, _SHORTER)
    far = _SHORTER - crop_size
    offsets = [(0, 0), (0, far), (far, 0), (far, far), (far // 2, far // 2)]
    views = []
    for y, x in offsets:
        crop = square_image[y : y + crop_size, x : x + crop_size]
        window = tf.constant([y, x, y + crop_size, x + crop_size], tf.float32) / _SHORTER
        views.append(normalize(crop, mean, std, window))
    views += [tf.image.flip_left_right(v) for v in views]
    return tf.stack(views)


def preprocess_full(
    image: tf.Tensor,
    mean,
    std,
    shorter_side: int | None = None,
    max_shorter_side: int | None = None,
) -> tf.Tensor:
    """Whole image, aspect kept, for dense multi-scale (OverFeat) evaluation.

    OverFeat section 3.3 resizes the original image to each scale, so by default the
    image keeps its own resolution and the evaluator resizes it once per scale.

    Args:
      image: uint8 [h, w, 3].
      shorter_side: None keeps [h, w]; an int resizes the shorter side to it first
        (256: the pipeline's resized image, which larger scales then upsample).
      max_shorter_side: with `shorter_side` None, an image whose shorter side exceeds
        this is shrunk to it (never enlarged), bounding the float32 copy's memory. At
        the largest evaluation scale's shorter side, that scale still sees the original
        resized once; smaller scales see it resized twice.

    Returns:
      float32 [h', w', 3], normalised. A mean image contributes its per-channel average.
    """
    if shorter_side is not None:
        image = resize_keep_aspect(image, shorter_side)
    elif max_shorter_side is not None:
        # Antialiased bilinear, as the dense evaluator resizes to a scale, so that the
        # scale at the cap sees exactly one resize of the original.
        size = _scaled_size(tf.shape(image)[:2], max_shorter_side)
        image = tf.cond(
            tf.reduce_min(tf.shape(image)[:2]) > max_shorter_side,
            lambda: tf.image.resize(_to_float(image), size, method="bilinear", antialias=True),
            lambda: _to_float(image),
        )
    return normalize(image, mean, std)
