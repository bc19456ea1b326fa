"""Experiment tables: definitions, the markdown / JSON report, and the binary end to end
(a finished row is not run again; bad flags are one line)."""

import dataclasses
import json
import os

import pytest

import overfeat_tf
from overfeat_tf.evaluation import dense
from overfeat_tf.experiments import report, tables
from overfeat_tf.experiments.runner import Settings, TableRunner
from overfeat_tf.training import launch
from tests.conftest import run_module


def _all_rows():
    return [(table, row) for table in tables.TABLES.values() for row in table.rows]


@pytest.mark.parametrize("model_name", sorted({row.run.model_name for _, row in _all_rows()}))
def test_every_row_builds_its_model(model_name):
    model = overfeat_tf.build_model(model_name, num_classes=12, width=0.0625)
    assert model.name == model_name
    assert model.output_shape == (None, 12)


@pytest.mark.parametrize("table,row", _all_rows(), ids=lambda x: getattr(x, "name", ""))
def test_rows_are_well_formed(table, row):
    assert row.evaluation.mode in (tables.CENTER, tables.TEN_VIEW, tables.DENSE)
    if row.evaluation.scales is not None:
        # Scale numbers are the paper's 1..6 (OverFeat Table 5's six sizes).
        assert all(1 <= s <= len(dense.default_scales(row.run.base)) for s in row.evaluation.scales)
    if row.paper is not None:
        assert row.paper.source
        if row.paper.delta:
            assert row.reference is not None, "a difference needs the row it is taken from"
    assert set(row.run.train) <= set(launch.TrainSpec.__dataclass_fields__)


def test_a_bad_table_definition_is_an_error():
    run = tables.Run("a", "alexnet")
    with pytest.raises(ValueError, match="repeats a row name"):
        tables.Table("t", "T", (tables.Row("x", "x", run), tables.Row("x", "y", run)))
    with pytest.raises(ValueError, match="unknown row 'nope'"):
        tables.Table("t", "T", (tables.Row("x", "x", run, reference="nope"),))
    with pytest.raises(ValueError, match="two different runs named 'a'"):
        tables.Table(
            "t", "T", (tables.Row("x", "x", run), tables.Row("y", "y", tables.Run("a", "zfnet")))
        )
    with pytest.raises(ValueError, match="Unknown table 'nope'; valid: alexnet_ablations"):
        tables.get_table("nope")


def test_overfeat_table2_paper_differences():
    # Sermanet et al. 2014, Table 2: fast, 6 scales fine 38.12 / 16.27 against scale 1
    # coarse 39.28 / 17.12; 7 fast models 35.10 / 13.86 against one, 4 scales 38.57 / 16.39.
    table = tables.get_table("overfeat_table2")
    six = report.report_json(table, [], {})["rows"]
    by_name = {row["row"]: row for row in six}
    assert by_name["fast_6scales_fine"]["paper_delta"] == pytest.approx([-1.16, -0.85])
    assert by_name["fast_ensemble"]["paper_delta"] == pytest.approx([-3.47, -2.53])


def _result(row, top1, top5, train=None):
    return {
        "row": row,
        "top1_error": top1,
        "top5_error": top5,
        "train_top1_error": train,
        "train_seconds": 60.0,
        "eval_seconds": 2.0,
        "examples": 16,
    }


def test_markdown_sets_measured_beside_the_paper():
    table = tables.get_table("alexnet_ablations")
    results = [
        _result("two_towers", 30.0, 5.0),
        _result("no_lrn", 32.5, 6.0),
        _result("no_pca_lighting", 29.0, 5.5),
    ]
    text = report.markdown(table, results, "Command: `x`")
    lines = {line.split("`")[1]: line for line in text.splitlines() if line.startswith("| `")}
    # AlexNet section 3.3: LRN lowers the errors by 1.4 and 1.2 points.
    assert "32.5 / 6.0 | +2.5 / +1.0 | — | +1.4 / +1.2 | two_towers" in lines["no_lrn"]
    # Section 4.1: PCA lighting lowers top-1 error by over 1 point (no top-5 figure).
    assert "over +1.0 / —" in lines["no_pca_lighting"]
    assert "| 40.70 / 18.20 |" in lines["two_towers"]  # section 6, one CNN
    assert "not run" in lines["one_tower"]
    assert "paper's top-1 / top-5 err %" in text and "Command: `x`" in text


def _experiment(env, *flags):
    return run_module("overfeat_tf.bin.experiment", *flags, env=env)


def _mtimes(out_dir):
    paths = [
        os.path.join(root, name)
        for root, _, names in os.walk(out_dir)
        for name in names
        if name in ("experiment.json", "result.json", "train.log")
    ]
    return {path: os.stat(path).st_mtime_ns for path in paths}


# Slow: trains in a subprocess; test_an_interrupted_run_is_trained_again runs the runner in
# process in the fast tier.
@pytest.mark.slow
def test_two_rows_end_to_end_then_a_rerun_skips_them(tiny_data, tmp_path, subprocess_env):
    out_dir = str(tmp_path / "table2")
    # Three rows of OverFeat Table 2 that share one trained model; the two dense ones
    # also share their score maps.
    flags = [
        "--table=overfeat_table2",
        "--rows=fast_scale1_coarse,fast_4scales_fine,fast_10view",
        f"--data=tfrecord:{tiny_data}",
        f"--out_dir={out_dir}",
        "--width=0.0625",
        "--batch_size=8",
        "--max_steps=2",
        "--init=he",
    ]
    first = _experiment(subprocess_env, *flags)
    assert first.returncode == 0, first.stderr[-3000:]
    assert first.stdout.count("training runs/fast") == 1  # one model for all rows
    assert "evaluated fast_scale1_coarse, fast_4scales_fine together" in first.stdout

    with open(os.path.join(out_dir, "overfeat_table2.json")) as f:
        rows = {row["row"]: row for row in json.load(f)["rows"]}
    for name in ("fast_scale1_coarse", "fast_4scales_fine", "fast_10view"):
        measured = rows[name]["measured"]
        assert 0 <= measured["top1_error"] <= 100 and measured["examples"] == 16
    assert rows["fast_scale1_coarse"]["paper"]["top1"] == 39.28  # Sermanet et al., Table 2
    assert rows["fast_scale1_coarse"]["measured"]["train_seconds"] > 0
    assert rows["fast_10view"]["measured"]["train_seconds"] == 0  # the model is reused
    assert rows["fast_scale1_fine"]["measured"] is None  # not asked for
    with open(os.path.join(out_dir, "overfeat_table2.md")) as f:
        text = f.read()
    assert "| 39.28 / 17.12 |" in text and "paper's top-1 / top-5 err %" in text
    assert "--rows=fast_scale1_coarse,fast_4scales_fine,fast_10view" in text  # its command

    before = _mtimes(out_dir)
    second = _experiment(subprocess_env, *flags)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "training" not in second.stdout and "top-1 / top-5 error" not in second.stdout
    assert _mtimes(out_dir) == before  # nothing retrained or re-evaluated
    with open(os.path.join(out_dir, "runs", "fast", "train.log")) as f:
        assert f.read().count("Checkpoints and metrics.json") == 1

    # Another budget in the same directory: one line, nothing overwritten.
    changed = _experiment(subprocess_env, *flags[:-2], "--max_steps=3", "--init=he")
    assert changed.returncode != 0
    assert changed.stderr.strip().splitlines()[-1].startswith("overfeat-experiment: ")
    assert "other settings" in changed.stderr and "Traceback" not in changed.stderr
    assert _mtimes(out_dir) == before


def test_an_interrupted_run_is_trained_again(tiny_data, tmp_path):
    # A run whose training did not finish (no seconds recorded) is handed back to
    # training, which resumes from its checkpoint; a finished one is not.
    table = tables.Table("t", "T", (tables.Row("a", "a", tables.Run("a", "alexnet")),))
    settings = Settings(
        data=f"tfrecord:{tiny_data}", train={"width": 0.0625, "batch_size": 8, "max_steps": 1}
    )
    runner = TableRunner(table, settings, str(tmp_path), log=lambda _: None)
    run_dir = str(tmp_path / "runs" / "a")
    os.makedirs(run_dir)
    spec = runner.train_spec(table.rows[0].run, 0, os.path.join("runs", "a"))
    with open(os.path.join(run_dir, "experiment.json"), "w") as f:
        json.dump({"spec": dataclasses.asdict(spec), "seconds": None}, f)
    [result] = runner.run()
    with open(os.path.join(run_dir, "experiment.json")) as f:
        assert json.load(f)["seconds"] == pytest.approx(result["train_seconds"])
    assert os.path.exists(os.path.join(run_dir, "metrics.json"))


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--table=nope"], "--table=nope: Unknown table 'nope'; valid: alexnet_ablations"),
        # One case in the fast tier: each is a fresh TensorFlow process.
        pytest.param([], "--table is required", marks=pytest.mark.slow),
        pytest.param(
            ["--table=zfnet_variants", "--rows=zfnet,nope"],
            "--rows=zfnet,nope: Unknown rows nope",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--table=zfnet_variants", "--data=tfrecord:/nonexistent"],
            "--data=tfrecord:",
            marks=pytest.mark.slow,
        ),
        # --train_args are parsed with overfeat-train's own flags.
        pytest.param(
            ["--table=zfnet_variants", "--train_args=--nope=1"],
            "--train_args=--nope=1: Unknown command line flag 'nope'",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_flags_are_one_line_errors(flags, message, tmp_path, subprocess_env):
    result = _experiment(subprocess_env, f"--out_dir={tmp_path}", *flags)
    assert result.returncode != 0
    errors = [
        line for line in result.stderr.splitlines() if line.startswith("overfeat-experiment:")
    ]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
