"""`clickpose pretrained`: the packaged start models, what they were trained on and what
they measured (a name usable wherever a checkpoint path is)."""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from clickpose.cli.main import app


def _figure(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _nested(mapping: dict, *keys):
    """mapping[k1][k2]... or None where a level is missing (a package of an older version)."""
    for key in keys:
        mapping = (mapping or {}).get(key)
    return mapping


def describe(name: str) -> list[str]:
    """The lines that present the packaged checkpoint `name`."""
    from clickpose.model.checkpoint import read_checkpoint_config
    from clickpose.model.pretrained import START_MODEL, pretrained_folder

    folder = pretrained_folder(name)
    config = read_checkpoint_config(folder)
    metrics = config.get("metrics") or {}
    measured = metrics.get("measured") or {}
    ap = measured.get("ap") or {}
    refine = _nested(measured, "noc", "refine", "NoC@90")
    model_only = _nested(measured, "noc", "model-only", "NoC@90")
    schema = config["schema"]
    without = _nested(metrics, "click_prior", "measured_without", "noc", "refine", "NoC@90")
    prior = "" if without is None else f" with its click prior ({_figure(without, 2)} without)"
    role = "; where the demo and a new campaign start" if name == START_MODEL else ""
    return [
        (f"[bold]{name}[/bold]  ({config['model'].get('preset', 'custom')}, "
        f"{schema['name']}: {len(schema['keypoints'])} keypoints{role})"),
        f"  folder:      {escape(str(folder))}",
        f"  trained by:  {escape(metrics.get('trained_by', '-'))}",
        (f"  measured on: {escape(str(measured.get('val_data', '-')))}: OKS AP "
        f"{_figure(ap.get('AP'))} (AP50 {_figure(ap.get('AP50'))}); NoC@90 refine "
        f"{_figure(refine, 2)}{prior}, model-only {_figure(model_only, 2)} "
        f"(first {measured.get('noc_images', '-')} images)"),
    ]


@app.command("pretrained")
def pretrained() -> None:
    """List the packaged start models: pass a name as --init, --checkpoint or a campaign's
    initial_checkpoint."""
    from clickpose.model.pretrained import pretrained_names

    console = Console(highlight=False)
    names = pretrained_names()
    if not names:
        console.print("no packaged checkpoints in this installation")
    for name in names:
        for line in describe(name):
            console.print(line, soft_wrap=True)
