r"""ZFNet's visualizations of a trained model: `overfeat-visualize` / `python -m overfeat_tf.bin.visualize`.

Modes (Zeiler & Fergus 2013):
  deconv     deconvnet projection of the strongest activation of feature maps (2.1)
  top9       the nine strongest activations of feature maps over a data set (Fig. 2)
  occlusion  class probability / top class / feature map under a sliding grey square
             (4.2, Fig. 5), as heat maps over the image and as arrays
  filters    the first layer's filters as a grid (Fig. 5, 6)
  correspondence  Delta_l of a part masked in related images against random masks
             (4.3, Table 1): the table, correspondence.json and the masked inputs

    overfeat-visualize --mode=top9 --model_dir=runs/zfnet --layer=conv5 --feature=0,1,2
    overfeat-visualize --mode=occlusion --model_dir=runs/zfnet --image=dog.jpg \
        --size=48 --stride=8 --layer=conv5
    overfeat-visualize --mode=deconv --model_dir=runs/zfnet --data=embedded --layer=conv3
    overfeat-visualize --mode=filters --model_dir=runs/zfnet
    overfeat-visualize --mode=correspondence --model_dir=runs/zfnet --image=d1.jpg,d2.jpg,d3.jpg \
        --boxes="right eye=60,70,90,100;58,120,88,150;64,90,94,120" --layers=conv5,fc7

Images come from `--image` (comma list of files) or the first `--max_images` of
`--data`'s `--split`; outputs go to `--output_dir` (default <model_dir>/<mode>).
"""

from __future__ import annotations

import json
import os

from absl import flags

import overfeat_tf  # first: turns oneDNN on before TensorFlow loads (see runtime.py)
from overfeat_tf import cli
from overfeat_tf.cli import FlagError
from overfeat_tf import flags_common
from overfeat_tf import run_dir
from overfeat_tf.models import feature_layer_names
from overfeat_tf.visualization import (
    correspondence,
    deconvnet,
    filters,
    images,
    inputs,
    occlusion,
    top9,
)

import numpy as np  # noqa: E402
import pipelines  # noqa: E402
import tensorflow as tf  # noqa: E402

MODES = ("deconv", "top9", "occlusion", "filters", "correspondence")

flags.DEFINE_enum("mode", None, list(MODES), "What to draw.")
flags_common.define_model_dir()
flags_common.define_checkpoint()
flags_common.define_data(default=None)
flags_common.define_data_dir()
flags_common.define_split()
flags.DEFINE_list("image", None, "Image file(s), comma separated (instead of --data).")
flags.DEFINE_integer("max_images", None, "Images of --data (default 8; top9: 512).")
flags.DEFINE_string("layer", None, "Layer (default: conv1 for filters, else the last conv).")
flags.DEFINE_list(
    "feature",
    None,
    "Feature maps of --layer (default: the strongest for deconv/occlusion, 0-15 for top9).",
)
flags.DEFINE_enum("rule", "deconvnet", list(deconvnet.RULES), "ReLU rule on the way down.")
flags.DEFINE_string("output_dir", None, "Where PNGs and arrays go (default <model_dir>/<mode>).")
flags.DEFINE_integer("size", 48, "Occlusion: side of the grey square, pixels.")
flags.DEFINE_integer("stride", 8, "Occlusion: step of the square, pixels.")
flags.DEFINE_float("value", None, "Occlusion: grey level 0-255 (default: the training mean).")
flags.DEFINE_integer("label", None, "Occlusion: correct class of --image (default: top class).")
flags.DEFINE_bool("full_image", False, "Occlusion: whole image (shorter side 256), not the crop.")
flags.DEFINE_multi_string(
    "boxes",
    None,
    "Correspondence: [PART=]y0,x0,y1,x1;y0,x0,y1,x1;... one mask per --image, in order, pixels "
    "of the model input (the centre crop: shorter side 256, then the central input_size "
    "square), end exclusive. Repeat for more parts.",
)
flags.DEFINE_list(
    "layers",
    None,
    "Correspondence: layers (default: the last conv and the last hidden FC, "
    "ZFNet's layers 5 and 7).",
)
flags.DEFINE_integer("draws", 10, "Correspondence: random masks per part (the baseline).")
flags_common.define_seed("Correspondence: seed of the random masks.")
flags.DEFINE_float(
    "zero_tolerance",
    1e-4,
    "Correspondence: |eps| up to this times the layer's largest feature is sign 0.",
)
flags_common.define_batch_size(32, "Images per forward pass.")
flags_common.define_onednn()

FLAGS = flags.FLAGS


def _features(default):
    if FLAGS.feature is None:
        return default
    try:
        return [int(f) for f in FLAGS.feature]
    except ValueError:
        raise FlagError(f"--feature must be integers; received {','.join(FLAGS.feature)}") from None


def _batches(
    config, *, max_images: int, batch_size: int, full_image: bool = False
) -> tf.data.Dataset:
    if (FLAGS.data is None) == (FLAGS.image is None):
        raise FlagError(f"--mode={FLAGS.mode}: give exactly one of --data or --image")
    try:
        if FLAGS.image is not None:
            records = inputs.file_records(FLAGS.image)
        else:
            source = pipelines.open_source(FLAGS.data, FLAGS.data_dir)
            records = inputs.source_records(source, FLAGS.split)
    except (ValueError, OSError) as e:
        flag = "--image" if FLAGS.image is not None else f"--data={FLAGS.data}"
        raise FlagError(f"{flag}: {e}") from e
    return inputs.model_inputs(
        records,
        crop_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        batch_size=batch_size,
        full_image=full_image,
        max_images=FLAGS.max_images or max_images,
    )


def _names(batch) -> list[str]:
    return [
        os.path.splitext(os.path.basename(f.decode()))[0] or f"image{i}"
        for i, f in enumerate(batch["filename"].numpy())
    ]


def _deconv(model, config, layer: str, output_dir: str) -> list[str]:
    deconv = deconvnet.Deconvnet(model, layer, FLAGS.rule)
    paths = []
    for batch in _batches(config, max_images=8, batch_size=FLAGS.batch_size):
        pictures = images.denormalize(batch["image"].numpy(), config["mean"], config["std"])
        features = _features(None)
        if features is None:
            maxima = tf.reduce_max(deconv.activations(batch["image"]), axis=[1, 2]).numpy()
            features = [int(m.argmax()) for m in maxima]
            per_image = [[f] for f in features]
        else:
            per_image = [features] * len(pictures)
        for i, name in enumerate(_names(batch)):
            count = len(per_image[i])
            try:
                projected, _, values = deconv.project(
                    np.repeat(batch["image"].numpy()[i : i + 1], count, 0), per_image[i]
                )
            except ValueError as e:
                raise FlagError(f"--feature: {e}") from e
            for feature, projection, value in zip(per_image[i], projected.numpy(), values.numpy()):
                shown = images.to_display(
                    projection[None], percentiles=images.PROJECTION_PERCENTILES
                )[0]
                side = np.concatenate([pictures[i], shown], axis=1)
                paths.append(
                    images.write_png(
                        os.path.join(output_dir, f"{name}_{layer}_feature{feature:03d}.png"), side
                    )
                )
                print(f"{name}: {layer} feature {feature}, activation {value:.4g}")
    return paths


def _occlusion(model, config, layer: str, output_dir: str) -> list[str]:
    mean, std = np.asarray(config["mean"]), np.asarray(config["std"])
    value = occlusion.grey_value(FLAGS.value, mean, std)
    paths = []
    # Centre crops: all images in one batch (the occluded copies are batched inside);
    # whole images differ in size: one at a time, each in its own folder.
    max_images = FLAGS.max_images or 8
    batch_size = 1 if FLAGS.full_image else max_images
    for batch in _batches(
        config, max_images=max_images, batch_size=batch_size, full_image=FLAGS.full_image
    ):
        labels = batch.get("label")
        if FLAGS.label is not None:
            labels = [FLAGS.label] * len(batch["filename"])
        try:
            maps = occlusion.occlusion_maps(
                model,
                batch["image"],
                labels,
                size=FLAGS.size,
                stride=FLAGS.stride,
                value=value,
                layer=layer,
                features=_features(None),
                batch_size=FLAGS.batch_size,
            )
        except ValueError as e:
            raise FlagError(f"--size/--stride/--feature: {e}") from e
        pictures = images.denormalize(batch["image"].numpy(), mean, std)
        names = _names(batch)
        directory = os.path.join(output_dir, names[0]) if FLAGS.full_image else output_dir
        paths += occlusion.save(maps, pictures, directory, names)
    return paths


def _parts(count: int) -> dict[str, list[list[int]]]:
    """--boxes as {part: [[y0, x0, y1, x1]] * count}."""
    if not FLAGS.boxes:
        raise FlagError(
            "--mode=correspondence needs --boxes=[PART=]y0,x0,y1,x1;... (one per --image)"
        )
    parts = {}
    for k, spec in enumerate(FLAGS.boxes):
        name, _, text = spec.rpartition("=")
        name = name.strip() or ("part" if len(FLAGS.boxes) == 1 else f"part{k + 1}")
        try:
            boxes = [[int(v) for v in box.split(",")] for box in text.split(";")]
        except ValueError:
            boxes = []
        if not boxes or any(len(b) != 4 for b in boxes):
            raise FlagError(f"--boxes={spec}: expected [PART=]y0,x0,y1,x1;... (integers)")
        if len(boxes) != count:
            raise FlagError(
                f"--boxes: part {name!r} has {len(boxes)} boxes for {count} "
                "images of --image; give one per image, in order"
            )
        if name in parts or name == correspondence.RANDOM:
            raise FlagError(f"--boxes: part name {name!r} is used twice or reserved")
        parts[name] = boxes
    return parts


def _correspondence(model, config, output_dir: str) -> list[str]:
    if FLAGS.image is None or FLAGS.data is not None or FLAGS.full_image:
        raise FlagError(
            "--mode=correspondence takes --image (related images, centre crops), "
            "not --data or --full_image"
        )
    parts = _parts(len(FLAGS.image))
    spec = overfeat_tf.model_info(model).spec
    layers = FLAGS.layers or [spec.trunk[-1].name] + [fc.name for fc in spec.head[-2:-1]]
    try:
        features = correspondence.LayerFeatures(model, layers)
    except ValueError as e:
        raise FlagError(f"--layers: {e}") from e
    count = len(FLAGS.image)
    batch = next(iter(_batches(config, max_images=count, batch_size=count)))
    if len(batch["filename"]) != count:
        raise FlagError(f"--image: only {len(batch['filename'])} of {count} images could be read")
    value = occlusion.grey_value(FLAGS.value, config["mean"], config["std"])
    try:
        result = correspondence.analyse(
            features,
            batch["image"],
            parts,
            draws=FLAGS.draws,
            seed=FLAGS.seed,
            value=value,
            zero_tolerance=FLAGS.zero_tolerance,
            batch_size=FLAGS.batch_size,
            names=FLAGS.image,
        )
    except ValueError as e:
        raise FlagError(f"--boxes: {e}") from e
    print(result.table())
    path = os.path.join(output_dir, "correspondence.json")
    tf.io.gfile.makedirs(output_dir)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(result.to_json(), f, indent=2)
    paths = [path]
    for part, boxes in result.boxes.items():  # The masked inputs, to check the boxes by eye.
        masked = occlusion.fill_boxes(batch["image"], tf.constant(boxes), value).numpy()
        pictures = images.denormalize(masked, config["mean"], config["std"])
        paths += [
            images.write_png(os.path.join(output_dir, f"{name}_{part.replace(' ', '_')}.png"), p)
            for name, p in zip(_names(batch), pictures)
        ]
    return paths


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise FlagError(f"Unexpected arguments: {' '.join(argv[1:])}")
    for flag in ("mode", "model_dir"):
        if getattr(FLAGS, flag) is None:
            raise FlagError(f"--{flag} is required ({', '.join(MODES)} for --mode)")
    for flag in ("size", "stride", "batch_size", "max_images", "draws"):
        value = getattr(FLAGS, flag)
        if value is not None and value < 1:
            raise FlagError(f"--{flag} must be >= 1; received {value}")
    try:
        model, config = run_dir.restore_model(FLAGS.model_dir, FLAGS.checkpoint)
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise FlagError(f"--model_dir={FLAGS.model_dir}: {str(e).splitlines()[0]}") from e
    default_layer = (
        "conv1" if FLAGS.mode == "filters" else overfeat_tf.model_info(model).spec.trunk[-1].name
    )
    layer = FLAGS.layer or default_layer
    valid = feature_layer_names(model)
    if layer not in valid:
        raise FlagError(
            f"--layer={layer} is not a layer of {model.name}; valid: {', '.join(valid)}"
        )
    output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir, FLAGS.mode)
    if FLAGS.mode == "filters":
        try:
            paths = [
                filters.write_filter_grid(
                    model, os.path.join(output_dir, f"{layer}_filters.png"), layer
                )
            ]
        except ValueError as e:
            raise FlagError(f"--layer: {e}") from e
    elif FLAGS.mode == "deconv":
        paths = _deconv(model, config, layer, output_dir)
    elif FLAGS.mode == "top9":
        deconv = deconvnet.Deconvnet(model, layer, FLAGS.rule)
        features = _features(list(range(min(16, deconv.num_features))))
        try:
            deconv.check_features(features)
        except ValueError as e:
            raise FlagError(f"--feature: {e}") from e
        batches = _batches(config, max_images=512, batch_size=FLAGS.batch_size)
        paths = top9.top9(
            deconv,
            batches,
            features,
            config["mean"],
            config["std"],
            output_dir,
            batch_size=FLAGS.batch_size,
        )
    elif FLAGS.mode == "correspondence":
        paths = _correspondence(model, config, output_dir)
    else:
        paths = _occlusion(model, config, layer, output_dir)
    for path in paths:
        print(path)
    return 0


def run() -> None:
    """Console-script entry point (`overfeat-visualize`)."""
    cli.run(main, "overfeat-visualize")


if __name__ == "__main__":
    run()
