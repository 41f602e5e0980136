"""A run's progress in its output folder, so that an interrupted run resumes where it stopped.

Each step writes into `<step>.partial/` and renames it when done, and only then is the step marked
complete in `run_state.json` (written atomically): a folder named like a step is always whole. A
rerun skips completed steps; a changed `report`, `card` or `push` section redoes that step and
those after it, and any other change is refused (resume with the same recipe or `--restart`).
The state is written before the first step, with a digest of each local file and folder the run
reads (data, models): an interrupted first step is not resumed under another recipe, nor a run
whose data or teacher changed since it began. Only a folder with a state is a run, and --restart
deletes only what a run writes there (`RunState.clear`), never an input the recipe reads from it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from .config import Recipe, RecipeError

STATE_FILE = "run_state.json"
# Sections that may change between a run and its resumption: they only touch the last steps.
RESUMABLE_CHANGES = ("report", "card", "push")
# The data fields that may name a local file (or save_to_disk folder), read by the run.
DATA_FILES = ("source", "train_file", "validation_file", "test_file")
# The models a run makes, and the step that makes each.
MADE_BY = {"teacher": "teacher", "student": "student", "pruned": "prune"}


def _repo_id(recipe: dict) -> str | None:
    return (recipe.get("push") or {}).get("repo_id")


class RunState:
    """The completed steps of a run (name -> what the step recorded), kept in `run_state.json`."""

    def __init__(self, output: Path, recipe: Recipe, order: list[str]):
        self.output, self.recipe, self.order = output, recipe, order
        self.steps: dict[str, dict] = {}
        self.inputs: dict[str, str] | None = None  # field -> digest of what it named when the run began

    @property
    def path(self) -> Path:
        return self.output / STATE_FILE

    def check_folder(self, restart: bool) -> None:
        """Refuse an output folder that holds files but no run: a step would overwrite them, --restart delete them."""
        if self.path.is_file() or not self.output.is_dir() or not any(self.output.iterdir()):
            return
        shown = ", ".join(sorted(p.name for p in self.output.iterdir())[:3])
        what = "--restart deletes only a run folder" if restart else "a run writes only into a new or empty folder"
        raise RecipeError(
            f"output_dir={str(self.output)!r} holds files ({shown}) but no run ({STATE_FILE}): {what}; set another "
            "output_dir, or empty that folder yourself."
        )

    def written(self, step_folders: list[str]) -> list[Path]:
        """What a run writes into its folder (and --restart deletes): its state, recipe, report and plots, the
        steps' folders and partial folders, the Trainer checkpoints. Other files are the user's."""
        names = {STATE_FILE, f"{STATE_FILE}.tmp", "recipe.yaml", "report.json", "report.md", "checkpoints"}
        names |= {*step_folders, *(f"{name}.partial" for name in self.order)}
        plots = {p.name for pattern in ("*_by_depth.png", "*_vs_size.png", "*_vs_latency.png") for p in
                 self.output.glob(pattern)}  # fmt: skip
        return [self.output / name for name in sorted(names | plots) if (self.output / name).exists()]

    def clear(self, step_folders: list[str], inputs: dict[str, str], delete: bool = True) -> None:
        """Delete what the run wrote (`written`; with `delete`), refusing first where the recipe reads an input from
        it (every process checks, one deletes)."""
        entries = self.written(step_folders)
        for field, path in inputs.items():
            inside = next((e for e in entries if Path(path).resolve().is_relative_to(e.resolve())), None)
            if inside is not None:
                raise RecipeError(
                    f"--restart would delete {field}={path!r}: it lies in {inside}, which the run in {self.output} "
                    "wrote; copy it out of the run folder first, or set another output_dir."
                )
        for entry in entries if delete else ():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()

    def load(self) -> dict[str, dict]:
        """Read the completed steps, refusing a folder that holds a run of another recipe."""
        if not self.path.exists():
            self.steps = {}
            return self.steps
        saved = _read(self.path, self.order)
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
        if "card" in self.order and _repo_id(saved["recipe"]) != _repo_id(current):
            redo.append(self.order.index("card"))  # the card's snippets name the repository it is pushed to
        first_redo = min(redo, default=len(self.order))
        self.steps = {name: record for name, record in saved["steps"].items() if self.order.index(name) < first_redo}
        self.inputs = saved.get("inputs")  # runs before 2026-12 recorded none
        return self.steps

    def check_unchanged(self, current: dict[str, str]) -> None:
        """Record the digests of the run's inputs, or refuse a resumption whose inputs changed since the run began:
        its earlier steps were made from the old ones, and the report would mix the two."""
        changed = [k for k in current if self.inputs and k in self.inputs and self.inputs[k] != current[k]]
        if changed:
            raise RecipeError(
                f"{', '.join(changed)} changed since the run in {self.output} began (the contents differ): resume it "
                "with what it started from, or start over with --restart."
            )
        self.inputs = {**(self.inputs or {}), **current}

    def save(self) -> None:
        scratch = self.path.with_suffix(".tmp")
        state = {"recipe": self.recipe.to_dict(), "steps": self.steps, "inputs": self.inputs}
        scratch.write_text(json.dumps(state, indent=1))
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


def digest(path: str | Path) -> str:
    """The sha256 of a file, or of a folder's files (names and contents, subfolders left out: a model's own)."""
    path, total = Path(path), hashlib.sha256()
    for file in sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]:
        total.update(file.name.encode() + b"\0")
        with open(file, "rb") as handle:
            total.update(hashlib.file_digest(handle, "sha256").digest())
    return total.hexdigest()


def _read(path: Path, order: list[str]) -> dict:
    """The state saved in `path` (steps named in `order`, each a record), or one line saying it is not a run's."""
    try:
        saved = json.loads(path.read_text())
        steps = saved["steps"]
        if (
            isinstance(saved["recipe"], dict)
            and isinstance(steps, dict)
            and all(name in order and isinstance(record, dict) for name, record in steps.items())
            and isinstance(saved.get("inputs") or {}, dict)
        ):
            return saved
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    raise RecipeError(
        f"{path} is not the state of a run (it is not the JSON hf-efficient writes): start over with --restart, or "
        "set another output_dir."
    )


def _comparable(recipe: dict) -> dict:
    # output_dir is the folder the state lies in, however it was written (runs/x, ./runs/x, an absolute path); a
    # model folder or data file is the same however written (data.csv, ./data.csv), its contents digested apart.
    # Runs before 2026-12 wrote a step that is off as null, now false.
    skip = {*RESUMABLE_CHANGES, "output_dir"}
    comparable = {k: False if v is None else v for k, v in recipe.items() if k not in skip}
    comparable["model"] = _resolved(comparable.get("model"))
    for section, keys in (("data", DATA_FILES), ("teacher", ("path",))):
        if isinstance(comparable.get(section), dict):
            comparable[section] = {k: _resolved(v) if k in keys else v for k, v in comparable[section].items()}
    return comparable


def _resolved(value):
    """A path that exists here, absolute; anything else (a Hub id, a shortcut, None) as it is."""
    return str(Path(value).resolve()) if isinstance(value, str) and value and Path(value).exists() else value
