"""Tables and plots of results; `measure` holds what goes into them."""

from __future__ import annotations

from pathlib import Path


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats print with 4 decimals, and `|` inside a cell is escaped."""

    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_accuracy_by_depth(series: dict[str, dict[int, float]], path: str | Path, title: str = "") -> Path:
    """Plot accuracy against depth, one line per model; write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for label, by_depth in series.items():
        depths = sorted(by_depth)
        axes.plot(depths, [by_depth[d] for d in depths], marker="o", label=label)
        axes.set_xticks(depths)
    axes.set_xlabel("layers kept (pruned without retraining)")
    axes.set_ylabel("test accuracy")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def plot_tradeoffs(models: list[dict], output_dir: str | Path) -> list[str]:
    """Plot accuracy against size on disk and against CPU latency, one point per model; write two PNGs.

    Args:
        models (`list[dict]`): Report entries with `name`, `size_mb`, `latency_ms` and `metrics.accuracy`.
        output_dir (`str` or `Path`): Where `accuracy_vs_size.png` and `accuracy_vs_latency.png` go.

    Returns:
        `list[str]`: the file names written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = max(models[0]["latency_ms"], key=int)
    axes_values = {
        "accuracy_vs_size.png": ("size on disk (MB)", lambda m: m["size_mb"]),
        "accuracy_vs_latency.png": (f"CPU latency at batch {batch} (ms)", lambda m: m["latency_ms"][batch]),
    }
    for file_name, (label, value) in axes_values.items():
        figure, axes = plt.subplots(figsize=(6, 4))
        for model in models:
            x, y = value(model), model["metrics"]["accuracy"]
            axes.scatter([x], [y], s=40)
            axes.annotate(model["name"], (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
        axes.set_xlabel(label)
        axes.set_ylabel("test accuracy")
        axes.set_xscale("log")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(Path(output_dir) / file_name, dpi=120)
        plt.close(figure)
    return list(axes_values)
