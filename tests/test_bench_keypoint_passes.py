"""bench/keypoint_passes.py on a few images: one network evaluated at each pass count, the
weights shared and only the config's count changed."""
import json

import pytest
from bench_scripts import load_bench

from clickpose.data.synthetic import generate_dataset
from clickpose.model.checkpoint import load_model

bench = load_bench("keypoint_passes")


def test_the_view_changes_only_the_pass_count(tmp_path):
    view = bench.with_passes("tiny-synthetic", 3, tmp_path / "view")
    packaged, viewed = load_model("tiny-synthetic"), load_model(view)
    assert viewed.config.keypoint_passes == 3
    assert viewed.config.model_copy(update={"keypoint_passes": 1}) == packaged.config
    for (name, a), (_, b) in zip(packaged.state_dict().items(), viewed.state_dict().items()):
        assert a.equal(b), name


def test_the_bench_evaluates_each_count(tmp_path, capsys):
    val = generate_dataset(tmp_path / "val", 3, seed=23, size=256, progress=False)
    summaries = bench.main(["--checkpoint", "tiny-synthetic", "--passes", "1,2",
                            "--data", str(val), "--noc-images", "2", "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "ap", "noc", "noc", "summary",
                                                "ap", "noc", "noc", "summary"]
    assert [s["keypoint_passes"] for s in summaries] == [1, 2]
    for summary in summaries:
        assert 0.0 <= summary["ap"] <= 1.0
        assert summary["refine_over_model_only_90"] == round(
            summary["noc90_refine"] / summary["noc90_model-only"], 3)


def test_bad_pass_counts_are_refused_by_name(capsys):
    for bad in ("0,1", "two", ""):
        with pytest.raises(SystemExit):
            bench.main(["--checkpoint", "tiny-synthetic", "--passes", bad])
        assert "--passes" in capsys.readouterr().err
