"""The campaign: the first model (round 0, on the seed labels), then rounds until N are done,
the target AP is reached, the click budget is spent or the pool is empty.

Started again after a crash or a cancel, it reads the campaign's record in the store and
continues with the first round that is not done.
"""
from __future__ import annotations

import time

from prefect import flow, get_run_logger

from clickpose.campaign import dataset as campaign_data
from clickpose.campaign import ledger
from clickpose.campaign.config import CampaignConfig
from clickpose.campaign.simulate import AnnotatedBatch
from flows import tasks
from flows.al_round import al_round, round_summary, summary_line
from storage import open_store


@flow(name="al-campaign")
def al_campaign(config: CampaignConfig, task_runner: str = "threads",
                workers: int | None = None, dask_address: str | None = None,
                publish: bool = True) -> dict:
    """Run (or continue) the campaign; returns {"rounds": {r: summary}, "stopped": why,
    "report": where, "fiftyone_dataset": name}. task_runner: 'threads' or 'dask' (with
    dask_address, else a LocalCluster of `workers`); publish: refresh the FiftyOne pool."""
    logger = get_run_logger()
    store = open_store(config.store)
    state = ledger.open_campaign(store, config.name, config.model_dump(mode="json"))
    logger.info(f"campaign '{config.name}' ({state.id[:8]}), store {store.uri}: "
                f"{len(state.rounds)} rounds done")
    tasks.ingest_pool(config)
    if 0 not in state.rounds:
        initial_round(config, state.id)
    stopped = f"{config.rounds} rounds done"
    for round_index in range(1, config.rounds + 1):
        state = ledger.read_campaign(store, config.name)
        why = ledger.stop_reason(state, config.target_ap, config.click_budget)
        if why:
            stopped = why
            break
        summary = al_round(config, round_index, task_runner, workers, dask_address)
        if "stopped" in summary:
            stopped = summary["stopped"]
            break
    state = ledger.read_campaign(store, config.name)
    written = tasks.write_report(config)
    fiftyone_dataset = tasks.publish_fiftyone(config) if publish else None
    logger.info(f"campaign '{config.name}' stopped: {stopped}; report {written['markdown_uri']}")
    return {"rounds": state.rounds, "stopped": stopped, "report": written,
            "campaign_id": state.id, "fiftyone_dataset": fiftyone_dataset}


@flow(name="al-initial-model")
def initial_round(config: CampaignConfig, campaign_id: str) -> dict:
    """Round 0: the seed labels, the first model (trained, or config.initial_checkpoint
    fine-tuned), its evaluation; it becomes the current model."""
    started = time.monotonic()
    batch = campaign_data_batch(config)
    version = tasks.import_labels(config, 0, batch, None)
    checkpoint = tasks.retrain_model(config, 0, None)
    scores = tasks.evaluate(config, campaign_id, 0, checkpoint)
    registered = tasks.register(config, campaign_id, 0, checkpoint, scores, version, None)
    summary = round_summary(config, 0, version, len(batch.labels["images"]), 0, 0, scores,
                            registered, time.monotonic() - started)
    tasks.record_round(config, 0, summary)
    tasks.write_report(config)
    get_run_logger().info(summary_line(summary))
    return summary


def campaign_data_batch(config: CampaignConfig) -> AnnotatedBatch:
    return AnnotatedBatch(labels=campaign_data.seed_labels(config))
