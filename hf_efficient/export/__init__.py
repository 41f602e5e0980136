"""ONNX export and int8 quantization of finished models."""

from .config import TARGETS, Int8ExportConfig
from .helpers import ChoiceScorer, QuestionAnswerer, TextClassifier, TextEmbedder, TokenClassifier
from .int8 import INT8_FILE, AccuracyDropError, ExportResult, export_int8, onnx_logits, onnx_outputs
from .onnx import (
    export_onnx,
    inline_shared_initializers,
    onnx_weight_bytes,
    quantize_int8_dynamic,
    run_onnx,
    run_onnx_outputs,
)

__all__ = [
    "INT8_FILE",
    "TARGETS",
    "AccuracyDropError",
    "ChoiceScorer",
    "ExportResult",
    "Int8ExportConfig",
    "QuestionAnswerer",
    "TextClassifier",
    "TextEmbedder",
    "TokenClassifier",
    "export_int8",
    "export_onnx",
    "inline_shared_initializers",
    "onnx_logits",
    "onnx_outputs",
    "onnx_weight_bytes",
    "quantize_int8_dynamic",
    "run_onnx",
    "run_onnx_outputs",
]
