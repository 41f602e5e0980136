import ast
from pathlib import Path

import pytest
import torch
from conftest import tiny_model

import hf_efficient
from hf_efficient import evenly_spaced_layers, layer_stack
from hf_efficient.layers import keep_layers

PACKAGE = Path(hf_efficient.__file__).parent
TECHNIQUES = ("layerdrop", "distill", "sharing")


@pytest.mark.parametrize(
    ("num_layers", "depth", "expected"),
    [(6, 3, [0, 2, 4]), (12, 6, [0, 2, 4, 6, 8, 10]), (6, 2, [0, 3]), (6, 5, [0, 1, 2, 3, 4]), (4, 4, [0, 1, 2, 3])],
)
def test_evenly_spaced_layers(num_layers, depth, expected):
    assert evenly_spaced_layers(num_layers, depth) == expected


def test_every_other_layers_is_a_deprecated_alias():
    from hf_efficient import every_other_layers
    from hf_efficient.layerdrop import every_other_layers as from_layerdrop

    assert from_layerdrop is every_other_layers
    with pytest.warns(FutureWarning, match="use hf_efficient.evenly_spaced_layers"):
        assert every_other_layers(6, 4) == evenly_spaced_layers(6, 4) == [0, 1, 3, 4]


def test_keep_layers_records_the_cut_and_names_the_call():
    model = keep_layers(tiny_model("bert", num_layers=6), 3)
    assert len(layer_stack(model)) == model.config.num_hidden_layers == 3
    assert model.config.hf_efficient == {"layers": {"kept_layers": [0, 2, 4], "original_num_layers": 6}}
    keep_layers(model, [0, 2], technique="pruning")  # cuts compose, in indices of the original model
    cut = {"kept_layers": [0, 4], "original_num_layers": 6}
    assert model.config.hf_efficient == {"layers": cut, "pruning": cut}
    with pytest.raises(ValueError, match=r"^my_call\(x=9\): indices \[9\] are not layers of this 2-layer model"):
        keep_layers(model, [0, 9], call="my_call(x=9)")  # the model has 2 layers now


def test_a_cut_keeps_per_layer_settings_with_their_layers(tmp_path):
    """Longformer's config holds an attention window per layer; transformers refuses a list of the wrong length."""
    import transformers

    config = transformers.LongformerConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37
    )
    config.attention_window = [4, 8, 4, 8]
    model = transformers.LongformerForSequenceClassification(config).eval()
    cut = keep_layers(model, [0, 3], technique="pruning")
    assert cut.config.attention_window == [4, 8]
    cut.save_pretrained(tmp_path)
    back = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    ids = torch.randint(5, 100, (2, 16), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(back(input_ids=ids).logits, cut(input_ids=ids).logits)


def test_a_technique_given_no_model_says_so():
    from hf_efficient import apply_layerdrop, prune_layers

    for call in (apply_layerdrop, lambda m: prune_layers(m, 2)):
        with pytest.raises(ValueError, match=r"\(model=None\): give a transformers model or a SentenceTransformer"):
            call(None)


def _imported_packages(path: Path) -> set[str]:
    """The hf_efficient subpackages that one module of a technique imports."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level >= 2:  # from ..x import y
                names.add(module.split(".")[0] or node.names[0].name)
            elif node.level == 0 and module.startswith("hf_efficient."):
                names.add(module.split(".")[1])
        elif isinstance(node, ast.Import):
            names |= {alias.name.split(".")[1] for alias in node.names if alias.name.startswith("hf_efficient.")}
    return names


@pytest.mark.parametrize("technique", TECHNIQUES)
def test_techniques_do_not_import_each_other(technique):
    # What two techniques share lives beside them (encoders, layers, provenance), not in one of them.
    others = set(TECHNIQUES) - {technique}
    for path in sorted((PACKAGE / technique).glob("*.py")):
        assert not (_imported_packages(path) & others), path.name


@pytest.mark.parametrize(
    "num_layers, depth, message",
    [
        (3, 6, "evenly_spaced_layers(num_layers=3, depth=6): cannot keep more layers than there are; give a depth"),
        (6, 0, "evenly_spaced_layers(depth=0): a whole number of layers, 1 or more."),
        (6.0, 3, "evenly_spaced_layers(num_layers=6.0): a whole number of layers, 1 or more."),
    ],
)
def test_evenly_spaced_layers_refuses_impossible_depths(num_layers, depth, message):
    with pytest.raises(ValueError) as error:
        evenly_spaced_layers(num_layers, depth)
    assert str(error.value).startswith(message)
