"""Extractive question answering: windows over long contexts, and answers back from start/end logits.

As transformers' `run_qa.py` example does: a context longer than `max_length` is cut into windows
that overlap by `doc_stride` tokens; each window is one feature, which knows its example
(`example_id`) and, for its context tokens, their character span (`offset_mapping`; None for the
question and special tokens), so that `postprocess_qa_predictions` can map the best start and end
tokens back to text of the context.
"""

from __future__ import annotations

import collections

import numpy as np


def prepare_qa_features(batch: dict, tokenizer, max_length: int, doc_stride: int) -> dict:
    """Tokenize a batch of examples (`id`, `question`, `context`, `answers`) into features.

    Every feature has the tokenizer's columns, `start_positions`/`end_positions` (the token span of
    the first answer; the [CLS] index where the answer is not inside the window, or where there is
    no answer), `example_id` and `offset_mapping`. Use with `Dataset.map(batched=True)` and
    `remove_columns` (a batch of examples gives more features than rows).
    """
    pad_on_right = tokenizer.padding_side == "right"
    # Leading white space in questions only wastes room in the window (run_qa strips it too).
    questions = [question.lstrip() for question in batch["question"]]
    contexts = batch["context"]
    encoded = tokenizer(
        questions if pad_on_right else contexts,
        contexts if pad_on_right else questions,
        truncation="only_second" if pad_on_right else "only_first",
        max_length=max_length,
        stride=doc_stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    sample_map = encoded.pop("overflow_to_sample_mapping")
    offsets = encoded.pop("offset_mapping")
    context_index = 1 if pad_on_right else 0
    encoded["start_positions"], encoded["end_positions"] = [], []
    encoded["example_id"], encoded["offset_mapping"] = [], []
    for i, offset in enumerate(offsets):
        input_ids = encoded["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = encoded.sequence_ids(i)
        example = sample_map[i]
        answers = batch["answers"][example]
        start = end = cls_index
        if answers["answer_start"]:
            start_char = answers["answer_start"][0]
            end_char = start_char + len(answers["text"][0])
            first = sequence_ids.index(context_index)
            last = len(sequence_ids) - 1 - sequence_ids[::-1].index(context_index)
            if offset[first][0] <= start_char and offset[last][1] >= end_char:
                start, end = first, last
                while start <= last and offset[start][0] <= start_char:
                    start += 1
                start -= 1
                while end >= first and offset[end][1] >= end_char:
                    end -= 1
                end += 1
        encoded["start_positions"].append(start)
        encoded["end_positions"].append(end)
        encoded["example_id"].append(batch["id"][example])
        encoded["offset_mapping"].append(
            [list(span) if sequence_ids[k] == context_index else None for k, span in enumerate(offset)]
        )
    return encoded


def postprocess_qa_predictions(
    examples,
    features,
    predictions,
    *,
    n_best_size: int = 20,
    max_answer_length: int = 30,
) -> dict[str, str]:
    """The best answer text of every example, from the start and end logits of its features.

    As `run_qa.py`'s `postprocess_qa_predictions` (SQuAD v1: every question has an answer): over the
    `n_best_size` highest start and end logits of each window, the span with the highest
    start + end logit that lies inside the context, does not end before it starts and is at most
    `max_answer_length` tokens long; its text is the context's characters under it.

    Args:
        examples (`datasets.Dataset`): The examples, with `id` and `context` columns (from `load_data`).
        features (`datasets.Dataset`): Their features, with `example_id` and `offset_mapping` columns (from
            `tokenize_dataset(..., task="question-answering")`), in the order of `predictions`.
        predictions (`tuple[np.ndarray, np.ndarray]`): Start and end logits, each of shape (features, tokens).
        n_best_size (`int`, defaults to 20): Start and end candidates tried per window.
        max_answer_length (`int`, defaults to 30): Longest answer, in tokens.

    Returns:
        `dict[str, str]`: The answer of every example, by its id, in the examples' order ("" where no span fits).
    """
    if not isinstance(predictions, (tuple, list)) or len(predictions) < 2:
        raise ValueError("predictions must be (start_logits, end_logits); got one array. Pass both.")
    start_logits, end_logits = np.asarray(predictions[0]), np.asarray(predictions[1])
    if len(start_logits) != len(features) or len(end_logits) != len(features):
        raise ValueError(
            f"Got {len(start_logits)} start and {len(end_logits)} end logit rows for {len(features)} features; "
            "pass the logits of exactly these features, in their order."
        )
    for column, data in (
        ("example_id", features),
        ("offset_mapping", features),
        ("id", examples),
        ("context", examples),
    ):
        if column not in data.column_names:
            kind = "features" if data is features else "examples"
            raise ValueError(f"The {kind} have no {column!r} column (columns: {', '.join(data.column_names)}).")
    for name, value in (("n_best_size", n_best_size), ("max_answer_length", max_answer_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"postprocess_qa_predictions({name}={value!r}): give a positive int.")
    by_example = collections.defaultdict(list)
    for index, example_id in enumerate(features["example_id"]):
        by_example[example_id].append(index)
    ids = examples["id"]
    # An example without features would get the answer "" (F1 0), a feature of no example would be lost.
    strangers, missing = sorted(set(by_example) - set(ids)), len(set(ids) - set(by_example))
    if strangers or missing:
        what = f"{len(strangers)} example ids of the features (e.g. {strangers[0]!r}) are" if strangers else ""
        what = what or f"{missing} of the examples have no features, and are"
        raise ValueError(
            f"postprocess_qa_predictions: {what} not among both; pass the examples the features were tokenized "
            "from (the same split, in full)."
        )
    offsets = features["offset_mapping"]
    answers = {}
    for example_id, context in zip(ids, examples["context"], strict=True):
        best_score, best_text = None, ""
        for index in by_example.get(example_id, ()):
            offset = offsets[index]
            starts = np.argsort(start_logits[index])[-1 : -n_best_size - 1 : -1]
            ends = np.argsort(end_logits[index])[-1 : -n_best_size - 1 : -1]
            for start in starts:
                for end in ends:
                    if start >= len(offset) or end >= len(offset) or offset[start] is None or offset[end] is None:
                        continue
                    if end < start or end - start + 1 > max_answer_length:
                        continue
                    score = start_logits[index][start] + end_logits[index][end]
                    if best_score is None or score > best_score:
                        best_score, best_text = score, context[offset[start][0] : offset[end][1]]
        answers[example_id] = best_text
    return answers
