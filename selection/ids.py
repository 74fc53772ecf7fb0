"""Stable per-image numbers from an image id: seeded tie-breaks, random scores and shards.

Hashing the id (not the list position) makes a choice independent of the pool's order and of
how the pool was split into shards, and stable across processes (unlike Python's hash()).
"""
from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def stable_hash(text: str) -> int:
    """A 64-bit hash of a text, the same in every process (blake2b)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def uniform01(image_id, seed: int, salt: str = "") -> float:
    """A number in [0, 1) fixed by (seed, salt, image id)."""
    return stable_hash(f"{salt}:{seed}:{image_id}") / _SCALE


def shard_of(image_id, num_shards: int) -> int:
    """The shard (0..num_shards-1) that owns an image; the same in every process and run."""
    if num_shards < 1:
        raise ValueError(f"num_shards is {num_shards}; it must be >= 1")
    return stable_hash(f"shard:{image_id}") % num_shards
