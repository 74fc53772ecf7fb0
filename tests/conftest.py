"""Shared test setup: an isolated work folder for FiftyOne's database and Prefect's home."""
from __future__ import annotations

import os
from pathlib import Path

# Set before any test module imports fiftyone or prefect.
_WORK = Path(__file__).resolve().parent.parent / "work" / "test-env"
os.environ.setdefault("CLICKPOSE_WORK", str(_WORK))
from clickpose.settings import apply_environment_defaults

apply_environment_defaults()

TESTS_DATA = Path(__file__).resolve().parent / "data"

# Fixtures of the real S3 server (SeaweedFS) used by the storage tests, and the
# interactive-session tests' forward-call counter.
pytest_plugins = ["s3_server", "session_fixtures"]
