"""overfeat-evaluate end to end in subprocesses, and its errors through the evaluation
library in process (`overfeat_tf.evaluation.launch`)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import cli, run_dir
from overfeat_tf.evaluation import launch
from tests.conftest import run_module

CLASSES = ["disc", "square", "star"]
PREDICTED = 1  # the untrained model is biased to always answer this class


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder data set (2 validation images per class, varied sizes) and a model dir."""
    root = tmp_path_factory.mktemp("evaluate")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        for i in range(2):
            shape = (int(rng.integers(240, 300)), int(rng.integers(240, 340)), 3)
            image = tf.io.encode_jpeg(rng.integers(0, 256, shape, dtype=np.uint8))
            for split in ("train", "validation"):
                os.makedirs(root / "data" / split / name, exist_ok=True)
                tf.io.write_file(str(root / "data" / split / name / f"{i}.jpg"), image)
    build_kwargs = {"num_classes": len(CLASSES), "width": 0.0625, "init": "he"}
    model = overfeat_tf.build_model("overfeat_fast", **build_kwargs)
    bias = np.zeros(len(CLASSES), np.float32)
    bias[PREDICTED] = 50.0
    model.get_layer("fc8").bias.assign(bias)
    run = str(root / "run")
    run_dir.save_model(run, model, build_kwargs=build_kwargs, class_names=CLASSES)
    return root


def _evaluate(env, *flags):
    return run_module("overfeat_tf.bin.evaluate", *flags, env=env, timeout=300)


@pytest.mark.slow
def test_all_modes_print_a_table_and_write_json(workspace, subprocess_env):
    result = _evaluate(
        subprocess_env,
        f"--model_dir={workspace / 'run'}",
        f"--data=folder:{workspace / 'data'}",
        "--modes=center,ten_view,dense",
        "--scales=231,247x279",
        "--batch_size=4",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = result.stdout[result.stdout.index("top-1 err %") :]
    assert [line.split()[0] for line in table.splitlines()[2:5]] == ["center", "ten_view", "dense"]
    report = json.loads((workspace / "run" / "eval.json").read_text())
    assert report["model"] == "overfeat_fast"
    assert report["dense"] == {
        "scales": [[231, 231], [247, 279]],
        "fine_stride": True,
        "flips": True,
    }
    for mode in ("center", "ten_view", "dense"):
        metrics = report["results"][mode]
        assert metrics["examples"] == 6
        # Every answer is class 1, right for 2 of the 6 images.
        assert metrics["top1_error"] == pytest.approx(100 * 4 / 6, abs=1e-3)
        assert metrics["top5_error"] == 0.0


def _copy_checkpoint(source, destination):
    for name in os.listdir(source):
        if name != "model.json":
            tf.io.gfile.copy(str(source / name), str(destination / name))


def _error_line(**spec) -> str:
    """The one line overfeat-evaluate prints for `EvalSpec(**spec)`'s error."""
    with pytest.raises(launch.SpecError) as error:
        launch.run(launch.EvalSpec(**spec))
    return cli.user_error_line(error.value, (launch.SpecError,))


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty_dir", "is not a model dir: model.json is missing"),
        ("no_checkpoint", "No checkpoint in"),
        ("unknown_model", "Unknown model 'overfeet'; valid names: alexnet, zfnet,"),
    ],
)
def test_a_bad_run_is_a_one_line_error(workspace, tmp_path, case, message):
    run = workspace / "run"
    config = json.loads((run / "model.json").read_text())
    if case == "no_checkpoint":
        (tmp_path / "model.json").write_text(json.dumps(config))
    elif case == "unknown_model":
        (tmp_path / "model.json").write_text(json.dumps({**config, "name": "overfeet"}))
        _copy_checkpoint(run, tmp_path)
    line = _error_line(model_dir=(str(tmp_path),), data=f"folder:{workspace / 'data'}")
    assert line.startswith(f"--model_dir={tmp_path}: ") and message in line


def test_bad_modes_are_a_one_line_error_of_the_program(workspace, subprocess_env):
    result = _evaluate(
        subprocess_env,
        f"--model_dir={workspace / 'run'}",
        "--modes=center,crops",
        f"--data=folder:{workspace / 'data'}",
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    message = "overfeat-evaluate: --modes: 'center,crops' is invalid; valid: center,ten_view,dense"
    assert last.startswith(message), result.stderr[-2000:]


def _second_run(workspace, name, init, classes=CLASSES):
    """Another run of the workspace's model, biased to the same class (he or paper init)."""
    run = workspace / name
    if not (run / "model.json").exists():
        build_kwargs = {"num_classes": len(classes), "width": 0.0625, "init": init}
        model = overfeat_tf.build_model("overfeat_fast", **build_kwargs)
        model.get_layer("fc8").bias.assign(50.0 * (np.arange(len(classes)) == PREDICTED))
        run_dir.save_model(str(run), model, build_kwargs=build_kwargs, class_names=classes)
    return run


@pytest.mark.slow
def test_ensemble_of_runs_in_every_mode(workspace, subprocess_env):
    dirs = [workspace / "run", _second_run(workspace, "run_paper", "paper")]
    result = _evaluate(
        subprocess_env,
        f"--model_dir={dirs[0]},{dirs[1]}",
        f"--data=folder:{workspace / 'data'}",
        "--scales=231",
        "--batch_size=4",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Ensemble of 2 (overfeat_fast, overfeat_fast)" in result.stdout
    assert "center (centre 231 crop, mean of 2 models)" in result.stdout
    report = json.loads((dirs[0] / "eval_ensemble.json").read_text())
    assert [m["model_dir"] for m in report["ensemble"]] == [str(d) for d in dirs]
    assert report["dense"]["scales"] == [[231, 231]]
    for mode in ("center", "ten_view", "dense"):
        assert report["results"][mode]["top1_error"] == pytest.approx(100 * 4 / 6, abs=1e-3)


def test_ensemble_errors_are_one_line(workspace):
    run = workspace / "run"
    other = _second_run(workspace, "run_other_classes", "he", ["disc", "square", "cross"])
    data = f"folder:{workspace / 'data'}"
    line = _error_line(model_dir=(str(run), str(other)), data=data)
    assert "classes that differ from the 3 of" in line
    line = _error_line(model_dir=(str(run), str(run)), checkpoint="x", data=data)
    assert line == "--checkpoint names the checkpoint of a single --model_dir"
