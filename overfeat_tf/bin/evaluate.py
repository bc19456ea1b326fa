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

import json
import os

from absl import flags

from overfeat_tf import cli
from overfeat_tf.cli import FlagError
from overfeat_tf import evaluation, flags_common, input_stats, run_dir, xla_choice
from overfeat_tf.evaluation import dense, ensemble
from overfeat_tf.detection import detector, drawing, loading, localizer, merge

import numpy as np
import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402

MODES = evaluation.MODES
# Modes that need a box regressor (one --model_dir, no ensemble); not in the default --modes.
BOX_MODES = ("localization", "detection")
# Detection evaluates the detection split unless --split names another.
DETECTION_SPLIT = "detection_validation"

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
    help=f"Split to evaluate (detection: {DETECTION_SPLIT}). The embedded set's tuning and "
    "detection_tuning splits are for choosing thresholds (benchmarks/tune_thresholds.py); "
    "report on validation / detection_validation."
)
flags.DEFINE_list(
    "modes", list(MODES), f"Comma list of evaluation modes: {', '.join(MODES + BOX_MODES)}."
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


def _scales() -> list[tuple[int, int]] | None:
    """--scales as (height, width) pairs; None: the model's defaults."""
    if FLAGS.scales is None:
        return None
    try:
        return dense.parse_scales(FLAGS.scales)
    except ValueError as e:
        raise FlagError(f"--scales: {e}") from e


def _modes() -> list[str]:
    """--modes; a SavedModel's default is centre only (what its serving graph computes)."""
    if FLAGS.saved_model is not None and not FLAGS["modes"].present:
        return ["center"]
    return FLAGS.modes


def _check_flags() -> None:
    if (not FLAGS.model_dir) == (not FLAGS.saved_model):
        raise FlagError("Give exactly one of --model_dir or --saved_model")
    if FLAGS.checkpoint is not None and len(FLAGS.model_dir or []) != 1:
        raise FlagError("--checkpoint names the checkpoint of a single --model_dir")
    modes = _modes()
    if not modes or any(m not in MODES + BOX_MODES for m in modes):
        raise FlagError(
            f"--modes: {','.join(modes)!r} is invalid; valid: {','.join(MODES + BOX_MODES)}"
        )
    box_modes = [m for m in modes if m in BOX_MODES]
    if box_modes and len(FLAGS.model_dir or []) != 1:
        raise FlagError(
            f"--modes={','.join(box_modes)} evaluates one --model_dir with its regressor "
            "(no ensembles, no SavedModels)"
        )
    if FLAGS.saved_model is not None and modes != ["center"]:
        raise FlagError(
            f"--modes={','.join(modes)}: a SavedModel serves centre-crop predictions "
            "only; use --modes=center, or --model_dir for ten_view and dense"
        )
    for flag in ("batch_size", "max_examples"):
        value = getattr(FLAGS, flag)
        if value is not None and value < 1:
            raise FlagError(f"--{flag} must be >= 1; received {value}")


def _model_dir_evaluators(models, configs) -> list[evaluation.Evaluator]:
    """One evaluator per mode: the model's, or the ensemble's (one member: the model's);
    the box modes use the single model with its regressor."""
    scales = _scales()
    box_factories = {
        "localization": lambda: _localizer(models[0], scales),
        "detection": lambda: _detector(scales),
    }
    try:
        return [
            box_factories[mode]()
            if mode in box_factories
            else ensemble.ensemble_evaluator(
                models,
                configs,
                mode,
                scales=scales,
                fine_stride=FLAGS.fine_stride,
                flips=FLAGS.flips,
                xla=FLAGS.xla,
            )
            for mode in _modes()
        ]
    except ensemble.IncompatibleMembers as e:
        raise FlagError(f"--model_dir={','.join(FLAGS.model_dir)}: {e}") from e
    except ValueError as e:
        raise FlagError(f"--scales: {e}") from e


def _dirs(mode: str) -> dict[str, str]:
    """--regressor_dir and --detector_dir, defaulting to where the trainers put them."""
    dirs = loading.default_dirs(FLAGS.model_dir[0], mode)
    given = {"regressor_dir": FLAGS.regressor_dir, "detector_dir": FLAGS.detector_dir}
    return {key: given[key] or value for key, value in dirs.items()}


def _localizer(model, scales) -> localizer.Localizer:
    """The localization evaluator: the classifier and the regressor of --regressor_dir."""
    threshold = FLAGS.merge_threshold
    threshold = localizer.DEFAULT_MERGE_THRESHOLD if threshold is None else threshold
    try:
        return loading.load_localizer(
            model,
            _dirs("localization")["regressor_dir"],
            scales=scales,
            flips=FLAGS.flips,
            classes_per_view=FLAGS.classes_per_view,
            threshold=threshold,
            match=FLAGS.merge_match,
        )
    except loading.RunError as e:
        raise FlagError(f"--{e.role}={e.directory}: {e}") from e


def _detector(scales) -> detector.Detector:
    """The detection evaluator: the classifier of --detector_dir, with the background
    class, and the detection regressor."""
    threshold = FLAGS.merge_threshold
    try:
        return loading.load_detector(
            **_dirs("detection"),
            scales=scales,
            flips=FLAGS.flips,
            score_threshold=FLAGS.score_threshold,
            match=FLAGS.merge_match,
            suppress_iou=FLAGS.suppress_iou,
            merge_threshold=detector.DEFAULT_MERGE_THRESHOLD if threshold is None else threshold,
        )
    except loading.RunError as e:
        raise FlagError(f"--{e.role}={e.directory}: {e}") from e


def _draw(mean, std, split: str, evaluator):
    """An image callback (`localizer.ImageCallback`, `detector.ImageCallback`) writing
    <draw_dir>/<split>_NNNN.png: true boxes in green; in red, localization guesses
    (class names, best first) or detections scoring at least --draw_min_score (class
    name and summed score)."""
    class_names = run_dir.read_config(FLAGS.model_dir[0])["class_names"]

    def draw(index: int, image, found, true_classes, true_boxes) -> None:
        if index >= FLAGS.draw_max:
            return
        pixels = np.clip(image * np.asarray(std) + np.asarray(mean), 0, 255).astype(np.uint8)
        pixels = drawing.draw_boxes(
            pixels, true_boxes, [class_names[c] for c in true_classes], (0, 200, 0)
        )
        boxes = found.boxes
        if isinstance(evaluator, detector.Detector):
            shown = found.scores >= FLAGS.draw_min_score
            boxes = boxes[shown]
            labels = [
                f"{class_names[c]} {score:.1f}"
                for c, score in zip(found.classes[shown], found.scores[shown])
            ]
        else:
            labels = [f"{rank + 1}. {class_names[c]}" for rank, c in enumerate(found.classes)]
        pixels = drawing.draw_boxes(pixels, boxes, labels, (255, 0, 0))
        drawing.write_png(os.path.join(FLAGS.draw_dir, f"{split}_{index:04d}.png"), pixels)

    return draw


def _split(evaluator) -> str:
    """The split `evaluator` reads: --split, or the detection split for detection."""
    if isinstance(evaluator, detector.Detector) and not FLAGS["split"].present:
        return DETECTION_SPLIT
    return FLAGS.split


def _model_dir_data(source, config: dict, evaluator: evaluation.Evaluator) -> tf.data.Dataset:
    full = evaluator.input_mode == "full"
    return pipelines.build_dataset(
        source,
        _split(evaluator),
        batch_size=1 if full else FLAGS.batch_size,
        training=False,
        crop_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        eval_mode=evaluator.input_mode,
        with_boxes=isinstance(evaluator, (localizer.Localizer, detector.Detector)),
    )


def _saved_model_data(source, evaluator: evaluation.SavedModelEvaluator) -> tf.data.Dataset:
    """Encoded bytes in batches, or decoded uint8 images one at a time (sizes differ)."""
    records = source.records(FLAGS.split)
    if evaluator.input_mode == "encoded":
        pairs = records.map(lambda r: (r["encoded"], r["label"]))
        return pairs.batch(FLAGS.batch_size)
    pairs = records.map(lambda r: (pipelines.decode_image(r["encoded"]), r["label"]))
    return pairs.batch(1)


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _saved_model_class_names(path: str) -> list[str] | None:
    """The export's class-name asset (`export/saved_model.py`), None if it has none."""
    names_file = os.path.join(path, "assets", "class_names.txt")
    if not tf.io.gfile.exists(names_file):
        return None
    with tf.io.gfile.GFile(names_file) as f:
        return f.read().splitlines()


def _restore_saved_models() -> tuple[list[evaluation.Evaluator], dict, None, str]:
    paths = FLAGS.saved_model
    evaluators = []
    first = _saved_model_class_names(paths[0])
    for path in paths:
        try:
            evaluators.append(evaluation.SavedModelEvaluator(path))
        except (OSError, ValueError) as e:
            raise FlagError(f"--saved_model={path}: {_first_line(e)}") from e
        names = _saved_model_class_names(path)
        if names is not None and first is not None and names != first:
            raise FlagError(
                f"--saved_model={path}: its {len(names)} classes differ from the "
                f"{len(first)} of {paths[0]}; ensemble members share one class list"
            )
    if len(paths) == 1:
        return evaluators, {"saved_model": paths[0]}, None, paths[0].rstrip("/") + ".eval.json"
    try:
        evaluator = ensemble.EnsembleEvaluator(evaluators)
    except ValueError as e:
        raise FlagError(f"--saved_model: {e}") from e
    default_json = os.path.join(os.path.dirname(paths[0].rstrip("/")), "eval_ensemble.json")
    return [evaluator], {"saved_models": paths}, None, default_json


def _restore() -> tuple[list[evaluation.Evaluator], dict, dict | None, str]:
    """The evaluators, what is evaluated (for the JSON), the (first) model dir's config
    (None for SavedModels) and the default JSON path."""
    if FLAGS.saved_model:
        return _restore_saved_models()
    dirs = FLAGS.model_dir
    try:
        models, configs = ensemble.restore_ensemble(dirs, [FLAGS.checkpoint] * len(dirs))
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise FlagError(f"--model_dir={','.join(dirs)}: {_first_line(e)}") from e
    try:
        configs = [input_stats.override(c, FLAGS.stats) if FLAGS.stats else c for c in configs]
    except (OSError, ValueError) as e:
        raise FlagError(f"--stats={FLAGS.stats}: {e}") from e
    members = [
        {
            "model_dir": model_dir,
            "model": model.name,
            "build_kwargs": config["build_kwargs"],
            "checkpoint": FLAGS.checkpoint or tf.train.latest_checkpoint(model_dir),
        }
        for model_dir, model, config in zip(dirs, models, configs)
    ]
    if len(dirs) == 1:
        about, default_json = members[0], os.path.join(dirs[0], "eval.json")
    else:
        about = {"ensemble": members}
        default_json = os.path.join(dirs[0], "eval_ensemble.json")
    return _model_dir_evaluators(models, configs), about, configs[0], default_json


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    _check_flags()
    _scales()  # a malformed --scales fails before the model loads
    evaluators, about, config, default_json = _restore()
    try:
        source = pipelines.open_source(FLAGS.data, FLAGS.data_dir)
    except (ValueError, OSError) as e:
        raise FlagError(f"--data={FLAGS.data}: {e}") from e
    num_classes = config["build_kwargs"]["num_classes"] if config else source.num_classes
    if num_classes != source.num_classes:
        raise FlagError(
            f"--data={FLAGS.data} has {source.num_classes} classes but the model has {num_classes}"
        )

    results, descriptions, settings, detections = {}, {}, {}, {}
    for evaluator in evaluators:
        if config is None:
            batches = _saved_model_data(source, evaluator)
        else:
            batches = _model_dir_data(source, config, evaluator)
        print(f"Evaluating {evaluator.name} ({evaluator.description}) ...", flush=True)
        draw = None
        if FLAGS.draw_dir and isinstance(evaluator, (localizer.Localizer, detector.Detector)):
            draw = _draw(config["mean"], config["std"], _split(evaluator), evaluator)
        if isinstance(evaluator, localizer.Localizer):
            results[evaluator.name] = localizer.evaluate_localization(
                evaluator, batches, max_examples=FLAGS.max_examples, on_image=draw
            )
        elif isinstance(evaluator, detector.Detector):
            found = detector.evaluate_detection(
                evaluator, batches, max_examples=FLAGS.max_examples, on_image=draw
            )
            detections[evaluator.name] = found
        else:
            results[evaluator.name] = evaluation.evaluate(
                evaluator, batches, num_classes=num_classes, max_examples=FLAGS.max_examples
            )
        descriptions[evaluator.name] = evaluator.description
        first = getattr(evaluator, "members", (evaluator,))[0]  # an ensemble's settings
        choice = getattr(first, "xla_choice", None)
        if choice is not None and evaluator.name in results:
            results[evaluator.name]["xla"] = choice.as_dict()
            print(f"  {evaluator.name}: {choice.summary('image')}", flush=True)
        if isinstance(first, dense.DenseEvaluator):
            settings = {
                "scales": [list(s) for s in first.scales],
                "fine_stride": first.fine_stride,
                "flips": first.flips,
            }

    if "ensemble" in about or "saved_models" in about:
        members = about.get("saved_models") or [m["model"] for m in about["ensemble"]]
        title = f"Ensemble of {len(members)} ({', '.join(members)})"
    else:
        title = about.get("model", "SavedModel")
    if results:
        print(f"\n{title} on {FLAGS.data} ({FLAGS.split}):")
        print(evaluation.format_table(results, descriptions))
    class_names = config["class_names"] if config else []
    split = FLAGS.split if FLAGS["split"].present else DETECTION_SPLIT
    for name, found in detections.items():
        print(f"\n{title} {name} ({descriptions[name]}) on {FLAGS.data} ({split}):")
        print(detector.format_ap_table(found, class_names))
        # Classes without true objects have no AP: null in the JSON.
        per_class = [None if np.isnan(ap) else ap for ap in found["per_class_ap"]]
        results[name] = {**found, "split": split, "per_class_ap": dict(zip(class_names, per_class))}
    report = {
        **about,
        "data": FLAGS.data,
        "split": FLAGS.split,
        "results": {
            name: {**metrics, "description": descriptions[name]}
            for name, metrics in results.items()
        },
    }
    if settings:
        report["dense"] = settings
    output = FLAGS.output_json or default_json
    with tf.io.gfile.GFile(output, "w") as f:
        json.dump(report, f, indent=2)
    print(f"Results: {output}")
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-evaluate`)."""
    cli.run(main, "overfeat-evaluate")


if __name__ == "__main__":
    run()
