"""The metrics of every task: the shipped modules against references, the Trainer's function, models end to end."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch
from conftest import minilm_path, tiny_model
from transformers import EvalPrediction

from hf_efficient.data import DataConfig, label_names, load_data, tokenize_dataset
from hf_efficient.metrics import compute_metrics_fn, evaluate_model, load_metric, score_predictions
from hf_efficient.tasks import TASKS

pytestmark = pytest.mark.usefixtures("no_network")

_RNG = np.random.default_rng(0)


def test_every_scored_row_ranks_and_publishes_metrics_its_scorer_returns():
    for task in TASKS.values():
        if task.score is not None:
            assert task.metric in task.metrics
            assert set(task.card_metrics) <= set(task.metrics)


@pytest.mark.parametrize("seed", [0, 1])
def test_multi_label_matches_sklearn(seed):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    references = rng.integers(0, 2, (50, 4))
    predictions = rng.integers(0, 2, (50, 4))
    predictions[:, 3] = 0  # a label never predicted
    results = load_metric("multi_label").compute(predictions=predictions, references=references)
    assert results == pytest.approx(
        {
            "micro_f1": sklearn_metrics.f1_score(references, predictions, average="micro", zero_division=0),
            "macro_f1": sklearn_metrics.f1_score(references, predictions, average="macro", zero_division=0),
            "subset_accuracy": sklearn_metrics.accuracy_score(references, predictions),
        }
    )


def test_multi_label_by_hand():
    # Label 0: tp 1, fp 1 -> F1 2/3; label 1: tp 1 -> F1 1; micro: tp 2, fp 1 -> 4/5; one row of two exactly right.
    results = load_metric("multi_label").compute(predictions=[[1, 0], [1, 1]], references=[[1, 0], [0, 1]])
    assert results == pytest.approx({"micro_f1": 0.8, "macro_f1": (2 / 3 + 1) / 2, "subset_accuracy": 0.5})
    with pytest.raises(ValueError, match="one shape"):
        load_metric("multi_label").compute(predictions=[[1, 0]], references=[[1, 0, 1]])


def test_correlation_matches_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    predictions = np.round(_RNG.normal(size=60), 1)  # rounded: many ties
    references = np.round(predictions + _RNG.normal(size=60), 0)
    results = load_metric("correlation").compute(predictions=predictions, references=references)
    assert results["pearson"] == pytest.approx(stats.pearsonr(predictions, references)[0], abs=1e-9)
    assert results["spearman"] == pytest.approx(stats.spearmanr(predictions, references)[0], abs=1e-9)


def test_correlation_by_hand():
    metric = load_metric("correlation")
    # Ranks [1, 2, 3] and [1, 3, 2]: Spearman 1 - 6 * 2 / (3 * 8) = 0.5.
    assert metric.compute(predictions=[1.0, 2.0, 4.0], references=[1.0, 3.0, 2.0])["spearman"] == pytest.approx(0.5)
    assert metric.compute(predictions=[1.0, 2.0, 3.0], references=[2.0, 4.0, 6.0]) == pytest.approx(
        {"pearson": 1.0, "spearman": 1.0}
    )
    assert metric.compute(predictions=[1.0, 1.0, 1.0], references=[1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearman": 0.0}


def test_entities_by_hand():
    metric = load_metric("entities")
    references = [["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG", "O"]]
    # PER found with the wrong end (a miss and a false find), LOC found, ORG missed, one false MISC.
    predictions = [["B-PER", "O", "O", "B-LOC"], ["B-MISC", "O", "O"]]
    precision, recall = 1 / 3, 1 / 3
    assert metric.compute(predictions=predictions, references=references) == pytest.approx(
        {"entity_precision": precision, "entity_recall": recall, "entity_f1": 1 / 3, "token_accuracy": 4 / 7}
    )
    with pytest.raises(ValueError, match="Sequence 0 has 1 predicted tags for 2"):
        metric.compute(predictions=[["O"]], references=[["O", "O"]])


def test_squad_normalisation_by_hand():
    metric = load_metric("squad")
    predictions = ["The  Eiffel Tower!", "in Paris", "Rome", "", "blue whale"]
    references = [
        ["Eiffel tower"],
        ["Paris, France", "the city of Paris"],
        ["Milan"],
        [],
        ["the blue whale", "a whale"],
    ]
    # F1 per question: 1; max(2*0.5*0.5, 2*0.5*(1/3)/(0.5+1/3)) = 0.5; 0; 1 (no answer, none given); 1.
    assert metric.compute(predictions=predictions, references=references) == pytest.approx(
        {"exact_match": 3 / 5, "f1": (1 + 0.5 + 0 + 1 + 1) / 5}
    )


@pytest.mark.parametrize("task", ["multi-label-classification", "text-regression", "multiple-choice"])
def test_compute_metrics_fn_of_array_tasks(task):
    logits = _RNG.normal(size=(40, 3)).astype(np.float32)
    if task == "multi-label-classification":
        labels = _RNG.integers(0, 2, (40, 3)).astype(np.float32)
        expected = load_metric("multi_label").compute(predictions=(logits > 0).astype(int), references=labels)
    elif task == "text-regression":
        logits, labels = logits[:, :1], _RNG.normal(size=40).astype(np.float32)
        expected = load_metric("correlation").compute(predictions=logits[:, 0], references=labels)
    else:
        labels = _RNG.integers(0, 3, 40)
        expected = {"accuracy": float((logits.argmax(-1) == labels).mean())}
    compute = compute_metrics_fn(task=task)
    assert compute(EvalPrediction(predictions=logits, label_ids=labels)) == pytest.approx(expected)
    hidden = np.zeros((40, 5, 8), dtype=np.float32)  # what a model returning more than logits adds
    assert compute(EvalPrediction(predictions=(logits, hidden), label_ids=labels)) == pytest.approx(expected)
    first = TASKS[task].metrics[0]
    assert compute_metrics_fn([first], task=task)(EvalPrediction(logits, labels)) == {first: expected[first]}


def test_compute_metrics_fn_of_token_classification_skips_ignored_positions():
    names = ["O", "B-PER", "I-PER"]
    labels = np.array([[-100, 1, 2, 0, -100], [-100, 0, 1, -100, -100]])
    logits = np.zeros((2, 5, 3))
    for row, tags in enumerate([[2, 1, 2, 0, 1], [1, 0, 1, 1, 1]]):  # the ignored positions predict anything
        logits[row, np.arange(5), tags] = 1.0
    results = compute_metrics_fn(task="token-classification", label_names=names)(EvalPrediction(logits, labels))
    assert results == pytest.approx(
        {"entity_f1": 1.0, "entity_precision": 1.0, "entity_recall": 1.0, "token_accuracy": 1.0}
    )
    with pytest.raises(ValueError, match="need the tag names"):
        compute_metrics_fn(task="token-classification")(EvalPrediction(logits, labels))


def test_compute_metrics_fn_validates_per_task():
    with pytest.raises(ValueError, match="'accuracy' is not a metric of task='text-regression'"):
        compute_metrics_fn(["accuracy"], task="text-regression")
    with pytest.raises(ValueError, match="task='summarization' is not a known task; use one of text-classification"):
        compute_metrics_fn(task="summarization")
    with pytest.raises(
        ValueError, match="task='sentence-embedding' has no metrics here; use one of text-classification"
    ):
        compute_metrics_fn(task="sentence-embedding")
    with pytest.raises(ValueError, match="need examples= .* and features="):
        compute_metrics_fn(task="question-answering")
    with pytest.raises(ValueError, match="num_labels=1"):
        compute_metrics_fn(task="text-regression")(EvalPrediction(np.zeros((4, 2)), np.zeros(4)))


# Models end to end -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


ROWS = {
    "text-classification": [{"text": f"text {i}", "label": i % 2} for i in range(30)],
    "multi-label-classification": [{"text": f"text {i}", "label": [["a"], ["b", "c"], []][i % 3]} for i in range(30)],
    "text-regression": [{"text": f"text {i}", "label": i / 7} for i in range(30)],
    "token-classification": [
        {"tokens": ["Anna", "lives", "in", f"Oslo{i}"], "ner_tags": ["B-PER", "O", "O", ["B-LOC", "O"][i % 2]]}
        for i in range(30)
    ],
    "question-answering": [
        {
            "question": f"Who is {i}?",
            "context": f"Number {i} is a long story about the harbour of Reykjavik, " * 3,
            "answers": {"text": ["harbour"], "answer_start": [len(f"Number {i} is a long story about the ")]},
        }
        for i in range(30)
    ],
    "multiple-choice": [
        {"question": f"Pick {i}", "choices": ["a cat", "a dog", "a fish"], "label": i % 3} for i in range(30)
    ],
}


@pytest.mark.parametrize("task", list(ROWS))
def test_evaluate_model_scores_every_task(tokenizer, task):
    loaded = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS[task])), task)
    tokenized = tokenize_dataset(loaded, tokenizer, 24, task=task, doc_stride=8)
    names = label_names(loaded)
    num_labels = {"text-regression": 1}.get(task, len(names) if names else 2)
    id2label = dict(enumerate(names)) if names else None
    overrides = {"num_labels": num_labels} | ({"id2label": id2label} if id2label else {})
    model = tiny_model("bert", 2, task=task, vocab_size=tokenizer.vocab_size, **overrides)
    examples = loaded["test"] if task == "question-answering" else None

    results = evaluate_model(model, tokenized["test"], batch_size=2, examples=examples)
    assert set(results) == set(TASKS[task].metrics)
    assert all(-1.0 <= value <= 1.0 for value in results.values())

    # The same numbers from the model's outputs on the whole split at once, scored by hand through the modules.
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in tokenized["test"].column_names]
    with torch.no_grad():
        outputs = model(**{c: torch.tensor(tokenized["test"][c]) for c in columns})
    if task == "question-answering":
        predictions = (outputs.start_logits.numpy(), outputs.end_logits.numpy())
    else:
        predictions = outputs.logits.numpy()
    expected = score_predictions(predictions, tokenized["test"], task, label_names=names, examples=examples)
    assert results == pytest.approx(expected, abs=1e-4)  # batches of 2 against one batch: float rounding
    if task == "text-classification":
        assert results["accuracy"] == float((predictions.argmax(-1) == np.asarray(tokenized["test"]["label"])).mean())


def test_evaluate_model_of_question_answering_needs_the_examples(tokenizer):
    model = tiny_model("bert", 2, task="question-answering", vocab_size=tokenizer.vocab_size)
    loaded = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS["question-answering"])), "question-answering")
    tokenized = tokenize_dataset(loaded, tokenizer, 24, task="question-answering", doc_stride=8)
    with pytest.raises(ValueError, match="needs examples="):
        evaluate_model(model, tokenized["test"])


def test_evaluate_model_of_question_answering_refuses_other_examples(tokenizer):
    model = tiny_model("bert", 2, task="question-answering", vocab_size=tokenizer.vocab_size)
    loaded = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS["question-answering"])), "question-answering")
    tokenized = tokenize_dataset(loaded, tokenizer, 24, task="question-answering", doc_stride=8)
    features, examples = tokenized["test"], loaded["test"]
    with pytest.raises(ValueError, match=r"^postprocess_qa_predictions: \d+ example ids of the features .* not among"):
        evaluate_model(model, features, examples=loaded["validation"])  # another split: F1 0 before
    first = examples["id"][0]
    with pytest.raises(ValueError, match=r"^postprocess_qa_predictions: 1 of the examples have no features"):
        evaluate_model(model, features.filter(lambda row: row["example_id"] != first), examples=examples)
    for name in ("n_best_size", "max_answer_length"):
        with pytest.raises(ValueError, match=rf"^postprocess_qa_predictions\({name}=0\): give a positive int"):
            evaluate_model(model, features, examples=examples, **{name: 0})


def test_evaluate_model_refuses_bad_rows_and_settings_in_one_line(tokenizer):
    model = tiny_model("bert", 2, task="text-classification", vocab_size=tokenizer.vocab_size)
    loaded = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS["text-classification"])))
    tokenized = tokenize_dataset(loaded, tokenizer, 8)
    for size in (0, -1, 2.5):
        with pytest.raises(ValueError, match=rf"^evaluate_model\(batch_size={size}\): give a positive int"):
            evaluate_model(model, tokenized["test"], batch_size=size)
    for rows, message in (
        (tokenized, r"give one split of tokenized rows, e.g. data\['test'\]"),
        (loaded["test"], r"the rows have no input_ids"),
        (tokenized["test"].select([]), r"has no rows"),
    ):
        with pytest.raises(ValueError, match=rf"^evaluate_model\(dataset=...\):? {message}"):
            evaluate_model(model, rows)
    # Three labels in the data, two in the model: refused, not an IndexError inside the metric.
    three = tokenized["test"].cast_column("label", datasets.Value("int64"))
    three = three.map(lambda row, i: {"label": i % 3}, with_indices=True)
    with pytest.raises(
        ValueError, match=r"^evaluate_model\(dataset=...\): the rows' label hold 2, but the model's labels"
    ):
        evaluate_model(model, three)
    # Entity F1 reads IOB tag names; a token classifier named LABEL_0... would score nonsense.
    ner = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS["token-classification"])), "token-classification")
    tagger = tiny_model("bert", 2, task="token-classification", vocab_size=tokenizer.vocab_size, num_labels=3)
    with pytest.raises(ValueError, match=r"^evaluate_model: the model's labels \['LABEL_0', .* are not IOB tags"):
        evaluate_model(tagger, tokenize_dataset(ner, tokenizer, 16, task="token-classification")["test"])


def test_evaluate_model_refuses_a_task_of_another_head(tokenizer):
    model = tiny_model("bert", 2, task="text-classification", vocab_size=tokenizer.vocab_size)
    loaded = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS["text-classification"])))
    tokenized = tokenize_dataset(loaded, tokenizer, 8)
    with pytest.raises(ValueError, match=r"task='token-classification'.*is a 'text-classification' model"):
        evaluate_model(model, tokenized["test"], task="token-classification")


@pytest.mark.parametrize("task", list(ROWS))
def test_tokenized_rows_feed_the_head_and_its_loss(tokenizer, task):
    """As the Trainer does: drop the columns forward does not take, collate, and get the head's own loss."""
    import inspect

    from transformers import DataCollatorWithPadding, default_data_collator

    loaded = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS[task])), task)
    train = tokenize_dataset(loaded, tokenizer, 24, task=task, doc_stride=8)["train"]
    names = label_names(loaded)
    num_labels = {"text-regression": 1}.get(task, len(names) if names else 2)
    model = tiny_model("bert", 2, task=task, vocab_size=tokenizer.vocab_size, num_labels=num_labels)
    taken = set(inspect.signature(model.forward).parameters) | {"label"}
    rows = train.remove_columns([c for c in train.column_names if c not in taken]).select(range(4))
    for collate in (default_data_collator, DataCollatorWithPadding(tokenizer)):
        batch = collate([rows[i] for i in range(4)])
        loss = model(**batch).loss
        assert loss.ndim == 0 and torch.isfinite(loss)
        if task == "multiple-choice":
            assert batch["input_ids"].shape == (4, 3, 24)
        if task in ("multi-label-classification", "text-regression"):
            assert batch["labels"].dtype == torch.float32


@pytest.mark.parametrize("task", ["question-answering", "token-classification"])
def test_trainer_evaluate_with_compute_metrics_fn_equals_evaluate_model(tokenizer, task, tmp_path):
    from transformers import Trainer, TrainingArguments

    loaded = load_data(DataConfig(source=datasets.Dataset.from_list(ROWS[task])), task)
    tokenized = tokenize_dataset(loaded, tokenizer, 24, task=task, doc_stride=8)
    names = label_names(loaded)
    overrides = {"num_labels": len(names), "id2label": dict(enumerate(names))} if names else {}
    model = tiny_model("bert", 2, task=task, vocab_size=tokenizer.vocab_size, **overrides)
    examples = loaded["validation"] if task == "question-answering" else None
    compute = compute_metrics_fn(task=task, label_names=names, examples=examples, features=tokenized["validation"])
    args = TrainingArguments(tmp_path, per_device_eval_batch_size=2, report_to=[], use_cpu=True)
    results = Trainer(model=model, args=args, compute_metrics=compute).evaluate(tokenized["validation"])
    expected = evaluate_model(model, tokenized["validation"], examples=examples)
    assert {name: results[f"eval_{name}"] for name in expected} == pytest.approx(expected, abs=1e-4)
