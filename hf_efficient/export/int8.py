"""`export_int8`: ONNX export, int8 quantization and an accuracy check, in one call."""

from __future__ import annotations

import difflib
import importlib.util
import json
import math
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from accelerate.utils import extract_model_from_parallel
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel

from ..checks import check_loaded, check_rows, check_tokenized, model_source
from ..encoders import encoder_family
from ..sentence.model import sentence_transformer_of
from ..tasks import DEFAULT_TASK, TASKS, get_task, task_of
from .config import MODES, TARGETS, Int8ExportConfig  # noqa: F401 (MODES, TARGETS: still imported from here)
from .fastest import resolve_variant
from .gate import gate_measure
from .graph import freeze_activation_ranges, use_tanh_gelu
from .helpers import INT8_FILE
from .onnx import INPUT_NAMES, QUANTIZED_OPS, export_onnx, quantize_int8_dynamic
from .runtime import REPORT_FILE, installed, open_session
from .variants import finish_variant, prepare_variant

FP32_FILE = "model.onnx"
# Scratch file: the fp32 graph with tanh GELUs, quantized into INT8_FILE.
TANH_GELU_FILE = "model_tanh_gelu.onnx"
FUSED_FILE = "model_fused.onnx"  # scratch: the graph after the "int8-fused" variant's fusions


class AccuracyDropError(RuntimeError):
    """The int8 model lost more accuracy than allowed; `result` holds every attempt."""

    def __init__(self, message: str, result: ExportResult):
        super().__init__(message)
        self.result = result


@dataclass
class ExportResult:
    """What `export_int8` wrote and measured (also in `export_report.json`)."""

    output_dir: str
    fp32_file: str
    int8_file: str | None
    backend: str
    mode: str
    target: str
    metrics: dict = field(default_factory=dict)
    attempts: list = field(default_factory=list)
    chosen: dict | None = None
    config: dict = field(default_factory=dict)  # the `Int8ExportConfig` asked for, as `to_dict()`
    task: str | None = None  # the model's row of the task table
    gate: str | None = None  # the measure the accuracy gate compared (`export.gate`), when it ran
    variant: str | None = None  # the int8 graph written (see `export.variants`) and why it was chosen
    variant_reason: str | None = None
    variant_timings: dict | None = None  # variant="fastest": each graph's ms by batch size, timed here
    runtime: str = "onnxruntime"  # what runs the int8 file (`export.runtime`); its loaders read it here
    # The exported model's parameters, which its graphs hold too (an int8 graph quantized, with its scales, and
    # as ONNX initializers and constants that do not count them).
    parameters: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self) -> None:
        """Write `export_report.json` into `output_dir`, without `output_dir`: the file sits in it, and a
        recipe run renames the folder it exported into."""
        record = {key: value for key, value in self.to_dict().items() if key != "output_dir"}
        (Path(self.output_dir) / REPORT_FILE).write_text(json.dumps(record, indent=1))


def optimum_available() -> bool:
    return (
        importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.onnxruntime") is not None
    )


def _optimum_exports(model: PreTrainedModel, task=None) -> bool:
    """Whether Optimum's exporter handles `model` as well as `torch.onnx` here.

    Optimum picks its exporter by the library the model's class comes from, and refuses classes
    defined elsewhere (e.g. `Shared<Class>`). It writes a parameter used under several names once
    but feeds its other uses through `Identity` nodes, behind which the quantizer leaves fp32 copies;
    `export_onnx` inlines those. And where it is installed, it must have an ONNX configuration for the
    model's type and task: it has none for ERNIE, XLM-RoBERTa-XL or NomicBERT, nor for ModernBERT's
    question answering or multiple choice.
    """
    shared = len(list(model.named_parameters(remove_duplicate=False))) > len(list(model.parameters()))
    ours = type(model).__module__.startswith("transformers.") and not shared
    return ours and (not optimum_available() or _optimum_knows(model, task))


def _optimum_knows(model: PreTrainedModel, task=None) -> bool:
    """Whether Optimum has an ONNX configuration for the model's type and its task's pipeline tag."""
    import optimum.exporters.onnx.model_configs  # noqa: F401 (registers the configurations)
    from optimum.exporters.tasks import TasksManager

    task = task or task_of(model)
    try:
        tasks = TasksManager.get_supported_tasks_for_model_type(
            model.config.model_type.replace("_", "-"), exporter="onnx", library_name="transformers"
        )
    except KeyError:
        return False
    return task.pipeline_tag in tasks


def _has_subgraphs(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(attribute.type == onnx.AttributeProto.GRAPH for node in model.graph.node for attribute in node.attribute)


def _matmul_nodes(path: Path) -> list[str]:
    return [node.name for node in onnx.load(str(path), load_external_data=False).graph.node if node.op_type == "MatMul"]


def quantization_choices(config: Int8ExportConfig, fp32: Path, *, retry: bool, last_matmuls: int) -> list[dict]:
    """The settings `export_int8` tries in turn: the config's, then (with `retry`, where an evaluation set
    can reject an attempt) per-channel scales and the exact GELU, then also the last `last_matmuls`
    MatMuls of the graph in fp32. A name of `config.exclude` that is no node of the graph is refused: it
    would keep nothing in fp32, silently."""
    exclude = list(config.exclude)
    if exclude:
        names = [node.name for node in onnx.load(str(fp32), load_external_data=False).graph.node]
        unknown = [name for name in exclude if name not in names]
        if unknown:
            close = difflib.get_close_matches(unknown[0], names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"export_int8: Int8ExportConfig(exclude={unknown!r}) names no node of {fp32.name}: give ONNX node "
                f"names, e.g. its last MatMul {_matmul_nodes(fp32)[-1]!r}.{hint}"
            )
    choices = [{"per_channel": config.per_channel, "approximate_gelu": config.approximate_gelu, "exclude": exclude}]
    if retry and config.retry:
        choices.append({"per_channel": True, "approximate_gelu": False, "exclude": exclude})
        choices.append(
            {"per_channel": True, "approximate_gelu": False, "exclude": exclude + _matmul_nodes(fp32)[-last_matmuls:]}
        )
    return [c for i, c in enumerate(choices) if c not in choices[:i]]


def quantize_attempt(
    choice: dict,
    fp32: Path,
    int8: Path,
    variant: str,
    model_config,
    target: str,
    *,
    quantize=None,
    calibration=None,
) -> dict:
    """Write `int8` from `fp32` with one of `quantization_choices`; returns the attempt's record, before its gate.

    The steps every export takes, in order: the tanh GELU if the choice asks for it, the variant's
    graph (`prepare_variant`), the quantization (the choice's exclusions plus the variant's fp32
    MatMuls), the activation ranges frozen when `calibration` is given (static mode is the dynamic
    graph with its ranges frozen), and the variant's load-time rewrites (`finish_variant`). Scratch
    files beside `fp32` are deleted.

    Args:
        quantize (*optional*): `(source, int8, target, per_channel, exclude, ops)`, e.g. `_quantize_optimum`;
            onnxruntime's dynamic quantizer by default.
        calibration (*optional*): A function returning fresh calibration feeds (by input name), for static mode.
    """
    quantize = quantize or _quantize_onnxruntime
    tanh_gelu, fused = fp32.with_name(TANH_GELU_FILE), fp32.with_name(FUSED_FILE)
    attempt, source = dict(choice), fp32
    if choice["approximate_gelu"]:
        attempt["gelus_approximated"] = use_tanh_gelu(fp32, tanh_gelu)
        source = tanh_gelu
    source, ops, kept_fp32, notes = prepare_variant(variant, source, fused, model_config)
    attempt.update(notes)
    quantize(source, int8, target, choice["per_channel"], choice["exclude"] + kept_fp32, ops)
    tanh_gelu.unlink(missing_ok=True)
    fused.unlink(missing_ok=True)
    if calibration is not None:
        attempt["activations_calibrated"] = freeze_activation_ranges(int8, calibration())
    attempt.update(finish_variant(variant, int8))
    return attempt


def _model_inputs(path: Path) -> list[str]:
    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def _batches(dataset, names: list[str], batch_size: int = 64, limit: int | None = None):
    """Batches of tokenized rows: the model inputs among `names` as int64, the other columns as they are."""
    end = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, end, batch_size):
        rows = dataset[start : min(start + batch_size, end)]
        yield {name: _column(rows[name], name) for name in names if name in rows}


def _column(values: list, name: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.int64 if name in INPUT_NAMES else None)
    except ValueError:  # ragged rows: numpy's message says nothing of the data
        raise ValueError(
            f"export_int8: the rows' {name!r} differ in length; tokenize with padding='max_length'."
        ) from None


def _onnx_batches(path: Path, dataset, columns=(), runtime: str | None = None):
    """(outputs by name, batch) of an exported model over tokenized rows, in order, on `runtime` (the
    one `export_int8` chose for the file when None, see `export.runtime`)."""
    session = open_session(path, runtime, caller="export_int8")
    names, outputs = session.input_names, session.output_names
    for batch in _batches(dataset, list(dict.fromkeys([*names, "attention_mask", *columns]))):
        yield dict(zip(outputs, session.run(outputs, _feed(batch, names)), strict=True)), batch


def _feed(batch: dict, names: list[str]) -> dict[str, np.ndarray]:
    """The graph's inputs from a batch; rows tokenized without token_type_ids (or a mask) get the defaults the
    model would use: segment 0 everywhere, every token attended."""
    defaults = {"token_type_ids": np.zeros_like, "attention_mask": np.ones_like}
    return {name: batch[name] if name in batch else defaults[name](batch["input_ids"]) for name in names}


def onnx_outputs(path: Path, dataset, runtime: str | None = None) -> dict[str, np.ndarray]:
    """Every output of an exported model on tokenized rows, in order, by name."""
    outputs = [outputs for outputs, _ in _onnx_batches(path, dataset, runtime=runtime)]
    return {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}


def onnx_logits(path: Path, dataset) -> np.ndarray:
    """Logits of an exported model on tokenized rows, in order."""
    return onnx_outputs(path, dataset)["logits"]


def onnx_accuracy(path: Path, dataset) -> float:
    """Accuracy of an exported model on tokenized rows with a `label` column."""
    return float((onnx_logits(path, dataset).argmax(-1) == np.asarray(dataset["label"])).mean())


@torch.no_grad()
def _pytorch_batches(model: PreTrainedModel, task, dataset, columns=()):
    """(outputs by name, batch) of a PyTorch model over tokenized rows, as `_onnx_batches` gives them."""
    device = next(model.parameters()).device
    for batch in _batches(dataset, list(dict.fromkeys([*INPUT_NAMES, *columns]))):
        inputs = {name: torch.from_numpy(batch[name]).to(device) for name in INPUT_NAMES if name in batch}
        outputs = model(**inputs)
        yield {name: outputs[name].float().cpu().numpy() for name in task.onnx_outputs}, batch


def _predict(measure, run) -> tuple[np.ndarray, np.ndarray | None]:
    """A gate measure's predictions over a run of (outputs, batch), and the batches' labels where it reads them."""
    predictions, labels = [], []
    for outputs, batch in run:
        predictions.append(measure.predict(outputs, batch))
        if measure.references is not None:
            labels.append(measure.references(batch))
    return np.concatenate(predictions), np.concatenate(labels) if labels else None


def onnx_score(path: Path, dataset, measure, reference: np.ndarray, runtime: str | None = None) -> float:
    """The gate measure of an exported model on tokenized rows, against `reference` (labels or PyTorch's)."""
    run = _onnx_batches(path, dataset, _label_columns(dataset), runtime)
    return measure.score(_predict(measure, run)[0], reference)


def _label_columns(dataset) -> list[str]:
    names = [name for task in TASKS.values() for name in (*task.label_columns, "label")]
    return [name for name in dict.fromkeys(names) if name in dataset.column_names]


def check_float32(model: torch.nn.Module, call: str) -> None:
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()} - {torch.float32}
    if dtypes:
        raise ValueError(
            f"{call}: the model's weights are {', '.join(sorted(map(str, dtypes)))}; the ONNX graph is float32 and "
            "quantized from it: pass model.float() (exact for bf16 and fp16 weights)."
        )


def _load(path) -> PreTrainedModel:
    """The model of a folder, with the head its config.json names (`architectures`)."""
    config = AutoConfig.from_pretrained(path)
    architecture = (config.architectures or [None])[0]
    if architecture is None:  # saved without its class: the default task's head, as before
        return get_task(DEFAULT_TASK).load(path)
    for task in TASKS.values():
        try:
            if task.head()._model_mapping[type(config)].__name__ == architecture:
                return task.load(path)
        except KeyError:
            continue
    raise ValueError(
        f"export_int8(model_or_path={str(path)!r}): its config.json names architectures=[{architecture!r}], a head "
        "no task exports; load the model yourself and pass it, or save it with save_pretrained."
    )


def _quantize_onnxruntime(
    source: Path, int8: Path, target: str, per_channel: bool, exclude: list[str], ops: list[str] = QUANTIZED_OPS
):
    # u8s8 without VNNI can saturate: onnxruntime's advice for AVX2.
    quantize_int8_dynamic(
        source, int8, per_channel=per_channel, reduce_range=target == "avx2", exclude=exclude, op_types=ops
    )


def _quantize_optimum(
    source: Path, int8: Path, target: str, per_channel: bool, exclude: list[str], ops: list[str] = QUANTIZED_OPS
):
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    # Optimum's avx2 config takes u8 weights (u8 x u8 products, which do not saturate), where
    # `_quantize_onnxruntime` keeps s8 weights in 7 bits: either way no overflow without VNNI.
    config = getattr(AutoQuantizationConfig, target)(
        is_static=False, per_channel=per_channel, nodes_to_exclude=exclude, operators_to_quantize=ops
    )
    quantizer = ORTQuantizer.from_pretrained(source.parent, file_name=source.name)
    saved = Path(quantizer.quantize(save_dir=source.parent / "quantized", quantization_config=config))
    shutil.move(str(saved / f"{source.stem}_quantized.onnx"), str(int8))
    shutil.move(str(saved / "ort_config.json"), str(int8.parent / "ort_config.json"))
    shutil.rmtree(saved)


def _config_from_keywords(config: Int8ExportConfig | None, settings: dict) -> Int8ExportConfig:
    """`config`, or the config that the deprecated setting keywords of `export_int8` describe."""
    if config is not None and not isinstance(config, Int8ExportConfig):
        raise TypeError(f"export_int8(config={config!r}): expected an Int8ExportConfig(...).")
    if not settings:
        return Int8ExportConfig() if config is None else config
    unknown = sorted(set(settings) - set(Int8ExportConfig.__dataclass_fields__))
    if unknown:
        raise TypeError(f"export_int8() got unexpected keyword arguments {unknown}.")
    if config is not None:
        raise ValueError(
            f"export_int8: got config= and the settings {sorted(settings)}; put them in the config, "
            "e.g. dataclasses.replace(config, ...)."
        )
    call = ", ".join(f"{name}={value!r}" for name, value in settings.items())
    warnings.warn(
        f"export_int8({call}) is deprecated and will be removed: "
        f"call export_int8(model, output_dir, Int8ExportConfig({call})).",
        FutureWarning,
        stacklevel=3,
    )
    return Int8ExportConfig(**settings)


def _record_architecture(config_file: Path, model) -> None:
    """Name the head's class in the export's config.json, as `save_pretrained` does for a model: a model
    built with `from_config` has none, and the helpers and `folder_task` read the head from it. A shared
    model's export names the plain class and model type: its graph holds the weights, so Optimum and plain
    transformers read the folder without hf_efficient (which the shared type would need)."""
    from ..sharing.model import MODEL_TYPE_PREFIX  # not at import: sharing imports what imports this module

    saved = json.loads(config_file.read_text())
    plain = getattr(type(model), "plain_class", None)
    if plain is not None:
        saved["model_type"] = saved["model_type"].removeprefix(MODEL_TYPE_PREFIX)
        saved["architectures"] = [plain.__name__]
    elif not saved.get("architectures"):
        saved["architectures"] = [type(model).__name__]
    config_file.write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")


def export_int8(
    model_or_path: PreTrainedModel | str,
    output_dir: str,
    config: Int8ExportConfig | None = None,
    *,
    tokenizer=None,
    eval_dataset=None,
    calibration_dataset=None,
    **settings,
) -> ExportResult:
    """Export an encoder, bare or with a head of the task table, to ONNX, quantize it to int8, and check what it kept.

    The folder holds `model.onnx` (fp32), `model_quantized.onnx` (int8), `config.json`, the
    tokenizer and `export_report.json` (which records the settings used). The outputs are the task
    table's `onnx_outputs` of the model's head (`logits`, `start_logits`/`end_logits`,
    `last_hidden_state`); the folder loads with the row's Optimum class, e.g.
    `ORTModelForQuestionAnswering.from_pretrained(output_dir, file_name="model_quantized.onnx")`, or
    with the helpers of `export.helpers` (`TextClassifier`, `TokenClassifier`, ...). On the optimum
    stack the export and the quantization go through Optimum (`onnx_export_from_model`,
    `ORTQuantizer` with an `AutoQuantizationConfig`); elsewhere, and for models of other classes,
    with shared weights or of a type or task Optimum has no ONNX configuration for (see
    `_optimum_exports`), through `torch.onnx` and `onnxruntime.quantization`.

    A SentenceTransformer (or its folder, which has modules.json) gives a complete sentence-transformers
    folder with `onnx/model.onnx` and `onnx/model_qint8_<target>.onnx`, the names of its own
    `export_dynamic_quantized_onnx_model`: the graphs output `last_hidden_state`, and the loader
    pools and normalises (`SentenceTransformer(out, backend="onnx", model_kwargs={"file_name": ...})`
    or `SentenceEmbedder(out)`). Its evaluation and calibration sets are plain text (a `text` column),
    and the gate is the mean cosine of int8 to PyTorch embeddings (>= 1 - `max_accuracy_drop`).

    Args:
        model_or_path (`PreTrainedModel`, `SentenceTransformer` or `str`): The model, its folder or its Hub
            id (checked first: a folder that is missing or lacks config.json is a `ValueError`).
        output_dir (`str`): Where to write the export.
        config (`Int8ExportConfig`, *optional*): The settings; `Int8ExportConfig()` when not given.
        tokenizer (*optional*): Saved with the model; loaded from `model_or_path` when it is a folder.
        eval_dataset (`datasets.Dataset`, *optional*): Tokenized rows, with labels where they exist; when
            given, a measure of PyTorch, ONNX fp32 and int8 goes into the report and gates the result:
            the labels' accuracy (span exact match, micro F1 or Pearson, by head), else the agreement of
            int8 with PyTorch (mean cosine of mean-pooled `last_hidden_state` for bare encoders).
            `result.gate` names it.
        calibration_dataset (`datasets.Dataset`, *optional*): Tokenized rows, ~100-500 of the training
            data; required for static mode, which calibrates on the first `config.calibration_samples`.
        **settings: Deprecated: the fields of `Int8ExportConfig` as keywords.

    Returns:
        `ExportResult`. Raises `AccuracyDropError` (keeping the fp32 export) when no choice passes.
    """
    config = _config_from_keywords(config, settings)
    if config.mode == "static" and calibration_dataset is None:
        raise ValueError(
            "export_int8: Int8ExportConfig(mode='static') needs calibration_dataset=<tokenized rows, ~100-500 of "
            "the training data> to calibrate activation ranges; or use mode='dynamic'."
        )
    if config.mode == "dynamic" and calibration_dataset is not None:  # never read: it would look used
        raise ValueError(
            "export_int8: Int8ExportConfig(mode='dynamic') measures activation ranges at run time and reads no "
            "calibration_dataset; drop it, or use mode='static'."
        )
    rows = len(calibration_dataset) if config.mode == "static" and hasattr(calibration_dataset, "__len__") else None
    if rows is not None and rows < config.calibration_samples:
        warnings.warn(
            f"export_int8: calibration_dataset has {rows} rows, fewer than calibration_samples="
            f"{config.calibration_samples}; the activation ranges come from those {rows}.",
            stacklevel=2,
        )
    if config.backend == "optimum" and not optimum_available():
        raise ValueError("export_int8: Int8ExportConfig(backend='optimum') needs pip install 'hf_efficient[optimum]'.")
    if config.runtime.startswith("openvino") and not installed("openvino"):
        raise ValueError(f"export_int8: Int8ExportConfig(runtime={config.runtime!r}) needs pip install openvino.")
    from ..report.cpu import usable_cores  # here: the report package imports this one

    cores = usable_cores()
    if config.timing_threads > cores:
        raise ValueError(
            f"export_int8: Int8ExportConfig(timing_threads={config.timing_threads}) is more than the "
            f"{cores} cores this process can use: time on at most {cores}."
        )

    if not isinstance(output_dir, (str, Path)) or not str(output_dir):
        raise ValueError(f"export_int8(output_dir={output_dir!r}): give the folder to write the export into.")
    if Path(output_dir).exists() and not Path(output_dir).is_dir():
        raise ValueError(f"export_int8(output_dir={str(output_dir)!r}) is a file; give a folder (made if missing).")
    source = model_or_path if isinstance(model_or_path, (str, Path)) else getattr(model_or_path, "name_or_path", None)
    if source and Path(source).is_dir() and Path(source).resolve() == Path(output_dir).resolve():
        raise ValueError(
            f"export_int8(output_dir={str(output_dir)!r}) is the folder the model was loaded from, whose config.json "
            "and tokenizer the export would overwrite; give another folder."
        )
    for name, rows in (("eval_dataset", eval_dataset), ("calibration_dataset", calibration_dataset)):
        if rows is not None and hasattr(rows, "__len__") and len(rows) == 0:
            raise ValueError(f"export_int8({name}=...) has no rows; give at least one, or None to skip what it is for.")
    if tokenizer is not None and not hasattr(tokenizer, "save_pretrained"):
        raise ValueError(
            f"export_int8(tokenizer={tokenizer!r}): give a loaded tokenizer (AutoTokenizer.from_pretrained(...)), "
            "or leave it out for a model folder's own."
        )
    sentence = sentence_transformer_of(model_or_path)
    if sentence is not None and tokenizer is not None:  # it would be dropped for the model's own
        raise ValueError(
            "export_int8(tokenizer=...): a SentenceTransformer exports with its own tokenizer (model.tokenizer); "
            "leave tokenizer out."
        )
    if sentence is not None:
        from ..sentence.export import export_sentence_int8

        return export_sentence_int8(sentence, output_dir, config, eval_dataset, calibration_dataset)
    for name, rows in (("eval_dataset", eval_dataset), ("calibration_dataset", calibration_dataset)):
        if rows is not None and not hasattr(rows, "column_names"):  # a list of dicts, texts, a DataFrame
            raise ValueError(
                f"export_int8({name}={type(rows).__name__}): give tokenized rows as a datasets.Dataset "
                "(hf_efficient.data.tokenize_dataset(data, tokenizer)['test'])."
            )
        if isinstance(rows, dict):  # a DatasetDict: all its splits
            raise ValueError(
                f"export_int8({name}=...): give one split of tokenized rows, e.g. data['test'], not the "
                f"{type(rows).__name__} of splits {list(rows)}."
            )
        check_tokenized(rows, f"export_int8({name}=...)")
    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model_source(model_or_path, "export_int8(model_or_path)", tokenizer=tokenizer is None)
        model = _load(model_or_path)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_or_path)
    elif not isinstance(model_or_path, torch.nn.Module):  # a model, or one wrapped for distributed training
        raise ValueError(
            f"export_int8(model_or_path={type(model_or_path).__name__}): "
            "give a PreTrainedModel, its folder or its Hub id."
        )
    # A Trainer run under mixed precision leaves accelerate's fp32 wrapper on `forward`, which
    # neither exporter can trace.
    model = extract_model_from_parallel(model, keep_fp32_wrapper=False).eval()
    encoder_family(model)  # GPT-2 and other decoders fail in the first batch of two, for want of a padding token
    check_loaded(model, "export_int8(model_or_path)")
    check_float32(model, "export_int8(model_or_path)")
    task = task_of(model)
    for name, rows in (("eval_dataset", eval_dataset), ("calibration_dataset", calibration_dataset)):
        if rows is not None:  # before minutes of export: rows the model cannot run, labels its head cannot have
            check_rows(model, rows, task.name, f"export_int8({name}=...)", labels=name == "eval_dataset")
    column = next((c for c in ("labels", "label") if eval_dataset is not None and c in eval_dataset.column_names), None)
    if task.problem_type == "regression" and column:
        if len(set(np.ravel(eval_dataset[column]).tolist())) < 2:  # Pearson would be 0 (undefined) for any model
            raise ValueError(
                "export_int8(eval_dataset=...): every row has the same label, so the Pearson correlation the gate "
                "compares is undefined; give rows whose labels vary."
            )
    if config.backend == "optimum" and not _optimum_knows(model, task):
        raise ValueError(
            "export_int8: Int8ExportConfig(backend='optimum'): Optimum has no ONNX configuration for "
            f"model_type={model.config.model_type!r} and task {task.pipeline_tag!r}; "
            "use backend='auto' or 'onnxruntime'."
        )
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    fp32, int8 = output / FP32_FILE, output / INT8_FILE
    use_optimum = config.backend == "optimum" or (
        config.backend == "auto" and optimum_available() and _optimum_exports(model, task)
    )
    if use_optimum:
        from optimum.exporters.onnx import onnx_export_from_model

        onnx_export_from_model(model, output, task=task.pipeline_tag)
    else:
        # Multiple-choice heads take (batch, choices, sequence) inputs.
        choices = task.auto_class == "AutoModelForMultipleChoice"
        export_onnx(model, fp32, output_names=task.onnx_outputs, choices=choices)
        model.config.save_pretrained(output)
    _record_architecture(output / "config.json", model)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)

    mode = config.mode
    if mode == "static" and _has_subgraphs(fp32):
        if not config.allow_fallback or config.runtime.startswith("openvino"):
            raise ValueError(
                "export_int8: Int8ExportConfig(mode='static') cannot calibrate this graph's control-flow subgraphs; "
                "set allow_fallback=True to quantize dynamically instead (with runtime='onnxruntime'), "
                "or use mode='dynamic'."
            )
        mode = "dynamic"
    backend = "optimum" if use_optimum else "onnxruntime"
    result = ExportResult(
        str(output), FP32_FILE, None, backend, mode, config.target, config=config.to_dict(), task=task.name
    )
    result.parameters = sum(p.numel() for p in model.parameters())
    quantize = _quantize_optimum if use_optimum else _quantize_onnxruntime

    # The last 4 MatMuls: the top layer's FFN and the head, which move the logits most directly.
    choices = quantization_choices(config, fp32, retry=eval_dataset is not None, last_matmuls=4)
    if eval_dataset is not None:
        id2label = getattr(model.config, "id2label", None) or {}
        label_names = [id2label.get(i, str(i)) for i in range(len(id2label))]
        measure = gate_measure(task, eval_dataset.column_names, label_names)
        pytorch, labels = _predict(measure, _pytorch_batches(model, task, eval_dataset, _label_columns(eval_dataset)))
        reference = pytorch if labels is None else labels  # agreement with PyTorch where there are no labels
        result.gate = measure.name
        result.metrics["pytorch"] = {measure.name: measure.score(pytorch, reference)}
        result.metrics["onnx_fp32"] = {measure.name: onnx_score(fp32, eval_dataset, measure, reference, "onnxruntime")}
    calibration = None
    if mode == "static":
        names = _model_inputs(fp32)
        calibration = lambda: (  # noqa: E731 (a fresh generator for each attempt)
            _feed(batch, names)
            for batch in _batches(calibration_dataset, [*names, "input_ids"], 16, limit=config.calibration_samples)
        )

    def write(choice: dict, variant: str, path: Path) -> dict:
        return quantize_attempt(
            choice, fp32, path, variant, model.config, config.target, quantize=quantize, calibration=calibration
        )

    result.variant, result.runtime, result.variant_reason, result.variant_timings, written = resolve_variant(
        config, lambda variant, path: write(choices[0], variant, path), int8, model, mode
    )
    for i, choice in enumerate(choices):
        attempt = written if i == 0 and written is not None else write(choice, result.variant, int8)
        if eval_dataset is not None:  # on the runtime the file will run on
            attempt[measure.name] = onnx_score(int8, eval_dataset, measure, reference, result.runtime)
            attempt["drop"] = result.metrics["pytorch"][measure.name] - attempt[measure.name]
        result.attempts.append(attempt)
        if eval_dataset is None or attempt["drop"] <= config.max_accuracy_drop:
            result.chosen, result.int8_file = attempt, INT8_FILE
            if eval_dataset is not None:
                result.metrics["onnx_int8"] = {measure.name: attempt[measure.name]}
            break
    result.save()
    if result.int8_file is None:
        int8.unlink(missing_ok=True)
        name = result.gate
        scores = ", ".join(f"{a[name]:.4f}" for a in result.attempts)
        smallest = min(a["drop"] for a in result.attempts)
        least = math.ceil(smallest * 1e4 - 1e-6) / 1e4 if math.isfinite(smallest) else None  # rounded up: enough
        raise AccuracyDropError(
            f"export_int8: int8 lost more {name} than max_accuracy_drop={config.max_accuracy_drop} in every attempt: "
            f"PyTorch {result.metrics['pytorch'][name]:.4f}, int8 {scores}; the fp32 model is kept in {fp32}. "
            + (
                f"To keep the best attempt allow a drop of {least}"
                if least is not None
                else "The scores are not numbers"
            )
            + (", or calibrate: mode='static'." if mode == "dynamic" else "."),
            result,
        )
    return result
