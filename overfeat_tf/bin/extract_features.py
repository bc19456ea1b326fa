r"""Extracts features of named layers: `overfeat-features` / `python -m overfeat_tf.bin.extract_features`.

OverFeat as a feature extractor (section 1), ZFNet's transfer features (section 5.2):
the outputs of `--layers` for every image, written as `<layer>.npy` (rows in the order
of `filenames.txt`, plus `labels.npy` for a labelled source):

    overfeat-features --model_dir=runs/alexnet --image_dir=photos/ \
        --layers=pool5,fc6,fc7 --output_dir=features/photos

    overfeat-features --model_dir=runs/alexnet --data=folder:/data/caltech101 \
        --split=train --layers=fc7 --output_dir=features/caltech_train
"""

from __future__ import annotations

from absl import flags

from overfeat_tf import cli
from overfeat_tf.cli import FlagError
from overfeat_tf import flags_common
from overfeat_tf import features
from overfeat_tf import run_dir
from overfeat_tf.visualization import inputs

import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402

flags_common.define_model_dir()
flags_common.define_checkpoint()
flags_common.define_data(default=None)
flags_common.define_data_dir()
flags_common.define_split()
flags.DEFINE_string("image_dir", None, "A folder of images (instead of --data).")
flags.DEFINE_list("layers", ["fc7"], "Comma list of layer names, e.g. pool5,fc6,fc7.")
flags.DEFINE_string("output_dir", None, "Where the .npy files go.")
flags_common.define_batch_size(32, "Images per batch.")
flags.DEFINE_integer("max_images", None, "Extract at most this many images.")
flags_common.define_onednn()

FLAGS = flags.FLAGS


def _records() -> tuple[tf.data.Dataset, int | None]:
    """The records of --data or --image_dir, and their count when known."""
    if (FLAGS.data is None) == (FLAGS.image_dir is None):
        raise FlagError("Give exactly one of --data or --image_dir")
    if FLAGS.image_dir is not None:
        try:
            paths = inputs.list_images(FLAGS.image_dir)
        except FileNotFoundError as e:
            raise FlagError(f"--image_dir: {e}") from e
        return inputs.file_records(paths), len(paths)
    try:
        source = pipelines.open_source(FLAGS.data, FLAGS.data_dir)
        return inputs.source_records(source, FLAGS.split), source.num_examples(FLAGS.split)
    except (ValueError, OSError) as e:
        raise FlagError(f"--data={FLAGS.data} --split={FLAGS.split}: {e}") from e


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for flag in ("model_dir", "output_dir"):
        if getattr(FLAGS, flag) is None:
            raise FlagError(f"--{flag} is required")
    for flag in ("batch_size", "max_images"):
        value = getattr(FLAGS, flag)
        if value is not None and value < 1:
            raise FlagError(f"--{flag} must be >= 1; received {value}")
    records, count = _records()
    try:
        model, config = run_dir.restore_model(FLAGS.model_dir, FLAGS.checkpoint)
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise FlagError(f"--model_dir={FLAGS.model_dir}: {str(e).splitlines()[0]}") from e
    try:
        shapes = features.layer_shapes(model, FLAGS.layers)
    except ValueError as e:
        raise FlagError(f"--layers: {e}") from e
    if FLAGS.max_images is not None:
        count = min(count, FLAGS.max_images) if count is not None else FLAGS.max_images
    batches = inputs.model_inputs(
        records,
        crop_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        batch_size=FLAGS.batch_size,
        max_images=FLAGS.max_images,
    )
    arrays, filenames, labels = features.extract(model, batches, FLAGS.layers, count)
    paths = features.write(FLAGS.output_dir, arrays, filenames, labels)
    print(
        f"{len(filenames)} images; per image: "
        + ", ".join(f"{name} {list(shape)}" for name, shape in shapes.items())
    )
    for path in paths:
        print(path)
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-features`)."""
    cli.run(main, "overfeat-features")


if __name__ == "__main__":
    run()
