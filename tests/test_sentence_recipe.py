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
from hf_efficient.cli import main  # noqa: E402
from hf_efficient.report import Report  # noqa: E402

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
        "report": {"seconds_per_measurement": 0.05, "threads": 1, "batch_sizes": [1, 8], "bf16_baseline": True},
        "card": {},
    }
    raw = run_recipe(recipe)
    report = Report.load(tmp_path / "run" / "report.json")  # the typed report of every task
    assert report.to_dict() == raw and report.task.name == "sentence-embedding"
    assert report.task.metric == "knn_accuracy"  # the texts have labels
    models = {entry.name: entry for entry in report.models}
    assert list(models) == ["teacher", "teacher-bf16", "student", "student-int8"]
    assert report.reference == "teacher" and report.final == "student-int8"
    teacher, bf16, student, int8 = models.values()
    assert teacher.metrics["cosine_to_teacher"] == pytest.approx(1, abs=1e-5) and teacher.metrics["top10_overlap"] == 1
    assert student.metrics["cosine_to_teacher"] < 1 and int8.metrics["cosine_to_teacher"] < 1
    for entry in models.values():
        assert 0.5 < entry.metrics["cosine_to_teacher"] <= 1 + 1e-5
        assert 0 <= entry.metrics["top10_overlap"] <= 1 and 0 <= entry.metrics["knn_accuracy"] <= 1
        assert entry.size_mb > 0 and set(entry.latency_ms) == set(entry.speedup) == {"1", "8"}
    # Speed-ups are against the faster of the teacher's plain-PyTorch runs (fp32 and the bf16 cast).
    for size in ("1", "8"):
        assert max(teacher.speedup[size], bf16.speedup[size]) == pytest.approx(1)
    assert bf16.baseline_of == "teacher" and bf16.precision == "bf16" and bf16.size_mb < teacher.size_mb
    assert (student.kind, student.techniques, student.layers, student.format) == (
        "distillation",
        ["distillation"],
        2,
        "pytorch",
    )
    assert student.training_seconds > 0 and teacher.training_seconds is None
    assert (int8.source, int8.kind, int8.techniques, int8.format) == (
        "student",
        "int8",
        ["distillation", "int8"],
        "onnx",
    )
    assert int8.layers == 2 and int8.export["backend"] == "onnxruntime" and int8.path.startswith("onnx/onnx/")
    assert int8.size_mb < student.size_mb < teacher.size_mb
    table = (tmp_path / "run" / "report.md").read_text()
    assert "| `student-int8` | int8 | 2 |" in table and "top10_overlap" in table
    assert (teacher.kind, bf16.kind) == ("pretrained", "pretrained")  # taken as given, not fine-tuned
    assert report.timing.sequence_length == 32 and "(32 tokens a row)" in table  # the model's max_seq_length

    student = SentenceTransformer(str(tmp_path / "run" / "student"), device="cpu")
    assert student[0].auto_model.config.num_hidden_layers == 2
    assert student.encode(["a great film"]).shape == (1, 32)
    hub = tmp_path / "run" / "hub"
    assert SentenceTransformer(str(hub), device="cpu").encode(["a great film"]).shape == (1, 32)
    card = (hub / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "sentence-transformers" and metadata["pipeline_tag"] == "sentence-similarity"
    assert {"sentence-transformers", "knowledge-distillation", "int8"} <= set(metadata["tags"])
    results = {r["type"]: r["value"] for r in metadata["model-index"][0]["results"][0]["metrics"]}
    assert results == {k: int8.metrics[k] for k in ("cosine_to_teacher", "top10_overlap", "knn_accuracy")}
    int8_file = json.loads((hub / "export_report.json").read_text())["int8_file"]
    assert (hub / int8_file).is_file() and int8_file.startswith("onnx/") and int8.path == f"onnx/{int8_file}"
    assert 'SentenceTransformer("path/to/this/folder")' in card and "| `student-int8` (this model) |" in card
    assert f'backend="onnx", model_kwargs={{"file_name": "{int8_file}"}}' in card
    assert (
        "needs transformers < 4.58" in card
        and '`SentenceTransformer("path/to/this/folder")` loads `student`, the fp32' in card
    )
    main(["card", str(tmp_path / "run"), "--repo-id", "alice/tiny-embed"])  # rewrites the card from report.json
    card = (hub / "README.md").read_text()
    assert 'SentenceTransformer("alice/tiny-embed")' in card and "library_name: sentence-transformers" in card
    if importlib.util.find_spec("optimum") and importlib.util.find_spec("optimum.onnxruntime"):  # the snippet runs
        onnx = SentenceTransformer(str(hub), backend="onnx", model_kwargs={"file_name": int8_file}, device="cpu")
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
    with pytest.raises(RecipeError, match=r"^data.max_length=128: a sentence-embedding run embeds up to the model's"):
        load_recipe({"name": "x", "task": "sentence-embedding", "student": {}, "data": {"max_length": 128}})
    with pytest.raises(RecipeError, match=r"^data.label_names=\['neg'\]: a sentence-embedding run reads labels only"):
        load_recipe({"name": "x", "task": "sentence-embedding", "student": {}, "data": {"label_names": ["neg"]}})
    # The soft targets' weight and temperature: a head's, not read by the embedding loss, so refused, not recorded.
    with pytest.raises(RecipeError, match=r"^recipe.student.distillation.alpha=0.3 weighs a head's soft targets"):
        load_recipe({"name": "x", "task": "sentence-embedding", "student": {"distillation": {"alpha": 0.3}}})


def test_a_sentence_embedding_run_times_no_more_tokens_than_the_model_embeds(tmp_path):
    tiny_sentence_transformer("bert", tmp_path / "model", num_layers=2).save(str(tmp_path / "model"))
    recipe = {"name": "x", "task": "sentence-embedding", "model": str(tmp_path / "model"), "student": {}}
    data = {"source": str(texts_file(tmp_path))}
    recipe.update(output_dir=str(tmp_path / "run"), report={"sequence_length": 1000}, data=data)
    with pytest.raises(RecipeError, match=r"^report.sequence_length=1000: .*model embeds at most 32 tokens"):
        run_recipe(recipe)  # before the student trains
    assert not (tmp_path / "run").exists()


def test_a_recipe_export_of_a_model_with_a_dense_module_is_refused_before_the_run(tmp_path):
    from sentence_transformers import models

    model = tiny_sentence_transformer("bert", tmp_path / "model", num_layers=2)
    dense = SentenceTransformer(modules=[*model, models.Dense(model.get_sentence_embedding_dimension(), 8)])
    dense.save(str(tmp_path / "dense"))
    recipe = {"name": "x", "task": "sentence-embedding", "model": str(tmp_path / "dense"), "student": {}}
    recipe.update(output_dir=str(tmp_path / "run"), export={}, data={"source": str(texts_file(tmp_path))})
    with pytest.raises(
        RecipeError, match=r"^export: .*dense has a Dense module, and the recipe checks its int8 export"
    ):
        run_recipe(recipe)  # before the student trains
    assert not (tmp_path / "run").exists()


def test_cli_distill_finds_the_sentence_embedding_task_of_a_sentence_transformers_folder(tmp_path, capsys):
    tiny_sentence_transformer("bert", tmp_path / "model", num_layers=4).save(str(tmp_path / "model"))
    argv = ["distill", "--teacher", str(tmp_path / "model"), "--num-layers", "2", "--epochs", "1"]
    argv += ["--data", str(texts_file(tmp_path)), "--test-split", "0.4", "--output-dir", str(tmp_path / "run")]
    main(argv + ["--batch-size", "8"])
    report = Report.load(tmp_path / "run" / "report.json")
    assert report.task.name == "sentence-embedding" and [e.name for e in report.models if not e.baseline_of] == [
        "teacher",
        "student",
    ]
    assert "| `student` | distillation | 2 |" in capsys.readouterr().out
    assert SentenceTransformer(str(tmp_path / "run" / "student"), device="cpu").encode(["a film"]).shape == (1, 32)
