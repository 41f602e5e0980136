"""`Int8ExportConfig(variant="fastest")`: every int8 graph written and timed on this CPU, the fastest kept.

`variant="auto"` picks a graph from the CPU's instruction sets, and that pick was measured on a few
CPUs only (AMD EPYC Zen 4 and Zen 5, one Intel Xeon with AMX: `variants`), on two MiniLMs at 64 tokens.
Elsewhere, or for another model, the graphs' order is a guess: which graph wins depends on how much time
is left outside the weight products. Timing them where the model will run settles it, for the cost of
writing each graph (seconds for a base-size encoder) and about `2 * SECONDS` of timing per graph (plus
each runner's warm-up, `report.measure.measure_latency`).

The graphs are timed as `benchmarks/int8.py` times them (`report.measure.measure_latency`): in turns
within each round, so that a machine that speeds up or slows down affects all alike; on
`Int8ExportConfig.timing_threads` threads (1 by default; the winner can change with the thread
count), batch 1 and 32, 64 tokens of random ids (no int8 kernel's speed depends on the values). The
graph kept is the one with the lowest mean, over the batch sizes, of its time over the fastest time
at that size.

The model itself takes its turns too, as plain PyTorch would run it here (fp32, and its bf16 cast
where the CPU has bf16 instructions), so that the result says how much faster the kept graph is than
what a user would run instead, and warns where it is not faster: an int8 graph can lose to bf16 on
a CPU whose bf16 units outrun its int8 path (issue 20's Intel Xeon with AMX, at batch 32).

In static mode, where OpenVINO is installed, each graph is timed on it too, with fp32 and (where the
CPU has bf16) bf16 float operations (`export.runtime`: it runs int8 and bf16 on AMX's tiles where
ONNX Runtime runs u8 x s8 only), and the graph and runtime that are fastest together are kept; the
export records the runtime and its loaders use it.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

from .config import Int8ExportConfig
from .runtime import NAMES, installed
from .variants import VARIANTS, choose_runtime, choose_variant

BATCH_SIZES = (1, 32)
SEQUENCE_LENGTH = 64
CHOICES_TIMED = 2  # multiple-choice graphs take (batch, choices, tokens)
SECONDS = 1.5  # per graph and batch size
ROUNDS = 3


def timing_feeds(path: Path, model_config, batch_sizes=BATCH_SIZES) -> dict[int, dict[str, np.ndarray]]:
    """Batch size -> inputs for the graph at `path`: random token ids, a full attention mask, token types 0."""
    graph = onnx.load(str(path), load_external_data=False).graph
    length = SEQUENCE_LENGTH
    positions = getattr(model_config, "max_position_embeddings", None)
    if positions:  # RoBERTa-like models start their positions after the padding index
        length = max(1, min(length, positions - 2))
    generator = np.random.default_rng(0)
    feeds = {}
    for size in batch_sizes:
        feed = {}
        for tensor in graph.input:
            rank = len(tensor.type.tensor_type.shape.dim)
            shape = (size, CHOICES_TIMED, length) if rank == 3 else (size, length)
            if tensor.name == "input_ids":
                feed[tensor.name] = generator.integers(0, model_config.vocab_size, shape, dtype=np.int64)
            elif tensor.name == "attention_mask":
                feed[tensor.name] = np.ones(shape, dtype=np.int64)
            else:
                feed[tensor.name] = np.zeros(shape, dtype=np.int64)
        feeds[size] = feed
    return feeds


def plain_pytorch(model: torch.nn.Module) -> dict[str, Callable[[dict], None]]:
    """Runners of the ways plain PyTorch runs `model` on this CPU: fp32, and cast to bf16 where the CPU
    has bf16 instructions (`report.cpu.has_fast_bf16`). A model on a GPU is copied to the CPU."""
    from ..report.cpu import has_fast_bf16
    from ..report.measure import pytorch_runner

    fp32 = model if next(model.parameters()).device.type == "cpu" else copy.deepcopy(model).cpu()
    runners = {"PyTorch fp32": pytorch_runner(fp32)}
    if has_fast_bf16():
        runners["PyTorch bf16"] = pytorch_runner(copy.deepcopy(fp32).to(torch.bfloat16))
    return runners


def failure_reason(error: Exception) -> str:
    """One line on why a graph could not be written or loaded: the error's first line, or the summary
    that OpenVINO's converter puts after its log."""
    text = str(error)
    if "Summary:" in text:
        text = "; ".join(line.strip("- ") for line in text.split("Summary:", 1)[1].splitlines() if line.strip())
    return f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"


def candidate(variant: str, runtime: str) -> str:
    """The name a timed graph goes by: the variant on ONNX Runtime, "<variant> on OpenVINO" otherwise."""
    return variant if runtime == "onnxruntime" else f"{variant} on {NAMES[runtime]}"


def runtimes_to_time(requested: str, mode: str) -> tuple[list[str], str]:
    """The runtimes `variant="fastest"` times the graphs on, for `Int8ExportConfig.runtime` and the export's
    mode, and a note for the reason where OpenVINO is left out of "auto" (`export.runtime` says why)."""
    if requested != "auto":
        return [requested], ""
    if mode != "static":
        if installed("openvino"):
            return ["onnxruntime"], "; OpenVINO not timed: it runs dynamic graphs slowly, mode='static' times it"
        return ["onnxruntime"], ""
    if not installed("openvino"):
        return ["onnxruntime"], "; OpenVINO not timed: not installed (pip install openvino to time it too)"
    from ..report.cpu import has_fast_bf16  # here: the report package imports this one

    return ["onnxruntime", "openvino", *(["openvino-bf16"] if has_fast_bf16() else [])], ""


def resolve_variant(
    config: Int8ExportConfig,
    write: Callable[[str, Path], dict],
    int8: Path,
    model: torch.nn.Module,
    mode: str,
) -> tuple[str, str, str, dict | None, dict | None]:
    """`(variant, runtime, reason, timings, attempt)` for `config.variant` and `config.runtime`, the
    export being in `mode` (static, or dynamic where static fell back).

    For "fastest": each variant written by `write(variant, path)` (which returns its attempt record)
    beside `int8`, the graphs timed on each runtime of `runtimes_to_time` beside plain PyTorch runs
    of `model` (`plain_pytorch`), on `config.timing_threads` threads, the fastest graph moved to
    `int8` and the others deleted; `timings` holds the milliseconds of each graph (by `candidate`
    name) and PyTorch run by batch size, and `attempt` the kept graph's record. Otherwise
    `choose_variant`'s pick, the requested runtime (`choose_runtime`'s for "auto"), no timings and nothing
    written.
    """
    requested, runtime, threads = config.variant, config.runtime, config.timing_threads
    if requested != "fastest":
        variant, reason = choose_variant(requested)
        if runtime == "auto":
            runtime, note, slower = choose_runtime(mode, variant)
            if slower:
                warnings.warn(f"export_int8: {variant} on ONNX Runtime{note}.", stacklevel=3)
            return variant, runtime, reason + note, None, None
        reason += f"; runtime forced with Int8ExportConfig(runtime={runtime!r})"
        if runtime.startswith("openvino") and requested == "auto":  # `auto`'s pick is ONNX Runtime's on most CPUs
            reason += ", on which this pick is not measured: variant='fastest' times every graph there"
        return variant, runtime, reason, None, None
    from ..report.cpu import cpu_name  # here: the report package imports this one
    from ..report.measure import measure_latency, onnx_runner

    runtimes, note = runtimes_to_time(runtime, mode)
    paths, attempts, failed, unloaded = {}, {}, {}, {}
    torch_threads = torch.get_num_threads()  # measure_latency sets PyTorch's too; the caller's is put back
    try:
        for variant in VARIANTS:
            path = int8.with_name(f"candidate_{variant}.onnx")
            try:
                attempts[variant], paths[variant] = write(variant, path), path
            except Exception as error:  # e.g. a fusion this architecture's graph does not take; in the reason
                path.unlink(missing_ok=True)
                failed[variant] = failure_reason(error)
        if not paths:
            raise ValueError(
                f"export_int8: Int8ExportConfig(variant='fastest'): no variant could be written ({failed})."
            )
        feeds = timing_feeds(next(iter(paths.values())), model.config)
        plain = plain_pytorch(model)
        baselines = list(plain)
        graphs, runners = {}, {}
        for engine in runtimes:
            for variant, path in paths.items():
                name = candidate(variant, engine)
                try:
                    runners[name], graphs[name] = onnx_runner(path, threads, engine), (variant, engine)
                except Exception as error:  # e.g. OpenVINO has no conversion for int8-fused's contrib operators
                    unloaded[name] = failure_reason(error)
        if not graphs:
            raise ValueError(
                f"export_int8: Int8ExportConfig(variant='fastest'): no graph could be loaded ({unloaded})."
            )
        runners |= plain
        latency = measure_latency(runners, feeds, threads=threads, seconds=SECONDS, rounds=ROUNDS)
    except BaseException:  # an error or Ctrl-C leaves no candidate graph behind
        for variant in VARIANTS:
            int8.with_name(f"candidate_{variant}.onnx").unlink(missing_ok=True)
        raise
    finally:
        torch.set_num_threads(torch_threads)
    del runners, plain  # the sessions, before their files move, and any copy of the model
    fastest = {size: min(latency[name][size] for name in graphs) for size in feeds}
    slowness = {name: np.mean([latency[name][size] / fastest[size] for size in feeds]) for name in graphs}
    kept = min(slowness, key=slowness.get)
    chosen, chosen_runtime = graphs[kept]
    for variant, path in paths.items():
        if variant != chosen:
            path.unlink()
    paths[chosen].replace(int8)

    timed = ", ".join(f"{name} {' / '.join(f'{latency[name][size]:.2f}' for size in feeds)}" for name in graphs)
    on = (
        ""
        if runtimes == ["onnxruntime"]
        else " on " + " and ".join(", ".join(NAMES[r] for r in runtimes).rsplit(", ", 1))
    )
    count = len({variant for variant, _ in graphs.values()})
    reason = (
        f"the fastest of {count} graphs{on} timed on this CPU ({cpu_name()}), {threads} thread{'s' * (threads > 1)}, "
        f"ms at batch {' / '.join(map(str, feeds))}: {timed}"
    )
    # Against the fastest plain-PyTorch run at each batch size: what a user would run instead.
    speedup = {size: min(latency[name][size] for name in baselines) / latency[kept][size] for size in feeds}
    reason += (
        f"; {' / '.join(f'{speedup[size]:.2f}x' for size in feeds)} the fastest plain PyTorch timed with them ("
        + ", ".join(f"{name} {' / '.join(f'{latency[name][size]:.2f}' for size in feeds)}" for name in baselines)
        + ")"
    )
    if failed:
        reason += "; not written: " + ", ".join(f"{variant} ({why})" for variant, why in failed.items())
    if unloaded:
        reason += "; not loaded: " + ", ".join(f"{name} ({why})" for name, why in unloaded.items())
    reason += note
    if not latency.timing.reliable:
        reason += f"; timing unreliable, {latency.timing.reason}"
    slower = [str(size) for size in feeds if speedup[size] < 1]
    if slower:
        warnings.warn(
            f"export_int8: on this CPU the int8 graph ({kept}) is slower than plain PyTorch at batch "
            f"{' and '.join(slower)}: {reason}. Run the PyTorch model there instead (e.g. cast to bf16).",
            stacklevel=3,
        )
    timings = {name: {str(size): round(latency[name][size], 3) for size in feeds} for name in latency}
    return chosen, chosen_runtime, reason, timings, attempts[chosen]
