"""The campaign's record in the store: its id, its settings, and one entry per finished round.

A round counts as done only when its entry is written, after its labels, model and report are
in the store; a campaign started again reads this record and goes on with the next round.
The id is part of every cache key, so a new campaign never reuses an old one's results.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass

from storage import Manifests, Store

ROOT = "campaigns"


@dataclass(frozen=True)
class CampaignState:
    name: str
    id: str
    config: dict
    rounds: dict[int, dict]   # round -> summary (metrics, clicks, images, model, versions)

    @property
    def last_round(self) -> int | None:
        return max(self.rounds) if self.rounds else None

    @property
    def next_round(self) -> int:
        return 0 if self.last_round is None else self.last_round + 1

    @property
    def clicks(self) -> int:
        return sum(int(r.get("clicks", 0)) for r in self.rounds.values())


def _state(name: str, value: dict) -> CampaignState:
    return CampaignState(name, value["id"], value["config"],
                         {int(r): s for r, s in value["rounds"].items()})


def open_campaign(store: Store, name: str, config: dict) -> CampaignState:
    """The campaign `name` in the store, created with a new id when it is not there yet."""
    manifests = Manifests(store, root=ROOT)

    def create(value: dict | None) -> dict:
        return value or {"id": uuid.uuid4().hex, "config": config, "rounds": {}}

    record = manifests.read_or_none(name) or manifests.update(name, create)
    return _state(name, record.value)


def read_campaign(store: Store, name: str) -> CampaignState | None:
    record = Manifests(store, root=ROOT).read_or_none(name)
    return _state(name, record.value) if record else None


def record_round(store: Store, name: str, round_index: int, summary: dict) -> CampaignState:
    """Mark round `round_index` done with its summary (writing it again changes nothing)."""
    manifests = Manifests(store, root=ROOT)

    def add(value: dict) -> dict:
        return {**value, "rounds": {**value["rounds"], str(round_index): summary}}

    current = manifests.read(name)
    if str(round_index) in current.value["rounds"]:
        return _state(name, current.value)
    return _state(name, manifests.update(name, add).value)


def current_ap(state: CampaignState) -> float | None:
    """Val AP of the model that is current after the last round."""
    if state.last_round is None:
        return None
    current = state.rounds[state.last_round].get("current_model")
    for summary in state.rounds.values():
        if summary.get("model") == current:
            return float(summary["metrics"]["ap"])
    return None


def stop_reason(state: CampaignState, target_ap: float | None = None,
                click_budget: float | None = None) -> str | None:
    """Why a campaign stops before its next round (target AP, click budget), or None."""
    ap = current_ap(state)
    if target_ap is not None and ap is not None and ap >= target_ap:
        return f"target AP {target_ap:g} reached ({ap:.3f})"
    if click_budget is not None and state.clicks >= click_budget:
        return f"click budget {click_budget:g} spent ({state.clicks} clicks)"
    return None
