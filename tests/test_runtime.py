"""The second runtime (`export.runtime`): OpenVINO runs the same int8 file as ONNX Runtime, the export
records which runtime it chose, and every loader opens the file with it."""

import dataclasses
import json

import datasets
import numpy as np
import pytest
import torch
import transformers
from conftest import SENTENCES, minilm_path, tiny_model, tiny_sentence_transformer

import hf_efficient as hfe
from hf_efficient import Int8ExportConfig, TextClassifier, export_int8
from hf_efficient.export import fastest, runtime
from hf_efficient.export import int8 as int8_export
from hf_efficient.export.int8 import onnx_outputs
from hf_efficient.export.onnx import run_onnx
from hf_efficient.export.runtime import open_session, recorded_runtime
from hf_efficient.report.measure import Latency
from hf_efficient.report.schema import Timing
from hf_efficient.sentence import SentenceEmbedder

TEXTS = ["alice met bob in paris", "a delight from start to end", "the cat sat", "I walked out of london"] * 4
STATIC = {"mode": "static", "calibration_samples": 16}


@pytest.fixture(scope="module")
def tokenizer():
    return transformers.AutoTokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def rows(tokenizer):
    encoded = tokenizer(TEXTS, padding="max_length", max_length=16, truncation=True)
    return datasets.Dataset.from_dict({**encoded, "label": [i % 2 for i in range(len(TEXTS))]})


def classifier(tokenizer):
    return tiny_model("bert", num_layers=2, vocab_size=tokenizer.vocab_size)


def test_openvino_runs_the_int8_file_as_onnx_runtime_does(tmp_path, tokenizer, rows):
    config = Int8ExportConfig(variant="int8-all", runtime="openvino", **STATIC)
    result = export_int8(
        classifier(tokenizer), tmp_path, config, tokenizer=tokenizer, eval_dataset=rows, calibration_dataset=rows
    )
    int8 = tmp_path / result.int8_file
    assert result.runtime == json.loads((tmp_path / "export_report.json").read_text())["runtime"] == "openvino"
    assert recorded_runtime(int8) == "openvino" and recorded_runtime(tmp_path / "model.onnx") == "onnxruntime"

    # The same file on both runtimes: the same logits (int8 products are exact; fp32 sums in another order).
    on_openvino, on_onnxruntime = (onnx_outputs(int8, rows, name)["logits"] for name in ("openvino", "onnxruntime"))
    np.testing.assert_allclose(on_openvino, on_onnxruntime, atol=1e-4)
    assert result.chosen["accuracy"] == float((on_openvino.argmax(-1) == np.asarray(rows["label"])).mean())
    feed = {name: np.asarray(rows[:4][name]) for name in ("input_ids", "attention_mask", "token_type_ids")}
    np.testing.assert_allclose(run_onnx(int8, feed), on_openvino[:4], atol=1e-5)  # also on the recorded runtime

    # The helpers open the int8 file on the recorded runtime, other files on ONNX Runtime, unless told.
    recorded, forced = TextClassifier(tmp_path), TextClassifier(tmp_path, runtime="onnxruntime", threads=1)
    assert (recorded.session.runtime, forced.session.runtime) == ("openvino", "onnxruntime")
    assert TextClassifier(tmp_path, file_name="model.onnx").session.runtime == "onnxruntime"
    got, expected = recorded(TEXTS[:4]), forced(TEXTS[:4])
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert [g["score"] for g in got] == pytest.approx([e["score"] for e in expected], abs=1e-4)


def test_openvino_compiles_a_recurring_shape_for_itself(tmp_path, tokenizer, rows, monkeypatch):
    config = Int8ExportConfig(variant="int8-all", runtime="openvino", **STATIC)
    export_int8(classifier(tokenizer), tmp_path, config, tokenizer=tokenizer, calibration_dataset=rows)
    session = open_session(tmp_path / "model_quantized.onnx", threads=1)
    reference = open_session(tmp_path / "model_quantized.onnx", "onnxruntime", threads=1)
    monkeypatch.setattr(runtime.OpenVINOSession, "SHAPES_COMPILED", 2)
    feeds = [
        {name: np.asarray(rows[:size][name])[:, :length] for name in session.input_names}
        for size, length in ((4, 16), (2, 16), (4, 8))
    ]
    shapes = [tuple(f[n].shape for n in session.input_names) for f in feeds]
    session.compile_seconds = float("inf")  # compiling never pays: every shape runs on the any-shape model
    for feed in feeds:
        session.run(None, feed)
    assert not session.fixed and set(session.seconds_at) == set(shapes)
    session.compile_seconds = 1e-9  # pays after one call: each shape already run gets its own model
    for feed in feeds:  # the third compiled evicts the first, which must pay again before it gets one
        np.testing.assert_allclose(session.run(None, feed)[0], reference.run(None, feed)[0], atol=1e-4)
    assert list(session.fixed) == shapes[1:] and session.seconds_at[shapes[0]] == 0.0
    assert [list(port.get_shape()) for port in session.fixed[shapes[2]].model_inputs] == [[4, 8]] * len(shapes[2])
    before = dict(session.seconds_at)
    session.run(None, feeds[1])  # on its own model: nothing added to the any-shape model's time
    assert session.seconds_at == before and list(session.fixed) == [shapes[2], shapes[1]]
    session.run(None, feeds[0])  # evicted: on the any-shape model, counting again
    assert shapes[0] not in session.fixed and session.seconds_at[shapes[0]] > 0


def test_openvino_asked_for_a_dynamic_file_warns_that_it_is_slow(tmp_path, tokenizer, rows, recwarn):
    export_int8(classifier(tokenizer), tmp_path, Int8ExportConfig(mode="dynamic"), tokenizer=tokenizer)
    with pytest.warns(UserWarning, match=r"^TextClassifier: .* is quantized dynamically, which OpenVINO runs about 4x"):
        slow = TextClassifier(tmp_path, runtime="openvino")
    assert slow.session.runtime == "openvino"  # the user's choice is kept
    recwarn.clear()
    TextClassifier(tmp_path)  # on ONNX Runtime (recorded): nothing to say
    TextClassifier(tmp_path, file_name="model.onnx", runtime="openvino")  # the fp32 file: nothing dynamic
    assert not [w for w in recwarn if "quantized dynamically" in str(w.message)]


def test_runtime_settings_fail_in_one_line(tmp_path, tokenizer, rows, monkeypatch):
    with pytest.raises(ValueError, match=r"runtime='openvino'\) needs mode='static'.*or use runtime='onnxruntime'"):
        Int8ExportConfig(runtime="openvino")
    with pytest.raises(ValueError, match=r"Int8ExportConfig\(runtime='openvno'\).*Did you mean 'openvino'\?"):
        Int8ExportConfig(runtime="openvno")
    model = classifier(tokenizer)
    export_int8(
        model, tmp_path, Int8ExportConfig(runtime="openvino", **STATIC), tokenizer=tokenizer, calibration_dataset=rows
    )
    with pytest.raises(ValueError, match=r"open_session\(runtime='tensorrt'\) is not supported: use one of 'onnx"):
        open_session(tmp_path / "model.onnx", "tensorrt")

    for module in (runtime, int8_export):  # as where OpenVINO is not installed
        monkeypatch.setattr(module, "installed", lambda name: False)
    config = Int8ExportConfig(runtime="openvino", **STATIC)
    with pytest.raises(
        ValueError, match=r"^export_int8: Int8ExportConfig\(runtime='openvino'\) needs pip install openvino"
    ):
        export_int8(model, tmp_path / "none", config, calibration_dataset=rows)
    assert not (tmp_path / "none").exists()
    # A folder exported for OpenVINO, loaded where it is not installed: the fix, not a silent switch.
    with pytest.raises(
        ValueError, match=r"^TextClassifier: .* runs on OpenVINO .*pip install openvino, or pass runtime="
    ):
        TextClassifier(tmp_path)
    assert TextClassifier(tmp_path, runtime="onnxruntime").session.runtime == "onnxruntime"


@pytest.mark.parametrize(
    "requested, mode, installed, bf16, runtimes, note",
    [
        ("auto", "static", True, True, ["onnxruntime", "openvino", "openvino-bf16"], ""),
        ("auto", "static", True, False, ["onnxruntime", "openvino"], ""),  # no bf16 instructions
        ("auto", "static", False, True, ["onnxruntime"], "; OpenVINO not timed: not installed"),
        ("auto", "dynamic", True, True, ["onnxruntime"], "; OpenVINO not timed: it runs dynamic graphs slowly"),
        ("auto", "dynamic", False, True, ["onnxruntime"], ""),
        ("onnxruntime", "static", True, True, ["onnxruntime"], ""),
        ("openvino", "static", True, True, ["openvino"], ""),
        ("openvino-bf16", "static", True, False, ["openvino-bf16"], ""),  # asked for: OpenVINO uses fp32 there
    ],
)
def test_runtimes_fastest_times(requested, mode, installed, bf16, runtimes, note, monkeypatch):
    monkeypatch.setattr(fastest, "installed", lambda name: installed)
    monkeypatch.setattr("hf_efficient.report.cpu.has_fast_bf16", lambda: bf16)
    timed, why = fastest.runtimes_to_time(requested, mode)
    assert timed == runtimes and why.startswith(note) and bool(why) == bool(note)


def fixed_latency(ms: dict, monkeypatch):
    """`measure_latency` giving each runner the (batch 1, batch 32) milliseconds of `ms`."""

    def measure(runners, feeds, threads, **_):
        assert set(runners) == set(ms), set(runners) ^ set(ms)
        for run in runners.values():  # every session really runs (OpenVINO included)
            run(feeds[1])
        return Latency({name: dict(zip(feeds, ms[name], strict=True)) for name in runners}, {}, Timing(reliable=True))

    monkeypatch.setattr("hf_efficient.report.measure.measure_latency", measure)
    monkeypatch.setattr("hf_efficient.report.cpu.has_fast_bf16", lambda: True)


def test_fastest_keeps_the_faster_runtime(tmp_path, tokenizer, rows, monkeypatch):
    # int8-fused's contrib operators (QAttention, ...) do not load on OpenVINO: named, not timed there.
    ms = {"int8-all": (2.0, 60.0), "int8-weights": (2.1, 62.0), "int8-fused": (2.5, 70.0)}
    ms |= {"int8-all on OpenVINO": (2.2, 50.0), "int8-weights on OpenVINO": (1.9, 47.0)}
    ms |= {"int8-all on OpenVINO bf16": (2.1, 44.0), "int8-weights on OpenVINO bf16": (1.9, 45.0)}
    ms |= {"PyTorch fp32": (8.0, 400.0), "PyTorch bf16": (5.0, 90.0)}
    fixed_latency(ms, monkeypatch)
    config = Int8ExportConfig(variant="fastest", **STATIC)
    result = export_int8(
        classifier(tokenizer), tmp_path, config, tokenizer=tokenizer, eval_dataset=rows, calibration_dataset=rows
    )
    assert (result.variant, result.runtime) == ("int8-weights", "openvino-bf16")
    record = json.loads((tmp_path / "export_report.json").read_text())
    assert record["runtime"] == "openvino-bf16" and set(record["variant_timings"]) == set(ms)
    reason = result.variant_reason
    assert "the fastest of 3 graphs on ONNX Runtime, OpenVINO and OpenVINO bf16 timed on this CPU" in reason
    assert "int8-weights on OpenVINO bf16 1.90 / 45.00" in reason
    assert "; 2.63x / 2.00x the fastest plain PyTorch" in reason
    assert "; not loaded: int8-fused on OpenVINO (RuntimeError: No conversion rule found for operations:" in reason
    assert "int8-fused on OpenVINO bf16 (RuntimeError" in reason
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == ["model.onnx", "model_quantized.onnx"]
    assert TextClassifier(tmp_path).session.runtime == "openvino-bf16"


def test_sentence_export_on_openvino(tmp_path):
    model = tiny_sentence_transformer("bert", tmp_path / "model")
    config = Int8ExportConfig(runtime="openvino", **STATIC)
    out = tmp_path / "out"
    result = hfe.export_int8(model, str(out), config, eval_dataset=SENTENCES, calibration_dataset=SENTENCES)
    assert result.runtime == "openvino" and result.metrics["onnx_int8"]["cosine_to_pytorch"] >= 0.99
    recorded, forced = SentenceEmbedder(str(out)), SentenceEmbedder(str(out), runtime="onnxruntime")
    assert (recorded.session.runtime, forced.session.runtime) == ("openvino", "onnxruntime")
    np.testing.assert_allclose(recorded(SENTENCES), forced(SENTENCES), atol=1e-4)
    with torch.no_grad():
        assert recorded(SENTENCES).shape == model.encode(SENTENCES).shape


@pytest.mark.parametrize("recorded, shown", [("openvino", " on openvino,"), ("onnxruntime", ","), (None, ",")])
def test_recipe_report_names_the_runtime(recorded, shown):
    from hf_efficient.recipe.steps import describe_export
    from hf_efficient.report import ModelEntry, Report, report_markdown

    record = {"backend": "onnxruntime", "mode": "static", "chosen": {}, "variant": "int8-all"}
    record |= {"variant_reason": "the fastest of 3 graphs", "runtime": recorded}
    source, entry = ModelEntry(name="student"), ModelEntry(name="student-int8", format="onnx")
    describe_export(entry, source, record)
    report = Report.from_dict(
        {"name": "demo", "task": {"dataset": "d", "split": "test"}, "hardware": {"cpu": "c", "cpu_threads": 1}}
        | {"reference": "student", "models": [dataclasses.asdict(source), dataclasses.asdict(entry)]}
    )
    assert f"`student-int8`: int8 graph `int8-all`{shown} the fastest of 3 graphs." in report_markdown(report)
