"""The model zoo: AlexNet, ZFNet, OverFeat fast and accurate."""

from overfeat_tf.models.fully_conv import classifier, feature_layer_names, layer_names, trunk
from overfeat_tf.models.registry import (
    MODEL_NAMES,
    ModelInfo,
    build_model,
    model_info,
    native_input_size,
    normalization,
)

__all__ = [
    "MODEL_NAMES",
    "ModelInfo",
    "build_model",
    "classifier",
    "feature_layer_names",
    "layer_names",
    "model_info",
    "native_input_size",
    "normalization",
    "trunk",
]
