r"""Trains a paper model: `overfeat-train` / `python -m overfeat_tf.train`.

The project's main job generates the embedded data set if absent, trains a 1/8-width
AlexNet on it with the `quick` recipe for small data sets, evaluates on its validation
split, exports a SavedModel and a `.keras` file, and prints where everything went:

    overfeat-train --recipe=quick --width=0.125

On ImageNet TFRecords with the paper's recipe, over every local GPU:

    overfeat-train --model=alexnet --data=tfrecord:/data/imagenet \
        --model_dir=runs/alexnet --steps_per_epoch=10009

Run the same command again after an interruption: it resumes from the last checkpoint.
"""

from __future__ import annotations

import dataclasses
import os

from absl import flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads (see runtime.py)
from overfeat_tf import cli
from overfeat_tf.cli import FlagError
from overfeat_tf import model_dir as model_dir_lib
from overfeat_tf import input_stats, stats_flag, transfer, xla_choice  # noqa: F401 (--stats)
from overfeat_tf.models import towers
from overfeat_tf.visualization import filters as filter_viz
from overfeat_tf.training import recipes, strategies
from overfeat_tf.training.trainer import TrainConfig, Trainer, TrainingDiverged

import keras  # noqa: E402  (after overfeat_tf: oneDNN)
import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", "alexnet",
    f"Model to train: {', '.join(overfeat_tf.MODEL_NAMES)}, or a variant "
    "name (overfeat_tf.models.variants), e.g. alexnet-towers1, zfnet-fc8192.",
)
flags.DEFINE_string(
    "data", "embedded", "Data source: embedded, tfrecord:DIR, tfds:NAME or folder:DIR."
)
flags.DEFINE_string("data_dir", None, "Where the embedded data set or TFDS data live.")
flags.DEFINE_string("split", "train", "Training split (converted detection data: detection_train).")
flags.DEFINE_string(
    "eval_split", "validation", "Validation split (converted detection data: detection_tuning)."
)
flags.DEFINE_string("model_dir", None, "Checkpoints, summaries, metrics (default runs/<model>).")
flags.DEFINE_integer("epochs", None, "Epochs (default: the recipe's).")
flags.DEFINE_integer("max_steps", None, "Stop after this many steps in total.")
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch (default: train size / batch).")
flags.DEFINE_integer("batch_size", None, "Global batch size (default: the recipe's).")
flags.DEFINE_float("width", 1.0, "Channel multiplier of every layer (1.0: the paper's widths).")
flags.DEFINE_enum(
    "recipe", None, list(recipes.RECIPES),
    "Training recipe (default: the model's paper); quick: for data sets of thousands of "
    "images (He init, no dropout, a higher rate).",
)
flags.DEFINE_float("learning_rate", None, "Override the recipe's initial learning rate.")
flags.DEFINE_float("momentum", None, "Override the recipe's momentum.")
flags.DEFINE_float("weight_decay", None, "Override the recipe's coupled L2 weight decay.")
flags.DEFINE_enum("schedule", None, ["plateau", "step"], "Override the recipe's schedule.")
flags.DEFINE_list("step_epochs", None, "Override the step schedule's epochs.")
flags.DEFINE_float("step_factor", None, "Override the step schedule's factor.")
flags.DEFINE_float("max_filter_rms", None, "Override ZFNet's filter RMS cap (0 disables).")
flags.DEFINE_enum("init", None, ["paper", "he"], "Weight initialisation (default paper).")
flags.DEFINE_float("dropout", None, "Override the dropout rate.")
flags.DEFINE_enum("strategy", "auto", list(strategies.STRATEGIES), "Distribution strategy.")
flags.DEFINE_list(
    "tower_devices", None,
    "AlexNet's towers one per device, e.g. /GPU:0,/GPU:1 (model parallelism as in the "
    "paper; one replica).",
)
flags.DEFINE_enum(
    "mixed_precision", "none", ["none", "mixed_float16", "mixed_bfloat16"], "Dtype policy."
)
flags.DEFINE_integer("seed", 0, "Seed of initialisation and data order.")
flags.DEFINE_bool(
    "deterministic", False, "Same batches in the same order for a seed (slower input)."
)
flags.DEFINE_enum(
    "xla", "auto", list(xla_choice.MODES),
    "XLA-compile the forward/backward pass: auto (time both on the first steps, keep "
    "the faster; runs of 50+ steps), on, off.",
)
flags.DEFINE_bool("onednn", True, "Use oneDNN CPU kernels (read before TensorFlow loads).")
flags.DEFINE_integer("checkpoint_every", 500, "Steps between checkpoints.")
flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints to keep.")
flags.DEFINE_bool("strict", False, "Fail on a corrupt image instead of skipping it.")
flags.DEFINE_bool(
    "pca_lighting", None, "AlexNet's PCA colour augmentation (default: the recipe's, on for AlexNet)."
)
flags.DEFINE_string(
    "init_from", None,
    "A trained run's model_dir: start from its weights with a new class layer (transfer).",
)
flags.DEFINE_string(
    "freeze_through", None, "With --init_from: keep this layer and all below it fixed."
)
flags.DEFINE_bool(
    "filter_grid_every_epoch", False,
    "Write conv1's filters to <model_dir>/filters/epoch_NNN.png after each epoch.",
)
flags.DEFINE_bool("export", True, "Export a SavedModel and .keras file after training.")
flags.DEFINE_string("export_base", None, "Export directory (default <model_dir>/export).")


def resolve_recipe(model: str) -> recipes.Recipe:
    """The recipe named by --recipe (or the model's), with every override flag applied."""
    recipe = recipes.get_recipe(FLAGS.recipe or overfeat_tf.model_info(model).recipe)
    overrides = {
        "learning_rate": FLAGS.learning_rate,
        "momentum": FLAGS.momentum,
        "weight_decay": FLAGS.weight_decay,
        "schedule": FLAGS.schedule,
        "step_factor": FLAGS.step_factor,
        "dropout": FLAGS.dropout,
        "init": FLAGS.init,
        "batch_size": FLAGS.batch_size,
        "epochs": FLAGS.epochs,
        "pca_lighting": FLAGS.pca_lighting,
    }
    step_epochs = FLAGS.step_epochs
    if step_epochs is not None:
        try:
            overrides["step_epochs"] = tuple(int(e) for e in step_epochs)
        except ValueError:
            raise FlagError(f"--step_epochs must be integers; received {step_epochs}")
    if FLAGS.max_filter_rms is not None:
        overrides["max_filter_rms"] = FLAGS.max_filter_rms or None
    return dataclasses.replace(
        recipe, **{k: v for k, v in overrides.items() if v is not None}
    )


def _steps_per_epoch(recipe: recipes.Recipe, source, strategy) -> int:
    """Checks the flags against the data and strategy; returns the steps per epoch."""
    if recipe.batch_size % strategy.num_replicas_in_sync:
        raise FlagError(
            f"--batch_size={recipe.batch_size} is not divisible by the "
            f"{strategy.num_replicas_in_sync} replicas of --strategy={FLAGS.strategy}"
        )
    for flag in ("epochs", "batch_size", "steps_per_epoch", "max_steps", "checkpoint_every"):
        value = getattr(FLAGS, flag)
        if value is not None and value < 1:
            raise FlagError(f"--{flag} must be >= 1; received {value}")
    try:
        train_examples = source.num_examples(FLAGS.split)
        source.num_examples(FLAGS.eval_split)
    except (ValueError, FileNotFoundError) as e:
        raise FlagError(f"--data={FLAGS.data}: {e}") from e
    if FLAGS.steps_per_epoch is None and train_examples is None:
        raise FlagError(f"--steps_per_epoch is needed: {FLAGS.data} does not know its size")
    steps = FLAGS.steps_per_epoch or train_examples // recipe.batch_size
    if steps < 1:
        raise FlagError(
            f"--batch_size={recipe.batch_size} exceeds the {train_examples} training examples"
        )
    return steps


def _print_data_notes(source, recipe_name: str) -> None:
    """One line each: how validation was held out, and a paper recipe on a small set."""
    if source.validation_note:
        print(f"overfeat-train: {source.validation_note}", flush=True)
    examples = source.num_examples(FLAGS.split)
    if (
        recipes.is_paper_recipe(recipe_name)
        and examples is not None
        and examples < recipes.PAPER_RECIPE_MIN_EXAMPLES
    ):
        print(
            f"overfeat-train: the {recipe_name} paper recipe is made for ImageNet's 1.28M "
            f"images and may stay at chance for many epochs on {examples:,}; "
            "--recipe=quick suits small data sets.",
            flush=True,
        )


def _split_host_cpu(devices: list[str]) -> None:
    """Makes the host CPU into as many logical devices as `devices` names CPUs
    (/CPU:0,/CPU:1: two), to try tower placement on a CPU machine; they share its cores."""
    indices = [
        spec.device_index or 0
        for spec in map(tf.DeviceSpec.from_string, devices)
        if (spec.device_type or "").upper() == "CPU"
    ]
    if indices and max(indices) > 0:
        cpu = tf.config.list_physical_devices("CPU")[0]
        count = max(indices) + 1
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )


def _tower_strategy() -> tf.distribute.Strategy:
    """One replica, on the first of --tower_devices (checked against the other flags)."""
    if FLAGS.strategy not in ("auto", "one_device"):
        raise FlagError(
            f"--tower_devices runs one replica; it cannot be combined with --strategy={FLAGS.strategy}"
        )
    if FLAGS.xla == "on":
        raise FlagError("--xla=on compiles a step for one device; it cannot run --tower_devices")
    if FLAGS.init_from:
        raise FlagError("--tower_devices cannot be combined with --init_from")
    try:
        _split_host_cpu(FLAGS.tower_devices)
        missing = towers.missing_devices(FLAGS.tower_devices)
    except ValueError as e:  # not a device name
        raise FlagError(f"--tower_devices={','.join(FLAGS.tower_devices)}: {e}") from e
    if missing:
        present = ", ".join(d.name for d in tf.config.list_logical_devices())
        raise FlagError(f"--tower_devices: no {', '.join(missing)} here; devices: {present}")
    return tf.distribute.OneDeviceStrategy(FLAGS.tower_devices[0])


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.freeze_through and not FLAGS.init_from:
        raise FlagError("--freeze_through needs --init_from")
    if FLAGS.model is not None:
        try:
            overfeat_tf.model_info(FLAGS.model)  # a name or a variant name
        except ValueError as e:
            raise FlagError(f"--model={FLAGS.model}: {e}") from e
    try:
        # First: MultiWorkerMirroredStrategy must start before TensorFlow's runtime does.
        strategy = None if FLAGS.tower_devices else strategies.make_strategy(FLAGS.strategy)
    except ValueError as e:
        raise FlagError(f"--strategy={FLAGS.strategy}: {e}") from e
    strategy = strategy or _tower_strategy()
    try:
        source = pipelines.open_source(FLAGS.data, FLAGS.data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise FlagError(f"--data={FLAGS.data}: {e}") from e
    if FLAGS.init_from:
        # Transfer (ZFNet section 5.2): the trained run's architecture and input
        # normalisation, this data set's classes.
        try:
            model_name, build_kwargs = transfer.transfer_build_kwargs(
                FLAGS.init_from, source.num_classes
            )
        except FileNotFoundError as e:
            raise FlagError(f"--init_from={FLAGS.init_from}: {e}") from e
        recipe = resolve_recipe(model_name)
    else:
        model_name = FLAGS.model
        recipe = resolve_recipe(model_name)
        build_kwargs = {
            "num_classes": source.num_classes,
            "width": FLAGS.width,
            "dropout": recipe.dropout,
            "init": recipe.init,
        }
    info = overfeat_tf.model_info(model_name)
    if FLAGS.tower_devices:
        if len(FLAGS.tower_devices) != info.tower_count:
            raise FlagError(
                f"--tower_devices needs one device per tower; {model_name} has "
                f"{info.tower_count} tower(s), received {len(FLAGS.tower_devices)} devices"
            )
        build_kwargs["tower_devices"] = FLAGS.tower_devices
    try:  # transfer keeps the source run's statistics unless --stats is given
        stats = input_stats.of_run(FLAGS.init_from, model_dir_lib.read_config(FLAGS.init_from)) \
            if FLAGS.init_from and not FLAGS.stats else \
            input_stats.resolve(model_name, build_kwargs.get("init", "paper"), FLAGS.stats)
    except (OSError, ValueError) as e:
        raise FlagError(f"--stats={FLAGS.stats}: {e}") from e
    mean, std = stats.mean, stats.std
    width = build_kwargs["width"]
    model_dir = FLAGS.model_dir or os.path.join("runs", model_name)
    if FLAGS.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    keras.utils.set_random_seed(FLAGS.seed)
    steps_per_epoch = _steps_per_epoch(recipe, source, strategy)
    if strategies.is_chief(strategy):
        _print_data_notes(source, FLAGS.recipe or overfeat_tf.model_info(model_name).recipe)

    if strategies.is_chief(strategy):
        model_dir_lib.write_config(
            model_dir, name=model_name, build_kwargs=build_kwargs, class_names=source.class_names,
            stats=stats,
        )
    config = TrainConfig(
        model_dir=model_dir,
        recipe=recipe,
        steps_per_epoch=steps_per_epoch,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        mean=mean,
        std=std,
        max_steps=FLAGS.max_steps,
        checkpoint_every=FLAGS.checkpoint_every,
        keep_checkpoints=FLAGS.keep_checkpoints,
        # XLA compiles a step for one device: tower placement runs plain.
        xla="off" if FLAGS.tower_devices else FLAGS.xla,
    )
    bad_records = pipelines.BadRecordCounter()
    common = dict(crop_size=info.input_size, mean=mean, std=std, strict=FLAGS.strict)

    def train_dataset(epoch: int, skip: int, context: tf.distribute.InputContext):
        dataset = pipelines.build_dataset(
            source,
            FLAGS.split,
            batch_size=context.get_per_replica_batch_size(recipe.batch_size),
            training=True,
            recipe=recipe.pipeline,
            pca_lighting=recipe.pca_lighting,
            pca_eigen=stats.eigen,
            input_context=context,
            seed=FLAGS.seed * 1000 + epoch,
            deterministic=FLAGS.deterministic,
            repeat=True,
            bad_records=bad_records,
            **common,
        )
        # Resuming mid-epoch: the epoch's order is fixed by its seed; skip what was seen.
        return dataset.skip(skip)

    def eval_dataset(context: tf.distribute.InputContext):
        return pipelines.build_dataset(
            source,
            FLAGS.eval_split,
            batch_size=context.get_per_replica_batch_size(recipe.batch_size),
            training=False,
            input_context=context,
            bad_records=bad_records,
            **common,
        )

    def report_bad_records(epoch: int, history) -> None:
        skipped = int(bad_records.value())
        if skipped:
            print(f"Epoch {epoch + 1}: skipped {skipped} unreadable images so far.", flush=True)

    def model_fn():
        if FLAGS.init_from:
            return transfer.transfer_model(FLAGS.init_from, source.num_classes, FLAGS.freeze_through)
        return overfeat_tf.build_model(model_name, **build_kwargs)

    try:
        trainer = Trainer(config, strategy, model_fn)
    except ValueError as e:  # an unknown --freeze_through layer names the valid ones
        raise FlagError(f"--freeze_through={FLAGS.freeze_through}: {e}") from e
    callbacks = [report_bad_records]
    if FLAGS.filter_grid_every_epoch and strategies.is_chief(strategy):
        filters_dir = os.path.join(model_dir, "filters")
        callbacks.append(filter_viz.filter_grid_callback(trainer.model, filters_dir))

    def on_epoch_end(epoch: int, history) -> None:
        for callback in callbacks:
            callback(epoch, history)

    metrics = trainer.fit(train_dataset, eval_dataset, on_epoch_end=on_epoch_end)
    if not strategies.is_chief(strategy):
        return 0
    print(
        f"\n{model_name} (width {width}) on {FLAGS.data}: validation top-1 error "
        f"{metrics.get('val_top1_error', float('nan')):.2f} %, top-5 error "
        f"{metrics.get('val_top5_error', float('nan')):.2f} %"
    )
    print(f"Checkpoints and metrics.json: {model_dir}")
    print(f"TensorBoard:                  tensorboard --logdir {model_dir}")
    if FLAGS.export:
        _export(model_dir)
    return 0


def _export(model_dir: str) -> None:
    from export import export_model_dir

    export_base = FLAGS.export_base or os.path.join(model_dir, "export")
    paths = export_model_dir(model_dir, export_base)
    for kind, path in paths.items():
        print(f"{kind + ':':<30}{path}")


def run() -> None:
    """Console-script entry point (`overfeat-train`)."""
    cli.run(main, "overfeat-train", (TrainingDiverged,))


if __name__ == "__main__":
    run()
