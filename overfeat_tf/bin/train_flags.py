"""overfeat-train's flags, and the `TrainSpec` they describe.

Shared with `overfeat-experiment`, which parses its `--train_args` with the same
definitions.
"""

from __future__ import annotations

from absl import flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads (see runtime.py)
from overfeat_tf import cli, flags_common, xla_choice
from overfeat_tf.cli import FlagError
from overfeat_tf.training import launch, recipes, strategies

# The flags the functions below define are the calling program's: `--help` lists them.
flags.disclaim_key_flags()

FLAGS = flags.FLAGS


def define_flags(flag_values: flags.FlagValues = FLAGS) -> None:
    """Declares overfeat-train's flags on `flag_values` (the experiment runner parses its
    --train_args with the same definitions)."""
    fv = {"flag_values": flag_values}
    flags.DEFINE_string(
        "model",
        "alexnet",
        f"Model to train: {', '.join(overfeat_tf.MODEL_NAMES)}, or a variant "
        "name (overfeat_tf.models.variants), e.g. alexnet-towers1, zfnet-fc8192.",
        **fv,
    )
    flags_common.define_data(**fv)
    flags_common.define_data_dir(**fv)
    flags.DEFINE_string(
        "split", "train", "Training split (converted detection data: detection_train).", **fv
    )
    flags.DEFINE_string(
        "eval_split",
        "validation",
        "Validation split (converted detection data: detection_tuning).",
        **fv,
    )
    flags_common.define_model_dir("Checkpoints, summaries, metrics (default runs/<model>).", **fv)
    flags.DEFINE_integer("epochs", None, "Epochs (default: the recipe's).", **fv)
    flags_common.define_max_steps(**fv)
    flags.DEFINE_integer(
        "steps_per_epoch", None, "Steps per epoch (default: train size / batch).", **fv
    )
    flags_common.define_batch_size(None, "Global batch size (default: the recipe's).", **fv)
    flags.DEFINE_float(
        "width", 1.0, "Channel multiplier of every layer (1.0: the paper's widths).", **fv
    )
    flags.DEFINE_enum(
        "recipe",
        None,
        list(recipes.RECIPES),
        "Training recipe (default: the model's paper); quick: for data sets of thousands of "
        "images (He init, no dropout, a higher rate).",
        **fv,
    )
    flags.DEFINE_float("learning_rate", None, "Override the recipe's initial learning rate.", **fv)
    flags.DEFINE_float("momentum", None, "Override the recipe's momentum.", **fv)
    flags.DEFINE_float("weight_decay", None, "Override the recipe's coupled L2 weight decay.", **fv)
    flags.DEFINE_enum(
        "schedule", None, ["plateau", "step"], "Override the recipe's schedule.", **fv
    )
    flags.DEFINE_list("step_epochs", None, "Override the step schedule's epochs.", **fv)
    flags.DEFINE_float("step_factor", None, "Override the step schedule's factor.", **fv)
    flags.DEFINE_float(
        "max_filter_rms", None, "Override ZFNet's filter RMS cap (0 disables).", **fv
    )
    flags.DEFINE_float(
        "clip_norm",
        None,
        "Override the recipe's cap on the gradients' global norm (0 disables).",
        **fv,
    )
    flags.DEFINE_enum("init", None, ["paper", "he"], "Weight initialisation (default paper).", **fv)
    flags.DEFINE_float("dropout", None, "Override the dropout rate.", **fv)
    flags.DEFINE_enum(
        "strategy", "auto", list(strategies.STRATEGIES), "Distribution strategy.", **fv
    )
    flags.DEFINE_list(
        "tower_devices",
        None,
        "AlexNet's towers one per device, e.g. /GPU:0,/GPU:1 (model parallelism as in the "
        "paper; one replica).",
        **fv,
    )
    flags.DEFINE_enum(
        "mixed_precision",
        "none",
        ["none", "mixed_float16", "mixed_bfloat16"],
        "Dtype policy.",
        **fv,
    )
    flags_common.define_seed(**fv)
    flags.DEFINE_bool(
        "deterministic", False, "Same batches in the same order for a seed (slower input).", **fv
    )
    flags.DEFINE_enum(
        "xla",
        "auto",
        list(xla_choice.MODES),
        "XLA-compile the forward/backward pass: auto (time both on the first steps, keep "
        "the faster; runs of 50+ steps), on, off.",
        **fv,
    )
    flags_common.define_onednn(**fv)
    flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints.", **fv)
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.", **fv)
    flags.DEFINE_bool("strict", False, "Fail on a corrupt image instead of skipping it.", **fv)
    flags.DEFINE_bool(
        "pca_lighting",
        None,
        "AlexNet's PCA colour augmentation (default: the recipe's, on for AlexNet).",
        **fv,
    )
    flags_common.define_stats(**fv)
    flags.DEFINE_string(
        "init_from",
        None,
        "A trained run's model_dir: start from its weights with a new class layer (transfer).",
        **fv,
    )
    flags.DEFINE_string(
        "freeze_through", None, "With --init_from: keep this layer and all below it fixed.", **fv
    )
    flags.DEFINE_bool(
        "filter_grid_every_epoch",
        False,
        "Write conv1's filters to <model_dir>/filters/epoch_NNN.png after each epoch.",
        **fv,
    )
    flags.DEFINE_bool("export", True, "Export a SavedModel and .keras file after training.", **fv)
    flags.DEFINE_string("export_base", None, "Export directory (default <model_dir>/export).", **fv)


def spec_from_flags(flag_values: flags.FlagValues = FLAGS) -> launch.TrainSpec:
    """The training run the parsed flags describe."""
    fields = {
        field.name: flag_values[field.name].value
        for field in launch.TrainSpec.__dataclass_fields__.values()
        # --verbose is the error boundary's (tracebacks), not the trainer's progress log.
        if field.name in flag_values and field.name != cli.VERBOSE_FLAG
    }
    if fields["step_epochs"] is not None:
        try:
            fields["step_epochs"] = tuple(int(e) for e in fields["step_epochs"])
        except ValueError as e:
            raise FlagError(
                f"--step_epochs must be integers; received {fields['step_epochs']}"
            ) from e
    if fields["tower_devices"] is not None:
        fields["tower_devices"] = tuple(fields["tower_devices"])
    return launch.TrainSpec(**fields)
