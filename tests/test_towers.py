"""AlexNet's towers on two devices (`overfeat_tf.models.towers`), as the paper trained it.

Two logical CPU devices can only be made before TensorFlow starts its runtime, so the
checks that need them run once in a fresh process (`two_device_report`) and the tests
below read its report. The traffic figures are checked against a hand computation.
"""

from __future__ import annotations

import json
import logging
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import run_dir
from overfeat_tf import transfer
from overfeat_tf.models import tower_traffic, tower_weights, towers
from overfeat_tf.training import recipes
from overfeat_tf.training.trainer import TrainConfig, Trainer
from tests.conftest import project_env, run_module
from tests.conftest import TINY_MODEL as TINY

TWO = ("/CPU:0", "/CPU:1")
# Tiny AlexNet: the paper's geometry (227 input), 1/16 of its channels.
BATCH = 7  # no AlexNet kernel is 7 wide, so [7, ...] tensors are activations
REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent

_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import overfeat_tf  # first: oneDNN
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests import test_towers
test_towers.two_device_report(sys.argv[2])
"""


# ---- what runs in the two-device process ----------------------------------------------


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, 227, 227, 3)).astype("float32")


def _op_devices(graph) -> dict[str, dict[str, int]]:
    """{op type: {device: count}} for the convolutions, matrix multiplies, LRNs and pools
    and their gradients."""
    kinds = (
        "Conv2D",
        "MatMul",
        "Conv2DBackpropFilter",
        "Conv2DBackpropInput",
        "LRN",
        "LRNGrad",
        "MaxPool",
        "MaxPoolGrad",
    )
    counts: dict[str, dict[str, int]] = {}
    for op in graph.get_operations():
        if op.type in kinds:
            devices = counts.setdefault(op.type, {})
            devices[op.device] = devices.get(op.device, 0) + 1
    return counts


def _crossing_bytes(graph, outer: str) -> int:
    """Bytes of batch activations `[BATCH, h, w, c]` that ops read from another device.

    Ops without a device (the function's inputs) count as on `outer`; a tensor read on
    one device by several ops crosses once.
    """

    def device(op):
        return tf.DeviceSpec.from_string(op.device or outer).to_string()

    crossings = set()
    for op in graph.get_operations():
        for tensor in op.inputs:
            if (
                device(op) != device(tensor.op)
                and tensor.shape.rank == 4
                and tensor.shape[0] == BATCH
            ):
                crossings.add(
                    (tensor.name, device(op), tensor.shape.num_elements() * tensor.dtype.size)
                )
    return sum(size for _, _, size in crossings)


def _train(model_dir: str, model_fn, images, labels) -> list[np.ndarray]:
    """Three steps of the project's Trainer on one replica on /CPU:0; the final weights."""
    recipe = recipes.get_recipe("alexnet")
    config = TrainConfig(
        model_dir=model_dir,
        recipe=recipe,
        steps_per_epoch=3,
        epochs=1,
        batch_size=8,
        checkpoint_every=100,
        verbose=False,
        xla="off",
    )
    keras.utils.set_random_seed(1)
    trainer = Trainer(config, tf.distribute.OneDeviceStrategy(TWO[0]), model_fn)

    def dataset_fn(epoch, skip, context):
        return tf.data.Dataset.from_tensor_slices((images, labels)).batch(8).skip(skip)

    trainer.fit(dataset_fn)
    whole = [w for layer in trainer.model.layers for w in tower_weights.whole_weights(layer)]
    return whole, trainer


def _variable_devices(variables) -> dict[str, str]:
    """{variable path: device type and index}."""
    return {v.path: v.value.device.rsplit("/", 1)[-1] for v in variables}


def two_device_report(out_dir: str) -> None:
    """Runs in a process with two logical CPUs; writes report.json, a .keras file and
    its outputs into `out_dir`."""
    out = pathlib.Path(out_dir)
    report = {}
    keras.utils.set_random_seed(0)
    default = overfeat_tf.build_model("alexnet", **TINY)
    placed = overfeat_tf.build_model("alexnet", **TINY, tower_devices=TWO)
    report["placed_type"] = type(placed).__name__
    report["variable_devices"] = _variable_devices(placed.weights)
    # A checkpoint of either placement restores into the other.
    path = tf.train.Checkpoint(model=default).save(str(out / "default" / "ckpt"))
    tf.train.Checkpoint(model=placed).restore(path).assert_existing_objects_matched()
    images = _images(BATCH) * 50
    expected = default(images).numpy()
    report["output_scale"] = float(np.abs(expected).max())
    report["output_diff"] = float(np.abs(placed(images).numpy() - expected).max())
    dropped = overfeat_tf.build_model("alexnet", **{**TINY, "dropout": 0.5}, tower_devices=TWO)
    report["dropout_finite"] = bool(np.isfinite(dropped(images, training=True).numpy()).all())

    fresh = overfeat_tf.build_model("alexnet", **TINY)
    path = tf.train.Checkpoint(model=placed).save(str(out / "placed" / "ckpt"))
    tf.train.Checkpoint(model=fresh).restore(path).assert_existing_objects_matched()
    report["checkpoint_diff"] = float(np.abs(fresh(images).numpy() - expected).max())
    fresh = overfeat_tf.build_model("alexnet", **TINY, tower_devices=TWO)
    # And .keras weights files, both ways.
    placed.save_weights(out / "placed.weights.h5")
    plain = overfeat_tf.build_model("alexnet", **TINY)
    plain.load_weights(out / "placed.weights.h5")
    default.save_weights(out / "default.weights.h5")
    fresh.load_weights(out / "default.weights.h5")
    report["weights_file_diff"] = max(
        float(np.abs(plain(images).numpy() - expected).max()),
        float(np.abs(fresh(images).numpy() - expected).max()),
    )

    # The placed graph: which device runs each op, and which activations cross.
    spec = tf.TensorSpec([BATCH, 227, 227, 3])

    @tf.function
    def forward(x):
        with tf.device(TWO[0]):  # as OneDeviceStrategy runs the model
            return placed(x)

    @tf.function
    def step(x):
        with tf.device(TWO[0]), tf.GradientTape() as tape:
            loss = tf.reduce_sum(placed(x, training=True))
        with tf.device(TWO[0]):
            return tape.gradient(loss, placed.trainable_variables)

    report["forward_crossing"] = _crossing_bytes(forward.get_concrete_function(spec).graph, TWO[0])
    report["step_crossing"] = _crossing_bytes(step.get_concrete_function(spec).graph, TWO[0])

    # Training: the Trainer's steps give the same weights on either placement.
    train_images = _images(24, seed=5) * 50
    labels = np.random.default_rng(5).integers(0, 3, 24).astype("int32")
    one, _ = _train(
        str(out / "one"), lambda: overfeat_tf.build_model("alexnet", **TINY), train_images, labels
    )
    two, trainer = _train(
        str(out / "two"),
        lambda: overfeat_tf.build_model("alexnet", **TINY, tower_devices=TWO),
        train_images,
        labels,
    )
    report["train_relative_diff"] = max(
        float(np.abs(a - b).max() / (np.abs(a).max() + 1e-12)) for a, b in zip(one, two)
    )
    report["weights_moved"] = any(
        not np.array_equal(a, b) for a, b in zip(one, default.get_weights())
    )
    labels_spec = tf.TensorSpec([8], tf.int32)
    grad_graph = (
        trainer._grad_fns[False]
        .get_concrete_function(tf.TensorSpec([8, 227, 227, 3]), labels_spec)
        .graph
    )
    report["op_devices"] = _op_devices(grad_graph)
    report["optimizer_devices"] = _variable_devices(trainer.optimizer.variables)

    placed.save(out / "towers.keras")
    np.save(out / "towers_outputs.npy", placed(images).numpy())
    np.save(out / "images.npy", images)
    (out / "report.json").write_text(json.dumps(report))


# ---- the tests ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_devices(tmp_path_factory) -> tuple[dict, pathlib.Path]:
    out = tmp_path_factory.mktemp("two_devices")
    result = subprocess.run(
        [sys.executable, "-c", _CHILD, str(REPO_ROOT), str(out)],
        check=False,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((out / "report.json").read_text()), out


def test_each_towers_ops_run_on_its_device(two_devices):
    report, _ = two_devices
    assert report["placed_type"] == "TowerModel"
    devices = {
        kind: {d.rsplit("/", 1)[-1]: n for d, n in counts.items()}
        for kind, counts in report["op_devices"].items()
    }
    # Forward and backward of the project's training step: conv1-conv5 halves on each
    # device; fc6 and fc7 halves on each, plus fc8 (the class layer) on the first, as
    # matrix multiplies (forward, and the gradients of input and kernel); two LRNs and
    # three pools per tower. No op is left to the default placement.
    for kind in ("Conv2D", "Conv2DBackpropFilter", "Conv2DBackpropInput"):
        assert devices[kind] == {"device:CPU:0": 5, "device:CPU:1": 5}, kind
    assert devices["MatMul"] == {"device:CPU:0": 9, "device:CPU:1": 6}
    for kind in ("LRN", "LRNGrad"):
        assert devices[kind] == {"device:CPU:0": 2, "device:CPU:1": 2}, kind
    for kind in ("MaxPool", "MaxPoolGrad"):
        assert devices[kind] == {"device:CPU:0": 3, "device:CPU:1": 3}, kind


def test_each_towers_weights_and_momenta_live_on_its_device(two_devices):
    # AlexNet section 3.2: "puts half of the kernels (or neurons) on each GPU".
    report, _ = two_devices
    devices = report["variable_devices"]
    split = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
    expected = {
        f"{layer}/{weight}_tower{i}": f"device:CPU:{i}"
        for layer in split
        for weight in ("kernel", "bias")
        for i in (0, 1)
    }
    expected.update({"fc8/kernel_tower0": "device:CPU:0", "fc8/bias_tower0": "device:CPU:0"})
    assert devices == expected  # every variable of the model
    momenta = {
        path: device for path, device in report["optimizer_devices"].items() if "momentum" in path
    }
    assert len(momenta) == len(expected)
    for path, device in momenta.items():
        assert device == expected[path.split("/")[-1].replace("_", "/", 1)[: -len("_momentum")]]


def test_outputs_and_checkpoints_equal_the_default_placement(two_devices):
    report, _ = two_devices
    # Same weights, same function. 1e-5 of the largest logit: oneDNN blocks a convolution
    # of half the filters differently, so float32 sums may run in another order (measured:
    # 6e-7; a wrong halo or slice is off by 1e-2 or more).
    tolerance = 1e-5 * report["output_scale"]
    assert report["output_diff"] <= tolerance
    assert report["checkpoint_diff"] <= tolerance
    assert report["weights_file_diff"] <= tolerance
    assert report["dropout_finite"]


def test_training_steps_give_the_default_placements_weights(two_devices):
    report, _ = two_devices
    # Three SGD steps. Tolerance 1e-4 of each tensor's largest entry (measured: 1.5e-6),
    # as for MirroredStrategy: the gradient of a slice read by both towers (conv3, fc6,
    # fc7) is summed over towers, another float32 summation order than one convolution's.
    assert report["weights_moved"]
    assert report["train_relative_diff"] < 1e-4


def test_only_the_computed_activations_cross_devices(two_devices):
    report, _ = two_devices
    # Tiny width: the traffic function's per-image bytes times the batch are exactly the
    # batch activations the placed graph reads across devices, forward and in a step.
    model = overfeat_tf.build_model("alexnet", **TINY)
    rows = tower_traffic.activation_exchanges(model)
    forward = sum(row.forward for row in rows)
    backward = sum(row.backward for row in rows)
    assert report["forward_crossing"] == BATCH * forward
    # The step graph holds both passes (the images' row has no backward bytes).
    assert report["step_crossing"] == BATCH * (forward + backward)


def test_keras_file_from_two_devices_loads_here_with_one_warning(two_devices, caplog):
    _, out = two_devices
    with caplog.at_level(logging.WARNING, logger="overfeat_tf"):
        model = keras.saving.load_model(out / "towers.keras")
    warnings = [r for r in caplog.records if "Tower placement" in r.getMessage()]
    assert len(warnings) == 1 and "/CPU:1" in warnings[0].getMessage()
    assert not isinstance(model, towers.TowerModel)  # this process has one CPU device
    np.testing.assert_allclose(
        model(np.load(out / "images.npy")),
        np.load(out / "towers_outputs.npy"),
        rtol=1e-5,
        atol=1e-5,
    )


def test_activation_traffic_per_image_full_width():
    # Hand computation from AlexNet Fig. 2 sizes, float32, two towers.
    model = overfeat_tf.build_model("alexnet")
    got = {
        row.layer: (row.forward, row.backward) for row in tower_traffic.activation_exchanges(model)
    }
    assert got == {
        "conv1": (227 * 227 * 3 * 4, 0),  # the images to the second tower
        "norm1": (2 * 2 * 55 * 55 * 4,) * 2,  # 2 halo channels each way, 55x55
        "norm2": (2 * 2 * 27 * 27 * 4,) * 2,
        "conv3": (13 * 13 * 256 * 4,) * 2,  # each tower's 128 pool2 channels to the other
        "fc6": (6 * 6 * 256 * 4,) * 2,  # each tower's 128 pool5 channels to the other
        "fc7": (4096 * 4,) * 2,  # each tower's 2048 fc6 outputs to the other
        "fc8": (2048 * 4,) * 2,  # the second tower's 2048 fc7 outputs to the first
    }


def test_tower_count_and_bad_tower_devices():
    assert overfeat_tf.model_info("alexnet").tower_count == 2
    assert overfeat_tf.model_info("zfnet").tower_count == 1
    with pytest.raises(ValueError, match="zfnet has no towers"):
        overfeat_tf.build_model("zfnet", 3, 0.0625, tower_devices=TWO)
    with pytest.raises(ValueError, match="one device per tower"):
        overfeat_tf.build_model("alexnet", **TINY, tower_devices=("/CPU:0",) * 3)


def test_missing_device_falls_back_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="overfeat_tf"):
        model = overfeat_tf.build_model("alexnet", **TINY, tower_devices=("/CPU:0", "/GPU:7"))
    assert not isinstance(model, towers.TowerModel)
    warnings = [r.getMessage() for r in caplog.records if "Tower placement" in r.getMessage()]
    assert len(warnings) == 1 and "no /GPU:7" in warnings[0]


def _train_binary(tiny_data, model_dir, *flags):
    return run_module(
        "overfeat_tf.bin.train",
        f"--data=tfrecord:{tiny_data}",
        f"--model_dir={model_dir}",
        "--width=0.0625",
        "--batch_size=8",
        "--init=he",
        "--epochs=1",
        "--max_steps=2",
        "--noexport",
        "--dropout=0",
        *flags,
        timeout=300,
    )


def test_train_binary_places_the_towers_on_two_cpus(tiny_data, tmp_path):
    result = _train_binary(tiny_data, tmp_path, "--model=alexnet", "--tower_devices=/CPU:0,/CPU:1")
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((tmp_path / "model.json").read_text())
    assert config["build_kwargs"]["tower_devices"] == list(TWO)
    assert json.loads((tmp_path / "metrics.json").read_text())["step"] == 2


@pytest.mark.parametrize(
    "flags,message",
    [
        (
            ["--model=alexnet", "--tower_devices=/CPU:0,/CPU:1", "--strategy=mirrored"],
            "--tower_devices runs one replica",
        ),
        # One case in the fast tier: each is a fresh TensorFlow process.
        pytest.param(
            ["--model=zfnet", "--tower_devices=/CPU:0,/CPU:1"],
            "zfnet has 1 tower(s)",
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--model=alexnet", "--tower_devices=/GPU:0,/GPU:1"],
            "--tower_devices: no /GPU:0",
            marks=pytest.mark.slow,
        ),
    ],
)
def test_bad_tower_flags_are_one_line_errors(tiny_data, tmp_path, flags, message):
    result = _train_binary(tiny_data, tmp_path, *flags)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("overfeat-train:")]
    assert len(errors) == 1 and message in errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_transfer_from_a_tower_run_starts_with_default_placement(tmp_path):
    run_dir.write_config(
        str(tmp_path),
        name="alexnet",
        build_kwargs={**TINY, "tower_devices": list(TWO)},
        class_names=["a", "b", "c"],
    )
    name, kwargs = transfer.transfer_build_kwargs(str(tmp_path), 5)
    assert name == "alexnet" and kwargs == {**TINY, "num_classes": 5}
