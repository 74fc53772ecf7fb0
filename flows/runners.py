"""The task runner is a setting: Prefect's thread pool on one machine, a Dask cluster to fan
pool scoring out over many (prefect-dask; a LocalCluster when no address is given)."""
from __future__ import annotations

RUNNERS = ("threads", "dask")


def make_task_runner(kind: str = "threads", workers: int | None = None,
                     dask_address: str | None = None):
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "dask":
        from prefect_dask import DaskTaskRunner

        if dask_address:
            return DaskTaskRunner(address=dask_address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": workers or 2,
                                              "threads_per_worker": 1, "processes": True,
                                              "dashboard_address": None})
    raise ValueError(f"task runner '{kind}' is unknown; use one of {', '.join(RUNNERS)}")
