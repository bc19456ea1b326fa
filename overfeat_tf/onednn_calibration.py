"""Measures whether TensorFlow's oneDNN CPU kernels speed this machine up, once.

oneDNN is switched on or off by an environment variable read when TensorFlow loads, so
each setting is timed in a fresh subprocess: a few AlexNet (width 0.5, batch 32, 227 px)
training steps, the median step kept after warm-up. The faster setting is cached in
`runtime.cache_path()` under `runtime.machine_key()` (CPU model, instruction sets,
TensorFlow version), where `runtime.configure_onednn` finds it before TensorFlow loads.

    python3 -m overfeat_tf.onednn_calibration          # measure (again) and cache
"""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import sys
import tempfile

from overfeat_tf import runtime

# One setting's timing, run as `python -c` with TF_ENABLE_ONEDNN_OPTS set: prints the
# median seconds per training step.
_TIMING = """
import statistics, sys, time
import numpy as np
import tensorflow as tf
import overfeat_tf
steps, batch, width = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
tf.keras.utils.set_random_seed(0)
model = overfeat_tf.build_model("alexnet", 100, width, init="he")
model.compile(optimizer=tf.keras.optimizers.SGD(0.001, momentum=0.9),
              loss="sparse_categorical_crossentropy")
x = np.random.default_rng(0).normal(size=(batch, 227, 227, 3)).astype(np.float32)
y = np.zeros(batch, np.int64)
model.train_on_batch(x, y)
times = []
for _ in range(steps):
    start = time.perf_counter()
    model.train_on_batch(x, y)
    times.append(time.perf_counter() - start)
print(statistics.median(times))
"""


def time_setting(onednn: bool, steps: int = 5, batch: int = 32, width: float = 0.5) -> float:
    """Median seconds per training step in a subprocess with oneDNN on or off."""
    env = {**os.environ, runtime.ONEDNN_ENV: "1" if onednn else "0"}
    result = subprocess.run(
        [sys.executable, "-c", _TIMING, str(steps), str(batch), str(width)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def calibrate(steps: int = 5, batch: int = 32, width: float = 0.5) -> dict:
    """Times both settings, caches and returns the entry {"onednn": bool, "seconds_on",
    "seconds_off", "workload", "date"}."""
    seconds_on = time_setting(True, steps, batch, width)
    seconds_off = time_setting(False, steps, batch, width)
    entry = {
        "onednn": seconds_on <= seconds_off,
        "seconds_on": seconds_on,
        "seconds_off": seconds_off,
        "workload": f"AlexNet width {width}, batch {batch}, median of {steps} steps",
        "date": datetime.date.today().isoformat(),
    }
    store(runtime.machine_key(), entry)
    return entry


def store(key: str, entry: dict) -> None:
    """Writes `entry` under `key` into the cache file, keeping other machines' entries
    (a shared home directory may serve several), atomically."""
    path = runtime.cache_path()
    try:
        with open(path) as f:
            cache = json.load(f)
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    cache[key] = entry
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=os.path.dirname(os.path.abspath(path)), delete=False, suffix=".tmp"
    ) as f:
        json.dump(cache, f, indent=2, sort_keys=True)
    os.replace(f.name, path)


def main() -> None:
    entry = calibrate()
    print(
        f"{runtime.machine_key()}\n  oneDNN on {entry['seconds_on']:.3f} s/step, off "
        f"{entry['seconds_off']:.3f} s/step: {'on' if entry['onednn'] else 'off'}; "
        f"cached in {runtime.cache_path()}"
    )


if __name__ == "__main__":
    main()
