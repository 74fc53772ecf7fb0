"""The demo: a 3-round campaign on synthetic people with the simulated annotator, on Prefect's
local API, FiftyOne's own database and a local store, sized for a 2-core CPU (~9 minutes)."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from clickpose.campaign.config import CampaignConfig, TrainSettings
from clickpose.campaign.demo_data import synthetic_campaign_data
from clickpose.model.pretrained import START_MODEL

DEMO_NAME = "demo"
# Round 0 fine-tunes START_MODEL (the packaged one), as a team would start, instead of
# minutes of training from ImageNet features alone.


def demo_config(work: Path, data: dict[str, Path], rounds: int = 3, budget_images: int = 16,
                train_minutes: float = 1.25, initial_minutes: float = 2.5,
                noc_val_images: int = 12, start_model: str | None = START_MODEL
                ) -> CampaignConfig:
    return CampaignConfig(
        name=DEMO_NAME, store=str(work / "store"), work=work / "campaign", pool=data["pool"],
        val=data["val"], seed_labels=data["seed"], initial_checkpoint=start_model,
        rounds=rounds, budget_images=budget_images,
        scorer="least_confidence", shards=2, noc_val_images=noc_val_images,
        initial_train_minutes=initial_minutes, fiftyone_dataset="clickpose-demo",
        train=demo_train_settings(train_minutes, start_model))


def demo_train_settings(minutes: float, start_model: str | None) -> TrainSettings:
    """A start model is fine-tuned at its own input size with its frozen backbone's
    features cached, at the campaign's default lr; a fresh `tiny` (96 px) at 1e-3, which
    learns fastest in minutes of CPU."""
    # One torch thread: the Prefect server and FiftyOne's database share the two cores,
    # and an oversubscribed core makes every small step many times slower.
    if start_model:
        return TrainSettings(max_minutes=minutes, epochs=200, batch_size=8, threads=1,
                             cache_backbone_features=True)
    return TrainSettings(max_minutes=minutes, epochs=200, lr=1e-3, batch_size=8, threads=1)


def run_demo(work: Path, pool: int = 200, val: int = 40, seed_set: int = 24, rounds: int = 3,
             budget_images: int = 16, train_minutes: float = 1.25, initial_minutes: float = 2.5,
             noc_val_images: int = 12, start_model: str | None = START_MODEL,
             fresh: bool = False, console: Console | None = None) -> dict:
    """Run (or finish) the demo campaign in `work`; prints progress, the rounds and where the
    report and the FiftyOne dataset are. fresh=True starts over (the data is kept);
    start_model=None trains the first model from the preset instead."""
    from flows.al_campaign import al_campaign

    console = console or Console(highlight=False)
    work = Path(work).resolve()
    started = time.monotonic()
    if fresh:
        for sub in ("store", "campaign"):
            shutil.rmtree(work / sub, ignore_errors=True)
    console.rule("ClickPose AL demo")
    console.print(f"work folder {work}; synthetic pool {pool}, val {val}, seed set {seed_set}; "
                  f"first model: {start_model or 'a fresh tiny'}")
    data = synthetic_campaign_data(work / "data", pool=pool, val=val, seed_set=seed_set)
    cfg = demo_config(work, data, rounds, budget_images, train_minutes, initial_minutes,
                      noc_val_images, start_model)
    result = al_campaign(cfg)
    console.print(rounds_table(result["rounds"]))
    console.print(f"stopped: {result['stopped']}; {time.monotonic() - started:.0f} s in all")
    print_where(console, result)
    return result


def rounds_table(rounds: dict) -> Table:
    table = Table(title="rounds")
    for column in ("round", "labeled", "clicks", "val AP", "NoC@85", "NoC@90", "NoC@95",
                   "model"):
        table.add_column(column, justify="right")
    for r in sorted(rounds, key=int):
        s = rounds[r]
        m = s["metrics"]
        table.add_row(str(r), str(s["labeled_images"]), f"{s['clicks']} ({s['clicks_total']})",
                      f"{m['ap']:.3f}", *(f"{m['noc'].get(t, float('nan')):.2f}"
                                          for t in ("85", "90", "95")),
                      s["model"] + (" *" if s["promoted"] else ""))
    return table


def print_where(console: Console, result: dict) -> None:
    import os

    report = result["report"]
    console.print(f"report:         {report['markdown_uri']}", soft_wrap=True)
    console.print(f"learning curve: {report['curve_uri']}", soft_wrap=True)
    if result.get("fiftyone_dataset"):
        db = os.environ.get("FIFTYONE_DATABASE_DIR", "")
        console.print(f"FiftyOne dataset '{result['fiftyone_dataset']}' (pool with predictions, "
                      "uncertainty, al_round, ground_truth); open it with:")
        console.print(f"  FIFTYONE_DATABASE_DIR={db} .venv/bin/fiftyone app launch "
                      f"{result['fiftyone_dataset']} --wait -1", soft_wrap=True)
    home = os.environ.get("PREFECT_HOME", "")
    console.print("Prefect runs and artifacts (the rounds table, the curve's link):")
    console.print(f"  PREFECT_HOME={home} .venv/bin/prefect server start   # then "
                  "http://127.0.0.1:4200", soft_wrap=True)
