"""A table's results as markdown and JSON: measured errors beside the paper's figures."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from overfeat_tf.experiments.tables import PaperFigure, Row, Table

_DASH = "—"

# (PaperFigure attribute, result key) of each error column, in display order.
_VAL = (("top1", "top1_error"), ("top5", "top5_error"))
_WITH_TRAIN = (("train_top1", "train_top1_error"),) + _VAL


def _columns(table: Table) -> tuple[tuple[str, str], ...]:
    return _WITH_TRAIN if table.train_error else _VAL


def _join(values: Sequence[float | None], fmt: str) -> str:
    return " / ".join(_DASH if v is None else format(v, fmt) for v in values)


def _measured_delta(
    table: Table, row: Row, results: Mapping[str, Mapping[str, Any]]
) -> list[float | None] | None:
    if row.reference is None or row.name not in results or row.reference not in results:
        return None
    mine, ref = results[row.name], results[row.reference]
    return [
        None if mine.get(key) is None or ref.get(key) is None else mine[key] - ref[key]
        for _, key in _columns(table)
    ]


def _paper_delta(table: Table, row: Row) -> list[float | None] | None:
    """The paper's difference from the row it changes, where the paper gives both."""
    figure = row.paper
    if figure is None or row.reference is None:
        return None
    attributes = [attribute for attribute, _ in _columns(table)]
    if figure.delta:
        return [getattr(figure, a) for a in attributes]
    base = table.row(row.reference).paper
    if base is None:
        return None
    return [
        None
        if getattr(figure, a) is None or getattr(base, a) is None
        else getattr(figure, a) - getattr(base, a)
        for a in attributes
    ]


def _paper_cell(table: Table, row: Row) -> str:
    figure = row.paper
    if figure is None:
        return _DASH
    attributes = [attribute for attribute, _ in _columns(table)]
    if figure.delta:
        return _DASH
    text = _join([getattr(figure, a) for a in attributes], ".1f" if table.train_error else ".2f")
    return f"{text} ({figure.note})" if figure.note else text


def _delta_cell(values: list[float | None] | None, at_least: bool = False) -> str:
    if values is None:
        return _DASH
    text = _join(values, "+.1f")
    return f"over {text}" if at_least else text


def _time_cell(result: Mapping[str, Any]) -> str:
    train = result["train_seconds"]
    text = f"{train / 60:.1f} min train + " if train else "model reused, "
    return text + f"{result['eval_seconds']:.0f} s eval"


def markdown(table: Table, results: Sequence[Mapping[str, Any]], header: str = "") -> str:
    """The table in markdown: one line per row, measured figures beside the paper's.

    Rows without a result (not run yet) show dashes. `header` goes between the title
    and the table (the command, data, budget and load).
    """
    by_name = {result["row"]: result for result in results}
    what = "train top-1 / val top-1 / val top-5" if table.train_error else "top-1 / top-5"
    lines = [f"## {table.title}", ""]
    if header:
        lines += [header, ""]
    lines += [
        (
            f"| row | measured {what} err % | measured Δ vs reference (points) "
            f"| paper's {what} err % | paper's Δ (points) | reference | time |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for row in table.rows:
        result = by_name.get(row.name)
        measured = _DASH
        if result is not None:
            measured = _join([result.get(key) for _, key in _columns(table)], ".1f")
        at_least = row.paper is not None and row.paper.at_least
        lines.append(
            f"| `{row.name}` {row.label} | {measured} | {_delta_cell(_measured_delta(table, row, by_name))} "
            f"| {_paper_cell(table, row)} | {_delta_cell(_paper_delta(table, row), at_least)} "
            f"| {row.reference or _DASH} | {_time_cell(result) if result else 'not run'} |"
        )
    sources: dict[str, list[str]] = {}
    for row in table.rows:
        if row.paper is not None:
            sources.setdefault(row.paper.source, []).append(row.name)
    lines += ["", "The paper's figures (ILSVRC-2012 validation, full-size models):"]
    lines += [f"- {source}: {', '.join(names)}" for source, names in sources.items()]
    return "\n".join(lines) + "\n"


def report_json(
    table: Table, results: Sequence[Mapping[str, Any]], about: Mapping[str, Any]
) -> dict[str, Any]:
    """The table as JSON: `about` (command, settings, machine) and each row's measured
    result beside its definition and the paper's figure."""
    by_name = {result["row"]: result for result in results}
    rows = []
    for row in table.rows:
        rows.append(
            {
                "row": row.name,
                "label": row.label,
                "model": row.run.model_name,
                "options": dict(row.run.options),
                "train": dict(row.run.train),
                "ensemble": row.ensemble,
                "evaluation": dataclasses.asdict(row.evaluation),
                "reference": row.reference,
                "measured": by_name.get(row.name),
                "measured_delta": _measured_delta(table, row, by_name),
                "paper": _paper_json(row.paper),
                "paper_delta": _paper_delta(table, row),
            }
        )
    return {"table": table.name, "title": table.title, **about, "rows": rows}


def _paper_json(figure: PaperFigure | None) -> dict[str, Any] | None:
    return None if figure is None else dataclasses.asdict(figure)
