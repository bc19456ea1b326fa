r"""Times the commands a PASCAL VOC user runs, raw folder to mAP, on a VOC folder it makes.

The folder follows VOC 2007's layout (JPEGImages/, Annotations/, ImageSets/Main/
train, val, test) and holds the embedded data set's detection images: its
`detection_train` images become `train` (three quarters) and `val`, its
`detection_validation` images `test`. Objects smaller than `--difficult_area` of their
image are marked `difficult`, standing in for VOC's hand-set flag. Then, each timed:

    overfeat-convert --voc=<dir>/VOC2007 --output_dir=<dir>/data
    overfeat-train --data=tfrecord:<dir>/data --split=detection_train \
        --eval_split=detection_tuning --model_dir=<dir>/run --recipe=quick ...
    overfeat-train-boxes --task=detection --classifier_dir=<dir>/run --data=tfrecord:...
    overfeat-evaluate --model_dir=<dir>/run --data=tfrecord:<dir>/data --modes=detection
    overfeat-detect --model_dir=<dir>/run --image_dir=<some test images> --output_dir=...

Prints each command, its seconds, the mAP, the CPU model and the load (`uptime`)
before and after. Smoke-run at tiny sizes:

    PYTHONPATH=. python benchmarks/voc_workflow.py --train_images=16 --test_images=8 \
        --epochs=1 --max_steps=2
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from absl import app, flags

from overfeat_tf import runtime
from pipelines import embedded, testing

flags.DEFINE_string("work_dir", "/tmp/voc_workflow", "Scratch folder (emptied first).")
flags.DEFINE_integer("train_images", 160, "Images of VOC train + val.")
flags.DEFINE_integer("test_images", 80, "Images of VOC test.")
flags.DEFINE_float(
    "difficult_area", 0.08, "Objects below this share of the image area are marked difficult."
)
flags.DEFINE_float("width", 0.125, "Channel multiplier of the AlexNet trained.")
flags.DEFINE_integer("epochs", 8, "Classifier epochs.")
flags.DEFINE_integer("box_epochs", 3, "Regressor epochs.")
flags.DEFINE_integer("max_steps", None, "Cap every training command at this many steps.")
flags.DEFINE_integer("batch_size", 16, "Batch size of the classifier and the regressor.")
FLAGS = flags.FLAGS


def _voc_from_embedded(root: str) -> None:
    """Writes VOC2007/ under `root` from a freshly generated embedded set."""
    train_val = FLAGS.train_images
    config = embedded.EmbeddedConfig(
        train=8, validation=8, detection_train=train_val, detection_validation=FLAGS.test_images
    )
    source_dir = embedded.ensure_embedded_dataset(os.path.join(root, "embedded"), config)
    from pipelines import sources  # TensorFlow loads here, after the flags

    source = sources.TFRecordSource(source_dir)
    images, sets = {}, {"train": [], "val": [], "test": []}
    for split, prefix in (("detection_train", "t"), ("detection_validation", "v")):
        for index, record in enumerate(source.records(split).as_numpy_iterator()):
            image_id = f"{prefix}{index:05d}"
            encoded = record["encoded"]
            height, width = _size(encoded)
            objects = []
            for box, label in zip(record["boxes"], record["box_labels"]):
                ymin, xmin, ymax, xmax = box
                # VOC pixels: 1-based, both ends inclusive.
                left, top = round(xmin * width) + 1, round(ymin * height) + 1
                pixels = (left, top, max(left, round(xmax * width)), max(top, round(ymax * height)))
                small = (ymax - ymin) * (xmax - xmin) < FLAGS.difficult_area
                objects.append((embedded.CLASS_NAMES[label], pixels, bool(small)))
            images[image_id] = (encoded, testing.annotation_xml(width, height, objects))
            if split == "detection_validation":
                sets["test"].append(image_id)
            else:
                sets["train" if index % 4 else "val"].append(image_id)
    testing.write_voc_tree(os.path.join(root, "VOC2007"), images, sets)


def _size(encoded: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(encoded)) as image:
        return image.height, image.width


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def _timed(name: str, module: str, *flags: str) -> float:
    print(f"\n$ {name} {' '.join(flags)}", flush=True)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", module, *flags], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"{name} failed:\n{result.stderr[-3000:]}")
    print("\n".join(result.stdout.strip().splitlines()[-3:]))
    print(f"[{seconds:.1f} s]", flush=True)
    return seconds


def main(argv: list[str]) -> None:
    del argv
    root = FLAGS.work_dir
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    print(f"{runtime.cpu_model()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M %Z')}")
    print(f"load before: {_uptime()}")
    _voc_from_embedded(root)
    voc, data, run = (os.path.join(root, n) for n in ("VOC2007", "data", "run"))
    photos = os.path.join(root, "photos")
    os.makedirs(photos)
    for name in sorted(os.listdir(os.path.join(voc, "JPEGImages")))[-3:]:
        shutil.copy(os.path.join(voc, "JPEGImages", name), photos)
    steps = [f"--max_steps={FLAGS.max_steps}"] if FLAGS.max_steps else []
    times = {
        "overfeat-convert": _timed(
            "overfeat-convert",
            "pipelines.bin.convert",
            f"--voc={voc}",
            f"--output_dir={data}",
            "--train_shards=4",
            "--validation_shards=2",
        ),
        "overfeat-train": _timed(
            "overfeat-train",
            "overfeat_tf.bin.train",
            f"--data=tfrecord:{data}",
            "--split=detection_train",
            "--eval_split=detection_tuning",
            f"--model_dir={run}",
            "--recipe=quick",
            f"--width={FLAGS.width}",
            f"--epochs={FLAGS.epochs}",
            f"--batch_size={FLAGS.batch_size}",
            "--noexport",
            *steps,
        ),
        "overfeat-train-boxes": _timed(
            "overfeat-train-boxes",
            "overfeat_tf.bin.train_boxes",
            "--task=detection",
            f"--classifier_dir={run}",
            f"--data=tfrecord:{data}",
            f"--batch_size={FLAGS.batch_size}",
            f"--epochs={FLAGS.box_epochs}",
            *steps,
        ),
        "overfeat-evaluate": _timed(
            "overfeat-evaluate",
            "overfeat_tf.bin.evaluate",
            f"--model_dir={run}",
            f"--data=tfrecord:{data}",
            "--modes=detection",
        ),
        "overfeat-detect": _timed(
            "overfeat-detect",
            "overfeat_tf.bin.detect",
            f"--model_dir={run}",
            f"--image_dir={photos}",
            f"--output_dir={os.path.join(root, 'detected')}",
        ),
    }
    result = _read_json(os.path.join(run, "eval.json"))["results"]["detection"]
    counts = _read_json(os.path.join(data, "num_examples.json"))
    print(
        f"\nsplits {counts}; detection_validation mAP@0.5 {result['map']:.3f} "
        f"(VOC 2007 11-point {result['map_11point']:.3f})"
    )
    for name, seconds in times.items():
        print(f"{name:22s} {seconds:8.1f} s")
    print(f"{'total':22s} {float(np.sum(list(times.values()))):8.1f} s")
    print(f"load after: {_uptime()}")


if __name__ == "__main__":
    app.run(main)
