"""Where data, labels, checkpoints and round records live: a local folder or S3.

    from storage import open_store, Datasets, ModelRegistry, MediaCache
    store = open_store("s3://team-bucket/clickpose")   # or a local folder
"""
from .backend import ObjectInfo, Store
from .cache import MediaCache
from .datasets import DatasetDiff, DatasetFormatError, Datasets, DatasetVersion, PoolImage
from .errors import (
    AccessDeniedError,
    BucketNotFoundError,
    ChecksumMismatchError,
    ConflictError,
    InvalidURIError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    UnsafeKeyError,
)
from .local import LocalStore
from .manifest import Manifests, Record
from .registry import ModelRecord, ModelRegistry
from .s3 import S3Store
from .store import STORE_ENV, default_store_uri, open_store
from .uri import StoreURI, parse_uri

__all__ = [
    "STORE_ENV",
    "AccessDeniedError",
    "BucketNotFoundError",
    "ChecksumMismatchError",
    "ConflictError",
    "DatasetDiff",
    "DatasetFormatError",
    "DatasetVersion",
    "Datasets",
    "InvalidURIError",
    "LocalStore",
    "Manifests",
    "MediaCache",
    "ModelRecord",
    "ModelRegistry",
    "ObjectInfo",
    "ObjectNotFoundError",
    "PoolImage",
    "Record",
    "S3Store",
    "StorageError",
    "StorageUnavailableError",
    "Store",
    "StoreURI",
    "UnsafeKeyError",
    "default_store_uri",
    "open_store",
    "parse_uri",
]
