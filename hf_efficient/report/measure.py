"""Measuring models side by side: parameters, size on disk, CPU latency, GPU throughput and energy."""

from __future__ import annotations

import copy
import dataclasses
import glob
import json
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from ..encoders import UnsupportedModelError, encoder_family
from ..export.int8 import onnx_outputs
from ..export.runtime import REPORT_FILE, onnx_precision, open_session
from ..metrics import evaluate_model, score_predictions
from ..provenance import CONFIG_KEY
from ..tasks import DEFAULT_TASK, Task, get_task
from ..techniques import TECHNIQUES, kind_of
from .cpu import check_threads, cpu_features, cpu_name, has_fast_bf16, usable_cores
from .schema import BUSY_LOAD_PER_CORE, SPREAD_UNRELIABLE, Energy, Hardware, ModelEntry, Timing

POWERCAP = "/sys/class/powercap"
# Bytes of the weights themselves; tokenizer and config files are the same for every variant.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".onnx", ".onnx_data")


def weights_size_mb(files: list[str | Path] | str | Path) -> float:
    """Megabytes (1e6 bytes) of the weight files: one file, or every weight file of a folder."""
    paths = [Path(f) for f in (files if isinstance(files, list) else [files])]
    if len(paths) == 1 and paths[0].is_dir():
        paths = [p for p in paths[0].iterdir() if p.suffix in WEIGHT_SUFFIXES]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        raise ValueError(f"weights_size_mb: no weight file at {missing or files}; save or export the model first.")
    return sum(p.stat().st_size for p in paths) / 1e6


def onnx_layers_and_parameters(path: Path) -> tuple[int | None, int | None]:
    """An exported ONNX file's layers and parameters, from the `config.json` and `export_report.json` that the
    export writes beside it (a sentence-transformers folder: above its onnx/ folder); None where they do not say.
    Not counted in the graph: its initializers and constants do not map one to one onto the model's parameters."""
    found = {}
    for name in ("config.json", REPORT_FILE):
        file = next((f / name for f in (path.parent, path.parent.parent) if (f / name).is_file()), None)
        found[name] = json.loads(file.read_text()) if file else {}
    return found["config.json"].get("num_hidden_layers"), found[REPORT_FILE].get("parameters")


def pytorch_runner(model: torch.nn.Module) -> Callable[[dict], None]:
    """A function that runs `model` on a feed of numpy arrays, without gradients.

    On a GPU it waits for the forward to finish, so that timing a call times the work.
    """
    model.eval()
    device = next(model.parameters()).device

    @torch.no_grad()
    def run(feed: dict[str, np.ndarray]):
        model(**{name: torch.from_numpy(array).to(device) for name, array in feed.items()})
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return run


def onnx_runner(path: str | Path, threads: int, runtime: str | None = None) -> Callable[[dict], None]:
    """A function that runs an ONNX graph on `threads` CPU threads (inputs it lacks are ignored), on
    `runtime` (`export.runtime`; the one `export_int8` chose for the file when None)."""
    session = open_session(path, runtime, threads, "onnx_runner")
    names = session.input_names

    def run(feed: dict[str, np.ndarray]):
        session.run(None, {name: feed[name] for name in names})

    return run


class Latency(dict):
    """What `measure_latency` measured: a dict of name -> batch size -> median milliseconds, plus

    - `spread`: name -> batch size -> (slowest - fastest) / median of the timed rounds;
    - `timing`: a `Timing`, the machine's load and whether the absolute milliseconds can be trusted.
    """

    def __init__(self, medians=(), spread: dict | None = None, timing: Timing | None = None):
        super().__init__(medians)
        self.spread, self.timing = spread or {}, timing or Timing()


def machine_load() -> float | None:
    """The machine's 1-minute load average, or None where the system does not tell (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def assess_timing(spread: dict, load: float | None, *, threads: int, rounds: int, cores: int | None = None) -> Timing:
    """Whether absolute latencies with these spreads, timed under this load on `cores` CPUs (default: this
    machine's), can be trusted: see `Timing` and the thresholds in `report.schema`."""
    cores = cores or usable_cores()
    worst = max(((s, name, size) for name, by_size in spread.items() for size, s in by_size.items()), default=None)
    reasons = []
    if load is not None and load > BUSY_LOAD_PER_CORE * cores:
        reasons.append(f"measured while the machine was busy (load {load:.1f} on {cores} cores)")
    if worst is not None and worst[0] > SPREAD_UNRELIABLE:
        reasons.append(f"timed in rounds up to {worst[0]:.0%} apart (`{worst[1]}`, batch {worst[2]})")
    return Timing(
        load=None if load is None else round(load, 2),
        cores=cores,
        threads=threads,
        rounds=rounds,
        max_spread=None if worst is None else round(worst[0], 3),
        reliable=not reasons,
        reason=" and ".join(reasons) or None,
    )


def measure_latency(
    runners: dict[str, Callable[[dict], None]],
    feeds: dict[int, dict[str, np.ndarray]],
    *,
    threads: int,
    seconds: float = 3.0,
    rounds: int = 5,
    warmup: float | None = None,
) -> Latency:
    """Median milliseconds per batch of each runner at each batch size, measured side by side.

    The runners take turns within each round (after `warmup` seconds of calls each), so that a machine that
    slows down or speeds up during the measurement affects all of them alike; ratios between
    runners of one call are what to report. `seconds` bounds the time timed per runner and batch size
    (the warm-up, `warmup`, comes on top).
    The result also holds how far the rounds spread and the machine's load (see `Latency`), which
    say whether the absolute milliseconds can be trusted too.

    Args:
        runners (`dict[str, Callable]`): Name -> function of a feed (see `pytorch_runner`, `onnx_runner`).
        feeds (`dict[int, dict]`): Batch size -> numpy inputs with that many rows.
        threads (`int`): CPU threads for PyTorch (ONNX sessions get theirs when built).
        seconds (`float`): Time budget per runner and batch size.
        rounds (`int`): Timed rounds.
        warmup (`float`, *optional*): Seconds of untimed calls per runner and batch size first, then one
            more, which sizes the rounds (three calls at least); two thirds of `seconds`, at most 2, when None:
            long enough for OpenVINO to compile the shape for itself (0.2-0.7 s for a MiniLM).
    """
    warmup = min(2.0, seconds * 2 / 3) if warmup is None else warmup
    torch.set_num_threads(threads)
    load_before = machine_load()
    latency = {name: {} for name in runners}
    spread = {name: {} for name in runners}
    for size, feed in feeds.items():
        # Warm-up calls each, for `warmup` seconds and then one more: the first also allocates (ONNX Runtime's
        # arena, oneDNN's kernels) and can take several times a call's time, and OpenVINO compiles a shape
        # that keeps recurring for it (`export.runtime.OpenVINOSession`); the last tells how many calls fit
        # in the time budget.
        repeats = {}
        for name, run in runners.items():
            run(feed)
            deadline = time.perf_counter() + warmup
            while True:
                run(feed)
                if time.perf_counter() >= deadline:
                    break
            started = time.perf_counter()  # one more call, after any compile the warm-up set off
            run(feed)
            repeats[name] = max(1, int(seconds / rounds / max(time.perf_counter() - started, 1e-6)))
        timings = {name: [] for name in runners}
        for _ in range(rounds):
            for name, run in runners.items():
                started = time.perf_counter()
                for _ in range(repeats[name]):
                    run(feed)
                timings[name].append((time.perf_counter() - started) / repeats[name])
        for name, values in timings.items():
            median = statistics.median(values)
            latency[name][size] = median * 1000
            spread[name][size] = (max(values) - min(values)) / median if median > 0 else 0.0
    loads = [load for load in (load_before, machine_load()) if load is not None]
    timing = assess_timing(spread, max(loads, default=None), threads=threads, rounds=rounds)
    return Latency(latency, spread, timing)


@torch.no_grad()
def gpu_throughput(model: torch.nn.Module, feed: dict[str, np.ndarray], seconds: float = 3.0) -> float | None:
    """Rows per second of `model` on the first CUDA device under bf16 autocast, or None without a GPU."""
    if not torch.cuda.is_available():
        return None
    model = model.to("cuda").eval()
    inputs = {name: torch.from_numpy(array).to("cuda") for name, array in feed.items()}
    calls = 0
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(**inputs)
        torch.cuda.synchronize()
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            model(**inputs)
            calls += 1
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    model.to("cpu")
    return calls * len(next(iter(feed.values()))) / elapsed


class EnergyMeter:
    """Joules used while the `with` block runs, from the hardware's counters.

    NVML's total-energy counter on NVIDIA GPUs (when `pynvml` is installed) and RAPL under
    /sys/class/powercap on CPUs (package domains). Where neither is readable, `joules` stays None and
    `source` says why, so that reports print "not measured" rather than a guess.

    Example:
        ```python
        >>> with EnergyMeter() as meter:
        ...     trainer.train()
        >>> meter.joules, meter.source
        ```
    """

    def __init__(self):
        self.joules: float | None = None
        self.source: str | None = None
        self._readers = _energy_readers()

    def __enter__(self) -> EnergyMeter:
        self._start = {name: read() for name, (read, _) in self._readers.items()}
        return self

    def __exit__(self, *exc_info):
        if not self._readers:
            return
        total = 0.0
        for name, (read, wrap) in self._readers.items():
            delta = read() - self._start[name]
            total += delta + wrap if delta < 0 else delta  # RAPL counters wrap around
        self.joules, self.source = total, " + ".join(sorted({n.split(":")[0] for n in self._readers}))


def _energy_readers() -> dict[str, tuple[Callable[[], float], float]]:
    """Name -> (read joules, wrap-around range in joules) of every energy counter this machine exposes."""
    readers = {}
    for domain in sorted(glob.glob(f"{POWERCAP}/intel-rapl:[0-9]*")):
        if domain.count(":") != 1:  # sub-domains (core, dram) are inside their package's count
            continue
        counter, wrap_file = Path(domain, "energy_uj"), Path(domain, "max_energy_range_uj")
        try:
            float(counter.read_text())
            wrap = float(wrap_file.read_text()) / 1e6
        except (OSError, ValueError):  # often readable by root only
            continue
        readers[f"RAPL:{Path(domain).name}"] = (lambda counter=counter: float(counter.read_text()) / 1e6, wrap)
    if torch.cuda.is_available():
        try:
            import pynvml

            pynvml.nvmlInit()
            for index in range(torch.cuda.device_count()):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)  # raises where unsupported
                readers[f"NVML:{index}"] = (
                    lambda handle=handle: pynvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000,
                    float("inf"),
                )
        except Exception:  # no pynvml, no driver support: the report says "not measured"
            pass
    return readers


class Measurements(list):
    """What `measure_models` measured: a list of one `ModelEntry` per model, plus `timing` (a `Timing`)."""

    def __init__(self, entries=(), timing: Timing | None = None):
        super().__init__(entries)
        self.timing = timing or Timing()


def measure_models(
    models: dict[str, str | Path],
    dataset,
    *,
    task: str | Task = DEFAULT_TASK,
    scoring: dict | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    sequence_length: int = 64,
    threads: int | None = None,
    seconds: float = 3.0,
    bf16_baseline: bool | None = None,
) -> Measurements:
    """Measure models side by side on a tokenized test split; the first one is the reference.

    The reference also runs in bf16 (its weights cast: what a user tries first) when the CPU has bf16
    instructions, as the entry `<reference>-bf16`, and speed-ups are against the faster of the
    reference's plain-PyTorch runs, so that no compressed model looks fast against a slow baseline.

    Every model is evaluated and its files weighed before any latency is timed, and the latency of
    all of them is timed in turns in one call, so that their ratios hold on a busy machine too.

    Args:
        models (`dict[str, str | Path]`): Name -> a saved model folder (PyTorch) or an `.onnx` file.
        dataset (`datasets.Dataset`): Tokenized rows with the task's label columns.
        task (`str` or `Task`): The task of the models (see `hf_efficient.tasks`): its head loads the
            folders, its metrics score them and its `metric` is the one retained against the first.
        scoring (`dict`, *optional*): More arguments of `metrics.score_predictions` (question answering:
            `examples`, the untokenized rows; token classification: `label_names` for ONNX files).
        batch_sizes (`Sequence[int]`): Batch sizes of the CPU latency measurement; none: the models are
            scored and weighed, not timed.
        sequence_length (`int`): Tokens per row in the latency measurement, at most the rows' own (the timing
            records what was timed).
        threads (`int`, *optional*): CPU threads (default: every core this process may use).
        seconds (`float`): Time spent per model and batch size.
        bf16_baseline (`bool`, *optional*): Time the reference in bf16 too (default: when the CPU has
            AVX512-BF16, AMX or ARM bf16 instructions).

    Returns:
        `Measurements`: a list of `ModelEntry`, per model, metrics, size, latency, its spread and
        speed-up per batch size, the task's metric retained against the first, GPU throughput and energy (None
        where not measured); its `timing` says whether the absolute latencies can be trusted.
    """
    if not models:
        raise ValueError("measure_models: give at least one model folder or .onnx file.")
    missing = [f"{name}={str(path)!r}" for name, path in models.items() if not Path(path).exists()]
    if missing:  # before minutes of evaluating the others
        raise ValueError(f"measure_models: {', '.join(missing)} does not exist; give a model folder or an .onnx file.")
    task = get_task(task) if isinstance(task, str) else task
    scoring = {**(scoring or {}), "task": task.name}
    threads = threads or usable_cores()
    check_threads(threads, f"measure_models(threads={threads})")
    entries, runners, modules = [], {}, {}
    for name, path in models.items():
        path = Path(path)
        entry = ModelEntry(name=name, path=str(path))
        if path.suffix == ".onnx":
            with EnergyMeter() as meter:
                outputs = onnx_outputs(path, dataset)
                predictions = tuple(outputs[name] for name in task.onnx_outputs)
                entry.metrics = score_predictions(
                    predictions if len(predictions) > 1 else predictions[0], dataset, **scoring
                )
            entry.format, entry.kind, entry.precision = "onnx", "onnx", onnx_precision(path)
            entry.layers, entry.parameters = onnx_layers_and_parameters(path)
            runners[name] = onnx_runner(path, threads)
        else:
            model = task.load(path).eval()
            try:  # a decoder (GPT-2) would fail in its first batch, for want of a padding token
                encoder_family(model)
            except UnsupportedModelError as error:
                raise UnsupportedModelError(f"{path}: {error}") from None
            with EnergyMeter() as meter:
                entry.metrics = _evaluate(model, dataset, scoring, desc=f"{name} on test")
            entry.layers = model.config.num_hidden_layers
            entry.parameters = sum(p.numel() for p in model.parameters())
            entry.settings = recorded_techniques(model.config)
            entry.techniques = list(entry.settings)
            entry.kind = kind_of(entry.techniques)
            runners[name], modules[name] = pytorch_runner(model), model
        entry.size_mb = round(weights_size_mb(path), 2)
        # Per prediction: per example, not per tokenized row (question answering splits a context into windows).
        predictions = len(scoring["examples"]) if scoring.get("examples") is not None else len(dataset)
        per_1000 = None if meter.joules is None else meter.joules / predictions * 1000
        entry.energy = Energy(per_1000_predictions_joules=per_1000, source=meter.source)
        entries.append(entry)
        if len(entries) == 1 and name in modules and wants_bf16(bf16_baseline):
            bf16, cast = bf16_entry(
                entry, model, lambda m, d=f"{name}-bf16 on test": _evaluate(m, dataset, scoring, desc=d)
            )
            entries.append(bf16)
            runners[bf16.name], modules[bf16.name] = pytorch_runner(cast), cast

    if not batch_sizes:
        return Measurements(entries)
    feeds = latency_feeds(dataset, batch_sizes, sequence_length)
    timing = time_side_by_side(entries, runners, modules, feeds, metric=task.metric, threads=threads, seconds=seconds)
    return Measurements(entries, timing)


def latency_feeds(dataset, batch_sizes: Sequence[int], sequence_length: int) -> dict[int, dict[str, np.ndarray]]:
    """Batch size -> the first rows of a tokenized dataset (repeated where it has fewer), `sequence_length` tokens."""
    feeds = {}
    for size in batch_sizes:
        rows = dataset.select([i % len(dataset) for i in range(size)])
        columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in rows.column_names]
        # The last axis is the tokens' (multiple choice has a choices axis before it).
        feeds[size] = {c: np.asarray(rows[c], dtype=np.int64)[..., :sequence_length] for c in columns}
    return feeds


def time_side_by_side(
    entries: list[ModelEntry], runners: dict, modules: dict, feeds: dict, *, metric: str, threads: int, seconds: float
) -> Timing:
    """Time every entry's runner in turns (`measure_latency`) and fill in its latency, spread, speed-up
    against the fastest plain-PyTorch run of the reference (the first entry), `metric` retained against
    the reference, and GPU throughput of the PyTorch `modules`; returns the `Timing`."""
    batch_sizes = list(feeds)
    print(f"    CPU latency of {len(runners)} models at batch sizes {batch_sizes} on {threads} threads", flush=True)
    latency = measure_latency(runners, feeds, threads=threads, seconds=seconds)
    reference = entries[0]
    plain = [e.name for e in entries if e.name == reference.name or e.baseline_of == reference.name]
    fastest = {s: min(latency[name][s] for name in plain) for s in batch_sizes}
    # Undefined against a reference that scored 0 (e.g. one misclassified row) or below (a correlation).
    score = reference.metrics.get(metric)
    for entry in entries:
        if entry.name in modules:
            entry.gpu_throughput = gpu_throughput(modules[entry.name], feeds[max(batch_sizes)])
        entry.latency_ms = {str(s): round(latency[entry.name][s], 3) for s in batch_sizes}
        entry.latency_spread = {str(s): round(latency.spread[entry.name][s], 3) for s in batch_sizes}
        entry.speedup = {str(s): fastest[s] / latency[entry.name][s] for s in batch_sizes}
        entry.accuracy_retained = entry.metrics[metric] / score if score and score > 0 else None
    latency.timing.sequence_length = int(feeds[batch_sizes[0]]["input_ids"].shape[-1])  # what was timed
    return latency.timing


def wants_bf16(bf16_baseline: bool | None) -> bool:
    """Whether to time the reference in bf16 too: as asked, else when the CPU has fast bf16 instructions."""
    return has_fast_bf16() if bf16_baseline is None else bf16_baseline


def bf16_entry(reference: ModelEntry, model: torch.nn.Module, evaluate: Callable) -> tuple[ModelEntry, torch.nn.Module]:
    """The reference with its weights cast to bf16 (`<reference>-bf16`, a baseline, not made by the run),
    its metrics `evaluate(cast)`, and the cast model (to time)."""
    cast = copy.deepcopy(model).to(torch.bfloat16)
    entry = dataclasses.replace(reference, name=f"{reference.name}-bf16", baseline_of=reference.name, precision="bf16")
    entry.metrics = evaluate(cast)
    entry.size_mb = round(sum(t.numel() * t.element_size() for t in cast.state_dict().values()) / 1e6, 2)
    entry.energy = Energy()
    return entry, cast


def _evaluate(model, dataset, scoring: dict, desc: str) -> dict:
    """The task's metrics of a PyTorch model on tokenized rows (its own id2label names its tags)."""
    return evaluate_model(model, dataset, desc=desc, **{k: v for k, v in scoring.items() if k != "label_names"})


def recorded_techniques(config) -> dict[str, dict]:
    """The techniques of the table that a model's config records, with their settings, in table order."""
    record = getattr(config, CONFIG_KEY, None) or {}
    return {name: record[name] for name in TECHNIQUES if name in record}


def hardware(threads: int) -> Hardware:
    """The CPU's name and speed-relevant instruction sets, the threads used, and the GPU, if any."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return Hardware(cpu=cpu_name(), cpu_threads=threads, gpu=gpu, cpu_features=cpu_features())
