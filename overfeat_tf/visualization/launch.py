"""ZFNet's visualizations of a trained run as a library call: `launch.run(VisualizeSpec(...))`.

`overfeat-visualize` describes what to draw as a `VisualizeSpec` (field names are its flag
names) and calls `run`: it checks the spec, restores the run, reads the images (files or
a data source's split, centre crops or whole images) and writes the mode's PNGs and
arrays (Zeiler & Fergus 2013: deconvnet projections 2.1, top-9 activations Fig. 2,
occlusion maps 4.2, first-layer filters, correspondence 4.3). Errors name the field as
`--field=value`; nothing is written before the spec is checked.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow as tf

import overfeat_tf
import pipelines
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

MODES = ("deconv", "top9", "occlusion", "filters", "correspondence")
# Images read when the spec gives no max_images: 8, top9 searches 512.
DEFAULT_IMAGES = 8
TOP9_IMAGES = 512
# Feature maps top9 shows when the spec names none: the first 16.
TOP9_FEATURES = 16


class SpecError(ValueError):
    """A spec that cannot run; the message names the field as `--field=value`."""


@dataclasses.dataclass(frozen=True)
class VisualizeSpec:
    """What to draw; field names are `overfeat-visualize`'s flags (see its `--help`).

    `mode` is one of `MODES`; images come from `image` (file paths) or `data`/`split` (a
    `pipelines.open_source` spec), at most `max_images`. `layer` None: conv1 for filters,
    else the last conv; `feature` None: the strongest map (deconv, occlusion) or the first
    16 (top9). Occlusion: a grey square of side `size` moved by `stride` (pixels of the
    model input), grey level `value` (0-255, None: the training mean), class `label`
    (None: the top class). Correspondence: `boxes` are `[PART=]y0,x0,y1,x1;...` (one box
    per image, end exclusive), `draws` random masks per part, `zero_tolerance` relative to
    the layer's largest feature. `output_dir` None: `<model_dir>/<mode>`.
    """

    mode: str
    model_dir: str
    checkpoint: str | None = None
    data: str | None = None
    data_dir: str | None = None
    split: str = "validation"
    image: tuple[str, ...] | None = None
    max_images: int | None = None
    layer: str | None = None
    feature: tuple[str, ...] | None = None
    rule: str = "deconvnet"
    output_dir: str | None = None
    size: int = 48
    stride: int = 8
    value: float | None = None
    label: int | None = None
    full_image: bool = False
    boxes: tuple[str, ...] | None = None
    layers: tuple[str, ...] | None = None
    draws: int = 10
    seed: int = 0
    zero_tolerance: float = 1e-4
    batch_size: int = 32


def check(spec: VisualizeSpec) -> None:
    """Raises `SpecError` for a spec that cannot run, before anything loads."""
    for field in ("mode", "model_dir"):
        if getattr(spec, field) is None:
            raise SpecError(f"--{field} is required ({', '.join(MODES)} for --mode)")
    if spec.mode not in MODES:
        raise SpecError(f"--mode={spec.mode}: one of {', '.join(MODES)}")
    for field in ("size", "stride", "batch_size", "max_images", "draws"):
        value = getattr(spec, field)
        if value is not None and value < 1:
            raise SpecError(f"--{field} must be >= 1; received {value}")


def _features(spec: VisualizeSpec, default: list[int] | None) -> list[int] | None:
    if spec.feature is None:
        return default
    try:
        return [int(f) for f in spec.feature]
    except ValueError:
        raise SpecError(f"--feature must be integers; received {','.join(spec.feature)}") from None


def _batches(
    spec: VisualizeSpec, config, *, max_images: int, batch_size: int, full_image: bool = False
) -> tf.data.Dataset:
    """Batches of {"image" normalised [n, h, w, 3], "filename", "label"?} of the spec's
    images (`max_images` unless the spec says)."""
    if (spec.data is None) == (spec.image is None):
        raise SpecError(f"--mode={spec.mode}: give exactly one of --data or --image")
    try:
        if spec.image is not None:
            records = inputs.file_records(list(spec.image))
        else:
            source = pipelines.open_source(spec.data, spec.data_dir)
            records = inputs.source_records(source, spec.split)
    except (ValueError, OSError) as e:
        field = "--image" if spec.image is not None else f"--data={spec.data}"
        raise SpecError(f"{field}: {e}") from e
    return inputs.model_inputs(
        records,
        crop_size=config["input_size"],
        mean=config["mean"],
        std=config["std"],
        batch_size=batch_size,
        full_image=full_image,
        max_images=spec.max_images or max_images,
    )


def _names(batch) -> list[str]:
    """The batch's file names without directory and extension (image<i> if empty)."""
    return [
        os.path.splitext(os.path.basename(f.decode()))[0] or f"image{i}"
        for i, f in enumerate(batch["filename"].numpy())
    ]


def _deconv(spec: VisualizeSpec, model, config, layer: str, output_dir: str) -> list[str]:
    """Each image beside the projection of its strongest (or the given) feature maps."""
    deconv = deconvnet.Deconvnet(model, layer, spec.rule)
    paths = []
    batches = _batches(spec, config, max_images=DEFAULT_IMAGES, batch_size=spec.batch_size)
    for batch in batches:
        pictures = images.denormalize(batch["image"].numpy(), config["mean"], config["std"])
        features = _features(spec, None)
        if features is None:
            maxima = tf.reduce_max(deconv.activations(batch["image"]), axis=[1, 2]).numpy()
            per_image = [[int(m.argmax())] for m in maxima]
        else:
            per_image = [features] * len(pictures)
        for i, name in enumerate(_names(batch)):
            count = len(per_image[i])
            try:
                projected, _, values = deconv.project(
                    np.repeat(batch["image"].numpy()[i : i + 1], count, 0), per_image[i]
                )
            except ValueError as e:
                raise SpecError(f"--feature: {e}") from e
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


def _top9(spec: VisualizeSpec, model, config, layer: str, output_dir: str) -> list[str]:
    """The nine strongest activations of each feature map over the images."""
    deconv = deconvnet.Deconvnet(model, layer, spec.rule)
    features = _features(spec, list(range(min(TOP9_FEATURES, deconv.num_features))))
    try:
        deconv.check_features(features)
    except ValueError as e:
        raise SpecError(f"--feature: {e}") from e
    batches = _batches(spec, config, max_images=TOP9_IMAGES, batch_size=spec.batch_size)
    return top9.top9(
        deconv,
        batches,
        features,
        config["mean"],
        config["std"],
        output_dir,
        batch_size=spec.batch_size,
    )


def _occlusion(spec: VisualizeSpec, model, config, layer: str, output_dir: str) -> list[str]:
    """Occlusion heat maps (class probability, top class, feature map) and arrays."""
    mean, std = np.asarray(config["mean"]), np.asarray(config["std"])
    value = occlusion.grey_value(spec.value, mean, std)
    paths = []
    # Centre crops: all images in one batch (the occluded copies are batched inside);
    # whole images differ in size: one at a time, each in its own folder.
    max_images = spec.max_images or DEFAULT_IMAGES
    batch_size = 1 if spec.full_image else max_images
    for batch in _batches(
        spec, config, max_images=max_images, batch_size=batch_size, full_image=spec.full_image
    ):
        labels = batch.get("label")
        if spec.label is not None:
            labels = [spec.label] * len(batch["filename"])
        try:
            maps = occlusion.occlusion_maps(
                model,
                batch["image"],
                labels,
                size=spec.size,
                stride=spec.stride,
                value=value,
                layer=layer,
                features=_features(spec, None),
                batch_size=spec.batch_size,
            )
        except ValueError as e:
            raise SpecError(f"--size/--stride/--feature: {e}") from e
        pictures = images.denormalize(batch["image"].numpy(), mean, std)
        names = _names(batch)
        directory = os.path.join(output_dir, names[0]) if spec.full_image else output_dir
        paths += occlusion.save(maps, pictures, directory, names)
    return paths


def parse_parts(boxes: tuple[str, ...] | None, count: int) -> dict[str, list[list[int]]]:
    """`[PART=]y0,x0,y1,x1;...` texts as {part: [[y0, x0, y1, x1]] * count} (pixels)."""
    if not boxes:
        raise SpecError(
            "--mode=correspondence needs --boxes=[PART=]y0,x0,y1,x1;... (one per --image)"
        )
    parts = {}
    for k, text in enumerate(boxes):
        name, _, values = text.rpartition("=")
        name = name.strip() or ("part" if len(boxes) == 1 else f"part{k + 1}")
        try:
            part = [[int(v) for v in box.split(",")] for box in values.split(";")]
        except ValueError:
            part = []
        if not part or any(len(b) != 4 for b in part):
            raise SpecError(f"--boxes={text}: expected [PART=]y0,x0,y1,x1;... (integers)")
        if len(part) != count:
            raise SpecError(
                f"--boxes: part {name!r} has {len(part)} boxes for {count} "
                "images of --image; give one per image, in order"
            )
        if name in parts or name == correspondence.RANDOM:
            raise SpecError(f"--boxes: part name {name!r} is used twice or reserved")
        parts[name] = part
    return parts


def _correspondence(spec: VisualizeSpec, model, config, output_dir: str) -> list[str]:
    """The Delta_l table, correspondence.json and the masked inputs."""
    if spec.image is None or spec.data is not None or spec.full_image:
        raise SpecError(
            "--mode=correspondence takes --image (related images, centre crops), "
            "not --data or --full_image"
        )
    count = len(spec.image)
    parts = parse_parts(spec.boxes, count)
    model_spec = overfeat_tf.model_info(model).spec
    layers = spec.layers or [model_spec.trunk[-1].name] + [fc.name for fc in model_spec.head[-2:-1]]
    try:
        features = correspondence.LayerFeatures(model, list(layers))
    except ValueError as e:
        raise SpecError(f"--layers: {e}") from e
    batch = next(iter(_batches(spec, config, max_images=count, batch_size=count)))
    if len(batch["filename"]) != count:
        raise SpecError(f"--image: only {len(batch['filename'])} of {count} images could be read")
    value = occlusion.grey_value(spec.value, config["mean"], config["std"])
    try:
        result = correspondence.analyse(
            features,
            batch["image"],
            parts,
            draws=spec.draws,
            seed=spec.seed,
            value=value,
            zero_tolerance=spec.zero_tolerance,
            batch_size=spec.batch_size,
            names=list(spec.image),
        )
    except ValueError as e:
        raise SpecError(f"--boxes: {e}") from e
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


def _filters(model, layer: str, output_dir: str) -> list[str]:
    """The layer's filters as one grid."""
    path = os.path.join(output_dir, f"{layer}_filters.png")
    try:
        return [filters.write_filter_grid(model, path, layer)]
    except ValueError as e:
        raise SpecError(f"--layer: {e}") from e


def run(spec: VisualizeSpec) -> list[str]:
    """Draws `spec.mode` for the run of `spec.model_dir`; returns the paths written.

    Raises `SpecError` for a spec that cannot run.
    """
    check(spec)
    try:
        model, config = run_dir.restore_model(spec.model_dir, spec.checkpoint)
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
        raise SpecError(f"--model_dir={spec.model_dir}: {str(e).splitlines()[0]}") from e
    last_conv = overfeat_tf.model_info(model).spec.trunk[-1].name
    layer = spec.layer or ("conv1" if spec.mode == "filters" else last_conv)
    valid = feature_layer_names(model)
    if layer not in valid:
        raise SpecError(
            f"--layer={layer} is not a layer of {model.name}; valid: {', '.join(valid)}"
        )
    output_dir = spec.output_dir or os.path.join(spec.model_dir, spec.mode)
    if spec.mode == "filters":
        return _filters(model, layer, output_dir)
    if spec.mode == "deconv":
        return _deconv(spec, model, config, layer, output_dir)
    if spec.mode == "top9":
        return _top9(spec, model, config, layer, output_dir)
    if spec.mode == "correspondence":
        return _correspondence(spec, model, config, output_dir)
    return _occlusion(spec, model, config, layer, output_dir)
