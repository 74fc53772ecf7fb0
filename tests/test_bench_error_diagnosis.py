"""bench/error_diagnosis.py reads another detector's results (the diagnosis itself:
tests/test_error_classes.py)."""
import json

from bench_scripts import load_bench
from planted_errors import planted_dataset, planted_predictions

bench = load_bench("error_diagnosis")


def test_the_command_line_reads_another_detectors_results(tmp_path, capsys):
    (tmp_path / "annotations.json").write_text(json.dumps(planted_dataset()))
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps(planted_predictions()))
    bench.main(["--predictions", str(predictions), "--data", str(tmp_path), "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "classes"] + ["ap"] * 7
    assert lines[1]["source"] == str(predictions)
    assert lines[1]["counts"]["miss"] == 1
