"""Adapt a checkpoint to a schema with extra keypoints (e.g. head_top, hand and toe tips):
synthetic people labelled with them, a fine-tune from the checkpoint (the new keypoints start
from their parents'), an evaluation, and the adapted model in the registry."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from clickpose.campaign import metrics, retrain
from clickpose.campaign.config import TrainSettings
from clickpose.campaign.demo_data import synthetic_adaptation_data
from storage import ModelRegistry, open_store


@task(name="adaptation-data")
def make_data(work: str, extra_keypoints: list[str], train_images: int, val_images: int
              ) -> dict[str, str]:
    folders = synthetic_adaptation_data(Path(work) / "data", extra_keypoints, train_images,
                                        val_images, progress=False)
    return {k: str(v) for k, v in folders.items()}


@task(name="adapt")
def adapt(checkpoint: str, data: str, out: str, settings: TrainSettings) -> str:
    return str(retrain.fine_tune(Path(data), Path(out), settings, init=Path(checkpoint),
                                 log=get_run_logger().info))


@task(name="evaluate-adapted")
def evaluate_adapted(checkpoint: str, val: str, noc_images: int) -> dict:
    return metrics.evaluate_checkpoint(checkpoint, Path(val), noc_images)


@task(name="register-adapted")
def register_adapted(checkpoint: str, parent_checkpoint: str, scores: dict, store: str | None,
                     data: str) -> str:
    from clickpose.campaign.promotion import flat_metrics
    from clickpose.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint_config

    config = read_checkpoint_config(checkpoint)
    record = ModelRegistry(open_store(store)).register(
        {WEIGHTS_FILE: Path(checkpoint) / WEIGHTS_FILE, CONFIG_FILE: Path(checkpoint) / CONFIG_FILE},
        config={"model": config["model"], "adapted_from": str(parent_checkpoint)},
        schema=config["schema"], metrics=flat_metrics(scores),
        dataset={"name": f"synthetic:{Path(data).name}", "version": 0})
    return record.id


@flow(name="adapt-keypoints")
def adapt_keypoints(checkpoint: Path, work: Path,
                    extra_keypoints: list[str] | None = None, train_images: int = 60,
                    val_images: int = 20, noc_images: int = 10,
                    train: TrainSettings | None = None, store: str | None = None) -> dict:
    """Fine-tune `checkpoint` to COCO-17 + `extra_keypoints` on synthetic people; returns the
    adapted checkpoint, its val AP / NoC and its registry id."""
    extra_keypoints = list(extra_keypoints or ["head_top"])
    train = train or TrainSettings(max_minutes=3.0, epochs=50)
    data = make_data(str(work), extra_keypoints, train_images, val_images)
    adapted = adapt(str(checkpoint), data["train"], str(Path(work) / "run"), train)
    scores = evaluate_adapted(adapted, data["val"], noc_images)
    model_id = register_adapted(adapted, str(checkpoint), scores, store, data["train"])
    get_run_logger().info(f"adapted {checkpoint} to +{extra_keypoints}: val AP "
                          f"{scores['ap']:.3f}, registered as {model_id}")
    return {"checkpoint": adapted, "metrics": scores, "model": model_id}
