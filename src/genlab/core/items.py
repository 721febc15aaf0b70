"""Item names: how audit findings name the things a user can open (a file, a file and line, `data.npz[31]`), and
how `genlab data clean --drop-ids FILE` turns a list of those names (or plain ids) back into ids."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from genlab.core.errors import GenlabError


def indexed_names(stem: str, n: int) -> list[str]:
    """`stem[0]` .. `stem[n-1]`: the names of rows of one array file (or a built-in dataset)."""
    return [f"{stem}[{i}]" for i in range(n)]


def names_of(ids: Iterable[int], item_names: list[str] | None) -> dict[str, str]:
    """{id: name} for the ids a report lists (JSON keys are strings), so scripts keep the ids and people get
    names; empty when the dataset has no names."""
    if not item_names:
        return {}
    return {str(i): item_names[i] for i in sorted(set(ids)) if 0 <= i < len(item_names)}


def read_drop_ids(file: str | Path, item_names: list[str] | None, n: int) -> list[int]:
    """The ids FILE lists, one item per line: a name as the audit prints it, or an id (0 .. n-1). Blank lines
    and lines starting with # are skipped. The first name that matches no item is one clear error."""
    path = Path(file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GenlabError(f"cannot read --drop-ids file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    by_name = {name: i for i, name in enumerate(item_names or [])}
    ids = []
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if entry in by_name:
            ids.append(by_name[entry])
        elif entry.isdigit() and int(entry) < n:
            ids.append(int(entry))
        else:
            raise GenlabError(f"{path} line {number}: no item named {entry!r} in this dataset (give names as "
                              f"genlab data audit prints them, or ids 0..{n - 1})")
    if not ids:
        raise GenlabError(f"{path} lists no items to drop")
    return sorted(set(ids))


def drop_operation(file: str | Path, ids: list[int], test: set[int], already_removed: set[int],
                   item_names: list[str] | None) -> dict:
    """The manifest entry of `--drop-ids`: the ids it removes (not those an earlier operation removed) and the
    listed test ids it kept (the test split is never touched)."""
    removed = [i for i in ids if i not in test and i not in already_removed]
    op = {"op": "drop-ids", "file": str(file), "removed_ids": removed, "count": len(removed),
          "kept_test_ids": [i for i in ids if i in test]}
    if item_names:
        op["removed_names"] = [item_names[i] for i in removed]
    return op
