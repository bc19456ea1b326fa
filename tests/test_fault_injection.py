"""kill -9 at seeded moments of a deterministic run; each resume ends bitwise-equal."""

import os
import subprocess
import sys

import numpy as np
import pytest

from export import saved_model
from overfeat_tf import run_dir as run_dir_lib
from pipelines import embedded, testing

CRASHING_TRAIN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "crashing_train.py")


def _flags(data: str, model_dir) -> list[str]:
    # 48 images / batch 8: 6 steps per epoch, 12 in all; a checkpoint every 2 steps.
    return [
        f"--data=tfrecord:{data}",
        f"--model_dir={model_dir}",
        "--model=alexnet",
        "--width=0.0625",
        "--batch_size=8",
        "--init=he",
        "--dropout=0",
        "--epochs=2",
        "--checkpoint_every=2",
        "--deterministic",
        "--xla=off",
    ]


def _moments(seed: int) -> list[tuple[str, int]]:
    """Five kills, each reachable from wherever the previous one left the run."""
    rng = np.random.default_rng(seed)
    return [
        ("step", int(rng.integers(1, 4))),
        ("checkpoint", int(rng.integers(1, 3))),
        ("evaluation", int(rng.integers(1, 3))),
        ("step", int(rng.integers(1, 3))),
        ("export", 1),
    ]


@pytest.mark.slow
def test_kill_at_five_moments_then_resume_gives_the_same_weights(tmp_path, subprocess_env):
    data = embedded.ensure_embedded_dataset(str(tmp_path / "data"), testing.TINY_EMBEDDED)
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    subprocess.run(
        [sys.executable, "-m", "overfeat_tf.bin.train", *_flags(data, reference)],
        check=True,
        env=subprocess_env,
        capture_output=True,
    )
    for moment, count in _moments(seed=18):
        result = subprocess.run(
            [sys.executable, CRASHING_TRAIN, moment, str(count), *_flags(data, killed)],
            env=subprocess_env,
            capture_output=True,
            text=True,
        )
        assert result.returncode == -9, (
            moment,
            count,
            result.stdout[-2000:],
            result.stderr[-2000:],
        )
    result = subprocess.run(
        [sys.executable, "-m", "overfeat_tf.bin.train", *_flags(data, killed)],
        env=subprocess_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Taking over" in result.stdout  # The lock the killed run left behind.
    weights = [run_dir_lib.restore_model(str(run))[0].get_weights() for run in (reference, killed)]
    for a, b in zip(*weights):
        assert np.array_equal(a, b)
    assert saved_model.existing_versions(str(killed / "export")) == [1]
    assert not list(killed.glob("*_temp"))
