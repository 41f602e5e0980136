import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from conftest import FAMILY_NAMES, tiny_batch, tiny_model
from datasets import Dataset
from transformers import HfArgumentParser

from hf_efficient import (
    AccuracyDropError,
    Int8ExportConfig,
    SharingConfig,
    TextClassifier,
    export_int8,
    layer_stack,
    make_student,
    prune_layers,
    share_layers,
)
from hf_efficient.export import int8 as int8_module
from hf_efficient.export import onnx_weight_bytes, run_onnx
from hf_efficient.export.graph import freeze_activation_ranges
from hf_efficient.export.int8 import optimum_available
from hf_efficient.metrics import evaluate_model


def tokenized_rows(n: int = 48, seed: int = 0) -> Dataset:
    batch = tiny_batch(batch=n, length=16, seed=seed)
    return Dataset.from_dict(
        {
            "input_ids": batch["input_ids"].tolist(),
            "attention_mask": batch["attention_mask"].tolist(),
            "token_type_ids": torch.zeros_like(batch["input_ids"]).tolist(),
            "label": batch["labels"].tolist(),
        }
    )


def fixed_batch():
    batch = tiny_batch(batch=6, length=16, seed=5)
    return {
        "input_ids": batch["input_ids"].numpy(),
        "attention_mask": batch["attention_mask"].numpy(),
        "token_type_ids": np.zeros_like(batch["input_ids"].numpy()),
    }


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_fp32_equals_pytorch_and_int8_is_close(tmp_path, family, mode):
    model = tiny_model(family)
    calibration = tokenized_rows() if mode == "static" else None  # dynamic mode reads none
    try:
        result = export_int8(model, tmp_path, Int8ExportConfig(mode=mode), calibration_dataset=calibration)
    except ValueError as error:
        # Optimum exports DeBERTa-v2 with If subgraphs, which static quantization cannot calibrate.
        assert family == "deberta-v2" and "subgraphs" in str(error)
        config = Int8ExportConfig(mode=mode, allow_fallback=True)
        result = export_int8(model, tmp_path, config, calibration_dataset=calibration)
        assert result.mode == "dynamic"
        mode = "dynamic"
    inputs = fixed_batch()
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items() if k != "token_type_ids"}).logits.numpy()
    fp32 = run_onnx(tmp_path / "model.onnx", inputs)
    int8 = run_onnx(tmp_path / "model_quantized.onnx", inputs)
    assert np.abs(fp32 - expected).max() <= 1e-4
    scale = np.abs(expected).max()
    assert np.abs(int8 - expected).max() <= 0.15 * scale
    # Rows whose classes are not a near tie keep their prediction.
    margin = np.abs(expected[:, 0] - expected[:, 1])
    clear = margin > 0.2 * scale
    assert (int8.argmax(-1) == expected.argmax(-1))[clear].all()
    assert result.mode == mode and result.backend == ("optimum" if optimum_available() else "onnxruntime")
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert report["int8_file"] == "model_quantized.onnx"
    assert (tmp_path / "config.json").exists()
    # The embeddings stay fp32 and dominate at this width; the MatMul weights are int8.
    assert onnx_weight_bytes(tmp_path / "model_quantized.onnx") < 0.7 * onnx_weight_bytes(tmp_path / "model.onnx")


def test_pruned_distilled_and_shared_models_export(tmp_path):
    teacher = tiny_model("bert", num_layers=4)
    models = {
        "pruned": prune_layers(tiny_model("bert", num_layers=4), 2),
        "student": make_student(teacher, 2),
        "shared": share_layers(tiny_model("bert", num_layers=4), SharingConfig()),
    }
    inputs = fixed_batch()
    for name, model in models.items():
        result = export_int8(model, tmp_path / name)
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
        assert np.abs(run_onnx(tmp_path / name / "model.onnx", inputs) - expected).max() <= 1e-4, name
        # What the report records, and `benchmark` shows, for the file: shared weights counted once.
        unique = {id(p): p.numel() for p in model.parameters()}
        assert result.parameters == sum(unique.values()) == model.num_parameters(), name
        if name == "shared":
            # Shared weights go through torch.onnx, which writes them once.
            assert result.backend == "onnxruntime"
            # The graph holds the weights: its config is the plain model's, for Optimum without hf_efficient.
            saved = json.loads((tmp_path / name / "config.json").read_text())
            assert (saved["model_type"], saved["architectures"]) == ("bert", ["BertForSequenceClassification"])
            assert saved["hf_efficient"]["sharing"]["num_groups"] == 1  # how it was made, still recorded
            assert result.parameters < tiny_model("bert", num_layers=4).num_parameters()
            one_layer = export_int8(prune_layers(tiny_model("bert", num_layers=4), 1), tmp_path / "one")
            assert result.parameters == one_layer.parameters  # one group: one layer's weights, counted once
            assert onnx_weight_bytes(tmp_path / name / "model.onnx") <= 1.2 * onnx_weight_bytes(
                tmp_path / "one/model.onnx"
            )
    assert len(layer_stack(models["pruned"])) == 2


@pytest.mark.skipif(not optimum_available(), reason="the optimum stack only")
def test_folder_loads_with_optimum_and_runs_in_a_pipeline(tmp_path):
    from conftest import minilm_path
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, pipeline

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    config.id2label, config.label2id = {0: "rotten", 1: "fresh"}, {"rotten": 0, "fresh": 1}
    model = BertForSequenceClassification(config).eval()
    export_int8(model, tmp_path, tokenizer=tokenizer)
    ort_model = ORTModelForSequenceClassification.from_pretrained(tmp_path, file_name="model_quantized.onnx")
    classify = pipeline("text-classification", model=ort_model, tokenizer=tokenizer)
    predictions = classify(["a delight", "a mess"])
    assert [p["label"] for p in predictions] == [r["label"] for r in TextClassifier(tmp_path)(["a delight", "a mess"])]


def test_text_classifier_matches_pytorch(tmp_path):
    from conftest import minilm_path
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2)
    config.id2label, config.label2id = {0: "rotten", 1: "fresh"}, {"rotten": 0, "fresh": 1}
    model = BertForSequenceClassification(config).eval()
    export_int8(model, tmp_path, tokenizer=tokenizer)
    assert not model.training  # exporting leaves the model in eval mode, dropout off
    # Default dropout and SDPA attention, other lengths than the export's example, padded rows.
    texts = ["a delight from start to end", "a mess", "fine", "I walked out"] * 3
    predictions = TextClassifier(tmp_path, file_name="model.onnx")(texts, batch_size=5)
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    probabilities = logits.softmax(-1)
    assert [p["label"] for p in predictions] == [config.id2label[int(i)] for i in logits.argmax(-1)]
    assert [p["score"] for p in predictions] == pytest.approx(probabilities.max(-1).values.tolist(), abs=1e-5)


def test_static_is_the_dynamic_graph_with_calibrated_ranges(tmp_path):
    model, calibration = tiny_model("bert"), tokenized_rows(48)
    dynamic = export_int8(model, tmp_path / "dynamic", Int8ExportConfig(mode="dynamic"))
    # Only the first 16 rows (one batch) calibrate.
    config = Int8ExportConfig(mode="static", calibration_samples=16)
    static = export_int8(model, tmp_path / "static", config, calibration_dataset=calibration)
    with pytest.warns(UserWarning, match="calibration_dataset has 48 rows, fewer than calibration_samples=100; the"):
        export_int8(
            model,
            tmp_path / "more",
            Int8ExportConfig(mode="static", calibration_samples=100),
            calibration_dataset=calibration,
        )
    ops = {
        name: [n.op_type for n in onnx.load(tmp_path / name / "model_quantized.onnx").graph.node]
        for name in ("dynamic", "static")
    }
    assert "DynamicQuantizeLinear" not in ops["static"]
    assert ops["static"].count("QuantizeLinear") == ops["dynamic"].count("DynamicQuantizeLinear")
    assert static.chosen["activations_calibrated"] == ops["dynamic"].count("DynamicQuantizeLinear") > 0
    # Every integer MatMul is one fused kernel, with its rescaling and bias.
    assert "MatMulInteger" not in ops["static"] and ops["static"].count("MatMulIntegerToFloat") == ops["dynamic"].count(
        "MatMulInteger"
    )
    # Calibrated on one batch of 16 rows, the frozen ranges are that batch's: same logits as dynamic on it.
    rows = {k: np.asarray(calibration[:16][k]) for k in ("input_ids", "attention_mask", "token_type_ids")}
    expected = run_onnx(tmp_path / "dynamic/model_quantized.onnx", rows)
    np.testing.assert_allclose(run_onnx(tmp_path / "static/model_quantized.onnx", rows), expected, atol=1e-6)
    # Other rows fall outside some ranges: close, but not equal.
    other = fixed_batch()
    difference = run_onnx(tmp_path / "static/model_quantized.onnx", other) - run_onnx(
        tmp_path / "dynamic/model_quantized.onnx", other
    )
    assert 0 < np.abs(difference).max() < 0.1
    # A row's logits: with frozen ranges, whatever rows share its batch; dynamic ranges span the batch.
    first = {k: v[:1] for k, v in other.items()}
    for name, same in (("static", True), ("dynamic", False)):
        path = tmp_path / name / "model_quantized.onnx"
        alone, batched = run_onnx(path, first)[0], run_onnx(path, other)[0]
        assert np.allclose(alone, batched, atol=1e-5) is same, name
    assert "gelus_approximated" not in dynamic.chosen and "gelus_approximated" not in static.chosen  # exact GELU
    with pytest.raises(ValueError, match="calibration batches are empty"):
        freeze_activation_ranges(tmp_path / "dynamic/model_quantized.onnx", [])


@pytest.mark.parametrize("approximate", [True, False])
def test_tanh_gelu_only_in_the_int8_model(tmp_path, approximate):
    model, config = tiny_model("bert"), Int8ExportConfig(approximate_gelu=approximate)
    result = export_int8(model, tmp_path, config)
    fp32_ops = [n.op_type for n in onnx.load(tmp_path / "model.onnx").graph.node]
    int8_ops = [n.op_type for n in onnx.load(tmp_path / "model_quantized.onnx").graph.node]
    assert "FastGelu" not in fp32_ops and "Erf" in fp32_ops  # the fp32 export stays exact
    assert int8_ops.count("FastGelu") == (len(layer_stack(model)) if approximate else 0)
    assert ("Erf" in int8_ops) is not approximate
    assert not (tmp_path / "model_tanh_gelu.onnx").exists()
    # The settings used are in the result and in the folder.
    report = json.loads((tmp_path / "export_report.json").read_text())
    assert result.config == report["config"] == config.to_dict()
    assert Int8ExportConfig.from_dict(report["config"]) == config


def test_accuracy_gate_retries_then_raises(tmp_path, monkeypatch):
    model = tiny_model("bert")
    measured = {"calls": 0}

    def fake_onnx_score(path, dataset, measure, reference, runtime=None):
        # fp32 keeps the PyTorch accuracy; every int8 attempt loses 5 points.
        measured["calls"] += 1
        assert measure.name == "accuracy"
        return evaluate_model(model, dataset)["accuracy"] - (0.05 if "quantized" in str(path) else 0.0)

    monkeypatch.setattr(int8_module, "onnx_score", fake_onnx_score)
    with pytest.raises(AccuracyDropError, match="in every attempt") as error:
        config = Int8ExportConfig(max_accuracy_drop=0.01, per_channel=False)
        export_int8(model, tmp_path, config, eval_dataset=tokenized_rows())
    attempts = error.value.result.attempts
    assert [a["per_channel"] for a in attempts] == [False, True, True]
    assert [a["approximate_gelu"] for a in attempts] == [False, False, False]
    assert attempts[-1]["exclude"] and all(a["drop"] == pytest.approx(0.05) for a in attempts)
    assert (tmp_path / "model.onnx").exists() and not (tmp_path / "model_quantized.onnx").exists()
    # The message names the metric, both sides and the smallest drop that would have kept an attempt.
    pytorch = error.value.result.metrics["pytorch"]["accuracy"]
    assert str(error.value).startswith(
        f"export_int8: int8 lost more accuracy than max_accuracy_drop=0.01 in every attempt: PyTorch {pytorch:.4f}, "
        f"int8 {pytorch - 0.05:.4f}, {pytorch - 0.05:.4f}, {pytorch - 0.05:.4f}; the fp32 model is kept in "
    )
    assert str(error.value).endswith("To keep the best attempt allow a drop of 0.05, or calibrate: mode='static'.")


def test_accuracy_gate_keeps_the_first_choice_that_passes(tmp_path, monkeypatch):
    model = tiny_model("bert")
    drops = iter([0.03, 0.0])

    def fake_onnx_score(path, dataset, measure, reference, runtime=None):
        base = evaluate_model(model, dataset)["accuracy"]
        return base - next(drops) if "quantized" in str(path) else base

    monkeypatch.setattr(int8_module, "onnx_score", fake_onnx_score)
    result = export_int8(model, tmp_path, Int8ExportConfig(max_accuracy_drop=0.01), eval_dataset=tokenized_rows())
    # The default is already per-channel with the exact GELU: the retry keeps the last MatMuls in fp32.
    assert len(result.attempts) == 2 and result.chosen["approximate_gelu"] is False and result.chosen["exclude"]
    assert result.metrics["onnx_int8"]["accuracy"] == result.metrics["pytorch"]["accuracy"]


def test_real_accuracy_is_reported(tmp_path):
    config = Int8ExportConfig(max_accuracy_drop=1.0)
    result = export_int8(tiny_model("roberta"), tmp_path, config, eval_dataset=tokenized_rows())
    assert set(result.metrics) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert result.metrics["onnx_fp32"]["accuracy"] == result.metrics["pytorch"]["accuracy"]
    # The same figure as the metrics module's, which the report shows.
    assert result.metrics["pytorch"]["accuracy"] == evaluate_model(tiny_model("roberta"), tokenized_rows())["accuracy"]
    assert (result.task, result.gate) == ("text-classification", "accuracy")


def test_static_mode_without_calibration_rows_is_refused_before_writing(tmp_path):
    # The settings' own checks are BAD_SETTINGS'; this one needs the call's arguments.
    config = Int8ExportConfig(mode="static")
    with pytest.raises(ValueError, match=r"^export_int8: Int8ExportConfig\(mode='static'\) needs calibration_dataset="):
        export_int8(tiny_model("bert"), tmp_path / "out", config)
    assert not (tmp_path / "out").exists()


# One bad value per setting, and a word of the fix its message must give.
BAD_SETTINGS = {
    "mode": ("fast", "use 'dynamic' or 'static'"),
    "per_channel": ("yes", "use True or False"),
    "approximate_gelu": (1, "use True or False"),
    "target": ("tpu", "'avx2' or 'arm64'"),
    "exclude": ("/classifier/MatMul", "a list of ONNX node names"),
    "max_accuracy_drop": (-0.1, "a fraction in [0, 1]"),
    "retry": (None, "use True or False"),
    "allow_fallback": ("no", "use True or False"),
    "calibration_samples": (0, "a number of rows >= 1"),
    "backend": ("tensorrt", "'optimum' or 'onnxruntime'"),
    "variant": ("int8-fast", "'int8-weights' or 'int8-fused'"),
    "runtime": ("tensorrt", "'openvino' or 'openvino-bf16'"),
    "timing_threads": (0, "a number of threads >= 1"),
}


def test_fallback_without_static_mode_is_refused():
    with pytest.raises(
        ValueError,
        match=r"^Int8ExportConfig\(allow_fallback=True\) lets static mode fall back .*"
        r"mode='dynamic' there is nothing to fall back from",
    ):
        Int8ExportConfig(allow_fallback=True)
    assert Int8ExportConfig(mode="static", allow_fallback=True).allow_fallback
    with pytest.raises(
        ValueError, match=r"^Int8ExportConfig\(variant='int8-fused', runtime='openvino'\): OpenVINO cannot"
    ):
        Int8ExportConfig(mode="static", variant="int8-fused", runtime="openvino")


def test_every_setting_is_validated():
    assert set(BAD_SETTINGS) == {spec.name for spec in dataclasses.fields(Int8ExportConfig)}


@pytest.mark.parametrize("name", BAD_SETTINGS)
def test_bad_setting_is_refused_in_one_line(name):
    value, fix = BAD_SETTINGS[name]
    with pytest.raises(ValueError) as error:
        Int8ExportConfig(**{name: value})
    message = str(error.value)
    assert "\n" not in message and f"Int8ExportConfig({name}={value!r})" in message and fix in message


@pytest.mark.parametrize("value", ["0.01", True, 1.5])
def test_max_accuracy_drop_must_be_a_fraction(value):
    with pytest.raises(ValueError, match="max_accuracy_drop="):
        Int8ExportConfig(max_accuracy_drop=value)


@pytest.mark.parametrize(
    "config",
    [
        Int8ExportConfig(),
        Int8ExportConfig(
            mode="static",
            per_channel=False,
            approximate_gelu=False,
            target="arm64",
            exclude=("/a", "/b"),  # a tuple becomes a list, as JSON gives it back
            max_accuracy_drop=0,
            retry=False,
            allow_fallback=True,
            calibration_samples=16,
            backend="onnxruntime",
            variant="int8-weights",
            runtime="openvino",
        ),
        Int8ExportConfig(variant="fastest", timing_threads=2),
    ],
)
def test_config_json_round_trip(config):
    assert Int8ExportConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    # The CLI builds its flags from the fields, and parses them back into this config.
    (parsed,) = HfArgumentParser(Int8ExportConfig).parse_dict(config.to_dict())
    assert parsed == config


def test_exclude_keeps_named_nodes_fp32_and_refuses_unknown_names(tmp_path):
    model = tiny_model("bert")
    export_int8(model, tmp_path / "plain", Int8ExportConfig(retry=False))
    graph = onnx.load(str(tmp_path / "plain" / "model.onnx")).graph
    last = [n.name for n in graph.node if n.op_type == "MatMul"][-1]  # the top layer's FFN output
    kept = export_int8(model, tmp_path / "kept", Int8ExportConfig(exclude=[last], retry=False))
    nodes = {n.name: n.op_type for n in onnx.load(str(tmp_path / "kept" / "model_quantized.onnx")).graph.node}
    assert nodes[last] == "MatMul" and kept.chosen["exclude"] == [last]  # still fp32
    with pytest.raises(ValueError) as error:  # a misspelt name would keep nothing in fp32, silently
        export_int8(model, tmp_path / "bad", Int8ExportConfig(exclude=[last.lower()]))
    assert str(error.value) == (
        f"export_int8: Int8ExportConfig(exclude=[{last.lower()!r}]) names no node of model.onnx: give ONNX node "
        f"names, e.g. its last MatMul {last!r}. Did you mean {last!r}?"
    )


def test_untokenized_rows_and_a_dataset_dict_are_refused_in_one_line(tmp_path):
    from datasets import Dataset, DatasetDict

    raw = Dataset.from_dict({"text": ["a delight", "a mess"], "label": [1, 0]})
    with pytest.raises(ValueError) as error:
        export_int8(tiny_model("bert"), tmp_path, eval_dataset=raw)
    assert str(error.value) == (
        "export_int8(eval_dataset=...): the rows have no input_ids (columns ['text', 'label']); tokenize them "
        "first with hf_efficient.data.tokenize_dataset(data, tokenizer)."
    )
    with pytest.raises(ValueError, match=r"^export_int8\(calibration_dataset=...\): give one split .*\['test'\]\.$"):
        export_int8(tiny_model("bert"), tmp_path, mode="static", calibration_dataset=DatasetDict(test=raw))
    with pytest.raises(ValueError, match=r"^export_int8: Int8ExportConfig\(mode='dynamic'\) .* reads no calibration"):
        export_int8(tiny_model("bert"), tmp_path, calibration_dataset=tokenized_rows(4))  # never read: refused
    with pytest.raises(ValueError, match=r"^export_int8\(eval_dataset=...\) has no rows; give at least one, or None"):
        export_int8(tiny_model("bert"), tmp_path, eval_dataset=tokenized_rows(4).select([]))
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ValueError, match=r"^export_int8\(output_dir='.*a_file'\) is a file; give a folder"):
        export_int8(tiny_model("bert"), tmp_path / "a_file")


def test_rows_the_model_cannot_run_or_whose_labels_its_head_cannot_have_are_refused(tmp_path):
    """Before, labels of 7, -1 or 0.5 scored accuracy 0 on every side, so the gate passed on nonsense, and rows the
    model cannot read failed inside torch."""
    model, rows = tiny_model("bert"), tokenized_rows(8)
    for label in (7, -1, 0.5):
        bad = rows.remove_columns("label").add_column("label", [label] * 8)
        calls = {
            r"export_int8\(eval_dataset=...\)": lambda r: export_int8(model, tmp_path, eval_dataset=r),
            r"evaluate_model\(dataset=...\)": lambda r: evaluate_model(model, r),
        }
        for where, call in calls.items():
            with pytest.raises(ValueError, match=rf"^{where}: the rows' label hold {label:g}, but the model's labels"):
                call(bad)
    long = Dataset.from_dict({"input_ids": [[5] * 600], "attention_mask": [[1] * 600], "label": [0]})
    with pytest.raises(ValueError, match=r"rows of 600 tokens, but the model has 512 positions; tokenize with max_"):
        export_int8(model, tmp_path, Int8ExportConfig(mode="static"), calibration_dataset=long)
    beyond = Dataset.from_dict({"input_ids": [[5, 10**6]], "attention_mask": [[1, 1]]})
    with pytest.raises(ValueError, match=r"token id 1000000 is outside the model's vocabulary of \d+; tokenize with"):
        evaluate_model(model, beyond, task="text-classification")
    ragged = Dataset.from_dict({"input_ids": [[5, 6], [5]], "attention_mask": [[1, 1], [1]]})
    with pytest.raises(ValueError, match=r"the rows' input_ids differ in length; tokenize with padding='max_length'"):
        evaluate_model(model, ragged)
    with pytest.raises(ValueError, match=r"^export_int8\(output_dir=None\): give the folder to write the export into"):
        export_int8(model, None)
    # A regression gate on labels that never vary compares two undefined correlations: refused, not a crash.
    regressor = tiny_model("bert", task="text-regression")
    constant = rows.remove_columns("label").add_column("label", [1.0] * 8)
    with pytest.raises(ValueError, match=r"every row has the same label, so the Pearson correlation the gate"):
        export_int8(regressor, tmp_path, eval_dataset=constant)


def test_static_calibration_rows_without_token_type_ids_get_segment_zero(tmp_path):
    model, rows = tiny_model("bert"), tokenized_rows(16)
    config = Int8ExportConfig(mode="static", calibration_samples=16)
    export_int8(model, tmp_path / "with", config, calibration_dataset=rows)
    export_int8(model, tmp_path / "without", config, calibration_dataset=rows.remove_columns("token_type_ids"))
    batch = fixed_batch()  # ranges calibrated on the same rows: the same int8 model
    np.testing.assert_array_equal(
        run_onnx(tmp_path / "with" / "model_quantized.onnx", batch),
        run_onnx(tmp_path / "without" / "model_quantized.onnx", batch),
    )


def test_deprecated_keywords_warn_and_export_the_same(tmp_path):
    model, rows = tiny_model("bert"), tokenized_rows(16)
    config = Int8ExportConfig(mode="static", per_channel=False)
    with pytest.warns(FutureWarning) as warned:
        old = export_int8(model, tmp_path / "old", mode="static", per_channel=False, calibration_dataset=rows)
    (warning,) = [w for w in warned if str(w.message).startswith("export_int8(")]  # the exporters warn too
    assert "Int8ExportConfig(mode='static', per_channel=False)" in str(warning.message)
    assert warning.category is FutureWarning and warning.filename == __file__  # points at the caller
    new = export_int8(model, tmp_path / "new", config, calibration_dataset=rows)
    assert {**old.to_dict(), "output_dir": None} == {**new.to_dict(), "output_dir": None}
    assert old.config == config.to_dict()
    inputs = fixed_batch()
    np.testing.assert_array_equal(
        run_onnx(tmp_path / "old/model_quantized.onnx", inputs), run_onnx(tmp_path / "new/model_quantized.onnx", inputs)
    )


def test_config_and_keywords_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="got config= and the settings \\['mode'\\]"):
        export_int8(tiny_model("bert"), tmp_path, Int8ExportConfig(), mode="static")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['modes'\\]"):
        export_int8(tiny_model("bert"), tmp_path, modes="static")
    with pytest.raises(TypeError, match="expected an Int8ExportConfig"):
        export_int8(tiny_model("bert"), tmp_path, {"mode": "static"})
    assert not list(tmp_path.iterdir())  # refused before writing anything


def test_models_optimum_cannot_export_go_through_torch_onnx(tmp_path):
    # Weights shared by hand (not by share_layers), and a Shared<Class> whose groups share nothing.
    tied = tiny_model("bert")
    layers = layer_stack(tied)
    layers[1].intermediate.dense.weight = layers[0].intermediate.dense.weight
    models = {"tied": tied, "one-layer-groups": share_layers(tiny_model("bert"), SharingConfig(num_groups=4))}
    assert int8_module._optimum_exports(tiny_model("bert"))
    inputs = fixed_batch()
    for name, model in models.items():
        assert not int8_module._optimum_exports(model), name
        assert export_int8(model, tmp_path / name).backend == "onnxruntime"
        with torch.no_grad():
            expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
        assert np.abs(run_onnx(tmp_path / name / "model.onnx", inputs) - expected).max() <= 1e-4, name


def _quantized_weights(path) -> tuple[set[str], int]:
    """The dtypes of a graph's 8-bit initializers and the largest magnitude of its s8 ones (0 without any)."""
    weights = [onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer]
    weights = [w for w in weights if w.dtype in (np.int8, np.uint8)]
    signed = [int(np.abs(w.astype(np.int32)).max()) for w in weights if w.dtype == np.int8]
    return {w.dtype.name for w in weights}, max(signed, default=0)


@pytest.mark.parametrize("family", FAMILY_NAMES[:1])
def test_targets_all_export(tmp_path, family):
    # Without VNNI, u8 x s8 products can overflow: "avx2" writes 7-bit s8 weights (|w| <= 64) on ONNX Runtime's
    # quantizer and u8 weights on Optimum's; the other targets full-range s8. A model with tied weights takes ONNX
    # Runtime's quantizer where Optimum exports the plain one.
    tied = tiny_model(family)
    layers = layer_stack(tied)
    layers[1].intermediate.dense.weight = layers[0].intermediate.dense.weight
    for target in int8_module.TARGETS:
        for name, model in (("plain", tiny_model(family)), ("tied", tied)):
            result = export_int8(model, tmp_path / target / name, Int8ExportConfig(target=target))
            assert result.target == target
            dtypes, largest = _quantized_weights(tmp_path / target / name / "model_quantized.onnx")
            assert (largest <= 64) == (target == "avx2"), (target, name, result.backend, largest)
            assert ("uint8" in dtypes) or result.backend == "onnxruntime" or target != "avx2"


def test_model_trained_under_mixed_precision_exports(tmp_path):
    from transformers import Trainer, TrainingArguments

    model = tiny_model("bert")
    rows = tokenized_rows(8)
    args = TrainingArguments(str(tmp_path / "train"), max_steps=1, bf16=True, use_cpu=True, report_to=[])
    Trainer(model=model, args=args, train_dataset=rows).train()
    assert "_original_forward" in model.__dict__  # accelerate's fp32 wrapper is on forward
    export_int8(model, tmp_path / "export")
    inputs = fixed_batch()
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.float().numpy()
    assert np.abs(run_onnx(tmp_path / "export/model.onnx", inputs) - expected).max() <= 1e-4


def test_a_bf16_model_is_refused_and_a_bf16_folder_exports_in_float32(tmp_path):
    model = tiny_model("bert").to(torch.bfloat16)
    with pytest.raises(ValueError, match=r"weights are torch.bfloat16; .* pass model.float\(\)"):
        export_int8(model, tmp_path / "refused")
    # A folder saved in bf16 loads in float32 (transformers 5 would keep bf16): the bf16 weights, exactly.
    model.save_pretrained(tmp_path / "bf16")
    from conftest import minilm_path
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    result = export_int8(str(tmp_path / "bf16"), tmp_path / "onnx", tokenizer=tokenizer, eval_dataset=tokenized_rows(8))
    inputs = fixed_batch()
    with torch.no_grad():
        expected = model.float()(**{name: torch.from_numpy(value) for name, value in inputs.items()}).logits
    np.testing.assert_allclose(run_onnx(tmp_path / "onnx" / result.fp32_file, inputs), expected.numpy(), atol=1e-4)
