"""`clickpose fit-click-prior`: fit and store a checkpoint's click prior."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clickpose.cli.main import app
from clickpose.cli.output import fail
from clickpose.train.defaults import CLICK_PRIOR_IMAGES, CLICK_PRIOR_INHERITED_PERSONS

Opt = typer.Option


@app.command("fit-click-prior")
def fit_click_prior_command(
    checkpoint: Annotated[Path, Opt("--checkpoint", help="checkpoint folder (or packaged name)")],
    data: Annotated[Path, Opt("--data", help="the images it was trained on (annotations.json "
                                             "+ images/)")],
    images: Annotated[int, Opt("--images", min=1, help="images the model predicts for the "
                                                       "error model")] = CLICK_PRIOR_IMAGES,
    pool_with: Annotated[Path | None, Opt(
        "--pool-with", help="pool the fit with this checkpoint's click prior (the one it was "
        f"fine-tuned from), counted as at most {CLICK_PRIOR_INHERITED_PERSONS} persons: for "
        "data with few labelled persons")] = None,
    device: Annotated[str | None, Opt("--device", help="cpu | cuda (default: cuda if present)")]
    = None,
) -> None:
    """Fit what a click says about the rest of its person (the pose prior of the labels and
    the covariance of the model's errors) and store it in the checkpoint's config.json:
    sessions then move a clicked person's other keypoints with it. `clickpose train` does
    this at the end of every run; use this for checkpoints made before, or on other data."""
    import torch

    from clickpose.data.errors import DataError
    from clickpose.keypoints import SchemaError
    from clickpose.model.checkpoint import (
        CheckpointError,
        attach_click_prior,
        load_model,
        read_click_prior,
    )
    from clickpose.train.click_prior_fit import fit_click_prior

    console = Console(highlight=False)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        model = load_model(checkpoint, device=device)
        inherited = None
        if pool_with is not None:
            inherited = read_click_prior(pool_with)
            if inherited is None:
                raise CheckpointError(f"--pool-with {pool_with}: that checkpoint has no click "
                                      "prior to pool with; fit one for it first or leave the "
                                      "option out")
        prior = fit_click_prior(model, data, images, progress=True, inherited=inherited)
        folder = attach_click_prior(checkpoint, prior, inherited)
    except (DataError, SchemaError, CheckpointError, ValueError) as e:
        fail(console, e)
    console.print(f"click prior of {folder}: pose prior from {prior.persons_labelled} labelled "
                  f"persons, error model from {prior.persons_predicted} predicted ones")
