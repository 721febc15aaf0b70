"""One package per kind of data (image, text, table): each owns its loaders and audit, its metrics and their
headline, its sample writers, its sampling and evaluation options and its HTTP routes, behind the Modality
protocol (genlab.core.protocols). The registry names them; nothing above this layer tests a type."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError
from genlab.registry import modality, modality_of_source, names

NAMED = {"digits": {"source": "digits"}}  # datasets that ship with genlab's dependencies


def infer_data(target: str) -> dict:
    """data.* settings for a dataset name or a path, from the first modality (in registry order) that reads it."""
    if target in NAMED:
        return dict(NAMED[target])
    path = Path(target).expanduser()
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise GenlabError(f"cannot read folder {path}: permission denied; give yourself read access or copy it")
    for name in names("modality"):
        found = modality(name).infer(target)
        if found is not None:
            return found
    if not path.exists():
        raise GenlabError(f"{target} is neither a recipe, a dataset name ({', '.join(NAMED)}) nor an existing path")
    kinds = " or ".join(m.folder_contents for m in map(modality, names("modality")) if m.folder_contents)
    raise GenlabError(f"{path}: no {kinds} found in this folder" if path.is_dir() else f"{path}: genlab reads no "
                      "data of this kind")


def load_dataset(data: Any, run_dir: Path | None = None, privacy: Any = None):
    """The dataset of a DataConfig, whatever its modality; a run directory supplies saved artifacts (tokenizer,
    table transform). `privacy` (train.privacy): only tables train privately."""
    modality = modality_of_source(data.source)
    if privacy is None:
        return modality.load(data, run_dir)
    if modality.name != "table":
        raise GenlabError(f"train.privacy trains table families (tvae, ctgan); data.source={data.source} is "
                          f"{modality.name} data")
    return modality.load(data, run_dir, privacy=privacy)
