"""bench/error_diagnosis.py on a hand-made image: each planted error lands in its class, and
setting the errors right gives the AP of perfect poses."""
import json

import numpy as np
from bench_scripts import load_bench

from clickpose.keypoints import coco17

bench = load_bench("error_diagnosis")
SCHEMA = coco17()
NOSE, LEFT_WRIST, RIGHT_WRIST, LEFT_KNEE, LEFT_ANKLE = 0, 9, 10, 13, 15


def _pose(shift_x: float) -> np.ndarray:
    k = np.arange(17)
    return np.stack([40.0 + shift_x + (k % 4) * 10.0, 20.0 + k * 8.0], -1)


def _dataset() -> dict:
    names = SCHEMA.keypoints
    annotations = []
    for i, shift in enumerate((0.0, 100.0)):
        pose = _pose(shift)
        annotations.append({
            "id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 4000.0,
            "num_keypoints": 17, "bbox": [float(pose[:, 0].min()), 20.0, 30.0, 128.0],
            "keypoints": np.concatenate([pose, np.full((17, 1), 2.0)], 1).flatten().tolist()})
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person", "keypoints": names,
                            "skeleton": [[a + 1, b + 1] for a, b in SCHEMA.skeleton]}]}


def _result(pose: np.ndarray, score: float) -> dict:
    return {"image_id": 1, "category_id": 1, "score": score,
            "keypoints": np.concatenate([pose, np.full((17, 1), 1.0)], 1).flatten().tolist()}


def _predictions() -> list[dict]:
    first, second = _pose(0.0), _pose(100.0)
    planted = first.copy()
    planted[NOSE, 0] += 2.8                       # OKS term about 0.7: jitter
    planted[LEFT_WRIST] = first[RIGHT_WRIST]      # on its partner: inversion
    planted[LEFT_ANKLE] = second[LEFT_ANKLE]      # on the other person's: swap
    planted[LEFT_KNEE] = (195.0, 195.0)           # near nothing: miss
    return [_result(planted, 0.9), _result(second, 0.8)]


def test_each_planted_error_is_its_kind_and_setting_them_right_gives_perfect_ap():
    lines = bench.diagnose(_predictions(), _dataset(), SCHEMA)
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


def test_the_command_line_reads_another_detectors_results(tmp_path, capsys):
    (tmp_path / "annotations.json").write_text(json.dumps(_dataset()))
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(_predictions()))
    bench.main(["--predictions", str(predictions), "--data", str(tmp_path), "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "classes"] + ["ap"] * 7
    assert lines[1]["source"] == str(predictions)
