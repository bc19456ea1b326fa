"""Parallel writing of sharded TFRecords: workers make records, the parent writes.

Workers run a picklable function on each task and return serialized records; the
parent writes them in task order, so the output bytes do not depend on scheduling.
Workers are forked and must not call TensorFlow ops (building a tf.train.Example
protobuf is fine).
"""

import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf


def shard_paths(directory: str, split: str, num_shards: int) -> list[str]:
    """build_imagenet_data naming: `<dir>/<split>-00000-of-00008`."""
    return [
        os.path.join(directory, f"{split}-{i:05d}-of-{num_shards:05d}") for i in range(num_shards)
    ]


def write_serialized(path: str, records: Sequence[bytes]) -> None:
    """Writes already serialized records to one TFRecord file."""
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)


def write_shards(
    paths: Sequence[str],
    tasks: Sequence[Any],
    make_record: Callable[[Any], bytes | None],
    num_workers: int | None = None,
) -> int:
    """Writes `make_record(task)` for every task, split evenly in order over `paths`.

    Args:
      paths: shard files to write; task i goes to shard i * len(paths) // len(tasks).
      make_record: module-level function returning a serialized record, or None to
        skip the task (e.g. an unreadable image).
      num_workers: processes; default os.cpu_count().

    Returns:
      The number of records written.
    """
    shard_of = [i * len(paths) // max(len(tasks), 1) for i in range(len(tasks))]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    written = 0
    context = multiprocessing.get_context("fork")
    with context.Pool(num_workers or os.cpu_count()) as pool:
        results = pool.imap(make_record, tasks, chunksize=8)
        for shard, record in zip(shard_of, results):
            if record is not None:
                writers[shard].write(record)
                written += 1
    for writer in writers:
        writer.close()
    return written
