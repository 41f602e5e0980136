"""Model cards and Hub upload, against a local fake Hub driven by the real huggingface_hub client."""

import json
import re
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_batch, tiny_model
from fake_hub import FakeHub
from huggingface_hub import ModelCard, constants, file_download, snapshot_download
from huggingface_hub.utils import _http
from transformers import AutoModelForSequenceClassification, BertTokenizerFast

from hf_efficient import (
    LayerDropConfig,
    SharingConfig,
    TextClassifier,
    apply_layerdrop,
    export_int8,
    layer_stack,
    make_student,
    prune_layers,
    share_layers,
)
from hf_efficient.export import run_onnx
from hf_efficient.export.int8 import optimum_available
from hf_efficient.hub import push_to_hub, write_model_card
from hf_efficient.tasks import TASKS

TOKEN = "hf_fake_write_token"
RECIPE = "name: quickstart\nmodel: sentence-transformers/all-MiniLM-L6-v2\nsteps:\n  - layerdrop: {rate: 0.2}\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(24)  # the card only links the plots
# Reset the client's HTTP sessions: hub 0.x caches one per thread (with the offline adapter
# mounted when it was made), 1.x and later one shared client.
reset_sessions = getattr(_http, "reset_sessions", None) or _http.close_session


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """A fake Hub on 127.0.0.1 that the huggingface_hub client talks to, and nothing else."""
    server = FakeHub()
    port = int(server.url.rsplit(":", 1)[1])
    connect = socket.socket.connect

    def local_only(sock, address):
        if tuple(address[:2]) != ("127.0.0.1", port):
            raise OSError(f"A test tried to reach {address}; only the fake Hub may be reached.")
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", local_only)
    monkeypatch.setattr(constants, "ENDPOINT", server.url)
    template = server.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    # hub 0.x's hf_hub_url formats its own import of the template.
    monkeypatch.setattr(file_download, "HUGGINGFACE_CO_URL_TEMPLATE", template, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # conftest sets HF_HUB_OFFLINE=1
    # With telemetry on, hub 2.x builds the user agent from an "agent harness" list fetched from the Hub.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HF_XET_CACHE", str(tmp_path / "xet"))  # hf_xet's logs, when the client starts it
    reset_sessions()
    yield server
    reset_sessions()
    server.close()


def model_entry(name, kind, layers, accuracy, techniques=(), **fields):
    """One model of a report, with the measurements the runner writes."""
    entry = {
        "name": name,
        "kind": kind,
        "techniques": list(techniques),
        "path": name,
        "format": "onnx" if kind == "int8" else "pytorch",
        "layers": layers,
        "parameters": 22_713_216 * layers // 6,
        "size_mb": 90.9 * layers / 6,
        "metrics": {"accuracy": accuracy, "f1": accuracy + 0.01, "matthews_correlation": 2 * accuracy - 1},
        "accuracy_retained": accuracy / 0.84,
        "latency_ms": {"1": 5.1 * layers / 6, "32": 80.2 * layers / 6},
        "speedup": {"1": 6 / layers, "32": 6 / layers},
        "gpu_throughput": None,
        "training_seconds": 400.2,
        "energy": {"training_joules": None, "per_1000_predictions_joules": None, "source": None},
    }
    return {**entry, **fields}


MODELS = {
    "finetuned": model_entry("teacher", "finetuned", 6, 0.84),
    "layerdrop": model_entry("teacher-layerdrop", "layerdrop", 6, 0.83, ["layerdrop"]),
    "pruned": model_entry("teacher-layerdrop-3", "pruned", 3, 0.79, ["layerdrop"], training_seconds=None),
    "pkd": model_entry("student", "pkd", 3, 0.81, ["pkd"]),
    "shared": model_entry("shared", "shared", 6, 0.8, ["albert-sharing"]),
    "int8": model_entry("student-int8", "int8", 3, 0.805, ["pkd", "int8"], training_seconds=None),
}


def example_report(final_kind: str = "int8", **overrides) -> dict:
    """A report as the runner writes it, about the model of `final_kind`."""
    report = {
        "name": "quickstart",
        "base_model": "sentence-transformers/all-MiniLM-L6-v2",
        "task": {"dataset": "rotten_tomatoes", "split": "test", "rows": 1409, "metric": "accuracy"},
        "hardware": {"cpu": "Test CPU @ 2 GHz", "cpu_threads": 2, "gpu": None},
        "reference": "teacher",
        "final": MODELS[final_kind]["name"],
        "techniques": ["layerdrop", "pkd", "albert-sharing", "int8"],
        "models": list(MODELS.values()),
        "depths": {"teacher": {"6": 0.84, "4": 0.77}, "teacher-layerdrop": {"6": 0.83, "4": 0.81}},
        "plots": ["accuracy_by_depth.png", "accuracy_vs_size.png"],
    }
    return {**report, **overrides}


def write_folder_extras(folder: Path, report: dict) -> None:
    """What the runner writes next to the model: report, plots, recipe."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    for plot in report["plots"]:
        (folder / plot).write_bytes(PNG)
    (folder / "recipe.yaml").write_text(RECIPE)


def folder_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A BERT tokenizer over the tiny models' 100-token vocabulary."""
    folder = tmp_path_factory.mktemp("tokenizer")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "delight", "mess", "film", "the"]
    (folder / "vocab.txt").write_text("\n".join(words + [f"w{i}" for i in range(90)]) + "\n")
    return BertTokenizerFast.from_pretrained(folder)


def logits(model, batch) -> np.ndarray:
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.numpy()


# ------------------------------------------------------------------------------------ the card


def test_card_metadata_round_trips(tmp_path):
    report = example_report("int8")
    report["models"][-1] = {**report["models"][-1], "source": "student"}  # the export of `student`
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    card = write_model_card(tmp_path, report, RECIPE, repo_id="alice/quickstart-int8")

    text = (tmp_path / "README.md").read_text()
    assert text == str(card) and text.startswith("---\n")
    loaded = ModelCard.load(tmp_path / "README.md")
    data = loaded.data.to_dict()
    # What from_pretrained loads is not what the metadata scores: the card says so, with both figures.
    assert "`from_pretrained` loads `student` (accuracy 0.8100); the int8 file\n  scores 0.8050" in text
    # The tags of the techniques of the card's model, not of every model of the run (the teacher's LayerDrop).
    assert data["tags"] == "hf_efficient knowledge-distillation pkd int8 onnx".split()
    assert data["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert data["datasets"] == ["rotten_tomatoes"]
    assert (data["library_name"], data["pipeline_tag"]) == ("transformers", "text-classification")
    assert (data["license"], data["language"]) == ("apache-2.0", "en")
    index = data["model-index"][0]
    assert index["name"] == "quickstart-student-int8"
    result = index["results"][0]
    assert result["task"]["type"] == "text-classification"
    assert result["dataset"] == {"name": "rotten_tomatoes", "type": "rotten_tomatoes", "split": "test"}
    final_metrics = MODELS["int8"]["metrics"]
    assert {m["type"]: m["value"] for m in result["metrics"]} == final_metrics
    assert {r.metric_type: r.metric_value for r in loaded.data.eval_results} == final_metrics
    assert {r.dataset_split for r in loaded.data.eval_results} == {"test"}


def test_card_body(tmp_path):
    report = example_report("int8")
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    body = write_model_card(tmp_path, report, RECIPE, repo_id="alice/quickstart-int8").text

    assert body.startswith("# quickstart-student-int8\n")
    header = (
        "| model | kind | layers | parameters | size (MB) | accuracy | accuracy retained | CPU latency, batch 1 "
        "(speed-up) | CPU latency, batch 32 (speed-up) | training time | training energy | energy / 1000 predictions |"
    )
    assert header in body
    rows = [  # "nm": not measured
        "`teacher` | finetuned | 6 | 22.7M | 90.9 | 0.8400 | 100.0% | 5.1 ms (1.00x) | 80.2 ms (1.00x) | 400 s | nm",
        "`teacher-layerdrop-3` | pruning | 3 | 11.4M | 45.5 | 0.7900 | 94.0% | 2.5 ms (2.00x) | 40.1 ms (2.00x) | nm"
        " | nm",
        # An export was not trained: its training columns say so ("-") rather than "not measured".
        "`student-int8` (this model) | int8 | 3 | 11.4M | 45.5 | 0.8050 | 95.8% | 2.5 ms (2.00x) | 40.1 ms (2.00x)"
        " | - | -",
    ]
    rows = [f"| {row} | nm |".replace("| nm", "| not measured") for row in rows]
    for row in rows:
        assert row in body
    assert body.count("| `") == len(MODELS)  # one row per model; the depth table is LayerDrop's only
    assert "```yaml\n" + RECIPE.strip() + "\n```" in body
    assert "![accuracy by depth](accuracy_by_depth.png)" in body and "![accuracy vs size](accuracy_vs_size.png)" in body
    assert "Energy not measured" in body
    assert "CPU (Test CPU @ 2 GHz, 2 threads)" in body and "no GPU was measured" in body
    assert "scores accuracy 0.8050 on the test split, 95.8% of `teacher`'s" in body
    assert "runs 2.00x as fast as `teacher` at batch size 1" in body
    assert (
        "[sentence-transformers/all-MiniLM-L6-v2](https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2)"
        in body
    )
    # Loading: plain transformers, Optimum from onnx/, and TextClassifier.
    assert 'AutoModelForSequenceClassification.from_pretrained("alice/quickstart-int8")' in body
    assert (
        'ORTModelForSequenceClassification.from_pretrained(\n    "alice/quickstart-int8", subfolder="onnx", '
        'file_name="model_quantized.onnx"\n)' in body
    )
    assert 'TextClassifier(snapshot_download("alice/quickstart-int8", allow_patterns=["onnx/*"]) + "/onnx")' in body
    assert "import hf_efficient" not in body  # not a shared model
    assert "quantized to int8" in body and "fp32 model before quantization" in body


def test_card_warns_when_absolute_latency_is_unreliable(tmp_path):
    reason = "measured while the machine was busy (load 7.9 on 2 cores)"
    timing = {"load": 7.9, "cores": 2, "threads": 2, "rounds": 5, "reliable": False, "reason": reason}
    models = [{**MODELS["finetuned"], "latency_spread": {"1": 0.4, "32": 0.03}}, MODELS["pkd"]]
    report = example_report("pkd", models=models, timing=timing, techniques=["pkd"])
    write_folder_extras(tmp_path, report)
    body = write_model_card(tmp_path, report).text
    warning = f"**Warning: latency was {reason}: compare the speed-ups, not the milliseconds.**"
    assert "| 5.1 ms (1.00x, spread 40%) | 80.2 ms (1.00x) |" in body
    assert f" |\n\n{warning}\n\nSpread: how far apart the slowest and fastest of the 5 timed rounds" in body
    # A report without timing (an earlier version's, or a quiet run) has no warning.
    quiet = example_report("pkd")
    write_folder_extras(tmp_path, quiet)
    assert "Warning" not in write_model_card(tmp_path, quiet).text


@pytest.mark.parametrize("mode", ["dynamic", "static", None])
def test_int8_card_says_how_activations_are_quantized(tmp_path, mode):
    report = example_report("int8")
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    if mode is not None:  # a folder without export_report.json is described as dynamic, the default
        export = {"backend": "optimum", "mode": mode, "target": "avx512_vnni", "int8_file": "model_quantized.onnx"}
        (tmp_path / "onnx" / "export_report.json").write_text(json.dumps(export))
    body = " ".join(write_model_card(tmp_path, report).text.split())
    static = "activations quantized with ranges frozen from calibration data"
    dynamic = "activations quantized with ranges measured on each batch at run time"
    assert (static in body, dynamic in body) == ((True, False) if mode == "static" else (False, True))
    assert (f"through optimum, {mode} quantization" in body) == (mode is not None)


@pytest.mark.parametrize("runtime", ["openvino", "openvino-bf16", "onnxruntime", None])
def test_int8_card_names_the_runtime_the_export_chose(tmp_path, runtime):
    report = example_report("int8")
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    export = {"backend": "onnxruntime", "mode": "static", "target": "avx512_vnni", "runtime": runtime}
    (tmp_path / "onnx" / "export_report.json").write_text(json.dumps(export))
    body = " ".join(write_model_card(tmp_path, report).text.split())
    chose = f'The int8 file runs on OpenVINO (`runtime="{runtime}"`'
    assert (chose in body) == (runtime in ("openvino", "openvino-bf16"))
    assert ("float operations around the int8 products in bf16" in body) == (runtime == "openvino-bf16")


# A sentence of each kind's template, and one marker of each that no other template has.
KIND_PHRASES = {
    "finetuned": "without compression",
    "layerdrop": "Fine-tuned with LayerDrop (Fan et al., 2019",
    "pruned": "pruned to 3 layers (spread evenly from layer 0",
    "pkd": "Distilled with Patient Knowledge Distillation (Sun et al., 2019",
    "shared": "Cross-layer parameter sharing as in ALBERT",
    "int8": "Exported to ONNX and quantized to int8",
}
KIND_MARKERS = {"finetuned": "without compression", "layerdrop": "Fan et al.", "pruned": "Fan et al."}
KIND_MARKERS.update(pkd="Sun et al.", shared="ALBERT", int8="Exported to ONNX")


@pytest.mark.parametrize("kind", list(KIND_PHRASES))
def test_each_kind_gets_its_template(tmp_path, kind):
    report = example_report(kind)
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    model_type = "hf-efficient-shared-bert" if kind == "shared" else "bert"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": model_type}))
    body = write_model_card(tmp_path, report).text
    assert KIND_PHRASES[kind] in body
    assert [m for m in set(KIND_MARKERS.values()) if m in body] == [KIND_MARKERS[kind]]
    assert ("| model | 6 layers | 4 layers |" in body) == (kind in ("layerdrop", "pruned"))
    assert ("import hf_efficient" in body) == (kind == "shared")
    # Without a repo id, the loading code names a placeholder repo to replace.
    assert 'from_pretrained("your-name/quickstart")' in body


def test_local_base_model_and_dataset_stay_out_of_the_metadata(tmp_path):
    report = example_report(
        "pkd",
        base_model=str(tmp_path),
        task={"dataset": "data/reviews.csv", "split": "validation", "rows": 50, "metric": "accuracy"},
        techniques=["pkd"],
        plots=[str(tmp_path / "plots" / "by_depth.png")],  # absolute, inside the folder
    )
    (tmp_path / "plots").mkdir()
    (tmp_path / "plots" / "by_depth.png").write_bytes(PNG)
    measured = {"training_joules": 1234.5, "per_1000_predictions_joules": 3.25, "source": "rapl"}
    report["models"] = [MODELS["finetuned"], {**MODELS["pkd"], "energy": measured}]
    card = write_model_card(tmp_path, report)
    data = ModelCard.load(tmp_path / "README.md").data.to_dict()
    assert "base_model" not in data and "datasets" not in data
    assert data["tags"] == ["hf_efficient", "knowledge-distillation", "pkd"]
    assert data["model-index"][0]["results"][0]["dataset"] == {
        "name": "data/reviews.csv",
        "type": "reviews.csv",
        "split": "validation",
    }
    assert f"`{tmp_path.name}` (a local checkpoint, not on the Hub)" in card.text
    assert str(tmp_path) not in card.text  # no path of the machine that made the card
    assert "| 1,234.5 J (rapl) | 3.2 J (rapl) |" in card.text
    assert "![by depth](plots/by_depth.png)" in card.text
    assert "Energy not measured" not in card.text and "```yaml" not in card.text


# --------------------------------------------------------------------------------- the upload


def test_push_to_hub_uploads_the_folder(hub, tmp_path):
    folder = tmp_path / "quickstart"
    report = example_report("int8")
    write_folder_extras(folder, report)
    tiny_model("bert", num_layers=2).save_pretrained(folder)
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model_quantized.onnx").write_bytes(bytes(range(256)) * 8)
    write_model_card(folder, report, RECIPE, repo_id="alice/quickstart-int8")

    url = push_to_hub(folder, "alice/quickstart-int8", private=True, commit_message="First upload")

    (create,) = hub.calls("POST", "/api/repos/create")
    assert (create.json["organization"], create.json["name"]) == ("alice", "quickstart-int8")
    # hub 0.x sends private: true, later versions visibility: "private".
    assert create.json.get("private") is True or create.json.get("visibility") == "private"
    assert hub.repos["alice/quickstart-int8"].private
    assert {r.headers.get("authorization") for r in hub.requests} == {f"Bearer {TOKEN}"}
    (commit,) = hub.calls("POST", "/api/models/alice/quickstart-int8/commit/main")
    assert json.loads(commit.body.splitlines()[0])["value"]["summary"] == "First upload"
    assert hub.files("alice/quickstart-int8") == folder_files(folder)
    # The client has the Hub check the card's metadata before uploading.
    assert {r.json["content"] for r in hub.calls("POST", "/api/validate-yaml")} == {(folder / "README.md").read_text()}
    head = hub.repos["alice/quickstart-int8"].branches["main"][-1]
    assert url == f"{hub.url}/alice/quickstart-int8/commit/{head.oid}" and head.message == "First upload"

    # Again, to a branch, with an explicit token: the repo exists, the branch is made, main stays.
    (folder / "report.md").write_text("# report\n")
    before = len(hub.requests)
    push_to_hub(folder, "alice/quickstart-int8", token="hf_explicit", revision="dev")
    assert {r.headers.get("authorization") for r in hub.requests[before:]} == {"Bearer hf_explicit"}
    assert hub.calls("POST", "/api/models/alice/quickstart-int8/branch/dev")
    assert hub.files("alice/quickstart-int8", "dev") == folder_files(folder)
    assert "report.md" not in hub.files("alice/quickstart-int8")
    assert hub.repos["alice/quickstart-int8"].branches["dev"][-1].message == "Upload quickstart with hf_efficient"


def build_checkpoint(kind: str, folder: Path, tokenizer):
    """A tiny checkpoint of `kind`, made with the package's API; returns the PyTorch model saved."""
    if kind == "pruned":
        model = prune_layers(apply_layerdrop(tiny_model("bert", num_layers=4), LayerDropConfig(rate=0.2)), 2)
    elif kind == "pkd":
        model = make_student(tiny_model("bert", num_layers=4), num_layers=2)
    elif kind == "shared":
        model = share_layers(tiny_model("bert", num_layers=4), SharingConfig())
    else:  # int8: the final PyTorch model at the top, its int8 export in onnx/
        model = make_student(tiny_model("bert", num_layers=4), num_layers=2)
        export_int8(model, folder / "onnx", tokenizer=tokenizer)
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model


@pytest.mark.parametrize("kind", ["pruned", "pkd", "shared", "int8"])
def test_round_trip_through_the_hub(hub, tmp_path, tokenizer, kind):
    folder = tmp_path / f"run-{kind}"
    report = example_report(kind)
    write_folder_extras(folder, report)
    model = build_checkpoint(kind, folder, tokenizer)
    repo_id = f"alice/tiny-{kind}"
    write_model_card(folder, report, RECIPE, repo_id=repo_id)
    push_to_hub(folder, repo_id)

    downloaded = Path(snapshot_download(repo_id, cache_dir=tmp_path / "cache", local_dir=tmp_path / "downloaded"))
    assert hub.calls("GET", f"/{repo_id}/resolve/[0-9a-f]{{40}}/model.safetensors")  # from the fake Hub
    files = {name: data for name, data in folder_files(downloaded).items() if not name.startswith(".cache/")}
    assert files == folder_files(folder)
    assert (
        ModelCard.load(downloaded / "README.md").data.eval_results[0].metric_value
        == MODELS[kind]["metrics"]["accuracy"]
    )

    reloaded = AutoModelForSequenceClassification.from_pretrained(downloaded).eval()
    assert type(reloaded) is type(model)
    batch = tiny_batch()
    np.testing.assert_allclose(logits(reloaded, batch), logits(model, batch), atol=1e-5)
    if kind == "shared":
        layers = layer_stack(reloaded)
        assert layers[0].attention.self.query.weight is layers[3].attention.self.query.weight
    if kind == "int8":
        texts = ["a delight", "the film w3 w7 a mess", "w1 w2"]
        assert TextClassifier(downloaded / "onnx")(texts) == TextClassifier(folder / "onnx")(texts)
        encoded = tokenizer(texts, padding=True, return_tensors="np")
        int8 = run_onnx(downloaded / "onnx" / "model_quantized.onnx", dict(encoded))
        with torch.no_grad():
            expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
        assert np.abs(int8 - expected).max() <= 0.15 * np.abs(expected).max()
        if optimum_available():
            from optimum.onnxruntime import ORTModelForSequenceClassification

            ort = ORTModelForSequenceClassification.from_pretrained(
                downloaded, subfolder="onnx", file_name="model_quantized.onnx"
            )
            np.testing.assert_allclose(ort(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy(), int8)


# ----------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("repo_id", ["quickstart", "alice/quickstart/int8", "alice/../x", "/alice/x", "alice/x y", ""])
def test_push_to_hub_refuses_a_bad_repo_id(hub, tmp_path, repo_id):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^push_to_hub\(repo_id=.*\): .*(namespace/name|not allowed|only letters)"):
        push_to_hub(tmp_path, repo_id)
    assert hub.requests == []


def test_push_to_hub_refuses_a_missing_or_empty_folder(hub, tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        push_to_hub(tmp_path / "missing", "alice/x")
    with pytest.raises(ValueError, match="no config.json nor README.md"):
        push_to_hub(tmp_path, "alice/x")
    assert hub.requests == []


def test_push_to_hub_without_a_network_says_so_in_one_line(hub, tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    closed = hub.url.rsplit(":", 1)[0] + ":9"  # nothing listens on port 9 (discard)
    monkeypatch.setattr(constants, "ENDPOINT", closed)
    with pytest.raises(OSError) as error:
        push_to_hub(tmp_path, "alice/x", token="t")
    assert re.fullmatch(
        rf"push_to_hub: cannot reach {re.escape(closed)} \(\w+\); check the network connection \(or HF_ENDPOINT\), "
        r"then push again\.",
        str(error.value),
    )
    # Offline on purpose: said as such, before any connection is tried.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match=r"^push_to_hub: HF_HUB_OFFLINE=1 is set, which keeps huggingface_hub off"):
        push_to_hub(tmp_path, "alice/x", token="t")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"final": "student-int9"}, r"Report: final='student-int9' names no model; use one of \['teacher', "),
        ({"reference": "nobody"}, r"Report: reference='nobody' names no model"),
        ({"models": []}, r"Report: models is empty"),
        ({"techniques": ["quantum"]}, r"unknown techniques \['quantum'\]"),
        ({"task": {"dataset": "rotten_tomatoes"}}, r"TaskInfo: missing split"),
        ({"plots": ["missing.png"]}, "plot missing.png is not in"),
        ({"plots": ["../recipe.yaml"]}, r"plot \.\./recipe.yaml is not in"),
        (
            {"models": [{**MODELS["int8"], "kind": "quantized"}]},
            "model 'student-int8' has kind 'quantized'; use one of",
        ),
    ],
)
def test_write_model_card_refuses_a_bad_report(tmp_path, change, message):
    report = example_report("int8")
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    with pytest.raises(ValueError, match=message):
        write_model_card(tmp_path, {**report, **change})
    assert not (tmp_path / "README.md").exists()


def test_write_model_card_refuses_missing_folder_keys_and_onnx(tmp_path):
    report = example_report("int8")
    with pytest.raises(FileNotFoundError, match="no folder"):
        write_model_card(tmp_path / "missing", report)
    with pytest.raises(ValueError, match=r"lacks \['final'\]"):
        write_model_card(tmp_path, {k: v for k, v in report.items() if k != "final"})
    write_folder_extras(tmp_path, report)
    with pytest.raises(ValueError, match="is int8 but .* has no onnx/ subfolder"):
        write_model_card(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    with pytest.raises(ValueError, match=r"repo_id='quickstart'\): write it as namespace/name"):
        write_model_card(tmp_path, report, repo_id="quickstart")


def test_every_snippet_of_a_pushed_run_card_works_from_the_hub(
    hub, tmp_path, tiny_bert_folder, reviews_csv, monkeypatch
):
    """A recipe's card, pushed with `hf-efficient push --repo-id`: each Python snippet runs against the Hub."""
    import re

    from conftest import tiny_recipe

    from hf_efficient import run_recipe
    from hf_efficient.cli import main

    changes = {"student": None, "prune": None, "export": {"max_accuracy_drop": 1.0}}
    run_recipe(tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run", **changes))
    main(["push", str(tmp_path / "run"), "--repo-id", "alice/tiny-run"])
    card = hub.files("alice/tiny-run")["README.md"].decode()
    assert "your-name" not in card, [line for line in card.splitlines() if "your-name" in line]
    assert str(tmp_path) not in card  # no path of the machine that made it
    snippets = re.findall(r"```python\n(.*?)```", card, flags=re.DOTALL)
    assert len(snippets) == 3 and all("alice/tiny-run" in snippet for snippet in snippets)
    # transformers 4.x reads the offline switch once, at import (conftest sets HF_HUB_OFFLINE=1).
    monkeypatch.setattr("transformers.utils.hub._is_offline_mode", False, raising=False)
    local = tmp_path / "run" / "hub"
    ran = []
    for snippet in snippets:
        if "optimum" in snippet and not optimum_available():
            continue  # Optimum's ONNX Runtime classes exist on the optimum stack only
        namespace = {}
        exec(compile(snippet, "README.md", "exec"), namespace)
        ran.append(namespace)
    pytorch, *onnx = ran
    expected = AutoModelForSequenceClassification.from_pretrained(local).state_dict()
    loaded = pytorch["model"].state_dict()
    assert [k for k, v in expected.items() if not torch.equal(loaded[k], v)] == []
    assert (
        pytorch["tokenizer"]("a delight")["input_ids"]
        == BertTokenizerFast.from_pretrained(local)("a delight")["input_ids"]
    )
    texts = ["a delight", "a mess"]
    assert onnx[-1]["classify"](texts) == TextClassifier(local / "onnx")(texts)  # hf_efficient's own helper
    labels = [r["label"] for r in onnx[-1]["classify"](texts)]
    with torch.no_grad():  # the task's transformers pipeline gives the PyTorch model's labels
        ids = pytorch["model"](**pytorch["tokenizer"](texts, return_tensors="pt", padding=True)).logits.argmax(-1)
    assert [r["label"] for r in pytorch["predict"](texts)] == [pytorch["model"].config.id2label[int(i)] for i in ids]
    if optimum_available():
        assert [r["label"] for r in onnx[0]["predict"](texts)] == labels


@pytest.mark.parametrize("task", sorted(TASKS))
def test_the_card_of_every_task_names_its_head_pipeline_and_metric(tmp_path, task):
    """The card's metadata and loading snippets come from the task's row, not from classification's."""
    from transformers.pipelines import SUPPORTED_TASKS

    row = TASKS[task]
    metrics = {name: 0.5 + i / 10 for i, name in enumerate(row.card_metrics)}
    models = [
        model_entry("teacher", "finetuned", 6, 0.84, metrics=metrics),
        model_entry("teacher-int8", "int8", 6, 0.84, metrics=metrics, training_seconds=None),
    ]
    task_info = {"name": task, "dataset": "data.jsonl", "split": "test", "rows": 24, "metric": row.metric}
    report = example_report("finetuned", task=task_info, models=models, final="teacher-int8", depths={}, plots=[])
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "tokenizer_config.json").write_text("{}")
    id2label = {"0": "O", "1": "B-PER"} if row.auto_class.endswith("Classification") else {"0": "LABEL_0"}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "id2label": id2label}))
    card = write_model_card(tmp_path, report, repo_id="alice/tiny")

    data = card.data.to_dict()
    assert data["pipeline_tag"] == row.pipeline_tag
    assert {m["type"]: m["value"] for m in data["model-index"][0]["results"][0]["metrics"]} == metrics
    assert data["model-index"][0]["results"][0]["task"]["type"] == row.pipeline_tag
    assert data["library_name"] == row.library
    body = card.text
    if row.library == "sentence-transformers":  # a sentence-transformers card: its own loading snippet
        assert 'model = SentenceTransformer("alice/tiny")' in body and "| `teacher-int8` (this model) |" in body
        return
    assert f"scores {row.metric} {metrics[row.metric]:.4f} on the test split" in body
    assert f'model = {row.auto_class}.from_pretrained("alice/tiny")' in body
    assert f"model = {row.ort_class}.from_pretrained(" in body
    assert "(`pip install optimum-onnx[onnxruntime]`; its 0.1 release needs transformers < 4.58)" in " ".join(
        body.split()
    )
    pipeline_line = f'predict = pipeline("{row.pipeline_tag}", model=model, tokenizer=tokenizer'
    # None for a pipeline that a supported transformers version lacks (5.x has no question-answering pipeline).
    everywhere = row.pipeline_tag in SUPPORTED_TASKS and row.pipeline_tag != "question-answering"
    assert body.count(pipeline_line) == (2 if everywhere else 0)
    assert "snapshot_download(" in body and "from hf_efficient import " in body  # the head's own helper
    named = "LABEL_0" not in id2label.values()
    assert ("The labels (`config.id2label`): 0 `O`, 1 `B-PER`." in body) == named


def test_the_card_of_a_pair_classifier_shows_pairs(tmp_path):
    """A model trained on pairs is shown called with pairs: one text alone is not what it learnt to score."""
    models = [model_entry("teacher", "finetuned", 6, 0.84), model_entry("teacher-int8", "int8", 6, 0.84)]
    report = example_report("finetuned", models=models, final="teacher-int8", depths={}, plots=[])
    write_folder_extras(tmp_path, report)
    (tmp_path / "onnx").mkdir()
    (tmp_path / "tokenizer_config.json").write_text("{}")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    recipe = "name: nli\ndata: {source: pairs.csv, text_column: premise, text_pair_column: hypothesis}\n"
    body = write_model_card(tmp_path, report, recipe, repo_id="alice/tiny").text
    assert 'predict({"text": first, "text_pair": second})' in body
    assert 'print(classify(["A man plays a guitar."], ["Someone makes music."]))' in body
    single = write_model_card(tmp_path, report, "name: reviews\n", repo_id="alice/tiny").text
    assert "text_pair" not in single and 'print(classify(["a delight", "a mess"]))' in single


def test_the_base_model_of_a_local_folder_is_the_hub_model_it_came_from(tmp_path):
    from hf_efficient.assets import MINILM_ID, default_model_path
    from hf_efficient.recipe.config import base_model_id

    run = tmp_path / "runs" / "ld"  # a model folder of an hf_efficient run: its report names the base model
    (run / "teacher").mkdir(parents=True)
    (run / "run_state.json").write_text("{}")
    (run / "report.json").write_text(json.dumps({"base_model": "google-bert/bert-base-uncased"}))
    downloaded = tmp_path / "downloaded"  # a folder with a model card
    downloaded.mkdir()
    (downloaded / "README.md").write_text("---\nbase_model:\n- FacebookAI/roberta-base\ntags:\n- hf_efficient\n---\n")
    other = tmp_path / "other"  # another library's card: its base model is the folder's parent, not the folder
    other.mkdir()
    (other / "README.md").write_text("---\nbase_model: google-bert/bert-base-uncased\n---\n# an SST-2 model\n")
    plain = tmp_path / "plain"  # nothing says where it came from
    plain.mkdir()
    (plain / "report.json").write_text(json.dumps({"base_model": "not/a-run"}))  # no run_state.json: not a run
    assert base_model_id(str(run / "teacher")) == "google-bert/bert-base-uncased"
    assert base_model_id(str(downloaded)) == "FacebookAI/roberta-base"
    assert base_model_id(default_model_path()) == MINILM_ID == base_model_id("minilm")
    assert base_model_id(str(plain)) == str(plain) and base_model_id(str(other)) == str(other)
    assert base_model_id("owner/name") == "owner/name"


def test_a_card_license_or_language_not_written_as_a_hub_id_is_refused(tmp_path):
    report = example_report("pkd", techniques=["pkd"])
    with pytest.raises(ValueError, match=r"^write_model_card: license='CC-BY-4.0' is not a Hub license id \(did you"):
        write_model_card(tmp_path, report, license="CC-BY-4.0")
    with pytest.raises(ValueError, match=r"^write_model_card: language='en_US' is not a Hub language id \(did you"):
        write_model_card(tmp_path, report, language="en_US")
    assert not (tmp_path / "README.md").exists()


def test_long_text_with_a_slash_is_not_taken_for_a_path():
    from hf_efficient.provenance import public_name

    reason = "AMX-INT8: " + "x" * 300 + " (benchmarks/README.md)"  # one part longer than a file name may be
    assert public_name(reason) == reason
    assert public_name("/home/alice/runs/student") == "student"
