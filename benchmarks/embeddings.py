"""Compressing a sentence-transformers embedding model, side by side with sentence-transformers' own recipe.

The shipped MiniLM (all-MiniLM-L6-v2: mean pooling, normalised) is the teacher; students keep layers
0, 2, 4 (`--student-layers 3`). Trained on the Rotten Tomatoes snippets of the default task without
their labels (`--train-samples` rows, `--steps` steps of `--batch-size`, `--learning-rate`), evaluated
on the test split. Rows, in one run:

1. the teacher; 2. the student untrained; 3. sentence-transformers' own distillation recipe (its
`MSELoss` on the teacher's embeddings, `SentenceTransformerTrainer`, same init, data, steps, learning
rate and batch); 4. hf_efficient's embedding distillation (`DistillationTrainer`, patient and
neighbour terms on);
5. 4 exported to int8 by `export_int8`, and (optimum stack) the same student exported by
sentence-transformers' `export_dynamic_quantized_onnx_model`; 6. 4 in PyTorch bf16 where the CPU has
bf16 instructions.

Columns: mean cosine to the teacher's embeddings, overlap of the top-10 nearest neighbours with the
teacher's, kNN accuracy (k = 10, cosine) and a logistic-regression probe on the labels (fitted on
`--probe-train` training rows), weight megabytes, and CPU latency of the encoder at batch 1 and 32
(1 thread and all cores) as speed-ups over the PyTorch fp32 teacher, timed in turns (pooling and
normalisation, a few microseconds, are left out of the timing).

    python benchmarks/embeddings.py --output-dir runs/embeddings
"""

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from sentence_transformers import SentenceTransformer
from transformers import TrainingArguments, set_seed

from hf_efficient import DistillationTrainer, Int8ExportConfig, PKDConfig, export_int8, make_student
from hf_efficient.assets import default_model_path
from hf_efficient.data import load_default_task
from hf_efficient.metrics.embedding import cosine_to_teacher, knn_accuracy, neighbour_overlap, probe_accuracy
from hf_efficient.report import markdown_table
from hf_efficient.report.cpu import describe_cpu, has_fast_bf16
from hf_efficient.report.measure import measure_latency, onnx_runner, pytorch_runner
from hf_efficient.sentence import SentenceEmbedder, sentence_encoder


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--teacher", default=default_model_path())
    parser.add_argument("--output-dir", default="runs/embeddings")
    parser.add_argument("--student-layers", type=int, default=3)
    parser.add_argument("--train-samples", type=int, default=10283, help="training texts (all: 10283)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--embedding-loss", default="cosine", choices=["mse", "cosine"])
    parser.add_argument("--beta", type=float, default=100.0, help="weight of hf_efficient's patient term")
    parser.add_argument("--similarity", type=float, default=0.01, help="weight of hf_efficient's neighbour term")
    parser.add_argument("--probe-train", type=int, default=1000, help="labelled training rows for kNN and probe")
    parser.add_argument("--eval-samples", type=int, default=None, help="test rows (all: 1409)")
    parser.add_argument("--seconds", type=float, default=2.0, help="latency budget per model and batch size")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def training_arguments(args, folder: Path, **extra) -> dict:
    return dict(
        output_dir=str(folder),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        warmup_ratio=0.1,
        seed=args.seed,
        report_to=[],
        save_strategy="no",
        logging_steps=50,
        use_cpu=True,
        disable_tqdm=True,
        **extra,
    )


def train_sentence_transformers(teacher, student, texts: list[str], args, folder: Path) -> float:
    """sentence-transformers' model-distillation recipe: MSELoss on precomputed teacher embeddings."""
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.losses import MSELoss

    started = time.perf_counter()
    labels = teacher.encode(texts, batch_size=64, convert_to_numpy=True)
    train = datasets.Dataset.from_dict({"text": texts, "label": labels.tolist()})
    trainer = SentenceTransformerTrainer(
        model=student,
        args=SentenceTransformerTrainingArguments(**training_arguments(args, folder)),
        train_dataset=train,
        loss=MSELoss(student),
    )
    trainer.train()
    return time.perf_counter() - started


def train_hf_efficient(teacher, student, texts: list[str], args, folder: Path) -> float:
    started = time.perf_counter()
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        distillation=PKDConfig(embedding_loss=args.embedding_loss, beta=args.beta, similarity=args.similarity),
        args=TrainingArguments(**training_arguments(args, folder)),
        train_dataset=datasets.Dataset.from_dict({"text": texts}),
    )
    trainer.train()
    return time.perf_counter() - started


def export_sentence_transformers_int8(student_folder: Path, folder: Path) -> Path | None:
    """sentence-transformers' own ONNX export and dynamic int8 quantization (needs optimum-onnx)."""
    try:
        from sentence_transformers import export_dynamic_quantized_onnx_model

        shutil.rmtree(folder, ignore_errors=True)  # a previous run's onnx/ would be copied onto itself
        shutil.copytree(student_folder, folder)
        model = SentenceTransformer(str(folder), backend="onnx", device="cpu")
        model.save_pretrained(str(folder))  # writes onnx/model.onnx
        export_dynamic_quantized_onnx_model(model, "avx512_vnni", str(folder))
    except Exception as error:  # noqa: BLE001 - the transformers 5 stack has no optimum-onnx
        print(f"sentence-transformers' ONNX export is not available here: {type(error).__name__}: {error}")
        return None
    return folder / "onnx" / "model_qint8_avx512_vnni.onnx"


def main():
    args = arguments()
    set_seed(args.seed)
    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    data = load_default_task()
    train_texts = data["train"].shuffle(seed=args.seed).select(range(min(args.train_samples, len(data["train"]))))
    train_texts = list(train_texts["text"])
    probe = data["train"].shuffle(seed=args.seed + 1).select(range(args.probe_train))
    test = data["test"] if args.eval_samples is None else data["test"].select(range(args.eval_samples))
    test_texts, test_labels = list(test["text"]), np.asarray(test["label"])
    probe_texts, probe_labels = list(probe["text"]), np.asarray(probe["label"])

    teacher = SentenceTransformer(args.teacher, device="cpu").eval()
    untrained = make_student(teacher, args.student_layers).eval()  # layers 0, 2, 4 of 6
    kept = sentence_encoder(untrained).config.hf_efficient["layers"]["kept_layers"]
    ours = make_student(teacher, args.student_layers)
    theirs = make_student(teacher, args.student_layers)
    times = {
        "sentence-transformers MSELoss": train_sentence_transformers(
            teacher, theirs, train_texts, args, output / "st_train"
        ),
        "hf_efficient distillation": train_hf_efficient(teacher, ours, train_texts, args, output / "hfe_train"),
    }
    ours.eval().save(str(output / "student_hf_efficient"))
    theirs.eval().save(str(output / "student_sentence_transformers"))

    result = export_int8(ours, str(output / "int8_hf_efficient"), Int8ExportConfig(), eval_dataset=test_texts)
    st_int8 = export_sentence_transformers_int8(output / "student_hf_efficient", output / "int8_sentence_transformers")

    # Embeddings of the test texts (quality) and of the labelled training rows (kNN and probe fits).
    embedders = {
        "teacher (6 layers)": teacher.encode,
        f"student, layers {kept}, untrained": untrained.encode,
        "sentence-transformers MSELoss": theirs.encode,
        "hf_efficient distillation": ours.encode,
        "hf_efficient distillation, int8 (export_int8)": SentenceEmbedder(str(output / "int8_hf_efficient")),
    }
    if st_int8 is not None:
        st_model = SentenceTransformer(
            str(output / "int8_sentence_transformers"),
            backend="onnx",
            model_kwargs={"file_name": "onnx/model_qint8_avx512_vnni.onnx"},
            device="cpu",
        )
        embedders["hf_efficient distillation, int8 (sentence-transformers export)"] = st_model.encode
    bf16 = has_fast_bf16()
    if bf16:
        bf16_student = make_student(ours, args.student_layers).eval().to(torch.bfloat16)
        embedders["hf_efficient distillation, PyTorch bf16"] = lambda texts: bf16_student.encode(texts).astype(
            np.float32
        )

    vectors = {}
    for name, embed in embedders.items():
        vectors[name] = (np.asarray(embed(test_texts), dtype=np.float32), np.asarray(embed(probe_texts), np.float32))
    reference = vectors["teacher (6 layers)"][0]
    quality = {}
    for name, (test_vectors, probe_vectors) in vectors.items():
        quality[name] = {
            "cosine_to_teacher": cosine_to_teacher(test_vectors, reference),
            "top10_overlap": neighbour_overlap(test_vectors, reference, k=10),
            "knn_accuracy": knn_accuracy(probe_vectors, probe_labels, test_vectors, test_labels, k=10),
            "probe_accuracy": probe_accuracy(probe_vectors, probe_labels, test_vectors, test_labels),
        }
    int8_cosine = cosine_to_teacher(
        vectors["hf_efficient distillation, int8 (export_int8)"][0], vectors["hf_efficient distillation"][0]
    )

    # Sizes: weight files as each runs.
    sizes = {
        "teacher (6 layers)": Path(args.teacher, "model.safetensors").stat().st_size / 1e6,
        f"student, layers {kept}, untrained": Path(output, "student_hf_efficient", "model.safetensors").stat().st_size
        / 1e6,
    }
    sizes["sentence-transformers MSELoss"] = sizes["hf_efficient distillation"] = sizes[
        f"student, layers {kept}, untrained"
    ]
    sizes["hf_efficient distillation, int8 (export_int8)"] = (
        Path(result.output_dir, result.int8_file).stat().st_size / 1e6
    )
    if st_int8 is not None:
        sizes["hf_efficient distillation, int8 (sentence-transformers export)"] = st_int8.stat().st_size / 1e6
    if bf16:
        sizes["hf_efficient distillation, PyTorch bf16"] = sizes["hf_efficient distillation"] / 2

    # Latency of the encoders on the first 32 test texts (padded to the longest), in turns.
    tokenizer = teacher.tokenizer
    encoded = tokenizer(test_texts[:32], padding=True, truncation=True, max_length=128, return_tensors="np")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    feed32 = {k: encoded[k].astype(np.int64) for k in names if k in encoded}
    feeds = {1: {k: v[:1] for k, v in feed32.items()}, 32: feed32}
    latency = {}
    for threads in sorted({1, cores}):
        runners = {
            "teacher (6 layers)": pytorch_runner(sentence_encoder(teacher)),
            "hf_efficient distillation": pytorch_runner(sentence_encoder(ours)),
            "hf_efficient distillation, int8 (export_int8)": onnx_runner(
                Path(result.output_dir, result.int8_file), threads
            ),
        }
        if st_int8 is not None:
            runners["hf_efficient distillation, int8 (sentence-transformers export)"] = onnx_runner(st_int8, threads)
        if bf16:
            runners["hf_efficient distillation, PyTorch bf16"] = pytorch_runner(sentence_encoder(bf16_student))
        latency[threads] = measure_latency(runners, feeds, threads=threads, seconds=args.seconds)
    same_as_student = [f"student, layers {kept}, untrained", "sentence-transformers MSELoss"]

    def speedup(name, threads, size):
        source = "hf_efficient distillation" if name in same_as_student else name
        if source not in latency[threads]:
            return "-"
        return latency[threads]["teacher (6 layers)"][size] / latency[threads][source][size]

    header = ["model", "cosine to teacher", "top-10 overlap", "kNN acc", "probe acc", "MB"]
    header += [f"speed-up b{size} {threads}t" for threads in sorted(latency) for size in (1, 32)]
    rows = [
        [
            name,
            q["cosine_to_teacher"],
            q["top10_overlap"],
            q["knn_accuracy"],
            q["probe_accuracy"],
            round(sizes[name], 1),
        ]
        + [
            (f"{s:.2f}x" if isinstance(s := speedup(name, threads, size), float) else s)
            for threads in sorted(latency)
            for size in (1, 32)
        ]
        for name, q in quality.items()
    ]
    table = markdown_table(header, rows)
    ms = {
        str(threads): {name: {str(k): round(v, 3) for k, v in by_size.items()} for name, by_size in lat.items()}
        for threads, lat in latency.items()
    }
    student_fp32 = {threads: latency[threads]["hf_efficient distillation"][32] for threads in latency}
    int8_name = "hf_efficient distillation, int8 (export_int8)"
    st_name = "hf_efficient distillation, int8 (sentence-transformers export)"
    ours_q, theirs_q, teacher_q = (
        quality["hf_efficient distillation"],
        quality["sentence-transformers MSELoss"],
        quality["teacher (6 layers)"],
    )
    targets = {
        "kNN accuracy >= 98% of the teacher's": ours_q["knn_accuracy"] >= 0.98 * teacher_q["knn_accuracy"],
        "beats sentence-transformers' recipe on cosine": ours_q["cosine_to_teacher"] > theirs_q["cosine_to_teacher"],
        "beats sentence-transformers' recipe on top-10 overlap": ours_q["top10_overlap"] > theirs_q["top10_overlap"],
        "int8 >= 2x faster than PyTorch fp32 student at batch 32 (every thread count)": all(
            student_fp32[t] / latency[t][int8_name][32] >= 2 for t in latency
        ),
        "int8 at least as fast as sentence-transformers' int8 at batch 32": (
            all(latency[t][int8_name][32] <= latency[t][st_name][32] for t in latency) if st_int8 else "not measured"
        ),
        "int8 mean cosine to fp32 >= 0.99": int8_cosine >= 0.99,
    }
    summary = {
        "arguments": vars(args),
        "cpu": describe_cpu(cores),
        "quality": quality,
        "sizes_mb": sizes,
        "latency_ms": ms,
        "timing": {str(t): lat.timing.__dict__ for t, lat in latency.items()},
        "training_seconds": times,
        "int8_cosine_to_fp32": int8_cosine,
        "export": result.to_dict(),
        "targets": targets,
    }
    (output / "embeddings.json").write_text(json.dumps(summary, indent=1, default=str))
    text = (
        f"{table}\n\nCPU: {describe_cpu(cores)}. int8 (export_int8) mean cosine to its fp32 student: "
        f"{int8_cosine:.4f}. "
        f"Training seconds: {', '.join(f'{k} {v:.0f}' for k, v in times.items())}.\n\nTargets:\n"
        + "\n".join(
            f"- {name}: {'met' if ok is True else 'MISSED' if ok is False else ok}" for name, ok in targets.items()
        )
    )
    (output / "embeddings.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
