"""ONNX export and int8 quantization of finished models."""

from .onnx import export_onnx, inline_shared_initializers, onnx_weight_bytes, quantize_int8_dynamic, run_onnx

__all__ = ["export_onnx", "inline_shared_initializers", "onnx_weight_bytes", "quantize_int8_dynamic", "run_onnx"]
