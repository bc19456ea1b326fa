"""Localization training draws validation images with predicted and true boxes into the
run's TensorBoard `validation/` run, and the drawing itself."""

import numpy as np
import tensorflow as tf

import overfeat_tf
import pipelines
from overfeat_tf import run_dir
from overfeat_tf.detection import box_previews, box_training
from overfeat_tf.training import summaries
from pipelines import embedded
from tests.conftest import TINY_MODEL

BUILD_KWARGS = {**TINY_MODEL, "num_classes": len(embedded.CLASS_NAMES)}


class _FixedBox:
    """A predictor that finds one fixed box (pixels) in every image."""

    boxes = np.array([[10.0, 20.0, 60.0, 90.0]])

    def __call__(self, image):
        return self


def test_draw_outlines_true_boxes_in_green_and_predictions_in_red():
    mean, std = np.full(3, 100.0, np.float32), np.full(3, 50.0, np.float32)
    images = [np.zeros((100, 120, 3), np.float32), np.zeros((80, 150, 3), np.float32)]
    true_boxes = [np.array([[30.0, 40.0, 70.0, 100.0]]), np.zeros((0, 4))]
    drawn = box_previews.BoxPreviews(images, true_boxes, mean, std).draw(_FixedBox())
    assert drawn.dtype == np.uint8 and drawn.shape == (2, 100, 150, 3)
    assert tuple(drawn[0, 50, 50]) == (100, 100, 100)  # inside the boxes: the image
    assert tuple(drawn[0, 30, 70]) == (0, 200, 0)  # the true box's top edge
    assert tuple(drawn[1, 10, 50]) == (255, 0, 0)  # the predicted box's top edge
    assert not drawn[0, :, 120:].any() and not drawn[1, 80:].any()  # black padding


def _classifier(tmp_path) -> str:
    """An untrained tiny AlexNet run directory."""
    model = overfeat_tf.build_model("alexnet", **BUILD_KWARGS)
    classifier_dir = str(tmp_path / "classifier")
    run_dir.save_model(
        classifier_dir, model, build_kwargs=BUILD_KWARGS, class_names=list(embedded.CLASS_NAMES)
    )
    return classifier_dir


def _preview_canvas_size(data_dir: str) -> tuple[int, int]:
    """(height, width) of the largest of the embedded validation split's first
    `PREVIEW_IMAGES` images: the canvas every preview is padded to."""
    source = pipelines.open_source("embedded", data_dir)
    batches = pipelines.build_dataset(
        source,
        "validation",
        batch_size=1,
        training=False,
        crop_size=227,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        eval_mode="full",
    )
    sizes = [images.shape[1:3] for images, _ in batches.take(box_training.PREVIEW_IMAGES)]
    return max(size[0] for size in sizes), max(size[1] for size in sizes)


def test_localization_training_writes_box_images_to_validation(tiny_data, tmp_path):
    classifier_dir = _classifier(tmp_path)
    model_dir = tmp_path / "localization"
    box_training.run(
        box_training.BoxSpec(
            classifier_dir=classifier_dir,
            model_dir=str(model_dir),
            data_dir=tiny_data,
            scales=(227,),
            batch_size=8,
            max_steps=1,
            deterministic=True,
        )
    )

    validation = summaries.read_tags(str(model_dir / "validation"))
    assert validation[summaries.IMAGES_TAG] == [1]
    assert summaries.IMAGES_TAG not in summaries.read_tags(str(model_dir / "train"))
    event_file = next((model_dir / "validation").glob("events.out.tfevents.*"))
    for record in tf.data.TFRecordDataset(str(event_file)).as_numpy_iterator():
        for value in tf.compat.v1.Event.FromString(record).summary.value:
            if value.tag == summaries.IMAGES_TAG:
                # [width, height, PNG per image]: the previewed validation images.
                shown = value.tensor.string_val
                assert len(shown) == 2 + box_training.PREVIEW_IMAGES
                picture = tf.io.decode_png(shown[2]).numpy()
                # The images as evaluation sees them: whole, at their own resolution,
                # padded to the largest one.
                assert picture.shape == (*_preview_canvas_size(tiny_data), 3)
                assert np.all(picture == (0, 200, 0), axis=-1).any()  # true boxes
                assert np.all(picture == (255, 0, 0), axis=-1).any()  # the guess


def test_detection_training_writes_box_images_for_both_stages(tiny_data, tmp_path):
    model_dir = tmp_path / "detection"
    box_training.run(
        box_training.BoxSpec(
            classifier_dir=_classifier(tmp_path),
            task="detection",
            model_dir=str(model_dir),
            data_dir=tiny_data,
            scales=(227,),
            batch_size=8,
            max_steps=1,
            deterministic=True,
        )
    )
    for run in (model_dir, model_dir / "classifier"):  # the regressor, the classifier
        assert summaries.read_tags(str(run / "validation"))[summaries.IMAGES_TAG] == [1]
