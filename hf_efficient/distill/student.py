from __future__ import annotations

import copy

from transformers import PreTrainedModel

from ..encoders import layer_stack
from ..layers import evenly_spaced_layers, keep_layers
from ..sentence import transformers_model


def make_student(teacher: PreTrainedModel, num_layers: int, init: str | list[int] = "skip") -> PreTrainedModel:
    """A shallower copy of `teacher`: same class, embeddings and head, `num_layers` of its layers.

    The teacher is not changed. Pass the fine-tuned teacher, or the pretrained checkpoint it came
    from (the official PKD code starts students from the pretrained model).

    Args:
        teacher (`PreTrainedModel` or `SentenceTransformer`): An encoder of a supported family, or a
            SentenceTransformer around one (the student is then a SentenceTransformer with the same
            pooling, normalisation and tokenizer).
        num_layers (`int`): Depth of the student.
        init (`str` or `list[int]`, defaults to "skip"): "skip" takes layers spread evenly from
            layer 0 (0, 2, 4 of 6), "first" the bottom layers (0, 1, 2), or a list of 0-based layers.

    Returns:
        `PreTrainedModel`: a plain transformers model of the teacher's class (without the teacher's
        LayerDrop), in train mode with every parameter trainable (even when the teacher is frozen).
    """
    depth = len(layer_stack(transformers_model(teacher, "make_student")))
    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or not 1 <= num_layers <= depth:
        raise ValueError(
            f"make_student(num_layers={num_layers!r}): the student of a {depth}-layer teacher has a whole number of "
            f"layers, 1 to {depth}."
        )
    init = init.tolist() if hasattr(init, "tolist") else init  # a numpy array
    if init == "skip":
        layers = evenly_spaced_layers(depth, num_layers)
    elif init == "first":
        layers = list(range(num_layers))
    elif isinstance(init, (list, tuple, range)):
        layers = list(init)
        if len(layers) != num_layers:
            raise ValueError(f"make_student(init={layers}): list exactly num_layers={num_layers} teacher layers.")
    else:
        raise ValueError(f"make_student(init={init!r}): use 'skip', 'first' or a list of teacher layers.")
    student = copy.deepcopy(teacher)
    keep_layers(transformers_model(student), layers, call=f"make_student(init={init!r})")
    # A teacher already handed to DistillationTrainer is frozen; its copy must still learn.
    return student.train().requires_grad_(True)
