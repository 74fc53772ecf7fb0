"""Local-folder specifics: path traversal, symlinks, atomic writes; URI parsing."""
from __future__ import annotations

import io
from pathlib import Path

import pytest

from storage import (
    ConflictError,
    InvalidURIError,
    LocalStore,
    S3Store,
    StorageError,
    UnsafeKeyError,
    open_store,
    parse_uri,
)


def test_traversal_and_absolute_keys_refused(tmp_path):
    store = LocalStore(tmp_path / "store")
    (tmp_path / "secret.txt").write_text("outside")
    for key in ["../secret.txt", "a/../../secret.txt", "/etc/passwd", str(tmp_path / "secret.txt")]:
        with pytest.raises(UnsafeKeyError):
            store.get_bytes(key)
        with pytest.raises(UnsafeKeyError):
            store.put_bytes(key, b"overwrite")
    assert (tmp_path / "secret.txt").read_text() == "outside"
    with pytest.raises(UnsafeKeyError):
        list(store.list("../"))


def test_symlinks_out_of_the_store_refused(tmp_path):
    store = LocalStore(tmp_path / "store")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside")
    (store.root / "linkdir").symlink_to(outside, target_is_directory=True)
    (store.root / "link.txt").symlink_to(outside / "secret.txt")
    for key in ["linkdir/secret.txt", "link.txt", "linkdir/new.txt"]:
        with pytest.raises(UnsafeKeyError, match="outside the store"):
            store.get_bytes(key)
        with pytest.raises(UnsafeKeyError, match="outside the store"):
            store.put_bytes(key, b"x")
    assert not (outside / "new.txt").exists() and (outside / "secret.txt").read_text() == "outside"
    store.put_bytes("real.txt", b"in")
    assert store.keys() == ["real.txt"]  # links out are not part of the store
    (store.root / "inner").symlink_to(store.root / "real.txt")  # a link inside stays usable
    assert store.get_bytes("inner") == b"in"


def test_interrupted_writes_are_invisible(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_bytes("labels.json", b"v1")

    class Broken(io.RawIOBase):  # a source that fails after its first chunk
        def __init__(self):
            self.sent = False

        def read(self, size=-1):
            if self.sent:
                raise OSError("source went away")
            self.sent = True
            return b"v2 half"

    with pytest.raises(OSError, match="source went away"):
        store.put_stream("labels.json", Broken())
    assert store.get_bytes("labels.json") == b"v1"
    assert list((store.root / ".storage" / "tmp").iterdir()) == []
    # A crash mid-write leaves only a temporary file in the reserved folder.
    (store.root / ".storage" / "tmp" / "put-crashed.tmp").write_bytes(b"half")
    assert store.keys() == ["labels.json"] and store.get_bytes("labels.json") == b"v1"


def test_exclusive_create_leaves_no_temporary_files(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.create_exclusive("m/v1", b"a")
    with pytest.raises(ConflictError):
        store.create_exclusive("m/v1", b"b")
    assert list((store.root / ".storage" / "tmp").iterdir()) == []


def test_parse_uri():
    assert parse_uri("s3://team-data/clickpose/al/").prefix == "clickpose/al"
    assert parse_uri("s3://team-data").prefix == ""
    assert parse_uri("file:///data/al").path == Path("/data/al")
    assert parse_uri("/data/al").scheme == "file"
    assert str(parse_uri("s3://team-data/x")) == "s3://team-data/x"
    for bad in ["s3://Bad_Bucket/x", "s3://ab/x", "gs://bucket/x", "", "s3://bucket/a/../b"]:
        with pytest.raises(InvalidURIError):
            parse_uri(bad)


def test_open_store_picks_the_backend(tmp_path):
    assert isinstance(open_store(tmp_path / "a"), LocalStore)
    assert isinstance(open_store(str(tmp_path / "b")), LocalStore)
    s3 = open_store("s3://some-bucket/p", endpoint_url="http://127.0.0.1:9", check=False,
                    access_key_id="AKIAX", secret_access_key="x", region="us-east-1")
    assert isinstance(s3, S3Store) and s3.uri == "s3://some-bucket/p"


def test_default_store_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("CLICKPOSE_STORE", raising=False)
    monkeypatch.setenv("CLICKPOSE_WORK", str(tmp_path / "work"))
    assert open_store().uri == str((tmp_path / "work" / "store").resolve())
    monkeypatch.setenv("CLICKPOSE_STORE", str(tmp_path / "team"))
    store = open_store()
    assert isinstance(store, LocalStore) and store.root == (tmp_path / "team").resolve()


def test_object_and_folder_clash_is_explained(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.put_bytes("a", b"object")
    with pytest.raises(StorageError, match="both an object and a folder"):
        store.put_bytes("a/b", b"x")
    store.put_bytes("c/d", b"x")
    with pytest.raises(StorageError, match="folder of other objects"):
        store.put_bytes("c", b"x")
    assert store.keys() == ["a", "c/d"]
    assert oct((store.root / "a").stat().st_mode & 0o777) == oct(0o644)
