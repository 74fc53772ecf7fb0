"""Atomic JSON records updated only by compare-and-swap.

Each write creates a new numbered key, `<root>/<name>/v000000004.json`, with an exclusive
create (S3 `If-None-Match: *`, a hard link on a local folder). Version n+1 can be created by
exactly one writer, so two runs that both read version n cannot both win: the loser gets a
ConflictError. The current record is the highest complete version; a crash mid-write leaves
no visible key, so the previous version stays the current one. Old versions are the history.

S3 `If-Match` is deliberately not used: some S3-compatible services accept two racing
If-Match writes, while exclusive creation is honoured by all that support conditional writes.
"""
from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backend import Store, json_bytes
from .errors import ConflictError, ObjectNotFoundError
from .keys import check_key

_VERSION_RE = re.compile(r"^v(\d{9})\.json$")


@dataclass(frozen=True)
class Record:
    name: str
    version: int  # 1, 2, ...; 0 means "no record yet"
    value: Any
    written_at: float
    writer: str


class Manifests:
    def __init__(self, store: Store, root: str = "manifests"):
        self.store, self.root = store, root.strip("/")

    def _key(self, name: str, version: int) -> str:
        return f"{self._prefix(name)}v{version:09d}.json"

    def _prefix(self, name: str) -> str:
        check_key(f"{self.root}/{name}")
        return f"{self.root}/{name}/"

    def versions(self, name: str) -> list[int]:
        """Every committed version of `name`, oldest first."""
        prefix = self._prefix(name)
        found = []
        for info in self.store.list(prefix):
            match = _VERSION_RE.match(info.key[len(prefix):])
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def latest_version(self, name: str) -> int:
        versions = self.versions(name)
        return versions[-1] if versions else 0

    def read(self, name: str, version: int | None = None) -> Record:
        """The record at `version` (default: the latest). ObjectNotFoundError if there is none."""
        version = self.latest_version(name) if version is None else version
        if version == 0:
            raise ObjectNotFoundError(f"{self.store.uri}: no manifest '{name}' yet (write version 1 first)")
        envelope = self.store.get_json(self._key(name, version))
        return Record(name, envelope["version"], envelope["value"], envelope["written_at"], envelope["writer"])

    def read_or_none(self, name: str) -> Record | None:
        try:
            return self.read(name)
        except ObjectNotFoundError:
            return None

    def write(self, name: str, value: Any, expected_version: int) -> Record:
        """Commit `value` as version expected_version + 1, if nobody has committed it first.

        expected_version is the version the change was based on (0 to create the record).
        """
        if expected_version > 0 and not self.store.exists(self._key(name, expected_version)):
            raise ConflictError(
                f"{self.store.uri}: manifest '{name}' has no version {expected_version} to update; "
                f"its latest is {self.latest_version(name)}. Re-read it and apply the change again."
            )
        record = Record(name, expected_version + 1, value, time.time(), f"{socket.gethostname()}:{os.getpid()}")
        envelope = {"name": name, "version": record.version, "parent": expected_version,
                    "written_at": record.written_at, "writer": record.writer, "value": value}
        try:
            self.store.create_exclusive(self._key(name, record.version), json_bytes(envelope))
        except ConflictError:
            winner = self.read(name, record.version)
            raise ConflictError(
                f"{self.store.uri}: manifest '{name}' changed: expected version {expected_version}, "
                f"but version {record.version} was written by {winner.writer} at "
                f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(winner.written_at))} UTC; "
                "re-read it and apply the change again"
            ) from None
        return record

    def update(self, name: str, change: Callable[[Any], Any], attempts: int = 10) -> Record:
        """Read-modify-write with retries: `change(old_value or None) -> new_value`.

        Use it for changes that commute (adding an entry); let a ConflictError reach the user
        when a change must not be based on a newer state than the one they saw.
        """
        for attempt in range(attempts):
            current = self.read_or_none(name)
            base = current.version if current else 0
            try:
                return self.write(name, change(current.value if current else None), base)
            except ConflictError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
        raise AssertionError("unreachable")
