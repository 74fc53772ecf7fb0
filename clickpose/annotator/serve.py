"""Running the annotator: in this process (uvicorn), or as a child process that a notebook,
FiftyOne's annotate() or a test starts and stops."""
from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from clickpose.annotator.security import is_loopback, require_token_off_loopback

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
TOKEN_ENV = "CLICKPOSE_ANNOTATOR_TOKEN"


def page_url(host: str, port: int, token: str | None = None) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    shown = f"[{shown}]" if ":" in shown else shown
    return f"http://{shown}:{port}/" + (f"?token={quote(token)}" if token else "")


def serve(task_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          token: str | None = None, checkpoint: str | Path | None = None,
          log_level: str = "warning") -> None:
    """Serve the annotator for `task_dir` until interrupted."""
    import uvicorn

    from clickpose.annotator.server import create_app, load_task_model
    from clickpose.annotator.task import Task

    token = token or os.environ.get(TOKEN_ENV) or None
    require_token_off_loopback(host, token)
    task = Task(task_dir)
    model = load_task_model(task, checkpoint)
    app = create_app(task_dir, model=model, token=token)
    print(f"annotator for task '{task.name}' ({len(task.images)} images): "
          f"{page_url(host, port, token)}", flush=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


def _require_free_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            raise OSError(f"cannot listen on {host}:{port} ({e.strerror}); another annotator "
                          "may still run there: stop it (results.stop_editor()) or pass "
                          "another port (port=...)") from None


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str

    def stop(self, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def launch(task_dir: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
           token: str | None = None, checkpoint: str | Path | None = None,
           wait_seconds: float = 120.0, log_file: str | Path | None = None) -> ServerProcess:
    """Start the annotator in a child process and wait until it answers."""
    import httpx

    if not is_loopback(host) and not token:
        token = secrets.token_urlsafe(24)
    _require_free_port(host, port)
    command = [sys.executable, "-m", "clickpose.annotator", str(task_dir), "--host", host,
               "--port", str(port)]
    if checkpoint:
        command += ["--checkpoint", str(checkpoint)]
    env = dict(os.environ)
    if token:
        env[TOKEN_ENV] = token   # not on the command line, where `ps` would show it
    if log_file:
        with open(log_file, "ab") as log:   # the child keeps its own copy of the handle
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    else:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT)
    url = page_url(host, port, token)
    api = page_url(host, port) + "api/status"
    headers = {"X-ClickPose-Token": token} if token else {}
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the annotator exited with code {process.returncode}"
                               + (f"; see {log_file}" if log_file else ""))
        try:
            if httpx.get(api, headers=headers, timeout=2.0).status_code == 200:
                return ServerProcess(process, url)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    ServerProcess(process, url).stop()
    raise TimeoutError(f"the annotator did not answer on {api} within {wait_seconds} s")
