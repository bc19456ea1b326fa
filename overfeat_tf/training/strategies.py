"""Choosing a `tf.distribute.Strategy` by name."""

from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "mirrored", "multi_worker", "one_device")


def make_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """`auto`: MirroredStrategy over all local GPUs, or one device on a CPU machine.

    `multi_worker` reads the cluster from `TF_CONFIG` (MultiWorkerMirroredStrategy);
    `mirrored` mirrors over every local GPU, or every logical CPU device when there is
    no GPU (how the tests run it).
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy 'multi_worker' needs the TF_CONFIG environment variable")
        # Before anything lists devices: that starts the runtime, after which collective
        # ops can no longer be configured.
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True on the one worker that writes checkpoints, summaries and metrics."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in resolver.cluster_spec().jobs
    )


def worker_id() -> str:
    """`<task type>_<task id>` from TF_CONFIG, or `local` outside a cluster."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task", {})
    return f"{task['type']}_{task['index']}" if task else "local"
