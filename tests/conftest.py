"""Shared test set-up: quiet TensorFlow logs, the repository root for subprocesses, the tiny
data set and the tiny model settings."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

# `build_model` arguments of the tests' models: a sixteenth of the paper's widths, three
# classes, no dropout (deterministic training steps), He initialisation (learns fast).
# Tests import it (`from tests.conftest import TINY_MODEL`) and copy it to change it.
TINY_MODEL = {"num_classes": 3, "width": 0.0625, "init": "he", "dropout": 0.0}


def project_env() -> dict[str, str]:
    """Environment for subprocesses that import the project from the repo root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """`project_env()`, for `python -c` and `python -m` subprocesses."""
    return project_env()


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess:
    """`python -m module args...` in a fresh process (env default `project_env()`), its
    output captured as text; the caller checks the return code."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        env=project_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def saved_model_cli_run(
    saved_model_dir: str, signature: str, image_bytes: bytes, work: pathlib.Path
) -> pathlib.Path:
    """Runs `signature` of a SavedModel on one encoded image with `saved_model_cli run`
    (TF1 session loading, as TF Serving's C++ loader does), in a fresh process; returns
    the directory holding one `<output name>.npy` per output."""
    inputs, outputs = work / "cli_image_bytes.npy", work / "cli_outputs"
    np.save(inputs, np.array([image_bytes], dtype=bytes))
    result = run_module(
        "tensorflow.python.tools.saved_model_cli",
        *("run", "--dir", str(saved_model_dir), "--tag_set", "serve"),
        *("--signature_def", signature, "--inputs", f"image_bytes={inputs}"),
        *("--outdir", str(outputs)),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return outputs


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> str:
    """A directory holding `pipelines.testing.TINY_EMBEDDED` (48 train / 16 validation
    images of 10 classes, with boxes), generated once per session."""
    from pipelines import embedded, testing

    directory = str(tmp_path_factory.mktemp("tiny_embedded") / "set")
    embedded.ensure_embedded_dataset(directory, testing.TINY_EMBEDDED)
    return directory
