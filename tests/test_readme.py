"""The README's Python examples run as written, in order, in one namespace, and do what they say."""

import json
import math
import re
from pathlib import Path

import numpy as np
import torch
from conftest import minilm_path
from transformers import AutoModelForSequenceClassification

from hf_efficient import TextClassifier, apply_layerdrop
from hf_efficient.layerdrop.model import layerdrop_schedule

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


def test_readme_python_examples_run(tmp_path, monkeypatch):
    minilm_path()  # skips without the shipped model
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert len(blocks) == 6  # LayerDrop, PKD, sharing, int8 export, sentence embeddings, recipes
    # The examples run from the repository root; their outputs go to runs/ under tmp_path.
    monkeypatch.chdir(tmp_path)
    for shipped in ("recipes", "benchmarks"):
        (tmp_path / shipped).symlink_to(ROOT / shipped)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)

    # LayerDrop: trained, saved with its settings, pruned to layers 0, 2, 4 as a plain model.
    small = namespace["small"]
    assert small.config.num_hidden_layers == 3
    assert small.config.hf_efficient["pruning"]["kept_layers"] == [0, 2, 4]
    assert layerdrop_schedule(small) is None
    assert (tmp_path / "runs/readme/pruned/config.json").exists()
    # A reloaded LayerDrop checkpoint is a plain model; apply_layerdrop() without a config applies
    # the settings config.json recorded (checked with a rate that is not the default).
    checkpoint = tmp_path / "runs/readme/layerdrop"
    assert layerdrop_schedule(AutoModelForSequenceClassification.from_pretrained(checkpoint)) is None
    assert layerdrop_schedule(namespace["teacher"]) is None
    assert layerdrop_schedule(namespace["resumed"]).rates == [0.2] * 6
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["hf_efficient"]["layerdrop"]["rate"] == 0.2
    config["hf_efficient"]["layerdrop"]["rate"] = 0.3
    (checkpoint / "config.json").write_text(json.dumps(config))
    reapplied = apply_layerdrop(AutoModelForSequenceClassification.from_pretrained(checkpoint))
    assert layerdrop_schedule(reapplied).rates == [0.3] * 6

    # PKD: a 3-layer student of the 6-layer teacher, trained, evaluated and saved.
    assert namespace["trainer"].model.config.num_hidden_layers == 3
    logged = [entry for entry in namespace["trainer"].state.log_history if "loss_hard" in entry]
    assert len(logged) == 2 and all({"loss_kd", "loss_patient"} <= set(entry) for entry in logged)  # as it says
    assert namespace["metrics"]["eval_loss"] > 0 and math.isfinite(namespace["metrics"]["eval_loss"])
    saved = AutoModelForSequenceClassification.from_pretrained(tmp_path / "runs/readme/student")
    assert saved.config.num_hidden_layers == 3 and saved.config.hf_efficient["distillation"]["method"] == "pkd"

    # Sharing: the reloaded checkpoint is shared the same way.
    reloaded, shared = namespace["reloaded"], namespace["albert_like"]
    assert type(reloaded) is type(shared) and reloaded.sharing_plan == shared.sharing_plan
    assert sum(p.numel() for p in reloaded.parameters()) < sum(p.numel() for p in namespace["teacher"].parameters())

    # int8 export: the three accuracies, the int8 file, and the classifier's answers.
    metrics = {name: scores["accuracy"] for name, scores in namespace["result"].metrics.items()}
    assert set(metrics) == {"pytorch", "onnx_fp32", "onnx_int8"} and metrics["onnx_fp32"] == metrics["pytorch"]
    assert metrics["pytorch"] - metrics["onnx_int8"] <= 0.01  # the config's max_accuracy_drop
    texts = ["a delight", "a mess"]
    with torch.no_grad():
        ids = namespace["small"].eval()(**namespace["tokenizer"](texts, return_tensors="pt", padding=True)).logits
    fp32 = TextClassifier(tmp_path / "runs/readme/int8", file_name="model.onnx")(texts)
    assert [row["label"] for row in fp32] == [namespace["small"].config.id2label[int(i)] for i in ids.argmax(-1)]

    # Sentence embeddings: a 3-layer SentenceTransformer saved as a plain sentence-transformers folder,
    # exported to int8 (the gate passed), whose ONNX embeddings are unit vectors close to PyTorch's.
    from sentence_transformers import SentenceTransformer

    st_student = namespace["st_student"]
    assert isinstance(st_student, SentenceTransformer) and st_student[0].auto_model.config.num_hidden_layers == 3
    reloaded_st = SentenceTransformer(str(tmp_path / "runs/readme/st-student"))
    assert reloaded_st[0].auto_model.config.num_hidden_layers == 3
    assert (tmp_path / "runs/readme/st-int8/onnx/model.onnx").exists()
    assert namespace["st_result"].int8_file == "onnx/model_qint8_avx512_vnni.onnx"  # the name the README gives
    assert (tmp_path / "runs/readme/st-int8/onnx/model_qint8_avx512_vnni.onnx").exists()
    embeddings = namespace["embeddings"]
    assert embeddings.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)
    expected = st_student.encode(["a delight", "a mess"], convert_to_numpy=True)
    assert (embeddings * expected).sum(axis=1).min() > 0.98

    # Recipes: every technique key parsed into its config; the shipped report reads back.
    recipe = namespace["recipe"]
    assert recipe.task == "text-classification" and recipe.output_dir == "runs/mine"
    assert recipe.teacher.layerdrop.rate == 0.2
    assert recipe.student.num_layers == 3 and recipe.student.distillation.strategy == "skip"
    assert recipe.student.sharing.num_groups == 1
    assert recipe.export.mode == "dynamic" and recipe.export.max_accuracy_drop == 0.01
    quickstart = namespace["quickstart"]
    assert [model.name for model in quickstart.models] == ["teacher", "teacher-bf16", "student", "student-int8"]
    assert quickstart.model("teacher-bf16").baseline_of == "teacher"
    assert quickstart.final == "student-int8" and quickstart.model("student").layers == 3
