"""One evaluation as a library call: `launch.run(EvalSpec(...))`.

`overfeat-evaluate` describes what to evaluate as an `EvalSpec` (field names are its flag
names) and calls `run`: it checks the spec, restores the training runs (an ensemble when
several) or SavedModels, builds one evaluator per mode (classification: `views`, `dense`,
`ensemble`; localization and detection: the classifier with its box regressor), runs each
on its split of the data, prints the papers' tables and writes them as JSON. Errors name
the field as `--field=value`; nothing is written before the spec is checked.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np
import tensorflow as tf

import pipelines
from overfeat_tf import evaluation, input_stats, run_dir
from overfeat_tf.detection import detector, drawing, loading, localizer
from overfeat_tf.evaluation import dense, ensemble

MODES = evaluation.MODES
# Modes that need a box regressor (one model_dir, no ensemble); not among the defaults.
BOX_MODES = ("localization", "detection")
# The split evaluated when the spec names none; detection reads the detection split.
DEFAULT_SPLIT = "validation"
DETECTION_SPLIT = "detection_validation"


class SpecError(ValueError):
    """A spec that cannot run; the message names the field as `--field=value`."""


@dataclasses.dataclass(frozen=True)
class EvalSpec:
    """What to evaluate and how; field names are `overfeat-evaluate`'s flags (see `--help`).

    Exactly one of `model_dir` (training runs; several: their ensemble) and `saved_model`
    (exports, centre crop only) is given. `modes` None: every classification mode (a
    SavedModel: centre only). `split` None: `DEFAULT_SPLIT`, detection `DETECTION_SPLIT`.
    `scales` are dense-evaluation sizes as text, "HxW" or "S" pixels (None: the model's).
    The localization/detection fields (`regressor_dir` ... `draw_min_score`) apply to the
    box modes only; `draw_dir` receives PNGs of found and true boxes.
    """

    model_dir: tuple[str, ...] | None = None
    checkpoint: str | None = None
    saved_model: tuple[str, ...] | None = None
    data: str = "embedded"
    data_dir: str | None = None
    split: str | None = None
    modes: tuple[str, ...] | None = None
    scales: tuple[str, ...] | None = None
    fine_stride: bool = True
    flips: bool = True
    max_examples: int | None = None
    output_json: str | None = None
    batch_size: int = 32
    regressor_dir: str | None = None
    detector_dir: str | None = None
    score_threshold: float = detector.DEFAULT_SCORE_THRESHOLD
    suppress_iou: float = detector.DEFAULT_SUPPRESS_IOU
    classes_per_view: int = 5
    merge_threshold: float | None = None
    merge_match: str = "centre_iou"
    draw_dir: str | None = None
    draw_max: int = 20
    draw_min_score: float = 1.0
    stats: str | None = None
    xla: str = "auto"

    @property
    def resolved_modes(self) -> tuple[str, ...]:
        """The modes evaluated: `modes`, or the default for the kind of model."""
        if self.modes is not None:
            return tuple(self.modes)
        return ("center",) if self.saved_model else MODES


@dataclasses.dataclass
class _Restored:
    """What `_restore` found: the evaluators, what they evaluate (for the JSON), the
    (first) run's config (None for SavedModels) and the default JSON path."""

    evaluators: list[evaluation.Evaluator]
    about: dict[str, Any]
    config: dict[str, Any] | None
    default_json: str


def _first_line(e: Exception) -> str:
    return str(e).splitlines()[0] if str(e) else type(e).__name__


def _scales(spec: EvalSpec) -> list[tuple[int, int]] | None:
    """`spec.scales` as (height, width) pairs; None: the model's defaults."""
    if spec.scales is None:
        return None
    try:
        return dense.parse_scales(list(spec.scales))
    except ValueError as e:
        raise SpecError(f"--scales: {e}") from e


def check(spec: EvalSpec) -> None:
    """Raises `SpecError` for a spec that cannot run, before anything loads."""
    if (not spec.model_dir) == (not spec.saved_model):
        raise SpecError("Give exactly one of --model_dir or --saved_model")
    if spec.checkpoint is not None and len(spec.model_dir or []) != 1:
        raise SpecError("--checkpoint names the checkpoint of a single --model_dir")
    modes = spec.resolved_modes
    if not modes or any(m not in MODES + BOX_MODES for m in modes):
        raise SpecError(
            f"--modes: {','.join(modes)!r} is invalid; valid: {','.join(MODES + BOX_MODES)}"
        )
    box_modes = [m for m in modes if m in BOX_MODES]
    if box_modes and len(spec.model_dir or []) != 1:
        raise SpecError(
            f"--modes={','.join(box_modes)} evaluates one --model_dir with its regressor "
            "(no ensembles, no SavedModels)"
        )
    if spec.saved_model and modes != ("center",):
        raise SpecError(
            f"--modes={','.join(modes)}: a SavedModel serves centre-crop predictions "
            "only; use --modes=center, or --model_dir for ten_view and dense"
        )
    for field in ("batch_size", "max_examples"):
        value = getattr(spec, field)
        if value is not None and value < 1:
            raise SpecError(f"--{field} must be >= 1; received {value}")
    _scales(spec)  # a malformed scale fails before the model loads


def _box_dirs(spec: EvalSpec, mode: str) -> dict[str, str]:
    """regressor_dir and detector_dir, defaulting to where the trainers put them."""
    dirs = loading.default_dirs(spec.model_dir[0], mode)
    given = {"regressor_dir": spec.regressor_dir, "detector_dir": spec.detector_dir}
    return {key: given[key] or value for key, value in dirs.items()}


def _localizer(spec: EvalSpec, model, scales) -> localizer.Localizer:
    """The localization evaluator: the classifier and the regressor of regressor_dir."""
    threshold = spec.merge_threshold
    try:
        return loading.load_localizer(
            model,
            _box_dirs(spec, "localization")["regressor_dir"],
            scales=scales,
            flips=spec.flips,
            classes_per_view=spec.classes_per_view,
            threshold=localizer.DEFAULT_MERGE_THRESHOLD if threshold is None else threshold,
            match=spec.merge_match,
        )
    except loading.RunError as e:
        raise SpecError(f"--{e.role}={e.directory}: {e}") from e


def _detector(spec: EvalSpec, scales) -> detector.Detector:
    """The detection evaluator: the classifier of detector_dir, with the background
    class, and the detection regressor."""
    threshold = spec.merge_threshold
    try:
        return loading.load_detector(
            **_box_dirs(spec, "detection"),
            scales=scales,
            flips=spec.flips,
            score_threshold=spec.score_threshold,
            match=spec.merge_match,
            suppress_iou=spec.suppress_iou,
            merge_threshold=detector.DEFAULT_MERGE_THRESHOLD if threshold is None else threshold,
        )
    except loading.RunError as e:
        raise SpecError(f"--{e.role}={e.directory}: {e}") from e


def _model_dir_evaluators(spec: EvalSpec, models, configs) -> list[evaluation.Evaluator]:
    """One evaluator per mode: the model's, or the ensemble's (one member: the model's);
    the box modes use the single model with its regressor."""
    scales = _scales(spec)
    box_factories = {
        "localization": lambda: _localizer(spec, models[0], scales),
        "detection": lambda: _detector(spec, scales),
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
                fine_stride=spec.fine_stride,
                flips=spec.flips,
                xla=spec.xla,
            )
            for mode in spec.resolved_modes
        ]
    except ensemble.IncompatibleMembers as e:
        raise SpecError(f"--model_dir={','.join(spec.model_dir)}: {e}") from e
    except ValueError as e:
        raise SpecError(f"--scales: {e}") from e


def _saved_model_class_names(path: str) -> list[str] | None:
    """The export's class-name asset (`export/saved_model.py`), None if it has none."""
    names_file = os.path.join(path, "assets", "class_names.txt")
    if not tf.io.gfile.exists(names_file):
        return None
    with tf.io.gfile.GFile(names_file) as f:
        return f.read().splitlines()


def _restore_saved_models(paths: tuple[str, ...]) -> _Restored:
    evaluators = []
    first = _saved_model_class_names(paths[0])
    for path in paths:
        try:
            evaluators.append(evaluation.SavedModelEvaluator(path))
        except (OSError, ValueError) as e:
            raise SpecError(f"--saved_model={path}: {_first_line(e)}") from e
        names = _saved_model_class_names(path)
        if names is not None and first is not None and names != first:
            raise SpecError(
                f"--saved_model={path}: its {len(names)} classes differ from the "
                f"{len(first)} of {paths[0]}; ensemble members share one class list"
            )
    if len(paths) == 1:
        return _Restored(
            evaluators, {"saved_model": paths[0]}, None, paths[0].rstrip("/") + ".eval.json"
        )
    try:
        evaluator = ensemble.EnsembleEvaluator(evaluators)
    except ValueError as e:
        raise SpecError(f"--saved_model: {e}") from e
    default_json = os.path.join(os.path.dirname(paths[0].rstrip("/")), "eval_ensemble.json")
    return _Restored([evaluator], {"saved_models": list(paths)}, None, default_json)


def _restore(spec: EvalSpec) -> _Restored:
    """The evaluators of the SavedModels or of the runs (their ensemble when several)."""
    if spec.saved_model:
        return _restore_saved_models(tuple(spec.saved_model))
    dirs = list(spec.model_dir)
    try:
        models, configs = ensemble.restore_ensemble(dirs, [spec.checkpoint] * len(dirs))
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise SpecError(f"--model_dir={','.join(dirs)}: {_first_line(e)}") from e
    try:
        configs = [input_stats.override(c, spec.stats) if spec.stats else c for c in configs]
    except (OSError, ValueError) as e:
        raise SpecError(f"--stats={spec.stats}: {e}") from e
    members = [
        {
            "model_dir": model_dir,
            "model": model.name,
            "build_kwargs": config["build_kwargs"],
            "checkpoint": spec.checkpoint or tf.train.latest_checkpoint(model_dir),
        }
        for model_dir, model, config in zip(dirs, models, configs)
    ]
    if len(dirs) == 1:
        about, default_json = members[0], os.path.join(dirs[0], "eval.json")
    else:
        about = {"ensemble": members}
        default_json = os.path.join(dirs[0], "eval_ensemble.json")
    return _Restored(_model_dir_evaluators(spec, models, configs), about, configs[0], default_json)


def _split(spec: EvalSpec, evaluator) -> str:
    """The split `evaluator` reads: the spec's, or the default of its kind."""
    if spec.split is not None:
        return spec.split
    return DETECTION_SPLIT if isinstance(evaluator, detector.Detector) else DEFAULT_SPLIT


def _model_dir_data(spec: EvalSpec, source, config: dict, evaluator) -> tf.data.Dataset:
    """Normalised images for `evaluator`: in batches, or one at a time at full size."""
    full = evaluator.input_mode == "full"
    return pipelines.build_dataset(
        source,
        _split(spec, evaluator),
        batch_size=1 if full else spec.batch_size,
        training=False,
        crop_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        eval_mode=evaluator.input_mode,
        with_boxes=isinstance(evaluator, (localizer.Localizer, detector.Detector)),
    )


def _saved_model_data(spec: EvalSpec, source, evaluator) -> tf.data.Dataset:
    """Encoded bytes in batches, or decoded uint8 images one at a time (sizes differ)."""
    records = source.records(_split(spec, evaluator))
    if evaluator.input_mode == "encoded":
        pairs = records.map(lambda r: (r["encoded"], r["label"]))
        return pairs.batch(spec.batch_size)
    pairs = records.map(lambda r: (pipelines.decode_image(r["encoded"]), r["label"]))
    return pairs.batch(1)


def _drawer(spec: EvalSpec, config: dict, evaluator):
    """The PNG-writing image callback of a box evaluator (None without draw_dir)."""
    if not spec.draw_dir or not isinstance(evaluator, (localizer.Localizer, detector.Detector)):
        return None
    is_detector = isinstance(evaluator, detector.Detector)
    return drawing.found_boxes_writer(
        spec.draw_dir,
        _split(spec, evaluator),
        run_dir.read_config(spec.model_dir[0])["class_names"],
        config["mean"],
        config["std"],
        max_images=spec.draw_max,
        min_score=spec.draw_min_score if is_detector else None,
    )


def _title(about: dict) -> str:
    if "ensemble" in about or "saved_models" in about:
        members = about.get("saved_models") or [m["model"] for m in about["ensemble"]]
        return f"Ensemble of {len(members)} ({', '.join(members)})"
    return about.get("model", "SavedModel")


def run(spec: EvalSpec) -> tuple[dict[str, Any], str]:
    """Evaluates `spec`, prints the tables and writes the JSON report.

    Classification modes report top-1 / top-5 error in percent, localization the ILSVRC
    error (right class and IoU >= 0.5), detection PASCAL VOC mean average precision
    (0-1, IoU 0.5). Raises `SpecError` for a spec that cannot run.

    Returns:
      The report (what was evaluated, data, split and per-mode results) and the path it
      was written to (`output_json`, default beside the run or export).
    """
    check(spec)
    restored = _restore(spec)
    config = restored.config
    try:
        source = pipelines.open_source(spec.data, spec.data_dir)
    except (ValueError, OSError) as e:
        raise SpecError(f"--data={spec.data}: {e}") from e
    num_classes = config["build_kwargs"]["num_classes"] if config else source.num_classes
    if num_classes != source.num_classes:
        raise SpecError(
            f"--data={spec.data} has {source.num_classes} classes but the model has {num_classes}"
        )

    results, descriptions, settings, detections = {}, {}, {}, {}
    for evaluator in restored.evaluators:
        if config is None:
            batches = _saved_model_data(spec, source, evaluator)
        else:
            batches = _model_dir_data(spec, source, config, evaluator)
        print(f"Evaluating {evaluator.name} ({evaluator.description}) ...", flush=True)
        draw = _drawer(spec, config, evaluator)
        if isinstance(evaluator, localizer.Localizer):
            results[evaluator.name] = localizer.evaluate_localization(
                evaluator, batches, max_examples=spec.max_examples, on_image=draw
            )
        elif isinstance(evaluator, detector.Detector):
            detections[evaluator.name] = detector.evaluate_detection(
                evaluator, batches, max_examples=spec.max_examples, on_image=draw
            )
        else:
            results[evaluator.name] = evaluation.evaluate(
                evaluator, batches, num_classes=num_classes, max_examples=spec.max_examples
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

    title = _title(restored.about)
    split = spec.split or DEFAULT_SPLIT
    if results:
        print(f"\n{title} on {spec.data} ({split}):")
        print(evaluation.format_table(results, descriptions))
    class_names = config["class_names"] if config else []
    detection_split = spec.split or DETECTION_SPLIT
    for name, found in detections.items():
        print(f"\n{title} {name} ({descriptions[name]}) on {spec.data} ({detection_split}):")
        print(detector.format_ap_table(found, class_names))
        # Classes without true objects have no AP: null in the JSON.
        per_class = [None if np.isnan(ap) else ap for ap in found["per_class_ap"]]
        results[name] = {
            **found,
            "split": detection_split,
            "per_class_ap": dict(zip(class_names, per_class)),
        }
    report = {
        **restored.about,
        "data": spec.data,
        "split": split,
        "results": {
            name: {**metrics, "description": descriptions[name]}
            for name, metrics in results.items()
        },
    }
    if settings:
        report["dense"] = settings
    output = spec.output_json or restored.default_json
    with tf.io.gfile.GFile(output, "w") as f:
        json.dump(report, f, indent=2)
    return report, output
