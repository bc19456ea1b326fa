"""Training-pipeline throughput versus decode-only throughput of the same files.

Generates ImageNet-like JPEGs (500x375, quality 90, photo-like detail, about the size
of ImageNet files) as TFRecord shards, once at the original size and once pre-resized
to shorter side 256 (as `overfeat-convert --resize_shorter=256` writes them), then
times, in one run and on the same files:
  decode-only: read + parse + full `decode_image`, batched;
  train:       `build_dataset(training=True)` (AlexNet recipe: fused crop decode,
               resize, flip, PCA lighting, normalisation), batched.
Three ways, each on both: per epoch (a fresh iterator each pass, passes alternated),
per epoch with each pass's iterator built warm during the previous pass (as the trainer
does), and steady state (one iterator). Goals: train >= 0.7x decode-only per epoch,
>= 0.8x in steady state. Also the wait for the first batch of a training iterator built
ahead and left idle, cold and warm (`pipelines.ahead.warm`).

  python3 benchmarks/pipeline_speed.py --num_images=512 --epochs=3
"""

import os
import tempfile
import time

from absl import app, flags

from overfeat_tf import runtime  # first: turns oneDNN on before TensorFlow loads

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import pipelines
from pipelines import ahead
from pipelines import convert
from pipelines import decode
from pipelines import sources
from pipelines import testing

FLAGS = flags.FLAGS
flags.DEFINE_integer("num_images", 512, "Images generated.", lower_bound=64)
flags.DEFINE_integer("epochs", 3, "Timed passes (after one warm-up pass).", lower_bound=1)
flags.DEFINE_integer("batch_size", 64, "Batch size.", lower_bound=1)
flags.DEFINE_string("work_dir", None, "Where the shards go (default: a temp dir).")
flags.DEFINE_list("threads", ["1", "2"], "tf.data thread-pool sizes to measure.")
flags.DEFINE_list(
    "sizes",
    ["original", "pre-resized"],
    "Which files: original 500x375 and/or pre-resized to shorter side 256.",
)


def photo_like(seed: int, height: int = 375, width: int = 500) -> np.ndarray:
    """uint8 [h, w, 3]: gradients plus blurred noise; compresses to ~100 KB at q90."""
    rng = np.random.default_rng(seed)
    base = testing.smooth_image(height, width, seed).astype(np.float32)
    noise = rng.normal(0, 40, (height // 2, width // 2, 3)).repeat(2, 0).repeat(2, 1)
    noise = np.pad(noise, ((0, height - noise.shape[0]), (0, width - noise.shape[1]), (0, 0)))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def write_shards(directory: str, resize_shorter: int) -> float:
    """Writes the benchmark images; returns their mean file size in KB."""
    records, sizes = [], []
    for i in range(FLAGS.num_images):
        jpeg = testing.encode(photo_like(i), quality=90)
        if resize_shorter:
            jpeg, _, _ = convert.to_rgb_jpeg(jpeg, resize_shorter, quality=90)
        sizes.append(len(jpeg))
        records.append(testing.example(jpeg, f"img{i}.JPEG", label=i % 10))
    testing.write_records(directory, "train", records, num_shards=8)
    sources.write_labels_file(directory, [(f"c{i}", f"c{i}") for i in range(10)])
    return float(np.mean(sizes)) / 1024


def _with_threads(dataset: tf.data.Dataset, threads: int) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    return dataset.with_options(options)


def per_epoch(datasets: dict[str, tf.data.Dataset]) -> dict[str, float]:
    """Images/s over FLAGS.epochs passes, a fresh iterator each, after one warm-up pass.

    Passes alternate between the datasets, so that load from other processes on a
    shared machine falls on all of them alike and the ratio stays meaningful.
    """
    seconds = dict.fromkeys(datasets, 0.0)
    counts = dict.fromkeys(datasets, 0)
    for epoch in range(FLAGS.epochs + 1):
        for name, dataset in datasets.items():
            start, count = time.perf_counter(), 0
            for images, *_ in dataset:
                count += int(images.shape[0])
            if epoch:  # Epoch 0 warms up (tracing, file cache, autotuning).
                seconds[name] += time.perf_counter() - start
                counts[name] += count
    return {name: counts[name] / seconds[name] for name in datasets}


def per_epoch_ahead(datasets: dict[str, tf.data.Dataset]) -> dict[str, float]:
    """Images/s over FLAGS.epochs passes, a fresh iterator each, built (and filling its
    buffers) while the previous pass is read (`pipelines.ahead`, as the trainer builds each
    epoch's iterator), after one warm-up pass; one dataset at a time."""
    rates = {}
    for name, dataset in datasets.items():
        start, count = 0.0, 0
        warm = ahead.warm(dataset)
        with ahead.Ahead(lambda epoch, warm=warm: iter(warm)) as iterators:
            for epoch in range(FLAGS.epochs + 1):
                if epoch == 1:  # Epoch 0 warms up (tracing, file cache, autotuning).
                    start, count = time.perf_counter(), 0
                iterator = iterators.take(epoch)
                if epoch < FLAGS.epochs:
                    iterators.prepare(epoch + 1)
                for images, *_ in iterator:
                    count += int(images.shape[0])
        rates[name] = count / (time.perf_counter() - start)
    return rates


def first_batch_after_idle(dataset: tf.data.Dataset, idle: float) -> float:
    """Milliseconds for the first batch of an iterator left idle for `idle` seconds after
    it was built (how long an epoch built ahead still waits at its start); median of 3."""
    waits = []
    for _ in range(3):
        iterator = iter(dataset)
        time.sleep(idle)
        start = time.perf_counter()
        next(iterator)
        waits.append(1e3 * (time.perf_counter() - start))
        del iterator
    return float(np.median(waits))


def steady_state(datasets: dict[str, tf.data.Dataset], batches: int) -> dict[str, float]:
    """Images/s of one iterator over the repeated data, timed over FLAGS.epochs * `batches`
    batches after `batches` of warm-up; one dataset at a time, so that no other
    iterator's prefetching runs meanwhile."""
    rates = {}
    for name, dataset in datasets.items():
        iterator = iter(dataset.repeat())
        for _ in range(batches):
            next(iterator)
        start, count = time.perf_counter(), 0
        for _ in range(FLAGS.epochs * batches):
            count += int(next(iterator)[0].shape[0])
        rates[name] = count / (time.perf_counter() - start)
        del iterator
    return rates


def decode_only(source: sources.Source) -> tf.data.Dataset:
    """Read, parse and fully decode each image; yields its shape (images differ in
    size, and the shape depends on the decode, so it cannot be skipped)."""
    return (
        source.records("train")
        .map(
            lambda r: (tf.shape(decode.decode_image(r["encoded"])), r["label"]),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .batch(FLAGS.batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def main(argv: list[str]) -> None:
    del argv
    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="pipeline_speed_")
    print(runtime.cpu_summary())
    print(
        f"{FLAGS.num_images} images, batch {FLAGS.batch_size}, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'files':<12} {'threads':>7} {'way':<13} {'decode img/s':>12} "
        f"{'train img/s':>11} {'ratio':>6}"
    )
    batches = FLAGS.num_images // FLAGS.batch_size
    for label, resize in (("original", 0), ("pre-resized", 256)):
        if label not in FLAGS.sizes:
            continue
        directory = os.path.join(work_dir, f"resize{resize}")
        write_shards(directory, resize)
        source = pipelines.open_source(f"tfrecord:{directory}")
        train = pipelines.build_dataset(
            source,
            "train",
            batch_size=FLAGS.batch_size,
            training=True,
            crop_size=227,
            mean=pipelines.IMAGENET_MEAN_RGB,
            std=(58.4, 57.1, 57.4),
            seed=0,
        )
        for threads in map(int, FLAGS.threads):
            datasets = {
                "decode": _with_threads(decode_only(source), threads),
                "train": _with_threads(train, threads),
            }
            for way, rates in (
                ("per epoch", per_epoch(datasets)),
                ("epoch, ahead", per_epoch_ahead(datasets)),
                ("steady state", steady_state(datasets, batches)),
            ):
                print(
                    f"{label:<12} {threads:>7} {way:<13} {rates['decode']:>12.1f} "
                    f"{rates['train']:>11.1f} {rates['train'] / rates['decode']:>6.2f}"
                )
            idle = 1.5
            cold, warm = (
                first_batch_after_idle(d, idle)
                for d in (datasets["train"], ahead.warm(datasets["train"]))
            )
            print(
                f"{label:<12} {threads:>7} training iterator built, idle {idle} s, first "
                f"batch: {cold:.0f} ms, built warm: {warm:.0f} ms"
            )


if __name__ == "__main__":
    app.run(main)
