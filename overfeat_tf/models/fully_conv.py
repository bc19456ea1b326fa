"""The trunk and classifier of a built model, sharing its layers (no weight copies).

A model from `build_model` is a chain: trunk (up to the last convolution), last pool,
FC layers as convolutions, `logits` flatten. These views re-run the same layer objects
on inputs of any spatial size at least the native one (OverFeat section 3.5).
"""

from __future__ import annotations

import keras

from overfeat_tf.models.registry import model_info


def _chain(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def _split_index(model: keras.Model) -> int:
    names = [layer.name for layer in _chain(model)]
    return names.index(model_info(model).last_pool.name)


def _run(layers, input_shape, name: str) -> keras.Model:
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def trunk(model: keras.Model) -> keras.Model:
    """`[b, h, w, 3]` -> the last convolution's map `[b, h5, w5, c5]`, before the last pool."""
    layers = _chain(model)[: _split_index(model)]
    return _run(layers, (None, None, 3), f"{model.name}_trunk")


def classifier(model: keras.Model, include_pool: bool = True) -> keras.Model:
    """Trunk map `[b, h5, w5, c5]` -> logit map `[b, h', w', num_classes]`.

    With `include_pool=False` the input is the map after the last pool instead (the dense
    evaluator pools it itself, once per offset).
    """
    start = _split_index(model) + (0 if include_pool else 1)
    layers = _chain(model)[start:-1]
    channels = _chain(model)[_split_index(model) - 1].output.shape[-1]
    return _run(layers, (None, None, channels), f"{model.name}_classifier")


def layer_names(model: keras.Model) -> list[str]:
    """Names of the model's layers in order: stable end points (conv1..., pool5, fc6...)."""
    return [layer.name for layer in _chain(model)]


def feature_layer_names(model: keras.Model) -> list[str]:
    """The model's layers that output maps: all but the final `logits` flatten."""
    return [
        n for n in layer_names(model) if not isinstance(model.get_layer(n), keras.layers.Flatten)
    ]
