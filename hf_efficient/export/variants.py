"""Which int8 graph `export_int8` writes, chosen per CPU from its instruction sets, and why.

The variants differ in which matrix products run in int8 and in how much of the graph ONNX Runtime's
transformer fusions merge beforehand. Measured on AMD EPYC Zen 4 and Zen 5 with AVX512-VNNI and
AVX512-BF16, no AMX, 1 thread, the quickstart's MiniLM teacher and 3-layer student at sequence 64
(`benchmarks/int8.py`, tables in `benchmarks/README.md`): "int8-all" and "int8-weights" are within
the runs' spread of each other at batch 1 and 32 (3% on a quiet host, up to 10% either way on a busy
one); "int8-fused" is 15-30% slower (its `QAttention` and `SkipLayerNormalization` kernels cost more
than the nodes they replace). For the same reason the two unfused variants leave ONNX Runtime no
`Add` + `LayerNormalization` to fuse at load time (`finish_variant`, `graph.residual_sums`).

On an Intel Xeon with AMX-INT8 (same models and settings), ONNX Runtime runs u8 x s8 products (an
activation times signed int8 weights) on the AMX tiles (1,117 GOP/s on one core), but a product of two
activations, which its dynamic quantizer makes u8 x u8, at about the fp32 rate (169 GOP/s). "int8-weights"
keeps those products (the attention's scores and their use of the values) in fp32 and every weight product
on the tiles: at batch 1 within 2% of int8-all on ONNX Runtime and 9-15% faster on OpenVINO, at batch 32
3-12% faster on both. Where a choice was not measured, `variant="fastest"` settles it on the CPU at hand: it writes
every variant and times them (`fastest`). Which runtime runs the file is `choose_runtime`'s.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from .config import VARIANT_CHOICES, VARIANT_NAMES
from .graph import residual_sums

# Name -> what the variant writes (the `help` of `Int8ExportConfig.variant` lists these).
VARIANTS = {
    "int8-all": "every MatMul in int8, the attention's activation-by-activation products too",
    "int8-weights": "only the MatMuls with a weight in int8; the attention's products stay fp32",
    "int8-fused": "ONNX Runtime's transformer fusions (Attention, SkipLayerNorm, EmbedLayerNorm, GELU), then int8",
}
assert tuple(VARIANTS) == VARIANT_NAMES
CHOICES = VARIANT_CHOICES  # "auto", "fastest" and the names above
_TIME_THEM = "; variant='fastest' times them on this CPU"
# Operator types each variant quantizes (MatMul and the embedding tables, plus the fused operators).
_FUSED_OPS = ["MatMul", "Gather", "Attention", "EmbedLayerNormalization"]


def choose_variant(requested: str = "auto", features: list[str] | None = None) -> tuple[str, str]:
    """The variant to export for a CPU with `features` (default: this one's), and the reason.

    Args:
        requested (`str`): "auto", or a name of `VARIANTS` to force it ("fastest" is `fastest.resolve_variant`'s).
        features (`list[str]`, *optional*): Instruction sets as `report.cpu.cpu_features` names them.

    Returns:
        `(variant, reason)`.
    """
    if requested not in CHOICES:
        raise ValueError(f"variant={requested!r} is not supported: use one of {', '.join(map(repr, CHOICES))}.")
    if requested == "fastest":
        raise ValueError("variant='fastest' is measured, not chosen: export_int8 times the variants (export.fastest).")
    if requested != "auto":
        return requested, f"forced with Int8ExportConfig(variant={requested!r})"
    if features is None:
        from ..report.cpu import cpu_features  # here: the report package imports this one

        features = cpu_features()
    features = list(features)
    if "AMX-INT8" in features:
        return "int8-weights", (
            "AMX-INT8: every weight product u8 x s8 on the AMX tiles, the attention's activation products in fp32 "
            "rather than u8 x u8, which AMX does not run; at 1 thread, within 2% of int8-all at batch 1 on ONNX "
            "Runtime and 9-15% faster on OpenVINO, 3-12% faster at batch 32 on both, measured on an Intel Xeon "
            "with AMX (benchmarks/README.md)"
        )
    if "AVX512-VNNI" in features:
        return "int8-all", (
            "AVX512-VNNI without AMX: every MatMul in int8, at 1 thread and batch 1 and 32 the fastest graph on "
            "ONNX Runtime or within the timing's spread of int8-weights, measured on AMD EPYC Zen 4 and Zen 5 "
            "(benchmarks/README.md)"
        )
    return (
        "int8-all",
        f"no VNNI or AMX ({', '.join(features) or 'no listed features'}): the default graph (not measured{_TIME_THEM})",
    )


def choose_runtime(mode: str, variant: str, features: list[str] | None = None) -> tuple[str, str, bool]:
    """What runs the file of an export with `Int8ExportConfig(runtime="auto")` and a variant not "fastest":
    `(runtime, note for the reason, whether plain PyTorch is faster than it at batch 32 on this CPU)`.

    ONNX Runtime, except on CPUs with AMX in static mode where OpenVINO is installed: there OpenVINO runs the
    int8 products and (with bf16 float operations) the rest on AMX's tiles, where ONNX Runtime's int8 graphs run
    batch 32 slower than PyTorch's bf16 cast (measured on an Intel Xeon with AMX, benchmarks/README.md).
    """
    from .runtime import installed

    if features is None:
        from ..report.cpu import cpu_features  # here: the report package imports this one

        features = cpu_features()
    if "AMX-INT8" not in features or variant == "int8-fused":  # OpenVINO cannot load int8-fused
        return "onnxruntime", "", False
    openvino = installed("openvino")
    if mode == "static" and openvino:
        return "openvino-bf16", f"; {AMX_OPENVINO}", False
    fixes = (["export with mode='static'"] if mode != "static" else []) + ([] if openvino else ["pip install openvino"])
    return "onnxruntime", f"; {AMX_ONNXRUNTIME}: {' and '.join(fixes)}, to run it on OpenVINO bf16", True


# Measured with benchmarks/int8.py on an Intel Xeon with AMX, the quickstart's teacher and student, 1 thread.
AMX_OPENVINO = (
    "AMX with OpenVINO installed: static graphs run on OpenVINO bf16, measured on an Intel Xeon with AMX at "
    "1.26-1.39x the speed of the model cast to bf16 in PyTorch at batch 32 (3.1-3.7x at batch 1), where ONNX "
    "Runtime's int8-all and int8-weights graphs run at 0.51-0.63x (benchmarks/README.md)"
)
AMX_ONNXRUNTIME = (
    "on CPUs with AMX, ONNX Runtime runs int8 graphs at batch 32 slower than the model cast to bf16 in PyTorch "
    "(int8-all and int8-weights 0.51-0.63x on an Intel Xeon with AMX, 1 thread; benchmarks/README.md)"
)


def activation_matmuls(path: str | Path, op_types: tuple[str, ...] = ("MatMul",)) -> list[str]:
    """Names of the `op_types` nodes whose second input is not a weight (the attention's scores and context)."""
    model = onnx.load(str(path), load_external_data=False)
    weights = {tensor.name for tensor in model.graph.initializer}
    weights |= {out for node in model.graph.node if node.op_type == "Constant" for out in node.output}
    return [node.name for node in model.graph.node if node.op_type in op_types and node.input[1] not in weights]


def fuse_transformer(source: str | Path, target: str | Path, *, num_heads: int, hidden_size: int) -> dict[str, int]:
    """Write `source` with ONNX Runtime's BERT fusions applied to `target`; returns how many of each it made.

    The Attention fusion needs the eager attention pattern (transformers 4.x's export, Optimum's);
    the SDPA graph of transformers 5's `torch.onnx` export keeps its attention unfused.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    options.enable_gelu_approximation = False  # `use_tanh_gelu` before this, if asked for, did that already
    fused = optimize_model(
        str(source),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        optimization_options=options,
        opt_level=0,
    )
    graph = fused.model.graph
    # ONNX shape inference does not know the contrib operators; the quantizers need the float type past them.
    typed = {info.name for info in graph.value_info}
    graph.value_info.extend(
        helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)
        for node in graph.node
        if node.domain == "com.microsoft" and node.output[0] not in typed
    )
    fused.save_model_to_file(str(target))
    return {name: count for name, count in fused.get_fused_operator_statistics().items() if count}


def prepare_variant(variant: str, source: Path, scratch: Path, config) -> tuple[Path, list[str], list[str], dict]:
    """The graph to quantize for `variant`, the operator types to quantize, extra nodes to keep fp32, and notes.

    Args:
        variant (`str`): A name of `VARIANTS`.
        source (`Path`): The fp32 graph (with tanh GELUs when asked for).
        scratch (`Path`): A file this may write (the fused graph); the caller deletes it.
        config: The model's `PretrainedConfig` (heads and width, for the fusions).
    """
    from .onnx import QUANTIZED_OPS

    if variant == "int8-all":
        return source, list(QUANTIZED_OPS), [], {}
    if variant == "int8-weights":
        kept = activation_matmuls(source)
        return source, list(QUANTIZED_OPS), kept, {"fp32_matmuls": len(kept)}
    if variant == "int8-fused":
        heads, width = getattr(config, "num_attention_heads", 0), getattr(config, "hidden_size", 0)
        fused = fuse_transformer(source, scratch, num_heads=heads, hidden_size=width)
        return scratch, list(_FUSED_OPS), [], {"fused": fused}
    raise ValueError(f"variant={variant!r} is not supported: use one of {', '.join(map(repr, CHOICES))}.")


def finish_variant(variant: str, int8: Path) -> dict:
    """Rewrite the quantized graph of `variant` in place for speed at load time; returns notes for the attempt.

    "int8-all" and "int8-weights" get their residual additions written as `Sum` (`graph.residual_sums`),
    so that ONNX Runtime does not fuse them into its slow `SkipLayerNormalization`; "int8-fused" is
    ONNX Runtime's fusions by definition and is kept as they wrote it.
    """
    if variant == "int8-fused":
        return {}
    return {"residual_sums": residual_sums(int8)}
