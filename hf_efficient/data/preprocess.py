"""Tokenization per task: from the columns `load_data` gives to the columns a head's forward and loss take.

Every split is padded to `max_length` tokens (so batches stack without a collator that pads):

- text-classification: the tokenizer's columns (of `text`, or of the pair `text`, `text_pair`); `label` is kept.
- multi-label-classification: the same, and `labels`, a float multi-hot list (the head's BCE loss wants floats).
- text-regression: the same, and `labels`, a float.
- token-classification: `labels` per token: the word's tag id on its first sub-word, -100 on its other sub-words and
  on special and padding tokens (as transformers' `run_ner.py` with `label_all_tokens=False`).
- question-answering: one feature per window of the context (`qa.prepare_qa_features`): `start_positions`,
  `end_positions`, and `example_id` and `offset_mapping` for `postprocess_qa_predictions`.
- multiple-choice: the tokenizer's columns of shape (choices, max_length) per row, each choice paired with the row's
  context (or question) as in transformers' `run_swag.py`, and `labels`, the index of the right choice.
"""

from __future__ import annotations

import warnings

import datasets

from ..checks import check_max_length, check_qa_windows
from ..tasks import get_task
from .load import (
    MULTI_LABEL,
    MULTIPLE_CHOICE,
    QUESTION_ANSWERING,
    REGRESSION,
    TEXT_CLASSIFICATION,
    TOKEN_CLASSIFICATION,
    check_task,
)
from .qa import prepare_qa_features

# The columns that `load_data` gives each task, which tokenization replaces.
_INPUT_COLUMNS = {
    TEXT_CLASSIFICATION: ("text",),
    MULTI_LABEL: ("text", "label"),
    REGRESSION: ("text", "label"),
    TOKEN_CLASSIFICATION: ("tokens", "tags"),
    QUESTION_ANSWERING: ("id", "question", "context", "answers"),
    MULTIPLE_CHOICE: ("choices", "label"),
}
# Why a function needs a fast (Rust) tokenizer: word ids or character offsets.
_FAST_ONLY = {TOKEN_CLASSIFICATION: "word_ids", QUESTION_ANSWERING: "offset mappings"}


def tokenize_dataset(
    dataset: datasets.DatasetDict,
    tokenizer,
    max_length: int = 64,
    *,
    task: str = TEXT_CLASSIFICATION,
    doc_stride: int = 32,
) -> datasets.DatasetDict:
    """Tokenize every split of a task's data (from `load_data`) for the task's head; see the module docstring.

    Args:
        dataset (`datasets.DatasetDict`): Splits in the task's columns, e.g. from `load_data` or
            `load_text_classification`.
        tokenizer (`transformers.PreTrainedTokenizerBase`): The model's tokenizer (a fast one for token
            classification and question answering).
        max_length (`int`, defaults to `64`): Length of every tokenized row (every window in question answering).
        task (`str`, defaults to `"text-classification"`): The task the data are for.
        doc_stride (`int`, defaults to `32`): Question answering: tokens shared by consecutive windows of a context.

    Returns:
        `datasets.DatasetDict`: The same splits with the tokenizer's columns and the head's label columns in place of
        the task's input columns; other columns are kept.
    """
    if not isinstance(dataset, datasets.DatasetDict):
        raise ValueError(f"dataset must be a `datasets.DatasetDict`, got {type(dataset).__name__}.")
    task = check_task(task)
    pairs = get_task(task).pairs or any("text_pair" in s.column_names for s in dataset.values())
    check_max_length(max_length, tokenizer, "tokenize_dataset", pairs)
    needed = _INPUT_COLUMNS[task]
    for name, split in dataset.items():
        missing = [column for column in needed if column not in split.column_names]
        if missing:
            loader = "`load_text_classification`" if task == TEXT_CLASSIFICATION else f"`load_data(task={task!r})`"
            raise ValueError(
                f"Split {name!r} has no {', '.join(map(repr, missing))} column (columns: {split.column_names}); "
                f"load it with {loader}, which names the {task} columns so."
            )
    if task in _FAST_ONLY and not getattr(tokenizer, "is_fast", False):
        raise ValueError(
            f"task={task!r} needs a fast tokenizer (for its {_FAST_ONLY[task]}), got {type(tokenizer).__name__}; "
            "load it with AutoTokenizer.from_pretrained(..., use_fast=True)."
        )
    pad = {"truncation": True, "padding": "max_length", "max_length": max_length}

    def texts(batch):
        pairs = batch.get("text_pair")
        return tokenizer(batch["text"], pairs, **pad) if pairs is not None else tokenizer(batch["text"], **pad)

    if task == TEXT_CLASSIFICATION:
        remove = [c for c in ("text", "text_pair") if c in next(iter(dataset.values())).column_names]
        return dataset.map(texts, batched=True, remove_columns=remove)
    if task == MULTI_LABEL:
        width = len(next(iter(dataset.values())).features["label"].feature.names)

        def function(batch):
            encoded = texts(batch)
            encoded["labels"] = [[float(i in set(ids)) for i in range(width)] for ids in batch["label"]]
            return encoded

        features = {"labels": datasets.Sequence(datasets.Value("float32"))}
    elif task == REGRESSION:

        def function(batch):
            return {**texts(batch), "labels": [float(value) for value in batch["label"]]}

        features = {"labels": datasets.Value("float32")}
    elif task == TOKEN_CLASSIFICATION:
        cut = {}  # split -> [words past max_length, rows cut]

        def function(batch, split):
            encoded = tokenizer(batch["tokens"], is_split_into_words=True, **pad)
            encoded["labels"] = []
            for i, tags in enumerate(batch["tags"]):
                words = encoded.word_ids(i)
                encoded["labels"].append(_align_tags(words, tags))
                lost = len(tags) - (max((w for w in words if w is not None), default=-1) + 1)
                if lost > 0:
                    counts = cut.setdefault(split, [0, 0])
                    counts[0], counts[1] = counts[0] + lost, counts[1] + 1
            return encoded

        features = {}
    elif task == QUESTION_ANSWERING:
        if isinstance(doc_stride, bool) or not isinstance(doc_stride, int) or not 0 < doc_stride < max_length:
            raise ValueError(f"doc_stride must be a positive int below max_length={max_length}, got {doc_stride!r}.")

        for name, split in dataset.items():
            check_qa_windows(
                split["question"], tokenizer, max_length, doc_stride, f"Row index {{row}} of the {name!r} split"
            )

        def function(batch):
            return prepare_qa_features(batch, tokenizer, max_length, doc_stride)

        features = {}
    else:  # MULTIPLE_CHOICE

        def function(batch):
            firsts, seconds = [], []
            for row, choices in enumerate(batch["choices"]):
                context, question = (batch[key][row] if key in batch else None for key in ("context", "question"))
                # run_swag pairs the context with question + ending; a lone question (or context) is the first text.
                first = context if context is not None else question
                for choice in choices:
                    firsts.append(first)
                    seconds.append(f"{question} {choice}" if context is not None and question is not None else choice)
            if firsts[0] is None:
                encoded = tokenizer(seconds, **pad)
            else:
                encoded = tokenizer(firsts, seconds, **pad)
            n = len(batch["choices"][0])
            out = {key: [values[i : i + n] for i in range(0, len(values), n)] for key, values in encoded.items()}
            out["labels"] = batch["label"]
            return out

        features = {}
    columns = next(iter(dataset.values())).column_names
    remove = [c for c in columns if c in needed or c in ("text_pair", "context", "question")]
    if task == TOKEN_CLASSIFICATION:  # counts what each split loses
        maps = {
            name: split.map(function, batched=True, remove_columns=remove, fn_kwargs={"split": name})
            for name, split in dataset.items()
        }
        tokenized = datasets.DatasetDict(maps)
        if cut:
            lost = "; ".join(f"{name}: {words} words of {rows} rows" for name, (words, rows) in cut.items())
            warnings.warn(
                f"tokenize_dataset: words past max_length={max_length} tokens are neither trained on nor scored "
                f"({lost}); raise max_length to keep them.",
                stacklevel=2,
            )
    else:
        tokenized = dataset.map(function, batched=True, remove_columns=remove)
    # float32, not the float64 datasets infers from Python floats: the head's loss takes its own dtype.
    for column, feature in features.items():
        tokenized = tokenized.cast_column(column, feature)
    return tokenized


def _align_tags(word_ids: list[int | None], tags: list[int]) -> list[int]:
    """The tag of each word on its first sub-word; -100 (ignored by the loss) everywhere else."""
    labels, previous = [], None
    for word in word_ids:
        labels.append(-100 if word is None or word == previous else tags[word])
        previous = word
    return labels
