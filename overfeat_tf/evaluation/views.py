"""Classification evaluators that share one shape, and top-k error accumulation.

An evaluator is a callable `images -> class probabilities [b, num_classes]` with a `name`
(its row in the results table), an `input_mode` (which images it reads, the pipeline's
`eval_mode`: "center" `[b, s, s, 3]`, "ten_view" `[b, 10, s, s, 3]`, "full" whole
images `[1, h, w, 3]`) and a `description`. `evaluate` runs any of them over
`(images, labels)` batches; `format_table` prints the results like the papers' tables.

- `CenterEvaluator`: one centre crop (the serving transform).
- `TenViewEvaluator`: AlexNet's ten views, softmax averaged (Krizhevsky et al. 2012,
  section 4.1).
- `overfeat_tf.evaluation.dense.DenseEvaluator`: OverFeat's dense multi-scale evaluation
  (Sermanet et al. 2014, section 3.3).

`make_evaluator(model, mode)` builds one by mode name (`MODES`);
`overfeat_tf.evaluation.ensemble.EnsembleEvaluator` averages several.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

import keras
import tensorflow as tf

from overfeat_tf.cli import UserError
from overfeat_tf.evaluation import dense
from overfeat_tf.models.registry import model_info
from overfeat_tf.xla_choice import Calibration, XlaChoice

TOP1, TOP5 = "top1_error", "top5_error"
MODES = ("center", "ten_view", "dense")


class Evaluator(Protocol):
    """`images -> probabilities [b, num_classes]`, described for the results table."""

    name: str
    input_mode: str
    description: str

    def __call__(self, images: tf.Tensor) -> tf.Tensor: ...


class _ModelEvaluator:
    """The classifier at its native input size, traced once for any batch size.

    `xla`: "auto" runs the first batches alternately plain and XLA-compiled, timing
    them (`overfeat_tf.xla_choice`; every batch is evaluated either way), then keeps the
    faster; "on" or "off". Compiled, a smaller batch than the largest seen so far is
    zero-padded to it, so a split's last, partial batch does not compile again. Called
    inside a `tf.function` it runs plain.
    """

    def __init__(self, model: keras.Model, view_axes: int, xla: str = "auto") -> None:
        self.info = model_info(model)
        self._model = model
        size = self.info.input_size
        spec = tf.TensorSpec([None] * (1 + view_axes) + [size, size, 3], tf.float32)
        self._fn = tf.function(self._probabilities, input_signature=[spec])
        # One trace, and one XLA compile, per batch shape.
        self._compiled = tf.function(self._probabilities, jit_compile=True)
        self._compiled_batch = 0
        self._calibration = Calibration(xla)

    @property
    def xla_choice(self) -> XlaChoice | None:
        """Whether batches run XLA-compiled, and why; None while "auto" is still timing."""
        return self._calibration.choice

    def _run_compiled(self, images: tf.Tensor) -> tf.Tensor:
        count = images.shape[0]
        self._compiled_batch = max(self._compiled_batch, count)
        missing = self._compiled_batch - count
        if missing:
            images = tf.pad(images, [[0, missing]] + [[0, 0]] * (images.shape.rank - 1))
        return self._compiled(images)[:count]

    def _softmax(self, images: tf.Tensor) -> tf.Tensor:
        logits = tf.cast(self._model(images, training=False), tf.float32)
        return tf.nn.softmax(logits, axis=-1)

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        if not tf.executing_eagerly():  # inside a tf.function: shapes unknown, no timing
            return self._fn(images)
        images = tf.convert_to_tensor(images, tf.float32)
        deciding = self._calibration.choice is None
        start = time.perf_counter()
        if self._calibration.next_xla():
            probs = self._run_compiled(images)
        else:
            probs = self._fn(images)
        if deciding:
            probs.numpy()  # wait for the result before stopping the clock
            self._calibration.record((time.perf_counter() - start) / images.shape[0])
        return probs


class CenterEvaluator(_ModelEvaluator):
    """Centre crop `[b, s, s, 3]` (normalised) -> probabilities `[b, num_classes]`."""

    name = "center"
    input_mode = "center"

    def __init__(self, model: keras.Model, xla: str = "auto") -> None:
        super().__init__(model, view_axes=0, xla=xla)
        self.description = f"centre {self.info.input_size} crop"

    def _probabilities(self, images: tf.Tensor) -> tf.Tensor:
        return self._softmax(images)


class TenViewEvaluator(_ModelEvaluator):
    """AlexNet's ten views `[b, 10, s, s, 3]` -> mean softmax `[b, num_classes]`.

    Four corners and the centre of the central 256 square, and their mirrors
    (Krizhevsky et al. 2012, section 4.1).
    """

    name = "ten_view"
    input_mode = "ten_view"
    description = "4 corners + centre, flips"

    def __init__(self, model: keras.Model, xla: str = "auto") -> None:
        super().__init__(model, view_axes=1, xla=xla)

    def _probabilities(self, views: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(views)
        probs = self._softmax(tf.reshape(views, tf.concat([[-1], shape[2:]], axis=0)))
        return tf.reduce_mean(tf.reshape(probs, [shape[0], shape[1], -1]), axis=1)


class SavedModelEvaluator:
    """A served model's centre-crop prediction, through its own serving graph.

    Uses the export's `serving_default` signature (`image_bytes`: string [b], encoded
    images; `input_mode` "encoded") or, failing that, `predict_images` (`images`: uint8
    [b, h, w, 3]; `input_mode` "uint8"); both return `scores` [b, num_classes]
    probabilities after the pipeline's own eval transform, so this is the "center" mode.
    """

    name = "center"
    description = "centre crop, SavedModel"
    _SIGNATURES = (("serving_default", "encoded", tf.string), ("predict_images", "uint8", tf.uint8))

    def __init__(self, path: str) -> None:
        self._loaded = tf.saved_model.load(path)
        signatures = self._loaded.signatures
        for key, mode, dtype in self._SIGNATURES:
            if key not in signatures:
                continue
            inputs = signatures[key].structured_input_signature[1]
            outputs = signatures[key].structured_outputs
            usable = len(inputs) == 1 and next(iter(inputs.values())).dtype == dtype
            if usable and "scores" in outputs:
                self._fn = signatures[key]
                self._input_name = next(iter(inputs))
                self.input_mode = mode
                self.description += f" {key}"
                return
        raise ValueError(
            f"SavedModel {path!r} has no serving_default (string image bytes) or "
            f"predict_images (uint8 images) signature with a 'scores' output; its "
            f"signatures: {sorted(signatures)}"
        )

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        return self._fn(**{self._input_name: inputs})["scores"]


def make_evaluator(
    model: keras.Model,
    mode: str,
    *,
    scales: Sequence[int | Sequence[int]] | None = None,
    fine_stride: bool = True,
    flips: bool = True,
    xla: str = "auto",
) -> Evaluator:
    """The evaluator of `model` in `mode`, one of `MODES`.

    `scales`, `fine_stride`, `flips`: the dense evaluator's (ignored by the others);
    `xla`: "auto", "on" or "off" (`overfeat_tf.xla_choice`).

    Raises:
      ValueError: an unknown mode, or dense scales smaller than the model's input.
    """
    if mode == "center":
        return CenterEvaluator(model, xla)
    if mode == "ten_view":
        return TenViewEvaluator(model, xla)
    if mode == "dense":
        return dense.DenseEvaluator(model, scales, fine_stride, flips, xla)
    raise ValueError(f"Unknown evaluation mode {mode!r}; valid: {', '.join(MODES)}")


class NothingToEvaluate(UserError, ValueError):
    """The evaluation split yielded no image."""


def evaluate(
    evaluator: Evaluator,
    batches: Iterable[tuple[tf.Tensor, tf.Tensor]],
    *,
    num_classes: int,
    max_examples: int | None = None,
) -> dict[str, float]:
    """Top-1 and top-5 error of `evaluator` over `(images, labels int [b])` batches.

    Returns:
      {"top1_error": %, "top5_error": %, "examples": count, "images_per_second": rate}.
      With fewer than 5 classes, "top5" is top-`num_classes` (0 % error).
    """
    return evaluate_many(
        {"": evaluator}, batches, num_classes=num_classes, max_examples=max_examples
    )[""]


def evaluate_many(
    evaluators: Mapping[str, Evaluator],
    batches: Iterable[tuple[tf.Tensor, tf.Tensor]],
    *,
    num_classes: int,
    max_examples: int | None = None,
) -> dict[str, dict[str, float]]:
    """`evaluate` for several evaluators in one pass over the batches: each batch is
    read once and given to every evaluator in turn (the same tensor, so evaluators may
    share work on it). Returns each name's metrics; images/s is of the whole pass."""
    top1 = {name: keras.metrics.SparseTopKCategoricalAccuracy(k=1) for name in evaluators}
    top5 = {
        name: keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, num_classes))
        for name in evaluators
    }
    count = 0
    start = time.perf_counter()
    for images, labels in batches:
        if max_examples is not None:
            images, labels = images[: max_examples - count], labels[: max_examples - count]
        for name, evaluator in evaluators.items():
            probs = evaluator(images)
            top1[name].update_state(labels, probs)
            top5[name].update_state(labels, probs)
        count += int(tf.shape(labels)[0])
        if max_examples is not None and count >= max_examples:
            break
    if count == 0:
        names = ", ".join(evaluator.name for evaluator in evaluators.values())
        raise NothingToEvaluate(
            f"No image to evaluate {names!r} on: the split is empty or every image was "
            "skipped as unreadable"
        )
    seconds = time.perf_counter() - start
    return {
        name: {
            TOP1: 100.0 * (1.0 - float(top1[name].result())),
            TOP5: 100.0 * (1.0 - float(top5[name].result())),
            "examples": count,
            "images_per_second": count / seconds,
        }
        for name in evaluators
    }


def format_table(
    results: Mapping[str, Mapping[str, float]], descriptions: Mapping[str, str]
) -> str:
    """The results as a text table, one row per mode: top-1 / top-5 error in %."""
    width = max(len(f"{name} ({descriptions[name]})") for name in results)
    header = f"{'mode':<{width}}  top-1 err %  top-5 err %  examples  img/s"
    lines = [header, "-" * len(header)]
    for name, metrics in results.items():
        label = f"{name} ({descriptions[name]})"
        lines.append(
            f"{label:<{width}}  {metrics[TOP1]:>11.2f}  {metrics[TOP5]:>11.2f}  "
            f"{metrics['examples']:>8d}  {metrics['images_per_second']:>5.1f}"
        )
    return "\n".join(lines)
