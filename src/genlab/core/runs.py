"""The run directory: its layout, atomic writes, and loading a finished run back for sampling and evaluation."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from genlab.core.errors import DiskFull, GenlabError


def _folder_problem(path: Path) -> str | None:
    """Why files cannot be written in folder `path` (created if need be), or None."""
    for part in [*reversed(path.parents), path]:  # from the root down: the first part in the way
        if part.is_symlink() and not part.exists():
            return f"{part} is a broken (or looping) symbolic link"
        if part.exists() and not part.is_dir():
            return f"{part} is a file, not a folder"
    existing = next((p for p in [path, *path.parents] if p.is_dir()), None)
    if existing is not None and not os.access(existing, os.R_OK | os.W_OK | os.X_OK):
        return f"{existing} is read-only or not accessible to you"
    return None


def check_folder(path: str | Path, what: str = "folder", writing: Path | None = None) -> Path:
    """`path` if it is a writable folder or could be created as one; else one clear error naming the file (or
    the read-only folder) in the way, and `writing` (the file about to be written) when given. Called before
    any work (loading data, building a model) so a bad --runs-dir or --out fails at once."""
    path = Path(path)
    if problem := _folder_problem(path):
        raise GenlabError(f"cannot {f'write {writing}' if writing else f'use {what} {path}'}: {problem}; "
                          "choose another path")
    return path


def make_folder(path: str | Path, what: str = "folder", writing: Path | None = None) -> Path:
    """mkdir -p, with one clear error when a part of the path is a file, access is denied or the disk is full."""
    path = check_folder(path, what, writing)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, 4096) from None
        raise GenlabError(f"cannot create {what} {path}: {exc.strerror or exc}; choose another path") from None
    return path


def _size(n: float) -> str:
    """Bytes for a person: 512 bytes, 3.2 KiB, 1.3 MiB, 2.0 GiB."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_full(folder: Path, needed: int, what: str = "", then: str = "try again") -> DiskFull:
    """The one-line error for a write that ran out of space: the folder, what it needs, what is free and
    `then` (the next step). Its folder, needed and what are kept so a caller can say more."""
    existing = next((p for p in [Path(folder), *Path(folder).parents] if p.is_dir()), Path("."))
    try:
        free = shutil.disk_usage(existing).free
    except OSError:
        free = 0
    error = DiskFull(f"no space left in {folder}{' for ' + what if what else ''}: it needs about {_size(needed)}, "
                     f"{_size(free)} is free; free at least {_size(max(needed - free, 1))} there and {then}")
    error.folder, error.needed, error.what = Path(folder), needed, what
    return error


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc)  # safetensors reports the OS error in its message only
    return "os error 28" in text or "os error 122" in text or "No space left on device" in text


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file beside `path`, fsync, then rename: readers see the old or the new file, never half.
    A full disk is one clear error (DiskFull) and leaves the old file as it was."""
    path = Path(path)
    make_folder(path.parent, writing=path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as exc:
        if _is_disk_full(exc):
            raise disk_full(path.parent, len(data), path.name) from None
        raise GenlabError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise disk_full(path.parent, len(data), path.name) from None
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


def tensors_nbytes(tensors: dict[str, torch.Tensor]) -> int:
    """About the size of a safetensors file of `tensors` (data plus a header line per tensor)."""
    return sum(t.numel() * t.element_size() + 100 + len(k) for k, t in tensors.items())


def atomic_save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None):
    """safetensors written to a temp file beside `path`, then renamed; a full disk is one clear error (DiskFull)
    and leaves the old file as it was."""
    path = Path(path)
    make_folder(path.parent, writing=path)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        os.close(fd)
        save_file(_unshared(tensors), tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise disk_full(path.parent, tensors_nbytes(tensors), path.name) from None
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
