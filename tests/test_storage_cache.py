"""The local media cache: bounded, LRU, hash-verified, shared by threads and processes."""
from __future__ import annotations

import hashlib
import multiprocessing
import os
import random
import threading

import pytest
from s3_server import StoreSpec

from storage import ChecksumMismatchError, MediaCache, StorageError

KB = 1024


def _fill(store, count: int, size: int) -> dict[str, str]:
    """Put `count` random objects of `size` bytes; returns key -> sha256."""
    expected = {}
    for i in range(count):
        data = os.urandom(size)
        key = f"images/frame {i:02d}.jpg"
        store.put_bytes(key, data)
        expected[key] = hashlib.sha256(data).hexdigest()
    return expected


def test_lru_eviction_keeps_recently_used(store, tmp_path):
    expected = _fill(store, 3, 40 * KB)
    a, b, c = sorted(expected)
    cache = MediaCache(tmp_path / "cache", max_bytes=100 * KB)  # room for two
    path_a = cache.path(store, a)
    assert path_a.suffix == ".jpg" and hashlib.sha256(path_a.read_bytes()).hexdigest() == expected[a]
    path_b = cache.path(store, b)
    os.utime(path_b, (1, 1))  # b was used long ago, a just now
    cache.path(store, a)
    cache.path(store, c)
    assert path_a.exists() and not path_b.exists()
    assert cache.stats().entries == 2 and cache.stats().bytes <= 100 * KB


def test_pinned_entries_survive_eviction(store, tmp_path):
    expected = _fill(store, 4, 30 * KB)
    keys = sorted(expected)
    cache = MediaCache(tmp_path / "cache", max_bytes=40 * KB)  # room for one
    with cache.pinned(store, keys[0]) as held:
        for key in keys[1:]:
            cache.path(store, key)
        assert hashlib.sha256(held.read_bytes()).hexdigest() == expected[keys[0]]
    cache.evict()
    assert cache.stats().bytes <= 40 * KB


def test_wrong_hash_is_refused_and_not_cached(store, tmp_path):
    expected = _fill(store, 1, 10 * KB)
    (key,) = expected
    cache = MediaCache(tmp_path / "cache", max_bytes=100 * KB)
    with pytest.raises(ChecksumMismatchError, match="cache"):
        cache.path(store, key, sha256="0" * 64)
    assert cache.stats().entries == 0
    assert cache.path(store, key, sha256=expected[key]).exists()


def test_malformed_hash_is_refused_not_used_as_a_path(store, tmp_path):
    expected = _fill(store, 1, 1 * KB)
    (key,) = expected
    outside = tmp_path / "outside.jpg"  # where objects/../../outside.jpg would point
    outside.write_bytes(b"not the image")
    cache = MediaCache(tmp_path / "cache", max_bytes=100 * KB)
    for bad in ("../outside", expected[key].upper(), expected[key] + "\n"):
        with pytest.raises(StorageError, match="64 lowercase hex"):
            cache.path(store, key, sha256=bad)
    assert cache.stats().entries == 0 and outside.read_bytes() == b"not the image"


def _read_many(cache: MediaCache, store, expected: dict[str, str], reads: int, seed: int) -> int:
    rng, good = random.Random(seed), 0
    for _ in range(reads):
        key = rng.choice(sorted(expected))
        with cache.open(store, key) as f:
            good += hashlib.sha256(f.read()).hexdigest() == expected[key]
    return good


def test_concurrent_threads_always_read_verified_bytes(store, tmp_path):
    expected = _fill(store, 6, 40 * KB)
    cache = MediaCache(tmp_path / "cache", max_bytes=100 * KB)  # constant eviction
    results, errors = [], []

    def reader(seed: int) -> None:
        try:
            results.append(_read_many(cache, store, expected, 25, seed))
        except Exception as exc:  # noqa: BLE001 (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=reader, args=(s,)) for s in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [25] * 6
    assert cache.downloads > len(expected)  # entries were evicted and fetched again meanwhile
    cache.evict()
    assert cache.stats().bytes <= 100 * KB


def _process_reader(spec: StoreSpec, cache_root: str, expected: dict, seed: int, queue) -> None:
    try:
        cache = MediaCache(cache_root, max_bytes=100 * KB)
        good = _read_many(cache, spec.open(), expected, 30, seed)
        queue.put((good, cache.downloads))
    except Exception as exc:  # noqa: BLE001 (the parent asserts on it)
        queue.put(repr(exc))


def test_two_processes_share_one_cache(store_spec, tmp_path):
    expected = _fill(store_spec.open(), 6, 40 * KB)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_process_reader, args=(store_spec, str(tmp_path / "cache"), expected, s, queue))
               for s in (1, 2)]
    for w in workers:
        w.start()
    outcomes = [queue.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert all(isinstance(o, tuple) for o in outcomes), outcomes   # else a child's error
    assert [good for good, _ in outcomes] == [30, 30], outcomes
    # Both read through one folder: some reads were served from it, and it holds entries.
    assert sum(downloads for _, downloads in outcomes) < 60
    shared = MediaCache(tmp_path / "cache", max_bytes=100 * KB).stats()
    assert 1 <= shared.entries and shared.bytes <= 100 * KB
