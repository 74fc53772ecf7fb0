"""bench/train_synthetic.py end to end on a handful of small synthetic images, and
bench/retrain_quality_head.py, bench/click_effect.py and bench/option_ab.py on the checkpoint
it leaves."""
import json

import pytest
import torch
from bench_scripts import load_bench

from clickpose.data.synthetic import GENERATOR_VERSION
from clickpose.model.checkpoint import read_checkpoint_config, read_weights

# The cache names carry the generator version: a new generator never reuses old scenes.
TRAIN_FOLDER = f"photo-v{GENERATOR_VERSION}-n4-s1-96px"
VAL_FOLDER = f"photo-v{GENERATOR_VERSION}-n2-s1001-96px"


def test_bench_trains_and_reports_ap_and_noc(tmp_path, capsys):
    bench = load_bench("train_synthetic")
    summary = bench.main(["--minutes", "0.05", "--epochs", "1", "--train-images", "4",
                          "--val-images", "2", "--size", "96", "--batch-size", "2",
                          "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
                          "--threads", "1", "--workers", "0", "--model-option", "enc_layers=1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert read_checkpoint_config(tmp_path / "run" / "last")["model"]["enc_layers"] == 1
    kinds = [line.get("kind") for line in lines]
    assert kinds[:2] == ["machine", "data"] and kinds[-1] == "summary"
    machine = lines[0]
    assert machine["device"] == "cpu" and machine["torch_threads"] == 1 and machine["cores"] >= 1
    assert machine["cpu"] and machine["torch"]
    assert (tmp_path / "cache" / TRAIN_FOLDER / "annotations.json").is_file()
    assert (tmp_path / "cache" / VAL_FOLDER / "annotations.json").is_file()
    epochs = [line for line in lines if line["kind"] == "epoch"]
    assert len(epochs) == 1 and epochs[0]["steps"] >= 1
    nocs = {line["mode"]: line for line in lines if line["kind"] == "noc"}
    assert set(nocs) == {"model-only", "refine"}
    for noc in nocs.values():
        assert noc["n_images"] == 2 and 0 <= noc["NoC@90"] <= 17
    ap = next(line for line in lines if line["kind"] == "ap")
    assert summary["val_AP"] == ap["stats"]["AP"] and 0.0 <= summary["val_AP"] <= 1.0
    assert summary["NoC@90_refine"] == nocs["refine"]["NoC@90"]
    with pytest.raises(SystemExit, match="ModelConfig field"):
        bench.main(["--model-option", "enc_layer=1"])
    with pytest.raises(SystemExit, match="hidden_dim 70 must be a multiple"):
        bench.main(["--model-option", "hidden_dim=70", "--cache", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()  # refused before any data are drawn
    # The generated data is reused, not drawn again, by a second run (evaluation only).
    stamp = (tmp_path / "cache" / TRAIN_FOLDER / "annotations.json").stat().st_mtime_ns
    bench.main(["--skip-train", "--train-images", "4", "--val-images", "2", "--size", "96",
                "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
                "--threads", "1", "--noc-images", "1"])
    assert (tmp_path / "cache" / TRAIN_FOLDER / "annotations.json").stat().st_mtime_ns \
        == stamp

    # The head alone, retrained on the run's frozen network, is measured the same way.
    retrain = load_bench("retrain_quality_head")
    capsys.readouterr()
    retrain.main(["--checkpoint", str(tmp_path / "run" / "last"), "--out", str(tmp_path / "head"),
                  "--data", str(tmp_path / "cache" / TRAIN_FOLDER),
                  "--val", str(tmp_path / "cache" / VAL_FOLDER), "--epochs", "1",
                  "--batch-size", "2", "--threads", "1"])
    kinds = [json.loads(line)["kind"] for line in capsys.readouterr().out.splitlines()]
    assert kinds[:2] == ["machine", "epoch"] and "ap" in kinds and kinds.count("noc") == 2
    before = read_weights(tmp_path / "run" / "last")
    after = read_weights(tmp_path / "head" / "last")
    assert before.keys() == after.keys()
    for name, tensor in before.items():
        same = torch.equal(tensor, after[name])
        assert same != name.startswith("pose_quality."), name

    # What a click changes, measured on the run's checkpoint.
    effect = load_bench("click_effect")
    capsys.readouterr()
    lines = effect.main(["--checkpoint", str(tmp_path / "run" / "last"),
                         "--data", str(tmp_path / "cache" / VAL_FOLDER), "--images", "2",
                         "--probe-images", "2", "--threads", "1"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in printed] == ["machine", "noc", "click_gain", "error_share",
                                                  "pin_probe"]
    noc, gain, share, probe = lines
    assert noc["n_images"] == 2 and 0 <= noc["NoC@90"] <= 17
    assert gain["clicks"] >= 1 and 0 <= gain["other_closer"] <= 1
    assert share["persons"] >= 1 and share["clicks_per_person"] >= 0
    assert probe["pairs"] >= 1
    for case in effect.PROBE_CASES:
        assert 0 <= probe[f"repaired_{case}"] <= 1 and probe[f"median_error_{case}"] >= 0

    # A model option against its absence, both fine-tuned from the run's checkpoint.
    ab = load_bench("option_ab")
    capsys.readouterr()
    common = ["--init", str(tmp_path / "run" / "last"), "--data", str(tmp_path / "cache" / TRAIN_FOLDER),
              "--val", str(tmp_path / "cache" / VAL_FOLDER), "--minutes", "0.05", "--epochs", "1",
              "--seeds", "0", "--noc-images", "1", "--batch-size", "2", "--threads", "1",
              "--out", str(tmp_path / "ab")]
    summary = ab.main([*common, "--option", "max_humans=3"])
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [line["kind"] for line in printed]
    assert kinds[0] == "machine" and kinds[-1] == "summary"
    assert kinds.count("train") == kinds.count("ap") == 2 and kinds.count("noc") == 4
    without, with_option = [line for line in printed if line["kind"] == "arm"]
    assert (without["arm"], with_option["arm"]) == ("without", "with")
    assert with_option["overrides"] == {"max_humans": 3}
    assert summary["refine_NoC@90_with_minus_without"] == {
        0: round(with_option["refine_NoC@90"] - without["refine_NoC@90"], 3)}
    for arm, humans in (("with", 3), ("without", 10)):  # 10: the tiny preset's
        config = read_checkpoint_config(tmp_path / "ab" / f"seed0-{arm}" / "last")
        assert config["model"]["max_humans"] == humans
    for option, says in (("max_humans=10", "already has"),
                         ("no_such_field=1", "ModelConfig field"),
                         ("flip_test=yes", "not JSON")):
        with pytest.raises(SystemExit, match=says):
            ab.main([*common, "--option", option])


def test_bench_measures_the_average_against_the_online_weights(tmp_path, capsys):
    bench = load_bench("train_synthetic")
    summary = bench.main(["--minutes", "0.05", "--epochs", "1", "--train-images", "4",
                          "--val-images", "2", "--size", "96", "--batch-size", "2",
                          "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "run"),
                          "--threads", "1", "--noc-images", "1", "--ema-decay", "0.9998",
                          "--model-option", "enc_layers=1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    kinds = [line["kind"] for line in lines]
    online = lines[kinds.index("online_weights")]
    assert kinds.index("online_weights") < kinds.index("summary")
    aps = [line for line in lines if line["kind"] == "ap"]
    assert [a["checkpoint"] for a in aps] == [str(tmp_path / "run" / "online"),
                                              str(tmp_path / "run" / "last")]
    assert online["val_AP"] == aps[0]["stats"]["AP"] and summary["val_AP"] == aps[1]["stats"]["AP"]
    # The online checkpoint holds the training state's online weights, not the average.
    from clickpose.model.checkpoint import read_online_weights
    online_weights = read_online_weights(tmp_path / "run" / "last")
    saved = read_weights(tmp_path / "run" / "online")
    assert all(torch.equal(saved[k], online_weights[k]) for k in online_weights)
