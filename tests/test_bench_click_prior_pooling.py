"""bench/click_prior_pooling.py on a few images: every arm measured in one run, the summary
holding the figures of the runs it printed."""
import json

import pytest
from bench_scripts import load_bench

from clickpose.data.synthetic import generate_dataset

bench = load_bench("click_prior_pooling")


def test_the_bench_measures_each_prior_and_pool(tmp_path, capsys):
    fit = generate_dataset(tmp_path / "fit", 4, seed=23, size=256, progress=False)
    val = generate_dataset(tmp_path / "val", 3, seed=24, size=256, progress=False)
    summary = bench.main(["--checkpoint", "tiny-synthetic", "--fit-data", str(fit),
                          "--data", str(val), "--caps", "5,50", "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "fit"] + ["noc"] * 6 + ["summary"]
    assert lines[1]["persons_labelled"] > 0 and lines[1]["inherited_persons"] > 1000
    arms = ("none", "own", "own_regularized", "inherited", "pooled_5", "pooled_50")
    assert [line["source"] for line in lines[2:8]] == [f"click prior: {arm}" for arm in arms]
    for line, arm in zip(lines[2:8], arms):
        assert summary[arm]["NoC@90"] == pytest.approx(line["NoC@90"])
    assert summary["n_images"] == lines[2]["n_images"]


def test_bad_caps_are_refused_by_name(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--checkpoint", "tiny-synthetic", "--fit-data", str(tmp_path),
                    "--data", str(tmp_path), "--caps", "0,x"])
    assert "--caps 0,x" in capsys.readouterr().err
