"""Faults a hostile but realistic user meets: each ends in one clear line, and a run
directory is never damaged by a command that fails."""

import os
import struct
import subprocess
import sys
import zlib

import keras
import pytest
import tensorflow as tf

import overfeat_tf
import pipelines
from export import saved_model, signatures
from overfeat_tf import cli, run_lock
from overfeat_tf import run_dir as run_dir_lib
from overfeat_tf.training import recipes, strategies
from overfeat_tf.training.trainer import TrainConfig, Trainer
from pipelines import embedded, testing
from tests.conftest import run_module

TINY = {"num_classes": 3, "width": 0.0625}
CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> str:
    return embedded.ensure_embedded_dataset(
        str(tmp_path_factory.mktemp("data") / "embedded"), testing.TINY_EMBEDDED
    )


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory) -> str:
    """A run directory (model.json and a checkpoint) of an untrained tiny AlexNet."""
    path = str(tmp_path_factory.mktemp("saved") / "run")
    model = overfeat_tf.build_model("alexnet", **TINY)
    run_dir_lib.save_model(path, model, build_kwargs=TINY, class_names=CLASSES)
    return path


def _tree(root, classes=("a", "b"), good=0, bad=2) -> str:
    images = {}
    for name in classes:
        images[name] = [(f"bad{i}.jpg", b"\xff\xd8\xff not a jpeg") for i in range(bad)]
        images[name] += [
            (f"good{i}.png", testing.encode(testing.smooth_image(40, 40, i), "PNG"))
            for i in range(good)
        ]
    testing.write_class_folder(str(root), images)
    return str(root)


def _run(env, module, *flags, timeout=300):
    return run_module(module, *flags, env=env, timeout=timeout)


def _one_line(result, program: str) -> str:
    """The one error line of a failed binary; asserts there is no traceback."""
    assert result.returncode not in (0, None), result.stdout[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith(program + ":")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return lines[0]


def _train_flags(data: str, model_dir, *extra) -> list[str]:
    return [
        f"--data={data}",
        f"--model_dir={model_dir}",
        "--model=alexnet",
        "--width=0.0625",
        "--batch_size=2",
        "--epochs=1",
        "--xla=off",
        "--noexport",
        *extra,
    ]


# ---- data that cannot train -------------------------------------------------------------


@pytest.mark.slow
def test_a_tree_of_only_unreadable_images_stops_with_one_line(tmp_path, subprocess_env):
    data = "folder:" + _tree(tmp_path / "data")
    result = _run(
        subprocess_env, "overfeat_tf.bin.train", *_train_flags(data, tmp_path / "run"), timeout=240
    )
    line = _one_line(result, "overfeat-train")
    assert "no usable image in the training split" in line
    assert len(result.stdout) + len(result.stderr) < 200_000


def test_one_class_is_refused(tmp_path, subprocess_env):
    data = "folder:" + _tree(tmp_path / "data", classes=("only",), good=2, bad=0)
    result = _run(subprocess_env, "overfeat_tf.bin.train", *_train_flags(data, tmp_path / "run"))
    assert "a classifier needs at least 2" in _one_line(result, "overfeat-train")
    assert not (tmp_path / "run").exists()


def test_a_train_folder_without_validation_holds_the_classes(tmp_path):
    _tree(tmp_path / "train", classes=("cat", "dog"), good=10, bad=0)
    source = pipelines.open_source(f"folder:{tmp_path}")
    assert source.class_names == ["cat", "dog"]
    assert source.num_examples("train") == 18 and source.num_examples("validation") == 2


def test_skipped_files_are_counted_once_per_split(tmp_path):
    """3 bad files, read over many passes: 3 (not one per pass)."""
    for split in ("train", "validation"):
        _tree(tmp_path / split, classes=("a", "b", "c"), good=1, bad=1)
    source = pipelines.open_source(f"folder:{tmp_path}")
    counters = {split: pipelines.BadRecordCounter() for split in ("train", "validation")}
    common = dict(crop_size=32, mean=(0, 0, 0), std=(1, 1, 1))
    train = pipelines.build_dataset(
        source,
        "train",
        batch_size=1,
        training=True,
        seed=0,
        repeat=True,
        bad_records=counters["train"],
        **common,
    )
    list(train.take(9))
    list(
        pipelines.build_dataset(
            source,
            "validation",
            batch_size=1,
            training=False,
            bad_records=counters["validation"],
            **common,
        )
    )
    assert counters["train"].value() == 3 and counters["validation"].value() == 3


# ---- one live writer, and an existing run is never damaged ---------------------------------


def test_check_compatible_names_the_difference(tmp_path):
    run = str(tmp_path / "run")
    kwargs = dict(
        name="alexnet",
        build_kwargs={**TINY, "tower_devices": None},
        class_names=CLASSES,
        data="embedded",
    )
    assert run_dir_lib.check_compatible(run, **kwargs)
    run_dir_lib.write_config(run, **kwargs)
    assert not run_dir_lib.check_compatible(
        run, **{**kwargs, "build_kwargs": {**TINY, "tower_devices": ["/CPU:0"]}}
    )
    changes = [
        ({"name": "zfnet"}, "model 'alexnet', not 'zfnet'"),
        ({"build_kwargs": {**TINY, "width": 0.5}}, "width 0.0625, not 0.5"),
        ({"class_names": ["a", "b", "d"]}, "other classes"),
        ({"data": "folder:/x"}, "data 'embedded', not 'folder:/x'"),
    ]
    for change, message in changes:
        with pytest.raises(ValueError, match=message):
            run_dir_lib.check_compatible(run, **{**kwargs, **change})


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--width=0", "--width must be > 0"),
        # One case in the fast tier: each is a fresh TensorFlow process.
        pytest.param(
            "--model=overfeat_fast", "model 'alexnet', not 'overfeat_fast'", marks=pytest.mark.slow
        ),
        pytest.param("--width=0.125", "width 0.0625, not 0.125", marks=pytest.mark.slow),
    ],
)
def test_incompatible_flags_leave_an_existing_run_untouched(
    flag, message, tiny_data, tmp_path, subprocess_env
):
    run = tmp_path / "run"
    alexnet = recipes.get_recipe("alexnet")  # The recipe's dropout and init, as training's.
    classes = pipelines.open_source(f"tfrecord:{tiny_data}").class_names
    build_kwargs = {
        "num_classes": len(classes),
        "width": 0.0625,
        "dropout": alexnet.dropout,
        "init": alexnet.init,
    }
    run_dir_lib.write_config(
        str(run),
        name="alexnet",
        build_kwargs=build_kwargs,
        class_names=classes,
        data=f"tfrecord:{tiny_data}",
    )
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    result = _run(
        subprocess_env, "overfeat_tf.bin.train", *_train_flags(f"tfrecord:{tiny_data}", run, flag)
    )
    assert message in _one_line(result, "overfeat-train")
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_second_writer_is_refused_naming_the_holder(tiny_data, tmp_path, subprocess_env):
    run = tmp_path / "run"
    with run_lock.acquire(str(run)):
        result = _run(
            subprocess_env,
            "overfeat_tf.bin.train",
            *_train_flags(f"tfrecord:{tiny_data}", run, "--max_steps=1"),
        )
    line = _one_line(result, "overfeat-train")
    assert f"is in use by pid {os.getpid()} on " in line
    assert not (run / "model.json").exists()


def test_lock_left_by_a_dead_process_is_taken_over_with_a_note(tmp_path):
    stale = tmp_path / run_lock.LOCK_FILE
    stale.write_text('{"host": "h", "pid": 99999999, "started": "2026-01-01T00:00:00+00:00"}')
    notes = []
    lock = run_lock.acquire(str(tmp_path), note=notes.append)
    assert len(notes) == 1 and "pid 99999999 on h" in notes[0]
    with pytest.raises(run_lock.RunInUse, match=f"pid {os.getpid()}"):
        run_lock.acquire(str(tmp_path))
    lock.release()
    assert not stale.exists()
    run_lock.acquire(str(tmp_path), note=notes.append).release()
    assert len(notes) == 1


def test_a_file_is_not_a_run_directory(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        run_lock.acquire(str(path))


def test_partial_checkpoints_are_removed_on_the_next_start(tmp_path):
    partial = tmp_path / "ckpt-3_temp"
    partial.mkdir()
    (partial / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"half")
    config = TrainConfig(
        model_dir=str(tmp_path),
        recipe=recipes.get_recipe("alexnet"),
        steps_per_epoch=1,
        epochs=1,
        batch_size=2,
        verbose=False,
    )

    def model_fn():
        inputs = keras.Input((4,))
        return keras.Model(inputs, keras.layers.Dense(2)(inputs))

    Trainer(config, strategies.make_strategy("one_device"), model_fn)
    assert not partial.exists()


# ---- serving refuses decompression bombs ----------------------------------------------


def _gray_png(height: int, width: int) -> bytes:
    """A real PNG of height x width black pixels: a few kilobytes for millions of pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = zlib.compress(b"\0" * ((width + 1) * height), 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", rows)
        + chunk(b"IEND", b"")
    )


def test_serving_refuses_an_image_over_the_pixel_limit_naming_its_index(tmp_path):
    model = overfeat_tf.build_model("alexnet", **TINY)
    names = str(tmp_path / "names.txt")
    signatures.write_class_names(names, CLASSES)
    config = signatures.ServingConfig(
        tuple(CLASSES), 227, (0, 0, 0), (1, 1, 1), max_pixels=1_000_000
    )
    serving = signatures.ServingFunctions(model, signatures.class_name_table(names), config)
    small = testing.encode(testing.smooth_image(60, 80))
    bomb = _gray_png(2000, 2000)
    assert len(bomb) < 20_000
    assert serving.serve_image_bytes(tf.constant([small]))["classes"].shape == (1, 3)
    with pytest.raises(
        tf.errors.InvalidArgumentError,
        match=r"image_bytes\[1\] is not a valid image: 2000x2000 pixels "
        "exceed the limit of 1000000",
    ):
        serving.serve_image_bytes(tf.constant([small, bomb]))


def test_the_default_pixel_limit_is_40_megapixels():
    config = signatures.ServingConfig(tuple(CLASSES), 227, (0, 0, 0), (1, 1, 1))
    assert config.max_pixels == 40_000_000


# ---- one error boundary ---------------------------------------------------------------


@pytest.fixture
def bad_tree(tmp_path) -> str:
    return _tree(tmp_path / "bad", classes=CLASSES)


@pytest.mark.parametrize(
    "case",
    # One case in the fast tier: each is a fresh TensorFlow process.
    [
        "missing_data",
        *(pytest.param(c, marks=pytest.mark.slow) for c in ("unwritable", "file", "strict")),
    ],
)
def test_user_errors_of_training_are_one_line(case, bad_tree, tmp_path, subprocess_env):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    good = "folder:" + _tree(tmp_path / "good", good=2, bad=1)
    flags, message = {
        "missing_data": (
            _train_flags("folder:/missing", tmp_path / "r"),
            "--data=folder:/missing: No such directory: '/missing'",
        ),
        "unwritable": (_train_flags(good, "/sys/no/run"), "--model_dir=/sys/no/run: "),
        "file": (_train_flags(good, a_file), f"--model_dir={a_file}: '{a_file}' is a file"),
        "strict": (_train_flags(good, tmp_path / "r", "--strict"), "Bad image in record "),
    }[case]
    line = _one_line(_run(subprocess_env, "overfeat_tf.bin.train", *flags), "overfeat-train")
    assert message in line
    if case == "strict":
        assert "/bad0.jpg: " in line


@pytest.mark.slow
def test_evaluating_no_readable_image_is_one_line(saved_run, bad_tree, subprocess_env):
    result = _run(
        subprocess_env,
        "overfeat_tf.bin.evaluate",
        f"--model_dir={saved_run}",
        f"--data=folder:{bad_tree}",
        "--split=validation",
        "--modes=center",
    )
    assert "No image to evaluate" in _one_line(result, "overfeat-evaluate")


@pytest.mark.parametrize(
    "how", ["--verbose", pytest.param("OVERFEAT_TRACEBACK=1", marks=pytest.mark.slow)]
)
def test_verbose_shows_the_traceback(how, tmp_path, subprocess_env):
    env = dict(subprocess_env)
    flags = _train_flags("folder:/missing", tmp_path / "r")
    if how == "--verbose":
        flags.append(how)
    else:
        env[cli.TRACEBACK_ENV] = "1"
    result = _run(env, "overfeat_tf.bin.train", *flags)
    assert result.returncode != 0 and "Traceback" in result.stderr
    assert "overfeat-train: --data=folder:/missing" in result.stderr


def test_unexpected_errors_keep_their_traceback(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["prog"])

    def main(argv):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        cli.run(main, "prog")

    def user_error(argv):
        raise cli.FlagError("--x=1: why")

    with pytest.raises(SystemExit, match="prog: --x=1: why"):
        cli.run(user_error, "prog")


# ---- small things ---------------------------------------------------------------------


def test_loading_a_keras_file_without_the_package_says_what_to_import(
    saved_run, tmp_path, subprocess_env
):
    path = str(tmp_path / "model.keras")
    run_dir_lib.restore_model(saved_run)[0].save(path)
    result = subprocess.run(
        [sys.executable, "-c", "import sys, keras; keras.saving.load_model(sys.argv[1])", path],
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "import overfeat_tf before keras.saving.load_model" in result.stderr
    assert keras.saving.load_model(path).count_params() > 0  # With the package: loads.


@pytest.mark.slow
def test_exporting_the_same_checkpoint_again_writes_no_new_version(saved_run, tmp_path):
    base = str(tmp_path / "export")
    first = saved_model.export_model_dir(saved_run, base)
    again = saved_model.export_model_dir(saved_run, base)
    assert (first.version, first.existed) == (1, False)
    assert (again.version, again.existed, again.keras_file) == (1, True, first.keras_file)
    assert saved_model.existing_versions(base) == [1]
    assert saved_model.export_model_dir(saved_run, base, top_k=2).version == 2
