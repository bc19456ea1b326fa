"""The papers' architecture ablations as build options and as model names.

`build_model(name, ..., **options)` takes the options below; the built Keras model is
named by its variant, `<base>-<token>-<token>...` (tokens in the table's order, defaults
left out), and `model_info` parses that name back. So a variant survives every way a
model travels: a `.keras` file keeps the model's name, a run directory's `model.json`
keeps the options in `build_kwargs`, and `model_info(model)` returns the variant's layer
table for the dense evaluator, `fully_conv`, the visualizations and the exporter. A
default model keeps its plain name (`build_model("alexnet", towers=2).name == "alexnet"`).

| option | values (default first) | models | token |
|---|---|---|---|
| `conv1` | "7x7/2", "11x11/4" | zfnet | `conv1_11x11s4` |
| `conv_maps` | (384, 384, 256), any (c3, c4, c5) | alexnet, zfnet | `maps512_1024_512` |
| `fc_units` | 4096, any | alexnet, zfnet | `fc8192` |
| `without` | (), any of conv3, conv4, fc6, fc7 | alexnet, zfnet | `noconv3`, `nofc7`, ... |
| `pooling` | "overlapping", "non_overlapping" | alexnet, zfnet | `nonoverlapping` |
| `lrn` | True, False | alexnet, zfnet | `nolrn` |
| `towers` | 2, 1 | alexnet | `towers1` |

- `towers=1`: the one-GPU net AlexNet section 3.2 compares with: half the kernels of
  conv1-4 (48, 128, 192, 192), conv5 and the FC layers unchanged, no groups.
- `lrn=False`: no local response normalisation (AlexNet section 3.3).
- `pooling="non_overlapping"`: every max-pool 2x2 / 2 instead of 3x3 / 2 (AlexNet
  section 3.4). Floor rounding gives the same map sizes without padding: AlexNet
  55 -> 27 -> 13 -> 6 (the last row and column of 55, 27 and 13 fall outside every
  window), ZFNet 110 -> 55, 26 -> 13, 13 -> 6 (ceil rounding would give 7 there).
- `without`: ZFNet section 5.1 / Table 3's removals. The first remaining FC layer takes
  the removed first FC's kernel (6x6 on the pool5 map); the rest keep their rows (the
  dropout on fc6's and fc7's outputs goes with them: without fc6 and fc7, none is left).
- `conv_maps`: the maps of conv3, conv4, conv5 (ZFNet Table 3: 512, 1024, 512).
- `fc_units`: the units of fc6 and fc7 (ZFNet Table 3: 2048, 8192).
- `conv1="11x11/4"`: ZFNet with AlexNet's first layer, the aliasing comparison of ZFNet
  section 4.1 / Fig. 6. The input stays 224 (so data, normalisation and dense scales are
  ZFNet's): conv1 11x11 / 4 with 2 px of zero padding gives 55x55 (AlexNet's size),
  pool1 27, and conv2 becomes AlexNet's 5x5 / 1, pad 2 (ZFNet's stride 2 there only
  compensated for its stride-2 conv1), keeping 27 -> pool2 13 -> 13 -> pool5 6 and the
  total stride 32.

Options combine; `towers=1` halves conv1-4 after `conv_maps`. No variant changes the
input size or the normalisation, so models of one base are fed the same images.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from overfeat_tf.models.spec import FC, ArchSpec, Conv, Norm, Pool

REMOVABLE = ("conv3", "conv4", "fc6", "fc7")
_ALEXNET_LIKE = ("alexnet", "zfnet")


def _one_of(*choices: Any) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        # bool is an int: lrn=1 must not pass as True, towers=True not as 1.
        if any(type(value) is type(c) and value == c for c in choices):
            return value
        raise ValueError(f"must be one of {', '.join(map(repr, choices))}; received {value!r}")

    return check


def _positive_ints(count: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        values = (value,) if count == 1 else tuple(value) if isinstance(value, Sequence) else ()
        if len(values) != count or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
        ):
            what = "a positive integer" if count == 1 else f"{count} positive integers"
            raise ValueError(f"must be {what}; received {value!r}")
        return values[0] if count == 1 else values

    return check


def _layers(value: Any) -> tuple[str, ...]:
    is_list = isinstance(value, Sequence) and not isinstance(value, str)
    names = tuple(value) if is_list else (value,)
    unknown = [n for n in names if n not in REMOVABLE]
    if unknown or len(set(names)) != len(names):
        raise ValueError(
            f"must be distinct layers among {', '.join(REMOVABLE)}; received {value!r}"
        )
    return tuple(n for n in REMOVABLE if n in names)


def _replace_rows(spec: ArchSpec, fn: Callable[[Any], Any]) -> ArchSpec:
    """Applies `fn` to every trunk row, the last pool and every head row."""
    return ArchSpec(
        trunk=tuple(fn(r) for r in spec.trunk),
        last_pool=fn(spec.last_pool),
        head=tuple(fn(r) for r in spec.head),
    )


def _conv1(spec: ArchSpec, value: str) -> ArchSpec:
    del value  # the only non-default value is AlexNet's "11x11/4"
    layers = {
        "conv1": {"kernel": 11, "stride": 4, "pad": 2},
        "conv2": {"kernel": 5, "stride": 1, "pad": 2},
    }
    return _replace_rows(
        spec, lambda r: dataclasses.replace(r, **layers[r.name]) if r.name in layers else r
    )


def _conv_maps(spec: ArchSpec, value: tuple[int, int, int]) -> ArchSpec:
    maps = dict(zip(("conv3", "conv4", "conv5"), value))
    return _replace_rows(
        spec, lambda r: dataclasses.replace(r, filters=maps[r.name]) if r.name in maps else r
    )


def _fc_units(spec: ArchSpec, value: int) -> ArchSpec:
    def hidden(row) -> bool:
        return isinstance(row, FC) and row.units is not None

    return _replace_rows(spec, lambda r: dataclasses.replace(r, units=value) if hidden(r) else r)


def _without(spec: ArchSpec, value: tuple[str, ...]) -> ArchSpec:
    head = tuple(r for r in spec.head if r.name not in value)
    head = (dataclasses.replace(head[0], kernel=spec.head[0].kernel),) + head[1:]
    return ArchSpec(tuple(r for r in spec.trunk if r.name not in value), spec.last_pool, head)


def _pooling(spec: ArchSpec, value: str) -> ArchSpec:
    del value  # the only non-default value is "non_overlapping"
    return _replace_rows(spec, lambda r: Pool(r.name, 2, 2) if isinstance(r, Pool) else r)


def _lrn(spec: ArchSpec, value: bool) -> ArchSpec:
    del value  # the only non-default value is False
    return ArchSpec(
        tuple(r for r in spec.trunk if not isinstance(r, Norm)), spec.last_pool, spec.head
    )


def _towers(spec: ArchSpec, value: int) -> ArchSpec:
    del value  # the only non-default value is 1
    halved = ("conv1", "conv2", "conv3", "conv4")

    def one_tower(row):
        if not isinstance(row, Conv):
            return row
        filters = row.filters // 2 if row.name in halved else row.filters
        return dataclasses.replace(row, filters=filters, groups=1)

    return _replace_rows(spec, one_tower)


@dataclasses.dataclass(frozen=True)
class _Option:
    """One build option: its check, how it changes the table, and its name token(s)."""

    name: str
    default: Any
    models: tuple[str, ...]
    check: Callable[[Any], Any]  # value -> canonical value; ValueError if invalid
    apply: Callable[[ArchSpec, Any], ArchSpec]
    token_pattern: str  # fullmatch; groups -> value via `parse`
    parse: Callable[[re.Match], Any]
    tokens: Callable[[Any], list[str]]
    token_help: str  # the token(s) as the error for an unknown one lists them


# In the order options apply and tokens appear in names.
OPTIONS: tuple[_Option, ...] = (
    _Option(
        "conv1",
        "7x7/2",
        ("zfnet",),
        _one_of("7x7/2", "11x11/4"),
        _conv1,
        r"conv1_11x11s4",
        lambda m: "11x11/4",
        lambda v: ["conv1_11x11s4"],
        "conv1_11x11s4",
    ),
    _Option(
        "conv_maps",
        (384, 384, 256),
        _ALEXNET_LIKE,
        _positive_ints(3),
        _conv_maps,
        r"maps(\d+)_(\d+)_(\d+)",
        lambda m: tuple(int(g) for g in m.groups()),
        lambda v: ["maps" + "_".join(map(str, v))],
        "mapsC3_C4_C5",
    ),
    _Option(
        "fc_units",
        4096,
        _ALEXNET_LIKE,
        _positive_ints(1),
        _fc_units,
        r"fc(\d+)",
        lambda m: int(m.group(1)),
        lambda v: [f"fc{v}"],
        "fcUNITS",
    ),
    _Option(
        "without",
        (),
        _ALEXNET_LIKE,
        _layers,
        _without,
        r"no(conv3|conv4|fc6|fc7)",
        lambda m: (m.group(1),),
        lambda v: [f"no{layer}" for layer in v],
        "noconv3, noconv4, nofc6, nofc7",
    ),
    _Option(
        "pooling",
        "overlapping",
        _ALEXNET_LIKE,
        _one_of("overlapping", "non_overlapping"),
        _pooling,
        r"nonoverlapping",
        lambda m: "non_overlapping",
        lambda v: ["nonoverlapping"],
        "nonoverlapping",
    ),
    _Option(
        "lrn",
        True,
        _ALEXNET_LIKE,
        _one_of(True, False),
        _lrn,
        r"nolrn",
        lambda m: False,
        lambda v: ["nolrn"],
        "nolrn",
    ),
    _Option(
        "towers",
        2,
        ("alexnet",),
        _one_of(2, 1),
        _towers,
        r"towers1",
        lambda m: 1,
        lambda v: ["towers1"],
        "towers1",
    ),
)
OPTION_NAMES: tuple[str, ...] = tuple(o.name for o in OPTIONS)
_BY_NAME = {o.name: o for o in OPTIONS}


def _valid_for(base: str) -> str:
    names = [o.name for o in OPTIONS if base in o.models]
    return ", ".join(names) if names else f"none: {base} has no variants"


def check_options(
    base: str, options: Mapping[str, Any], *, keep_defaults: bool = False
) -> dict[str, Any]:
    """`options` validated for `base`, canonical values, in table order; defaults are
    dropped unless `keep_defaults` (a default applies to every model).

    Raises:
      ValueError: an unknown option, one that does not apply to `base`, or a bad value;
        the message names the option.
    """
    for name in options:
        if name not in _BY_NAME:
            raise ValueError(
                f"Unknown variant option {name!r}; valid for {base}: {_valid_for(base)}"
            )
    checked = {}
    for option in OPTIONS:
        if option.name not in options:
            continue
        try:
            value = option.check(options[option.name])
        except ValueError as e:
            raise ValueError(f"Variant option {option.name} {e}") from None
        if base not in option.models:
            raise ValueError(
                f"Variant option {option.name!r} does not apply to {base}; valid for "
                f"{base}: {_valid_for(base)}"
            )
        if value != option.default or keep_defaults:
            checked[option.name] = value
    return checked


def options_from_tokens(base: str, tokens: Sequence[str]) -> dict[str, Any]:
    """Options named by name tokens (`["towers1", "nolrn"]`), checked for `base`.

    Raises:
      ValueError: an unknown or repeated token; the message lists the valid ones.
    """
    options: dict[str, Any] = {}
    for token in tokens:
        for option in OPTIONS:
            match = re.fullmatch(option.token_pattern, token)
            if match is None:
                continue
            value = option.parse(match)
            if option.name == "without":
                value = options.get("without", ()) + value
            elif option.name in options:
                raise ValueError(f"Variant token {token!r} repeats option {option.name}")
            options[option.name] = value
            break
        else:
            valid = ", ".join(o.token_help for o in OPTIONS)
            raise ValueError(f"Unknown variant token {token!r}; valid: {valid}")
    return check_options(base, options)


def split_name(name: str) -> tuple[str, dict[str, Any]]:
    """`"alexnet-towers1-nolrn"` -> ("alexnet", {"lrn": False, "towers": 1}).

    The base is not checked here (the registry does that); the tokens are.
    """
    base, *tokens = name.split("-")
    return base, options_from_tokens(base, tokens)


def with_options(name: str, options: Mapping[str, Any]) -> str:
    """The canonical name of model `name` (itself maybe a variant) with `options` added.

    Raises:
      ValueError: see `check_options`; or an option that contradicts the name.
    """
    base, named = split_name(name)
    for option, value in check_options(base, options, keep_defaults=True).items():
        if option in named and named[option] != value:
            raise ValueError(
                f"Variant option {option}={value!r} contradicts the model name {name!r}"
            )
        named[option] = value
    return variant_name(base, named)


def variant_name(base: str, options: Mapping[str, Any]) -> str:
    """The canonical model name of `base` with `options` (`base` itself for defaults)."""
    tokens = [base]
    for name, value in check_options(base, options).items():
        tokens += _BY_NAME[name].tokens(value)
    return "-".join(tokens)


def apply(spec: ArchSpec, options: Mapping[str, Any]) -> ArchSpec:
    """`spec` with the checked, non-default `options` (from `check_options`) applied."""
    for option in OPTIONS:
        if option.name in options:
            spec = option.apply(spec, options[option.name])
    return spec
