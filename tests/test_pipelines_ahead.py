"""`pipelines.ahead`: the next epoch's iterator, built on a background thread (`Ahead`)
and filling its buffers from then on (`warm`)."""

import threading
import time

import pytest
import tensorflow as tf

from pipelines import ahead


def _recording():
    built = []

    def make(key):
        built.append((key, threading.current_thread().name))
        return f"iterator {key}"

    return built, make


def test_a_prepared_key_is_built_once_on_the_background_thread():
    built, make = _recording()
    with ahead.Ahead(make) as iterators:
        iterators.prepare((1, 0))
        assert iterators.take((1, 0)) == "iterator (1, 0)"
    assert len(built) == 1
    assert built[0][0] == (1, 0) and built[0][1].startswith("input-ahead")


def test_an_unprepared_key_is_built_now_and_a_stale_build_is_dropped():
    built, make = _recording()
    main = threading.current_thread().name
    with ahead.Ahead(make) as iterators:
        assert iterators.take((0, 3)) == "iterator (0, 3)"
        iterators.prepare((1, 0))
        # A restart asked for another key: built in the caller's thread instead.
        assert iterators.take((0, 5)) == "iterator (0, 5)"
        # The build prepared for (1, 0) was used up by that take: (1, 0) is built anew.
        assert iterators.take((1, 0)) == "iterator (1, 0)"
    assert [key for key, _ in built if _ == main] == [(0, 3), (0, 5), (1, 0)]


def test_an_error_while_building_ahead_reaches_the_taker():
    def make(key):
        raise ValueError(f"no data for {key}")

    with ahead.Ahead(make) as iterators:
        iterators.prepare(2)
        with pytest.raises(ValueError, match="no data for 2"):
            iterators.take(2)


def test_a_warm_iterator_reads_its_input_before_the_first_next():
    read = []

    def record(x):
        read.append(int(x))
        return x

    def reading(x):
        return tf.py_function(record, [x], tf.int64)

    dataset = tf.data.Dataset.range(4).map(reading, num_parallel_calls=2).prefetch(1)
    assert dataset.options().experimental_warm_start is not True
    warm = ahead.warm(dataset)
    assert warm.options().experimental_warm_start is True
    iterator = iter(warm)
    deadline = time.monotonic() + 60
    while not read and time.monotonic() < deadline:
        time.sleep(0.01)
    assert read, "the warm iterator read nothing before its first next"
    assert sorted(int(x) for x in iterator) == [0, 1, 2, 3]
