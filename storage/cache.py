"""A local media cache for objects of a (remote) store: FiftyOne and the annotator read files.

Entries are named by the sha256 of their bytes, downloaded to a temporary file, verified and
renamed into place, so readers only ever see complete, verified files. The cache is bounded:
after each download the least recently used entries are evicted (access time is the file's
mtime, refreshed on every hit). Eviction skips entries that a reader holds with `pinned()` or
`open()` (a shared flock), and a file removed under a reader that already opened it stays
readable, so threads and processes can share one cache folder. Pinned entries are never
evicted, so while many are held the cache can exceed max_bytes until they are released.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from .backend import Store, is_sha256, sha256_file, verify
from .errors import StorageError


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int


class MediaCache:
    def __init__(self, root: Path, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"MediaCache: max_bytes must be positive, got {max_bytes}")
        self.root, self.max_bytes = Path(root), int(max_bytes)
        self._objects = self.root / "objects"
        self._tmp = self.root / "tmp"
        self._objects.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._lock_path = self.root / "evict.lock"
        self._lock_path.touch(exist_ok=True)
        self.downloads = 0  # fetches from the store by this instance (misses)

    # -- public --------------------------------------------------------------------------
    def path(self, store: Store, key: str, sha256: str | None = None) -> Path:
        """Local path of the verified object; it may be evicted later: prefer pinned()."""
        with self._hold(store, key, sha256) as (path, _):
            return path

    @contextlib.contextmanager
    def pinned(self, store: Store, key: str, sha256: str | None = None) -> Iterator[Path]:
        """The local path, guaranteed not to be evicted while the block runs."""
        with self._hold(store, key, sha256) as (path, _):
            yield path

    @contextlib.contextmanager
    def open(self, store: Store, key: str, sha256: str | None = None) -> Iterator[BinaryIO]:
        """An open binary file of the cached object (pinned while open)."""
        with self._hold(store, key, sha256) as (_, f):
            yield f

    def stats(self) -> CacheStats:
        entries = self._entries()
        return CacheStats(len(entries), sum(size for _, size, _ in entries))

    def evict(self) -> int:
        """Remove least recently used, unpinned entries until the cache fits; returns bytes freed."""
        with open(self._lock_path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # one evictor at a time, across processes
            entries = self._entries()
            total = sum(size for _, size, _ in entries)
            freed = 0
            for path, size, _ in sorted(entries, key=lambda e: e[2]):
                if total - freed <= self.max_bytes:
                    break
                if _remove_unless_pinned(path):
                    freed += size
            return freed

    # -- internals -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _hold(self, store: Store, key: str, sha256: str | None):
        """Yield (path, file) with a shared lock held, so that eviction skips the entry."""
        sha = sha256 or self._recorded_sha(store, key)
        if not is_sha256(sha):  # it names the cache file
            raise StorageError(
                f"{store.uri}/{key}: sha256 {sha!r} is not 64 lowercase hex characters; pass the "
                "sha256 the store recorded (PoolImage.sha256), or none to read it from the store"
            )
        target = self._entry(sha, key)
        f = self._open_hit(target)
        if f is None:  # a miss: the new entry is locked before it becomes visible
            f = self._download(store, key, sha, target)
            self.evict()
        try:
            yield target, f
        finally:
            f.close()

    def _open_hit(self, target: Path) -> BinaryIO | None:
        try:
            f = open(target, "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            return None
        fcntl.flock(f, fcntl.LOCK_SH)
        if os.fstat(f.fileno()).st_nlink == 0:  # evicted between open() and flock()
            f.close()
            return None
        os.utime(target)  # a hit: refresh its place in the LRU order
        return f

    def _recorded_sha(self, store: Store, key: str) -> str:
        sha = store.info(key).sha256
        if sha is None:
            raise StorageError(
                f"{store.uri}/{key}: no sha256 recorded for this object; pass sha256= (from the pool) "
                "or re-upload it through the store"
            )
        return sha

    def _entry(self, sha: str, key: str) -> Path:
        suffix = PurePosixPath(key).suffix.lower()[:10]  # keep the extension: media type detection
        return self._objects / sha[:2] / f"{sha}{suffix}"

    def _download(self, store: Store, key: str, sha: str, target: Path) -> BinaryIO:
        fd, tmp = tempfile.mkstemp(prefix="get-", suffix=".tmp", dir=self._tmp)
        os.close(fd)
        try:
            store.get_file(key, Path(tmp))
            self.downloads += 1
            verify(f"{store.uri}/{key} (cache)", sha, sha256_file(Path(tmp)))
            f = open(tmp, "rb")  # noqa: SIM115 (the caller closes it)
            fcntl.flock(f, fcntl.LOCK_SH)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            return f
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _entries(self) -> list[tuple[Path, int, float]]:
        found = []
        for sub in self._objects.iterdir():
            for entry in os.scandir(sub):
                try:
                    st = entry.stat()
                except FileNotFoundError:
                    continue
                found.append((Path(entry.path), st.st_size, st.st_mtime))
        return found


def _remove_unless_pinned(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # a reader holds it
            path.unlink()
            return True
    except FileNotFoundError:
        return False
