"""A moving average of the weights: what a run saves, how --resume continues it."""
import pytest
import torch

from clickpose.data.synthetic import generate_dataset
from clickpose.model.checkpoint import CheckpointError, read_online_weights, read_weights
from clickpose.train.ema import build_ema
from clickpose.train.loop import TrainConfig, train

SMALL = {"num_queries": 20, "max_humans": 4, "enc_layers": 1, "keypoint_layers": 1}
DECAY = 0.9998


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("synthetic") / "train", 4, seed=21,
                            size=96, max_persons=2, progress=False)


def _config(data, out, **kw):
    base = {"data": data, "out": out, "epochs": 1, "batch_size": 2, "workers": 0,
            "image_size": 64, "max_size": 64, "dn_groups": 1, "max_steps_per_epoch": 1,
            "progress": False, "lr": 1e-3, "feedback_max_rounds": 1, "model_overrides": SMALL,
            "ema_decay": DECAY}
    return TrainConfig(**{**base, **kw})


def _run(config):
    train(config, log=lambda *_: None)
    return read_weights(config.out / "last"), read_online_weights(config.out / "last")


def test_the_checkpoint_holds_the_average_and_resume_continues_it(data, tmp_path):
    # Step 1: the warmup's decay is 0, so the average is the online weights themselves.
    average1, online1 = _run(_config(data, tmp_path / "run"))
    assert online1.keys() == average1.keys()
    assert all(torch.equal(average1[k], online1[k]) for k in online1)
    # Step 2, resumed: the decay is 1 - 2^(-2/3), and the average mixes the two steps' weights.
    average2, online2 = _run(_config(data, tmp_path / "run", epochs=2, resume=True))
    decay = 1 - 2 ** (-2 / 3)
    moved = [k for k in online2 if online2[k].is_floating_point()
             and not torch.equal(online2[k], online1[k])]
    assert moved, "the second step changed no weight"
    for k in moved:
        torch.testing.assert_close(average2[k], decay * online1[k] + (1 - decay) * online2[k])


def test_resume_refuses_to_drop_or_invent_the_average(data, tmp_path):
    train(_config(data, tmp_path / "averaged"), log=lambda *_: None)
    with pytest.raises(CheckpointError, match="--ema-decay"):
        train(_config(data, tmp_path / "averaged", epochs=2, resume=True, ema_decay=None),
              log=lambda *_: None)
    train(_config(data, tmp_path / "plain", ema_decay=None), log=lambda *_: None)
    assert read_online_weights(tmp_path / "plain" / "last") == {}
    with pytest.raises(CheckpointError, match="kept no moving average"):
        train(_config(data, tmp_path / "plain", epochs=2, resume=True), log=lambda *_: None)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.5, 1.5])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValueError, match="between 0 and 1"):
        build_ema(torch.nn.Linear(2, 2), decay)
    assert build_ema(torch.nn.Linear(2, 2), None) is None


def test_train_command_line_keeps_the_average(data, tmp_path):
    from typer.testing import CliRunner

    from clickpose.cli.main import app

    out = tmp_path / "cli"
    args = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "4",
            "--image-size", "64", "--workers", "0", "--dn-groups", "1", "--ema-decay", str(DECAY)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert read_online_weights(out / "last").keys() == read_weights(out / "last").keys()
    # Resuming without the option would drop the average: one clear line, exit 1.
    result = CliRunner().invoke(app, [a for a in args if a not in ("--ema-decay", str(DECAY))]
                                + ["--resume"])
    assert result.exit_code == 1 and "--ema-decay" in result.output
