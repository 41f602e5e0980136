import copy
import json
import logging
import subprocess
import sys

import pytest
import torch
from conftest import FAMILY_NAMES, TRANSFORMERS_5, VOCAB, tiny_batch, tiny_model
from transformers import (
    AutoModelForSequenceClassification,
    GPT2Config,
    GPT2Model,
    PreTrainedModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from hf_efficient import (
    LayerDropCallback,
    LayerDropConfig,
    UnsupportedModelError,
    apply_layerdrop,
    layer_stack,
    prune_layers,
    remove_layerdrop,
)
from hf_efficient.encoders import replace_layer_stack
from hf_efficient.layerdrop.model import DropSchedule, layerdrop_schedule


def forced_mask(model, skipped: list[bool]) -> None:
    """Make the next training forward skip exactly `skipped`, bypassing the random draw."""
    schedule = layerdrop_schedule(model)
    schedule.draw = lambda: None
    schedule.skipped = skipped


def test_eval_mode_equals_unwrapped_model(family):
    model = tiny_model(family)
    batch = tiny_batch()
    reference = model(**batch, output_hidden_states=True)
    apply_layerdrop(model, LayerDropConfig(rate=0.5))
    for _ in range(3):  # eval never skips, whatever the draws
        output = model(**batch, output_hidden_states=True)
        assert torch.equal(output.logits, reference.logits)
        assert len(output.hidden_states) == len(reference.hidden_states)
        for ours, theirs in zip(output.hidden_states, reference.hidden_states, strict=True):
            assert torch.equal(ours, theirs)


def test_rate_zero_in_training_equals_unwrapped_model(family):
    model = tiny_model(family).train()
    batch = tiny_batch()
    reference = model(**batch).loss
    apply_layerdrop(model, LayerDropConfig(rate=0.0))
    assert torch.equal(model(**batch).loss, reference)


def test_skipped_layer_is_identity_and_not_computed(family):
    """Training with layers 1 and 2 skipped equals the model built from layers 0 and 3 alone."""
    model = tiny_model(family)
    truncated = copy.deepcopy(model)
    replace_layer_stack(truncated, [layer_stack(truncated)[i] for i in (0, 3)])
    apply_layerdrop(model, LayerDropConfig(rate=0.5)).train()
    forced_mask(model, [False, True, True, False])
    calls = []
    for index, layer in enumerate(layer_stack(model)):
        # The first submodule of a layer runs only if the layer itself is computed.
        next(layer.children()).register_forward_hook(lambda *_, i=index: calls.append(i))
    batch = tiny_batch()
    output = model(**batch, output_hidden_states=True)
    assert sorted(set(calls)) == [0, 3]
    assert torch.allclose(output.logits, truncated.train()(**batch).logits, atol=1e-6)
    # One hidden state per layer even when layers are skipped; a skipped layer repeats its input.
    hidden = output.hidden_states
    assert len(hidden) == 5
    assert torch.equal(hidden[2], hidden[1]) and torch.equal(hidden[3], hidden[1])
    assert not torch.equal(hidden[4], hidden[3])


def test_skipped_layers_get_no_gradient():
    model = apply_layerdrop(tiny_model("bert"), LayerDropConfig(rate=0.5)).train()
    forced_mask(model, [True, False, True, False])
    model(**tiny_batch()).loss.backward()
    grads = [all(p.grad is None for p in layer.parameters()) for layer in layer_stack(model)]
    assert grads == [True, False, True, False]


def test_drop_frequency_matches_rates():
    rates = [0.0, 0.1, 0.5, 0.9]
    schedule = DropSchedule(rates, seed=3)
    counts = torch.zeros(len(rates))
    steps = 4000
    for step in range(steps):
        schedule.set_step(step)
        schedule.draw()
        counts += torch.tensor(schedule.skipped, dtype=torch.float)
    # Binomial standard deviation at 4000 draws is at most 0.008: allow about 3 of them.
    assert torch.allclose(counts / steps, torch.tensor(rates), atol=0.025)


def test_drop_frequency_through_the_model():
    model = apply_layerdrop(tiny_model("bert"), LayerDropConfig(rate=0.3)).train()
    schedule = layerdrop_schedule(model)
    skipped = 0
    batch = tiny_batch(batch=1, length=4)
    with torch.no_grad():
        for step in range(300):
            schedule.set_step(step)
            model(**batch)
            skipped += sum(schedule.skipped)
    assert abs(skipped / (300 * 4) - 0.3) < 0.05


def test_decisions_depend_only_on_seed_and_step():
    first, second = DropSchedule([0.5] * 6, seed=7), DropSchedule([0.5] * 6, seed=7)
    other_seed = DropSchedule([0.5] * 6, seed=8)
    masks = []
    torch.manual_seed(0)  # the global RNG plays no part
    for schedule in (first, second, other_seed):
        sequence = []
        for step in range(50):
            schedule.set_step(step)
            for _ in range(2):  # two forwards per step, as with gradient accumulation
                schedule.draw()
                sequence.append(tuple(schedule.skipped))
            torch.rand(3)
        masks.append(sequence)
    assert masks[0] == masks[1]
    assert masks[0] != masks[2]
    assert masks[0][0] != masks[0][1] or masks[0][2] != masks[0][3]  # forwards within a step differ


def test_config_recorded_saved_and_restored(tmp_path):
    model = apply_layerdrop(tiny_model("roberta"), LayerDropConfig(rate=[0.1, 0.2, 0.3, 0.4], seed=5))
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["hf_efficient"]["layerdrop"] == {"rate": [0.1, 0.2, 0.3, 0.4], "seed": 5}
    # The weights are stored under their usual names: LayerDrop adds nothing to the state dict.
    assert set(model.state_dict()) == set(tiny_model("roberta").state_dict())

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    # Nothing is applied on load: the reloaded model is plain until LayerDrop is asked for.
    assert layerdrop_schedule(reloaded) is None
    assert type(layer_stack(reloaded)[0]) is type(layer_stack(tiny_model("roberta"))[0])
    apply_layerdrop(reloaded)  # no config: the one config.json records
    schedule = layerdrop_schedule(reloaded)
    assert schedule is not None and schedule.rates == [0.1, 0.2, 0.3, 0.4] and schedule.seed == 5
    batch = tiny_batch()
    assert torch.allclose(reloaded.eval()(**batch).logits, model.eval()(**batch).logits, atol=1e-6)


def test_apply_layerdrop_without_config_and_without_record_uses_defaults():
    schedule = layerdrop_schedule(apply_layerdrop(tiny_model("bert")))
    assert schedule.rates == [0.2] * 4 and schedule.seed == 0


def test_apply_layerdrop_refuses_a_record_that_is_not_a_config():
    model = tiny_model("bert")
    model.config.hf_efficient = {"layerdrop": {"rate": 1.5, "seed": 0}}
    with pytest.raises(ValueError, match=r"records LayerDrop settings .* LayerDropConfig\(rate=\.\.\., seed=\.\.\.\)"):
        apply_layerdrop(model)


def test_importing_hf_efficient_leaves_from_pretrained_alone():
    import transformers.modeling_utils

    # hf_efficient is imported: transformers' own loader is still the one every model class uses
    # (a wrapper defined elsewhere would have its code in another file, whatever its __qualname__).
    loader = PreTrainedModel.__dict__["from_pretrained"].__func__
    assert loader.__code__.co_filename == transformers.modeling_utils.__file__
    assert loader.__qualname__ == "PreTrainedModel.from_pretrained"


def test_remove_layerdrop_restores_plain_model():
    model = tiny_model("bert")
    plain_class = type(layer_stack(model)[0])
    apply_layerdrop(model)
    assert type(layer_stack(model)[0]) is not plain_class and isinstance(layer_stack(model)[0], plain_class)
    remove_layerdrop(model)
    assert type(layer_stack(model)[0]) is plain_class
    assert layerdrop_schedule(model) is None and "layerdrop" not in model.config.hf_efficient


def test_modernbert_layers_keep_their_attributes():
    model = apply_layerdrop(tiny_model("modernbert"))
    layer = layer_stack(model)[1]
    if TRANSFORMERS_5:
        assert [layer.attention_type for layer in layer_stack(model)][:2] == ["full_attention", "sliding_attention"]
    assert layer.attn is not None


# Kept layers fall on ModernBERT's global/sliding pattern (global every 3 layers, as in ModernBERT),
# which transformers 4.x requires to reload a pruned ModernBERT unchanged.
PRUNINGS = [3, [0, 1], "every_other"]


@pytest.fixture(scope="module")
def pruned_folders(tmp_path_factory):
    """Every family pruned three ways and saved; the logits of each pruned model in memory."""
    root = tmp_path_factory.mktemp("pruned")
    batch = tiny_batch()
    expected = {}
    for family in FAMILY_NAMES:
        for i, keep in enumerate(PRUNINGS):
            model = apply_layerdrop(tiny_model(family), LayerDropConfig(rate=0.3))
            prune_layers(model, keep)
            folder = root / f"{family}-{i}"
            model.save_pretrained(folder)
            expected[str(folder)] = (model.config.num_hidden_layers, model(**batch).logits.tolist())
    return root, expected, batch


RELOAD_WITHOUT_HF_EFFICIENT = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification
folders, batch = json.loads(sys.argv[1]), {k: torch.tensor(v) for k, v in json.loads(sys.argv[2]).items()}
out = {}
for folder in folders:
    model = AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out[folder] = [type(model).__name__, model.config.num_hidden_layers, model(**batch).logits.tolist()]
assert not any(name.startswith("hf_efficient") for name in sys.modules)
print(json.dumps(out))
"""


def test_pruned_checkpoints_reload_without_hf_efficient(pruned_folders):
    root, expected, batch = pruned_folders
    batch_json = json.dumps({k: v.tolist() for k, v in batch.items()})
    # A fresh interpreter that never imports hf_efficient, run outside the repository.
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_WITHOUT_HF_EFFICIENT, json.dumps(list(expected)), batch_json],
        capture_output=True,
        text=True,
        cwd=root,
        check=True,
    )
    reloaded = json.loads(result.stdout.strip().splitlines()[-1])
    for folder, (depth, logits) in expected.items():
        class_name, reloaded_depth, reloaded_logits = reloaded[folder]
        assert class_name.endswith("ForSequenceClassification")
        assert reloaded_depth == depth
        assert torch.allclose(torch.tensor(reloaded_logits), torch.tensor(logits), atol=1e-5), folder
        config = json.loads((root / folder / "config.json").read_text())
        assert config["hf_efficient"]["layerdrop"] == {"rate": 0.3, "seed": 0}  # how the kept layers were trained
    depths = sorted({depth for depth, _ in expected.values()})
    assert depths == [2, 3]


def test_prune_records_original_layers_and_composes():
    model = prune_layers(tiny_model("bert", num_layers=6), [0, 2, 3, 5])
    prune_layers(model, [1, 3])
    assert model.config.num_hidden_layers == 2
    assert model.config.hf_efficient["pruning"] == {"kept_layers": [2, 5], "original_num_layers": 6}


@pytest.mark.skipif(not TRANSFORMERS_5, reason="layer_types is a transformers 5 config field")
def test_pruned_modernbert_keeps_layer_types():
    model = prune_layers(tiny_model("modernbert", num_layers=6), [0, 1, 2, 3])
    assert model.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    model = prune_layers(tiny_model("modernbert", num_layers=6), [0, 3])
    assert model.config.layer_types == ["full_attention", "full_attention"]


def test_pruning_that_would_not_reload_is_refused():
    # ModernBERT's layer 0 has no attention norm, so another layer cannot take its place.
    with pytest.raises(ValueError, match="would not reload as it is.*attn_norm"):
        prune_layers(tiny_model("modernbert"), [1, 3])


@pytest.mark.skipif(TRANSFORMERS_5, reason="transformers 5 stores layer_types, so any layers can be kept")
def test_modernbert_pattern_mismatch_is_refused_on_transformers_4():
    with pytest.raises(ValueError, match="global/sliding pattern"):
        prune_layers(tiny_model("modernbert"), [0, 3])


@pytest.mark.parametrize(
    ("rate", "message"),
    [
        (1.0, r"in \[0, 1\), got 1.0. A rate of 1 would drop the layer at every step: prune it instead.$"),
        (-0.1, r"in \[0, 1\), got -0.1.$"),
        ("0.2", r"in \[0, 1\)"),
        ([], "empty"),
        (True, r"in \[0, 1\)"),
    ],
)
def test_bad_rates_are_refused(rate, message):
    with pytest.raises(ValueError, match=message):
        LayerDropConfig(rate=rate)


def test_numpy_rates_are_plain_floats():
    import numpy as np

    assert LayerDropConfig(rate=np.float32(0.25)).rate == 0.25 and LayerDropConfig(rate=np.float32(0.25)).to_dict()
    rates = LayerDropConfig(rate=np.array([0.1, 0.2])).rate
    assert rates == [0.1, 0.2] and all(type(rate) is float for rate in rates)


def test_per_layer_rates_must_match_depth():
    with pytest.raises(ValueError, match="lists 3 rates but the model has 4 layers"):
        apply_layerdrop(tiny_model("bert"), LayerDropConfig(rate=[0.1, 0.2, 0.3]))


@pytest.mark.parametrize(
    ("keep", "message"),
    [
        ([0, 4], "indices \\[4\\] are not layers"),
        ([-1, 2], "indices \\[-1\\] are not layers"),
        ([1, 1], "appears twice"),
        ([], "keep at least one layer"),
        ([2, 0], "increasing order"),
        (0, "between 1 and 4"),
        (5, "between 1 and 4"),
        ("half", "give a depth"),
    ],
)
def test_bad_keep_is_refused(keep, message):
    with pytest.raises(ValueError, match=message):
        prune_layers(tiny_model("bert"), keep)


def test_non_encoders_are_refused():
    gpt2 = GPT2Model(GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=VOCAB))
    with pytest.raises(UnsupportedModelError, match="GPT2Model is not supported.*bert-like") as error:
        apply_layerdrop(gpt2)
    assert "modernbert" in str(error.value) and "distilbert" in str(error.value)
    with pytest.raises(UnsupportedModelError, match="Linear is not supported"):
        prune_layers(torch.nn.Linear(2, 2), 1)


class RecordMasks(TrainerCallback):
    def __init__(self):
        self.masks, self.losses = {}, {}

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.masks[state.global_step] = list(layerdrop_schedule(model).skipped)


def _train(output_dir, max_steps, resume=None, gradient_checkpointing=False, bf16=False):
    torch.manual_seed(0)
    model = apply_layerdrop(tiny_model("bert", num_layers=6), LayerDropConfig(rate=0.5, seed=1))
    data = [{k: v[i] for k, v in tiny_batch(batch=16, seed=1).items()} for i in range(16)]
    recorder = RecordMasks()
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=4,
        max_steps=max_steps,
        save_steps=3,
        logging_steps=1,
        learning_rate=1e-3,
        report_to=[],
        use_cpu=True,
        gradient_checkpointing=gradient_checkpointing,
        bf16=bf16,
        disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[LayerDropCallback(), recorder])
    trainer.train(resume_from_checkpoint=resume)
    losses = {e["step"]: e["loss"] for e in trainer.state.log_history if "loss" in e}
    return recorder.masks, losses


def test_trainer_resume_reproduces_drop_sequence(tmp_path):
    masks, losses = _train(tmp_path / "full", max_steps=6)
    assert len({tuple(m) for m in masks.values()}) > 1  # the masks change from step to step
    resumed_masks, resumed_losses = _train(tmp_path / "full", max_steps=6, resume=str(tmp_path / "full/checkpoint-3"))
    assert sorted(resumed_masks) == [4, 5, 6]
    assert all(resumed_masks[s] == masks[s] for s in (4, 5, 6))
    for step in (4, 5, 6):
        assert resumed_losses[step] == pytest.approx(losses[step], rel=1e-4)


@pytest.mark.parametrize("setting", ["gradient_checkpointing", "bf16"])
def test_trainer_with_gradient_checkpointing_and_mixed_precision(tmp_path, setting):
    masks, losses = _train(tmp_path, max_steps=3, **{setting: True})
    plain_masks, plain_losses = _train(tmp_path / "plain", max_steps=3)
    assert masks == plain_masks
    tolerance = 5e-2 if setting == "bf16" else 1e-4
    assert all(losses[s] == pytest.approx(plain_losses[s], rel=tolerance) for s in (1, 2, 3))


def test_callback_applies_the_recorded_layerdrop_at_train_start(tmp_path, caplog):
    rates = [0.5, 0.1, 0.5, 0.1]
    apply_layerdrop(tiny_model("bert"), LayerDropConfig(rate=rates, seed=3)).save_pretrained(tmp_path / "saved")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved")
    assert layerdrop_schedule(model) is None
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"),
        max_steps=3,
        per_device_train_batch_size=4,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
    )
    data = [{k: v[i] for k, v in tiny_batch(batch=12).items()} for i in range(12)]
    recorder = RecordMasks()
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[LayerDropCallback(), recorder])
    with caplog.at_level(logging.INFO, logger="hf_efficient.layerdrop.callback"):
        trainer.train()
    schedule = layerdrop_schedule(model)
    assert schedule.rates == rates and schedule.seed == 3
    # The drop sequence is the one the recorded rates and seed give: what the original run would have dropped.
    expected = DropSchedule(rates, seed=3)
    for step in (1, 2, 3):
        expected.set_step(step - 1)
        expected.draw()
        assert recorder.masks[step] == expected.skipped
    applied = [
        record.message for record in caplog.records if "LayerDrop that the model's config records" in record.message
    ]
    assert len(applied) == 1 and "'seed': 3" in applied[0]


def test_callback_refuses_model_without_layerdrop(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, report_to=[], use_cpu=True)
    data = [{k: v[0] for k, v in tiny_batch(batch=1).items()}]
    trainer = Trainer(model=tiny_model("bert"), args=args, train_dataset=data, callbacks=[LayerDropCallback()])
    with pytest.raises(ValueError, match="call apply_layerdrop"):
        trainer.train()


def test_shipped_minilm_prunes_and_reloads_unchanged(tmp_path):
    from conftest import minilm_path
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2).eval()
    batch = {k: v for k, v in tiny_batch(length=12).items() if k != "labels"}
    reference = model(**batch).logits
    apply_layerdrop(model, LayerDropConfig(rate=0.2))
    assert torch.equal(model(**batch).logits, reference)
    prune_layers(model, 3).save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert reloaded.config.num_hidden_layers == 3
    assert torch.allclose(reloaded(**batch).logits, model(**batch).logits, atol=1e-6)
    assert (tmp_path / "model.safetensors").stat().st_size < 0.8 * 90e6  # 3 of 6 layers gone from 90 MB
