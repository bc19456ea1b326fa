"""Ensembles: several models' class probabilities averaged, as the papers' best results.

AlexNet averaged the predictions of 5 and 7 CNNs (Krizhevsky et al. 2012, section 6);
OverFeat's best rows average 7 models (Sermanet et al. 2014, Table 2). An ensemble is an
`overfeat_tf.evaluation.Evaluator` like any single model, so `evaluation.evaluate`,
`overfeat-evaluate` and the experiment tables run it in every mode unchanged:

    EnsembleEvaluator(members: Sequence[Evaluator])
        images -> mean of the members' probabilities [b, num_classes]. The members read
        the same input (one `input_mode`): build them with the same mode.
    Renormalized(evaluator, source=(mean, std), target=(mean, std))
        an evaluator fed images normalised for another model.
    averaged(evaluators, normalizations) -> EnsembleEvaluator
        the evaluators averaged, fed images normalised as `normalizations[0]` says
        (each member renormalised to its own; the exporter's ensembles use this).
    restore_ensemble(model_dirs, checkpoints=None) -> (models, configs)
        the trained models of several run directories, checked to agree
        (`check_compatible`).
    ensemble_evaluator(models, configs, mode, *, scales=None, fine_stride=True,
                       flips=True) -> Evaluator
        one evaluator per model in `mode` ("center", "ten_view", "dense"), averaged;
        feed it images prepared with `configs[0]`'s input size, mean and std.
    check_compatible(configs, names) -> None
        `IncompatibleMembers` (a ValueError; one line, naming the member) unless all
        `model.json` configs share the class list and input size.

What members may differ in: architecture (variants, widths, initialisations) and input
normalisation; what they may not: the class list (the averaged probabilities must
mean the same classes) and the input size (one crop, or one set of dense scales'
windows, feeds every member). Normalisation is affine per channel, so the pipeline
prepares images once, with the first member's mean and std, and `Renormalized` maps them
to each other member's, exactly: x_k = (x_0 * std_0 + mean_0 - mean_k) / std_k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from overfeat_tf import run_dir
from overfeat_tf.evaluation import views

Normalization = tuple[Sequence[float], Sequence[float]]  # (mean [3], std [3]), 0-255 scale


class IncompatibleMembers(ValueError):
    """Ensemble members that cannot be averaged: other classes, input sizes or inputs."""


class EnsembleEvaluator:
    """The mean of the members' class probabilities, `images -> [b, num_classes]`.

    Args:
      members: evaluators reading the same input (`input_mode`), with the same classes.

    Attributes:
      name, input_mode: the members'. description: theirs and the ensemble's size.
      members: the evaluators.
    """

    def __init__(self, members: Sequence[views.Evaluator]) -> None:
        if not members:
            raise ValueError("An ensemble needs at least one member; received none")
        modes = {m.input_mode for m in members}
        if len(modes) > 1:
            raise IncompatibleMembers(
                f"Ensemble members read different inputs ({', '.join(sorted(modes))}); "
                "build every member's evaluator in the same mode"
            )
        self.members = tuple(members)
        self.name = members[0].name
        self.input_mode = members[0].input_mode
        self.description = members[0].description
        if len(members) > 1:
            self.description += f", mean of {len(members)} models"

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        probabilities = [member(images) for member in self.members]
        shapes = {tuple(p.shape[1:]) for p in probabilities}
        if len(shapes) > 1:
            raise IncompatibleMembers(
                f"Ensemble members disagree on the number of classes: {shapes}"
            )
        return tf.add_n(probabilities) / len(probabilities)


class Renormalized:
    """`evaluator`, fed images normalised as `source` says instead of `target`.

    Images `(pixel - mean_s) / std_s` become `(pixel - mean_t) / std_t` before the
    evaluator sees them: one per-channel multiply-add on the last axis (any input shape).
    """

    def __init__(
        self, evaluator: views.Evaluator, source: Normalization, target: Normalization
    ) -> None:
        (source_mean, source_std), (target_mean, target_std) = (
            [np.asarray(v, np.float32) for v in pair] for pair in (source, target)
        )
        if any(v.shape != (3,) for v in (source_mean, source_std, target_mean, target_std)):
            raise IncompatibleMembers(
                "Ensemble members with different normalisations need per-channel mean and "
                "std (3 values each)"
            )
        self._evaluator = evaluator
        self._scale = tf.constant(source_std / target_std)
        self._offset = tf.constant((source_mean - target_mean) / target_std)
        self.name = evaluator.name
        self.input_mode = evaluator.input_mode
        self.description = evaluator.description

    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return self._evaluator(images * self._scale + self._offset)


def check_compatible(configs: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """Raises IncompatibleMembers unless every config has the first one's classes and
    input size.

    Args:
      configs: `model.json` dicts (`overfeat_tf.run_dir.read_config`).
      names: what to call each member in the message (e.g. its directory).
    """
    first = configs[0]
    for config, name in zip(configs[1:], names[1:]):
        if config["class_names"] != first["class_names"]:
            raise IncompatibleMembers(
                f"{name} has {len(config['class_names'])} classes that differ from the "
                f"{len(first['class_names'])} of {names[0]}: an ensemble averages the "
                "probabilities of the same classes"
            )
        if config["input_size"] != first["input_size"]:
            raise IncompatibleMembers(
                f"{name} takes {config['input_size']} px inputs, {names[0]} "
                f"{first['input_size']} px: ensemble members share one input size"
            )


def restore_ensemble(
    model_dirs: Sequence[str], checkpoints: Sequence[str | None] | None = None
) -> tuple[list[keras.Model], list[dict[str, Any]]]:
    """The trained models and `model.json` configs of `model_dirs`, checked to agree.

    Args:
      model_dirs: run directories (`overfeat_tf.run_dir` layout).
      checkpoints: one checkpoint path (or None: the latest) per directory.

    Raises:
      FileNotFoundError: a directory without model.json or checkpoint.
      IncompatibleMembers: see `check_compatible`.
    """
    checkpoints = list(checkpoints) if checkpoints is not None else [None] * len(model_dirs)
    if len(checkpoints) != len(model_dirs):
        raise ValueError(f"{len(checkpoints)} checkpoints given for {len(model_dirs)} model dirs")
    # Check the configs before restoring: a mismatch fails before any model is built.
    check_compatible([run_dir.read_config(d) for d in model_dirs], model_dirs)
    restored = [run_dir.restore_model(d, c) for d, c in zip(model_dirs, checkpoints)]
    return [model for model, _ in restored], [config for _, config in restored]


def ensemble_evaluator(
    models: Sequence[keras.Model],
    configs: Sequence[dict[str, Any]],
    mode: str,
    *,
    scales: Sequence[int | Sequence[int]] | None = None,
    fine_stride: bool = True,
    flips: bool = True,
    xla: str = "auto",
) -> EnsembleEvaluator:
    """The members' `mode` evaluators averaged; feed it images prepared with `configs[0]`.

    Args:
      models: trained models (e.g. from `restore_ensemble`).
      configs: their `model.json` dicts (input size, mean, std, class names).
      mode: "center", "ten_view" or "dense" (`evaluation.make_evaluator`).
      scales, fine_stride, flips: dense settings, the same for every member.
      xla: each member's XLA choice ("auto", "on", "off"; `overfeat_tf.xla_choice`).

    Raises:
      IncompatibleMembers: see `check_compatible`; or normalisations that differ and are
        not per-channel.
      ValueError: see `evaluation.make_evaluator`.
    """
    check_compatible(configs, [m.name for m in models])
    evaluators = [
        views.make_evaluator(
            model, mode, scales=scales, fine_stride=fine_stride, flips=flips, xla=xla
        )
        for model in models
    ]
    return averaged(evaluators, [(config["mean"], config["std"]) for config in configs])


def averaged(
    evaluators: Sequence[views.Evaluator], normalizations: Sequence[Normalization]
) -> EnsembleEvaluator:
    """`evaluators` averaged, fed images normalised with `normalizations[0]`.

    Member k is wrapped in `Renormalized` where its normalisation (mean, std) differs.
    """
    source = normalizations[0]
    members = [
        evaluator
        if _same(normalization, source)
        else Renormalized(evaluator, source, normalization)
        for evaluator, normalization in zip(evaluators, normalizations, strict=True)
    ]
    return EnsembleEvaluator(members)


def _same(a: Normalization, b: Normalization) -> bool:
    return all(
        np.array_equal(np.asarray(x, np.float64), np.asarray(y, np.float64)) for x, y in zip(a, b)
    )
