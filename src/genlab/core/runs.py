"""The run directory: its layout, atomic writes, and loading a finished run back for sampling and evaluation."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.core.errors import GenlabError


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied weights): later aliases are stored as copies,
    and loading writes the same values into the one shared parameter."""
    out, seen = {}, set()
    for k, v in tensors.items():
        t = v.detach().contiguous().cpu()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        save_file(_unshared(tensors), tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file (never a pickle); a corrupt file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GenlabError(f"weights file {path} is not a readable safetensors file ({exc})") from None


def read_json(path: Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"file not found: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GenlabError(f"{path} is not valid JSON ({exc})") from None


@dataclass(frozen=True)
class RunPaths:
    """Where everything of one run lives; the report needs nothing outside this folder."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset.json"

    @property
    def base(self) -> Path:
        """Fine-tuned runs: the path and hash of the weights they started from."""
        return self.root / "base.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def final_weights(self) -> Path:
        return self.root / "model.safetensors"

    @property
    def log(self) -> Path:
        return self.root / "log.csv"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def samples(self) -> Path:
        return self.root / "samples"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def summary(self) -> Path:
        return self.root / "train_summary.json"


def existing_run(path: str | Path) -> RunPaths:
    """A finished (trained) run directory, or one clear error saying what is missing."""
    paths = RunPaths(Path(path))
    if not paths.root.is_dir():
        raise GenlabError(f"run directory not found: {paths.root}")
    if not paths.config.is_file():
        raise GenlabError(f"{paths.root} is not a genlab run (no config.yaml)")
    if not paths.final_weights.is_file():
        raise GenlabError(f"run {paths.root} has no trained model yet ({paths.final_weights.name}); train it first")
    return paths
