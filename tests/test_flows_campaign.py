"""The flows end to end on tiny synthetic data through Prefect's test harness (one server for
the module): a two-round simulated campaign (labels, clicks, models, report, artifacts,
FiftyOne dataset; started again it does nothing); the same scoring on a Dask LocalCluster
chooses the same batch; a campaign that crashes in round 2 and is started again finishes
without annotating or importing twice; `human` mode pauses until the annotator finishes."""
from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from annotator_fixtures import free_port
from flows_fixtures import tiny_config, tiny_data
from prefect.client.orchestration import get_client
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.testing.utilities import prefect_test_harness

import clickpose.campaign.retrain as retrain_lib
import clickpose.campaign.simulate as simulate_lib
from clickpose.campaign import ledger
from clickpose.campaign.human import task_folder
from clickpose.campaign.promotion import decide
from flows.al_campaign import al_campaign
from flows.al_round import score_and_select
from flows.runners import make_task_runner
from flows.tasks import labeled_before
from storage import Datasets, ModelRegistry, open_store


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_data(tmp_path_factory.mktemp("flows-data"))


def _gt_by_key(data) -> dict[str, list]:
    coco = json.loads((data["pool"] / "annotations.json").read_text())
    anns = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        anns[a["image_id"]].append(a["keypoints"])
    return {f"pool/{im['file_name']}": sorted(anns[im["id"]]) for im in coco["images"]}


def _labels_by_key(coco) -> dict[str, list]:
    anns = {im["id"]: [] for im in coco["images"]}
    for a in coco["annotations"]:
        anns[a["image_id"]].append(a["keypoints"])
    return {im["file_name"]: sorted(anns[im["id"]]) for im in coco["images"]}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, data):
    cfg = tiny_config(tmp_path_factory.mktemp("campaign"), data)
    return cfg, al_campaign(cfg, publish=True)


def test_two_simulated_rounds(campaign, data):
    import fiftyone as fo

    cfg, result = campaign
    rounds = result["rounds"]
    assert sorted(rounds) == [0, 1, 2] and result["stopped"] == "2 rounds done"
    assert [rounds[r]["labeled_images"] for r in (0, 1, 2)] == [4, 7, 10]

    store = open_store(cfg.store)
    datasets = Datasets(store)
    assert datasets.versions("people") == [1, 2, 3, 4]   # pool, round 0, 1, 2: once each
    latest = datasets.latest("people")
    labels = datasets.labels(latest)
    keys = [im["file_name"] for im in labels["images"]]
    assert len(keys) == len(set(keys)) == 10
    truth = _gt_by_key(data)
    chosen = []
    for r in (1, 2):
        selection = datasets.selection(latest, r)
        records = datasets.annotations(latest, r)
        picked = [e["image"] for e in selection]
        assert len(picked) == 3 and not set(picked) & set(chosen)
        scores = [e["score"] for e in selection]
        assert scores == sorted(scores, reverse=True)          # strategy 'top'
        assert sorted(rec["image"] for rec in records) == sorted(picked)
        assert rounds[r]["clicks"] == sum(rec["clicks"] for rec in records)
        assert all(rec["clicks"] >= 0 and rec["annotator"] == "simulated" for rec in records)
        assert rounds[r]["clicks"] > 0   # an untrained model's persons need correcting
        chosen += picked
    assert rounds[2]["clicks_total"] == rounds[1]["clicks"] + rounds[2]["clicks"]
    # The simulated annotator hands back the ground truth of exactly the chosen images.
    by_key = _labels_by_key(labels)
    assert {k for k in by_key if k.startswith("pool/")} == set(chosen)
    for key in chosen:
        assert by_key[key] == truth[key]

    registry = ModelRegistry(store)
    models = registry.list()
    assert [m.config["campaign"]["round"] for m in models] == [0, 1, 2]
    assert [m.dataset["version"] for m in models] == [2, 3, 4]
    assert models[1].parent == models[0].id
    # Promotion followed the stated rule, round by round.
    current = None
    for r in (0, 1, 2):
        metrics = rounds[r]["metrics"]
        flat = {"ap": metrics["ap"], "noc_90": metrics["noc"]["90"]}
        expected = decide(flat, current)
        assert rounds[r]["promoted"] == expected.promote
        if expected.promote:
            current = flat
        assert set(metrics["noc"]) == {"85", "90", "95"} and 0 <= metrics["ap"] <= 1
    assert registry.current().id == rounds[2]["current_model"]

    report = store.get_bytes("reports/people/report.md").decode()
    assert report.count("\n| ") == 4 and f"| 2 | 10 | 3 | {rounds[2]['clicks']} |" in report
    assert store.get_bytes("reports/people/learning_curve.png")[:8] == b"\x89PNG\r\n\x1a\n"

    from prefect.artifacts import Artifact

    artifact = Artifact.get("campaign-people-rounds")
    assert artifact is not None and f"| 2 | 10 | 3 | {rounds[2]['clicks']} |" in artifact.data

    dataset = fo.load_dataset(result["fiftyone_dataset"])
    assert len(dataset) == 12
    assert sorted(dataset.distinct("al_round")) == [1, 2]
    assert len(dataset.exists("al_round")) == 6 and len(dataset.exists("ground_truth")) == 6
    assert len(dataset.exists("uncertainty")) == 12 and len(dataset.exists("predictions")) == 12
    fo.delete_dataset(dataset.name)

    # Started again, the campaign is complete: nothing is imported, trained or registered.
    again = al_campaign(cfg, publish=False)
    assert again["rounds"] == rounds
    assert datasets.versions("people") == [1, 2, 3, 4] and len(registry.list()) == 3


def test_crash_in_round_two_then_resume(tmp_path, data, monkeypatch):
    cfg = tiny_config(tmp_path, data, name="resumed")
    annotated = []
    real_simulate, real_fine_tune = simulate_lib.simulate_annotation, retrain_lib.fine_tune

    def counting_simulate(checkpoint, pool_dir, ground_truth, keys, **kw):
        annotated.append(tuple(keys))
        return real_simulate(checkpoint, pool_dir, ground_truth, keys, **kw)

    def crashing_fine_tune(data_dir, out, *args, **kw):
        if "round-002" in str(out):
            raise RuntimeError("machine lost during round 2's training")
        return real_fine_tune(data_dir, out, *args, **kw)

    monkeypatch.setattr(simulate_lib, "simulate_annotation", counting_simulate)
    monkeypatch.setattr(retrain_lib, "fine_tune", crashing_fine_tune)
    with pytest.raises(RuntimeError, match="machine lost"):
        al_campaign(cfg, publish=False)
    store = open_store(cfg.store)
    datasets = Datasets(store)
    state = ledger.read_campaign(store, "resumed")
    assert sorted(state.rounds) == [0, 1]
    assert datasets.versions("resumed") == [1, 2, 3, 4]      # round 2's labels were imported
    before = datasets.labels(datasets.latest("resumed"))
    assert len(annotated) == 2

    monkeypatch.setattr(retrain_lib, "fine_tune", real_fine_tune)
    result = al_campaign(cfg, publish=False)
    assert sorted(result["rounds"]) == [0, 1, 2]
    assert result["campaign_id"] == state.id
    # Round 2 was not annotated again (its result is cached) nor imported again.
    assert len(annotated) == 2
    assert datasets.versions("resumed") == [1, 2, 3, 4]
    after = datasets.labels(datasets.latest("resumed"))
    assert after == before
    keys = [im["file_name"] for im in after["images"]]
    assert len(keys) == len(set(keys)) == 10
    assert result["rounds"][2]["new_images"] == 3
    assert [m.config["campaign"]["round"] for m in ModelRegistry(store).list()] == [0, 1, 2]
    np.testing.assert_equal(result["rounds"][1], state.rounds[1])


def test_dask_scoring_matches_threads(campaign):
    """Pool scoring fanned out over a Dask LocalCluster (2 worker processes, prefect-dask)
    chooses the same batch, with the same scores, as Prefect's thread pool."""
    cfg, result = campaign
    cfg = cfg.model_copy(update={"shards": 3})
    model_id = result["rounds"][0]["current_model"]
    labeled = labeled_before(cfg, 1)
    # Distinct campaign ids: neither run can reuse the other's cached scores.
    threads = score_and_select.with_options(task_runner=ThreadPoolTaskRunner(max_workers=3))(
        cfg, "threads-run", 1, model_id, labeled)
    dask_runner = make_task_runner("dask", workers=2)
    on_dask = score_and_select.with_options(task_runner=dask_runner)(
        cfg, "dask-run", 1, model_id, labeled)
    assert len(threads.items) == 3
    assert on_dask.image_ids == threads.image_ids
    assert [i.score for i in on_dask.items] == [i.score for i in threads.items]
    assert on_dask.pool_size == threads.pool_size == 12


def _paused_runs() -> list:
    with get_client(sync_client=True) as client:
        return [r for r in client.read_flow_runs() if r.state and r.state.is_paused()]


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _annotate_one_image_and_finish(port: int) -> None:
    """Through the annotator's HTTP API: draw a missed person on the first image and place
    its nose, accept the image, leave the second one, press finish."""
    api = f"http://127.0.0.1:{port}/api"
    images = httpx.get(f"{api}/task", timeout=30).json()["images"]
    assert len(images) == 2
    first = images[0]["id"]
    state = httpx.post(f"{api}/images/{first}/open", timeout=60).json()
    # A person the model missed: draw its box, then put its nose where it is.
    added = httpx.post(f"{api}/images/{first}/add_person", timeout=60,
                       json={"box": [10, 10, 60, 90]}).json()
    person = len(added["poses"]["scores"]) - 1
    assert person == len(state["poses"]["scores"])
    clicked = httpx.post(f"{api}/images/{first}/click", timeout=60,
                         json={"person": person, "keypoint": "nose", "x": 40.5, "y": 20.25})
    assert clicked.status_code == 200, clicked.text
    assert httpx.post(f"{api}/images/{first}/accept", timeout=60).status_code == 200
    # The second image is left for a later round; "finish" ends the task.
    assert httpx.post(f"{api}/finish", timeout=60).json()["complete"] is True


def test_human_round_pauses_until_the_annotator_finishes(tmp_path, data):
    import fiftyone as fo

    port = free_port()
    cfg = tiny_config(tmp_path, data, rounds=1, budget_images=2, annotation="human",
                      annotator_port=port)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(al_campaign, cfg, publish=False)
        paused = _wait(lambda: _paused_runs() or run.done(), 240, "the run to pause")
        assert paused is not True, f"the campaign ended without pausing: {run.result()}"
        assert paused[0].state.name == "Paused" and not run.done()  # it waits for people
        _annotate_one_image_and_finish(port)
        result = run.result(timeout=240)       # resumed by 'finish', then imported, retrained
    summary = result["rounds"][1]
    assert summary["new_images"] == 1 and summary["labeled_images"] == 5
    assert summary["clicks"] == 1

    store = open_store(cfg.store)
    datasets = Datasets(store)
    latest = datasets.latest(cfg.name)
    labels = datasets.labels(latest, 1)
    pool_images = [im for im in labels["images"] if im["file_name"].startswith("pool/")]
    assert len(pool_images) == 1                   # only the accepted image is labeled
    records = datasets.annotations(latest, 1)
    assert records == [{"image": pool_images[0]["file_name"], "clicks": 1,
                        "seconds": records[0]["seconds"], "annotator": "human"}]
    anns = [a for a in labels["annotations"] if a["image_id"] == pool_images[0]["id"]]
    assert [40.5, 20.25, 2] in [a["keypoints"][:3] for a in anns]   # the click, as placed
    assert task_folder(cfg, 1).joinpath("complete.json").is_file()
    assert not _paused_runs()
    fo.delete_dataset(cfg.dataset_name)


def test_round_zero_fine_tunes_the_packaged_start_model_named_in_the_config(tmp_path, data):
    """`initial_checkpoint: tiny-synthetic` (a name, not a path) reaches round 0's training
    through Prefect's parameters; the first model is that checkpoint fine-tuned, at its own
    architecture and input size."""
    import torch

    from clickpose.campaign.config import TrainSettings
    from clickpose.model.checkpoint import read_checkpoint_config, read_weights

    one_step = TrainSettings(epochs=1, max_steps_per_epoch=1, batch_size=2, max_minutes=None,
                             threads=1)
    cfg = tiny_config(tmp_path, data, name="started", initial_checkpoint="tiny-synthetic",
                      rounds=0, train=one_step)
    result = al_campaign(cfg, publish=False)
    assert sorted(result["rounds"]) == [0]
    first = cfg.round_dir(0) / "train" / "last"
    start_config = read_checkpoint_config("tiny-synthetic")["model"]
    first_config = read_checkpoint_config(first)["model"]
    for key in ("image_size", "num_queries", "enc_layers", "keypoint_layers"):
        assert first_config[key] == start_config[key], key
    start, tuned = read_weights("tiny-synthetic"), read_weights(first)
    # One AdamW step at lr 4e-4 moves each weight by about the lr; a fresh model is far away.
    drift = max((tuned[k] - start[k]).abs().max().item() for k in start
                if start[k].is_floating_point())
    assert 0 < drift < 0.01
    assert torch.equal(tuned["backbone.body.conv_stem.weight"],
                       start["backbone.body.conv_stem.weight"])   # frozen
    # Its click prior pools the round's labels with the package's (counted as 300 persons).
    from clickpose.data.coco import read_coco_dataset
    from clickpose.train.defaults import CLICK_PRIOR_INHERITED_PERSONS

    trained_on = read_checkpoint_config(first)["training"]["data"]
    labelled = sum(int((r.keypoints[:, :, 2] > 0).any(-1).sum())
                   for r in read_coco_dataset(trained_on).records)
    prior = read_checkpoint_config(first)["click_prior"]
    assert prior["persons_labelled"] == labelled + CLICK_PRIOR_INHERITED_PERSONS
