"""The serving signatures: images in, top-k classes out, preprocessing inside the graph.

Every signature decodes with `pipelines.decode_image` and preprocesses with the
evaluation pipeline's own transforms (STYLE.md item 5): `pipelines.preprocess_for_eval`
(shorter side 256, centre crop, normalise), so a served prediction is the centre-crop
evaluation's prediction; `dense_classify` takes the whole image
(`pipelines.transforms.preprocess_full`, the "full" eval mode) into
`overfeat_tf.DenseEvaluator`, OverFeat's dense multi-scale evaluation (section 3.3). The
functions are plain TF ops (no
`py_function`: TF Serving cannot run it) and are written into a
`keras.export.ExportArchive`, which tracks the Keras 3 model's variables the way TF
Serving's C++ loader needs (a plain `tf.saved_model.save` of a Keras 3 model loads in
Python but not there).

Signatures (all batched; b may be 0):
  serving_default      image_bytes: string [b], encoded JPEG/PNG/GIF/BMP of up to
                       `ServingConfig.max_pixels` pixels (read from the header, before
                       decoding), grayscale or RGB (images of one batch may differ in size).
  predict_images       images: uint8 [b, h, w, 3], any h, w.
  classify_tf_example  examples: string [b], serialized tf.train.Example protos with
                       `image/encoded` (the ImageNet TFRecord format).
  dense_classify       image_bytes: as serving_default; every scale and flip of the
                       dense evaluator (default: its six paper-pattern scales, flips).
  localize             image_bytes: as serving_default; OverFeat localization (section
                       4.3, `overfeat_tf.detection.Localizer`) with the run's
                       localization regressor: up to 5 guesses, one class each.
  detect               image_bytes: as serving_default; OverFeat detection (section 5,
                       `overfeat_tf.detection.Detector`) with the run's detection
                       classifier and regressor: up to `max_detections` boxes.
The box signatures exist when the run has the regressors (`export.boxes`), and take
the whole image at its own resolution, as the dense evaluation does.
An ensemble (several models, `build_archive(models, ...)`) exports the same signatures;
its scores are the mean of the members' probabilities (`overfeat_tf.evaluation.ensemble`): one
preprocessing with the first member's normalisation, renormalised for each other member.

Outputs of the box signatures (k: 5 for localize, max_detections for detect; rows past
num_boxes are padding: class -1, name "", box and score 0):
  boxes          float32 [b, k, 4]  (ymin, xmin, ymax, xmax) in pixels of the input image.
  classes        int32 [b, k]       class ids, best first; class_names string [b, k].
  scores         float32 [b, k]     the merged box's summed probability.
  num_boxes      int32 [b]          boxes found per image.

Outputs of the others:
  classes        int32 [b, k]    top-k class indices, best first (k = min(top_k, classes)).
  class_names    string [b, k]   their names, looked up in the `class_names.txt` asset.
  probabilities  float32 [b, k]  their probabilities.
  scores         float32 [b, n]  probabilities of all n classes: the softmax of the
                                 logits; for dense_classify, the per-class spatial max
                                 of each view's softmax map, averaged over the views.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
import tensorflow as tf

import overfeat_tf
import pipelines
from overfeat_tf import evaluation
from overfeat_tf.detection import detector as detector_lib
from overfeat_tf.detection import localizer as localizer_lib
from overfeat_tf.evaluation import ensemble
from pipelines import constants as pipelines_constants
from pipelines import decode as pipelines_decode
from pipelines import tfrecord_format
from pipelines import transforms as pipelines_transforms

SERVING_DEFAULT = "serving_default"
PREDICT_IMAGES = "predict_images"
CLASSIFY_TF_EXAMPLE = "classify_tf_example"
DENSE_CLASSIFY = "dense_classify"
LOCALIZE = "localize"
DETECT = "detect"

IMAGE_BYTES = "image_bytes"
IMAGES = "images"
EXAMPLES = "examples"

OUTPUT_NAMES = ("classes", "class_names", "probabilities", "scores")
BOX_OUTPUT_NAMES = ("boxes", "classes", "class_names", "scores", "num_boxes")

# The input of each signature, by name: the exporter, the warm-up writer and the request
# converters read this one table.
INPUT_SPECS: dict[str, dict[str, tf.TensorSpec]] = {
    SERVING_DEFAULT: {IMAGE_BYTES: tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)},
    PREDICT_IMAGES: {IMAGES: tf.TensorSpec([None, None, None, 3], tf.uint8, name=IMAGES)},
    CLASSIFY_TF_EXAMPLE: {EXAMPLES: tf.TensorSpec([None], tf.string, name=EXAMPLES)},
    DENSE_CLASSIFY: {IMAGE_BYTES: tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)},
}
# The box signatures' inputs, exported when the run has their regressors.
BOX_INPUT_SPECS: dict[str, dict[str, tf.TensorSpec]] = {
    LOCALIZE: {IMAGE_BYTES: tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)},
    DETECT: {IMAGE_BYTES: tf.TensorSpec([None], tf.string, name=IMAGE_BYTES)},
}


@dataclasses.dataclass(frozen=True)
class BoxServing:
    """What the box signatures run (`export.boxes.box_serving` builds it).

    Attributes:
      localizer: the `localize` signature's localizer; None: no such signature.
      detector: the `detect` signature's detector (object classes, then background,
        the classifier's classes first); None: no such signature.
      models: the Keras models they read besides the classifier (regressors, the
        detection classifier), tracked so their variables are saved.
      max_detections: boxes per image that `detect` returns at most.
    """

    localizer: localizer_lib.Localizer | None = None
    detector: detector_lib.Detector | None = None
    models: tuple[keras.Model, ...] = ()
    max_detections: int = 100


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What the serving graph needs besides the model.

    Attributes:
      class_names: one name (synset or text) per model output, in label order.
      crop_size: the model's input side in pixels (`ModelInfo.input_size`).
      mean: per-channel mean [3] (or a mean image [H, W, 3]), 0-255 scale.
      std: per-channel std [3], 0-255 scale.
      top_k: how many classes each answer lists (at most the number of classes).
      dense_scales: (height, width) scales of `dense_classify`; None: the dense
        evaluator's `default_scales` for the model.
      max_pixels: encoded images whose header promises more pixels (height x width)
        are refused before decoding (`pipelines.decode.header_size`).
    """

    class_names: tuple[str, ...]
    crop_size: int
    mean: Any
    std: Any
    top_k: int = 5
    dense_scales: tuple[tuple[int, int], ...] | None = None
    max_pixels: int = pipelines_constants.MAX_PIXELS

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1. Received: top_k={self.top_k}")
        if self.max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1. Received: max_pixels={self.max_pixels}")
        bad = [n for n in self.class_names if not n or "\n" in n or "\r" in n]
        if bad:
            raise ValueError(
                "Class names must be non-empty single lines (they are stored one per line "
                f"in an asset file). Received: {bad[:3]!r}"
            )

    @classmethod
    def from_model_dir_config(
        cls,
        config: Mapping[str, Any],
        top_k: int = 5,
        max_pixels: int = pipelines_constants.MAX_PIXELS,
    ) -> ServingConfig:
        """From the dict `overfeat_tf.run_dir.read_config` returns."""
        return cls(
            class_names=tuple(config["class_names"]),
            crop_size=int(config["input_size"]),
            mean=config["mean"],
            std=config["std"],
            top_k=top_k,
            max_pixels=max_pixels,
        )


def class_name_table(names_file: str) -> tf.lookup.StaticHashTable:
    """int64 line number -> tf.string line of `names_file`.

    Built from the file through `TextFileInitializer`, so that a SavedModel holding the
    table copies the file into its `assets/` and reads it from there when loaded.
    """
    initializer = tf.lookup.TextFileInitializer(
        names_file,
        key_dtype=tf.int64,
        key_index=tf.lookup.TextFileIndex.LINE_NUMBER,
        value_dtype=tf.string,
        value_index=tf.lookup.TextFileIndex.WHOLE_LINE,
    )
    return tf.lookup.StaticHashTable(initializer, default_value="")


def decode_checked(encoded: tf.Tensor, where: tf.Tensor, max_pixels: int) -> tf.Tensor:
    """`pipelines.decode_image`, after a check whose error names the bad element.

    Args:
      encoded: tf.string scalar.
      where: tf.string scalar naming the element in errors, e.g. "image_bytes[3]".
      max_pixels: the largest height x width accepted, read from the header before
        decoding (a decompression bomb is refused before it allocates anything).

    Returns:
      uint8 [h, w, 3].

    Raises:
      tf.errors.InvalidArgumentError: "<where> is not a valid image: <reason>" for
        empty, truncated, unknown or oversized bytes (`pipelines.decode.check_encoded`); bytes that
        pass the check but do not decode fail with the decoder's own message.
    """
    ok, reason = pipelines_decode.check_encoded(encoded, max_pixels)
    message = tf.strings.join([where, " is not a valid image: ", reason])
    check = tf.debugging.Assert(ok, [message])
    with tf.control_dependencies([check]):
        return pipelines.decode_image(tf.identity(encoded))


def _element_names(input_name: str, count: tf.Tensor) -> tf.Tensor:
    """tf.string [count]: "<input_name>[0]", "<input_name>[1]", ..."""
    indices = tf.strings.as_string(tf.range(count))
    return tf.strings.join([f"{input_name}[", indices, "]"])


def as_models(model: keras.Model | Sequence[keras.Model]) -> list[keras.Model]:
    """One model, or an ensemble's members, as a list."""
    return [model] if isinstance(model, keras.Model) else list(model)


class ServingFunctions:
    """The signature bodies for one model or an ensemble; each returns `OUTPUT_NAMES`.

    Args:
      model: the Keras classifier, float32 [b, s, s, 3] normalised -> [b, n] logits;
        or a sequence of them, an ensemble sharing `config`'s input size and classes.
      class_names: the table `class_name_table` builds.
      config: the eval transform's arguments (the first member's normalisation) and top_k.
      normalizations: (mean, std) per member of an ensemble; None: `config`'s for all.
    """

    def __init__(
        self,
        model: keras.Model | Sequence[keras.Model],
        class_names: tf.lookup.StaticHashTable,
        config: ServingConfig,
        normalizations: Sequence[ensemble.Normalization] | None = None,
        boxes: BoxServing | None = None,
    ) -> None:
        models = as_models(model)
        num_classes = models[0].output_shape[-1]
        for member in models:
            if member.output_shape[-1] != len(config.class_names):
                raise ValueError(
                    f"The model has {member.output_shape[-1]} outputs but "
                    f"{len(config.class_names)} class names were given."
                )
        self._class_names = class_names
        self._config = config
        self._boxes = boxes or BoxServing()
        self._num_classes = num_classes
        self._k = min(config.top_k, num_classes)
        self._mean = tf.constant(config.mean, tf.float32)
        self._std = tf.constant(config.std, tf.float32)
        normalizations = normalizations or [(config.mean, config.std)] * len(models)
        # Plain graphs: a SavedModel signature is traced once for any batch and image size.
        self._center = ensemble.averaged(
            [evaluation.CenterEvaluator(m, xla="off") for m in models], normalizations
        )
        self._dense = ensemble.averaged(
            [overfeat_tf.DenseEvaluator(m, scales=config.dense_scales, xla="off") for m in models],
            normalizations,
        )

    def preprocess_image(self, image: tf.Tensor) -> tf.Tensor:
        """uint8 [h, w, 3] -> float32 [s, s, 3]: the pipeline's eval transform."""
        return pipelines.preprocess_for_eval(image, self._config.crop_size, self._mean, self._std)

    def _map_images(self, fn: Callable[..., tf.Tensor], elems: Any) -> tf.Tensor:
        size = self._config.crop_size
        return tf.map_fn(fn, elems, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    def preprocess_encoded(self, encoded: tf.Tensor, input_name: str = IMAGE_BYTES) -> tf.Tensor:
        """tf.string [b] encoded images (sizes may differ) -> float32 [b, s, s, 3]."""
        names = _element_names(input_name, tf.shape(encoded)[0])
        return self._map_images(
            lambda args: self.preprocess_image(decode_checked(*args, self._config.max_pixels)),
            (encoded, names),
        )

    def answer(self, scores: tf.Tensor) -> dict[str, tf.Tensor]:
        """float32 [b, n] class probabilities -> the outputs (module docstring)."""
        probabilities, classes = tf.math.top_k(scores, k=self._k)
        return {
            "classes": classes,
            "class_names": self._class_names.lookup(tf.cast(classes, tf.int64)),
            "probabilities": probabilities,
            "scores": scores,
        }

    def classify(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """float32 [b, s, s, 3] preprocessed images -> the outputs (module docstring)."""
        # TF 2.21's oneDNN convolution returns an empty batch unchanged (with the input's
        # channel count), which the next layer rejects: empty batches skip the model.
        scores = tf.cond(
            tf.shape(images)[0] > 0,
            lambda: self._center(images),
            lambda: tf.zeros([0, self._num_classes]),
        )
        return self.answer(scores)

    def serve_image_bytes(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        """serving_default: tf.string [b] encoded images."""
        return self.classify(self.preprocess_encoded(image_bytes))

    def serve_images(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """predict_images: uint8 [b, h, w, 3]."""
        return self.classify(self._map_images(self.preprocess_image, images))

    def serve_examples(self, examples: tf.Tensor) -> dict[str, tf.Tensor]:
        """classify_tf_example: tf.string [b] serialized tf.train.Example protos."""
        encoded = tf.map_fn(
            lambda serialized: tfrecord_format.parse_record(serialized)["encoded"],
            examples,
            fn_output_signature=tf.TensorSpec([], tf.string),
        )
        return self.classify(self.preprocess_encoded(encoded, EXAMPLES))

    def serve_dense(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        """dense_classify: tf.string [b] encoded images, each evaluated whole, alone."""

        def dense_scores(args: tuple[tf.Tensor, tf.Tensor]) -> tf.Tensor:
            image = pipelines_transforms.preprocess_full(
                decode_checked(*args, self._config.max_pixels), self._mean, self._std
            )
            return self._dense(image[tf.newaxis])[0]

        names = _element_names(IMAGE_BYTES, tf.shape(image_bytes)[0])
        scores = tf.map_fn(
            dense_scores,
            (image_bytes, names),
            fn_output_signature=tf.TensorSpec([self._num_classes], tf.float32),
        )
        return self.answer(scores)

    def _serve_boxes(
        self,
        image_bytes: tf.Tensor,
        find: Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]],
        count: int,
    ) -> dict[str, tf.Tensor]:
        """tf.string [b] -> `BOX_OUTPUT_NAMES`; `find`: normalised whole image ->
        (boxes [n, 4] px, scores [n], classes int32 [n]), best first; `count`: k."""

        def one(args: tuple[tf.Tensor, tf.Tensor]):
            image = pipelines_transforms.preprocess_full(
                decode_checked(*args, self._config.max_pixels), self._mean, self._std
            )
            boxes, scores, classes = find(image)
            found = tf.minimum(tf.shape(scores)[0], count)
            missing = count - found
            return (
                tf.pad(boxes[:found], [[0, missing], [0, 0]]),
                tf.pad(classes[:found], [[0, missing]], constant_values=-1),
                tf.pad(scores[:found], [[0, missing]]),
                found,
            )

        names = _element_names(IMAGE_BYTES, tf.shape(image_bytes)[0])
        boxes, classes, scores, found = tf.map_fn(
            one,
            (image_bytes, names),
            fn_output_signature=(
                tf.TensorSpec([count, 4], tf.float32),
                tf.TensorSpec([count], tf.int32),
                tf.TensorSpec([count], tf.float32),
                tf.TensorSpec([], tf.int32),
            ),
        )
        class_names = tf.where(
            classes >= 0, self._class_names.lookup(tf.cast(classes, tf.int64)), ""
        )
        return {
            "boxes": boxes,
            "classes": classes,
            "class_names": class_names,
            "scores": scores,
            "num_boxes": found,
        }

    def serve_localize(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        """localize: tf.string [b] encoded images -> up to 5 (class, box) guesses each."""
        localizer = self._boxes.localizer

        def find(image: tf.Tensor):
            classes, boxes, scores = localizer.graph(image)
            return boxes, scores, classes

        return self._serve_boxes(image_bytes, find, localizer.guesses)

    def serve_detect(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        """detect: tf.string [b] encoded images -> detections, score descending."""
        return self._serve_boxes(
            image_bytes, self._boxes.detector.graph, self._boxes.max_detections
        )

    def endpoints(self) -> dict[str, Callable[[tf.Tensor], dict[str, tf.Tensor]]]:
        """Signature name -> body, in the order they are exported."""
        endpoints = {
            SERVING_DEFAULT: self.serve_image_bytes,
            PREDICT_IMAGES: self.serve_images,
            CLASSIFY_TF_EXAMPLE: self.serve_examples,
            DENSE_CLASSIFY: self.serve_dense,
        }
        if self._boxes.localizer is not None:
            endpoints[LOCALIZE] = self.serve_localize
        if self._boxes.detector is not None:
            endpoints[DETECT] = self.serve_detect
        return endpoints


def build_archive(
    model: keras.Model | Sequence[keras.Model],
    config: ServingConfig,
    class_names_file: str,
    normalizations: Sequence[ensemble.Normalization] | None = None,
    boxes: BoxServing | None = None,
) -> keras.export.ExportArchive:
    """An ExportArchive holding the model(s), the class-name table and every signature.

    Args:
      model: the trained Keras classifier, or an ensemble's (see `ServingFunctions`).
      config: see `ServingConfig`.
      class_names_file: a text file with `config.class_names`, one per line; it becomes
        the SavedModel's `assets/<basename>` (see `write_class_names`).
      normalizations: see `ServingFunctions`.
      boxes: the box signatures' localizer and detector (one model only); None: none.
    """
    archive = keras.export.ExportArchive()
    for member in [*as_models(model), *(boxes.models if boxes else ())]:
        archive.track(member)
    table = class_name_table(class_names_file)
    archive.track(table)
    functions = ServingFunctions(model, table, config, normalizations, boxes)
    specs = {**INPUT_SPECS, **BOX_INPUT_SPECS}
    for name, body in functions.endpoints().items():
        archive.add_endpoint(name, body, input_signature=list(specs[name].values()))
    return archive


def write_class_names(path: str, class_names: Sequence[str]) -> None:
    """Writes the class names one per line (the format `class_name_table` reads)."""
    with tf.io.gfile.GFile(path, "w") as f:
        f.write("".join(f"{name}\n" for name in class_names))
