"""Store URIs: a local folder (`/data/al`, `file:///data/al`, `./al`) or `s3://bucket/prefix`."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

from .errors import InvalidURIError

# S3 bucket naming rules (lowercase letters, digits, dots, hyphens; 3..63 characters).
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class StoreURI:
    scheme: str  # "file" or "s3"
    path: Path | None = None  # local root, for scheme "file"
    bucket: str = ""  # for scheme "s3"
    prefix: str = ""  # for scheme "s3": "" or "a/b" (no leading/trailing slash)

    def __str__(self) -> str:
        if self.scheme == "file":
            return str(self.path)
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"


def parse_uri(uri: str | Path) -> StoreURI:
    """Parse a store location; relative local paths are resolved against the working directory."""
    if isinstance(uri, Path):
        return StoreURI("file", path=uri.expanduser().resolve())
    text = str(uri).strip()
    if not text:
        raise InvalidURIError("store URI is empty: give a local folder or s3://bucket/prefix")
    if text.startswith("s3://"):
        return _parse_s3(text)
    if text.startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise InvalidURIError(f"{text}: file URIs must be local (file:///path)")
        return StoreURI("file", path=Path(unquote(parsed.path)).expanduser().resolve())
    if "://" in text:
        scheme = text.split("://", 1)[0]
        raise InvalidURIError(f"{text}: unsupported scheme '{scheme}'; use a local folder or s3://bucket/prefix")
    return StoreURI("file", path=Path(text).expanduser().resolve())


def _parse_s3(text: str) -> StoreURI:
    rest = text[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise InvalidURIError(
            f"{text}: '{bucket}' is not a valid S3 bucket name "
            "(3-63 lowercase letters, digits, dots or hyphens)"
        )
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise InvalidURIError(f"{text}: prefix '{prefix}' has an empty, '.' or '..' segment")
    return StoreURI("s3", bucket=bucket, prefix=prefix)
