"""The `clickpose` command: the library's sub-commands (clickpose.cli) plus `clickpose demo`,
the active-learning campaign end to end on synthetic people (flows.demo).

The demo runs a Prefect flow, and the libraries never import flows, so the command that
needs it is added here, where the console script is built."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from clickpose.cli.main import app
from clickpose.model.pretrained import START_MODEL


@app.command("demo")
def demo_command(
    work: Annotated[Path, typer.Option("--work", help="folder for data, store, runs")
                    ] = Path("work/demo"),
    rounds: Annotated[int, typer.Option("--rounds", min=1)] = 3,
    pool: Annotated[int, typer.Option("--pool", min=10, help="synthetic pool images")] = 200,
    val: Annotated[int, typer.Option("--val", min=2, help="fixed validation images")] = 40,
    seed_set: Annotated[int, typer.Option("--seed-set", min=2,
                                          help="labeled images of round 0")] = 24,
    budget: Annotated[int, typer.Option("--budget", min=1,
                                        help="images to label per round")] = 16,
    train_minutes: Annotated[float, typer.Option("--train-minutes",
                                                 help="training budget per round")] = 1.25,
    initial_minutes: Annotated[float, typer.Option("--initial-minutes",
                                                   help="first model's budget")] = 2.5,
    start_model: Annotated[str, typer.Option(
        "--start-model", help="checkpoint (path or packaged name) that round 0 fine-tunes; "
        "'none' trains a fresh tiny model")] = START_MODEL,
    fresh: Annotated[bool, typer.Option("--fresh",
                                        help="start over instead of continuing")] = False,
) -> None:
    """A 3-round campaign with the simulated annotator: progress, per-round AP / NoC / clicks,
    a report and a FiftyOne dataset. Run again, it continues (or shows) the same campaign."""
    from flows.demo import run_demo  # Prefect loads only for the demo

    run_demo(work, pool=pool, val=val, seed_set=seed_set, rounds=rounds, budget_images=budget,
             train_minutes=train_minutes, initial_minutes=initial_minutes,
             start_model=None if start_model == "none" else start_model, fresh=fresh)
