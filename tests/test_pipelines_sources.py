"""Sources: the embedded set, TFRecord shards, class folders and TFDS (mocked)."""

import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import pipelines
from pipelines import embedded
from pipelines import shapes
from pipelines import sources
from pipelines import testing

CONFIG = testing.TINY_EMBEDDED


@pytest.fixture(scope="module")
def embedded_dir(tmp_path_factory):
    return embedded.ensure_embedded_dataset(str(tmp_path_factory.mktemp("e") / "set"), CONFIG)


def _records(source, split, **kwargs):
    return list(source.records(split, **kwargs).as_numpy_iterator())


def test_open_source_rejects_unknown_spec():
    with pytest.raises(ValueError, match=r"'hdfs:/x'.*'embedded', 'tfrecord:/dir'"):
        pipelines.open_source("hdfs:/x")
    with pytest.raises(ValueError, match="'tfrecord'"):
        pipelines.open_source("tfrecord")


def test_embedded_source_splits_and_classes(embedded_dir):
    source = pipelines.open_source("embedded", embedded_dir)
    assert source.num_classes == len(pipelines.EMBEDDED_CLASS_NAMES) >= 10
    assert source.class_names == pipelines.EMBEDDED_CLASS_NAMES and source.has_boxes
    for split in embedded.SPLITS:
        records = _records(source, split)
        assert len(records) == source.num_examples(split) == getattr(CONFIG, split)
        for r in records:
            assert 0 <= r["label"] < source.num_classes and r["filename"].endswith(b".JPEG")
            assert r["boxes"].dtype == np.float32 and r["box_labels"].dtype == np.int32
            assert (1 if not split.startswith("detection") else 4) >= len(r["boxes"]) >= 1
            assert r["label"] == r["box_labels"][0]
            assert np.all(r["boxes"][:, 2:] > r["boxes"][:, :2])
            assert np.all((r["boxes"] >= 0) & (r["boxes"] <= 1))
    with open(os.path.join(embedded_dir, "labels.txt")) as f:
        assert [line.split("\t")[0] for line in f] == source.class_names


def test_embedded_boxes_are_tight_and_objects_large():
    mask = np.zeros((10, 20), bool)
    mask[2:5, 3:9] = True
    np.testing.assert_allclose(shapes._tight_box(mask), [0.2, 0.15, 0.5, 0.45])
    for seed in range(5):
        _, height, width, boxes, _ = shapes.render(np.random.default_rng(seed), 1, (0.45, 0.8))
        ((ymin, xmin, ymax, xmax),) = boxes
        # Large enough to stay recognisable in a 227 crop of the 256 image.
        assert max((ymax - ymin) * height, (xmax - xmin) * width) > 0.3 * min(height, width)


def test_embedded_generation_is_deterministic_and_reused(embedded_dir, tmp_path):
    again = embedded.ensure_embedded_dataset(str(tmp_path / "again"), CONFIG)
    for name in sorted(os.listdir(embedded_dir)):
        with (
            open(os.path.join(embedded_dir, name), "rb") as a,
            open(os.path.join(again, name), "rb") as b,
        ):
            assert a.read() == b.read(), name
    marker = os.path.join(again, "COMPLETE")
    mtime = os.path.getmtime(marker)
    embedded.ensure_embedded_dataset(again, CONFIG)
    assert os.path.getmtime(marker) == mtime


def test_embedded_refuses_foreign_directory(tmp_path):
    (tmp_path / "precious.txt").write_text("x")
    with pytest.raises(ValueError, match="not an embedded data set"):
        embedded.ensure_embedded_dataset(str(tmp_path), CONFIG)


def test_tfrecord_source_standard_format_label_offsets(tmp_path):
    jpeg = testing.encode(testing.smooth_image(40, 50))
    records = [
        testing.example(jpeg, f"img{i}.JPEG", label=i % 3, boxes=[[0.1, 0.2, 0.5, 0.6]])
        for i in range(6)
    ]
    testing.write_records(str(tmp_path), "train", records, num_shards=3)
    testing.write_records(str(tmp_path), "validation", records[:2])
    source = pipelines.open_source(f"tfrecord:{tmp_path}")
    assert source.num_classes == 1000 and source.num_examples("train") is None
    got = sorted(_records(source, "train"), key=lambda r: r["filename"])
    assert [r["label"] for r in got] == [0, 1, 2, 0, 1, 2]  # Stored 1-based.
    np.testing.assert_allclose(got[0]["boxes"], [[0.1, 0.2, 0.5, 0.6]])
    assert got[0]["box_labels"].tolist() == [0] and got[0]["encoded"] == jpeg
    with pytest.raises(ValueError, match="valid splits"):
        source.records("test")


def test_tfrecord_source_shards_files_per_input_pipeline(embedded_dir):
    source = pipelines.open_source(f"tfrecord:{embedded_dir}")
    assert source.class_names == pipelines.EMBEDDED_CLASS_NAMES
    names = [
        {
            r["filename"]
            for r in _records(source, "train", input_context=tf.distribute.InputContext(2, i, 2))
        }
        for i in range(2)
    ]
    assert not names[0] & names[1] and len(names[0] | names[1]) == CONFIG.train
    # Fewer files (1) than pipelines (2): records are sharded instead.
    names = [
        {
            r["filename"]
            for r in _records(
                source, "detection_validation", input_context=tf.distribute.InputContext(2, i, 2)
            )
        }
        for i in range(2)
    ]
    assert not names[0] & names[1] and len(names[0] | names[1]) == CONFIG.detection_validation


def _tree(root, classes=("n02", "n01")):
    jpeg = testing.encode(testing.smooth_image(30, 40))
    testing.write_class_folder(
        root, {c: [(f"{c}_{i}.JPEG", jpeg) for i in range(3)] for c in classes}
    )


@pytest.mark.parametrize("layout", ["splits", "single_tree", "train_only"])
def test_folder_source(tmp_path, layout):
    if layout == "splits":
        _tree(str(tmp_path / "train"))
        _tree(str(tmp_path / "validation"), classes=("n02",))
    else:  # no validation/: one image of each class's three is held out
        _tree(str(tmp_path / "train" if layout == "train_only" else tmp_path))
    source = pipelines.open_source(f"folder:{tmp_path}")
    assert source.class_names == ["n01", "n02"] and not source.has_boxes
    val = _records(source, "validation")
    train = _records(source, "train")
    assert len(val) == source.num_examples("validation") == (3 if layout == "splits" else 2)
    assert len(train) == source.num_examples("train") == 6 - (layout != "splits") * 2
    assert (source.validation_note is None) == (layout == "splits")
    if layout != "splits":  # held out: never trained on
        assert not {r["filename"] for r in val} & {r["filename"] for r in train}
    for r in train:
        assert r["label"] == (0 if b"n01_" in r["filename"] else 1)
        assert r["boxes"].shape == (0, 4)


def test_hold_out_is_a_stable_tenth_of_each_class(tmp_path):
    paths = [str(tmp_path / "cat" / f"{i}.jpg") for i in range(25)]
    train, held = sources.hold_out(paths, str(tmp_path))
    assert len(held) == 2 and sorted(train + held) == sorted(paths)  # round(2.5) == 2
    # The same files under another root: the same choice.
    moved = [p.replace(str(tmp_path), "/elsewhere") for p in paths]
    assert sources.hold_out(moved, "/elsewhere")[1] == [
        p.replace(str(tmp_path), "/elsewhere") for p in held
    ]
    assert sources.hold_out(paths[:1], str(tmp_path)) == (paths[:1], [])
    assert len(sources.hold_out(paths[:2], str(tmp_path))[1]) == 1


def test_folder_source_rejects_unknown_validation_class(tmp_path):
    _tree(str(tmp_path / "train"))
    _tree(str(tmp_path / "validation"), classes=("n09",))
    with pytest.raises(ValueError, match="n09"):
        pipelines.open_source(f"folder:{tmp_path}")


def test_tfds_source_with_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=4):
        source = pipelines.open_source("tfds:imagenet2012", str(tmp_path))
        assert source.num_classes == 1000 and source.class_names[0].startswith("n")
        records = _records(source, "validation")
    assert len(records) == 4
    for r in records:
        assert 0 <= r["label"] < 1000 and r["boxes"].shape == (0, 4)
        assert pipelines.decode_image(r["encoded"]).shape[2] == 3


@pytest.mark.slow
def test_full_embedded_set_has_its_documented_sizes(tmp_path):
    directory = embedded.ensure_embedded_dataset(str(tmp_path / "full"))
    source = pipelines.open_source("embedded", directory)
    assert source.num_examples("train") == 9000 and source.num_examples("validation") == 500
