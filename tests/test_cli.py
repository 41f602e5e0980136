"""The `hf-efficient` command: each subcommand builds a recipe and writes the same kind of run folder."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification

from hf_efficient import load_recipe
from hf_efficient.cli import EXAMPLES, _row_names, build_parser, main

TINY_DATA = ["--text-column", "review", "--label-column", "stars", "--max-length", "16"]


def test_layerdrop_command_on_a_user_csv(tmp_path, tiny_bert_folder, reviews_csv):
    output = tmp_path / "run"
    main(
        ["layerdrop", "--model", str(tiny_bert_folder), "--data", str(reviews_csv), *TINY_DATA]
        + ["--epochs", "1", "--batch-size", "8", "--output-dir", str(output), "--depths", "4", "2"]
    )
    report = json.loads((output / "report.json").read_text())
    assert report["task"]["rows"] == 12 and list(report["depths"]["teacher"]) == ["4", "2"]
    assert report["depths"]["teacher"]["4"] == pytest.approx(report["models"][0]["metrics"]["accuracy"])
    assert (output / "accuracy_by_depth.png").stat().st_size > 1000
    saved = json.loads((output / "teacher" / "config.json").read_text())
    assert saved["hf_efficient"]["layerdrop"]["rate"] == 0.2
    assert saved["id2label"] == {"0": "bad", "1": "good"}


def test_every_command_has_help_with_examples():
    choices = build_parser()._subparsers._group_actions[0].choices
    assert (
        set(choices)
        == set(EXAMPLES)
        == {
            "run",
            "layerdrop",
            "distill",
            "share",
            "prune",
            "export",
            "evaluate",
            "benchmark",
            "card",
            "push",
        }
    )
    for name, parser in choices.items():
        assert "examples:" in parser.format_help() and f"hf-efficient {name}" in parser.format_help(), name
    # Every example is one the parser takes: flags are generated from the configs, so a renamed field shows here.
    examples = [line.split("#")[0].split() for text in EXAMPLES.values() for line in text.splitlines()]
    for words in [words for words in examples if words[:1] == ["hf-efficient"]]:
        _, unknown = build_parser().parse_known_args(words[1:])
        assert unknown == [], words


def test_every_config_flag_has_help_and_only_recipe_tasks_are_offered():
    # Flags come from the config dataclasses; a field without metadata help takes its docstring's.
    for name, parser in build_parser()._subparsers._group_actions[0].choices.items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                text = (action.help or "").replace("do not:", "").split("(default")[0].strip()
                assert text, f"{name} {action.option_strings[0]} has no help"
            if "--task" in action.option_strings:
                assert "feature-extraction" not in action.choices and "sentence-embedding" in action.choices
    distill = build_parser()._subparsers._group_actions[0].choices["distill"].format_help()
    assert "weight of the patient loss (default: 500.0)" in " ".join(distill.split())


def test_distill_training_flags_reach_the_student(monkeypatch):
    # `--epochs` & co. were once shadowed by duplicate `---epochs` flags that always gave the defaults.
    import hf_efficient.cli as cli

    made = {}
    monkeypatch.setattr(cli, "model_source", lambda *args, **kwargs: None)
    monkeypatch.setattr(cli, "folder_task", lambda path: None)
    monkeypatch.setattr(cli, "_run", lambda recipe, args: made.update(recipe=load_recipe(recipe)))
    flags = ["--epochs", "1", "--batch-size", "4", "--learning-rate", "1e-4", "--num-layers", "2", "--init", "first"]
    main(["distill", "--teacher", "teacher", *flags])
    student = made["recipe"].student
    assert (student.epochs, student.batch_size, student.learning_rate) == (1.0, 4, 1e-4)
    assert (student.num_layers, student.init) == (2, "first")
    # A list of one layer, as a 2-layer student's --strategy and a 1-layer student's --init take it.
    main(["distill", "--teacher", "teacher", "--num-layers", "2", "--strategy", "1", "--init", "3"])
    assert made["recipe"].student.distillation.strategy == [1] and made["recipe"].student.init == [3]
    # share's student, as distill's, starts from the teacher's model unless --model names another.
    main(["share", "--teacher", "teacher", "--num-groups", "1"])
    assert made["recipe"].model == "teacher" and made["recipe"].teacher.path == "teacher"
    main(["share", "--teacher", "teacher", "--model", "minilm", "--num-groups", "1"])
    assert made["recipe"].model == "minilm"
    help_text = build_parser()._subparsers._group_actions[0].choices["distill"].format_help()
    assert "---" not in help_text


def test_run_with_overrides_a_later_card_and_a_bad_recipe(tmp_path, tiny_bert_folder, reviews_csv, capsys, monkeypatch):
    recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "ignored", student=None, prune=None, card=None)
    recipe["teacher"]["layerdrop"] = None
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    main(["run", str(path), "--set", "teacher.epochs=1", "--output-dir", str(tmp_path / "run")])
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["teacher", "teacher-int8"]
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["teacher"]["epochs"] == 1.0
    # A card for the run, written later from another folder: its license and language in the card and its recipe.
    monkeypatch.chdir(tmp_path)
    main(["card", "run", "--license", "mit", "--language", "de"])
    card = ModelCard.load(tmp_path / "run" / "hub" / "README.md")
    assert (card.data.license, card.data.language) == ("mit", "de")
    shown = yaml.safe_load((tmp_path / "run" / "hub" / "recipe.yaml").read_text())
    assert shown["card"] == {"license": "mit", "language": "de"} and shown["teacher"]["epochs"] == 1.0
    main(["card", "run", "--repo-id", "me/run"])  # without --license and --language: the run's, kept
    card = ModelCard.load(tmp_path / "run" / "hub" / "README.md")
    assert (card.data.license, card.data.language) == ("mit", "de") and "me/run" in card.text
    capsys.readouterr()
    with pytest.raises(SystemExit):  # not silently the run's license
        main(["card", "run", "--license", ""])
    assert "--license '': give the card's license, e.g. apache-2.0, or leave the flag out." in capsys.readouterr().err
    before = (tmp_path / "run" / "hub" / "README.md").read_text()
    for flag, value, message in (  # a license or language the Hub would not read as one
        ("--license", "Apache 2.0", "--license 'Apache 2.0' is not a Hub license id (did you mean apache-2.0?)"),
        ("--language", "English", "--language 'English' is not a Hub language id; give one as the Hub writes it"),
    ):
        with pytest.raises(SystemExit):
            main(["card", "run", flag, value])
        assert message in capsys.readouterr().err
    assert (tmp_path / "run" / "hub" / "README.md").read_text() == before
    with pytest.raises(SystemExit):
        main(["run", str(path), "--set", "card.license=MIT"])
    assert "recipe.card.license='MIT' is not a Hub license id (did you mean mit?)" in capsys.readouterr().err
    # hub/ deleted: push says how to make it again, and card does.
    shutil.rmtree(tmp_path / "run" / "hub")
    with pytest.raises(SystemExit):
        main(["push", "run", "--repo-id", "me/run"])
    assert "run is a run without hub/ (its recipe has no card step, or hub/ was deleted)" in capsys.readouterr().err
    main(["card", "run"])
    assert ModelCard.load(tmp_path / "run" / "hub" / "README.md").data.license == "mit"
    # A model a later step was made from, deleted: refused, not made again under the later steps.
    shutil.rmtree(tmp_path / "run" / "teacher")
    with pytest.raises(SystemExit):
        main(["run", str(path), "--set", "teacher.epochs=1", "--output-dir", "run"])
    assert "run/teacher, which the teacher step made, is missing: restore it, or start the run over" in (
        capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        main(["run", str(path), "--set", "teacher.epoch=1"])
    assert "unknown key 'epoch'. Did you mean 'epochs'" in capsys.readouterr().err


def test_prune_export_evaluate_and_benchmark_commands(tmp_path, tiny_bert_folder, reviews_csv, capsys, monkeypatch):
    data = ["--data", str(reviews_csv), *TINY_DATA]
    main(["prune", "--model", str(tiny_bert_folder), "--num-layers", "2", *data, "--output-dir", str(tmp_path / "p")])
    pruned = AutoModelForSequenceClassification.from_pretrained(tmp_path / "p" / "pruned")
    assert pruned.config.num_hidden_layers == 2 and pruned.config.hf_efficient["pruning"]["kept_layers"] == [0, 2]

    main(
        ["export", "--model", str(tmp_path / "p" / "pruned"), *data, "--max-accuracy-drop", "1"]
        + [
            "--output-dir",
            str(tmp_path / "e"),
        ]
    )
    assert (tmp_path / "e" / "onnx" / "model_quantized.onnx").is_file()
    capsys.readouterr()

    onnx = str(tmp_path / "e" / "onnx" / "model_quantized.onnx")
    main(["evaluate", "--model", onnx, *data])
    out = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads(out[-1])
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    said = "scored the test split: 12 of 120 rows of reviews.csv (a 10% split drawn with seed 0; --split all scores"
    assert out[0].startswith(said)
    assert (metrics["split"], metrics["rows"], metrics["data_rows"]) == ("test", 12, 120)
    assert metrics["accuracy"] == pytest.approx(report["models"][-1]["metrics"]["accuracy"])

    # A PyTorch folder is scored the same way, on a CPU with bf16 too (no bf16 copy), and nothing is timed.
    monkeypatch.setattr("hf_efficient.report.measure.has_fast_bf16", lambda: True)
    main(["evaluate", "--model", str(tmp_path / "p" / "pruned"), *data])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and "CPU latency" not in out[0]
    assert json.loads(out[-1])["accuracy"] == pytest.approx(report["models"][0]["metrics"]["accuracy"])

    main(["evaluate", "--model", onnx, *data, "--split", "all"])
    captured = capsys.readouterr()
    out = captured.out.strip().splitlines()
    assert out[0].startswith("scored all 120 rows of reviews.csv (")
    scored = json.loads(out[-1])
    assert (scored["split"], scored["rows"], scored["data_rows"]) == ("all", 120, 120)
    assert "warning" not in captured.err

    # A 5-row file leaves a 1-row test split: scored, with a warning.
    small = tmp_path / "small.csv"
    small.write_text(
        "review,stars\n"
        + "".join(f"a {w} film,{s}\n" for w, s in [("great", "good"), ("dull", "bad")] * 2 + [("superb", "good")])
    )
    main(["evaluate", "--model", onnx, "--data", str(small), *TINY_DATA])
    captured = capsys.readouterr()
    assert "scored the test split: 1 of 5 rows of small.csv (a 20% split" in captured.out
    assert json.loads(captured.out.strip().splitlines()[-1])["rows"] == 1
    assert "warning: 1 row scored: a metric on fewer than 30 rows is not reliable" in captured.err
    assert "--split all scores all 5 rows" in captured.err

    output = tmp_path / "bench.json"
    main(
        ["benchmark", str(tmp_path / "p" / "pruned"), str(tmp_path / "e" / "onnx" / "model_quantized.onnx")]
        + [
            *data,
            "--batch-sizes",
            "1",
            "--no-bf16-baseline",
            "--output",
            str(output),
        ]
    )
    benchmark = json.loads(output.read_text())
    entries = benchmark["models"]
    assert [e["format"] for e in entries] == ["pytorch", "onnx"] and entries[0]["speedup"] == {"1": 1.0}
    assert [e["precision"] for e in entries] == ["fp32", "int8"]
    # The int8 file's layers and parameters: those of the model it was exported from, which the config.json and
    # export_report.json beside it record (the file sits in it: the report names no folder).
    assert "output_dir" not in json.loads((tmp_path / "e" / "onnx" / "export_report.json").read_text())
    assert (
        (entries[1]["layers"], entries[1]["parameters"])
        == (entries[0]["layers"], entries[0]["parameters"])
        == (
            2,
            pruned.num_parameters(),
        )
    )
    # How far the absolute times can be trusted: the spread of each model, the machine's load.
    assert all(set(e["latency_spread"]) == {"1"} for e in entries)
    assert benchmark["timing"]["cores"] >= 1 and isinstance(benchmark["timing"]["reliable"], bool)
    assert "| `pruned` |" in capsys.readouterr().out


def test_a_warning_of_the_package_is_one_line_naming_the_flags(monkeypatch, capsys):
    import warnings

    import hf_efficient.cli as cli
    import hf_efficient.data.preprocess as preprocess

    def evaluate(args):  # what tokenize_dataset says of words cut off, from its own module
        message = "tokenize_dataset: words past max_length=8 tokens are neither trained on nor scored"
        warnings.warn_explicit(message, UserWarning, preprocess.__file__, 1)
        warnings.warn_explicit("another library's", UserWarning, "elsewhere.py", 1)

    monkeypatch.setattr(cli, "evaluate_command", evaluate)
    with pytest.warns(UserWarning, match="another library's"):  # shown as Python shows it (here: to pytest)
        main(["evaluate", "--model", "m"])
    ours = "words past --max-length 8 tokens are neither trained on nor scored"
    assert capsys.readouterr().err.splitlines() == [f"hf-efficient evaluate: warning: tokenize_dataset: {ours}"]


def test_benchmark_rows_are_named_by_folder_or_by_path_where_folder_names_clash():
    assert _row_names(["runs/a/pruned", "runs/a/onnx/model.onnx"]) == {
        "pruned": "runs/a/pruned",
        "runs/a/onnx/model.onnx": "runs/a/onnx/model.onnx",
    }
    assert list(_row_names(["runs/a/pruned", "runs/b/pruned"])) == ["runs/a/pruned", "runs/b/pruned"]
    # A folder named like the reference's bf16 copy, a row of its own, gets its path too.
    assert list(_row_names(["runs/a/teacher", "runs/z/teacher-bf16"])) == ["runs/a/teacher", "runs/z/teacher-bf16"]
    with pytest.raises(ValueError, match=r"^runs/a/teacher is given twice; give each model once"):
        _row_names(["runs/a/teacher", "runs/a/teacher/"])


def test_push_command_pushes_the_hub_folder_of_a_run(tmp_path, monkeypatch):
    (tmp_path / "run" / "hub").mkdir(parents=True)
    sent = {}
    monkeypatch.setattr(
        "hf_efficient.hub.push_to_hub", lambda folder, repo_id, private: sent.update(folder=folder, private=private)
    )
    main(["push", str(tmp_path / "run"), "--repo-id", "me/tiny"])
    assert sent == {"folder": tmp_path / "run" / "hub", "private": True}


def test_evaluate_scores_named_labels_by_the_model_s_own_names(tmp_path, tiny_bert_folder, capsys):
    """The data's names read in sorted order (bad 0, good 1); a model that numbers them the other way round is
    scored against its own names, not against the sorted ids."""
    import torch
    from transformers import AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_folder)
    model.config.id2label, model.config.label2id = {0: "good", 1: "bad"}, {"good": 0, "bad": 1}
    with torch.no_grad():  # it answers "good" (its id 0) whatever the text
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([10.0, -10.0]))
    model.save_pretrained(tmp_path / "m")
    AutoTokenizer.from_pretrained(tiny_bert_folder).save_pretrained(tmp_path / "m")
    data = tmp_path / "three_good_one_bad.csv"
    data.write_text("review,stars\n" + "".join(f"film {i},{'bad' if i % 4 == 0 else 'good'}\n" for i in range(40)))
    main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(data), *TINY_DATA, "--split", "all"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == 0.75  # not 0.25
    # The same with --label-names, which order the data's names but do not renumber the model's ids.
    main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(data), *TINY_DATA, "--split", "all"]
         + ["--label-names", "bad", "good"])  # fmt: skip
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracy"] == 0.75

    # Names the model does not know: one line naming both sides.
    data.write_text("review,stars\n" + "".join(f"film {i},{'neg' if i % 4 == 0 else 'pos'}\n" for i in range(40)))
    with pytest.raises(SystemExit):
        main(["evaluate", "--model", str(tmp_path / "m"), "--data", str(data), *TINY_DATA])
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "the data's labels ['neg', 'pos'] are not among the model's (good, bad); rename them in the data, or give "
            "--label-names [...]: the data's names in the order of the model's ids."
        )
    )
    # Names given by --label-names that the model does not know: the fix is the model's names there.
    with pytest.raises(SystemExit):
        main(
            ["evaluate", "--model", str(tmp_path / "m"), "--data", str(data), *TINY_DATA, "--label-names", "neg", "pos"]
        )
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith(
            "the data's labels ['neg', 'pos'] are not among the model's (good, bad); give --label-names [...] of the "
            "model's names instead."
        )
    )


def test_a_failed_push_leaves_the_card_as_it_was(tmp_path, monkeypatch, capsys):
    results = Path(__file__).parents[1] / "benchmarks" / "results" / "quickstart"  # a run's report and card
    folder = tmp_path / "hub"
    (folder / "onnx").mkdir(parents=True)  # the final model is int8
    shutil.copy(results / "report.json", folder / "report.json")
    shutil.copy(results / "model_card.md", folder / "README.md")
    for plot in results.glob("*.png"):
        shutil.copy(plot, folder)
    before = (folder / "README.md").read_text()

    def offline(folder, repo_id, private):
        assert repo_id in (folder / "README.md").read_text()  # the card names the repo it goes to
        raise ValueError("push_to_hub: the Hub cannot be reached")

    monkeypatch.setattr("hf_efficient.hub.push_to_hub", offline)
    with pytest.raises(SystemExit):
        main(["push", str(folder), "--repo-id", "me/somewhere-else"])
    assert (folder / "README.md").read_text() == before
    # A card written with another license and language keeps them when push rewrites it for the repo.
    card = before.replace("license: apache-2.0", "license: mit").replace("language: en", "language: de")
    assert card != before
    (folder / "README.md").write_text(card)
    monkeypatch.setattr("hf_efficient.hub.push_to_hub", lambda folder, repo_id, private: "https://hub/me/x")
    main(["push", str(folder), "--repo-id", "me/x"])
    pushed = ModelCard.load(folder / "README.md")
    assert (pushed.data.license, pushed.data.language) == ("mit", "de") and "me/x" in pushed.text
