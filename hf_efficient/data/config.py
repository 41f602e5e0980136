"""`DataConfig`: where a task's data comes from, which columns hold what, and how it is tokenized."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

DEFAULT_TASK = "rotten_tomatoes_default"
# The tasks that read a field (a field's `metadata["tasks"]`); a field without it is read by every task.
_TEXT = ("text-classification", "multi-label-classification", "text-regression")
_QA = ("question-answering",)
_NER = ("token-classification",)
_CHOICE = ("multiple-choice",)


def _positive_int(value, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"DataConfig({name}={value!r}): give a positive int.")


@dataclass
class DataConfig:
    """The data of a task, the one place that defines, documents and checks its settings.

    The recipe's `data:` section and the CLI's data flags are built from these fields (each field's
    `metadata` holds the argparse `help`). The data come from one of:

    - `source`: one .csv/.tsv/.json/.jsonl file (optionally compressed), whose missing validation and
      test splits are carved out of its rows; a folder written by `datasets`' `save_to_disk` (a
      `DatasetDict` with a "train" split, or one `Dataset`, split likewise); the default task
      (Rotten Tomatoes, text classification only); or, from Python, a `datasets.Dataset`/`DatasetDict`
      object (the annotation says `str` for the command line);
    - `train_file` (+ optional `validation_file`, `test_file`), as transformers' example scripts take
      them; splits without a file are carved out of the train rows.

    Only the columns of the task at hand are read; another task's column or QA setting changed from its
    default is refused (`check_fields_for`), since it would look applied:

    - text-classification, multi-label-classification, text-regression: `text_column`, optional
      `text_pair_column`, and `label_column` holding a class name or id (single-label), a list of
      label names or a 0/1 multi-hot list (multi-label; a list may also come as a JSON string in a
      CSV cell), or a number (regression);
    - token-classification: `tokens_column` (a list of words) and `tags_column` (a list of IOB tag
      names, O, B-PER, I-PER, as entity F1 reads them, or of ids: with a `ClassLabel` feature or
      `label_names`);
    - question-answering: `question_column`, `context_column` and `answers_column` in SQuAD format,
      {"text": [...], "answer_start": [...]}; an `id` column, where there is one, names the examples;
    - multiple-choice: `choices_column` (a list of choice texts, as many in every row),
      `label_column` (the index of the right choice), and the `question_column` and
      `context_column` where those columns exist.
    """

    source: str | None = field(
        default=DEFAULT_TASK,
        metadata={
            "help": "a CSV/TSV/JSON(L) file, a save_to_disk folder, or the default task (text classification)",
            "flag": "data",
        },
    )
    train_file: str | None = field(default=None, metadata={"help": "training file (instead of the data source)"})
    validation_file: str | None = field(default=None, metadata={"help": "validation file (with the training file)"})
    test_file: str | None = field(default=None, metadata={"help": "test file (with the training file)"})
    text_column: str = field(default="text", metadata={"help": "column of the texts"})
    text_pair_column: str | None = field(
        default=None, metadata={"tasks": _TEXT, "help": "column of the second texts of pairs"}
    )
    label_column: str = field(
        default="label",
        metadata={"help": "column of the labels: a class, a list of labels (multi-label), a number (regression)"},
    )
    tokens_column: str = field(
        default="tokens", metadata={"tasks": _NER, "help": "column of the word lists (token classification)"}
    )
    tags_column: str = field(
        default="ner_tags", metadata={"tasks": _NER, "help": "column of the tag lists (token classification)"}
    )
    question_column: str = field(
        default="question", metadata={"tasks": _QA + _CHOICE, "help": "column of the questions (QA, choices)"}
    )
    context_column: str = field(
        default="context", metadata={"tasks": _QA + _CHOICE, "help": "column of the contexts (QA, choices)"}
    )
    answers_column: str = field(
        default="answers",
        metadata={"tasks": _QA, "help": 'column of SQuAD answers {"text": [...], "answer_start": [...]}'},
    )
    choices_column: str = field(
        default="choices", metadata={"tasks": _CHOICE, "help": "column of the choice lists (multiple choice)"}
    )
    label_names: list[str] | None = field(
        default=None, metadata={"help": "names of label or tag ids, in id order (where the data hold ids)"}
    )
    validation_split: float = field(
        default=0.1, metadata={"help": "share of the train rows held out for validation, if none is given"}
    )
    test_split: float = field(default=0.1, metadata={"help": "share of the train rows held out for test, if none"})
    max_train_samples: int | None = field(default=None, metadata={"help": "training subset size (default: all rows)"})
    max_length: int = field(default=64, metadata={"help": "tokens per text (per question + context window in QA)"})
    doc_stride: int = field(
        default=32, metadata={"tasks": _QA, "help": "QA: tokens shared by consecutive windows of a context"}
    )
    max_answer_length: int = field(
        default=30, metadata={"tasks": _QA, "help": "QA: longest answer predicted, in tokens"}
    )
    n_best_size: int = field(
        default=20, metadata={"tasks": _QA, "help": "QA: start and end candidates tried per window"}
    )

    def __post_init__(self):
        for f in fields(self):  # paths and column names: a number or a bool would fail deep in pathlib or pyarrow
            value = getattr(self, f.name)
            if f.name.endswith(("_file", "_column")) and not (isinstance(value, str) or value is None):
                what = "column name" if f.name.endswith("_column") else "path"
                raise ValueError(f"DataConfig({f.name}={value!r}): give a {what} as text.")
        for name in ("max_length", "doc_stride", "max_answer_length", "n_best_size"):
            _positive_int(getattr(self, name), name)
        if self.max_train_samples is not None:
            _positive_int(self.max_train_samples, "max_train_samples")
        for name in ("validation_split", "test_split"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
                raise ValueError(f"DataConfig({name}={value!r}): give a fraction strictly between 0 and 1.")
        if self.validation_split + self.test_split >= 1:
            raise ValueError(
                f"DataConfig(validation_split={self.validation_split}, test_split={self.test_split}) leave no "
                "rows for training; make their sum less than 1."
            )
        # doc_stride < max_length is checked where it matters, when question-answering data are tokenized: other
        # tasks' recipes with a short max_length must not trip over the QA default.
        if self.train_file is None and (self.validation_file or self.test_file):
            raise ValueError("DataConfig(validation_file/test_file) need a train_file too; give train_file=.")
        if self.train_file is not None and self.source not in (None, DEFAULT_TASK):
            raise ValueError(
                f"DataConfig(source={self.source!r}, train_file={self.train_file!r}): give one of them, not both."
            )
        if self.label_names is not None and (
            not isinstance(self.label_names, (list, tuple)) or not all(isinstance(n, str) for n in self.label_names)
        ):
            raise ValueError(f"DataConfig(label_names={self.label_names!r}): give a list of names, e.g. [O, B-PER].")

    def check_fields_for(self, task: str, where: str = "DataConfig") -> None:
        """Refuse a setting that `task` never reads (`--doc-stride` for a classifier, `tokens_column` without
        `task: token-classification`): ignored, it would only look as if it had been applied."""
        for f in fields(self):
            readers = f.metadata.get("tasks")
            if readers and task not in readers and getattr(self, f.name) != f.default:
                raise ValueError(
                    f"{where}.{f.name}={getattr(self, f.name)!r} is read by {' and '.join(readers)} only, and "
                    f"the task is {task}: leave it out, or give the task that reads it."
                )

    def to_dict(self) -> dict:
        return asdict(self)
