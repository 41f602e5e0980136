"""ONNX export and int8 quantization of finished models."""

from .int8 import TARGETS, AccuracyDropError, ExportResult, TextClassifier, export_int8
from .onnx import export_onnx, inline_shared_initializers, onnx_weight_bytes, quantize_int8_dynamic, run_onnx

__all__ = [
    "TARGETS",
    "AccuracyDropError",
    "ExportResult",
    "TextClassifier",
    "export_int8",
    "export_onnx",
    "inline_shared_initializers",
    "onnx_weight_bytes",
    "quantize_int8_dynamic",
    "run_onnx",
]
