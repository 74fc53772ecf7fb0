"""Content-addressed JSON blobs: the large parts of records (pools, labels), stored once by hash.

A blob is written before the manifest that names it, so a committed manifest never points
to a missing or partial object.
"""
from __future__ import annotations

import json
from typing import Any

from .backend import Store, json_bytes, sha256_bytes
from .errors import ChecksumMismatchError


class Blobs:
    def __init__(self, store: Store, root: str):
        self.store, self.root = store, root.strip("/")

    def put_json(self, obj: Any) -> str:
        """Store `obj` (idempotent) and return its key."""
        data = json_bytes(obj)
        sha = sha256_bytes(data)
        key = f"{self.root}/sha256/{sha[:2]}/{sha}.json"
        if not self.store.exists(key):
            self.store.put_bytes(key, data, {"content-type": "application/json"})
        return key

    def get_json(self, key: str) -> Any:
        data = self.store.get_bytes(key)
        expected = key.rsplit("/", 1)[-1].removesuffix(".json")
        if sha256_bytes(data) != expected:
            raise ChecksumMismatchError(f"{self.store.uri}/{key}: content does not match its address")
        return json.loads(data)
