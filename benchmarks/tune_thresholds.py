r"""Chooses localization's or detection's thresholds on the tuning split (not a timing).

Sweeps a grid on a run trained by `overfeat-train` and `overfeat-train-boxes`, on the
split that is never reported (`tuning` / `detection_tuning` of the embedded data set),
prints one row per setting and the best, and writes them as JSON. Evaluate the best
setting once, on the reported split, with `overfeat-evaluate` and the printed flags.

    PYTHONPATH=. python benchmarks/tune_thresholds.py --model_dir=runs/alexnet \
        --task=detection --output_json=runs/alexnet/detection/tuning.json
    PYTHONPATH=. python benchmarks/tune_thresholds.py --model_dir=runs/alexnet \
        --task=localization
"""

from __future__ import annotations

import json
import os

from absl import app, flags

import overfeat_tf  # noqa: F401  (first: turns oneDNN on before TensorFlow loads)
import pipelines
from overfeat_tf import flags_common, run_dir
from overfeat_tf.detection import box_maps, detector, localizer, tuning
from overfeat_tf.detection import regressor as regressor_lib

flags_common.define_model_dir("The classification run (with its box runs).")
flags.DEFINE_enum("task", "detection", ["localization", "detection"], "What to tune.")
flags_common.define_data(help="Data source with boxes.")
flags_common.define_data_dir("Where the embedded data set lives.")
flags_common.define_split(None, "Tuning split (default: tuning, detection_tuning).")
flags.DEFINE_list("merge_thresholds", ["0.25", "0.5", "0.75", "1.0"], "Merge thresholds.")
flags.DEFINE_list("score_thresholds", ["0.2", "0.3", "0.5"], "Detection: score thresholds.")
flags.DEFINE_list("suppress_ious", ["0.3", "0.5", "none"], "Detection: suppression IoUs.")
flags.DEFINE_enum("merge_match", "centre_iou", ["centre_iou", "literal"], "Match score.")
flags.DEFINE_bool("flips", True, "Also run the mirrored images.")
flags.DEFINE_integer("max_examples", None, "Tune on at most this many images.")
flags.DEFINE_string("output_json", None, "Where to write the rows and the best setting.")
flags.mark_flag_as_required("model_dir")
FLAGS = flags.FLAGS

SPLITS = {"localization": "tuning", "detection": "detection_tuning"}


def _floats(values: list[str]) -> list[float | None]:
    return [None if v.lower() == "none" else float(v) for v in values]


def main(argv: list[str]) -> None:
    del argv
    box_dir = os.path.join(FLAGS.model_dir, FLAGS.task)
    head, reg_config = regressor_lib.restore_regressor(box_dir)
    merge_thresholds = _floats(FLAGS.merge_thresholds)
    if FLAGS.task == "detection":
        model, config = run_dir.restore_model(os.path.join(box_dir, "classifier"))
        evaluator = detector.Detector(
            model,
            head,
            scales=list(reg_config.scales) or None,
            flips=FLAGS.flips,
            match=FLAGS.merge_match,
        )
        settings = tuning.grid(
            merge_threshold=merge_thresholds,
            score_threshold=_floats(FLAGS.score_thresholds),
            suppress_iou=_floats(FLAGS.suppress_ious),
        )
        sweep, keys = tuning.sweep_detection, ("map",)
    else:
        model, config = run_dir.restore_model(FLAGS.model_dir)
        predictor = box_maps.BoxPredictor(model, head, list(reg_config.scales), FLAGS.flips)
        evaluator = localizer.Localizer(predictor, match=FLAGS.merge_match)
        settings = tuning.grid(merge_threshold=merge_thresholds)
        # ILSVRC scores top-5; ties (likely on a small split) go to top-1.
        sweep, keys = tuning.sweep_localization, ("top5_error", "top1_error")
    split = FLAGS.split or SPLITS[FLAGS.task]
    source = pipelines.open_source(FLAGS.data, FLAGS.data_dir)
    batches = pipelines.build_dataset(
        source,
        split,
        batch_size=1,
        training=False,
        crop_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        eval_mode="full",
        with_boxes=True,
    )
    rows = sweep(evaluator, batches, settings, FLAGS.max_examples)
    for row in rows:
        print("  ".join(f"{k} {v}" for k, v in row.items()))
    best = tuning.best_row(rows, *keys)
    print(f"Best on {split} ({', then '.join(keys)}): {best}")
    if FLAGS.output_json:
        with open(FLAGS.output_json, "w") as f:
            json.dump(
                {"split": split, "match": FLAGS.merge_match, "rows": rows, "best": best},
                f,
                indent=2,
            )


if __name__ == "__main__":
    app.run(main)
