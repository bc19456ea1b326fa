"""The model registry: one record per model, read by everything keyed by a model name.

`build_model`, `MODEL_NAMES`, `native_input_size`, the dense evaluator's pooling offsets,
the pipeline's crop size and normalisation, and the exporter all read `ModelInfo`.

Names are the four papers' models (`MODEL_NAMES`: alexnet, zfnet, overfeat_fast,
overfeat_accurate) or their variants, `<base>-<token>...` (`variants` module: e.g.
"alexnet-towers1", "alexnet-nolrn", "alexnet-nonoverlapping", "zfnet-conv1_11x11s4",
"zfnet-maps512_1024_512-fc8192", "alexnet-noconv3-noconv4-nofc6-nofc7"). A model built
with variant options is named by its variant, so `model_info(model)` returns the
variant's layer table for a model from `build_model` and for one loaded from `.keras`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import keras

from overfeat_tf.models import alexnet, overfeat, towers, variants
from overfeat_tf.models import spec as spec_lib

# The data set's statistics: AlexNet and ZFNet feed mean-subtracted raw pixels.
from pipelines.constants import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB

# The original OverFeat release normalises (pixel - 118.380948) / 61.896913.
OVERFEAT_MEAN, OVERFEAT_STD = 118.380948, 61.896913


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the rest of the system needs to know about one model.

    Attributes:
      name: registry name (a variant's canonical name), also the Keras model's name.
      spec: the paper's layer table (with the variant's changes).
      input_size: native square input, pixels.
      mean, std: per-channel RGB normalisation, pixels on the 0-255 scale:
        the model sees (pixel - mean) / std.
      recipe: the default training recipe (`overfeat_tf.training.recipes`).
    """

    name: str
    spec: spec_lib.ArchSpec
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    recipe: str

    @property
    def last_pool(self) -> spec_lib.Pool:
        """The pooling layer between trunk and classifier (dense evaluation offsets)."""
        return self.spec.last_pool

    @property
    def stride(self) -> int:
        """Input pixels between cells of the coarse classifier map."""
        return self.spec.stride

    @property
    def tower_count(self) -> int:
        """Towers of the network (its convolution groups): 2 for AlexNet, else 1."""
        groups = [row.groups for row in self.spec.trunk if isinstance(row, spec_lib.Conv)]
        return max(groups, default=1)


_REGISTRY = {
    info.name: info
    for info in (
        ModelInfo("alexnet", alexnet.ALEXNET, 227, IMAGENET_MEAN_RGB, (1.0, 1.0, 1.0), "alexnet"),
        ModelInfo("zfnet", alexnet.ZFNET, 224, IMAGENET_MEAN_RGB, (1.0, 1.0, 1.0), "zfnet"),
        ModelInfo(
            "overfeat_fast",
            overfeat.OVERFEAT_FAST,
            231,
            (OVERFEAT_MEAN,) * 3,
            (OVERFEAT_STD,) * 3,
            "overfeat",
        ),
        ModelInfo(
            "overfeat_accurate",
            overfeat.OVERFEAT_ACCURATE,
            221,
            (OVERFEAT_MEAN,) * 3,
            (OVERFEAT_STD,) * 3,
            "overfeat",
        ),
    )
}

MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)


def model_info(model: str | keras.Model) -> ModelInfo:
    """The registry record of a model name or of a model built by `build_model`.

    A variant name (tokens in any order) gives the variant's record, named canonically.
    """
    return _info(model if isinstance(model, str) else model.name)


@functools.cache
def _info(name: str) -> ModelInfo:
    if name.split("-")[0] not in _REGISTRY:
        raise ValueError(f"Unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    base, options = variants.split_name(name)
    return _variant(_REGISTRY[base], options)


def _variant(info: ModelInfo, options: dict[str, Any]) -> ModelInfo:
    """`info` with the checked `options` applied (itself when there are none)."""
    if not options:
        return info
    return dataclasses.replace(
        info,
        name=variants.variant_name(info.name, options),
        spec=variants.apply(info.spec, options),
    )


def normalization(
    name: str, init: str = "paper"
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std), 0-255 scale, of the input a model built with `init` expects.

    The papers' normalisation, except that "he" initialisation needs unit-variance
    inputs: AlexNet and ZFNet (paper: mean subtraction only, pixels' std about 58) then
    also divide by ImageNet's per-channel std. Without it the first layer's gradients,
    which scale with the pixels, are ~3000x too large relative to its weights and SGD
    diverges in a few steps.
    """
    info = model_info(name)
    if init == "he" and info.std == (1.0, 1.0, 1.0):
        return info.mean, IMAGENET_STD_RGB
    return info.mean, info.std


def native_input_size(name: str) -> int:
    """Side of the square input the model's classifier was designed for, pixels."""
    return model_info(name).input_size


def build_model(
    name: str,
    num_classes: int = 1000,
    width: float = 1.0,
    *,
    dropout: float = 0.5,
    init: str = "paper",
    grouped_conv: str = "split",
    tower_devices: Sequence[str] | None = None,
    **variant: Any,
) -> keras.Model:
    """Builds a paper model: `[b, s, s, 3]` float images -> `[b, num_classes]` logits.

    Args:
      name: one of `MODEL_NAMES`, or a variant name (module docstring).
      num_classes: size of the last layer.
      width: multiplies every channel count (not the geometry); 1.0 is the paper.
      dropout: rate on the outputs of the first two FC layers (0.5 in the papers).
      init: "paper" (weights N(0, 0.01), the papers' biases) or "he" (He et al. 2015,
        zero biases, the class layer N(0, 0.01); for unit-variance inputs, see
        `normalization`: trains from scratch in hundreds of steps where N(0, 0.01)
        needs thousands).
      grouped_conv: "split" (fast) or "native" (`Conv2D(groups=2)`, for comparison).
      tower_devices: one device per tower (AlexNet: two, e.g. ("/GPU:0", "/GPU:1")): run
        each tower on its device as the paper did, its weights there too
        (`towers.TowerModel`: same layers, saved weights and outputs). Where a device is
        missing: default placement, one warning.
      **variant: the papers' ablations (`overfeat_tf.models.variants`): `towers` (2, 1),
        `lrn` (True, False), `pooling` ("overlapping", "non_overlapping") for AlexNet;
        `without` (layers among conv3, conv4, fc6, fc7), `conv_maps` ((c3, c4, c5)),
        `fc_units` (int) for AlexNet and ZFNet; `conv1` ("7x7/2", "11x11/4") for ZFNet.
        They add to the options `name` carries (a conflict is an error). The model is
        named by its variant (`model.name`, e.g. "alexnet-towers1-nolrn").

    Raises:
      ValueError: an unknown name, or an unknown, inapplicable or conflicting option.

    Images are normalised as `model_info(name)` says; s = `native_input_size(name)`.
    The layers form a chain whose FC layers are convolutions, so `fully_conv.trunk` and
    `fully_conv.classifier` run the same weights on larger images.
    """
    model_info(name)  # an unknown name fails first
    info = model_info(variants.with_options(name, variant))
    model = spec_lib.build(
        info.spec,
        name=info.name,
        input_size=info.input_size,
        num_classes=num_classes,
        width=width,
        dropout=dropout,
        init=init,
        grouped_conv=grouped_conv,
    )
    return towers.place_towers(model, tower_devices)
