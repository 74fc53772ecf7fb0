"""bench/train_coco_dev.py end to end on the five COCO images of tests/data/coco-mini."""
import json
from pathlib import Path

from bench_scripts import load_bench

ROOT = Path(__file__).resolve().parent.parent
COCO_MINI = ROOT / "tests" / "data" / "coco-mini"


def peer_predictions_on(folder: Path, out: Path) -> Path:
    """A peer detector's results on `folder`: its ground truth, each keypoint moved 3 px."""
    gt = json.loads((folder / "annotations.json").read_text())
    results = []
    for ann in gt["annotations"]:
        kp = list(ann["keypoints"])
        kp[0::3] = [x + 3.0 if v > 0 else x for x, v in zip(kp[0::3], kp[2::3])]
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "keypoints": kp, "score": 0.9})
    out.write_text(json.dumps(results))
    return out


def test_bench_trains_on_real_images_and_compares_with_a_peer(tmp_path, capsys):
    peer = peer_predictions_on(COCO_MINI, tmp_path / "peer.json")
    summary = load_bench("train_coco_dev").main([
        "--data", str(COCO_MINI), "--peer", str(peer), "--preset", "tiny",
        "--minutes", "0.05", "--epochs", "1", "--batch-size", "2", "--threads", "1",
        "--workers", "0", "--noc-images", "3", "--cache-backbone-features",
        "--out", str(tmp_path / "run")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["kind"] == "machine" and lines[0]["evaluated_on"] == "the training images"
    assert lines[-1] == summary
    assert [r["kind"] for r in lines].count("epoch") == 1
    nocs = [r for r in lines if r["kind"] == "noc"]
    assert {(r["source"], r["mode"]) for r in nocs} == {
        ("checkpoint", "model-only"), ("checkpoint", "refine"), ("peer", "model-only")}
    ours = [r for r in nocs if r["source"] == "checkpoint"]
    # NoC counts the images with persons: 2 of the first 3, 4 of all 5.
    assert all(r["n_images"] == 2 for r in ours)
    peer_noc = next(r for r in nocs if r["source"] == "peer")
    assert peer_noc["n_images"] == 4
    # Keypoints 3 px off: close to, but not exactly, the ground truth.
    assert 0.5 < summary["peer_AP"] < 1.0 and summary["peer"] == "peer"
    assert 0.0 <= summary["AP"] <= 1.0
    assert summary["preset"] == "tiny" and summary["image_size"] == 256
    train = next(r for r in lines if r["kind"] == "train")
    assert train["train_config"]["cache_backbone_features"] is True
    assert (tmp_path / "run" / "last" / "config.json").is_file()


def test_a_larger_input_raises_the_longer_side_limit_with_it():
    bench = load_bench("train_coco_dev")
    config = bench.training_config(bench.parse_args(["--image-size", "384"]), threads=1)
    assert (config.image_size, config.max_size) == (384, 576)
    config = bench.training_config(
        bench.parse_args(["--image-size", "384", "--max-size", "512"]), threads=1)
    assert (config.image_size, config.max_size) == (384, 512)
    config = bench.training_config(bench.parse_args([]), threads=1)
    assert (config.image_size, config.max_size) == (None, None)  # the preset's or --init's


def test_the_seed_reaches_the_training_run():
    bench = load_bench("train_coco_dev")
    assert bench.training_config(bench.parse_args(["--seed", "3"]), threads=1).seed == 3
    assert bench.training_config(bench.parse_args([]), threads=1).seed == 0
