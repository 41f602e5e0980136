"""Data: the default task, any task's data from files or `save_to_disk` folders, and tokenization per task.

- `load_data(DataConfig(...), task)`: "train", "validation" and "test" splits in the task's columns (see `load`);
  `load_text_classification` and `load_default_task` are the text classification loaders it uses;
- `label_names(dataset)`: the names of the label or tag ids, for a head's `id2label`;
- `tokenize_dataset(dataset, tokenizer, max_length, task=...)`: the columns the task's head takes (see `preprocess`);
- `postprocess_qa_predictions(examples, features, (start_logits, end_logits))`: answer texts (see `qa`).
"""

from .config import DEFAULT_TASK, DataConfig
from .load import DATA_TASKS, label_names, load_data, read_splits
from .preprocess import tokenize_dataset
from .qa import postprocess_qa_predictions, prepare_qa_features
from .text import SPLITS, describe_default_task, load_default_task, load_text_classification

__all__ = [
    "DATA_TASKS",
    "DEFAULT_TASK",
    "SPLITS",
    "DataConfig",
    "describe_default_task",
    "label_names",
    "load_data",
    "load_default_task",
    "load_text_classification",
    "postprocess_qa_predictions",
    "prepare_qa_features",
    "read_splits",
    "tokenize_dataset",
]
