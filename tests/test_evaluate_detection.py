"""overfeat-evaluate --modes=detection on tiny embedded data: the evaluation library in
process, and the program in a subprocess."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf.detection import regressor
from overfeat_tf.evaluation import launch
from pipelines import embedded
from tests.conftest import run_module

KWARGS = {"width": 0.0625, "init": "he", "dropout": 0.0}
NAMES = list(embedded.CLASS_NAMES)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_data):
    """Tiny embedded data, a classifier run, and its detection classifier (always class 2)
    and regressor where overfeat-train-boxes --task=detection puts them."""
    root = tmp_path_factory.mktemp("evaluate_detection")
    keras.utils.set_random_seed(0)
    run = root / "run"
    classes = len(NAMES)
    run_dir.save_model(
        str(run),
        overfeat_tf.build_model("alexnet", classes, **KWARGS),
        build_kwargs={"num_classes": classes, **KWARGS},
        class_names=NAMES,
    )
    detection = overfeat_tf.build_model("alexnet", classes + 1, **KWARGS)
    bias = np.zeros(classes + 1, np.float32)
    bias[2] = 50.0
    detection.get_layer("fc8").bias.assign(bias)
    run_dir.save_model(
        str(run / "detection" / "classifier"),
        detection,
        build_kwargs={"num_classes": classes + 1, **KWARGS},
        class_names=NAMES + ["background"],
    )
    config = regressor.RegressorConfig(
        "alexnet", classes, width=0.0625, scales=(227, 260), task="detection"
    )
    regressor.write_config(str(run / "detection"), config)
    tf.train.CheckpointManager(
        tf.train.Checkpoint(regressor=regressor.build_regressor(config)), str(run / "detection"), 1
    ).save()
    return root


def _evaluate(env, *flags):
    return run_module("overfeat_tf.bin.evaluate", *flags, env=env, timeout=300)


def test_detection_mode_prints_ap_table_writes_json_and_pngs(workspace, capsys, tiny_data):
    run, draw_dir = workspace / "run", workspace / "pngs"
    # In-process: the evaluation library, as overfeat-evaluate calls it (the subprocess
    # test below covers the program).
    launch.run(
        launch.EvalSpec(
            model_dir=(str(run),),
            data="embedded",
            data_dir=tiny_data,
            modes=("detection",),
            flips=False,
            max_examples=3,
            draw_dir=str(draw_dir),
            draw_max=2,
        )
    )
    stdout = capsys.readouterr().out
    assert "(detection_validation)" in stdout and "mean (mAP@0.5)" in stdout
    report = json.loads((run / "eval.json").read_text())
    found = report["results"]["detection"]
    assert found["examples"] == 3 and 0.0 <= found["map"] <= 1.0
    assert found["split"] == "detection_validation"
    assert set(found["per_class_ap"]) == set(NAMES)  # null where a class has no object
    assert "scales 227,260" in found["description"]  # the regressor's training scales
    assert found["detections_per_image"] >= 1  # class 2 fires everywhere
    assert sorted(os.listdir(draw_dir)) == [
        "detection_validation_0000.png",
        "detection_validation_0001.png",
    ]


def test_detection_mode_names_a_missing_detector(workspace, subprocess_env, tmp_path, tiny_data):
    result = _evaluate(
        subprocess_env,
        f"--model_dir={workspace / 'run'}",
        "--data=embedded",
        f"--data_dir={tiny_data}",
        "--modes=detection",
        f"--detector_dir={tmp_path}",
    )
    assert result.returncode != 0
    assert f"--detector_dir={tmp_path}" in result.stderr.strip().splitlines()[-1]
