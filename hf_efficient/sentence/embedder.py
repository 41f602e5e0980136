"""`SentenceEmbedder`: texts -> embeddings with an exported sentence-transformers folder and ONNX Runtime.

The ONNX graph is the encoder (`last_hidden_state`); the pooling and normalisation that the folder's
`modules.json` names are applied here, in numpy, as sentence-transformers' `Pooling` and
`Normalize` apply them in PyTorch. Works on both stacks (no Optimum, no sentence-transformers).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..export.helpers import _batches, _lengths, _pad, _texts
from ..export.runtime import open_session

# sentence-transformers' legacy pooling flags -> its `pooling_mode` names.
_LEGACY_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def pooling_mode(config: dict) -> str:
    """The one pooling mode a sentence-transformers `Pooling` config names (new or legacy keys)."""
    mode = config.get("pooling_mode")
    if mode is None:
        mode = [name for flag, name in _LEGACY_POOLING.items() if config.get(flag)]
    if isinstance(mode, list):
        if len(mode) != 1:
            raise ValueError(f"SentenceEmbedder: pooling {mode} combines several modes; only one is supported.")
        mode = mode[0]
    return mode


def pool(states: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """sentence-transformers' `Pooling` in numpy: `(batch, length, hidden)` token states -> `(batch, hidden)`."""
    mask = mask.astype(states.dtype)[..., None]
    if mode == "cls":
        return states[:, 0]
    if mode == "max":
        return np.where(mask > 0, states, -1e9).max(axis=1)
    if mode in ("mean", "mean_sqrt_len_tokens"):
        total, count = (states * mask).sum(axis=1), np.clip(mask.sum(axis=1), 1e-9, None)
        return total / (count if mode == "mean" else np.sqrt(count))
    if mode == "weightedmean":
        weights = mask * np.arange(1, states.shape[1] + 1, dtype=states.dtype)[None, :, None]
        return (states * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    if mode == "lasttoken":
        last = mask[..., 0].sum(axis=1).astype(int) - 1  # right padding
        return states[np.arange(len(states)), np.clip(last, 0, None)]
    raise ValueError(f"SentenceEmbedder: pooling mode {mode!r} is not one of cls, max, mean, weightedmean, lasttoken.")


# The sentence-transformers modules SentenceEmbedder runs itself (their types' class names).
MODULES = ("Transformer", "Pooling", "Normalize")


class SentenceEmbedder:
    """Embed texts with an `export_int8` sentence-transformers folder, in batches, with ONNX Runtime or OpenVINO.

    Args:
        folder (`str`): The exported folder (modules.json, tokenizer, `onnx/`).
        file_name (`str`, *optional*): The ONNX file under the folder, e.g. "onnx/model.onnx" (fp32);
            the int8 file that `export_report.json` names when omitted.
        threads (`int`, *optional*): The runtime's intra-op threads; its default (all cores) when omitted.
        runtime (`str`, *optional*): "onnxruntime", "openvino" or "openvino-bf16" (`export.runtime`); the one
            `export_int8` chose for the int8 file (its `export_report.json`) when omitted.

    Example:
        ```python
        >>> SentenceEmbedder("runs/export")(["a delight", "a mess"]).shape
        (2, 384)
        ```
    """

    def __init__(
        self, folder: str, file_name: str | None = None, threads: int | None = None, runtime: str | None = None
    ):
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(folder)
        modules = _read_json(folder / "modules.json")
        if not modules:
            raise ValueError(f"SentenceEmbedder: {folder} has no modules.json; give a sentence-transformers folder.")
        if file_name is None:
            file_name = _read_json(folder / "export_report.json").get("int8_file") or "onnx/model.onnx"
        if not (folder / file_name).exists():
            raise ValueError(f"SentenceEmbedder: no {file_name} in {folder}; run export_int8 on the model first.")
        self.pooling, self.normalize = None, False
        settings = {}
        for module in modules:
            kind = module["type"].rsplit(".", 1)[-1]
            if kind == "Transformer":
                settings = _read_json(folder / module["path"] / "sentence_bert_config.json")
            elif kind == "Pooling":
                self.pooling = pooling_mode(_read_json(folder / module["path"] / "config.json"))
            elif kind == "Normalize":
                self.normalize = True
            else:  # not in MODULES
                raise ValueError(
                    f"SentenceEmbedder: module {module['type']} is not supported here; load the folder with "
                    f"SentenceTransformer(folder, backend='onnx', model_kwargs={{'file_name': {file_name!r}}})."
                )
        if self.pooling is None:
            raise ValueError(
                f"SentenceEmbedder: {folder}/modules.json has no Pooling module, so no one vector per text; "
                "add one (sentence_transformers.models.Pooling) before exporting."
            )
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        # Pooling keeps the encoder's width; the embeddings of no texts are (0, dimension) too.
        # hidden_size through the config class: DistilBERT's config.json calls it `dim`.
        self.dimension = getattr(AutoConfig.from_pretrained(folder), "hidden_size", 0)
        self.max_length = settings.get("max_seq_length") or min(self.tokenizer.model_max_length, 512)
        self.lower_case = settings.get("do_lower_case", False)
        self.session = open_session(folder / file_name, runtime, threads, "SentenceEmbedder")
        self.input_names = self.session.input_names

    def __call__(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """`(len(texts), dimension)` float32 embeddings, normalised when the folder has `Normalize`.

        Texts of similar length are batched together, as sentence-transformers' `encode` does (each
        batch pads to its longest text); the embeddings come back in the order given.
        """
        texts = _texts("SentenceEmbedder", texts)
        vectors = [None] * len(texts)
        for batch, feed, mask in self.batches(texts, batch_size):
            states = self.session.run(["last_hidden_state"], feed)[0]
            pooled = pool(states, mask, self.pooling)
            if self.normalize:
                pooled = pooled / np.clip(np.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12, None)
            for row, i in enumerate(batch):
                vectors[i] = pooled[row].astype(np.float32)
        return np.stack(vectors) if vectors else np.zeros((0, self.dimension), dtype=np.float32)

    def batches(self, texts: list[str], batch_size: int = 32):
        """`(indices, feed, attention mask)` for batches of `texts` of similar length, longest first.

        The texts are prepared as sentence-transformers prepares them (stripped, and lower-cased
        where the folder's `sentence_bert_config.json` says `do_lower_case`), so that these are the
        inputs the graph sees: `__call__` runs them, and a static export calibrates on them.
        """
        texts = [text.strip() for text in _texts("SentenceEmbedder", texts)]
        if self.lower_case:
            texts = [text.lower() for text in texts]
        encoded = {"input_ids": []}
        if texts:
            encoded = self.tokenizer(texts, truncation="longest_first", max_length=self.max_length)
        for batch in _batches(_lengths(encoded), batch_size):
            inputs = _pad(self.tokenizer, encoded, batch)
            feed = {name: inputs.get(name, np.zeros_like(inputs["input_ids"])) for name in self.input_names}
            yield batch, feed, inputs["attention_mask"]
