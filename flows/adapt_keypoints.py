"""Adapt a checkpoint to a schema with extra keypoints (e.g. head_top, hand and toe tips):
synthetic people labelled with them, their labels validated and versioned in the store, a
fine-tune from the checkpoint (the new keypoints start from their parents'), an evaluation,
the adapted model in the registry, and a report.

Run again with the same inputs, it imports nothing twice, reuses the finished training and
returns the same registry record."""
from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, task

from clickpose.campaign import labels as label_sets
from clickpose.campaign import metrics, retrain
from clickpose.campaign.config import TrainSettings
from clickpose.campaign.demo_data import synthetic_adaptation_data
from clickpose.campaign.promotion import flat_metrics
from clickpose.campaign.report import object_uri
from clickpose.keypoints import KeypointSchema, coco17_plus
from storage import Datasets, ModelRegistry, open_store

COCO_KEYPOINTS = 17


@task(name="starting-checkpoint")
def starting_checkpoint(checkpoint: str, store: str | None, work: str) -> str:
    """A checkpoint folder as it is; a model of the store's registry ('m0001', or 'current'
    for the promoted one) downloaded into WORK/models."""
    from clickpose.campaign.promotion import local_checkpoint

    if Path(checkpoint).is_dir():
        return checkpoint
    registry = ModelRegistry(open_store(store))
    models = [m.id for m in registry.list()]
    current = registry.current()
    model_id = (current.id if current else None) if checkpoint == "current" else checkpoint
    if model_id not in models:
        raise FileNotFoundError(
            f"checkpoint {checkpoint!r}: neither a checkpoint folder nor a model of the registry "
            f"in {registry.store.uri} (models: {', '.join(models) or 'none'}; current: "
            f"{current.id if current else 'none'}); give a folder written by `clickpose "
            "train`, a model id such as m0001, or 'current'")
    return str(local_checkpoint(registry, model_id, Path(work) / "models"))


@task(name="grown-schema")
def grown_schema(checkpoint: str, extra_keypoints: list[str]) -> KeypointSchema:
    """COCO-17 + the checkpoint's own extra keypoints + the new ones, in that order, so that
    the checkpoint's keypoints stay the leading part (an adapted model can grow again)."""
    from clickpose.model.checkpoint import checkpoint_schema

    have = checkpoint_schema(checkpoint).keypoints[COCO_KEYPOINTS:]
    return coco17_plus(list(have) + [k for k in extra_keypoints if k not in have])


@task(name="adaptation-data")
def make_data(work: str, schema: KeypointSchema, train_images: int, val_images: int,
              image_size: int) -> dict[str, str]:
    folders = synthetic_adaptation_data(Path(work) / "data",
                                        schema.keypoints[COCO_KEYPOINTS:], train_images,
                                        val_images, size=image_size, progress=False)
    return {k: str(v) for k, v in folders.items()}


@task(name="import-adaptation-labels")
def import_labels(store: str | None, dataset: str, train: str, schema: KeypointSchema,
                  work: str) -> int:
    """The training labels, validated against `schema`, as dataset `dataset` in the store:
    images uploaded under `dataset/`, labels as its round 0. Returns the version number; the
    same labels again commit nothing."""
    import json

    datasets = Datasets(open_store(store))
    coco = json.loads((Path(train) / "annotations.json").read_text())
    files = label_sets.folder_keys(Path(train), dataset)
    labels = label_sets.subset(coco, list(files), dataset)
    label_sets.validate(labels, {dataset: Path(train)}, Path(work) / "labels", schema)
    latest = datasets.latest(dataset)
    if latest is not None and 0 in latest.rounds and datasets.labels(latest, 0) == labels:
        return latest.number
    pool = datasets.set_pool(dataset, datasets.ingest_images(files),
                             expected_version=latest.number if latest else 0,
                             message=f"{len(files)} synthetic images ({schema.name})")
    version = datasets.add_round(dataset, 0, labels, expected_version=pool.number,
                                 message=f"labels for {schema.name}")
    return version.number


@task(name="training-folder")
def training_folder(store: str | None, dataset: str, version: int, train: str, work: str
                    ) -> str:
    """The stored labels of `version` as the dataset folder training reads."""
    datasets = Datasets(open_store(store))
    labels = datasets.labels(datasets.version(dataset, version), 0)
    return str(label_sets.write_folder(labels, {dataset: Path(train)}, Path(work) / "labels"))


@task(name="adapt")
def adapt(checkpoint: str, data: str, out: str, settings: TrainSettings) -> str:
    return str(retrain.fine_tune(Path(data), Path(out), settings, init=Path(checkpoint),
                                 log=get_run_logger().info))


@task(name="evaluate-adapted")
def evaluate_adapted(checkpoint: str, val: str, noc_images: int, noc_max_rounds: int,
                     device: str | None, threads: int | None) -> dict:
    return metrics.evaluate_checkpoint(checkpoint, Path(val), noc_images, noc_max_rounds,
                                       device, threads=threads)


@task(name="register-adapted")
def register_adapted(checkpoint: str, parent_checkpoint: str, scores: dict, store: str | None,
                     dataset: str, version: int) -> dict:
    """Register the adapted checkpoint once (the same weights again: the same record); its
    parent is the registered model with the starting checkpoint's weights, when there is one."""
    from clickpose.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE, read_checkpoint_config

    registry = ModelRegistry(open_store(store))
    config = read_checkpoint_config(checkpoint)
    found = _registered(registry, config["weights_sha256"])
    if found is not None:
        return {"model": found.id, "parent": found.parent}
    parent = _registered(registry, _weights_sha256(parent_checkpoint))
    record = registry.register(
        {WEIGHTS_FILE: Path(checkpoint) / WEIGHTS_FILE, CONFIG_FILE: Path(checkpoint) / CONFIG_FILE},
        config={"model": config["model"], "adapted_from": str(parent_checkpoint)},
        schema=config["schema"], metrics=flat_metrics(scores),
        dataset={"name": dataset, "version": version}, parent=parent.id if parent else None)
    return {"model": record.id, "parent": record.parent}


def _registered(registry: ModelRegistry, weights_sha256: str):
    from clickpose.model.checkpoint import WEIGHTS_FILE

    for record in registry.list():
        if record.files.get(WEIGHTS_FILE, {}).get("sha256") == weights_sha256:
            return record
    return None


@task(name="write-adaptation-report")
def write_report(store: str | None, dataset: str, summary: dict) -> dict:
    """reports/DATASET/adaptation.md and .json in the store, and a Prefect markdown artifact."""
    import json

    from prefect.artifacts import create_markdown_artifact

    target = open_store(store)
    text = adaptation_markdown(dataset, summary)
    md_key, json_key = f"reports/{dataset}/adaptation.md", f"reports/{dataset}/adaptation.json"
    target.put_bytes(md_key, text.encode())
    target.put_bytes(json_key, json.dumps(summary, indent=1).encode())
    cleaned = "".join(c if c.isalnum() else "-" for c in dataset.lower()).strip("-")
    create_markdown_artifact(text, key=f"adaptation-{cleaned}",
                             description=f"keypoint adaptation {dataset}: schema, AP, NoC")
    return {"markdown": md_key, "json": json_key, "markdown_uri": object_uri(target, md_key)}


def adaptation_markdown(dataset: str, s: dict) -> str:
    m = s["metrics"]
    noc = ", ".join(f"NoC@{t} {v:.2f}" for t, v in m.get("noc", {}).items())
    rows = [("from", f"`{s['from']}`" + (f" (model {s['parent']})" if s["parent"] else "")),
            ("keypoints", f"{s['keypoints_before']} -> {len(s['keypoints'])}: + "
                          + ", ".join(s["keypoints"][s["keypoints_before"]:])),
            ("schema", s["schema"]),
            ("labels", f"dataset `{dataset}` v{s['dataset_version']}"),
            ("checkpoint", f"`{s['checkpoint']}`"),
            ("model", s["model"]),
            ("val AP", (f"{m['ap']:.3f} (AP50 {m['ap50']:.3f}, AP75 {m['ap75']:.3f}, "
                        f"{m['n_val']} images)")),
            ("NoC (refine)", f"{noc} ({m['n_noc']} images)")]
    lines = [f"# Keypoint adaptation `{dataset}`", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


@flow(name="adapt-keypoints")
def adapt_keypoints(checkpoint: str, work: Path,
                    extra_keypoints: list[str] | None = None, train_images: int = 60,
                    val_images: int = 20, image_size: int = 128, noc_images: int = 10,
                    noc_max_rounds: int = 17, train: TrainSettings | None = None,
                    store: str | None = None, dataset: str | None = None) -> dict:
    """Fine-tune `checkpoint` (a checkpoint folder, or a model of the store's registry: an id
    or 'current') to COCO-17 + `extra_keypoints` on synthetic people; returns the adapted
    checkpoint, its schema, val AP / NoC, the labels' dataset version, its registry id and
    the report. `dataset`: the labels' name in the store (default adapt-<extras>)."""
    logger = get_run_logger()
    train = train or TrainSettings(max_minutes=3.0, epochs=50)
    checkpoint = starting_checkpoint(str(checkpoint), store, str(work))
    schema = grown_schema(checkpoint, list(extra_keypoints or ["head_top"]))
    extras = schema.keypoints[COCO_KEYPOINTS:]
    dataset = dataset or "adapt-" + "-".join(extras)
    # Everything of one adaptation in its own folder, the run keyed on the labels' version,
    # the starting weights and the training recipe: a finished run is reused only for the
    # same inputs.
    folder = Path(work) / dataset
    data = make_data(str(folder), schema, train_images, val_images, image_size)
    version = import_labels(store, dataset, data["train"], schema, str(folder))
    labeled = training_folder(store, dataset, version, data["train"], str(folder))
    run = folder / f"run-v{version}-{_weights_sha256(checkpoint)[:12]}-{train.recipe_key()}"
    adapted = adapt(checkpoint, labeled, str(run), train)
    scores = evaluate_adapted(adapted, data["val"], noc_images, noc_max_rounds, train.device,
                              train.threads)
    registered = register_adapted(adapted, checkpoint, scores, store, dataset, version)
    summary = {"from": checkpoint, "parent": registered["parent"],
               "keypoints_before": _num_keypoints(checkpoint),
               "keypoints": list(schema.keypoints), "schema": schema.name,
               "dataset": dataset, "dataset_version": version, "checkpoint": adapted,
               "model": registered["model"], "metrics": scores}
    summary["report"] = write_report(store, dataset, summary)
    logger.info(f"adapted {checkpoint} to +{extras}: val AP {scores['ap']:.3f}, labels "
                f"{dataset} v{version}, registered as {registered['model']}; report "
                f"{summary['report']['markdown_uri']}")
    return summary


def _weights_sha256(checkpoint: str) -> str:
    from clickpose.model.checkpoint import read_checkpoint_config

    return read_checkpoint_config(checkpoint)["weights_sha256"]


def _num_keypoints(checkpoint: str) -> int:
    from clickpose.model.checkpoint import checkpoint_schema

    return checkpoint_schema(checkpoint).num_keypoints
