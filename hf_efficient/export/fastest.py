"""`Int8ExportConfig(variant="fastest")`: every int8 graph written and timed on this CPU, the fastest kept.

`variant="auto"` picks a graph from the CPU's instruction sets, and that pick was measured on one kind
of CPU only (`variants`). Elsewhere the graphs' order is a guess: on Intel's AMX, for one, ONNX Runtime
runs u8 x s8 products on the tiles but not u8 x u8, so which graph wins depends on how much time is
left outside the weight products. Timing them where the model will run settles it, for the cost of
writing each graph (seconds for a base-size encoder) and about `2 * SECONDS` of timing per graph.

The graphs are timed as `benchmarks/int8.py` times them (`report.measure.measure_latency`): in turns
within each round, so that a machine that speeds up or slows down affects all alike; 1 thread, batch 1
and 32, 64 tokens of random ids (no int8 kernel's speed depends on the values). The graph kept is the
one with the lowest mean, over the batch sizes, of its time over the fastest time at that size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch

from .variants import VARIANTS, choose_variant

BATCH_SIZES = (1, 32)
SEQUENCE_LENGTH = 64
CHOICES_TIMED = 2  # multiple-choice graphs take (batch, choices, tokens)
THREADS = 1
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


def resolve_variant(
    requested: str, write: Callable[[str, Path], dict], int8: Path, model_config
) -> tuple[str, str, dict | None, dict | None]:
    """`(variant, reason, timings, attempt)` for `Int8ExportConfig.variant`.

    For "fastest": each variant written by `write(variant, path)` (which returns its attempt record)
    beside `int8`, the graphs timed, the fastest moved to `int8` and the others deleted; `timings`
    holds each graph's milliseconds by batch size and `attempt` the kept graph's record. Otherwise
    `choose_variant`'s pick, with no timings and nothing written.
    """
    if requested != "fastest":
        return (*choose_variant(requested), None, None)
    from ..report.cpu import cpu_name  # here: the report package imports this one
    from ..report.measure import measure_latency, onnx_runner

    paths, attempts, failed = {}, {}, {}
    for variant in VARIANTS:
        path = int8.with_name(f"candidate_{variant}.onnx")
        try:
            attempts[variant], paths[variant] = write(variant, path), path
        except Exception as error:  # e.g. a fusion this architecture's graph does not take; recorded in the reason
            path.unlink(missing_ok=True)
            failed[variant] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    if not paths:
        raise ValueError(f"export_int8: Int8ExportConfig(variant='fastest'): no variant could be written ({failed}).")
    feeds = timing_feeds(next(iter(paths.values())), model_config)
    torch_threads = torch.get_num_threads()  # measure_latency sets PyTorch's too; the caller's is put back
    try:
        runners = {variant: onnx_runner(path, THREADS) for variant, path in paths.items()}
        latency = measure_latency(runners, feeds, threads=THREADS, seconds=SECONDS, rounds=ROUNDS)
    finally:
        torch.set_num_threads(torch_threads)
    del runners  # the sessions, before their files move
    fastest = {size: min(latency[variant][size] for variant in paths) for size in feeds}
    slowness = {variant: np.mean([latency[variant][size] / fastest[size] for size in feeds]) for variant in paths}
    chosen = min(slowness, key=slowness.get)
    for variant, path in paths.items():
        if variant != chosen:
            path.unlink()
    paths[chosen].replace(int8)

    timed = ", ".join(f"{variant} {' / '.join(f'{latency[variant][size]:.2f}' for size in feeds)}" for variant in paths)
    reason = (
        f"the fastest of {len(paths)} graphs timed on this CPU ({cpu_name()}), {THREADS} thread, "
        f"ms at batch {' / '.join(map(str, feeds))}: {timed}"
    )
    if failed:
        reason += "; not written: " + ", ".join(f"{variant} ({why})" for variant, why in failed.items())
    if not latency.timing.reliable:
        reason += f"; timing unreliable, {latency.timing.reason}"
    timings = {variant: {str(size): round(latency[variant][size], 3) for size in feeds} for variant in paths}
    return chosen, reason, timings, attempts[chosen]
