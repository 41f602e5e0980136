"""Every task head: the table's divergences, `task_of`, and distillation and the layer techniques on each head."""

import copy
import gc
import json
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import transformers
from conftest import FAMILY_NAMES, HEAD_TASKS, tiny_model, tiny_task_batch
from datasets import Dataset
from transformers import TrainingArguments

from hf_efficient import (
    DistillationTrainer,
    LayerDropConfig,
    PKDConfig,
    SharingConfig,
    apply_layerdrop,
    layer_stack,
    make_student,
    prune_layers,
    share_layers,
)
from hf_efficient.layerdrop.model import layerdrop_schedule
from hf_efficient.sharing.model import shared_parameter_groups
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
        assert row.metric and row.card_metrics and row.onnx_outputs
        assert row.label_columns or row.auto_class == "AutoModel"  # bare encoders have no labels


def training_args(output_dir, **changes) -> TrainingArguments:
    settings = dict(output_dir=str(output_dir), report_to=[], use_cpu=True, disable_tqdm=True, save_strategy="no")
    return TrainingArguments(**{**settings, **changes})


MODEL_INPUTS = ("input_ids", "attention_mask")


def head_outputs(model, batch) -> dict[str, list]:
    """Every output tensor of the model's head (logits, start/end logits, last hidden state)."""
    with torch.no_grad():
        out = model.eval()(**{k: batch[k] for k in MODEL_INPUTS})
    return {key: value.tolist() for key, value in out.items() if torch.is_tensor(value)}


@pytest.mark.parametrize("task", HEAD_TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_hard_term_is_the_models_loss_and_a_copy_has_no_soft_term(family, task, tmp_path):
    teacher, batch = tiny_model(family, 2, task=task), tiny_task_batch(task)
    student = make_student(teacher, 2)  # a copy, in train mode
    trainer = DistillationTrainer(
        model=student, teacher=teacher, distillation=PKDConfig(alpha=0.0, beta=0.0), args=training_args(tmp_path)
    )
    teacher_saw = []
    teacher.register_forward_pre_hook(lambda module, args, kwargs: teacher_saw.append(set(kwargs)), with_kwargs=True)
    assert trainer.compute_loss(student, batch).item() == student(**batch).loss.item()  # exactly
    assert teacher_saw == [set(batch) - set(get_task(task).label_columns)]  # the teacher gets no labels
    trainer.distillation = PKDConfig(alpha=1.0, beta=0.0)
    assert trainer.compute_loss(student, batch).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_needs_the_same_head(tmp_path):
    teacher = tiny_model("bert", 2, task="token-classification")
    with pytest.raises(ValueError, match="student is a text-classification model .* teacher a token-classification"):
        DistillationTrainer(model=tiny_model("bert", 2), teacher=teacher, args=training_args(tmp_path))
    with pytest.raises(ValueError, match=r"3 labels\) but the teacher a text-classification one .*2 labels"):
        DistillationTrainer(model=tiny_model("bert", 2, num_labels=3), teacher=tiny_model("bert", 2))


def test_float_labels_make_an_unset_problem_type_multi_label(tmp_path):
    """transformers decides the problem type at the first labels it sees; so does the soft term."""
    teacher = tiny_model("bert", 2, task="multi-label-classification", problem_type=None)
    student = make_student(teacher, 1)
    trainer = DistillationTrainer(
        model=student, teacher=teacher, distillation=PKDConfig(alpha=1.0, beta=0.0), args=training_args(tmp_path)
    )
    batch = tiny_task_batch("multi-label-classification")
    loss = trainer.compute_loss(student, batch)
    assert task_of(student).name == "multi-label-classification"
    expected = get_task("multi-label-classification").divergence(student(**batch), teacher(**batch), batch, 10.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_batch_without_its_label_columns_is_named(tmp_path):
    teacher = tiny_model("bert", 2, task="question-answering")
    trainer = DistillationTrainer(model=make_student(teacher, 1), teacher=teacher, args=training_args(tmp_path))
    batch = tiny_task_batch("question-answering")
    del batch["start_positions"], batch["end_positions"]
    with pytest.raises(ValueError, match="none of the label columns \\['start_positions', 'end_positions'\\]"):
        trainer.compute_loss(trainer.model, batch)


def test_a_bare_encoder_without_its_tokenizer_is_refused_with_the_fix(tmp_path):
    # Bare encoders distil their embeddings from plain text (tests/test_sentence.py), so they need the tokenizer.
    teacher = tiny_model("bert", 2, task=None)
    with pytest.raises(ValueError, match="a bare encoder student needs processing_class=<its tokenizer>"):
        DistillationTrainer(model=make_student(teacher, 1), teacher=teacher, args=training_args(tmp_path))


def task_dataset(task: str, rows: int = 16) -> Dataset:
    """A `datasets.Dataset` of the task's columns plus a text column that Trainer must drop."""
    batch = tiny_task_batch(task, batch=rows, seed=3)
    columns = {key: value.tolist() for key, value in batch.items()}
    return Dataset.from_dict({**columns, "text": ["unused"] * rows}).with_format("torch")


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    """Every family x task: a few PKD steps of a 2-layer student of a 4-layer teacher, and a pruned
    LayerDrop teacher, both saved; what each step changed and the outputs of each saved model."""
    root = tmp_path_factory.mktemp("tasks")
    results, expected = {}, {}
    for family in FAMILIES:
        for task in [*HEAD_TASKS, None]:
            # Each Trainer.train() starts with a full gc.collect (accelerate's free_memory): frozen, the
            # objects of the tests so far are not scanned again (0.5 s a run in a long pytest process).
            gc.freeze()
            name = f"{family}-{task or 'bare'}"
            teacher = tiny_model(family, 4, task=task)
            batch = tiny_task_batch(task, seed=5)
            pruned = prune_layers(apply_layerdrop(copy.deepcopy(teacher), LayerDropConfig(rate=0.2)), [0, 1])
            student = make_student(teacher, 2)
            if task is not None:
                before_teacher, before_student = (
                    copy.deepcopy(teacher.state_dict()),
                    copy.deepcopy(student.state_dict()),
                )
                trainer = DistillationTrainer(
                    model=student,
                    teacher=teacher,
                    distillation=PKDConfig(alpha=0.5, beta=10.0, temperature=2.0),
                    args=training_args(
                        root / "trainer",
                        max_steps=2,
                        per_device_train_batch_size=8,
                        learning_rate=1e-2,
                        logging_steps=1,
                    ),
                    train_dataset=task_dataset(task),
                )
                columns = set(next(iter(trainer.get_train_dataloader())))
                trainer.train()
                evaluation = trainer.evaluate(task_dataset(task, rows=4))
                results[(family, task)] = {
                    "columns": columns,
                    "teacher_changed": [
                        k for k, v in teacher.state_dict().items() if not torch.equal(v, before_teacher[k])
                    ],
                    "student_unchanged": [
                        k for k, v in student.state_dict().items() if torch.equal(v, before_student[k])
                    ],
                    "logs": [e for e in trainer.state.log_history if "loss" in e],
                    "eval_loss": evaluation["eval_loss"],
                }
            # Every student reloads; pruned models (cut by the same code) each head once and bare encoders.
            rotating_head = HEAD_TASKS[FAMILIES.index(family) % len(HEAD_TASKS)]
            saved = [("student", student)] + ([("pruned", pruned)] if task in (rotating_head, None) else [])
            for kind, model in saved:
                model.save_pretrained(root / f"{name}-{kind}")
                auto_class = "AutoModel" if task is None else get_task(task).auto_class
                inputs = {k: batch[k].tolist() for k in MODEL_INPUTS}
                depth = model.config.num_hidden_layers
                expected[str(root / f"{name}-{kind}")] = (auto_class, depth, inputs, head_outputs(model, batch))
    gc.unfreeze()
    return root, results, expected


@pytest.mark.parametrize("task", HEAD_TASKS)
@pytest.mark.parametrize("family", FAMILIES)
def test_pkd_steps_train_the_student_not_the_teacher(distilled, family, task):
    result = distilled[1][(family, task)]
    # The label columns of the head survived remove_unused_columns; the unused text column did not.
    assert set(get_task(task).label_columns) | {"input_ids", "attention_mask"} == result["columns"]
    assert result["teacher_changed"] == []
    assert math.isfinite(result["eval_loss"])  # evaluation reads the same label columns
    # Every parameter learned (the pooler of a head that does not read it aside).
    assert [k for k in result["student_unchanged"] if "pooler" not in k] == []
    assert len(result["logs"]) == 2
    for entry in result["logs"]:  # the loss is its terms weighed by PKDConfig(alpha=0.5, beta=10)
        terms = 0.5 * entry["loss_hard"] + 0.5 * entry["loss_kd"] + 10 * entry["loss_patient"]
        assert entry["loss"] == pytest.approx(terms, rel=1e-3, abs=1e-3)
    # The student's first step is its teacher's layers 0 and 2 under a head like the teacher's: the
    # terms that compare it with the teacher grow once it trains on.
    assert result["logs"][1]["loss_kd"] > 0 or result["logs"][1]["loss_patient"] > 0


RELOAD_WITHOUT_HF_EFFICIENT = """
import json, sys, torch, transformers
expected = json.loads(open(sys.argv[1]).read())
out = {}
for folder, (auto_class, depth, batch, outputs) in expected.items():
    model = getattr(transformers, auto_class).from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        result = model(**{k: torch.tensor(v) for k, v in batch.items()})
    out[folder] = [model.config.num_hidden_layers, {k: result[k].tolist() for k in outputs}]
assert not any(name.startswith("hf_efficient") for name in sys.modules)
print(json.dumps(out))
"""


def test_students_and_pruned_models_reload_without_hf_efficient(distilled):
    root, _, expected = distilled
    (root / "expected.json").write_text(json.dumps(expected))
    # One fresh interpreter for every folder, never importing hf_efficient, run outside the repository.
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_WITHOUT_HF_EFFICIENT, str(root / "expected.json")],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(reloaded) == len(FAMILIES) * (len(HEAD_TASKS) + 1 + 2)
    for folder, (_, depth, _, outputs) in expected.items():
        assert reloaded[folder][0] == depth == 2
        for key, value in outputs.items():
            assert torch.allclose(torch.tensor(reloaded[folder][1][key]), torch.tensor(value), atol=1e-5), (folder, key)


def close(outputs: dict, expected: dict) -> bool:
    """The same outputs, up to float rounding (the same weights in other tensors may sum in another order)."""
    return outputs.keys() == expected.keys() and all(
        torch.allclose(torch.tensor(outputs[k]), torch.tensor(expected[k]), atol=1e-6) for k in expected
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_layer_techniques_on_every_head_and_bare_encoders(family, tmp_path):
    for task in [*HEAD_TASKS, None]:
        model, batch = tiny_model(family, 4, task=task), tiny_task_batch(task)
        plain = head_outputs(model, batch)
        auto_class = transformers.AutoModel if task is None else get_task(task).head()
        # LayerDrop: nothing changes at evaluation; a training forward skips the layers it drew.
        dropped = apply_layerdrop(copy.deepcopy(model), LayerDropConfig(rate=0.5, seed=1))
        assert close(head_outputs(dropped, batch), plain), task
        dropped.train()(**{k: batch[k] for k in MODEL_INPUTS})
        assert 0 < sum(layerdrop_schedule(dropped).skipped) < 4, task
        # A student: the teacher's layers 0 and 2 under the teacher's own head, the teacher unchanged.
        student = make_student(model, 2)
        assert type(student) is type(model) and len(layer_stack(model)) == 4
        for new, old in ((0, 0), (1, 2)):
            layer, original = layer_stack(student)[new].state_dict(), layer_stack(model)[old].state_dict()
            assert all(torch.equal(layer[k], original[k]) for k in original), task
        # Sharing: one tensor for all layers, and the sharing comes back from the checkpoint.
        shared = share_layers(copy.deepcopy(model), SharingConfig(num_groups=1))
        groups = shared_parameter_groups(shared)
        # Every layer's tensor is the first layer's (ModernBERT's layer 0 has no attention norm to share).
        assert groups and {len(names) for names in groups} <= {3, 4} and len(groups[0]) == 4, task
        shared.save_pretrained(tmp_path / str(task))
        reloaded = auto_class.from_pretrained(tmp_path / str(task), attn_implementation="eager")
        assert type(reloaded) is type(shared), task
        assert close(head_outputs(reloaded, batch), head_outputs(shared, batch)), task
