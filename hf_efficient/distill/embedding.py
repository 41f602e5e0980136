"""Embedding distillation: a student embedding model learns a teacher's sentence vectors from plain text.

loss = divergence(student embeddings, teacher embeddings) + similarity * neighbour term + beta * patient
loss, where the divergence is the `sentence-embedding` task's (MSE or cosine, `PKDConfig.embedding_loss`),
the neighbour term (`neighbour_divergence`) compares how each text relates to the others of its batch,
and the patient loss compares mean-pooled hidden states of matched intermediate layers (PKD's patient
term; mean pooling because that is what these models' embeddings read). One `nn.Module` holds it, so that it serves both
`DistillationTrainer` and sentence-transformers' own `SentenceTransformerTrainer` (as its `loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from ..encoders import layer_stack, record_layer_outputs
from ..provenance import public_name, record_technique
from ..sentence import SentenceError, is_sentence_transformer, transformers_model
from ..sentence.model import embeddings, is_bare_encoder, mean_pool
from ..tasks import EMBEDDING_DIVERGENCES
from .config import PKDConfig, check_same_vocabulary, pkd_layer_map
from .losses import patient_loss

TEXT_COLUMN = "text"
PROJECTION = "pkd_projection"  # intermediate layers, as for classifiers
EMBEDDING_PROJECTION = "pkd_embedding_projection"  # final embeddings


# Of the neighbour term's softmax: sharp enough that a text's few nearest neighbours in the batch carry
# most of the distribution (the temperature contrastive sentence encoders such as SimCSE train with).
SIMILARITY_TEMPERATURE = 0.05


def neighbour_divergence(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of each text's softmax over its cosine similarities to the batch's other texts.

    Row i compares the student's similarities of text i to texts j != i with the teacher's: zero when
    the student's batch is arranged as the teacher's (whatever its vectors' lengths), and, short of
    that, it spends the student's error where it changes which texts are each other's neighbours,
    which the per-text divergence is blind to.
    """
    count = len(student)
    if count < 2:
        return student.new_zeros(())
    others = ~torch.eye(count, dtype=torch.bool, device=student.device)

    def log_neighbours(vectors):
        vectors = F.normalize(vectors.float(), dim=-1)
        similarities = (vectors @ vectors.T)[others].view(count, count - 1)
        return F.log_softmax(similarities / SIMILARITY_TEMPERATURE, dim=-1)

    return F.kl_div(log_neighbours(student), log_neighbours(teacher), log_target=True, reduction="batchmean")


def is_embedding_model(model) -> bool:
    """A SentenceTransformer, or a transformers encoder without a task head."""
    return is_sentence_transformer(model) or is_bare_encoder(model)


def embedding_dimension(model) -> int:
    if is_sentence_transformer(model):
        # sentence-transformers 5.7 renamed it; older versions have only the long name.
        get = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        return get()
    return model.config.hidden_size


def _add_projection(encoder: PreTrainedModel, name: str, width: int, target: int) -> None:
    # A submodule of the student's encoder, so that the optimizer and DDP see it; never saved.
    setattr(encoder, name, nn.Linear(width, target))
    ignored = [key for key in (encoder._keys_to_ignore_on_save or []) if not key.startswith(name + ".")]
    encoder._keys_to_ignore_on_save = ignored + [f"{name}.weight", f"{name}.bias"]


class EmbeddingDistillationLoss(nn.Module):
    """The embedding distillation loss of a student against a fixed teacher.

    Args:
        model: The student, a SentenceTransformer or a bare `AutoModel` encoder (e.g. from `make_student`).
        teacher: The teacher, of the same kind and tokenizer. Not a submodule: never trained or saved.
        distillation (`PKDConfig`, *optional*): `embedding_loss`, `beta`, `strategy`, `normalize`, `projection`.

    Example (sentence-transformers' trainer; the dataset has one `text` column):
        ```python
        >>> loss = EmbeddingDistillationLoss(student, teacher, PKDConfig(embedding_loss="cosine"))
        >>> SentenceTransformerTrainer(model=student, train_dataset=texts, loss=loss).train()
        ```
    """

    def __init__(self, model, teacher, distillation: PKDConfig | None = None):
        super().__init__()
        for role, value in (("model", model), ("teacher", teacher)):
            if not is_embedding_model(value):
                raise ValueError(
                    f"EmbeddingDistillationLoss({role}={type(value).__name__}): give a SentenceTransformer or a "
                    "transformers encoder without a head (AutoModel)."
                )
        if is_sentence_transformer(model) != is_sentence_transformer(teacher):
            raise ValueError(
                "EmbeddingDistillationLoss: the student and the teacher must both be SentenceTransformers or both "
                "bare encoders, so that their embeddings are pooled alike."
            )
        self.config = PKDConfig() if distillation is None else distillation
        if not isinstance(self.config, PKDConfig):
            raise TypeError(f"EmbeddingDistillationLoss(distillation={distillation!r}): expected a PKDConfig.")
        ignored = self.config.head_only_changes()
        if ignored:  # recorded with the model, they would look applied
            raise ValueError(
                f"EmbeddingDistillationLoss: PKDConfig({', '.join(ignored)}) weighs a head's soft targets, which an "
                "embedding model has none of (its loss: embedding_loss, beta, similarity): leave it at its default."
            )
        self.model = model  # sentence-transformers' trainer reads `loss.model`
        object.__setattr__(self, "teacher", teacher.eval().requires_grad_(False))
        student_encoder, teacher_encoder = transformers_model(model), transformers_model(teacher)
        check_same_vocabulary(teacher_encoder, student_encoder, "EmbeddingDistillationLoss")
        depth, teacher_depth = len(layer_stack(student_encoder)), len(layer_stack(teacher_encoder))
        self.layer_map = pkd_layer_map(teacher_depth, depth, self.config.strategy)
        self.patient = self.config.beta > 0 and bool(self.layer_map)
        widths = {
            EMBEDDING_PROJECTION: (embedding_dimension(model), embedding_dimension(teacher)),
            PROJECTION: (student_encoder.config.hidden_size, teacher_encoder.config.hidden_size),
        }
        if not self.patient:
            del widths[PROJECTION]
        for name, (width, target) in widths.items():
            if width == target:
                continue
            if not self.config.projection:
                what = "embedding dimension" if name == EMBEDDING_PROJECTION else "hidden size"
                raise SentenceError(
                    f"EmbeddingDistillationLoss: the student's {what} is {width} but the teacher's is {target}; "
                    "set PKDConfig(projection=True) to learn a map between them, or use a student of the same width."
                )
            if not isinstance(getattr(student_encoder, name, None), nn.Linear):
                _add_projection(student_encoder, name, width, target)
        self.divergence = EMBEDDING_DIVERGENCES[self.config.embedding_loss]
        self.weights = {"embedding": 1.0, "similarity": self.config.similarity, "patient": self.config.beta}
        self.term_names = [name for name in self.weights if name == "embedding" or self._on(name)]
        record_technique(
            student_encoder,
            "distillation",
            {
                "method": "embedding_pkd" if self.patient else "embedding",
                "teacher": public_name(teacher_encoder.config.name_or_path) or type(teacher_encoder).__name__,
                "teacher_layers": teacher_depth,
                "layer_map": self.layer_map,
                **self.config.to_dict(),
            },
        )

    def _on(self, term: str) -> bool:
        return self.patient if term == "patient" else self.weights[term] > 0

    def terms(self, features: dict[str, torch.Tensor], student: nn.Module | None = None) -> list[torch.Tensor]:
        """The terms of one tokenized batch, in `term_names` order; `student`: the (maybe wrapped) model."""
        student = self.model if student is None else student
        encoder, teacher_encoder = transformers_model(self.model), transformers_model(self.teacher)
        device = features["input_ids"].device
        if teacher_encoder.device != device:
            self.teacher.to(device)
        student_layers = list(range(len(self.layer_map))) if self.patient else []
        teacher_layers = self.layer_map if self.patient else []
        with record_layer_outputs(encoder, student_layers) as student_states:
            student_vectors = embeddings(student, features)
        with torch.no_grad(), record_layer_outputs(teacher_encoder, teacher_layers) as teacher_states:
            teacher_vectors = embeddings(self.teacher, features)
        projection = getattr(encoder, EMBEDDING_PROJECTION, None)
        if projection is not None:
            student_vectors = projection(student_vectors)
        terms = [self.divergence(student_vectors, teacher_vectors, features, 1.0)]
        if self._on("similarity"):
            terms.append(neighbour_divergence(student_vectors, teacher_vectors))
        if self.patient:
            mask = features["attention_mask"]
            ours = torch.stack([mean_pool(student_states[i], mask) for i in student_layers], dim=1)
            theirs = torch.stack([mean_pool(teacher_states[j], mask) for j in teacher_layers], dim=1)
            projection = getattr(encoder, PROJECTION, None)
            if projection is not None:
                ours = projection(ours)
            terms.append(patient_loss(ours, theirs, self.config.normalize))
        return terms

    def combine(self, terms: list[torch.Tensor]) -> torch.Tensor:
        return sum(self.weights[name] * term for name, term in zip(self.term_names, terms, strict=True))

    def forward(self, sentence_features, labels=None) -> torch.Tensor:
        """sentence-transformers' loss API: one tokenized dict per text column; `labels` are not read."""
        return sum(self.combine(self.terms(features)) for features in sentence_features)


class TextCollator:
    """Tokenize the `text` column of a batch with the student's tokenizer (other columns are dropped)."""

    def __init__(self, model, tokenizer=None):
        self.model, self.tokenizer = model, tokenizer

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        texts = [row[TEXT_COLUMN] for row in rows]
        if is_sentence_transformer(self.model):
            features = (getattr(self.model, "preprocess", None) or self.model.tokenize)(texts)
            return {k: v for k, v in features.items() if isinstance(v, torch.Tensor)}
        return dict(self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt"))
