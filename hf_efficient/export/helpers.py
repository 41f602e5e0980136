"""Run an `export_int8` folder on text with plain ONNX Runtime (or OpenVINO), one small helper per kind of head.

Each helper gives what the matching transformers pipeline gives on the same model (text
classification, token classification with `aggregation_strategy="simple"`, extractive question
answering, feature extraction mean-pooled), and needs neither PyTorch nor Optimum at run time. The
int8 file runs on the runtime `export_int8` chose for it (`export.runtime`), unless `runtime=` says.

Inputs run in batches of similar length (`_batches`). A dynamic int8 file (`mode="dynamic"`)
quantizes each batch's activations with that batch's own range, so an input's scores depend a little
on the inputs batched with it (benchmarks/batching.py counts the labels that change); a static file's
frozen ranges, or `batch_size=1`, make them independent of the batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..checks import check_max_length, check_qa_windows
from ..tasks import head_of
from .onnx import INPUT_NAMES
from .runtime import open_session

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


def _batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of texts of similar length, longest first.

    Each batch is padded to its longest text, so batching texts in the order given pads short texts
    to long ones. Sorted, the default task's test split (1,409 texts of 27 tokens on average, up to
    64) has half the padded tokens and classifies 1.9x faster at 1 and 2 threads, in batches of 32
    (benchmarks/batching.py). sentence-transformers' `encode` sorts the same way. Callers put the
    results back in the order given.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: give a whole number of texts per batch, 1 or more.")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


def _lengths(encoded) -> list[int]:
    """Each row's length in tokens, of an unpadded tokenizer output."""
    return [len(ids) for ids in encoded["input_ids"]]


def _pad(tokenizer, encoded, batch: list[int]) -> dict[str, np.ndarray]:
    """The model inputs of rows `batch` of an unpadded tokenizer output, padded as the tokenizer pads.

    Texts are tokenized once, unpadded (their lengths order the batches), and each batch is padded
    from that: the same arrays as tokenizing the batch again with `padding=True`.
    """
    width = max(len(encoded["input_ids"][i]) for i in batch)
    fill = {"input_ids": tokenizer.pad_token_id, "attention_mask": 0, "token_type_ids": tokenizer.pad_token_type_id}
    left, inputs = tokenizer.padding_side == "left", {}
    for name, value in fill.items():
        if name not in encoded:
            continue
        rows = [list(encoded[name][i]) for i in batch]
        padding = [[value] * (width - len(row)) for row in rows]
        inputs[name] = np.array([p + r if left else r + p for r, p in zip(rows, padding, strict=True)], np.int64)
    return inputs


class _Exported:
    """An export folder: its tokenizer, config and runtime session (`export.runtime.Session`).

    Each helper names the head it runs (`HEAD`, the tail of the class name in `config.architectures`:
    "ForSequenceClassification", "" for a bare encoder), so that a folder of another head is refused
    in one line naming the helper that runs it, not with an error from deep in its outputs.
    """

    HEAD = ""

    def __init__(
        self,
        folder: str,
        file_name: str = INT8_FILE,
        max_length: int = 512,
        threads: int | None = None,
        runtime: str | None = None,
    ):
        from transformers import AutoConfig, AutoTokenizer

        name = type(self).__name__
        if not isinstance(folder, (str, Path)) or not str(folder):
            raise ValueError(f"{name}(folder={folder!r}): give the folder export_int8 wrote.")
        folder = Path(folder)
        if folder.is_file():
            raise ValueError(
                f"{name}({str(folder)!r}): give the export folder, {str(folder.parent)!r}, and the file as "
                f"file_name={folder.name!r}."
            )
        if not folder.is_dir():
            raise ValueError(f"{name}({str(folder)!r}): no such folder; give an export_int8 output folder.")
        if (folder / "modules.json").is_file():
            raise ValueError(
                f"{name}({str(folder)!r}) is a sentence-transformers export: "
                f"embed with SentenceEmbedder({str(folder)!r})."
            )
        if not (folder / file_name).exists():
            raise ValueError(f"{name}: no {file_name} in {folder}; run export_int8 into it first.")
        self.config = AutoConfig.from_pretrained(folder)
        architecture = (getattr(self.config, "architectures", None) or [""])[0]
        head = head_of(architecture)
        if architecture and head != self.HEAD:
            runs = {helper.HEAD: helper.__name__ for helper in _Exported.__subclasses__()}.get(head)
            fix = f"use {runs}({str(folder)!r})" if runs else "no ONNX helper runs that head"
            raise ValueError(
                f"{name}({str(folder)!r}) holds a {architecture} export, not {self.HEAD or 'a bare encoder'}: {fix}."
            )
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        check_max_length(
            max_length, self.tokenizer, name, pairs=self.HEAD in ("ForQuestionAnswering", "ForMultipleChoice")
        )
        self.labels = self.config.id2label
        self.session = open_session(folder / file_name, runtime, threads, type(self).__name__)
        self.input_names, self.output_names = self.session.input_names, self.session.output_names
        self.max_length = max_length

    def run(self, encoded) -> dict[str, np.ndarray]:
        """The model's outputs by name, on tokenizer output (token types zero where the tokenizer gave none)."""
        feed = {
            name: np.asarray(encoded.get(name, np.zeros_like(encoded["input_ids"])), dtype=np.int64)
            for name in self.input_names
            if name in INPUT_NAMES
        }
        return dict(zip(self.output_names, self.session.run(self.output_names, feed), strict=True))

    def encode(self, texts: list[str], pairs: list[str] | None = None, **options):
        """Tokenizer output of `texts` (or pairs), truncated to `max_length`, unpadded (see `_pad`)."""
        if not texts:
            return {"input_ids": []}  # fast tokenizers fail on an empty list; no texts, no batches
        return self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length, **options)


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
        threads (`int`, *optional*): The runtime's intra-op threads; its default (every core) when omitted.
        runtime (`str`, *optional*): "onnxruntime", "openvino" or "openvino-bf16" (`export.runtime`); the one
            `export_int8` chose for the int8 file (its `export_report.json`) when omitted.

    Example:
        ```python
        >>> TextClassifier("runs/export")(["a delight", "a mess"])
        [{'label': 'fresh', 'score': 0.97}, {'label': 'rotten', 'score': 0.91}]
        ```
    """

    HEAD = "ForSequenceClassification"

    def __init__(
        self,
        folder: str,
        file_name: str = INT8_FILE,
        max_length: int = 64,
        threads: int | None = None,
        runtime: str | None = None,
    ):
        super().__init__(folder, file_name, max_length, threads, runtime)
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
        results = [None] * len(texts)
        encoded = self.encode(texts, text_pairs)
        for batch in _batches(_lengths(encoded), batch_size):
            for i, row in zip(batch, self.run(_pad(self.tokenizer, encoded, batch))["logits"], strict=True):
                results[i] = self._result(row)
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
        threads (`int`, *optional*): The runtime's intra-op threads; its default (every core) when omitted.
        runtime (`str`, *optional*): "onnxruntime", "openvino" or "openvino-bf16" (`export.runtime`); the one
            `export_int8` chose for the int8 file (its `export_report.json`) when omitted.
    """

    HEAD = "ForTokenClassification"

    def __call__(self, texts, batch_size: int = 32) -> list[list[dict]]:
        texts = _texts("TokenClassifier", texts)
        results = [None] * len(texts)
        encoded = self.encode(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
        for batch in _batches(_lengths(encoded), batch_size):
            inputs = _pad(self.tokenizer, encoded, batch)
            scores = _softmax(self.run(inputs)["logits"])
            for row, i in enumerate(batch):
                results[i] = self._groups(texts[i], encoded, i, scores[row][inputs["attention_mask"][row] == 1])
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
    The windows of all questions run in batches of `batch_size` windows of similar length.

    Args:
        folder (`str`): An `export_int8` output folder of a `...ForQuestionAnswering` model.
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Tokens per window (question and context).
        doc_stride (`int`, *optional*): Tokens two windows of one context share; as the pipeline, 128 or
            half of `max_length`, whichever is smaller.
        max_answer_length (`int`): The longest answer, in tokens.
        threads (`int`, *optional*): The runtime's intra-op threads; its default (every core) when omitted.
        runtime (`str`, *optional*): "onnxruntime", "openvino" or "openvino-bf16" (`export.runtime`); the one
            `export_int8` chose for the int8 file (its `export_report.json`) when omitted.
    """

    HEAD = "ForQuestionAnswering"

    def __init__(
        self,
        folder: str,
        file_name: str = INT8_FILE,
        max_length: int = 384,
        doc_stride: int | None = None,
        max_answer_length: int = 15,
        threads: int | None = None,
        runtime: str | None = None,
    ):
        super().__init__(folder, file_name, max_length, threads, runtime)
        doc_stride = min(max_length // 2, 128) if doc_stride is None else doc_stride  # the pipeline's default
        for name, value, high in (
            ("doc_stride", doc_stride, max_length),
            ("max_answer_length", max_answer_length, None),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (high and value >= high):
                below = f" below max_length={high}" if high else ""
                raise ValueError(f"QuestionAnswerer({name}={value!r}): give a positive int{below}.")
        self.doc_stride, self.max_answer_length = doc_stride, max_answer_length

    def __call__(self, questions, contexts, batch_size: int = 32) -> list[dict]:
        questions = _texts("QuestionAnswerer", questions, "questions")
        contexts = _texts("QuestionAnswerer", contexts, "contexts")
        if len(questions) != len(contexts):
            raise ValueError(
                f"QuestionAnswerer: {len(questions)} questions but {len(contexts)} contexts; "
                "give one context per question."
            )
        if not questions:
            return []
        check_qa_windows(
            questions, self.tokenizer, self.max_length, self.doc_stride, "QuestionAnswerer: questions[{row}]"
        )
        encoded = self.tokenizer(
            questions,
            contexts,
            truncation="only_second",
            max_length=self.max_length,
            stride=self.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        # The windows of all questions, in batches of similar length.
        logits = [None] * len(encoded["input_ids"])
        for batch in _batches(_lengths(encoded), batch_size):
            inputs = _pad(self.tokenizer, encoded, batch)
            outputs = self.run(inputs)
            for row, i in enumerate(batch):
                tokens = inputs["attention_mask"][row] == 1
                logits[i] = (outputs["start_logits"][row][tokens], outputs["end_logits"][row][tokens])
        windows = {}
        for window, sample in enumerate(encoded["overflow_to_sample_mapping"]):
            windows.setdefault(sample, []).append(window)
        return [self._answer(contexts[i], encoded, windows[i], logits) for i in range(len(questions))]

    def _answer(self, context: str, encoded, windows: list[int], logits: list) -> dict:
        answers = {}  # by lower-cased text: as the pipeline, one answer found in several places adds up its scores
        for window in windows:
            # Only context tokens can start or end the answer; as the pipeline, [CLS] joins the softmax
            # (the "no answer" a SQuAD 2 model points at) and then gets probability 0.
            context_tokens = np.array([s == 1 for s in encoded.sequence_ids(window)])
            counted = context_tokens | (np.array(encoded["input_ids"][window]) == self.tokenizer.cls_token_id)
            start = _softmax(np.where(counted, logits[window][0], -10000.0))
            end = _softmax(np.where(counted, logits[window][1], -10000.0))
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
        threads (`int`, *optional*): The runtime's intra-op threads; its default (every core) when omitted.
        runtime (`str`, *optional*): "onnxruntime", "openvino" or "openvino-bf16" (`export.runtime`); the one
            `export_int8` chose for the int8 file (its `export_report.json`) when omitted.

    Returns (on call): per prompt, `{"choice": index of the best, "scores": softmax over the choices}`.
    Prompts with as many choices run together, `batch_size` prompts of similar length at a time.
    """

    HEAD = "ForMultipleChoice"

    def __call__(self, prompts, choices, batch_size: int = 32) -> list[dict]:
        prompts = _texts("ChoiceScorer", prompts, "prompts")
        if not isinstance(choices, (list, tuple)):
            raise ValueError(f"ChoiceScorer(choices={choices!r:.60}): give a list of choices per prompt.")
        if len(choices) != len(prompts):
            raise ValueError(
                f"ChoiceScorer: {len(prompts)} prompts but {len(choices)} lists of choices; give one each."
            )
        # A flat list (one prompt's options) would read as one choice per prompt, each chosen with score 1.
        flat = next((i for i, each in enumerate(choices) if not isinstance(each, (list, tuple))), None)
        if flat is not None:
            raise ValueError(
                f"ChoiceScorer: choices[{flat}]={choices[flat]!r:.60} is not a list; give each prompt a list of its "
                "choices, e.g. choices=[['apple', 'red']] for one prompt."
            )
        options = [_texts("ChoiceScorer", each, f"choices[{i}]") for i, each in enumerate(choices)]
        few = next((i for i, each in enumerate(options) if len(each) < 2), None)
        if few is not None:
            raise ValueError(
                f"ChoiceScorer: choices[{few}] has {len(options[few])} choice(s); give each prompt two or more to "
                "choose between."
            )
        # Prompts with as many choices go into one (prompts, choices, tokens) input, those of similar
        # length together (each batch pads to its longest pair).
        results = [None] * len(prompts)
        by_count = {}
        for i, each in enumerate(options):
            by_count.setdefault(len(each), []).append(i)
        for count, members in by_count.items():
            # Pair k * count + j is member k's prompt with its choice j.
            encoded = self.encode(
                [prompts[i] for i in members for _ in range(count)], [c for i in members for c in options[i]]
            )
            pairs = _lengths(encoded)
            longest = [max(pairs[k * count : (k + 1) * count]) for k in range(len(members))]
            for batch in _batches(longest, batch_size):
                ids = [members[k] for k in batch]
                inputs = _pad(self.tokenizer, encoded, [k * count + j for k in batch for j in range(count)])
                logits = self.run({name: value.reshape(len(ids), count, -1) for name, value in inputs.items()})[
                    "logits"
                ]
                for row, i in enumerate(ids):
                    scores = _softmax(logits[row])
                    results[i] = {"choice": int(scores.argmax()), "scores": scores.tolist()}
        return results


class TextEmbedder(_Exported):
    """Embed texts with an exported bare encoder: `last_hidden_state` averaged over each text's tokens.

    Args:
        folder (`str`): An `export_int8` output folder of a bare encoder (`AutoModel`).
        file_name (`str`): `model_quantized.onnx` (int8) or `model.onnx` (fp32).
        max_length (`int`): Truncation length.
        normalize (`bool`): Scale each embedding to unit length (cosine similarity = dot product).
        threads (`int`, *optional*): The runtime's intra-op threads; its default (every core) when omitted.
        runtime (`str`, *optional*): "onnxruntime", "openvino" or "openvino-bf16" (`export.runtime`); the one
            `export_int8` chose for the int8 file (its `export_report.json`) when omitted.
    """

    def __init__(
        self,
        folder: str,
        file_name: str = INT8_FILE,
        max_length: int = 512,
        normalize: bool = False,
        threads: int | None = None,
        runtime: str | None = None,
    ):
        if not isinstance(normalize, bool):
            raise ValueError(f"TextEmbedder(normalize={normalize!r}): use True or False.")
        super().__init__(folder, file_name, max_length, threads, runtime)
        self.normalize = normalize

    def __call__(self, texts, batch_size: int = 32) -> np.ndarray:
        texts = _texts("TextEmbedder", texts)
        if not texts:
            return np.zeros((0, self.config.hidden_size), np.float32)
        embeddings = [None] * len(texts)
        encoded = self.encode(texts)
        for batch in _batches(_lengths(encoded), batch_size):
            inputs = _pad(self.tokenizer, encoded, batch)
            hidden = self.run(inputs)["last_hidden_state"]
            mask = inputs["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            for row, i in enumerate(batch):
                embeddings[i] = pooled[row]
        embeddings = np.stack(embeddings)
        if self.normalize:
            embeddings /= np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
        return embeddings
