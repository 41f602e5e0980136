"""Train a tiny BERT with Trainer, alone or under `accelerate launch`.

`--technique layerdrop`: LayerDrop 0.5 with `LayerDropCallback`; `--technique pkd`: a 3-layer
LayerDrop-free student distilled with `DistillationTrainer` from a 6-layer teacher, with the head of
`--task` (a row of `hf_efficient.tasks`).
Writes `<output>/rank<N>.json` with the logged loss of each step and the layers each step skipped, and
`<output>/exit<N>.json` with the threads still running once the process group is ended, as the interpreter exits.
With 2 processes and `--batch-size 4` it sees the same samples per step as 1 process with 8.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from conftest import tiny_model, tiny_task_batch  # noqa: E402

from hf_efficient import (  # noqa: E402
    DistillationTrainer,
    LayerDropCallback,
    LayerDropConfig,
    PKDConfig,
    apply_layerdrop,
    make_student,
)
from hf_efficient.layerdrop.model import layerdrop_schedule  # noqa: E402
from hf_efficient.recipe.run import end_process_group  # noqa: E402


class RecordMasks(TrainerCallback):
    def __init__(self):
        self.masks = {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        schedule = layerdrop_schedule(model)
        self.masks[state.global_step] = list(schedule.skipped) if schedule else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--technique", choices=["layerdrop", "pkd"], default="layerdrop")
    parser.add_argument("--task", default="text-classification")
    args = parser.parse_args()

    torch.manual_seed(0)
    if args.technique == "layerdrop":
        model = apply_layerdrop(tiny_model("bert", num_layers=6), LayerDropConfig(rate=0.5, seed=3))
        extra = {"callbacks": [LayerDropCallback()]}
        trainer_class = Trainer
    else:
        teacher = tiny_model("bert", num_layers=6, seed=1, task=args.task)
        model = make_student(teacher, 3)
        extra = {"teacher": teacher, "distillation": PKDConfig(beta=100.0), "callbacks": []}
        trainer_class = DistillationTrainer
    batch = tiny_task_batch(args.task, batch=64, seed=2)
    data = [{k: v[i] for k, v in batch.items()} for i in range(64)]
    recorder = RecordMasks()
    training_args = TrainingArguments(
        output_dir=args.output,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        logging_steps=1,
        learning_rate=1e-3,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=0,
        # Without use_cpu, accelerate on a machine without GPUs runs each process alone.
        use_cpu=not torch.cuda.is_available(),
    )
    extra["callbacks"].append(recorder)
    trainer = trainer_class(model=model, args=training_args, train_dataset=data, **extra)
    trainer.train()
    losses = {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
    result = {
        "world_size": training_args.world_size,
        "find_unused_parameters": trainer.accelerator.ddp_handler.find_unused_parameters
        if trainer.accelerator.ddp_handler
        else None,
        "average_tokens_across_devices": training_args.average_tokens_across_devices,
        "losses": losses,
        "labelled_tokens": [int((row != -100).sum()) for row in batch["labels"]] if batch["labels"].dim() == 2 else [],
        "loss_terms": {e["step"]: e.get("loss_patient") for e in trainer.state.log_history if "loss" in e},
        "teacher_class": type(getattr(trainer, "teacher", None)).__name__,
        "masks": recorder.masks,
    }
    with open(os.path.join(args.output, f"rank{training_args.process_index}.json"), "w") as f:
        json.dump(result, f)
    return args.output, training_args.process_index


def running_threads() -> list[str]:
    """The names of this process's threads (Linux), e.g. gloo's `pt_gloo_runloop`."""
    names = []
    for path in Path("/proc/self/task").glob("*/comm"):
        try:
            names.append(path.read_text().strip())
        except FileNotFoundError:  # a thread that ended while we looked
            pass
    return sorted(names)


if __name__ == "__main__":
    output, rank = main()
    end_process_group()  # after main(): its Trainer's DDP model holds the process group
    with open(os.path.join(output, f"exit{rank}.json"), "w") as f:
        json.dump(running_threads(), f)
