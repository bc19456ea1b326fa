r"""Runs one of the papers' experiment tables: `overfeat-experiment` /
`python -m overfeat_tf.bin.experiment`.

Trains every model a table needs (one `overfeat-train` run each, with the same budget),
evaluates every row, and writes `<out_dir>/<table>.md` and `<out_dir>/<table>.json`:
measured top-1 / top-5 error per row beside the paper's figure, and the time each row
took. Tables: alexnet_ablations, overfeat_table2, zfnet_variants. Tables run into one
--out_dir share the models they both train with the same command (AlexNet's base net).

At small scale on the embedded data set:

    overfeat-experiment --table=alexnet_ablations --width=0.0625 --epochs=6

On ImageNet with the papers' budgets, every local GPU per run:

    overfeat-experiment --table=overfeat_table2 --data=tfrecord:/data/imagenet \
        --out_dir=runs/overfeat_table2 --ensemble_size=7

Run the same command again after an interruption: finished rows are kept, and the
interrupted training resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import shlex
import sys

from absl import flags

# overfeat_tf first: it turns oneDNN on before TensorFlow loads (see runtime.py).
from overfeat_tf import cli, runtime
from overfeat_tf.bin import train_flags
from overfeat_tf.cli import FlagError
from overfeat_tf import flags_common
from overfeat_tf.experiments import report, runner, tables
from overfeat_tf.training import launch, recipes

# overfeat-train's flags given to every run when set (the training budget).
BUDGET_FLAGS = (
    "recipe",
    "epochs",
    "max_steps",
    "steps_per_epoch",
    "batch_size",
    "width",
    "learning_rate",
    "step_epochs",
    "init",
    "dropout",
    "stats",
)

FLAGS = flags.FLAGS
flags.DEFINE_string("table", None, f"The table to run: {', '.join(tables.TABLES)}.")
flags.DEFINE_string("out_dir", None, "Runs, row results and the table (default runs/<table>).")
flags.DEFINE_list("rows", None, "Run only these rows (default: all); the table shows all.")
flags_common.define_data()
flags_common.define_data_dir()
flags.DEFINE_enum(
    "recipe",
    None,
    list(recipes.RECIPES),
    "Training recipe of every run (default: each model's paper recipe).",
)
flags_common.define_stats()
flags.DEFINE_integer(
    "epochs", None, "Epochs of every run (default: overfeat-train's).", lower_bound=1
)
flags_common.define_max_steps("Stop every run after this many steps.", lower_bound=1)
flags.DEFINE_integer("steps_per_epoch", None, "Steps per epoch of every run.", lower_bound=1)
flags_common.define_batch_size(None, "Global batch of every run.", lower_bound=1)
flags.DEFINE_float("width", None, "Channel multiplier of every model.", lower_bound=0.0)
flags.DEFINE_float("learning_rate", None, "Initial learning rate of every run.")
flags.DEFINE_list("step_epochs", None, "Epochs at which the step schedule divides the rate.")
flags.DEFINE_enum("init", None, ["paper", "he"], "Weight initialisation of every model.")
flags.DEFINE_float("dropout", None, "Dropout rate of every model.")
flags.DEFINE_list(
    "train_args", [], "Further overfeat-train flags for every run, e.g. --strategy=mirrored."
)
flags_common.define_seed("Seed of every run; ensemble member k uses seed + k.")
flags.DEFINE_integer(
    "ensemble_size", 3, "Models in an ensemble row (papers: 5 and 7).", lower_bound=2
)
flags.DEFINE_integer(
    "eval_batch_size", 32, "Batch of centre and ten-view evaluation.", lower_bound=1
)
flags.DEFINE_integer(
    "max_examples", None, "Evaluate each row on at most this many images.", lower_bound=1
)


def _train_args() -> list[str]:
    """The overfeat-train flags of every run: the budget flags set, then --train_args."""
    budget = []
    for name in BUDGET_FLAGS:
        value = getattr(FLAGS, name)
        if value is not None:
            budget.append(f"--{name}={','.join(value) if isinstance(value, list) else value}")
    return budget + FLAGS.train_args


def _settings(train_args: list[str]) -> runner.Settings:
    """Parses `train_args` with overfeat-train's own flag definitions; the spec fields they
    change become every run's."""
    train_flag_values = flags.FlagValues()
    train_flags.define_flags(train_flag_values)
    try:
        train_flag_values(["overfeat-train", *train_args])
    except flags.Error as e:
        raise FlagError(f"--train_args={','.join(FLAGS.train_args)}: {e}") from e
    spec = dataclasses.asdict(train_flags.spec_from_flags(train_flag_values))
    defaults = dataclasses.asdict(launch.TrainSpec())
    return runner.Settings(
        data=FLAGS.data,
        data_dir=FLAGS.data_dir,
        train={k: v for k, v in spec.items() if v != defaults[k]},
        seed=FLAGS.seed,
        ensemble_size=FLAGS.ensemble_size,
        eval_batch_size=FLAGS.eval_batch_size,
        max_examples=FLAGS.max_examples,
    )


def _about(settings: runner.Settings, train_args: list[str], results: list[dict]) -> dict:
    """The command, budget and machine, for the JSON and the markdown header."""
    loads = [result["load_average"][0] for result in results]
    return {
        "command": shlex.join(["overfeat-experiment", *sys.argv[1:]]),
        "settings": settings.fingerprint(),
        "train_args": train_args,
        "finished": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": runtime.cpu_model(),
        "cpu_count": os.cpu_count(),
        "tensorflow": importlib.metadata.version("tensorflow"),
        "load_average_1min": [min(loads), max(loads)] if loads else None,
    }


def _header(about: dict, results: list[dict]) -> str:
    examples = sorted({result["examples"] for result in results})
    load = about["load_average_1min"]
    lines = [
        f"Command: `{about['command']}`",
        "",
        f"Data: `{about['settings']['data']}`, validation split"
        + (f" ({', '.join(map(str, examples))} images per row)" if examples else "")
        + f"; every run: `overfeat-train {' '.join(about['train_args'])}`.",
        f"Machine: {about['cpu']}, {about['cpu_count']} cores, TensorFlow "
        f"{about['tensorflow']}; finished {about['finished']}"
        + (f"; 1-minute load average {load[0]:.1f}-{load[1]:.1f} at row ends." if load else "."),
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.table is None:
        raise FlagError(f"--table is required: one of {', '.join(tables.TABLES)}")
    try:
        table = tables.get_table(FLAGS.table)
    except ValueError as e:
        raise FlagError(f"--table={FLAGS.table}: {e}") from e
    try:
        table.check_rows(FLAGS.rows or ())
    except ValueError as e:
        raise FlagError(f"--rows={','.join(FLAGS.rows)}: {e}") from e
    train_args = _train_args()
    settings = _settings(train_args)
    out_dir = FLAGS.out_dir or os.path.join("runs", table.name)
    try:
        table_runner = runner.TableRunner(table, settings, out_dir)
    except (ValueError, FileNotFoundError) as e:
        raise FlagError(f"--data={FLAGS.data}: {e}") from e
    results = table_runner.run(FLAGS.rows)
    os.makedirs(out_dir, exist_ok=True)
    about = _about(settings, train_args, results)
    text = report.markdown(table, results, _header(about, results))
    path = os.path.join(out_dir, table.name)
    with open(path + ".md", "w") as f:
        f.write(text)
    with open(path + ".json", "w") as f:
        json.dump(report.report_json(table, results, about), f, indent=2)
    print("\n" + text)
    print(f"Table: {path}.md and {path}.json")
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-experiment`)."""
    cli.run(main, "overfeat-experiment", (runner.ExperimentError,))


if __name__ == "__main__":
    run()
