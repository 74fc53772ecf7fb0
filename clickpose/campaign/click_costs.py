"""What labeling has cost so far, for calibrating predicted clicks (selection.click_calibration).

Each round of the store keeps its selection (each chosen image's predicted clicks and click
features) and its annotation records (the clicks each image took, simulated or by a person).
The pairs of all rounds before the one choosing now are the calibration's data.
"""
from __future__ import annotations

from clickpose.campaign.config import CampaignConfig
from selection.click_calibration import ClickCalibration
from storage import Datasets


def click_history(datasets: Datasets, name: str, before_round: int
                  ) -> tuple[list[float], list[float], list[dict | None]]:
    """(predicted, actual, click features) of every image labeled in rounds
    1..before_round-1 that has both clicks: round 0's seed labels were never predicted, an
    image a person skipped has no record; features are None where a record kept none."""
    latest = datasets.latest(name)
    predicted: list[float] = []
    actual: list[float] = []
    features: list[dict | None] = []
    if latest is None:
        return predicted, actual, features
    for r in sorted(i for i in latest.rounds if 0 < i < before_round):
        # Records written before calibration existed hold the raw prediction in 'cost'.
        chosen = {e["image"]: e for e in datasets.selection(latest, r)}
        for record in datasets.annotations(latest, r):
            entry = chosen.get(record.get("image"))
            cost = None if entry is None else entry.get("predicted_clicks", entry.get("cost"))
            if cost is not None and record.get("clicks") is not None:
                predicted.append(float(cost))
                actual.append(float(record["clicks"]))
                features.append(entry.get("cost_features") or None)
    return predicted, actual, features


def round_calibration(datasets: Datasets, cfg: CampaignConfig, round_index: int
                      ) -> ClickCalibration | None:
    """The calibration round `round_index` chooses with; None when the scorer predicts no
    clicks or calibration is off."""
    if not cfg.calibrate_clicks or cfg.scorer != "expected_clicks":
        return None
    return ClickCalibration.fit(*click_history(datasets, cfg.name, round_index))
