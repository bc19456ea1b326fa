"""The training loop and binary: strategies, resume after SIGKILL, NaN stop, flag errors."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf.training import launch, recipes, strategies
from overfeat_tf.training.trainer import TrainConfig, Trainer, TrainingDiverged
from tests.conftest import TINY_MODEL as TINY
from tests.conftest import run_module

# Tiny AlexNet: geometry of the paper, 1/16 of its channels.


def _arrays(num, seed=0, size=227):
    rng = np.random.default_rng(seed)
    images = rng.normal(scale=50, size=(num, size, size, 3)).astype("float32")
    return images, rng.integers(0, 3, size=num).astype("int32")


def _trainer(model_dir, strategy, *, steps_per_epoch=4, epochs=1, checkpoint_every=2):
    recipe = recipes.get_recipe("alexnet")
    config = TrainConfig(
        model_dir=str(model_dir),
        recipe=recipe,
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        batch_size=8,
        checkpoint_every=checkpoint_every,
        verbose=False,
    )
    keras.utils.set_random_seed(1)
    return Trainer(config, strategy, lambda: overfeat_tf.build_model("alexnet", **TINY))


def _in_memory(images, labels):
    def dataset_fn(epoch, skip, context):
        batch = context.get_per_replica_batch_size(8)
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch).skip(skip)

    return dataset_fn


def test_each_next_epochs_iterator_is_built_while_the_current_epoch_trains(tmp_path):
    images, labels = _arrays(32, seed=2)
    data, built = _in_memory(images, labels), []

    def recording(epoch, skip, context):
        built.append((epoch, skip, threading.current_thread().name))
        return data(epoch, skip, context)

    metrics = _trainer(tmp_path, strategies.make_strategy("one_device"), epochs=3).fit(recording)
    assert (metrics["step"], metrics["epochs"]) == (12, 3)
    assert [(epoch, skip) for epoch, skip, _ in built] == [(0, 0), (1, 0), (2, 0)]
    first, *later = [thread for _, _, thread in built]
    assert first == threading.current_thread().name
    assert all(thread.startswith("input-ahead") for thread in later)


def test_divergence_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    images, labels = _arrays(32)
    trainer = _trainer(tmp_path, strategies.make_strategy("one_device"), epochs=2)

    def poison(epoch, history):
        # NaN in every logit: whatever a kernel does with NaN, the loss cannot be finite.
        trainer.model.get_layer("fc8").bias.assign(np.full([3], np.nan, np.float32))

    with pytest.raises(TrainingDiverged, match=r"Loss is nan.* at step 5 .*ckpt-4"):
        trainer.fit(_in_memory(images, labels), on_epoch_end=poison)
    assert tf.train.latest_checkpoint(str(tmp_path)).endswith("ckpt-4")
    restored = _trainer(tmp_path, strategies.make_strategy("one_device"), epochs=2)
    assert int(restored.step) == 4
    assert all(np.isfinite(v.numpy()).all() for v in restored.model.weights)


# Slow: two more processes; the fast tier runs the divergence test itself.
@pytest.mark.slow
@pytest.mark.parametrize("onednn", ["0", "1"])
def test_divergence_is_caught_with_onednn_off_and_on(onednn, subprocess_env):
    """oneDNN is decided when TensorFlow loads: each setting runs in its own process."""
    test = f"{__file__}::test_divergence_stops_and_keeps_the_last_good_checkpoint"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        env={**subprocess_env, "TF_ENABLE_ONEDNN_OPTS": onednn},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def test_a_log_file_gets_one_line_per_epoch(tmp_path, capsys):
    images, labels = _arrays(32, seed=2)
    trainer = _trainer(tmp_path, strategies.make_strategy("one_device"), epochs=3)
    trainer.config.verbose = True
    trainer.fit(_in_memory(images, labels))
    out = capsys.readouterr().out  # captured: not a terminal
    assert "\r" not in out and "━" not in out  # no progress bar
    lines = [line for line in out.splitlines() if not line.startswith("Training step:")]
    assert [line.split(":")[0] for line in lines] == ["Epoch 1", "Epoch 2", "Epoch 3"]


def test_epoch_end_evaluation_and_metrics_file(tmp_path):
    images, labels = _arrays(32, seed=3)
    trainer = _trainer(tmp_path, strategies.make_strategy("one_device"))

    def eval_fn(context):
        return tf.data.Dataset.from_tensor_slices((images[:12], labels[:12])).batch(5)

    metrics = trainer.fit(_in_memory(images, labels), eval_fn)
    assert metrics["step"] == 4 and metrics["epochs"] == 1
    assert metrics["val_examples"] == 12
    assert 0 <= metrics["val_top1_error"] <= 100 and metrics["val_top5_error"] == 0  # 3 classes
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["step"] == 4


def test_max_steps_mid_epoch_resumes_and_a_finished_run_keeps_its_metrics(tmp_path):
    images, labels = _arrays(32, seed=4)
    data = _in_memory(images, labels)

    def run(max_steps):
        trainer = _trainer(tmp_path, strategies.make_strategy("one_device"))
        trainer.config.max_steps = max_steps
        return trainer.fit(data)

    # Stopped at step 2 of a 4-step epoch: the epoch stays open...
    stopped = run(2)
    assert (stopped["step"], stopped["epochs"]) == (2, 0)
    # ...so a larger budget continues it (it used to skip -2 batches and fail),
    continued = run(3)
    assert (continued["step"], continued["epochs"]) == (3, 0)
    finished = run(None)
    assert (finished["step"], finished["epochs"]) == (4, 1) and "top1_error" in finished
    # and a rerun of the finished run trains nothing and keeps its metrics.
    assert run(None) == finished
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f) == finished


_EQUIVALENCE = """
import json, sys
import keras
import numpy as np
import tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
sys.path.insert(0, sys.argv[1])
from tests import test_training as t
from overfeat_tf.training import strategies
images, labels = t._arrays(24, seed=5)
weights = {}
for name in ("one_device", "mirrored"):
    strategy = strategies.make_strategy(name)
    trainer = t._trainer(sys.argv[2] + "/" + name, strategy, steps_per_epoch=3)
    trainer.fit(t._in_memory(images, labels))
    weights[name] = [v.numpy() for v in trainer.model.weights]
    print(name, strategy.num_replicas_in_sync)
import dataclasses, overfeat_tf
from overfeat_tf.training.trainer import Trainer, TrainConfig
config = dataclasses.replace(t._trainer(sys.argv[2] + "/x", strategy).config, batch_size=7)
try:
    Trainer(config, strategy, lambda: overfeat_tf.build_model("alexnet", **t.TINY))
except ValueError as e:
    print("batch error:", e)
diff = max(float(np.abs(a - b).max() / (np.abs(a).max() + 1e-12))
           for a, b in zip(weights["one_device"], weights["mirrored"]))
print(json.dumps({"relative_diff": diff}))
"""


def test_mirrored_on_two_devices_equals_one_device(tmp_path, subprocess_env):
    # Same global batch of 8: two replicas of 4 give the same gradient as one of 8,
    # up to float32 summation order. Tolerance: 1e-4 of each tensor's largest entry.
    out = subprocess.run(
        [sys.executable, "-c", _EQUIVALENCE, str(_repo_root()), str(tmp_path)],
        check=True,
        capture_output=True,
        text=True,
        env=subprocess_env,
    ).stdout
    assert "mirrored 2" in out
    assert "batch error: batch_size 7 is not divisible by the 2 replicas" in out
    assert json.loads(out.strip().splitlines()[-1])["relative_diff"] < 1e-4


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_command(data, model_dir, *extra):
    return [
        sys.executable,
        "-m",
        "overfeat_tf.bin.train",
        f"--data=tfrecord:{data}",
        f"--model_dir={model_dir}",
        "--model=alexnet",
        "--width=0.0625",
        "--batch_size=8",
        "--init=he",
        "--epochs=2",
        "--checkpoint_every=1",
        "--noexport",
        "--deterministic",
        "--dropout=0",
        *extra,
    ]


@pytest.mark.slow
def test_sigkill_then_restart_resumes_where_it_stopped(tiny_data, tmp_path, subprocess_env):
    # 48 images / batch 8 = 6 steps per epoch, 2 epochs, a checkpoint every step.
    reference = tmp_path / "reference"
    subprocess.run(
        _train_command(tiny_data, reference), check=True, env=subprocess_env, capture_output=True
    )
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(tiny_data, killed),
        env=subprocess_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def latest_step() -> int:
        # The checkpoint state file, not a checkpoint's own files: a kill between writing
        # ckpt-3 and recording it resumes, rightly, from ckpt-2.
        path = tf.train.latest_checkpoint(str(killed))
        return int(path.rsplit("-", 1)[1]) if path else 0

    deadline = time.time() + 120
    while latest_step() < 3:
        assert process.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed_step = latest_step()
    assert 3 <= resumed_step < 12
    out = subprocess.run(
        _train_command(tiny_data, killed),
        check=True,
        env=subprocess_env,
        capture_output=True,
        text=True,
    ).stdout
    assert f"at step {resumed_step}" in out
    with open(killed / "metrics.json") as f:
        assert json.load(f)["step"] == 12
    # Same step counter, optimizer state and data position: the same final weights.
    final = {}
    for run in (reference, killed):
        model, _ = run_dir.restore_model(str(run))
        final[run.name] = model.get_weights()
    for a, b in zip(final["reference"], final["killed"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("recipe", [None, "quick"])
def test_a_paper_recipe_on_a_small_set_points_to_quick(recipe, tiny_data, tmp_path, capsys):
    # In process: launch.run is what overfeat-train calls with its flags.
    launch.run(
        launch.TrainSpec(
            data=f"tfrecord:{tiny_data}",
            model_dir=str(tmp_path),
            model="alexnet",
            width=0.0625,
            batch_size=8,
            init="he",
            dropout=0.0,
            max_steps=1,
            recipe=recipe,
        )
    )
    out = capsys.readouterr().out
    hints = [line for line in out.splitlines() if "--recipe=quick" in line]
    if recipe is None:  # the model's paper recipe, on 48 images
        assert len(hints) == 1 and "alexnet paper recipe" in hints[0] and "48" in hints[0]
        assert out.index(hints[0]) < out.index("Epoch 1")  # at start
    else:
        assert hints == []


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--model=vgg"], "--model"),
        # One case in the fast tier: each is a fresh TensorFlow process.
        pytest.param(["--data=tfrecord:/nonexistent/dir"], "--data", marks=pytest.mark.slow),
        pytest.param(["--data=imagenet"], "--data", marks=pytest.mark.slow),
        pytest.param(["--epochs=0"], "--epochs", marks=pytest.mark.slow),
    ],
)
def test_bad_flags_are_one_line_errors(flags, message, tmp_path, subprocess_env):
    result = run_module(
        "overfeat_tf.bin.train", f"--model_dir={tmp_path}", *flags, env=subprocess_env, timeout=120
    )
    assert result.returncode != 0
    # Ours: "overfeat-train: --flag=...: why"; absl's: "FATAL Flags parsing error: flag --flag=...".
    errors = [
        line
        for line in result.stderr.splitlines()
        if line.startswith(("overfeat-train:", "FATAL Flags parsing error"))
    ]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


_WORKER = """
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from tests import test_training as t
from overfeat_tf.training import strategies
strategy = strategies.make_strategy("multi_worker")
images, labels = t._arrays(32, seed=7)

def dataset_fn(epoch, skip, context):
    import tensorflow as tf
    batch = context.get_per_replica_batch_size(8)
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    data = data.shard(context.num_input_pipelines, context.input_pipeline_id)
    return data.batch(batch).skip(skip)

trainer = t._trainer(sys.argv[2], strategy, steps_per_epoch=2)
trainer.fit(dataset_fn)
np.savez(sys.argv[3], *[v.numpy() for v in trainer.model.weights])
print("chief" if strategies.is_chief(strategy) else "worker", strategy.num_replicas_in_sync)
"""


def _free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def run_two_workers(worker_script, model_dir, tmp_path, env, timeout):
    """Runs `worker_script` (argv: repo root, model_dir, output .npz) as the two workers
    of a local MultiWorkerMirroredStrategy cluster; returns their stdouts, chief first."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in _free_ports(2)]}
    processes = []
    for index in range(2):
        worker_env = dict(env)
        worker_env["TF_CONFIG"] = json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}
        )
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    worker_script,
                    _repo_root(),
                    str(model_dir),
                    str(tmp_path / f"worker{index}.npz"),
                ],
                env=worker_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [p.communicate(timeout=timeout) for p in processes]
    for process, (_, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
    return [out for out, _ in outputs]


@pytest.mark.slow
def test_two_workers_train_identically_and_only_the_chief_writes(tmp_path, subprocess_env):
    model_dir = tmp_path / "run"
    outputs = run_two_workers(_WORKER, model_dir, tmp_path, subprocess_env, timeout=300)
    assert outputs[0].split()[-2:] == ["chief", "2"]
    assert outputs[1].split()[-2:] == ["worker", "2"]
    chief, worker = (np.load(tmp_path / f"worker{i}.npz") for i in range(2))
    for key in chief.files:
        np.testing.assert_array_equal(chief[key], worker[key])
    # One writer: the chief's checkpoints and summaries; the worker's scratch is gone.
    names = sorted(os.listdir(model_dir))
    assert "checkpoint" in names and "train" in names and "metrics.json" in names
    assert not [n for n in names if n.startswith(".scratch")], names
    assert tf.train.latest_checkpoint(str(model_dir)).endswith("ckpt-2")
