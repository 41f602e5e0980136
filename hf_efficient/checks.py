"""Checks of what a user hands in (a model folder or Hub id, a data file), shared by the command line,
the recipes and the Python API, so that a bad value fails at once with one line naming it and the fix.

Each check raises a `ValueError`. `what` is the name the user gave the value by: a flag
(`--model`), a recipe field (`teacher.path`) or a Python argument (`export_int8(model_or_path)`).
This is a base module: it imports no technique, and pandas and huggingface_hub only when called.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
from pathlib import Path

# Files `save_pretrained` writes for a tokenizer (one of them is enough).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "spiece.model",
    "sentencepiece.bpe.model",
    "tokenizer.model",
)
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "*.safetensors.index.json")
# A value ending like one of these names a file, never a Hub repo.
FILE_SUFFIXES = {".onnx", ".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".h5", ".gguf", ".json", ".yaml", ".yml"}
DATA_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")
COMPRESSIONS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zst": None}
# Seconds to wait for the Hub before saying it cannot be reached.
HUB_TIMEOUT = 10.0


def named(what: str, value) -> str:
    """`--model runs/x`, `teacher.path='runs/x'` or `export_int8(model_or_path='runs/x')`: the value as it was
    given; a positional argument (`what=""`) is the value alone."""
    if not what:
        return str(value)
    if what.startswith("--"):
        return f"{what} {value}"
    if what.endswith(")"):
        return f"{what[:-1]}={value!r})"
    return f"{what}={value!r}"


def looks_local(value: str) -> bool:
    """Whether `value` names a path rather than a Hub id: it exists, starts like a path (`.`, `/`, `~`),
    has more parts than `owner/name`, or ends like a file."""
    return (
        Path(value).expanduser().exists()
        or value.startswith((".", "/", "~"))
        or any(sep in value for sep in {os.sep, os.altsep} - {None, "/"})
        or value.count("/") > 1
        or Path(value).suffix.lower() in FILE_SUFFIXES
    )


def model_source(value, what: str = "--model", *, onnx: bool = False, tokenizer: bool = False) -> str:
    """`value` as transformers should load it, once checked: a model folder, an `.onnx` file (where
    `onnx`) or a Hub id.

    A value that looks local (see `looks_local`) is checked on disk only: it must be a folder with
    `config.json` and weights (and tokenizer files, where `tokenizer`). Anything else is a Hub id:
    found in the cache, or asked of the Hub, which fails at once under `HF_HUB_OFFLINE=1` and within
    `HUB_TIMEOUT` seconds without a network.

    Raises:
        `ValueError`: one line naming `what`, the value and the fix.
    """
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip():
        raise ValueError(f"{named(what, value)}: give a model folder (with config.json) or a Hub id like owner/name.")
    text = str(value)
    if looks_local(text):
        _local_model(Path(text).expanduser(), named(what, text), onnx, tokenizer)
    else:
        _hub_model(text, named(what, text))
    return text


def _local_model(path: Path, name: str, onnx: bool, tokenizer: bool) -> None:
    kind = "a model folder (with config.json)" + (" or an .onnx file" if onnx else "")
    if not path.exists():
        raise ValueError(f"{name}: no such {'file or folder' if onnx else 'folder'}; give {kind}.")
    if path.is_file():
        if path.suffix != ".onnx":
            raise ValueError(f"{name} is a file; give {kind}.")
        if not onnx:
            raise ValueError(f"{name} is an ONNX file; this needs the PyTorch model folder it was exported from.")
        folder = path.parent
    else:
        folder = path
        if not (folder / "config.json").is_file():
            inside = sorted(str(p.parent) for p in folder.glob("*/config.json"))[:3]
            hint = f" It holds model folders: give one of {', '.join(inside)}." if inside else ""
            raise ValueError(f"{name} has no config.json: give {kind}, as save_pretrained writes it.{hint}")
        if not any(next(folder.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
            graphs = sorted(folder.glob("*.onnx"))
            if graphs:  # an export_int8 folder
                graph = folder / "model_quantized.onnx" if (folder / "model_quantized.onnx").is_file() else graphs[0]
                fix = f"give the file, {graph}" if onnx else "this needs the PyTorch model folder it was exported from"
                raise ValueError(f"{name} holds ONNX graphs, not PyTorch weights: {fix}.")
            raise ValueError(f"{name} has a config.json but no weights (model.safetensors): save the model into it.")
    if tokenizer and not any((folder / file).is_file() for file in TOKENIZER_FILES):
        raise ValueError(
            f"{name} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}, ...): "
            f"save the model's tokenizer into it with tokenizer.save_pretrained('{folder}')."
        )


def _hub_model(repo_id: str, name: str) -> None:
    from huggingface_hub import constants, model_info, try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        raise ValueError(f"{name}: no such folder, nor a Hub id (owner/name); give a model folder.") from None
    if isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        return  # downloaded before: transformers loads it from the cache, offline too
    if constants.HF_HUB_OFFLINE:
        raise ValueError(
            f"{name}: no such folder, and no Hub model of that name in the cache (HF_HUB_OFFLINE=1); "
            f"give a model folder, or unset HF_HUB_OFFLINE to download {repo_id} from the Hub."
        )
    try:
        info = model_info(repo_id, timeout=HUB_TIMEOUT)
    except GatedRepoError:
        raise ValueError(
            f"{name}: the Hub model is gated; accept its terms on https://huggingface.co/{repo_id} "
            "and log in (hf auth login)."
        ) from None
    except RepositoryNotFoundError:
        raise ValueError(
            f"{name}: no such folder, and no Hub model of that name (a private one needs hf auth login); "
            "give a model folder or a Hub id that exists."
        ) from None
    except Exception as error:  # no network, a proxy, a timeout, a server error: the Hub cannot tell
        raise ValueError(
            f"{name}: no such folder, and the Hub cannot be reached to look for it ({type(error).__name__}); "
            "give a model folder, or connect and try again."
        ) from None
    if info.siblings is not None and "config.json" not in {sibling.rfilename for sibling in info.siblings}:
        raise ValueError(f"{name}: the Hub model has no config.json; give a transformers model.")


def check_tokenized(rows, name: str) -> None:
    """Refuse rows without `input_ids` (raw text rows), which would fail inside the model with an error
    naming no dataset. `name` says where they came from, e.g. "export_int8(eval_dataset=...)"."""
    columns = getattr(rows, "column_names", None)
    if isinstance(columns, list) and "input_ids" not in columns:
        raise ValueError(
            f"{name}: the rows have no input_ids (columns {columns}); tokenize them first "
            "with hf_efficient.data.tokenize_dataset(data, tokenizer)."
        )


def check_loaded(model, where: str) -> None:
    """Refuse a model whose weights are on the meta device (built without them): it fails inside torch."""
    if any(p.is_meta for p in model.parameters()):
        raise ValueError(
            f"{where}: the model's weights are on the meta device (not loaded); load them, e.g. with "
            "from_pretrained(folder) and no device_map='meta'."
        )


def check_rows(model, rows, task: str, where: str, *, labels: bool = True) -> None:
    """Refuse tokenized `rows` that `model` cannot run, or whose labels its head cannot have, in one line
    rather than an error from inside torch or a metric, or a score of nonsense. `where` names the argument
    (`evaluate_model(dataset=...)`); `labels`: check the label column too (not for calibration rows)."""
    import numpy as np

    if isinstance(rows, dict):  # a DatasetDict: all its splits
        raise ValueError(
            f"{where}: give one split of tokenized rows, e.g. data['test'], not the {type(rows).__name__} of splits "
            f"{list(rows)}."
        )
    check_tokenized(rows, where)
    if len(rows) == 0:
        raise ValueError(f"{where} has no rows; give at least one.")
    try:
        ids = np.asarray(_column(rows, "input_ids"), dtype=np.int64)
    except ValueError:  # ragged lists
        raise ValueError(
            f"{where}: the rows' input_ids differ in length; tokenize with padding='max_length' (tokenize_dataset "
            "does)."
        ) from None
    vocabulary, largest, smallest = getattr(model.config, "vocab_size", None), ids.max(), ids.min()
    if vocabulary and (largest >= vocabulary or smallest < 0):
        raise ValueError(
            f"{where}: token id {largest if largest >= vocabulary else smallest} is outside the model's "
            f"vocabulary of {vocabulary}; tokenize with the model's own tokenizer."
        )
    positions = _learned_positions(model)
    if positions and ids.shape[-1] > positions:
        raise ValueError(
            f"{where}: rows of {ids.shape[-1]} tokens, but the model has {positions} positions; tokenize with "
            f"max_length={positions} or less."
        )
    from .tasks import get_task

    column = next((c for c in ("labels", "label") if c in rows.column_names), None)
    kind = get_task(task).labels  # class ids are checked against the head; other labels are the task's business
    if not labels or column is None or kind not in ("class", "tag", "choice"):
        return
    try:
        values = np.ravel(np.asarray(_column(rows, column), dtype=np.float64))
    except (TypeError, ValueError):  # names, not ids
        raise ValueError(
            f"{where}: the rows' {column} are not numbers; give label ids (tokenize_dataset numbers named labels)."
        ) from None
    if kind == "tag":
        values = values[values != -100]  # positions the loss and the metric skip
    classes = ids.shape[1] if kind == "choice" else model.config.num_labels
    what = "choices" if kind == "choice" else "labels"
    bad = values[(values != np.round(values)) | (values < 0) | (values >= classes)]
    if len(bad):
        raise ValueError(
            f"{where}: the rows' {column} hold {bad[0]:g}, but the model's {what} are 0 to {classes - 1}; give whole "
            f"numbers in that range (evaluate a model fine-tuned on these labels)."
        )


def check_texts(rows, column: str, where: str) -> None:
    """Refuse texts that are not strings (None, numbers) in one line naming the first, rather than an error
    from inside a tokenizer, or "None" embedded as a word. `rows`: a list of strings, or a `datasets.Dataset`
    whose `column` is read through Arrow (its type and nulls, not a Python list of every row)."""
    if isinstance(rows, (list, tuple)):
        bad = next((i for i, text in enumerate(rows) if not isinstance(text, str)), None)
        if bad is not None:
            raise ValueError(f"{where}: text {bad} is {rows[bad]!r:.40}, not a string; give strings only.")
        return
    if not hasattr(rows, "select_columns") or column not in rows.column_names:
        return
    import pyarrow as pa

    values = rows.select_columns([column]).with_format("arrow")[:][column]
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise ValueError(f"{where}: the {column!r} column holds {values.type}, not text; give strings.")
    if values.null_count:
        bad = values.is_null().to_numpy(zero_copy_only=False).argmax()
        raise ValueError(
            f"{where}: row {bad} of the {column!r} column is None; drop such rows, e.g. "
            f"dataset.filter(lambda row: row[{column!r}] is not None)."
        )


def _column(rows, name: str):
    """A column of a `datasets.Dataset` as one array, through Arrow (a tenth of the time of Python lists); ragged
    lists come as an object array, which `np.asarray(..., dtype)` refuses."""
    if hasattr(rows, "select_columns"):
        return rows.select_columns([name]).with_format("numpy")[:][name]
    return rows[name]


def _learned_positions(model) -> int | None:
    """The tokens a model with a learned table of absolute positions (BERT, RoBERTa, DistilBERT, ...) can read; None
    where positions are relative or rotary (DeBERTa-v2, ModernBERT). RoBERTa-like tables start after padding_idx."""
    import torch

    for name, module in model.named_modules():
        table = getattr(module, "position_embeddings", None)
        if name.endswith("embeddings") and isinstance(table, torch.nn.Embedding):
            padding = getattr(module, "padding_idx", None)
            return table.num_embeddings - (padding + 1 if isinstance(padding, int) else 0)
    return None


def data_format(path: Path) -> str:
    """The data suffix of `path` (`.csv`, `.tsv`, `.json` or `.jsonl`), past a compression suffix."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes.pop()
    return suffixes[-1] if suffixes and suffixes[-1] in DATA_SUFFIXES else ""


def data_file(
    source,
    text_column: str | None = "text",
    label_column: str | None = "label",
    *,
    names: tuple[str, str, str] = ("source", "text_column", "label_column"),
) -> list[str]:
    """Check a data file from its first row: it exists, is readable, has a header and rows, and has
    both columns. Returns its columns.

    Args:
        source: The file.
        text_column, label_column (`str`): The columns that must be there (None: not checked here).
        names (`tuple[str, str, str]`): What the user calls the file and the two columns
            (`("data.source", "data.text_column", "data.label_column")` in a recipe).

    Raises:
        `ValueError`: one line naming the value and the fix.
    """
    path = Path(source).expanduser()
    name = named(names[0], str(source))
    kinds = ", ".join(DATA_SUFFIXES)
    if not path.exists():
        raise ValueError(f"{name}: no such file; give a {kinds} file.")
    if path.is_dir():
        inside = sorted(str(p) for p in path.iterdir() if data_format(p))[:3]
        hint = f", e.g. {', '.join(inside)}" if inside else ""
        raise ValueError(f"{name} is a folder; give a {kinds} file{hint}.")
    suffix = data_format(path)
    if not suffix:
        raise ValueError(
            f"{name}: cannot read {path.suffix or 'a file without a suffix'}; give a {kinds} file, "
            f"optionally compressed ({', '.join(COMPRESSIONS)})."
        )
    try:
        with open(path, "rb") as file:
            empty = not file.read(1)
    except OSError as error:
        raise ValueError(f"{name} cannot be read ({error.strerror}); check its permissions.") from None
    header = ", ".join(column for column in (text_column, label_column) if column)
    if empty:
        raise ValueError(f"{name} is empty; it needs a header row ({header or 'the column names'}) and rows of data.")
    frame = _first_row(path, suffix, name, header or "the column names")
    columns = [str(column) for column in frame.columns]
    if not len(frame):
        if not columns:
            raise ValueError(f"{name} has no rows; add rows of data.")
        raise ValueError(f"{name} has a header ({', '.join(columns)}) but no rows; add rows of data below the header.")
    for column_name, column in ((names[1], text_column), (names[2], label_column)):
        if column is not None and column not in columns:
            raise ValueError(
                f"{named(column_name, column)} is not a column of {path}, whose columns are {', '.join(columns)}; "
                "name one of those."
            )
    return columns


def _first_row(path: Path, suffix: str, name: str, header: str):
    """The header and first row of a data file, as a `pandas.DataFrame`."""
    import pandas as pd

    kind = {".tsv": "TSV", ".csv": "CSV"}.get(suffix, "JSON")
    try:
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=1)
        if suffix == ".jsonl" or _first_character(path) != "[":
            return pd.read_json(path, lines=True, nrows=1)
        return pd.read_json(path).head(1)  # a JSON array of records
    except pd.errors.EmptyDataError:
        raise ValueError(f"{name} is empty; it needs a header row ({header}) and rows of data.") from None
    except UnicodeDecodeError as error:  # a ValueError too: text in another encoding (latin-1), or not text at all
        detail = " ".join(str(error).split())[:120]
        with open(path, "rb") as file:
            binary = b"\x00" in file.read(4096)
        if not binary:
            raise ValueError(f"{name} is not UTF-8 text ({detail}); save it as UTF-8.") from None
        raise ValueError(f"{name} cannot be read as {kind} ({detail}); check that it is a {kind} file.") from None
    except (ValueError, pd.errors.ParserError) as error:
        detail = " ".join(str(error).split())[:120]
        raise ValueError(f"{name} cannot be read as {kind} ({detail}); check that it is a {kind} file.") from None


def _first_character(path: Path) -> str:
    """The first character of a (maybe compressed) text file that is not white space; "" when unknown."""
    opener = COMPRESSIONS.get(path.suffix.lower(), open)
    if opener is None:
        return ""
    with opener(path, "rt", encoding="utf-8", errors="replace") as file:
        while chunk := file.read(4096):
            if chunk.strip():
                return chunk.strip()[0]
    return ""


def check_max_length(max_length, tokenizer, where: str, pairs: bool = False) -> None:
    """Refuse a `max_length` the tokenizer would not truncate to (its special tokens leave no room for text: it
    then warns and returns rows of any length) or longer than the model's positions (the tokenizer's
    `model_max_length`, where it records one), which fails inside the model."""
    if isinstance(max_length, bool) or not isinstance(max_length, int):
        raise ValueError(f"{where}: max_length={max_length!r} must be an int, e.g. 128.")
    if tokenizer is None or not callable(tokenizer):
        raise ValueError(
            f"{where}: tokenizer={tokenizer!r} is no tokenizer; give the model's, e.g. "
            "AutoTokenizer.from_pretrained(model_folder)."
        )
    low = tokenizer.num_special_tokens_to_add(pair=pairs) + 1
    high = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else None
    if max_length < low or (high is not None and max_length > high):
        most = f"to {high}" if high is not None else "or more"
        raise ValueError(
            f"{where}: max_length={max_length} is out of range; give {low} {most} (the tokenizer adds "
            f"{low - 1} special tokens{'' if high is None else f' and the model has {high} positions'})."
        )


def check_positions(max_length: int, folder, where: str) -> None:
    """Refuse the model saved in `folder` (a local folder; a Hub id is left to the model) when it is no encoder
    of a supported family (GPT-2 would fail in its first batch, for want of a padding token), and rows longer
    than its learned positions: they fail inside the model, in training, where the tokenizer records no limit."""
    import torch
    from transformers import AutoConfig, AutoModel

    from .encoders import UnsupportedModelError, encoder_family

    if not Path(folder, "config.json").is_file():
        return
    config = AutoConfig.from_pretrained(folder)
    try:
        with torch.device("meta"):  # the modules without their weights: only their structure is read
            model = AutoModel.from_config(config)
    except Exception:  # noqa: BLE001 - an early check only: a model that cannot be built fails, in one line, where it is loaded
        return
    try:
        encoder_family(model)
    except UnsupportedModelError as error:
        raise UnsupportedModelError(f"{folder}: {error}") from None
    positions = _learned_positions(model)
    if positions and max_length > positions:
        raise ValueError(
            f"{where}: max_length={max_length} is more than the {positions} positions of the model in {folder}; "
            f"give max_length={positions} or less."
        )


def check_qa_windows(questions: list[str], tokenizer, max_length: int, doc_stride: int, row: str) -> None:
    """Refuse a question that leaves a window of `max_length` tokens no more than `doc_stride` tokens of context
    (the tokenizer would panic); `row` names question `{row}` in the message, e.g. "questions[{row}]"."""
    special = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = [len(ids) for ids in tokenizer([q.lstrip() for q in questions], add_special_tokens=False)["input_ids"]]
    for index, length in enumerate(lengths):
        if max_length - special - length <= doc_stride:
            raise ValueError(
                f"{row.format(row=index)}: its question takes {length} of max_length={max_length} tokens, leaving no "
                f"more than doc_stride={doc_stride} for the context; raise max_length, lower doc_stride or shorten "
                "the question."
            )
