"""overfeat-stats: mean image, per-channel mean/std and RGB PCA of a training set.

overfeat-stats --data=tfrecord:/data/imagenet256 --output=/data/imagenet_stats.npz
"""

from absl import app, flags

from pipelines import sources
from pipelines import stats
from pipelines.bin import flags_common

FLAGS = flags.FLAGS
flags_common.define_data()
flags_common.define_data_dir()
flags.DEFINE_string("split", "train", "Split to stream.")
flags.DEFINE_integer("max_images", 0, "Stop after this many images; 0 = all.", lower_bound=0)
flags.DEFINE_string("output", None, "Output .npz file.", required=True)


def _check_spec(spec: str) -> bool:
    try:
        sources.check_spec(spec)
    except ValueError as error:
        raise flags.ValidationError(str(error)) from None
    return True


flags.register_validator("data", _check_spec)


def _main(argv: list[str]) -> None:
    del argv
    source = sources.open_source(FLAGS.data, FLAGS.data_dir)
    result = stats.compute_statistics(source, FLAGS.split, FLAGS.max_images or None)
    stats.save_statistics(result, FLAGS.output)
    print(
        f"{result.num_images} images: mean_rgb={result.mean_rgb.round(2).tolist()} "
        f"std_rgb={result.std_rgb.round(2).tolist()} eigval={result.eigval.round(4).tolist()}"
        f" -> {FLAGS.output}"
    )


def main() -> None:
    """Console-script entry point."""
    app.run(_main)


if __name__ == "__main__":
    main()
