"""Converter, statistics tool and their console scripts."""

import io
import tarfile

import numpy as np

import pipelines
from pipelines import convert
from pipelines import embedded
from pipelines import stats
from pipelines import testing
from tests.conftest import project_env, run_module


def _run_binary(module, *args):
    return run_module(
        module, *args, env={**project_env(), "TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300
    )


def _decoded_sizes(source, split):
    return {
        r["filename"].decode(): pipelines.decode_image(r["encoded"]).shape
        for r in source.records(split).as_numpy_iterator()
    }


def test_convert_folder_fixes_quirks_and_resizes(tmp_path):
    quirks = testing.quirky_images()
    del quirks["very_large"]  # Slow to resize; covered by the decode tests.
    testing.write_class_folder(
        str(tmp_path / "in"),
        {
            "n02": [(f"{stem}.JPEG", data) for stem, (data, _) in quirks.items()],
            "n01": [("big.JPEG", testing.encode(testing.smooth_image(300, 500)))],
        },
    )
    synsets, splits = convert.tasks_from_folder(str(tmp_path / "in"), 128, 90)
    counts = convert.write_dataset(
        str(tmp_path / "out"), synsets, splits, {"train": 2}, num_workers=2
    )
    assert synsets == ["n01", "n02"] and counts == {"train": 5}  # Truncated, empty skipped.
    source = pipelines.open_source(f"tfrecord:{tmp_path / 'out'}")
    assert source.class_names == ["n01", "n02"] and source.num_examples("train") == 5
    sizes = _decoded_sizes(source, "train")
    assert sizes["big.JPEG"] == (128, 213, 3)
    assert sizes["png_named_jpeg.JPEG"] == (128, 166, 3)
    assert sizes["one_pixel.JPEG"] == (1, 1, 3)  # Never upscaled.
    for record in source.records("train").as_numpy_iterator():
        assert record["encoded"][:3] == b"\xff\xd8\xff"  # All JPEG now.


def _tar_bytes(files: dict[str, bytes], mode="w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _xml(synset, box, width=400, height=300):
    xmin, ymin, xmax, ymax = box
    return (
        f"<annotation><size><width>{width}</width><height>{height}</height></size>"
        f"<object><name>{synset}</name><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
        f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>"
    ).encode()


def test_convert_raw_ilsvrc_tars_with_boxes(tmp_path):
    jpeg = testing.encode(testing.smooth_image(300, 400))
    cmyk = testing.encode(testing.smooth_image(300, 400), mode="CMYK")
    train = {
        f"{s}.tar": _tar_bytes({f"{s}_{i}.JPEG": (cmyk if i == 0 else jpeg) for i in range(3)})
        for s in ("n02", "n01")
    }
    (tmp_path / "train.tar").write_bytes(_tar_bytes(train))
    (tmp_path / "val.tar").write_bytes(
        _tar_bytes({f"ILSVRC2012_val_{i:08d}.JPEG": jpeg for i in (1, 2)})
    )
    (tmp_path / "bbox_train.tar.gz").write_bytes(
        _tar_bytes({"n01/n01_1.xml": _xml("n01", (40, 30, 200, 150))}, mode="w:gz")
    )
    (tmp_path / "bbox_val").mkdir()
    for i, synset in ((1, "n02"), (2, "n01")):
        (tmp_path / "bbox_val" / f"ILSVRC2012_val_{i:08d}.xml").write_bytes(
            _xml(synset, (0, 0, 400, 300))
        )
    (tmp_path / "words.txt").write_text("n01 tench, Tinca tinca\nn02 goldfish\n")
    result = _run_binary(
        "pipelines.bin.convert",
        f"--train_tar={tmp_path / 'train.tar'}",
        f"--val_tar={tmp_path / 'val.tar'}",
        f"--bbox_train={tmp_path / 'bbox_train.tar.gz'}",
        f"--bbox_val={tmp_path / 'bbox_val'}",
        f"--synset_words={tmp_path / 'words.txt'}",
        f"--output_dir={tmp_path / 'out'}",
        "--train_shards=2",
        "--num_workers=2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    source = pipelines.open_source(f"tfrecord:{tmp_path / 'out'}")
    assert source.class_names == ["n01", "n02"]
    train = {r["filename"].decode(): r for r in source.records("train").as_numpy_iterator()}
    assert len(train) == 6 and train["n02_2.JPEG"]["label"] == 1
    np.testing.assert_allclose(train["n01_1.JPEG"]["boxes"], [[0.1, 0.1, 0.5, 0.5]])
    assert pipelines.decode_image(train["n01_0.JPEG"]["encoded"]).shape == (300, 400, 3)
    val = {
        r["filename"].decode(): r["label"] for r in source.records("validation").as_numpy_iterator()
    }
    assert val == {"ILSVRC2012_val_00000001.JPEG": 1, "ILSVRC2012_val_00000002.JPEG": 0}
    assert (tmp_path / "out" / "labels.txt").read_text().startswith("n01\ttench, Tinca tinca\n")


def test_convert_bad_flags_give_one_line_naming_the_flag(tmp_path):
    result = _run_binary(
        "pipelines.bin.convert", "--folder=x", "--output_dir=y", "--train_shards=0"
    )
    assert result.returncode != 0 and "--train_shards=0" in result.stderr


def test_statistics_of_embedded_set(tmp_path):
    directory = embedded.ensure_embedded_dataset(str(tmp_path / "e"), testing.TINY_EMBEDDED)
    source = pipelines.open_source("embedded", directory)
    result = stats.compute_statistics(source, "train", max_images=16, batch_size=8)
    assert result.num_images == 16 and result.mean_image.shape == (256, 256, 3)
    np.testing.assert_allclose(result.mean_rgb, result.mean_image.mean(axis=(0, 1)), rtol=1e-4)
    assert np.all(np.diff(result.eigval) <= 0) and np.all(result.eigval > 0)
    np.testing.assert_allclose(result.eigvec.T @ result.eigvec, np.eye(3), atol=1e-5)
    # Total variance = trace of the covariance = sum of eigenvalues.
    np.testing.assert_allclose(((result.std_rgb / 255) ** 2).sum(), result.eigval.sum(), rtol=1e-4)
    stats.save_statistics(result, str(tmp_path / "s.npz"))
    loaded = stats.load_statistics(str(tmp_path / "s.npz"))
    np.testing.assert_array_equal(loaded.eigvec, result.eigvec)
    images, _ = next(
        iter(
            pipelines.build_dataset(
                source,
                "train",
                batch_size=2,
                training=True,
                crop_size=227,
                seed=0,
                mean=loaded.mean_image,
                std=loaded.std_rgb,
                pca_eigen=(loaded.eigval, loaded.eigvec),
            )
        )
    )
    assert images.shape == (2, 227, 227, 3) and abs(float(np.mean(images))) < 1.0
