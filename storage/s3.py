"""The S3 backend (AWS or any S3-compatible service) through boto3.

Credentials, region and endpoint follow boto3's standard chain (AWS_ACCESS_KEY_ID /
AWS_SECRET_ACCESS_KEY, AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, instance roles...), or can
be passed explicitly. Requests retry with the adaptive mode; large files go through the
transfer manager (multipart, parallel parts). Each object carries the sha256 of its bytes in
its metadata, checked on every read; uploads also send an S3 SHA256 checksum so the server
rejects bytes damaged in transit.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from tqdm import tqdm

from .backend import CHUNK, ObjectInfo, Store, VerifyingReader, sha256_bytes, sha256_file, verify
from .errors import (
    AccessDeniedError,
    BucketNotFoundError,
    ConflictError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
)
from .keys import check_key, check_prefix

MiB = 1024 * 1024
_SHA_META = "sha256"
_CREDENTIALS_HINT = (
    "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE "
    "(and AWS_ENDPOINT_URL for an S3-compatible service)"
)
_DENIED_CODES = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "Forbidden",
                 "InvalidToken", "ExpiredToken", "AllAccessDisabled"}
_CONFLICT_CODES = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}
_MISSING_CODES = {"NoSuchKey", "404", "NotFound"}
_WRITE_OPS = {"put", "upload", "create", "delete"}


class S3Store(Store):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        profile: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        max_attempts: int = 8,
        multipart_threshold: int = 64 * MiB,
        multipart_chunksize: int = 16 * MiB,
        max_concurrency: int = 8,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        create_bucket: bool = False,
        check: bool = True,
    ):
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.max_attempts = max_attempts
        session = boto3.session.Session(
            profile_name=profile,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            aws_session_token=session_token,
            region_name=region,
        )
        config = Config(
            retries={"mode": "adaptive", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max(10, max_concurrency + 2),
            # S3-compatible services rarely route virtual-hosted bucket names.
            s3={"addressing_style": "path"} if endpoint_url or _endpoint_from_env() else {},
        )
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config)
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )
        creds = session.get_credentials()
        self.access_key_id = creds.access_key if creds else None
        self.endpoint = self.client.meta.endpoint_url
        self.region = self.client.meta.region_name
        if check:
            self._check_bucket(create_bucket)

    # -- helpers -------------------------------------------------------------------------
    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _rel(self, full_key: str) -> str:
        return full_key[len(self.prefix) + 1:] if self.prefix else full_key

    def _where(self, key: str) -> str:
        return f"{self.uri}/{key}" if key else self.uri

    @contextlib.contextmanager
    def _errors(self, op: str, key: str = ""):
        """Turn boto errors into StorageErrors that say what to set."""
        try:
            yield
        except StorageError:
            raise
        except (ClientError, BotoCoreError, S3UploadFailedError, RetriesExceededError) as exc:
            raise self._translate(exc, op, key) from exc

    def _translate(self, exc: BaseException, op: str, key: str) -> StorageError:
        root = _root_cause(exc)
        where = self._where(key)
        if isinstance(root, (NoCredentialsError, PartialCredentialsError)):
            return AccessDeniedError(f"{where}: no AWS credentials found for {op}; {_CREDENTIALS_HINT}")
        if isinstance(root, ClientError):
            code = str(root.response.get("Error", {}).get("Code", ""))
            if code == "NoSuchBucket":
                return self._bucket_missing()
            if code in _DENIED_CODES:
                return self._denied(code, op, key)
            if code in _CONFLICT_CODES:
                return ConflictError(f"{where}: {op} lost a conditional write ({code}): the object changed")
            if code in _MISSING_CODES:
                return ObjectNotFoundError(f"{where}: no such object")
            return StorageError(f"{where}: {op} failed: {code}: {root}")
        if isinstance(root, (BotoConnectionError, HTTPClientError, RetriesExceededError, OSError)):
            return StorageUnavailableError(
                f"{where}: cannot reach {self.endpoint} during {op} after {self.max_attempts} attempts "
                f"({type(root).__name__}: {root}); check that the service runs and that "
                "AWS_ENDPOINT_URL / AWS_REGION are right."
                + (" Nothing partial was committed: the key holds its previous version or does not exist."
                   if op in _WRITE_OPS else "")
            )
        return StorageError(f"{where}: {op} failed: {type(root).__name__}: {root}")

    def _denied(self, code: str, op: str, key: str) -> AccessDeniedError:
        key_id = self.access_key_id or "none"
        why = {
            "InvalidAccessKeyId": "the key id is unknown to the service",
            "SignatureDoesNotMatch": "the secret key does not match the key id",
        }.get(code, "the credentials lack permission")
        return AccessDeniedError(
            f"{self._where(key)}: access denied for {op} with key id {key_id} at {self.endpoint} "
            f"({code}: {why}); {_CREDENTIALS_HINT} to credentials allowed on bucket '{self.bucket}'"
        )

    def _bucket_missing(self) -> BucketNotFoundError:
        return BucketNotFoundError(
            f"s3://{self.bucket}: bucket does not exist at {self.endpoint} (region {self.region}); "
            f"create it (aws s3 mb s3://{self.bucket}), open the store with create_bucket=True, "
            "or fix the bucket name in the store URI / AWS_ENDPOINT_URL"
        )

    def _check_bucket(self, create: bool) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("404", "NoSuchBucket", "NotFound"):
                # HEAD carries no error body: a listing tells which credential problem it is.
                with self._errors("open"):
                    self.client.list_objects_v2(Bucket=self.bucket, MaxKeys=1)
                raise self._translate(exc, "open", "") from exc
        except (BotoCoreError, RetriesExceededError) as exc:
            raise self._translate(exc, "open", "") from exc
        if not create:
            raise self._bucket_missing()
        kwargs = {}
        if self.region and self.region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            with self._errors("create bucket"):
                self.client.create_bucket(Bucket=self.bucket, **kwargs)
        except StorageError as exc:  # another run created it meanwhile: that is fine
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise

    def _progress(self, size: int, what: str):
        show = size >= self.transfer.multipart_threshold
        return tqdm(total=size, unit="B", unit_scale=True, desc=what, disable=None if show else True, leave=False)

    # -- writes --------------------------------------------------------------------------
    def _put_args(self, sha: str, metadata: dict[str, str] | None) -> dict:
        meta = {k.lower(): str(v) for k, v in (metadata or {}).items() if k.lower() != "content-type"}
        args = {"Metadata": {**meta, _SHA_META: sha}, "ChecksumAlgorithm": "SHA256"}
        if metadata and "content-type" in metadata:
            args["ContentType"] = metadata["content-type"]
        return args

    def put_bytes(self, key, data, metadata=None) -> ObjectInfo:
        data = bytes(data)
        sha = sha256_bytes(data)
        with self._errors("put", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self._put_args(sha, metadata))
        return ObjectInfo(key, len(data), sha)

    def put_file(self, key, path, metadata=None) -> ObjectInfo:
        path = Path(path)
        sha, size = sha256_file(path), path.stat().st_size
        with self._errors("upload", key), self._progress(size, f"upload {key}") as bar:
            self.client.upload_file(
                str(path), self.bucket, self._key(key),
                ExtraArgs=self._put_args(sha, metadata), Config=self.transfer, Callback=bar.update,
            )
        return ObjectInfo(key, size, sha)

    def put_stream(self, key, stream: IO[bytes], metadata=None) -> ObjectInfo:
        # The sha256 must be known before the upload starts (it travels as metadata), so the
        # stream is spooled to a temporary file while hashing; memory stays bounded.
        with tempfile.TemporaryFile() as spool:
            digest, size = hashlib.sha256(), 0
            for chunk in iter(lambda: stream.read(CHUNK), b""):
                spool.write(chunk)
                digest.update(chunk)
                size += len(chunk)
            spool.seek(0)
            sha = digest.hexdigest()
            with self._errors("upload", key), self._progress(size, f"upload {key}") as bar:
                self.client.upload_fileobj(
                    spool, self.bucket, self._key(key),
                    ExtraArgs=self._put_args(sha, metadata), Config=self.transfer, Callback=bar.update,
                )
        return ObjectInfo(key, size, sha)

    def create_exclusive(self, key, data) -> ObjectInfo:
        data = bytes(data)
        sha = sha256_bytes(data)
        try:
            with self._errors("create", key):
                self.client.put_object(
                    Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*",
                    **self._put_args(sha, None),
                )
        except ConflictError:
            raise ConflictError(f"{self._where(key)}: already exists (another writer created it first)") from None
        return ObjectInfo(key, len(data), sha)

    # -- reads ---------------------------------------------------------------------------
    def info(self, key) -> ObjectInfo:
        with self._errors("head", key):
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        return ObjectInfo(key, head["ContentLength"], head.get("Metadata", {}).get(_SHA_META))

    def exists(self, key) -> bool:
        try:
            self.info(key)
            return True
        except ObjectNotFoundError:
            return False

    def open_read(self, key) -> VerifyingReader:
        with self._errors("get", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        expected = response.get("Metadata", {}).get(_SHA_META)
        return VerifyingReader(response["Body"], self._where(key), expected)

    def get_bytes(self, key) -> bytes:
        with self._errors("get", key):
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            data = response["Body"].read()
        verify(self._where(key), response.get("Metadata", {}).get(_SHA_META), sha256_bytes(data))
        return data

    def get_file(self, key, path) -> ObjectInfo:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = self.info(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.fchmod(fd, 0o644)  # like a plain download, not mkstemp's 0600
        os.close(fd)
        try:
            with self._errors("download", key), self._progress(info.size, f"download {key}") as bar:
                self.client.download_file(
                    self.bucket, self._key(key), tmp, Config=self.transfer, Callback=bar.update
                )
            verify(self._where(key), info.sha256, sha256_file(Path(tmp)))
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return info

    def list(self, prefix="") -> Iterator[ObjectInfo]:
        """Listings carry sizes but no sha256 (S3 lists do not return metadata): use info()."""
        check_prefix(prefix)
        full = f"{self.prefix}/{prefix}" if self.prefix else prefix
        with self._errors("list", prefix):
            pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=full)
            for page in pages:
                for obj in page.get("Contents", []):
                    yield ObjectInfo(self._rel(obj["Key"]), obj["Size"], None)

    def delete(self, key) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def abort_incomplete_uploads(self) -> int:
        """Abort multipart uploads under this prefix that never completed (e.g. after a crash)."""
        aborted = 0
        with self._errors("abort uploads"):
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}/" if self.prefix else ""
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted


def _root_cause(exc: BaseException) -> BaseException:
    """boto3's transfer manager wraps the real error (S3UploadFailedError around a ClientError)."""
    seen = exc
    while isinstance(seen, (S3UploadFailedError, RetriesExceededError)):
        inner = getattr(seen, "last_exception", None) or seen.__cause__ or seen.__context__
        if inner is None:
            break
        seen = inner
    return seen


def _endpoint_from_env() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
