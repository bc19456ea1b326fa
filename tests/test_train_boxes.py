"""Localization end to end in subprocesses: overfeat-train-boxes (training, resume, bad
flags) and overfeat-evaluate --modes=localization, on the tiny embedded data set."""

import json

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf.detection import regressor as regressor_lib
from pipelines import embedded, testing
from tests.conftest import run_module

BUILD_KWARGS = {
    "num_classes": len(embedded.CLASS_NAMES),
    "width": 0.0625,
    "init": "he",
    "dropout": 0.0,
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny embedded data and an (untrained) tiny AlexNet run directory."""
    root = tmp_path_factory.mktemp("train_boxes")
    embedded.ensure_embedded_dataset(str(root / "data"), testing.TINY_EMBEDDED)
    model = overfeat_tf.build_model("alexnet", **BUILD_KWARGS)
    run_dir.save_model(
        str(root / "classifier"),
        model,
        build_kwargs=BUILD_KWARGS,
        class_names=list(embedded.CLASS_NAMES),
    )
    return root


def _run(module, env, *flags):
    return run_module(module, *flags, env=env)


def _train(workspace, env, model_dir, *flags):
    # 48 training images / batch 8 = 6 steps per epoch; two small scales keep it quick.
    return _run(
        "overfeat_tf.bin.train_boxes",
        env,
        f"--classifier_dir={workspace / 'classifier'}",
        f"--data_dir={workspace / 'data'}",
        f"--model_dir={model_dir}",
        "--batch_size=8",
        "--scales=227,243",
        "--checkpoint_every=1",
        "--deterministic",
        *flags,
    )


@pytest.mark.slow
def test_train_resume_and_evaluate_localization(workspace, tmp_path, subprocess_env):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    result = _train(workspace, subprocess_env, straight, "--max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    config = regressor_lib.read_config(str(straight))
    assert config.scales == (227, 243) and config.per_class and config.model == "alexnet"
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["step"] == 4 and np.isfinite(metrics["loss"])
    assert 0.0 <= metrics["val_mean_iou"] <= 1.0

    # Interrupted after step 2, then the same command again: the same head as training
    # straight through (same step, optimiser state and position in the epoch).
    assert _train(workspace, subprocess_env, resumed, "--max_steps=2").returncode == 0
    result = _train(workspace, subprocess_env, resumed, "--max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "at step 2" in result.stdout
    heads = [regressor_lib.restore_regressor(str(run))[0] for run in (straight, resumed)]
    for a, b in zip(*(head.get_weights() for head in heads)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

    # The evaluator reads the regressor, prints the localization row and writes JSON
    # and PNGs.
    output, draw_dir = tmp_path / "eval.json", tmp_path / "draw"
    result = _run(
        "overfeat_tf.bin.evaluate",
        subprocess_env,
        f"--model_dir={workspace / 'classifier'}",
        f"--regressor_dir={straight}",
        f"--data_dir={workspace / 'data'}",
        "--modes=localization",
        "--max_examples=3",
        f"--draw_dir={draw_dir}",
        "--draw_max=2",
        f"--output_json={output}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "localization (scales 227,243, flips" in result.stdout
    localization = json.loads(output.read_text())["results"]["localization"]
    assert localization["examples"] == 3
    assert 0.0 <= localization["top5_error"] <= localization["top1_error"] <= 100.0
    assert sorted(p.name for p in draw_dir.iterdir()) == [
        "validation_0000.png",
        "validation_0001.png",
    ]


@pytest.mark.slow
def test_detection_task_trains_the_regressor_then_the_background_classifier(
    workspace, tmp_path, subprocess_env
):
    run = tmp_path / "detection"
    result = _train(workspace, subprocess_env, run, "--task=detection", "--max_steps=2")
    assert result.returncode == 0, result.stderr[-3000:]
    config = regressor_lib.read_config(str(run))
    assert config.task == "detection"
    assert json.loads((run / "metrics.json").read_text())["step"] == 2
    classifier = run_dir.read_config(str(run / "classifier"))
    assert classifier["class_names"][-1] == "background"
    assert json.loads((run / "classifier" / "metrics.json").read_text())["step"] == 2


@pytest.mark.parametrize(
    "flags, message",
    [
        ((), "--classifier_dir is required"),
        # One case in the fast tier: each is a fresh TensorFlow process.
        pytest.param(
            ("--classifier_dir={classifier}", "--scales=200"),
            "--scales must be >= 227",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ("--classifier_dir={classifier}", "--batch_size=100"),
            "exceeds the 48 examples",
            marks=pytest.mark.slow,
        ),
    ],
    ids=["no_classifier", "small_scale", "big_batch"],
)
def test_bad_flags_are_one_line_errors(workspace, subprocess_env, tmp_path, flags, message):
    flags = [f.format(classifier=workspace / "classifier") for f in flags]
    result = _run(
        "overfeat_tf.bin.train_boxes",
        subprocess_env,
        f"--data_dir={workspace / 'data'}",
        f"--model_dir={tmp_path / 'run'}",
        *flags,
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("overfeat-train-boxes: ") and message in last, result.stderr[-2000:]


def test_changed_settings_do_not_reuse_a_regressor_dir(workspace, subprocess_env, tmp_path):
    run = tmp_path / "run"
    regressor_lib.write_config(
        str(run),
        regressor_lib.RegressorConfig(
            "alexnet",
            len(embedded.CLASS_NAMES),
            0.0625,
            per_class=False,
            classifier_dir=str(workspace / "classifier"),
            scales=(227, 243),
        ),
    )
    result = _train(workspace, subprocess_env, run, "--max_steps=1")
    assert result.returncode != 0
    assert "holds a regressor trained with other settings" in result.stderr
