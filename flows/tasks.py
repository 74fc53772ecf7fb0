"""The steps of a round as Prefect tasks: each is one call into the libraries.

Steps that compute (scoring, selection, simulated annotation, evaluation) are cached on their
inputs, which always include the campaign id, the round and the model they start from; steps
that write (import, retrain, register, record) are idempotent through the store (and the
round's run folder), so a run started again after a crash continues where it stopped.
"""
from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, TASK_SOURCE

from clickpose.campaign import (
    click_costs,
    ledger,
    metrics,
    promotion,
    report,
    retrain,
    scoring,
    simulate,
)
from clickpose.campaign import dataset as campaign_data
from clickpose.campaign.config import CampaignConfig
from clickpose.campaign.labels import labeled_keys
from selection import PoolScores, Selection
from selection import select_batch as choose_batch
from storage import Datasets, ModelRegistry, open_store

CACHED = INPUTS + TASK_SOURCE


def datasets_of(cfg: CampaignConfig) -> Datasets:
    return Datasets(open_store(cfg.store))


def registry_of(cfg: CampaignConfig) -> ModelRegistry:
    return ModelRegistry(open_store(cfg.store))


def checkpoint_of(cfg: CampaignConfig, model_id: str) -> Path:
    return promotion.local_checkpoint(registry_of(cfg), model_id, Path(cfg.work) / "models")


@task(name="ingest-pool")
def ingest_pool(cfg: CampaignConfig) -> int:
    return campaign_data.ingest_pool(datasets_of(cfg), cfg).number


@task(name="score-pool", cache_policy=CACHED, persist_result=True)
def score_pool(cfg: CampaignConfig, campaign_id: str, model_id: str, shard: tuple[int, int]
               ) -> PoolScores:
    return scoring.score_shard(checkpoint_of(cfg, model_id), campaign_data.pool_images(cfg),
                               cfg.scorer, shard, cfg.score_batch_size, cfg.train.device,
                               threads=cfg.inference_threads,
                               embeddings=cfg.needs_embeddings)


@task(name="select-batch", cache_policy=CACHED, persist_result=True)
def select_batch(cfg: CampaignConfig, campaign_id: str, round_index: int, scores: PoolScores,
                 labeled: list[str]) -> Selection:
    # Labeled pool images were scored too: their embeddings seed k-center.
    embeddings = scores.embeddings() if cfg.needs_embeddings else None
    return choose_batch(scores.scores, budget_images=cfg.budget_images,
                        budget_clicks=cfg.budget_clicks, strategy=cfg.strategy,
                        seed=cfg.selection_seed + round_index, labeled=set(labeled),
                        embeddings=embeddings,
                        calibration=click_costs.round_calibration(datasets_of(cfg), cfg,
                                                                  round_index))


@task(name="annotate-batch", cache_policy=CACHED, persist_result=True)
def annotate_batch(cfg: CampaignConfig, campaign_id: str, round_index: int, model_id: str,
                   keys: list[str]) -> simulate.AnnotatedBatch:
    """The simulated annotator (annotation='simulated'); human mode is flows.human."""
    return simulate.simulate_annotation(checkpoint_of(cfg, model_id), Path(cfg.pool),
                                        campaign_data.pool_ground_truth(cfg), keys,
                                        max_rounds=cfg.annotate_max_rounds,
                                        threads=cfg.inference_threads, device=cfg.train.device)


@task(name="import-labels")
def import_labels(cfg: CampaignConfig, round_index: int, batch: simulate.AnnotatedBatch,
                  selection: list[dict] | None) -> int:
    version = campaign_data.import_round(datasets_of(cfg), cfg, round_index, batch.labels,
                                         selection, batch.records if selection else None)
    return version.number


@task(name="retrain")
def retrain_model(cfg: CampaignConfig, round_index: int, parent_model_id: str | None) -> str:
    folder = campaign_data.training_folder(datasets_of(cfg), cfg, round_index)
    if parent_model_id is not None:
        init = checkpoint_of(cfg, parent_model_id)
    else:
        init = Path(cfg.initial_checkpoint) if cfg.initial_checkpoint else None
    logger = get_run_logger()
    return str(retrain.fine_tune(folder, cfg.round_dir(round_index) / "train",
                                 cfg.train_settings(round_index),
                                 init=init, log=logger.info))


@task(name="evaluate", cache_policy=CACHED, persist_result=True)
def evaluate(cfg: CampaignConfig, campaign_id: str, round_index: int, checkpoint: str) -> dict:
    return metrics.evaluate_checkpoint(checkpoint, Path(cfg.val), cfg.noc_val_images,
                                       cfg.noc_max_rounds, cfg.train.device,
                                       threads=cfg.inference_threads)


@task(name="register")
def register(cfg: CampaignConfig, campaign_id: str, round_index: int, checkpoint: str,
             scores: dict, dataset_version: int, parent: str | None) -> dict:
    record, decision = promotion.register_round_model(
        registry_of(cfg), Path(checkpoint), campaign_id, round_index, scores,
        {"name": cfg.name, "version": dataset_version}, parent, cfg.promote_metric,
        cfg.promote_min_delta)
    current = registry_of(cfg).current()
    return {"model": record.id, "promoted": decision.promote, "reason": decision.reason,
            "current_model": current.id if current else None}


@task(name="record-round")
def record_round(cfg: CampaignConfig, round_index: int, summary: dict) -> dict:
    state = ledger.record_round(open_store(cfg.store), cfg.name, round_index, summary)
    return {str(r): s for r, s in state.rounds.items()}


@task(name="publish-fiftyone")
def publish_fiftyone(cfg: CampaignConfig) -> str:
    """The pool in FiftyOne with the current model's predictions, scores, rounds and labels."""
    from clickpose.campaign.fiftyone_pool import publish_pool

    current = registry_of(cfg).current()
    dataset = publish_pool(cfg, datasets_of(cfg), checkpoint_of(cfg, current.id),
                           progress=False)
    return dataset.name


@task(name="write-report")
def write_report(cfg: CampaignConfig) -> dict:
    """The report in the store, and as Prefect artifacts: the table and the curve's link."""
    from prefect.artifacts import create_link_artifact, create_markdown_artifact

    store = open_store(cfg.store)
    state = ledger.read_campaign(store, cfg.name)
    written = report.write_report(store, cfg.name, state.rounds)
    key = _artifact_key(cfg.name)
    create_markdown_artifact(written["text"], key=f"{key}-rounds",
                             description=f"campaign {cfg.name}: AP, NoC, clicks per round")
    create_link_artifact(written["curve_uri"], link_text="learning curve",
                         key=f"{key}-learning-curve",
                         description=f"campaign {cfg.name}: val AP against labels and clicks")
    return {k: v for k, v in written.items() if k != "text"}


def _artifact_key(name: str) -> str:
    cleaned = "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")
    return f"campaign-{cleaned or 'default'}"


def selection_records(selection: Selection) -> list[dict]:
    # cost: the clicks the budget counted (calibrated when it was); predicted_clicks: the
    # scorer's own figure, which later rounds calibrate against the clicks taken, with the
    # click features it came from.
    return [{"image": str(item.image_id), "score": item.score, "rank": item.rank,
             "reason": item.reason, "cost": item.cost,
             "predicted_clicks": item.predicted_clicks,
             "cost_features": item.cost_features} for item in selection.items]


def labeled_before(cfg: CampaignConfig, round_index: int) -> list[str]:
    """Images labeled before round `round_index` (fixed, whatever was imported since)."""
    coco = campaign_data.labels_after(datasets_of(cfg), cfg.name, round_index - 1)
    return labeled_keys(coco)
