"""API keys for `genlab serve`: random tokens shown once, stored only as SHA-256 digests in a JSON file that
only its owner can read, checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import time
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.runs import atomic_write_text

TOKEN_PREFIX = "gl_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class KeyStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _load(self) -> list[dict]:
        if not self.path.is_file():
            return []
        try:
            keys = json.loads(self.path.read_text())["keys"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise GenlabError(f"{self.path} is not a genlab key file") from None
        return keys

    def _save(self, keys: list[dict]) -> None:
        atomic_write_text(self.path, json.dumps({"keys": keys}, indent=2) + "\n")
        os.chmod(self.path, 0o600)

    def add(self, name: str) -> tuple[str, str]:
        """A new key: (its id, the token). The token is not stored and cannot be shown again."""
        if not name or len(name) > 100:
            raise GenlabError("a key needs a name of 1 to 100 characters")
        keys = self._load()
        key_id, token = secrets.token_hex(4), TOKEN_PREFIX + secrets.token_urlsafe(32)
        keys.append({"id": key_id, "name": name, "sha256": _digest(token), "created": int(time.time()),
                     "revoked": False})
        self._save(keys)
        return key_id, token

    def list(self) -> list[dict]:
        return [{k: v for k, v in key.items() if k != "sha256"} for key in self._load()]

    def revoke(self, key_id: str) -> None:
        keys = self._load()
        for key in keys:
            if key["id"] == key_id:
                key["revoked"] = True
                self._save(keys)
                return
        raise GenlabError(f"no key with id {key_id!r} in {self.path}")

    def check(self, token: str | None) -> str | None:
        """The id of the live key `token` belongs to, else None. Every stored digest is compared, in constant
        time, so the answer's timing says nothing about which key or how much of it matched."""
        if not token:
            return None
        digest, found = _digest(token), None
        for key in self._load():
            if hmac.compare_digest(key["sha256"], digest) and not key["revoked"]:
                found = key["id"]
        return found
