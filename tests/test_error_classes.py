"""Keypoint errors by kind (clickpose.evaluate.error_classes) and `clickpose eval errors`: each
planted error lands in its class, and setting the errors right gives the AP of perfect poses."""
import json

from planted_errors import LEFT_WRIST, RIGHT_WRIST, SCHEMA, planted_dataset, planted_predictions
from typer.testing import CliRunner

from clickpose.cli.main import app
from clickpose.evaluate.error_classes import diagnose


def test_each_planted_error_is_its_kind_and_setting_them_right_gives_perfect_ap():
    lines = diagnose(planted_predictions(), planted_dataset(), SCHEMA)
    classes = lines[0]
    assert classes["matched"] == 2 and classes["persons"] == 2
    assert classes["counts"] == {"good": 30, "jitter": 1, "inversion": 1, "swap": 1, "miss": 1}
    assert classes["misses_by_keypoint"] == {"left_knee": 1}
    ap = {line["fixed"]: line["AP"] for line in lines[1:]}
    assert ap["nothing"] < 1.0
    for kind in ("inversion", "swap", "miss"):  # each large error alone holds the AP down
        assert ap["nothing"] < ap[kind] < 1.0
    assert ap["jitter"] >= ap["nothing"]
    assert ap["inversion+swap+miss"] == 1.0     # a nose 2.8 px off costs no threshold
    # The ranking line keeps the poses: a perfect order cannot mend the planted errors.
    assert ap["ranking"] < 1.0


def test_a_keypoint_near_an_unlabelled_partner_is_a_miss_not_an_inversion():
    """COCO writes an unlabelled keypoint as (0, 0, 0): a left wrist predicted near the image's
    corner lies 'at' the unlabelled right wrist, which is no inversion."""
    dataset = planted_dataset()
    first = dataset["annotations"][0]["keypoints"]
    first[3 * RIGHT_WRIST:3 * RIGHT_WRIST + 3] = [0.0, 0.0, 0.0]
    dataset["annotations"][0]["num_keypoints"] = 16
    predictions = planted_predictions()
    wrist = predictions[0]["keypoints"]
    wrist[3 * LEFT_WRIST:3 * LEFT_WRIST + 2] = [1.0, 1.0]
    classes = diagnose(predictions, dataset, SCHEMA)[0]
    assert classes["counts"]["inversion"] == 0
    assert classes["misses_by_keypoint"] == {"left_knee": 1, "left_wrist": 1}


def _write(tmp_path, predictions):
    gt, dt = tmp_path / "gt.json", tmp_path / "dt.json"
    gt.write_text(json.dumps(planted_dataset()))
    dt.write_text(json.dumps(predictions))
    return gt, dt


def test_cli_eval_errors_table_and_json(tmp_path):
    gt, dt = _write(tmp_path, planted_predictions())
    out = tmp_path / "errors.json"
    result = CliRunner().invoke(app, ["eval", "errors", "--gt", str(gt), "--dt", str(dt),
                                      "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "inversion (left/right)" in result.output and "2 of 2 persons matched" in result.output
    lines = json.loads(out.read_text())["lines"]
    assert lines == diagnose(planted_predictions(), planted_dataset(), SCHEMA)


def test_cli_eval_errors_refuses_bad_detections_by_name(tmp_path):
    bad = planted_predictions()
    bad[0]["image_id"] = 424242
    gt, dt = _write(tmp_path, bad)
    result = CliRunner().invoke(app, ["eval", "errors", "--gt", str(gt), "--dt", str(dt)])
    assert result.exit_code == 1
    assert "image id 424242 is not in the ground truth" in result.output
