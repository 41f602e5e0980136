"""Every task's data: each source (one file, per-split files, save_to_disk), tokenization, QA windows, bad input."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from conftest import minilm_path

from hf_efficient.data import (
    DataConfig,
    label_names,
    load_data,
    postprocess_qa_predictions,
    tokenize_dataset,
)

pytestmark = pytest.mark.usefixtures("no_network")

N = 20
CONTEXT = "Reykjavik is the capital of Iceland. Its harbour is old. Kopavogur lies south of it, by the sea."


def _qa_row(i: int) -> dict:
    answer = ["Iceland", "harbour", "south"][i % 3]
    context = f"Note {i}. {CONTEXT}"
    return {
        "id": f"q{i}",
        "q": f"Question {i}?",
        "passage": context,
        "gold": {"text": [answer], "answer_start": [context.index(answer)]},
    }


# Per task: the rows of a source with its own column names, the DataConfig that names them, and a row's expected
# loaded value as (key of the row, value) so that any split can be checked row by row.
ROWS = {
    "text-classification": [
        {"a": f"first {i}", "b": f"second {i}", "y": ["same", "different"][i % 2]} for i in range(N)
    ],
    "multi-label-classification": [
        {"t": f"text {i}", "tags": [["sport"], ["news", "sport"], []][i % 3]} for i in range(N)
    ],
    "text-regression": [{"t": f"text {i}", "score": i / 4} for i in range(N)],
    "token-classification": [
        {"words": ["Anna", "visits", f"Oslo{i}"], "ner": ["B-PER", "O", "B-LOC"]} for i in range(N)
    ],
    "question-answering": [_qa_row(i) for i in range(N)],
    "multiple-choice": [
        {"prompt": f"Pick {i}", "options": [f"a{i}", f"b{i}", f"c{i}"], "answer": i % 3} for i in range(N)
    ],
}
CONFIGS = {
    "text-classification": dict(text_column="a", text_pair_column="b", label_column="y"),
    "multi-label-classification": dict(text_column="t", label_column="tags"),
    "text-regression": dict(text_column="t", label_column="score"),
    "token-classification": dict(tokens_column="words", tags_column="ner"),
    "question-answering": dict(question_column="q", context_column="passage", answers_column="gold"),
    "multiple-choice": dict(question_column="prompt", choices_column="options", label_column="answer"),
}
COLUMNS = {
    "text-classification": ["text", "text_pair", "label"],
    "multi-label-classification": ["text", "label"],
    "text-regression": ["text", "label"],
    "token-classification": ["tokens", "tags"],
    "question-answering": ["id", "question", "context", "answers"],
    "multiple-choice": ["question", "choices", "label"],
}


def _expected(task: str, row: dict):
    """(the loaded row's key, the loaded row's value) for a source row."""
    if task == "text-classification":
        return row["a"], (row["b"], ["different", "same"].index(row["y"]))
    if task == "multi-label-classification":
        return row["t"], sorted(["news", "sport"].index(tag) for tag in row["tags"])
    if task == "text-regression":
        return row["t"], pytest.approx(row["score"])
    if task == "token-classification":
        return row["words"][2], (row["words"], [["B-LOC", "B-PER", "O"].index(tag) for tag in row["ner"]])
    if task == "question-answering":
        return row["id"], (row["q"], row["passage"], row["gold"]["text"], row["gold"]["answer_start"])
    return row["prompt"], (row["options"], row["answer"])


def _loaded(task: str, row: dict):
    if task == "text-classification":
        return row["text"], (row["text_pair"], row["label"])
    if task in ("multi-label-classification", "text-regression"):
        return row["text"], sorted(row["label"]) if task != "text-regression" else row["label"]
    if task == "token-classification":
        return row["tokens"][2], (row["tokens"], row["tags"])
    if task == "question-answering":
        answers = row["answers"]
        return row["id"], (row["question"], row["context"], answers["text"], answers["answer_start"])
    return row["question"], (row["choices"], row["label"])


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _source(kind: str, task: str, tmp_path) -> dict:
    rows = ROWS[task]
    if kind == "file":
        return {"source": _write_jsonl(tmp_path / "data.jsonl", rows)}
    if kind == "split-files":
        parts = {"train": rows[:12], "validation": rows[12:16], "test": rows[16:]}
        return {f"{split}_file": _write_jsonl(tmp_path / f"{split}.jsonl", part) for split, part in parts.items()}
    frame = datasets.Dataset.from_list(rows)
    if kind == "disk-dict":
        datasets.DatasetDict(train=frame.select(range(16)), test=frame.select(range(16, N))).save_to_disk(
            tmp_path / "d"
        )
    else:
        frame.save_to_disk(tmp_path / "d")
    return {"source": str(tmp_path / "d")}


@pytest.mark.parametrize("kind", ["file", "split-files", "disk-dict", "disk-dataset"])
@pytest.mark.parametrize("task", list(ROWS))
def test_every_source_of_every_task(tmp_path, task, kind):
    config = DataConfig(**_source(kind, task, tmp_path), **CONFIGS[task])
    loaded = load_data(config, task, seed=1)

    sizes = {"file": [16, 2, 2], "split-files": [12, 4, 4], "disk-dict": [14, 2, 4], "disk-dataset": [16, 2, 2]}
    assert [len(loaded[split]) for split in ("train", "validation", "test")] == sizes[kind]
    expected = dict(_expected(task, row) for row in ROWS[task])
    seen = []
    for split in loaded.values():
        assert split.column_names == COLUMNS[task]
        for row in split:
            key, value = _loaded(task, row)
            assert value == expected[key]
            seen.append(key)
    assert sorted(seen) == sorted(expected)
    if kind == "split-files":  # each split is its file, in order
        assert [_loaded(task, row)[0] for row in loaded["validation"]] == [
            _expected(task, row)[0] for row in ROWS[task][12:16]
        ]
    names = {
        "text-classification": ["different", "same"],
        "multi-label-classification": ["news", "sport"],
        "token-classification": ["B-LOC", "B-PER", "O"],
    }
    assert label_names(loaded) == names.get(task)


def test_csv_cells_hold_lists_as_json_and_numbers_as_text(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("t,tags,score\n" + "".join(f'x{i},"[""a"", ""b""]",{i}.5\n' for i in range(10)))
    multi = load_data(DataConfig(source=str(path), text_column="t", label_column="tags"), "multi-label-classification")
    assert all(row["label"] == [0, 1] for row in multi["train"])
    regression = load_data(DataConfig(source=str(path), text_column="t", label_column="score"), "text-regression")
    assert sorted(value for split in regression.values() for value in split["label"]) == [i + 0.5 for i in range(10)]


def test_multi_hot_labels_and_tag_ids_take_their_names():
    multi_hot = datasets.Dataset.from_dict({"text": ["x"] * 10, "label": [[1, 0, 1], [0, 0, 1]] * 5})
    config = DataConfig(source=multi_hot, label_names=["a", "b", "c"])
    loaded = load_data(config, "multi-label-classification")
    assert label_names(loaded) == ["a", "b", "c"]
    every = [tuple(ids) for split in loaded.values() for ids in split["label"]]
    assert sorted(every) == sorted([(0, 2), (2,)] * 5)
    tags = datasets.Dataset.from_dict({"tokens": [["a", "b"]] * 10, "ner_tags": [[0, 2]] * 10})
    loaded = load_data(DataConfig(source=tags, label_names=["O", "B-X", "I-X"]), "token-classification")
    assert label_names(loaded) == ["O", "B-X", "I-X"] and loaded["train"][0]["tags"] == [0, 2]


# Tokenization ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(minilm_path())


def _dict(task: str, rows: list[dict], **config) -> datasets.DatasetDict:
    return load_data(DataConfig(source=datasets.Dataset.from_list(rows), **config), task)


def test_token_labels_on_the_first_sub_word(tokenizer):
    # gu ##dm ##unds ##dot ##ti ##r | lives | in | ko ##pa ##vo ##gur | .
    rows = [
        {"tokens": ["Gudmundsdottir", "lives", "in", "Kópavogur", "."], "ner_tags": ["B-PER", "O", "O", "B-LOC", "O"]}
    ]
    loaded = _dict("token-classification", rows * 10)
    tokenized = tokenize_dataset(loaded, tokenizer, 20, task="token-classification")
    row = tokenized["train"][0]
    assert tokenizer.convert_ids_to_tokens(row["input_ids"][:15]) == (
        "[CLS] gu ##dm ##unds ##dot ##ti ##r lives in ko ##pa ##vo ##gur . [SEP]".split()
    )
    loc, per, out, x = 0, 1, 2, -100  # tag ids in sorted order of their names: B-LOC, B-PER, O
    assert row["labels"] == [x, per, x, x, x, x, x, out, out, loc, x, x, x, out, x] + [x] * 5
    assert set(tokenized["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    # Words past max_length are neither trained on nor scored: said, with how many each split loses (8 tokens: the
    # name's 6 sub-words and "lives" would fit, but [CLS] and [SEP] leave room for the name only: 4 words lost).
    rows = len(loaded["train"])
    with pytest.warns(
        UserWarning, match=rf"max_length=8 tokens are neither .* \(train: {4 * rows} words of {rows} rows"
    ):
        tokenize_dataset(loaded, tokenizer, 8, task="token-classification")


def test_text_tasks_tokenize_pairs_and_float_labels(tokenizer):
    rows = [{"text": "a cat", "second": "a dog", "label": i % 2} for i in range(10)]
    pairs = _dict("text-classification", rows, text_pair_column="second")
    tokenized = tokenize_dataset(pairs, tokenizer, 10)["train"][0]
    assert tokenizer.decode(tokenized["input_ids"], skip_special_tokens=False).split()[:6] == (
        "[CLS] a cat [SEP] a dog".split()
    )
    assert tokenized["token_type_ids"][:7] == [0, 0, 0, 0, 1, 1, 1]

    multi = _dict("multi-label-classification", [{"text": "x", "label": [["b"], ["a", "c"]][i % 2]} for i in range(10)])
    tokenized = tokenize_dataset(multi, tokenizer, 8, task="multi-label-classification")
    assert tokenized["train"].features["labels"].feature.dtype == "float32"
    rows = {tuple(ids): hot for ids, hot in zip(multi["train"]["label"], tokenized["train"]["labels"], strict=True)}
    assert rows == {(1,): [0.0, 1.0, 0.0], (0, 2): [1.0, 0.0, 1.0]}

    regression = _dict("text-regression", [{"text": "x", "label": i / 3} for i in range(10)])
    tokenized = tokenize_dataset(regression, tokenizer, 8, task="text-regression")
    assert tokenized["train"].features["labels"].dtype == "float32"
    assert tokenized["train"]["labels"] == pytest.approx(regression["train"]["label"])


def test_multiple_choice_rows_hold_every_choice(tokenizer):
    rows = [
        {"context": "A man", "question": "then he", "choices": ["sits", "runs far"], "label": i % 2} for i in range(10)
    ]
    tokenized = tokenize_dataset(_dict("multiple-choice", rows), tokenizer, 12, task="multiple-choice")
    row = tokenized["train"][0]
    assert np.asarray(row["input_ids"]).shape == (2, 12) and np.asarray(row["attention_mask"]).shape == (2, 12)
    # run_swag's pairs: the context, then the question with each ending.
    assert tokenizer.decode(row["input_ids"][1], skip_special_tokens=True) == "a man then he runs far"
    assert set(tokenized["train"].column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}


def test_qa_windows_round_trip_to_the_gold_answers(tokenizer):
    # Long contexts, so that each has several windows; answers early, late and across the stride.
    filler = " ".join(f"word{k}" for k in range(40))
    rows = []
    for i, answer in enumerate(["Iceland", "harbour", "south"] * 4):
        context = f"{filler[: 7 * i]} {CONTEXT} {filler}" if i % 2 else f"{filler} {CONTEXT}"
        rows.append(
            {
                "question": "Where?",
                "context": context,
                "answers": {"text": [answer], "answer_start": [context.index(answer)]},
            }
        )
    loaded = _dict("question-answering", rows, max_length=48, doc_stride=16)
    tokenized = tokenize_dataset(loaded, tokenizer, 48, task="question-answering", doc_stride=16)
    for split in ("train", "validation", "test"):
        examples, features = loaded[split], tokenized[split]
        assert len(features) > len(examples)  # several windows per context
        inside = [s != 0 for s in features["start_positions"]]
        assert any(inside) and not all(inside)  # windows without the answer point at [CLS] (index 0)
        for feature in features.select(np.flatnonzero(inside)):
            answer = tokenizer.decode(feature["input_ids"][feature["start_positions"] : feature["end_positions"] + 1])
            gold = examples[examples["id"].index(feature["example_id"])]["answers"]["text"][0]
            assert answer == gold.lower()
        # Gold positions as logits: post-processing recovers every gold answer text exactly.
        start = np.full((len(features), 48), -5.0)
        end = np.full((len(features), 48), -5.0)
        rows_ = np.arange(len(features))
        start[rows_, features["start_positions"]] += 10 * np.asarray(inside)
        end[rows_, features["end_positions"]] += 10 * np.asarray(inside)
        answers = postprocess_qa_predictions(examples, features, (start, end))
        assert list(answers) == examples["id"]
        assert list(answers.values()) == [a["text"][0] for a in examples["answers"]]
    assert {"example_id", "offset_mapping", "start_positions", "end_positions"} <= set(tokenized["train"].column_names)


def test_qa_postprocessing_keeps_answers_short_and_inside_the_context(tokenizer):
    rows = [{"question": "Where?", "context": CONTEXT, "answers": {"text": ["Iceland"], "answer_start": [28]}}] * 5
    loaded = _dict("question-answering", rows)
    features = tokenize_dataset(loaded, tokenizer, 64, task="question-answering")["train"]
    offsets = features[0]["offset_mapping"]
    first = next(k for k, span in enumerate(offsets) if span is not None)
    start, end = np.zeros((len(features), 64)), np.zeros((len(features), 64))
    start[:, 0] = end[:, 0] = 100.0  # [CLS] is no answer
    start[:, first] = 50.0
    end[:, first + 10] = 50.0  # an 11-token span: longer than max_answer_length=5
    end[:, first + 1] = 40.0
    answers = postprocess_qa_predictions(loaded["train"], features, (start, end), max_answer_length=5)
    assert set(answers.values()) == {"Reykjavik is"}


# Bad input -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, rows, config, match",
    [
        (
            "token-classification",
            [{"tokens": ["a", "b"], "ner_tags": ["O", "O"]}] * 3 + [{"tokens": ["a", "b"], "ner_tags": ["O"]}],
            {},
            r"Row index 3 of the 'train' split has 1 tags in tags_column='ner_tags' for 2 words",
        ),
        (
            "question-answering",
            [{"question": "q", "context": "the cat sat", "answers": {"text": ["cat"], "answer_start": [5]}}],
            {},
            r"answers_column='answers' in row index 0 of the 'train' split: the answer 'cat' is not at "
            r"answer_start=5 of its context \(there: 'at '\)",
        ),
        (
            "text-regression",
            [{"text": "a", "label": "1.5"}, {"text": "b", "label": "high"}],
            {},
            r"label_column='label' in row index 1 of the 'train' split holds 'high', not a number",
        ),
        (
            "multi-label-classification",
            [{"text": "a", "label": '["x"]'}, {"text": "b", "label": "x"}],
            {},
            r"label_column='label' in row index 1 of the 'train' split holds 'x', not a list",
        ),
        (
            "multiple-choice",
            [{"choices": ["a", "b"], "label": 0}, {"choices": ["a", "b", "c"], "label": 0}],
            {},
            r"choices_column='choices' in row index 1 of the 'train' split has 3 choices, but the rows before it",
        ),
        (
            "multiple-choice",
            [{"choices": ["a", "b"], "label": 2}],
            {},
            r"label_column='label' in row index 0 .* holds 2; give the index of the right choice, 0 to 1",
        ),
        (
            "token-classification",
            [{"tokens": ["a"], "tags": ["O"]}],
            {},
            r"tags_column='ner_tags' is not a column of the 'train' split, whose columns are tokens, tags",
        ),
        (
            "token-classification",
            [{"tokens": ["a"], "ner_tags": [3]}],
            {},
            r"tags_column='ner_tags' holds ids without names; give the names in id order as data.label_names",
        ),
        (
            "question-answering",
            [{"question": "q", "passage": "c", "answers": {"text": [], "answer_start": []}}],
            {},
            r"context_column='context' is not a column of the 'train' split, whose columns are question, passage",
        ),
        (  # an infinite loss, then NaN metrics after the whole training
            "text-regression",
            [{"text": "a", "label": "1.5"}, {"text": "b", "label": "Infinity"}],
            {},
            r"label_column='label' in row index 1 of the 'train' split holds 'Infinity', which is not a finite float32",
        ),
        (
            "text-regression",
            [{"text": "a", "label": 1.5}, {"text": "b", "label": 1e300}],
            {},
            r"row index 1 of the 'train' split holds 1e\+300, which is not a finite float32",
        ),
        (  # start = end = the first context token: it would be trained to answer the context's first word
            "question-answering",
            [{"question": "q", "context": "the cat", "answers": {"text": [""], "answer_start": [0]}}],
            {},
            r"answers_column='answers' in row index 0 of the 'train' split has an empty answer text",
        ),
        (  # SQuAD v2: the head always answers with a span, so such a row can never score
            "question-answering",
            [{"question": "q", "context": "the cat", "answers": {"text": [], "answer_start": []}}],
            {},
            r"row index 0 of the 'train' split has no answer \(a SQuAD v2 unanswerable question\); questions without",
        ),
        (  # no sub-token: its tag would vanish from training and scoring
            "token-classification",
            [{"tokens": ["ann", " ", "sat"], "ner_tags": ["B-PER", "B-LOC", "O"]}],
            {},
            r"tokens_column='tokens' in row index 0 of the 'train' split holds an empty word at position 1",
        ),
        (  # entity F1 would never find an X- span: every model would score 0
            "token-classification",
            [{"tokens": ["a", "b"], "ner_tags": ["B-PER", "X-LOC"]}],
            {},
            r"tags_column='ner_tags' holds the tag 'X-LOC': entity F1 reads IOB tags, O or B-/I-/E-/S- and a type",
        ),
        (
            "token-classification",
            [{"tokens": ["a", "b"], "ner_tags": [0, 1]}],
            {"label_names": ["O", "PER"]},
            r"holds the tag 'PER': entity F1 reads IOB tags",
        ),
        (  # a setting the task never reads would look applied
            "text-classification",
            [{"text": "a", "label": 0}, {"text": "b", "label": 1}],
            {"doc_stride": 16},
            r"DataConfig.doc_stride=16 is read by question-answering only, and the task is text-classification",
        ),
        (
            "text-classification",
            [{"text": "a", "label": 0}, {"text": "b", "label": 1}],
            {"tokens_column": "words"},
            r"DataConfig.tokens_column='words' is read by token-classification only, and the task is text-class",
        ),
    ],
)
def test_bad_rows_name_the_row_or_column_and_the_fix(task, rows, config, match):
    with pytest.raises(ValueError, match=match):
        _dict(task, rows, **config)


def test_one_answer_may_be_written_without_its_lists():
    row = {"question": "q", "context": "the red cat", "answers": {"text": "red", "answer_start": 4}}
    loaded = _dict("question-answering", [row] * 10)
    assert loaded["train"][0]["answers"] == {"text": ["red"], "answer_start": [4]}


def test_bad_sources_and_settings(tmp_path):
    with pytest.raises(ValueError, match="is a folder without dataset_dict.json or state.json"):
        load_data(DataConfig(source=str(tmp_path)), "token-classification")
    with pytest.raises(ValueError, match="default data .* are text classification; for task='token-classification'"):
        load_data(DataConfig(), "token-classification")
    with pytest.raises(ValueError, match="task='summarization' has no data loader"):
        load_data(DataConfig(), "summarization")
    for task in ("text-classification", "sentence-embedding"):  # the columns are the default data's own
        with pytest.raises(ValueError, match=r"^text_column='sentence': the default data .* have their own columns"):
            load_data(DataConfig(text_column="sentence"), task)
    with pytest.raises(ValueError, match=r"data.train_file='.*missing.jsonl': no such file"):
        load_data(DataConfig(train_file=str(tmp_path / "missing.jsonl")), "token-classification")
    with pytest.raises(ValueError, match="need a train_file too"):
        DataConfig(validation_file="v.jsonl")
    with pytest.raises(ValueError, match="give one of them, not both"):
        DataConfig(source="a.jsonl", train_file="b.jsonl")
    assert DataConfig(doc_stride=64, max_length=16).max_length == 16  # checked when QA data are tokenized
    with pytest.raises(ValueError, match="max_train_samples=0"):
        DataConfig(max_train_samples=0)


def test_tokenize_dataset_checks_the_task_columns(tokenizer):
    loaded = _dict("text-regression", [{"text": "x", "label": 1.0}] * 10)
    with pytest.raises(ValueError, match=r"Split 'train' has no 'tokens', 'tags' column .*load_data\(task="):
        tokenize_dataset(loaded, tokenizer, task="token-classification")


def test_qa_windows_need_room_for_the_context(tokenizer):
    rows = [
        {
            "question": "what is this rather long question asking?",
            "context": "a b c " * 20,
            "answers": {"text": ["b"], "answer_start": [2]},
        }
    ]
    loaded = _dict("question-answering", rows * 10)
    with pytest.raises(ValueError, match=r"Row index 0 of the 'train' split: its question takes 8 of max_length=19"):
        tokenize_dataset(loaded, tokenizer, 19, task="question-answering", doc_stride=8)
    # A row of hf_efficient.tasks names its task as well as its name does.
    from hf_efficient.tasks import get_task

    tokenized = tokenize_dataset(loaded, tokenizer, 32, task=get_task("question-answering"), doc_stride=8)
    assert "start_positions" in tokenized["train"].column_names


def test_a_bad_row_past_the_first_names_the_split_file(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"tokens": ["a"], "ner_tags": ["O"]}\n{"tokens": ["a"], "ner_tags": }\n')
    with pytest.raises(ValueError, match=r"data.train_file='.*train.jsonl' cannot be read past its first row"):
        load_data(DataConfig(train_file=str(tmp_path / "train.jsonl")), "token-classification")
