"""A recipe of every task, end to end on a tiny BERT: teacher, distilled student, int8 export, report and card."""

import json
import math

import pandas as pd
import pytest
from conftest import tiny_recipe
from huggingface_hub import ModelCard

from hf_efficient import RecipeError, load_recipe, run_recipe
from hf_efficient.cli import main
from hf_efficient.data import DATA_TASKS, DataConfig
from hf_efficient.data.load import TEXT_TASKS
from hf_efficient.tasks import TASKS

WORDS = ["great", "awful", "film", "plot", "actor", "music", "long", "short"]
NAMES = ["ann", "bob", "cy"]


def rows(task: str, count: int) -> list[dict]:
    """`count` rows of `task`'s data, in the columns the recipes below name."""
    made = []
    for i in range(count):
        good = i % 2 == 0
        text = f"a {WORDS[i % 2]} {WORDS[2 + i % 6]} number {i}"
        if task == "text-classification":  # a pair: do both texts say the same?
            made.append({"first": text, "second": f"the {WORDS[(i // 2) % 2]} one", "same": int(i % 4 in (0, 3))})
        elif task == "multi-label-classification":
            made.append({"text": text, "label": ["positive"] * good + ["about_music"] * (i % 6 == 3)})
        elif task == "text-regression":
            made.append({"text": text, "label": float(good) + i / 100})
        elif task == "token-classification":
            name = NAMES[i % 3]
            made.append(
                {"tokens": [name, "liked", "the", WORDS[i % 2], "film"], "ner_tags": ["B-PER", "O", "O", "O", "O"]}
            )
        elif task == "question-answering":
            context = f"{NAMES[i % 3]} saw the {WORDS[2 + i % 6]} on day {i}."
            answer = WORDS[2 + i % 6]
            made.append(
                {
                    "id": f"q{i}",
                    "question": "what was seen?",
                    "context": context,
                    "answers": {"text": [answer], "answer_start": [context.index(answer)]},
                }
            )
        elif task == "multiple-choice":
            choices = ["it was great", "it was awful", "no idea"]
            made.append({"question": text, "choices": choices, "label": 0 if good else 1})
    return made


# The data section of each task's recipe: a single CSV for text pairs, split files for the others.
COLUMNS = {
    "text-classification": {"text_column": "first", "text_pair_column": "second", "label_column": "same"},
    "question-answering": {"max_length": 32, "doc_stride": 8},
}
# The range of each metric: correlations may be negative.
RANGES = {"pearson": (-1, 1), "spearman": (-1, 1)}


def task_data(folder, task: str) -> dict:
    """Write `task`'s data into `folder`; the recipe's data section that reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    data = {"max_length": 16, **COLUMNS.get(task, {})}
    if task == "text-classification":
        path = folder / "pairs.csv"
        pd.DataFrame(rows(task, 40)).to_csv(path, index=False)
        return {"source": str(path), "validation_split": 0.2, "test_split": 0.2, **data}
    made = rows(task, 24)
    for split, part in (("train", made[:16]), ("validation", made[16:20]), ("test", made[20:])):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in part))
        data[f"{split}_file"] = str(folder / f"{split}.jsonl")
    return data


def task_recipe(model, folder, task: str, **changes) -> dict:
    """The tiny recipe of `conftest` for `task`: a 1-epoch teacher, a 2-layer PKD student, int8, report, card."""
    training = {"epochs": 1, "batch_size": 8, "learning_rate": 1e-3}
    recipe = tiny_recipe(
        model,
        "unused",
        folder / "run",
        task=task,
        teacher=training,
        student={**training, "num_layers": 2, "distillation": {}},
        prune=None,
        report={
            "batch_sizes": [2],
            "sequence_length": 16,
            "seconds_per_measurement": 0.05,
            "bf16_baseline": False,
            "threads": 1,
        },
    )
    recipe["data"] = task_data(folder / "data", task)
    recipe.update(changes)
    return recipe


def changed(data: dict) -> list[tuple[str, object]]:
    """The fields of a recipe's data section that differ from the defaults."""
    return [(key, value) for key, value in data.items() if value != DataConfig.__dataclass_fields__[key].default]


@pytest.mark.parametrize("task", DATA_TASKS)
def test_a_recipe_of_every_task_runs_end_to_end(tmp_path, tiny_bert_folder, task, capsys):
    row = TASKS[task]
    recipe = task_recipe(tiny_bert_folder, tmp_path, task)
    report = run_recipe(recipe)
    output = tmp_path / "run"

    # The report scores every model with the task's metrics, named as the task names them.
    assert report["task"]["name"] == task and report["task"]["metric"] == row.metric
    # The test split as given: its file and its examples (not the tokenized rows: question answering's windows).
    tested = ("pairs.csv", 8) if task == "text-classification" else ("test.jsonl", 4)
    assert (report["task"]["dataset"], report["task"]["rows"]) == tested
    assert [m["name"] for m in report["models"]] == ["teacher", "student", "student-int8"]
    low, high = RANGES.get(row.metric, (0, 1))
    for model in report["models"]:
        for name in row.card_metrics:
            value = model["metrics"][name]
            assert isinstance(value, float) and not math.isnan(value) and low <= value <= high, (model["name"], name)
    student = json.loads((output / "student" / "config.json").read_text())
    assert student["hf_efficient"]["distillation"]["method"] == "pkd" and student["num_hidden_layers"] == 2
    assert student["architectures"][0].endswith(row.auto_class.removeprefix("AutoModel"))
    assert (output / f"{row.metric}_vs_latency.png").read_bytes()[:4] == b"\x89PNG"
    assert row.metric in (output / "report.md").read_text()

    # The int8 export and the accuracy gate it passed.
    export = json.loads((output / "onnx" / "export_report.json").read_text())
    assert (output / "onnx" / "model_quantized.onnx").is_file() and export["gate"]
    assert export["metrics"]["onnx_int8"]

    # The card: the task's Hub pipeline tag, its model-index metrics and its classes in the snippets.
    card = ModelCard.load(output / "hub" / "README.md")
    assert card.data.pipeline_tag == row.pipeline_tag
    assert {r.metric_type for r in card.data.eval_results} == set(row.card_metrics)
    assert f"{row.auto_class}.from_pretrained(" in card.text and f"{row.ort_class}.from_pretrained(" in card.text

    # `hf-efficient evaluate` reads the task from the model and scores the test split as the report did.
    flags = [
        f"--{'data' if key == 'source' else key.replace('_', '-')}={value}" for key, value in changed(recipe["data"])
    ]
    by_name = {model["name"]: model["metrics"] for model in report["models"]}
    for name, path in (("student", output / "student"), ("student-int8", output / "onnx" / "model_quantized.onnx")):
        main(["evaluate", "--model", str(path), *flags])
        printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert printed[row.metric] == pytest.approx(by_name[name][row.metric], abs=1e-6), name


def test_bad_task_inputs_fail_in_one_line(tmp_path, tiny_bert_folder):
    recipe = task_recipe(tiny_bert_folder, tmp_path, "token-classification")
    with pytest.raises(
        RecipeError, match=r"recipe.task='token-clasification': use one of .* Did you mean 'token-classification'\?"
    ):
        load_recipe({**recipe, "task": "token-clasification"})
    # A fine-tuned teacher of another head: both named, and the fix.
    teacher = tiny_bert_folder  # a sequence classifier
    with pytest.raises(
        RecipeError,
        match=r"task='token-classification' does not match teacher.path='.*', a text-classification model; "
        r"set `task: text-classification`",
    ):
        run_recipe({**recipe, "teacher": {"path": str(teacher)}, "student": None, "card": None})
    # A column the task needs is missing: named with the fix, before any training.
    data = {**recipe["data"], "tags_column": "labels"}
    with pytest.raises(ValueError, match="tags_column='labels'") as error:
        run_recipe({**recipe, "data": data})
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "teacher").exists()


@pytest.mark.parametrize("task", DATA_TASKS)
def test_a_fine_tuned_folder_names_its_task_for_the_cli(tmp_path, task, monkeypatch):
    """`hf-efficient distill/prune/export` take the task of the model they are given, unless --task says one."""
    from conftest import tiny_model

    import hf_efficient.cli as cli
    from hf_efficient.recipe.run import folder_task

    model = tiny_model("bert", num_layers=1, task=task)
    model.config.architectures = [type(model).__name__]  # as save_pretrained writes it
    model.config.save_pretrained(tmp_path)
    assert folder_task(str(tmp_path)) == task
    made = {}
    monkeypatch.setattr(cli, "model_source", lambda *args, **kwargs: None)  # a config, no weights: not run
    monkeypatch.setattr(cli, "_run", lambda recipe, args: made.update(recipe=dict(recipe)))
    other = next(name for name in DATA_TASKS if name != task)
    for command in (["distill", "--teacher"], ["prune", "--model"], ["export", "--model"]):
        main([*command, str(tmp_path)])
        assert made.pop("recipe")["task"] == task, command
        main([*command, str(tmp_path), "--task", other])
        assert made.pop("recipe")["task"] == other, command


@pytest.mark.parametrize("task", sorted(set(TASKS) - set(DATA_TASKS) - set(TEXT_TASKS)))
def test_a_task_without_a_data_loader_is_refused_by_recipes(task):
    with pytest.raises(RecipeError, match=f"task='{task}': recipes run the tasks with a data loader") as caught:
        load_recipe({"name": "x", "task": task})
    assert "\n" not in str(caught.value) and "from Python" in str(caught.value)
