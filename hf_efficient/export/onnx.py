"""ONNX export and int8 quantization with `torch.onnx` and `onnxruntime.quantization` (both stacks)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from .runtime import open_session

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# The MatMul weights and the embedding tables (Gather), which are most of an encoder's bytes.
QUANTIZED_OPS = ["MatMul", "Gather"]
# torch.onnx's warning for `tensor[index_a, index_b]`, which it lowers to Reshape/Transpose/Concat/Gather.
_ADVANCED_INDEXING_WARNING = (
    r"Exporting aten::index operator of advanced indexing in opset \d+ is achieved by combination of multiple ONNX "
    r"operators, including Reshape, Transpose, Concat, and Gather\. If indices include negative values, the exported "
    r"graph will produce incorrect results\."
)


class _NamedOutputs(nn.Module):
    """Positional inputs in, the named outputs out: the signature `torch.onnx.export` traces."""

    def __init__(self, model: nn.Module, input_names: list[str], output_names: Sequence[str]):
        super().__init__()
        self.model, self.input_names, self.output_names = model, input_names, list(output_names)

    def forward(self, *inputs):
        outputs = self.model(**dict(zip(self.input_names, inputs, strict=True)))
        return tuple(outputs[name] for name in self.output_names)


def _example(names: list[str], shape: tuple[int, ...], device) -> list[torch.Tensor]:
    example = [torch.ones(shape, dtype=torch.long, device=device) for _ in names]
    if "attention_mask" in names:
        # A padded row: with an all-ones mask, transformers 5 traces an SDPA graph without any mask.
        example[names.index("attention_mask")][1, ..., shape[-1] // 2 :] = 0
    return example


def _dynamic_axes(module: nn.Module, names: list[str], shapes: list[tuple[int, ...]], device) -> dict:
    """Name every axis of the inputs, and each output axis that follows an input axis between two shapes."""
    axis_names = ["batch", "choices", "sequence"] if len(shapes[0]) == 3 else ["batch", "sequence"]
    axes = {name: dict(enumerate(axis_names)) for name in names}
    first, second = (module(*_example(names, shape, device)) for shape in shapes)
    for name, a, b in zip(module.output_names, first, second, strict=True):
        axes[name] = {
            i: axis_names[shapes[0].index(size)]
            for i, (size, other) in enumerate(zip(a.shape, b.shape, strict=True))
            if size != other
        }
    return axes


def inline_shared_initializers(model: onnx.ModelProto) -> int:
    """Make every node read shared weights from their initializer rather than through `Identity`.

    The exporter writes a weight used by several layers once and feeds its other uses through
    `Identity` nodes; `quantize_dynamic` leaves the weights behind those as fp32 copies. Returns the
    number of `Identity` nodes removed.
    """
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    outputs = {output.name for output in graph.output}
    renamed = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "Identity" and node.input[0] in initializers and node.output[0] not in outputs
    }
    kept = [node for node in graph.node if not (node.op_type == "Identity" and node.output[0] in renamed)]
    for node in kept:
        for i, name in enumerate(node.input):
            if name in renamed:
                node.input[i] = renamed[name]
    del graph.node[:]
    graph.node.extend(kept)
    return len(renamed)


@torch.no_grad()
def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    opset: int = 17,
    max_length: int = 16,
    output_names: Sequence[str] = ("logits",),
    choices: bool = False,
) -> Path:
    """Export a model's named outputs to ONNX, each shared weight stored once.

    Uses the TorchScript exporter (`dynamo=False`): the dynamo exporter writes a weight once per use.
    Every input axis is dynamic, and so is each output axis that follows one (batch, choices, sequence).

    Args:
        model (`PreTrainedModel`): An encoder, bare or with a task head.
        path (`str` or `Path`): The `.onnx` file to write.
        opset (`int`): ONNX opset.
        max_length (`int`): Sequence length of the example inputs.
        output_names (`Sequence[str]`): The model outputs to export, e.g. `("start_logits", "end_logits")`.
        choices (`bool`): Inputs of shape (batch, choices, sequence), as multiple-choice heads take.
    """
    model = model.eval()
    accepted = inspect.signature(model.forward).parameters
    # Like Optimum: token types only where the model has more than one (not RoBERTa or DeBERTa-v2).
    takes_types = getattr(model.config, "type_vocab_size", 0) > 1
    names = [name for name in INPUT_NAMES if name in accepted and (name != "token_type_ids" or takes_types)]
    module = _NamedOutputs(model, names, output_names).eval()  # the exporter restores this mode on the model
    # Two shapes that differ in every axis tell which output axes follow which input axis.
    shapes = [(2, 3, max_length), (3, 4, max_length + 1)] if choices else [(2, max_length), (3, max_length + 1)]
    dynamic = _dynamic_axes(module, names, shapes, model.device)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Not true of our graphs. The one such index is transformers 5's attention mask
        # (masking_utils.padding_mask_function: `padding_mask[batch_idx, kv_idx]`, from sdpa_mask), whose
        # indices are arange(batch) and arange(sequence) + kv_offset, and kv_offset is 0 without a cache:
        # never negative. (transformers 4.57 builds the mask without indexing: no warning there.)
        warnings.filterwarnings("ignore", message=_ADVANCED_INDEXING_WARNING, category=UserWarning)
        torch.onnx.export(
            module,
            tuple(_example(names, shapes[0], model.device)),
            str(path),
            input_names=names,
            output_names=list(output_names),
            dynamic_axes=dynamic,
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(path))
    if inline_shared_initializers(proto):
        onnx.save(proto, str(path))
    return path


def quantize_int8_dynamic(
    fp32_path: str | Path,
    int8_path: str | Path,
    *,
    per_channel: bool = True,
    reduce_range: bool = False,
    exclude: Sequence[str] = (),
    op_types: Sequence[str] = tuple(QUANTIZED_OPS),
) -> Path:
    """Dynamic int8 quantization of the MatMuls and embeddings (activations quantized at run time).

    Like Optimum's quantizer, it also quantizes the attention's activation-by-activation MatMuls.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(fp32_path),
        str(int8_path),
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        reduce_range=reduce_range,
        nodes_to_exclude=list(exclude),
        op_types_to_quantize=list(op_types),
        extra_options={"MatMulConstBOnly": False},
    )
    return Path(int8_path)


def onnx_weight_bytes(path: str | Path) -> int:
    """Bytes of the weights an ONNX model stores, wherever they are: initializers, constants, external data.

    Weights are the floating-point and 8-bit tensors; integer shape and index constants, which grow
    with the number of nodes rather than with the weights, are left out.
    """
    model = onnx.load(str(path), load_external_data=True)
    tensors = list(model.graph.initializer)
    tensors += [a.t for node in model.graph.node if node.op_type == "Constant" for a in node.attribute if a.t.dims]
    arrays = (numpy_helper.to_array(tensor) for tensor in tensors)
    return int(sum(a.nbytes for a in arrays if a.dtype.kind == "f" or a.dtype.itemsize == 1))


def run_onnx_outputs(
    path: str | Path, inputs: dict[str, np.ndarray], runtime: str | None = None
) -> dict[str, np.ndarray]:
    """Every output of an exported model on `inputs`, by name (the inputs it takes are picked from `inputs`), on
    `runtime` (`export.runtime`; the one `export_int8` chose for the file when None)."""
    session = open_session(path, runtime, caller="run_onnx")
    feed = {name: np.asarray(inputs[name], dtype=np.int64) for name in session.input_names}
    return dict(zip(session.output_names, session.run(None, feed), strict=True))


def run_onnx(path: str | Path, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Logits of an exported model on `inputs` (the names it takes are picked from `inputs`)."""
    return run_onnx_outputs(path, inputs)["logits"]
