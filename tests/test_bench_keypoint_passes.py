"""bench/keypoint_passes.py on a few images: one network evaluated at each pass count (the
config views themselves: tests/test_bench_prediction_options.py)."""
import json

import pytest
from bench_scripts import load_bench

from clickpose.data.synthetic import generate_dataset

bench = load_bench("keypoint_passes")


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
