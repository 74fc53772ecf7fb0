"""bench/click_prior.py on a few images: the packaged model with and without its prior, one
run, and a summary whose ratios are those of the runs it printed."""
import json

import pytest
from bench_scripts import load_bench

from clickpose.data.synthetic import generate_dataset

bench = load_bench("click_prior")


def test_the_bench_compares_refine_with_and_without_the_prior(tmp_path, capsys):
    fit = generate_dataset(tmp_path / "fit", 6, seed=21, size=256, progress=False)
    val = generate_dataset(tmp_path / "val", 4, seed=22, size=256, progress=False)
    summary = bench.main(["--checkpoint", "tiny-synthetic", "--fit-data", str(fit),
                          "--fit-images", "6", "--data", str(val), "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "fit", "noc", "noc", "noc", "summary"]
    fit_line, only, plain, prior = lines[1:5]
    assert fit_line["persons_labelled"] > 0 and fit_line["persons_predicted"] > 0
    assert [only["source"], plain["source"], prior["source"]] == [
        "model-only", "refine without click prior", "refine with click prior"]
    assert summary["prior/no-prior@90"] == pytest.approx(
        prior["NoC@90"] / plain["NoC@90"], abs=1e-3)
    assert summary["refine+prior/model-only@85"] == pytest.approx(
        prior["NoC@85"] / only["NoC@85"], abs=1e-3)
