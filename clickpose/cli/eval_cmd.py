"""`clickpose eval ap`, `clickpose eval errors` and `clickpose eval noc`: OKS AP, where it goes,
and the clicks an annotator needs."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from clickpose.cli.main import eval_app
from clickpose.cli.output import fail
from clickpose.keypoints import SchemaError

GroundTruthFile = Annotated[Path, typer.Option(
    "--gt", help="ground truth: COCO person_keypoints json")]
DetectionsFile = Annotated[Path, typer.Option(
    "--dt", help="detections: COCO keypoint results json")]
JsonOut = Annotated[Path | None, typer.Option("--json", help="also write the figures here (JSON)")]


@eval_app.command("ap")
def eval_ap(gt: GroundTruthFile, dt: DetectionsFile, json_out: JsonOut = None) -> None:
    """COCO keypoint AP/AR (pycocotools), with the OKS sigmas of the data's keypoint schema."""
    from clickpose.evaluate.ap import evaluate_ap
    from clickpose.evaluate.inputs import EvalInputError
    from clickpose.evaluate.report import ap_table, write_json

    console = Console(highlight=False)
    try:
        result = evaluate_ap(gt, dt)
    except (EvalInputError, SchemaError) as e:
        fail(console, str(e))
    console.print(ap_table(result))
    if json_out is not None:
        write_json(json_out, {"gt": str(gt), "dt": str(dt), **result.to_dict()})
        console.print(f"wrote {json_out}")


@eval_app.command("errors")
def eval_errors(gt: GroundTruthFile, dt: DetectionsFile, json_out: JsonOut = None) -> None:
    """Where the AP goes: keypoint errors by kind (jitter, inversion, swap, miss) and the AP
    with each kind set right (clickpose.evaluate.error_classes)."""
    from clickpose.evaluate.error_classes import diagnose
    from clickpose.evaluate.inputs import (
        EvalInputError,
        load_detections,
        load_ground_truth,
        schema_for,
    )
    from clickpose.evaluate.report import error_table, write_json

    console = Console(highlight=False)
    try:
        dataset, where = load_ground_truth(gt)
        lines = diagnose(load_detections(dt)[0], dataset, schema_for(dataset, None, where))
    except (EvalInputError, SchemaError) as e:
        fail(console, str(e))
    console.print(error_table(lines))
    if json_out is not None:
        write_json(json_out, {"gt": str(gt), "dt": str(dt), "lines": lines})
        console.print(f"wrote {json_out}")


def _parse_targets(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise typer.BadParameter(f"'{text}': give AP targets in percent, e.g. 85,90,95") from None


@eval_app.command("noc")
def eval_noc(
    data: Annotated[Path, typer.Option(
        "--data", help="dataset folder: annotations.json (+ images/)")],
    predictions: Annotated[Path | None, typer.Option(
        "--predictions", help="COCO keypoint results to correct (another detector's output)")
    ] = None,
    checkpoint: Annotated[Path | None, typer.Option(
        "--checkpoint", help="a trained Click-Pose checkpoint (needed for --mode refine)")] = None,
    targets: Annotated[str, typer.Option("--targets", help="AP targets in percent")] = "85,90,95",
    mode: Annotated[str, typer.Option(
        "--mode", help="model-only | refine | manual")] = "model-only",
    protocol: Annotated[str, typer.Option(
        "--protocol", help="official (Click-Pose's NoC) | annotator (also confirms, "
        "deletes false positives, draws missed persons)")] = "official",
    max_rounds: Annotated[int, typer.Option(
        "--max-rounds", help="rounds before an image is capped")] = 17,
    error: Annotated[str, typer.Option(
        "--error", help="worst keypoint by l2px (pixel distance) or l1norm (the "
        "official loop's normalized L1)")] = "l2px",
    topk: Annotated[int, typer.Option(
        "--topk", help="predicted persons considered for matching")] = 20,
    min_score: Annotated[float, typer.Option(
        "--min-score", help="drop persons scored below this")] = 0.0,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="write summary + per image (JSON)")] = None,
    click_prior: Annotated[bool, typer.Option(
        "--click-prior/--no-click-prior", help="refine: use the checkpoint's click prior, "
        "when it has one")] = True,
) -> None:
    """Number of clicks: rounds of simulated correction until each image's AP reaches a target."""
    from clickpose.data.errors import DataError
    from clickpose.evaluate.inputs import (
        EvalInputError,
        load_detections,
        load_ground_truth,
        schema_for,
    )
    from clickpose.evaluate.noc import NocSettings, run_noc
    from clickpose.evaluate.report import noc_tables, write_json
    from clickpose.evaluate.sources import checkpoint_editors, poses_by_image, prediction_editors

    console = Console(highlight=False)
    errors: tuple[type[Exception], ...] = (EvalInputError, SchemaError, DataError)
    if checkpoint is not None:
        try:
            from clickpose.model.checkpoint import CheckpointError
        except ImportError:  # checkpoint_editors says why the model is not there
            pass
        else:
            errors += (CheckpointError,)
    try:
        settings = NocSettings(targets=_parse_targets(targets), mode=mode, protocol=protocol,
                               max_rounds=max_rounds, topk=topk, error=error, min_score=min_score)
    except ValueError as e:
        fail(console, str(e))
    if error not in ("l2px", "l1norm"):
        fail(console, f"--error {error}: use l2px or l1norm")
    if mode == "refine" and checkpoint is None:
        fail(console, "--mode refine re-predicts with the model: give --checkpoint "
                       "(and optionally --predictions as its starting poses)")
    if mode == "manual" and (predictions is not None or checkpoint is not None):
        fail(console, "--mode manual places every labelled keypoint by hand and reads no "
                       "poses: drop --predictions / --checkpoint, or use --mode model-only "
                       "or refine to correct them")
    if mode == "model-only" and predictions is None and checkpoint is None:
        fail(console, "--mode model-only corrects existing poses: give --predictions or "
                       "--checkpoint")
    try:
        dataset, where = load_ground_truth(data / "annotations.json", need_sizes=True)
        schema = schema_for(dataset, None, where)
        editor_for = None
        if predictions is not None and mode != "manual":
            results, dt_where = load_detections(predictions)
            if checkpoint is None:
                editor_for = prediction_editors(results, dataset, schema, dt_where, where)
            else:
                initial = poses_by_image(results, dataset, schema, dt_where, where)
                editor_for = checkpoint_editors(checkpoint, data, dataset, mode, schema, initial,
                                                use_click_prior=click_prior)
        elif checkpoint is not None and mode != "manual":
            editor_for = checkpoint_editors(checkpoint, data, dataset, mode, schema,
                                            use_click_prior=click_prior)
        result = run_noc(dataset, editor_for, settings, schema, progress=True)
    except errors as e:
        fail(console, str(e))
    for table in noc_tables(result):
        console.print(table)
    if json_out is not None:
        source = {"data": str(data), "predictions": str(predictions) if predictions else None,
                  "checkpoint": str(checkpoint) if checkpoint else None}
        write_json(json_out, {**source, **result.to_dict()})
        console.print(f"wrote {json_out}")
