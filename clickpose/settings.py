"""Environment defaults that FiftyOne and Prefect need on these machines.

Applied with setdefault, so a user's own setting always wins. Import this before fiftyone or
prefect (clickpose.cli does) so a plain `clickpose ...` behaves like `make demo`.
"""
from __future__ import annotations

import os
from pathlib import Path


def work_dir() -> Path:
    return Path(os.environ.get("CLICKPOSE_WORK", Path.cwd() / "work")).resolve()


def apply_environment_defaults() -> None:
    work = work_dir()
    defaults = {
        "FIFTYONE_DO_NOT_TRACK": "true",
        "FIFTYONE_DATABASE_VALIDATION": "false",
        "FIFTYONE_DATABASE_DIR": str(work / "fiftyone-db"),
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
