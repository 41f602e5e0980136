"""`export_int8` for sentence-transformers models: a complete folder with `onnx/model.onnx` and its int8 twin.

The layout and names are sentence-transformers' own (`export_dynamic_quantized_onnx_model`):
`onnx/model.onnx` (fp32 encoder) and `onnx/model_qint8_<target>.onnx`, beside the usual folder
(modules.json, pooling, tokenizer, PyTorch weights). The graphs output the encoder's
`last_hidden_state`; pooling and normalisation are the loader's (sentence-transformers' modules
with `backend="onnx"`, or `SentenceEmbedder`), exactly as in PyTorch.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..checks import check_texts
from ..export.config import Int8ExportConfig
from ..export.fastest import resolve_variant
from ..export.int8 import AccuracyDropError, ExportResult, check_float32, quantization_choices, quantize_attempt
from ..export.onnx import export_onnx
from .embedder import MODULES, SentenceEmbedder
from .model import ONNX_DIR, int8_file_name, sentence_encoder

FP32_FILE = f"{ONNX_DIR}/model.onnx"
TEXT_COLUMN = "text"


def _texts(dataset, call: str) -> list[str] | None:
    if dataset is None:
        return None
    where = f"export_int8({call}=...)"
    if isinstance(dataset, (list, tuple)):
        check_texts(dataset, TEXT_COLUMN, where)
        return list(dataset)
    columns = getattr(dataset, "column_names", [])
    if TEXT_COLUMN not in columns:
        raise ValueError(f"{where}: an embedding model reads a {TEXT_COLUMN!r} column; got {columns}.")
    check_texts(dataset, TEXT_COLUMN, where)
    return list(dataset[TEXT_COLUMN])


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean cosine similarity of matching rows of `a` and `b`."""
    a = a / np.clip(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12, None)
    b = b / np.clip(np.linalg.norm(b, axis=-1, keepdims=True), 1e-12, None)
    return float((a * b).sum(-1).mean())


def export_sentence_int8(
    model, output_dir: str, config: Int8ExportConfig, eval_dataset=None, calibration_dataset=None
) -> ExportResult:
    """The sentence-transformers branch of `export_int8` (see there); `model` is a SentenceTransformer."""
    eval_texts = _texts(eval_dataset, "eval_dataset")
    calibration_texts = _texts(calibration_dataset, "calibration_dataset")
    others = [type(module).__name__ for module in model if type(module).__name__ not in MODULES]
    if eval_texts is not None and others:  # refused before anything is written
        raise ValueError(
            f"export_int8(eval_dataset=...): the accuracy check runs the export with SentenceEmbedder, which runs "
            f"{', '.join(MODULES)} modules, and this model also has {', '.join(others)}; export it without "
            "eval_dataset and check it with SentenceTransformer(out, backend='onnx', model_kwargs={'file_name': ...})."
        )
    encoder = sentence_encoder(model, "export_int8")
    check_float32(encoder, "export_int8(model_or_path)")
    model = model.eval()
    output = Path(output_dir)
    model.save(str(output))
    fp32, int8 = output / FP32_FILE, output / ONNX_DIR / int8_file_name(config.target)
    export_onnx(encoder, fp32, output_names=("last_hidden_state",))
    result = ExportResult(str(output), FP32_FILE, None, "onnxruntime", config.mode, config.target)
    result.config, result.task = config.to_dict(), "sentence-embedding"
    result.parameters = sum(p.numel() for p in encoder.parameters())
    result.gate = "cosine_to_pytorch" if eval_texts is not None else None
    reference = None
    if eval_texts is not None:
        reference = model.encode(eval_texts, batch_size=32, convert_to_numpy=True)
        fp32_vectors = SentenceEmbedder(output, FP32_FILE, runtime="onnxruntime")(eval_texts)
        result.metrics["onnx_fp32"] = {"cosine_to_pytorch": mean_cosine(fp32_vectors, reference)}
    # No head: the last 2 MatMuls are the top layer's FFN.
    choices = quantization_choices(config, fp32, retry=eval_texts is not None, last_matmuls=2)
    calibration = None
    if config.mode == "static":
        embedder = SentenceEmbedder(output, FP32_FILE, runtime="onnxruntime")
        texts = calibration_texts[: config.calibration_samples]

        def calibration():  # the inputs SentenceEmbedder gives the graph: same preparation of the texts
            return (feed for _, feed, _ in embedder.batches(texts, 16))

    def write(choice: dict, variant: str, path: Path) -> dict:
        return quantize_attempt(choice, fp32, path, variant, encoder.config, config.target, calibration=calibration)

    result.variant, result.runtime, result.variant_reason, result.variant_timings, written = resolve_variant(
        config, lambda variant, path: write(choices[0], variant, path), int8, encoder, config.mode
    )
    for i, choice in enumerate(choices):
        attempt = written if i == 0 and written is not None else write(choice, result.variant, int8)
        if eval_texts is not None:
            attempt["cosine_to_pytorch"] = mean_cosine(
                SentenceEmbedder(output, int8.relative_to(output), runtime=result.runtime)(eval_texts), reference
            )
        result.attempts.append(attempt)
        if eval_texts is None or 1 - attempt["cosine_to_pytorch"] <= config.max_accuracy_drop:
            result.chosen, result.int8_file = attempt, str(int8.relative_to(output))
            if eval_texts is not None:
                result.metrics["onnx_int8"] = {"cosine_to_pytorch": attempt["cosine_to_pytorch"]}
            break
    result.save()
    if result.int8_file is None:
        int8.unlink(missing_ok=True)
        cosines = [a["cosine_to_pytorch"] for a in result.attempts]
        least = math.ceil((1 - max(cosines)) * 1e6 - 1e-6) / 1e6  # rounded up: enough to keep the best attempt
        raise AccuracyDropError(
            f"export_int8: the int8 embeddings' mean cosine to PyTorch lost more than max_accuracy_drop="
            f"{config.max_accuracy_drop} in every attempt: {', '.join(f'{c:.6f}' for c in cosines)}; the fp32 model "
            f"is kept in {fp32}. To keep the best attempt allow a drop of {least}"
            + (", or calibrate: mode='static'." if config.mode == "dynamic" else "."),
            result,
        )
    return result
