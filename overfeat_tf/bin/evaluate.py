r"""Evaluates a trained classifier: `overfeat-evaluate` / `python -m overfeat_tf.bin.evaluate`.

Prints top-1 / top-5 error per mode, like the papers' tables, and writes them as JSON:
`center` (one centre crop), `ten_view` (AlexNet's ten views), `dense` (OverFeat's
multi-scale, fine-stride, flipped evaluation). After `overfeat-train`:

    overfeat-evaluate --model_dir=runs/alexnet

On ImageNet validation TFRecords, OverFeat's four-scale fine-stride result (Table 2):

    overfeat-evaluate --model_dir=runs/overfeat_accurate --data=tfrecord:/data/imagenet \
        --modes=dense --scales=245x245,317x389,425x497,461x569

ILSVRC localization error (top-1 / top-5: right class and IoU >= 0.5) with the box
regressor of `overfeat-train-boxes` (default `<model_dir>/localization`), drawing the
first images' guesses (red) and true boxes (green):

    overfeat-evaluate --model_dir=runs/alexnet --modes=localization --draw_dir=/tmp/loc

Detection mean average precision (PASCAL VOC, IoU 0.5) on the detection split, with the
background-class classifier and the regressor of `overfeat-train-boxes --task=detection`
(default `<model_dir>/detection/classifier` and `<model_dir>/detection`):

    overfeat-evaluate --model_dir=runs/alexnet --modes=detection --noflips

An exported SavedModel is evaluated through its serving graph (centre crop only):

    overfeat-evaluate --saved_model=runs/alexnet/export/1 --modes=center

Several runs (or SavedModels), comma-separated, are evaluated as one ensemble: the mean
of their softmax outputs in every mode, as AlexNet (5 and 7 CNNs) and OverFeat (7 models)
combined theirs (`overfeat_tf.evaluation.ensemble`; the members must share classes and input size):

    overfeat-evaluate --model_dir=runs/alexnet_s0,runs/alexnet_s1,runs/alexnet_s2
"""

from __future__ import annotations

from absl import flags

from overfeat_tf import cli, flags_common, xla_choice
from overfeat_tf.cli import FlagError
from overfeat_tf.detection import detector, localizer, merge
from overfeat_tf.evaluation import launch

flags_common.define_model_dir(
    "A training run's directory (model.json + checkpoints); a comma list evaluates the "
    "ensemble of the runs (their softmax outputs averaged).",
    as_list=True,
)
flags_common.define_checkpoint()
flags.DEFINE_list(
    "saved_model",
    None,
    "An exported SavedModel directory (instead of --model_dir); a comma list evaluates "
    "their ensemble.",
)
flags_common.define_data()
flags_common.define_data_dir()
flags_common.define_split(
    help=f"Split to evaluate (detection: {launch.DETECTION_SPLIT}). The embedded set's tuning and "
    "detection_tuning splits are for choosing thresholds (benchmarks/tune_thresholds.py); "
    "report on validation / detection_validation."
)
flags.DEFINE_list(
    "modes",
    list(launch.MODES),
    f"Comma list of evaluation modes: {', '.join(launch.MODES + launch.BOX_MODES)}.",
)
flags.DEFINE_list(
    "scales",
    None,
    "Dense scales, comma list of HxW or S (square); default: the model's six "
    "(245x245,281x317,317x389,389x461,425x497,461x569 for overfeat_accurate).",
)
flags.DEFINE_bool("fine_stride", True, "Dense: pool at every offset (OverFeat section 3.3).")
flags.DEFINE_bool("flips", True, "Dense: also evaluate the mirrored image.")
flags.DEFINE_integer("max_examples", None, "Evaluate at most this many images per mode.")
flags.DEFINE_string(
    "output_json",
    None,
    "Where to write the results (default <model_dir>/eval.json, or <saved_model>.eval.json; "
    "for an ensemble, eval_ensemble.json in, or beside, the first member).",
)
flags_common.define_batch_size(32, "Images per batch (dense evaluation uses 1).")
flags.DEFINE_string(
    "regressor_dir",
    None,
    "Localization / detection: the overfeat-train-boxes run (default <model_dir>/<mode>); "
    "its training scales are the default --scales.",
)
flags.DEFINE_string(
    "detector_dir",
    None,
    "Detection: the background-class classifier (default <model_dir>/detection/classifier).",
)
flags.DEFINE_float(
    "score_threshold",
    detector.DEFAULT_SCORE_THRESHOLD,
    "Detection: a location proposes a class whose probability exceeds this.",
)
flags.DEFINE_float(
    "suppress_iou",
    detector.DEFAULT_SUPPRESS_IOU,
    "Detection: after the merge, drop boxes overlapping a better one of their class by "
    "more than this IoU (1 keeps them all, as the paper).",
)
flags.DEFINE_integer("classes_per_view", 5, "Localization: top classes per scale and flip.")
flags.DEFINE_float(
    "merge_threshold",
    None,
    f"Greedy merge threshold (default: localization {localizer.DEFAULT_MERGE_THRESHOLD:g}, "
    f"detection {detector.DEFAULT_MERGE_THRESHOLD:g}).",
)
flags.DEFINE_enum(
    "merge_match", "centre_iou", list(merge.MATCHES), "Localization / detection: match score."
)
flags.DEFINE_string(
    "draw_dir", None, "Localization / detection: write PNGs of found and true boxes here."
)
flags.DEFINE_integer("draw_max", 20, "Localization / detection: PNGs to write with --draw_dir.")
flags.DEFINE_float(
    "draw_min_score", 1.0, "Detection: draw detections whose summed score is at least this."
)
flags_common.define_onednn()
flags_common.define_stats()
flags.DEFINE_enum(
    "xla",
    "auto",
    list(xla_choice.MODES),
    "XLA-compile the network (--model_dir modes): auto (time both on the first batches, "
    "keep the faster), on, off.",
)

FLAGS = flags.FLAGS
# Flags whose absl default stands for "the spec's default": passed only when given.
_DEFAULTED = ("split", "modes")


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    fields = {f: FLAGS[f].value for f in launch.EvalSpec.__dataclass_fields__}
    fields.update({f: None for f in _DEFAULTED if not FLAGS[f].present})
    lists = ("model_dir", "saved_model", "modes", "scales")
    fields.update({f: tuple(fields[f]) for f in lists if fields[f] is not None})
    _, output = launch.run(launch.EvalSpec(**fields))
    print(f"Results: {output}")
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-evaluate`)."""
    cli.run(main, "overfeat-evaluate", (launch.SpecError,))


if __name__ == "__main__":
    run()
