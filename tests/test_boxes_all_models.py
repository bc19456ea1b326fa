"""Localization and detection end to end for every paper model, at a tiny width.

`overfeat-train-boxes` (both tasks) and `overfeat-evaluate --modes=localization,detection`
run in subprocesses with their default scales and the default frozen trunk, which each
model's registry record decides (OverFeat accurate's last pool is pool6, the others'
pool5; OverFeat sections 4 and 5 apply to all four networks).
"""

import json

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf.detection import detector
from overfeat_tf.detection import regressor as regressor_lib
from pipelines import embedded
from tests.conftest import run_module

KWARGS = {"width": 0.0625, "init": "he", "dropout": 0.0}


def _run(module, env, *flags):
    result = run_module(module, *flags, env=env, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", overfeat_tf.MODEL_NAMES)
def test_train_boxes_and_evaluate_both_modes(name, tmp_path, tiny_data, subprocess_env):
    classes = len(embedded.CLASS_NAMES)
    run = tmp_path / "run"
    model = overfeat_tf.build_model(name, classes, **KWARGS)
    run_dir.save_model(
        str(run),
        model,
        build_kwargs={"num_classes": classes, **KWARGS},
        class_names=list(embedded.CLASS_NAMES),
    )
    common = (
        f"--classifier_dir={run}",
        f"--data_dir={tiny_data}",
        "--batch_size=8",
        "--max_steps=1",
    )
    for task in ("localization", "detection"):
        _run("overfeat_tf.bin.train_boxes", subprocess_env, f"--task={task}", *common)
    assert regressor_lib.read_config(str(run / "detection")).scales == detector.default_scales(name)

    # The detection classifier's step kept the trunk (through the model's own last pool)
    # and moved the first FC layer.
    info = overfeat_tf.model_info(name)
    assert info.last_pool.name == ("pool6" if name == "overfeat_accurate" else "pool5")
    tuned, _ = run_dir.restore_model(str(run / "detection" / "classifier"))
    last_conv = [row.name for row in info.spec.trunk if row.name.startswith("conv")][-1]
    for layer, same in ((last_conv, True), (info.spec.head[0].name, False)):
        kernels = [m.get_layer(layer).get_weights()[0] for m in (model, tuned)]
        assert np.array_equal(*kernels) == same, layer

    output = tmp_path / "eval.json"
    _run(
        "overfeat_tf.bin.evaluate",
        subprocess_env,
        f"--model_dir={run}",
        f"--data_dir={tiny_data}",
        "--modes=localization,detection",
        "--noflips",
        "--max_examples=2",
        f"--output_json={output}",
    )
    results = json.loads(output.read_text())["results"]
    assert results["localization"]["examples"] == 2
    assert 0.0 <= results["localization"]["top5_error"] <= 100.0
    assert results["detection"]["examples"] == 2 and 0.0 <= results["detection"]["map"] <= 1.0
