"""sentence-transformers embedding models: the one place that knows how they are built.

A `SentenceTransformer` is a transformers encoder (its first module, `Transformer`, holds it as
`auto_model`) followed by modules that turn token states into one vector (`Pooling`, `Normalize`,
...). The techniques change the encoder in place, so a SentenceTransformer keeps its other modules
and `save()` writes a complete folder (modules.json, pooling, tokenizer) that plain
`SentenceTransformer(folder)` loads. The ONNX export covers the encoder only (output
`last_hidden_state`, as sentence-transformers' own ONNX backend expects); pooling and
normalisation run in the loader: sentence-transformers' modules, or `SentenceEmbedder` here.
"""

from .embedder import SentenceEmbedder
from .model import (
    ONNX_DIR,
    SentenceError,
    calling_module,
    embeddings,
    int8_file_name,
    is_sentence_transformer,
    sentence_encoder,
    transformers_model,
)

__all__ = [
    "ONNX_DIR",
    "SentenceEmbedder",
    "SentenceError",
    "calling_module",
    "embeddings",
    "int8_file_name",
    "is_sentence_transformer",
    "sentence_encoder",
    "transformers_model",
]
