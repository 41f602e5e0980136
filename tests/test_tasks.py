"""Every task head: the table's divergences, `task_of`, and distillation and the layer techniques on each head."""

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import FAMILY_NAMES, HEAD_TASKS, tiny_model

from hf_efficient.tasks import TASKS, get_task, task_of

# The families issue 18 names; every one has every head on both stacks.
FAMILIES = ["bert", "roberta", "distilbert", "electra", "deberta-v2", "modernbert"]
assert set(FAMILIES) <= set(FAMILY_NAMES)


def outputs(**tensors):
    return SimpleNamespace(**{k: torch.tensor(v) for k, v in tensors.items()})


def kl(teacher_row, student_row, temperature):
    """KL(softmax(teacher/T) || softmax(student/T)) of two lists, by hand."""
    p_t = [math.exp(v / temperature) for v in teacher_row]
    p_s = [math.exp(v / temperature) for v in student_row]
    p_t, p_s = [v / sum(p_t) for v in p_t], [v / sum(p_s) for v in p_s]
    return sum(t * math.log(t / s) for t, s in zip(p_t, p_s, strict=True))


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


STUDENT = [[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]]
TEACHER = [[2.0, 0.0, 0.0], [-1.0, 1.0, 3.0]]


def test_softmax_kl_by_hand():
    expected = (kl(TEACHER[0], STUDENT[0], 2.0) + kl(TEACHER[1], STUDENT[1], 2.0)) / 2 * 4
    divergence = get_task("text-classification").divergence
    assert divergence(outputs(logits=STUDENT), outputs(logits=TEACHER), {}, 2.0).item() == pytest.approx(expected)
    # Multiple choice: one logit per choice, the same KL over the choices.
    assert get_task("multiple-choice").divergence is divergence


def test_bernoulli_kl_by_hand():
    temperature, expected = 2.0, 0.0
    for s_row, t_row in zip(STUDENT, TEACHER, strict=True):
        for s, t in zip(s_row, t_row, strict=True):
            p, q = sigmoid(t / temperature), sigmoid(s / temperature)
            expected += p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    expected = expected / 6 * temperature**2  # mean over 2 rows x 3 labels
    divergence = get_task("multi-label-classification").divergence
    assert divergence(outputs(logits=STUDENT), outputs(logits=TEACHER), {}, temperature).item() == pytest.approx(
        expected
    )


def test_regression_mse_by_hand():
    divergence = get_task("text-regression").divergence
    value = divergence(outputs(logits=[[1.0], [3.0]]), outputs(logits=[[2.0], [0.0]]), {}, 5.0)
    assert value.item() == pytest.approx((1 + 9) / 2)  # no temperature


def test_token_kl_counts_only_labelled_unpadded_tokens():
    # batch 1, 3 tokens: token 0 labelled, token 1 labelled but padding, token 2 not labelled.
    student, teacher = [STUDENT[0], STUDENT[1], [5.0, 0.0, 0.0]], [TEACHER[0], TEACHER[1], [0.0, 0.0, 5.0]]
    inputs = {"labels": torch.tensor([[1, 2, -100]]), "attention_mask": torch.tensor([[1, 0, 1]])}
    divergence = get_task("token-classification").divergence
    value = divergence(outputs(logits=[student]), outputs(logits=[teacher]), inputs, 2.0)
    assert value.item() == pytest.approx(kl(TEACHER[0], STUDENT[0], 2.0) * 4)
    # Without labels (prediction), every unpadded token counts.
    value = divergence(
        outputs(logits=[student]), outputs(logits=[teacher]), {"attention_mask": inputs["attention_mask"]}, 2.0
    )
    assert value.item() == pytest.approx((kl(TEACHER[0], STUDENT[0], 2.0) + kl(teacher[2], student[2], 2.0)) / 2 * 4)


def test_span_kl_by_hand_skips_padding():
    # batch 1, 4 positions, the last one padding: whatever its logits, it is no position.
    s_start, t_start = [1.0, -1.0, 0.5, 9.0], [2.0, 0.0, 0.0, -9.0]
    s_end, t_end = [0.0, 2.0, -1.0, -9.0], [-1.0, 1.0, 3.0, 9.0]
    student = outputs(start_logits=[s_start], end_logits=[s_end])
    teacher = outputs(start_logits=[t_start], end_logits=[t_end])
    inputs = {"attention_mask": torch.tensor([[1, 1, 1, 0]])}
    value = get_task("question-answering").divergence(student, teacher, inputs, 2.0)
    expected = (kl(t_start[:3], s_start[:3], 2.0) + kl(t_end[:3], s_end[:3], 2.0)) / 2 * 4
    assert value.item() == pytest.approx(expected)


@pytest.mark.parametrize("task", HEAD_TASKS)
def test_task_of_finds_each_head(task):
    for family in FAMILIES:
        assert task_of(tiny_model(family, 1, task=task)) is get_task(task)


def test_task_of_infers_the_problem_type_as_transformers_does():
    model = tiny_model("bert", 1)
    model.config.problem_type = None
    assert task_of(model).name == "text-classification"
    model.config.num_labels = 1
    assert task_of(model).name == "text-regression"


def test_task_of_names_a_head_no_task_covers():
    with pytest.raises(ValueError, match="BertForMaskedLM: no task covers its head"):
        task_of(__import__("transformers").BertForMaskedLM(tiny_model("bert", 1).config))


def test_rows_are_consistent():
    for row in TASKS.values():
        assert row.head().__name__ == row.auto_class
        assert row.metric and row.card_metrics and row.label_columns and row.onnx_outputs
