"""The papers' experiment tables as data: which models to train, how to evaluate each row,
and the figure the paper reports for it.

A `Table` is a tuple of `Row`s. A row evaluates one trained model (or an ensemble of
several seeds of it) in one `Evaluation` mode. Trained models are `Run`s, named per
table: rows that name the same run share one training (OverFeat's evaluation rows reuse
one model per architecture; an ensemble reuses its base run as member 0). A run's
`options` are `overfeat_tf.build_model` keyword options (the papers' variants); its
`train` holds extra `TrainSpec` fields of a run (e.g. PCA lighting off).

Paper figures are top-1 / top-5 error in % on ILSVRC-2012 validation (ZFNet adds the
training top-1 error); a `delta` figure is a difference in points from the row's
`reference`, as AlexNet section 3 reports its ablations. Each row cites its source.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from overfeat_tf.models import variants

CENTER, TEN_VIEW, DENSE = "center", "ten_view", "dense"


@dataclasses.dataclass(frozen=True)
class Run:
    """One model to train: `overfeat-train --model=<model_name>`.

    Attributes:
      name: the run's directory under `<out_dir>/runs/`; extra ensemble seeds add
        `-seed<k>`.
      base: registry name of the paper's model.
      options: `build_model` variant options (`overfeat_tf.models.variants`), e.g.
        {"towers": 1}.
      train: extra `overfeat_tf.training.launch.TrainSpec` fields, e.g.
        {"pca_lighting": False}.
    """

    name: str
    base: str
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    train: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def model_name(self) -> str:
        """The variant's model name (`base` itself without options), e.g. alexnet-towers1."""
        return variants.variant_name(self.base, self.options)


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """How a row classifies the validation images.

    Attributes:
      mode: "center" (one centre crop), "ten_view" (4 corners + centre, flips) or
        "dense" (OverFeat section 3.3).
      scales: dense only: 1-based indices into `dense.default_scales(model)` (the
        paper's scale numbers 1..6); None: all six.
      fine_stride: dense only: offset pooling (False: the coarse stride).
      flips: dense only: also the mirrored image.
    """

    mode: str = CENTER
    scales: tuple[int, ...] | None = None
    fine_stride: bool = True
    flips: bool = True

    def describe(self) -> str:
        if self.mode == CENTER:
            return "centre crop"
        if self.mode == TEN_VIEW:
            return "10 views (4 corners + centre, flips)"
        scales = (
            "scales 1-6"
            if self.scales is None
            else (f"scale{'s' * (len(self.scales) > 1)} {','.join(map(str, self.scales))}")
        )
        stride = "fine" if self.fine_stride else "coarse"
        return f"dense, {scales}, {stride} stride{', flips' if self.flips else ''}"


@dataclasses.dataclass(frozen=True)
class PaperFigure:
    """What the paper reports for a row (errors in %, or points when `relative_to`).

    Attributes:
      top1, top5: validation top-1 / top-5 error; None: not reported.
      source: the citation.
      train_top1: training top-1 error (ZFNet's tables); None: not reported.
      delta: the figures are differences (points) from the row's reference.
      at_least: the paper says "over" the figure (AlexNet's PCA lighting: "over 1 %").
      note: what the paper's row is, where it differs from ours (e.g. "5 CNNs").
    """

    top1: float | None
    top5: float | None
    source: str
    train_top1: float | None = None
    delta: bool = False
    at_least: bool = False
    note: str = ""


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a table: a run (or an ensemble of its seeds), evaluated one way.

    `reference` names the row that differences (measured and the paper's) are taken
    from; None: the row is a baseline.
    """

    name: str
    label: str
    run: Run
    evaluation: Evaluation = Evaluation()
    ensemble: bool = False
    paper: PaperFigure | None = None
    reference: str | None = None


@dataclasses.dataclass(frozen=True)
class Table:
    """A paper's table: rows, and whether it shows training error (ZFNet's does)."""

    name: str
    title: str
    rows: tuple[Row, ...]
    train_error: bool = False

    def __post_init__(self) -> None:
        names = [row.name for row in self.rows]
        if len(set(names)) != len(names):
            raise ValueError(f"Table {self.name!r} repeats a row name: {names}")
        for row in self.rows:
            if row.reference is not None and row.reference not in names:
                raise ValueError(f"Row {row.name!r} references unknown row {row.reference!r}")
        self.runs()

    def check_rows(self, names: Sequence[str]) -> None:
        """Raises ValueError naming the valid rows when `names` holds an unknown one."""
        unknown = sorted(set(names) - {row.name for row in self.rows})
        if unknown:
            raise ValueError(
                f"Unknown rows {', '.join(unknown)} of table {self.name!r}; valid: "
                + ", ".join(row.name for row in self.rows)
            )

    def row(self, name: str) -> Row:
        return next(row for row in self.rows if row.name == name)

    def runs(self) -> dict[str, Run]:
        """The table's runs by name (each trained once, whatever rows share it)."""
        runs: dict[str, Run] = {}
        for row in self.rows:
            if runs.setdefault(row.run.name, row.run) != row.run:
                raise ValueError(f"Table {self.name!r}: two different runs named {row.run.name!r}")
        return runs


# ---- AlexNet section 3 (Krizhevsky et al. 2012) ------------------------------------------

_ALEXNET = "Krizhevsky et al. 2012"
_ALEXNET_BASE = Run("alexnet", "alexnet")

ALEXNET_ABLATIONS = Table(
    name="alexnet_ablations",
    title="AlexNet's design choices (Krizhevsky et al. 2012, sections 3-4)",
    rows=(
        Row(
            "two_towers",
            "AlexNet: 2 towers, LRN, overlapping pooling, PCA lighting",
            _ALEXNET_BASE,
            # Table 1 / section 6: 1 CNN, validation 40.7 / 18.2.
            paper=PaperFigure(40.7, 18.2, f"{_ALEXNET}, section 6 (1 CNN)"),
        ),
        Row(
            "one_tower",
            "1 tower (half the kernels of conv1-4)",
            Run("one_tower", "alexnet", {"towers": 1}),
            # Section 3.2: two GPUs reduce the error rates by 1.7 % and 1.2 %.
            paper=PaperFigure(1.7, 1.2, f"{_ALEXNET}, section 3.2", delta=True),
            reference="two_towers",
        ),
        Row(
            "no_lrn",
            "no local response normalisation",
            Run("no_lrn", "alexnet", {"lrn": False}),
            # Section 3.3: response normalisation reduces the errors by 1.4 % and 1.2 %.
            paper=PaperFigure(1.4, 1.2, f"{_ALEXNET}, section 3.3", delta=True),
            reference="two_towers",
        ),
        Row(
            "non_overlapping_pooling",
            "non-overlapping pooling (2x2 / 2)",
            Run("non_overlapping_pooling", "alexnet", {"pooling": "non_overlapping"}),
            # Section 3.4: overlapping pooling reduces the errors by 0.4 % and 0.3 %.
            paper=PaperFigure(0.4, 0.3, f"{_ALEXNET}, section 3.4", delta=True),
            reference="two_towers",
        ),
        Row(
            "no_pca_lighting",
            "no PCA lighting augmentation",
            Run("no_pca_lighting", "alexnet", train={"pca_lighting": False}),
            # Section 4.1: the scheme reduces the top-1 error rate by over 1 %.
            paper=PaperFigure(1.0, None, f"{_ALEXNET}, section 4.1", delta=True, at_least=True),
            reference="two_towers",
        ),
        Row(
            "ensemble",
            "ensemble of N seeds of the base net",
            _ALEXNET_BASE,
            ensemble=True,
            # Table 2 / section 6: averaging 5 CNNs, validation 38.1 / 16.4.
            paper=PaperFigure(38.1, 16.4, f"{_ALEXNET}, section 6", note="5 CNNs"),
            reference="two_towers",
        ),
    ),
)

# ---- OverFeat Table 2 (Sermanet et al. 2014) ---------------------------------------------

_OVERFEAT = "Sermanet et al. 2014, Table 2"
_FOUR_SCALES = (1, 2, 4, 6)
_OVERFEAT_MODES = (
    ("scale1_coarse", Evaluation(DENSE, (1,), fine_stride=False)),
    ("scale1_fine", Evaluation(DENSE, (1,))),
    ("4scales_fine", Evaluation(DENSE, _FOUR_SCALES)),
    ("6scales_fine", Evaluation(DENSE)),
    ("10view", Evaluation(TEN_VIEW)),
)
# Table 2's figures per (model, row suffix); absent: the paper has no such row.
_OVERFEAT_PAPER = {
    ("fast", "scale1_coarse"): (39.28, 17.12),
    ("fast", "scale1_fine"): (39.01, 16.97),
    ("fast", "4scales_fine"): (38.57, 16.39),
    ("fast", "6scales_fine"): (38.12, 16.27),
    ("accurate", "4scales_fine"): (35.74, 14.18),
    ("accurate", "10view"): (35.60, 14.71),
    ("fast", "ensemble"): (35.10, 13.86),
    ("accurate", "ensemble"): (33.96, 13.24),
}


def _overfeat_rows(size: str) -> tuple[Row, ...]:
    """Every evaluation of one trained model of `size`, then an ensemble of its seeds."""
    run = Run(size, f"overfeat_{size}")

    def paper(key: str, note: str = "") -> PaperFigure | None:
        figure = _OVERFEAT_PAPER.get((size, key))
        return figure and PaperFigure(*figure, _OVERFEAT, note=note)

    baseline = f"{size}_{_OVERFEAT_MODES[0][0]}"
    rows = [
        Row(
            f"{size}_{key}",
            f"{size}, {evaluation.describe()}",
            run,
            evaluation,
            paper=paper(key),
            reference=None if i == 0 else baseline,
        )
        for i, (key, evaluation) in enumerate(_OVERFEAT_MODES)
    ]
    # Ensembles are compared with one model evaluated the same way (4 scales, fine).
    single_key, single = _OVERFEAT_MODES[2]
    rows.append(
        Row(
            f"{size}_ensemble",
            f"{size}, ensemble of N seeds, {single.describe()}",
            run,
            single,
            ensemble=True,
            paper=paper("ensemble", "7 models"),
            reference=f"{size}_{single_key}",
        )
    )
    return tuple(rows)


OVERFEAT_TABLE2 = Table(
    name="overfeat_table2",
    title="OverFeat's multi-scale classification (Sermanet et al. 2014, Table 2)",
    rows=_overfeat_rows("fast") + _overfeat_rows("accurate"),
)

# ---- ZFNet section 5.1 architecture analysis (Zeiler & Fergus 2014) ----------------------

# ECCV Table 2 = arXiv v3 Table 3: train top-1 / val top-1 / val top-5 error.
_ZFNET = "Zeiler & Fergus 2014, Table 3 (arXiv v3)"


def _zf(train: float, top1: float, top5: float, **kwargs: Any) -> PaperFigure:
    return PaperFigure(top1, top5, _ZFNET, train_top1=train, **kwargs)


_REPLICA = _zf(35.1, 40.5, 18.1)


def _alexnet(name: str, **options: Any) -> Run:
    return Run(name, "alexnet", options)


def _zfnet(name: str, **options: Any) -> Run:
    return Run(name, "zfnet", options)


# The paper removes layers from its AlexNet replica and widens ZFNet; so do we.
ZFNET_VARIANTS = Table(
    name="zfnet_variants",
    title="ZFNet's architecture analysis (Zeiler & Fergus 2014, section 5.1)",
    train_error=True,
    rows=(
        Row(
            "alexnet",
            "AlexNet (the paper: its AlexNet replica)",
            _alexnet("alexnet"),
            paper=_REPLICA,
        ),
        Row(
            "alexnet_no_conv3_conv4",
            "AlexNet without conv3, conv4",
            _alexnet("alexnet_no_conv3_conv4", without=("conv3", "conv4")),
            paper=_zf(41.8, 45.4, 22.1),
            reference="alexnet",
        ),
        Row(
            "alexnet_no_fc6_fc7",
            "AlexNet without fc6, fc7",
            _alexnet("alexnet_no_fc6_fc7", without=("fc6", "fc7")),
            paper=_zf(27.4, 44.8, 22.4),
            reference="alexnet",
        ),
        Row(
            "alexnet_no_conv3_conv4_fc6_fc7",
            "AlexNet without conv3, conv4, fc6, fc7",
            _alexnet("alexnet_no_conv3_conv4_fc6_fc7", without=("conv3", "conv4", "fc6", "fc7")),
            paper=_zf(71.1, 71.3, 50.1),
            reference="alexnet",
        ),
        Row("zfnet", "ZFNet", _zfnet("zfnet"), paper=_zf(33.1, 38.4, 16.5), reference="alexnet"),
        Row(
            "zfnet_conv345_512_1024_512",
            "ZFNet, conv3-5 at 512 / 1024 / 512 maps",
            _zfnet("zfnet_conv345_512_1024_512", conv_maps=(512, 1024, 512)),
            paper=_zf(18.8, 37.5, 16.0),
            reference="zfnet",
        ),
        Row(
            "zfnet_fc_8192",
            "ZFNet, fc6 and fc7 at 8192 units",
            _zfnet("zfnet_fc_8192", fc_units=8192),
            paper=_zf(22.0, 38.8, 17.0),
            reference="zfnet",
        ),
        Row(
            "zfnet_conv1_11x11s4",
            "ZFNet with AlexNet's 11x11 / 4 first layer (aliasing)",
            _zfnet("zfnet_conv1_11x11s4", conv1="11x11/4"),
            # The paper compares whole nets (its AlexNet replica against ZFNet, section
            # 4.1 and Table 3); it gives no figure for this one change alone.
            reference="zfnet",
        ),
    ),
)

TABLES: dict[str, Table] = {
    table.name: table for table in (ALEXNET_ABLATIONS, OVERFEAT_TABLE2, ZFNET_VARIANTS)
}


def get_table(name: str) -> Table:
    """The table called `name`; a ValueError naming the valid ones otherwise."""
    try:
        return TABLES[name]
    except KeyError:
        raise ValueError(f"Unknown table {name!r}; valid: {', '.join(TABLES)}") from None
