"""The absl flags of data sources, defined once for every program that reads one.

`pipelines/bin`'s programs and `overfeat_tf`'s (through `overfeat_tf.flags_common`,
since `overfeat_tf` may import `pipelines` but not the other way round) call these;
the default and the help text that differ between programs are arguments, and further
keyword arguments go to absl (`flag_values`, `required`).
"""

from __future__ import annotations

from absl import flags

# The flags the functions below define are the calling program's: `--help` lists them.
flags.disclaim_key_flags()

DATA_HELP = "Data source: embedded, tfrecord:DIR, tfds:NAME or folder:DIR."
DATA_DIR_HELP = "Where the embedded data set or TFDS data live."


def define_data(default: str | None = "embedded", help: str = DATA_HELP, **kwargs) -> None:
    """--data: a `pipelines.open_source` spec."""
    flags.DEFINE_string("data", default, help, **kwargs)


def define_data_dir(help: str = DATA_DIR_HELP, **kwargs) -> None:
    """--data_dir: where `embedded` and `tfds:` sources live."""
    flags.DEFINE_string("data_dir", None, help, **kwargs)
