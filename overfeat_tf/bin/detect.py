r"""Localization or detection on a folder of images: `overfeat-detect`.

After `overfeat-train` and `overfeat-train-boxes --task=detection`:

    overfeat-detect --model_dir=runs/voc --image_dir=photos/ --output_dir=out/

writes `out/<image>.json` (boxes in the image's pixels, classes, scores) and
`out/<image>.png` (the boxes drawn) for every image in `photos/`
(`overfeat_tf.detection.on_images`). `--task=localization` uses the regressor of
`overfeat-train-boxes --task=localization` and gives ILSVRC's five ranked guesses.
"""

from __future__ import annotations

import os

import overfeat_tf  # noqa: F401  (first: turns oneDNN on before TensorFlow loads)

# isort: split
from absl import flags

from overfeat_tf import cli, flags_common
from overfeat_tf import run_dir as run_dir_lib
from overfeat_tf.evaluation import dense
from overfeat_tf.cli import FlagError
from overfeat_tf.detection import detector, loading, on_images

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "The classifier's run (overfeat-train).")
flags.DEFINE_string("image_dir", None, "Folder of images (.jpg .jpeg .png .gif .bmp).")
flags.DEFINE_string("output_dir", None, "Where the JSON and PNG files go.")
flags.DEFINE_enum("task", "detection", ["detection", "localization"], "What to find.")
flags.DEFINE_string("regressor_dir", None, "The box regressor (default <model_dir>/<task>).")
flags.DEFINE_string(
    "detector_dir",
    None,
    "Detection: the background-class classifier (default <model_dir>/detection/classifier).",
)
flags.DEFINE_list("scales", None, "Scales, HxW or S (default: the regressor's).")
flags.DEFINE_bool("flips", True, "Also look at the mirrored image.")
flags.DEFINE_float(
    "score_threshold",
    detector.DEFAULT_SCORE_THRESHOLD,
    "Detection: a location proposes a class whose probability exceeds this.",
)
flags.DEFINE_float("draw_min_score", 0.0, "Draw boxes scoring at least this (JSON: all).")
flags_common.define_onednn()


def _predictor(model, scales):
    dirs = loading.default_dirs(FLAGS.model_dir, FLAGS.task)
    dirs = {key: FLAGS[key].value or value for key, value in dirs.items()}
    try:
        if FLAGS.task == "localization":
            return loading.load_localizer(model, **dirs, scales=scales, flips=FLAGS.flips)
        return loading.load_detector(
            **dirs, scales=scales, flips=FLAGS.flips, score_threshold=FLAGS.score_threshold
        )
    except loading.RunError as e:
        raise FlagError(f"--{e.role}={e.directory}: {e}") from e


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for flag in ("model_dir", "image_dir", "output_dir"):
        if not FLAGS[flag].value:
            raise FlagError(f"--{flag} is required")
    try:
        paths = on_images.list_images(FLAGS.image_dir)
    except ValueError as e:
        raise FlagError(f"--image_dir={FLAGS.image_dir}: {e}") from e
    try:
        scales = None if FLAGS.scales is None else dense.parse_scales(FLAGS.scales)
    except ValueError as e:
        raise FlagError(f"--scales: {e}") from e
    try:
        model, config = run_dir_lib.restore_model(FLAGS.model_dir)
    except (OSError, ValueError, AssertionError) as e:
        raise FlagError(f"--model_dir={FLAGS.model_dir}: {str(e).splitlines()[0]}") from e
    predict = _predictor(model, scales)
    skipped = on_images.run_on_folder(
        predict,
        paths,
        FLAGS.output_dir,
        config["class_names"],
        config["mean"],
        config["std"],
        FLAGS.task,
        FLAGS.draw_min_score,
    )
    for problem in skipped:
        print(f"Skipped {problem}")
    print(
        f"{FLAGS.task}: {len(paths) - len(skipped)} images -> "
        f"{os.path.abspath(FLAGS.output_dir)} (a .json and a .png each)"
    )
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-detect`)."""
    cli.run(main, "overfeat-detect")


if __name__ == "__main__":
    run()
