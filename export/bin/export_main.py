r"""Exports a trained model for TF Serving and Keras: `overfeat-export` / `python -m export`.

From a training run's directory (`model.json` and checkpoints) to a new version of a
TF Serving model base, with a `.keras` file beside it (layout: `export/saved_model.py`):

    overfeat-export --model_dir=runs/alexnet --export_base=exports/alexnet

then serve `exports/alexnet` with TF Serving (README, "Serving"). Several runs,
comma-separated, export as one ensemble SavedModel with the same signatures, serving the
mean of the members' probabilities (no `.keras` file; `overfeat_tf.evaluation.ensemble`):

    overfeat-export --model_dir=runs/a,runs/b,runs/c --export_base=exports/alexnet_x3
"""

from __future__ import annotations

from absl import flags

import overfeat_tf  # noqa: F401  (first: turns oneDNN on before TensorFlow loads)
from overfeat_tf import cli
from overfeat_tf.cli import FlagError
from overfeat_tf import flags_common

from export import saved_model

flags_common.define_model_dir(
    "Training run directory (model.json and checkpoints); a comma list exports the runs' ensemble.",
    as_list=True,
)
flags.DEFINE_string(
    "export_base",
    None,
    "TF Serving model base directory (default <model_dir>/export; for an "
    "ensemble, <first model_dir>/export_ensemble).",
)
flags.DEFINE_integer("version", None, "Version to write (default: the next integer).")
flags.DEFINE_integer("top_k", 5, "Classes per answer (at most the number of classes).")
flags_common.define_checkpoint()
flags.DEFINE_integer(
    "max_pixels",
    saved_model.MAX_PIXELS,
    "The signatures refuse encoded images of more pixels (height x width, "
    "read from the header before decoding).",
)
flags.mark_flag_as_required("model_dir")

FLAGS = flags.FLAGS


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for flag in ("top_k", "max_pixels"):
        if getattr(FLAGS, flag) < 1:
            raise FlagError(f"--{flag} must be >= 1; received {getattr(FLAGS, flag)}")
    if FLAGS.version is not None and FLAGS.version < 1:
        raise FlagError(f"--version must be >= 1; received {FLAGS.version}")
    model_dirs = FLAGS.model_dir
    if FLAGS.checkpoint is not None and len(model_dirs) != 1:
        raise FlagError("--checkpoint names the checkpoint of a single --model_dir")
    default_base = "export" if len(model_dirs) == 1 else "export_ensemble"
    export_base = FLAGS.export_base or f"{model_dirs[0].rstrip('/')}/{default_base}"
    try:
        paths = saved_model.export_model_dirs(
            model_dirs,
            export_base,
            version=FLAGS.version,
            top_k=FLAGS.top_k,
            max_pixels=FLAGS.max_pixels,
            checkpoints=[FLAGS.checkpoint] * len(model_dirs),
        )
    except FileNotFoundError as e:
        if FLAGS.checkpoint:
            raise FlagError(f"--checkpoint={FLAGS.checkpoint}: {e}") from e
        raise FlagError(f"--model_dir={','.join(model_dirs)}: {e}") from e
    except ValueError as e:  # ensemble members that disagree
        raise FlagError(f"--model_dir={','.join(model_dirs)}: {e}") from e
    except FileExistsError as e:
        flag = "version" if FLAGS.version else "export_base"
        raise FlagError(f"--{flag}={getattr(FLAGS, flag)}: {e}") from e
    if paths.existed:
        print(f"Version {paths.version} already holds this export; nothing written.")
    for label, path in paths.items():
        print(f"{label + ':':<12}{path}")


def run() -> None:
    """Console-script entry point (`overfeat-export`)."""
    cli.run(main, "overfeat-export")


if __name__ == "__main__":
    run()
