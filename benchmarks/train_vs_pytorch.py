r"""The project's AlexNet training step and inference against PyTorch on the same CPU.

The paper AlexNet (two towers, LRN, 227 input, 1000 classes) at batch 64, timed back to
back in one process with the same thread count:

- training: the project's real step (`Trainer.train_step` on one device: SGD momentum
  0.9, coupled weight decay 5e-4; XLA off and on, and which one `--xla=auto` picks)
  against the same network written in PyTorch (grouped convolutions,
  `LocalResponseNorm`, `Linear` FC layers of the same FLOPs;
  `SGD(momentum=0.9, weight_decay=5e-4)`), eager and under `torch.compile`;
- inference: the project's centre-crop classifier (`CenterEvaluator`; also XLA-compiled)
  against PyTorch eager and compiled, softmax included;
- the ceiling: a 2048x2048 float32 matmul in both, GFLOP/s.

Both networks start from the same weights (copied from Keras into PyTorch, checked to give
the same logits). Every configuration runs `--rounds` times, interleaved, and its best
round is kept: other jobs on the machine only ever slow a round down. The goals: the
project's step at >= 1.25x PyTorch eager, >= 1.0x `torch.compile`, and >= 0.75 of the
machine's matmul FLOP/s (training FLOPs taken as 3x the forward pass's).

    pip install 'overfeat_tf[benchmark]'   # PyTorch
    PYTHONPATH=. python benchmarks/train_vs_pytorch.py
    PYTHONPATH=. python benchmarks/train_vs_pytorch.py --width=0.25 --steps=5 --rounds=3
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable

from absl import app, flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads
from overfeat_tf import flags_common
from overfeat_tf import runtime, xla_choice

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.util import _pywrap_util_port  # noqa: E402

from overfeat_tf.evaluation import CenterEvaluator  # noqa: E402
from overfeat_tf.training import launch  # noqa: E402
from overfeat_tf.training.recipes import get_recipe  # noqa: E402
from overfeat_tf.training.trainer import Trainer  # noqa: E402

try:
    import torch  # noqa: E402
    from torch import nn  # noqa: E402
except ImportError as error:  # an optional benchmark dependency, never a runtime one
    raise SystemExit(
        "This benchmark needs PyTorch: pip install 'overfeat_tf[benchmark]'"
    ) from error

flags.DEFINE_float("width", 1.0, "Channel multiplier (1.0 is the paper's network).")
flags.DEFINE_integer("batch_size", 64, "Images per step.")
flags.DEFINE_integer("threads", 0, "Threads for both frameworks; 0: every core.")
flags.DEFINE_integer("steps", 2, "Timed steps per configuration and round.")
flags.DEFINE_integer("rounds", 2, "Interleaved timing rounds; the best is kept.")
flags.DEFINE_bool("torch_compile", True, "Also time torch.compile.")
flags_common.define_onednn()
FLAGS = flags.FLAGS

MODEL = "alexnet"
NUM_CLASSES = 1000
MATMUL_SIZE = 2048

# (name, goal) per comparison of the project's training step.
GOALS = {"PyTorch eager": 1.25, "torch.compile": 1.0}
PEAK_GOAL = 0.75

Step = Callable[[], object]


class TorchAlexNet(nn.Module):
    """AlexNet as a PyTorch user writes it: NCHW `[b, 3, 227, 227]` -> logits `[b, classes]`.

    The towers are `groups=2` convolutions (fast in PyTorch). `LocalResponseNorm` divides
    alpha by the window size as Caffe does, so the paper's per-element alpha 1e-4 (AlexNet
    section 3.3) is passed as 5 * 1e-4. `channels` holds the Keras model's filter counts
    (conv1..conv5, fc6, fc7), so any `width` builds the same network.
    """

    def __init__(self, channels: list[int], num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        c1, c2, c3, c4, c5, f6, f7 = channels
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        lrn = lambda: nn.LocalResponseNorm(5, alpha=5 * 1e-4, beta=0.75, k=2.0)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 11, stride=4),
            relu(),
            lrn(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c1, c2, 5, padding=2, groups=2),
            relu(),
            lrn(),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(c2, c3, 3, padding=1),
            relu(),
            nn.Conv2d(c3, c4, 3, padding=1, groups=2),
            relu(),
            nn.Conv2d(c4, c5, 3, padding=1, groups=2),
            relu(),
            nn.MaxPool2d(3, 2),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(c5 * 6 * 6, f6),
            relu(),
            nn.Dropout(dropout),
            nn.Linear(f6, f7),
            relu(),
            nn.Linear(f7, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


_KERAS_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


def torch_copy(model: keras.Model) -> TorchAlexNet:
    """A `TorchAlexNet` holding `model`'s weights (HWIO kernels -> OIHW / `[out, C*H*W]`)."""
    layers = [model.get_layer(name) for name in _KERAS_LAYERS]
    net = TorchAlexNet([layer.filters for layer in layers[:-1]], layers[-1].filters)
    targets = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        for layer, target in zip(layers, targets):
            kernel = layer.kernel.numpy().transpose(3, 2, 0, 1)  # [out, in, h, w]
            target.weight.copy_(torch.from_numpy(kernel.reshape(target.weight.shape).copy()))
            target.bias.copy_(torch.from_numpy(layer.bias.numpy()))
    return net


def check_same_network(model: keras.Model, net: TorchAlexNet) -> float:
    """Max logit difference between the two on random images, relative to the logits' size.

    Raises `AssertionError` when the networks disagree (a parameter count or 1e-3).
    """
    keras_params = model.count_params()
    torch_params = sum(p.numel() for p in net.parameters())
    assert keras_params == torch_params, (keras_params, torch_params)
    size = overfeat_tf.native_input_size(MODEL)
    images = np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)
    ours = model(images, training=False).numpy()
    net.eval()
    with torch.no_grad():
        theirs = net(torch.from_numpy(images.transpose(0, 3, 1, 2).copy())).numpy()
    difference = float(np.abs(ours - theirs).max() / np.abs(ours).max())
    assert difference < 1e-3, f"PyTorch and Keras AlexNets disagree: {difference:.2e}"
    return difference


def training_gflop_per_image(model: keras.Model) -> float:
    """3x the forward multiply-adds of the conv layers (FC layers are convs here), GFLOP.

    The backward pass costs about twice the forward (input and weight gradients).
    """
    forward = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            _, h, w, out = layer.output.shape
            kh, kw, fan_in, _ = layer.kernel.shape  # fan_in is already in / groups
            forward += 2 * h * w * out * kh * kw * fan_in
    return 3 * forward / 1e9


# ---- the configurations: each a warmed-up callable that runs one synchronised step ----


def project_train_steps(
    images: tf.Tensor, labels: tf.Tensor
) -> tuple[keras.Model, dict[str, Step]]:
    """The training binary's step (one-device `Trainer.train_step`), XLA off and on."""
    # The training binary's run, on images made here (so no demo defaults apply).
    spec = launch.TrainSpec(
        data="synthetic", model=MODEL, batch_size=FLAGS.batch_size, epochs=1, verbose=False
    )
    recipe = launch.resolve_recipe(spec, MODEL)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    config = launch.train_config(spec, recipe, tempfile.mkdtemp(prefix="train_vs_pytorch_"), 10**9)
    trainer = Trainer(
        config, strategy, lambda: overfeat_tf.build_model(MODEL, NUM_CLASSES, FLAGS.width)
    )
    iterator = iter(
        strategy.distribute_datasets_from_function(
            lambda context: tf.data.Dataset.from_tensors((images, labels)).repeat()
        )
    )
    # What `Trainer.fit` runs per step: fetching the batch, the step, the update.
    steps = {
        f"overfeat_tf, XLA {'on' if xla else 'off'}": lambda xla=xla: float(
            trainer.train_step(iterator, xla=xla)[0]
        )
        for xla in (False, True)
    }
    return trainer.model, steps


def project_inference(model: keras.Model, images: tf.Tensor) -> dict[str, Step]:
    """The centre-crop classifier as evaluation runs it, and the same compiled with XLA."""
    evaluator = CenterEvaluator(model)
    compiled = tf.function(lambda x: tf.nn.softmax(model(x, training=False)), jit_compile=True)
    return {
        "overfeat_tf, XLA off": lambda: evaluator(images).numpy(),
        "overfeat_tf, XLA on": lambda: compiled(images).numpy(),
    }


def torch_steps(net: TorchAlexNet, images: np.ndarray, labels: np.ndarray):
    """PyTorch (train steps, inference steps), eager and compiled when it works."""
    recipe = get_recipe(overfeat_tf.model_info(MODEL).recipe)
    x = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(labels.astype(np.int64))
    optimizer = torch.optim.SGD(
        net.parameters(),
        lr=recipe.learning_rate,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )

    def train_step(forward) -> Step:
        def step():
            net.train()
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(forward(x), y)
            loss.backward()
            optimizer.step()
            return loss.item()

        return step

    def infer_step(forward) -> Step:
        def step():
            net.eval()
            with torch.inference_mode():
                return torch.softmax(forward(x), -1).numpy()

        return step

    train = {"PyTorch eager": train_step(net)}
    infer = {"PyTorch eager": infer_step(net)}
    if FLAGS.torch_compile:
        compiled = torch.compile(net)
        for table, make in ((train, train_step), (infer, infer_step)):
            step = make(compiled)
            try:
                step()  # compiles; failures (no C++ compiler, ...) show here
            except Exception as error:  # noqa: BLE001 -- report any compiler failure, go on
                print(
                    f"torch.compile failed, left out: {type(error).__name__}: "
                    f"{str(error).splitlines()[0] if str(error) else ''}"
                )
                break
            table["torch.compile"] = step
    return train, infer


# ---- timing --------------------------------------------------------------------------


def best_rates(steps: dict[str, Step], per_step: float) -> dict[str, float]:
    """Best rate over interleaved rounds: `per_step` units (images, FLOP) per second."""
    for step in steps.values():
        step()  # warm-up: traces, compiles, allocates
    best = dict.fromkeys(steps, 0.0)
    for round_ in range(FLAGS.rounds):
        order = list(steps) if round_ % 2 == 0 else list(reversed(steps))
        for name in order:
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                steps[name]()
            best[name] = max(best[name], FLAGS.steps * per_step / (time.perf_counter() - start))
    return best


def matmul_steps() -> dict[str, Step]:
    n = MATMUL_SIZE
    a_tf = tf.random.normal((n, n))
    matmul_tf = tf.function(lambda: tf.matmul(a_tf, a_tf))
    a_torch = torch.randn(n, n)
    return {
        "TensorFlow": lambda: matmul_tf().numpy(),
        "PyTorch": lambda: torch.mm(a_torch, a_torch).numpy(),
    }


def print_table(title: str, rates: dict[str, float], gflop_per_image: float, peak: float) -> None:
    print(
        f"\n{title} (batch {FLAGS.batch_size}, best of {FLAGS.rounds} rounds of {FLAGS.steps} steps)"
    )
    print(
        f"  {'configuration':<22} {'img/s':>8} {'GFLOP/s':>8} {'of peak':>8}"
        + "".join(f" {'/ ' + name:>16}" for name in GOALS if name in rates)
    )
    for name, rate in rates.items():
        flops = rate * gflop_per_image
        print(
            f"  {name:<22} {rate:8.1f} {flops:8.1f} {flops / peak:8.2f}"
            + "".join(f" {rate / rates[other]:15.2f}x" for other in GOALS if other in rates)
        )


def print_goals(rates: dict[str, float], gflop_per_image: float, peak: float) -> None:
    ours = max((name for name in rates if name.startswith("overfeat_tf")), key=rates.get)
    print(f"\nGoals, training, for the project's fastest step ({ours}):")
    checks = [
        (f"vs {name}", rates[ours] / rates[name], goal)
        for name, goal in GOALS.items()
        if name in rates
    ]
    checks.append(("of the matmul peak", rates[ours] * gflop_per_image / peak, PEAK_GOAL))
    for label, value, goal in checks:
        verdict = "met" if value >= goal else f"MISSED by {100 * (1 - value / goal):.1f}%"
        print(f"  {label:<22} {value:6.3f} (goal >= {goal:.2f}): {verdict}")
    for name in GOALS:
        if name not in rates:
            print(f"  vs {name}: not measured")


def main(argv: list[str]) -> None:
    del argv
    threads = FLAGS.threads or os.cpu_count()
    tf.config.threading.set_intra_op_parallelism_threads(threads)  # before TF initialises
    torch.set_num_threads(threads)
    keras.utils.set_random_seed(0)
    size = overfeat_tf.native_input_size(MODEL)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(FLAGS.batch_size, size, size, 3)).astype(np.float32)
    labels = rng.integers(0, NUM_CLASSES, FLAGS.batch_size).astype(np.int32)
    images_tf, labels_tf = tf.constant(images), tf.constant(labels)

    model, train = project_train_steps(images_tf, labels_tf)
    net = torch_copy(model)
    difference = check_same_network(model, net)
    torch_train, torch_infer = torch_steps(net, images, labels)
    gflop = training_gflop_per_image(model)
    print(
        f"{MODEL} width {FLAGS.width}, input {size}, batch {FLAGS.batch_size}, {threads} threads\n"
        f"{runtime.cpu_summary()}\n"
        f"TensorFlow {tf.__version__}: oneDNN {overfeat_tf.ONEDNN_STATUS} "
        f"({runtime.onednn_record()['reason']}) "
        f"(kernels {'on' if _pywrap_util_port.IsMklEnabled() else 'off'}); "
        f"PyTorch {torch.__version__}: oneDNN {'on' if torch.backends.mkldnn.enabled else 'off'}\n"
        f"Same weights in both: logits agree to {difference:.1e} (relative); "
        f"{gflop:.2f} GFLOP per training image ({gflop / 3:.2f} forward)"
    )
    matmul = best_rates(matmul_steps(), 2 * MATMUL_SIZE**3 / 1e9)
    peak = max(matmul.values())
    print(
        f"\n{MATMUL_SIZE}^2 float32 matmul, GFLOP/s: "
        + ", ".join(f"{name} {rate:.1f}" for name, rate in matmul.items())
    )
    choice = xla_choice.choose("auto", *train.values())
    print(f"\nThe binary's --xla=auto start-up comparison on this step: {choice.summary()}")
    training = best_rates({**train, **torch_train}, FLAGS.batch_size)
    print_table("Training", training, gflop, peak)
    inference = best_rates({**project_inference(model, images_tf), **torch_infer}, FLAGS.batch_size)
    print_table("Inference", inference, gflop / 3, peak)
    print_goals(training, gflop, peak)


if __name__ == "__main__":
    app.run(main)
