"""`human` annotation: create the FiftyOne annotation task, start the annotator, and pause the
flow run (Prefect's wait-for-input) until the task is finished.

The run resumes when the annotator's "finish" is pressed (a watcher resumes it), from the
Prefect UI's resume form, or from Python:
    from prefect.flow_runs import resume_flow_run
    resume_flow_run("<flow run id>", run_input={"note": "done for today"})
The images accepted by then are imported; the others stay in the pool.
"""
from __future__ import annotations

import threading
import time
from uuid import UUID

from prefect import get_run_logger, task
from prefect.context import FlowRunContext
from prefect.flow_runs import pause_flow_run, resume_flow_run
from prefect.input import RunInput

from clickpose.campaign import human
from clickpose.campaign.config import CampaignConfig
from clickpose.campaign.simulate import AnnotatedBatch
from flows import tasks


class AnnotationDone(RunInput):
    note: str = ""   # what the person resuming wants to record


@task(name="request-annotation", cache_policy=tasks.CACHED, persist_result=True)
def request_annotation(cfg: CampaignConfig, campaign_id: str, round_index: int, model_id: str,
                       keys: list[str]) -> str:
    checkpoint = tasks.checkpoint_of(cfg, model_id)
    return str(human.request_people_annotation(cfg, round_index, checkpoint, keys,
                                               _schema(checkpoint)))


@task(name="collect-annotation")
def collect_annotation(cfg: CampaignConfig, round_index: int, model_id: str,
                       keys: list[str]) -> AnnotatedBatch:
    schema = _schema(tasks.checkpoint_of(cfg, model_id))
    return human.collect_people_annotation(cfg, round_index, keys, schema)


def annotate_by_people(cfg: CampaignConfig, campaign_id: str, round_index: int, model_id: str,
                       keys: list[str]) -> AnnotatedBatch:
    from clickpose.annotator.serve import launch
    from clickpose.annotator.task import Task

    logger = get_run_logger()
    task_dir = request_annotation(cfg, campaign_id, round_index, model_id, keys)
    if not Task(task_dir).is_complete():
        server = launch(task_dir, port=cfg.annotator_port, log_file=f"{task_dir}/server.log")
        logger.info(f"round {round_index}: {len(keys)} images to annotate at {server.url} "
                    f"(task {task_dir}); this run pauses until the annotator's 'finish'")
        try:
            wait_until_finished(task_dir, cfg.annotation_timeout_s, round_index)
        finally:
            server.stop()
    status = Task(task_dir).status()
    logger.info(f"round {round_index}: {status.done} of {status.images} images accepted, "
                f"{status.clicks} clicks")
    return collect_annotation(cfg, round_index, model_id, keys)


def wait_until_finished(task_dir: str, timeout_s: int, round_index: int) -> None:
    """Pause this flow run; a watcher resumes it when the task folder says finished."""
    flow_run_id = FlowRunContext.get().flow_run.id
    watcher = threading.Thread(target=resume_when_finished, args=(task_dir, flow_run_id),
                               daemon=True, name=f"annotation-watcher-{round_index}")
    watcher.start()
    pause_flow_run(wait_for_input=AnnotationDone, timeout=timeout_s, poll_interval=2,
                   key=f"annotation-round-{round_index}")


def resume_when_finished(task_dir: str, flow_run_id: UUID, poll_seconds: float = 1.0) -> None:
    """Resume the paused run once the annotation task is complete (or stop watching when the
    run was resumed some other way)."""
    from prefect.client.orchestration import get_client

    from clickpose.annotator.task import Task

    seen_paused = False
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(flow_run_id).state
            paused = state is not None and state.is_paused()
            seen_paused = seen_paused or paused
            if seen_paused and not paused:
                return
            if paused and Task(task_dir).is_complete():
                resume_flow_run(flow_run_id, run_input={"note": "finished in the annotator"})
                return
            time.sleep(poll_seconds)


def _schema(checkpoint):
    from clickpose.model.checkpoint import checkpoint_schema

    return checkpoint_schema(checkpoint)
