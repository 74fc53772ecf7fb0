"""The packaged models: found by name wherever a checkpoint path goes, stored in half
precision and read in float32, each a real detector of synthetic people (its AP measured here
with pycocotools on scenes it never saw); the start model is one of them."""
import json

import pytest
import torch
from typer.testing import CliRunner

from clickpose.cli.main import app
from clickpose.data.synthetic import generate_dataset
from clickpose.evaluate.ap import evaluate_ap
from clickpose.model.checkpoint import (
    WEIGHTS_FILE,
    CheckpointError,
    checkpoint_folder,
    checkpoint_schema,
    load_model,
    read_checkpoint_config,
    read_weights,
)
from clickpose.model.pretrained import PRETRAINED_DIR, START_MODEL, pretrained_names
from clickpose.train.predict import predict_folder

NAME = START_MODEL
# Every package the README names; each must stay loadable and measured.
PACKAGED = ["tiny-synthetic", "tiny-synthetic-100min"]


def test_every_named_package_is_there_and_the_start_model_is_one():
    assert pretrained_names() == PACKAGED
    assert START_MODEL in PACKAGED


@pytest.mark.parametrize("name", PACKAGED)
def test_a_package_is_found_by_name_with_its_record(name):
    assert checkpoint_folder(name) == PRETRAINED_DIR / name
    config = read_checkpoint_config(name)
    assert config["model"]["preset"] == "tiny" and config["schema"]["name"] == "coco17"
    measured = config["metrics"]["measured"]
    assert measured["ap"]["AP"] > 0 and "bench/train_synthetic.py" in config["metrics"]["trained_by"]


@pytest.mark.parametrize("name", PACKAGED)
def test_a_package_carries_its_click_prior(name):
    prior = load_model(name).click_prior
    assert prior is not None and prior.num_keypoints == 17 and prior.persons_predicted > 100
    fitted = read_checkpoint_config(name)["metrics"]["click_prior"]
    assert "fit_packaged_click_prior.py" in fitted["fitted_by"]
    assert fitted["measured_without"]["noc"]["refine"]["NoC@90"] > 0


@pytest.mark.parametrize("name", PACKAGED)
def test_half_precision_weights_are_read_in_float32(name):
    from safetensors.torch import load_file

    stored = load_file(str(PRETRAINED_DIR / name / WEIGHTS_FILE))
    assert any(t.dtype == torch.float16 for t in stored.values())
    assert all(t.dtype != torch.float16 for t in read_weights(name).values())
    assert next(load_model(name).parameters()).dtype == torch.float32


def test_a_local_folder_of_that_name_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / NAME).mkdir()
    with pytest.raises(CheckpointError, match=f"^{NAME}: no model.safetensors"):
        checkpoint_folder(NAME)


def test_an_unknown_name_is_refused_listing_the_packaged_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    listed = ", ".join(PACKAGED)
    with pytest.raises(CheckpointError, match=f"no-such-model: no .*packaged one \\({listed}\\)"):
        checkpoint_folder("no-such-model")


@pytest.mark.parametrize("name", PACKAGED)
def test_a_package_finds_synthetic_people_it_never_saw(name, tmp_path):
    # Seed 777: not the training seed (1) nor the bench's validation seed (1001).
    data = generate_dataset(tmp_path / "fresh", 24, seed=777, size=256, progress=False)
    results = predict_folder(name, data, progress=False)
    ground_truth = json.loads((data / "annotations.json").read_text())
    ap = evaluate_ap(ground_truth, results, checkpoint_schema(name)).stats["AP"]
    # A fresh `tiny` model scores ~0.000 here; the packaged one about its measured val AP.
    assert ap > 0.1, ap


def test_training_starts_from_it_by_name(tmp_path):
    data = generate_dataset(tmp_path / "train", 4, seed=5, size=128, progress=False)
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", "--data", str(data), "--init", NAME,
                                      "--epochs", "1", "--batch-size", "4", "--workers", "0",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"initialised from {NAME}" in result.output
    assert read_checkpoint_config(out / "last")["model"]["preset"] == "tiny"


def test_the_command_lists_it_with_its_figures():
    result = CliRunner().invoke(app, ["pretrained"])
    assert result.exit_code == 0, result.output
    ap = read_checkpoint_config(NAME)["metrics"]["measured"]["ap"]["AP"]
    assert NAME in result.output and f"{ap:.3f}" in result.output
    assert "with its click prior" in result.output


def test_the_command_says_which_package_is_the_start_model():
    output = CliRunner().invoke(app, ["pretrained"]).output
    headers = [line for line in output.splitlines() if line.startswith(tuple(PACKAGED))]
    assert len(headers) == len(PACKAGED)
    starts = [line for line in headers if "where the demo and a new campaign start" in line]
    assert len(starts) == 1 and starts[0].startswith(f"{START_MODEL}  (")
