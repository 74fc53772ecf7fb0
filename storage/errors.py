"""Errors of the storage layer: each one names the object, what went wrong and what to set or do."""
from __future__ import annotations


class StorageError(Exception):
    """Base class: anything the storage layer refuses or fails to do."""


class InvalidURIError(StorageError, ValueError):
    """A store URI that is neither a local path nor s3://bucket/prefix."""


class UnsafeKeyError(StorageError, ValueError):
    """A key that would escape the store root (`..`, absolute, symlink out) or is malformed."""


class ObjectNotFoundError(StorageError, KeyError):
    """The key does not exist in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ChecksumMismatchError(StorageError):
    """The bytes read do not hash to the sha256 recorded when the object was written."""


class ConflictError(StorageError):
    """A compare-and-swap lost: someone else wrote first. Re-read and retry."""


class BucketNotFoundError(StorageError):
    """The S3 bucket does not exist at the configured endpoint."""


class AccessDeniedError(StorageError):
    """Credentials missing, unknown or without permission."""


class StorageUnavailableError(StorageError):
    """The backend could not be reached after retries (network down, server stopped)."""
