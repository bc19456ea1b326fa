"""overfeat-detect on a folder of plain images (subprocess): a JSON and a PNG each."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import overfeat_tf
from overfeat_tf import run_dir as run_dir_lib
from overfeat_tf.detection import regressor
from pipelines import testing
from tests.conftest import run_module

KWARGS = {"width": 0.0625, "init": "he", "dropout": 0.0}
NAMES = ["cat", "dog", "bird"]
SIZES = {"a.jpg": (300, 200), "b.PNG": (120, 160), "c.jpeg": (256, 256)}  # (h, w)


def _save_regressor(directory, task):
    config = regressor.RegressorConfig(
        "alexnet", len(NAMES), width=0.0625, scales=(227,), task=task
    )
    regressor.write_config(str(directory), config)
    tf.train.CheckpointManager(
        tf.train.Checkpoint(regressor=regressor.build_regressor(config)), str(directory), 1
    ).save()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny classifier run with both regressors and a detection classifier that
    always says "dog", and a folder of three images (plus a text file and a broken JPEG)."""
    root = tmp_path_factory.mktemp("detect_images")
    keras.utils.set_random_seed(0)
    run = root / "run"
    run_dir_lib.save_model(
        str(run),
        overfeat_tf.build_model("alexnet", len(NAMES), **KWARGS),
        build_kwargs={"num_classes": len(NAMES), **KWARGS},
        class_names=NAMES,
    )
    detection = overfeat_tf.build_model("alexnet", len(NAMES) + 1, **KWARGS)
    bias = np.zeros(len(NAMES) + 1, np.float32)
    bias[1] = 50.0
    detection.get_layer("fc8").bias.assign(bias)
    run_dir_lib.save_model(
        str(run / "detection" / "classifier"),
        detection,
        build_kwargs={"num_classes": len(NAMES) + 1, **KWARGS},
        class_names=NAMES + ["background"],
    )
    _save_regressor(run / "detection", "detection")
    _save_regressor(run / "localization", "localization")
    photos = root / "photos"
    photos.mkdir()
    for i, (name, (h, w)) in enumerate(SIZES.items()):
        Image.fromarray(testing.smooth_image(h, w, i)).save(photos / name)
    (photos / "notes.txt").write_text("not an image")
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return root


def _detect(env, *flags):
    return run_module("overfeat_tf.bin.detect", *flags, env=env, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["detection", "localization"])
def test_three_images_give_three_json_and_three_png(workspace, subprocess_env, task):
    out = workspace / f"out_{task}"
    result = _detect(
        subprocess_env,
        f"--model_dir={workspace / 'run'}",
        f"--image_dir={workspace / 'photos'}",
        f"--output_dir={out}",
        f"--task={task}",
        "--noflips",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "broken.jpg" in result.stdout  # skipped and named
    assert sorted(p.name for p in out.iterdir()) == [
        "a.json",
        "a.png",
        "b.json",
        "b.png",
        "c.json",
        "c.png",
    ]
    for name, (h, w) in SIZES.items():
        stem = name.split(".")[0]
        document = json.loads((out / f"{stem}.json").read_text())
        assert (document["image"], document["height"], document["width"]) == (name, h, w)
        assert document["task"] == task and document["objects"]
        scores = [o["score"] for o in document["objects"]]
        assert scores == sorted(scores, reverse=True)
        for found in document["objects"]:
            box = found["box"]
            assert 0 <= box["xmin"] <= box["xmax"] <= w and 0 <= box["ymin"] <= box["ymax"] <= h
            assert found["class"] == NAMES[found["class_index"]]
        if task == "detection":  # the detection classifier only ever says dog
            assert {o["class"] for o in document["objects"]} == {"dog"}
        else:
            assert len(document["objects"]) <= 5
        assert Image.open(out / f"{stem}.png").size == (w, h)


def test_bad_flags_fail_in_one_line_before_writing(workspace, subprocess_env, tmp_path):
    out = tmp_path / "out"
    result = _detect(
        subprocess_env,
        f"--model_dir={workspace / 'run'}",
        f"--image_dir={tmp_path / 'none'}",
        f"--output_dir={out}",
    )
    assert result.returncode != 0 and not out.exists()
    assert result.stderr.strip().splitlines()[-1].startswith("overfeat-detect: --image_dir=")
    result = _detect(
        subprocess_env,
        f"--model_dir={workspace / 'run'}",
        f"--image_dir={workspace / 'photos'}",
        f"--output_dir={out}",
        f"--detector_dir={tmp_path}",
    )
    assert result.returncode != 0 and not out.exists()
    assert f"--detector_dir={tmp_path}" in result.stderr.strip().splitlines()[-1]
