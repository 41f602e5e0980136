"""Rewrites of exported graphs that make int8 inference faster: a cheaper GELU, frozen activation ranges."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def use_tanh_gelu(source: str | Path, target: str | Path) -> int:
    """Write `source` to `target` with each exact (erf) GELU replaced by ONNX Runtime's tanh `FastGelu`.

    At batch 32 the erf GELU is about a tenth of an int8 MiniLM's time; the tanh form (Hendrycks &
    Gimpel's approximation, within ~1e-3 of the exact one) runs faster. Only the GELU patterns
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


def freeze_activation_ranges(
    path: str | Path, batches: Iterable[dict[str, np.ndarray]], *, percentile: float | None = None
) -> int:
    """Make a dynamically quantized graph static, in place: activation ranges come from calibration.

    Every `DynamicQuantizeLinear` of the main graph (which measures its input's range on each
    batch) becomes a `QuantizeLinear` with the scale and zero point of the range its input took on
    `batches`, run through the int8 graph itself. The int8 kernels that follow stay the same, so
    the static graph is never slower than the dynamic one, and saves the range pass per batch.

    Args:
        path (`str` or `Path`): A dynamically quantized `.onnx` file (rewritten).
        batches (`Iterable[dict[str, np.ndarray]]`): Calibration feeds, by input name.
        percentile (`float`, *optional*): Clip each range to this percentile of the values (e.g.
            99.99), averaged over batches, instead of their min and max.

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
    lows, highs = {name: [] for name in names}, {name: [] for name in names}
    for feed in batches:
        for name, values in zip(names, session.run(names, feed), strict=True):
            low, high = (
                (values.min(), values.max())
                if percentile is None
                else np.percentile(values, [100 - percentile, percentile])
            )
            lows[name].append(low)
            highs[name].append(high)
    if not lows[names[0]]:
        raise ValueError("freeze_activation_ranges: the calibration batches are empty; give at least one batch.")
    reduce_low, reduce_high = (min, max) if percentile is None else (np.mean, np.mean)
    for node in nodes:
        source, (quantized, scale_name, zero_name) = node.input[0], node.output
        # DynamicQuantizeLinear's own rule: uint8, asymmetric, with 0 inside the range.
        low, high = min(float(reduce_low(lows[source])), 0.0), max(float(reduce_high(highs[source])), 0.0)
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
    onnx.save(model, str(path))
    return len(nodes)
