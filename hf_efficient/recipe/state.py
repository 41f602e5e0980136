"""A run's progress in its output folder, so that an interrupted run resumes where it stopped.

Each step writes into `<step>.partial/` and renames it when done, and only then is the step marked
complete in `run_state.json` (written atomically): a folder named like a step is always whole. A
rerun skips completed steps; a changed `report`, `card` or `push` section redoes that step and
those after it, and any other change is refused (resume with the same recipe or `--restart`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from .config import Recipe, RecipeError

STATE_FILE = "run_state.json"
# Sections that may change between a run and its resumption: they only touch the last steps.
RESUMABLE_CHANGES = ("report", "card", "push")
# The models a run makes, and the step that makes each.
MADE_BY = {"teacher": "teacher", "student": "student", "pruned": "prune"}


class RunState:
    """The completed steps of a run (name -> what the step recorded), kept in `run_state.json`."""

    def __init__(self, output: Path, recipe: Recipe, order: list[str]):
        self.output, self.recipe, self.order = output, recipe, order
        self.steps: dict[str, dict] = {}

    @property
    def path(self) -> Path:
        return self.output / STATE_FILE

    def load(self) -> dict[str, dict]:
        """Read the completed steps, refusing a folder that holds a run of another recipe."""
        if not self.path.exists():
            self.steps = {}
            return self.steps
        saved = json.loads(self.path.read_text())
        ours, theirs = _comparable(self.recipe.to_dict()), _comparable(saved["recipe"])
        if ours != theirs:
            changed = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
            raise RecipeError(
                f"{self.output} holds a run of a different recipe (changed: {', '.join(changed)}). Resume it with the "
                "same recipe, start over with --restart, or set another output_dir."
            )
        # A changed report, card or push section redoes that step and those after it.
        current = self.recipe.to_dict()
        redo = [self.order.index(k) for k in RESUMABLE_CHANGES if saved["recipe"].get(k) != current.get(k)]
        first_redo = min(redo, default=len(self.order))
        self.steps = {name: record for name, record in saved["steps"].items() if self.order.index(name) < first_redo}
        return self.steps

    def save(self) -> None:
        scratch = self.path.with_suffix(".tmp")
        scratch.write_text(json.dumps({"recipe": self.recipe.to_dict(), "steps": self.steps}, indent=1))
        os.replace(scratch, self.path)

    def start(self, name: str) -> Path:
        """An empty `<name>.partial/` folder for the step to write into."""
        folder = self.output / f"{name}.partial"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder

    def finish(self, name: str, folder: Path, final_name: str, record: dict) -> None:
        """Rename the step's folder to its final name (if it wrote anything), then mark it complete."""
        if any(folder.iterdir()):
            final = self.output / final_name
            shutil.rmtree(final, ignore_errors=True)  # left by a crash between rename and state write
            folder.rename(final)
        else:
            folder.rmdir()
        self.steps[name] = record
        self.save()


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest Trainer checkpoint in `folder` that was written whole, or None."""
    # Trainer writes trainer_state.json last: a checkpoint without it was cut off mid-write.
    complete = [c for c in folder.glob("checkpoint-*") if (c / "trainer_state.json").is_file()]
    return str(max(complete, key=lambda c: int(c.name.split("-")[1]))) if complete else None


def _comparable(recipe: dict) -> dict:
    # Runs before 2026-12 wrote a step that is off as null, now false.
    return {k: False if v is None else v for k, v in recipe.items() if k not in RESUMABLE_CHANGES}
