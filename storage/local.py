"""The local-folder backend: atomic renames for writes, hard links for exclusive creation.

The sha256 of each object lives in an extended attribute of the file itself, set before the
file is renamed into place, so bytes and hash always appear together.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .backend import CHUNK, ObjectInfo, Store, VerifyingReader, sha256_bytes, verify
from .errors import ConflictError, ObjectNotFoundError, StorageError, UnsafeKeyError
from .keys import RESERVED_PREFIX, check_key, check_prefix

_SHA_ATTR = "user.clickpose.sha256"
_META_ATTR = "user.clickpose.meta"
_FILE_MODE = 0o644


class LocalStore(Store):
    def __init__(self, root: Path, create: bool = True):
        root = Path(root).expanduser()
        if create:
            root.mkdir(parents=True, exist_ok=True)
        if not root.is_dir():
            raise StorageError(f"{root}: store folder does not exist; create it or pass create=True")
        self.root = root.resolve()
        self.uri = str(self.root)
        self._tmp = self.root / RESERVED_PREFIX / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    # -- paths ---------------------------------------------------------------------------
    def _path(self, key: str) -> Path:
        """The file for `key`, refusing anything that resolves outside the root (symlinks too)."""
        check_key(key)
        path = self.root / key
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise UnsafeKeyError(
                f"{self.root}: key {key!r} resolves to {resolved}, outside the store "
                "(a symlink points out); refused"
            )
        return path

    def _temp(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(prefix="put-", suffix=".tmp", dir=self._tmp)
        os.fchmod(fd, _FILE_MODE)  # mkstemp's 0600 would hide objects from other users
        return fd, Path(name)

    # -- writes --------------------------------------------------------------------------
    def _write_temp(self, chunks: Iterator[bytes], metadata: dict[str, str] | None) -> tuple[Path, int, str]:
        import hashlib

        fd, tmp = self._temp()
        digest, size = hashlib.sha256(), 0
        try:
            with os.fdopen(fd, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                f.flush()
                os.fsync(f.fileno())
            sha = digest.hexdigest()
            _set_attr(tmp, _SHA_ATTR, sha)
            if metadata:
                _set_attr(tmp, _META_ATTR, json.dumps(metadata, sort_keys=True))
            return tmp, size, sha
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _make_parent(self, key: str, dest: Path) -> None:
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StorageError(
                f"{self.root}: cannot write {key!r}: a part of it is already an object; on a local "
                "store a key cannot be both an object and a folder"
            ) from None
        self._path(key)  # a folder created meanwhile must not be a symlink out

    def _place(self, key: str, chunks: Iterator[bytes], metadata: dict[str, str] | None) -> ObjectInfo:
        dest = self._path(key)
        tmp, size, sha = self._write_temp(chunks, metadata)
        try:
            self._make_parent(key, dest)
            if dest.is_dir():
                raise StorageError(f"{self.root}: cannot write {key!r}: it is a folder of other objects")
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return ObjectInfo(key, size, sha)

    def put_bytes(self, key, data, metadata=None) -> ObjectInfo:
        return self._place(key, iter([bytes(data)]), metadata)

    def put_file(self, key, path, metadata=None) -> ObjectInfo:
        with open(path, "rb") as f:
            return self._place(key, iter(lambda: f.read(CHUNK), b""), metadata)

    def put_stream(self, key, stream: IO[bytes], metadata=None) -> ObjectInfo:
        return self._place(key, iter(lambda: stream.read(CHUNK), b""), metadata)

    def create_exclusive(self, key, data) -> ObjectInfo:
        dest = self._path(key)
        tmp, size, sha = self._write_temp(iter([bytes(data)]), None)
        try:
            self._make_parent(key, dest)
            os.link(tmp, dest)  # atomic, fails if dest exists: exactly one creator wins
        except FileExistsError:
            raise ConflictError(f"{self.root}: {key!r} already exists (another writer created it first)") from None
        finally:
            tmp.unlink(missing_ok=True)
        return ObjectInfo(key, size, sha)

    # -- reads ---------------------------------------------------------------------------
    def _existing(self, key: str) -> Path:
        path = self._path(key)
        if not path.is_file():
            raise ObjectNotFoundError(f"{self.root}: no object {key!r}")
        return path

    def info(self, key) -> ObjectInfo:
        path = self._existing(key)
        return ObjectInfo(key, path.stat().st_size, _get_attr(path, _SHA_ATTR))

    def exists(self, key) -> bool:
        return self._path(key).is_file()

    def open_read(self, key) -> VerifyingReader:
        path = self._existing(key)
        f = open(path, "rb")  # noqa: SIM115 (keeps its bytes even if replaced meanwhile)
        expected = _get_attr_fd(f.fileno(), _SHA_ATTR)
        return VerifyingReader(f, f"{path}", expected)

    def get_bytes(self, key) -> bytes:
        path = self._existing(key)
        with open(path, "rb") as f:
            expected = _get_attr_fd(f.fileno(), _SHA_ATTR)
            data = f.read()
        verify(str(path), expected, sha256_bytes(data))
        return data

    def get_file(self, key, path) -> ObjectInfo:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, _FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as out, self.open_read(key) as src:
                shutil.copyfileobj(src, out, CHUNK)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.info(key)

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        # Walk only the deepest folder the prefix fully names.
        start = self.root / (prefix.rsplit("/", 1)[0] if "/" in prefix else "")
        if not start.is_dir() or not start.resolve().is_relative_to(self.root):
            return
        found = []
        for dirpath, dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(self.root).as_posix()
            if rel_dir == ".":
                rel_dir = ""
                dirnames[:] = [d for d in dirnames if d != RESERVED_PREFIX]
            for name in filenames:
                key = f"{rel_dir}/{name}" if rel_dir else name
                if key.startswith(prefix):
                    found.append((key, Path(dirpath) / name))
        for key, path in sorted(found):
            if path.is_symlink() and not path.resolve().is_relative_to(self.root):
                continue  # a link out of the store is not part of it
            try:
                yield ObjectInfo(key, path.stat().st_size, _get_attr(path, _SHA_ATTR))
            except FileNotFoundError:  # deleted while listing
                continue

    def delete(self, key) -> None:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return
        # Drop folders left empty, up to the root.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent


def _set_attr(path: Path, name: str, value: str) -> None:
    if hasattr(os, "setxattr"):
        try:
            os.setxattr(path, name, value.encode("utf-8"))
        except OSError as e:  # filesystem without user xattrs: reads then skip verification
            if e.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EPERM):
                raise


def _get_attr(path: Path, name: str) -> str | None:
    if not hasattr(os, "getxattr"):
        return None
    try:
        return os.getxattr(path, name).decode("utf-8")
    except OSError:
        return None


def _get_attr_fd(fd: int, name: str) -> str | None:
    if not hasattr(os, "getxattr"):
        return None
    try:
        return os.getxattr(fd, name).decode("utf-8")
    except OSError:
        return None
