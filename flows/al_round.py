"""One active-learning round as a recipe: score the pool (fanned out over shards), choose a
batch, annotate it, import the labels, fine-tune, evaluate, register, record and report."""
from __future__ import annotations

import time

from prefect import flow, get_run_logger

from clickpose.campaign import dataset as campaign_data
from clickpose.campaign import ledger
from clickpose.campaign.config import CampaignConfig
from flows import tasks
from flows.runners import make_task_runner
from selection import Selection, merge_pool_scores
from storage import open_store


@flow(name="al-round")
def al_round(config: CampaignConfig, round_index: int, task_runner: str = "threads",
             workers: int | None = None, dask_address: str | None = None) -> dict:
    """Round `round_index` (1, 2, ...) of the campaign `config.name`; returns its summary.
    Pool scoring fans out on `task_runner` ('threads', or 'dask': the cluster at
    dask_address, else a LocalCluster of `workers`).

    Starts from the model that was current when the previous round ended, so running it again
    after a crash repeats the same choice and imports nothing twice.
    """
    logger = get_run_logger()
    started = time.monotonic()
    state = ledger.read_campaign(open_store(config.store), config.name)
    if state is None or round_index - 1 not in state.rounds:
        raise ValueError(f"campaign '{config.name}': round {round_index} needs round "
                         f"{round_index - 1} to be done first (run al-campaign)")
    if round_index in state.rounds:
        logger.info(f"round {round_index} is done already")
        return state.rounds[round_index]
    previous = state.rounds[round_index - 1]
    model_id = previous["current_model"]

    labeled = tasks.labeled_before(config, round_index)
    runner = make_task_runner(task_runner, workers, dask_address)
    selection = score_and_select.with_options(task_runner=runner)(
        config, state.id, round_index, model_id, labeled)
    if selection.is_empty:
        return {"round": round_index, "stopped": selection.message}
    keys = [str(i) for i in selection.image_ids]

    if config.annotation == "human":
        from flows.human import annotate_by_people

        batch = annotate_by_people(config, state.id, round_index, model_id, keys)
    else:
        batch = tasks.annotate_batch(config, state.id, round_index, model_id, keys)
    version = tasks.import_labels(config, round_index, batch,
                                  tasks.selection_records(selection))
    checkpoint = tasks.retrain_model(config, round_index, model_id)
    scores_val = tasks.evaluate(config, state.id, round_index, checkpoint)
    registered = tasks.register(config, state.id, round_index, checkpoint, scores_val, version,
                                model_id)
    summary = round_summary(config, round_index, version, len(batch.labels["images"]),
                            batch.clicks,
                            state.clicks + batch.clicks, scores_val, registered,
                            time.monotonic() - started, predicted_clicks=selection.total_cost)
    tasks.record_round(config, round_index, summary)
    tasks.write_report(config)
    logger.info(summary_line(summary))
    return summary


@flow(name="score-and-select")
def score_and_select(config: CampaignConfig, campaign_id: str, round_index: int,
                     model_id: str, labeled: list[str]) -> Selection:
    """Score the pool's shards in parallel on the flow's task runner, merge, choose."""
    shards = [tasks.score_pool.submit(config, campaign_id, model_id, (i, config.shards))
              for i in range(config.shards)]
    scores = merge_pool_scores([s.result() for s in shards])
    selection = tasks.select_batch(config, campaign_id, round_index, scores, labeled)
    get_run_logger().info(
        f"round {round_index}: scored {len(scores.scores)} images with {model_id}, chose "
        f"{len(selection.items)} ({selection.message or config.strategy})")
    return selection


def round_summary(config: CampaignConfig, round_index: int, version: int, new_images: int,
                  clicks: int, clicks_total: int, scores: dict, registered: dict,
                  seconds: float, predicted_clicks: float | None = None) -> dict:
    """predicted_clicks: what the selection expected the batch to cost (None when the
    scorer predicts no clicks), beside the clicks it took."""
    labeled = campaign_data.labels_after(tasks.datasets_of(config), config.name, round_index)
    return {"round": round_index, "dataset_version": version,
            "labeled_images": len(labeled["images"]), "new_images": new_images,
            "clicks": int(clicks), "clicks_total": int(clicks_total),
            "predicted_clicks": None if predicted_clicks is None else round(predicted_clicks, 1),
            "metrics": scores,
            **registered, "seconds": round(seconds, 1)}


def summary_line(s: dict) -> str:
    m = s["metrics"]
    noc = " ".join(f"NoC@{t} {v:.2f}" for t, v in m.get("noc", {}).items())
    return (f"round {s['round']}: {s['labeled_images']} labeled (+{s['new_images']}), "
            f"{s['clicks']} clicks ({s['clicks_total']} total), val AP {m['ap']:.3f}, {noc}; "
            f"model {s['model']}" + (" promoted" if s["promoted"] else " kept "
                                     f"{s['current_model']}") + f" ({s['seconds']:.0f} s)")
