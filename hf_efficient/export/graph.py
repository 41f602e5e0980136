"""Rewrites of exported graphs that make int8 inference faster: a cheaper GELU, frozen activation ranges,
residual sums that keep ONNX Runtime off its slow fused layer norm."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def use_tanh_gelu(source: str | Path, target: str | Path) -> int:
    """Write `source` to `target` with each exact (erf) GELU replaced by ONNX Runtime's tanh `FastGelu`.

    The tanh form is Hendrycks & Gimpel's approximation, within ~1e-3 of the exact one. It is no faster with
    ONNX Runtime 1.32, which fuses the exact form into its `Gelu` kernel (on an AMD Zen 5, 1 thread, the 3-layer
    int8 MiniLM's GELUs take 4.3 ms as `Gelu` and 6.6 ms as `FastGelu` at batch 32, `benchmarks/cpu_peak.py
    --profile`), so `export_int8` uses it only when asked (`approximate_gelu=True`). Only the GELU patterns
    change; graphs without one are written unchanged.

    Returns:
        `int`: the number of GELUs replaced.
    """
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("bert")
    for name, value in vars(options).items():
        if name.startswith("enable_") and isinstance(value, bool):
            setattr(options, name, False)
    options.enable_gelu = options.enable_gelu_approximation = True
    optimized = optimize_model(str(source), model_type="bert", optimization_options=options, opt_level=0)
    graph = optimized.model.graph
    fast = [node for node in graph.node if node.op_type == "FastGelu"]
    # ONNX shape inference does not know the contrib op; the quantizers need the float type past it.
    graph.value_info.extend(helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None) for node in fast)
    optimized.save_model_to_file(str(target))
    return len(fast)


def residual_sums(path: str | Path) -> int:
    """Rewrite, in place, each `Add` that ONNX Runtime would fuse into `SkipLayerNormalization` as a `Sum`.

    When a session loads a graph, ONNX Runtime fuses an `Add` of two same-shaped 3-D tensors (a
    transformer layer's residual connection) and the `LayerNormalization` after it into its
    `SkipLayerNormalization` kernel. On the CPU that kernel is several times slower than the two
    operators it replaces: onnxruntime 1.32, a (32, 64, 384) activation, 1 thread, six residual
    blocks in a row take 25.2 ms fused against 3.9 ms unfused, and 0.79 against 0.12 ms at batch 1
    (2 threads: 13.2 against 2.5-3.4 ms), on an AMD EPYC (Zen 4; `benchmarks/skip_layer_norm.py`).
    A two-input `Sum` computes exactly
    what `Add` does, broadcasting included, and the fusion only matches `Add`, so it no longer fires,
    whichever program later loads the file (Optimum, sentence-transformers, a plain session). Only the
    `Add`s this onnxruntime fuses are rewritten (found by loading the graph once): `Sum` spreads less
    well over threads than `Add`, so the others stay as they are.

    Returns:
        `int`: the number of `Add` nodes rewritten.
    """
    import tempfile

    import onnxruntime

    with tempfile.TemporaryDirectory() as folder:
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(Path(folder) / "loaded.onnx")
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        loaded = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
        fused = {node.output[0] for node in loaded.node if node.op_type == "SkipLayerNormalization"}
    model = onnx.load(str(path))
    producers = {name: node for node in model.graph.node for name in node.output}
    adds = [
        producers.get(node.input[0])
        for node in model.graph.node
        if node.op_type == "LayerNormalization" and node.output[0] in fused
    ]
    adds = [node for node in adds if node is not None and node.op_type == "Add"]
    for node in adds:
        node.op_type = "Sum"
    if adds:
        onnx.save(model, str(path))
    return len(adds)


def freeze_activation_ranges(path: str | Path, batches: Iterable[dict[str, np.ndarray]]) -> int:
    """Make a dynamically quantized graph static, in place: activation ranges come from calibration.

    Every `DynamicQuantizeLinear` of the main graph (which measures its input's range on each
    batch) becomes a `QuantizeLinear` with the scale and zero point of the range its input took on
    `batches` (min and max), run through the dynamic int8 graph itself, so that each range already sees
    the quantization error of the layers below it. Each integer MatMul, with its rescaling and
    bias, then becomes one `MatMulIntegerToFloat`, the kernel onnxruntime runs behind its dynamic
    quantizer: the static graph runs the same kernels without measuring ranges on each batch.

    Args:
        path (`str` or `Path`): A dynamically quantized `.onnx` file (rewritten).
        batches (`Iterable[dict[str, np.ndarray]]`): Calibration feeds, by input name.

    Returns:
        `int`: the number of activations frozen.
    """
    import onnxruntime

    model = onnx.load(str(path))
    nodes = [node for node in model.graph.node if node.op_type == "DynamicQuantizeLinear"]
    if not nodes:
        return 0
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    names = [node.input[0] for node in nodes]
    probe.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    session = onnxruntime.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    lows, highs = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)  # ranges always hold 0
    batches_seen = 0
    for feed in batches:
        batches_seen += 1
        for name, values in zip(names, session.run(names, feed), strict=True):
            lows[name], highs[name] = min(lows[name], float(values.min())), max(highs[name], float(values.max()))
    if not batches_seen:
        raise ValueError("freeze_activation_ranges: the calibration batches are empty; give at least one batch.")
    for node in nodes:
        source, (quantized, scale_name, zero_name) = node.input[0], node.output
        # DynamicQuantizeLinear's own rule: uint8, asymmetric, with 0 inside the range.
        low, high = lows[source], highs[source]
        scale = (high - low) / 255 or 1.0
        zero = np.clip(np.round(-low / scale), 0, 255)
        model.graph.initializer.extend(
            [
                numpy_helper.from_array(np.array(scale, dtype=np.float32), scale_name),
                numpy_helper.from_array(np.array(zero, dtype=np.uint8), zero_name),
            ]
        )
        node.op_type = "QuantizeLinear"
        node.ClearField("input")
        node.input.extend([source, scale_name, zero_name])
        node.ClearField("output")
        node.output.append(quantized)
    if _fuse_integer_matmuls(model.graph) and not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(path))
    return len(nodes)


def _fuse_integer_matmuls(graph: onnx.GraphProto) -> int:
    """Fold each `MatMulInteger -> Cast -> Mul(a_scale * b_scale) [-> Add(bias)]` into one `MatMulIntegerToFloat`.

    onnxruntime does this itself only behind a `DynamicQuantizeLinear`; behind a `QuantizeLinear`
    the nodes stay apart and cost the static graph its speed.
    """
    producer = {output: node for node in graph.node for output in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    constants = {tensor.name: tensor for tensor in graph.initializer}
    fused, removed = 0, set()
    for node in list(graph.node):
        if node.op_type != "MatMulInteger" or len(node.input) != 4:
            continue
        (cast,) = consumers.get(node.output[0], [None])
        if cast is None or cast.op_type != "Cast" or len(consumers.get(cast.output[0], [])) != 1:
            continue
        (mul,) = consumers[cast.output[0]]
        scales = producer.get(next((i for i in mul.input if i != cast.output[0]), ""))
        if mul.op_type != "Mul" or scales is None or scales.op_type != "Mul":
            continue
        a, b, a_zero, b_zero = node.input
        a_scale, b_scale = scales.input
        inputs, output = [a, b, a_scale, b_scale, a_zero, b_zero], mul.output[0]
        # A bias added right after (a constant vector) joins the kernel too.
        after = consumers.get(output, [])
        if len(after) == 1 and after[0].op_type == "Add":
            bias = next(i for i in after[0].input if i != output)
            if bias in constants and len(constants[bias].dims) == 1:
                inputs, output = [*inputs, bias], after[0].output[0]
                removed.add(id(after[0]))
        matmul = helper.make_node(
            "MatMulIntegerToFloat",
            inputs,
            [output],
            name=node.name,
            domain="com.microsoft",
        )
        graph.node.insert(list(graph.node).index(node), matmul)
        removed.update(id(n) for n in (node, cast, mul))
        if len(consumers[scales.output[0]]) == 1:
            removed.add(id(scales))
        fused += 1
    kept = [n for n in graph.node if id(n) not in removed]
    del graph.node[:]
    graph.node.extend(kept)
    return fused
