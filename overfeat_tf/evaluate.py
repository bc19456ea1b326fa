r"""Evaluates a trained classifier: `overfeat-evaluate` / `python -m overfeat_tf.evaluate`.

Prints top-1 / top-5 error per mode, like the papers' tables, and writes them as JSON:
`center` (one centre crop), `ten_view` (AlexNet's ten views), `dense` (OverFeat's
multi-scale, fine-stride, flipped evaluation). After `overfeat-train`:

    overfeat-evaluate --model_dir=runs/alexnet

On ImageNet validation TFRecords, OverFeat's four-scale fine-stride result (Table 2):

    overfeat-evaluate --model_dir=runs/overfeat_accurate --data=tfrecord:/data/imagenet \
        --modes=dense --scales=245x245,317x389,425x497,461x569

An exported SavedModel is evaluated through its serving graph (centre crop only):

    overfeat-evaluate --saved_model=runs/alexnet/export/1 --modes=center
"""

from __future__ import annotations

import json
import os

from absl import flags

from overfeat_tf import cli
from overfeat_tf.cli import FlagError
from overfeat_tf import dense, evaluation, xla_choice
from overfeat_tf import model_dir as model_dir_lib

import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402

MODES = ("center", "ten_view", "dense")

flags.DEFINE_string("model_dir", None, "A training run's directory (model.json + checkpoints).")
flags.DEFINE_string("checkpoint", None, "A checkpoint of --model_dir (default: the latest).")
flags.DEFINE_string(
    "saved_model", None, "An exported SavedModel directory (instead of --model_dir)."
)
flags.DEFINE_string(
    "data", "embedded", "Data source: embedded, tfrecord:/dir, tfds:NAME or folder:/dir."
)
flags.DEFINE_string("data_dir", None, "Where the embedded data set or TFDS data live.")
flags.DEFINE_string("split", "validation", "Split to evaluate.")
flags.DEFINE_list("modes", list(MODES), f"Comma list of evaluation modes: {', '.join(MODES)}.")
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
    "Where to write the results (default <model_dir>/eval.json, or <saved_model>.eval.json).",
)
flags.DEFINE_integer("batch_size", 32, "Images per batch (dense evaluation uses 1).")
flags.DEFINE_bool("onednn", True, "Use oneDNN CPU kernels (read before TensorFlow loads).")
flags.DEFINE_enum(
    "xla", "auto", list(xla_choice.MODES),
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
    if (FLAGS.model_dir is None) == (FLAGS.saved_model is None):
        raise FlagError("Give exactly one of --model_dir or --saved_model")
    modes = _modes()
    if not modes or any(m not in MODES for m in modes):
        raise FlagError(f"--modes: {','.join(modes)!r} is invalid; valid: {','.join(MODES)}")
    if FLAGS.saved_model is not None and modes != ["center"]:
        raise FlagError(
            f"--modes={','.join(modes)}: a SavedModel serves centre-crop predictions "
            "only; use --modes=center, or --model_dir for ten_view and dense"
        )
    for flag in ("batch_size", "max_examples"):
        value = getattr(FLAGS, flag)
        if value is not None and value < 1:
            raise FlagError(f"--{flag} must be >= 1; received {value}")


def _model_dir_evaluators(model) -> list[evaluation.Evaluator]:
    scales = _scales()
    factories = {
        "center": lambda: evaluation.CenterEvaluator(model, FLAGS.xla),
        "ten_view": lambda: evaluation.TenViewEvaluator(model, FLAGS.xla),
        "dense": lambda: dense.DenseEvaluator(
            model, scales, FLAGS.fine_stride, FLAGS.flips, FLAGS.xla
        ),
    }
    try:
        return [factories[mode]() for mode in _modes()]
    except ValueError as e:
        raise FlagError(f"--scales: {e}") from e


def _model_dir_data(source, config: dict, evaluator: evaluation.Evaluator) -> tf.data.Dataset:
    full = evaluator.input_mode == "full"
    return pipelines.build_dataset(
        source,
        FLAGS.split,
        batch_size=1 if full else FLAGS.batch_size,
        training=False,
        crop_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        eval_mode=evaluator.input_mode,
    )


def _saved_model_data(source, evaluator: evaluation.SavedModelEvaluator) -> tf.data.Dataset:
    """Encoded bytes in batches, or decoded uint8 images one at a time (sizes differ)."""
    records = source.records(FLAGS.split)
    if evaluator.input_mode == "encoded":
        pairs = records.map(lambda r: (r["encoded"], r["label"]))
        return pairs.batch(FLAGS.batch_size)
    pairs = records.map(lambda r: (pipelines.decode_image(r["encoded"]), r["label"]))
    return pairs.batch(1)


def _restore() -> tuple[list[evaluation.Evaluator], dict, dict | None, str]:
    """The evaluators, what is evaluated (for the JSON), the model dir's config (None
    for a SavedModel) and the default JSON path."""
    if FLAGS.saved_model is not None:
        try:
            evaluator = evaluation.SavedModelEvaluator(FLAGS.saved_model)
        except (OSError, ValueError) as e:
            raise FlagError(f"--saved_model={FLAGS.saved_model}: {str(e).splitlines()[0]}") from e
        about = {"saved_model": FLAGS.saved_model}
        return [evaluator], about, None, FLAGS.saved_model.rstrip("/") + ".eval.json"
    try:
        model, config = model_dir_lib.restore_model(FLAGS.model_dir, FLAGS.checkpoint)
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise FlagError(f"--model_dir={FLAGS.model_dir}: {message}") from e
    about = {
        "model_dir": FLAGS.model_dir,
        "model": config["name"],
        "build_kwargs": config["build_kwargs"],
        "checkpoint": FLAGS.checkpoint or tf.train.latest_checkpoint(FLAGS.model_dir),
    }
    default_json = os.path.join(FLAGS.model_dir, "eval.json")
    return _model_dir_evaluators(model), about, config, default_json


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

    results, descriptions, settings = {}, {}, {}
    for evaluator in evaluators:
        if config is None:
            batches = _saved_model_data(source, evaluator)
        else:
            batches = _model_dir_data(source, config, evaluator)
        print(f"Evaluating {evaluator.name} ({evaluator.description}) ...", flush=True)
        results[evaluator.name] = evaluation.evaluate(
            evaluator, batches, num_classes=num_classes, max_examples=FLAGS.max_examples
        )
        descriptions[evaluator.name] = evaluator.description
        choice = getattr(evaluator, "xla_choice", None)
        if choice is not None:
            results[evaluator.name]["xla"] = choice.as_dict()
            print(f"  {evaluator.name}: {choice.summary('image')}", flush=True)
        if isinstance(evaluator, dense.DenseEvaluator):
            settings = {
                "scales": [list(s) for s in evaluator.scales],
                "fine_stride": evaluator.fine_stride,
                "flips": evaluator.flips,
            }

    title = about.get("model", "SavedModel")
    print(f"\n{title} on {FLAGS.data} ({FLAGS.split}):")
    print(evaluation.format_table(results, descriptions))
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
