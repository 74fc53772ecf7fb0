"""bench/data_parallel.py on a handful of small synthetic images: both arms really train."""
import json

import pytest
from bench_scripts import load_bench


def test_bench_compares_one_process_with_torchrun_processes(tmp_path, capsys):
    bench = load_bench("data_parallel")
    summary = bench.main(["--images", "4", "--size", "96", "--batch-size", "2", "--epochs", "2",
                          "--repeats", "1", "--cache", str(tmp_path / "cache")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "arm", "arm", "summary"]
    assert [(a["processes"], a["threads_each"]) for a in lines[1:3]] == [(1, 2), (2, 1)]
    assert all(a["images_per_s"] > 0 for a in lines[1:3])
    speeds = summary["median_images_per_s"]
    ratio = speeds["2_processes"] / speeds["1_process"]
    # speeds keep four significant figures, the ratio three
    assert summary["processes_over_one_process"] == pytest.approx(ratio, rel=1e-3, abs=1e-3)
