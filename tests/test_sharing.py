import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import FAMILY_NAMES, tiny_batch, tiny_model
from safetensors import safe_open
from transformers import CONFIG_MAPPING, AutoModelForSequenceClassification, Trainer, TrainingArguments

import hf_efficient
from hf_efficient import (
    DistillationTrainer,
    LayerDropCallback,
    LayerDropConfig,
    PKDConfig,
    SharingConfig,
    apply_layerdrop,
    encoder_family,
    layer_stack,
    make_student,
    prune_layers,
    share_layers,
    unshare_layers,
)
from hf_efficient.encoders import FAMILIES
from hf_efficient.sharing import shared_parameter_groups, sharing_plan
from hf_efficient.sharing.model import _layers_prefix

SCOPES = ["all", "attention", "ffn"]


def parameter_count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("scope", SCOPES)
def test_parameter_counts_and_scopes(family, scope):
    model = tiny_model(family)
    layers_before = [dict(layer.named_parameters()) for layer in layer_stack(model)]
    before = parameter_count(model)
    plan = sharing_plan(model, SharingConfig(scope=scope))
    share_layers(model, SharingConfig(scope=scope))
    # Every alias stops counting; nothing else changes.
    saved = sum(model.get_parameter(alias).numel() for alias in plan)
    assert parameter_count(model) == before - saved > 0
    is_attention = encoder_family(model).is_attention_parameter
    prefix = _layers_prefix(model)
    shared_relative = {alias[len(prefix) :].split(".", 1)[1] for alias in plan}
    relative = set(layers_before[1])
    assert shared_relative
    if scope == "attention":
        assert all(is_attention(n) for n in shared_relative)
    elif scope == "ffn":
        assert not any(is_attention(n) for n in shared_relative)
    else:
        assert shared_relative == relative  # layers 1-3 share every parameter they have


def test_groups_share_within_not_across():
    model = share_layers(tiny_model("bert"), SharingConfig(num_groups=2))
    layers = layer_stack(model)
    weight = [layer.attention.self.query.weight for layer in layers]
    assert weight[0] is weight[1] and weight[2] is weight[3] and weight[0] is not weight[2]


@pytest.mark.parametrize(("init", "init_layer"), [("mean", None), ("layer", 1)])
def test_initialisation(init, init_layer):
    model = tiny_model("bert")
    originals = [layer.output.dense.weight.detach().clone() for layer in layer_stack(model)]
    share_layers(model, SharingConfig(num_groups=2, init=init, init_layer=init_layer))
    layers = layer_stack(model)
    if init == "mean":
        assert torch.allclose(layers[0].output.dense.weight, (originals[0] + originals[1]) / 2)
        assert torch.allclose(layers[2].output.dense.weight, (originals[2] + originals[3]) / 2)
    else:
        assert torch.equal(layers[0].output.dense.weight, originals[1])
        assert torch.equal(layers[3].output.dense.weight, originals[3])


def test_shared_weights_stay_one_tensor_through_training(tmp_path):
    model = share_layers(tiny_model("bert"), SharingConfig())
    data = [{k: v[i] for k, v in tiny_batch(batch=8).items()} for i in range(8)]
    args = TrainingArguments(str(tmp_path), max_steps=3, per_device_train_batch_size=4, report_to=[], use_cpu=True)
    before = layer_stack(model)[0].intermediate.dense.weight.detach().clone()
    Trainer(model=model, args=args, train_dataset=data).train()
    layers = layer_stack(model)
    pointers = {layer.intermediate.dense.weight.data_ptr() for layer in layers}
    assert len(pointers) == 1 and not torch.equal(layers[3].intermediate.dense.weight, before)
    assert len(shared_parameter_groups(model)) == 16


@pytest.mark.parametrize("scope", SCOPES)
def test_save_reload_identical_and_stored_once(tmp_path, family, scope):
    model = share_layers(tiny_model(family), SharingConfig(scope=scope, num_groups=2))
    model.train()
    torch.optim.SGD(model.parameters(), lr=0.1).zero_grad()
    model(**tiny_batch()).loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.eval()
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as stored:
        stored_names = set(stored.keys())
    unique = {name for name, _ in model.named_parameters()}
    assert not (set(sharing_plan(model, SharingConfig(scope=scope, num_groups=2))) & stored_names)
    assert unique <= stored_names
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == f"hf-efficient-shared-{model.config.model_type}"
    assert config["hf_efficient"]["sharing"]["scope"] == scope

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(reloaded) is type(model)
    assert len(shared_parameter_groups(reloaded)) == len(shared_parameter_groups(model)) > 0
    batch = tiny_batch()
    assert torch.allclose(reloaded(**batch).logits, model(**batch).logits, atol=1e-6)


def test_file_is_smaller_than_unshared(tmp_path):
    model = tiny_model("bert", num_layers=6)
    model.save_pretrained(tmp_path / "plain")
    share_layers(model, SharingConfig()).save_pretrained(tmp_path / "shared")
    plain = (tmp_path / "plain/model.safetensors").stat().st_size
    shared = (tmp_path / "shared/model.safetensors").stat().st_size
    layer_bytes = sum(p.numel() * 4 for p in layer_stack(model)[0].parameters())
    # Five layers' tensors are gone, and their names from the file's header.
    assert 5 * layer_bytes < plain - shared < 1.1 * 5 * layer_bytes


def test_loading_without_hf_efficient_fails_loudly(tmp_path):
    share_layers(tiny_model("roberta"), SharingConfig()).save_pretrained(tmp_path)
    code = (
        "import sys\n"
        "from transformers import AutoModelForSequenceClassification\n"
        "AutoModelForSequenceClassification.from_pretrained(sys.argv[1])\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "hf-efficient-shared-roberta" in result.stderr


# Every model type the encoder families name that this transformers version has.
MODEL_TYPES = [t for family in FAMILIES for t in family.model_types if t in CONFIG_MAPPING]

RELOAD_IN_A_FRESH_PROCESS = """
import json, sys, torch
folders, batch, with_hf_efficient = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3] == "with"
if with_hf_efficient:
    import hf_efficient
from transformers import AutoModelForSequenceClassification
batch = {k: torch.tensor(v) for k, v in batch.items()}
out = {}
for folder in folders:
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    except Exception as error:
        out[folder] = {"error": f"{type(error).__name__}: {error}"}
        continue
    groups = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(parameter), []).append(name)
    with torch.no_grad():
        logits = model(**batch).logits.tolist()
    out[folder] = {"groups": sorted(g for g in groups.values() if len(g) > 1), "logits": logits}
assert with_hf_efficient == any(name.startswith("hf_efficient") for name in sys.modules)
print(json.dumps(out))
"""


def _reload_in_a_fresh_process(folders, batch, with_hf_efficient: bool) -> dict:
    inputs = json.dumps({k: v.tolist() for k, v in batch.items()})
    mode = "with" if with_hf_efficient else "without"
    command = [sys.executable, "-c", RELOAD_IN_A_FRESH_PROCESS, json.dumps(folders), inputs, mode]
    # The subprocess imports the hf_efficient this test imported, wherever it runs.
    root = str(Path(hf_efficient.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=folders[0], env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_model_type_reloads_shared_with_auto_classes(tmp_path):
    """Each model type of `encoders.FAMILIES` shares, saves, and reloads shared with `import hf_efficient` alone."""
    assert {"bert", "camembert", "deberta", "ernie", "roformer", "data2vec-text", "xlm-roberta-xl"} <= set(MODEL_TYPES)
    batch = {k: v for k, v in tiny_batch().items() if k != "labels"}
    expected = {}
    for model_type in MODEL_TYPES:
        model = share_layers(tiny_model(model_type), SharingConfig(num_groups=2, init="mean")).eval()
        folder = str(tmp_path / model_type)
        model.save_pretrained(folder)
        with torch.no_grad():
            expected[folder] = (model_type, sorted(shared_parameter_groups(model)), model(**batch).logits)
    folders = list(expected)
    reloaded = _reload_in_a_fresh_process(folders, batch, with_hf_efficient=True)
    for folder, (model_type, groups, logits) in expected.items():
        assert "error" not in reloaded[folder], reloaded[folder]
        assert reloaded[folder]["groups"] == groups != [], model_type
        assert torch.allclose(torch.tensor(reloaded[folder]["logits"]), logits, atol=1e-5), model_type
    # Without hf_efficient, transformers refuses every shared checkpoint instead of loading random layers.
    refused = _reload_in_a_fresh_process(folders, batch, with_hf_efficient=False)
    for folder, (model_type, _, _) in expected.items():
        assert f"hf-efficient-shared-{model_type}" in refused[folder].get("error", ""), model_type


def test_models_built_from_the_same_config_stay_independent():
    config = tiny_model("bert").config
    shared = share_layers(AutoModelForSequenceClassification.from_config(config), SharingConfig())
    other = AutoModelForSequenceClassification.from_config(config)
    assert type(other).__name__ == "BertForSequenceClassification" and not shared_parameter_groups(other)
    assert shared.config.model_type == "bert"  # in memory; saved as hf-efficient-shared-bert


def test_reloaded_shared_model_saves_and_unshares(tmp_path):
    share_layers(tiny_model("bert"), SharingConfig(num_groups=2)).save_pretrained(tmp_path / "first")
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "first")
    reloaded.save_pretrained(tmp_path / "second")
    assert json.loads((tmp_path / "second/config.json").read_text())["model_type"] == "hf-efficient-shared-bert"
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "second")
    assert again.sharing_plan == reloaded.sharing_plan
    plain = unshare_layers(again)
    assert plain.config.model_type == "bert" and not shared_parameter_groups(plain)


@pytest.mark.parametrize("family", ["bert", "distilbert"])
@pytest.mark.parametrize(
    ("kept", "groups"),
    [([0, 2], None), ([1, 3], None), ([0, 1], 1), ([0, 1, 4, 5], 2), ([1, 2, 3, 4, 5], "refused")],
)
def test_pruning_a_shared_model_keeps_what_its_layers_share(tmp_path, family, kept, groups):
    # Three groups of two layers. A cut keeps each group's layers shared; a group left with one layer
    # shares nothing, and the checkpoint must hold every layer that is no longer an alias.
    model = share_layers(tiny_model(family, num_layers=6), SharingConfig(num_groups=3, scope="attention"))
    batch = tiny_batch()
    if groups == "refused":
        with pytest.raises(ValueError, match=r"keep \[1, 2, 2\] layers of the groups"):
            prune_layers(model, kept)
        assert len(layer_stack(model)) == 6 and model.config.hf_efficient["sharing"]["num_groups"] == 3
        return
    prune_layers(model, kept)
    expected = model(**batch).logits
    model.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager").eval()
    assert torch.equal(reloaded(**batch).logits, expected)
    record = reloaded.config.hf_efficient.get("sharing")
    if groups is None:
        assert record is None and not shared_parameter_groups(reloaded)
        assert not type(reloaded).__name__.startswith("Shared")
    else:
        assert record == {**SharingConfig(num_groups=groups, scope="attention").to_dict()}
        assert len(shared_parameter_groups(reloaded)) == len(shared_parameter_groups(model)) > 0


def test_a_cut_of_a_layerdrop_model_keeps_the_rates_of_its_layers_if_pruned(tmp_path):
    teacher = apply_layerdrop(tiny_model("bert"), LayerDropConfig(rate=[0.1, 0.2, 0.3, 0.4]))
    teacher.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)  # plain layers, the rates recorded
    assert reloaded.config.hf_efficient["layerdrop"]["rate"] == [0.1, 0.2, 0.3, 0.4]
    student = make_student(reloaded, 2)  # trained anew: no LayerDrop
    assert "layerdrop" not in student.config.hf_efficient and student.config.hf_efficient["layers"]["kept_layers"] == [
        0,
        2,
    ]
    # A pruned model's layers were trained with LayerDrop: it records their rates, in memory as after a reload.
    for model in (reloaded, teacher):
        assert prune_layers(model, 2).config.hf_efficient["layerdrop"] == {"rate": [0.1, 0.3], "seed": 0}


def test_unshare_gives_a_plain_independent_model(tmp_path):
    model = share_layers(tiny_model("electra"), SharingConfig())
    batch = tiny_batch()
    reference = model(**batch).logits
    plain = unshare_layers(model)
    assert type(plain).__name__ == "ElectraForSequenceClassification" and not shared_parameter_groups(plain)
    assert plain.config.model_type == "electra" and "sharing" not in plain.config.hf_efficient
    assert torch.equal(plain(**batch).logits, reference)
    plain.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "electra"


def test_with_layerdrop_and_as_distillation_student(tmp_path):
    teacher = tiny_model("bert", num_layers=4, seed=1)
    student = apply_layerdrop(share_layers(make_student(teacher, 2)), LayerDropConfig(rate=0.3))
    args = TrainingArguments(
        str(tmp_path), max_steps=2, per_device_train_batch_size=4, report_to=[], use_cpu=True, logging_steps=1
    )
    data = [{k: v[i] for k, v in tiny_batch(batch=8).items()} for i in range(8)]
    trainer = DistillationTrainer(
        model=student,
        teacher=teacher,
        distillation=PKDConfig(),
        args=args,
        train_dataset=data,
        callbacks=[LayerDropCallback()],
    )
    trainer.train()
    assert layer_stack(student)[0].attention.self.query.weight is layer_stack(student)[1].attention.self.query.weight
    trainer.save_model(str(tmp_path / "student"))
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "student").eval()
    recorded = reloaded.config.hf_efficient
    assert recorded["layerdrop"]["rate"] == 0.3 and recorded["distillation"]["method"] == "pkd"
    assert shared_parameter_groups(reloaded) == shared_parameter_groups(student) != []  # shared again on load
    batch = tiny_batch()
    torch.testing.assert_close(reloaded(**batch).logits, student.eval()(**batch).logits)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: share_layers(tiny_model("bert"), SharingConfig(num_groups=3)), "divisor of 4"),
        (lambda: SharingConfig(scope="mlp"), "scope='mlp'"),
        (lambda: SharingConfig(num_groups=0), "num_groups=0"),
        (lambda: SharingConfig(init="layer"), "init_layer goes with init='layer'"),
        (lambda: share_layers(tiny_model("bert"), SharingConfig(num_groups=2, init="layer", init_layer=2)), "only 2"),
        (lambda: share_layers(share_layers(tiny_model("bert"))), "already shared"),
    ],
)
def test_bad_settings_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_gets_a_registered_class(family):
    model = share_layers(tiny_model(family))
    assert type(model).__name__.startswith("Shared") and isinstance(model, model.plain_class)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_onnx_export_stores_shared_weights_once_and_matches(tmp_path, family):
    from hf_efficient.export import export_onnx, onnx_weight_bytes, quantize_int8_dynamic, run_onnx

    # Width 64: at width 32 ModernBERT's per-layer graph constants alone pass 1.2x of its int8 weights.
    shared = share_layers(tiny_model(family, num_layers=12, hidden_size=64), SharingConfig()).eval()
    single = tiny_model(family, num_layers=1, hidden_size=64).eval()
    batch = {k: v for k, v in tiny_batch().items() if k != "labels"}
    sizes = {}
    for name, model in (("shared", shared), ("single", single)):
        fp32 = export_onnx(model, tmp_path / f"{name}.onnx")
        int8 = quantize_int8_dynamic(fp32, tmp_path / f"{name}-int8.onnx")
        sizes[name] = (onnx_weight_bytes(fp32), onnx_weight_bytes(int8))
        if name == "shared":
            with torch.no_grad():
                expected = model(**batch).logits.numpy()
            inputs = {k: v.numpy() for k, v in batch.items()} | {"token_type_ids": torch.zeros_like(batch["input_ids"])}
            assert abs(run_onnx(fp32, inputs) - expected).max() <= 1e-4
            scale = abs(expected).max()
            assert abs(run_onnx(int8, inputs) - expected).max() <= 0.1 * scale + 1e-3
    # 12 layers sharing one set of weights store about as much as one layer.
    assert sizes["shared"][0] <= 1.2 * sizes["single"][0]
    assert sizes["shared"][1] <= 1.2 * sizes["single"][1]
