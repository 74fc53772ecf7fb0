"""S3-only behaviour against the real server: credentials, buckets, environment, a crash mid-upload."""
from __future__ import annotations

import os
import threading

import pytest
from s3_server import SeaweedServer, new_bucket_name

from storage import (
    AccessDeniedError,
    BucketNotFoundError,
    ModelRegistry,
    S3Store,
    StorageUnavailableError,
    open_store,
)

MiB = 1024 * 1024


@pytest.fixture
def bucket(s3_server):
    name = new_bucket_name()
    s3_server.client().create_bucket(Bucket=name)
    return name


def test_wrong_secret_says_which_key_and_what_to_set(s3_server, bucket):
    options = {**s3_server.options(), "secret_access_key": "not-the-secret"}
    with pytest.raises(AccessDeniedError) as err:
        open_store(f"s3://{bucket}/al", **options)
    message = str(err.value)
    assert f"s3://{bucket}" in message and s3_server.access_key in message
    assert "secret key does not match" in message
    assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE" in message
    assert "not-the-secret" not in message  # secrets never appear in errors


def test_unknown_key_id(s3_server, bucket):
    options = {**s3_server.options(), "access_key_id": "AKIAUNKNOWN000000000"}
    with pytest.raises(AccessDeniedError, match="AKIAUNKNOWN000000000.*unknown to the service"):
        open_store(f"s3://{bucket}/al", **options)


def test_no_credentials_at_all(s3_server, bucket, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(AccessDeniedError, match="no AWS credentials found.*AWS_PROFILE"):
        open_store(f"s3://{bucket}/al", endpoint_url=s3_server.endpoint, region="us-east-1")


def test_missing_bucket_says_what_to_do(s3_server):
    name = new_bucket_name()
    with pytest.raises(BucketNotFoundError) as err:
        open_store(f"s3://{name}/al", **s3_server.options())
    message = str(err.value)
    assert f"s3://{name}: bucket does not exist at {s3_server.endpoint}" in message
    assert "create_bucket=True" in message and "aws s3 mb" in message
    store = open_store(f"s3://{name}/al", **s3_server.options(), create_bucket=True)
    store.put_bytes("x", b"1")
    assert s3_server.client().get_object(Bucket=name, Key="al/x")["Body"].read() == b"1"


def test_configured_from_environment_only(s3_server, bucket, monkeypatch):
    """The way a team points the pipeline at its bucket: standard AWS variables, no code."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    store = open_store(f"s3://{bucket}/team/project")
    assert isinstance(store, S3Store) and store.endpoint == s3_server.endpoint
    store.put_json("hello.json", {"ok": True})
    assert s3_server.client().head_object(Bucket=bucket, Key="team/project/hello.json")["ContentLength"] > 0


def test_server_killed_mid_upload_fails_clearly_and_commits_nothing(tmp_path):
    server = SeaweedServer(tmp_path / "weed").start()
    try:
        uri = f"s3://{new_bucket_name()}/al"
        options = {**server.options(), "create_bucket": True, "max_attempts": 3, "connect_timeout": 1,
                   "read_timeout": 10, "multipart_threshold": 5 * MiB, "multipart_chunksize": 5 * MiB,
                   "max_concurrency": 2}
        registry = ModelRegistry(open_store(uri, **options))
        small = tmp_path / "small.pt"
        small.write_bytes(b"weights v1")
        dataset = {"name": "people", "version": 1}
        registry.register([small], config={}, schema={}, metrics={"ap": 0.5}, dataset=dataset)
        big = tmp_path / "big.pt"
        big.write_bytes(os.urandom(40 * MiB))

        # Kill the server from another thread once the second part of the upload is on its way.
        parts_sent, killed = [], threading.Event()

        def kill_after_first_part(**_):
            parts_sent.append(1)
            if len(parts_sent) == 2 and not killed.is_set():
                killer = threading.Thread(target=server.kill)
                killer.start()
                killer.join()
                killed.set()

        registry.store.client.meta.events.register("before-send.s3.UploadPart", kill_after_first_part)
        with pytest.raises(StorageUnavailableError) as err:
            registry.register([big], config={}, schema={}, metrics={"ap": 0.9}, dataset=dataset)
        assert killed.is_set()
        message = str(err.value)
        assert f"cannot reach {server.endpoint}" in message and "Nothing partial was committed" in message

        server.start(same_ports=True)  # same data folder: what survived the crash
        store = open_store(uri, **options)
        after = ModelRegistry(store)
        assert [m.id for m in after.list()] == ["m0001"]  # the manifest never saw the big model
        assert not [k for k in store.keys("registry/files/") if k.endswith("big.pt")]
        assert after.download("m0001", tmp_path / "m1")["small.pt"].read_bytes() == b"weights v1"
        store.abort_incomplete_uploads()
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
        # Retrying the operation once the service is back succeeds and is verified end to end.
        record = after.register([big], config={}, schema={}, metrics={"ap": 0.9}, dataset=dataset)
        assert record.id == "m0002"
        assert after.download("m0002", tmp_path / "m2")["big.pt"].read_bytes() == big.read_bytes()
    finally:
        server.stop()
