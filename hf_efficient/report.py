"""Tables and plots of results."""

from __future__ import annotations

from pathlib import Path


def markdown_table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; floats print with 4 decimals."""

    def cell(value):
        return f"{value:.4f}" if isinstance(value, float) else str(value)

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
