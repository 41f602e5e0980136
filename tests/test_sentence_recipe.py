"""Recipes with `task: sentence-embedding` (issue 19): distil, export and report a sentence-transformers model."""

import importlib.util
import json

import numpy as np
import pytest
from conftest import tiny_sentence_transformer

pytest.importorskip("sentence_transformers")
import yaml  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402

from hf_efficient import RecipeError, load_recipe, run_recipe  # noqa: E402

WORDS = ["good", "bad", "great", "awful", "dull", "moving"]


def texts_file(folder):
    rows = [
        {"text": f"the {noun} is {'very ' * (i % 3)}{WORDS[i % len(WORDS)]}", "label": i % 2}
        for i, noun in enumerate(["film", "movie", "plot", "actor", "scene", "story", "film", "plot"] * 5)
    ]
    path = folder / "texts.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    return path


def test_sentence_embedding_recipe_end_to_end(tmp_path):
    tiny_sentence_transformer("bert", tmp_path / "model", num_layers=4).save(str(tmp_path / "model"))
    recipe = {
        "name": "tiny-embed",
        "task": "sentence-embedding",
        "model": str(tmp_path / "model"),
        "output_dir": str(tmp_path / "run"),
        "data": {"source": str(texts_file(tmp_path)), "test_split": 0.4, "validation_split": 0.1},
        "student": {"num_layers": 2, "epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "distillation": {}},
        "export": {"max_accuracy_drop": 0.5},
        "report": {"seconds_per_measurement": 0.05, "threads": 1},
        "card": {},
    }
    report = run_recipe(recipe)
    models = {entry["name"]: entry for entry in report["models"]}
    assert list(models) == ["teacher", "student", "student-int8"]
    assert models["teacher"]["metrics"]["cosine_to_teacher"] == pytest.approx(1, abs=1e-5)
    assert models["teacher"]["metrics"]["top10_overlap"] == pytest.approx(1)
    for entry in models.values():
        metrics = entry["metrics"]
        assert 0.5 < metrics["cosine_to_teacher"] <= 1 + 1e-5
        assert 0 <= metrics["top10_overlap"] <= 1 and 0 <= metrics["knn_accuracy"] <= 1
        assert entry["size_mb"] > 0 and entry["latency_ms_per_text"] > 0
    assert models["student"]["layers"] == 2 and models["student-int8"]["layers"] == 2
    assert models["student-int8"]["size_mb"] < models["student"]["size_mb"] < models["teacher"]["size_mb"]
    assert "| student-int8 | 2 |" in (tmp_path / "run" / "report.md").read_text()

    student = SentenceTransformer(str(tmp_path / "run" / "student"), device="cpu")
    assert student[0].auto_model.config.num_hidden_layers == 2
    assert student.encode(["a great film"]).shape == (1, 32)
    hub = tmp_path / "run" / "hub"
    assert SentenceTransformer(str(hub), device="cpu").encode(["a great film"]).shape == (1, 32)
    card = (hub / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "sentence-transformers" and metadata["pipeline_tag"] == "sentence-similarity"
    int8 = models["student-int8"]["file"]
    assert (hub / int8).is_file() and int8.startswith("onnx/")
    assert 'SentenceTransformer("path/to/this/folder")' in card
    assert f'backend="onnx", model_kwargs={{"file_name": "{int8}"}}' in card
    if importlib.util.find_spec("optimum") and importlib.util.find_spec("optimum.onnxruntime"):  # the snippet runs
        onnx = SentenceTransformer(str(hub), backend="onnx", model_kwargs={"file_name": int8}, device="cpu")
        vectors, reference = (
            onnx.encode(["a great film", "a dull plot"]),
            student.encode(["a great film", "a dull plot"]),
        )
        assert np.sum(vectors * reference, axis=1).min() > 0.99


def test_sentence_embedding_recipe_refuses_a_teacher_to_fine_tune_and_pruning():
    with pytest.raises(RecipeError, match=r"teacher is the pretrained embedding model, not fine-tuned"):
        load_recipe({"name": "x", "task": "sentence-embedding", "teacher": {"epochs": 1}, "student": {}})
    with pytest.raises(RecipeError, match=r"has no prune step; drop the `prune` section"):
        load_recipe({"name": "x", "task": "sentence-embedding", "student": {}, "prune": {}})
    with pytest.raises(RecipeError, match=r"student.layerdrop: a sentence-embedding student takes only"):
        load_recipe({"name": "x", "task": "sentence-embedding", "student": {"layerdrop": 0.1}})


def test_cli_distill_finds_the_sentence_embedding_task_of_a_sentence_transformers_folder(tmp_path, capsys):
    from hf_efficient.cli import main

    tiny_sentence_transformer("bert", tmp_path / "model", num_layers=4).save(str(tmp_path / "model"))
    argv = ["distill", "--teacher", str(tmp_path / "model"), "--num-layers", "2", "--epochs", "1"]
    argv += ["--data", str(texts_file(tmp_path)), "--test-split", "0.4", "--output-dir", str(tmp_path / "run")]
    main(argv + ["--batch-size", "8"])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["task"] == "sentence-embedding" and [e["name"] for e in report["models"]] == ["teacher", "student"]
    assert "| student | 2 |" in capsys.readouterr().out
    assert SentenceTransformer(str(tmp_path / "run" / "student"), device="cpu").encode(["a film"]).shape == (1, 32)
