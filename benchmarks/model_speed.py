r"""AlexNet training and inference speed: split towers versus `Conv2D(groups=2)`.

The paper AlexNet (two towers, LRN, 1000 classes) at batch 64, timed side by side in one
run: the project's grouped convolution (one convolution per channel group) against
TensorFlow's native `Conv2D(groups=2)` with the same weights.
Prints images/s and the ratio; the goal is >= 5x for training.

    PYTHONPATH=. python benchmarks/model_speed.py
    PYTHONPATH=. python benchmarks/model_speed.py --width=0.5 --steps=5
"""

from __future__ import annotations

import time

from absl import app, flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads
from overfeat_tf import flags_common
from overfeat_tf import runtime

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

flags.DEFINE_string("model", "alexnet", "Registry name of the model.")
flags.DEFINE_float("width", 1.0, "Channel multiplier (1.0 is the paper's network).")
flags.DEFINE_integer("batch_size", 64, "Images per step.")
flags.DEFINE_integer("steps", 3, "Timed steps per configuration (after 1 warm-up step).")
flags.DEFINE_bool("xla", False, "Compile the steps with XLA.")
flags_common.define_onednn()
FLAGS = flags.FLAGS


def _steps(model: keras.Model):
    """(train_step, predict_step) tf.functions for `model` with plain SGD."""
    optimizer = keras.optimizers.SGD(0.01, momentum=0.9)

    @tf.function(jit_compile=FLAGS.xla)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
            )
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        return loss

    @tf.function(jit_compile=FLAGS.xla)
    def predict_step(images):
        return model(images, training=False)

    return train_step, predict_step


def _images_per_second(fn, *args) -> float:
    fn(*args).numpy()  # trace, compile, warm up
    start = time.perf_counter()
    for _ in range(FLAGS.steps):
        fn(*args).numpy()
    return FLAGS.steps * FLAGS.batch_size / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    del argv
    size = overfeat_tf.native_input_size(FLAGS.model)
    images = tf.random.normal((FLAGS.batch_size, size, size, 3))
    labels = tf.random.uniform((FLAGS.batch_size,), 0, 1000, tf.int32)
    print(
        f"{FLAGS.model} width {FLAGS.width}, batch {FLAGS.batch_size}, "
        f"{runtime.cpu_model()}, oneDNN {overfeat_tf.ONEDNN_STATUS}, "
        f"XLA {FLAGS.xla}, {FLAGS.steps} timed steps"
    )
    results = {}
    for grouped_conv in ("split", "native"):
        model = overfeat_tf.build_model(FLAGS.model, 1000, FLAGS.width, grouped_conv=grouped_conv)
        train_step, predict_step = _steps(model)
        results[grouped_conv] = (
            _images_per_second(train_step, images, labels),
            _images_per_second(predict_step, images),
        )
        print(
            f"  grouped_conv={grouped_conv:<6} train {results[grouped_conv][0]:7.1f} img/s   "
            f"inference {results[grouped_conv][1]:7.1f} img/s",
            flush=True,
        )
    split, native = results["split"], results["native"]
    print(
        f"  split / native: train {split[0] / native[0]:.2f}x, "
        f"inference {split[1] / native[1]:.2f}x (goal: train >= 5x)"
    )


if __name__ == "__main__":
    app.run(main)
