"""OKS AP: pycocotools' figures on peer fixtures, the fast per-image AP, schemas, errors, CLI."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
from conftest import TESTS_DATA
from typer.testing import CliRunner

from clickpose.cli.main import app
from clickpose.evaluate.ap import STAT_NAMES, evaluate_ap, per_image_ap, run_cocoeval
from clickpose.evaluate.inputs import EvalInputError
from clickpose.keypoints import coco17, coco17_plus

FIXTURES = TESTS_DATA / "eval-fixtures"
PEER = TESTS_DATA / "peer-predictions"
EXPECTED = json.loads((FIXTURES / "EXPECTED.json").read_text())


def _load(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def four_images():
    case = EXPECTED["coco-4img"]
    return _load(FIXTURES / case["gt"]), _load(FIXTURES / case["dt"])


@pytest.fixture(scope="module")
def coco_dev():
    return _load(PEER / "coco-dev-annotations.json"), _load(PEER / "movenet-coco-dev.json")


@pytest.mark.parametrize("name", ["coco-139099", "coco-4img"])
def test_expected_stats_of_peer_fixtures(name):
    case = EXPECTED[name]
    result = evaluate_ap(FIXTURES / case["gt"], FIXTURES / case["dt"])
    assert list(result.stats) == list(STAT_NAMES) == EXPECTED["_stats_order"]
    np.testing.assert_allclose(list(result.stats.values()), case["stats"], atol=1e-6, rtol=0)
    assert result.schema_name == "coco17"


def _single_image_cocoeval(gt: dict, dt: list[dict], image_id: int, sigmas) -> float:
    """pycocotools on this image alone (a one-image dataset keeps the test fast)."""
    small = {**gt, "images": [im for im in gt["images"] if im["id"] == image_id],
             "annotations": [a for a in gt["annotations"] if a["image_id"] == image_id]}
    return float(run_cocoeval(small, [r for r in dt if r["image_id"] == image_id], sigmas,
                              [image_id]).stats[0])


def _perturbed(dt: list[dict], seed: int) -> list[dict]:
    """Jittered keypoints, shuffled scores (with ties) and dropped detections."""
    rng = np.random.default_rng(seed)
    out = []
    for r in dt:
        if rng.random() < 0.2:
            continue
        k = np.array(r["keypoints"], dtype=np.float64).reshape(-1, 3)
        k[:, :2] += rng.normal(0, rng.choice([2.0, 8.0, 30.0]), size=(len(k), 2))
        score = float(rng.choice([0.5, rng.random()]))  # many exact ties
        out.append({**r, "keypoints": k.reshape(-1).tolist(), "score": score})
    return out


def test_per_image_ap_equals_pycocotools_on_every_image(coco_dev, four_images):
    sigmas = coco17().sigmas_array
    cases = [four_images, _load_139099(), coco_dev,
             (coco_dev[0], _perturbed(coco_dev[1], 0)), (coco_dev[0], _perturbed(coco_dev[1], 1))]
    compared = 0
    for gt, dt in cases:
        fast = per_image_ap(gt, dt)
        scored = {a["image_id"] for a in gt["annotations"]
                  if not a["iscrowd"] and a["num_keypoints"] > 0}
        assert set(fast) == scored  # images without a person that counts are left out
        for image_id, ap in fast.items():
            assert abs(ap - _single_image_cocoeval(gt, dt, image_id, sigmas)) <= 1e-9, image_id
            compared += 1
    assert compared > 130


def _load_139099():
    case = EXPECTED["coco-139099"]
    return _load(FIXTURES / case["gt"]), _load(FIXTURES / case["dt"])


def test_ground_truth_as_predictions_scores_one(coco_dev):
    gt = coco_dev[0]
    perfect = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"],
                "score": 1.0} for a in gt["annotations"]
               if not a["iscrowd"] and a["num_keypoints"] > 0]
    result = evaluate_ap(gt, perfect)
    assert result.stats["AP"] == pytest.approx(1.0, abs=1e-12)
    assert result.stats["AR"] == pytest.approx(1.0, abs=1e-12)
    assert all(ap == pytest.approx(1.0, abs=1e-12) for ap in per_image_ap(gt, perfect).values())


def test_empty_predictions_give_zeros(four_images):
    gt, _ = four_images
    result = evaluate_ap(gt, [])
    assert result.stats == {name: 0.0 for name in STAT_NAMES}
    assert result.num_detections == 0
    assert set(per_image_ap(gt, []).values()) == {0.0}


def test_schema_sigmas_are_used(four_images):
    gt, dt = four_images
    wide = coco17().model_copy(update={"sigmas": [s * 2 for s in coco17().sigmas]})
    default, widened = evaluate_ap(gt, dt), evaluate_ap(gt, dt, schema=wide)
    assert widened.stats["AP"] > default.stats["AP"]  # larger sigmas forgive more
    direct = run_cocoeval(gt, dt, wide.sigmas_array).stats[0]
    assert widened.stats["AP"] == direct


def test_grown_schema_uses_its_own_sigmas(four_images):
    """18 keypoints (COCO-17 + head_top): AP over the schema from the ground-truth category."""
    gt, dt = copy.deepcopy(four_images)
    schema = coco17_plus(["head_top"])
    gt["categories"] = [schema.to_coco_category()]
    for a in gt["annotations"]:
        x, y, v = a["keypoints"][:3]  # head top: 20 px above the nose, labelled like it
        a["keypoints"] = a["keypoints"] + [x, y - 20, v]
        a["num_keypoints"] = sum(1 for v in a["keypoints"][2::3] if v > 0)
    for r in dt:
        x, y, s = r["keypoints"][:3]
        r["keypoints"] = r["keypoints"] + [x + 3, y - 24, s]
    result = evaluate_ap(gt, dt)
    assert result.schema_name == schema.name
    assert result.stats["AP"] == run_cocoeval(gt, dt, schema.sigmas_array).stats[0]
    assert result.stats["AP"] != evaluate_ap(*four_images).stats["AP"]
    for image_id, ap in per_image_ap(gt, dt).items():
        assert abs(ap - _single_image_cocoeval(gt, dt, image_id, schema.sigmas_array)) <= 1e-9
    # A sigma the category itself states (a strict 0.01, not head_top's built-in 0.079) counts.
    own = schema.sigmas_array.copy()
    own[17] = 0.01
    gt["categories"][0]["sigmas"] = own.tolist()
    stated = evaluate_ap(gt, dt).stats["AP"]
    assert stated == run_cocoeval(gt, dt, own).stats[0]
    assert stated != result.stats["AP"]


def test_clear_errors(four_images):
    gt, dt = four_images
    with pytest.raises(EvalInputError, match=r"image id 999 is not in the ground truth"):
        evaluate_ap(gt, [{**dt[0], "image_id": 999}])
    with pytest.raises(EvalInputError, match=r"'keypoints' has 48 numbers, expected 51"):
        evaluate_ap(gt, [{**dt[0], "keypoints": dt[0]["keypoints"][:48]}])
    with pytest.raises(EvalInputError, match=r"category_id 7 is not a ground-truth category"):
        evaluate_ap(gt, [{**dt[0], "category_id": 7}])
    with pytest.raises(EvalInputError, match=r"no 'score'"):
        evaluate_ap(gt, [{k: v for k, v in dt[0].items() if k != "score"}])
    broken = copy.deepcopy(gt)
    broken["annotations"][0]["keypoints"] = broken["annotations"][0]["keypoints"][:-3]
    with pytest.raises(EvalInputError, match=r"annotation \d+ \(image \d+\): 'keypoints' has 48"):
        evaluate_ap(broken, dt)
    with pytest.raises(EvalInputError,
                       match=r"17 keypoints here, but the schema 'coco17\+head_top' has 18"):
        evaluate_ap(gt, dt, schema=coco17_plus(["head_top"]))


def test_cli_eval_ap_table_and_json(tmp_path):
    case = EXPECTED["coco-4img"]
    out = tmp_path / "ap.json"
    result = CliRunner().invoke(app, ["eval", "ap", "--gt", str(FIXTURES / case["gt"]),
                                      "--dt", str(FIXTURES / case["dt"]), "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "0.861" in result.output and "AP @ OKS .50:.95" in result.output
    stats = json.loads(out.read_text())["stats"]
    np.testing.assert_allclose([stats[n] for n in STAT_NAMES], case["stats"], atol=1e-6, rtol=0)


def test_cli_eval_ap_reports_bad_detections(tmp_path, four_images):
    _gt, dt = four_images
    bad = tmp_path / "dt.json"
    bad.write_text(json.dumps([{**dt[0], "image_id": 424242}]))
    gt_path = FIXTURES / EXPECTED["coco-4img"]["gt"]
    result = CliRunner().invoke(app, ["eval", "ap", "--gt", str(gt_path), "--dt", str(bad)])
    assert result.exit_code == 1
    assert "image id 424242 is not in the ground truth" in result.output


@pytest.mark.parametrize("edit, message", [
    (lambda r: r.update(keypoints=[None] * 51),
     r"'keypoints' holds None at position 0, expected a number"),
    (lambda r: r.update(keypoints="x" * 51), r"'keypoints' is 'xxx.*', expected a list of 51"),
    (lambda r: r.update(keypoints=5), r"'keypoints' is 5, expected a list of 51 numbers"),
    (lambda r: r.update(image_id=[1]), r"image id \[1\] is not in the ground truth"),
    (lambda r: r.update(bbox=[1, 2]), r"'bbox' has 2 numbers, expected 4"),
])
def test_malformed_detections_are_named(four_images, edit, message):
    gt, dt = four_images
    bad = copy.deepcopy(dt[0])
    edit(bad)
    with pytest.raises(EvalInputError, match=r"detections: result 0 \(image .*\): " + message):
        evaluate_ap(gt, [bad])


def test_non_finite_detections_are_refused(four_images):
    """COCOeval would match a NaN pose as a perfect one (NaN < threshold is False): AP 1."""
    gt, dt = four_images
    nan = [{**r, "keypoints": [float("nan")] * 51} for r in dt]
    assert run_cocoeval(gt, nan, coco17().sigmas_array).stats[0] == 1.0
    with pytest.raises(EvalInputError, match=r"result 0 \(image \d+\): 'keypoints' holds nan "
                       r"at position 0, expected a finite number"):
        evaluate_ap(gt, nan)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["annotations"][0].update(keypoints=None), r"'keypoints' is None"),
    (lambda d: d["annotations"][0].update(keypoints=[None] * 51),
     r"'keypoints' holds None at position 0"),
    (lambda d: d["annotations"][0].update(bbox=[1, 2]), r"'bbox' has 2 numbers, expected 4"),
    (lambda d: d["annotations"][0].update(area="x"), r"'area' is 'x'"),
    (lambda d: d["annotations"][0].update(num_keypoints=None), r"'num_keypoints' is None"),
    (lambda d: d["annotations"].__setitem__(0, 5), r"annotations\[0\] is not an object"),
    (lambda d: d["images"].__setitem__(0, 5), r"images\[0\] is not an object"),
])
def test_malformed_ground_truth_is_named(four_images, edit, message):
    gt, dt = copy.deepcopy(four_images)
    edit(gt)
    with pytest.raises(EvalInputError, match=r"^ground truth: .*" + message):
        evaluate_ap(gt, dt)


def test_ground_truth_file_not_utf8(tmp_path, four_images):
    path = tmp_path / "gt.json"
    path.write_bytes(b"{\"images\": \"\xff\"}")
    with pytest.raises(EvalInputError, match=r"gt.json: not UTF-8 text"):
        evaluate_ap(path, four_images[1])
