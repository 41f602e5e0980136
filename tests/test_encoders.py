import pytest
import torch
from conftest import FAMILY_NAMES, tiny_batch, tiny_model
from transformers import CONFIG_MAPPING, AlbertConfig, AlbertModel, BertConfig, BertModel

from hf_efficient import UnsupportedModelError, encoder_family, layer_stack, record_layer_outputs
from hf_efficient.encoders import FAMILIES

EXPECTED_FAMILY = {name: "bert-like (encoder.layer)" for name in FAMILY_NAMES}
EXPECTED_FAMILY.update({"distilbert": "distilbert (transformer.layer)", "modernbert": "modernbert (layers)"})


def test_every_family_is_found(family):
    model = tiny_model(family)
    assert encoder_family(model).name == EXPECTED_FAMILY[family]
    assert len(layer_stack(model)) == 4
    # The bare encoder and the model with a head share their layers.
    assert layer_stack(model.base_model) is layer_stack(model)


@pytest.mark.parametrize("model_type", [t for family in FAMILIES for t in family.model_types if t in CONFIG_MAPPING])
def test_every_model_type_the_families_name_is_found(model_type):
    model = tiny_model(model_type)
    assert model_type in encoder_family(model).model_types
    assert len(layer_stack(model)) == 4


def test_layer_outputs_match_hidden_states(family):
    model = tiny_model(family)
    model(**tiny_batch(), output_hidden_states=True)  # transformers 5 installs its own hooks once
    hooks_before = [len(layer._forward_hooks) for layer in layer_stack(model)]
    with record_layer_outputs(model) as outputs:
        hidden_states = model(**tiny_batch(), output_hidden_states=True).hidden_states
    assert sorted(outputs) == [0, 1, 2, 3]
    # ModernBERT reports its last hidden state after the final norm, so compare the layers before it.
    for index in range(3):
        assert torch.equal(outputs[index], hidden_states[index + 1])
    assert [len(layer._forward_hooks) for layer in layer_stack(model)] == hooks_before


def test_only_the_chosen_layers_are_recorded_and_hooked():
    model = tiny_model("bert")
    with record_layer_outputs(model) as every_layer:
        model(**tiny_batch())
    hooks_before = [len(layer._forward_hooks) for layer in layer_stack(model)]
    with record_layer_outputs(model, layers=[2, 0]) as outputs:
        hooked = [
            len(layer._forward_hooks) - before for layer, before in zip(layer_stack(model), hooks_before, strict=True)
        ]
        model(**tiny_batch())
    assert hooked == [1, 0, 1, 0]
    assert sorted(outputs) == [0, 2]
    assert all(torch.equal(outputs[i], every_layer[i]) for i in outputs)
    with pytest.raises(ValueError, match=r"\[4\] are not layers of this 4-layer model"):
        with record_layer_outputs(model, layers=[1, 4]):
            pass


def test_unknown_model_type_built_like_bert_is_accepted():
    model = BertModel(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=37))
    model.config.model_type = "my-bert-variant"
    assert encoder_family(model).layers_path == "encoder.layer"


def test_albert_and_decoders_are_refused():
    albert = AlbertModel(AlbertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=37))
    with pytest.raises(UnsupportedModelError, match="AlbertModel is not supported.*no layer list"):
        layer_stack(albert)
    decoder = BertModel(BertConfig(is_decoder=True, num_hidden_layers=2, hidden_size=32, num_attention_heads=2))
    with pytest.raises(UnsupportedModelError, match="decoder"):
        layer_stack(decoder)


def test_a_wrapper_is_refused_naming_the_model_inside():
    """A wrapper such as sentence-transformers' CrossEncoder keeps its transformers model at `.model`: every call
    (a technique, the task lookup that distillation and export start with) says to pass that instead."""
    from hf_efficient import make_student
    from hf_efficient.tasks import task_of

    wrapper = torch.nn.Module()
    wrapper.model = tiny_model("bert")
    for call in (encoder_family, lambda m: make_student(m, 2), task_of):
        with pytest.raises(
            UnsupportedModelError, match=r"Module is not supported .*pass the BertFor\w+ inside it, `\.model`"
        ):
            call(wrapper)
