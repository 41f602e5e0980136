"""sentence-transformers models: techniques, embedding distillation, int8 export, metrics (issue 19)."""

import importlib.util
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import SENTENCE_FAMILIES, SENTENCES, tiny_sentence_transformer

pytest.importorskip("sentence_transformers")
import datasets  # noqa: E402
from sentence_transformers import SentenceTransformer, models  # noqa: E402
from transformers import TrainingArguments  # noqa: E402

import hf_efficient as hfe  # noqa: E402
from hf_efficient.distill.embedding import EmbeddingDistillationLoss  # noqa: E402
from hf_efficient.metrics.embedding import (  # noqa: E402
    cosine_to_teacher,
    knn_accuracy,
    neighbour_overlap,
    probe_accuracy,
)
from hf_efficient.sentence import SentenceEmbedder, SentenceError, sentence_encoder  # noqa: E402
from hf_efficient.sharing.model import shared_parameter_groups  # noqa: E402

OPTIMUM = (
    importlib.util.find_spec("optimum") is not None and importlib.util.find_spec("optimum.onnxruntime") is not None
)


def encode(model, texts=SENTENCES):
    return model.encode(texts, convert_to_numpy=True)


def layers(model):
    return len(hfe.layer_stack(sentence_encoder(model)))


def same_modules(a, b):
    return [type(m).__name__ for m in a] == [type(m).__name__ for m in b] and a[1].get_config_dict() == b[
        1
    ].get_config_dict()


@pytest.mark.parametrize("family", SENTENCE_FAMILIES)
def test_student_layerdrop_and_pruning_round_trip(family, tmp_path):
    teacher = tiny_sentence_transformer(family, tmp_path / "teacher")
    original = encode(teacher)
    student = hfe.make_student(teacher, 2)
    assert isinstance(student, SentenceTransformer) and layers(student) == 2 and layers(teacher) == 4
    student.eval().save(str(tmp_path / "student"))
    reloaded = SentenceTransformer(str(tmp_path / "student"), device="cpu")
    assert same_modules(reloaded, teacher) and layers(reloaded) == 2
    np.testing.assert_allclose(encode(reloaded), encode(student), atol=1e-6)
    assert np.allclose(np.linalg.norm(encode(reloaded), axis=-1), 1)  # Normalize kept

    # LayerDrop: the same object back, skipping layers in training only; pruning keeps it a SentenceTransformer.
    assert hfe.apply_layerdrop(teacher, hfe.LayerDropConfig(rate=0.9)) is teacher
    np.testing.assert_allclose(encode(teacher.eval()), original, atol=1e-6)
    features = teacher.tokenize(SENTENCES[:4])
    with torch.no_grad():  # dropout is off: only skipped layers make training mode differ
        assert not torch.allclose(teacher.train()(dict(features))["sentence_embedding"], torch.tensor(original[:4]))
    pruned = hfe.prune_layers(teacher, [0, 1, 2])
    assert pruned is teacher and layers(pruned) == 3
    pruned.save(str(tmp_path / "pruned"))
    config = json.loads((tmp_path / "pruned" / "config.json").read_text())
    assert (
        config["hf_efficient"]["pruning"]["kept_layers"] == [0, 1, 2]
        and config["hf_efficient"]["layerdrop"]["rate"] == 0.9
    )
    np.testing.assert_allclose(encode(SentenceTransformer(str(tmp_path / "pruned"))), encode(pruned), atol=1e-6)


@pytest.mark.parametrize("family", ["bert", "modernbert"])
def test_shared_round_trip_and_plain_loading(family, tmp_path):
    model = tiny_sentence_transformer(family, tmp_path / "m")
    student = hfe.make_student(model, 2).eval()
    student.save(str(tmp_path / "student"))
    shared = hfe.share_layers(hfe.make_student(model, 2).eval())
    assert isinstance(shared, SentenceTransformer)
    shared.save(str(tmp_path / "shared"))
    reloaded = SentenceTransformer(str(tmp_path / "shared"), device="cpu")
    np.testing.assert_allclose(encode(reloaded), encode(shared), atol=1e-6)
    groups = shared_parameter_groups(sentence_encoder(reloaded))
    assert groups == shared_parameter_groups(sentence_encoder(shared)) != []
    plain = SentenceTransformer(str(tmp_path / "student"), device="cpu")  # an unshared student loads as it was
    np.testing.assert_allclose(encode(plain), encode(student), atol=1e-6)
    assert shared_parameter_groups(sentence_encoder(plain)) == []


@pytest.mark.slow  # a fresh interpreter importing sentence-transformers: 10-25 s on two busy cores
def test_folders_load_without_hf_efficient(tmp_path):
    model = tiny_sentence_transformer("bert", tmp_path / "m")
    hfe.make_student(model, 2).save(str(tmp_path / "student"))
    hfe.share_layers(hfe.make_student(model, 2)).save(str(tmp_path / "shared"))
    # Without hf_efficient: the student loads with plain sentence-transformers, the shared model refuses.
    script = (
        "import sys; from sentence_transformers import SentenceTransformer\n"
        f"SentenceTransformer({str(tmp_path / 'student')!r}, device='cpu')\n"
        "try:\n"
        f"    SentenceTransformer({str(tmp_path / 'shared')!r}, device='cpu')\n"
        "except Exception as error:\n"
        "    print('refused:', 'hf-efficient-shared' in str(error))\n"
        "assert 'hf_efficient' not in sys.modules\n"
    )
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=environment, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: True" in done.stdout


def text_dataset(labels=False):
    columns = {"text": SENTENCES}
    if labels:
        columns["label"] = [i % 2 for i in range(len(SENTENCES))]
    return datasets.Dataset.from_dict(columns)


def training_args(tmp_path, steps=6):
    return TrainingArguments(
        str(tmp_path / "out"),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=2e-3,
        report_to=[],
        save_strategy="no",
        logging_steps=1,
        use_cpu=True,
        disable_tqdm=True,
    )


@torch.no_grad()
def held_out_loss(loss: EmbeddingDistillationLoss) -> float:
    """Both terms, summed, on texts the training never saw, in eval mode."""
    loss.model.eval()
    texts = ["the story is dull", "a great actor", "the plot was not awful", "very moving scene"]
    total = float(sum(term for term in loss.terms(dict(loss.model.tokenize(texts)))))
    loss.model.train()
    return total


@pytest.mark.parametrize("family", ["bert", "mpnet"])
@pytest.mark.parametrize("embedding_loss", ["mse", "cosine"])
def test_embedding_distillation_trains_student_not_teacher(family, embedding_loss, tmp_path):
    teacher = tiny_sentence_transformer(family, tmp_path / "teacher")
    # A student far from its teacher (random tiny layers barely change the states, so a cut one is close).
    student = tiny_sentence_transformer(family, tmp_path / "student", num_layers=2, seed=1).train()
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer = hfe.DistillationTrainer(
        model=student,
        teacher=teacher,
        # The neighbour term rides along with one of the divergences.
        distillation=hfe.PKDConfig(
            beta=10, embedding_loss=embedding_loss, similarity=float(embedding_loss == "cosine")
        ),
        args=training_args(tmp_path, steps=12),
        train_dataset=text_dataset(labels=True),  # labels are not read
    )
    start = held_out_loss(trainer.embedding_loss)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert {"loss_embedding", "loss_patient"} <= set(logged[0])
    assert ("loss_similarity" in logged[0]) == (embedding_loss == "cosine")
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert held_out_loss(trainer.embedding_loss) < 0.7 * start
    trainer.save_model(str(tmp_path / "saved"))
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    np.testing.assert_allclose(encode(reloaded), encode(student), atol=1e-6)
    record = json.loads((tmp_path / "saved" / "config.json").read_text())["hf_efficient"]["distillation"]
    assert record["method"] == "embedding_pkd" and record["embedding_loss"] == embedding_loss


def test_neighbour_divergence_against_a_hand_computation():
    from hf_efficient.distill.embedding import SIMILARITY_TEMPERATURE, neighbour_divergence

    generator = torch.Generator().manual_seed(0)
    teacher, student = torch.randn(5, 8, generator=generator), torch.randn(5, 8, generator=generator)
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    expected = 0.0
    for i in range(5):
        others = [j for j in range(5) if j != i]
        p = torch.softmax(unit(teacher)[i] @ unit(teacher)[others].T / SIMILARITY_TEMPERATURE, -1)
        q = torch.softmax(unit(student)[i] @ unit(student)[others].T / SIMILARITY_TEMPERATURE, -1)
        expected += float((p * (p / q).log()).sum()) / 5
    assert float(neighbour_divergence(student, teacher)) == pytest.approx(expected, rel=1e-5)
    assert float(neighbour_divergence(3 * teacher, teacher)) == pytest.approx(0.0, abs=1e-6)  # scale-free
    assert float(neighbour_divergence(student[:1], teacher[:1])) == 0.0  # no other text in the batch


def narrow_student(teacher, tmp_path, hidden=48):
    # A student of another width, same tokenizer: the teacher's config at hidden 48.
    from transformers import AutoModel

    encoder = sentence_encoder(teacher)
    config = encoder.config.__class__(**{**encoder.config.to_dict(), "hidden_size": hidden, "num_hidden_layers": 2})
    AutoModel.from_config(config).save_pretrained(tmp_path / "narrow")
    teacher.tokenizer.save_pretrained(tmp_path / "narrow")
    return SentenceTransformer(
        modules=[models.Transformer(str(tmp_path / "narrow")), models.Pooling(hidden, "mean"), models.Normalize()],
        device="cpu",
    )


def test_projection_between_widths_is_learned_and_not_saved(tmp_path):
    teacher = tiny_sentence_transformer("bert", tmp_path / "teacher")
    with pytest.raises(SentenceError, match=r"embedding dimension is 48 but the teacher's is 32; set PKDConfig\("):
        EmbeddingDistillationLoss(narrow_student(teacher, tmp_path), teacher, hfe.PKDConfig(projection=False))
    student = narrow_student(teacher, tmp_path)
    trainer = hfe.DistillationTrainer(
        model=student, teacher=teacher, args=training_args(tmp_path), train_dataset=text_dataset()
    )
    encoder = sentence_encoder(student)
    projection = encoder.pkd_embedding_projection.weight.detach().clone()
    trainer.train()
    assert not torch.equal(projection, encoder.pkd_embedding_projection.weight)
    student.save(str(tmp_path / "saved"))
    reloaded = SentenceTransformer(str(tmp_path / "saved"), device="cpu")
    assert not hasattr(sentence_encoder(reloaded), "pkd_embedding_projection")
    assert not hasattr(sentence_encoder(reloaded), "pkd_projection")
    assert encode(reloaded).shape == (len(SENTENCES), 48)


def test_loss_module_in_sentence_transformers_trainer(tmp_path):
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments

    teacher = tiny_sentence_transformer("roberta", tmp_path / "teacher")
    student = tiny_sentence_transformer("roberta", tmp_path / "student", num_layers=2, seed=1).train()
    loss = EmbeddingDistillationLoss(student, teacher, hfe.PKDConfig(embedding_loss="cosine", beta=10))
    start = held_out_loss(loss)
    args = SentenceTransformerTrainingArguments(
        str(tmp_path / "out"), max_steps=12, per_device_train_batch_size=8, learning_rate=2e-3, report_to=[],
        save_strategy="no", use_cpu=True, disable_tqdm=True,
    )  # fmt: skip
    SentenceTransformerTrainer(model=student, args=args, train_dataset=text_dataset(), loss=loss).train()
    assert held_out_loss(loss) < 0.7 * start


def test_bare_encoder_distillation(tmp_path):
    from transformers import AutoModel, AutoTokenizer

    tiny_sentence_transformer("bert", tmp_path / "teacher")
    teacher = AutoModel.from_pretrained(tmp_path / "teacher")
    student = hfe.make_student(teacher, 2)
    assert type(student) is type(teacher) and len(hfe.layer_stack(student)) == 2
    with pytest.raises(ValueError, match="processing_class=<its tokenizer>"):
        hfe.DistillationTrainer(
            model=student, teacher=teacher, args=training_args(tmp_path), train_dataset=text_dataset()
        )
    trainer = hfe.DistillationTrainer(
        model=student,
        teacher=teacher,
        args=training_args(tmp_path),
        train_dataset=text_dataset(),
        processing_class=AutoTokenizer.from_pretrained(tmp_path / "teacher"),
    )
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())


def test_bad_input_is_one_line(tmp_path):
    teacher = tiny_sentence_transformer("bert", tmp_path / "teacher")
    student = hfe.make_student(teacher, 2)
    with pytest.raises(ValueError, match=r"reads a 'text' column of plain text; the dataset has \['sentence'\]"):
        hfe.DistillationTrainer(
            model=student,
            teacher=teacher,
            args=training_args(tmp_path),
            train_dataset=datasets.Dataset.from_dict({"sentence": SENTENCES}),
        )
    pooling_only = SentenceTransformer(modules=[models.Pooling(32, "mean")], device="cpu")
    for call in (hfe.make_student, hfe.prune_layers):
        with pytest.raises(SentenceError, match="first module is Pooling, not a transformers encoder") as error:
            call(pooling_only, 1)
        assert "\n" not in str(error.value)
    with pytest.raises(SentenceError, match="first module is Pooling"):
        hfe.export_int8(pooling_only, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="reads a 'text' column"):
        hfe.export_int8(teacher, str(tmp_path / "x"), eval_dataset=datasets.Dataset.from_dict({"s": ["a"]}))
    # Texts that are not strings: named, rather than a tokenizer's error or "None" embedded as a word.
    with_none = datasets.Dataset.from_dict({"text": [SENTENCES[0], None]})
    with pytest.raises(
        ValueError, match=r"^DistillationTrainer\(train_dataset=...\): row 1 of the 'text' column is None"
    ):
        hfe.DistillationTrainer(model=student, teacher=teacher, args=training_args(tmp_path), train_dataset=with_none)
    with pytest.raises(ValueError, match=r"the 'text' column holds int64, not text"):
        hfe.export_int8(teacher, str(tmp_path / "x"), eval_dataset=datasets.Dataset.from_dict({"text": [1, 2]}))
    with pytest.raises(ValueError, match=r"^export_int8\(eval_dataset=...\): text 1 is None, not a string"):
        hfe.export_int8(teacher, str(tmp_path / "x"), eval_dataset=["a", None])
    assert not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match=r"PKDConfig\(embedding_loss='l1'\): use 'mse' or 'cosine'"):
        hfe.PKDConfig(embedding_loss="l1")


def test_sentence_embedder_refuses_a_folder_without_pooling(tmp_path):
    # Without a Pooling module there is no one vector per text: say so, rather than fail on ragged arrays.
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx/model.onnx").write_bytes(b"")
    (tmp_path / "modules.json").write_text(
        json.dumps([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}])
    )
    with pytest.raises(ValueError, match="modules.json has no Pooling module"):
        SentenceEmbedder(str(tmp_path), "onnx/model.onnx")


@pytest.mark.parametrize("family", [*SENTENCE_FAMILIES, "distilbert"])  # DistilBERT's config calls its width `dim`
def test_export_int8_matches_pytorch(family, tmp_path):
    model = tiny_sentence_transformer(family, tmp_path / "model")
    out = tmp_path / "export"
    result = hfe.export_int8(model, str(out), eval_dataset=text_dataset())
    int8_file = "onnx/model_qint8_avx512_vnni.onnx"
    assert result.fp32_file == "onnx/model.onnx" and result.int8_file == int8_file
    assert {"modules.json", "1_Pooling", "2_Normalize", "config.json", "tokenizer.json"} <= set(os.listdir(out))
    reference = encode(model)
    fp32 = SentenceEmbedder(str(out), "onnx/model.onnx")(SENTENCES, batch_size=7)
    int8 = SentenceEmbedder(str(out))(SENTENCES)
    assert cosine_to_teacher(fp32, reference) >= 0.9999  # batches of similar length, put back in order
    with pytest.raises(ValueError, match=r"SentenceEmbedder\(threads=0\): give a whole number of threads"):
        SentenceEmbedder(str(out), threads=0)
    with pytest.raises(ValueError, match=r"SentenceEmbedder\(texts=3\): give a string or a list of strings"):
        SentenceEmbedder(str(out), threads=1)(3)
    assert cosine_to_teacher(int8, reference) >= 0.99
    assert SentenceEmbedder(str(out))([]).shape == (0, int8.shape[1])  # no texts: no rows, of the same width
    assert result.metrics["onnx_int8"]["cosine_to_pytorch"] == pytest.approx(
        cosine_to_teacher(int8, reference), abs=1e-4
    )
    assert np.allclose(np.linalg.norm(int8, axis=-1), 1, atol=1e-5)
    if OPTIMUM:  # sentence-transformers' own ONNX backend loads the export (optimum-onnx: transformers < 4.58)
        loaded = SentenceTransformer(str(out), backend="onnx", model_kwargs={"file_name": int8_file}, device="cpu")
        assert cosine_to_teacher(encode(loaded), reference) >= 0.99
        loaded = SentenceTransformer(str(out), backend="onnx", model_kwargs={"file_name": "onnx/model.onnx"})
        assert cosine_to_teacher(encode(loaded), reference) >= 0.9999


@pytest.mark.parametrize("variant", ["int8-weights", "int8-fused"])
def test_export_writes_the_forced_variant(variant, tmp_path):
    import onnx

    model = tiny_sentence_transformer("bert", tmp_path / "model")
    out = tmp_path / "export"
    result = hfe.export_int8(model, str(out), hfe.Int8ExportConfig(variant=variant), eval_dataset=text_dataset())
    record = json.loads((out / "export_report.json").read_text())
    assert record["variant"] == result.variant == variant and "forced" in record["variant_reason"]
    ops = [node.op_type for node in onnx.load(str(out / result.int8_file)).graph.node]
    if variant == "int8-weights":  # the attention's two activation products per layer stay fp32
        assert ops.count("MatMul") == result.chosen["fp32_matmuls"] == 2 * 4
    else:
        assert ops.count("SkipLayerNormalization") == result.chosen["fused"]["SkipLayerNormalization"] > 0
    assert not (out / "onnx" / "model_fused.onnx").exists()
    assert cosine_to_teacher(SentenceEmbedder(str(out), result.int8_file)(SENTENCES), encode(model)) >= 0.99


def test_export_fastest_keeps_the_timed_winner(tmp_path, monkeypatch):
    from hf_efficient.report.measure import Latency

    ms = {"int8-all": {1: 2.0, 32: 40.0}, "int8-weights": {1: 1.0, 32: 30.0}, "int8-fused": {1: 3.0, 32: 50.0}}
    ms |= {"PyTorch fp32": {1: 4.0, 32: 90.0}, "PyTorch bf16": {1: 3.0, 32: 60.0}}

    def measure(runners, feeds, **_):
        assert set(runners) == set(ms)
        return Latency(ms)

    monkeypatch.setattr("hf_efficient.report.measure.measure_latency", measure)
    monkeypatch.setattr("hf_efficient.report.cpu.has_fast_bf16", lambda: True)
    model = tiny_sentence_transformer("bert", tmp_path / "model")
    out = tmp_path / "export"
    config = hfe.Int8ExportConfig(variant="fastest")
    result = hfe.export_int8(model, str(out), config, eval_dataset=text_dataset())
    assert result.variant == "int8-weights" and result.chosen["fp32_matmuls"] == 2 * 4
    assert "; 3.00x / 2.00x the fastest plain PyTorch" in result.variant_reason  # bf16's 3 / 60 ms over 1 / 30
    assert json.loads((out / "export_report.json").read_text())["variant_timings"]["int8-fused"] == {"1": 3, "32": 50}
    assert sorted(p.name for p in (out / "onnx").iterdir()) == ["model.onnx", result.int8_file.split("/")[1]]
    assert cosine_to_teacher(SentenceEmbedder(str(out), result.int8_file)(SENTENCES), encode(model)) >= 0.99


def test_static_export_calibrates_on_texts(tmp_path):
    model = tiny_sentence_transformer("bert", tmp_path / "model")
    config = hfe.Int8ExportConfig(mode="static", calibration_samples=10)
    result = hfe.export_int8(model, str(tmp_path / "x"), config, eval_dataset=SENTENCES, calibration_dataset=SENTENCES)
    assert result.chosen["activations_calibrated"] > 0
    assert result.metrics["onnx_int8"]["cosine_to_pytorch"] >= 0.99


def test_static_export_calibrates_on_what_the_embedder_feeds(tmp_path, monkeypatch):
    from hf_efficient.export import graph

    seen = []

    def capture(path, batches):
        seen.extend(batches)
        return graph.freeze_activation_ranges(path, seen)

    monkeypatch.setattr("hf_efficient.export.int8.freeze_activation_ranges", capture)
    model = tiny_sentence_transformer("bert", tmp_path / "model")
    texts = [f"  {text} " for text in SENTENCES]
    config = hfe.Int8ExportConfig(mode="static", calibration_samples=len(texts))
    hfe.export_int8(model, str(tmp_path / "out"), config, calibration_dataset=texts)
    # The same batches, prepared texts and padding as SentenceEmbedder gives the graph at inference.
    expected = [feed for _, feed, _ in SentenceEmbedder(str(tmp_path / "out"), "onnx/model.onnx").batches(texts, 16)]
    assert len(seen) == len(expected) == 3
    assert all(
        a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a) for a, b in zip(seen, expected, strict=True)
    )


def test_a_head_s_soft_target_settings_are_refused_by_the_embedding_loss(tmp_path):
    teacher = tiny_sentence_transformer("bert", tmp_path / "model")
    student = hfe.make_student(teacher, 2)
    message = r"^EmbeddingDistillationLoss: PKDConfig\(alpha=0.3, temperature=2.0\) weighs a head's soft targets"
    with pytest.raises(ValueError, match=message):
        EmbeddingDistillationLoss(student, teacher, hfe.PKDConfig(alpha=0.3, temperature=2.0))


def test_a_model_with_modules_the_embedder_lacks_exports_without_a_check_and_refuses_one(tmp_path):
    model = tiny_sentence_transformer("bert", tmp_path / "model")
    dense = SentenceTransformer(modules=[*model, models.Dense(model.get_sentence_embedding_dimension(), 8)])
    with pytest.raises(ValueError, match=r"also has Dense; export it without eval_dataset and check it with Sentence"):
        hfe.export_int8(dense, str(tmp_path / "checked"), eval_dataset=SENTENCES)
    assert not (tmp_path / "checked").exists()
    result = hfe.export_int8(dense, str(tmp_path / "out"))
    assert result.gate is None  # exported unchecked, as asked, with every module kept for sentence-transformers
    saved = json.loads((tmp_path / "out/modules.json").read_text())
    assert [module["type"].rsplit(".", 1)[-1] for module in saved] == [type(module).__name__ for module in dense]
    if importlib.util.find_spec("optimum") is not None:  # sentence-transformers' ONNX backend runs on Optimum
        files = {"file_name": "onnx/model.onnx"}
        onnx = SentenceTransformer(str(tmp_path / "out"), backend="onnx", model_kwargs=files)
        np.testing.assert_allclose(onnx.encode(SENTENCES), dense.encode(SENTENCES), atol=1e-5)


def test_export_gate_and_folder_input(tmp_path, monkeypatch):
    from hf_efficient.export import int8 as int8_export

    excluded = []  # what each attempt asked the quantizer to keep in fp32
    quantize = int8_export.quantize_int8_dynamic
    monkeypatch.setattr(
        int8_export, "quantize_int8_dynamic", lambda *a, **k: excluded.append(k["exclude"]) or quantize(*a, **k)
    )
    model = tiny_sentence_transformer("bert", tmp_path / "model")
    model.save(str(tmp_path / "saved"))
    with pytest.raises(
        hfe.AccuracyDropError,
        match=r"cosine to PyTorch lost more than max_accuracy_drop=0 in every attempt: 0\.\d{6}, ",
    ) as error:
        hfe.export_int8(str(tmp_path / "saved"), str(tmp_path / "x"), hfe.Int8ExportConfig(max_accuracy_drop=0),
                        eval_dataset=SENTENCES)  # fmt: skip
    attempts = error.value.result.attempts
    # The defaults are already per-channel with the exact GELU: one retry, with the last MatMuls in fp32.
    assert len(attempts) == 2 and (tmp_path / "x" / "onnx" / "model.onnx").exists()
    least = 1 - max(a["cosine_to_pytorch"] for a in attempts)
    allowed = float(re.search(r"allow a drop of ([\d.e-]+),", str(error.value))[1])
    assert least <= allowed < least + 2e-6  # enough to keep the best attempt, and no more
    # The last retry keeps the top FFN's two MatMuls in fp32, and the quantizer is told so.
    assert excluded == [a["exclude"] for a in attempts] and len(excluded[-1]) == 2 and excluded[0] == []


def test_metrics_against_references():
    rng = np.random.default_rng(0)
    teacher = rng.normal(size=(40, 8))
    assert cosine_to_teacher(teacher, 3 * teacher) == pytest.approx(1)
    assert neighbour_overlap(teacher, 2 * teacher, k=10) == 1
    assert neighbour_overlap(teacher, rng.normal(size=(40, 8)), k=10) < 0.6
    # Two clusters: both classifiers find them.
    labels = np.repeat([0, 1], 20)
    points = rng.normal(size=(40, 8)) * 0.1 + np.where(labels[:, None] == 0, 1.0, -1.0)
    assert knn_accuracy(points, labels, points, labels) == 1
    assert probe_accuracy(points, labels, points, labels) == 1
    # A kNN vote by hand: the 3 nearest of [1, 0] are labelled 1, 1, 0.
    train = np.array([[1, 0.1], [1, -0.1], [1, 0.3], [-1, 0]])
    assert knn_accuracy(train, ["b", "b", "a", "a"], np.array([[1.0, 0]]), ["b"], k=3) == 1
    with pytest.raises(ValueError, match="12 student rows but 40 teacher rows"):
        cosine_to_teacher(teacher[:12], teacher)


def test_probe_and_knn_equal_scikit_learn():
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(1)
    train, test = rng.normal(size=(120, 6)), rng.normal(size=(60, 6))
    train_labels, test_labels = (train[:, 0] + 0.8 * rng.normal(size=120) > 0) * 1, (test[:, 0] > 0) * 1
    probe = LogisticRegression(max_iter=100).fit(train, train_labels)
    assert probe_accuracy(train, train_labels, test, test_labels) == pytest.approx(probe.score(test, test_labels))
    knn = KNeighborsClassifier(n_neighbors=10, metric="cosine").fit(train, train_labels)
    assert knn_accuracy(train, train_labels, test, test_labels) == pytest.approx(knn.score(test, test_labels))
