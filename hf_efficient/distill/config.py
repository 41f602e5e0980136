from __future__ import annotations

import math
from dataclasses import asdict, dataclass

STRATEGIES = ("skip", "last")
EMBEDDING_LOSSES = ("mse", "cosine")
# The settings that only the embedding models' loss reads (`embedding.EmbeddingDistillationLoss`), and those it does
# not read (the soft targets of a head: their weight against the labels, and their temperature).
EMBEDDING_ONLY = ("embedding_loss", "similarity")
HEAD_ONLY = ("alpha", "temperature")


@dataclass
class PKDConfig:
    """Settings of Patient Knowledge Distillation (Sun et al. 2019).

    loss = (1 - alpha) * CE(student, labels)
         + alpha * T^2 * KL(teacher/T || student/T)
         + beta * patient loss,

    where the patient loss is the mean squared difference of the L2-normalised [CLS] vectors of
    matched layers, averaged over batch, layers and hidden units as in the official code (so that the
    paper's values of `beta` carry over). Only intermediate layers are matched: the student's top
    layer is taught through the logits.

    Args:
        strategy (`str` or `list[int]`, defaults to "skip"): "skip" matches every k-th teacher layer
            (12 -> 6: teacher layers 2, 4, 6, 8, 10, 1-based), "last" the layers just below the
            teacher's top (12 -> 6: 7 to 11), and a list gives the 0-based teacher layer matched by
            each student layer but the last. The paper found Skip better on most tasks.
        alpha (`float`, defaults to 0.7): Weight of the soft-target term against the hard labels.
        beta (`float`, defaults to 500.0): Weight of the patient loss; 0 gives plain logit KD.
        temperature (`float`, defaults to 10.0): Softmax temperature of the soft targets.
        normalize (`bool`, defaults to True): L2-normalise the [CLS] vectors before comparing them
            (the paper: without it the loss is dominated by the scale of the teacher's states).
        embedding_loss (`str`, defaults to "mse"): Embedding models (a SentenceTransformer or a bare
            encoder, trained on plain text): "mse" (sentence-transformers' `MSELoss`) or "cosine"
            (1 - cosine) between the student's and the teacher's sentence embeddings. Their loss is
            this divergence + beta * the patient loss (on mean-pooled states; there is no hard term).
        similarity (`float`, defaults to 0.0): Embedding models: weight of the neighbour term, which
            teaches each text's similarities to the other texts of its batch rather than only its vector:
            the KL divergence between the teacher's and the student's softmax (temperature 0.05) over
            each text's cosine similarities to the others. It raises the overlap of nearest neighbours
            with the teacher's (benchmarks/README.md: 0.01 with the cosine divergence, beta 100).
        projection (`bool`, defaults to True): Learn a linear map from the student's width to the
            teacher's where they differ (left out of the saved student); False refuses different widths.

    The defaults come from the paper's search grid (alpha in {0.2, 0.5, 0.7}, T in {5, 10, 20},
    beta in {10, 100, 500, 1000}), at the values its official code used for PKD.
    """

    strategy: str | list[int] = "skip"
    alpha: float = 0.7
    beta: float = 500.0
    temperature: float = 10.0
    normalize: bool = True
    embedding_loss: str = "mse"
    similarity: float = 0.0
    projection: bool = True

    def __post_init__(self):
        if isinstance(self.strategy, tuple):
            self.strategy = list(self.strategy)
        if isinstance(self.strategy, str):
            if self.strategy not in STRATEGIES:
                raise ValueError(f"PKDConfig(strategy={self.strategy!r}): use 'skip', 'last' or a list of layers.")
        elif not isinstance(self.strategy, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in self.strategy
        ):
            raise ValueError(f"PKDConfig(strategy={self.strategy!r}): a layer map is a list of teacher layer ints.")
        for name in ("alpha", "beta", "temperature", "similarity"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"PKDConfig({name}={value!r}): must be a finite number >= 0.")
        if self.embedding_loss not in EMBEDDING_LOSSES:
            raise ValueError(f"PKDConfig(embedding_loss={self.embedding_loss!r}): use 'mse' or 'cosine'.")
        for name in ("normalize", "projection"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"PKDConfig({name}={getattr(self, name)!r}): use True or False.")
        if self.alpha > 1:
            raise ValueError(f"PKDConfig(alpha={self.alpha}): alpha weighs soft against hard targets, in [0, 1].")
        if self.temperature == 0:
            raise ValueError("PKDConfig(temperature=0): the temperature must be > 0 (1 is the plain softmax).")

    def to_dict(self) -> dict:
        return asdict(self)

    def embedding_only_changes(self) -> list[str]:
        """The settings of `EMBEDDING_ONLY` set away from their defaults: a classifier's loss has no such term."""
        return self._changed(EMBEDDING_ONLY)

    def head_only_changes(self) -> list[str]:
        """The settings of `HEAD_ONLY` set away from their defaults: an embedding model's loss has no such term."""
        return self._changed(HEAD_ONLY)

    def _changed(self, names: tuple[str, ...]) -> list[str]:
        defaults = type(self)()
        return [f"{name}={getattr(self, name)!r}" for name in names if getattr(self, name) != getattr(defaults, name)]


def pkd_layer_map(teacher_layers: int, student_layers: int, strategy: str | list[int] = "skip") -> list[int]:
    """0-based teacher layers matched by student layers 0 .. student_layers - 2.

    Examples (1-based in the paper): 12 -> 6 skip gives teacher layers 2, 4, 6, 8, 10, that is
    `[1, 3, 5, 7, 9]`; 12 -> 6 last gives `[6, 7, 8, 9, 10]`; 6 -> 3 skip gives `[1, 3]`.

    Args:
        teacher_layers (`int`): Depth of the teacher.
        student_layers (`int`): Depth of the student, at most the teacher's.
        strategy (`str` or `list[int]`): "skip", "last", or an explicit map to validate.
    """
    for name, value in (("teacher_layers", teacher_layers), ("student_layers", student_layers)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"pkd_layer_map({name}={value!r}): give a whole number of layers.")
    if isinstance(strategy, str) and strategy not in ("skip", "last"):
        raise ValueError(f"PKDConfig(strategy={strategy!r}): use 'skip', 'last' or a list of teacher layers.")
    if not 1 <= student_layers <= teacher_layers:
        raise ValueError(
            f"A student of {student_layers} layers cannot learn from a teacher of {teacher_layers}: "
            "the student needs between 1 and as many layers as the teacher."
        )
    if strategy == "skip":
        step = teacher_layers // student_layers
        return [step * (i + 1) - 1 for i in range(student_layers - 1)]
    if strategy == "last":
        return list(range(teacher_layers - student_layers, teacher_layers - 1))
    layer_map = list(strategy)
    if len(layer_map) != student_layers - 1:
        raise ValueError(
            f"PKDConfig(strategy={layer_map}): give one teacher layer for each of the student's "
            f"{student_layers - 1} intermediate layers (its top layer learns from the logits)."
        )
    bad = [i for i in layer_map if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < teacher_layers]
    if bad:
        raise ValueError(f"PKDConfig(strategy={layer_map}): {bad} are not layers of a {teacher_layers}-layer teacher.")
    return layer_map


def check_same_vocabulary(teacher, student, caller: str) -> None:
    """Token ids mean nothing across vocabularies: both models (their configs) must read one tokenization."""
    for key in ("vocab_size", "pad_token_id"):
        ours, theirs = getattr(student.config, key, None), getattr(teacher.config, key, None)
        if ours != theirs:
            raise ValueError(
                f"{caller}: the student's {key} is {ours} but the teacher's is {theirs}. Teacher and student must "
                "share one tokenizer; build the student with make_student(teacher, ...) or from a checkpoint of the "
                "same tokenizer."
            )
