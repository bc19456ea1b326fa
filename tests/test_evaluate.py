"""The evaluation binary, end to end in subprocesses (overfeat_tf/evaluate.py)."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import run_dir
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


@pytest.mark.parametrize(
    "case, message",
    [
        ("empty_dir", "is not a model dir: model.json is missing"),
        ("no_checkpoint", "No checkpoint in"),
        ("unknown_model", "Unknown model 'overfeet'; valid names: alexnet, zfnet,"),
        ("bad_modes", "--modes: 'center,crops' is invalid; valid: center,ten_view,dense"),
    ],
)
def test_bad_input_is_a_one_line_error(workspace, subprocess_env, tmp_path, case, message):
    run = workspace / "run"
    config = json.loads((run / "model.json").read_text())
    flags = [f"--model_dir={tmp_path}"]
    if case == "no_checkpoint":
        (tmp_path / "model.json").write_text(json.dumps(config))
    elif case == "unknown_model":
        (tmp_path / "model.json").write_text(json.dumps({**config, "name": "overfeet"}))
        _copy_checkpoint(run, tmp_path)
    elif case == "bad_modes":
        flags = [f"--model_dir={run}", "--modes=center,crops"]
    result = _evaluate(subprocess_env, *flags, f"--data=folder:{workspace / 'data'}")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("overfeat-evaluate: ") and message in last, result.stderr[-2000:]


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


def test_ensemble_flag_errors_are_one_line(workspace, subprocess_env):
    run = workspace / "run"
    other = _second_run(workspace, "run_other_classes", "he", ["disc", "square", "cross"])
    cases = [
        ([f"--model_dir={run},{other}"], "classes that differ from the 3 of"),
        (
            [f"--model_dir={run},{run}", "--checkpoint=x"],
            "--checkpoint names the checkpoint of a single --model_dir",
        ),
    ]
    for flags, message in cases:
        result = _evaluate(subprocess_env, *flags, f"--data=folder:{workspace / 'data'}")
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode != 0 and last.startswith("overfeat-evaluate: ")
        assert message in last, result.stderr[-2000:]
