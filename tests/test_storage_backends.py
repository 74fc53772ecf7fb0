"""The Store contract, run against a local folder and a real S3 server (SeaweedFS)."""
from __future__ import annotations

import hashlib
import io
import os
import threading

import pytest

from storage import (
    ChecksumMismatchError,
    ConflictError,
    Manifests,
    ObjectNotFoundError,
    UnsafeKeyError,
    open_store,
)

MiB = 1024 * 1024


def test_round_trip_bytes_json_and_listing(store):
    info = store.put_bytes("labels/round-1.json", b'{"a": 1}')
    assert info.size == 8 and info.sha256 == hashlib.sha256(b'{"a": 1}').hexdigest()
    store.put_json("labels/round-2.json", {"persons": [1, 2]})
    store.put_bytes("images/0001.jpg", b"\xff\xd8jpeg")
    assert store.get_bytes("labels/round-1.json") == b'{"a": 1}'
    assert store.get_json("labels/round-2.json") == {"persons": [1, 2]}
    assert store.keys("labels/") == ["labels/round-1.json", "labels/round-2.json"]
    assert store.keys() == ["images/0001.jpg", "labels/round-1.json", "labels/round-2.json"]
    assert store.keys("labels/round-2") == ["labels/round-2.json"]
    assert store.info("images/0001.jpg").sha256 == hashlib.sha256(b"\xff\xd8jpeg").hexdigest()
    assert store.exists("images/0001.jpg") and not store.exists("images/0002.jpg")
    store.put_bytes("images/0001.jpg", b"replaced")
    assert store.get_bytes("images/0001.jpg") == b"replaced"
    store.delete("images/0001.jpg")
    store.delete("images/0001.jpg")  # deleting twice is fine
    assert not store.exists("images/0001.jpg")
    with pytest.raises(ObjectNotFoundError, match="0001.jpg"):
        store.get_bytes("images/0001.jpg")


def test_keys_with_spaces_and_unicode(store, tmp_path):
    key = "images/Zürich café/person 01 – 人.jpg"
    store.put_bytes(key, "ok ✓".encode())
    assert store.get_bytes(key) == "ok ✓".encode()
    assert store.keys("images/Zürich café/") == [key]
    store.get_file(key, tmp_path / "out.jpg")
    assert (tmp_path / "out.jpg").read_bytes() == "ok ✓".encode()


@pytest.mark.parametrize("bad", ["../escape.json", "/etc/passwd", "a/../../b", "a//b", "", "a\\b", ".storage/tmp/x"])
def test_unsafe_keys_refused(store, bad):
    with pytest.raises(UnsafeKeyError):
        store.put_bytes(bad, b"x")
    with pytest.raises(UnsafeKeyError):
        store.get_bytes(bad)


def test_streaming_put_and_get(store):
    payload = os.urandom(3 * MiB + 17)
    info = store.put_stream("stream/blob.bin", io.BytesIO(payload))
    assert info.size == len(payload)
    with store.open_read("stream/blob.bin") as reader:
        chunks = list(iter(lambda: reader.read(256 * 1024), b""))
    assert len(chunks) > 10 and b"".join(chunks) == payload


def test_zero_byte_reads_do_not_end_the_stream(store):
    store.put_bytes("stream/small.bin", b"intact bytes")
    with store.open_read("stream/small.bin") as reader:
        assert reader.read(0) == b""  # not EOF: must not run the sha256 check on nothing
        assert reader.read(6) == b"intact" and reader.read() == b" bytes"


def test_large_file_multipart_upload_and_download(store_spec, tmp_path):
    # 17 MiB with 5 MiB parts: 4 parts each way on S3 (the transfer manager), one file locally.
    options = dict(store_spec.options)
    if store_spec.backend == "s3":
        options.update(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=4)
    store = open_store(store_spec.uri, **options)
    source = tmp_path / "checkpoint.pt"
    source.write_bytes(os.urandom(17 * MiB))
    info = store.put_file("models/checkpoint.pt", source)
    assert info.size == 17 * MiB
    target = tmp_path / "down" / "checkpoint.pt"
    store.get_file("models/checkpoint.pt", target)
    assert target.read_bytes() == source.read_bytes()
    assert store.info("models/checkpoint.pt").sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    if store_spec.backend == "s3":  # really went through multipart: the ETag says how many parts
        head = store.client.head_object(Bucket=store.bucket, Key=store._key("models/checkpoint.pt"))
        assert head["ETag"].strip('"').endswith("-4")


def _corrupt(store, store_spec, key: str, data: bytes) -> None:
    """Change the stored bytes behind the store's back, keeping the recorded sha256."""
    if store_spec.backend == "local":
        with open(store.root / key, "r+b") as f:
            f.write(data)
    else:
        full = store._key(key)
        meta = store.client.head_object(Bucket=store.bucket, Key=full)["Metadata"]
        store.client.put_object(Bucket=store.bucket, Key=full, Body=data, Metadata=meta)


def test_checksum_mismatch_detected_on_every_read_path(store, store_spec, tmp_path):
    store.put_bytes("labels/set.json", b'{"annotations": [1, 2, 3]}')
    _corrupt(store, store_spec, "labels/set.json", b'{"annotations": [1, 2, 4]}')
    with pytest.raises(ChecksumMismatchError, match="labels/set.json"):
        store.get_bytes("labels/set.json")
    with pytest.raises(ChecksumMismatchError):
        store.get_file("labels/set.json", tmp_path / "set.json")
    assert not (tmp_path / "set.json").exists()  # a failed download leaves nothing behind
    with pytest.raises(ChecksumMismatchError), store.open_read("labels/set.json") as reader:
        reader.read()


def test_exclusive_create_has_one_winner(store):
    store.create_exclusive("locks/round-3", b"first")
    with pytest.raises(ConflictError, match="already exists"):
        store.create_exclusive("locks/round-3", b"second")
    assert store.get_bytes("locks/round-3") == b"first"


def test_racing_writers_on_one_manifest_exactly_one_wins(store_spec):
    manifests = Manifests(store_spec.open())
    first = manifests.write("rounds/people", {"round": 0}, expected_version=0)
    writers, results = 8, {}
    barrier = threading.Barrier(writers)

    def writer(i: int) -> None:
        own = Manifests(store_spec.open())  # each run has its own client, as separate machines would
        barrier.wait()
        try:
            results[i] = own.write("rounds/people", {"round": 1, "writer": i}, expected_version=first.version)
        except ConflictError as exc:
            results[i] = exc

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, r in results.items() if not isinstance(r, Exception)]
    assert len(winners) == 1, results
    losers = [r for r in results.values() if isinstance(r, ConflictError)]
    assert len(losers) == writers - 1
    assert "expected version 1" in str(losers[0]) and "re-read" in str(losers[0])
    latest = manifests.read("rounds/people")
    assert latest.version == 2 and latest.value == {"round": 1, "writer": winners[0]}
    assert manifests.versions("rounds/people") == [1, 2]
    assert manifests.read("rounds/people", 1).value == {"round": 0}  # history is kept


def test_manifest_update_retries_commuting_changes(store_spec):
    errors = []

    def add(i: int) -> None:
        try:
            Manifests(store_spec.open()).update("registry/tags", lambda v: sorted((v or []) + [i]))
        except Exception as exc:  # noqa: BLE001 (reported below: a thread's exception would be lost)
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    record = Manifests(store_spec.open()).read("registry/tags")
    assert record.value == [0, 1, 2, 3] and record.version == 4


def test_stale_or_unknown_expected_version_is_a_conflict(store):
    manifests = Manifests(store)
    manifests.write("m", {"v": 1}, 0)
    manifests.write("m", {"v": 2}, 1)
    with pytest.raises(ConflictError, match="expected version 1"):
        manifests.write("m", {"v": "stale"}, 1)
    with pytest.raises(ConflictError, match="no version 7"):
        manifests.write("m", {"v": "bogus"}, 7)
    with pytest.raises(ObjectNotFoundError, match="no manifest 'other'"):
        manifests.read("other")
