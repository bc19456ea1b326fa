"""`python -m overfeat_tf.bin.visualize` end to end, each run in its own process (absl flags)."""

import numpy as np
import pytest

import overfeat_tf
from overfeat_tf import run_dir as run_dir_lib
from pipelines import testing

import keras  # noqa: E402
from tests.conftest import TINY_MODEL as TINY, run_module


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny ZFNet run directory and two image files (one not square)."""
    root = tmp_path_factory.mktemp("visualize")
    keras.utils.set_random_seed(0)
    model = overfeat_tf.build_model("zfnet", **TINY)
    run_dir_lib.save_model(str(root / "run"), model, build_kwargs=TINY, class_names=["a", "b", "c"])
    for name, shape, seed in (("wide", (240, 320), 1), ("square", (256, 256), 2)):
        (root / f"{name}.png").write_bytes(
            testing.encode(testing.smooth_image(*shape, seed), "PNG")
        )
    return root


def _visualize(env, *args):
    return run_module("overfeat_tf.bin.visualize", *args, env=env, timeout=300)


@pytest.mark.slow
def test_every_mode_writes_its_files(run_dir, subprocess_env):
    model_dir = str(run_dir / "run")
    images = f"{run_dir}/wide.png,{run_dir}/square.png"
    runs = {
        "filters": [],
        "deconv": [f"--image={images}", "--layer=conv2", "--feature=1,2"],
        "top9": [f"--image={images}", "--layer=conv1", "--feature=0,5"],
        "occlusion": [
            f"--image={run_dir}/wide.png",
            "--full_image",
            "--size=64",
            "--stride=48",
            "--value=128",
            "--label=2",
        ],
    }
    for mode, args in runs.items():
        out = _visualize(
            subprocess_env,
            f"--mode={mode}",
            f"--model_dir={model_dir}",
            f"--output_dir={run_dir}/{mode}",
            *args,
        )
        assert out.returncode == 0, out.stderr[-3000:]
    assert (run_dir / "filters" / "conv1_filters.png").is_file()
    assert sorted(p.name for p in (run_dir / "deconv").iterdir()) == [
        "square_conv2_feature001.png",
        "square_conv2_feature002.png",
        "wide_conv2_feature001.png",
        "wide_conv2_feature002.png",
    ]
    assert (run_dir / "top9" / "conv1_feature005.png").is_file()
    arrays = np.load(run_dir / "occlusion" / "wide" / "occlusion.npz")
    # Whole image, shorter side 256: 256 x 341; a 64-pixel square every 48 pixels
    # starts at 0..192 down (5 rows) and 0..240 across (6 columns).
    assert arrays["true_class_probability"].shape == (1, 5, 6)
    assert int(arrays["labels"][0]) == 2
    assert (run_dir / "occlusion" / "wide" / "wide_feature.png").is_file()


def test_bad_flags_are_one_line_errors(run_dir, subprocess_env):
    out = _visualize(
        subprocess_env,
        "--mode=deconv",
        f"--model_dir={run_dir}/run",
        f"--image={run_dir}/wide.png",
        "--layer=conv9",
    )
    assert out.returncode != 0
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "overfeat-visualize: --layer=conv9 is not a layer of zfnet; valid: conv1_pad, conv1"
        )
    )
