"""The int8 graph chosen per CPU (`export.variants`): the choice, forcing one, its record, its numbers."""

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from conftest import tiny_batch, tiny_model

from hf_efficient import Int8ExportConfig, export_int8
from hf_efficient.export import fastest, variants
from hf_efficient.export.config import VARIANT_CHOICES, VARIANT_NAMES
from hf_efficient.export.onnx import run_onnx

EPYC = ["AVX2", "AVX512", "AVX512-VNNI", "AVX512-BF16"]
XEON_AMX = [*EPYC, "AMX-INT8", "AMX-BF16"]


@pytest.mark.parametrize(
    "features, expected",
    [(XEON_AMX, "int8-weights"), (EPYC, "int8-all"), (["AVX2"], "int8-all"), ([], "int8-all")],
)
def test_choice_per_cpu(features, expected):
    variant, reason = variants.choose_variant("auto", features)
    assert variant == expected
    assert reason.startswith("AMX-INT8") == ("AMX-INT8" in features)
    assert ("not measured" in reason) != (features in (EPYC, XEON_AMX))  # the VNNI and AMX choices were measured
    assert ("variant='fastest'" in reason) == ("not measured" in reason)  # how to settle it here


def test_forced_variant_wins_over_the_cpu():
    assert variants.choose_variant("int8-fused", XEON_AMX) == (
        "int8-fused",
        "forced with Int8ExportConfig(variant='int8-fused')",
    )
    assert tuple(variants.VARIANTS) == VARIANT_NAMES == VARIANT_CHOICES[2:]
    with pytest.raises(ValueError, match="measured, not chosen"):
        variants.choose_variant("fastest")


@pytest.mark.parametrize("bad", ["int9", "fused", None])
def test_bad_variant_is_one_line_naming_the_choices(bad):
    with pytest.raises(ValueError) as error:
        Int8ExportConfig(variant=bad)
    message = str(error.value)
    assert "\n" not in message and f"variant={bad!r}" in message
    assert all(repr(choice) in message for choice in VARIANT_CHOICES)
    with pytest.raises(ValueError, match="int8-weights"):
        variants.choose_variant(bad)


def inputs():
    batch = tiny_batch(batch=6, length=16, seed=5)
    ids = batch["input_ids"].numpy()
    return {"input_ids": ids, "attention_mask": batch["attention_mask"].numpy(), "token_type_ids": np.zeros_like(ids)}


def op_counts(path) -> Counter:
    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("variant", list(variants.VARIANTS))
def test_each_variant_matches_pytorch_and_is_recorded(tmp_path, variant):
    model = tiny_model("bert", num_layers=2)
    result = export_int8(model, tmp_path, Int8ExportConfig(variant=variant))
    record = json.loads((tmp_path / "export_report.json").read_text())
    assert record["variant"] == result.variant == variant
    assert record["variant_reason"] == f"forced with Int8ExportConfig(variant={variant!r})"
    assert record["config"]["variant"] == variant

    feed = inputs()
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).logits.numpy()
    int8 = run_onnx(tmp_path / "model_quantized.onnx", feed)
    scale = np.abs(expected).max()
    assert np.abs(int8 - expected).max() <= 0.15 * scale
    clear = np.abs(expected[:, 0] - expected[:, 1]) > 0.2 * scale
    assert (int8.argmax(-1) == expected.argmax(-1))[clear].all()

    ops = op_counts(tmp_path / "model_quantized.onnx")
    attention = len(variants.activation_matmuls(tmp_path / "model.onnx"))  # 2 per layer
    assert attention == 4
    if variant == "int8-all":
        assert ops["MatMul"] == 0
    elif variant == "int8-weights":
        assert ops["MatMul"] == attention == result.chosen["fp32_matmuls"]
        assert ops["MatMulInteger"] + ops["DynamicQuantizeMatMul"] > 0
    else:  # SkipLayerNormalization fuses on every export; Attention where the graph has the eager pattern
        assert result.chosen["fused"]["SkipLayerNormalization"] == 4
        assert ops["SkipLayerNormalization"] == 4
        assert ops["QAttention"] == result.chosen["fused"].get("Attention", 0)
    assert not (tmp_path / "model_fused.onnx").exists()


def test_auto_records_the_choice_for_this_cpu(tmp_path, monkeypatch):
    monkeypatch.setattr("hf_efficient.report.cpu.cpu_features", lambda: XEON_AMX)
    with pytest.warns(UserWarning, match=r"^export_int8: int8-weights on ONNX Runtime; on CPUs with AMX, .* slower"):
        result = export_int8(tiny_model("bert", num_layers=2), tmp_path)
    record = json.loads((tmp_path / "export_report.json").read_text())
    assert record["variant"] == "int8-weights" and "AMX-INT8" in record["variant_reason"]
    assert record["config"]["variant"] == "auto" and result.variant == "int8-weights"
    assert record["runtime"] == "onnxruntime" and "export with mode='static'" in record["variant_reason"]


@pytest.mark.parametrize(
    "features, mode, variant, openvino, expected",
    [
        (XEON_AMX, "static", "int8-weights", True, ("openvino-bf16", False)),
        (XEON_AMX, "static", "int8-all", True, ("openvino-bf16", False)),  # a forced variant too
        (XEON_AMX, "static", "int8-fused", True, ("onnxruntime", False)),  # OpenVINO cannot load it
        (XEON_AMX, "static", "int8-weights", False, ("onnxruntime", True)),  # not installed: pip install openvino
        (XEON_AMX, "dynamic", "int8-weights", True, ("onnxruntime", True)),  # OpenVINO is slow on dynamic graphs
        (EPYC, "static", "int8-all", True, ("onnxruntime", False)),
        (EPYC, "dynamic", "int8-all", True, ("onnxruntime", False)),
    ],
)
def test_auto_runtime_per_cpu(features, mode, variant, openvino, expected, monkeypatch):
    monkeypatch.setattr("hf_efficient.export.runtime.installed", lambda name: openvino)
    runtime, note, slower = variants.choose_runtime(mode, variant, features)
    assert (runtime, slower) == expected
    assert ("pip install openvino" in note) == (slower and not openvino)
    assert ("export with mode='static'" in note) == (slower and mode == "dynamic")
    assert (note == "") == (features == EPYC or variant == "int8-fused")


def test_report_names_the_variant_and_why():
    from hf_efficient.report import Report, report_markdown

    reason = variants.choose_variant("auto", EPYC)[1]
    export = {
        "backend": "onnxruntime",
        "mode": "dynamic",
        "chosen": {},
        "variant": "int8-all",
        "variant_reason": reason,
    }
    report = Report.from_dict(
        {
            "name": "demo",
            "task": {"dataset": "rotten_tomatoes", "split": "test", "rows": 1409},
            "hardware": {"cpu": "AMD EPYC", "cpu_threads": 1, "cpu_features": EPYC},
            "reference": "student",
            "models": [
                {"name": "student"},
                {"name": "student-int8", "format": "onnx", "kind": "int8", "export": export},
            ],
        }
    )
    assert f"`student-int8`: int8 graph `int8-all`, {reason}." in report_markdown(report)


def _session_outputs(path, feed, level):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = level
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})[0]


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_residual_sums_keep_onnxruntime_off_its_skip_layer_norm(tmp_path, mode):
    import onnxruntime

    model, feed = tiny_model("bert", num_layers=2), inputs()
    calibration = None
    if mode == "static":
        import datasets

        calibration = datasets.Dataset.from_dict({k: v.tolist() for k, v in feed.items()})
    result = export_int8(model, tmp_path, Int8ExportConfig(mode=mode), calibration_dataset=calibration)
    graph = onnx.load(str(tmp_path / "model_quantized.onnx")).graph
    feeding = {name: node.op_type for node in graph.node for name in node.output}
    norms = [feeding[node.input[0]] for node in graph.node if node.op_type == "LayerNormalization"]
    assert norms.count("Sum") == result.chosen["residual_sums"] >= 1

    # What a session builds from the file: no SkipLayerNormalization.
    options = onnxruntime.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "loaded.onnx")
    onnxruntime.InferenceSession(str(tmp_path / "model_quantized.onnx"), options, providers=["CPUExecutionProvider"])
    assert "SkipLayerNormalization" not in op_counts(tmp_path / "loaded.onnx")

    # The same numbers as the graph with its Adds, both run as written.
    model_with_adds = onnx.load(str(tmp_path / "model_quantized.onnx"))
    for node in model_with_adds.graph.node:
        if node.op_type == "Sum":
            node.op_type = "Add"
    onnx.save(model_with_adds, str(tmp_path / "adds.onnx"))
    unoptimized = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert np.array_equal(
        _session_outputs(tmp_path / "model_quantized.onnx", feed, unoptimized),
        _session_outputs(tmp_path / "adds.onnx", feed, unoptimized),
    )


def test_residual_sums_rewrites_only_what_onnxruntime_fuses(tmp_path):
    from onnx import TensorProto, helper

    from hf_efficient.export.graph import residual_sums

    def tensor(name, shape):
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)

    nodes = [
        helper.make_node("Add", ["x", "y"], ["a"], name="residual"),  # two (batch, 4, 8): fused
        helper.make_node("LayerNormalization", ["a", "g"], ["norm"]),
        helper.make_node("Add", ["norm", "bias"], ["b"], name="bias"),  # (batch, 4, 8) + (8,): not fused
        helper.make_node("LayerNormalization", ["b", "g"], ["out"]),
        helper.make_node("Add", ["out", "y"], ["c"], name="into_relu"),
        helper.make_node("Relu", ["c"], ["act"]),
    ]
    weights = [helper.make_tensor(name, TensorProto.FLOAT, [8], [1.0] * 8) for name in ("g", "bias")]
    inputs = [tensor("x", ["batch", 4, 8]), tensor("y", ["batch", 4, 8])]
    graph = helper.make_graph(nodes, "g", inputs, [tensor("act", None)], weights)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "g.onnx"))
    assert residual_sums(tmp_path / "g.onnx") == 1
    ops = {node.name: node.op_type for node in onnx.load(str(tmp_path / "g.onnx")).graph.node if node.name}
    assert ops == {"residual": "Sum", "bias": "Add", "into_relu": "Add"}
    assert residual_sums(tmp_path / "g.onnx") == 0  # nothing left to fuse


PLAIN_MS = {"PyTorch fp32": (9.0, 400.0), "PyTorch bf16": (5.0, 200.0)}


def fixed_latency(ms: dict, monkeypatch, threads: int = 1):
    """Make `measure_latency` give each graph the milliseconds of `ms` (batch 1, batch 32), and plain
    PyTorch (fp32 and bf16, as on a CPU with bf16 instructions) those of `PLAIN_MS` unless `ms` names them;
    it checks that it is asked to time on `threads` threads."""
    from hf_efficient.report.measure import Latency
    from hf_efficient.report.schema import Timing

    ms, expected = PLAIN_MS | ms, threads

    def measure(runners, feeds, threads, **_):
        assert set(runners) == set(ms) and list(feeds) == [1, 32] and threads == expected
        torch.set_num_threads(threads)  # as measure_latency does
        for run in runners.values():  # every graph and PyTorch run takes the feeds it will be timed with
            run(feeds[1])
        return Latency({v: dict(zip(feeds, ms[v], strict=True)) for v in runners}, {}, Timing(reliable=True))

    monkeypatch.setattr("hf_efficient.report.measure.measure_latency", measure)
    monkeypatch.setattr("hf_efficient.report.cpu.has_fast_bf16", lambda: True)


def test_fastest_keeps_the_fastest_graph_and_records_every_time(tmp_path, monkeypatch):
    # int8-fused is 10% slower at batch 1 but 30% faster at batch 32: the lowest mean ratio to the best.
    ms = {"int8-all": (1.0, 40.0), "int8-weights": (1.05, 50.0), "int8-fused": (1.1, 28.0)}
    fixed_latency(ms, monkeypatch)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    model = tiny_model("bert", num_layers=2)
    try:
        result = export_int8(model, tmp_path / "fastest", Int8ExportConfig(variant="fastest"))
        assert torch.get_num_threads() == 2  # the caller's PyTorch threads are put back
    finally:
        torch.set_num_threads(threads)
    record = json.loads((tmp_path / "fastest" / "export_report.json").read_text())
    assert record["variant"] == result.variant == "int8-fused"
    assert record["variant_timings"] == {v: {"1": a, "32": b} for v, (a, b) in (ms | PLAIN_MS).items()}
    assert "the fastest of 3 graphs timed on this CPU" in result.variant_reason
    assert "int8-all 1.00 / 40.00, int8-weights 1.05 / 50.00, int8-fused 1.10 / 28.00" in result.variant_reason
    assert (
        "; 4.55x / 7.14x the fastest plain PyTorch timed with them "
        "(PyTorch fp32 9.00 / 400.00, PyTorch bf16 5.00 / 200.00)"
    ) in result.variant_reason
    # A dynamic graph is timed on ONNX Runtime only (export.runtime), and the reason says so.
    assert result.runtime == record["runtime"] == "onnxruntime"
    assert result.variant_reason.endswith("; OpenVINO not timed: it runs dynamic graphs slowly, mode='static' times it")
    assert sorted(p.name for p in (tmp_path / "fastest").glob("*.onnx")) == ["model.onnx", "model_quantized.onnx"]
    assert len(result.attempts) == 1 and result.chosen["fused"]["SkipLayerNormalization"] == 4

    # The graph kept is the one a forced export of that variant writes.
    forced = export_int8(model, tmp_path / "forced", Int8ExportConfig(variant="int8-fused"))
    assert forced.chosen == result.chosen
    feed = inputs()
    assert np.array_equal(
        run_onnx(tmp_path / "fastest" / "model_quantized.onnx", feed),
        run_onnx(tmp_path / "forced" / "model_quantized.onnx", feed),
    )


def test_fastest_warns_where_plain_pytorch_is_faster(tmp_path, monkeypatch):
    # As issue 20 measured on an Intel Xeon with AMX: the bf16 cast wins at batch 32, not at batch 1.
    ms = {"int8-all": (3.8, 100.0), "int8-weights": (4.0, 110.0), "int8-fused": (4.5, 120.0)}
    fixed_latency(ms | {"PyTorch bf16": (5.0, 76.0)}, monkeypatch)
    with pytest.warns(UserWarning, match=r"\(int8-all\) is slower than plain PyTorch at batch 32: .*; 1.32x / 0.76x"):
        result = export_int8(tiny_model("bert", num_layers=2), tmp_path, Int8ExportConfig(variant="fastest"))
    assert result.variant == "int8-all" and "; 1.32x / 0.76x the fastest plain PyTorch" in result.variant_reason


def test_fastest_interrupted_leaves_no_candidate_behind(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        torch.set_num_threads(1)
        raise KeyboardInterrupt

    monkeypatch.setattr("hf_efficient.report.measure.measure_latency", interrupted)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(KeyboardInterrupt):
            export_int8(tiny_model("bert", num_layers=2), tmp_path, Int8ExportConfig(variant="fastest"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert not list(tmp_path.glob("candidate_*")) and (tmp_path / "model.onnx").exists()


def test_fastest_times_the_graphs_for_real(tmp_path, monkeypatch):
    monkeypatch.setattr(fastest, "SECONDS", 0.05)  # a few calls per graph: the numbers, not their precision
    result = export_int8(tiny_model("bert", num_layers=2), tmp_path, Int8ExportConfig(variant="fastest"))
    timings = result.variant_timings
    assert list(timings)[:3] == list(variants.VARIANTS) and result.variant in variants.VARIANTS
    assert list(timings)[3:] in (["PyTorch fp32"], ["PyTorch fp32", "PyTorch bf16"])  # bf16 where the CPU has it
    assert all(set(by_size) == {"1", "32"} and all(ms > 0 for ms in by_size.values()) for by_size in timings.values())
    assert all(f"{variant} " in result.variant_reason.split(": ", 1)[1] for variant in timings)


def test_fastest_names_a_graph_it_could_not_write(tmp_path, monkeypatch):
    ms = {"int8-all": (2.0, 40.0), "int8-weights": (1.0, 30.0)}
    fixed_latency(ms, monkeypatch)
    prepare = variants.prepare_variant

    def no_fusion(variant, *args):
        if variant == "int8-fused":
            raise RuntimeError("no Attention pattern\nsecond line")
        return prepare(variant, *args)

    monkeypatch.setattr("hf_efficient.export.int8.prepare_variant", no_fusion)
    result = export_int8(tiny_model("bert", num_layers=2), tmp_path, Int8ExportConfig(variant="fastest"))
    assert result.variant == "int8-weights" and set(result.variant_timings) == set(ms) | set(PLAIN_MS)
    assert "; not written: int8-fused (RuntimeError: no Attention pattern);" in result.variant_reason
    assert not list(tmp_path.glob("candidate_*"))


def test_fastest_times_on_timing_threads(tmp_path, monkeypatch):
    # Served on 2 threads, the graphs and plain PyTorch are timed on 2: the winner can change with the count.
    from hf_efficient.report import measure

    ms = {"int8-all": (2.0, 40.0), "int8-weights": (1.0, 30.0), "int8-fused": (3.0, 50.0)}
    fixed_latency(ms, monkeypatch, threads=2)
    monkeypatch.setattr("hf_efficient.report.cpu.usable_cores", lambda: 2)
    opened, runner = [], measure.onnx_runner
    monkeypatch.setattr(
        measure, "onnx_runner", lambda path, threads, runtime: opened.append(threads) or runner(path, threads, runtime)
    )
    config = Int8ExportConfig(variant="fastest", timing_threads=2)
    result = export_int8(tiny_model("bert", num_layers=2), tmp_path, config)
    assert opened == [2, 2, 2] and result.variant == "int8-weights"
    assert (
        "timed on this CPU (" in result.variant_reason and "), 2 threads, ms at batch 1 / 32:" in result.variant_reason
    )
    assert json.loads((tmp_path / "export_report.json").read_text())["config"]["timing_threads"] == 2


def test_timing_threads_beyond_the_cores_are_refused_before_writing(tmp_path, monkeypatch):
    monkeypatch.setattr("hf_efficient.report.cpu.usable_cores", lambda: 2)
    with pytest.raises(ValueError) as error:
        export_int8(tiny_model("bert"), tmp_path, Int8ExportConfig(variant="fastest", timing_threads=3))
    assert str(error.value) == (
        "export_int8: Int8ExportConfig(timing_threads=3) is more than the 2 cores this process can use: "
        "time on at most 2."
    )
    assert not list(tmp_path.iterdir())


def test_timing_threads_without_fastest_are_refused():
    with pytest.raises(
        ValueError, match=r"^Int8ExportConfig\(timing_threads=2\) times the graphs of variant='fastest'"
    ):
        Int8ExportConfig(variant="auto", timing_threads=2)


@pytest.mark.parametrize("family, rank, positions, length", [("bert", 2, 512, 64), ("roberta", 3, 64, 62)])
def test_timing_feeds_fit_the_graph(tmp_path, family, rank, positions, length):
    from hf_efficient.export.onnx import export_onnx, run_onnx_outputs

    task = "text-classification" if rank == 2 else "multiple-choice"
    model = tiny_model(family, num_layers=1, task=task, max_position_embeddings=positions)
    export_onnx(model, tmp_path / "m.onnx", output_names=("logits",), choices=rank == 3)
    feeds = fastest.timing_feeds(tmp_path / "m.onnx", model.config)
    assert list(feeds) == [1, 32]
    for size, feed in feeds.items():
        shape = (size, fastest.CHOICES_TIMED, length) if rank == 3 else (size, length)
        assert {name: array.shape for name, array in feed.items()} == dict.fromkeys(feed, shape)
        assert feed["attention_mask"].all() and feed["input_ids"].max() < model.config.vocab_size
        logits = run_onnx_outputs(tmp_path / "m.onnx", feed)["logits"]
        assert logits.shape == ((size, fastest.CHOICES_TIMED) if rank == 3 else (size, 2))


def test_a_forced_runtime_is_in_the_reason():
    """`auto` picks from ONNX Runtime measurements: on a forced OpenVINO the reason says so, and how to time it."""
    config = Int8ExportConfig(mode="static", runtime="openvino")
    variant, runtime, reason, timings, attempt = fastest.resolve_variant(config, None, None, None, "static")
    assert runtime == "openvino" and timings is None and attempt is None
    assert reason == variants.choose_variant("auto")[1] + (
        "; runtime forced with Int8ExportConfig(runtime='openvino'), on which this pick is not measured: "
        "variant='fastest' times every graph there"
    )
    forced = fastest.resolve_variant(
        Int8ExportConfig(variant="int8-weights", runtime="onnxruntime"), None, None, None, ""
    )
    assert forced[2] == (
        "forced with Int8ExportConfig(variant='int8-weights'); "
        "runtime forced with Int8ExportConfig(runtime='onnxruntime')"
    )
