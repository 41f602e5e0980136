"""Reports: typed results (`schema`), measuring models side by side (`measure`), Markdown (`render`), plots."""

from .measure import measure_models
from .plots import plot_accuracy_by_depth, plot_tradeoffs
from .render import markdown_table, models_table, report_markdown, timing_note
from .schema import Energy, Hardware, ModelEntry, Report, TaskInfo, Timing

__all__ = [
    "Energy",
    "Hardware",
    "ModelEntry",
    "Report",
    "TaskInfo",
    "Timing",
    "markdown_table",
    "measure_models",
    "models_table",
    "plot_accuracy_by_depth",
    "plot_tradeoffs",
    "report_markdown",
    "timing_note",
]
