"""Run an `export_int8` folder on text with plain ONNX Runtime, one small helper per kind of head.

Each helper gives what the matching transformers pipeline gives on the same model (text
classification, token classification with `aggregation_strategy="simple"`, extractive question
answering, feature extraction mean-pooled), and needs neither PyTorch nor Optimum at run time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .onnx import INPUT_NAMES

INT8_FILE = "model_quantized.onnx"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _texts(name: str, value, argument: str = "texts") -> list[str]:
    """One text or a list of texts, as a list; anything else is a ValueError naming the argument."""
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(text, str) for text in value):
        raise ValueError(f"{name}({argument}={value!r:.60}): give a string or a list of strings.")
    return list(value)


class _Exported:
    """An export folder: its tokenizer, config and ONNX Runtime session."""

    def __init__(self, folder: str, file_name: str = INT8_FILE, max_length: int = 512):
        import onnxruntime
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(folder)
        if not (folder / file_name).exists():
            raise ValueError(f"{type(self).__name__}: no {file_name} in {folder}; run export_int8 first.")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.config = AutoConfig.from_pretrained(folder)
        self.labels = self.config.id2label
        self.session = onnxruntime.InferenceSession(str(folder / file_name), providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.max_length = max_length

    def run(self, encoded) -> dict[str, np.ndarray]:
        """The model's outputs by name, on tokenizer output (token types zero where the tokenizer gave none)."""
        feed = {
            name: np.asarray(encoded.get(name, np.zeros_like(encoded["input_ids"])), dtype=np.int64)
            for name in self.input_names
            if name in INPUT_NAMES
        }
        return dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))


class TextClassifier(_Exported):
    """Classify texts, or pairs of texts, with an exported sequence classifier.

    Single-label heads give the best label and its softmax score; multi-label heads
    (`problem_type="multi_label_classification"`) every label with its sigmoid score, best first;
    regression heads (one output) the predicted number as the score. As `pipeline("text-classification")`
    gives them (with `top_k=None` for multi-label, `function_to_apply="none"` for regression).

    Args:
        folder (`str`): An `export_int8` output folder.
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Truncation length.

    Example:
        ```python
        >>> TextClassifier("runs/export")(["a delight", "a mess"])
        [{'label': 'fresh', 'score': 0.97}, {'label': 'rotten', 'score': 0.91}]
        ```
    """

    def __init__(self, folder: str, file_name: str = INT8_FILE, max_length: int = 64):
        super().__init__(folder, file_name, max_length)
        problem = self.config.problem_type
        self.problem_type = problem or ("regression" if self.config.num_labels == 1 else "single_label_classification")

    def __call__(self, texts, text_pairs=None, batch_size: int = 32) -> list:
        texts = _texts("TextClassifier", texts)
        if text_pairs is not None:
            text_pairs = _texts("TextClassifier", text_pairs, "text_pairs")
            if len(text_pairs) != len(texts):
                raise ValueError(
                    f"TextClassifier: {len(texts)} texts but {len(text_pairs)} text_pairs; give one pair per text."
                )
        results = []
        for start in range(0, len(texts), batch_size):
            pairs = None if text_pairs is None else text_pairs[start : start + batch_size]
            encoded = self.tokenizer(
                texts[start : start + batch_size],
                pairs,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="np",
            )
            results += [self._result(row) for row in self.run(encoded)["logits"]]
        return results

    def _result(self, logits: np.ndarray):
        if self.problem_type == "regression":
            return {"label": self.labels[0], "score": float(logits[0])}
        if self.problem_type == "multi_label_classification":
            scores = 1 / (1 + np.exp(-logits))
            return [{"label": self.labels[int(i)], "score": float(scores[i])} for i in np.argsort(-scores)]
        probabilities = _softmax(logits)
        label = int(probabilities.argmax())
        return {"label": self.labels[label], "score": float(probabilities[label])}


class TokenClassifier(_Exported):
    """Label the words of texts (NER, POS) with an exported token classifier.

    Gives what `pipeline("token-classification", aggregation_strategy="simple")` gives: per text, the
    groups of adjacent tokens with one entity (B-/I- tags joined), as `entity_group`, mean `score`,
    `word`, and the `start`/`end` character offsets in the text; "O" is left out.

    Args:
        folder (`str`): An `export_int8` output folder of a `...ForTokenClassification` model.
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Truncation length.
    """

    def __call__(self, texts, batch_size: int = 32) -> list[list[dict]]:
        texts = _texts("TokenClassifier", texts)
        results = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            encoded = self.tokenizer(
                chunk,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="np",
                return_offsets_mapping=True,
                return_special_tokens_mask=True,
            )
            scores = _softmax(self.run(encoded)["logits"])
            for i, text in enumerate(chunk):
                results.append(self._groups(text, encoded, i, scores[i]))
        return results

    def _groups(self, text: str, encoded, row: int, scores: np.ndarray) -> list[dict]:
        tokens = []
        for index, token_id in enumerate(encoded["input_ids"][row]):
            if encoded["special_tokens_mask"][row][index] or not encoded["attention_mask"][row][index]:
                continue
            begin, end = (int(x) for x in encoded["offset_mapping"][row][index])
            label = int(scores[index].argmax())
            word = self.tokenizer.convert_ids_to_tokens(int(token_id))
            if int(token_id) == self.tokenizer.unk_token_id:
                word = text[begin:end]
            tokens.append(
                {"entity": self.labels[label], "score": scores[index][label], "word": word, "start": begin, "end": end}
            )
        groups, group = [], []
        for token in tokens:
            bi, tag = _tag(token["entity"])
            if group and not (tag == _tag(group[-1]["entity"])[1] and bi != "B"):
                groups.append(self._group(group))
                group = []
            group.append(token)
        if group:
            groups.append(self._group(group))
        return [g for g in groups if g["entity_group"] != "O"]

    def _group(self, tokens: list[dict]) -> dict:
        return {
            "entity_group": tokens[0]["entity"].split("-", 1)[-1],
            "score": float(np.mean([t["score"] for t in tokens])),
            "word": self.tokenizer.convert_tokens_to_string([t["word"] for t in tokens]),
            "start": tokens[0]["start"],
            "end": tokens[-1]["end"],
        }


def _tag(entity: str) -> tuple[str, str]:
    """("B" or "I", the entity type) of a label; labels without a B-/I- prefix continue ("I")."""
    if entity.startswith(("B-", "I-")):
        return entity[0], entity[2:]
    return "I", entity


class QuestionAnswerer(_Exported):
    """Find the answer to questions in their contexts with an exported extractive QA model.

    As `pipeline("question-answering")` does (transformers 4): long contexts in windows of
    `max_length` tokens overlapping by `doc_stride`, the best span of at most `max_answer_length`
    tokens inside the context, widened to whole words; its `answer` text, `start`/`end` character
    offsets in the context and `score` (start probability times end probability).

    Args:
        folder (`str`): An `export_int8` output folder of a `...ForQuestionAnswering` model.
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Tokens per window (question and context).
        doc_stride (`int`): Tokens two windows of one context share.
        max_answer_length (`int`): The longest answer, in tokens.
    """

    def __init__(
        self,
        folder: str,
        file_name: str = INT8_FILE,
        max_length: int = 384,
        doc_stride: int = 128,
        max_answer_length: int = 15,
    ):
        super().__init__(folder, file_name, max_length)
        self.doc_stride, self.max_answer_length = doc_stride, max_answer_length

    def __call__(self, questions, contexts) -> list[dict]:
        questions = _texts("QuestionAnswerer", questions, "questions")
        contexts = _texts("QuestionAnswerer", contexts, "contexts")
        if len(questions) != len(contexts):
            raise ValueError(
                f"QuestionAnswerer: {len(questions)} questions but {len(contexts)} contexts; "
                "give one context per question."
            )
        return [self._answer(question, context) for question, context in zip(questions, contexts, strict=True)]

    def _answer(self, question: str, context: str) -> dict:
        encoded = self.tokenizer(
            question,
            context,
            truncation="only_second",
            max_length=self.max_length,
            stride=self.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
            padding=True,
            return_tensors="np",
        )
        outputs = self.run(encoded)
        answers = {}  # by lower-cased text: as the pipeline, one answer found in several places adds up its scores
        for window in range(len(encoded["input_ids"])):
            # Only context tokens can start or end the answer; as the pipeline, [CLS] joins the softmax
            # (the "no answer" a SQuAD 2 model points at) and then gets probability 0.
            context_tokens = np.array([s == 1 for s in encoded.sequence_ids(window)]) & (
                encoded["attention_mask"][window] == 1
            )
            counted = context_tokens | (encoded["input_ids"][window] == self.tokenizer.cls_token_id)
            start = _softmax(np.where(counted, outputs["start_logits"][window], -10000.0))
            end = _softmax(np.where(counted, outputs["end_logits"][window], -10000.0))
            start[0] = end[0] = 0.0
            scores = np.tril(np.triu(start[:, None] * end[None, :]), self.max_answer_length - 1)
            # The pipeline's candidates: the best 12 spans of each window (some merge once widened to words).
            best = np.argsort(-scores, axis=None, kind="stable")[:12]
            for s, e in zip(*np.unravel_index(best, scores.shape), strict=True):
                if not (context_tokens[s] and context_tokens[e]):
                    continue
                begin, finish = self._characters(encoded, window, int(s), int(e))
                text = context[begin:finish]
                answer = answers.setdefault(text.lower(), {"score": 0.0, "start": begin, "end": finish, "answer": text})
                answer["score"] += float(scores[s, e])
        if not answers:
            return {"score": 0.0, "start": 0, "end": 0, "answer": ""}
        return max(answers.values(), key=lambda answer: answer["score"])

    @staticmethod
    def _characters(encoded, window: int, s: int, e: int) -> tuple[int, int]:
        """Character offsets of tokens s..e in the context, widened to whole words where the tokenizer knows words."""
        try:
            first, last = encoded.token_to_word(window, s), encoded.token_to_word(window, e)
            return (
                encoded.word_to_chars(window, first, sequence_index=1)[0],
                encoded.word_to_chars(window, last, sequence_index=1)[1],
            )
        except Exception:  # noqa: BLE001 (as the pipeline: tokenizers without words keep the token offsets)
            return int(encoded["offset_mapping"][window][s][0]), int(encoded["offset_mapping"][window][e][1])


class ChoiceScorer(_Exported):
    """Pick the best of several choices for each prompt with an exported multiple-choice model.

    Each (prompt, choice) pair is one input of the model, as transformers' multiple-choice examples
    build them (SWAG: the context and each ending).

    Args:
        folder (`str`): An `export_int8` output folder of a `...ForMultipleChoice` model.
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Truncation length of each pair.

    Returns (on call): per prompt, `{"choice": index of the best, "scores": softmax over the choices}`.
    """

    def __call__(self, prompts, choices) -> list[dict]:
        prompts = _texts("ChoiceScorer", prompts, "prompts")
        if len(choices) != len(prompts):
            raise ValueError(
                f"ChoiceScorer: {len(prompts)} prompts but {len(choices)} lists of choices; give one each."
            )
        results = []
        for i, (prompt, options) in enumerate(zip(prompts, choices, strict=True)):
            options = _texts("ChoiceScorer", options, f"choices[{i}]")
            encoded = self.tokenizer(
                [prompt] * len(options),
                options,
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="np",
            )
            logits = self.run({name: value[None] for name, value in encoded.items()})["logits"][0]
            scores = _softmax(logits)
            results.append({"choice": int(scores.argmax()), "scores": scores.tolist()})
        return results


class TextEmbedder(_Exported):
    """Embed texts with an exported bare encoder: `last_hidden_state` averaged over each text's tokens.

    Args:
        folder (`str`): An `export_int8` output folder of a bare encoder (`AutoModel`).
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Truncation length.
        normalize (`bool`): Scale each embedding to unit length (cosine similarity = dot product).
    """

    def __init__(self, folder: str, file_name: str = INT8_FILE, max_length: int = 512, normalize: bool = False):
        super().__init__(folder, file_name, max_length)
        self.normalize = normalize

    def __call__(self, texts, batch_size: int = 32) -> np.ndarray:
        texts = _texts("TextEmbedder", texts)
        embeddings = []
        for start in range(0, len(texts), batch_size):
            encoded = self.tokenizer(
                texts[start : start + batch_size],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="np",
            )
            hidden = self.run(encoded)["last_hidden_state"]
            mask = encoded["attention_mask"][..., None].astype(np.float32)
            embeddings.append((hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9))
        embeddings = np.concatenate(embeddings)
        if self.normalize:
            embeddings /= np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
        return embeddings
