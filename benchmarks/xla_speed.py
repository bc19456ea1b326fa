r"""XLA against the plain graph on each path the project runs, and what `auto` picks.

For one model and width, in one run:

- training, batch `--batch_size`: `Trainer.train_step` plain and XLA-compiled; plain
  Keras (`compile` + `train_on_batch`, the step `fit` runs) with `jit_compile=False`,
  which is what Keras 3's default "auto" resolves to on a CPU-only machine, and True;
- centre-crop inference, same batch: `CenterEvaluator` plain and compiled;
- dense evaluation (the model's six scales, flips) of whole images of `--dense_sizes`:
  `DenseEvaluator` plain and compiled (each scaled image padded to its bucket), with
  the number of XLA compiles and the time they took.

Rates are the best of `--rounds` interleaved rounds (other jobs only ever slow a round
down); each pair ends with its ratio and the choice `xla_choice.choose("auto", ...)`
makes on it, the start-up comparison the binaries run.

    PYTHONPATH=. python benchmarks/xla_speed.py --model=alexnet --width=1.0
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable

from absl import app, flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads
from overfeat_tf import flags_common
from overfeat_tf import evaluation, runtime, xla_choice
from overfeat_tf.evaluation import dense

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from overfeat_tf.training import launch  # noqa: E402
from overfeat_tf.training.trainer import Trainer  # noqa: E402

flags.DEFINE_enum("model", "alexnet", list(overfeat_tf.MODEL_NAMES), "Model to time.")
flags.DEFINE_float("width", 1.0, "Channel multiplier (1.0 is the paper's network).")
flags.DEFINE_integer("batch_size", 64, "Images per training / centre-crop step.")
flags.DEFINE_list("dense_sizes", ["256x341", "341x256"], "HxW of the dense evaluator's images.")
flags.DEFINE_integer("steps", 2, "Timed calls per configuration and round.")
flags.DEFINE_integer("rounds", 2, "Interleaved rounds; the best is kept.")
flags_common.define_onednn()
FLAGS = flags.FLAGS

Call = Callable[[], object]


def best_rates(calls: dict[str, Call], units: float) -> dict[str, float]:
    """`units` per second of each warmed-up call, best of interleaved rounds."""
    for call in calls.values():
        call()
    best = dict.fromkeys(calls, 0.0)
    for round_ in range(FLAGS.rounds):
        for name in list(calls) if round_ % 2 == 0 else list(reversed(calls)):
            start = time.perf_counter()
            for _ in range(FLAGS.steps):
                calls[name]()
            best[name] = max(best[name], FLAGS.steps * units / (time.perf_counter() - start))
    return best


def report(title: str, rates: dict[str, float], plain: str, compiled: str, unit: str) -> None:
    print(f"\n{title}")
    for name, rate in rates.items():
        print(f"  {name:<36} {rate:8.2f} {unit}")
    print(f"  XLA / plain: {rates[compiled] / rates[plain]:.2f}x")


def training(images: tf.Tensor, labels: tf.Tensor, num_classes: int) -> None:
    # The training binary's run, on images made here (so no demo defaults apply).
    spec = launch.TrainSpec(
        data="synthetic", model=FLAGS.model, batch_size=FLAGS.batch_size, epochs=1, verbose=False
    )
    recipe = launch.resolve_recipe(spec, FLAGS.model)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    config = launch.train_config(spec, recipe, tempfile.mkdtemp(prefix="xla_speed_"), 10**9)
    build = lambda: overfeat_tf.build_model(FLAGS.model, num_classes, FLAGS.width)  # noqa: E731
    trainer = Trainer(config, strategy, build)
    iterator = iter(
        strategy.distribute_datasets_from_function(
            lambda context: tf.data.Dataset.from_tensors((images, labels)).repeat()
        )
    )
    calls = {
        f"Trainer.train_step, XLA {'on' if xla else 'off'}": lambda xla=xla: float(
            trainer.train_step(iterator, xla=xla)[0]
        )
        for xla in (False, True)
    }
    for jit in (False, True):
        model = build()
        model.compile(
            optimizer=keras.optimizers.SGD(recipe.learning_rate, momentum=recipe.momentum),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=jit,
        )
        calls[f"Keras train_on_batch, jit_compile={jit}"] = lambda model=model: (
            model.train_on_batch(images, labels)
        )
    probe = build()
    probe.compile(optimizer="sgd", loss="mse")  # jit_compile defaults to "auto"
    choice = xla_choice.choose("auto", *list(calls.values())[:2])
    rates = best_rates(calls, FLAGS.batch_size)
    report(f"Training, batch {FLAGS.batch_size}", rates, *list(rates)[:2], "img/s")
    keras_names = list(rates)[2:]
    print(
        f"  Keras jit_compile=True / False: {rates[keras_names[1]] / rates[keras_names[0]]:.2f}x;"
        f" Keras' default jit_compile='auto' resolved to {probe.jit_compile} here"
    )
    print(f"  --xla=auto: {choice.summary()}")


def centre_crop(images: tf.Tensor, model: keras.Model) -> None:
    evaluators = {xla: evaluation.CenterEvaluator(model, xla=xla) for xla in ("off", "on")}
    calls = {
        f"CenterEvaluator, XLA {xla}": lambda e=e: e(images).numpy()
        for xla, e in evaluators.items()
    }
    choice = xla_choice.choose("auto", *calls.values())
    rates = best_rates(calls, FLAGS.batch_size)
    report(f"Centre-crop inference, batch {FLAGS.batch_size}", rates, *rates, "img/s")
    print(f"  --xla=auto: {choice.summary('image')}")


def dense_evaluation(model: keras.Model) -> None:
    sizes = dense.parse_scales(FLAGS.dense_sizes)
    images = [tf.random.stateless_normal([1, h, w, 3], [h, w]) for h, w in sizes]
    evaluators = {xla: dense.DenseEvaluator(model, xla=xla) for xla in ("off", "on")}
    first = {}
    for xla, evaluator in evaluators.items():
        start = time.perf_counter()
        for image in images:
            evaluator(image).numpy()
        first[xla] = time.perf_counter() - start
    calls = {
        f"DenseEvaluator, XLA {xla}": lambda e=e: [e(image).numpy() for image in images]
        for xla, e in evaluators.items()
    }
    choice = xla_choice.choose("auto", *calls.values())
    rates = best_rates(calls, len(images))
    report(
        f"Dense evaluation, {len(evaluators['on'].scales)} scales, flips, images "
        f"{', '.join(FLAGS.dense_sizes)}",
        rates,
        *rates,
        "img/s",
    )
    compiles = len(evaluators["on"].compiled_shapes)
    print(
        f"  XLA compiles: {compiles} (one per padded shape); first pass over the images "
        f"{first['on']:.1f} s compiled vs {first['off']:.1f} s plain"
    )
    print(f"  --xla=auto: {choice.summary('pass')}")


def main(argv: list[str]) -> None:
    del argv
    keras.utils.set_random_seed(0)
    size = overfeat_tf.native_input_size(FLAGS.model)
    num_classes = 1000
    rng = np.random.default_rng(0)
    images = tf.constant(rng.normal(size=(FLAGS.batch_size, size, size, 3)).astype(np.float32))
    labels = tf.constant(rng.integers(0, num_classes, FLAGS.batch_size).astype(np.int32))
    print(
        f"{FLAGS.model} width {FLAGS.width}, CPU: {runtime.cpu_model()}, TensorFlow "
        f"{tf.__version__}, oneDNN {overfeat_tf.ONEDNN_STATUS}"
    )
    training(images, labels, num_classes)
    model = overfeat_tf.build_model(FLAGS.model, num_classes, FLAGS.width)
    centre_crop(images, model)
    dense_evaluation(model)


if __name__ == "__main__":
    app.run(main)
