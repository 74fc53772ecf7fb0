"""Object keys: '/'-separated relative names, the same rules on every backend."""
from __future__ import annotations

from .errors import UnsafeKeyError

# Reserved for the local backend's temporary files; never a user key.
RESERVED_PREFIX = ".storage"


def check_key(key: str) -> str:
    """Return `key` if it is a safe relative key, else raise UnsafeKeyError saying why."""
    if not isinstance(key, str) or not key:
        raise UnsafeKeyError(f"key {key!r}: must be a non-empty string such as 'images/0001.jpg'")
    if "\x00" in key or "\\" in key:
        raise UnsafeKeyError(f"key {key!r}: NUL and backslash are not allowed; use '/' between parts")
    if key.startswith("/"):
        raise UnsafeKeyError(f"key {key!r}: absolute keys are refused; use a path relative to the store")
    parts = key.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise UnsafeKeyError(f"key {key!r}: empty, '.' and '..' parts are refused (path traversal)")
    if parts[0] == RESERVED_PREFIX:
        raise UnsafeKeyError(f"key {key!r}: '{RESERVED_PREFIX}/' is reserved for the store itself")
    return key


def check_prefix(prefix: str) -> str:
    """A listing prefix: '' (everything) or a key-like string, possibly ending with '/'."""
    if prefix == "":
        return prefix
    check_key(prefix.rstrip("/") or "/")
    return prefix
