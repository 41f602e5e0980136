"""`Int8ExportConfig`: the settings of `export_int8`, shared by the Python API, recipes and the CLI."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields

from .runtime import RUNTIMES

MODES = ("dynamic", "static")
TARGETS = ("avx512_vnni", "avx512", "avx2", "arm64")
BACKENDS = ("auto", "optimum", "onnxruntime")
# The graphs of `variants.VARIANTS` (spelled out here: that module imports onnx), and the two ways to choose one.
VARIANT_NAMES = ("int8-all", "int8-weights", "int8-fused")
VARIANT_CHOICES = ("auto", "fastest", *VARIANT_NAMES)
RUNTIME_CHOICES = ("auto", *RUNTIMES)


def _one_of(choices: tuple[str, ...]) -> str:
    return " or ".join(", ".join(map(repr, choices)).rsplit(", ", 1))


@dataclass
class Int8ExportConfig:
    """Settings of `export_int8`, the one place that defines, documents and checks them.

    The recipe's `export:` section and the CLI's `export` flags are built from these fields (each
    field's `metadata` holds the argparse `help`, and `choices` where the values are a closed set),
    so that a setting is added, defaulted and validated once. The data an export needs (tokenizer,
    evaluation and calibration rows) are arguments of `export_int8`, not settings.

    Args:
        mode (`str`, defaults to "dynamic"): "dynamic" (weights int8, activation ranges measured on each
            batch) or "static" (the same graph with activation ranges frozen from calibration rows,
            which saves that measurement).
        per_channel (`bool`, defaults to True): One scale per output channel of each weight.
        approximate_gelu (`bool`, defaults to False): Compute the int8 model's GELUs with the tanh
            approximation, ONNX Runtime's `FastGelu` (the fp32 `model.onnx` keeps the exact GELU). Off by default:
            ONNX Runtime fuses the exact GELU into its `Gelu` kernel, 1.5x faster than `FastGelu` on an AMD Zen 5
            (benchmarks/README.md), and the model keeps the function it was trained with.
        target (`str`, defaults to "avx512_vnni"): CPU to quantize for, one of `TARGETS`: "avx2" avoids the overflow
            of u8 x s8 products without VNNI, with 7-bit s8 weights (`reduce_range`) on ONNX Runtime's quantizer and
            u8 weights with Optimum's (its `AutoQuantizationConfig.avx2`); the others write s8 weights, the same graph
            with ONNX Runtime's quantizer, and Optimum's `AutoQuantizationConfig` of that name with Optimum.
        exclude (`list[str]`, defaults to `[]`): ONNX node names to keep in fp32.
        max_accuracy_drop (`float`, defaults to 0.01): Largest accepted loss of int8 against PyTorch in
            the head's gate measure (accuracy: 0.01 = 1 point; agreement with PyTorch: 1 - agreement, e.g.
            a mean cosine >= 0.99 for bare encoders and sentence-transformers models), checked when
            `export_int8` gets an evaluation set.
        retry (`bool`, defaults to True): On a failed accuracy check, retry with per-channel scales and
            the exact GELU, then also with the last MatMuls (the most sensitive) in fp32.
        allow_fallback (`bool`, defaults to False): Let static mode fall back to dynamic on graphs with
            control-flow subgraphs, whose inner activations cannot be calibrated.
        calibration_samples (`int`, defaults to 256): Static mode calibrates on the first this many
            rows of the calibration set (a few hundred are enough; more only widen the ranges).
        backend (`str`, defaults to "auto"): "optimum", "onnxruntime", or "auto" (Optimum where it is
            installed and the model has no shared weights).
        variant (`str`, defaults to "auto"): Which int8 graph to write: "int8-all" (every MatMul in int8),
            "int8-weights" (the attention's activation products stay fp32), "int8-fused" (ONNX
            Runtime's transformer fusions first), "auto": the one chosen for this CPU's instruction
            sets (see `export.variants.choose_variant`), or "fastest": every graph written and timed
            on this CPU, side by side with the model in plain PyTorch, and the fastest kept, with a
            warning where PyTorch was faster (`export.fastest`; adds seconds to the export). The
            result records which and why.
        runtime (`str`, defaults to "auto"): What runs the int8 file (`export.runtime`): "onnxruntime",
            "openvino" (static mode only: it runs dynamic graphs about 4x slower), "openvino-bf16"
            (the same, with the float operations around the int8 products in bf16 where the CPU has
            bf16), or "auto": ONNX Runtime, except in static mode where OpenVINO is installed: on CPUs with
            AMX, OpenVINO bf16 (`export.variants.choose_runtime`), and with `variant="fastest"` each graph
            timed on OpenVINO too (and OpenVINO bf16 where the CPU has bf16), the fastest kept. The result
            and `export_report.json` record
            it, and the helpers load the file with it.
        timing_threads (`int`, defaults to 1): CPU threads `variant="fastest"` times the graphs and plain
            PyTorch on: as many as the model will be served with (which graph and runtime win can
            change with the thread count; the helpers use every core unless given `threads=`). At
            most this machine's cores; only with `variant="fastest"`.
    """

    mode: str = field(
        default="dynamic",
        metadata={
            "help": "dynamic: activation ranges measured on each batch; static: frozen from calibration rows",
            "choices": MODES,
        },
    )
    per_channel: bool = field(
        default=True, metadata={"help": "one int8 scale per output channel of each weight, not one per weight"}
    )
    approximate_gelu: bool = field(
        default=False, metadata={"help": "tanh GELU (FastGelu) in the int8 model; the exact one is not slower"}
    )
    target: str = field(
        default="avx512_vnni",
        metadata={
            "help": "CPU to quantize for: avx2 avoids u8s8 overflow without VNNI (7-bit s8 weights, or u8 weights "
            "with Optimum); the others give one graph on ONNX Runtime's quantizer, Optimum's config of that name "
            "with Optimum",
            "choices": TARGETS,
        },
    )
    exclude: list[str] = field(default_factory=list, metadata={"help": "ONNX node names to keep in fp32"})
    max_accuracy_drop: float = field(
        default=0.01,
        metadata={"help": "largest accepted loss of int8 against PyTorch in the head's measure (0.01 = 1 point)"},
    )
    retry: bool = field(
        default=True,
        metadata={
            "help": "on too large a loss, retry with per-channel scales and exact GELU, then the last MatMuls in fp32"
        },
    )
    allow_fallback: bool = field(
        default=False, metadata={"help": "let static mode fall back to dynamic on graphs it cannot calibrate"}
    )
    calibration_samples: int = field(
        default=256, metadata={"help": "how many calibration rows static mode uses (the first ones)"}
    )
    backend: str = field(
        default="auto",
        metadata={
            "help": "auto: Optimum where installed, it knows the model type and task, and no weights are shared; "
            "else torch.onnx and onnxruntime",
            "choices": BACKENDS,
        },
    )

    variant: str = field(
        default="auto",
        metadata={
            "help": "int8 graph: int8-all, int8-weights (attention products fp32), int8-fused; "
            "auto: chosen by the CPU's instruction sets; fastest: each timed on this CPU, the fastest kept",
            "choices": VARIANT_CHOICES,
        },
    )

    runtime: str = field(
        default="auto",
        metadata={
            "help": "what runs the int8 file: onnxruntime, openvino or openvino-bf16 (static mode only); "
            "auto: onnxruntime; in static mode where openvino is installed, openvino-bf16 on CPUs with AMX "
            "(not for int8-fused), and with variant fastest the fastest",
            "choices": RUNTIME_CHOICES,
        },
    )

    timing_threads: int = field(
        default=1,
        metadata={"help": "threads variant fastest times the graphs on: as many as the model will be served with"},
    )

    def __post_init__(self):
        if self.exclude is None or isinstance(self.exclude, tuple):
            self.exclude = list(self.exclude or ())
        for spec in fields(self):
            value, name = getattr(self, spec.name), spec.name
            if "choices" in spec.metadata and value not in spec.metadata["choices"]:
                close = difflib.get_close_matches(str(value), spec.metadata["choices"], n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"Int8ExportConfig({name}={value!r}) is not supported: use {_one_of(spec.metadata['choices'])}."
                    + hint
                )
            if spec.type == "bool" and not isinstance(value, bool):
                raise ValueError(f"Int8ExportConfig({name}={value!r}): use True or False.")
        if not isinstance(self.exclude, list) or not all(isinstance(node, str) for node in self.exclude):
            raise ValueError(
                f"Int8ExportConfig(exclude={self.exclude!r}): a list of ONNX node names, e.g. ['/classifier/MatMul']."
            )
        if self.runtime.startswith("openvino") and self.variant == "int8-fused":
            raise ValueError(
                f"Int8ExportConfig(variant='int8-fused', runtime={self.runtime!r}): OpenVINO cannot load int8-fused "
                "(ONNX Runtime's own operators, QAttention); use runtime='onnxruntime', or another variant."
            )
        if self.runtime.startswith("openvino") and self.mode != "static":
            raise ValueError(
                f"Int8ExportConfig(runtime={self.runtime!r}) needs mode='static': OpenVINO runs the dynamic graph's "
                "per-batch quantization about 4x slower than ONNX Runtime; or use runtime='onnxruntime'."
            )
        if self.allow_fallback and self.mode != "static":
            raise ValueError(
                "Int8ExportConfig(allow_fallback=True) lets static mode fall back to dynamic; with "
                f"mode={self.mode!r} there is nothing to fall back from: drop it, or set mode='static'."
            )
        threads = self.timing_threads
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"Int8ExportConfig(timing_threads={threads!r}): a number of threads >= 1, e.g. 1.")
        if threads != 1 and self.variant != "fastest":
            raise ValueError(
                f"Int8ExportConfig(timing_threads={threads}) times the graphs of variant='fastest' only "
                f"(variant={self.variant!r} times nothing): set variant='fastest', or leave it at 1."
            )
        drop = self.max_accuracy_drop
        if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not 0 <= drop <= 1:
            raise ValueError(f"Int8ExportConfig(max_accuracy_drop={drop!r}): a fraction in [0, 1], e.g. 0.01.")
        samples = self.calibration_samples
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise ValueError(f"Int8ExportConfig(calibration_samples={samples!r}): a number of rows >= 1, e.g. 256.")
        default = type(self).__dataclass_fields__["calibration_samples"].default
        if self.mode == "dynamic" and samples != default:  # ignored, it would look applied
            raise ValueError(
                f"Int8ExportConfig(calibration_samples={samples}) sets static mode's calibration, and mode='dynamic' "
                "measures ranges at run time: set mode='static', or leave calibration_samples out."
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> Int8ExportConfig:
        """The config that `to_dict` wrote, e.g. read back from an `export_report.json`."""
        names = [f.name for f in fields(cls)]
        unknown = [key for key in settings if key not in names]
        if unknown:
            raise ValueError(f"Int8ExportConfig.from_dict: unknown settings {unknown}; the fields are {names}.")
        return cls(**settings)
