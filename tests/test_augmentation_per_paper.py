"""Each paper's augmentation and input statistics: PCA lighting (AlexNet section 4.1)
for AlexNet only, ZFNet's ten sub-crops (ZFNet section 3), and `--stats` files in
place of the published constants, recorded in the run."""

import json

import numpy as np
import pytest
import tensorflow as tf

from overfeat_tf import input_stats
from overfeat_tf import run_dir
from overfeat_tf.training import recipes
from pipelines import constants, sources, stats, testing, transforms
from tests.conftest import run_module


def test_pca_lighting_belongs_to_alexnets_recipe_only():
    # AlexNet section 4.1 alters RGB intensities by PCA; ZFNet section 3 and OverFeat
    # section 3.1 describe crops and flips only.
    assert recipes.get_recipe("alexnet").pca_lighting
    assert not recipes.get_recipe("zfnet").pca_lighting
    assert not recipes.get_recipe("overfeat").pca_lighting


def test_zfnet_trains_on_the_ten_sub_crops_of_the_centre_square():
    # ZFNet section 3: shorter side 256, the centre 256x256, then "10 different
    # sub-crops of size 224x224 (corners + center with(out) horizontal flips)"; one of
    # them per training image. PNG and shorter side 256: pixels exact.
    assert recipes.get_recipe("zfnet").pipeline == "zfnet"
    image = testing.smooth_image(256, 320)
    encoded = tf.constant(testing.encode(image, "PNG"))
    views = transforms.ten_views(tf.constant(image), 224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    views = views.numpy().reshape(10, -1)
    seen = set()
    for i in range(120):
        crop, _, _ = transforms.preprocess_for_train(
            encoded,
            tf.zeros([0, 4]),
            tf.zeros([0], tf.int32),
            tf.constant([i, 3], tf.int64),
            crop_size=224,
            mean=(0.0, 0.0, 0.0),
            std=(1.0, 1.0, 1.0),
            augmentation=transforms.AUGMENTATIONS["zfnet"],
            eigen=None,
            scale_jitter=None,
        )
        distances = np.abs(views - crop.numpy().reshape(1, -1)).max(axis=1)
        assert distances.min() == 0, i  # exactly one of the ten views
        seen.add(int(distances.argmin()))
    assert seen == set(range(10))


def _write_stats(path, mean_rgb, std_rgb) -> None:
    eigvec = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0].astype(np.float32)
    stats.save_statistics(
        stats.DatasetStatistics(
            mean_image=np.zeros((256, 256, 3), np.float32),
            mean_rgb=np.asarray(mean_rgb, np.float32),
            std_rgb=np.asarray(std_rgb, np.float32),
            eigval=np.array([0.3, 0.02, 0.001], np.float32),
            eigvec=eigvec,
            num_images=5,
        ),
        path,
    )


def test_a_stats_file_replaces_the_published_constants_in_each_models_form(tmp_path):
    path = str(tmp_path / "stats.npz")
    _write_stats(path, [100.0, 110.0, 120.0], [50.0, 60.0, 70.0])
    default = input_stats.resolve("alexnet", "paper", None)
    assert default.source == input_stats.PUBLISHED
    assert default.mean == constants.IMAGENET_MEAN_RGB
    np.testing.assert_array_equal(default.eigval, constants.PCA_EIGVAL)
    # AlexNet and ZFNet subtract the mean (dividing by the std only for "he" init).
    alexnet = input_stats.resolve("alexnet", "paper", path)
    assert alexnet.mean == (100.0, 110.0, 120.0) and alexnet.std == (1.0, 1.0, 1.0)
    assert input_stats.resolve("zfnet", "he", path).std == (50.0, 60.0, 70.0)
    np.testing.assert_array_equal(alexnet.eigval, np.float32([0.3, 0.02, 0.001]))
    # OverFeat: one mean and std over all pixels of all channels.
    overfeat = input_stats.resolve("overfeat_fast", "paper", path)
    all_channels = np.concatenate(
        [
            np.full(1000, m) + s * np.array([-1, 1] * 500)
            for m, s in ((100, 50), (110, 60), (120, 70))
        ]
    )
    np.testing.assert_allclose(overfeat.mean, [all_channels.mean()] * 3)
    np.testing.assert_allclose(overfeat.std, [all_channels.std()] * 3, rtol=1e-6)
    with pytest.raises(FileNotFoundError, match="overfeat-stats"):
        input_stats.resolve("alexnet", "paper", str(tmp_path / "missing.npz"))


def test_a_run_records_its_statistics_for_evaluation_and_export(tmp_path):
    path = str(tmp_path / "stats.npz")
    _write_stats(path, [90.0, 100.0, 110.0], [40.0, 50.0, 60.0])
    run = tmp_path / "run"
    used = input_stats.resolve("alexnet", "he", path)
    config = run_dir.write_config(
        str(run),
        name="alexnet",
        build_kwargs={"num_classes": 3, "init": "he"},
        class_names=["a", "b", "c"],
        stats=used,
    )
    assert (config["mean"], config["std"]) == ([90.0, 100.0, 110.0], [40.0, 50.0, 60.0])
    assert config["stats"] == input_stats.RUN_FILE and (run / input_stats.RUN_FILE).exists()
    again = input_stats.of_run(str(run), run_dir.read_config(str(run)))
    assert (again.mean, again.std) == (used.mean, used.std)
    np.testing.assert_array_equal(again.eigvec, used.eigvec)
    # Without a file: the published constants, named as such.
    plain = run_dir.write_config(
        str(tmp_path / "plain"),
        name="overfeat_fast",
        build_kwargs={"num_classes": 3},
        class_names=["a"] * 3,
    )
    assert plain["stats"] == input_stats.PUBLISHED
    assert input_stats.of_run(str(tmp_path / "plain"), plain).source == input_stats.PUBLISHED


def _binary(module, *args, env):
    return run_module(module, *args, env=env)


@pytest.mark.slow
def test_train_and_evaluate_binaries_take_stats(tiny_data, tmp_path, subprocess_env):
    data = f"--data=tfrecord:{tiny_data}"
    path = str(tmp_path / "stats.npz")
    computed = stats.compute_statistics(sources.open_source(data[7:]), max_images=12)
    stats.save_statistics(computed, path)
    run = tmp_path / "run"
    bad = _binary(
        "overfeat_tf.bin.train",
        data,
        f"--model_dir={run}",
        "--stats=/no/such.npz",
        env=subprocess_env,
    )
    assert bad.returncode != 0 and "--stats=/no/such.npz" in bad.stderr
    assert not run.exists()  # nothing written before the flags are checked
    result = _binary(
        "overfeat_tf.bin.train",
        data,
        f"--model_dir={run}",
        f"--stats={path}",
        "--model=alexnet",
        "--width=0.0625",
        "--batch_size=8",
        "--init=he",
        "--epochs=1",
        "--max_steps=1",
        "--noexport",
        "--xla=off",
        env=subprocess_env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    config = json.loads((run / "model.json").read_text())
    np.testing.assert_allclose(config["mean"], computed.mean_rgb, rtol=1e-6)
    np.testing.assert_allclose(config["std"], computed.std_rgb, rtol=1e-6)
    assert config["stats"] == input_stats.RUN_FILE
    bad = _binary(
        "overfeat_tf.bin.evaluate",
        data,
        f"--model_dir={run}",
        "--stats=/no/such.npz",
        env=subprocess_env,
    )
    assert bad.returncode != 0 and "--stats=/no/such.npz" in bad.stderr
