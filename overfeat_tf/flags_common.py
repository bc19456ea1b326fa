"""The absl flags several binaries share, each defined here once.

A binary calls the `define_*` functions it needs (`define_data` and `define_data_dir`
are `pipelines.bin.flags_common`'s, re-exported); the default and the help text that
differ between programs are arguments, and further keyword arguments go to absl
(`lower_bound`, `flag_values`). Importing this module imports
`overfeat_tf` first, which makes the oneDNN decision from `sys.argv` before TensorFlow
loads (`overfeat_tf.runtime`); `define_onednn` only declares the flag, so absl accepts
it and `--help` lists it.
"""

from __future__ import annotations

from absl import flags

from overfeat_tf import runtime
from pipelines.bin.flags_common import define_data as define_data
from pipelines.bin.flags_common import define_data_dir as define_data_dir

# The flags the functions below define are the calling program's: `--help` lists them.
flags.disclaim_key_flags()

RUN_DIR_HELP = "A training run's directory (model.json + checkpoints)."


def define_onednn(**kwargs) -> None:
    """--onednn: read from sys.argv by `overfeat_tf.runtime` before TensorFlow loads."""
    flags.DEFINE_bool(
        "onednn",
        True,
        "Use oneDNN CPU kernels (read before TensorFlow loads; "
        f"also {runtime.OPT_OUT_ENV}=0 turns them off).",
        **kwargs,
    )


def define_model_dir(help: str = RUN_DIR_HELP, as_list: bool = False, **kwargs) -> None:
    """--model_dir: a training run's directory (`as_list`: a comma list of them)."""
    (flags.DEFINE_list if as_list else flags.DEFINE_string)("model_dir", None, help, **kwargs)


def define_checkpoint() -> None:
    """--checkpoint: one checkpoint of --model_dir."""
    flags.DEFINE_string("checkpoint", None, "A checkpoint of --model_dir (default: the latest).")


def define_batch_size(default: int | None, help: str, **kwargs) -> None:
    """--batch_size; `kwargs` go to absl (e.g. lower_bound)."""
    flags.DEFINE_integer("batch_size", default, help, **kwargs)


def define_seed(help: str = "Seed of initialisation and data order.", **kwargs) -> None:
    """--seed."""
    flags.DEFINE_integer("seed", 0, help, **kwargs)


def define_split(default: str | None = "validation", help: str = "Split of --data.") -> None:
    """--split: a split of the data source."""
    flags.DEFINE_string("split", default, help)


def define_max_steps(help: str = "Stop after this many steps in total.", **kwargs) -> None:
    """--max_steps."""
    flags.DEFINE_integer("max_steps", None, help, **kwargs)


def define_stats(**kwargs) -> None:
    """--stats: pixel statistics replacing the published ImageNet constants."""
    flags.DEFINE_string(
        "stats",
        None,
        "Pixel statistics from overfeat-stats (.npz) to use instead of the published ImageNet "
        "constants (the default): the input mean and std, and the eigenvectors of AlexNet's "
        "PCA lighting. Training records them in the run; evaluation, export and serving then "
        "use the run's. Given to overfeat-evaluate, they replace what the run recorded.",
        **kwargs,
    )
