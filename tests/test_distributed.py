"""Real 2-process runs: `accelerate launch --multi_gpu --num_processes 2` on CPU (gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_recipe

SCRIPTS = Path(__file__).parent / "scripts"
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]
TWO_PROCESSES = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
TWO_PROCESSES += ["--dynamo_backend", "no", "--main_process_port", "0"]


def run(command, output_dir):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return [json.loads(path.read_text()) for path in sorted(output_dir.glob("rank*.json"))]


@pytest.mark.multiprocess
def test_layerdrop_two_processes_match_one(tmp_path):
    script = str(SCRIPTS / "train_tiny.py")
    (one,) = run([sys.executable, script, "--output", str(tmp_path / "one"), "--batch-size", "8"], tmp_path / "one")
    ranks = run(
        [*ACCELERATE, *TWO_PROCESSES, script, "--output", str(tmp_path / "two"), "--batch-size", "4"], tmp_path / "two"
    )
    assert [r["world_size"] for r in ranks] == [2, 2], "accelerate ran the processes alone, not as one group"
    # Same layers skipped on both ranks at every step, and the same as the single process.
    assert ranks[0]["masks"] == ranks[1]["masks"] == one["masks"]
    assert len({tuple(mask) for mask in one["masks"].values()}) > 1
    # DDP tolerates the unused parameters of skipped layers; the loss is not scaled by the process count.
    assert ranks[0]["find_unused_parameters"] is True
    for step, loss in one["losses"].items():
        assert ranks[0]["losses"][step] == pytest.approx(loss, rel=1e-4), step
    # end_process_group joined gloo's threads before the interpreter's teardown: one of them freeing the
    # last collective's tensors during that teardown aborted a rank ("terminate called without an active exception").
    for rank in (0, 1):
        threads = json.loads((tmp_path / "two" / f"exit{rank}.json").read_text())
        assert not [name for name in threads if "gloo" in name], threads


@pytest.mark.multiprocess
def test_distillation_two_processes_match_one(tmp_path):
    """Token classification, whose losses are means over labelled tokens: each process weighs its
    terms by its share of the step's labelled tokens (the one case where processes' means differ)."""
    script, options = str(SCRIPTS / "train_tiny.py"), ["--technique", "pkd", "--task", "token-classification"]
    (one,) = run(
        [sys.executable, script, *options, "--output", str(tmp_path / "one"), "--batch-size", "8"], tmp_path / "one"
    )
    ranks = run(
        [*ACCELERATE, *TWO_PROCESSES, script, *options, "--output", str(tmp_path / "two"), "--batch-size", "4"],
        tmp_path / "two",
    )
    assert [r["world_size"] for r in ranks] == [2, 2]
    # The teacher stays a plain model on each rank: DDP wraps only the student.
    assert ranks[0]["teacher_class"] == "BertForTokenClassification"
    assert all(term is not None and term > 0 for term in one["loss_terms"].values())
    # The rows carry different numbers of labelled tokens, so a plain mean per process would differ.
    assert len(set(ranks[0]["labelled_tokens"])) > 1
    for step, loss in one["losses"].items():  # unweighted, they differ by 2e-4 from the first step
        assert ranks[0]["losses"][step] == pytest.approx(loss, rel=1e-5), step


@pytest.mark.multiprocess
def test_recipe_runs_under_two_processes(tmp_path, tiny_bert_folder, reviews_csv):
    """`accelerate launch ... -m hf_efficient run RECIPE`: both processes train, the main one writes the rest."""
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run")))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    command = [*ACCELERATE, *TWO_PROCESSES, "-m", "hf_efficient", "run", str(recipe)]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())["steps"]
    assert state["teacher"]["processes"] == state["student"]["processes"] == 2
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert [m["name"] for m in report["models"]] == ["teacher", "student", "pruned", "pruned-int8"]
    assert (tmp_path / "run" / "hub" / "README.md").is_file()
    assert result.stdout.count("[1/6] teacher") == 1  # progress is printed once, by the main process
    assert result.stdout.count("report.json, report.md and the plots") == 1  # and so is the final table
