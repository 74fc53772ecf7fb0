"""The Store interface: one API over a local folder and S3.

Every object records the sha256 of its bytes when it is written (S3 object metadata, a
filesystem extended attribute locally) and every read verifies it, so a truncated or
corrupted object raises ChecksumMismatchError instead of reaching the pipeline.
"""
from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from .errors import ChecksumMismatchError

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None  # None only for objects written by other tools without a recorded hash


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha256(value) -> bool:
    """Whether `value` is a sha256 hexdigest (64 lowercase hex characters)."""
    return isinstance(value, str) and _SHA256_HEX.fullmatch(value) is not None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify(where: str, expected: str | None, actual: str) -> None:
    if expected is not None and expected != actual:
        raise ChecksumMismatchError(
            f"{where}: sha256 of the bytes read is {actual[:16]}..., the object was written with "
            f"{expected[:16]}...; the object is corrupted or was overwritten outside the store. "
            "Re-upload it from the source."
        )


class VerifyingReader:
    """Wraps a binary stream; hashes what is read and checks the recorded sha256 at EOF."""

    def __init__(self, raw: BinaryIO, where: str, expected: str | None):
        self._raw, self._where, self._expected = raw, where, expected
        self._digest = hashlib.sha256()
        self._checked = False

    def read(self, size: int = -1) -> bytes:
        whole = size is None or size < 0
        data = self._raw.read() if whole else self._raw.read(size)
        self._digest.update(data)
        if whole or (not data and size != 0):  # EOF: every byte went through the hash
            self._finish()
        return data

    def _finish(self) -> None:
        if not self._checked:
            self._checked = True
            verify(self._where, self._expected, self._digest.hexdigest())

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.read(CHUNK), b"")

    def close(self) -> None:
        self._raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Store(ABC):
    """Objects addressed by '/'-separated keys relative to the store root (see keys.check_key)."""

    uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Write (or replace) an object atomically: readers see the old or the new bytes."""

    @abstractmethod
    def put_file(self, key: str, path: Path, metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Upload a local file (multipart for large files on S3)."""

    @abstractmethod
    def put_stream(self, key: str, stream: IO[bytes], metadata: dict[str, str] | None = None) -> ObjectInfo:
        """Upload from a binary stream without holding it in memory."""

    @abstractmethod
    def create_exclusive(self, key: str, data: bytes) -> ObjectInfo:
        """Create the object only if the key does not exist yet; else raise ConflictError.

        Exactly one of several racing creators succeeds, and the object is complete when visible.
        """

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """Read a whole object, verified against its recorded sha256."""

    @abstractmethod
    def get_file(self, key: str, path: Path) -> ObjectInfo:
        """Download to `path` (atomically replaced), verified; multipart download on S3."""

    @abstractmethod
    def open_read(self, key: str) -> VerifyingReader:
        """Stream an object; the sha256 check runs when the stream reaches its end."""

    @abstractmethod
    def info(self, key: str) -> ObjectInfo:
        """Size and recorded sha256; ObjectNotFoundError if absent."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with `prefix`, in key order."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; deleting a missing key is not an error."""

    # Conveniences shared by both backends.
    def put_json(self, key: str, obj: Any) -> ObjectInfo:
        return self.put_bytes(key, json_bytes(obj), {"content-type": "application/json"})

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_bytes(key))

    def keys(self, prefix: str = "") -> list[str]:
        return [o.key for o in self.list(prefix)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON (sorted keys) so that equal records have equal hashes."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False).encode("utf-8")
