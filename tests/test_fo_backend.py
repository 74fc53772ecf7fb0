"""The `clickpose` FiftyOne annotation backend on a real dataset (its own MongoDB):
annotate() writes a pre-labelled task, the annotator's HTTP API edits it, and
load_annotations() merges the accepted images, also from another process."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import fiftyone as fo
import numpy as np
import pytest
from annotator_fixtures import make_checkpoint, make_images
from fastapi.testclient import TestClient

from clickpose.annotator.server import create_app
from clickpose.annotator.task import prelabel_person_ids
from clickpose.fo_backend import (
    ClickPoseAnnotationResults,
    annotation_status,
    import_annotation,
    request_annotation,
    wait_for_annotation,
)
from clickpose.labels_fo import add_predictions, pool_dataset

LOCAL = "http://127.0.0.1:8765"  # the address the annotator serves on


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("fo-backend")
    model, checkpoint = make_checkpoint(root / "checkpoint")
    make_images(root / "data", 3)
    dataset = pool_dataset(root / "data" / "images", "test-fo-backend", model.schema,
                           overwrite=True)
    add_predictions(dataset, model, min_score=0.0, max_persons=2, progress=False)
    yield root, model, checkpoint, dataset
    dataset.delete()


def test_backend_is_registered_in_fiftyone_config():
    entry = fo.annotation_config.backends["clickpose"]
    assert entry["config_cls"].endswith("ClickPoseBackendConfig")


def test_configured_token_is_loaded_with_the_results_but_never_stored(monkeypatch):
    from clickpose.fo_backend import ClickPoseBackendConfig

    monkeypatch.setitem(fo.annotation_config.backends, "clickpose",
                        {**fo.annotation_config.backends["clickpose"], "token": "from-config"})
    stored = ClickPoseBackendConfig("clickpose", {"gt": {"type": "keypoints"}})
    assert "token" not in json.dumps(stored.serialize())
    stored.load_credentials()          # what load_annotation_results() does in a new process
    assert stored.token == "from-config"
    stored.load_credentials(token="given")
    assert stored.token == "given"


def test_annotate_new_field_edit_and_load_in_another_process(setup, tmp_path):
    _, _, checkpoint, dataset = setup
    view = dataset.limit(2)
    results = request_annotation(view, "new_field", "gt", checkpoint, min_score=0.0,
                                 max_persons=2, task_dir=str(tmp_path / "task"))
    assert isinstance(results, ClickPoseAnnotationResults)
    assert results.status().images == 2 and results.status().done == 0
    first, second = view.values("id")
    assert [im.id for im in results.task.images] == [first, second]
    assert len(results.task.prelabel(first).scores) == 2      # pre-labelled by the model
    with TestClient(create_app(results.task_dir), base_url=LOCAL) as c:       # the model from the checkpoint
        c.post(f"/api/images/{first}/open")
        r = c.post(f"/api/images/{first}/click",
                   json={"person": 1, "keypoint": "right_knee", "x": 64.0, "y": 192.0})
        assert r.status_code == 200, r.text
        c.post(f"/api/images/{first}/remove_person", json={"person": 0})
        accepted = c.post(f"/api/images/{first}/accept").json()
        c.post(f"/api/images/{second}/click", json={"person": 0, "keypoint": 0, "x": 1, "y": 1})
        assert c.post("/api/finish").json()["complete"]

    code = textwrap.dedent(f"""
        import json
        from clickpose.settings import apply_environment_defaults
        apply_environment_defaults()
        import fiftyone as fo
        dataset = fo.load_dataset("{dataset.name}")
        results = dataset.load_annotation_results("new_field")
        status = results.status()
        dataset.load_annotations("new_field", unexpected="ignore")
        print(json.dumps({{"type": type(results).__name__, "status": status.to_dict()}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["type"] == "ClickPoseAnnotationResults"
    assert report["status"] == {"images": 2, "done": 1, "left": 1, "clicks": 1, "actions": 2,
                                "seconds": report["status"]["seconds"], "complete": True}

    dataset.reload()
    sample = dataset[first]
    people = sample.gt.keypoints
    assert [p.id for p in people] == accepted["person_ids"]
    knee = people[0].points[14]
    assert knee == pytest.approx([64.0 / 256, 192.0 / 256])
    assert people[0].visible[14] == 2
    assert sample.gt_boxes.detections[0].id == people[0].id
    assert sample.gt_clicks == 1 and sample.gt_seconds > 0
    assert dataset[second].gt is None                        # not accepted: not loaded
    assert annotation_status(dataset, "new_field").complete
    assert wait_for_annotation(dataset, "new_field", timeout=1).done == 1


def test_existing_field_keeps_ids_and_leaves_unaccepted_images_alone(setup, tmp_path):
    _, _, checkpoint, dataset = setup
    view = dataset.skip(1)
    view.clone_sample_field("predictions", "reviewed")
    before = {s.id: [(p.id, p.points) for p in s.reviewed.keypoints] for s in view}
    results = request_annotation(view, "existing", "reviewed", checkpoint,
                                 task_dir=str(tmp_path / "task"))
    edited, untouched = view.values("id")
    task = results.task
    assert set(prelabel_person_ids(task, edited)) == {i for i, _ in before[edited]}
    with pytest.raises(TimeoutError, match="0 of 2"):
        wait_for_annotation(dataset, "existing", timeout=0.2, poll_seconds=0.05)
    with TestClient(create_app(results.task_dir), base_url=LOCAL) as c:
        state = c.post(f"/api/images/{edited}/open").json()
        kept = state["person_ids"][1]
        c.post(f"/api/images/{edited}/click", json={"person": 1, "keypoint": 0, "x": 10, "y": 12})
        c.post(f"/api/images/{edited}/visibility", json={"person": 1, "keypoint": 3, "v": 1})
        c.post(f"/api/images/{edited}/visibility", json={"person": 1, "keypoint": 4, "v": 0})
        c.post(f"/api/images/{edited}/remove_person", json={"person": 0})
        c.post(f"/api/images/{edited}/accept")
        c.post(f"/api/images/{untouched}/remove_person", json={"person": 0})   # not accepted
    status = import_annotation(dataset, "existing")
    assert status.done == 1 and not status.complete
    dataset.reload()
    assert [p.id for p in dataset[edited].reviewed.keypoints] == [kept]
    person = dataset[edited].reviewed.keypoints[0]
    assert person.points[0] == pytest.approx([10 / 256, 12 / 256])
    assert person.confidence[0] == 1.0                      # a clicked point is certain
    assert person.visible[:5] == [2, person.visible[1], person.visible[2], 1, 0]
    assert all(np.isnan(person.points[4]))                   # not labelled: not drawn
    after = dataset[untouched].reviewed.keypoints
    assert [p.id for p in after] == [i for i, _ in before[untouched]]
    assert np.allclose([p.points for p in after], [pts for _, pts in before[untouched]])
    results.cleanup()
    assert not (tmp_path / "task").exists()


def test_annotate_refuses_unknown_prelabel_field_and_used_task_folder(setup, tmp_path):
    _, _, checkpoint, dataset = setup
    with pytest.raises(ValueError, match="prelabel_field 'guesses'"):
        request_annotation(dataset.limit(1), "bad_field", "gt2", checkpoint,
                           prelabel_field="guesses", task_dir=str(tmp_path / "a"))
    request_annotation(dataset.limit(1), "first", "gt3", checkpoint,
                       prelabel_field="predictions", task_dir=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="already there"):
        request_annotation(dataset.limit(1), "second", "gt3", checkpoint,
                           prelabel_field="predictions", task_dir=str(tmp_path / "b"))
    with pytest.raises(ValueError, match="checkpoint=PATH"):
        request_annotation(dataset.limit(1), "third", "gt4", None, task_dir=str(tmp_path / "c"))
