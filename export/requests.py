"""TF Serving requests <-> signature inputs: gRPC `PredictRequest` protos and REST JSON.

What a TF Serving client sends, turned into the tensors the SavedModel's signature takes
(as the server does before running it), and the reverse for writing requests (warm-up
records, clients, tests). REST follows TF Serving's predict API: row format
`{"instances": [...]}` or columnar `{"inputs": ...}`, an optional `"signature_name"`, and
binary strings as `{"b64": "<base64>"}`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

DEFAULT_SIGNATURE = "serving_default"

Signatures = Mapping[str, Any]  # name -> ConcreteFunction, e.g. `loaded.signatures`.


def predict_request(
    inputs: Mapping[str, Any], *, model_name: str, signature_name: str = DEFAULT_SIGNATURE
) -> predict_pb2.PredictRequest:
    """A gRPC PredictRequest carrying `inputs` (name -> array-like; bytes lists for strings)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
    return request


def _input_specs(signatures: Signatures, signature_name: str) -> dict[str, tf.TensorSpec]:
    if signature_name not in signatures:
        raise ValueError(
            f"Unknown signature_name {signature_name!r}; the model has {sorted(signatures)}."
        )
    return dict(signatures[signature_name].structured_input_signature[1])


def _checked(
    inputs: Mapping[str, np.ndarray], specs: Mapping[str, tf.TensorSpec], signature_name: str
) -> dict[str, tf.Tensor]:
    """Converts arrays to tensors of the signature's dtypes; names must match exactly."""
    if set(inputs) != set(specs):
        raise ValueError(
            f"Signature {signature_name!r} takes inputs {sorted(specs)}; the request has "
            f"{sorted(inputs)}."
        )
    tensors = {}
    for name, spec in specs.items():
        value = inputs[name]
        if spec.dtype == tf.string:
            tensors[name] = tf.constant(np.asarray(value, dtype=object), tf.string)
        else:
            tensors[name] = tf.constant(np.asarray(value, dtype=spec.dtype.as_numpy_dtype))
        if not spec.shape.is_compatible_with(tensors[name].shape):
            raise ValueError(
                f"Input {name!r} of {signature_name!r} must have shape {spec.shape}; "
                f"received {tensors[name].shape}."
            )
    return tensors


def inputs_from_predict_request(
    request: predict_pb2.PredictRequest, signatures: Signatures
) -> tuple[str, dict[str, tf.Tensor]]:
    """(signature name, input tensors) of a gRPC PredictRequest, as TF Serving reads it.

    An empty `model_spec.signature_name` means "serving_default", as in TF Serving.
    """
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    arrays = {key: tf.make_ndarray(proto) for key, proto in request.inputs.items()}
    return name, _checked(arrays, _input_specs(signatures, name), name)


def _unwrap_b64(value: Any) -> Any:
    """Replaces every `{"b64": s}` in a JSON value by the bytes it encodes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"], validate=True)
        return {k: _unwrap_b64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_b64(v) for v in value]
    return value


def _is_named(instance: Any) -> bool:
    return isinstance(instance, dict) and set(instance) != {"b64"}


def inputs_from_rest(
    body: str | bytes | Mapping[str, Any], signatures: Signatures
) -> tuple[str, dict[str, tf.Tensor]]:
    """(signature name, input tensors) of a REST predict body, as TF Serving reads it.

    Row format: `{"instances": [x0, x1, ...]}`, each x the value of the single input, or
    an object of named inputs. Columnar format: `{"inputs": v}` for a single input, or
    `{"inputs": {"name": v, ...}}`. Binary strings are `{"b64": "..."}` anywhere.
    """
    if not isinstance(body, Mapping):
        body = json.loads(body)
    name = body.get("signature_name", DEFAULT_SIGNATURE)
    specs = _input_specs(signatures, name)
    if ("instances" in body) == ("inputs" in body):
        raise ValueError('A REST predict body has exactly one of "instances" and "inputs".')
    if "instances" in body:
        instances = body["instances"]
        if instances and all(_is_named(x) for x in instances):
            arrays = {key: [x.get(key) for x in instances] for key in instances[0]}
        elif len(specs) == 1:
            arrays = {next(iter(specs)): instances}
        else:
            raise ValueError(f"Signature {name!r} has several inputs: name them in each instance.")
    else:
        columns = body["inputs"]
        if _is_named(columns):
            arrays = dict(columns)
        elif len(specs) == 1:
            arrays = {next(iter(specs)): columns}
        else:
            raise ValueError(f'Signature {name!r} has several inputs: "inputs" must name them.')
    return name, _checked({k: _unwrap_b64(v) for k, v in arrays.items()}, specs, name)
