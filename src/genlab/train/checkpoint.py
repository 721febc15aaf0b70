"""Checkpoints as safetensors + JSON, written atomically, keep-last-k, with everything exact resume needs."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from genlab.core.errors import DiskFull, GenlabError
from genlab.core.runs import (
    atomic_save_tensors,
    atomic_write_json,
    atomic_write_text,
    disk_full,
    load_tensors,
    make_folder,
    read_json,
    tensors_nbytes,
)


def optimizer_to_flat(name: str, sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (for safetensors) and plain values (for JSON)."""
    tensors, scalars = {}, {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{name}.{idx}.{key}"] = value
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def optimizer_from_flat(name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The optimizer state dict optimizer_to_flat split up."""
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[field] = value
    for key, value in meta["scalars"].items():
        idx, field = key.split(".", 1)
        state.setdefault(int(idx), {})[field] = value
    return {"state": state, "param_groups": meta["param_groups"]}


STATE_KEYS = ("step", "elapsed_seconds", "stream", "optimizers", "best")  # what resuming reads from state.json


class CheckpointStore:
    """checkpoints/step_XXXXXXX/{weights.safetensors,state.json}; `latest` names the newest complete one.

    A checkpoint folder is written under a temporary name and renamed when complete, so a kill at any
    moment leaves either the previous checkpoint or the new one, never a torn one.
    """

    def __init__(self, root: Path, keep_last: int):
        self.root, self.keep_last = Path(root), max(1, keep_last)

    def save(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> Path:
        """Write checkpoint `step`. A full disk is one clear error (DiskFull) naming the folder, the space the
        checkpoint needs and the last good checkpoint, which is left intact (so is `latest`)."""
        make_folder(self.root, "checkpoint folder")
        final = self.root / f"step_{step:08d}"
        tmp = self.root / f".tmp_step_{step:08d}_{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            make_folder(tmp, "checkpoint folder")
            atomic_save_tensors(tmp / "weights.safetensors", tensors)
            atomic_write_json(tmp / "state.json", state)
        except DiskFull:
            shutil.rmtree(tmp, ignore_errors=True)  # the space it took is free again for the message
            needed = tensors_nbytes(tensors) + len(json.dumps(state)) + 4096
            raise disk_full(self.root, needed, f"checkpoint {final.name}") from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        atomic_write_text(self.root / "latest", final.name + "\n")
        self._prune()
        return final

    def _prune(self) -> None:
        done = sorted(p for p in self.root.glob("step_*") if p.is_dir())
        for old in done[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def latest(self) -> Path | None:
        """The checkpoint `latest` names; if that pointer is missing, unreadable or names no checkpoint folder
        here, the newest complete step_* folder (so --resume never silently starts over)."""
        pointer = self.root / "latest"
        try:
            name = pointer.read_text().strip() if pointer.is_file() else ""
        except (OSError, UnicodeDecodeError):
            name = ""
        if re.fullmatch(r"step_\d{8}", name) and (self.root / name).is_dir():
            return self.root / name
        complete = [p for p in sorted(self.root.glob("step_*"))
                    if (p / "weights.safetensors").is_file() and (p / "state.json").is_file()]
        return complete[-1] if complete else None

    def load(self, path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        try:
            # copies, not views of the file's memory map: optimizer state keeps its tensors, and a mapped file
            # that _prune deletes would hold its disk space for as long as the run goes on
            tensors = {k: v.clone() for k, v in load_tensors(path / "weights.safetensors").items()}
            state = read_json(path / "state.json")
        except (GenlabError, json.JSONDecodeError) as exc:
            raise GenlabError(f"checkpoint {path} is unreadable: {exc}") from None
        missing = ([k for k in STATE_KEYS if k not in state] if isinstance(state, dict) else ["a JSON object"]) + [
            k for k in ("rng.noise", "rng.torch") if k not in tensors]
        if missing:
            raise GenlabError(f"checkpoint {path} is incomplete (no {missing[0]!r}); delete that folder to resume "
                              "from the one before it, or start over with --overwrite")
        return tensors, state
