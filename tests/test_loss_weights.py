"""Loss weights other than the defaults (TrainConfig.loss_weights, bench --loss-weight): they
reach the criterion of a run, and a term that does not exist is refused before any work."""
import json
from pathlib import Path

import pytest
from bench_scripts import load_bench
from pydantic import ValidationError

from clickpose.data.synthetic import generate_dataset
from clickpose.model.criterion import LossWeights
from clickpose.train.loop import TrainConfig, train

parse_loss_weights = load_bench("train_synthetic").parse_loss_weights


def test_changes_replace_only_the_terms_named():
    weights = LossWeights.with_changes({"heatmap": 2, "oks": 12.0})
    assert weights.heatmap == 2.0 and weights.oks == 12.0
    assert weights.keypoints == LossWeights().keypoints


@pytest.mark.parametrize("changes, words, config_words", [
    ({"heatmaps": 2.0}, "'heatmaps' is not a loss term; the terms are bbox, ce", None),
    ({"oks": -1.0}, "'oks' = -1.0: give a number >= 0", None),
    ({"oks": None}, "'oks' = None: give a number >= 0", "loss_weights.oks"),
])
def test_a_bad_weight_names_the_term_and_the_fix(changes, words, config_words):
    with pytest.raises(ValueError, match=words):
        LossWeights.with_changes(changes)
    with pytest.raises(ValidationError, match=config_words or words):
        TrainConfig(data=Path("d"), out=Path("o"), loss_weights=changes)


def test_the_bench_option_stops_on_a_bad_weight():
    assert parse_loss_weights(["heatmap=2", "oks=12"]) == {"heatmap": 2.0, "oks": 12.0}
    for text, words in [("heatmap", "give a number"), ("heatmap=two", "could not convert"),
                        ("heat=2", "'heat' is not a loss term")]:
        with pytest.raises(SystemExit, match=words):
            parse_loss_weights([text])


def test_a_run_weighs_its_terms_as_configured(tmp_path):
    data = generate_dataset(tmp_path / "train", 2, seed=11, size=128, max_persons=2,
                            progress=False)

    def first_epoch_losses(name: str, weights: dict) -> dict:
        out = tmp_path / name
        train(TrainConfig(data=data, out=out, epochs=1, batch_size=2, workers=0, image_size=96,
                          max_size=96, dn_groups=1, max_steps_per_epoch=1, progress=False,
                          feedback_max_rounds=1, click_prior_images=0, loss_weights=weights,
                          model_overrides={"num_queries": 30, "max_humans": 6,
                                           "enc_layers": 1}),
              log=lambda *_: None)
        line = (out / "metrics.jsonl").read_text().splitlines()[0]
        return json.loads(line)["train"]["losses"]

    default = first_epoch_losses("default", {})
    weighed = first_epoch_losses("weighed", {"heatmap": 0.0, "oks": 8.0})
    assert default["loss_heatmap"] > 0 and weighed["loss_heatmap"] == 0
    # The same seed, the same first step: only the weights differ.
    assert weighed["loss_oks"] == pytest.approx(2 * default["loss_oks"], rel=1e-5)
    assert weighed["loss_keypoints"] == pytest.approx(default["loss_keypoints"], rel=1e-5)
