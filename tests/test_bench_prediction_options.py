"""bench/prediction_options.py on a few images: one network evaluated as saved and with each
variant of its config, the weights shared."""
import json

import pytest
from bench_scripts import load_bench

from clickpose.data.synthetic import generate_dataset
from clickpose.model.checkpoint import load_model

bench = load_bench("prediction_options")


def test_the_view_changes_only_the_options_given(tmp_path):
    view = bench.with_options("tiny-synthetic", {"keypoint_passes": 3, "heatmap_recentre": 0.1},
                              tmp_path / "view")
    packaged, viewed = load_model("tiny-synthetic"), load_model(view)
    assert viewed.config.keypoint_passes == 3 and viewed.config.heatmap_recentre == 0.1
    assert viewed.config.model_copy(
        update={"keypoint_passes": 1, "heatmap_recentre": None}) == packaged.config
    for (name, a), (_, b) in zip(packaged.state_dict().items(), viewed.state_dict().items()):
        assert a.equal(b), name


def test_the_bench_evaluates_the_checkpoint_as_saved_then_each_variant(tmp_path, capsys):
    val = generate_dataset(tmp_path / "val", 3, seed=23, size=256, progress=False)
    summaries = bench.main(["--checkpoint", "tiny-synthetic", "--variant", "heatmap_recentre=0.1",
                            "--data", str(val), "--noc-images", "2", "--modes", "model-only",
                            "--threads", "1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "ap", "noc", "summary",
                                                "ap", "noc", "summary"]
    assert [s["options"] for s in summaries] == [{}, {"heatmap_recentre": 0.1}]
    assert all(0.0 <= s["ap"] <= 1.0 and "refine_over_model_only_90" not in s
               for s in summaries)


def test_variants_parse_several_fields_and_refuse_unknown_ones():
    assert bench.parse_variant("keypoint_passes=2;heatmap_recentre=0.1") == {
        "keypoint_passes": 2, "heatmap_recentre": 0.1}
    with pytest.raises(SystemExit, match="--variant 'no_such_field=1'"):
        bench.main(["--checkpoint", "tiny-synthetic", "--variant", "no_such_field=1"])
