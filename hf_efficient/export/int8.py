"""`export_int8`: ONNX export, int8 quantization and an accuracy check, in one call."""

from __future__ import annotations

import importlib.util
import json
import shutil
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import torch
from accelerate.utils import extract_model_from_parallel
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from ..checks import model_source
from ..metrics import evaluate_model
from ..sentence.model import sentence_transformer_of
from .config import MODES, TARGETS, Int8ExportConfig  # noqa: F401 (MODES, TARGETS: still imported from here)
from .graph import freeze_activation_ranges, use_tanh_gelu
from .onnx import QUANTIZED_OPS, export_onnx, quantize_int8_dynamic

FP32_FILE = "model.onnx"
INT8_FILE = "model_quantized.onnx"
# Scratch file: the fp32 graph with tanh GELUs, quantized into INT8_FILE.
TANH_GELU_FILE = "model_tanh_gelu.onnx"


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

    def to_dict(self) -> dict:
        return asdict(self)


def optimum_available() -> bool:
    return (
        importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.onnxruntime") is not None
    )


def _optimum_exports(model: PreTrainedModel) -> bool:
    """Whether Optimum's exporter handles `model` as well as `torch.onnx` here.

    Optimum picks its exporter by the library the model's class comes from, and refuses classes
    defined elsewhere (e.g. `Shared<Class>`). It writes a parameter used under several names once
    but feeds its other uses through `Identity` nodes, behind which the quantizer leaves fp32 copies;
    `export_onnx` inlines those.
    """
    shared = len(list(model.named_parameters(remove_duplicate=False))) > len(list(model.parameters()))
    return type(model).__module__.startswith("transformers.") and not shared


def _has_subgraphs(path: Path) -> bool:
    model = onnx.load(str(path), load_external_data=False)
    return any(attribute.type == onnx.AttributeProto.GRAPH for node in model.graph.node for attribute in node.attribute)


def _matmul_nodes(path: Path) -> list[str]:
    return [node.name for node in onnx.load(str(path), load_external_data=False).graph.node if node.op_type == "MatMul"]


def _model_inputs(path: Path) -> list[str]:
    return [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def _batches(dataset, names: list[str], batch_size: int = 64, limit: int | None = None):
    end = len(dataset) if limit is None else min(limit, len(dataset))
    for start in range(0, end, batch_size):
        rows = dataset[start : min(start + batch_size, end)]
        yield {name: np.asarray(rows[name], dtype=np.int64) for name in names if name in rows}


def onnx_logits(path: Path, dataset) -> np.ndarray:
    """Logits of an exported model on tokenized rows, in order."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    logits = []
    for batch in _batches(dataset, names):
        feed = {name: batch.get(name, np.zeros_like(batch["input_ids"])) for name in names}
        logits.append(session.run(["logits"], feed)[0])
    return np.concatenate(logits)


def onnx_accuracy(path: Path, dataset) -> float:
    """Accuracy of an exported model on tokenized rows with a `label` column."""
    return float((onnx_logits(path, dataset).argmax(-1) == np.asarray(dataset["label"])).mean())


def _quantize_onnxruntime(source: Path, int8: Path, target: str, per_channel: bool, exclude: list[str]):
    # u8s8 without VNNI can saturate: onnxruntime's advice for AVX2.
    quantize_int8_dynamic(source, int8, per_channel=per_channel, reduce_range=target == "avx2", exclude=exclude)


def _quantize_optimum(source: Path, int8: Path, target: str, per_channel: bool, exclude: list[str]):
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    config = getattr(AutoQuantizationConfig, target)(
        is_static=False, per_channel=per_channel, nodes_to_exclude=exclude, operators_to_quantize=QUANTIZED_OPS
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
    """Export a sequence classifier to ONNX, quantize it to int8, and check what it kept.

    The folder holds `model.onnx` (fp32), `model_quantized.onnx` (int8), `config.json`, the
    tokenizer and `export_report.json` (which records the settings used), and loads with
    `ORTModelForSequenceClassification.from_pretrained(output_dir, file_name="model_quantized.onnx")`
    or with `TextClassifier`. On the optimum stack the export and the quantization go through
    Optimum (`onnx_export_from_model`, `ORTQuantizer` with an `AutoQuantizationConfig`); elsewhere,
    and for models of other classes or with shared weights (see `_optimum_exports`), through
    `torch.onnx` and `onnxruntime.quantization`.

    A SentenceTransformer (or its folder, which has modules.json) gives a complete sentence-transformers
    folder with `onnx/model.onnx` and `onnx/model_qint8_<target>.onnx`, the names of its own
    `export_dynamic_quantized_onnx_model`: the graphs output `last_hidden_state`, and the loader
    pools and normalises (`SentenceTransformer(out, backend="onnx", model_kwargs={"file_name": ...})`
    or `SentenceEmbedder(out)`). Its evaluation and calibration sets are plain text (a `text` column),
    and the gate is the mean cosine of int8 to PyTorch embeddings (`min_embedding_cosine`).

    Args:
        model_or_path (`PreTrainedModel`, `SentenceTransformer` or `str`): The model, its folder or its Hub
            id (checked first: a folder that is missing or lacks config.json is a `ValueError`).
        output_dir (`str`): Where to write the export.
        config (`Int8ExportConfig`, *optional*): The settings; `Int8ExportConfig()` when not given.
        tokenizer (*optional*): Saved with the model; loaded from `model_or_path` when it is a folder.
        eval_dataset (`datasets.Dataset`, *optional*): Tokenized rows with `label`; when given, the
            accuracy of PyTorch, ONNX fp32 and int8 goes into the report and gates the result.
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
    if config.backend == "optimum" and not optimum_available():
        raise ValueError("export_int8: Int8ExportConfig(backend='optimum') needs pip install 'hf_efficient[optimum]'.")

    sentence = sentence_transformer_of(model_or_path)
    if sentence is not None:
        from ..sentence.export import export_sentence_int8

        return export_sentence_int8(sentence, output_dir, config, eval_dataset, calibration_dataset)
    model = model_or_path
    if isinstance(model_or_path, (str, Path)):
        model_source(model_or_path, "export_int8(model_or_path)", tokenizer=tokenizer is None)
        model = AutoModelForSequenceClassification.from_pretrained(model_or_path)
        tokenizer = tokenizer or AutoTokenizer.from_pretrained(model_or_path)
    elif not isinstance(model_or_path, torch.nn.Module):  # a model, or one wrapped for distributed training
        raise ValueError(
            f"export_int8(model_or_path={type(model_or_path).__name__}): "
            "give a PreTrainedModel, its folder or its Hub id."
        )
    # A Trainer run under mixed precision leaves accelerate's fp32 wrapper on `forward`, which
    # neither exporter can trace.
    model = extract_model_from_parallel(model, keep_fp32_wrapper=False).eval()
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    fp32, int8 = output / FP32_FILE, output / INT8_FILE
    use_optimum = config.backend == "optimum" or (
        config.backend == "auto" and optimum_available() and _optimum_exports(model)
    )
    if use_optimum:
        from optimum.exporters.onnx import onnx_export_from_model

        onnx_export_from_model(model, output, task="text-classification")
    else:
        export_onnx(model, fp32)
        model.config.save_pretrained(output)
    if tokenizer is not None:
        tokenizer.save_pretrained(output)

    mode = config.mode
    if mode == "static" and _has_subgraphs(fp32):
        if not config.allow_fallback:
            raise ValueError(
                "export_int8: Int8ExportConfig(mode='static') cannot calibrate this graph's control-flow subgraphs; "
                "set allow_fallback=True to quantize dynamically instead, or use mode='dynamic'."
            )
        mode = "dynamic"
    backend = "optimum" if use_optimum else "onnxruntime"
    result = ExportResult(str(output), FP32_FILE, None, backend, mode, config.target, config=config.to_dict())
    quantize = _quantize_optimum if use_optimum else _quantize_onnxruntime

    exclude = list(config.exclude)
    choices = [{"per_channel": config.per_channel, "approximate_gelu": config.approximate_gelu, "exclude": exclude}]
    if eval_dataset is not None and config.retry:
        # Per-channel scales and the exact GELU, then also the last MatMuls (the top layer's FFN and
        # the head, which move the logits most directly) in fp32.
        choices.append({"per_channel": True, "approximate_gelu": False, "exclude": exclude})
        choices.append({"per_channel": True, "approximate_gelu": False, "exclude": exclude + _matmul_nodes(fp32)[-4:]})
        choices = [c for i, c in enumerate(choices) if c not in choices[:i]]
    if eval_dataset is not None:
        result.metrics["pytorch"] = {"accuracy": evaluate_model(model, eval_dataset, desc="pytorch")["accuracy"]}
        result.metrics["onnx_fp32"] = {"accuracy": onnx_accuracy(fp32, eval_dataset)}
    tanh_gelu = output / TANH_GELU_FILE
    for choice in choices:
        attempt = dict(choice)
        source = fp32
        if choice["approximate_gelu"]:
            attempt["gelus_approximated"] = use_tanh_gelu(fp32, tanh_gelu)
            source = tanh_gelu
        # Static is the dynamic graph with its activation ranges frozen from calibration.
        quantize(source, int8, config.target, choice["per_channel"], choice["exclude"])
        tanh_gelu.unlink(missing_ok=True)
        if mode == "static":
            feeds = _batches(calibration_dataset, _model_inputs(fp32), 16, limit=config.calibration_samples)
            attempt["activations_calibrated"] = freeze_activation_ranges(int8, feeds)
        if eval_dataset is not None:
            attempt["accuracy"] = onnx_accuracy(int8, eval_dataset)
            attempt["drop"] = result.metrics["pytorch"]["accuracy"] - attempt["accuracy"]
        result.attempts.append(attempt)
        if eval_dataset is None or attempt["drop"] <= config.max_accuracy_drop:
            result.chosen, result.int8_file = attempt, INT8_FILE
            if eval_dataset is not None:
                result.metrics["onnx_int8"] = {"accuracy": attempt["accuracy"]}
            break
    (output / "export_report.json").write_text(json.dumps(result.to_dict(), indent=1))
    if result.int8_file is None:
        int8.unlink(missing_ok=True)
        raise AccuracyDropError(
            f"export_int8: int8 lost more than max_accuracy_drop={config.max_accuracy_drop} in every attempt "
            f"({[round(a['drop'], 4) for a in result.attempts]}); the fp32 model is kept in {fp32}.",
            result,
        )
    return result


class TextClassifier:
    """Classify text with an exported folder, in batches, without learning ONNX Runtime.

    Args:
        folder (`str`): An `export_int8` output folder.
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Truncation length.

    Example:
        ```python
        >>> TextClassifier("runs/export")(["a delight", "a mess"])
        [{'label': 'fresh', 'score': 0.97}, {'label': 'rotten', 'score': 0.91}]
        ```
    """

    def __init__(self, folder: str, file_name: str = INT8_FILE, max_length: int = 64):
        import onnxruntime
        from transformers import AutoConfig

        folder = Path(folder)
        if not (folder / file_name).exists():
            raise ValueError(f"TextClassifier: no {file_name} in {folder}; run export_int8 first.")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.labels = AutoConfig.from_pretrained(folder).id2label
        self.session = onnxruntime.InferenceSession(str(folder / file_name), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.max_length = max_length

    def __call__(self, texts: list[str], batch_size: int = 32) -> list[dict]:
        if isinstance(texts, str):
            texts = [texts]
        results = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer(
                texts[start : start + batch_size],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="np",
            )
            feed = {
                name: encoded.get(name, np.zeros_like(encoded["input_ids"])).astype(np.int64)
                for name in self.input_names
            }
            logits = self.session.run(["logits"], feed)[0]
            probabilities = np.exp(logits - logits.max(-1, keepdims=True))
            probabilities /= probabilities.sum(-1, keepdims=True)
            for row in probabilities:
                label = int(row.argmax())
                results.append({"label": self.labels[label], "score": float(row[label])})
        return results
