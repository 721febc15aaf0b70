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
KEY_FIELDS = {"id": str, "name": str, "sha256": str, "revoked": bool}  # each stored key has these


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


class KeyStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _load(self) -> list[dict]:
        if not self.path.is_file():
            if self.path.is_dir():
                raise GenlabError(f"key file {self.path} is a folder; pass a file path (e.g. {self.path}/keys.json)")
            return []
        try:
            keys = json.loads(self.path.read_text())["keys"]
        except OSError as exc:
            raise GenlabError(f"cannot read key file {self.path}: {exc.strerror or exc}") from None
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            raise GenlabError(f"{self.path} is not a genlab key file") from None
        if not isinstance(keys, list):
            raise GenlabError(f"{self.path} is not a genlab key file (\"keys\" must be a list)")
        for number, key in enumerate(keys, 1):
            missing = next((f for f, kind in KEY_FIELDS.items()
                            if not isinstance(key, dict) or not isinstance(key.get(f), kind)), None)
            if missing:
                raise GenlabError(f"{self.path}: key {number} has no valid {missing!r} field; fix or remove that "
                                  "entry, or add keys to a new file with --keys")
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
