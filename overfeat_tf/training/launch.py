"""One training run as a library call: `launch.run(TrainSpec(...))`.

`overfeat-train`, the experiment runner and anything else that trains a classifier
describe the run as a `TrainSpec` (field names are `overfeat-train`'s flag names) and
call `run`: it checks the spec against the data and devices, writes `model.json`, builds
the model and its input pipelines, and trains with `Trainer` (resuming from the last
checkpoint of `model_dir`). Nothing is written before the spec is checked.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import keras
import tensorflow as tf

import overfeat_tf
import pipelines
from overfeat_tf import input_stats, run_dir, run_lock, transfer
from overfeat_tf.models import towers
from overfeat_tf.training import recipes, strategies
from overfeat_tf.training.trainer import TrainConfig, Trainer
from overfeat_tf.visualization import filters as filter_viz


class SpecError(ValueError):
    """A spec that cannot run; the message names the field as `--field=value`."""


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """Everything one classification run is made of; None: the recipe's or the default.

    Attributes mirror `overfeat-train`'s flags (see its `--help`): `data`/`data_dir` a
    `pipelines.open_source` spec; `model` a registry or variant name (default alexnet);
    `model_dir` default runs/<model>; `recipe` and the override fields change the paper's
    recipe (`recipes.Recipe`); `tower_devices` places AlexNet's towers one per device;
    `init_from` a trained run to transfer from, with layers up to `freeze_through` fixed.
    """

    data: str = "embedded"
    data_dir: str | None = None
    split: str = "train"
    eval_split: str = "validation"
    model: str = "alexnet"
    model_dir: str | None = None
    epochs: int | None = None
    max_steps: int | None = None
    steps_per_epoch: int | None = None
    batch_size: int | None = None
    width: float = 1.0
    recipe: str | None = None
    learning_rate: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    step_epochs: tuple[int, ...] | None = None
    step_factor: float | None = None
    max_filter_rms: float | None = None
    clip_norm: float | None = None
    init: str | None = None
    dropout: float | None = None
    strategy: str = "auto"
    tower_devices: tuple[str, ...] | None = None
    mixed_precision: str = "none"
    seed: int = 0
    deterministic: bool = False
    xla: str = "auto"
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    strict: bool = False
    pca_lighting: bool | None = None
    stats: str | None = None
    init_from: str | None = None
    freeze_through: str | None = None
    filter_grid_every_epoch: bool = False
    verbose: bool = True


@dataclasses.dataclass(frozen=True)
class RunResult:
    """A finished (or already finished) run: its directory, model and final metrics."""

    model_dir: str
    model_name: str
    width: float
    metrics: dict[str, Any]
    is_chief: bool


def resolve_recipe(spec: TrainSpec, model: str) -> recipes.Recipe:
    """The spec's recipe (or the model's), with every override field applied."""
    recipe = recipes.get_recipe(spec.recipe or overfeat_tf.model_info(model).recipe)
    overrides = {
        field: getattr(spec, field)
        for field in (
            "learning_rate",
            "schedule",
            "step_factor",
            "dropout",
            "init",
            "batch_size",
            "epochs",
            "step_epochs",
            "pca_lighting",
        )
    }
    overrides.update(momentum=spec.momentum, weight_decay=spec.weight_decay)
    for cap in ("max_filter_rms", "clip_norm"):  # 0 turns a cap off
        if getattr(spec, cap) is not None:
            overrides[cap] = getattr(spec, cap) or None
    return dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})


def _print_data_notes(source, recipe_name: str, split: str) -> None:
    """One line each: how validation was held out, and a paper recipe on a small set."""
    if source.validation_note:
        print(f"overfeat-train: {source.validation_note}", flush=True)
    examples = source.num_examples(split)
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


def _steps_per_epoch(spec: TrainSpec, recipe: recipes.Recipe, source, strategy) -> int:
    """Checks the spec against the data and strategy; returns the steps per epoch."""
    if recipe.batch_size % strategy.num_replicas_in_sync:
        raise SpecError(
            f"--batch_size={recipe.batch_size} is not divisible by the "
            f"{strategy.num_replicas_in_sync} replicas of --strategy={spec.strategy}"
        )
    try:
        train_examples = source.num_examples(spec.split)
        source.num_examples(spec.eval_split)
    except (ValueError, FileNotFoundError) as e:
        raise SpecError(f"--data={spec.data}: {e}") from e
    if spec.steps_per_epoch is None and train_examples is None:
        raise SpecError(f"--steps_per_epoch is needed: {spec.data} does not know its size")
    steps = spec.steps_per_epoch or train_examples // recipe.batch_size
    if steps < 1:
        raise SpecError(
            f"--batch_size={recipe.batch_size} exceeds the {train_examples} training examples"
        )
    return steps


def _split_host_cpu(devices: tuple[str, ...]) -> None:
    """Makes the host CPU into as many logical devices as `devices` names CPUs
    (/CPU:0,/CPU:1: two), to try tower placement on a CPU machine; they share its cores."""
    indices = [
        device.device_index or 0
        for device in map(tf.DeviceSpec.from_string, devices)
        if (device.device_type or "").upper() == "CPU"
    ]
    if indices and max(indices) > 0:
        cpu = tf.config.list_physical_devices("CPU")[0]
        count = max(indices) + 1
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count
        )


def _tower_strategy(spec: TrainSpec) -> tf.distribute.Strategy:
    """One replica, on the first of `tower_devices` (checked against the other fields)."""
    if spec.strategy not in ("auto", "one_device"):
        raise SpecError(
            "--tower_devices runs one replica; it cannot be combined with "
            f"--strategy={spec.strategy}"
        )
    if spec.xla == "on":
        raise SpecError("--xla=on compiles a step for one device; it cannot run --tower_devices")
    if spec.init_from:
        raise SpecError("--tower_devices cannot be combined with --init_from")
    try:
        _split_host_cpu(spec.tower_devices)
        missing = towers.missing_devices(list(spec.tower_devices))
    except ValueError as e:  # not a device name
        raise SpecError(f"--tower_devices={','.join(spec.tower_devices)}: {e}") from e
    if missing:
        present = ", ".join(d.name for d in tf.config.list_logical_devices())
        raise SpecError(f"--tower_devices: no {', '.join(missing)} here; devices: {present}")
    return tf.distribute.OneDeviceStrategy(spec.tower_devices[0])


def _strategy(spec: TrainSpec) -> tf.distribute.Strategy:
    if spec.tower_devices:
        return _tower_strategy(spec)
    try:
        return strategies.make_strategy(spec.strategy)
    except ValueError as e:
        raise SpecError(f"--strategy={spec.strategy}: {e}") from e


def _model(spec: TrainSpec, source) -> tuple[str, dict[str, Any], recipes.Recipe]:
    """The model's name, `build_model` keyword arguments and resolved recipe."""
    if spec.init_from:
        # Transfer (ZFNet section 5.2): the trained run's architecture and input
        # normalisation, this data set's classes.
        try:
            model_name, build_kwargs = transfer.transfer_build_kwargs(
                spec.init_from, source.num_classes
            )
        except FileNotFoundError as e:
            raise SpecError(f"--init_from={spec.init_from}: {e}") from e
        return model_name, build_kwargs, resolve_recipe(spec, model_name)
    model_name = spec.model
    recipe = resolve_recipe(spec, model_name)
    build_kwargs = {
        "num_classes": source.num_classes,
        "width": spec.width,
        "dropout": recipe.dropout,
        "init": recipe.init,
    }
    if spec.tower_devices:
        towers_needed = overfeat_tf.model_info(model_name).tower_count
        if len(spec.tower_devices) != towers_needed:
            raise SpecError(
                f"--tower_devices needs one device per tower; {model_name} has "
                f"{towers_needed} tower(s), received {len(spec.tower_devices)} devices"
            )
        build_kwargs["tower_devices"] = list(spec.tower_devices)
    return model_name, build_kwargs, recipe


def train_config(
    spec: TrainSpec,
    recipe: recipes.Recipe,
    model_dir: str,
    steps_per_epoch: int,
    normalization: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,) * 3, (1.0,) * 3),
) -> TrainConfig:
    """The `Trainer` configuration of `spec` with its resolved `recipe`; `normalization`
    (mean, std) only shows the input images in TensorBoard."""
    mean, std = normalization
    return TrainConfig(
        model_dir=model_dir,
        recipe=recipe,
        steps_per_epoch=steps_per_epoch,
        epochs=recipe.epochs,
        batch_size=recipe.batch_size,
        mean=mean,
        std=std,
        max_steps=spec.max_steps,
        checkpoint_every=spec.checkpoint_every,
        keep_checkpoints=spec.keep_checkpoints,
        # XLA compiles a step for one device: tower placement runs plain.
        xla="off" if spec.tower_devices else spec.xla,
        verbose=spec.verbose,
    )


def run(spec: TrainSpec) -> RunResult:
    """Trains (or resumes) the run `spec` describes; returns where it went and its metrics.

    Raises `SpecError` for a spec that cannot run (before anything is written) and
    `TrainingDiverged` on a non-finite loss.
    """
    if spec.freeze_through and not spec.init_from:
        raise SpecError("--freeze_through needs --init_from")
    # Before the data source opens (the embedded set is generated on first use).
    for field in ("epochs", "batch_size", "steps_per_epoch", "max_steps", "checkpoint_every"):
        value = getattr(spec, field)
        if value is not None and value < 1:
            raise SpecError(f"--{field} must be >= 1; received {value}")
    if spec.width <= 0:
        raise SpecError(f"--width must be > 0; received {spec.width}")
    try:
        overfeat_tf.model_info(spec.model)  # a name or a variant name
    except ValueError as e:
        raise SpecError(f"--model={spec.model}: {e}") from e
    # First: MultiWorkerMirroredStrategy must start before TensorFlow's runtime does.
    strategy = _strategy(spec)
    try:
        source = pipelines.open_source(spec.data, spec.data_dir)
    except (ValueError, FileNotFoundError) as e:
        raise SpecError(f"--data={spec.data}: {e}") from e
    if source.num_classes < 2:
        raise SpecError(
            f"--data={spec.data}: {source.num_classes} class(es) "
            f"{source.class_names}; a classifier needs at least 2"
        )
    model_name, build_kwargs, recipe = _model(spec, source)
    info = overfeat_tf.model_info(model_name)
    try:  # transfer keeps the source run's statistics unless `stats` is given
        if spec.init_from and not spec.stats:
            stats = input_stats.of_run(spec.init_from, run_dir.read_config(spec.init_from))
        else:
            stats = input_stats.resolve(model_name, build_kwargs.get("init", "paper"), spec.stats)
    except (OSError, ValueError) as e:
        raise SpecError(f"--stats={spec.stats}: {e}") from e
    mean, std = stats.mean, stats.std
    model_dir = spec.model_dir or os.path.join("runs", model_name)
    if spec.mixed_precision != "none":
        keras.mixed_precision.set_global_policy(spec.mixed_precision)
    keras.utils.set_random_seed(spec.seed)
    steps_per_epoch = _steps_per_epoch(spec, recipe, source, strategy)
    described = dict(
        name=model_name, build_kwargs=build_kwargs, class_names=source.class_names, data=spec.data
    )
    try:
        new_run = run_dir.check_compatible(model_dir, **described)
    except ValueError as e:
        raise SpecError(f"--model_dir={model_dir}: {e}") from e
    if strategies.is_chief(strategy):
        _print_data_notes(
            source, spec.recipe or overfeat_tf.model_info(model_name).recipe, spec.split
        )
        try:
            run_lock.acquire(model_dir)  # Held until the process exits.
        except OSError as e:
            raise SpecError(f"--model_dir={model_dir}: {e.strerror or e}") from e
        if new_run:
            run_dir.write_config(model_dir, **described, stats=stats)
    config = train_config(spec, recipe, model_dir, steps_per_epoch, (mean, std))
    bad_records = {split: pipelines.BadRecordCounter() for split in ("train", "validation")}
    common = dict(crop_size=info.input_size, mean=mean, std=std, strict=spec.strict)

    def train_dataset(epoch: int, skip: int, context: tf.distribute.InputContext):
        dataset = pipelines.build_dataset(
            source,
            spec.split,
            batch_size=context.get_per_replica_batch_size(recipe.batch_size),
            training=True,
            augmentation=recipe.pipeline,
            pca_lighting=recipe.pca_lighting,
            pca_eigen=stats.eigen,
            input_context=context,
            seed=spec.seed * 1000 + epoch,
            deterministic=spec.deterministic,
            repeat=True,
            bad_records=bad_records["train"],
            **common,
        )
        # Resuming mid-epoch: the epoch's order is fixed by its seed; skip what was seen.
        return dataset.skip(skip)

    def eval_dataset(context: tf.distribute.InputContext):
        return pipelines.build_dataset(
            source,
            spec.eval_split,
            batch_size=context.get_per_replica_batch_size(recipe.batch_size),
            training=False,
            input_context=context,
            bad_records=bad_records["validation"],
            **common,
        )

    def model_fn():
        if spec.init_from:
            return transfer.transfer_model(spec.init_from, source.num_classes, spec.freeze_through)
        return overfeat_tf.build_model(model_name, **build_kwargs)

    try:
        trainer = Trainer(config, strategy, model_fn)
    except ValueError as e:  # an unknown freeze_through layer names the valid ones
        if not spec.freeze_through:
            raise
        raise SpecError(f"--freeze_through={spec.freeze_through}: {e}") from e
    callbacks = []
    if spec.filter_grid_every_epoch and strategies.is_chief(strategy):
        filters_dir = os.path.join(model_dir, "filters")
        callbacks.append(filter_viz.filter_grid_callback(trainer.model, filters_dir))

    def on_epoch_end(epoch: int, history) -> None:
        skipped = {split: counter.value() for split, counter in bad_records.items()}
        if any(skipped.values()):
            counts = ", ".join(f"{n} in {split}" for split, n in skipped.items())
            print(f"Epoch {epoch + 1}: unreadable images skipped so far: {counts}.", flush=True)
        for callback in callbacks:
            callback(epoch, history)

    metrics = trainer.fit(train_dataset, eval_dataset, on_epoch_end=on_epoch_end)
    return RunResult(
        model_dir=model_dir,
        model_name=model_name,
        width=build_kwargs["width"],
        metrics=metrics,
        is_chief=strategies.is_chief(strategy),
    )
