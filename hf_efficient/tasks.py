"""The table of tasks: what an encoder is fine-tuned for, and what each task means everywhere else.

The second axis beside `techniques`: a row names the task's Hub pipeline tag, the transformers head
(Auto class) and its `problem_type`, the label columns the head's loss reads, the outputs its ONNX
export has, the ONNX Runtime class Optimum loads that export with, the distillation divergence (zero
when student and teacher agree), the metric the report ranks models by, the metrics a model card
publishes, whether its rows are pairs of texts, what a label is (which decides how labels are
range-checked and numbered to a model's `id2label`) and its ONNX helper. The recipe's `task` field
names a row; the trainer finds the row of a model from its head (`task_of`). The distillation trainer,
the report and the int8 export read only the row; what a task does to its data and outputs is written
per task in the modules below.

Adding a task (what the row does not yet carry lives in tables keyed by the task's name):
- `data/load.py`: its name in `DATA_TASKS` and its reader in `_NORMALISE`; `data/config.py`: the
  `DataConfig` fields it reads (their `tasks` metadata);
- `data/preprocess.py`: its input columns (`_INPUT_COLUMNS`) and its branch of `tokenize_dataset`;
- `metrics/`: its metric modules and its scorer (the row's `score`, e.g. in `evaluation.py`);
- `export/gate.py`: its measure, unless it is scored by argmax accuracy; `export/helpers.py` an ONNX
  helper (the row's `helper`), and `hub/card.py` the `pipeline` arguments it needs (`_PIPELINE_ARGUMENTS`);
- its divergence below and one `register_task(Task(...))` at the bottom; rows of its data for the
  tests that run every task (`tests/conftest.py`, `test_recipe_tasks.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel

from .encoders import encoder_family
from .metrics.evaluation import (
    score_answers,
    score_choices,
    score_multi_label,
    score_regression,
    score_single_label,
    score_tags,
)


# Divergences: (student outputs, teacher outputs, the batch, temperature) -> a scalar that is zero
# when the student's outputs equal the teacher's. Each is scaled by T^2 (Hinton et al.), so that its
# gradients keep their size across temperatures; regression has no temperature.
def softmax_kl_rows(student, teacher, temperature: float, mask=None) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T) over the last axis, one value per row; `mask` (same shape)
    marks the entries that are classes (False entries get probability 0 in both)."""
    student, teacher = student.float() / temperature, teacher.float() / temperature
    if mask is not None:
        lowest = torch.finfo(student.dtype).min
        student, teacher = student.masked_fill(~mask, lowest), teacher.masked_fill(~mask, lowest)
    log_student, log_teacher = F.log_softmax(student, dim=-1), F.log_softmax(teacher, dim=-1)
    pointwise = log_teacher.exp() * (log_teacher - log_student)
    if mask is not None:  # 0 * (a huge difference) stays 0, but say so rather than rely on it
        pointwise = pointwise.masked_fill(~mask, 0.0)
    return pointwise.sum(-1) * temperature**2


def _mean(values: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
    """The mean of `values` over the entries `keep` marks (0, with a gradient, when there are none)."""
    if keep is None:
        return values.mean()
    return (values * keep).sum() / keep.sum().clamp(min=1)


def softmax_kl(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher/T || student/T) over the classes, averaged over the batch (single-label
    classification; multiple choice, whose logits are one score per choice)."""
    return softmax_kl_rows(student.logits, teacher.logits, temperature).mean()


def bernoulli_kl(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """T^2 * KL(Bernoulli(sigmoid(teacher/T)) || Bernoulli(sigmoid(student/T))) per label, averaged
    over batch and labels, as the multi-label head's BCE loss averages."""
    s, t = student.logits.float() / temperature, teacher.logits.float() / temperature
    p_t = torch.sigmoid(t)
    kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    return kl.mean() * temperature**2


def logit_mse(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """Mean squared difference of the outputs (regression: the teacher's prediction is the target)."""
    return F.mse_loss(student.logits.float(), teacher.logits.float())


def token_softmax_kl(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """T^2 * KL per token, averaged over the tokens that carry a label (not -100, not padding), as
    the token-classification loss averages; where the batch has no labels, over the unpadded tokens."""
    per_token = softmax_kl_rows(student.logits, teacher.logits, temperature)  # (batch, sequence)
    keep = torch.ones_like(per_token, dtype=torch.bool)
    if inputs.get("attention_mask") is not None:
        keep = keep & inputs["attention_mask"].bool()
    if inputs.get("labels") is not None:
        keep = keep & (inputs["labels"] != -100)
    return _mean(per_token, keep)


def span_softmax_kl(student, teacher, inputs, temperature: float) -> torch.Tensor:
    """T^2 * KL over the start positions and over the end positions (padding is no position), the
    mean of the two, as the question-answering loss averages its start and end terms."""
    mask = inputs.get("attention_mask")
    mask = None if mask is None else mask.bool()
    start = softmax_kl_rows(student.start_logits, teacher.start_logits, temperature, mask).mean()
    end = softmax_kl_rows(student.end_logits, teacher.end_logits, temperature, mask).mean()
    return (start + end) / 2


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
        table_metrics: More metrics the report's table shows beside `metric`, where measured.
        problem_type: The head's `config.problem_type` (text-classification variants), if any.
        label_columns: The batch columns the head's own loss reads.
        onnx_outputs: The output names of the head's ONNX export.
        divergence: The distillation term; None where the task has none.
        token_level: The loss and divergence average over labelled tokens (not -100, not padding)
            rather than over examples.
        library: The library whose model class the task's models are (the card's `library_name`):
            "transformers", or "sentence-transformers" (a `SentenceTransformer`, not found by its head).
        pairs: Every row is tokenized as a pair of texts (question and context, context and choice); the
            text tasks read pairs only where the data name a `text_pair_column`.
        labels: What a label is, which decides how labels are checked and numbered: "class" (an id of
            the head's `id2label`), "classes" (a multi-hot list of them), "tag" (a class per word; -100
            elsewhere), "choice" (the index of a choice), "number", "span" (answer positions), or None.
        helper: The ONNX helper of `export.helpers` that runs the int8 export, the name the model card's
            snippet gives it, and the arguments of an example call.
        metrics: Every metric `score` returns (the keys of `evaluate_model`'s results).
        score: `(predictions, label ids, **context) -> metrics` (`metrics.evaluation`); None where the task is
            scored elsewhere (embeddings: `metrics.embedding`).
    """

    name: str
    title: str
    pipeline_tag: str
    auto_class: str
    ort_class: str
    metric: str
    card_metrics: tuple[str, ...]
    table_metrics: tuple[str, ...] = ()
    problem_type: str | None = None
    label_columns: tuple[str, ...] = ("labels",)
    onnx_outputs: tuple[str, ...] = ("logits",)
    divergence: Callable | None = None
    token_level: bool = False
    library: str = "transformers"
    pairs: bool = False
    labels: str | None = None
    helper: tuple[str, str, str] | None = None
    metrics: tuple[str, ...] = ()
    score: Callable | None = None

    def head(self):
        """The transformers Auto class, e.g. `AutoModelForSequenceClassification`."""
        import transformers

        return getattr(transformers, self.auto_class)

    def load(self, path, **kwargs):
        """The model saved at `path`, with this row's head, in float32: transformers 5 keeps a checkpoint's
        bf16 or fp16, which the techniques would train without float32 weights and ONNX cannot export."""
        import torch

        return self.head().from_pretrained(path, dtype=torch.float32, **kwargs)


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


def problem_type_of(config) -> str:
    """`config.problem_type`, or what transformers infers when it is unset: regression for one label,
    else single-label (transformers makes it multi-label only on seeing float labels; set
    `problem_type="multi_label_classification"` to say so up front)."""
    if config.problem_type is not None:
        return config.problem_type
    return "regression" if config.num_labels == 1 else "single_label_classification"


def head_of(class_name: str) -> str:
    """The head in a transformers class name, as the rows' Auto classes name it after "AutoModel":
    BertForTokenClassification -> "ForTokenClassification"; a bare encoder (BertModel) has none, ""."""
    return class_name[class_name.rfind("For") :] if "For" in class_name else ""


def _has_head(model, task: Task) -> bool:
    if task.library != "transformers":
        return False
    # The head is the class name's tail after the family: BertForTokenClassification -> ForTokenClassification.
    head = task.auto_class.removeprefix("AutoModel")
    if head:
        return type(model).__name__.endswith(head)
    return getattr(model, "base_model", None) is model  # an AutoModel row: a bare encoder


def task_of(model) -> Task:
    """The row of `model`, found from its head class (and, on a sequence classifier, its problem type).

    Raises a ValueError naming the class when no row covers its head.
    """
    from .sentence import is_sentence_transformer  # the one module that knows sentence-transformers

    if is_sentence_transformer(model):
        return TASKS["sentence-embedding"]
    if not isinstance(model, PreTrainedModel):
        encoder_family(model)  # an UnsupportedModelError that says what the model is, and what to pass instead
    rows = [task for task in TASKS.values() if _has_head(model, task)]
    if len(rows) > 1:
        wanted = problem_type_of(model.config)
        rows = [task for task in rows if task.problem_type == wanted]
    if len(rows) != 1:
        covered = sorted({task.auto_class.replace("AutoModel", "...Model") for task in TASKS.values()})
        raise ValueError(
            f"{type(model).__name__}: no task covers its head (the tasks cover {', '.join(covered)}); "
            "load the model with the Auto class of its task."
        )
    return rows[0]


register_task(
    Task(
        name="text-classification",
        metrics=("accuracy", "f1", "matthews_correlation"),
        score=score_single_label,
        title="Text Classification",
        pipeline_tag="text-classification",
        auto_class="AutoModelForSequenceClassification",
        ort_class="ORTModelForSequenceClassification",
        metric="accuracy",
        card_metrics=("accuracy", "f1", "matthews_correlation"),
        problem_type="single_label_classification",
        labels="class",
        helper=("TextClassifier", "classify", '["a delight", "a mess"]'),
        divergence=softmax_kl,
    )
)
register_task(
    Task(
        name="multi-label-classification",
        metrics=("micro_f1", "macro_f1", "subset_accuracy"),
        score=score_multi_label,
        title="Multi-Label Text Classification",
        pipeline_tag="text-classification",
        auto_class="AutoModelForSequenceClassification",
        ort_class="ORTModelForSequenceClassification",
        metric="micro_f1",
        card_metrics=("micro_f1", "macro_f1", "subset_accuracy"),
        problem_type="multi_label_classification",
        labels="classes",
        helper=("TextClassifier", "classify", '["a delight", "a mess"]'),
        divergence=bernoulli_kl,
    )
)
register_task(
    Task(
        name="text-regression",
        metrics=("pearson", "spearman"),
        score=score_regression,
        title="Text Regression",
        pipeline_tag="text-classification",
        auto_class="AutoModelForSequenceClassification",
        ort_class="ORTModelForSequenceClassification",
        metric="pearson",
        card_metrics=("pearson", "spearman"),
        problem_type="regression",
        labels="number",
        helper=("TextClassifier", "classify", '["a delight", "a mess"]'),
        divergence=logit_mse,
    )
)
register_task(
    Task(
        name="token-classification",
        metrics=("entity_f1", "entity_precision", "entity_recall", "token_accuracy"),
        score=score_tags,
        title="Token Classification",
        pipeline_tag="token-classification",
        auto_class="AutoModelForTokenClassification",
        ort_class="ORTModelForTokenClassification",
        metric="entity_f1",
        card_metrics=("entity_f1", "entity_precision", "entity_recall"),
        divergence=token_softmax_kl,
        token_level=True,
        labels="tag",
        helper=("TokenClassifier", "tag", '["Ann saw the film in Paris."]'),
    )
)
register_task(
    Task(
        name="question-answering",
        metrics=("exact_match", "f1"),
        score=score_answers,
        title="Question Answering",
        pipeline_tag="question-answering",
        auto_class="AutoModelForQuestionAnswering",
        ort_class="ORTModelForQuestionAnswering",
        metric="f1",
        card_metrics=("exact_match", "f1"),
        label_columns=("start_positions", "end_positions"),
        onnx_outputs=("start_logits", "end_logits"),
        divergence=span_softmax_kl,
        pairs=True,
        labels="span",
        helper=("QuestionAnswerer", "answer", '["Who saw it?"], ["Ann saw the film."]'),
    )
)
register_task(
    Task(
        name="multiple-choice",
        metrics=("accuracy",),
        score=score_choices,
        title="Multiple Choice",
        pipeline_tag="multiple-choice",
        auto_class="AutoModelForMultipleChoice",
        ort_class="ORTModelForMultipleChoice",
        metric="accuracy",
        card_metrics=("accuracy",),
        divergence=softmax_kl,
        pairs=True,
        labels="choice",
        helper=("ChoiceScorer", "choose", '["The film was"], [["a delight.", "a mess."]]'),
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
        helper=("TextEmbedder", "embed", '["a delight", "a mess"]'),
    )
)
register_task(
    Task(
        name="sentence-embedding",
        title="Sentence Similarity",
        pipeline_tag="sentence-similarity",
        auto_class="AutoModel",
        library="sentence-transformers",
        ort_class="ORTModelForFeatureExtraction",
        # The report ranks by `knn_accuracy` instead where the texts have labels (`sentence.recipe`).
        metric="cosine_to_teacher",
        card_metrics=("cosine_to_teacher", "top10_overlap", "knn_accuracy"),
        table_metrics=("cosine_to_teacher", "top10_overlap", "knn_accuracy", "probe_accuracy"),
        label_columns=(),
        onnx_outputs=("last_hidden_state",),
        divergence=embedding_mse,
        helper=("SentenceEmbedder", "embed", '["a delight", "a mess"]'),
    )
)
