"""Helpers for the flow tests: tiny synthetic campaign data and a campaign config sized for
seconds per round on a CPU (one training step, two NoC rounds)."""
from __future__ import annotations

import uuid
from pathlib import Path

from clickpose.campaign.config import CampaignConfig, TrainSettings
from clickpose.campaign.demo_data import synthetic_campaign_data

TINY_TRAIN = TrainSettings(epochs=1, max_steps_per_epoch=1, batch_size=2, image_size=64,
                           max_size=96, max_minutes=None, threads=1)


def tiny_data(root: Path) -> dict[str, Path]:
    return synthetic_campaign_data(root, pool=12, val=4, seed_set=4, size=96, max_persons=2,
                                   progress=False)


def tiny_config(root: Path, data: dict[str, Path], name: str = "people", **overrides
                ) -> CampaignConfig:
    base = {"name": name, "store": str(root / "store"), "work": root / "work",
            "pool": data["pool"], "val": data["val"], "seed_labels": data["seed"], "rounds": 2,
            "budget_images": 3, "shards": 2, "noc_val_images": 2, "noc_max_rounds": 2,
            "annotate_max_rounds": 2, "train": TINY_TRAIN,
            "fiftyone_dataset": f"test-flows-{uuid.uuid4().hex[:8]}"}
    return CampaignConfig(**{**base, **overrides})
