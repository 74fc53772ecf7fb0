"""NoC: the reference MoveNet run image by image, hand-made cases, the editors, manual cost, CLI."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import TESTS_DATA
from typer.testing import CliRunner

from clickpose.cli.main import app
from clickpose.evaluate.editor import ManualEditor, ModelOnlyEditor, PoseEditor
from clickpose.evaluate.image_ap import ImageAp
from clickpose.evaluate.matching import TargetPersons
from clickpose.evaluate.noc import NocSettings, run_noc, simulate_image
from clickpose.evaluate.sources import poses_by_image, prediction_editors
from clickpose.keypoints import coco17
from clickpose.poses import Poses

PEER = TESTS_DATA / "peer-predictions"
SCHEMA = coco17()


@pytest.fixture(scope="module")
def coco_dev():
    gt = json.loads((PEER / "coco-dev-annotations.json").read_text())
    dt = json.loads((PEER / "movenet-coco-dev.json").read_text())
    return gt, dt


@pytest.fixture(scope="module")
def reference():
    return json.loads((PEER / "noc-movenet-coco-dev.json").read_text())


@pytest.fixture(scope="module")
def official(coco_dev):
    gt, dt = coco_dev
    return run_noc(gt, prediction_editors(dt, gt, SCHEMA), NocSettings())


class RecordingEditor(ModelOnlyEditor):
    """A ModelOnlyEditor that remembers every click, to check what the simulator touched."""

    def __init__(self, poses: Poses):
        super().__init__(poses)
        self.initial = poses.copy()
        self.clicks: list[tuple[int, int, float, float]] = []

    def click(self, person, keypoint, x, y, visible=2):
        self.clicks.append((person, keypoint, x, y))
        return super().click(person, keypoint, x, y, visible)


def test_movenet_figures_match_the_reference(official, reference):
    summary = official.summary()
    assert summary["n_images"] == reference["n_images"] == 43
    expected = {"85": (8.72, 15.16, 24.67, 16), "90": (9.67, 16.65, 27.33, 17),
                "95": (10.23, 17.88, 29.28, 18)}
    for target, (noc, kpt, off, never) in expected.items():
        got = summary["targets"][target]
        assert got["NoC"] == pytest.approx(noc, abs=1e-2)
        assert got["mean_kpt_clicks"] == pytest.approx(kpt, abs=1e-2)
        assert got["mean_official_clicks"] == pytest.approx(off, abs=1e-2)
        assert got["n_never_reached"] == never
        ref = reference["targets"][target]
        for key in ("n_never_reached_with_unmatched_gt", "n_never_reached_fp_outranks",
                    "n_zero_clicks"):
            assert got[key] == ref[key], (target, key)
    assert summary["mean_image_ap_after"]["0"] == pytest.approx(
        reference["mean_initial_image_ap"], abs=1e-4)


def test_movenet_every_image_follows_its_reference_trajectory(official, reference):
    by_id = {r["image_id"]: r for r in reference["per_image"]}
    assert {run.image_id for run in official.images} == set(by_id)
    for run in official.images:
        ref = by_id[run.image_id]
        for key in ("n_gt", "n_pred", "n_matched", "n_unmatched_gt", "labelled_kpts"):
            assert getattr(run, key) == ref[key], (run.image_id, key)
        trajectory = ref["ap_trajectory"]
        assert [round(a, 4) for a in run.ap[:len(trajectory)]] == trajectory, run.image_id
        for target, outcome in ref["targets"].items():
            mine = run.outcome(int(target))
            assert {k: mine[k] for k in outcome} == outcome, (run.image_id, target)
        assert run.why_capped(95) == ref["why_capped"], run.image_id


def test_rescoring_clicked_persons_matches_the_reference_variant(coco_dev):
    """README variant: clicked persons re-scored to 1 -> 5.16 / 6.33 / 6.84, 5 capped at 95."""
    gt, dt = coco_dev
    summary = run_noc(gt, prediction_editors(dt, gt, SCHEMA),
                      NocSettings(rescore_clicked=True, dataset_ap=False)).summary()
    nocs = [summary["targets"][t]["NoC"] for t in ("85", "90", "95")]
    np.testing.assert_allclose(nocs, [5.16, 6.33, 6.84], atol=1e-2)
    assert summary["targets"]["95"]["n_never_reached"] == 5


def test_annotator_protocol_fixes_what_official_cannot(coco_dev, official):
    gt, dt = coco_dev
    result = run_noc(gt, prediction_editors(dt, gt, SCHEMA),
                     NocSettings(protocol="annotator", dataset_ap=False))
    summary = result.summary()
    for target in ("85", "90", "95"):
        got = summary["targets"][target]
        assert got["n_never_reached"] == 0
        assert got["NoC"] < official.summary()["targets"][target]["NoC"]
        assert got["mean_total_clicks"] > got["mean_kpt_clicks"]  # drawn boxes cost clicks
    # Each of the 5 images with more persons than MoveNet's 6 poses draws its missed persons.
    drawn = {run.image_id: run.boxes_drawn for run in result.images if run.boxes_drawn}
    assert drawn == {r.image_id: r.n_unmatched_gt for r in official.images if r.n_unmatched_gt}
    for run in result.images:
        assert run.action_clicks[-1] == 2 * run.boxes_drawn + run.deleted


def test_model_only_editor_moves_only_clicked_keypoints(coco_dev):
    gt, dt = coco_dev
    poses = poses_by_image(dt, gt, SCHEMA)
    editors: dict[int, RecordingEditor] = {}

    def editor_for(image_id):
        editors[image_id] = RecordingEditor(poses[image_id])
        return editors[image_id]

    run_noc(gt, editor_for, NocSettings(targets=(95,), ap_after=0, dataset_ap=False))
    total = 0
    for editor in editors.values():
        final, initial = editor.poses, editor.initial
        moved = np.zeros(initial.keypoints.shape[:2], dtype=bool)
        for person, keypoint, x, y in editor.clicks:
            moved[person, keypoint] = True
            assert tuple(final.keypoints[person, keypoint]) == (x, y)
        np.testing.assert_array_equal(final.keypoints[~moved], initial.keypoints[~moved])
        np.testing.assert_array_equal(final.scores, initial.scores)
        np.testing.assert_array_equal(final.boxes, initial.boxes)
        total += len(editor.clicks)
    assert total == pytest.approx(17.88 * 43, abs=1)


def _ground_truth(anns: list[dict]) -> tuple[TargetPersons, ImageAp]:
    return (TargetPersons.from_annotations(anns, 640, 480, 17),
            ImageAp(anns, SCHEMA.sigmas_array))


def _one_person_image(displacements: dict[int, float]):
    """One labelled person; the prediction is exact except `displacements` {keypoint: pixels}.

    A second predicted person, scored lower, is a false positive far away.
    """
    rng = np.random.default_rng(3)
    kpts = np.column_stack([rng.uniform(250, 350, 17), rng.uniform(180, 300, 17)]).round()
    ann = {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 17,
           "area": 9000.0, "bbox": [240.0, 170.0, 120.0, 140.0],
           "keypoints": np.column_stack([kpts, np.full(17, 2)]).reshape(-1).tolist()}
    predicted = kpts.copy()
    for k, d in displacements.items():
        predicted[k, 0] += d
    poses = Poses(keypoints=np.stack([predicted, predicted + 250]),
                  keypoint_scores=np.ones((2, 17)), visibility=np.full((2, 17), 2),
                  boxes=np.array([[240.0, 170.0, 360.0, 310.0]] * 2),
                  scores=np.array([0.9, 0.3]))
    return poses, ann


def _simulate(poses: Poses, anns: list[dict], editor=None, **settings):
    targets, evaluator = _ground_truth(anns)
    editor = editor or ModelOnlyEditor(poses)
    return simulate_image(1, editor, targets, evaluator, SCHEMA.sigmas_array,
                          NocSettings(**settings))


def test_hand_made_image_needs_three_rounds():
    """14 of 17 keypoints right: OKS 14/17 -> AP .7; each round fixes the worst one."""
    poses, ann = _one_person_image({3: 150.0, 9: 250.0, 14: 200.0})
    editor = RecordingEditor(poses)
    run = _simulate(poses, [ann], editor)
    assert run.ap[:4] == pytest.approx([0.7, 0.8, 0.9, 1.0], abs=1e-12)
    # pycocotools' precision is tp / (tp + fp + eps), so this "0.9" is just below 0.9 and the
    # 90 target takes the third round, as in the official evaluation (image 785 of coco-dev).
    assert run.ap[2] < 0.9
    assert [run.rounds_to(t) for t in (85, 90, 95)] == [(2, True), (3, True), (3, True)]
    # worst first: 250 px, then 200 px, then 150 px; each put at its ground truth
    assert [(p, k) for p, k, _, _ in editor.clicks] == [(0, 9), (0, 14), (0, 3)]
    gt_kpts = np.array(ann["keypoints"]).reshape(17, 3)[:, :2]
    assert [c[2:] for c in editor.clicks] == [tuple(gt_kpts[k]) for k in (9, 14, 3)]
    assert run.outcome(95) == {"rounds": 3, "reached": True, "kpt_clicks": 3,
                               "official_clicks": 3, "total_clicks": 3}
    assert run.n_matched == 1 and run.n_pred == 2


class RoundEditor(ModelOnlyEditor):
    """An editor that re-predicts: it takes a round's clicks at once (click_many)."""

    def __init__(self, poses: Poses):
        super().__init__(poses)
        self.rounds: list[list[tuple[int, int]]] = []

    def click_many(self, clicks):
        self.rounds.append([(person, k) for person, k, *_ in clicks])
        for click in clicks:
            super().click(*click)
        return self.poses


def test_a_round_clicks_every_matched_person_at_once():
    """Two persons: each round chooses both worst keypoints on the round's starting poses
    and hands them to the editor in one click_many (one re-prediction per round)."""
    poses, ann = _one_person_image({3: 150.0, 9: 250.0})
    second = {**ann, "id": 2, "bbox": [ann["bbox"][0] - 200, *ann["bbox"][1:]],
              "keypoints": (np.array(ann["keypoints"]).reshape(17, 3) - [200, 0, 0])
              .reshape(-1).tolist()}
    shifted = np.array(second["keypoints"], dtype=np.float64).reshape(17, 3)[:, :2]
    shifted[12, 0] += 180.0
    poses = Poses(keypoints=np.stack([poses.keypoints[0], shifted]),
                  keypoint_scores=np.ones((2, 17)), visibility=np.full((2, 17), 2),
                  boxes=np.array([[240.0, 170.0, 360.0, 310.0], [40.0, 170.0, 160.0, 310.0]]),
                  scores=np.array([0.9, 0.8]))
    editor = RoundEditor(poses)
    run = _simulate(poses, [ann, second], editor, targets=(95,))
    assert editor.rounds[:2] == [[(0, 9), (1, 12)], [(0, 3)]]
    assert run.kpt_clicks[:3] == [0, 2, 3] and run.ap[2] == pytest.approx(1.0)


def test_false_positive_above_a_perfect_person_needs_a_deletion():
    poses, ann = _one_person_image({})
    poses.scores[:] = [0.4, 0.8]  # the false positive now outranks the (perfect) person
    official = _simulate(poses, [ann])
    assert official.ap[0] == pytest.approx(0.5)
    assert official.outcome(85)["rounds"] == 17 and not official.outcome(85)["reached"]
    assert official.why_capped(85) == "fp_outranks"
    annotator = _simulate(poses, [ann], protocol="annotator")
    assert annotator.outcome(95) == {"rounds": 1, "reached": True, "kpt_clicks": 0,
                                     "official_clicks": 1, "total_clicks": 1}
    assert annotator.deleted == 1
    assert official.unmatched_left == 1 and annotator.unmatched_left == 0


def test_false_positive_ranked_below_is_left_and_counted():
    """Below every matched person it costs AP nothing, so no round deletes it; a clean label
    set still needs it gone, which the summary reports."""
    poses, ann = _one_person_image({})
    poses.scores[:] = [0.8, 0.4]
    for protocol in ("official", "annotator"):
        run = _simulate(poses, [ann], protocol=protocol)
        assert run.deleted == 0 and run.unmatched_left == 1


def test_missed_person_is_drawn_then_clicked():
    """A second person (3 labelled keypoints) that no prediction covers."""
    poses, first = _one_person_image({})
    poses = poses.select([0])
    second_kpts = np.zeros((17, 3))
    second_kpts[[0, 11, 16]] = [[420, 100, 2], [520, 180, 1], [430, 290, 2]]
    second = {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "num_keypoints": 3,
              "area": 2000.0, "bbox": [400.0, 90.0, 140.0, 210.0],
              "keypoints": second_kpts.reshape(-1).tolist()}
    official = _simulate(poses, [first, second])
    assert official.n_unmatched_gt == 1 and official.why_capped(85) == "unmatched_gt"
    editor = ModelOnlyEditor(poses)
    run = _simulate(poses, [first, second], editor, protocol="annotator")
    # round 1 draws the box (2 clicks), rounds 2-4 click its three keypoints
    assert run.boxes_drawn == 1 and run.kpt_clicks[:5] == [0, 0, 1, 2, 3]
    assert run.outcome(95) == {"rounds": 4, "reached": True, "kpt_clicks": 3,
                               "official_clicks": 4, "total_clicks": 5}
    assert editor.poses.num_persons == 2 and editor.poses.scores[1] == 1.0
    np.testing.assert_array_equal(editor.poses.keypoints[1, [0, 11, 16]],
                                  second_kpts[[0, 11, 16], :2])


def test_manual_cost_counts_every_labelled_keypoint(coco_dev):
    gt, _ = coco_dev
    official = run_noc(gt, None, NocSettings(mode="manual", dataset_ap=False)).summary()
    annotator = run_noc(gt, None, NocSettings(mode="manual", protocol="annotator",
                                               dataset_ap=False)).summary()
    assert official["labelled_kpts_per_image"] == pytest.approx(28.40, abs=1e-2)
    assert official["persons_per_image"] == pytest.approx(2.81, abs=1e-2)
    for target in ("85", "90", "95"):
        assert official["targets"][target]["NoC"] == pytest.approx(12.37, abs=1e-2)
        assert official["targets"][target]["mean_kpt_clicks"] == pytest.approx(28.40, abs=1e-2)
        assert official["targets"][target]["n_never_reached"] == 0
        assert annotator["targets"][target]["mean_total_clicks"] == pytest.approx(
            1221 / 43 + 2 * 121 / 43)
    assert official["mean_image_ap_after"]["0"] < 0.05  # nothing placed yet


def test_editor_actions_and_undo():
    poses, _ = _one_person_image({})
    editor = ModelOnlyEditor(poses)
    assert isinstance(editor, PoseEditor) and isinstance(ManualEditor(17), PoseEditor)
    after = editor.click(1, 4, 10.0, 20.0, visible=1)
    assert tuple(after.keypoints[1, 4]) == (10.0, 20.0) and after.visibility[1, 4] == 1
    assert after.keypoint_scores[1, 4] == 1.0
    np.testing.assert_array_equal(np.delete(after.keypoints[1], 4, 0),
                                  np.delete(poses.keypoints[1], 4, 0))
    assert editor.confirm_person(1).scores[1] == 1.0
    assert editor.add_person([0, 0, 10, 20]).num_persons == 3
    assert tuple(editor.poses.keypoints[2, 0]) == (5.0, 10.0)
    assert editor.remove_person(0).num_persons == 2
    assert editor.undo().num_persons == 3
    editor.undo(), editor.undo()
    assert editor.poses.scores[1] == poses.scores[1]
    np.testing.assert_array_equal(editor.undo().keypoints, poses.keypoints)
    with pytest.raises(IndexError, match="person 5 does not exist"):
        editor.click(5, 0, 1.0, 1.0)


def test_cli_eval_noc(tmp_path):
    data = tmp_path / "coco-dev"
    data.mkdir()
    shutil.copy(PEER / "coco-dev-annotations.json", data / "annotations.json")
    out = tmp_path / "noc.json"
    result = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--predictions",
                                      str(PEER / "movenet-coco-dev.json"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "8.72" in result.output and "10.23" in result.output
    saved = json.loads(out.read_text())
    assert saved["summary"]["targets"]["90"]["NoC"] == pytest.approx(9.67, abs=1e-2)
    assert len(saved["per_image"]) == 43
    refine = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--mode", "refine",
                                      "--predictions", str(PEER / "movenet-coco-dev.json")])
    assert refine.exit_code == 1 and "--mode refine re-predicts with the model" in refine.output


def _coco_dev_folder(tmp_path):
    data = tmp_path / "coco-dev"
    data.mkdir()
    shutil.copy(PEER / "coco-dev-annotations.json", data / "annotations.json")
    return data


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(keypoints=[float("nan")] * 51),
     "'keypoints' holds nan at position 0, expected a finite number"),
    (lambda r: r.update(bbox=[1, 2]), "'bbox' has 2 numbers, expected 4; give [x, y, w, h]"),
    (lambda r: r.update(image_id=[1]), "image id [1] is not in the ground truth "),
])
def test_cli_eval_noc_names_bad_predictions(tmp_path, coco_dev, edit, message):
    data = _coco_dev_folder(tmp_path)
    _, dt = coco_dev
    bad = json.loads(json.dumps(dt))
    edit(bad[3])
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--predictions",
                                      str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    text = " ".join(result.output.split())
    assert f"error: {path}: result 3 (image " in text and message in text


def test_cli_eval_noc_needs_image_sizes(tmp_path):
    data = _coco_dev_folder(tmp_path)
    gt = json.loads((data / "annotations.json").read_text())
    del gt["images"][0]["width"]
    (data / "annotations.json").write_text(json.dumps(gt))
    result = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--mode", "manual"])
    assert result.exit_code == 1
    assert f"image {gt['images'][0]['id']}: 'width' is None" in " ".join(result.output.split())


def test_cli_manual_mode_reads_no_poses_and_says_so(tmp_path):
    data = _coco_dev_folder(tmp_path)
    result = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--mode", "manual",
                                      "--checkpoint", str(tmp_path / "run")])
    assert result.exit_code == 1 and "drop --predictions / --checkpoint" in " ".join(
        result.output.split())
    result = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--mode", "manual"])
    assert result.exit_code == 0, result.output
    assert "keypoint clicks / image" in result.output
    assert "matched persons" not in result.output and "outranks" not in result.output


def test_cli_eval_noc_names_a_bad_checkpoint(tmp_path):
    data = _coco_dev_folder(tmp_path)
    result = CliRunner().invoke(app, ["eval", "noc", "--data", str(data), "--mode", "refine",
                                      "--checkpoint", str(tmp_path / "no-such-run")])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {tmp_path / 'no-such-run'}" in " ".join(result.output.split())
