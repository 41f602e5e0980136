"""Loading any task's data: from a file, per-split files or a `save_to_disk` folder, into fixed columns.

`load_data` returns "train", "validation" and "test" splits whose columns depend on the task (see
`TASK_COLUMNS`), whatever the source called them, each value checked, so that tokenization and the
metrics read one layout:

- text-classification: `text`, [`text_pair`], `label` (`ClassLabel`)
- multi-label-classification: `text`, [`text_pair`], `label` (a list of `ClassLabel` ids)
- text-regression: `text`, [`text_pair`], `label` (float32)
- token-classification: `tokens` (list of words), `tags` (list of `ClassLabel` ids)
- question-answering: `id`, `question`, `context`, `answers` ({"text": [...], "answer_start": [...]})
- multiple-choice: [`context`], [`question`], `choices` (list of texts), `label` (index of the right choice)
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import datasets

from ..checks import data_file
from .config import DEFAULT_TASK, DataConfig
from .text import SPLITS, _read_file, _select_columns, check_seed, complete_splits, load_text_classification

TEXT_CLASSIFICATION = "text-classification"
MULTI_LABEL = "multi-label-classification"
REGRESSION = "text-regression"
TOKEN_CLASSIFICATION = "token-classification"
QUESTION_ANSWERING = "question-answering"
MULTIPLE_CHOICE = "multiple-choice"
# The data tasks: a task row of `hf_efficient.tasks` whose data this module loads has its name here.
DATA_TASKS = (TEXT_CLASSIFICATION, MULTI_LABEL, REGRESSION, TOKEN_CLASSIFICATION, QUESTION_ANSWERING, MULTIPLE_CHOICE)
SENTENCE_EMBEDDING = "sentence-embedding"
# Tasks whose data are plain texts without a head to train: loaded here too, but not in DATA_TASKS.
TEXT_TASKS = (SENTENCE_EMBEDDING,)
# Files that `save_to_disk` writes: dataset_dict.json for a DatasetDict, state.json for a Dataset.
_DISK_FILES = ("dataset_dict.json", "state.json")


def check_task(task) -> str:
    """The task's name (of a name or a row of `hf_efficient.tasks`), if this module loads its data."""
    task = getattr(task, "name", task)
    if task not in DATA_TASKS + TEXT_TASKS:
        raise ValueError(f"task={task!r} has no data loader; use one of {', '.join(DATA_TASKS + TEXT_TASKS)}.")
    return task


def load_data(
    config: DataConfig | None = None, task: str = TEXT_CLASSIFICATION, *, seed: int = 0
) -> datasets.DatasetDict:
    """Load a task's data as "train", "validation" and "test" splits in the task's columns (module docstring).

    Splits the source lacks are carved at random (with `seed`) out of its train rows, `config.validation_split` and
    `config.test_split` of them; rows keep the source's order within each split.

    Args:
        config (`DataConfig`, *optional*): Where the data are and which columns hold what; defaults to `DataConfig()`
            (the default task).
        task (`str`, defaults to `"text-classification"`): One of `DATA_TASKS`.
        seed (`int`, defaults to `0`): Seed of the held-out splits and of the `max_train_samples` subset.

    Returns:
        `datasets.DatasetDict`: "train", "validation" and "test" splits in the task's columns.

    Raises:
        `ValueError`: one line naming the bad file, column or row and the fix.
    """
    config = DataConfig() if config is None else config
    if not isinstance(config, DataConfig):
        raise ValueError(f"load_data(config=...) takes a DataConfig, got {type(config).__name__}.")
    task = check_task(task)
    config.check_fields_for(task)
    check_seed(seed, "load_data")
    options = dict(
        validation_split=config.validation_split,
        test_split=config.test_split,
        seed=seed,
        max_train_samples=config.max_train_samples,
    )
    source = config.source
    if config.train_file is None and isinstance(source, str) and source == DEFAULT_TASK:
        if task not in (TEXT_CLASSIFICATION, SENTENCE_EMBEDDING):  # embeddings read its texts (labels: evaluation)
            raise ValueError(
                f"The default data ({DEFAULT_TASK}) are text classification; for task={task!r} give "
                "data.source (a file or save_to_disk folder) or data.train_file."
            )
        if config.text_pair_column is not None:
            raise ValueError(f"The default data ({DEFAULT_TASK}) have no text pairs; drop text_pair_column.")
        for name, column in (("text_column", "text"), ("label_column", "label")):
            if getattr(config, name) != column:  # not silently read from the columns the default data have
                raise ValueError(
                    f"{name}={getattr(config, name)!r}: the default data ({DEFAULT_TASK}) have their own columns; "
                    f"drop {name}, or give your data as source."
                )
        return load_text_classification(DEFAULT_TASK, label_names=config.label_names, **options)
    if task == TEXT_CLASSIFICATION and config.train_file is None and _is_file(source):
        # Checked and read exactly as `load_text_classification` always has.
        return load_text_classification(
            source,
            text_column=config.text_column,
            label_column=config.label_column,
            text_pair_column=config.text_pair_column,
            label_names=config.label_names,
            **options,
        )
    raw = read_splits(config)
    if task == TEXT_CLASSIFICATION:
        return load_text_classification(
            raw,
            text_column=config.text_column,
            label_column=config.label_column,
            text_pair_column=config.text_pair_column,
            label_names=config.label_names,
            **options,
        )
    splits = _NORMALISE[task](dict(raw), config)
    return complete_splits(splits, config.validation_split, config.test_split, seed, config.max_train_samples)


def _is_file(source) -> bool:
    return isinstance(source, (str, os.PathLike)) and not Path(source).expanduser().is_dir()


def read_splits(config: DataConfig) -> datasets.DatasetDict:
    """The splits of `config`'s data as they are (every column), with a "train" split at least."""
    if config.train_file is not None:
        splits = {}
        for split in SPLITS:
            path = getattr(config, f"{split}_file")
            if path is not None:
                data_file(path, None, None, names=(f"data.{split}_file", "", ""))
                splits[split] = _read_file(Path(path).expanduser(), f"data.{split}_file")
        return datasets.DatasetDict(splits)
    source = config.source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.is_dir():
            source = _load_from_disk(path)
        else:
            data_file(path, None, None, names=("data.source", "", ""))
            source = _read_file(path, "data.source")
    if isinstance(source, datasets.Dataset):
        source = datasets.DatasetDict(train=source)
    if not isinstance(source, datasets.DatasetDict):
        raise ValueError(
            f"data.source must be a file, a save_to_disk folder, a `datasets.Dataset` or `DatasetDict`, "
            f"got {type(source).__name__}."
        )
    if "train" not in source:
        raise ValueError(f"The data need a 'train' split, but have {list(source)}; rename one to 'train'.")
    return datasets.DatasetDict({name: source[name] for name in SPLITS if name in source})


def _load_from_disk(path: Path) -> datasets.Dataset | datasets.DatasetDict:
    if not any((path / name).is_file() for name in _DISK_FILES):
        raise ValueError(
            f"data.source={str(path)!r} is a folder without {' or '.join(_DISK_FILES)}; give a folder written by "
            "`datasets`' save_to_disk, or a .csv/.tsv/.json/.jsonl file."
        )
    return datasets.load_from_disk(str(path))


# Checks of one column -------------------------------------------------------------------------------------------


def _require(dataset: datasets.Dataset, argument: str, column: str, split: str) -> None:
    if column not in dataset.column_names:
        raise ValueError(
            f"{argument}={column!r} is not a column of the {split!r} split, whose columns are "
            f"{', '.join(dataset.column_names)}; name one of those."
        )


def _where(argument: str, column: str, row: int, split: str) -> str:
    return f"{argument}={column!r} in row index {row} of the {split!r} split"


def _as_list(value, argument: str, column: str, row: int, split: str, what: str) -> list:
    """`value` as a list: a list, or a JSON list written as a string (a CSV cell)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            pass
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{_where(argument, column, row, split)} holds {value!r}, not a list; give {what}.")
    return list(value)


def _strings(values: list, argument: str, column: str, row: int, split: str) -> None:
    bad = next((value for value in values if not isinstance(value, str)), None)
    if bad is not None:
        raise ValueError(f"{_where(argument, column, row, split)} holds {bad!r} in its list; give texts.")


def _texts(dataset: datasets.Dataset, argument: str, column: str, split: str) -> list[str]:
    values = dataset[column]
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(f"{_where(argument, column, row, split)} holds {value!r}; give a text in every row.")
    return values


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _class_names(feature) -> list[str] | None:
    """The names of a `ClassLabel` or of a list of `ClassLabel`s, None for any other feature."""
    inner = getattr(feature, "feature", feature)
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _ids_to_names(ids_seen: set, names: list[str] | None, argument: str, column: str) -> list[str]:
    if names is None:
        raise ValueError(
            f"{argument}={column!r} holds ids without names; give the names in id order as "
            "data.label_names (e.g. [O, B-PER, I-PER]), or the names themselves in the data."
        )
    too_big = sorted(i for i in ids_seen if not 0 <= i < len(names))
    if too_big:
        raise ValueError(
            f"{argument}={column!r} holds id {too_big[0]}, but label_names has {len(names)} names; "
            "give a name for every id."
        )
    return names


# One function per task: {split: raw Dataset} -> {split: Dataset in the task's columns} ----------------------------


def _text_columns(splits: dict, config: DataConfig) -> dict:
    return {
        name: _select_columns(split, config.text_column, config.label_column, name, config.text_pair_column)
        for name, split in splits.items()
    }


def _multi_label(splits: dict, config: DataConfig) -> dict:
    splits = _text_columns(splits, config)
    argument, column = "label_column", config.label_column
    names = {_tuple(_class_names(s.features["label"])) for s in splits.values()}
    if len(names) == 1 and None not in names:  # lists of ClassLabel ids already
        label_names, rows = list(names.pop()), {name: s["label"] for name, s in splits.items()}
    else:
        rows, kinds, width = {}, set(), None
        for name, split in splits.items():
            rows[name] = []
            for row, value in enumerate(split["label"]):
                value = _as_list(value, argument, column, row, name, "a list of label names or a 0/1 multi-hot list")
                if value and all(isinstance(v, str) for v in value):
                    kinds.add("names")
                elif value and all(_is_number(v) and v in (0, 1) for v in value):
                    kinds.add("multi-hot")
                    if width is not None and len(value) != width:
                        raise ValueError(
                            f"{_where(argument, column, row, name)} is a multi-hot list of {len(value)} labels, but "
                            f"the rows before it have {width}; give every row one 0/1 per label."
                        )
                    width = len(value)
                elif value:
                    raise ValueError(
                        f"{_where(argument, column, row, name)} holds {value!r}; give a list of label names or a "
                        "0/1 multi-hot list."
                    )
                rows[name].append(value)
        if len(kinds) > 1:
            raise ValueError(
                f"{argument}={column!r} mixes lists of label names with multi-hot lists; give one or the other."
            )
        if kinds == {"multi-hot"}:
            label_names = config.label_names or [f"LABEL_{i}" for i in range(width)]
            if len(label_names) != width:
                raise ValueError(
                    f"label_names has {len(label_names)} names for multi-hot lists of {width} labels; "
                    "give one name per position."
                )
            rows = {
                name: [[i for i, on in enumerate(value) if on] if value else [] for value in values]
                for name, values in rows.items()
            }
        else:
            label_names = sorted({v for values in rows.values() for value in values for v in value})
            index = {label: i for i, label in enumerate(label_names)}
            rows = {name: [[index[v] for v in value] for value in values] for name, values in rows.items()}
        if not label_names:
            raise ValueError(f"{argument}={column!r} holds only empty lists; multi-label rows need labels.")
    feature = datasets.Sequence(datasets.ClassLabel(names=label_names))
    return {
        name: split.remove_columns("label").add_column("label", rows[name], feature=feature)
        for name, split in splits.items()
    }


def _tuple(names):
    return None if names is None else tuple(names)


FLOAT32_MAX = 3.4028234663852886e38


def _regression(splits: dict, config: DataConfig) -> dict:
    splits = _text_columns(splits, config)
    out = {}
    for name, split in splits.items():
        values = []
        for row, value in enumerate(split["label"]):
            number = value
            if isinstance(value, str):
                try:
                    number = float(value)
                except ValueError:
                    number = None
            if not _is_number(number) or math.isnan(number):
                raise ValueError(
                    f"{_where('label_column', config.label_column, row, name)} holds {value!r}, not a number; "
                    "regression needs a number in every row."
                )
            if not abs(number) <= FLOAT32_MAX:  # the label is float32: beyond it, an infinite loss and NaN metrics
                raise ValueError(
                    f"{_where('label_column', config.label_column, row, name)} holds {value!r}, which is not a finite "
                    "float32; give a finite number (rescale the targets if they are that large)."
                )
            values.append(float(number))
        out[name] = split.remove_columns("label").add_column("label", values, feature=datasets.Value("float32"))
    return out


def _token_classification(splits: dict, config: DataConfig) -> dict:
    words, tags = ("tokens_column", config.tokens_column), ("tags_column", config.tags_column)
    tokens, values, features = {}, {}, {}
    for name, split in splits.items():
        _require(split, *words, name)
        _require(split, *tags, name)
        features[name] = split.features[config.tags_column]
        tokens[name], values[name] = [], []
        for row, (row_words, row_tags) in enumerate(
            zip(split[config.tokens_column], split[config.tags_column], strict=True)
        ):
            row_words = _as_list(row_words, *words, row, name, "a list of words")
            _strings(row_words, *words, row, name)
            blank = next((i for i, word in enumerate(row_words) if not word.strip()), None)
            if blank is not None:  # no sub-token: its tag would vanish from training and scoring alike
                raise ValueError(
                    f"{_where(*words, row, name)} holds an empty word at position {blank}; drop it and its tag."
                )
            row_tags = _as_list(row_tags, *tags, row, name, "a list of tags, one per word")
            if len(row_tags) != len(row_words):
                raise ValueError(
                    f"Row index {row} of the {name!r} split has {len(row_tags)} tags in "
                    f"tags_column={config.tags_column!r} for {len(row_words)} words in "
                    f"tokens_column={config.tokens_column!r}; give one tag per word."
                )
            tokens[name].append(row_words)
            values[name].append(row_tags)
    known = {_tuple(_class_names(feature)) for feature in features.values()}
    every = [tag for rows in values.values() for row in rows for tag in row]
    if len(known) == 1 and None not in known:
        tag_names, ids = list(known.pop()), values
    elif all(isinstance(tag, str) for tag in every):
        tag_names = sorted(set(every))
        index = {tag: i for i, tag in enumerate(tag_names)}
        ids = {name: [[index[tag] for tag in row] for row in rows] for name, rows in values.items()}
    elif all(isinstance(tag, int) and not isinstance(tag, bool) for tag in every):
        tag_names, ids = _ids_to_names(set(every), config.label_names, *tags), values
    else:
        bad = next(tag for tag in every if not isinstance(tag, str))
        raise ValueError(f"tags_column={config.tags_column!r} holds {bad!r} among names; give names or ids, not both.")
    # Entity F1 (seqeval) reads a span from a tag's prefix: under any other name an entity is never found, and a
    # model would score 0 whatever it predicts.
    other = [tag for tag in tag_names if not re.fullmatch(r"O|[BIES]-\S.*", str(tag))]
    if other:
        raise ValueError(
            f"tags_column={config.tags_column!r} holds the tag {other[0]!r}: entity F1 reads IOB tags, O or "
            "B-/I-/E-/S- and a type (B-LOC); rename it (tags without entities, such as parts of speech, are not "
            "supported)."
        )
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "tags": datasets.Sequence(datasets.ClassLabel(names=tag_names)),
        }
    )
    return {
        name: datasets.Dataset.from_dict({"tokens": tokens[name], "tags": ids[name]}, features=features)
        for name in splits
    }


_ANSWERS = datasets.Features(
    {
        "id": datasets.Value("string"),
        "question": datasets.Value("string"),
        "context": datasets.Value("string"),
        "answers": {
            "text": datasets.Sequence(datasets.Value("string")),
            "answer_start": datasets.Sequence(datasets.Value("int32")),
        },
    }
)


def _question_answering(splits: dict, config: DataConfig) -> dict:
    argument, column = "answers_column", config.answers_column
    out = {}
    for name, split in splits.items():
        for pair in (("question_column", config.question_column), ("context_column", config.context_column)):
            _require(split, *pair, name)
        _require(split, argument, column, name)
        questions = _texts(split, "question_column", config.question_column, name)
        contexts = _texts(split, "context_column", config.context_column, name)
        ids = (
            [str(i) for i in split["id"]] if "id" in split.column_names else [f"{name}-{i}" for i in range(len(split))]
        )
        seen = set()
        for row, example_id in enumerate(ids):
            if example_id in seen:
                raise ValueError(
                    f"Row index {row} of the {name!r} split repeats id {example_id!r}; give every row its own id."
                )
            seen.add(example_id)
        answers = []
        for row, (value, context) in enumerate(zip(split[column], contexts, strict=True)):
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    pass
            if not isinstance(value, dict) or not {"text", "answer_start"} <= set(value):
                raise ValueError(
                    f"{_where(argument, column, row, name)} holds {value!r}; give SQuAD answers "
                    '{"text": [...], "answer_start": [...]}.'
                )
            # One answer written without its list ({"text": "red", "answer_start": 34}) is unambiguous.
            texts, starts = (
                [v] if isinstance(v, (str, int, float)) else v for v in (value["text"], value["answer_start"])
            )
            if not isinstance(texts, list) or not isinstance(starts, list):
                raise ValueError(
                    f"{_where(argument, column, row, name)} holds {value!r}; give SQuAD answers "
                    '{"text": [...], "answer_start": [...]}.'
                )
            if not texts:  # the head always answers with a span: such a row would train it towards [CLS]
                raise ValueError(
                    f"{_where(argument, column, row, name)} has no answer (a SQuAD v2 unanswerable question); "
                    "questions without an answer are not supported: drop those rows."
                )
            if len(texts) != len(starts):
                raise ValueError(
                    f"{_where(argument, column, row, name)} has {len(texts)} texts for {len(starts)} answer_start "
                    "values; give one start per answer text."
                )
            for text, start in zip(texts, starts, strict=True):
                if isinstance(text, str) and not text.strip():
                    raise ValueError(
                        f"{_where(argument, column, row, name)} has an empty answer text; give the answer's words "
                        "(a question without an answer is not supported: drop the row)."
                    )
                inside = _is_number(start) and int(start) == start and 0 <= start
                if not isinstance(text, str) or not inside or context[int(start) : int(start) + len(text)] != text:
                    found = context[int(start) : int(start) + len(str(text))] if inside else None
                    raise ValueError(
                        f"{_where(argument, column, row, name)}: the answer {text!r} is not at answer_start={start!r} "
                        f"of its context (there: {found!r}); give the character offset of the answer in the context."
                    )
            answers.append({"text": texts, "answer_start": [int(start) for start in starts]})
        out[name] = datasets.Dataset.from_dict(
            {"id": ids, "question": questions, "context": contexts, "answers": answers}, features=_ANSWERS
        )
    return out


def _multiple_choice(splits: dict, config: DataConfig) -> dict:
    argument, column = "choices_column", config.choices_column
    count, out = None, {}
    for name, split in splits.items():
        _require(split, argument, column, name)
        _require(split, "label_column", config.label_column, name)
        data = {}
        for key, pair in (
            ("context", ("context_column", config.context_column)),
            ("question", ("question_column", config.question_column)),
        ):
            if pair[1] in split.column_names:
                data[key] = _texts(split, *pair, name)
        data["choices"] = []
        for row, value in enumerate(split[column]):
            value = _as_list(value, argument, column, row, name, "a list of choice texts")
            _strings(value, argument, column, row, name)
            if count is not None and len(value) != count:
                raise ValueError(
                    f"{_where(argument, column, row, name)} has {len(value)} choices, but the rows before it have "
                    f"{count}; give every row the same number of choices."
                )
            if len(value) < 2:
                raise ValueError(f"{_where(argument, column, row, name)} has {len(value)} choice; give two or more.")
            count = len(value)
            data["choices"].append(value)
        data["label"] = list(split[config.label_column])
        for row, label in enumerate(data["label"]):
            if not (isinstance(label, int) and not isinstance(label, bool) and 0 <= label < count):
                raise ValueError(
                    f"{_where('label_column', config.label_column, row, name)} holds {label!r}; give the index of "
                    f"the right choice, 0 to {count - 1}."
                )
        features = {key: datasets.Value("string") for key in data if key in ("context", "question")}
        features["choices"] = datasets.Sequence(datasets.Value("string"))
        features["label"] = datasets.Value("int64")
        out[name] = datasets.Dataset.from_dict(data, features=datasets.Features(features))
    if len({tuple(split.column_names) for split in out.values()}) > 1:
        shown = {name: split.column_names for name, split in out.items()}
        raise ValueError(f"The splits differ in their question/context columns ({shown}); give them the same columns.")
    return out


def _sentences(splits: dict, config: DataConfig) -> dict:
    """Plain texts (`text`), with a `label` kept where the label column exists (for evaluation only)."""
    out = {}
    for name, split in splits.items():
        label = config.label_column if config.label_column in split.column_names else None
        out[name] = _select_columns(split, config.text_column, label, name)
    return out


_NORMALISE = {
    SENTENCE_EMBEDDING: _sentences,
    MULTI_LABEL: _multi_label,
    REGRESSION: _regression,
    TOKEN_CLASSIFICATION: _token_classification,
    QUESTION_ANSWERING: _question_answering,
    MULTIPLE_CHOICE: _multiple_choice,
}


def label_names(dataset: datasets.DatasetDict | datasets.Dataset) -> list[str] | None:
    """The names of the label or tag ids of data from `load_data` (for a head's `id2label`), None where the task has
    none (regression, question answering, multiple choice)."""
    split = dataset["train"] if isinstance(dataset, datasets.DatasetDict) else dataset
    for column in ("label", "tags"):
        if column in split.column_names:
            return _class_names(split.features[column])
    return None


def align_labels(
    dataset: datasets.DatasetDict,
    id2label: dict | None,
    where: str,
    *,
    task: str,
    strict: bool = True,
    named: bool = False,
) -> datasets.DatasetDict:
    """`dataset`'s label (or tag) ids renumbered to a fine-tuned model's `id2label` where both name their labels.

    Data read with label names number them in sorted order (`fresh` 0, `rotten` 1), which need not be the model's
    (`rotten` 0, `fresh` 1): scored as they are, a good model would score as a bad one. Unchanged where either side
    has ids only (`LABEL_0`, or ids in the data), or where they agree. `strict`: a data label the model does not
    name is refused (scoring a fine-tuned model); otherwise the data are left as they are (fine-tuning a new head).
    `named`: the names came from `label_names` (the refusal then says to give the model's names there).
    Only the tasks whose labels are the head's classes (the row's `labels`; a multiple-choice label is the index
    of a choice).
    """
    from ..tasks import get_task

    if get_task(task).labels not in ("class", "classes", "tag"):  # not ids of the head's id2label
        return dataset
    names = label_names(dataset)
    model = [str(id2label[i]) for i in sorted(id2label)] if id2label else []
    if not names or not model or names == model:
        return dataset
    if strict and len(names) > len(model):
        raise ValueError(
            f"{where}: the data have {len(names)} labels ({', '.join(names[:8])}), the model {len(model)} "
            f"({', '.join(model[:8])}); score it on data of its own labels."
        )
    if all(re.fullmatch(r"LABEL_\d+", name) for name in model) or names == [str(i) for i in range(len(names))]:
        return dataset
    unknown = [name for name in names if name not in model]
    if unknown:
        if not strict:
            return dataset
        fix = (
            "give label_names=[...] of the model's names instead"
            if named
            else "rename them in the data, or give label_names=[...]: the data's names in the order of the model's ids"
        )
        raise ValueError(
            f"{where}: the data's labels {unknown[:5]} are not among the model's ({', '.join(model)}); {fix}."
        )
    new_id = [model.index(name) for name in names]
    aligned = {}
    for split_name, split in dataset.items():
        column = "label" if "label" in split.column_names else "tags"
        features = split.features.copy()
        inner = datasets.ClassLabel(names=model)
        listed = not isinstance(features[column], datasets.ClassLabel)
        features[column] = datasets.Sequence(inner) if listed else inner

        def renumber(value, listed=listed):
            return [new_id[v] for v in value] if listed else new_id[value]

        aligned[split_name] = split.map(lambda row, c=column, r=renumber: {c: r(row[c])}, features=features)
    return datasets.DatasetDict(aligned)


def model_labels(folder: str | Path) -> dict[int, str] | None:
    """The `id2label` that a model folder's `config.json` records; None where it has no config.json.

    transformers leaves its default out of `config.json`: a config without `id2label` is a head of two labels,
    LABEL_0 and LABEL_1 (data with a third label must not be scored against two outputs)."""
    config = Path(folder) / "config.json"
    if not config.is_file():
        return None
    id2label = json.loads(config.read_text()).get("id2label") or {0: "LABEL_0", 1: "LABEL_1"}
    return {int(i): name for i, name in id2label.items()}
