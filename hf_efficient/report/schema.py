"""The report's types: one `Report` per run, one `ModelEntry` per model measured, with a JSON round trip.

`report.json` is `Report.to_dict()`; `Report.from_dict` also reads the reports of earlier versions,
whose technique names were `pkd`, `knowledge-distillation` and `albert-sharing` and whose kinds were
`pkd`, `shared` and `pruned` (now one vocabulary: the names of `hf_efficient.techniques`), and
which lack `latency_spread` and `timing` (read as not assessed). Values measured nowhere are None.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..techniques import TECHNIQUES, UNCHANGED

# Names of earlier report.json files -> today's.
_OLD_NAMES = {
    "pkd": "distillation",
    "knowledge-distillation": "distillation",
    "albert-sharing": "sharing",
    "shared": "sharing",
    "pruned": "pruning",
}


def _renamed(names: list[str]) -> list[str]:
    return list(dict.fromkeys(_OLD_NAMES.get(name, name) for name in names))


# When absolute latencies are flagged (`Timing.reliable`) and spreads printed (`report.render`).
# - BUSY_LOAD_PER_CORE: a 1-minute load average above the machine's cores means more threads wanted a
#   core than there were cores, so the timed threads waited their turn and the waiting is in the
#   milliseconds. The measurement itself adds at most its `threads` (<= cores) to the load, so that alone
#   stays under the line; the 25% margin absorbs the average's noise (helper threads, I/O waits) on a
#   machine running only the measurement with threads = cores. (It lags by about a minute: load that
#   starts in the middle of a measurement shows in the spread instead.)
# - SPREAD_UNRELIABLE: the timed rounds of a runner are each a mean of many calls; on a quiet machine
#   they agree within a few percent. When the slowest and fastest differ by more than a quarter of the
#   median, the machine's speed changed during the measurement (other work came or went, throttling),
#   and the milliseconds depend on when they were taken; the ratios, timed in turns, still hold.
# - SPREAD_SHOWN: from 10% on, a spread is printed next to its latency: it is then as large as the
#   differences a reader might compare, though not yet a sign of a disturbed run.
BUSY_LOAD_PER_CORE = 1.25
SPREAD_UNRELIABLE = 0.25
SPREAD_SHOWN = 0.10


@dataclass
class Energy:
    """Joules from the hardware's counters (see `report.measure.EnergyMeter`), None where unreadable."""

    training_joules: float | None = None
    per_1000_predictions_joules: float | None = None
    source: str | None = None


@dataclass
class ModelEntry:
    """One model of a report, measured side by side with the others.

    `latency_ms`, `latency_spread` and `speedup` are keyed by batch size (as a string, as in JSON);
    `latency_spread` is (slowest - fastest) / median of the timed rounds; `speedup` and
    `accuracy_retained` are against the report's reference model.
    """

    name: str
    path: str = ""
    format: str = "pytorch"  # "pytorch" (a saved folder) or "onnx" (a file)
    kind: str = "finetuned"  # "finetuned", "pretrained", a technique name, or "onnx" for an ONNX file of unknown origin
    techniques: list[str] = field(default_factory=list)
    settings: dict[str, dict] = field(default_factory=dict)  # technique -> what config.json records of it
    layers: int | None = None
    parameters: int | None = None
    size_mb: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    accuracy_retained: float | None = None
    latency_ms: dict[str, float] = field(default_factory=dict)
    latency_spread: dict[str, float] = field(default_factory=dict)
    speedup: dict[str, float] = field(default_factory=dict)
    gpu_throughput: float | None = None
    training_seconds: float | None = None
    energy: Energy = field(default_factory=Energy)
    source: str | None = None  # the model an export was made from
    precision: str = "fp32"  # of the weights the model runs: "bf16" (cast), "int8" (an ONNX graph of int8 weights)
    baseline_of: str | None = None  # a plain-PyTorch variant of this model, timed as a baseline, not made by the run
    export: dict | None = None  # backend, mode and variant of an export

    @classmethod
    def from_dict(cls, raw: dict) -> ModelEntry:
        raw = dict(raw)
        raw["energy"] = Energy(**(raw.get("energy") or {}))
        if "pkd" in (raw.get("techniques") or []):  # an earlier report's name for distillation with PKD's loss
            raw.setdefault("settings", {}).setdefault("distillation", {"method": "pkd"})
        raw["techniques"] = _renamed(raw.get("techniques") or [])
        raw["kind"] = _OLD_NAMES.get(raw.get("kind", "finetuned"), raw.get("kind", "finetuned"))
        return _known_fields(cls, raw)


@dataclass
class TaskInfo:
    """What the models were measured on: a task (see `hf_efficient.tasks`), data, split and metric."""

    dataset: str
    split: str
    rows: int | None = None
    metric: str = "accuracy"
    name: str = "text-classification"
    description: str | None = None  # what the data is, in words, for the card


@dataclass
class Hardware:
    cpu: str = ""
    cpu_threads: int | str | None = None
    gpu: str | None = None
    cpu_features: list[str] = field(default_factory=list)  # AVX512-VNNI, AVX512-BF16, AMX-INT8, ...


@dataclass
class Timing:
    """How far a report's absolute latencies can be trusted (see `report.measure.measure_latency`).

    `load` is the machine's 1-minute load average (the larger of before and after the measurement),
    `cores` the machine's CPUs, `threads` those the measurement used, `rounds` its timed rounds and
    `max_spread` the largest spread of any model at any batch size. `reliable` is False when the load
    or a spread exceeds the thresholds above (`reason` says which, in words that follow "latency
    was"), None when nothing was assessed (reports of earlier versions).
    """

    load: float | None = None
    cores: int | None = None
    threads: int | None = None
    rounds: int | None = None
    max_spread: float | None = None
    reliable: bool | None = None
    reason: str | None = None
    sequence_length: int | None = None  # tokens per timed row (padded to it); None in reports before 2026-12


@dataclass
class Report:
    """A run's measurements: every model side by side, the depth sweep, the plots and step times."""

    name: str
    task: TaskInfo
    models: list[ModelEntry]
    base_model: str | None = None
    hardware: Hardware = field(default_factory=Hardware)
    timing: Timing = field(default_factory=Timing)
    reference: str | None = None
    final: str | None = None
    techniques: list[str] = field(default_factory=list)
    depths: dict[str, dict[str, float]] = field(default_factory=dict)
    plots: list[str] = field(default_factory=list)
    steps: dict[str, float | None] = field(default_factory=dict)

    def __post_init__(self):
        if not self.models:
            raise ValueError("Report: models is empty; a report measures at least one model.")
        kinds = {*UNCHANGED, "onnx", *TECHNIQUES}
        for model in self.models:
            if model.kind not in kinds:
                raise ValueError(f"Report: model {model.name!r} has kind {model.kind!r}; use one of {sorted(kinds)}.")
            _check_numbers(model.metrics, f"model {model.name!r} metrics")
        metrics = {key for model in self.models for key in model.metrics}
        if metrics and self.task.metric not in metrics:
            raise ValueError(
                f"Report: task.metric={self.task.metric!r} is not among the models' metrics "
                f"({', '.join(sorted(metrics))})."
            )
        for source, by_depth in self.depths.items():
            _check_numbers(by_depth, f"depths[{source!r}]")
            if not all(str(depth).isdigit() for depth in by_depth):
                raise ValueError(f"Report: depths[{source!r}] must map layer counts to scores, got {by_depth!r:.80}.")
        names = [model.name for model in self.models]
        self.reference = self.reference or names[0]
        # By default the last model the run made: a baseline (a bf16 cast) is timed, not made.
        self.final = self.final or [model.name for model in self.models if not model.baseline_of][-1]
        for key in ("reference", "final"):
            if getattr(self, key) not in names:
                raise ValueError(f"Report: {key}={getattr(self, key)!r} names no model; use one of {names}.")

    @property
    def speed_baseline(self) -> str:
        """What speed-ups are against, in words: the reference, run the fastest plain-PyTorch way."""
        variants = [m.name for m in self.models if m.baseline_of == self.reference]
        if not variants:
            return f"`{self.reference}`"
        others = " and ".join(f"`{name}`" for name in variants)
        return f"the faster of `{self.reference}` and {others} (plain PyTorch) at each batch size"

    def model(self, name: str) -> ModelEntry:
        return next(model for model in self.models if model.name == name)

    @property
    def batch_sizes(self) -> list[str]:
        return sorted({size for model in self.models for size in model.latency_ms}, key=int)

    def to_dict(self) -> dict:
        # speed_baseline is derived (from_dict drops it), written so that a reader of report.json alone
        # knows what `speedup` is against.
        return {**dataclasses.asdict(self), "speed_baseline": self.speed_baseline}

    @classmethod
    def from_dict(cls, raw: dict) -> Report:
        """Build a report from `to_dict()`'s output or an earlier version's `report.json`."""
        if not isinstance(raw, dict) or not isinstance(raw.get("models"), list) or "task" not in raw:
            raise ValueError("Report.from_dict: expected a report.json mapping with 'task' and 'models'.")
        raw = dict(raw)
        raw["task"] = _known_fields(TaskInfo, raw["task"] if isinstance(raw["task"], dict) else {})
        raw["hardware"] = _known_fields(Hardware, raw.get("hardware") or {})
        raw["timing"] = _known_fields(Timing, raw.get("timing") or {})
        bad = next((model for model in raw["models"] if not isinstance(model, dict)), None)
        if bad is not None:
            raise ValueError(f"Report.from_dict: each of 'models' is a mapping of a model's fields, got {bad!r:.60}.")
        raw["models"] = [ModelEntry.from_dict(model) for model in raw["models"]]
        raw["techniques"] = _renamed(raw.get("techniques") or [])
        return _known_fields(cls, raw)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | Path) -> Report:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"No report at {path}: run a recipe first (hf-efficient run RECIPE), it writes one.")
        try:
            raw = json.loads(path.read_text())
        except (ValueError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not a report.json (not JSON: {error}); give the report a run wrote.") from None
        return cls.from_dict(raw)


def _check_numbers(values, what: str) -> None:
    """Refuse scores that are not finite numbers (a card would print them, and the Hub's model-index store them)."""
    if not isinstance(values, dict):
        raise ValueError(f"Report: {what} must be a mapping of names to numbers, got {values!r:.60}.")
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"Report: {what}[{key!r}]={value!r:.40} is not a finite number.")


def _known_fields(cls, raw: dict):
    """`cls(**raw)` keeping only its fields (a newer report's extra keys are not an error)."""
    names = {f.name for f in dataclasses.fields(cls)}
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in raw and _required(f)]
    if missing:
        raise ValueError(f"{cls.__name__}: missing {', '.join(missing)} in the report.")
    return cls(**{key: value for key, value in raw.items() if key in names})


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
