"""Markdown of a `Report`: the one table of models used by `report.md`, the command line and the model card."""

from __future__ import annotations

from ..tasks import TASKS
from .cpu import cpu_text
from .schema import SPREAD_SHOWN, ModelEntry, Report

NOT_MEASURED = "not measured"
NOT_APPLICABLE = "-"


def measured(value, spec: str = "", suffix: str = "", missing: str = NOT_MEASURED) -> str:
    """`value` formatted, or "not measured" when it is None."""
    return missing if value is None else f"{value:{spec}}{suffix}"


def millions(count) -> str:
    return NOT_MEASURED if count is None else f"{count / 1e6:.1f}M"


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats print with 4 decimals, and `|` inside a cell is escaped."""

    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _latency(model: ModelEntry, batch: str) -> str:
    latency, speedup, spread = model.latency_ms.get(batch), model.speedup.get(batch), model.latency_spread.get(batch)
    if latency is None:
        return NOT_MEASURED
    notes = [] if speedup is None else [f"{speedup:.2f}x"]
    if _shown(spread):
        notes.append(f"spread {spread:.0%}")
    return f"{latency:.1f} ms" + (f" ({', '.join(notes)})" if notes else "")


def _shown(spread: float | None) -> bool:
    return spread is not None and spread > SPREAD_SHOWN


def timing_note(report: Report) -> str | None:
    """What to read under the table of models: a warning when the absolute latencies are unreliable,
    and what the spreads printed in it are (None when there is nothing to say, e.g. older reports)."""
    timing, lines = report.timing, []
    if timing.reliable is False:
        lines.append(f"**Warning: latency was {timing.reason}: compare the speed-ups, not the milliseconds.**")
    if any(_shown(spread) for model in report.models for spread in model.latency_spread.values()):
        rounds = f"{timing.rounds} " if timing.rounds else ""
        lines.append(
            f"Spread: how far apart the slowest and fastest of the {rounds}timed rounds were, relative to their "
            f"median; printed where above {SPREAD_SHOWN:.0%}."
        )
    return "\n\n".join(lines) or None


def _joules(model: ModelEntry, value) -> str:
    source = model.energy.source
    return measured(value, ",.1f", " J" + (f" ({source})" if source else ""))


def models_table(report: Report, highlight: str | None = None) -> str:
    """Every model of the report, one row each; `highlight` marks one as "(this model)"."""
    metric = report.task.metric
    row = TASKS.get(report.task.name)
    more = [m for m in (row.table_metrics if row else ()) if m != metric and any(m in e.metrics for e in report.models)]
    batches = report.batch_sizes
    gpu = any(model.gpu_throughput is not None for model in report.models)
    columns = ["model", "kind", "layers", "parameters", "size (MB)", metric, f"{metric} retained", *more]
    columns += [f"CPU latency, batch {batch} (speed-up)" for batch in batches]
    columns += ["GPU rows/s"] * gpu + ["training time", "training energy", "energy / 1000 predictions"]
    rows = []
    for model in report.models:
        # An export or a cast baseline is not trained: its training time is not missing, it does not exist.
        trained = model.format == "pytorch" and model.baseline_of is None
        rows.append(
            [
                f"`{model.name}`" + (" (this model)" if model.name == highlight else ""),
                model.kind,
                measured(model.layers),
                millions(model.parameters),
                measured(model.size_mb, ".1f"),
                measured(model.metrics.get(metric), ".4f"),
                measured(model.accuracy_retained, ".1%"),
                *[measured(model.metrics.get(m), ".4f") for m in more],
                *[_latency(model, batch) for batch in batches],
                *[measured(model.gpu_throughput, ",.0f")] * gpu,
                measured(model.training_seconds, ".0f", " s") if trained else NOT_APPLICABLE,
                _joules(model, model.energy.training_joules) if trained else NOT_APPLICABLE,
                _joules(model, model.energy.per_1000_predictions_joules),
            ]
        )
    return markdown_table(columns, rows)


def depth_table(report: Report) -> str | None:
    """The metric of each swept model at each depth, pruned without retraining (None without a sweep)."""
    if not report.depths:
        return None
    columns = sorted({depth for by_depth in report.depths.values() for depth in by_depth}, key=int, reverse=True)
    rows = [
        [f"`{name}`"] + [measured(by_depth.get(d), ".4f") for d in columns] for name, by_depth in report.depths.items()
    ]
    return markdown_table(["model"] + [f"{d} layers" for d in columns], rows)


def cpu_in_words(report: Report) -> str:
    """E.g. "AMD EPYC (AVX2, AVX512, AVX512-VNNI, AVX512-BF16)": speed figures hold for this CPU only."""
    return cpu_text(report.hardware.cpu, report.hardware.cpu_features)


def report_markdown(report: Report) -> str:
    """`report.md`: what was measured where, the table of models and the depth sweep."""
    hardware, task = report.hardware, report.task
    rows = f" ({task.rows} rows)" if task.rows else ""
    length = report.timing.sequence_length
    tokens = f" ({length} tokens a row)" if length else ""
    threads = f"{hardware.cpu_threads} thread{'' if hardware.cpu_threads == 1 else 's'}"
    text = (
        f"# {report.name}\n\n"
        f"{task.split.capitalize()} split of {task.dataset}{rows}; CPU latency on {threads} of "
        f"{cpu_in_words(report)}{tokens}, side by side in one run; {task.metric} retained against "
        f"`{report.reference}`, speed-up against {report.speed_baseline}.\n\n{models_table(report)}\n"
    )
    note = timing_note(report)
    if note:
        text += f"\n{note}\n"
    for model in report.models:  # which int8 graph each export wrote, and why (see `export.variants`)
        if (model.export or {}).get("variant"):
            runtime = model.export.get("runtime") or "onnxruntime"
            on = "" if runtime == "onnxruntime" else f" on {runtime}"
            text += f"\n`{model.name}`: int8 graph `{model.export['variant']}`{on}, {model.export['variant_reason']}.\n"
    depths = depth_table(report)
    if depths:
        metric = task.metric.replace("_", " ")  # entity_f1 -> "Entity f1"
        text += f"\n{metric.capitalize()} after pruning to each depth, without retraining:\n\n{depths}\n"
    return text
