"""The annotator as users run it: a real uvicorn server in a child process. Bad requests get
4xx through the real stack; killing the server (SIGKILL) loses only the unsaved image."""
from __future__ import annotations

import json
import os
import signal
import time

import httpx
import numpy as np
import pytest
from annotator_fixtures import free_port, make_checkpoint, make_images, make_task

from clickpose.annotator.serve import launch
from clickpose.annotator.task import Task

TOKEN = "t0ken-for-tests"


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotator-server")
    model, checkpoint = make_checkpoint(root / "checkpoint")
    return make_task(root / "task", model, checkpoint, make_images(root / "data", 3))


def _client(server) -> httpx.Client:
    base = server.url.split("?")[0]
    return httpx.Client(base_url=base, headers={"X-ClickPose-Token": TOKEN}, timeout=30)


def test_kill9_keeps_every_accepted_image_and_bad_requests_change_nothing(task):
    # Bound on every interface: only possible with a token, which every request must carry.
    port = free_port()
    server = launch(task.folder, host="0.0.0.0", port=port, token=TOKEN,
                    log_file=task.folder / "server.log")
    try:
        assert f"token={TOKEN}" in server.url
        base = server.url.split("?")[0]
        assert httpx.get(base + "api/task").status_code == 401
        c = _client(server)
        ids = [im["id"] for im in c.get("/api/task").json()["images"]]
        saved = {}
        for n, image in enumerate(ids[:2]):
            c.post(f"/api/images/{image}/open")
            r = c.post(f"/api/images/{image}/click",
                       json={"person": 0, "keypoint": 9, "x": 30.0 + n, "y": 40.5})
            assert r.status_code == 200, r.text
            saved[image] = c.post(f"/api/images/{image}/accept").json()
        # Bad requests through the real server: 4xx with a message, nothing changes.
        before = c.post(f"/api/images/{ids[0]}/open").json()
        bad = [
            (f"/api/images/{ids[0]}/click", b'{"person": 0, "keypoint": 9, "x": 1e9, "y": 1}',
             422),
            (f"/api/images/{ids[0]}/click", b'{"person": 0, "keypoint": "tail", "x": 1, "y": 1}',
             422),
            (f"/api/images/{ids[0]}/click", b'{"person": 0, ', 422),
            (f"/api/images/{ids[0]}/click", b'{"pad": "' + b"x" * 100_000 + b'"}', 413),
            ("/api/images/ffffffffffffffffffffffff/accept", b"{}", 404),
        ]
        for path, body, status in bad:
            r = c.post(path, content=body, headers={"Content-Type": "application/json"})
            assert r.status_code == status, (path, r.text)
            assert r.json()["detail"]
        # A body without Content-Length (chunked) is capped too.
        r = c.post(f"/api/images/{ids[0]}/click", content=iter([b"{" + b" " * 40_000, b"}"]),
                   headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert c.post(f"/api/images/{ids[0]}/open").json()["poses"] == before["poses"]
        # Edits of the third image are in flight when the server dies.
        c.post(f"/api/images/{ids[2]}/open")
        c.post(f"/api/images/{ids[2]}/click", json={"person": 0, "keypoint": 0, "x": 5, "y": 5})
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(10)
    finally:
        server.stop()

    on_disk = Task(task.folder)
    assert on_disk.status().done == 2
    for image, state in saved.items():
        data = json.loads((task.folder / "labels" / f"{image}.json").read_text())
        assert data["poses"] == state["poses"]
        assert data["provenance"]["clicks"][0]["keypoint"] == "left_wrist"
    assert on_disk.label(ids[2]) is None
    assert not list(task.folder.glob("labels/.*.tmp"))   # no half-written file left

    server = launch(task.folder, host="127.0.0.1", port=free_port())
    try:
        c = httpx.Client(base_url=server.url, timeout=30)
        info = c.get("/api/task").json()
        assert [im["accepted"] for im in info["images"]] == [True, True, False]
        for image, state in saved.items():
            assert c.post(f"/api/images/{image}/open").json()["poses"] == state["poses"]
        third = c.post(f"/api/images/{ids[2]}/open").json()
        prelabel = Task(task.folder).prelabel(ids[2])
        assert np.allclose(third["poses"]["keypoints"], prelabel.keypoints)
        _report_click_latency(c, ids[2])
    finally:
        server.stop()


def _report_click_latency(c: httpx.Client, image: str) -> None:
    """Click round trips through the real server (printed, not asserted: bench/ measures)."""
    times = []
    for i in range(10):
        start = time.perf_counter()
        r = c.post(f"/api/images/{image}/click",
                   json={"person": i % 2, "keypoint": i % 17, "x": 20.0 + i, "y": 30.0})
        times.append(time.perf_counter() - start)
        assert r.status_code == 200
    print(f"click round trip: median {1000 * np.median(times):.0f} ms, "
          f"max {1000 * max(times):.0f} ms over {len(times)} clicks")

