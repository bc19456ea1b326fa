"""Classification evaluation: every evaluator maps images to class probabilities.

- `views`: one centre crop and AlexNet's ten views, the `Evaluator` protocol, the top-k
  error loop (`evaluate`, `evaluate_many` for several evaluators on the same batches) and
  the results table (`format_table`).
- `dense`: OverFeat's dense multi-scale evaluation (`DenseEvaluator`, section 3.3) and the
  pieces localization and detection reuse (offset pooling, sliding heads).
- `ensemble`: the mean of several models' probabilities.

Whether a network runs XLA-compiled is `overfeat_tf.xla_choice`'s decision, shared with
training. The names of `views` are re-exported here.
"""

from overfeat_tf.evaluation.views import (
    MODES,
    TOP1,
    TOP5,
    CenterEvaluator,
    Evaluator,
    NothingToEvaluate,
    SavedModelEvaluator,
    TenViewEvaluator,
    evaluate,
    evaluate_many,
    format_table,
    make_evaluator,
)

__all__ = [
    "MODES",
    "TOP1",
    "TOP5",
    "CenterEvaluator",
    "Evaluator",
    "NothingToEvaluate",
    "SavedModelEvaluator",
    "TenViewEvaluator",
    "evaluate",
    "evaluate_many",
    "format_table",
    "make_evaluator",
]
