"""Reading users' text files: UTF-8 with one clear error, and JSONL line by line (loaders stop at a bad line,
audits list every one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genlab.core.errors import GenlabError


def read_text_file(path: str | Path) -> str:
    path = Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GenlabError(f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise GenlabError(f"cannot read {path}: {exc.strerror}") from None


def jsonl_records(text: str) -> Iterator[tuple[int, Any, str | None]]:
    """(line number, the parsed record, None) for each non-blank line, or (line number, None, why) for a line
    that is not valid JSON."""
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line), None
        except json.JSONDecodeError as exc:
            yield number, None, f"is not valid JSON: {exc.msg}"


def first_jsonl_record(target: str | Path) -> Any:
    """The first record of a .jsonl file, or None (not such a file, unreadable, not JSON): what modalities look
    at to claim a file."""
    path = Path(target).expanduser()
    if not path.is_file() or path.suffix.lower() != ".jsonl":
        return None
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            return json.loads(next((line for line in f if line.strip()), ""))
    except (OSError, json.JSONDecodeError):
        return None
