"""`python -m overfeat_tf.bin.extract_features` end to end in a subprocess."""

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import run_dir
from pipelines import testing

import keras  # noqa: E402
from tests.conftest import TINY_MODEL as TINY
from tests.conftest import run_module


@pytest.mark.slow
def test_image_folder_to_npy(tmp_path, subprocess_env):
    keras.utils.set_random_seed(0)
    model = overfeat_tf.build_model("alexnet", **TINY)
    run_dir.save_model(str(tmp_path / "run"), model, build_kwargs=TINY, class_names=["a", "b", "c"])
    (tmp_path / "images").mkdir()
    for i in range(3):
        (tmp_path / "images" / f"img{i}.jpg").write_bytes(
            testing.encode(testing.smooth_image(260 + 10 * i, 300, i))
        )
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    out = run_module(
        "overfeat_tf.bin.extract_features",
        f"--model_dir={tmp_path}/run",
        f"--image_dir={tmp_path}/images",
        "--layers=pool5,fc7",
        f"--output_dir={tmp_path}/out",
        "--batch_size=2",
        env=subprocess_env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # AlexNet pool5 6x6x256 and fc7 4096, times width 0.0625.
    assert np.load(tmp_path / "out" / "pool5.npy").shape == (3, 6, 6, 16)
    assert np.load(tmp_path / "out" / "fc7.npy").shape == (3, 1, 1, 256)
    names = (tmp_path / "out" / "filenames.txt").read_text().splitlines()
    assert [n.rsplit("/", 1)[-1] for n in names] == ["img0.jpg", "img1.jpg", "img2.jpg"]

    bad = run_module(
        "overfeat_tf.bin.extract_features",
        f"--model_dir={tmp_path}/run",
        f"--image_dir={tmp_path}/images",
        "--layers=fc9",
        f"--output_dir={tmp_path}/out",
        env=subprocess_env,
        timeout=300,
    )
    assert bad.returncode != 0
    assert (
        bad.stderr.strip()
        .splitlines()[-1]
        .startswith("overfeat-features: --layers: Unknown layers")
    )
