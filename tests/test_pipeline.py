"""Recipes: validation, a whole tiny run (teacher -> PKD student with LayerDrop -> prune -> int8 -> card), resume."""

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from conftest import tiny_batch, tiny_recipe
from huggingface_hub import ModelCard
from transformers import AutoModelForSequenceClassification, TrainerCallback

import hf_efficient.recipe.run as run_module
import hf_efficient.recipe.steps as steps
from hf_efficient.recipe import RecipeError, load_recipe, run_recipe

RECIPES = Path(__file__).parents[1] / "recipes"


def test_every_shipped_recipe_validates():
    names = {path.stem for path in RECIPES.glob("*.yaml")}
    assert {
        "quickstart",
        "pkd_skip_mpnet_12to6",
        "layerdrop_prune",
        "albert_shared_student",
        "int8_only",
        "sentence_minilm",
    } <= names
    for path in RECIPES.glob("*.yaml"):
        recipe = load_recipe(path)
        assert recipe.name == path.stem and recipe.output_dir == f"runs/{path.stem}"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "x", "teachr": {}}, "unknown key 'teachr'. Did you mean 'teacher'?"),
        ({"name": "x", "teacher": {"epoch": 1}}, r"recipe.teacher: unknown key 'epoch'. Did you mean 'epochs'\?"),
        ({"name": "x", "teacher": {"epochs": -1}}, r"recipe.teacher.epochs=-1.0: must be a positive number"),
        ({"name": "x", "teacher": {"layerdrop": 1.5}}, r"recipe.teacher.layerdrop: LayerDropConfig\(rate=1.5\)"),
        ({"name": "x", "teacher": {}, "student": {"num_layers": "three"}}, "num_layers='three': expected int"),
        ({"name": "x", "teacher": {}, "export": {"mode": "statc"}}, "Did you mean 'static'"),
        ({"name": "x", "teacher": {}, "student": {"distillation": {"alpha": 2}}}, r"alpha weighs soft"),
        ({"name": "x", "teacher": {}, "student": {"sharing": {"scope": "ffm"}}}, r"SharingConfig\(scope='ffm'\)"),
        ({"name": "x", "student": {"distillation": {}}}, "need a `teacher` section"),
        ({"name": "x", "prune": {"depths": [2]}}, "prune/export need a model"),
        ({"name": "x", "teacher": {}, "export": {"model": "pruned"}}, "needs prune.num_layers"),
        ({"name": "x", "push": {"repo_id": "no-namespace"}}, "write it as namespace/name"),
        ({"name": "x", "push": {}}, "recipe.push: missing repo_id"),
        ({"teacher": {}}, "missing name"),
        ({"name": "x"}, r"^the recipe makes no model: add a `teacher` section"),
        ({"name": "x", "teacher": {}, "prune": {"depths": []}}, r"^recipe.prune.depths is empty and recipe.prune.nu"),
        (
            {"name": "x", "teacher": {}, "report": {"sequence_length": 128}},
            r"^recipe.report.sequence_length=128: the run tokenizes rows to data.max_length=64 tokens; give at most 64",
        ),
        (
            {"name": "x", "teacher": {"path": "t", "layerdrop": 0.2}, "export": {}},
            r"^recipe.teacher.layerdrop trains the teacher, but recipe.teacher.path='t' is used as it is .*'teacher=",
        ),
        (["name: x"], "pass a YAML path or a dict"),
    ],
)
def test_bad_recipes_fail_with_a_clear_message(raw, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(raw)


def test_overrides_empty_sections_and_false(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\nteacher:\n  epochs: 1\nexport:\ncard:\n")
    recipe = load_recipe(path, ["teacher.layerdrop=0.3", "student.num_layers=2", "card=false"])
    assert recipe.teacher.layerdrop.rate == 0.3 and recipe.teacher.epochs == 1.0
    assert recipe.student.num_layers == 2 and recipe.student.distillation is None
    assert recipe.export.mode == "dynamic"  # an empty section runs with its defaults
    assert recipe.card is None
    with pytest.raises(RecipeError, match="key=value"):
        load_recipe(path, ["teacher.epochs"])
    # 1e-4 is a float, though YAML 1.1 reads it as text (it wants 1.0e-4).
    assert load_recipe(path, ["teacher.learning_rate=1e-4"]).teacher.learning_rate == 1e-4
    path.write_text("name: r\nteacher:\n  learning_rate: 2E-5\n")
    assert load_recipe(path).teacher.learning_rate == 2e-5
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(tmp_path / "bad.yaml")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert_folder, reviews_csv):
    output = tmp_path_factory.mktemp("run") / "tiny"
    report = run_recipe(tiny_recipe(tiny_bert_folder, reviews_csv, output))
    return output, report


def test_tiny_run_reports_every_model(tiny_run):
    output, report = tiny_run
    assert report == json.loads((output / "report.json").read_text())
    models = {m["name"]: m for m in report["models"]}
    assert list(models) == ["teacher", "student", "pruned", "pruned-int8"]
    assert [m["kind"] for m in models.values()] == ["layerdrop", "distillation", "pruning", "int8"]
    assert [m["layers"] for m in models.values()] == [4, 2, 1, 1]
    assert models["student"]["techniques"] == ["layerdrop", "distillation"]
    assert models["student"]["settings"]["distillation"]["method"] == "pkd"
    assert models["pruned-int8"]["techniques"] == ["layerdrop", "distillation", "pruning", "int8"]
    assert [m["precision"] for m in models.values()] == ["fp32", "fp32", "fp32", "int8"]
    assert report["final"] == "pruned-int8" and report["reference"] == "teacher"
    assert list(report["depths"]) == ["student"] and list(report["depths"]["student"]) == ["2", "1"]
    assert report["depths"]["student"]["2"] == pytest.approx(models["student"]["metrics"]["accuracy"])
    # int8 quantizes the embeddings too: about a quarter of the fp32 weights.
    assert models["pruned-int8"]["size_mb"] < 0.3 * models["pruned"]["size_mb"]
    export = json.loads((output / "onnx" / "export_report.json").read_text())
    assert models["pruned-int8"]["metrics"]["accuracy"] == pytest.approx(export["metrics"]["onnx_int8"]["accuracy"])
    assert models["teacher"]["speedup"] == {"1": 1.0, "8": 1.0}
    # Speed-ups are ratios to the reference timed in the same rounds (no timing threshold: the machine may be busy).
    for size in ("1", "8"):
        ratio = models["teacher"]["latency_ms"][size] / models["pruned"]["latency_ms"][size]
        assert models["pruned"]["speedup"][size] == pytest.approx(ratio, rel=1e-2)
    assert set(models["teacher"]["latency_spread"]) == {"1", "8"} and report["timing"]["rounds"] == 5
    assert report["timing"]["sequence_length"] == 16
    for m in models.values():
        assert m["accuracy_retained"] == pytest.approx(
            m["metrics"]["accuracy"] / models["teacher"]["metrics"]["accuracy"]
        )
        assert m["energy"]["per_1000_predictions_joules"] is None or m["energy"]["per_1000_predictions_joules"] > 0
    assert models["teacher"]["training_seconds"] > 0 and models["pruned"]["training_seconds"] is None
    table = (output / "report.md").read_text()
    assert all(f"| `{name}` |" in table for name in models) and "not measured" in table
    assert "after pruning to each depth" in table  # the sweep the plot shows
    for plot in ["accuracy_by_depth.png", "accuracy_vs_size.png", "accuracy_vs_latency.png"]:
        assert plot in report["plots"] and (output / plot).read_bytes()[:4] == b"\x89PNG"


def test_tiny_run_leaves_whole_steps_and_a_card(tiny_run):
    output, report = tiny_run
    state = json.loads((output / "run_state.json").read_text())
    assert list(state["steps"]) == ["teacher", "student", "prune", "export", "report", "card"]
    assert not list(output.glob("*.partial")) and not (output / "checkpoints").exists()
    hub = output / "hub"
    for name in ["config.json", "model.safetensors", "tokenizer.json", "onnx/model_quantized.onnx", "recipe.yaml"]:
        assert (hub / name).is_file(), name
    # No pickle in the trained folders nor on the Hub: the recipe records the training settings.
    assert not list(output.glob("*/training_args.bin")) and not (hub / "training_args.bin").exists()
    # Nothing published names where this machine keeps the run, the model or the data (all under one temp root).
    root = str(output.parents[1])
    texts = [p for p in hub.rglob("*") if p.suffix in (".json", ".yaml", ".md", ".txt")]
    assert {"config.json", "report.json", "recipe.yaml", "README.md"} <= {p.name for p in texts}
    assert [p.name for p in texts if root in p.read_text()] == []
    assert load_recipe(hub / "recipe.yaml").student.num_layers == 2  # still a recipe
    # The recipe.yaml a run writes reads back as the same recipe: a step that is off (push) stays off.
    written = load_recipe(output / "recipe.yaml")
    assert written.push is None and written.to_dict() == state["recipe"]
    card = ModelCard.load(hub / "README.md")
    final = report["models"][-1]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == pytest.approx(final["metrics"]["accuracy"])
    assert {"layerdrop", "pkd", "int8", "onnx"} <= set(card.data.tags)
    assert "student:" in card.text and "distillation:" in card.text  # the recipe itself
    # The pushed folder is the pruned model: plain transformers loads it with its one layer.
    pruned = AutoModelForSequenceClassification.from_pretrained(output / "pruned").eval()
    from_hub = AutoModelForSequenceClassification.from_pretrained(hub).eval()
    batch = {k: v for k, v in tiny_batch(length=16).items() if k != "labels"}
    assert torch.equal(pruned(**batch).logits, from_hub(**batch).logits)
    assert from_hub.config.hf_efficient["pruning"]["kept_layers"] == [0]


def test_the_base_model_is_that_of_the_model_the_final_one_came_from(tiny_run, tmp_path, tiny_bert_folder, reviews_csv):
    output, report = tiny_run
    assert report["base_model"] == str(tiny_bert_folder)  # `model`: a folder that names no Hub model
    # The export of a given teacher: the teacher's base model (its run's report names it), not `model` (MiniLM).
    given = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "given", student=None, prune=None, card=None)
    del given["model"]
    given["teacher"] = {"path": str(output / "teacher")}
    assert run_recipe(given)["base_model"] == str(tiny_bert_folder)


def test_changed_recipe_refuses_to_resume_but_a_changed_card_is_rewritten(tiny_run, tiny_bert_folder, reviews_csv):
    output, _ = tiny_run
    changed = tiny_recipe(tiny_bert_folder, reviews_csv, output)
    changed["teacher"]["epochs"] = 3
    with pytest.raises(RecipeError, match="different recipe \\(changed: teacher\\)"):
        run_recipe(changed)
    readme = output / "hub" / "README.md"
    assert ModelCard.load(readme).data.license == "apache-2.0"
    relicensed = tiny_recipe(tiny_bert_folder, reviews_csv, output, card={"license": "mit"})
    with pytest.MonkeyPatch.context() as patch:  # redoing the card reads no data
        patch.setattr(run_module, "load_data", lambda *a, **k: pytest.fail("the data was loaded"))
        assert run_recipe(relicensed)["final"] == "pruned-int8"  # only the card step runs again
    assert ModelCard.load(readme).data.license == "mit"
    # The card names the repository it is pushed to: a push added, or pushed elsewhere, redoes the card first.
    from hf_efficient.recipe.state import RunState

    order = [step.name for step in steps.STEPS]
    pushed = load_recipe({**relicensed, "push": {"repo_id": "me/tiny"}})
    assert list(RunState(output, pushed, order).load()) == ["teacher", "student", "prune", "export", "report"]


def test_resume_after_a_crash_between_steps(tmp_path, tiny_bert_folder, reviews_csv, monkeypatch):
    recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run")

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(steps, "export_int8", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_recipe(recipe)
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())
    assert list(state["steps"]) == ["teacher", "student", "prune"]
    assert not (tmp_path / "run" / "onnx").exists()  # only a .partial folder, never one that looks complete
    teacher_weights = (tmp_path / "run" / "teacher" / "model.safetensors").stat().st_mtime_ns

    monkeypatch.undo()
    monkeypatch.setattr(steps, "finetune", lambda *a, **k: pytest.fail("a completed training step ran again"))
    report = run_recipe(recipe)
    assert [m["name"] for m in report["models"]] == ["teacher", "student", "pruned", "pruned-int8"]
    assert (tmp_path / "run" / "teacher" / "model.safetensors").stat().st_mtime_ns == teacher_weights
    assert not (tmp_path / "run" / "onnx.partial").exists()


class CrashAtStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("simulated crash")


def test_resume_in_the_middle_of_training(tmp_path, tiny_bert_folder, reviews_csv):
    """Killed in epoch 3, the rerun goes on from the epoch-2 checkpoint and ends where an unbroken run does."""
    teacher_only = {"student": None, "prune": None, "export": None, "card": None}
    teacher_only["teacher"] = {"epochs": 3, "batch_size": 8, "learning_rate": 1e-3, "layerdrop": 0.2}
    broken = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "broken", **teacher_only)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(broken, callbacks=[CrashAtStep(26)])  # 12 steps per epoch
    assert not (tmp_path / "broken" / "teacher").exists()
    # Each checkpoint holds the training seconds up to it; a resumed step counts them as well as its own.
    clock = tmp_path / "broken" / "checkpoints" / "teacher" / "checkpoint-24" / steps.TrainingClock.FILE
    assert 0 < json.loads(clock.read_text())["seconds"] < 600
    clock.write_text(json.dumps({"seconds": 1000.0}))
    run_recipe(broken)
    state = json.loads((tmp_path / "broken" / "run_state.json").read_text())
    assert state["steps"]["teacher"]["resumed_from"].endswith("checkpoint-24")
    assert 1000 < state["steps"]["teacher"]["training_seconds"] < 1600
    assert state["steps"]["teacher"]["training_joules"] is None  # counted after the resume only: not reported

    whole = run_recipe(tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "whole", **teacher_only))
    resumed = AutoModelForSequenceClassification.from_pretrained(tmp_path / "broken" / "teacher").state_dict()
    unbroken = AutoModelForSequenceClassification.from_pretrained(tmp_path / "whole" / "teacher").state_dict()
    assert all(torch.allclose(resumed[k], unbroken[k], atol=1e-6) for k in unbroken)
    assert (
        whole["models"][0]["metrics"]
        == json.loads((tmp_path / "broken" / "report.json").read_text())["models"][0]["metrics"]
    )


def test_a_run_folder_is_only_resumed_as_it_began_and_other_folders_are_left_alone(
    tmp_path, tiny_bert_folder, reviews_csv, monkeypatch
):
    teacher_only = {"student": None, "prune": None, "export": None, "card": None, "report": None}
    # A folder of other files is neither written into nor, with --restart, deleted.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("years of work")
    for restart in (False, True):
        recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "mine", **teacher_only)
        with pytest.raises(RecipeError, match=r"holds files \(thesis.tex\) but no run \(run_state.json\)"):
            run_recipe(recipe, restart=restart)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "years of work"
    (tmp_path / "afile").write_text("")
    with pytest.raises(RecipeError, match="lies under .*afile', a file; give a folder path"):
        run_recipe(tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "afile" / "run", **teacher_only))

    # Killed in its first step, a run is resumed only with the recipe and the data it began with.
    data = tmp_path / "reviews.csv"
    data.write_bytes(reviews_csv.read_bytes())
    recipe = tiny_recipe(tiny_bert_folder, data, tmp_path / "run", **teacher_only)
    recipe["teacher"] = {"epochs": 2, "batch_size": 8, "learning_rate": 1e-3}
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, callbacks=[CrashAtStep(14)])  # 12 steps per epoch: one checkpoint
    changed = {**recipe, "teacher": {**recipe["teacher"], "learning_rate": 1e-4}}
    with pytest.raises(RecipeError, match=r"different recipe \(changed: teacher\)"):
        run_recipe(changed)
    data.write_text(data.read_text().replace("great", "grand"))
    with pytest.raises(RecipeError, match=r"^data.source changed since the run in .* began \(the contents differ\)"):
        run_recipe(recipe)
    data.write_bytes(reviews_csv.read_bytes())
    # The same folder and the same data file however they are written: resumed from its checkpoint.
    monkeypatch.chdir(tmp_path)
    run_recipe({**recipe, "output_dir": "./run/", "data": {**recipe["data"], "source": "./reviews.csv"}})
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())
    assert state["steps"]["teacher"]["resumed_from"].endswith("checkpoint-12")
    assert set(state["inputs"]) == {"model", "data.source"}
    # A finished run is not passed off as a run of changed data either.
    data.write_text(data.read_text().replace("great", "grand"))
    with pytest.raises(RecipeError, match=r"^data.source changed since the run in .* began"):
        run_recipe(recipe)
    with pytest.raises(ValueError, match=r"^data.source='.*gone.csv': no such file"):  # not "a different recipe"
        run_recipe({**recipe, "data": {**recipe["data"], "source": str(tmp_path / "gone.csv")}})
    data.write_bytes(reviews_csv.read_bytes())
    for bad in ("{bad", json.dumps({**state, "steps": {"teacher": "x"}}), json.dumps({**state, "steps": {"t": {}}})):
        (tmp_path / "run" / "run_state.json").write_text(bad)
        with pytest.raises(RecipeError, match=r"run_state.json is not the state of a run .*start over with --restart"):
            run_recipe(recipe)
    # --restart deletes what the run wrote, not the user's files beside it, nor an input the recipe reads from it.
    (tmp_path / "run" / "notes.txt").write_text("mine")
    shutil.copy(reviews_csv, tmp_path / "run" / "data.csv")
    run_recipe({**recipe, "data": {**recipe["data"], "source": str(tmp_path / "run" / "data.csv")}}, restart=True)
    assert json.loads((tmp_path / "run" / "run_state.json").read_text())["steps"]["teacher"]["resumed_from"] is None
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine" and (tmp_path / "run" / "data.csv").is_file()
    reader = {**recipe, "output_dir": str(tmp_path / "run"), "teacher": {"path": str(tmp_path / "run" / "teacher")}}
    with pytest.raises(RecipeError, match=r"^--restart would delete teacher.path='.*run/teacher': it lies in"):
        run_recipe({**reader, "export": {}}, restart=True)
    assert (tmp_path / "run" / "teacher" / "config.json").is_file()
    # A max_length the tokenizer cannot give is refused before the run folder is touched.
    with pytest.raises(ValueError, match=r"^data: max_length=1000 is out of range; give 3 to 512"):
        run_recipe({**recipe, "output_dir": str(tmp_path / "long"), "data": {**recipe["data"], "max_length": 1000}})
    assert not (tmp_path / "long").exists()
    # So is one the model has no positions for, where the tokenizer (512) does not know the model's (8): it
    # failed inside the model, in training.
    short = tmp_path / "short"
    config = AutoModelForSequenceClassification.from_pretrained(tiny_bert_folder).config
    config.max_position_embeddings = 8
    AutoModelForSequenceClassification.from_config(config).save_pretrained(short)
    shutil.copy(tiny_bert_folder / "tokenizer.json", short)
    shutil.copy(tiny_bert_folder / "tokenizer_config.json", short)
    with pytest.raises(
        ValueError, match=r"^data: max_length=16 is more than the 8 positions of the model in .*short; "
    ):
        run_recipe({**recipe, "model": str(short), "output_dir": str(tmp_path / "long")})
    assert not (tmp_path / "long").exists()
    fastest = {"variant": "fastest", "timing_threads": 999}  # more threads than cores, with the other inputs
    with pytest.raises(ValueError, match=r"^export.timing_threads=999: this process may use \d+ cores"):
        run_recipe({**recipe, "output_dir": str(tmp_path / "long"), "export": fastest})
    assert not (tmp_path / "long").exists()


def test_label_names_are_numbered_as_the_teacher_numbers_them(tmp_path, tiny_bert_folder, reviews_csv):
    """label_names order the data's labels; a fine-tuned teacher's ids still decide the numbers, or its logits
    would teach the student the labels swapped."""
    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_bert_folder, teacher)
    config = json.loads((teacher / "config.json").read_text())
    config.update(id2label={"0": "good", "1": "bad"}, label2id={"good": 0, "bad": 1})
    (teacher / "config.json").write_text(json.dumps(config))
    recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run", prune=None, export=None, card=None)
    recipe.update(teacher={"path": str(teacher)}, report=None)
    recipe["student"].update(num_layers=1, epochs=1)
    recipe["data"]["label_names"] = ["bad", "good"]
    run_recipe(recipe)
    student = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run" / "student")
    assert student.config.id2label == {0: "good", 1: "bad"}


def test_a_new_head_is_drawn_from_the_recipe_seed(tmp_path, tiny_bert_folder, reviews_csv):
    """A pretrained encoder without the task's head gets a new one before the Trainer seeds anything: it comes from
    the recipe's seed, so two runs of one recipe (and every process of one run) start from the same weights."""
    from transformers import AutoModel, AutoTokenizer

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(tiny_bert_folder).save_pretrained(bare)
    AutoTokenizer.from_pretrained(tiny_bert_folder).save_pretrained(bare)
    heads = []
    for seed, global_seed in ((0, 1), (0, 2), (1, 1)):
        recipe = load_recipe(tiny_recipe(bare, reviews_csv, tmp_path / f"run{seed}{global_seed}", seed=seed))
        torch.manual_seed(global_seed)  # whatever drew last in this process
        heads.append(run_module.Run(recipe).pretrained().classifier.weight)
    assert torch.equal(heads[0], heads[1])
    assert not torch.equal(heads[0], heads[2])


def test_an_override_below_a_bare_value_keeps_it_and_a_student_s_sharing_is_checked_before_training(
    tmp_path, tiny_bert_folder, reviews_csv
):
    from hf_efficient import LayerDropConfig

    recipe = load_recipe({"name": "x", "teacher": {"layerdrop": 0.5}}, ["teacher.layerdrop.seed=3"])
    assert recipe.teacher.techniques["layerdrop"] == LayerDropConfig(rate=0.5, seed=3)  # not the default rate
    student = {"num_layers": 3, "epochs": 1, "distillation": {}, "sharing": {"num_groups": 2}}
    with pytest.raises(RecipeError, match=r"^student.sharing.num_groups=2 does not divide the student's 3 layers"):
        run_recipe(tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run", student=student))
    assert not (tmp_path / "run").exists()  # before the teacher trains


def test_prune_depth_beyond_the_model_is_refused(tmp_path, tiny_bert_folder, reviews_csv):
    recipe = tiny_recipe(
        tiny_bert_folder, reviews_csv, tmp_path / "run", student=None, export=None, card=None, prune={"depths": [6]}
    )
    recipe["teacher"]["epochs"] = 1
    with pytest.raises(RecipeError, match="prune.depths=\\[6\\]: the teacher has only 4 layers"):
        run_recipe(recipe)
    assert not os.path.exists(tmp_path / "run")  # refused before training the teacher
    # The same for a report timed on more threads than this process has cores.
    recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run", report={"threads": 4096})
    with pytest.raises(ValueError, match=r"^report.threads=4096: this process may use \d+ cores; give at most"):
        run_recipe(recipe)
    assert not os.path.exists(tmp_path / "run")


def test_the_report_times_a_bf16_baseline_and_speed_ups_are_against_the_fastest_plain_run(
    tmp_path, tiny_bert_folder, reviews_csv
):
    changes = {"student": None, "prune": None, "card": None, "export": {"max_accuracy_drop": 1.0}}
    recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run", **changes)
    recipe["teacher"] = {"epochs": 1, "batch_size": 8}
    recipe["report"]["bf16_baseline"] = True  # forced: bf16 runs on any CPU, fast or not
    report = run_recipe(recipe)
    models = {m["name"]: m for m in report["models"]}
    assert list(models) == ["teacher", "teacher-bf16", "teacher-int8"]
    baseline = models["teacher-bf16"]
    assert (baseline["precision"], baseline["baseline_of"], baseline["kind"]) == ("bf16", "teacher", "finetuned")
    assert baseline["size_mb"] == pytest.approx(models["teacher"]["size_mb"] / 2, rel=0.02)
    assert abs(baseline["metrics"]["accuracy"] - models["teacher"]["metrics"]["accuracy"]) <= 1 / 12
    for size in ("1", "8"):  # the faster plain-PyTorch run is 1.00x, the other at most that
        plain = [models["teacher"]["speedup"][size], baseline["speedup"][size]]
        assert max(plain) == pytest.approx(1.0) and min(plain) <= 1.0
        fastest = min(models["teacher"]["latency_ms"][size], baseline["latency_ms"][size])
        int8 = models["teacher-int8"]
        # The report keeps milliseconds to 3 decimals and speed-ups unrounded: equal up to that rounding.
        assert abs(int8["speedup"][size] * int8["latency_ms"][size] - fastest) <= 5e-4 * (1 + int8["speedup"][size])
    table = (tmp_path / "run" / "report.md").read_text()
    assert "speed-up against the faster of `teacher` and `teacher-bf16` (plain PyTorch)" in table
    assert "| `teacher-bf16` | finetuned |" in table and table.count("| - | - |") == 2  # neither was trained
