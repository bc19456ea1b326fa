"""Dense multi-scale evaluation with fine-stride offset pooling (OverFeat section 3.3).

The convolutional layers run once over the whole image at each scale; the classifier
slides over the last convolution's map instead of over cropped windows.

Offset pooling. OverFeat pools the layer-5 map once per offset (dx, dy) in {0..s-1}^2
(s: the last pool's stride), runs the classifier on each pooled map and interleaves the
s*s output maps. That loop is one pass: a max-pool of the same window with stride 1,
then the first FC convolution with dilation s, then the 1x1 convolutions. Offset (dx, dy) of the fine map, `fine[:, dy::s, dx::s]`, is exactly the
coarse map of the layer-5 map shifted by (dx, dy).

- OverFeat accurate: pool 3x3 / 3, 9 offsets, 36 px -> 12 px cells.
- OverFeat fast: pool 2x2 / 2, 4 offsets, 32 px -> 16 px.
- AlexNet, ZFNet: the overlapping pool 3x3 / 2 has the stride's 2x2 offsets (a 3x3
  window every 2 cells; offset 2 would equal offset 0 moved one cell): 32 px -> 16 px.
  ZFNet's last pool rounds up (Caffe ceil mode); its extra ceil cell sees a window that
  runs off the map's edge, so dense evaluation keeps only whole windows (floor). At sizes
  where the layer-5 map minus 3 is even (the native 13x13 included) both agree.

Map geometry. Cell u (row or column) of a map comes from the `input_size` x `input_size`
window starting at u * `cell_stride` px of the scaled image, where `cell_stride` is the
model's stride divided by s (fine) or the stride itself (coarse, `fine_stride=False`).
A fine map has h5 - (k - 1) - (K - 1) * s cells per axis (k: pool window, K: first FC
kernel; accurate: h5 - 14).

Scales. A scale (h, w) resizes the image (bilinear, antialiased, aspect kept) so that its
shorter side becomes min(h, w) px; the longer side follows the image's aspect ratio,
rounded. An image with the scale's aspect ratio thus becomes exactly h x w (or w x h
when its orientation is the other one); other images keep their own shape. The paper's
six scales for OverFeat accurate are 245 + 36 k px (Table 5); `default_scales` derives
the same pattern for every model.

XLA. With `xla="on"` (or "auto" choosing it, `overfeat_tf.xla_choice`) the network runs
XLA-compiled, which needs fixed shapes: each scaled image is zero-padded at its bottom and
right up to a bucket, the smallest size of the form `base + k * stride` (`base`: the
smallest default scale, `stride`: the coarse stride) that holds it, so images at the
default scales are not padded and one compile serves every image whose scaled size falls
in the same bucket. The padding must not change the cells the unpadded image has: every
layer that reads past its input's edge (a padded convolution, a ceil pool) first gets
zeros beyond the unpadded image's extent at that layer, exactly what it reads without
padding, and the map is cropped back to the unpadded one's cells (`map_size`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

from overfeat_tf.models import fully_conv
from overfeat_tf.models import spec as spec_lib
from overfeat_tf.models.registry import ModelInfo, model_info
from overfeat_tf.xla_choice import Calibration, XlaChoice, choose

Scale = tuple[int, int]
View = tuple[Scale, bool]  # (scale, flipped)

# OverFeat Table 5 scales as steps of the coarse stride above the smallest size at which
# all offsets fit: 245 + 36 * (0, 1, 2, 4, 5, 6) x 245 + 36 * (0, 2, 4, 6, 7, 9).
PAPER_SCALE_STEPS: tuple[Scale, ...] = ((0, 0), (1, 2), (2, 4), (4, 6), (5, 7), (6, 9))
# OverFeat Table 2's four-scale rows use scales 1, 2, 4 and 6 of the six (1-based).
PAPER_FOUR_SCALES = (1, 2, 4, 6)


def _info(model: str | keras.Model | ModelInfo) -> ModelInfo:
    return model if isinstance(model, ModelInfo) else model_info(model)


def fine_cell_stride(model: str | keras.Model | ModelInfo) -> int:
    """Input pixels between neighbouring cells of the fine map (accurate 12, others 16)."""
    info = _info(model)
    return info.stride // info.last_pool.stride


def default_scales(model: str | keras.Model | ModelInfo) -> tuple[Scale, ...]:
    """The paper's six scales for OverFeat accurate, the same derivation for the others.

    The smallest size at which every offset gives a map of the same size is the native
    input plus (s - 1) fine cells (accurate: 221 + 2 * 12 = 245, a 3x3 fine map); larger
    sizes add whole coarse strides (36 px), which keeps all offsets equal. The steps of
    OverFeat Table 5 (`PAPER_SCALE_STEPS`) give 245x245, 281x317, 317x389, 389x461,
    425x497, 461x569 for accurate; fast: 247x247 ... 439x535; AlexNet 243x243 ...
    435x531; ZFNet 240x240 ... 432x528.
    """
    info = _info(model)
    base = info.input_size + (info.last_pool.stride - 1) * fine_cell_stride(info)
    return tuple(
        (base + steps_h * info.stride, base + steps_w * info.stride)
        for steps_h, steps_w in PAPER_SCALE_STEPS
    )


def _as_scale(scale: int | Sequence[int]) -> Scale:
    if isinstance(scale, int):
        return (scale, scale)
    height, width = scale
    return (int(height), int(width))


def parse_scales(values: Sequence[str]) -> list[Scale]:
    """`["245x245", "281x317", "300"]` -> [(245, 245), (281, 317), (300, 300)]."""
    scales = []
    for value in values:
        parts = value.strip().lower().split("x")
        if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
            raise ValueError(f"{value!r} is not HxW or S, e.g. 245x245,281x317")
        scales.append((int(parts[0]), int(parts[-1])))
    return scales


def resize_to_scale(images: tf.Tensor, scale: Scale) -> tf.Tensor:
    """Resizes `[b, h, w, c]` so that min(h, w) becomes min(scale), aspect kept.

    Bilinear and antialiased, as the input pipeline resizes. Returns float32
    `[b, round(h * f), round(w * f), c]` with f = min(scale) / min(h, w). An image
    already at that size is returned as it is, skipping the resize: its samples fall on
    the pixel centres, so it would return the same values.
    """
    size = tf.shape(images)[1:3]
    factor = min(scale) / tf.reduce_min(tf.cast(size, tf.float32))
    new_size = tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32)
    return tf.cond(
        tf.reduce_all(tf.equal(new_size, size)),
        lambda: tf.cast(images, tf.float32),
        lambda: tf.image.resize(images, new_size, method="bilinear", antialias=True),
    )


def largest_shorter_side(scales: Sequence[Scale]) -> int:
    """The shorter side (px) of the largest of `scales`: the cap at which
    `build_dataset(full_max_shorter_side=...)` keeps that scale exact."""
    return max(min(scale) for scale in scales)


def slide_head(
    layers: Sequence[keras.layers.Conv2D], pooled: tf.Tensor, dilation: int
) -> tf.Tensor:
    """Runs FC-as-convolution `layers` over a pooled map at every position.

    Args:
      layers: Conv2D layers, the first K x K, the rest 1x1 (a classifier or regressor
        head), applied with their own weights and activations.
      pooled: `[b, H', W', c5]` from `DenseEvaluator.pooled_map`.
      dilation: the offsets per axis the map was pooled at (s; 1 for a coarse map).
        Pooled cells one apart hold offsets one apart, so the first kernel's taps must
        be a pool stride apart: dilation s. Later 1x1 kernels ignore dilation.

    Returns:
      `[b, H, W, units]` in the dtype of `pooled`; differentiable, so heads train
      through it.
    """
    x = pooled
    for layer in layers:
        x = tf.nn.conv2d(x, tf.cast(layer.kernel, x.dtype), 1, "VALID", dilations=dilation)
        x = layer.activation(x + tf.cast(layer.bias, x.dtype))
    return x


def _output_size(row: spec_lib.TrunkLayer, size):
    """Output length of trunk layer `row` for input length `size` (ints or int tensors)."""
    if isinstance(row, spec_lib.Norm):
        return size
    if isinstance(row, spec_lib.Conv):
        return (size + 2 * row.pad - row.kernel) // row.stride + 1
    if row.ceil:
        return -((size - row.size) // -row.stride) + 1
    return (size - row.size) // row.stride + 1


def _reads_past_edge(row: spec_lib.TrunkLayer) -> bool:
    return (isinstance(row, spec_lib.Conv) and row.pad > 0) or (
        isinstance(row, spec_lib.Pool) and row.ceil
    )


def _zero_beyond(x: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """`x` [b, H, W, c] with rows >= size[0] and columns >= size[1] set to zero."""
    rows = tf.range(tf.shape(x)[1]) < size[0]
    cols = tf.range(tf.shape(x)[2]) < size[1]
    inside = tf.logical_and(rows[:, None], cols[None, :])[None, :, :, None]
    return tf.where(inside, x, tf.zeros_like(x))


class DenseEvaluator:
    """Classifies whole images densely at several scales (OverFeat section 3.3).

    Built on the model's own layers (its trunk, and its FC convolutions' variables), so
    it always scores with the model's current weights.

    Args:
      model: a model from `build_model`.
      scales: (height, width) pairs (or ints for squares); None: `default_scales`.
        Every scale's shorter side must be at least the model's native input size.
      fine_stride: offset pooling (all s x s offsets); False gives the coarse map.
      flips: also evaluate the horizontally flipped image at every scale.
      xla: "auto" (time plain and XLA-compiled on the first call's images, keep the
        faster), "on" or "off"; compiled, scaled images are padded to buckets (above).
        Called inside a `tf.function` it runs plain.

    Input images are float32 `[b, h, w, 3]`, normalised as the model expects
    (`model_info(model).mean / std`), of any size; all scales are computed from them in
    one `tf.function` whose signature leaves h and w unknown (one trace for all sizes).

    Attributes:
      scales: the (height, width) scales. views: (scale, flipped) per map, the order of
      `score_maps`. offsets: pooling offsets per axis (s, or 1 when coarse).
      cell_stride: input pixels between map cells. name, input_mode, description: the
      `overfeat_tf.evaluation.Evaluator` interface (reads whole images, "full").
    """

    name = "dense"
    input_mode = "full"  # whole images, aspect kept (pipelines' eval_mode)

    def __init__(
        self,
        model: keras.Model,
        scales: Sequence[int | Sequence[int]] | None = None,
        fine_stride: bool = True,
        flips: bool = True,
        xla: str = "auto",
    ) -> None:
        self.info = model_info(model)
        self.scales: tuple[Scale, ...] = (
            default_scales(self.info) if scales is None else tuple(map(_as_scale, scales))
        )
        if not self.scales:
            raise ValueError("scales must name at least one (height, width); received: []")
        for scale in self.scales:
            if min(scale) < self.info.input_size:
                raise ValueError(
                    f"Every scale's shorter side must be >= {self.info.input_size} "
                    f"(the native input of {self.info.name}); received: {scale}"
                )
        self.fine_stride = fine_stride
        self.flips = flips
        self.description = (
            f"{len(self.scales)} scale{'s' * (len(self.scales) > 1)}, "
            f"{'fine' if fine_stride else 'coarse'} stride{', flips' if flips else ''}"
        )
        flipped = (False, True) if flips else (False,)
        self.views: tuple[View, ...] = tuple((s, f) for s in self.scales for f in flipped)
        pool = self.info.last_pool
        self.offsets = pool.stride if fine_stride else 1
        self.cell_stride = fine_cell_stride(self.info) if fine_stride else self.info.stride
        self._pool_stride = 1 if fine_stride else pool.stride
        self._trunk = fully_conv.trunk(model)
        self._head = [model.get_layer(row.name) for row in self.info.spec.head]
        names = {layer.name for layer in model.layers}
        self._trunk_rows = [
            (row, [model.get_layer(n) for n in (f"{row.name}_pad", row.name) if n in names])
            for row in self.info.spec.trunk
        ]
        self._bucket_base = default_scales(self.info)[0]
        signature = [tf.TensorSpec([None, None, None, 3], tf.float32, name="images")]
        self._maps_fn = tf.function(
            lambda images: self._score_maps(images, self.logit_map), input_signature=signature
        )
        self._fn = tf.function(
            lambda images: self._mean_of_maxima(self._score_maps(images, self.logit_map)),
            input_signature=signature,
        )
        # Padded input shape -> `_padded_logit_map` compiled for it (traced once each).
        self._compiled_maps: dict[tuple[int, ...], Callable] = {}
        self._calibration = Calibration(xla)

    @property
    def xla_choice(self) -> XlaChoice | None:
        """Whether the network runs XLA-compiled, and why; None before the first call."""
        return self._calibration.choice

    @property
    def compiled_shapes(self) -> tuple[tuple[int, ...], ...]:
        """The padded input shapes `[b, H, W, 3]` XLA-compiled so far, one compile each."""
        return tuple(self._compiled_maps)

    def map_size(self, height: int, width: int) -> tuple[int, int]:
        """Cells (rows, columns) of `logit_map` for an image of `height` x `width` px."""
        return self._map_length(height), self._map_length(width)

    def _map_length(self, size):
        for row, _ in self._trunk_rows:
            size = _output_size(row, size)
        pool = self.info.last_pool
        size = (size - pool.size) // self._pool_stride + 1
        return size - (self.info.spec.head[0].kernel - 1) * self.offsets

    def bucket(self, size: int) -> int:
        """The padded length for a scaled image side of `size` px (see the module doc)."""
        base, stride = min(self._bucket_base), self.info.stride
        return base + max(0, -((base - size) // stride)) * stride

    def pooled_map(self, images: tf.Tensor) -> tf.Tensor:
        """`[b, h, w, 3]` -> the last pool's map at every offset, `[b, h5 - k + 1, ...]`.

        Pooled with stride 1 (fine) or the pool's stride (coarse); the input of
        `slide_head` for the classifier and for heads trained on the same maps (the box
        regressor, `overfeat_tf.detection`).
        """
        return self._pool(self._trunk(images, training=False))

    def logit_map(self, images: tf.Tensor) -> tf.Tensor:
        """`[b, h, w, 3]` at the size given -> logits `[b, H, W, num_classes]`, no resize.

        Cell (i, j) is the window at `cell_stride * (i, j)` px; fine maps interleave the
        offsets: `map[:, dy::s, dx::s]` is offset (dx, dy).
        """
        return self._classify(self._trunk(images, training=False))

    def _padded_logit_map(self, images: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
        """`logit_map` of `images[:, :size[0], :size[1]]`, run on `images` [b, H, W, 3]
        (zero beyond `size`); cells beyond `map_size(*size)` are meaningless."""
        x = images
        for row, layers in self._trunk_rows:
            if _reads_past_edge(row):
                x = _zero_beyond(x, size)
            for layer in layers:
                x = layer(x, training=False)
            size = _output_size(row, size)
        return self._classify(x)

    def _bucketed_logit_map(self, images: tf.Tensor) -> tf.Tensor:
        """`logit_map`, XLA-compiled on `images` zero-padded to their `bucket` size."""
        height, width = images.shape[1:3]
        padded = tf.pad(
            images,
            [[0, 0], [0, self.bucket(height) - height], [0, self.bucket(width) - width], [0, 0]],
        )
        shape = tuple(padded.shape)
        if shape not in self._compiled_maps:
            # A function of its own per shape. TF counts retracing per code object, or per
            # callable without one: a partial, so that buckets do not read as retracing.
            self._compiled_maps[shape] = tf.function(
                functools.partial(self._padded_logit_map), jit_compile=True
            )
        logits = self._compiled_maps[shape](padded, tf.constant([height, width], tf.int32))
        rows, cols = self.map_size(height, width)
        return logits[:, :rows, :cols]

    def _classify(self, x: tf.Tensor) -> tf.Tensor:
        """The last convolution's map -> logits: offset pooling and the FC convolutions."""
        return tf.cast(slide_head(self._head, self._pool(x), self.offsets), tf.float32)

    def _pool(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.max_pool2d(x, self.info.last_pool.size, self._pool_stride, "VALID")

    def _score_maps(
        self, images: tf.Tensor, logit_map: Callable[[tf.Tensor], tf.Tensor]
    ) -> list[tf.Tensor]:
        maps = []
        batch = tf.shape(images)[0]
        for scale in self.scales:
            x = resize_to_scale(images, scale)
            if self.flips:  # one pass over the image and its mirror
                x = tf.concat([x, tf.reverse(x, axis=[2])], axis=0)
            probs = tf.nn.softmax(logit_map(x), axis=-1)
            maps.append(probs[:batch])
            if self.flips:
                maps.append(tf.reverse(probs[batch:], axis=[2]))
        return maps

    @staticmethod
    def _mean_of_maxima(maps: list[tf.Tensor]) -> tf.Tensor:
        maxima = [tf.reduce_max(m, axis=[1, 2]) for m in maps]
        return tf.add_n(maxima) / len(maxima)

    def _compiled_score_maps(self, images: tf.Tensor) -> list[tf.Tensor]:
        return self._score_maps(tf.convert_to_tensor(images), self._bucketed_logit_map)

    def _use_xla(self, images: tf.Tensor) -> bool:
        """The choice; "auto" decides on the first call, timing both on its `images`.

        Inside a `tf.function` (an exported signature) the shapes are unknown: plain.
        """
        if not tf.executing_eagerly():
            return False
        if self._calibration.choice is None:
            self._calibration.choice = choose(
                self._calibration.mode,
                lambda: self._fn(images).numpy(),
                lambda: self._mean_of_maxima(self._compiled_score_maps(images)).numpy(),
            )
        return self._calibration.choice.xla

    def score_maps(self, images: tf.Tensor) -> list[tf.Tensor]:
        """Class-probability maps, one per view, in the order of `self.views`.

        Args:
          images: float32 `[b, h, w, 3]`, normalised.

        Returns:
          For each (scale, flipped) in `views`: float32 `[b, H, W, num_classes]`
          (softmax per cell). A flipped view's map is mirrored back, so its column j
          comes from the mirror of the window that column j of the unflipped map sees
          (the same window when the grid spans the scaled image exactly, as at the
          `default_scales`).
        """
        if self._use_xla(images):
            return self._compiled_score_maps(images)
        return self._maps_fn(images)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        """`[b, h, w, 3]` -> class probabilities `[b, num_classes]`.

        Per view, the spatial max of each class's probability; then the mean over views
        (scales and flips), OverFeat section 3.3.
        """
        if self._use_xla(images):
            return self._mean_of_maxima(self._compiled_score_maps(images))
        return self._fn(images)
