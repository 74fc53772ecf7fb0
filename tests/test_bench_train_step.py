"""bench/train_step.py on a handful of small synthetic images."""
import json

import pytest
from bench_scripts import load_bench


def test_bench_times_training_steps_by_phase(tmp_path, capsys):
    bench = load_bench("train_step")
    summary = bench.main(["--images", "4", "--size", "96", "--batch-size", "2", "--steps", "2",
                          "--warmup", "1", "--repeats", "2", "--threads", "1",
                          "--cache", str(tmp_path / "cache")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["machine", "warmup", "repeat", "repeat", "summary"]
    assert lines[0]["torch_threads"] == 1 and lines[0]["device"] == "cpu"
    assert lines[1]["steps"] == 1 and lines[1]["compile"] == "off"
    for repeat in lines[2:4]:
        assert repeat["steps"] == 2 and repeat["s_per_step"] > 0
        assert set(repeat["shares"]) == {"forward_and_losses", "backward", "clip_and_update"}
        assert abs(sum(repeat["shares"].values()) - 1) < 0.01
        assert all(share > 0 for share in repeat["shares"].values())
    assert summary["median_s_per_step"] == lines[-1]["median_s_per_step"] > 0
    assert summary["median_images_per_s"] > 0


def test_stages_split_the_forward_pass_and_leave_the_code_as_it_was(tmp_path, capsys):
    bench = load_bench("train_step")
    from clickpose.train import engine
    feedback_losses = engine.feedback_losses
    bench.main(["--images", "4", "--size", "96", "--batch-size", "2", "--steps", "2",
                "--warmup", "1", "--repeats", "1", "--threads", "1", "--stages",
                "--cache", str(tmp_path / "cache")])
    repeat = [json.loads(line) for line in capsys.readouterr().out.splitlines()][2]
    stages = repeat["forward_stage_ms_per_step"]
    assert set(stages) == {"encode", "detect_humans", "decode_keypoints", "losses",
                           "feedback_rounds"}
    assert all(ms > 0 for ms in stages.values())
    forward_ms = 1000 * repeat["s_per_step"] * repeat["shares"]["forward_and_losses"]
    assert stages["encode"] + stages["detect_humans"] < forward_ms
    assert engine.feedback_losses is feedback_losses  # unwrapped again

    folder = bench.cached_dataset(tmp_path / "cache", 4, bench.TRAIN_SEED, 96)
    rig = bench.StepRig(folder, 2, batches=1)
    with rig.stages_timed():
        rig.step(0)
        assert rig.stage_seconds["feedback_rounds"] > 0
    assert "encode" not in vars(rig.model) and "forward" not in vars(rig.criterion)
    assert rig.stage_seconds is None


def test_compile_option_hands_every_transformer_layer_to_torch_compile():
    bench = load_bench("train_step")
    from clickpose.keypoints import coco17
    from clickpose.model import build_model
    from clickpose.model.presets import preset_config

    model = build_model(preset_config("tiny", 17), coco17())
    bench.compile_layers(model, "default")
    layers = [*model.encoder.layers, *model.human_decoder.layers, *model.keypoint_decoder.layers]
    assert layers and all(layer._compiled_call_impl is not None for layer in layers)
    assert model.keypoint_decoder.xy_heads[0]._compiled_call_impl is None  # heads stay eager


def test_model_option_changes_the_timed_preset_and_a_bad_one_stops_first(tmp_path, capsys):
    bench = load_bench("train_step")
    summary = bench.main(["--images", "4", "--size", "96", "--batch-size", "2", "--steps", "1",
                          "--warmup", "1", "--repeats", "1", "--threads", "1",
                          "--cache", str(tmp_path / "cache"), "--model-option", "enc_layers=1"])
    assert summary["model_options"] == {"enc_layers": 1}
    folder = bench.cached_dataset(tmp_path / "cache", 4, bench.TRAIN_SEED, 96)
    rig = bench.StepRig(folder, 2, batches=1, model_options={"enc_layers": 1})
    assert len(rig.model.encoder.layers) == 1 and rig.model.config.enc_layers == 1
    with pytest.raises(SystemExit, match="ModelConfig field"):
        bench.main(["--model-option", "no_such_field=1", "--cache", str(tmp_path / "none")])
    with pytest.raises(SystemExit, match="hidden_dim 70 must be a multiple"):
        bench.main(["--model-option", "hidden_dim=70", "--cache", str(tmp_path / "none")])
    assert not (tmp_path / "none").exists()  # stopped before drawing any data
