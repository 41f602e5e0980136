"""Fine-tuning with the reference recipe, shared by the recipes, the CLI and the benchmarks."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from datasets import DatasetDict
from transformers import PreTrainedModel, Trainer, TrainingArguments

from .metrics import compute_metrics_fn

# transformers 5 folded `warmup_ratio` into `warmup_steps` (a float below 1 is a ratio).
_WARMUP_10_PERCENT = (
    {"warmup_ratio": 0.1} if "warmup_ratio" in TrainingArguments.__dataclass_fields__ else {"warmup_steps": 0.1}
)


@dataclass
class TrainingConfig:
    """How a model is trained: the settings of `finetune`, of a recipe's teacher and student sections
    and of the command line's training flags (all derived from these fields)."""

    epochs: float = field(default=3.0, metadata={"help": "training epochs"})
    batch_size: int = field(default=32, metadata={"help": "per-device batch size"})
    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    bf16: bool = field(default=False, metadata={"help": "bf16 autocast (GPU, or a CPU with AVX512-BF16/AMX)"})


def finetune(
    model: PreTrainedModel,
    dataset: DatasetDict,
    output_dir: str,
    *,
    epochs: float = TrainingConfig.epochs,
    batch_size: int = TrainingConfig.batch_size,
    learning_rate: float = TrainingConfig.learning_rate,
    seed: int = 0,
    bf16: bool = TrainingConfig.bf16,
    callbacks: Sequence = (),
    trainer_class: type[Trainer] = Trainer,
    resume_from_checkpoint: str | None = None,
    compute_metrics: Callable | None = None,
    metric: str = "accuracy",
    **trainer_kwargs,
) -> Trainer:
    """Fine-tune `model` on a tokenized `dataset` and keep the epoch with the best validation `metric`.

    The recipe of `shared/reference` (AdamW, weight decay 0.01, 10% linear warm-up then linear decay),
    so that results compare with plain transformers.

    Args:
        model (`PreTrainedModel`): A model with a task head.
        dataset (`DatasetDict`): Tokenized, with `train` and `validation` splits.
        output_dir (`str`): Where the Trainer writes checkpoints.
        epochs (`float`): Training epochs.
        batch_size (`int`): Per-device batch size.
        learning_rate (`float`): Peak learning rate.
        seed (`int`): Seed of the data order and dropout (a new head is drawn before: seed it where it is made).
        bf16 (`bool`): Train under bf16 autocast.
        callbacks (`Sequence[TrainerCallback]`): e.g. `LayerDropCallback()`.
        trainer_class (`type[Trainer]`): A Trainer subclass, e.g. `DistillationTrainer`.
        resume_from_checkpoint (`str`, *optional*): A checkpoint of an interrupted run to go on from.
        compute_metrics (`Callable`, *optional*): The Trainer's `compute_metrics` (default: text
            classification's, `metrics.compute_metrics_fn()`); another task's comes from
            `compute_metrics_fn(task=...)`.
        metric (`str`): The validation metric (higher is better) that picks the epoch kept.
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
        metric_for_best_model=metric,
        logging_steps=20,
        seed=seed,
        bf16=bf16,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        # In a log file a progress bar is cursor-movement debris: the Trainer prints its logs as lines instead.
        disable_tqdm=not sys.stderr.isatty(),
    )
    trainer = trainer_class(
        model=model,
        args=args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["validation"],
        compute_metrics=compute_metrics or compute_metrics_fn(),
        callbacks=list(callbacks),
        **trainer_kwargs,
    )
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    return trainer
