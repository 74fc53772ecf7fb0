"""open_store: pick the backend from a URI (default: $CLICKPOSE_STORE, else a local folder)."""
from __future__ import annotations

import os
from pathlib import Path

from .backend import Store
from .local import LocalStore
from .s3 import S3Store
from .uri import parse_uri

STORE_ENV = "CLICKPOSE_STORE"


def default_store_uri() -> str:
    """$CLICKPOSE_STORE if set (e.g. s3://team-bucket/clickpose), else <work folder>/store."""
    if os.environ.get(STORE_ENV):
        return os.environ[STORE_ENV]
    work = os.environ.get("CLICKPOSE_WORK") or str(Path.cwd() / "work")
    return str(Path(work) / "store")


def open_store(uri: str | Path | None = None, **options) -> Store:
    """A Store for a local folder (`/data/al`, `file:///data/al`) or `s3://bucket/prefix`.

    Without a URI, default_store_uri() decides. S3 options (all optional; boto3's standard
    chain fills the rest): endpoint_url, region, profile, access_key_id, secret_access_key,
    session_token, max_attempts, multipart_threshold, multipart_chunksize, max_concurrency,
    connect_timeout, read_timeout, create_bucket, check. Local options: create.
    """
    parsed = parse_uri(default_store_uri() if uri is None else uri)
    if parsed.scheme == "s3":
        return S3Store(parsed.bucket, parsed.prefix, **options)
    return LocalStore(parsed.path, **options)
