from __future__ import annotations

import logging

from transformers import TrainerCallback
from transformers.training_args import ParallelMode

from ..provenance import recorded_technique
from ..sentence import transformers_model
from .model import apply_layerdrop, layerdrop_schedule

logger = logging.getLogger(__name__)


class LayerDropCallback(TrainerCallback):
    """Connects a LayerDrop model to `Trainer`.

    - Applies the LayerDrop that the model's config records when the model has none (a LayerDrop
      model reloaded with `from_pretrained` is plain), so training goes on with the same rates and seed.
    - Seeds each step's drop decisions with the Trainer's global step, so that every process drops
      the same layers and resuming from a checkpoint repeats the same sequence.
    - Refuses a distributed run in which DDP would fail on the parameters of skipped layers.
    - Turns off `average_tokens_across_devices` in distributed runs: on transformers 5.x it
      multiplies the mean loss of a classification head by the number of processes.

    Example:
        ```python
        >>> trainer = Trainer(model=apply_layerdrop(model), args=args, callbacks=[LayerDropCallback()], ...)
        ```
    """

    def on_init_end(self, args, state, control, **kwargs):
        if args.world_size > 1 and getattr(args, "average_tokens_across_devices", False):
            logger.warning("LayerDropCallback: setting average_tokens_across_devices=False (see its docstring).")
            args.average_tokens_across_devices = False

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if layerdrop_schedule(model) is None:
            if recorded_technique(transformers_model(model).config, "layerdrop") is None:
                raise ValueError(
                    "LayerDropCallback was given a model without LayerDrop: call apply_layerdrop(model) first."
                )
            apply_layerdrop(model)
            settings = recorded_technique(transformers_model(model).config, "layerdrop")
            logger.info("LayerDropCallback: applied the LayerDrop that the model's config records: %s.", settings)
        if args.parallel_mode == ParallelMode.DISTRIBUTED:
            # transformers 5 renamed the property; 4.x only has the old name.
            checkpointing = getattr(model, "is_activation_checkpointing", None)
            if checkpointing is None:
                checkpointing = model.is_gradient_checkpointing
            if args.ddp_find_unused_parameters is False or (args.ddp_find_unused_parameters is None and checkpointing):
                raise ValueError(
                    "LayerDrop leaves the parameters of skipped layers without gradients, which DDP only "
                    "accepts with TrainingArguments(ddp_find_unused_parameters=True) (with gradient "
                    "checkpointing, also gradient_checkpointing_kwargs={'use_reentrant': False})."
                )

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        layerdrop_schedule(model).set_step(state.global_step)
