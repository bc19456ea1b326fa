"""The CPU speed settings: oneDNN on at import (with its opt-outs), XLA steps equal plain ones.

oneDNN must be switched on before TensorFlow is first imported, so
those cases run `import overfeat_tf` in a fresh Python process and ask TensorFlow itself
whether its oneDNN kernels are on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import onednn_calibration, runtime
from overfeat_tf.training.recipes import get_recipe
from overfeat_tf.training.trainer import TrainConfig, Trainer

_REPORT = (
    "import json, os, sys\n"
    "import overfeat_tf\n"
    "from tensorflow.python.util import _pywrap_util_port\n"
    "print(json.dumps({'env': os.environ.get('TF_ENABLE_ONEDNN_OPTS'),\n"
    "                  'status': overfeat_tf.ONEDNN_STATUS,\n"
    "                  'tf_onednn': _pywrap_util_port.IsMklEnabled()}))\n"
)
_NO_CACHE = "/nonexistent/onednn.json"


def _import_report(
    env: dict[str, str], *argv: str, opt_out: str | None = None, cache: str = _NO_CACHE
) -> dict:
    """What a fresh `python -c 'import overfeat_tf' *argv` decided, and what TF did.

    Neither variable is inherited; `opt_out` sets `OVERFEAT_TF_ONEDNN`; the calibration
    cache is `cache` (by default none).
    """
    env = {k: v for k, v in env.items() if k not in (runtime.ONEDNN_ENV, runtime.OPT_OUT_ENV)}
    env[runtime.CACHE_ENV] = cache
    if opt_out is not None:
        env[runtime.OPT_OUT_ENV] = opt_out
    result = subprocess.run(
        [sys.executable, "-c", _REPORT, *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_import_turns_onednn_on(subprocess_env):
    report = _import_report(subprocess_env)
    assert report == {"env": "1", "status": "enabled", "tf_onednn": True}


def test_environment_opt_out(subprocess_env):
    report = _import_report(subprocess_env, opt_out="0")
    assert report == {"env": "0", "status": "disabled", "tf_onednn": False}


def test_flag_opt_out(subprocess_env):
    report = _import_report(subprocess_env, "--noonednn")
    assert report == {"env": "0", "status": "disabled", "tf_onednn": False}


@pytest.mark.parametrize(
    "argv, wanted",
    [((), True), (("--noonednn",), False), (("--onednn=false",), False), (("--onednn",), True)],
)
def test_onednn_requested_reads_flags(monkeypatch, argv, wanted):
    monkeypatch.delenv(runtime.OPT_OUT_ENV, raising=False)
    assert runtime.onednn_requested(argv) is wanted


def test_tensorflow_imported_first_is_too_late_and_says_how_to_fix(monkeypatch, caplog):
    # This process imported TensorFlow already: the variable can no longer take effect.
    monkeypatch.delenv(runtime.ONEDNN_ENV, raising=False)
    monkeypatch.delenv(runtime.OPT_OUT_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger="overfeat_tf"):
        assert runtime.configure_onednn() == "too_late"
    assert runtime.ONEDNN_ENV not in os.environ
    assert len(caplog.records) == 1 and "Import overfeat_tf first" in caplog.text


def test_cached_calibration_decides_before_tensorflow_loads(subprocess_env, tmp_path, monkeypatch):
    cache = str(tmp_path / "onednn.json")
    monkeypatch.setenv(runtime.CACHE_ENV, cache)
    onednn_calibration.store("another machine", {"onednn": True})
    onednn_calibration.store(
        runtime.machine_key(), {"onednn": False, "seconds_on": 2.0, "seconds_off": 1.0}
    )
    report = _import_report(subprocess_env, cache=cache)
    assert report == {"env": "0", "status": "disabled", "tf_onednn": False}
    with open(cache) as f:
        assert set(json.load(f)) == {"another machine", runtime.machine_key()}
    # An opt-out wins over a calibration that found oneDNN faster.
    onednn_calibration.store(runtime.machine_key(), {"onednn": True})
    assert _import_report(subprocess_env, "--noonednn", cache=cache)["status"] == "disabled"
    assert _import_report(subprocess_env, cache=cache)["status"] == "enabled"


def test_unreadable_cache_falls_back_to_the_default(tmp_path, monkeypatch):
    cache = tmp_path / "onednn.json"
    cache.write_text("not json")
    monkeypatch.setenv(runtime.CACHE_ENV, str(cache))
    assert runtime.cached_calibration() is None
    cache.write_text(json.dumps({runtime.machine_key(): {"onednn": "yes"}}))
    assert runtime.cached_calibration() is None


def test_the_decision_is_recorded_for_the_runs_metrics(monkeypatch):
    monkeypatch.setenv(runtime.ONEDNN_ENV, "0")
    assert runtime.configure_onednn() == "user"
    record = runtime.onednn_record()
    assert record["status"] == "user" and "set by the user" in record["reason"]
    assert runtime.cpu_model() in record["key"]


def test_user_setting_is_kept(monkeypatch):
    monkeypatch.setenv(runtime.ONEDNN_ENV, "0")
    assert runtime.configure_onednn() == "user"
    assert os.environ[runtime.ONEDNN_ENV] == "0"


# ---- XLA -----------------------------------------------------------------------------

_STEPS, _BATCH, _CLASSES = 3, 8, 5


def _train(tmp_path, xla: bool, initial_weights, batches) -> list[np.ndarray]:
    """Weights after `_STEPS` Trainer steps (AlexNet recipe: momentum, coupled decay)."""
    recipe = dataclasses.replace(get_recipe("alexnet"), learning_rate=0.05, batch_size=_BATCH)
    config = TrainConfig(
        model_dir=str(tmp_path / f"xla_{xla}"),
        recipe=recipe,
        steps_per_epoch=_STEPS,
        epochs=1,
        batch_size=_BATCH,
        xla="on" if xla else "off",
        verbose=False,
    )
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    trainer = Trainer(
        config,
        strategy,
        lambda: overfeat_tf.build_model("alexnet", _CLASSES, 0.0625, dropout=0.0, init="he"),
    )
    trainer.model.set_weights(initial_weights)
    trainer.fit(lambda epoch, skip, context: batches.skip(skip))
    return trainer.model.get_weights()


def test_xla_step_gives_the_plain_step_weights(tmp_path):
    keras.utils.set_random_seed(0)
    initial = overfeat_tf.build_model(
        "alexnet", _CLASSES, 0.0625, dropout=0.0, init="he"
    ).get_weights()
    size = overfeat_tf.native_input_size("alexnet")
    batches = tf.data.Dataset.from_tensor_slices(
        (
            tf.random.normal((_STEPS, _BATCH, size, size, 3), seed=1),
            tf.random.uniform((_STEPS, _BATCH), 0, _CLASSES, tf.int32, seed=2),
        )
    )
    plain = _train(tmp_path, False, initial, batches)
    xla = _train(tmp_path, True, initial, batches)
    for w0, wp, wx in zip(initial, plain, xla):
        moved = np.abs(wp - w0).max()
        assert moved > 0  # every variable was trained
        # XLA fuses and reorders float32 sums: after 3 steps the two runs may differ by
        # round-off, at most 1e-3 of how far the step moved the weights (a wrong or
        # missing update differs by the update itself).
        np.testing.assert_allclose(wx, wp, rtol=0, atol=1e-3 * moved)


@pytest.fixture
def uncapped(monkeypatch):
    """No instruction-set cap in the environment (`runtime.isa_caps` reads these)."""
    for name in ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "XLA_FLAGS"):
        monkeypatch.delenv(name, raising=False)


def test_cpu_summary_names_the_instruction_set_caps(uncapped, monkeypatch):
    # A benchmark run with the libraries capped (say, at AVX2 on an AVX-512 CPU) must say
    # so beside the CPU's own flags, or its figures read as the uncapped CPU's.
    assert "capped" not in runtime.cpu_summary()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x --xla_cpu_max_isa=AVX2")
    assert runtime.isa_caps() == ["ONEDNN_MAX_CPU_ISA=AVX2", "--xla_cpu_max_isa=AVX2"]
    assert runtime.cpu_summary().endswith(
        "; capped by ONEDNN_MAX_CPU_ISA=AVX2 --xla_cpu_max_isa=AVX2"
    )


def test_a_capped_cpu_has_its_own_calibration(uncapped, monkeypatch):
    # oneDNN capped at AVX2 is a different machine to calibrate: an entry measured under a
    # cap must not decide for the uncapped CPU, nor the other way round.
    key = runtime.machine_key()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert runtime.machine_key() == key + " | ONEDNN_MAX_CPU_ISA=AVX2"
