"""`clickpose` command line: one sub-command module per concern, registered here."""
from __future__ import annotations

import typer

from clickpose.settings import apply_environment_defaults

apply_environment_defaults()

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Click-Pose: interactive multi-person keypoint annotation and active learning.")
eval_app = typer.Typer(no_args_is_help=True, help="Evaluate predictions: OKS AP, NoC.")
app.add_typer(eval_app, name="eval")

# Sub-commands register themselves on `app` / `eval_app` when their module is imported.
from clickpose.cli import commands  # noqa: F401
