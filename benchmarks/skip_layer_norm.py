"""ONNX Runtime's fused `SkipLayerNormalization` against the `Add` + `LayerNormalization` it replaces.

`export.graph.residual_sums` writes the residual additions that ONNX Runtime would fuse as `Sum`,
because the fused CPU kernel is slower than the two operators. This measures why: a chain of six
residual blocks (`Relu`, the residual addition, `LayerNormalization`) on a (batch, 64, 384)
activation, MiniLM's width, as (a) `Add` fused at load (the default), (b) `Add` with the fusion
turned off in the session, (c) `Sum`, which the fusion does not match. Best of 3 timings, in turns.

    python benchmarks/skip_layer_norm.py
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import onnxruntime
from onnx import TensorProto, helper

from hf_efficient.report import markdown_table
from hf_efficient.report.cpu import describe_cpu

WIDTH, LENGTH, BLOCKS = 384, 64, 6
KINDS = {"Add, fused (default)": ("Add", []), "Add, fusion off": ("Add", ["SkipLayerNormFusion"]), "Sum": ("Sum", [])}


def chain(op: str, batch: int) -> bytes:
    shape = [batch, LENGTH, WIDTH]
    weights = [
        helper.make_tensor("gamma", TensorProto.FLOAT, [WIDTH], np.ones(WIDTH, np.float32)),
        helper.make_tensor("beta", TensorProto.FLOAT, [WIDTH], np.zeros(WIDTH, np.float32)),
    ]
    nodes, previous = [], "x"
    for i in range(BLOCKS):
        nodes += [
            helper.make_node("Relu", [previous], [f"relu{i}"]),
            helper.make_node(op, [f"relu{i}", previous], [f"sum{i}"]),
            helper.make_node("LayerNormalization", [f"sum{i}", "gamma", "beta"], [f"norm{i}"], epsilon=1e-12),
        ]
        previous = f"norm{i}"
    nodes.append(helper.make_node("Identity", [previous], ["y"]))
    x, y = (helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name in ("x", "y"))
    graph = helper.make_graph(nodes, "residual_blocks", [x], [y], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="runs/skip_layer_norm.json")
    args = parser.parse_args()
    results, rows = [], []
    for batch in (1, 32):
        x = np.random.default_rng(0).normal(size=(batch, LENGTH, WIDTH)).astype(np.float32)
        for threads in sorted({1, os.cpu_count()}):
            sessions = {}
            for name, (op, disabled) in KINDS.items():
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                sessions[name] = onnxruntime.InferenceSession(
                    chain(op, batch), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
                )
            calls = 1000 if batch == 1 else 60
            best = dict.fromkeys(sessions, float("inf"))
            for _ in range(3):  # in turns
                for name, session in sessions.items():
                    session.run(None, {"x": x})
                    started = time.perf_counter()
                    for _ in range(calls):
                        session.run(None, {"x": x})
                    best[name] = min(best[name], (time.perf_counter() - started) / calls * 1000)
            results.append({"batch": batch, "threads": threads, "ms": best})
            fused = best["Add, fused (default)"]
            rows.append([batch, threads] + [f"{best[name]:.3f} ({fused / best[name]:.1f}x)" for name in KINDS])
    cpu = describe_cpu()
    print(f"\n{BLOCKS} residual blocks, (batch, {LENGTH}, {WIDTH}), onnxruntime {onnxruntime.__version__}, on {cpu}.")
    print("ms per call (speed-up against the fused default):")
    print(markdown_table(["batch", "threads", *KINDS], rows))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(
        json.dumps({"cpu": cpu, "onnxruntime": onnxruntime.__version__, "results": results}, indent=1)
    )


if __name__ == "__main__":
    main()
