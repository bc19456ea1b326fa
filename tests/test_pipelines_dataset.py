"""build_dataset: shapes, determinism, bad input, labels, distribution, tf.data service."""

import numpy as np
import pytest
import tensorflow as tf

import pipelines
from pipelines import embedded
from pipelines import testing

STD = (58.4, 57.1, 57.4)
COMMON = dict(crop_size=227, mean=pipelines.IMAGENET_MEAN_RGB, std=STD)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("e") / "set")
    embedded.ensure_embedded_dataset(directory, testing.TINY_EMBEDDED)
    return pipelines.open_source("embedded", directory)


def _first(dataset):
    return next(iter(dataset))


def test_train_batches(source):
    ds = pipelines.build_dataset(source, "train", batch_size=5, training=True, seed=1, **COMMON)
    batches = list(ds)
    assert len(batches) == testing.TINY_EMBEDDED.train // 5  # drop_remainder.
    images, labels = batches[0]
    assert images.shape == (5, 227, 227, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32 and labels.shape == (5,)
    assert -3 < float(tf.reduce_mean(images)) < 3  # Normalised.


def test_overfeat_train_with_boxes(source):
    ds = pipelines.build_dataset(
        source,
        "detection_train",
        batch_size=4,
        training=True,
        augmentation="overfeat",
        with_boxes=True,
        scale_jitter=(221, 288),
        seed=2,
        **{**COMMON, "crop_size": 221},
    )
    images, target = _first(ds)
    assert images.shape == (4, 221, 221, 3)
    assert target["boxes"].shape == (4, pipelines.MAX_BOXES, 4)
    assert target["box_labels"].shape == (4, pipelines.MAX_BOXES)
    n = target["num_boxes"].numpy()
    assert np.all(n <= 4)
    for i in range(4):
        assert np.all(target["box_labels"][i, n[i] :] == -1)
        assert np.all(target["box_labels"][i, : n[i]] >= 0)


@pytest.mark.parametrize(
    "mode, shape", [("center", (4, 227, 227, 3)), ("ten_view", (4, 10, 227, 227, 3))]
)
def test_eval_modes(source, mode, shape):
    ds = pipelines.build_dataset(
        source, "validation", batch_size=4, training=False, eval_mode=mode, **COMMON
    )
    images, labels = _first(ds)
    assert images.shape == shape and labels.shape == (4,)
    assert sum(int(x.shape[0]) for x, _ in ds) == testing.TINY_EMBEDDED.validation


def test_eval_full_keeps_the_original_size_or_resizes_on_request(source):
    ds = pipelines.build_dataset(
        source,
        "validation",
        batch_size=1,
        training=False,
        eval_mode="full",
        with_boxes=True,
        deterministic=True,
        **COMMON,
    )
    resized = pipelines.build_dataset(
        source,
        "validation",
        batch_size=1,
        training=False,
        eval_mode="full",
        full_shorter_side=256,
        deterministic=True,
        **COMMON,
    )
    records = source.records("validation")
    for (images, target), (small, _), record in zip(ds.take(6), resized.take(6), records):
        original = pipelines.decode_image(record["encoded"]).shape[:2]
        assert images.shape[0] == 1 and images.shape[1:3] == original
        assert target["num_boxes"][0] == 1
        assert min(small.shape[1:3]) == 256
    with pytest.raises(ValueError, match="batch_size=4.*use 1"):
        pipelines.build_dataset(
            source, "validation", batch_size=4, training=False, eval_mode="full", **COMMON
        )


def test_center_eval_boxes_follow_the_crop(source):
    args = dict(
        batch_size=1,
        training=False,
        with_boxes=True,
        crop_size=128,
        mean=(0, 0, 0),
        std=(1, 1, 1),
        deterministic=True,
    )
    ds = pipelines.build_dataset(source, "validation", **args)
    full = pipelines.build_dataset(
        source, "validation", eval_mode="full", full_shorter_side=256, **args
    )
    for (crop, c), (image, f) in zip(ds.take(4), full.take(4)):
        h, w = image.shape[1:3]
        oy, ox = (h - 128) // 2, (w - 128) // 2
        np.testing.assert_allclose(crop[0], image[0, oy : oy + 128, ox : ox + 128], atol=1e-3)
        if c["num_boxes"][0]:
            expected = np.clip(
                (f["boxes"][0, 0].numpy() * [h, w, h, w] - [oy, ox, oy, ox]) / 128, 0, 1
            )
            np.testing.assert_allclose(c["boxes"][0, 0], expected, atol=1e-5)


def test_deterministic_mode_repeats_exactly(source):
    def run(seed):
        ds = pipelines.build_dataset(
            source, "train", batch_size=8, training=True, seed=seed, deterministic=True, **COMMON
        )
        return [(x.numpy(), y.numpy()) for x, y in ds.take(2)]

    a, b, c = run(3), run(3), run(4)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(a[0][0], c[0][0])
    with pytest.raises(ValueError, match="seed"):
        pipelines.build_dataset(
            source, "train", batch_size=8, training=True, deterministic=True, **COMMON
        )


def test_evaluation_reads_in_file_order_by_default(source):
    # "The first n validation images" (box previews, --max_examples) must be the same n
    # in every run, whatever the thread timing; training keeps the faster, unordered
    # default.
    def options(**kwargs):
        return pipelines.build_dataset(source, **{"batch_size": 4, **COMMON, **kwargs}).options()

    assert options(split="validation", training=False).deterministic
    assert options(split="validation", training=False, eval_mode="full", batch_size=1).deterministic
    assert not options(split="train", training=True, seed=1).deterministic
    assert not options(split="validation", training=False, deterministic=False).deterministic
    labels = [
        int(y[0])
        for _, y in pipelines.build_dataset(
            source, "validation", batch_size=1, training=False, **COMMON
        )
    ]
    assert labels == [int(r["label"]) for r in source.records("validation")]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(augmentation="vgg"), r"augmentation='vgg'.*alexnet"),
        (dict(eval_mode="five"), "eval_mode='five'"),
        (dict(crop_size=300), "crop_size=300"),
        (dict(scale_jitter=(200, 300)), "scale_jitter"),
        (dict(std=(1, 0, 1)), "std"),
    ],
)
def test_bad_arguments_name_the_value(source, kwargs, match):
    with pytest.raises(ValueError, match=match):
        pipelines.build_dataset(
            source, "train", batch_size=2, training=True, **{**COMMON, **kwargs}
        )


@pytest.fixture(scope="module")
def quirky_source(tmp_path_factory):
    """A class folder holding one file per ImageNet quirk, all named .JPEG."""
    root = tmp_path_factory.mktemp("quirks")
    quirks = testing.quirky_images()
    for split in ("train", "validation"):
        testing.write_class_folder(
            str(root / split),
            {"n01": [(f"{stem}.JPEG", data) for stem, (data, _) in quirks.items()]},
        )
    return pipelines.open_source(f"folder:{root}"), quirks


@pytest.mark.parametrize("training", [True, False])
def test_bad_images_are_skipped_and_counted(quirky_source, training):
    source, quirks = quirky_source
    counter = pipelines.BadRecordCounter()
    ds = pipelines.build_dataset(
        source, "train", batch_size=1, training=training, bad_records=counter, seed=0, **COMMON
    )
    images = [x for x, _ in ds]
    decodable = sum(ok for _, ok in quirks.values())
    assert len(images) == decodable and counter.value() == len(quirks) - decodable
    assert all(np.isfinite(x.numpy()).all() for x in images)
    counter.reset()
    assert counter.value() == 0


def test_strict_mode_fails_naming_the_file(quirky_source):
    source, _ = quirky_source
    ds = pipelines.build_dataset(
        source, "train", batch_size=1, training=False, strict=True, **COMMON
    )
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"empty\.JPEG: empty file"):
        list(ds)


@pytest.mark.parametrize("label, match", [(None, "label -1"), (12, "label 12")])
def test_missing_or_out_of_range_label_names_the_record(tmp_path, label, match):
    jpeg = testing.encode(testing.smooth_image(40, 50))
    record = testing.example(jpeg, "bad_label.JPEG", label=0)
    parsed = tf.train.Example.FromString(record)
    if label is None:
        del parsed.features.feature["image/class/label"]
        del parsed.features.feature["image/object/bbox/label"]
    else:
        parsed.features.feature["image/class/label"].int64_list.value[:] = [label + 1]
    testing.write_records(str(tmp_path), "train", [parsed.SerializeToString()])
    (tmp_path / "labels.txt").write_text("".join(f"c{i}\n" for i in range(12)))
    source = pipelines.open_source(f"tfrecord:{tmp_path}")
    ds = pipelines.build_dataset(source, "train", batch_size=1, training=False, **COMMON)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"bad_label.JPEG.*{match}.*0..11"):
        list(ds)


def test_a_box_label_out_of_range_names_its_record_where_boxes_are_read(tmp_path):
    # Labels are checked per batch: the error names the batch's bad record, not its first.
    jpeg = testing.encode(testing.smooth_image(40, 50))
    box = [(0.1, 0.1, 0.9, 0.9)]
    records = [
        testing.example(jpeg, f"{name}.JPEG", label=1, boxes=box, box_labels=[box_label])
        for name, box_label in (("fine", 1), ("bad_box", 12), ("also_fine", 0))
    ]
    testing.write_records(str(tmp_path), "train", records)
    (tmp_path / "labels.txt").write_text("".join(f"c{i}\n" for i in range(12)))
    source = pipelines.open_source(f"tfrecord:{tmp_path}")
    ds = pipelines.build_dataset(
        source, "train", batch_size=3, training=False, with_boxes=True, **COMMON
    )
    with pytest.raises(
        tf.errors.InvalidArgumentError, match=r"bad_box.JPEG has label 1 and box labels \[12\]"
    ):
        list(ds)
    # A classification pipeline does not read box labels.
    ds = pipelines.build_dataset(source, "train", batch_size=3, training=False, **COMMON)
    assert [labels.numpy().tolist() for _, labels in ds] == [[1, 1, 1]]


def test_distribute_datasets_from_function(source):
    strategy = tf.distribute.get_strategy()
    contexts = []

    def dataset_fn(input_context):
        contexts.append(input_context)
        return pipelines.build_dataset(
            source,
            "train",
            batch_size=4,
            training=True,
            seed=0,
            input_context=input_context,
            **COMMON,
        )

    dist = strategy.distribute_datasets_from_function(dataset_fn)
    images, labels = next(iter(dist))
    assert images.shape == (4, 227, 227, 3) and contexts[0].num_input_pipelines == 1
    # Two input pipelines see disjoint files.
    names = []
    for i in range(2):
        ctx = tf.distribute.InputContext(2, i, 2)
        names.append({r["filename"] for r in source.records("train", ctx).as_numpy_iterator()})
    assert not names[0] & names[1]


def test_tf_data_service_local_dispatcher_and_worker(source):
    dispatcher = tf.data.experimental.service.DispatchServer()
    address = dispatcher.target.split("://")[1]
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=address)
    )
    ds = pipelines.build_dataset(
        source, "validation", batch_size=4, training=False, data_service=dispatcher.target, **COMMON
    )
    batches = list(ds)
    assert sum(int(x.shape[0]) for x, _ in batches) == testing.TINY_EMBEDDED.validation
    assert batches[0][0].shape == (4, 227, 227, 3)
    with pytest.raises(ValueError, match="bad_records"):
        pipelines.build_dataset(
            source,
            "train",
            batch_size=4,
            training=True,
            data_service=dispatcher.target,
            bad_records=pipelines.BadRecordCounter(),
            **COMMON,
        )
    del worker
