"""The runtime that runs an exported graph on the CPU: ONNX Runtime, or OpenVINO where it is installed.

Both read the same ONNX file, so the runtime is a choice made when the file is loaded, not when it
is written: `export_int8` records the one it chose (`ExportResult.runtime`, in `export_report.json`)
and every loader here (the helpers, `SentenceEmbedder`, the gate, `report.measure_models`) opens the
int8 file with it unless told otherwise. Optimum's and sentence-transformers' ONNX loaders use ONNX
Runtime whatever the record says; the file runs there too.

Why a second runtime: on Intel CPUs with AMX, ONNX Runtime runs int8 products on the tiles as u8 x s8
only and has no bf16 path there (benchmarks/README.md, "Know the limit"), while OpenVINO's CPU plugin
runs both int8 and bf16 on the tiles (oneDNN). On an Intel Xeon with AMX, 1 thread, batch 32, the
quickstart's teacher / student's static int8-weights file ran at 1.26x / 1.39x the speed of the model cast
to bf16 in PyTorch on OpenVINO bf16, and at 0.59x / 0.63x on ONNX Runtime: there `runtime="auto"` runs
static exports on OpenVINO bf16 (`variants.choose_runtime`). Measured on an AMD EPYC (Zen 4, AVX512-VNNI,
no AMX), 1 thread, the quickstart's teacher and 3-layer student at sequence 64 (`benchmarks/int8.py --openvino`,
two runs): OpenVINO runs the static int8 file (activation ranges frozen) 0.97-1.20x as fast as ONNX
Runtime at batch 32 and 1.07-1.16x slower at batch 1, and the dynamic file about 4x slower (it computes
each `DynamicQuantizeLinear` as written, not inside one int8 kernel). So OpenVINO is a candidate for
static graphs only, and `variant="fastest"` times it beside ONNX Runtime.

"openvino" runs with OpenVINO's fp32 inference precision, so that it computes what ONNX Runtime
computes (its default on AMX CPUs would run the graph's float parts in bf16); "openvino-bf16" asks
for bf16 there: the int8 products stay int8, and the float operations around them (normalisation,
softmax, GELU, and the attention's products in "int8-weights") run in bf16 where the CPU has bf16
instructions, in fp32 where it has none. Same AMD CPU, the static int8-all file, 1 thread, batch 32:
1.19-1.27x faster than ONNX Runtime, with accuracy 0.7807 against 0.7857 on "openvino" (student) and
0.8091 against 0.8055 (teacher); the export's gate scores the file on the runtime it keeps.
"""

from __future__ import annotations

import collections
import importlib.util
import json
import time
import warnings
from pathlib import Path

import numpy as np

RUNTIMES = ("onnxruntime", "openvino", "openvino-bf16")
NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "openvino-bf16": "OpenVINO bf16"}
REPORT_FILE = "export_report.json"


def installed(runtime: str) -> bool:
    return importlib.util.find_spec(runtime) is not None


def _check_threads(threads, caller: str):
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ValueError(f"{caller}(threads={threads!r}): give a whole number of threads, 1 or more, or None.")


class Session:
    """One graph loaded by a runtime: `input_names`, `output_names`, and `run(names, feed)`, which
    returns the outputs `names` (all when None) as numpy arrays, like `onnxruntime.InferenceSession.run`."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int | None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(names, feed)


class OpenVINOSession(Session):
    """The same interface on OpenVINO's CPU plugin (latency hint; inference precision "f32" or "bf16").

    The graph is compiled once for any input shape, and again, with every dimension fixed, for each input
    shape that has run long enough to pay for it: once the time spent at a shape exceeds what the first
    compile took, that shape gets its own compiled model (up to `SHAPES_COMPILED`, the least recently used
    dropped). With fixed shapes OpenVINO merges each activation quantization into its int8 product and picks
    the product's kernel (AMX, VNNI) when compiling, where the any-shape model picks at run time and keeps
    them apart: the quickstart student's static int8-weights export ran 1.23x faster at batch 32 and
    1.22x at batch 1 (1 thread, bf16, an Intel Xeon with AMX, benchmarks/README.md). Compiling costs at most the time
    already spent at that shape, so a shape that never recurs costs at most twice its time, and a recurring one
    (a server, a benchmark) runs at the fixed-shape speed.
    """

    SHAPES_COMPILED = 8

    def __init__(self, path: Path, threads: int | None, precision: str = "f32"):
        import openvino

        self.runtime = "openvino" if precision == "f32" else f"openvino-{precision}"
        self.settings = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
        if threads is not None:
            self.settings["INFERENCE_NUM_THREADS"] = threads
        self.core = openvino.Core()
        self.model = self.core.read_model(str(path))
        started = time.perf_counter()
        self.compiled = self.core.compile_model(self.model, "CPU", self.settings)
        self.compile_seconds = time.perf_counter() - started
        self.request = self.compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self.compiled.inputs]
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self.seconds_at = {}  # input shapes -> seconds run on the any-shape model
        self.fixed = collections.OrderedDict()  # input shapes -> request of their own compiled model

    def _fixed_request(self, shapes: tuple):
        """The request compiled for `shapes`, once the time run at them pays for compiling it; else None."""
        if shapes in self.fixed:
            self.fixed.move_to_end(shapes)
            return self.fixed[shapes]
        if self.seconds_at.get(shapes, 0.0) < self.compile_seconds:
            return None
        try:
            model = self.model.clone()
            model.reshape(dict(zip(self.input_names, map(list, shapes), strict=True)))
            request = self.core.compile_model(model, "CPU", self.settings).create_infer_request()
        except Exception:  # a graph that does not take these fixed shapes: it keeps running on the any-shape model
            self.seconds_at[shapes] = -float("inf")
            return None
        self.fixed[shapes] = request
        if len(self.fixed) > self.SHAPES_COMPILED:
            evicted, _ = self.fixed.popitem(last=False)
            self.seconds_at[evicted] = 0.0  # it pays for a compile again before it gets one
        return request

    def run(self, names: list[str] | None, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        inputs = {name: feed[name] for name in self.input_names}
        shapes = tuple(inputs[name].shape for name in self.input_names)
        fixed = self._fixed_request(shapes)
        request, started = self.request if fixed is None else fixed, time.perf_counter()
        request.infer(inputs)
        if fixed is None:  # the any-shape model's time at this shape, towards paying for a compile
            self.seconds_at[shapes] = self.seconds_at.get(shapes, 0.0) + time.perf_counter() - started
        # Copies: the request reuses its output buffers on the next call.
        return [request.get_tensor(name).data.copy() for name in names or self.output_names]


def open_session(
    path: str | Path, runtime: str | None = None, threads: int | None = None, caller: str = "open_session"
) -> Session:
    """`path` loaded by `runtime` (the one `export_int8` recorded for the file when None, `recorded_runtime`)
    on `threads` intra-op threads (the runtime's default, every core, when None)."""
    _check_threads(threads, caller)
    runtime = runtime or recorded_runtime(path)
    if runtime not in RUNTIMES:
        choices = ", ".join(map(repr, RUNTIMES))
        raise ValueError(f"{caller}(runtime={runtime!r}) is not supported: use one of {choices}.")
    if runtime.startswith("openvino"):
        if not installed("openvino"):
            raise ValueError(
                f"{caller}: {path} runs on OpenVINO (runtime={runtime!r}, asked for or recorded by its export), "
                "which is not installed: pip install openvino, or pass runtime='onnxruntime'."
            )
        if quantized_dynamically(path):  # the user's explicit choice: kept, but not silently slow
            warnings.warn(
                f"{caller}: {path} is quantized dynamically, which OpenVINO runs about 4x slower than ONNX Runtime "
                "(it computes each DynamicQuantizeLinear as written); pass runtime='onnxruntime', or export with "
                "mode='static' for OpenVINO.",
                stacklevel=3,
            )
        return OpenVINOSession(Path(path), threads, "bf16" if runtime == "openvino-bf16" else "f32")
    return Session(Path(path), threads)


def quantized_dynamically(path: str | Path) -> bool:
    """Whether the graph at `path` quantizes its activations as it runs (a dynamic int8 export)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return any(node.op_type == "DynamicQuantizeLinear" for node in graph.node)


def onnx_precision(path: str | Path) -> str:
    """ "int8" for a graph with 8-bit integer weights (a quantized export), else "fp32"."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    eight_bit = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    return "int8" if any(tensor.data_type in eight_bit for tensor in graph.initializer) else "fp32"


def recorded_runtime(path: str | Path) -> str:
    """The runtime `export_int8` chose for the int8 file at `path`, from the export's `export_report.json`
    (beside it, or one folder up for sentence-transformers' `onnx/`); "onnxruntime" for any other file."""
    path = Path(path)
    for folder in (path.parent, path.parent.parent):
        report = folder / REPORT_FILE
        if not report.is_file():
            continue
        try:
            record = json.loads(report.read_text())
        except (OSError, ValueError):
            return "onnxruntime"
        int8 = record.get("int8_file")
        if int8 and (folder / int8).resolve() == path.resolve():
            return record.get("runtime") or "onnxruntime"
        return "onnxruntime"
    return "onnxruntime"
