"""The table of tasks: what an encoder is fine-tuned for, and what each task means everywhere else.

The second axis beside `techniques`: a row names the task's Hub pipeline tag, the transformers
head (Auto class) and its `problem_type`, the label columns the head's loss reads, the outputs its
ONNX export has, the ONNX Runtime class Optimum loads that export with, the distillation
divergence (zero when student and teacher agree), the metric the report ranks models by and the
metrics a model card publishes. The recipe's `task` field names a row; the trainer finds the row of
a model from its head (`task_of`); nothing else spells a task's name.

Adding a task: its data preprocessing in `data.py`, its metric modules in `metrics/`, its
divergence below, one `register_task(Task(...))` at the bottom.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


# Divergences: (student outputs, teacher outputs, the batch, temperature) -> a scalar that is zero
# when the student's outputs equal the teacher's.
def softmax_kl(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T) over the last axis, averaged over the batch (Hinton et al.)."""
    return (
        F.kl_div(
            F.log_softmax(student.logits.float() / temperature, dim=-1),
            F.softmax(teacher.logits.float() / temperature, dim=-1),
            reduction="batchmean",
        )
        * temperature**2
    )


def _embeddings(outputs) -> torch.Tensor:
    # A SentenceTransformer's dict, or the sentence vectors themselves (see `hf_efficient.sentence.embeddings`).
    return (outputs["sentence_embedding"] if isinstance(outputs, dict) else outputs).float()


def embedding_mse(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """Mean squared difference of the sentence embeddings (sentence-transformers' `MSELoss`)."""
    return F.mse_loss(_embeddings(student), _embeddings(teacher))


def embedding_cosine(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """1 - cosine similarity of the sentence embeddings, averaged over the batch."""
    return (1 - F.cosine_similarity(_embeddings(student), _embeddings(teacher), dim=-1)).mean()


# The embedding divergences `PKDConfig(embedding_loss=...)` chooses from.
EMBEDDING_DIVERGENCES = {"mse": embedding_mse, "cosine": embedding_cosine}


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
        problem_type: The head's `config.problem_type` (text-classification variants), if any.
        label_columns: The batch columns the head's own loss reads.
        onnx_outputs: The output names of the head's ONNX export.
        divergence: The distillation term; None where the task has none.
    """

    name: str
    title: str
    pipeline_tag: str
    auto_class: str
    ort_class: str
    metric: str
    card_metrics: tuple[str, ...]
    problem_type: str | None = None
    label_columns: tuple[str, ...] = ("labels",)
    onnx_outputs: tuple[str, ...] = ("logits",)
    divergence: Callable | None = None

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
        problem_type="single_label_classification",
        divergence=softmax_kl,
    )
)
# Embeddings: no label columns (labels, where a dataset has them, are only for evaluation); the ONNX
# export is the bare encoder's `last_hidden_state`, pooled by the loader. A bare `AutoModel` encoder
# is distilled on its mean-pooled last hidden states, a SentenceTransformer on its sentence embeddings.
register_task(
    Task(
        name="feature-extraction",
        title="Feature Extraction",
        pipeline_tag="feature-extraction",
        auto_class="AutoModel",
        ort_class="ORTModelForFeatureExtraction",
        metric="cosine_to_teacher",
        card_metrics=("cosine_to_teacher",),
        label_columns=(),
        onnx_outputs=("last_hidden_state",),
        divergence=embedding_mse,
    )
)
register_task(
    Task(
        name="sentence-embedding",
        title="Sentence Similarity",
        pipeline_tag="sentence-similarity",
        auto_class="AutoModel",
        ort_class="ORTModelForFeatureExtraction",
        metric="cosine_to_teacher",
        card_metrics=("cosine_to_teacher", "top10_overlap", "knn_accuracy"),
        label_columns=(),
        onnx_outputs=("last_hidden_state",),
        divergence=embedding_mse,
    )
)
# The rows below are being filled in (issue 18): multi-label-classification, text-regression,
# token-classification, question-answering, multiple-choice.
