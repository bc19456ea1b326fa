"""Runs an experiment table row by row, resumably.

Layout under `out_dir`:
- `runs/<run>[-seed<k>]/`: one training run directory per trained model (member k of an
  ensemble is the run trained with seed `seed + k`; member 0 is the run itself), with
  `train.log` and `experiment.json` (its `TrainSpec` and, once finished, its seconds).
- `rows/<table>/<row>/result.json`: a finished row's measured figures.

Tables run into one `out_dir` share the runs they train with the same spec.

Each run trains in this process with `overfeat_tf.training.launch.run`, its output going
to its `train.log`; an interrupted run resumes from its last checkpoint when the table is
run again; a row with a `result.json` is not run again. Rows are evaluated here on the validation split, with `overfeat_tf.evaluation.ensemble`'s
evaluators (one model is an ensemble of one): `overfeat_tf.evaluation`'s centre and
ten-view evaluators, `DenseEvaluator` for OverFeat's rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras

import pipelines
from overfeat_tf import evaluation
from overfeat_tf.evaluation import dense, ensemble
from overfeat_tf.experiments import shared_dense
from overfeat_tf.experiments.tables import DENSE, Row, Run, Table
from overfeat_tf.run_dir import write_json
from overfeat_tf.training import launch
from overfeat_tf.training.trainer import TrainingDiverged

RESULT_FILE = "result.json"
RUN_FILE = "experiment.json"  # in a run directory: its spec and training seconds


class ExperimentError(RuntimeError):
    """A row that cannot run (failed training, changed settings); one line."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """What every row of a table shares.

    Attributes:
      data, data_dir: the pipeline source (`pipelines.open_source`).
      train: `launch.TrainSpec` fields given to every run: the training budget
        (e.g. {"epochs": 6, "width": 0.0625}).
      seed: seed of each run; ensemble member k uses seed + k.
      ensemble_size: members of an ensemble row.
      eval_batch_size: batch of the centre and ten-view evaluations (dense uses 1).
      max_examples: evaluate at most this many validation images per row (None: all).
    """

    data: str = "embedded"
    data_dir: str | None = None
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seed: int = 0
    ensemble_size: int = 3
    eval_batch_size: int = 32
    max_examples: int | None = None

    def fingerprint(self) -> dict[str, Any]:
        """What a finished row must have been made with to be reused."""
        return {
            "data": self.data,
            "train": _as_json(dict(sorted(self.train.items()))),
            "seed": self.seed,
            "ensemble_size": self.ensemble_size,
            "max_examples": self.max_examples,
        }


def _as_json(value: Any) -> Any:
    """`value` as it reads back from JSON (tuples become lists), to compare with a file."""
    return json.loads(json.dumps(value))


def _read_json(path: str) -> dict[str, Any] | None:
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


class TableRunner:
    """Trains and evaluates the rows of `table` under `out_dir`; see the module doc."""

    def __init__(
        self,
        table: Table,
        settings: Settings,
        out_dir: str,
        log: Callable[[str], None] = print,
    ) -> None:
        self.table = table
        self.settings = settings
        self.out_dir = out_dir
        self.log = log
        self._source = pipelines.open_source(settings.data, settings.data_dir)
        self._source.num_examples("validation")  # missing data fails here, not mid-table
        self._selected: set[str] = set()  # rows this `run` call may evaluate
        self._shared: dict[str, dict[str, float]] = {}  # rows evaluated with an earlier one

    # ---- layout -----------------------------------------------------------------------

    def members(self, row: Row) -> list[str]:
        """Run directories (relative to `out_dir`) of the models a row evaluates."""
        count = self.settings.ensemble_size if row.ensemble else 1
        return [
            os.path.join("runs", row.run.name + (f"-seed{k}" if k else "")) for k in range(count)
        ]

    def row_dir(self, row: Row) -> str:
        return os.path.join(self.out_dir, "rows", self.table.name, row.name)

    # ---- running ----------------------------------------------------------------------

    def run(self, rows: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Runs every row without a result (or only `rows`); returns all rows' results
        that exist, in table order."""
        self.table.check_rows(rows or ())
        self._selected = {row.name for row in self.table.rows if rows is None or row.name in rows}
        results = []
        seen: set[str] = set()  # run directories of earlier rows
        for row in self.table.rows:
            owned = [m for m in self.members(row) if m not in seen]
            seen.update(owned)
            result = self._finished(row)
            if result is None and (rows is None or row.name in rows):
                result = self._run_row(row, owned)
            if result is not None:
                results.append(result)
        return results

    def _finished(self, row: Row) -> dict[str, Any] | None:
        """The row's stored result; an error when it was made with other settings."""
        path = os.path.join(self.row_dir(row), RESULT_FILE)
        result = _read_json(path)
        if result is not None and result["settings"] != self.settings.fingerprint():
            raise ExperimentError(
                f"{path} was made with other settings ({result['settings']}); "
                "give a new --out_dir or delete it"
            )
        return result

    def _run_row(self, row: Row, owned: list[str]) -> dict[str, Any]:
        self.log(f"[{self.table.name}] {row.name}: {row.label}")
        members = self.members(row)
        runs = [self._train(row.run, k, member) for k, member in enumerate(members)]
        start = time.perf_counter()
        metrics = self._evaluate(row, [os.path.join(self.out_dir, m) for m in members])
        result = {
            "row": row.name,
            "label": row.label,
            "evaluation": row.evaluation.describe(),
            "models": members,
            "top1_error": metrics[evaluation.TOP1],
            "top5_error": metrics[evaluation.TOP5],
            "examples": metrics["examples"],
            # The last epoch's running error on augmented training batches.
            "train_top1_error": None if row.ensemble else runs[0].get("train_top1_error"),
            # Training is counted in the first row that uses a model.
            "train_seconds": sum(r["seconds"] for m, r in zip(members, runs) if m in owned),
            "eval_seconds": time.perf_counter() - start,
            "load_average": list(os.getloadavg()),
            "settings": self.settings.fingerprint(),
        }
        os.makedirs(self.row_dir(row), exist_ok=True)
        write_json(os.path.join(self.row_dir(row), RESULT_FILE), result)
        self.log(
            f"[{self.table.name}] {row.name}: top-1 / top-5 error "
            f"{result['top1_error']:.2f} / {result['top5_error']:.2f} %"
        )
        return result

    # ---- training ---------------------------------------------------------------------

    def train_spec(self, run: Run, member: int, run_dir: str) -> launch.TrainSpec:
        """The training spec of a run's member, training into `run_dir`."""
        s = self.settings
        fields = {
            "model": run.model_name,
            "model_dir": run_dir,
            "data": s.data,
            "data_dir": s.data_dir,
            "seed": s.seed + member,
            **s.train,
            **run.train,
        }
        return launch.TrainSpec(**fields)

    def _train(self, run: Run, member: int, relative_dir: str) -> dict[str, Any]:
        """Trains one model unless it is trained; returns its experiment.json record
        (the spec, seconds, and the final training top-1 error)."""
        run_dir = os.path.join(self.out_dir, relative_dir)
        # Recorded with the directory relative to out_dir, so out_dir can be moved.
        spec = _as_json(dataclasses.asdict(self.train_spec(run, member, relative_dir)))
        record_path = os.path.join(run_dir, RUN_FILE)
        record = _read_json(record_path)
        if record is not None and record["spec"] != spec:
            raise ExperimentError(
                f"{run_dir} was trained with another spec ({record['spec']}); "
                "give a new --out_dir or delete it"
            )
        if record is not None and record.get("seconds") is not None:
            return record
        os.makedirs(run_dir, exist_ok=True)
        write_json(record_path, {"spec": spec, "seconds": None})
        log_path = os.path.join(run_dir, "train.log")
        self.log(f"  training {relative_dir} (log: {log_path})")
        start = time.perf_counter()
        with open(log_path, "a") as log_file, contextlib.redirect_stdout(log_file):
            try:
                launch.run(self.train_spec(run, member, run_dir))
            except (launch.SpecError, TrainingDiverged) as e:
                raise ExperimentError(f"training {run_dir} failed: {e} (log: {log_path})") from e
            finally:
                keras.backend.clear_session()
                keras.mixed_precision.set_global_policy("float32")
            print(f"Checkpoints and metrics.json: {run_dir}", flush=True)
        seconds = time.perf_counter() - start
        metrics = _read_json(os.path.join(run_dir, "metrics.json")) or {}
        record = {
            "spec": spec,
            "seconds": seconds,
            "train_top1_error": metrics.get("top1_error"),
            "val_top1_error": metrics.get("val_top1_error"),
        }
        write_json(record_path, record)
        self.log(f"  trained {relative_dir} in {seconds:.0f} s")
        return record

    # ---- evaluation -------------------------------------------------------------------

    def _evaluate(self, row: Row, run_dirs: list[str]) -> dict[str, float]:
        """Top-1 / top-5 error of the row's model (an ensemble of one) or ensemble. The
        dense rows of one model waiting to run are evaluated together, in one pass over
        the images with shared score maps (`shared_dense`)."""
        if row.name in self._shared:
            return self._shared.pop(row.name)
        if row.evaluation.mode == DENSE and not row.ensemble:
            return self._evaluate_dense_rows(row, run_dirs)
        models, configs = ensemble.restore_ensemble(run_dirs)
        spec = row.evaluation
        scales = None
        if spec.scales is not None:  # the paper's scale numbers, 1-based
            scales = [dense.default_scales(models[0])[i - 1] for i in spec.scales]
        evaluator = ensemble.ensemble_evaluator(
            models,
            configs,
            spec.mode,
            scales=scales,
            fine_stride=spec.fine_stride,
            flips=spec.flips,
        )
        full = evaluator.input_mode == "full"
        batches = pipelines.build_dataset(
            self._source,
            "validation",
            batch_size=1 if full else self.settings.eval_batch_size,
            training=False,
            crop_size=configs[0]["input_size"],
            mean=configs[0]["mean"],
            std=configs[0]["std"],
            eval_mode=evaluator.input_mode,
        )
        metrics = evaluation.evaluate(
            evaluator,
            batches,
            num_classes=self._source.num_classes,
            max_examples=self.settings.max_examples,
        )
        keras.backend.clear_session()
        return metrics

    def _evaluate_dense_rows(self, row: Row, run_dirs: list[str]) -> dict[str, float]:
        """`row` and the table's other unfinished dense rows of the same single model, in
        one pass; returns `row`'s metrics and keeps the others' for their turn."""
        group = [
            other
            for other in self.table.rows
            if other.name == row.name
            or (
                other.name in self._selected
                and other.evaluation.mode == DENSE
                and not other.ensemble
                and self.members(other) == self.members(row)
                and self._finished(other) is None
            )
        ]
        models, configs = ensemble.restore_ensemble(run_dirs)
        model, config = models[0], configs[0]
        every = dense.default_scales(model)
        scales = {
            other.name: every
            if other.evaluation.scales is None
            else [every[i - 1] for i in other.evaluation.scales]
            for other in group
        }
        shared = shared_dense.SharedDenseViews(
            model,
            [s for other in group for s in scales[other.name]],
            flips=any(other.evaluation.flips for other in group),
        )
        evaluators = {
            other.name: shared.evaluation(
                scales[other.name],
                other.evaluation.fine_stride,
                other.evaluation.flips,
                other.evaluation.describe(),
            )
            for other in group
        }
        batches = pipelines.build_dataset(
            self._source,
            "validation",
            batch_size=1,
            training=False,
            crop_size=config["input_size"],
            mean=config["mean"],
            std=config["std"],
            eval_mode="full",
        )
        metrics = evaluation.evaluate_many(
            evaluators,
            batches,
            num_classes=self._source.num_classes,
            max_examples=self.settings.max_examples,
        )
        keras.backend.clear_session()
        if len(group) > 1:
            self.log(f"  evaluated {', '.join(other.name for other in group)} together")
        self._shared.update({name: m for name, m in metrics.items() if name != row.name})
        return metrics[row.name]
