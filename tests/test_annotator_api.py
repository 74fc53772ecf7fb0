"""The annotator's HTTP API in process (FastAPI TestClient): every edit goes through the
model's session, accepted images are saved with provenance, bad requests change nothing."""
from __future__ import annotations

import json

import numpy as np
import pytest
from annotator_fixtures import make_checkpoint, make_images, make_task
from fastapi.testclient import TestClient

from clickpose.annotator.security import require_token_off_loopback
from clickpose.annotator.serve import serve
from clickpose.annotator.server import create_app
from clickpose.annotator.task import Task, TaskError, TaskImage, wait_until_complete

LOCAL = "http://127.0.0.1:8765"  # the address the annotator serves on


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("annotator-api")
    model, checkpoint = make_checkpoint(root / "checkpoint")
    paths = make_images(root / "data", 3)
    return root, model, checkpoint, paths


@pytest.fixture
def client(setup, tmp_path):
    _, model, checkpoint, paths = setup
    task = make_task(tmp_path / "task", model, checkpoint, paths)
    with TestClient(create_app(task.folder, model=model), base_url=LOCAL) as c:
        c.task = task
        yield c


def _ids(client) -> list[str]:
    return [im["id"] for im in client.get("/api/task").json()["images"]]


def _kps(state) -> np.ndarray:
    return np.asarray(state["poses"]["keypoints"])


def test_task_lists_images_schema_and_status(client):
    info = client.get("/api/task").json()
    assert [im["id"] for im in info["images"]] == ["000001", "000002", "000003"]
    assert info["schema"]["keypoints"][9] == "left_wrist"
    assert info["status"] == {"images": 3, "done": 0, "left": 3, "clicks": 0, "actions": 0,
                              "seconds": 0, "complete": False}


def test_click_pins_the_point_and_moves_the_others(client):
    image = _ids(client)[0]
    before = client.post(f"/api/images/{image}/open").json()
    assert len(before["poses"]["scores"]) == 2
    after = client.post(f"/api/images/{image}/click",
                        json={"person": 0, "keypoint": "left_wrist", "x": 101.5, "y": 77.25})
    assert after.status_code == 200, after.text
    after = after.json()
    k0, k1 = _kps(before), _kps(after)
    assert k1[0, 9].tolist() == [101.5, 77.25]
    assert after["poses"]["visibility"][0][9] == 2
    others = np.delete(np.arange(17), 9)
    moved = np.linalg.norm(k1[0, others] - k0[0, others], axis=1)
    assert (moved > 0.5).sum() >= 8, moved          # the rest of the person follows
    assert after["poses"]["boxes"][0] != before["poses"]["boxes"][0]
    # A second click elsewhere keeps the first one exactly where it was put.
    again = client.post(f"/api/images/{image}/click",
                        json={"person": 0, "keypoint": 0, "x": 90, "y": 30}).json()
    assert _kps(again)[0, 9].tolist() == [101.5, 77.25]


def test_visibility_add_remove_confirm_undo(client):
    image = _ids(client)[1]
    s0 = client.post(f"/api/images/{image}/open").json()
    s1 = client.post(f"/api/images/{image}/visibility",
                     json={"person": 1, "keypoint": "nose", "v": 1}).json()
    assert s1["poses"]["visibility"][1][0] == 1
    s2 = client.post(f"/api/images/{image}/add_person", json={"box": [20, 30, 120, 220]}).json()
    assert len(s2["poses"]["scores"]) == 3 and len(s2["person_ids"]) == 3
    new_box = np.asarray(s2["poses"]["boxes"][2])
    assert new_box[0] < new_box[2] and new_box[1] < new_box[3]
    s3 = client.post(f"/api/images/{image}/remove_person", json={"person": 0}).json()
    assert s3["person_ids"] == s2["person_ids"][1:]
    s4 = client.post(f"/api/images/{image}/confirm_person", json={"person": 0}).json()
    assert s4["poses"]["scores"][0] == 1.0
    for expected in (s3, s2, s1, s0):   # undo walks back through every edit
        state = client.post(f"/api/images/{image}/undo").json()
        assert state["poses"] == expected["poses"]
        assert state["person_ids"] == expected["person_ids"]
    assert state["can_undo"] is False


def test_accept_saves_at_once_with_provenance(client):
    image = _ids(client)[0]
    client.post(f"/api/images/{image}/open")
    client.post(f"/api/images/{image}/click", json={"person": 1, "keypoint": 5, "x": 50, "y": 60})
    client.post(f"/api/images/{image}/click", json={"person": 0, "keypoint": 6, "x": 70, "y": 80,
                                                    "visible": 1})
    client.post(f"/api/images/{image}/click", json={"person": 0, "keypoint": 7, "x": 75, "y": 90})
    client.post(f"/api/images/{image}/undo")
    accepted = client.post(f"/api/images/{image}/accept").json()
    assert accepted["status"]["done"] == 1 and accepted["status"]["clicks"] == 2
    saved = json.loads((client.task.folder / "labels" / f"{image}.json").read_text())
    clicks = saved["provenance"]["clicks"]
    assert [(c["keypoint"], c["x"], c["y"], c["visible"]) for c in clicks] == [
        ("left_shoulder", 50, 60, 2), ("right_shoulder", 70, 80, 1)]
    assert clicks[0]["person_id"] == saved["person_ids"][1]
    assert [a["action"] for a in saved["provenance"]["actions"]] == ["click"] * 3 + ["undo"]
    assert saved["provenance"]["seconds"] > 0
    assert saved["poses"] == accepted["poses"]
    # Another server on the same folder starts from what was accepted.
    label = Task(client.task.folder).label(image)
    assert label.poses.keypoints[0, 6].tolist() == [70, 80]
    assert label.poses.visibility[0, 6] == 1


def test_finish_marks_the_task_complete(client):
    assert not client.task.is_complete()
    status = client.post("/api/finish").json()
    assert status["complete"] is True
    assert wait_until_complete(client.task.folder, timeout=1).complete


def test_damaged_label_file_is_named_with_its_fix_and_left_alone(client):
    image = _ids(client)[0]
    client.post(f"/api/images/{image}/accept")
    label_file = client.task.folder / "labels" / f"{image}.json"
    good = json.loads(label_file.read_text())
    for damaged, why in [(label_file.read_bytes()[:40], "line 1 column"),
                         (json.dumps({**good, "person_ids": None}).encode(), "NoneType"),
                         (json.dumps({k: v for k, v in good.items() if k != "provenance"}).encode(),
                          "field 'provenance' is missing")]:
        label_file.write_bytes(damaged)
        for r in (client.get("/api/task"), client.post(f"/api/images/{image}/open")):
            assert r.status_code == 409, r.text
            detail = r.json()["detail"]
            assert str(label_file) in detail and why in detail and "delete it" in detail
        with pytest.raises(TaskError, match="is damaged"):
            Task(client.task.folder).label(image)
        assert label_file.read_bytes() == damaged        # nothing overwritten


def test_create_task_overwrite_keeps_the_old_task_when_the_new_one_is_invalid(client):
    from clickpose.annotator.task import create_task

    task = client.task
    image = _ids(client)[0]
    client.post(f"/api/images/{image}/accept")
    bad = [TaskImage(id="no/slash", filepath=task.images[0].filepath, width=1, height=1)]
    with pytest.raises(TaskError, match="not plain names"):
        create_task(task.folder, bad, {}, task.schema, overwrite=True)
    assert Task(task.folder).label(image) is not None    # the accepted label survived
    assert [im.id for im in Task(task.folder).images] == [im.id for im in task.images]


BAD_REQUESTS = [
    # (action, body or raw bytes, expected status, words in the message)
    ("click", {"person": 0, "keypoint": 0, "x": 400, "y": 10}, 422, "outside image"),
    ("click", {"person": 0, "keypoint": 0, "x": -1, "y": 10}, 422, "outside image"),
    ("click", b'{"person": 0, "keypoint": 0, "x": NaN, "y": 10}', 422, "x"),
    ("click", {"person": 0, "keypoint": "left_tail", "x": 4, "y": 4}, 422, "unknown keypoint"),
    ("click", {"person": 0, "keypoint": 17, "x": 4, "y": 4}, 422, "outside 0..16"),
    ("click", {"person": 7, "keypoint": 0, "x": 4, "y": 4}, 422, "person 7 does not exist"),
    ("click", {"person": 0, "keypoint": 0, "x": 4, "y": 4, "visible": 0}, 422, "visible=0"),
    ("click", {"person": 0, "keypoint": 0, "x": 4}, 422, "y: Field required"),
    ("click", {"person": 0, "keypoint": 0, "x": 4, "y": 4, "admin": True}, 422, "admin"),
    ("click", b'{"person": 0, "keypoint": 0, "x": 4,', 422, "JSON"),
    ("click", b"[1, 2, 3]", 422, "valid dictionary"),
    ("click", b"x" * 20000, 413, "limit"),
    ("visibility", {"person": 0, "keypoint": 3, "v": 5}, 422, "visibility 5"),
    ("add_person", {"box": [50, 50, 10, 10]}, 422, "x1 > x0"),
    ("add_person", {"box": [0, 0, 10]}, 422, "box"),
    ("add_person", {"box": [0, 0, 10, 9999]}, 422, "outside image"),
    ("remove_person", {"person": -1}, 422, "does not exist"),
]


@pytest.mark.parametrize("action,body,status,words", BAD_REQUESTS)
def test_bad_requests_get_4xx_and_change_nothing(client, action, body, status, words):
    image = _ids(client)[2]
    client.post(f"/api/images/{image}/open")
    client.post(f"/api/images/{image}/accept")
    label_file = client.task.folder / "labels" / f"{image}.json"
    saved = label_file.read_bytes()
    before = client.post(f"/api/images/{image}/open").json()
    if isinstance(body, bytes):
        r = client.post(f"/api/images/{image}/{action}", content=body,
                        headers={"Content-Type": "application/json"})
    else:
        r = client.post(f"/api/images/{image}/{action}", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]
    after = client.post(f"/api/images/{image}/open").json()
    assert after["poses"] == before["poses"] and after["can_undo"] == before["can_undo"]
    assert label_file.read_bytes() == saved


def test_images_outside_the_task_are_404(client):
    for path in ("/api/images/..%2Ftask.json/pixels", "/api/images/nope/pixels"):
        r = client.get(path)
        assert r.status_code == 404, (path, r.text)
    for action in ("open", "accept", "undo"):
        r = client.post(f"/api/images/not-in-task/{action}")
        assert r.status_code == 404 and "not part of task" in r.json()["detail"]
    assert not (client.task.folder / "labels").exists()


def test_token_is_checked_on_every_request(setup, tmp_path):
    _, model, checkpoint, paths = setup
    task = make_task(tmp_path / "task", model, checkpoint, paths[:1])
    image = task.images[0].id
    with TestClient(create_app(task.folder, model=model, token="s3cret")) as c:
        for path in ("/", "/static/app.js", "/api/task", f"/api/images/{image}/pixels"):
            assert c.get(path).status_code == 401, path
            assert c.get(path, headers={"X-ClickPose-Token": "wrong"}).status_code == 401
        r = c.post(f"/api/images/{image}/accept")
        assert r.status_code == 401 and "token" in r.json()["detail"]
        assert not (task.folder / "labels").exists()
        assert c.get("/?token=s3cret").status_code == 200
        assert c.get(f"/api/images/{image}/pixels?token=s3cret").content[:2] == b"\xff\xd8"
        ok = c.post(f"/api/images/{image}/accept", headers={"X-ClickPose-Token": "s3cret"})
        assert ok.status_code == 200 and ok.json()["status"]["done"] == 1


def test_other_sites_cannot_reach_the_annotator(setup, tmp_path):
    _, model, checkpoint, paths = setup
    task = make_task(tmp_path / "task", model, checkpoint, paths[:1])
    image = task.images[0].id
    # A page of another site whose host name resolves to 127.0.0.1 (DNS rebinding).
    with TestClient(create_app(task.folder, model=model), base_url="http://evil.example:8765") as c:
        r = c.get("/api/task")
        assert r.status_code == 403 and "loopback" in r.json()["detail"]
    with TestClient(create_app(task.folder, model=model), base_url=LOCAL) as c:
        # A cross-site POST (a form or fetch on another site's page) changes nothing.
        r = c.post(f"/api/images/{image}/accept", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "evil.example" in r.json()["detail"]
        assert c.post("/api/finish", headers={"Origin": "null"}).status_code == 403
        assert not (task.folder / "labels").exists()
        # Reading is allowed from the page's own origin, and so are its edits.
        assert c.get("/api/task", headers={"Origin": "http://evil.example"}).status_code == 200
        ok = c.post(f"/api/images/{image}/accept", headers={"Origin": LOCAL})
        assert ok.status_code == 200 and ok.json()["status"]["done"] == 1
    # With a token, a reverse proxy may forward any Host; other sites' POSTs stay refused.
    with TestClient(create_app(task.folder, model=model, token="s3cret"),
                    base_url="http://annotate.example.org") as c:
        auth = {"X-ClickPose-Token": "s3cret"}
        assert c.get("/api/task", headers=auth).status_code == 200
        r = c.post(f"/api/images/{image}/undo", headers={**auth, "Origin": "http://evil.example"})
        assert r.status_code == 403


def test_binding_beyond_loopback_needs_a_token(tmp_path):
    require_token_off_loopback("127.0.0.1", None)
    require_token_off_loopback("::1", None)
    for host in ("0.0.0.0", "192.168.1.20", "::"):
        with pytest.raises(ValueError, match="token"):
            require_token_off_loopback(host, None)
    with pytest.raises(ValueError, match="token"):
        serve(tmp_path, host="0.0.0.0", token=None)


def test_export_accepted_images_as_coco(client, tmp_path):
    from pycocotools.coco import COCO

    from clickpose.annotator.export import export_task

    image = _ids(client)[1]
    client.post(f"/api/images/{image}/click", json={"person": 0, "keypoint": 5, "x": 40, "y": 50})
    client.post(f"/api/images/{image}/visibility", json={"person": 1, "keypoint": 5, "v": 0})
    client.post(f"/api/images/{image}/accept")
    coco = COCO(str(export_task(client.task.folder, tmp_path / "labels.json")))
    (entry,) = coco.imgs.values()
    assert entry["task_image"] == image and entry["file_name"] == "000002.jpg"
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[entry["id"]]))
    assert len(anns) == 2
    assert anns[0]["keypoints"][15:18] == [40, 50, 2]
    assert anns[1]["keypoints"][15:18] == [0, 0, 0]
    assert anns[1]["num_keypoints"] == sum(v > 0 for v in anns[1]["keypoints"][2::3])
    assert coco.cats[1]["keypoints"][5] == "left_shoulder"


def test_launch_refuses_a_port_in_use(tmp_path):
    import socket

    from clickpose.annotator.serve import launch

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(OSError, match=f"127.0.0.1:{port}.*another port"):
            launch(tmp_path, port=port)


def test_time_spent_ignores_long_idle_gaps(client):
    from clickpose.annotator.editor import IDLE_SECONDS

    image = _ids(client)[0]
    client.post(f"/api/images/{image}/open")
    editor = client.app.state.workspace.editors[image]
    editor._active_since -= 3600          # the annotator left for an hour
    client.post(f"/api/images/{image}/click", json={"person": 0, "keypoint": 1, "x": 9, "y": 9})
    saved = client.post(f"/api/images/{image}/accept").json()
    assert IDLE_SECONDS <= saved["status"]["seconds"] < IDLE_SECONDS + 30


def test_cli_create_status_export(setup, tmp_path):
    from typer.testing import CliRunner

    from clickpose.cli.main import app

    _, _, checkpoint, paths = setup
    runner = CliRunner()
    folder = paths[0].parent.parent
    made = runner.invoke(app, ["annotate", "create", str(folder), "--task", str(tmp_path / "t"),
                               "--checkpoint", str(checkpoint), "--min-score", "0",
                               "--max-persons", "2"])
    assert made.exit_code == 0, made.output
    task = Task(tmp_path / "t")
    assert [im.id for im in task.images] == ["000001", "000002", "000003"]
    assert all(task.prelabel(im.id).num_persons == 2 for im in task.images)
    status = runner.invoke(app, ["annotate", "status", str(tmp_path / "t")])
    assert "0 of 3 images accepted, 3 left" in status.output
    out = runner.invoke(app, ["annotate", "export", str(tmp_path / "t"), "--out",
                              str(tmp_path / "labels.json")])
    assert out.exit_code == 0 and json.loads((tmp_path / "labels.json").read_text())["images"] == []
    missing = runner.invoke(app, ["annotate", "status", str(tmp_path / "nowhere")])
    assert missing.exit_code == 1 and "no task.json" in missing.output
