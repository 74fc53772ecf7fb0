"""End to end in real headless Chromium (Debian's package, driven by Playwright): a FiftyOne
dataset is sent to the annotator, a keypoint is dragged, the person's other keypoints move,
the image is accepted, the task finished, and the label is found in the dataset after
load_annotations. Set CLICKPOSE_ANNOTATOR_SCREENSHOT=PATH to keep the page's screenshot
(scripts/annotator_screenshot.py does, for the README)."""
from __future__ import annotations

import os

import numpy as np
import pytest
from annotator_fixtures import free_port, make_checkpoint, make_images, make_task
from browser_fixtures import CHROMIUM, CHROMIUM_ARGS, needs_chromium, screen_point

from clickpose.annotator.serve import launch
from clickpose.data.synthetic import generate_dataset
from clickpose.fo_backend import request_annotation
from clickpose.fo_coco import import_coco_keypoints
from clickpose.labels_fo import keypoints_to_poses, poses_to_detections, poses_to_keypoints

pytestmark = needs_chromium


def _jittered_predictions(dataset, seed: int = 0) -> None:
    """Another detector's output, imitated: the true poses with a few pixels of noise."""
    rng = np.random.default_rng(seed)
    for sample in dataset.iter_samples(autosave=True):
        w, h = sample.metadata.width, sample.metadata.height
        poses = keypoints_to_poses(sample.keypoints, w, h, 17, detections=sample.detections)
        centres = (poses.boxes[:, :2] + poses.boxes[:, 2:]) / 2
        unlabelled = poses.visibility == 0          # a guess near the person, shown grey
        poses.keypoints[unlabelled] = np.broadcast_to(centres[:, None], poses.keypoints.shape)[
            unlabelled]
        poses.keypoints += rng.normal(0, 3.0, poses.keypoints.shape)
        poses.keypoints = np.clip(poses.keypoints, 0, [w, h])
        poses.keypoint_scores = rng.uniform(0.3, 0.95, poses.keypoint_scores.shape)
        poses.scores = rng.uniform(0.5, 0.95, poses.num_persons)
        sample["predictions"] = poses_to_keypoints(poses, w, h, hide_unlabelled=False)
        sample["predictions_boxes"] = poses_to_detections(poses, w, h)


def _circles(page, person: int) -> np.ndarray:
    return np.array(page.eval_on_selector_all(
        f'circle.kp[data-person="{person}"]',
        "els => els.map(e => [+e.getAttribute('cx'), +e.getAttribute('cy')])"))


def _topmost_keypoint(page, person: int, candidates: list[int]) -> int:
    """A keypoint of `person` not covered by another circle (so the mouse grabs it)."""
    return page.evaluate("""([person, candidates]) => {
        for (const k of candidates) {
            const c = document.querySelector(`circle.kp[data-person="${person}"][data-keypoint="${k}"]`);
            const r = c.getBoundingClientRect();
            if (document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === c) return k;
        }
        return -1;
    }""", [person, candidates])


def test_drag_a_keypoint_accept_finish_and_load(tmp_path):
    from playwright.sync_api import sync_playwright

    _, checkpoint = make_checkpoint(tmp_path / "checkpoint")
    data = generate_dataset(tmp_path / "data", 2, seed=5, size=320, max_persons=2,
                            progress=False)
    dataset = import_coco_keypoints(data, "test-annotator-browser", overwrite=True)
    dataset.compute_metadata()
    _jittered_predictions(dataset)
    results = request_annotation(dataset, "browser", "gt", checkpoint, launch=True,
                                 port=free_port(), prelabel_field="predictions",
                                 task_dir=str(tmp_path / "task"))
    first = dataset.first()
    try:
        with sync_playwright() as pw:
            browser, page = _open_annotator(pw, results.url)
            assert page.locator("#persons li").count() == len(first.predictions.keypoints)
            shot = os.environ.get("CLICKPOSE_ANNOTATOR_SCREENSHOT")
            page.screenshot(path=shot or str(tmp_path / "annotator.png"))
            before = _circles(page, 0)
            assert before.shape == (17, 2)
            k = _topmost_keypoint(page, 0, [9, 10, 7, 8, 15, 16, 0])
            assert k >= 0
            w, h = first.metadata.width, first.metadata.height
            target = np.clip(before[k] + [25.0, -15.0], 5, [w - 5, h - 5])
            hover = page.locator(f'circle.kp[data-person="0"][data-keypoint="{k}"] title')
            assert not dataset.has_sample_field("gt") and hover.text_content().startswith(
                dataset.default_skeleton.labels[k])
            page.mouse.move(*screen_point(page, *before[k]))
            page.mouse.down()
            with page.expect_response(lambda r: r.url.endswith("/click")) as answer:
                page.mouse.move(*screen_point(page, *target), steps=6)
                page.mouse.up()
            assert answer.value.status == 200
            page.wait_for_function(
                "([k, x]) => Math.abs(+document.querySelector("
                "`circle.kp[data-person='0'][data-keypoint='${k}']`).getAttribute('cx') - x) < 1",
                arg=[k, float(target[0])])
            after = _circles(page, 0)
            assert np.allclose(after[k], target, atol=1.0)
            moved = np.linalg.norm(np.delete(after - before, k, axis=0), axis=1)
            assert (moved > 0.5).sum() >= 8, moved      # the model moved the others
            # Undo (Z) puts everything back; then select the point and click the spot.
            with page.expect_response(lambda r: r.url.endswith("/undo")):
                page.keyboard.press("z")
            page.wait_for_function("document.getElementById('undo').disabled")
            assert np.allclose(_circles(page, 0), before, atol=0.01)
            page.click(f'circle.kp[data-person="0"][data-keypoint="{k}"]')
            assert page.text_content("#selected-keypoint").endswith(
                dataset.default_skeleton.labels[k])
            with page.expect_response(lambda r: r.url.endswith("/click")):
                page.mouse.click(*screen_point(page, *target))
            page.wait_for_function("!document.getElementById('undo').disabled")
            clicked = _circles(page, 0)[k]
            assert np.allclose(clicked, target, atol=1.0)
            with page.expect_response(lambda r: r.url.endswith("/visibility")):
                page.keyboard.press("o")                 # occluded
            # The page redraws after it has read the answer: wait for the redraw.
            page.wait_for_function(
                "k => document.querySelector(`circle.kp[data-person='0'][data-keypoint='${k}']`)"
                ".classList.contains('v1')", arg=k)
            kp = page.locator(f'circle.kp[data-person="0"][data-keypoint="{k}"]')
            assert "v1" in kp.get_attribute("class").split()
            # B + drag adds a person (the model proposes its keypoints); X deletes it.
            persons = page.locator("#persons li").count()
            page.keyboard.press("b")
            page.mouse.move(*screen_point(page, 0.75 * w, 0.2 * h))
            page.mouse.down()
            with page.expect_response(lambda r: r.url.endswith("/add_person")):
                page.mouse.move(*screen_point(page, 0.95 * w, 0.6 * h), steps=4)
                page.mouse.up()
            page.wait_for_function(f"document.querySelectorAll('#persons li').length === "
                                   f"{persons + 1}")
            assert _circles(page, persons).shape == (17, 2)
            with page.expect_response(lambda r: r.url.endswith("/remove_person")):
                page.keyboard.press("x")
            page.wait_for_function(f"document.querySelectorAll('#persons li').length === "
                                   f"{persons}")
            with page.expect_response(lambda r: r.url.endswith("/accept")):
                page.keyboard.press("Enter")
            page.wait_for_function("document.getElementById('status').textContent"
                                   ".startsWith('1 / 2 accepted')")
            assert page.text_content("#image-position") == "image 2 / 2"
            with page.expect_response(lambda r: r.url.endswith("/open")):
                page.keyboard.press("ArrowLeft")
            page.wait_for_function("document.getElementById('image-state').textContent"
                                   ".includes('accepted')")
            with page.expect_response(lambda r: r.url.endswith("/api/finish")):
                page.keyboard.press("Shift+F")
            browser.close()
        status = results.wait(timeout=10, poll_seconds=0.1)
        assert status.complete and status.done == 1 and status.clicks == 1
        dataset.load_annotations("browser", unexpected="ignore")
        dataset.reload()
        label = dataset[first.id].gt.keypoints[0]
        assert label.points[k] == pytest.approx(list(clicked / [w, h]), abs=1e-3)
        assert label.visible[k] == 1
        assert dataset[first.id].gt_clicks == 1
    finally:
        results.stop_editor()
        dataset.delete()


def _open_annotator(pw, url: str):
    """Headless Chromium on the annotator's page, once its first persons are drawn."""
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.goto(url)
    page.wait_for_selector('circle.kp[data-person="0"]')
    return browser, page


def test_an_image_that_fails_to_open_leaves_the_page_on_the_image_it_shows(tmp_path):
    from playwright.sync_api import sync_playwright

    model, checkpoint = make_checkpoint(tmp_path / "checkpoint")
    task = make_task(tmp_path / "task", model, checkpoint, make_images(tmp_path / "data", 3))
    first, second = task.images[0].id, task.images[1].id
    (task.folder / "prelabels" / f"{second}.json").write_text("{")   # damaged
    server = launch(task.folder, port=free_port(), log_file=tmp_path / "server.log")
    try:
        with sync_playwright() as pw:
            browser, page = _open_annotator(pw, server.url)
            with page.expect_response(lambda r: r.url.endswith("/open")) as answer:
                page.keyboard.press("ArrowRight")
            assert answer.value.status == 409
            page.wait_for_function("document.getElementById('message').textContent"
                                   ".includes('pre-label')")
            assert page.text_content("#image-position") == "image 1 / 3"
            # The next edit reaches the image on screen, not the one that failed to open.
            with page.expect_response(lambda r: r.url.endswith("/undo")) as answer:
                page.keyboard.press("z")
            assert answer.value.status == 200 and f"/api/images/{first}/" in answer.value.url
            browser.close()
    finally:
        server.stop()
