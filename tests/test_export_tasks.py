"""`export_int8` for every task head and bare encoders, the gate measure per head, and the inference helpers.

The full family x head grid is slow (an export each); the CI suite runs every head of BERT and one
head of each other family, chosen for the export path it takes.
"""

import json

import numpy as np
import pytest
import torch
import transformers
from conftest import minilm_path, tiny_config
from datasets import Dataset

from hf_efficient import (
    ChoiceScorer,
    Int8ExportConfig,
    QuestionAnswerer,
    TextClassifier,
    TextEmbedder,
    TokenClassifier,
    export_int8,
)
from hf_efficient.export import run_onnx_outputs
from hf_efficient.export.helpers import _batches
from hf_efficient.export.int8 import _optimum_exports, optimum_available
from hf_efficient.tasks import get_task, task_of

ENTITIES = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
# Each head: its Auto class and the config changes that select it.
HEADS = {
    "single-label": ("AutoModelForSequenceClassification", {}),
    "multi-label": (
        "AutoModelForSequenceClassification",
        {"problem_type": "multi_label_classification", "num_labels": 3},
    ),
    "regression": ("AutoModelForSequenceClassification", {"num_labels": 1}),
    "token": (
        "AutoModelForTokenClassification",
        {"id2label": ENTITIES, "label2id": {v: k for k, v in ENTITIES.items()}},
    ),
    "question-answering": ("AutoModelForQuestionAnswering", {}),
    "multiple-choice": ("AutoModelForMultipleChoice", {}),
    "bare": ("AutoModel", {}),
}
FAMILIES = ["bert", "roberta", "distilbert", "electra", "deberta-v2", "modernbert"]
# The CI suite: every head of BERT, and one head per other family (ModernBERT's question answering goes
# through torch.onnx on the optimum stack too: Optimum has no ONNX configuration for it).
FAST = [("bert", head) for head in HEADS] + [
    ("roberta", "bare"),
    ("distilbert", "multiple-choice"),
    ("electra", "multi-label"),
    ("deberta-v2", "token"),
    ("modernbert", "question-answering"),
]
GRID = [
    pytest.param(family, head, marks=() if (family, head) in FAST else pytest.mark.slow)
    for family in FAMILIES
    for head in HEADS
]


def head_model(family: str, head: str, vocab_size: int | None = None, seed: int = 0):
    auto_class, changes = HEADS[head]
    config = tiny_config(family, 2)
    config.update(changes)
    if vocab_size is not None:  # to run with a real tokenizer (BERT's, MiniLM's)
        config.vocab_size = vocab_size
        if family == "modernbert":
            config.pad_token_id, config.cls_token_id, config.sep_token_id = 0, 101, 102
    config._attn_implementation = "eager"
    torch.manual_seed(seed)
    return getattr(transformers, auto_class).from_config(config).eval()


def head_batch(head: str, seed: int = 5) -> dict[str, np.ndarray]:
    generator = torch.Generator().manual_seed(seed)
    shape = (4, 2, 12) if head == "multiple-choice" else (4, 12)
    input_ids = torch.randint(5, 100, shape, generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, ..., -4:] = 0  # one padded row
    input_ids[0, ..., -4:] = 0
    return {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}


def expected_outputs(model, inputs: dict) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outputs = model(**{name: torch.from_numpy(value) for name, value in inputs.items()})
    return {name: outputs[name].numpy() for name in task_of(model).onnx_outputs}


def assert_int8_keeps_predictions(name: str, head: str, int8: np.ndarray, expected: np.ndarray, mask: np.ndarray):
    scale = np.abs(expected).max()
    assert np.abs(int8 - expected).max() <= 0.15 * scale, name
    if head == "bare":  # per token: the direction of each hidden state
        cosine = (int8 * expected).sum(-1) / np.linalg.norm(int8, axis=-1) / np.linalg.norm(expected, axis=-1)
        assert cosine[mask == 1].min() >= 0.99
    elif head in ("multi-label", "regression"):  # each label's decision (sigmoid > 0.5) where it is clear
        clear = np.abs(expected) > 0.1 * scale
        assert ((int8 > 0) == (expected > 0))[clear].all(), name
    else:  # the same argmax where the best two are not a near tie
        top = np.sort(expected, axis=-1)
        clear = top[..., -1] - top[..., -2] > 0.1 * scale
        if head == "token":  # padding does not count
            clear &= mask == 1
        assert (int8.argmax(-1) == expected.argmax(-1))[clear].all(), name
        assert clear.any(), "the batch should have clear predictions to compare"


@pytest.mark.parametrize(("family", "head"), GRID)
def test_export_parity_of_every_output(tmp_path, family, head):
    model = head_model(family, head)
    task = task_of(model)
    result = export_int8(model, tmp_path)
    inputs = head_batch(head)
    expected = expected_outputs(model, inputs)
    fp32 = run_onnx_outputs(tmp_path / "model.onnx", inputs | {"token_type_ids": np.zeros_like(inputs["input_ids"])})
    int8 = run_onnx_outputs(
        tmp_path / "model_quantized.onnx", inputs | {"token_type_ids": np.zeros_like(inputs["input_ids"])}
    )
    assert list(fp32) == list(int8) == list(task.onnx_outputs)
    for name in task.onnx_outputs:
        assert fp32[name].shape == expected[name].shape, name
        assert np.abs(fp32[name] - expected[name]).max() <= 1e-4, name
        assert_int8_keeps_predictions(name, head, int8[name], expected[name], inputs["attention_mask"])
    optimum = optimum_available() and _optimum_exports(model, task)
    assert (result.task, result.backend) == (task.name, "optimum" if optimum else "onnxruntime")
    saved = json.loads((tmp_path / "config.json").read_text())  # what the helpers and Optimum load the head by
    assert (saved["architectures"], saved["model_type"]) == ([type(model).__name__], model.config.model_type)


def test_optimum_has_no_configuration_for_some_heads_and_types():
    pytest.importorskip("optimum.exporters.onnx")
    assert _optimum_exports(head_model("modernbert", "token"))
    assert not _optimum_exports(head_model("modernbert", "question-answering"))
    assert not _optimum_exports(head_model("modernbert", "multiple-choice"))
    assert not _optimum_exports(head_model("ernie", "single-label"))  # no ONNX configuration at all


def test_backend_optimum_refuses_what_optimum_cannot_export(tmp_path):
    pytest.importorskip("optimum.exporters.onnx")
    with pytest.raises(
        ValueError, match="no ONNX configuration for model_type='modernbert' and task 'question-answering'"
    ):
        export_int8(head_model("modernbert", "question-answering"), tmp_path, Int8ExportConfig(backend="optimum"))
    assert not list(tmp_path.iterdir())


def test_a_saved_head_reloads_by_its_architecture(tmp_path):
    model = head_model("bert", "question-answering")
    model.save_pretrained(tmp_path / "model")
    transformers.AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(tmp_path / "model")
    result = export_int8(str(tmp_path / "model"), tmp_path / "export", tokenizer=None)
    assert result.task == "question-answering"
    inputs = head_batch("question-answering")
    fp32 = run_onnx_outputs(
        tmp_path / "export/model.onnx", inputs | {"token_type_ids": np.zeros_like(inputs["input_ids"])}
    )
    expected = expected_outputs(model, inputs)
    assert max(np.abs(fp32[name] - expected[name]).max() for name in expected) <= 1e-4


# The gate: each head's measure, scored on labels where the rows have them, else against PyTorch.
def gate_rows(head: str, labelled: bool, n: int = 32) -> Dataset:
    generator = torch.Generator().manual_seed(1)
    batch = head_batch(head, seed=1)
    shape = (n, *batch["input_ids"].shape[1:])
    input_ids = torch.randint(5, 100, shape, generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[::4, ..., -3:] = 0
    rows = {"input_ids": input_ids.tolist(), "attention_mask": attention_mask.tolist()}
    if labelled:
        rows |= {
            "single-label": {"label": torch.randint(0, 2, (n,), generator=generator).tolist()},
            "multi-label": {"labels": torch.randint(0, 2, (n, 3), generator=generator).float().tolist()},
            "regression": {"label": torch.rand(n, generator=generator).tolist()},
            "token": {"labels": torch.where(attention_mask == 1, torch.randint(0, 5, shape), -100).tolist()},
            "question-answering": {
                "start_positions": [3] * n,
                "end_positions": torch.randint(3, 8, (n,), generator=generator).tolist(),
            },
            "multiple-choice": {"label": torch.randint(0, 2, (n,), generator=generator).tolist()},
        }[head]
    return Dataset.from_dict(rows)


GATES = {
    "single-label": ("accuracy", "agreement"),
    "multi-label": ("micro_f1", "agreement"),
    "regression": ("pearson", "pearson_to_pytorch"),
    "token": ("entity_f1", "agreement"),  # IOB tags: seqeval entity F1
    "question-answering": ("span_f1", "span_agreement"),
    "multiple-choice": ("accuracy", "agreement"),
    "bare": (None, "cosine"),
}


@pytest.mark.parametrize("head", HEADS)
def test_gate_uses_the_heads_measure(tmp_path, head):
    model = head_model("bert", head)
    for labelled, name in zip((True, False), GATES[head], strict=True):
        if name is None:
            continue
        rows = gate_rows(head, labelled)
        result = export_int8(
            model, tmp_path / str(labelled), Int8ExportConfig(max_accuracy_drop=1.0), eval_dataset=rows
        )
        assert result.gate == name
        assert set(result.metrics["pytorch"]) == {name}
        # fp32 ONNX scores as PyTorch; against PyTorch itself, PyTorch scores 1.
        assert result.metrics["onnx_fp32"][name] == pytest.approx(result.metrics["pytorch"][name], abs=1e-6)
        if not labelled:
            assert result.metrics["pytorch"][name] == pytest.approx(1.0)
            assert result.metrics["onnx_int8"][name] > 0.9
        assert result.chosen[name] == result.metrics["onnx_int8"][name]


def test_a_row_the_gate_has_no_measure_for_is_refused_not_scored_by_argmax():
    import dataclasses

    from hf_efficient.export.gate import gate_measure
    from hf_efficient.tasks import get_task

    ranked = dataclasses.replace(get_task("text-classification"), name="ranking", metric="ndcg", problem_type=None)
    with pytest.raises(ValueError, match=r"no measure for task 'ranking' \(metric 'ndcg'\); add one to .*gate.py"):
        gate_measure(ranked, ["input_ids", "label"])


def test_the_token_gate_of_iob_tags_is_seqeval_entity_f1(tmp_path):
    from seqeval.metrics import f1_score

    model = head_model("bert", "token")
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {name: i for i, name in enumerate(names)}
    rows = gate_rows("token", labelled=True)
    result = export_int8(model, tmp_path / "export", Int8ExportConfig(max_accuracy_drop=1.0), eval_dataset=rows)
    assert result.gate == "entity_f1"
    # The same as seqeval on PyTorch's tags, row by row, over the labelled tokens.
    with torch.no_grad():
        logits = model(
            input_ids=torch.tensor(rows["input_ids"]), attention_mask=torch.tensor(rows["attention_mask"])
        ).logits
    predicted, gold = [], []
    for row_logits, row_labels in zip(logits.argmax(-1).tolist(), rows["labels"], strict=True):
        predicted.append([names[p] for p, label in zip(row_logits, row_labels, strict=True) if label != -100])
        gold.append([names[label] for label in row_labels if label != -100])
    expected = f1_score(gold, predicted, zero_division=0)
    assert result.metrics["pytorch"]["entity_f1"] == pytest.approx(expected, abs=1e-9)
    assert result.metrics["onnx_fp32"]["entity_f1"] == pytest.approx(expected, abs=1e-6)


def test_gate_refuses_an_encoder_whose_embeddings_int8_bends(tmp_path, monkeypatch):
    from hf_efficient.export import int8 as int8_module

    monkeypatch.setattr(int8_module, "onnx_score", lambda path, *_: 0.97 if "quantized" in str(path) else 1.0)
    with pytest.raises(int8_module.AccuracyDropError) as error:
        export_int8(
            head_model("bert", "bare"), tmp_path, Int8ExportConfig(retry=False), eval_dataset=gate_rows("bare", False)
        )
    assert error.value.result.gate == "cosine" and error.value.result.attempts[0]["drop"] == pytest.approx(0.03)


# The helpers, on a real tokenizer: against transformers' pipelines on the PyTorch model where they exist.
@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tokenizer):
    """Per head, the PyTorch BERT and its export folder."""

    def make(head: str, family: str = "bert"):
        folder = tmp_path_factory.mktemp(f"{family}-{head}")
        model = head_model(family, head, vocab_size=tokenizer.vocab_size)
        export_int8(model, folder, tokenizer=tokenizer)
        return model, folder

    return make


TEXTS = ["alice met bob in paris", "a delight from start to end", "the cat sat", "I walked out of london"]


def test_text_classifier_covers_pairs_multi_label_and_regression(exported, tokenizer):
    for head in ("single-label", "multi-label", "regression"):
        model, folder = exported(head)
        classify = TextClassifier(folder, file_name="model.onnx")
        assert classify([]) == []
        with torch.no_grad():
            logits = model(**tokenizer(TEXTS, TEXTS[::-1], padding=True, return_tensors="pt")).logits
        got = classify(TEXTS, TEXTS[::-1], batch_size=3)
        if head == "single-label":
            assert [g["score"] for g in got] == pytest.approx(logits.softmax(-1).max(-1).values.tolist(), abs=1e-5)
        elif head == "multi-label":
            scores = np.sort(logits.sigmoid().numpy(), axis=-1)[:, ::-1]
            np.testing.assert_allclose([[label["score"] for label in g] for g in got], scores, atol=1e-5)
        else:
            assert [g["score"] for g in got] == pytest.approx(logits[:, 0].tolist(), abs=1e-5)
        # The pipeline gives the same, on one text at a time.
        options = {"multi-label": {"top_k": None}, "regression": {"function_to_apply": "none"}}.get(head, {})
        expected = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)(TEXTS, **options)
        got = classify(TEXTS)
        if head == "multi-label":
            assert [[label["label"] for label in g] for g in got] == [[label["label"] for label in e] for e in expected]
        else:
            assert [g["label"] for g in got] == [e["label"] for e in expected]
            assert [g["score"] for g in got] == pytest.approx([e["score"] for e in expected], abs=1e-5)
    with pytest.raises(ValueError, match="4 texts but 1 text_pairs"):
        classify(TEXTS, ["one"])


def test_helpers_batch_texts_of_similar_length():
    # Longest first, so that each batch pads to a length close to its texts'; the helpers put the
    # results back in the order given (the pipeline comparisons around use batches that reorder).
    assert _batches([3, 10, 2, 9, 5], 2) == [[1, 3], [4, 0], [2]]
    assert _batches([], 4) == []
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=f"batch_size={bad!r}: give a whole number"):
            _batches([1], bad)


def test_helpers_take_a_thread_count(exported):
    _, folder = exported("single-label")
    assert TextClassifier(folder, threads=1).session.session.get_session_options().intra_op_num_threads == 1
    with pytest.raises(ValueError, match=r"TextClassifier\(threads=-2\): give a whole number of threads"):
        TextClassifier(folder, threads=-2)


def test_helpers_refuse_what_they_do_not_run_in_one_line(exported, tmp_path):
    _, folder = exported("single-label")
    f = str(folder)
    refused = {
        # A folder of another head names the helper that runs it, before its outputs fail deep inside.
        TokenClassifier: f"TokenClassifier({f!r}) holds a BertForSequenceClassification export, not "
        f"ForTokenClassification: use TextClassifier({f!r}).",
        QuestionAnswerer: f"QuestionAnswerer({f!r}) holds a BertForSequenceClassification export, not "
        f"ForQuestionAnswering: use TextClassifier({f!r}).",
        TextEmbedder: f"TextEmbedder({f!r}) holds a BertForSequenceClassification export, not a bare encoder: "
        f"use TextClassifier({f!r}).",
    }
    for helper, message in refused.items():
        with pytest.raises(ValueError) as error:
            helper(folder)
        assert str(error.value) == message
    _, encoder = exported("bare")
    with pytest.raises(ValueError, match=r"holds a BertModel export, not ForMultipleChoice: use TextEmbedder\("):
        ChoiceScorer(encoder)
    with pytest.raises(ValueError) as error:  # the file, not its folder
        TextClassifier(folder / "model_quantized.onnx")
    assert str(error.value) == (
        f"TextClassifier({str(folder / 'model_quantized.onnx')!r}): give the export folder, {f!r}, and the file as "
        "file_name='model_quantized.onnx'."
    )
    with pytest.raises(ValueError, match=r"\('nowhere'\): no such folder; give an export_int8 output folder\.$"):
        TextClassifier("nowhere")
    for wrong in (1000, 2):  # beyond the model's positions, or no room for text beside the special tokens
        with pytest.raises(ValueError, match=rf"^TextClassifier: max_length={wrong} is out of range; give 3 to 512 "):
            TextClassifier(folder, max_length=wrong)
    (tmp_path / "modules.json").write_text("[]")  # a sentence-transformers export
    with pytest.raises(ValueError, match=r"is a sentence-transformers export: embed with SentenceEmbedder\("):
        TextEmbedder(tmp_path)


def test_token_classifier_groups_words_as_the_pipeline(exported, tokenizer):
    model, folder = exported("token")
    ner = transformers.pipeline("token-classification", model=model, tokenizer=tokenizer, aggregation_strategy="simple")
    expected = ner(TEXTS)
    got = TokenClassifier(folder, file_name="model.onnx")(TEXTS, batch_size=3)
    assert any(got)  # some words are entities, to compare
    assert TokenClassifier(folder)([]) == []
    for groups, reference in zip(got, expected, strict=True):
        assert [(g["entity_group"], g["word"], g["start"], g["end"]) for g in groups] == [
            (e["entity_group"], e["word"], e["start"], e["end"]) for e in reference
        ]
        assert [g["score"] for g in groups] == pytest.approx([float(e["score"]) for e in reference], abs=1e-5)


def test_question_answerer_finds_a_span_of_the_context(exported, tokenizer):
    model, folder = exported("question-answering")
    questions, contexts = ["who met bob?", "where?"], ["alice met bob in paris", "the cat sat in london " * 40]
    # A small window, so the long context spans several.
    answers = QuestionAnswerer(folder, file_name="model.onnx", max_length=48, doc_stride=16)(questions, contexts)
    for answer, context in zip(answers, contexts, strict=True):
        assert answer["answer"] == context[answer["start"] : answer["end"]] and answer["answer"]
        assert 0 < answer["score"] <= 1
    if transformers.__version__.startswith("4."):  # transformers 5 has no question-answering pipeline
        qa = transformers.pipeline("question-answering", model=model, tokenizer=tokenizer)
        expected = qa(question=questions, context=contexts, max_seq_len=48, doc_stride=16)
        assert [(a["answer"], a["start"], a["end"]) for a in answers] == [
            (e["answer"], e["start"], e["end"]) for e in expected
        ]
        assert [a["score"] for a in answers] == pytest.approx([e["score"] for e in expected], abs=1e-5)


def test_question_answerer_refuses_windows_it_cannot_make(exported):
    _, folder = exported("question-answering")
    for name, value, fix in (
        ("doc_stride", -5, "positive int below max_length=32"),
        ("doc_stride", 32, "positive int below max_length=32"),
        ("max_answer_length", 0, "positive int"),
        ("max_answer_length", "5", "positive int"),
    ):
        settings = {"doc_stride": 8, name: value}
        with pytest.raises(ValueError, match=rf"^QuestionAnswerer\({name}={value!r}\): give a {fix}\.$"):
            QuestionAnswerer(folder, max_length=32, **settings)
    # A question that fills the window: one line, not the tokenizer's panic.
    long_question = "where is the big capital city of the country of france located"
    with pytest.raises(ValueError, match=r"^QuestionAnswerer: questions\[1\]: its question takes 12 of max_length=16"):
        QuestionAnswerer(folder, max_length=16, doc_stride=4)(["who?", long_question], ["paris", "paris"])


def test_choice_scorer_and_text_embedder(exported, tokenizer):
    model, folder = exported("multiple-choice")
    assert ChoiceScorer(folder)([], []) == []
    prompts, choices = ["the cat", "a film"], [["sat", "flew", "swam"], ["moved me", "bored me", "was long"]]
    got = ChoiceScorer(folder, file_name="model.onnx")(prompts, choices)
    for prompt, options, result in zip(prompts, choices, got, strict=True):
        encoded = tokenizer([prompt] * len(options), options, padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v[None] for k, v in encoded.items()}).logits[0]
        assert result["scores"] == pytest.approx(logits.softmax(-1).tolist(), abs=1e-5)
        assert result["choice"] == int(logits.argmax())
    with pytest.raises(ValueError, match="2 prompts but 1 lists of choices"):
        ChoiceScorer(folder)(prompts, choices[:1])
    for one in ([], ["sat"]):  # a choice must be made between two or more
        with pytest.raises(ValueError, match=rf"choices\[1\] has {len(one)} choice\(s\); give each prompt two or more"):
            ChoiceScorer(folder)(prompts, [choices[0], one])
    # One prompt's options given flat read as one choice per prompt: refused, not "chosen" with score 1.
    with pytest.raises(ValueError, match=r"choices\[0\]='sat' is not a list; give each prompt a list of its choices"):
        ChoiceScorer(folder)(prompts, ["sat", "flew"])
    # Prompts with two and three choices, in batches of one prompt and of several: the same scores.
    mixed = (
        ["the cat", "a film", "the dog"],
        [["sat", "flew", "swam"], ["moved me", "bored me"], ["ran", "slept", "ate"]],
    )
    one_by_one = ChoiceScorer(folder, file_name="model.onnx")(*mixed, batch_size=1)
    together = ChoiceScorer(folder, file_name="model.onnx")(*mixed)
    assert [len(r["scores"]) for r in together] == [3, 2, 3]
    for a, b in zip(one_by_one, together, strict=True):
        assert a["choice"] == b["choice"] and a["scores"] == pytest.approx(b["scores"], abs=1e-5)

    model, folder = exported("bare")
    with pytest.raises(ValueError, match=r"^TextEmbedder\(normalize='yes'\): use True or False"):
        TextEmbedder(folder, normalize="yes")
    with pytest.raises(ValueError, match=r"^TextEmbedder\(folder=None\): give the folder export_int8 wrote"):
        TextEmbedder(None)
    embeddings = TextEmbedder(folder, file_name="model.onnx")(TEXTS, batch_size=3)
    encoded = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**encoded).last_hidden_state
    mask = encoded["attention_mask"][..., None]
    np.testing.assert_allclose(embeddings, ((hidden * mask).sum(1) / mask.sum(1)).numpy(), atol=1e-5)
    normalized = TextEmbedder(folder, normalize=True)(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(normalized, axis=-1), 1.0, rtol=1e-5)
    assert TextEmbedder(folder)([]).shape == (0, model.config.hidden_size)


# The optimum stack: the folder loads with the task's ORTModelFor... class and runs in its pipeline.
PIPELINE_INPUTS = {
    "text-classification": lambda p: p(TEXTS),
    "token-classification": lambda p: p(TEXTS, aggregation_strategy="simple"),
    "question-answering": lambda p: p(question=["who met bob?", "where?"], context=[TEXTS[0], TEXTS[3]]),
    "feature-extraction": lambda p: p(TEXTS),
}


def assert_same(got, expected, atol: float = 1e-4):
    """Equal structure, labels and words; numbers within `atol` (PyTorch and ONNX differ in the last digits)."""
    if isinstance(expected, dict):
        assert set(got) == set(expected)
        for key in expected:
            assert_same(got[key], expected[key], atol)
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e, atol)
    elif isinstance(expected, (float, np.floating)):
        assert float(got) == pytest.approx(float(expected), abs=atol)
    else:
        assert got == expected


@pytest.mark.skipif(not optimum_available(), reason="the optimum stack only")
@pytest.mark.parametrize(
    ("family", "head"),
    [("bert", head) for head in HEADS if head != "regression"]
    + [("modernbert", "question-answering"), ("ernie", "single-label")],
)
def test_folder_loads_with_the_tasks_ort_class_and_pipeline(exported, tokenizer, family, head):
    import optimum.onnxruntime

    model, folder = exported(head, family)
    task = task_of(model)
    ort_class = getattr(optimum.onnxruntime, task.ort_class)
    fp32 = ort_class.from_pretrained(folder, file_name="model.onnx")
    int8 = ort_class.from_pretrained(folder, file_name="model_quantized.onnx")
    if task.pipeline_tag not in PIPELINE_INPUTS:  # multiple choice has no pipeline: the class alone
        encoded = tokenizer(["a film"] * 3, ["moved me", "bored me", "was long"], padding=True, return_tensors="pt")
        inputs = {k: v[None] for k, v in encoded.items()}
        with torch.no_grad():
            expected = model(**inputs).logits
        assert torch.allclose(fp32(**inputs).logits, expected, atol=1e-4)
        assert int8(**inputs).logits.argmax(-1).tolist() == expected.argmax(-1).tolist()
        return
    run = PIPELINE_INPUTS[task.pipeline_tag]
    expected = run(transformers.pipeline(task.pipeline_tag, model=model, tokenizer=tokenizer))
    assert_same(run(transformers.pipeline(task.pipeline_tag, model=fp32, tokenizer=tokenizer)), expected)
    on_int8 = run(transformers.pipeline(task.pipeline_tag, model=int8, tokenizer=tokenizer))
    # hf_efficient's helper on the int8 file gives what the pipeline gives on it, on one text at a time as
    # the pipeline runs them (int8 activations are quantized with the ranges of the whole batch).
    if task.pipeline_tag == "token-classification":
        assert_same(TokenClassifier(folder)(TEXTS, batch_size=1), on_int8, atol=1e-5)
    elif task.pipeline_tag == "question-answering":
        got = QuestionAnswerer(folder)(["who met bob?", "where?"], [TEXTS[0], TEXTS[3]], batch_size=1)
        assert_same(got, on_int8, atol=1e-5)
    elif task.pipeline_tag == "feature-extraction":
        pooled = [np.asarray(row[0]).mean(0) for row in on_int8]
        np.testing.assert_allclose(TextEmbedder(folder)(TEXTS, batch_size=1), np.stack(pooled), atol=1e-5)
    elif task.problem_type == "single_label_classification":
        assert_same(TextClassifier(folder)(TEXTS, batch_size=1), on_int8, atol=1e-5)
    assert get_task(task.name) is task


def test_ragged_evaluation_rows_are_refused_in_one_line(tmp_path):
    rows = Dataset.from_dict({"input_ids": [[5, 6, 7], [5, 6]], "attention_mask": [[1, 1, 1], [1, 1]], "label": [0, 1]})
    message = r"^export_int8\(eval_dataset=...\): the rows' input_ids differ in length; tokenize with padding="
    with pytest.raises(ValueError, match=message):
        export_int8(head_model("bert", "single-label"), tmp_path, eval_dataset=rows)


def test_the_labelled_qa_gate_is_squad_f1_over_sub_word_positions():
    from hf_efficient.export.gate import _span_f1

    predicted = np.array([[3, 5], [3, 5], [2, 2]])
    gold = np.array([[4, 7], [3, 5], [6, 9]])  # 2 of 3 and 4 tokens shared; exact; disjoint
    assert _span_f1(predicted, gold) == pytest.approx((2 * 2 / 7 + 1 + 0) / 3)
