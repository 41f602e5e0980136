"""The report's plots: the task's metric against depth (the pruning sweep) and against size and latency."""

from __future__ import annotations

from pathlib import Path

from .schema import ModelEntry


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_accuracy_by_depth(
    series: dict[str, dict[int, float]],
    path: str | Path,
    title: str = "",
    floor: float | None = None,
    metric: str = "accuracy",
) -> Path:
    """Plot the task's `metric` (default: accuracy) against depth, one line per model; write a PNG.

    `floor`, when given, is drawn as a dashed line: the metric of always answering the most
    frequent label, the level a model that learned nothing reaches.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 4))
    for label, by_depth in series.items():
        depths = sorted(by_depth)
        axes.plot(depths, [by_depth[d] for d in depths], marker="o", label=label)
        axes.set_xticks(depths)
    if floor is not None:
        axes.axhline(floor, color="grey", linestyle="--", linewidth=1, label=f"majority label ({floor:.3f})")
    axes.set_xlabel("layers kept (pruned without retraining)")
    axes.set_ylabel(f"test {metric}")
    axes.set_title(title or f"{metric} by depth")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_tradeoffs(models: list[ModelEntry], output_dir: str | Path, metric: str = "accuracy") -> list[str]:
    """Plot the task's `metric` (default: accuracy) against the size of the weights (their files; a bf16 cast's
    tensors, as it would save them) and against CPU latency, one point per model; write two PNGs,
    `<metric>_vs_size.png` and `<metric>_vs_latency.png`.

    The x axes are logarithmic (sizes and latencies span orders of magnitude) with plain tick labels
    ("40", not "4x10^1"), and the axes leave room for every point's label.

    Returns:
        `list[str]`: the file names written.
    """
    from matplotlib.ticker import FuncFormatter, LogLocator

    plt = _pyplot()
    batch = max(models[0].latency_ms, key=int)
    axes_values = {
        f"{metric}_vs_size.png": ("size of the weights (MB)", f"{metric} against size", lambda m: m.size_mb),
        f"{metric}_vs_latency.png": (
            f"CPU latency at batch {batch} (ms)",
            f"{metric} against CPU latency (batch {batch})",
            lambda m: m.latency_ms[batch],
        ),
    }
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for file_name, (label, title, value) in axes_values.items():
        figure, axes = plt.subplots(figsize=(6.5, 4.2))
        xs = [value(model) for model in models]
        ys = [model.metrics[metric] for model in models]
        for model, x, y in zip(models, xs, ys, strict=True):
            axes.scatter([x], [y], s=40)
            axes.annotate(model.name, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axes.set_xscale("log")
        # Room for the labels, which are drawn right of and above their points.
        low, high = min(xs), max(xs)
        axes.set_xlim(low / 1.3, high * 2.2)
        spread = max(ys) - min(ys) or 0.01
        axes.set_ylim(min(ys) - 0.15 * spread, max(ys) + 0.3 * spread)
        axes.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(plain)
        axes.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
        axes.set_xlabel(label)
        axes.set_ylabel(f"test {metric}")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(Path(output_dir) / file_name, dpi=120)
        plt.close(figure)
    return list(axes_values)
