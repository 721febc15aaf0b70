"""Immutable dataset versions, whatever the modality: publish a folder whole or not at all, never overwrite one,
credit each removed id to one operation, and summarise a version's manifest for the runs that train on it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genlab.core.errors import GenlabError


def version_summary(data_file: Path) -> dict | None:
    """What a run records about a genlab dataset version (the manifest.json beside its data file): folder,
    parent fingerprint and each operation with its count. None for a plain file."""
    manifest = data_file.parent / "manifest.json"
    if not manifest.is_file():
        return None
    try:
        m = json.loads(manifest.read_text())
        return {"folder": str(data_file.parent.resolve()), "fingerprint": m["fingerprint"],
                "parent_fingerprint": m["parent"]["fingerprint"],
                "operations": [{"op": o["op"], "count": o["count"]} for o in m["operations"]]}
    except (ValueError, KeyError, TypeError):
        return {"folder": str(data_file.parent.resolve()), "error": "manifest.json is not a genlab manifest"}


def refuse_existing(out: Path) -> None:
    if out.exists():
        raise GenlabError(f"{out} exists; a dataset version is never overwritten (choose a new folder)")


@contextmanager
def new_version_folder(out: str | Path) -> Iterator[Path]:
    """The folder to write a version into: OUT.partial, renamed to OUT once the block completes, so a version
    appears whole or not at all; an existing OUT is refused."""
    out = Path(out)
    refuse_existing(out)
    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    yield tmp
    tmp.rename(out)


def removal_plan(found: dict[str, list[int]], operations: list[str], protected=frozenset()) -> dict[str, list[int]]:
    """Per operation, in order, the ids it removes: its findings less the protected ids and those an earlier
    operation already removed (so each id is credited to one operation). Shared by image and text cleans."""
    removed: dict[str, list[int]] = {}
    gone = set(protected)
    for op in operations:
        removed[op] = sorted(set(found[op]) - gone)
        gone |= set(removed[op])
    return removed
