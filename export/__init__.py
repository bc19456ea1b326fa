"""Export for TF Serving and Keras users (layout in `export.saved_model`).

    paths = export.export_model_dir("runs/alexnet", "exports/alexnet")

(or `export.export_model(model, export.ServingConfig(...), ...)` for a model in memory)
writes `exports/alexnet/<version>/` (SavedModel with the `export.signatures`, class-name
asset, warm-up requests) and `exports/alexnet/<version>.keras`. `export.requests` turns
TF Serving gRPC/REST requests into signature inputs. The binary is `overfeat-export`
(`python -m export`, `export/bin/export_main.py`). Only binaries import this package
(`overfeat-train` exports after training); libraries never do.
"""

import overfeat_tf as _overfeat_tf  # noqa: F401  (first: oneDNN is set before TensorFlow loads)

from export.saved_model import (  # noqa: E402
    ExportPaths,
    export_model,
    export_model_dir,
    next_version,
)
from export.signatures import ServingConfig  # noqa: E402

__all__ = ["ExportPaths", "ServingConfig", "export_model", "export_model_dir", "next_version"]
