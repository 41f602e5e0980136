"""The table of tasks: what an encoder is fine-tuned for, and what each task means everywhere else.

The second axis beside `techniques`: a row names the task's Hub pipeline tag, the transformers
head (Auto class), the ONNX Runtime class Optimum loads its export with, the metric the report
ranks models by and the metrics a model card publishes. The recipe's `task` field names a row;
the runner, the report and the card read the row instead of assuming a head.

Adding a task: its data preprocessing in `data.py`, its metric modules in `metrics/`, one
`register_task(Task(...))` below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Task:
    """One row of the table.

    Args:
        name: The recipe's `task` value.
        title: How the model card says it ("Text Classification").
        pipeline_tag: The Hub pipeline tag (and transformers `pipeline` task).
        auto_class: The transformers Auto class of the head.
        ort_class: Optimum's ONNX Runtime class of the exported head.
        metric: The metric the report compares models by (higher is better).
        card_metrics: The metrics the model card publishes as model-index results.
    """

    name: str
    title: str
    pipeline_tag: str
    auto_class: str
    ort_class: str
    metric: str
    card_metrics: tuple[str, ...]

    def head(self):
        """The transformers Auto class, e.g. `AutoModelForSequenceClassification`."""
        import transformers

        return getattr(transformers, self.auto_class)


TASKS: dict[str, Task] = {}
DEFAULT_TASK = "text-classification"


def register_task(task: Task) -> Task:
    if task.name in TASKS:
        raise ValueError(f"register_task: a task named {task.name!r} exists; pick another name.")
    TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The row named `name`, or a ValueError that lists the tasks there are."""
    if name not in TASKS:
        raise ValueError(f"task={name!r} is not a known task; use one of {', '.join(TASKS)}.")
    return TASKS[name]


register_task(
    Task(
        name="text-classification",
        title="Text Classification",
        pipeline_tag="text-classification",
        auto_class="AutoModelForSequenceClassification",
        ort_class="ORTModelForSequenceClassification",
        metric="accuracy",
        card_metrics=("accuracy", "f1", "matthews_correlation"),
    )
)
