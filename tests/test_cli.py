import json

import pandas as pd
import pytest
import torch
from conftest import minilm_path
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from hf_efficient.cli import build_parser, main


@pytest.fixture(scope="module")
def tiny_bert_folder(tmp_path_factory):
    """A 4-layer BERT of width 32 with the shipped MiniLM's tokenizer."""
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


def test_layerdrop_command_on_a_user_csv(tmp_path, tiny_bert_folder):
    words = ["great", "awful", "fine", "boring", "superb", "dull"]
    rows = [
        {"review": f"a {words[i % 6]} film number {i}", "stars": "good" if i % 2 == 0 else "bad"} for i in range(60)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "reviews.csv", index=False)
    output = tmp_path / "run"
    main(
        ["layerdrop", "--model", str(tiny_bert_folder), "--data", str(tmp_path / "reviews.csv")]
        + ["--text-column", "review", "--label-column", "stars", "--epochs", "1", "--batch-size", "8"]
        + ["--max-length", "16", "--output-dir", str(output), "--depths", "4", "2"]
    )
    result = json.loads((output / "results.json").read_text())
    assert result["layerdrop_rate"] == 0.2 and result["train_rows"] == 48
    assert set(result["test"]) == {"4", "2"}
    assert result["test"]["2"]["kept_layers"] == [0, 2]
    assert 0.0 <= result["test"]["4"]["accuracy"] <= 1.0
    assert (output / "accuracy_by_depth.png").stat().st_size > 1000
    saved = json.loads((output / "model" / "config.json").read_text())
    assert saved["hf_efficient"]["layerdrop"]["rate"] == 0.2
    assert saved["id2label"] == {"0": "bad", "1": "good"}


def test_bad_depths_exit_with_a_message(tmp_path, tiny_bert_folder):
    with pytest.raises(SystemExit, match="between 1 and 4"):
        main(["layerdrop", "--model", str(tiny_bert_folder), "--depths", "9", "--output-dir", str(tmp_path)])


def test_help_shows_examples():
    help_text = build_parser()._subparsers._group_actions[0].choices["layerdrop"].format_help()
    assert "examples:" in help_text and "--full" in help_text
