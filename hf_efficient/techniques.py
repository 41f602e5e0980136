"""The table of techniques: the one place that names each technique and says where it shows up.

Every other module reads this table instead of spelling a technique's name: the recipe accepts a
row's `name` as a key of the sections it lists (`student: {distillation: {...}}`), the runner applies
the row to the section's model before training, `config.json` records the settings under the same
name (see `provenance`), the report gives a model the `kind` of its highest-ranked technique, and
the model card takes the row's Hub tags and template.

Adding a technique: write its package (a config dataclass validated in `__post_init__`, a function
that changes a model in place and records the config, optionally Trainer pieces), then one
`register_technique(Technique(...))` below and one card template in `hub/templates/`. A record that says
how the layers were trained rather than what they are (LayerDrop's rates) also registers a function in
`provenance.PER_LAYER_RECORDS`: a pruned model keeps it, cut to its layers; a student, trained anew,
drops it. Any other record is copied with the weights (a student of a shared teacher is shared).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .distill import DistillationTrainer, PKDConfig
from .layerdrop import LayerDropCallback, LayerDropConfig, apply_layerdrop
from .sharing import SharingConfig, share_layers

# The kinds of a model that no technique changed: a plain fine-tuned model, or one a run took as it was given
# (a sentence-embedding teacher, never fine-tuned).
FINETUNED = "finetuned"
PRETRAINED = "pretrained"
UNCHANGED = (FINETUNED, PRETRAINED)


@dataclass(frozen=True)
class Technique:
    """One row of the table.

    Args:
        name: The one name: recipe key, `config.json` record key, report technique and kind.
        title: How people write it, e.g. "LayerDrop".
        summary: One line for `--help` and documentation.
        rank: Which technique names a model's kind when it has several (highest wins).
        tags: Hub tags of a model made with it.
        template: Card template (a file of `hf_efficient/hub/templates/`, or an absolute path).
        command: The `hf-efficient` command that runs it on its own, if any: its name and help come from the row,
            its flags and recipe from a builder in `cli.build_parser` (a test checks each row's command exists).
        config_class: Its settings, for techniques that are keys of training sections.
        sections: The recipe's training sections it can be a key of ("teacher", "student").
        shorthand: The config field that a bare value sets (`layerdrop: 0.2` is `{rate: 0.2}`).
        needs_teacher: Whether it needs the recipe's teacher (distillation).
        prepare: `(model, config, teacher) -> dict` applied to the section's model before training, in
            table order; returns more arguments of `finetune` (`callbacks`, `trainer_class`, ...).
        extra_tags: `(recorded settings) -> tags` for tags that depend on the settings.
    """

    name: str
    title: str
    summary: str
    rank: int
    tags: tuple[str, ...]
    template: str
    command: str | None = None
    config_class: type | None = None
    sections: tuple[str, ...] = ()
    shorthand: str | None = None
    needs_teacher: bool = False
    prepare: Callable | None = None
    extra_tags: Callable[[dict], tuple[str, ...]] | None = field(default=None, compare=False)

    def hub_tags(self, settings: dict | None = None) -> list[str]:
        extra = self.extra_tags(settings or {}) if self.extra_tags else ()
        return [*self.tags, *extra]


TECHNIQUES: dict[str, Technique] = {}


def register_technique(technique: Technique) -> Technique:
    """Add a row to the table (the order of registration is the order techniques are applied in)."""
    if not isinstance(technique, Technique):
        raise TypeError(f"register_technique({technique!r}): pass a Technique(...).")
    if technique.name in TECHNIQUES or technique.name in UNCHANGED:
        raise ValueError(f"register_technique: a technique named {technique.name!r} exists; pick another name.")
    same_rank = [t.name for t in TECHNIQUES.values() if t.rank == technique.rank]
    if same_rank:  # the rank decides a model's kind: two techniques of one rank would leave it to chance
        raise ValueError(
            f"register_technique({technique.name!r}): rank={technique.rank} is {same_rank[0]}'s; pick another."
        )
    TECHNIQUES[technique.name] = technique
    return technique


def unregister_technique(name: str) -> None:
    """Remove a row (for tests and plugins that add one for a while)."""
    TECHNIQUES.pop(name, None)


def section_techniques(section: str) -> list[Technique]:
    """The rows that are keys of a recipe training section, in the order they are applied."""
    return [t for t in TECHNIQUES.values() if section in t.sections]


def kind_of(techniques: list[str]) -> str:
    """A model's kind: its highest-ranked technique, or "finetuned" when it has none."""
    known = [TECHNIQUES[name] for name in techniques if name in TECHNIQUES]
    return max(known, key=lambda t: t.rank).name if known else FINETUNED


def hub_tags(techniques: dict[str, dict | None]) -> list[str]:
    """Hub tags of techniques (name -> recorded settings), each once, from the lowest rank up."""
    ranked = sorted((TECHNIQUES[name] for name in techniques), key=lambda t: t.rank)
    tags = [tag for technique in ranked for tag in technique.hub_tags(techniques[technique.name])]
    return list(dict.fromkeys(tags))


def _share(model, config, teacher) -> dict:
    share_layers(model, config)
    return {}


def _layerdrop(model, config, teacher) -> dict:
    apply_layerdrop(model, config)
    return {"callbacks": [LayerDropCallback()]}


def _distill(model, config, teacher) -> dict:
    return {"trainer_class": DistillationTrainer, "teacher": teacher, "distillation": config}


register_technique(
    Technique(
        name="sharing",
        title="cross-layer sharing (ALBERT)",
        summary="share weights across layers (ALBERT-style), then fine-tune or distill",
        rank=3,
        tags=("albert-sharing",),
        template="sharing.md.j2",
        command="share",
        config_class=SharingConfig,
        sections=("student",),
        prepare=_share,
    )
)
register_technique(
    Technique(
        name="layerdrop",
        title="LayerDrop",
        summary="fine-tune with LayerDrop, then prune to every depth and evaluate",
        rank=1,
        tags=("layerdrop",),
        template="layerdrop.md.j2",
        command="layerdrop",
        config_class=LayerDropConfig,
        sections=("teacher", "student"),
        shorthand="rate",
        prepare=_layerdrop,
    )
)
register_technique(
    Technique(
        name="distillation",
        title="Patient Knowledge Distillation",
        summary="distill a fine-tuned teacher into a shallower student (PKD)",
        rank=2,
        tags=("knowledge-distillation",),
        template="distillation.md.j2",
        command="distill",
        config_class=PKDConfig,
        sections=("student",),
        needs_teacher=True,
        prepare=_distill,
        extra_tags=lambda settings: ("pkd",) if settings.get("method") == "pkd" else (),
    )
)
register_technique(
    Technique(
        name="pruning",
        title="layer pruning",
        summary="prune a model to fewer layers without retraining",
        rank=4,
        tags=("pruning",),
        template="layerdrop.md.j2",
        command="prune",
    )
)
register_technique(
    Technique(
        name="int8",
        title="int8 ONNX export",
        summary="export to ONNX and quantize to int8, with an accuracy check",
        rank=5,
        tags=("int8", "onnx"),
        template="int8.md.j2",
        command="export",
    )
)
