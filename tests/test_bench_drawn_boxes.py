"""bench/drawn_boxes.py on the five COCO images of tests/data/coco-mini."""
import json
from pathlib import Path

from annotator_fixtures import make_checkpoint
from bench_scripts import load_bench

ROOT = Path(__file__).resolve().parent.parent
COCO_MINI = ROOT / "tests" / "data" / "coco-mini"


def test_every_setting_draws_every_person(tmp_path, capsys):
    _, checkpoint = make_checkpoint(tmp_path / "ckpt")
    rows = load_bench("drawn_boxes").main(["--checkpoint", str(checkpoint), "--data", str(COCO_MINI),
                              "--threads", "1"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert printed == rows and rows[0]["kind"] == "machine"
    gt = json.loads((COCO_MINI / "annotations.json").read_text())
    persons = sum(1 for a in gt["annotations"]
                  if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) > 0)
    by_setting = {r["setting"]: r for r in rows[1:]}
    assert list(by_setting) == ["heatmaps-1-pass", "heatmaps-2-passes", "candidate-or-2"]
    assert all(r["boxes_drawn"] == persons and 0.0 <= r["AP"] <= 1.0 for r in rows[1:])
    assert by_setting["heatmaps-1-pass"]["adopted_candidate"] == 0.0
    assert by_setting["heatmaps-2-passes"]["adopted_candidate"] == 0.0
