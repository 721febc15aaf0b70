"""Index storage: a folder of .npz arrays (loaded with allow_pickle=False), safetensors and JSON, with a
manifest written last that records each file's SHA-256. Loading checks every file against it, so a missing,
truncated or edited file is one clear error naming the file, never a wrong answer or a traceback."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_write_bytes, atomic_write_json

FORMAT = "genlab-retrieval-index"
VERSION = 1
MANIFEST = "manifest.json"


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def encode_file(name: str, content: Any) -> bytes:
    """Bytes of one index file, by its suffix: .npz (numpy arrays), .safetensors (tensors), .json."""
    if name.endswith(".npz"):
        return _npz_bytes(content)
    if name.endswith(".safetensors"):
        return save_safetensors({k: v.detach().contiguous() for k, v in content.items()})
    return (json.dumps(content, ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def save_folder(folder: Path, files: dict[str, Any], manifest: dict) -> int:
    """Write each file atomically, then the manifest with their checksums (so a reader never trusts a manifest
    that points at files not yet written). Returns the bytes written."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise GenlabError(f"index path {folder} is a file; give a folder")
    sums, total = {}, 0
    for name, content in files.items():
        data = encode_file(name, content)
        atomic_write_bytes(folder / name, data)
        sums[name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        total += len(data)
    atomic_write_json(folder / MANIFEST, {**manifest, "format": FORMAT, "version": VERSION, "files": sums})
    return total + (folder / MANIFEST).stat().st_size


class StoredIndex:
    """A saved index folder whose files are read on demand and checked against the manifest."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        path = self.folder / MANIFEST
        if not self.folder.is_dir():
            raise GenlabError(f"index not found: {self.folder} (build one with `genlab index build DOCS --out "
                              f"{self.folder}`)")
        if not path.is_file():
            raise GenlabError(f"{self.folder} is not a genlab index: {MANIFEST} is missing")
        try:
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenlabError(f"index manifest {path} is corrupt ({exc}); rebuild the index") from None
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            raise GenlabError(f"{path} is not a genlab retrieval index manifest")
        if self.manifest.get("version") != VERSION:
            raise GenlabError(f"index {self.folder} has format version {self.manifest.get('version')}; this genlab "
                              f"reads version {VERSION}; rebuild the index")

    def _bytes(self, name: str) -> bytes:
        expected = self.manifest.get("files", {}).get(name)
        path = self.folder / name
        if expected is None:
            raise GenlabError(f"index {self.folder} lists no file {name}; rebuild the index")
        if not path.is_file():
            raise GenlabError(f"index file missing: {path}; rebuild the index")
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() != expected["sha256"]:
            raise GenlabError(f"index file {path} is corrupt (its checksum does not match the manifest); "
                              "rebuild the index")
        return data

    def arrays(self, name: str) -> dict[str, np.ndarray]:
        try:
            with np.load(io.BytesIO(self._bytes(name)), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise GenlabError(f"index file {self.folder / name} is not a readable .npz ({exc})") from None

    def tensors(self, name: str) -> dict[str, torch.Tensor]:
        try:
            return load_safetensors(self._bytes(name))
        except (SafetensorError, ValueError) as exc:
            raise GenlabError(f"index file {self.folder / name} is not readable safetensors ({exc})") from None

    def json(self, name: str) -> Any:
        try:
            return json.loads(self._bytes(name).decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise GenlabError(f"index file {self.folder / name} is not readable JSON ({exc})") from None
