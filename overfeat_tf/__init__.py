"""overfeat_tf: AlexNet, ZFNet and OverFeat in TensorFlow 2 / Keras 3.

Importing the package first turns TensorFlow's oneDNN CPU kernels on (see `runtime`).
"""

import sys as _sys

from overfeat_tf import runtime as _runtime

ONEDNN_STATUS = _runtime.configure_onednn(_sys.argv)

from overfeat_tf.models import (  # noqa: E402  (must follow the oneDNN set-up)
    MODEL_NAMES,
    ModelInfo,
    build_model,
    model_info,
    native_input_size,
)
from overfeat_tf.evaluation.dense import DenseEvaluator  # noqa: E402

__all__ = [
    "DenseEvaluator",
    "MODEL_NAMES",
    "ModelInfo",
    "build_model",
    "model_info",
    "native_input_size",
]
