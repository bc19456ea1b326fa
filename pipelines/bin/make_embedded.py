"""overfeat-make-embedded: writes the embedded shapes data set (deterministic).

overfeat-make-embedded --output_dir=data/embedded
"""

from absl import app, flags

from pipelines import embedded

FLAGS = flags.FLAGS
_DEFAULT = embedded.EmbeddedConfig()
flags.DEFINE_string("output_dir", embedded.DEFAULT_DIR, "Directory of the shards.")
for _split in embedded.SPLITS:
    flags.DEFINE_integer(_split, getattr(_DEFAULT, _split), f"Images in {_split}.", lower_bound=1)
flags.DEFINE_integer("seed", _DEFAULT.seed, "Generator seed.")


def _main(argv: list[str]) -> None:
    del argv
    config = embedded.EmbeddedConfig(
        seed=FLAGS.seed, **{s: FLAGS[s].value for s in embedded.SPLITS}
    )
    directory = embedded.ensure_embedded_dataset(FLAGS.output_dir, config)
    print(f"Embedded data set {config.split_sizes()} in {directory}")


def main() -> None:
    """Console-script entry point."""
    app.run(_main)


if __name__ == "__main__":
    main()
