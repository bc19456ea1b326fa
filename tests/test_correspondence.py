"""Correspondence analysis (ZFNet section 4.3, Table 1): the API and the visualization mode."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import overfeat_tf
from overfeat_tf import cli
from overfeat_tf import run_dir as run_dir_lib
from overfeat_tf.visualization import correspondence as cc
from overfeat_tf.visualization import deconvnet, launch
from pipelines import testing
from tests.conftest import TINY_MODEL as TINY


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return overfeat_tf.build_model("zfnet", **TINY)


def _channel0(images):
    """A fixed feature function: channel 0 as is ("pixels") and rectified ("relu")."""
    pixels = tf.reshape(images[..., 0], [tf.shape(images)[0], -1])
    return {"pixels": pixels, "relu": tf.nn.relu(pixels)}


# Channel 0 of two 2x2 images (channels 1, 2 are zero); A masked on its top row,
# B on its left column; the mask's grey is 0, so eps = x inside the box, 0 outside.
_A = [[1.0, -2.0], [3.0, 0.5]]
_B = [[-1.0, -4.0], [2.0, 0.0]]
_BOX_A, _BOX_B = [0, 0, 1, 2], [0, 0, 2, 1]


def _images(*channel0):
    images = np.zeros((len(channel0), 2, 2, 3), np.float32)
    images[..., 0] = channel0
    return images


def test_two_images_by_hand():
    result = cc.analyse(_channel0, _images(_A, _B), {"eye": [_BOX_A, _BOX_B]}, draws=2)
    eye = result.row("eye")
    # pixels: eps_A = (1, -2, 0, 0) -> signs (+, -, 0, 0); eps_B = (-1, 0, 2, 0) ->
    # (-, 0, +, 0): three of four signs differ.
    assert eye.mean("pixels") == pytest.approx(0.75)
    # relu: A (1, 0, 3, .5) -> (0, 0, 3, .5), eps (+, 0, 0, 0); B (0, 0, 2, 0) -> 0,
    # eps (0, 0, +, 0): two of four differ.
    assert eye.mean("relu") == pytest.approx(0.5)
    assert eye.std("pixels") == 0.0  # One pair.
    assert result.layers == ("pixels", "relu")
    assert result.num_features == {"pixels": 4, "relu": 4}
    assert [r.name for r in result.rows] == ["eye", cc.RANDOM]
    assert result.row(cc.RANDOM).values["pixels"].shape == (2,)


def test_delta_is_the_mean_over_pairs_with_its_std():
    # A third image equal to A with A's box: pairs A-B 0.75, A-C 0, B-C 0.75.
    result = cc.analyse(_channel0, _images(_A, _B, _A), {"eye": [_BOX_A, _BOX_B, _BOX_A]}, draws=1)
    eye = result.row("eye")
    np.testing.assert_allclose(eye.values["pixels"], [0.75, 0.0, 0.75])
    assert eye.mean("pixels") == pytest.approx(0.5)
    assert eye.std("pixels") == pytest.approx(np.sqrt(0.125))


def test_mask_value_is_the_occlusion_grey():
    # With grey 1.0 instead: eps_A = (0, -3, 0, 0), eps_B = (-2, -5, 0, 0) -> one of four.
    result = cc.analyse(
        _channel0, _images(_A, _B), {"eye": [_BOX_A, [0, 0, 1, 2]]}, draws=1, value=1.0
    )
    assert result.row("eye").mean("pixels") == pytest.approx(0.25)


def test_signs_treat_small_changes_as_zero():
    np.testing.assert_array_equal(
        cc.signs(np.array([[1e-9, -3.0, 0.0, 2.0]]), np.array([[1e-6]])), [[0, -1, 0, 1]]
    )


def test_identical_images_and_masks_give_zero(model):
    image = np.random.default_rng(0).normal(size=(1, 224, 224, 3)).astype(np.float32)
    result = cc.correspondence(
        model,
        np.repeat(image, 3, 0),
        {"eye": [[40, 50, 80, 100]] * 3},
        ["conv5", "fc7"],
        draws=2,
        batch_size=4,
    )
    for layer in ("conv5", "fc7"):
        assert result.row("eye").mean(layer) == 0.0
        assert result.row("eye").std(layer) == 0.0
    # The random masks move; the table prints both rows.
    assert result.row(cc.RANDOM).mean("conv5") > 0.0
    table = result.table()
    assert table.splitlines()[0].split() == ["part", "conv5", "fc7"]
    assert table.splitlines()[1].startswith("eye     0.000 +- 0.000")


def test_layer_features_match_the_layers_in_one_pass(model):
    images = np.random.default_rng(1).normal(size=(2, 224, 224, 3)).astype(np.float32)
    features = cc.LayerFeatures(model, ["fc7", "conv3"])
    outputs = features(images)
    assert list(outputs) == ["fc7", "conv3"]
    assert features.chain[-1].name == "fc7"
    for layer in ("conv3", "fc7"):
        expected = deconvnet.forward(deconvnet.layers_through(model, layer), images).numpy()
        np.testing.assert_allclose(
            outputs[layer].numpy(), expected.reshape(2, -1), rtol=1e-5, atol=1e-5
        )
    with pytest.raises(ValueError, match="Unknown layer 'conv9'"):
        cc.LayerFeatures(model, ["conv9"])


def test_masks_outside_the_image_name_the_image():
    images = _images(_A, _B)
    for bad in ([0, 0, 3, 1], [1, 1, 1, 2], [-1, 0, 1, 1]):
        with pytest.raises(
            ValueError, match=r"^dog2\.jpg: mask .* not a box inside the image \(2x2\)"
        ):
            cc.analyse(_channel0, images, {"eye": [_BOX_A, bad]}, names=["dog1.jpg", "dog2.jpg"])
    with pytest.raises(ValueError, match="one box .* per image, 2 in all"):
        cc.analyse(_channel0, images, {"eye": [_BOX_A]})


def test_random_boxes_keep_sizes_inside_the_image_and_follow_the_seed():
    boxes = np.array([[0, 0, 2, 3], [1, 1, 4, 2]])
    drawn = cc.random_boxes(boxes, (5, 6), draws=200, seed=7)
    assert drawn.shape == (200, 2, 4)
    np.testing.assert_array_equal(
        drawn[..., 2:] - drawn[..., :2], np.broadcast_to(boxes[:, 2:] - boxes[:, :2], (200, 2, 2))
    )
    assert drawn[..., :2].min() == 0
    assert (drawn[..., 2] <= 5).all() and (drawn[..., 3] <= 6).all()
    # Every position is drawn: image 0's 2x3 box starts at rows 0..3 and columns 0..3.
    assert set(drawn[:, 0, 0]) == {0, 1, 2, 3} and set(drawn[:, 0, 1]) == {0, 1, 2, 3}
    np.testing.assert_array_equal(drawn, cc.random_boxes(boxes, (5, 6), draws=200, seed=7))
    assert not np.array_equal(drawn, cc.random_boxes(boxes, (5, 6), draws=200, seed=8))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, model):
    """A tiny ZFNet run directory and three image files."""
    root = tmp_path_factory.mktemp("correspondence")
    run_dir_lib.save_model(str(root / "run"), model, build_kwargs=TINY, class_names=["a", "b", "c"])
    for k in range(3):
        (root / f"dog{k}.png").write_bytes(testing.encode(testing.smooth_image(256, 256, k), "PNG"))
    return root


def _spec(run_dir, **fields) -> launch.VisualizeSpec:
    """overfeat-visualize --mode=correspondence on the three dog images, as a spec (the
    program passes its flags as these fields; test_visualization_binary runs it)."""
    images = tuple(f"{run_dir}/dog{k}.png" for k in range(3))
    return launch.VisualizeSpec(
        mode="correspondence", model_dir=f"{run_dir}/run", image=images, **fields
    )


def test_correspondence_mode_prints_the_table_and_writes_json(run_dir, capsys):
    launch.run(
        _spec(
            run_dir,
            output_dir=f"{run_dir}/out",
            draws=3,
            boxes=(
                "right eye=40,40,80,90;42,60,82,110;30,50,70,100",
                "nose=100,100,130,130;100,100,130,130;100,100,130,130",
            ),
        )
    )
    assert capsys.readouterr().out.splitlines()[0].split() == ["part", "conv5", "fc7"]
    report = json.loads((run_dir / "out" / "correspondence.json").read_text())
    assert [r["name"] for r in report["rows"]] == ["right eye", "nose", "random"]
    assert len(report["rows"][2]["values"]["fc7"]) == 6  # 3 draws for each of 2 parts.
    assert report["boxes"]["nose"] == [[100, 100, 130, 130]] * 3
    assert (run_dir / "out" / "dog1_right_eye.png").is_file()


def test_correspondence_errors_are_one_line(run_dir):
    cases = {
        "eye=1,1,20,20;1,1,20,20": "--boxes: part 'eye' has 2 boxes for 3 images of --image; "
        "give one per image, in order",
        "eye=1,1,20,20;1,1,20,20;200,200,240,240": f"--boxes: {run_dir}/dog2.png: mask "
        "200,200,240,240 is not a box inside the image (224x224)",
    }
    for boxes, message in cases.items():
        with pytest.raises(launch.SpecError) as error:
            launch.run(_spec(run_dir, boxes=(boxes,)))
        assert cli.user_error_line(error.value, (launch.SpecError,)).startswith(message)
