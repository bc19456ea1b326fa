"""PASCAL VOC and ILSVRC DET trees written here: converted (boxes, labels and difficult
flags survive; problems counted and named, or one line with --strict), then trained for
a few steps and evaluated with the binaries."""

import json
import os

import numpy as np
import pytest

import pipelines
from overfeat_tf.training import summaries
from pipelines import annotations, convert, ilsvrc_det, testing, voc
from tests.conftest import run_module

W, H = 80, 60  # every test image


def _jpeg(seed: int) -> bytes:
    return testing.encode(testing.smooth_image(H, W, seed))


def _voc_tree(root) -> None:
    """train: 000001 (cat, difficult dog), 000002 (dog), 000003 (bad XML); val: 000004
    (cat), 000005 (no JPEG); test: 000006 (a cat reaching past the right edge), 000007
    (difficult dog, cat)."""
    xml = testing.annotation_xml
    images = {
        "000001": (
            _jpeg(1),
            xml(W, H, [("cat", (11, 6, 40, 30), False), ("dog", (41, 31, 80, 60), True)]),
        ),
        "000002": (_jpeg(2), xml(W, H, [("dog", (1, 1, 50, 40), False)])),
        "000003": (_jpeg(3), b"<annotation><size><width>80</width>"),
        "000004": (_jpeg(4), xml(W, H, [("cat", (21, 11, 60, 50), False)])),
        "000005": (b"", xml(W, H, [("cat", (1, 1, 20, 20), False)])),
        "000006": (_jpeg(6), xml(W, H, [("cat", (41, 1, 100, 30), False)])),
        "000007": (
            _jpeg(7),
            xml(W, H, [("dog", (1, 1, 30, 30), True), ("cat", (31, 21, 70, 55), False)]),
        ),
    }
    testing.write_voc_tree(
        str(root),
        images,
        {
            "train": ["000001", "000002", "000003"],
            "val": ["000004", "000005"],
            "test": ["000006", "000007"],
            "trainval": ["000001", "000002", "000003", "000004"],
        },
    )


def _run(module, env, *flags):
    return run_module(module, *flags, env=env)


def _records(directory, split):
    source = pipelines.open_source(f"tfrecord:{directory}")
    return {r["filename"].decode(): r for r in source.records(split).as_numpy_iterator()}


@pytest.fixture(scope="module")
def voc_converted(tmp_path_factory):
    """(VOC root, converted directory, the converter's stderr)."""
    root = tmp_path_factory.mktemp("voc")
    _voc_tree(root / "VOC2007")
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = _run(
        "pipelines.bin.convert",
        env,
        f"--voc={root / 'VOC2007'}",
        f"--output_dir={root / 'out'}",
        "--num_workers=2",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "VOC2007", root / "out", result.stderr


def test_voc_splits_labels_boxes_and_difficult_flags_survive(voc_converted):
    _, out, stderr = voc_converted
    assert json.loads((out / "num_examples.json").read_text()) == {
        "detection_train": 2,
        "detection_tuning": 1,
        "detection_validation": 2,
    }
    assert (out / "labels.txt").read_text() == "cat\tcat\ndog\tdog\n"
    train = _records(out, "detection_train")
    first = train["000001.jpg"]
    # VOC pixels are 1-based and inclusive: xmin 11 -> 10 / 80, ymin 6 -> 5 / 60.
    np.testing.assert_allclose(
        first["boxes"],
        [[5 / 60, 10 / 80, 30 / 60, 40 / 80], [30 / 60, 40 / 80, 1.0, 1.0]],
        rtol=1e-6,
    )
    assert first["box_labels"].tolist() == [0, 1] and first["label"] == 0
    assert first["difficult"].tolist() == [False, True]
    assert train["000002.jpg"]["difficult"].tolist() == [False]
    validation = _records(out, "detection_validation")
    seventh = validation["000007.jpg"]
    assert seventh["label"] == 0  # the first object that is not difficult: the cat
    assert seventh["box_labels"].tolist() == [1, 0]
    assert seventh["difficult"].tolist() == [True, False]
    np.testing.assert_allclose(validation["000006.jpg"]["boxes"], [[0, 0.5, 0.5, 1.0]])
    assert list(_records(out, "detection_tuning")) == ["000004.jpg"]
    # Problems are counted and named, and nothing crashed.
    assert "bad XML: 1" in stderr and "000003.xml" in stderr
    assert "missing image: 1" in stderr and "000005.jpg" in stderr
    assert "box outside image: 1" in stderr and "000006.xml" in stderr


def test_difficult_flags_reach_evaluation_batches(voc_converted):
    _, out, _ = voc_converted
    source = pipelines.open_source(f"tfrecord:{out}")
    found = {}
    for split, mode in (("detection_validation", "full"), ("detection_train", "center")):
        batches = pipelines.build_dataset(
            source,
            split,
            batch_size=1,
            training=False,
            crop_size=40,
            mean=[0, 0, 0],
            std=[1, 1, 1],
            eval_mode=mode,
            with_boxes=True,
        )
        for _, labels in batches.as_numpy_iterator():
            n = labels["num_boxes"][0]
            found.setdefault(split, []).append(
                (labels["box_labels"][0, :n].tolist(), labels["difficult"][0, :n].tolist())
            )
            assert not labels["difficult"][0, n:].any()
    assert sorted(found["detection_validation"]) == [([0], [False]), ([1, 0], [True, False])]
    # The centre crop keeps each flag with its box.
    assert ([0, 1], [False, True]) in found["detection_train"]


def test_voc_strict_fails_in_one_line_and_writes_nothing(voc_converted, tmp_path):
    root, _, _ = voc_converted
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = _run(
        "pipelines.bin.convert",
        env,
        f"--voc={root}",
        "--strict",
        f"--output_dir={tmp_path / 'out'}",
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("overfeat-convert --strict: ")
    assert "000003.xml: bad XML" in result.stderr
    assert not (tmp_path / "out").exists()
    result = _run("pipelines.bin.convert", env, f"--voc={tmp_path}", f"--output_dir={tmp_path}")
    assert result.returncode != 0 and "is not a PASCAL VOC folder" in result.stderr


def test_voc_2012_layout_holds_out_a_tenth_of_train_for_tuning(tmp_path):
    ids = [f"2012_{i:06d}" for i in range(200)]
    testing.write_voc_tree(str(tmp_path), {}, {"train": ids, "val": ["2012_900000"]})
    splits = voc.split_ids(str(tmp_path))
    assert splits["detection_validation"] == ["2012_900000"]
    tuning = splits["detection_tuning"]
    assert 8 <= len(tuning) <= 32 and not set(tuning) & set(splits["detection_train"])
    assert sorted(tuning + splits["detection_train"]) == ids


def _det_tree(root) -> None:
    """ILSVRC 2014+ layout: 3 train images in synset folders (one negative), 8 val."""
    for split, names in (
        ("train", ["n01/n01_1", "n02/n02_1", "n02/n02_2"]),
        ("val", [f"ILSVRC2013_val_{i:08d}" for i in range(8)]),
    ):
        for i, name in enumerate(names):
            image = root / "Data" / "DET" / split / f"{name}.JPEG"
            xml = root / "Annotations" / "DET" / split / f"{name}.xml"
            image.parent.mkdir(parents=True, exist_ok=True)
            xml.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(_jpeg(i))
            objects = [("n01", (0, 0, 40, 30), False), ("n02", (40, 30, 79, 59), False)]
            if name == "n02/n02_2":
                objects = []  # a negative image
            xml.write_bytes(testing.annotation_xml(W, H, objects[: 1 + i % 2]))


def test_ilsvrc_det_conversion(tmp_path):
    _det_tree(tmp_path / "ILSVRC")
    problems = annotations.Problems()
    images = ilsvrc_det.read_ilsvrc_det(str(tmp_path / "ILSVRC"), problems)
    synsets, splits = convert.tasks_from_annotations(images, {"n01": "tench"}, 0, 90, problems)
    assert synsets == ["n01", "n02"] and problems.counts() == {"no objects": 1}
    assert len(splits["detection_train"]) == 2
    tuning = {t.filename for t in splits["detection_tuning"]}
    validation = {t.filename for t in splits["detection_validation"]}
    assert len(tuning | validation) == 8 and not tuning & validation and tuning and validation
    counts = convert.write_dataset(
        str(tmp_path / "out"), synsets, splits, {s: 1 for s in splits}, num_workers=2
    )
    assert counts["detection_train"] == 2
    train = _records(tmp_path / "out", "detection_train")
    np.testing.assert_allclose(
        train["n02_1.JPEG"]["boxes"], [[0, 0, 0.5, 0.5], [0.5, 0.5, 59 / 60, 79 / 80]], rtol=1e-6
    )
    assert train["n02_1.JPEG"]["box_labels"].tolist() == [0, 1]
    assert not train["n02_1.JPEG"]["difficult"].any()
    assert (tmp_path / "out" / "labels.txt").read_text() == "n01\ttench\nn02\tn02\n"
    with pytest.raises(ValueError, match="is not an ILSVRC DET folder"):
        ilsvrc_det.split_folders(str(tmp_path))


def test_cls_loc_validation_boxes_keep_their_own_labels():
    problems = annotations.Problems()
    found = annotations.parse_annotation(
        testing.annotation_xml(
            W, H, [("n02", (0, 0, 40, 30), False), ("n01", (40, 30, 80, 60), False)]
        ),
        "v.xml",
        problems,
    )
    assert found.names == ("n02", "n01") and not problems.found
    tasks = convert.tasks_from_annotations(
        {"validation": [("v.JPEG", found)]}, {}, 0, 90, problems
    )[1]["validation"]
    assert tasks[0].label == 1 and tasks[0].box_labels == (1, 0)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["voc", "ilsvrc_det"])
def test_convert_train_and_evaluate_detection(layout, tmp_path, subprocess_env):
    """Raw folder -> TFRecords -> classifier -> regressor and detection classifier ->
    detection mAP, with the binaries a user runs (a few steps each)."""
    if layout == "voc":
        _voc_tree(tmp_path / "raw")
    else:
        _det_tree(tmp_path / "raw")
    data, run = tmp_path / "data", tmp_path / "run"
    steps = ["--max_steps=2", "--checkpoint_every=1"]
    commands = [
        (
            "pipelines.bin.convert",
            f"--{layout}={tmp_path / 'raw'}",
            f"--output_dir={data}",
            "--num_workers=2",
        ),
        (
            "overfeat_tf.bin.train",
            f"--data=tfrecord:{data}",
            "--split=detection_train",
            "--eval_split=detection_tuning",
            f"--model_dir={run}",
            "--width=0.0625",
            "--init=he",
            "--dropout=0",
            "--batch_size=2",
            "--epochs=1",
            "--noexport",
            "--xla=off",
            *steps,
        ),
        (
            "overfeat_tf.bin.train_boxes",
            "--task=detection",
            f"--classifier_dir={run}",
            f"--data=tfrecord:{data}",
            "--batch_size=2",
            "--scales=227,243",
            *steps,
        ),
        (
            "overfeat_tf.bin.evaluate",
            f"--model_dir={run}",
            f"--data=tfrecord:{data}",
            "--modes=detection",
            "--noflips",
            "--score_threshold=0.0",
        ),
    ]
    for module, *flags in commands:
        result = _run(module, subprocess_env, *flags)
        assert result.returncode == 0, f"{module}: {result.stderr[-3000:]}"
    assert "(detection_tuning)" not in result.stdout  # reports the validation split
    detection = json.loads((run / "eval.json").read_text())["results"]["detection"]
    counts = json.loads((data / "num_examples.json").read_text())
    assert detection["split"] == "detection_validation"
    assert detection["examples"] == counts["detection_validation"]
    assert 0.0 <= detection["map"] <= 1.0 and 0.0 <= detection["map_11point"] <= 1.0
    # TensorBoard: each run's validation scalars overlay its training ones (same tags).
    for directory in (run, run / "detection", run / "detection" / "classifier"):
        train, validation = (
            summaries.read_tags(str(directory / name)) for name in ("train", "validation")
        )
        assert "epoch/loss" in train and "epoch/loss" in validation, directory
