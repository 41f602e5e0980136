"""The table of techniques: a new row reaches the recipe, the checkpoint, the report, the tags and the card."""

import argparse
import json
from dataclasses import asdict, dataclass

import pytest
import yaml
from conftest import tiny_recipe
from huggingface_hub import ModelCard

from hf_efficient.cli import build_parser
from hf_efficient.provenance import record_technique
from hf_efficient.recipe import RecipeError, load_recipe, run_recipe
from hf_efficient.techniques import TECHNIQUES, Technique, kind_of, register_technique, unregister_technique


@dataclass
class FakeConfig:
    strength: float = 1.0

    def __post_init__(self):
        if self.strength <= 0:
            raise ValueError(f"FakeConfig(strength={self.strength}): must be > 0.")

    def to_dict(self) -> dict:
        return asdict(self)


@pytest.fixture
def fake_technique(tmp_path):
    """A technique that only records itself, with its own card template outside the package."""
    template = tmp_path / "templates" / "fake.md.j2"
    template.parent.mkdir()
    template.write_text(
        '{% extends "base.md.j2" %}\n{% block what %}a model made with the fake technique{% endblock %}\n'
        "{% block method %}Made by the fake technique at strength {{ final.settings.fake.strength }}.{% endblock %}\n"
        "{% block limits %}- None known.\n{% endblock %}\n"
    )

    def prepare(model, config, teacher):
        record_technique(model, "fake", config.to_dict())
        return {}

    row = Technique(
        name="fake",
        title="Fake",
        summary="a technique for tests",
        rank=10,
        tags=("fake-tag",),
        template=str(template),
        config_class=FakeConfig,
        sections=("teacher",),
        shorthand="strength",
        prepare=prepare,
    )
    register_technique(row)
    yield row
    unregister_technique("fake")


def test_the_table_names_every_technique_once():
    assert list(TECHNIQUES) == ["sharing", "layerdrop", "distillation", "pruning", "int8"]
    assert len({t.rank for t in TECHNIQUES.values()}) == len(TECHNIQUES)
    assert kind_of([]) == "finetuned" and kind_of(["layerdrop", "distillation", "pruning"]) == "pruning"
    with pytest.raises(ValueError, match="exists"):
        register_technique(TECHNIQUES["layerdrop"])
    # A row's `command` is a command of the CLI (a new row with one also needs its builder in cli.build_parser).
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    assert {t.command: commands[t.command].description for t in TECHNIQUES.values() if t.command} == {
        t.command: t.summary for t in TECHNIQUES.values() if t.command
    }


def test_a_new_row_reaches_recipe_report_tags_and_card(fake_technique, tmp_path, tiny_bert_folder, reviews_csv):
    changes = {"student": None, "prune": None, "export": None}
    recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run", **changes)
    recipe["teacher"] = {"epochs": 1, "batch_size": 8, "fake": 2.5}  # the shorthand sets `strength`
    loaded = load_recipe(recipe)
    assert loaded.teacher.fake == FakeConfig(strength=2.5) and loaded.to_dict()["teacher"]["fake"] == {"strength": 2.5}
    with pytest.raises(RecipeError, match=r"recipe.teacher.fake: FakeConfig\(strength=-1(\.0)?\): must be > 0"):
        load_recipe({**recipe, "teacher": {"fake": -1}})
    with pytest.raises(RecipeError, match="unknown key 'fake'"):  # a teacher-only technique
        load_recipe({**recipe, "student": {"fake": 1}})

    report = run_recipe(recipe)
    output = tmp_path / "run"
    assert yaml.safe_load((output / "recipe.yaml").read_text())["teacher"]["fake"] == {"strength": 2.5}
    saved = json.loads((output / "teacher" / "config.json").read_text())
    assert saved["hf_efficient"]["fake"] == {"strength": 2.5}
    (teacher,) = report["models"]
    assert teacher["techniques"] == ["fake"] and teacher["kind"] == "fake" and report["techniques"] == ["fake"]
    card = ModelCard.load(output / "hub" / "README.md")
    assert card.data.tags == ["hf_efficient", "fake-tag"]
    assert "a model made with the fake technique" in card.text and "at strength 2.5." in card.text


@dataclass
class PartsConfig:
    parts: tuple[str, ...] = ("embeddings",)


def test_a_row_of_tuple_settings_takes_a_list_or_a_bare_value_and_ranks_are_unique(
    tmp_path, tiny_bert_folder, reviews_csv
):
    row = Technique(
        "parts",
        "Parts",
        "tuple settings",
        11,
        (),
        "base.md.j2",
        config_class=PartsConfig,
        sections=("teacher",),
        shorthand="parts",
    )
    register_technique(row)
    try:
        recipe = tiny_recipe(tiny_bert_folder, reviews_csv, tmp_path / "run", student=None, prune=None, export=None)
        for given, parts in (({"parts": ["a", "b"]}, ("a", "b")), (["c"], ("c",)), (True, ("embeddings",))):
            assert load_recipe({**recipe, "teacher": {"parts": given}}).teacher.parts == PartsConfig(parts)
        with pytest.raises(RecipeError, match=r"^recipe.teacher.parts.parts=\[1\]: expected a list of str\.$"):
            load_recipe({**recipe, "teacher": {"parts": [1]}})
        with pytest.raises(ValueError, match=r"rank=11 is parts's; pick another"):
            register_technique(Technique("other", "Other", "same rank", 11, (), "base.md.j2"))
    finally:
        unregister_technique("parts")
