"""prefect.yaml: every deployment's entrypoint loads, its parameters validate against the
flow's signature, the schedule is off by default, and all run on the process work pool."""
from __future__ import annotations

from pathlib import Path

import yaml
from prefect.flows import load_flow_from_entrypoint

ROOT = Path(__file__).resolve().parent.parent


def test_deployments_load_and_validate():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"build-dataset", "al-round", "adapt-keypoints"}
    flow_names = {}
    for name, d in deployments.items():
        flow = load_flow_from_entrypoint(str(ROOT / d["entrypoint"]))
        flow_names[name] = flow.name
        validated = flow.validate_parameters(d["parameters"])
        assert set(validated) >= set(d["parameters"])
        assert d["work_pool"]["name"] == "clickpose-process"
    assert flow_names == {"build-dataset": "al-campaign", "al-round": "al-round",
                          "adapt-keypoints": "adapt-keypoints"}
    schedule = deployments["build-dataset"]["schedules"][0]
    assert schedule["active"] is False and schedule["cron"] == "0 2 * * *"
    assert "schedules" not in deployments["al-round"]
