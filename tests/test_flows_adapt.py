"""The adapt-keypoints flow through Prefect's test harness, on tiny synthetic people labelled
with two extra keypoints: the adapted checkpoint has the grown schema and predicts 17 + 2
keypoints, its labels are validated and versioned in the store, the registry records it with
its parent and dataset version, the report is in the store and in Prefect; run again, it
imports and registers nothing twice; the adapted model grows once more."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.testing.utilities import prefect_test_harness

from clickpose.campaign.config import CPU_MODEL, TrainSettings
from clickpose.keypoints import coco17
from clickpose.model.checkpoint import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    checkpoint_schema,
    load_model,
    read_checkpoint_config,
    save_checkpoint,
)
from flows.adapt_keypoints import adapt_keypoints
from storage import Datasets, ModelRegistry, open_store

EXTRAS = ["head_top", "left_toe"]
DATASET = "adapt-head_top-left_toe"
TRAIN = TrainSettings(epochs=1, max_steps_per_epoch=2, batch_size=2, image_size=64, max_size=96,
                      max_minutes=None, threads=1)


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A COCO-17 `tiny` checkpoint, registered and promoted in the store: the model to adapt."""
    import torch

    from clickpose.model import build_model, preset_config

    root = tmp_path_factory.mktemp("adapt")
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", image_size=64, max_size=96, **CPU_MODEL), coco17())
    checkpoint = save_checkpoint(root / "m0001", model)
    store = str(root / "store")
    registry = ModelRegistry(open_store(store))
    parent = registry.register(
        {WEIGHTS_FILE: checkpoint / WEIGHTS_FILE, CONFIG_FILE: checkpoint / CONFIG_FILE},
        config={"model": read_checkpoint_config(checkpoint)["model"]},
        schema=coco17().model_dump(mode="json"), metrics={"ap": 0.0},
        dataset={"name": "seed", "version": 1})
    registry.promote(parent.id)
    return root, checkpoint, store, parent.id


@pytest.fixture(scope="module")
def adapted(start):
    root, _, store, _ = start
    return adapt_keypoints("current", root / "work", EXTRAS, train_images=6, val_images=3,
                           image_size=96, noc_images=2, noc_max_rounds=2, train=TRAIN,
                           store=store)


def test_adapted_checkpoint_has_the_new_keypoints(start, adapted):
    root, _, _, parent_id = start
    names = coco17().keypoints + EXTRAS
    schema = checkpoint_schema(adapted["checkpoint"])
    assert schema.keypoints == names and schema.num_keypoints == 19
    assert schema.name == adapted["schema"] == "coco17+head_top+left_toe"
    assert adapted["keypoints"] == names and adapted["keypoints_before"] == 17
    # Fine-tuned from the registry's current model, on the labels written back from the store.
    downloaded = root / "work" / "models" / parent_id
    assert adapted["from"] == str(downloaded)
    training = read_checkpoint_config(adapted["checkpoint"])["training"]
    assert training["init"] == str(downloaded)
    assert training["data"] == str(root / "work" / DATASET / "labels")

    model = load_model(adapted["checkpoint"])
    val = root / "work" / DATASET / "data" / "val"
    image = val / "images" / json.loads((val / "annotations.json").read_text())[
        "images"][0]["file_name"]
    poses = model.predict(image)
    assert poses.keypoints.shape[1:] == (19, 2)
    assert poses.keypoint_scores.shape[1:] == (19,) and poses.visibility.shape[1:] == (19,)
    metrics = adapted["metrics"]
    assert 0.0 <= metrics["ap"] <= 1.0 and metrics["n_val"] == 3 and metrics["n_noc"] == 2
    assert set(metrics["noc"]) == {"85", "90", "95"}


def test_labels_are_versioned_and_the_model_registered(start, adapted):
    root, _, store_uri, parent_id = start
    store = open_store(store_uri)
    datasets = Datasets(store)
    assert adapted["dataset"] == DATASET and adapted["dataset_version"] == 2
    assert datasets.versions(DATASET) == [1, 2]          # the images, then their labels
    version = datasets.latest(DATASET)
    labels = datasets.labels(version, 0)
    train = root / "work" / DATASET / "data" / "train"
    truth = json.loads((train / "annotations.json").read_text())
    assert [im["file_name"] for im in labels["images"]] == [
        f"{DATASET}/{im['file_name']}" for im in truth["images"]]
    assert [a["keypoints"] for a in labels["annotations"]] == [
        a["keypoints"] for a in truth["annotations"]]
    assert all(len(a["keypoints"]) == 19 * 3 for a in labels["annotations"])
    assert labels["categories"][0]["keypoints"] == coco17().keypoints + EXTRAS
    pool = datasets.pool(version)
    assert [p.key for p in pool] == [im["file_name"] for im in labels["images"]]
    first = train / "images" / truth["images"][0]["file_name"]
    assert store.get_bytes(pool[0].key) == first.read_bytes()

    record = ModelRegistry(store).get(adapted["model"])
    assert record.parent == parent_id == adapted["parent"]
    assert record.dataset == {"name": DATASET, "version": 2}
    assert record.schema["keypoints"] == coco17().keypoints + EXTRAS
    assert record.metrics["ap"] == pytest.approx(adapted["metrics"]["ap"])
    weights = Path(adapted["checkpoint"]) / WEIGHTS_FILE
    assert record.files[WEIGHTS_FILE]["size"] == weights.stat().st_size


def test_report_in_the_store_and_in_prefect(start, adapted):
    from prefect.artifacts import Artifact

    _, _, store_uri, parent_id = start
    store = open_store(store_uri)
    text = store.get_bytes(f"reports/{DATASET}/adaptation.md").decode()
    assert f"| model | {adapted['model']} |" in text
    assert f"(model {parent_id})" in text and "17 -> 19: + head_top, left_toe" in text
    assert f"dataset `{DATASET}` v2" in text and f"{adapted['metrics']['ap']:.3f}" in text
    stored = json.loads(store.get_bytes(f"reports/{DATASET}/adaptation.json"))
    assert stored["model"] == adapted["model"] and stored["keypoints"] == adapted["keypoints"]
    assert adapted["report"]["markdown"] == f"reports/{DATASET}/adaptation.md"
    artifact = Artifact.get("adaptation-adapt-head-top-left-toe")
    assert artifact is not None and artifact.data == text


def test_unknown_model_is_refused(start):
    root, _, store_uri, _ = start
    with pytest.raises(FileNotFoundError, match=r"'m0042'.*models: m0001"):
        adapt_keypoints("m0042", root / "refused", EXTRAS, store=store_uri)
    assert not (root / "refused" / "data").exists()


def test_run_again_imports_and_registers_nothing_twice(start, adapted):
    """Again, with the same model given as its folder: nothing new in the store."""
    root, checkpoint, store_uri, _ = start
    again = adapt_keypoints(str(checkpoint), root / "work", EXTRAS, train_images=6, val_images=3,
                            image_size=96, noc_images=2, noc_max_rounds=2, train=TRAIN,
                            store=store_uri)
    assert again["model"] == adapted["model"] and again["checkpoint"] == adapted["checkpoint"]
    assert again["dataset_version"] == 2
    store = open_store(store_uri)
    assert Datasets(store).versions(DATASET) == [1, 2]
    assert [m.id for m in ModelRegistry(store).list()] == ["m0001", "m0002"]


def test_an_adapted_model_grows_again(start, adapted):
    """From the adapted model (by id), one more keypoint after its own: 20 keypoints, parent
    the adapted model, its own labels, in the same work folder without reusing the first run."""
    root, _, store_uri, _ = start
    grown = adapt_keypoints(adapted["model"], root / "work", ["right_hand_tip"], train_images=4,
                            val_images=2, image_size=96, noc_images=1, noc_max_rounds=1,
                            train=TRAIN, store=store_uri)
    names = coco17().keypoints + EXTRAS + ["right_hand_tip"]
    assert checkpoint_schema(grown["checkpoint"]).keypoints == names
    assert grown["keypoints_before"] == 19 and grown["parent"] == adapted["model"]
    assert grown["dataset"] == f"{DATASET}-right_hand_tip" and grown["dataset_version"] == 2
    assert load_model(grown["checkpoint"]).predict(
        next((root / "work" / DATASET / "data" / "val" / "images").iterdir())
    ).keypoints.shape[1:] == (20, 2)
    record = ModelRegistry(open_store(store_uri)).get(grown["model"])
    assert record.id == "m0003" and record.parent == adapted["model"]
