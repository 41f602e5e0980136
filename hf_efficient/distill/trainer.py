from __future__ import annotations

import inspect
import warnings

import torch
from torch import nn
from transformers import PreTrainedModel, Trainer

from ..checks import check_loaded, check_rows, check_texts, check_tokenized
from ..encoders import layer_stack, record_layer_outputs
from ..provenance import public_name, record_technique
from ..sentence import is_sentence_transformer
from ..tasks import task_of
from .config import PKDConfig, check_same_vocabulary, pkd_layer_map
from .embedding import TEXT_COLUMN, EmbeddingDistillationLoss, TextCollator, is_embedding_model
from .losses import patient_loss

PROJECTION = "pkd_projection"


def _forward_arguments(model: nn.Module) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _check_same_task(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    # The divergence compares the two heads' outputs: they must be the same head with the same labels.
    ours, theirs = task_of(student), task_of(teacher)
    if ours.divergence is None:
        raise ValueError(
            f"DistillationTrainer: {type(student).__name__} is a {ours.name} model, which has no distillation "
            "divergence; distil a model with a task head (e.g. AutoModelForSequenceClassification)."
        )
    if ours is not theirs or student.config.num_labels != teacher.config.num_labels:
        raise ValueError(
            f"DistillationTrainer: the student is a {ours.name} model ({type(student).__name__}, "
            f"{student.config.num_labels} labels) but the teacher a {theirs.name} one ({type(teacher).__name__}, "
            f"{teacher.config.num_labels} labels). Give both the teacher's head: make_student(teacher, ...)."
        )


class DistillationTrainer(Trainer):
    """A `Trainer` whose loss is Patient Knowledge Distillation from a fixed teacher.

    Only `compute_loss` changes: the training loop, logging, saving and `accelerate launch` are
    Trainer's. The teacher runs in eval mode without gradients (optionally in a lower precision),
    is not wrapped by DDP and never enters the student's checkpoints. The [CLS] states of both
    models are read with forward hooks, so this works on any supported family and with a LayerDrop
    or shared student.

    Any task head of `hf_efficient.tasks` works (teacher and student must have the same one): the
    hard term is the student's own loss on the batch's label columns (`labels`, or
    `start_positions`/`end_positions`), the soft term the task's divergence (softmax KL, per-label
    Bernoulli KL, MSE for regression, KL per labelled token, over start and end positions), the
    patient term compares [CLS] vectors (of every choice, for multiple choice). Each term is logged
    (`loss_hard`, called `loss_ce` before there were other tasks; `loss_kd`; `loss_patient`).

    Embedding models (a SentenceTransformer, or a bare `AutoModel` encoder with `processing_class`)
    learn from a dataset with a `text` column and no labels: the loss is `EmbeddingDistillationLoss`
    (logged as `loss_embedding`, `loss_patient`) and checkpoints are sentence-transformers folders.

    Args:
        model (`PreTrainedModel`): The student, e.g. from `make_student`.
        teacher (`PreTrainedModel`): The fine-tuned teacher, same tokenizer.
        distillation (`PKDConfig`, *optional*): Loss settings; `PKDConfig()` when omitted.
        teacher_dtype (`torch.dtype`, *optional*): Run the teacher in this precision, e.g. `torch.bfloat16`.
            The teacher is moved, cast and frozen in place, as Trainer moves its model: pass
            `copy.deepcopy(teacher)` to keep yours as it is.
        *args, **kwargs: Passed to `Trainer`.

    Example:
        ```python
        >>> student = make_student(teacher, num_layers=3)
        >>> trainer = DistillationTrainer(model=student, teacher=teacher, distillation=PKDConfig(), args=args,
        ...                               train_dataset=train)
        ```
    """

    def __init__(
        self,
        model: PreTrainedModel = None,
        *args,
        teacher: PreTrainedModel = None,
        distillation: PKDConfig | None = None,
        teacher_dtype: torch.dtype | None = None,
        **kwargs,
    ):
        self.distillation = PKDConfig() if distillation is None else distillation
        if not isinstance(self.distillation, PKDConfig):
            raise TypeError(f"DistillationTrainer(distillation={distillation!r}): expected a PKDConfig.")
        if teacher_dtype is not None and not (
            isinstance(teacher_dtype, torch.dtype) and teacher_dtype.is_floating_point
        ):
            raise ValueError(
                f"DistillationTrainer(teacher_dtype={teacher_dtype!r}): give a torch float dtype, e.g. torch.bfloat16."
            )
        self.embedding_loss = None
        if is_embedding_model(model) or is_embedding_model(teacher):
            self._init_embedding(model, teacher, teacher_dtype, args, kwargs)
            return
        if not isinstance(teacher, PreTrainedModel) or not isinstance(model, PreTrainedModel):
            raise ValueError("DistillationTrainer needs model=<student PreTrainedModel> and teacher=<PreTrainedModel>.")
        for name, given_model in (("model", model), ("teacher", teacher)):
            check_loaded(given_model, f"DistillationTrainer({name}=...)")
        check_same_vocabulary(teacher, model, "DistillationTrainer")
        _check_same_task(teacher, model)
        # Before anything is set on the student. The datasets may come by keyword or by position; arguments
        # Trainer does not take are left for Trainer to refuse.
        try:
            given = inspect.signature(Trainer.__init__).bind_partial(self, model, *args, **kwargs).arguments
        except TypeError:
            given = {}
        for name in ("train_dataset", "eval_dataset"):
            rows = given.get(name)
            check_tokenized(rows, f"DistillationTrainer({name}=...)")
            if hasattr(rows, "column_names") and hasattr(rows, "__len__"):  # a Dataset: ids, lengths and labels
                check_rows(model, rows, task_of(model).name, f"DistillationTrainer({name}=...)")
        # Settings of the embedding loss only: a classifier's loss has no such terms, so they would do nothing.
        ignored = self.distillation.embedding_only_changes()
        if ignored:
            raise ValueError(
                f"DistillationTrainer: PKDConfig({', '.join(ignored)}) applies to embedding models (trained on plain "
                "text); a classifier's loss has no such term: leave it at its default."
            )
        self.layer_map = pkd_layer_map(len(layer_stack(teacher)), len(layer_stack(model)), self.distillation.strategy)
        # The patient loss needs a layer to match and a weight; without a layer, beta does nothing.
        patient = self.distillation.beta > 0 and bool(self.layer_map)
        if self.distillation.beta > 0 and not patient:
            warnings.warn(
                f"DistillationTrainer: a {len(layer_stack(model))}-layer student has no intermediate layer to match "
                f"to the teacher's: beta={self.distillation.beta} adds no patient loss, and the student learns by "
                "logit KD only.",
                stacklevel=2,
            )
        widths = (model.config.hidden_size, teacher.config.hidden_size)
        if patient and widths[0] != widths[1] and not self.distillation.projection:
            raise ValueError(
                f"DistillationTrainer: the student's hidden size is {widths[0]} but the teacher's is {widths[1]}; set "
                "PKDConfig(projection=True) to learn a map between them, beta=0 for logit KD, or use a student of "
                "the same width."
            )
        if patient and widths[0] != widths[1]:
            # A learned map from student to teacher width; a submodule of the student so that DDP
            # synchronises it, and left out of every checkpoint.
            setattr(model, PROJECTION, nn.Linear(model.config.hidden_size, teacher.config.hidden_size))
            model._keys_to_ignore_on_save = [f"{PROJECTION}.weight", f"{PROJECTION}.bias"]
        record_technique(
            model,
            "distillation",
            {
                "method": "pkd" if patient else "logit_kd",
                "teacher": public_name(teacher.config.name_or_path) or type(teacher).__name__,
                "teacher_layers": len(layer_stack(teacher)),
                "layer_map": self.layer_map,
                **self.distillation.to_dict(),
            },
        )
        super().__init__(model, *args, **kwargs)
        # compute_loss never passes `num_items_in_batch` to the model, whose loss is then a mean over
        # its own batch. Trainer must know, or (transformers 5, whose models all take **kwargs) it
        # counts items it does not use and skips dividing the loss by the gradient accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.teacher = teacher.to(device=self.args.device, dtype=teacher_dtype).eval().requires_grad_(False)
        self._teacher_arguments = _forward_arguments(self.teacher)
        self._student_arguments = _forward_arguments(model)
        # Loss terms are summed on the device and read only when logging, so no step waits for a GPU.
        self._term_names = ["hard", "kd"] + (["patient"] if patient else [])
        # Hooks only on the layers the patient loss reads: a hooked layer takes a slower call path.
        self._student_layers = list(range(len(self.layer_map))) if patient else []
        self._teacher_layers = self.layer_map if patient else []
        self._terms_total = None
        self._terms_count = 0
        self._unwrapped = (None, None)

    def _init_embedding(self, model, teacher, teacher_dtype, args, kwargs) -> None:
        """Embedding models (SentenceTransformer or bare encoder) learn from a dataset of plain text."""
        self.embedding_loss = EmbeddingDistillationLoss(model, teacher, self.distillation)
        for split in ("train_dataset", "eval_dataset"):
            dataset = kwargs.get(split)
            columns = getattr(dataset, "column_names", None)
            if isinstance(columns, list) and TEXT_COLUMN not in columns:
                raise ValueError(
                    f"DistillationTrainer({split}=...): embedding distillation reads a {TEXT_COLUMN!r} column of "
                    f"plain text; the dataset has {columns}. Rename the text column to {TEXT_COLUMN!r}."
                )
            check_texts(dataset, TEXT_COLUMN, f"DistillationTrainer({split}=...)")
        if kwargs.get("data_collator") is None:
            tokenizer = kwargs.get("processing_class")
            if tokenizer is None and not is_sentence_transformer(model):
                raise ValueError(
                    "DistillationTrainer: a bare encoder student needs processing_class=<its tokenizer> to read text."
                )
            kwargs["data_collator"] = TextCollator(model, tokenizer)
        super().__init__(model, *args, **kwargs)
        self.model_accepts_loss_kwargs = False  # as for task heads: compute_loss passes no item count
        self.teacher = teacher.to(device=self.args.device, dtype=teacher_dtype)
        self._term_names = self.embedding_loss.term_names
        self._terms_total = None
        self._terms_count = 0

    def _save(self, output_dir: str | None = None, state_dict=None):
        if not is_sentence_transformer(self.model):
            return super()._save(output_dir, state_dict)
        # A complete sentence-transformers folder (modules, pooling, tokenizer), not a bare state dict.
        output_dir = output_dir or self.args.output_dir
        self.model.save(output_dir)
        torch.save(self.args, f"{output_dir}/training_args.bin")

    def _set_signature_columns_if_needed(self):
        if self.embedding_loss is not None:
            self._signature_columns = [TEXT_COLUMN]
            return
        # Keep the dataset columns the teacher reads, not only those the student's forward takes.
        super()._set_signature_columns_if_needed()
        extra = [name for name in self._teacher_arguments if name not in self._signature_columns]
        self._signature_columns = self._signature_columns + extra

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.embedding_loss is not None:
            terms = self.embedding_loss.terms(inputs, student=model)
            loss = self.embedding_loss.combine(terms)
            self._record_terms(model, terms)
            return (loss, {"loss": loss}) if return_outputs else loss
        config = self.distillation
        # unwrap_model walks every module (about 1 ms): a few percent of a launch-bound GPU step.
        if self._unwrapped[0] is not model:
            self._unwrapped = (model, self.accelerator.unwrap_model(model))
        student = self._unwrapped[1]
        student_inputs = {k: v for k, v in inputs.items() if k in self._student_arguments}
        with record_layer_outputs(student, self._student_layers) as student_states:
            outputs = model(**student_inputs)
        # After the forward: transformers sets an unset problem_type from the first labels it sees.
        task = task_of(student)
        if outputs.get("loss") is None:
            raise ValueError(
                f"DistillationTrainer: the batch has none of the label columns {list(task.label_columns)} that the "
                f"{task.name} loss reads (it has {sorted(inputs)}); keep them in the dataset."
            )
        teacher_inputs = {
            k: v for k, v in inputs.items() if k in self._teacher_arguments and k not in task.label_columns
        }
        with torch.no_grad(), record_layer_outputs(self.teacher, self._teacher_layers) as teacher_states:
            teacher_outputs = self.teacher(**teacher_inputs)

        terms = [outputs.loss, task.divergence(outputs, teacher_outputs, inputs, config.temperature)]
        weights = [1 - config.alpha, config.alpha]
        if self._teacher_layers:
            # Multiple choice runs the encoder on (batch * choices) rows: the [CLS] of every choice.
            student_cls = torch.stack([student_states[i][:, 0] for i in self._student_layers], dim=1)
            teacher_cls = torch.stack([teacher_states[j][:, 0] for j in self._teacher_layers], dim=1)
            projection = getattr(student, PROJECTION, None)
            if projection is not None:
                student_cls = projection(student_cls)
            terms.append(patient_loss(student_cls, teacher_cls, config.normalize))
            weights.append(config.beta)
        self._record_terms(model, terms)
        # average_tokens_across_devices (default True) says how Trainer averages a per-token loss
        # over processes; Trainer itself leaves that to compute_loss here (model_accepts_loss_kwargs).
        if task.token_level and model.training and self.args.world_size > 1 and self.args.average_tokens_across_devices:
            terms[:2] = self._weigh_by_token_share(terms[:2], inputs)
        # Terms of weight 0 are left out, so that alpha=0, beta=0 gives exactly the model's own loss.
        loss = sum(weight * term for weight, term in zip(weights, terms, strict=True) if weight)
        return (loss, outputs) if return_outputs else loss

    def _record_terms(self, model, terms: list[torch.Tensor]) -> None:
        if model.training:
            step_terms = torch.stack([term.detach().float() for term in terms])
            self._terms_total = step_terms if self._terms_total is None else self._terms_total + step_terms
            self._terms_count += 1

    def _weigh_by_token_share(self, terms: list[torch.Tensor], inputs: dict) -> list[torch.Tensor]:
        """Means over this process's labelled tokens -> its share of the mean over every process's.

        DDP averages gradients over processes, so two processes of 4 rows would weigh a token of a
        row with few labelled tokens more than one process of the same 8 rows does. Scaled by
        P * n_local / n_all, the average of the processes' losses is the mean over all their tokens,
        as one process computes it (per micro-batch: gradient accumulation weighs each equally).
        One all-reduce of two numbers per step.
        """
        labelled = inputs["labels"] != -100  # what the head's cross-entropy averages over
        mask = inputs.get("attention_mask")
        unpadded = labelled if mask is None else labelled & mask.bool()
        counts = torch.stack([labelled.sum(), unpadded.sum()])  # and what the token KL averages over
        totals = self.accelerator.reduce(counts.clone(), reduction="sum")
        shares = counts.float() * self.args.world_size / totals.clamp(min=1).float()
        return [term * share for term, share in zip(terms, shares, strict=True)]

    def log(self, logs: dict, *args, **kwargs) -> None:
        if "loss" in logs and self._terms_count:
            means = (self._terms_total / self._terms_count).tolist()
            logs.update({f"loss_{name}": round(mean, 6) for name, mean in zip(self._term_names, means, strict=True)})
            self._terms_total = None
            self._terms_count = 0
        super().log(logs, *args, **kwargs)
