"""The campaign steps the flows call, without Prefect: labeled sets merged once per image,
rounds imported idempotently, the promotion rule, the campaign record and its stopping rule,
the report, and the simulated annotator."""
from __future__ import annotations

import json

import pytest
from flows_fixtures import tiny_config, tiny_data

from clickpose.campaign import dataset as campaign_data
from clickpose.campaign import labels, ledger, promotion, report
from clickpose.campaign.simulate import simulate_annotation
from clickpose.keypoints import SchemaError, coco17_plus
from clickpose.model import build_model, preset_config
from clickpose.model.checkpoint import save_checkpoint
from storage import Datasets, ModelRegistry, open_store


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("campaign-data"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, data):
    import torch

    from clickpose.campaign.config import CPU_MODEL
    from clickpose.keypoints import coco17

    torch.manual_seed(0)
    model = build_model(preset_config("tiny", image_size=64, max_size=96, **CPU_MODEL), coco17())
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m", model)


def _pool_gt(data) -> dict:
    return json.loads((data["pool"] / "annotations.json").read_text())


def test_merge_renumbers_and_refuses_an_image_twice(data):
    gt = _pool_gt(data)
    a = labels.subset(gt, ["pool/000001.jpg", "pool/000002.jpg"], "pool")
    b = labels.subset(gt, ["pool/000005.jpg"], "pool")
    merged = labels.merge(labels.merge(None, a), b)
    assert [im["file_name"] for im in merged["images"]] == ["pool/000001.jpg", "pool/000002.jpg",
                                                            "pool/000005.jpg"]
    assert [im["id"] for im in merged["images"]] == [1, 2, 3]
    assert [a["id"] for a in merged["annotations"]] == list(range(1, len(merged["annotations"]) + 1))
    by_image = {im["id"]: im["file_name"] for im in gt["images"]}
    expected = sorted(a["keypoints"] for a in gt["annotations"] if by_image[a["image_id"]] in
                      ("000001.jpg", "000002.jpg", "000005.jpg"))
    assert sorted(a["keypoints"] for a in merged["annotations"]) == expected
    with pytest.raises(labels.LabelError, match="'pool/000005.jpg'"):
        labels.merge(merged, labels.subset(gt, ["pool/000005.jpg"], "pool"))
    grown = {**b, "categories": [coco17_plus(["head_top"]).to_coco_category()]}
    with pytest.raises(SchemaError):
        labels.merge(merged, grown)
    with pytest.raises(labels.LabelError, match="no entry"):
        labels.subset(gt, ["pool/999999.jpg"], "pool")


def test_rounds_are_imported_once(tmp_path, data):
    cfg = tiny_config(tmp_path, data)
    datasets = Datasets(open_store(cfg.store))
    assert campaign_data.ingest_pool(datasets, cfg).number == 1
    assert campaign_data.ingest_pool(datasets, cfg).number == 1     # same pool: no new version
    seed = campaign_data.seed_labels(cfg)
    v0 = campaign_data.import_round(datasets, cfg, 0, seed, None, None)
    assert campaign_data.import_round(datasets, cfg, 0, seed, None, None) == v0
    new = labels.subset(_pool_gt(data), ["pool/000003.jpg"], "pool")
    v1 = campaign_data.import_round(datasets, cfg, 1, new, [{"image": "pool/000003.jpg",
                                                             "score": 0.5}],
                                    [{"image": "pool/000003.jpg", "clicks": 4, "seconds": 8.0}])
    assert campaign_data.import_round(datasets, cfg, 1, new, None, None).number == v1.number
    assert datasets.versions(cfg.name) == [1, 2, 3]
    assert labels.labeled_keys(datasets.labels(v1)) == [
        f"seed/{i:06d}.jpg" for i in range(1, 5)] + ["pool/000003.jpg"]
    with pytest.raises(labels.LabelError, match="labeled already"):
        campaign_data.import_round(datasets, cfg, 2, new, None, None)
    folder = campaign_data.training_folder(datasets, cfg, 1)
    from clickpose.data import read_coco_dataset

    assert len(read_coco_dataset(folder).records) == 5


def test_promotion_rule():
    assert promotion.decide({"ap": 0.1}, None).promote
    assert promotion.decide({"ap": 0.5}, {"ap": 0.4}).promote
    assert not promotion.decide({"ap": 0.4}, {"ap": 0.5}).promote
    assert not promotion.decide({"ap": 0.45}, {"ap": 0.4}, min_delta=0.1).promote
    assert promotion.decide({"ap": 0.4, "noc_90": 3.0}, {"ap": 0.4, "noc_90": 4.0}).promote
    assert not promotion.decide({"ap": 0.4, "noc_90": 5.0}, {"ap": 0.4, "noc_90": 4.0}).promote


def test_register_round_model_once(tmp_path, checkpoint):
    registry = ModelRegistry(open_store(tmp_path / "store"))
    metrics = {"ap": 0.2, "noc": {"90": 4.0}}
    first, d0 = promotion.register_round_model(registry, checkpoint, "c1", 0, metrics,
                                               {"name": "p", "version": 2}, None)
    again, _ = promotion.register_round_model(registry, checkpoint, "c1", 0, metrics,
                                              {"name": "p", "version": 2}, None)
    assert first.id == again.id and len(registry.list()) == 1 and d0.promote
    worse, d1 = promotion.register_round_model(registry, checkpoint, "c1", 1, {"ap": 0.1},
                                               {"name": "p", "version": 3}, first.id)
    assert not d1.promote and registry.current().id == first.id
    assert worse.metrics == {"ap": 0.1} and worse.parent == first.id
    local = promotion.local_checkpoint(registry, worse.id, tmp_path / "cache")
    assert (local / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors"
                                                          ).read_bytes()


def test_campaign_record_and_stop_rule(tmp_path):
    store = open_store(tmp_path / "store")
    state = ledger.open_campaign(store, "c", {"rounds": 3})
    assert ledger.open_campaign(store, "c", {"rounds": 9}).id == state.id
    assert state.next_round == 0
    ledger.record_round(store, "c", 0, {"metrics": {"ap": 0.3}, "model": "m1",
                                        "current_model": "m1", "clicks": 0})
    state = ledger.record_round(store, "c", 1, {"metrics": {"ap": 0.2}, "model": "m2",
                                                "current_model": "m1", "clicks": 40})
    assert ledger.record_round(store, "c", 1, {"clicks": 99}).rounds[1]["clicks"] == 40
    assert state.next_round == 2 and state.clicks == 40
    assert ledger.current_ap(state) == 0.3
    assert ledger.stop_reason(state, target_ap=0.25).startswith("target AP")
    assert ledger.stop_reason(state, target_ap=0.5) is None
    assert ledger.stop_reason(state, click_budget=40).startswith("click budget")
    assert ledger.stop_reason(state, click_budget=41) is None


def test_report_table_and_curve(tmp_path):
    rounds = {0: {"labeled_images": 4, "new_images": 4, "clicks": 0, "clicks_total": 0,
                  "metrics": {"ap": 0.1, "ap50": 0.2, "noc": {"85": 9.0, "90": 10.0, "95": 11.0}},
                  "model": "m0001", "promoted": True},
              1: {"labeled_images": 7, "new_images": 3, "clicks": 21, "clicks_total": 21,
                  "predicted_clicks": 18.6,
                  "metrics": {"ap": 0.25, "ap50": 0.4, "noc": {"85": 7.0, "90": 8.5, "95": 9.0}},
                  "model": "m0002", "promoted": True}}
    table = report.rounds_table(rounds)
    assert table.splitlines()[2].startswith("| 0 | 4 | 4 | 0 | - | 0 | 0.100 |")
    assert table.splitlines()[3] == ("| 1 | 7 | 3 | 21 | 19 | 21 | 0.250 | 0.400 | 7.000 | "
                                     "8.500 | 9.000 | m0002 | yes |")
    written = report.write_report(open_store(tmp_path / "store"), "c", rounds)
    png = (tmp_path / "store" / written["curve"]).read_bytes()
    assert png[:4] == b"\x89PNG" and len(png) > 5000
    assert written["curve_uri"] in written["text"]


def test_simulated_annotator_labels_from_ground_truth(data, checkpoint):
    gt = _pool_gt(data)
    keys = ["pool/000002.jpg", "pool/000007.jpg"]
    batch = simulate_annotation(checkpoint, data["pool"], gt, keys, max_rounds=2)
    assert labels.labeled_keys(batch.labels) == keys
    truth = labels.subset(gt, keys, "pool")
    assert batch.labels["annotations"] == truth["annotations"]
    assert [r["image"] for r in batch.records] == keys
    for record in batch.records:
        assert record["rounds"] <= 2 and record["seconds"] == 2.0 * record["clicks"]
    # An untrained model is far from the truth: the annotator has to click.
    assert batch.clicks > 0


def test_campaign_config_refuses_settings_no_round_can_run(tmp_path, data):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="strategy"):
        tiny_config(tmp_path, data, strategy="k_medoids")
    with pytest.raises(ValidationError, match="budget_clicks needs the predicted clicks.*"
                                              "set scorer: expected_clicks"):
        tiny_config(tmp_path, data, budget_clicks=30.0)
    with pytest.raises(ValidationError, match="strategy 'top_per_click' needs"):
        tiny_config(tmp_path, data, strategy="top_per_click")
    with pytest.raises(ValidationError, match="strategy 'k_center_per_click' needs"):
        tiny_config(tmp_path, data, strategy="k_center_per_click")
    with pytest.raises(ValidationError, match="budget_images and budget_clicks are both empty"):
        tiny_config(tmp_path, data, budget_images=None)
    with pytest.raises(ValidationError, match="promote_metric"):
        tiny_config(tmp_path, data, promote_metric="noc_90")   # lower is better: not a rule
    cost_aware = tiny_config(tmp_path, data, scorer="expected_clicks", strategy="top_per_click",
                             budget_images=None, budget_clicks=30.0)
    assert cost_aware.budget_clicks == 30.0


def test_diversity_strategies_choose_from_the_embeddings_pool_scoring_keeps(tmp_path, data,
                                                                          checkpoint):
    import numpy as np

    from clickpose.campaign.scoring import score_shard
    from flows import tasks

    cfg = tiny_config(tmp_path, data, strategy="k_center", budget_images=3)
    assert cfg.needs_embeddings and not tiny_config(tmp_path, data).needs_embeddings
    images = campaign_data.pool_images(cfg)
    scores = score_shard(checkpoint, images, cfg.scorer, (0, 1), embeddings=True, threads=1)
    embeddings = scores.embeddings()
    assert sorted(embeddings) == sorted(images)
    vectors = np.array(list(embeddings.values()))
    assert vectors.shape[1] == 64 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert len({tuple(np.round(v, 6)) for v in vectors}) == len(vectors)  # one per image
    plain = score_shard(checkpoint, images, cfg.scorer, (0, 1), threads=1)
    assert plain.embeddings() == {}
    assert [s.score for s in plain.scores] == [s.score for s in scores.scores]

    labeled = sorted(images)[:1]
    chosen = tasks.select_batch.fn(cfg, "campaign", 1, scores, labeled)
    ids = [item.image_id for item in chosen.items]
    assert len(ids) == 3 and labeled[0] not in ids
    # k-center: the first pick is the image farthest from the labeled one.
    far = max((k for k in embeddings if k not in labeled),
              key=lambda k: np.linalg.norm(np.subtract(embeddings[k], embeddings[labeled[0]])))
    assert ids[0] == far
    # typical_clusters reads the same embeddings: clusters of the labeled and the pool images
    typical = tiny_config(tmp_path, data, strategy="typical_clusters", budget_images=3)
    assert typical.needs_embeddings
    chosen = tasks.select_batch.fn(typical, "campaign", 1, scores, labeled)
    assert len(chosen.items) == 3 and labeled[0] not in chosen.image_ids
    assert all(item.reason.startswith("typical image of cluster") for item in chosen.items)


def test_missing_seed_labels_and_val_name_the_file_and_the_field(tmp_path, data, checkpoint):
    from clickpose.campaign.metrics import evaluate_checkpoint

    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = tiny_config(tmp_path, data, seed_labels=empty)
    with pytest.raises(FileNotFoundError, match="annotations.json: seed_labels must be a labeled"):
        campaign_data.seed_labels(cfg)
    with pytest.raises(FileNotFoundError, match="give its path in val"):
        evaluate_checkpoint(checkpoint, empty)


def test_training_recipe_key_follows_what_training_learns():
    from clickpose.campaign.config import TrainSettings

    base = TrainSettings().recipe_key()
    assert len(base) == 12
    for runtime in ({"threads": 3}, {"device": "cpu"}, {"workers": 2},
                    {"cache_backbone_features": True}):
        assert TrainSettings(**runtime).recipe_key() == base, runtime
    keys = {TrainSettings(**change).recipe_key() for change in (
        {"epochs": 5}, {"lr": 1e-3}, {"max_minutes": 2.0}, {"seed": 1},
        {"model_overrides": {"num_queries": 20}}, {"processes": 2})}
    assert len(keys) == 6 and base not in keys
    assert base == "5dba02150157"  # the key of these defaults before `processes` existed


def test_campaign_data_is_drawn_again_when_its_settings_change(tmp_path):
    from clickpose.campaign.demo_data import synthetic_campaign_data

    def drawn(**settings):
        folders = synthetic_campaign_data(tmp_path, pool=3, val=2, seed_set=2, progress=False,
                                          **settings)
        return {name: (folder / "annotations.json").stat().st_mtime_ns
                for name, folder in folders.items()}

    first = drawn(size=64)
    assert drawn(size=64) == first                     # the same settings: kept
    bigger = drawn(size=80)
    assert all(bigger[name] != first[name] for name in first)
    info = json.loads((tmp_path / "pool" / "annotations.json").read_text())["info"]
    assert info["size"] == 80 and info["num_images"] == 3


def test_noc_editors_load_the_model_on_the_device_asked(data, checkpoint):
    from clickpose.evaluate import checkpoint_editors
    from clickpose.evaluate.inputs import schema_for

    gt = json.loads((data["val"] / "annotations.json").read_text())
    schema = schema_for(gt, None, "val")
    with pytest.raises(RuntimeError, match="nosuchdevice"):   # the device reaches the model
        checkpoint_editors(checkpoint, data["val"], gt, "refine", schema, device="nosuchdevice")
    editor = checkpoint_editors(checkpoint, data["val"], gt, "refine", schema, device="cpu")
    assert editor(gt["images"][0]["id"]).poses is not None


def test_a_round_keeps_its_start_checkpoints_input_size_unless_told(tmp_path, data, checkpoint):
    """The campaign's small input is for fresh models: a start checkpoint's persons were
    learnt at its own size, and shrinking them under it would undo its training."""
    from clickpose.campaign.config import FRESH_INPUT, TrainSettings
    from clickpose.campaign.retrain import fine_tune
    from clickpose.model.checkpoint import read_checkpoint_config

    one_step = {"epochs": 1, "max_steps_per_epoch": 1, "batch_size": 2, "max_minutes": None,
                "threads": 1}

    def trained_size(name: str, settings: TrainSettings, init) -> int:
        out = fine_tune(data["seed"], tmp_path / name, settings, init=init, log=lambda _: None)
        return read_checkpoint_config(out)["model"]["image_size"]

    assert trained_size("from-checkpoint", TrainSettings(**one_step), checkpoint) == 64
    assert trained_size("told", TrainSettings(**one_step, image_size=80), checkpoint) == 80
    fresh = TrainSettings(**one_step, model_overrides={"enc_layers": 1})
    assert trained_size("fresh", fresh, None) == FRESH_INPUT["image_size"]


def test_a_round_can_retrain_in_several_processes(tmp_path, data, checkpoint):
    """settings.processes > 1: the round's training runs under torchrun (here two CPU
    processes, gloo), its lines reach the log and the checkpoint is the round's."""
    from clickpose.campaign.config import TrainSettings
    from clickpose.campaign.retrain import fine_tune
    from clickpose.model.checkpoint import read_checkpoint_config

    settings = TrainSettings(epochs=1, max_steps_per_epoch=1, batch_size=2, max_minutes=None,
                             threads=1, processes=2, device="cpu")
    lines: list[str] = []
    out = fine_tune(data["seed"], tmp_path / "parallel", settings, init=checkpoint,
                    log=lines.append)
    assert out == tmp_path / "parallel" / "last"
    assert read_checkpoint_config(out)["model"]["image_size"] == 64
    record = json.loads((tmp_path / "parallel" / "metrics.jsonl").read_text().splitlines()[0])
    assert record["train"]["steps"] == 1 and record["train"]["images"] == 4  # 2 x 2
    assert sum("x 2 processes (batch 2 each)" in line for line in lines) == 1
    # Done is done: asked again, the round's checkpoint comes back without training.
    assert fine_tune(data["seed"], tmp_path / "parallel", settings, init=checkpoint,
                     log=lines.append) == out

    # A process's error is raised here with its own type and message.
    from clickpose.data.errors import DataError

    with pytest.raises(DataError, match="no-such-data"):
        fine_tune(tmp_path / "no-such-data", tmp_path / "failed", settings, init=checkpoint,
                  log=lambda _: None)
