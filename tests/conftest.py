"""Shared test set-up: quiet TensorFlow logs, and the repository root for subprocesses."""

import os
import pathlib

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for `python -c` subprocesses that import the project from the repo root."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def tiny_embedded_dir(tmp_path_factory) -> str:
    """A directory holding `pipelines.testing.TINY_EMBEDDED`, generated once per session."""
    from pipelines import embedded, testing

    directory = str(tmp_path_factory.mktemp("tiny_embedded") / "set")
    embedded.ensure_embedded_dataset(directory, testing.TINY_EMBEDDED)
    return directory
