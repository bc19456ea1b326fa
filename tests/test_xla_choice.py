"""The automatic XLA choice: timing logic with a fake clock, and the Trainer's use of it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from overfeat_tf import xla_choice


class FakeSteps:
    """A plain and a compiled call that advance a fake clock by scripted durations.

    Each version's first call takes its `first` seconds, later ones `steady` (plus the
    extra seconds listed in `noise`, call by call), so the outcome is known in advance.
    """

    def __init__(
        self,
        plain: float,
        compiled: float,
        compile_once: float = 10.0,
        noise: tuple[float, ...] = (),
    ) -> None:
        self.now = 0.0
        self.calls: list[str] = []
        self._steady = {"plain": plain, "xla": compiled}
        self._first = {"plain": plain + 0.5, "xla": compiled + compile_once}
        self._noise = list(noise)

    def timer(self) -> float:
        return self.now

    def _call(self, name: str) -> None:
        first = name not in self.calls
        self.calls.append(name)
        extra = self._noise.pop(0) if self._noise else 0.0
        self.now += (self._first if first else self._steady)[name] + extra

    def plain(self) -> None:
        self._call("plain")

    def compiled(self) -> None:
        self._call("xla")


@pytest.mark.parametrize("plain, compiled, expected", [(2.0, 1.0, True), (1.0, 2.0, False)])
def test_auto_picks_the_faster_and_reports_both(plain, compiled, expected):
    steps = FakeSteps(plain, compiled, compile_once=10.0)
    choice = xla_choice.choose("auto", steps.plain, steps.compiled, steps=3, timer=steps.timer)
    assert choice.xla is expected and choice.mode == "auto"
    assert (choice.plain_seconds, choice.xla_seconds) == (plain, compiled)
    assert choice.compile_seconds == pytest.approx(10.0)  # the first call less a steady one
    # Warm-ups, then alternating: 2 * (1 + 3) calls, half each.
    assert steps.calls == ["plain", "xla"] * 4
    assert f"XLA {'on' if expected else 'off'} (auto:" in choice.summary()


def test_auto_compares_best_calls_so_one_slowed_call_does_not_decide():
    # XLA steady 1.0 s vs plain 1.2 s; another job slows two of XLA's timed calls by 2 s.
    noise = (0, 0, 0, 2.0, 0, 2.0, 0, 0)
    steps = FakeSteps(1.2, 1.0, noise=noise)
    choice = xla_choice.choose("auto", steps.plain, steps.compiled, timer=steps.timer)
    assert choice.xla and choice.xla_seconds == 1.0


def test_a_tie_stays_plain():
    steps = FakeSteps(1.0, 1.0)
    assert not xla_choice.choose("auto", steps.plain, steps.compiled, timer=steps.timer).xla


@pytest.mark.parametrize("mode, expected", [("on", True), ("off", False)])
def test_on_and_off_are_respected_without_timing(mode, expected):
    steps = FakeSteps(1.0, 2.0)
    choice = xla_choice.choose(mode, steps.plain, steps.compiled, timer=steps.timer)
    assert choice.xla is expected and steps.calls == []
    assert choice.plain_seconds is None and choice.summary() == f"XLA {mode} ({mode}: as asked)"


def test_calibration_drives_real_work_one_call_at_a_time_and_records_the_choice():
    calibration = xla_choice.Calibration("auto", steps=1)
    ran = []
    for seconds in (3.0, 9.0, 2.0, 1.0, 5.0, 5.0):  # the last two run after the choice
        ran.append(calibration.next_xla())
        calibration.record(seconds)
    assert ran == [False, True, False, True, True, True]
    record = json.loads(json.dumps(calibration.choice.as_dict()))  # JSON-ready
    assert record == {
        "mode": "auto",
        "xla": True,
        "plain_seconds": 2.0,
        "xla_seconds": 1.0,
        "compile_seconds": 8.0,
        "reason": "",
    }


def test_skip_decides_plain_for_auto_and_keeps_a_decided_choice():
    calibration = xla_choice.Calibration("auto")
    calibration.skip("3 steps left")
    assert not calibration.next_xla()
    assert calibration.choice.summary() == "XLA off (auto: 3 steps left)"
    forced = xla_choice.Calibration("on")
    forced.skip("ignored")
    assert forced.choice.xla


@pytest.mark.parametrize("mode", ["yes", "", "ON", True])
def test_bad_modes_are_one_line_errors(mode):
    with pytest.raises(ValueError, match=r"^must be one of auto, on, off; received: ") as error:
        xla_choice.Calibration(mode)
    assert "\n" not in str(error.value)


# ---- the Trainer ------------------------------------------------------------------------


def _fit(tmp_path, monkeypatch, xla: str, steps: int):
    import tensorflow as tf

    import overfeat_tf
    from overfeat_tf.training import trainer as trainer_lib
    from overfeat_tf.training.recipes import get_recipe

    monkeypatch.setattr(trainer_lib, "XLA_CALIBRATION_MIN_STEPS", 10)
    batch, classes = 4, 3
    size = overfeat_tf.native_input_size("alexnet")
    recipe = dataclasses.replace(get_recipe("alexnet"), batch_size=batch, learning_rate=0.01)
    config = trainer_lib.TrainConfig(
        model_dir=str(tmp_path),
        recipe=recipe,
        steps_per_epoch=steps,
        epochs=1,
        batch_size=batch,
        xla=xla,
        verbose=False,
    )
    trainer = trainer_lib.Trainer(
        config,
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        lambda: overfeat_tf.build_model("alexnet", classes, 0.0625, dropout=0.0, init="he"),
    )
    data = tf.data.Dataset.from_tensors(
        (tf.random.normal((batch, size, size, 3), seed=3), tf.constant([0, 1, 2, 0]))
    ).repeat()
    metrics = trainer.fit(lambda epoch, skip, context: data)
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["xla"] == metrics["xla"]
    return trainer, metrics


def test_trainer_auto_times_both_on_real_steps_and_records_the_choice(tmp_path, monkeypatch):
    trainer, metrics = _fit(tmp_path, monkeypatch, "auto", steps=10)
    assert metrics["step"] == 10  # the 8 timed steps were training steps
    record = metrics["xla"]
    assert record["mode"] == "auto" and record["reason"] == ""
    assert record["xla"] == (record["xla_seconds"] < record["plain_seconds"])
    assert record["compile_seconds"] >= 0
    assert trainer.xla_choice.xla == record["xla"]


def test_trainer_auto_stays_plain_on_runs_too_short_to_pay_back(tmp_path, monkeypatch):
    trainer, metrics = _fit(tmp_path, monkeypatch, "auto", steps=4)
    assert metrics["xla"] == {
        "mode": "auto",
        "xla": False,
        "plain_seconds": None,
        "xla_seconds": None,
        "compile_seconds": None,
        "reason": "4 steps left, too few to time XLA",
    }
    # The compiled version was never traced: no XLA compile was paid.
    assert trainer._train_fns[True].experimental_get_tracing_count() == 0


def test_trainer_off_is_respected_and_train_step_runs_the_choice(tmp_path, monkeypatch):
    trainer, metrics = _fit(tmp_path, monkeypatch, "off", steps=10)
    assert metrics["xla"]["xla"] is False and metrics["xla"]["reason"] == "as asked"
    import tensorflow as tf

    size = 227
    iterator = iter(
        trainer.strategy.distribute_datasets_from_function(
            lambda context: tf.data.Dataset.from_tensors(
                (tf.zeros((4, size, size, 3)), tf.constant([0, 1, 2, 0]))
            ).repeat()
        )
    )
    loss, hits = trainer.train_step(iterator)  # as chosen: plain
    assert loss.shape == () and hits.numpy()[2] == 4
    assert int(trainer.step.numpy()) == 11
    assert trainer._train_fns[True].experimental_get_tracing_count() == 0


_WORKER = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import tensorflow as tf
from tests import test_training as t
from overfeat_tf.training import strategies, trainer as trainer_lib
strategy = strategies.make_strategy("multi_worker")
trainer_lib.XLA_CALIBRATION_MIN_STEPS = 8
images, labels = t._arrays(16, seed=7)

def dataset_fn(epoch, skip, context):
    batch = context.get_per_replica_batch_size(8)
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    data = data.shard(context.num_input_pipelines, context.input_pipeline_id)
    return data.batch(batch).repeat().skip(skip)

trainer = t._trainer(sys.argv[2], strategy, steps_per_epoch=9)
trainer.fit(dataset_fn)
np.savez(sys.argv[3], *[v.numpy() for v in trainer.model.weights])
print(json.dumps(trainer.xla_choice.as_dict()))
"""


@pytest.mark.slow
def test_two_workers_agree_on_the_choice(tmp_path, subprocess_env):
    # Each worker times its own steps; they must still run the same step function (its
    # collectives must match), so both decide on the mean timings.
    import os

    import numpy as np

    from tests.test_training import run_two_workers

    outputs = run_two_workers(_WORKER, tmp_path / "run", tmp_path, subprocess_env, timeout=600)
    choices = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    assert choices[0] == choices[1] and choices[0]["mode"] == "auto"
    assert choices[0]["plain_seconds"] > 0
    chief, worker = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], worker[key])
    assert os.path.exists(tmp_path / "run" / "metrics.json")
