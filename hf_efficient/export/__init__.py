"""ONNX export and int8 quantization of finished models."""

from .config import TARGETS, Int8ExportConfig
from .int8 import INT8_FILE, AccuracyDropError, ExportResult, TextClassifier, export_int8, onnx_logits
from .onnx import export_onnx, inline_shared_initializers, onnx_weight_bytes, quantize_int8_dynamic, run_onnx

__all__ = [
    "INT8_FILE",
    "TARGETS",
    "AccuracyDropError",
    "ExportResult",
    "Int8ExportConfig",
    "TextClassifier",
    "export_int8",
    "export_onnx",
    "inline_shared_initializers",
    "onnx_logits",
    "onnx_weight_bytes",
    "quantize_int8_dynamic",
    "run_onnx",
]
