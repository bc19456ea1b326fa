"""tf.data input pipelines for AlexNet, ZFNet and OverFeat (ImageNet format).

bytes -> `decode` -> `transforms` -> `build_dataset`; records come from a `Source`
(`open_source("embedded" | "tfrecord:DIR" | "tfds:NAME" | "folder:DIR")`). This
package never imports `overfeat_tf` or `export`: callers pass crop size, mean and std.
"""

from pipelines.bad_records import BadRecordCounter
from pipelines.constants import IMAGENET_MEAN_RGB, PCA_EIGVAL, PCA_EIGVEC
from pipelines.dataset import EVAL_MODES, MAX_BOXES, build_dataset
from pipelines.decode import decode_image
from pipelines.embedded import CLASS_NAMES as EMBEDDED_CLASS_NAMES
from pipelines.embedded import EmbeddedConfig, ensure_embedded_dataset
from pipelines.sources import Source, open_source
from pipelines.stats import DatasetStatistics, compute_statistics, load_statistics
from pipelines.transforms import AUGMENTATIONS, preprocess_for_eval, resize_keep_aspect

AUGMENTATION_NAMES = tuple(AUGMENTATIONS)  # For flag enums: ("alexnet", "zfnet", "overfeat").

__all__ = [
    "BadRecordCounter",
    "DatasetStatistics",
    "EVAL_MODES",
    "EMBEDDED_CLASS_NAMES",
    "EmbeddedConfig",
    "IMAGENET_MEAN_RGB",
    "AUGMENTATION_NAMES",
    "MAX_BOXES",
    "PCA_EIGVAL",
    "PCA_EIGVEC",
    "Source",
    "build_dataset",
    "compute_statistics",
    "decode_image",
    "ensure_embedded_dataset",
    "load_statistics",
    "open_source",
    "preprocess_for_eval",
    "resize_keep_aspect",
]
