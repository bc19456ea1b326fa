"""The papers' experiment tables: definitions (`tables`), a resumable runner (`runner`)
and markdown / JSON reports (`report`). The binary is `overfeat_tf.bin.experiment`."""

from overfeat_tf.experiments.report import markdown, report_json
from overfeat_tf.experiments.runner import ExperimentError, Settings, TableRunner
from overfeat_tf.experiments.tables import (
    TABLES,
    Evaluation,
    PaperFigure,
    Row,
    Run,
    Table,
    get_table,
)

__all__ = [
    "TABLES",
    "Evaluation",
    "ExperimentError",
    "PaperFigure",
    "Row",
    "Run",
    "Settings",
    "Table",
    "TableRunner",
    "get_table",
    "markdown",
    "report_json",
]
